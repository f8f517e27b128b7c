"""The trial loop every worker runs: claim a queued trial, sample its parameters, train it
in this process as a Hydra job (``job.run_trial_job``), tell the study how it ended; repeat until the study
holds ``n_trials`` finished trials. ``n_jobs=N`` runs N such loops (this process and N-1 spawned
ones); each takes the next trial as soon as its own is done.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

import optuna
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import TrialState
from pytorch_lightning import Callback

from pipeline.errors import (EXIT_INTERRUPTED, USER_ERRORS, NonFiniteLossError, TrackingUnavailable,
                             sigterm_as_interrupt)
from pipeline.tracking import find_mlflow_logger
from pipeline.tracking.redact import redact_override, redact_text
from pipeline.tracking.sweeps import (close_runs_of_dead_processes, remember_uri, retire_best_runs, tag_run,
                                      trials_with_final_runs)
from pipeline.train import PreparedData, train

from .job import run_trial_job
from .pruning import PruningCallback
from .space import SearchSpace, override_value, sample, trial_overrides
from .study import (FINALIZED_ATTR, PARENT_RUN_ATTR, WORKER_PROCESS_ATTR, Heartbeat, SweepError, SweepSettings,
                    claim_waiting_trial, fail_stale_trials, fail_trials_of_gone_workers, flush_writes, is_finite,
                    load_study, make_sampler, open_storage, progress, queue_retry, storage_lock, tell, this_process,
                    writes_together)

log = logging.getLogger("pipeline.sweep")

# one data module per worker, set up once, for every trial (and the final runs) with the same data config
PREPARED_DATA = PreparedData()
# attributes a trial gets while it runs; a retried trial starts without its predecessor's
RUN_ATTRS = ("pruned_at_epoch", "diverged", "fail_reason", "mlflow_run_id", "epochs_trained")
MIN_TRIALS_FOR_FAILURE_RATE = 3


def torch_threads(n_jobs: int) -> int:
    """Intra-op threads per worker: the cores divided among the workers."""
    return max(1, len(os.sched_getaffinity(0)) // n_jobs)


def run_workers(settings: SweepSettings, hydra_context, base_config: DictConfig) -> None:
    """This process is worker 0; workers 1..n_jobs-1 are spawned (fresh interpreters: no fork of
    a process that already holds threads and database connections)."""
    from hydra.core.singleton import Singleton

    threads = torch_threads(settings.n_jobs)
    context = multiprocessing.get_context("spawn")
    # Hydra's singletons (config store, job runtime) without the OmegaConf resolvers, which are
    # closures that cannot be pickled: the worker registers them again
    singletons = Singleton.get_state()["instances"]
    # sent as bytes, unpickled by the worker only after Hydra's plugin scan: the scan executes the plugin
    # modules again, and a config node typed by a class of the first execution (the launcher's
    # BasicLauncherConf) could then not be pickled again in the worker
    payload = pickle.dumps((settings, hydra_context, base_config, singletons), protocol=pickle.HIGHEST_PROTOCOL)
    started = [context.Event() for _ in range(1, settings.n_jobs)]  # set by a worker once it looks for trials
    others = [context.Process(target=worker_process, name=f"sweep-worker-{index}",
                              args=(payload, index, threads, started[index - 1]))
              for index in range(1, settings.n_jobs)]
    # started ignoring Ctrl-C (an ignored signal stays ignored in the new interpreter) until their imports are done: a
    # Ctrl-C to the terminal's process group printed a worker's traceback from the middle of importing torch; this
    # process stops them with SIGTERM, which ends one that is still importing without a word
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        for process in others:
            process.start()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    try:
        if settings.n_jobs > 1:
            import torch

            torch.set_num_threads(threads)
        run_trials(settings, hydra_context, base_config, worker_index=0)
    except BaseException:
        for process in others:
            process.terminate()  # their trials go stale and are retried by the next run
        raise
    else:
        # every trial has ended and none runs: a worker still starting (importing torch: seconds, while the trials
        # of a small table took less) would find nothing to do; stopped, not waited for
        unstarted = {p.name for p, event in zip(others, started) if not event.is_set()}
        for process in others:
            if process.name in unstarted:
                process.terminate()
        if unstarted:
            log.info("the trials ended before %s started: stopped", ", ".join(sorted(unstarted)))
    finally:
        for process in others:
            process.join()
    ended = [p for p in others if p.exitcode != 0 and p.name not in unstarted]
    if any(p.exitcode < 0 for p in ended):
        close_runs_of_dead_processes(_tracking_uri(base_config))
    for process in ended:
        if process.exitcode < 0 or process.exitcode == EXIT_INTERRUPTED:
            # killed (the out-of-memory killer, kill -9) or stopped alone by a signal: its trial was failed and run
            # again by the other workers (heartbeats), so the study is whole and the sweep goes on to its end
            how = (f"was killed ({_signal_name(-process.exitcode)})" if process.exitcode < 0 else
                   "was stopped (SIGTERM or Ctrl-C to it alone)")
            log.warning("%s %s while the sweep ran; the trial it was training was run again by another worker",
                        process.name, how)
    crashed = [p.name for p in ended if p.exitcode > 0 and p.exitcode != EXIT_INTERRUPTED]
    if crashed:
        raise SweepError(f"{', '.join(crashed)} stopped with an error (see the log above)")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def worker_process(payload: bytes, index: int, threads: int, started=None) -> None:
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton
    from hydra.core.utils import configure_log, setup_globals

    import pipeline.config  # noqa: F401  (registers the config's own resolvers)

    Plugins.instance()  # before the payload's classes are looked up (see run_workers)
    settings, hydra_context, base_config, singletons = pickle.loads(payload)
    Singleton._instances.update(singletons)
    setup_globals()
    configure_log(base_config.hydra.hydra_logging, base_config.hydra.verbose)
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored while importing (run_workers)
    if started is not None:
        started.set()
    try:
        with sigterm_as_interrupt():  # the main process stops its workers with SIGTERM: the trial is queued again
            run_trials(settings, hydra_context, base_config, worker_index=index)
    except SweepError as error:
        log.error("worker %d: %s", index, error)
        raise SystemExit(1)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: quietly, the main process says what happened and how to go on
        raise SystemExit(EXIT_INTERRUPTED)


def run_trials(settings: SweepSettings, hydra_context, base_config: DictConfig, worker_index: int) -> None:
    study = load_study(settings)
    parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    remember_uri(_tracking_uri(base_config))  # to unmask the URIs trials record masked
    fail_trials_of_gone_workers(study, settings)
    while True:
        fail_stale_trials(study, settings)
        if progress(study).waiting:  # a finished study is not "stopped", whatever its failures
            check_failure_rate(study, settings)
        if settings.timeout is not None and time.time() - settings.started_at > settings.timeout:
            log.info("worker %d: timeout of %ss reached; starting no new trial", worker_index, settings.timeout)
            return
        frozen = claim_waiting_trial(study, settings)
        if frozen is None:
            if not progress(study).running:
                return
            # other workers' trials are still running: if one of them dies, its retry lands here
            time.sleep(min(settings.heartbeat_interval, 5))
            continue
        run_trial(study, frozen, settings, hydra_context, base_config, parent_run_id, worker_index)


def check_failure_rate(study: optuna.Study, settings: SweepSettings) -> None:
    state = progress(study)
    failed = state.failed
    if len(state.finished) >= MIN_TRIALS_FOR_FAILURE_RATE and len(failed) / len(state.finished) > settings.max_failure_rate:
        last = failed[-1].user_attrs.get("fail_reason", "no reason recorded")
        raise SweepError(
            f"sweep stopped: {len(failed)} of {len(state.finished)} finished trials failed or diverged "
            f"(more than hydra.sweeper.max_failure_rate={settings.max_failure_rate}); last failure: {last}")


class TrialTask:
    """The job each trial runs as a Hydra job: the same ``train`` as ``pipeline-train``, with the
    trial's pruning callback and the sweep's parent run handed in, timed."""

    def __init__(self, pruning: PruningCallback, parent_run_id: Optional[str]):
        self.pruning, self.parent_run_id = pruning, parent_run_id
        self.seconds = 0.0

    def __call__(self, cfg: DictConfig) -> dict[str, float]:
        started = time.perf_counter()
        try:
            return train(cfg, callbacks=[self.pruning], parent_run=self.parent_run_id, datamodule=PREPARED_DATA)
        finally:
            self.seconds = time.perf_counter() - started


def run_trial(study: optuna.Study, frozen, settings: SweepSettings, hydra_context, base_config: DictConfig,
              parent_run_id: Optional[str], worker_index: int) -> None:
    started = time.perf_counter()
    try:
        # heartbeats from the claim on (a worker killed while it samples or composes leaves a trial that is retried),
        # and an interrupt anywhere in the trial queues it again
        with Heartbeat(open_storage(settings.storage, settings.heartbeat_interval), frozen._trial_id,
                       settings.heartbeat_interval):
            study.sampler = make_sampler(settings, frozen.number)
            trial = optuna.Trial(study, frozen._trial_id)
            # the trial's writes go to the storage in three transactions: its parameters before it trains (a trial
            # whose worker dies is retried with them), its MLflow run id when the run exists (PruningCallback), the
            # rest just before its state
            with writes_together(study, trial._trial_id):
                _run_trial(study, trial, settings, hydra_context, base_config, parent_run_id, worker_index, started)
    except KeyboardInterrupt:
        requeue_interrupted(study, frozen)
        raise
    except StoreDown as down:
        # not the trial's failure: its parameters wait at the head of the queue, and this worker stops (the next
        # trials would fail alike, each counted against hydra.sweeper.max_failure_rate)
        requeue_interrupted(study, frozen, f"the tracking store stopped answering ({down})")
        raise SweepError(f"trial {frozen.number}: the MLflow tracking store stopped answering ({down}); the trial is "
                         "queued again: rerun the same command once the store answers") from None


class StoreDown(Exception):
    """A trial's run could not reach the MLflow store (:class:`TrackingUnavailable`, or the store failed during it)."""


def _run_trial(study: optuna.Study, trial: optuna.Trial, settings: SweepSettings, hydra_context,
               base_config: DictConfig, parent_run_id: Optional[str], worker_index: int, started: float) -> None:
    from hydra.core.utils import JobStatus, configure_log

    for key in RUN_ATTRS:
        if key in trial.user_attrs:
            trial.set_user_attr(key, None)
    params = sample(trial, settings.space)
    overrides = trial_overrides(settings.space, params)
    # recorded in the study (and its trials.csv) as the store records overrides: credentials masked (the trial's
    # config is composed from its values, and the best config from the command line's overrides and its params)
    trial.set_user_attr("overrides", [redact_override(override) for override in overrides])
    trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
    trial.set_user_attr(WORKER_PROCESS_ATTR, this_process())  # a rerun on this machine tells it ended (kill -9)
    flush_writes(study, trial._trial_id)
    # the trial in the run's config: recorded with it, and what other DDP ranks build their pruning callback from
    sweep_node = {"study_name": settings.study_name, "storage": settings.storage, "trial_number": trial.number,
                  "objective": settings.objectives[0]}
    log.info("trial %d (worker %d): %s", trial.number, worker_index, " ".join(overrides[len(settings.space.fixed_overrides):]))
    # the pruner compares what the study optimises (not task.monitor: a study of val/f1 pruned its best trials by
    # their val/loss, and recorded a pruned trial's last val/loss as its val/f1)
    task = TrialTask(PruningCallback(trial, settings.objectives[0], report=len(settings.objectives) == 1),
                     parent_run_id)
    try:
        config = trial_configs(hydra_context.config_loader, base_config, settings.space).compose(params, sweep_node)
        with open_dict(config):
            record_as_trial(config, settings)
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = trial.number
            name_trial_run(config, trial.number)
        job = run_trial_job(task, config, "hydra.sweep.dir", "hydra.sweep.subdir", hydra_context)
        configure_log(base_config.hydra.hydra_logging, base_config.hydra.verbose)
        error = None if job.status == JobStatus.COMPLETED else job._return_value
        metrics = job._return_value if error is None else {}
    except Exception as composing_error:  # e.g. a choice that names no config file
        log.error("trial %d: could not compose its config", trial.number, exc_info=True)
        error, metrics = composing_error, {}
    if isinstance(error, TrackingUnavailable):  # the store, not the trial
        raise StoreDown(" ".join(str(error).split())[:300])
    trial_seconds = time.perf_counter() - started
    trial.set_user_attr("train_seconds", task.seconds)
    trial.set_user_attr("trial_seconds", trial_seconds)
    state, values = settle(study, trial, settings, metrics or {}, error, task.pruning.pruned_at_epoch)
    attrs = trial.user_attrs  # everything this trial wrote went through ``trial``
    tag_run(attrs.get("mlflow_tracking_uri"), attrs.get("mlflow_run_id"), {"sweep.state": state.name})
    shown = ", ".join(f"{name}={value:.4g}" for name, value in zip(settings.objectives, values or []))
    log.info("trial %d %s %s(%.1fs)%s", trial.number, state.name, f"{shown} " if shown else "", trial_seconds,
             f": {attrs.get('fail_reason')}" if attrs.get("fail_reason") else "")


INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"


def requeue_interrupted(study: optuna.Study, frozen, reason: str = INTERRUPTED) -> None:
    """Ctrl-C or SIGTERM (or the tracking store gone) between the claim of a trial and its end: it ends FAIL and its
    parameters (those it drew) wait at the head of the queue, so rerunning the sweep continues with them (as for a
    worker that died). A trial already told how it ended is left so."""
    storage = study._storage
    try:
        if storage.get_trial(frozen._trial_id).state.is_finished():
            return
        storage.set_trial_user_attr(frozen._trial_id, "fail_reason", reason)
        study.tell(frozen.number, state=TrialState.FAIL)
        queue_retry(study, storage.get_trial(frozen._trial_id))
        attrs = storage.get_trial(frozen._trial_id).user_attrs
    except Exception as error:  # the heartbeat check retries it later anyway
        log.warning("could not queue interrupted trial %d again: %s", frozen.number, error)
        return
    # the trial's run (KILLED) says how its trial ended, as a trial that ends otherwise does
    # an interrupt ends the process next: a tag sent without waiting could be lost with it (not so a store that
    # stopped answering, which would keep it waiting)
    tag_run(attrs.get("mlflow_tracking_uri"), attrs.get("mlflow_run_id"), {"sweep.state": TrialState.FAIL.name},
            wait=reason == INTERRUPTED)


def settle(study: optuna.Study, trial: optuna.Trial, settings: SweepSettings, metrics: dict,
           error: Optional[BaseException], pruned_at_epoch: Optional[int] = None
           ) -> tuple[TrialState, Optional[list[float]]]:
    """Tell the study how the trial ended: COMPLETE with its objective values (from what ``train`` returned),
    PRUNED, or FAIL; returns the state and values it ended with."""
    if error is not None:
        trial.set_user_attr("fail_reason", redact_text(f"{type(error).__name__}: {error}")[:2000])
        if isinstance(error, NonFiniteLossError):
            # a diverging configuration: PRUNED lets the sampler learn to avoid it; counted as a failure
            trial.set_user_attr("diverged", True)
            return tell(study, trial, state=TrialState.PRUNED)
        if not isinstance(error, (*USER_ERRORS, InstantiationException)):  # a bug rather than a bad setting: show where
            log.error("trial %d raised", trial.number, exc_info=error)
        return tell(study, trial, state=TrialState.FAIL)
    if pruned_at_epoch:
        return tell(study, trial, state=TrialState.PRUNED)
    values = [metrics.get(name) for name in settings.objectives]
    bad = [name for name, value in zip(settings.objectives, values) if not is_finite(value)]
    if bad:
        trial.set_user_attr("fail_reason", f"objective {', '.join(bad)} missing or not finite; the run logged "
                                           f"{', '.join(sorted(metrics)) or 'no metrics'}")
        return tell(study, trial, state=TrialState.FAIL)
    return tell(study, trial, [float(v) for v in values])


def _mlflow_node(config: DictConfig) -> Optional[DictConfig]:
    loggers = config.get("logger")
    return loggers.get("mlflow") if isinstance(loggers, DictConfig) else None


def name_trial_run(config: DictConfig, number: int, prefix: str = "trial") -> None:
    """Trial runs are named ``trial-<n>-<model>-<optimizer>`` in MLflow unless the config names them."""
    mlflow_node = _mlflow_node(config)
    if mlflow_node is not None and not mlflow_node.get("run_name"):
        choices = config.hydra.runtime.choices
        mlflow_node.run_name = f"{prefix}-{number}-{choices.get('model')}-{choices.get('optimizer')}"


def record_as_trial(config: DictConfig, settings: SweepSettings) -> None:
    """A trial records what selection needs (params, per-epoch metrics, status, pruning); checkpoints, the test
    pass, the model and plots only when the sweep asks for them (``hydra.sweeper.trial_*``): the best trials
    get them when the sweep ends."""
    if not settings.trial_test:
        config.test = False
    if not settings.trial_checkpoints and isinstance(config.get("callbacks"), DictConfig):
        for name in list(config.callbacks.keys()):
            node = config.callbacks.get(name)
            if isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith(("ModelCheckpoint", "ResumableCheckpoint")):
                config.callbacks[name] = None
    mlflow_node = _mlflow_node(config)
    if mlflow_node is not None and "register_as" in mlflow_node:
        mlflow_node.register_as = None  # the best runs trained again at the end register their models
    if mlflow_node is not None and not settings.trial_artifacts:
        mlflow_node.log_model = False
        mlflow_node.log_plots = False


# ----- the end of a sweep: the best trials, once more with everything -------------------------------------
def _retire_replaced_finals(study: optuna.Study, settings: SweepSettings, base_config: DictConfig) -> None:
    """finalize_top_k=0 on a study whose best trials an earlier command trained again: the final runs of trials
    no longer among as many best trials are not the best (``best=false``, the parent's ``best.run_id`` removed);
    nothing is trained."""
    with storage_lock(settings.storage):
        done = study._storage.get_study_user_attrs(study._study_id).get(FINALIZED_ATTR)
        if not isinstance(done, list) or not done:
            return
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        top = _top_trials(study, complete, len(done))
        kept = [number for number in done if number in {t.number for t in top}]
        if len(kept) == len(done):
            return
        study.set_user_attr(FINALIZED_ATTR, kept)
    retire_best_runs(_tracking_uri(base_config), study.user_attrs.get(PARENT_RUN_ATTR), keep_trials=kept,
                     ranks=_ranks(top))


def finalize(study: optuna.Study, settings: SweepSettings, hydra_context, base_config: DictConfig) -> list[dict]:
    """Train the ``finalize_top_k`` best complete trials again with everything a single run records (test
    metrics, checkpoint, model, plots), each as a child run of the sweep named ``best-<n>-...`` and tagged
    ``best=true``. Training is deterministic, so the run reproduces its trial; its objective value is
    compared with the trial's and a difference is reported. Done once per study and best trial, by the first
    worker to get here: a study given more trials whose best trial changed trains its new best again; the runs
    of trials no longer among the best, and final runs that did not finish (a killed final run), are tagged
    ``best=false``."""
    if settings.finalize_top_k == 0:
        _retire_replaced_finals(study, settings, base_config)
        return []
    with storage_lock(settings.storage):
        study_attrs = study._storage.get_study_user_attrs(study._study_id)
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        state = study_attrs.get(FINALIZED_ATTR)
        now = progress(study)
        # trials still to run for this command (queued trials beyond its n_trials, left by a command that asked
        # for more, wait for one that asks for them again)
        to_run = now.running or (now.waiting and len(now.finished) < settings.n_trials)
        if (isinstance(state, dict) and not _finalizer_gone(state)) or not complete or to_run:
            return []  # another process is training the best trials, or trials are still to run
        done = _finalized_trials(state)
        if isinstance(state, list) and done:  # a final run deleted since (in the trash) is trained again
            done = trials_with_final_runs(_tracking_uri(base_config), study.user_attrs.get(PARENT_RUN_ATTR), done)
        top = _top_trials(study, complete, settings.finalize_top_k)
        wanted = [t.number for t in top]
        kept = [number for number in done if number in wanted]
        if isinstance(state, list) and len(kept) == len(wanted):
            if set(done) != set(wanted):  # fewer best trials asked for (a smaller finalize_top_k): the others retire
                study.set_user_attr(FINALIZED_ATTR, sorted(kept))
                retire_best_runs(_tracking_uri(base_config), study.user_attrs.get(PARENT_RUN_ATTR), keep_trials=kept,
                                 ranks=_ranks(top))
            return []  # the best trials of this study have their final runs
        if isinstance(state, (dict, str)):
            log.info("the best runs of this study were being trained by a process that is gone (%s): training them "
                     "again", state.get("by") if isinstance(state, dict) else state)
        record = {"by": f"{os.uname().nodename}:{os.getpid()}", "at": time.time(), "done": kept}
        study.set_user_attr(FINALIZED_ATTR, record)
    parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if len(top) < settings.finalize_top_k:  # finalize_top_k=5 of 4 complete trials: each is a best run
        log.info("hydra.sweeper.finalize_top_k=%d, and only %d trial(s) of the study completed: %d best run(s)",
                 settings.finalize_top_k, len(top), len(top))
    finished = list(kept)

    def one_done(number: int) -> None:  # recorded at once: a killed finalizer's finished runs are kept
        finished.append(number)
        study.set_user_attr(FINALIZED_ATTR, {**record, "done": sorted(finished)})

    try:
        # the best last: each final run registers its model (logger.mlflow.register_as) as it ends, and
        # models:/<name>/latest was the runner-up's of finalize_top_k=2
        finals = _train_best_trials(study, settings, hydra_context, base_config,
                                    [t for t in reversed(top) if t.number not in kept], parent_run_id, one_done,
                                    ranks=_ranks(top))[::-1]
    except BaseException:
        study.set_user_attr(FINALIZED_ATTR, sorted(finished))  # the next run of the sweep trains the others again
        raise
    study.set_user_attr(FINALIZED_ATTR, sorted(finished))
    # after the new runs finished: the earlier ones they replace, and a final run that failed, are not the best; a
    # kept one whose trial moved down (a better trial since) is tagged its new rank
    retire_best_runs(_tracking_uri(base_config), parent_run_id, keep_trials=finished, ranks=_ranks(top))
    return finals


def _tracking_uri(base_config: DictConfig) -> Optional[str]:
    mlflow_node = _mlflow_node(base_config)
    return mlflow_node.get("tracking_uri") if mlflow_node is not None else None


def _finalized_trials(state) -> list[int]:
    """The trials with a finished final run, from the study's record: their list, or, while (or where) a
    process was training the others, its record's ``done``."""
    if isinstance(state, list):
        return [int(n) for n in state]
    if isinstance(state, dict):
        return [int(n) for n in state.get("done") or []]
    return []


def _top_trials(study: optuna.Study, complete: list, k: int) -> list:
    """The ``k`` best complete trials: the best trial (or the Pareto front), then the others by the first
    objective."""
    from .report import best_trials

    ranked = best_trials(study)
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1
    ranked += sorted((t for t in complete if t not in ranked), key=lambda t: sign * t.values[0])
    return ranked[:k]


def _ranks(top: list) -> dict[int, int]:
    """{trial number: its rank among the best trials, 1 for the best}: the final runs' (and their registered model
    versions') ``sweep.rank`` tag."""
    return {trial.number: rank for rank, trial in enumerate(top, start=1)}


# a finalizer on another machine that has not finished after this long is taken for gone
FINALIZER_STALE_S = 24 * 3600


def _finalizer_gone(state) -> bool:
    """Whether the best runs were being trained ("started": a record of which process and when) by a process that
    no longer runs: killed with SIGKILL, or its machine lost, it could not clear the record (a finished study's
    record is the list of its final trials). "started" of an older version: gone (it cannot be told apart)."""
    if isinstance(state, list):
        return False  # done
    if not isinstance(state, dict):
        return True
    host, _, pid = str(state.get("by", "")).rpartition(":")
    if host == os.uname().nodename and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False  # still running: it will finish them
    return time.time() - float(state.get("at", 0)) > FINALIZER_STALE_S


def _train_best_trials(study, settings: SweepSettings, hydra_context, base_config: DictConfig, trials: list,
                       parent_run_id: Optional[str], one_done=lambda number: None,
                       ranks: Optional[dict[int, int]] = None) -> list[dict]:
    from hydra.core.utils import JobStatus, configure_log

    finals = []
    for trial in trials:
        sweep_node = {"study_name": settings.study_name, "storage": settings.storage, "trial_number": trial.number,
                      "final": True}
        config = trial_configs(hydra_context.config_loader, base_config, settings.space).compose(trial.params, sweep_node)
        with open_dict(config):
            config.hydra.job.id = f"best-{trial.number}"
            config.hydra.job.num = trial.number
            name_trial_run(config, trial.number, prefix="best")
            # mirrored onto the model version the run registers (logger.mlflow.register_as): which best trial it is
            rank = {"sweep.rank": ranks[trial.number]} if ranks and trial.number in ranks else {}
            objective = ", ".join(f"{name}={value:.6g}" for name, value in zip(settings.objectives, trial.values))
            config.tags = {**(config.get("tags") or {}), "best": "true", "sweep.trial_number": trial.number, **rank,
                           "sweep.objective": objective, "sweep.role": "final",
                           "sweep.study_name": settings.study_name}
        log.info("best trial %d: training it again with test, checkpoint, model and plots", trial.number)
        remember = RememberRunId()
        try:
            job = run_trial_job(lambda cfg: _final_run(cfg, remember, parent_run_id),
                                config, "hydra.sweep.dir", "hydra.job.id", hydra_context)
        except BaseException:  # interrupted: tags.best = 'true' found the KILLED run until the sweep was run again
            tag_run(_tracking_uri(base_config), remember.run_id, {"best": "false"}, wait=True)
            raise
        configure_log(base_config.hydra.hydra_logging, base_config.hydra.verbose)
        if job.status != JobStatus.COMPLETED:
            log.error("the final run of trial %d failed: %s", trial.number, job._return_value)
            continue
        metrics = job._return_value
        values = [metrics.get(name) for name in settings.objectives]
        # what training computes is compared; a measured time (train/epoch_time_s) differs from run to run
        reproduced = all(is_finite(v) and abs(v - t) <= 1e-6 * max(1.0, abs(t))
                         for name, v, t in zip(settings.objectives, values, trial.values) if not name.endswith("_time_s"))
        if not reproduced:
            log.warning("the final run of trial %d gave %s where the trial gave %s (not bit-identical: non-deterministic "
                        "kernels or a changed machine)", trial.number, values, trial.values)
        one_done(trial.number)
        finals.append({"trial": trial.number, "metrics": metrics, "reproduced": reproduced,
                       # where the run wrote: Hydra's folder, or <folder>-2 where a killed final run had claimed it
                       "output_dir": remember.output_dir or str(job.hydra_cfg.hydra.runtime.output_dir),
                       "run_id": remember.run_id})
    return finals


def _final_run(cfg: DictConfig, remember: "RememberRunId", parent_run_id: Optional[str]) -> dict:
    """A best trial trained again, what it prints kept in its folder's ``train.log`` as a pipeline-train run keeps
    it (the file held Hydra's log records alone: empty)."""
    from hydra.core.hydra_config import HydraConfig

    from pipeline.cli.train import console_copied_to

    with console_copied_to(Path(HydraConfig.get().runtime.output_dir) / "train.log"):
        return train(cfg, callbacks=[remember], parent_run=parent_run_id, datamodule=PREPARED_DATA)


class RememberRunId(Callback):
    """Keeps the MLflow run id of the run it is handed to (the sweep links its best runs)."""

    def __init__(self):
        self.run_id: Optional[str] = None
        self.output_dir: Optional[str] = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.output_dir = str(trainer.default_root_dir)
        logger = find_mlflow_logger(trainer.loggers)
        self.run_id = logger.run.run_id if logger is not None and logger.run is not None else None


class TrialConfigs:
    """Composes each trial's config. Hydra's composition takes 0.3-0.8 s, so it runs once per
    combination of config-group choices (e.g. optimizer=sgd); sampled values are then set on a
    copy, the way Hydra applies a ``key=value`` override after composing. The copy is unpickled from
    bytes kept per combination (~1 ms, where ``copy.deepcopy`` of the composed config takes ~10-15 ms)."""

    def __init__(self, config_loader, base_config: DictConfig, space: SearchSpace):
        self.config_loader, self.base_config, self.space = config_loader, base_config, space
        self.keys = {param.name: param.key for param in space.params}
        self._composed: dict[tuple[str, ...], bytes] = {}

    def compose(self, params: dict[str, Any], sweep_node: dict[str, Any]) -> DictConfig:
        # the multirun's own config was composed from the same defaults: it knows the group names
        group_names = set(self.base_config.hydra.runtime.choices)
        group_overrides = tuple(f"{self.keys[n]}={override_value(v)}" for n, v in params.items() if n in group_names)
        if group_overrides not in self._composed:
            composed = self.config_loader.load_sweep_config(
                self.base_config, list(self.space.fixed_overrides) + list(group_overrides))
            self._composed[group_overrides] = pickle.dumps(composed, protocol=pickle.HIGHEST_PROTOCOL)
        config = pickle.loads(self._composed[group_overrides])
        values = {n: v for n, v in params.items() if n not in group_names}
        for name in values:
            if not self.keys[name].startswith("+"):
                refuse_absent_key(config, name)
        with open_dict(config):
            for name, value in values.items():
                OmegaConf.update(config, name, value, merge=True, force_add=self.keys[name].startswith("+"))
            config.sweep = sweep_node
            if "num_sanity_val_steps" not in config.trainer:
                # Lightning's validation pass before training finds a broken validation step early in a long
                # run; a trial is short, and the pass costs it as much as an epoch of small data
                config.trainer.num_sanity_val_steps = 0
            config.hydra.sweep.dir = str(self.base_config.hydra.sweep.dir)  # the study's folder, not a new ${now:}
            config.hydra.overrides.task.extend([f"{self.keys[n]}={override_value(v)}" for n, v in values.items()])
        return config


_ABSENT = object()


def refuse_absent_key(config: DictConfig, name: str) -> None:
    """A searched key the composed config lacks, written without '+', is refused as ``pipeline-train key=value``
    refuses it: set on the trial's config it trained every trial (a model's constructor argument its YAML does not
    list), and then the sweep's end, which composes the best trial with Hydra, failed on it (exit 1, no best run)."""
    from pipeline.config import accepted_parameters, resolve_target
    from pipeline.errors import ConfigError

    if OmegaConf.select(config, name, default=_ABSENT) is not _ABSENT:
        return
    parent, _, key = name.rpartition(".")
    node = OmegaConf.select(config, parent, default=None) if parent else config
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    try:
        accepted = accepted_parameters(resolve_target(parent, str(target))) if target else set()
    except Exception:  # a class that cannot be imported is refused by the config's check, with the reason
        return
    if accepted is not None and key not in accepted:
        return  # a key its class (or the config's schema) does not take: the config's check names the nearest key
    siblings = sorted(str(k) for k in node.keys())
    listed = f"; keys under '{parent}': {', '.join(siblings)}" if len(siblings) <= 30 else ""
    raise ConfigError(f"'{name}' is not in the config ({target} takes it){listed}; a key the config lacks is "
                      f"searched with a '+' (+{name}: ... in hydra.sweeper.params, '+{name}=...' on the command "
                      "line), or add it to the option's YAML")


_trial_configs: dict[int, TrialConfigs] = {}


def trial_configs(config_loader, base_config: DictConfig, space: SearchSpace) -> TrialConfigs:
    """One composer per worker process and sweep."""
    key = id(space)
    if key not in _trial_configs:
        _trial_configs[key] = TrialConfigs(config_loader, base_config, space)
    return _trial_configs[key]
