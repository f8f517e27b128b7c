"""Reports a trial's objective to Optuna each epoch and stops training when it is pruned.

The value reported is the study's objective as it stands after the epoch: ``val/<metric>``, or for
``<task.monitor>_best`` the best value of the monitored metric so far (what the task publishes under that name).
The pruners then compare what the study optimises, in its direction, and a pruned trial's value (its last
report) is its objective's. Objectives measured outside validation (``train/epoch_time_s``: published after
the validation pass, a whole epoch late here) are not reported: such a study is not pruned.

Optuna's own Lightning callback lives in optuna-integration and needs the ``lightning`` namespace;
this one is for ``pytorch_lightning``. It finds its trial in the storage by study name and trial
number, so it works wherever the trial runs (another process or machine).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

import optuna
from pytorch_lightning import Callback, LightningModule, Trainer

from pipeline.ranks import is_rank_zero
from pipeline.tracking import find_mlflow_logger
from pipeline.tracking.sweeps import recordable_uri

from .study import PRUNER_ATTR, RunningTrialCache, flush_writes, make_pruner, open_storage

log = logging.getLogger("pipeline.sweep")


class PruningCallback(Callback):
    def __init__(self, trial: Optional[optuna.Trial], objective: str, report: bool = True):
        self.trial = trial
        self.objective = objective
        # Optuna prunes single-objective studies only; several objectives still record metrics
        self.report = report and objective.startswith("val/")
        self.pruned_at_epoch: Optional[int] = None
        self._unrecorded_run: Any = None  # the trial's MLflow run, until its id is in the trial's attributes

    @classmethod
    def from_config(cls, sweep_cfg: Any, objective: str) -> "PruningCallback":
        """``sweep_cfg`` is the run's ``sweep`` node: study_name, storage, trial_number, objective."""
        objective = str(sweep_cfg.get("objective") or objective)
        if not is_rank_zero():  # under DDP only rank 0 talks to the storage; the others follow its decision
            return cls(None, objective, report=False)
        storage = open_storage(str(sweep_cfg.storage))
        study_id = storage.get_study_id_from_name(str(sweep_cfg.study_name))
        pruner_spec = storage.get_study_user_attrs(study_id).get(PRUNER_ATTR) or {"name": "none"}
        study = optuna.load_study(study_name=str(sweep_cfg.study_name), storage=storage,
                                  sampler=optuna.samplers.RandomSampler(),  # never samples here
                                  pruner=make_pruner(pruner_spec["name"], pruner_spec.get("options")))
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(sweep_cfg.trial_number))
        return cls(optuna.Trial(study, trial_id), objective, report=len(study.directions) == 1)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.trial is None:
            return
        if isinstance(self.trial.study._storage, RunningTrialCache):
            self.trial.study._storage.hold(self.trial._trial_id)  # its reports are read back from memory
        run = self._run(trainer)
        if run is not None and run.active:
            run.set_tags({"sweep.study_name": self.trial.study.study_name, "sweep.role": "trial",
                          "sweep.trial_number": self.trial.number, "sweep.state": "RUNNING"})
            self._unrecorded_run = run
            self._record_run_id(wait=False)

    def _record_run_id(self, wait: bool) -> None:
        """The trial's run id into its attributes (a dead worker's run is closed by whoever finds it; the sweep tags
        the run with the trial's end). The store-writer creates a trial's run while the trial trains: its id is
        recorded at the first epoch's end that finds it known, at the latest when fit ends."""
        run = self._unrecorded_run
        if run is None or self.trial is None:
            return
        run_id = run.run_id if wait else run.known_run_id()
        if run_id is None and not wait:
            return
        self._unrecorded_run = None
        if run_id:
            self.trial.set_user_attr("mlflow_run_id", run_id)
            self.trial.set_user_attr("mlflow_tracking_uri", recordable_uri(run.tracking_uri))
            flush_writes(self.trial.study, self.trial._trial_id)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after the objective has logged this epoch's metrics (the epoch-end hooks run before)
        if trainer.sanity_checking:
            return
        self._record_run_id(wait=False)
        epoch = trainer.current_epoch + 1  # epochs trained so far: the pruners' "resource"
        value = trainer.callback_metrics.get(self.objective)
        should_prune = False
        if self.trial is not None and self.report and value is not None and math.isfinite(float(value)):
            self.trial.report(float(value), step=epoch)
            should_prune = self.trial.should_prune()
        # decided once, by rank 0, and applied on every rank (a rank stopping alone would hang DDP)
        if trainer.world_size > 1:
            should_prune = trainer.strategy.broadcast(should_prune, src=0)
        if should_prune:
            self.pruned_at_epoch = epoch
            trainer.should_stop = True
            if self.trial is None:
                return
            self.trial.set_user_attr("pruned_at_epoch", epoch)
            run = self._run(trainer)
            if run is not None:
                run.set_tags({"sweep.state": "PRUNED", "stopped_early_at_epoch": str(epoch)})
            log.info("trial %d pruned after epoch %d (%s=%.4g)", self.trial.number, epoch, self.objective, float(value))

    @staticmethod
    def _run(trainer: Trainer):
        """The trial's MLflow run (a tracking.TrackedRun), when the config tracks it."""
        logger = find_mlflow_logger(trainer.loggers)
        return logger.run if logger is not None else None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record_run_id(wait=True)
        if self.trial is not None:
            self.trial.set_user_attr("epochs_trained", trainer.current_epoch)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._record_run_id(wait=True)
