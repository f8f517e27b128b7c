"""The Lightning side of tracking: the loggers a run's config names. :class:`RunHistory` keeps every epoch's
metrics (memory and ``metrics.jsonl``); :class:`MLflowLogger` hands them to the run's MLflow run
(a :class:`~pipeline.tracking.run.TrackedRun`). Kept apart from ``run.py`` so that the store-writer process,
which talks to MLflow, never imports Lightning."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from .run import TrackedRun


class RunHistory(Logger):
    """Every epoch's metrics of this run, kept in memory (for the plots and the summary) and appended to a
    JSON-lines file (``metrics.jsonl`` in the output directory) that survives a store failure. Always
    present, whichever loggers the config names."""

    def __init__(self, local_path: Optional[Path] = None):
        super().__init__()
        self.local_path = local_path
        self.history: list[dict] = []

    @property
    def name(self) -> str:
        return "history"

    @property
    def version(self) -> str:
        return "local"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        epoch = int(metrics.pop("epoch", step or 0))
        optimizer_step = metrics.pop("step", None)  # a value logged per optimizer step (callbacks.LearningRateMonitor)
        if not metrics:
            return
        self.history.append({"epoch": epoch, **({"step": int(optimizer_step)} if optimizer_step is not None else {}),
                             **metrics})
        if self.local_path is not None:
            with self.local_path.open("a") as handle:
                handle.write(json.dumps(self.history[-1]) + "\n")


class MLflowLogger(Logger):
    """The MLflow side of a run, as a Lightning logger built from ``conf/logger/mlflow.yaml``. Its settings
    say where and how the run is recorded; ``tracking.start_run`` opens the :class:`TrackedRun` and hands it
    to this logger, which then sends every epoch's metrics (epoch as step) to it."""

    def __init__(self, tracking_uri: Optional[str] = None, artifact_location: Optional[str] = None,
                 experiment_name: str = "default", run_name: Optional[str] = None, log_model: bool = True,
                 log_plots: bool = True, register_as: Optional[str] = None, log_predictions: bool = True):
        super().__init__()
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.log_model = log_model
        self.log_plots = log_plots
        self.log_predictions = log_predictions
        self.register_as = register_as
        self.run: Optional[TrackedRun] = None

    @staticmethod
    def check_config(node) -> None:
        """Refused at config validation, before any data is loaded: a store MLflow cannot use, an empty
        experiment name."""
        from pipeline.errors import ConfigError

        from .run import check_store_folder, check_tracking_uri

        uri = node.get("tracking_uri")
        if uri:
            check_tracking_uri(str(uri))
            check_store_folder(str(uri))
        name = node.get("experiment_name")
        if name is None or not str(name).strip():
            raise ConfigError("logger.mlflow.experiment_name is empty; name the experiment, e.g. "
                              "logger.mlflow.experiment_name=my-study (the default is the task's name)")
        registered = node.get("register_as")
        if registered is not None:
            # '@' too: models:/a@b/1 reads as the alias b of the model a, so the printed reference failed
            if not isinstance(registered, str) or not registered.strip() or any(c in registered for c in "/:@") \
                    or registered == "." or registered.startswith(".."):
                raise ConfigError(f"logger.mlflow.register_as={registered!r}: a registered model's name (e.g. "
                                  "logger.mlflow.register_as=churn-classifier; no '/', ':' or '@', not '.' or '..'), "
                                  "or null")
            if not node.get("log_model", True):
                raise ConfigError("logger.mlflow.register_as registers the run's logged model, and "
                                  "logger.mlflow.log_model=false logs none; set log_model=true or register_as=null")

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return (self.run.run_id if self.run is not None else None) or "local"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the whole config is logged by tracking.log_run_start, flattened and redacted

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        if self.run is None:
            return
        metrics = {k: float(v) for k, v in metrics.items()}
        epoch = int(metrics.pop("epoch", step or 0))
        optimizer_step = metrics.pop("step", None)  # a value logged per optimizer step: at that step
        if metrics:
            self.run.log_metrics(metrics, step=int(optimizer_step) if optimizer_step is not None else epoch)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        # the end of fit or test: what was logged goes to the store now, without waiting for it (the run's end
        # waits, and reports a store failure before the run is marked FINISHED)
        if self.run is not None:
            self.run.flush(wait=False)


def find_mlflow_logger(loggers) -> Optional[MLflowLogger]:
    """The MLflow logger among a run's loggers (others, such as CSV or TensorBoard, may sit beside it)."""
    return next((logger for logger in loggers or () if isinstance(logger, MLflowLogger)), None)
