"""The MLflow run lifecycle. This module (and the rest of ``tracking/``) is the only code that
talks to MLflow; training code sees a Lightning logger and a few ``log_*`` calls.

One training run is one MLflow run, created by global rank 0 only. Its status says how it
ended: FINISHED, FAILED (with the error as a tag) or KILLED (Ctrl-C / SIGTERM).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from .redact import redact_text

log = logging.getLogger(__name__)


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached; raised before any training starts."""


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("GLOBAL_RANK", 0))) == 0 and int(
        os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast when an http(s) tracking server does not answer (not after an hour of training)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # the server answered, even if it has no /health route
    except Exception as error:
        raise TrackingUnavailable(
            f"MLflow tracking server {redact_text(tracking_uri)} does not answer ({error}). Start it "
            "(mlflow server --host 127.0.0.1 --port 5000), fix logger.tracking_uri / MLFLOW_TRACKING_URI, "
            "or run without a server: logger.tracking_uri=null or unset MLFLOW_TRACKING_URI for the local store"
        ) from None


def prepare_local_store(tracking_uri: str) -> None:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


class TrackedRun:
    """Context manager around one MLflow run. With ``tracking_uri=None`` it records nothing."""

    def __init__(
        self,
        tracking_uri: Optional[str],
        experiment_name: str,
        run_name: Optional[str] = None,
        artifact_location: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
        parent_run_id: Optional[str] = None,
        enabled: bool = True,
    ):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.artifact_location = artifact_location
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.enabled = bool(tracking_uri) and enabled and is_rank_zero()
        self.client = None
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self._pending: list = []
        self._sigterm_previous = None
        self.final_status: Optional[str] = None

    # ----- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "TrackedRun":
        if not self.enabled:
            return self
        check_reachable(self.tracking_uri)
        prepare_local_store(self.tracking_uri)
        from mlflow import MlflowClient
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        self.client = MlflowClient(self.tracking_uri)
        self.experiment_id = self._experiment_id()
        tags = dict(self.tags)
        if self.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        self.run_name = run.info.run_name
        self._install_sigterm_handler()
        return self

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            return experiment.experiment_id
        location = None
        if self.artifact_location:
            location = Path(self.artifact_location).absolute().as_uri()
        try:
            return self.client.create_experiment(self.experiment_name, artifact_location=location)
        except MlflowException:  # created concurrently by another run
            return self.client.get_experiment_by_name(self.experiment_name).experiment_id

    def _install_sigterm_handler(self) -> None:
        """SIGTERM is turned into KeyboardInterrupt so that it ends the run like Ctrl-C does."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        self._sigterm_previous = signal.signal(signal.SIGTERM, interrupt)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._sigterm_previous is not None:
            signal.signal(signal.SIGTERM, self._sigterm_previous)
        if not self.enabled or self.run_id is None:
            return False
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        try:
            self.flush()
            if exc is not None and status != "KILLED":
                message = redact_text(f"{exc_type.__name__}: {exc}")[:5000]
                self.client.set_tag(self.run_id, "error", message)
            elif status == "KILLED":
                self.client.set_tag(self.run_id, "error", "interrupted (Ctrl-C or SIGTERM)")
            self.client.set_terminated(self.run_id, status=status)
            self.final_status = status
        except Exception as error:  # the store failed: never mask the original outcome
            log.error("could not record the end of MLflow run %s (%s): %s", self.run_id, status, error)
            if exc_type is None:
                raise
        return False

    # ----- logging ---------------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, redact_text(str(v))[:5000]) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=items)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Asynchronous and batched: one call per epoch, not one per metric."""
        if not self.enabled or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        self._pending.append(self.client.log_batch(self.run_id, metrics=items, synchronous=False))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for operation in pending:
            if operation is not None:
                operation.wait()

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: Path, artifact_path: Optional[str] = None) -> None:
        if self.enabled:
            self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        if self.enabled:
            self.client.log_dict(self.run_id, data, artifact_file)

    def lightning_logger(self) -> "EpochMetricsLogger":
        return EpochMetricsLogger(self)


class EpochMetricsLogger(Logger):
    """Lightning's side of the tracker: metrics go to the run with the epoch as step, and to a local
    JSON-lines file (``metrics.jsonl`` in the output directory) that survives a store failure."""

    def __init__(self, run: TrackedRun, local_path: Optional[Path] = None):
        super().__init__()
        self.run = run
        self.local_path = local_path
        self.history: list[dict] = []

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run.run_id or "local"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the whole config is logged by train.py, flattened and redacted

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        metrics = dict(metrics)
        epoch = int(metrics.pop("epoch", step or 0))
        if not metrics:
            return
        self.history.append({"epoch": epoch, **{k: float(v) for k, v in metrics.items()}})
        if self.local_path is not None:
            with self.local_path.open("a") as handle:
                handle.write(json.dumps(self.history[-1]) + "\n")
        try:
            self.run.log_metrics(metrics, step=epoch)
        except Exception as error:
            log.error("MLflow logging failed (%s); metrics are kept in %s", error, self.local_path)
            self.run.enabled = False

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.run.flush()
