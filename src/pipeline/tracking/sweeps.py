"""A sweep in MLflow: one parent run per study, its trials' runs as children. The sweep code
(``pipeline.sweep``) decides what to record; this module is where it is sent."""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from .redact import redact_text
from .run import check_reachable, open_client, prepare_local_store

log = logging.getLogger("pipeline.sweep")

# tracking URIs this process uses, as given: a trial records its URI masked (a server's password is no thing for the
# study's database and its trials.csv), and the URI it names is found again here or in MLFLOW_TRACKING_URI
_USED_URIS: set[str] = set()


def recordable_uri(tracking_uri: str) -> str:
    """``tracking_uri`` as a study records it: its password masked. Remembered, to be unmasked by this process."""
    _USED_URIS.add(tracking_uri)
    return redact_text(tracking_uri)


def remember_uri(tracking_uri: Optional[str]) -> None:
    """A URI this process may be asked to unmask (the sweep's configured one)."""
    if tracking_uri:
        _USED_URIS.add(str(tracking_uri))


def _unmasked(recorded: Optional[str]) -> Optional[str]:
    """The URI a trial recorded masked, as this process uses it (another worker's process has its own copy)."""
    import os

    if not recorded:
        return recorded
    for uri in (*_USED_URIS, os.environ.get("MLFLOW_TRACKING_URI")):
        if uri and redact_text(uri) == recorded:
            return uri
    return recorded


def store_calls(tracking_uri: str, calls: list[tuple[str, tuple, dict]], wait: bool = True) -> Optional[list]:
    """MlflowClient calls ``(method, args, kwargs)``, made by the store-writer process (or here, with
    ``PIPELINE_STORE_WRITER=0``); entities travel as tuples (see ``store_process.StoreServer``)."""
    from .remote import client_calls, enabled

    if enabled():
        return client_calls(tracking_uri, calls, wait=wait)
    from .store_process import StoreServer

    client = open_client(tracking_uri)
    return [StoreServer._client_call(client, method, args, kwargs) for method, args, kwargs in calls]


def start_store_calls(tracking_uri: str, calls: list[tuple[str, tuple, dict]]) -> Callable[[], list]:
    """:func:`store_calls` started now; the returned function waits for their results (or raises)."""
    from .remote import client_calls_later, enabled

    if enabled():
        return client_calls_later(tracking_uri, calls)
    return lambda: store_calls(tracking_uri, calls)


class ParentRun:
    """The study's MLflow run. Created once, by the process that creates the study; every other process
    (resume, other machines) attaches to it by id. With no tracking URI it records nothing."""

    def __init__(self, tracking_uri: Optional[str], experiment_name: str, artifact_location: Optional[str]):
        self.tracking_uri = tracking_uri
        self.experiment_name = redact_text(str(experiment_name))
        self.artifact_location = artifact_location
        self.run_id: Optional[str] = None
        self._experiment_id: Optional[Callable[[], list]] = None

    @classmethod
    def from_logger_config(cls, mlflow_node: Optional[Mapping[str, Any]]) -> "ParentRun":
        """From the ``logger.mlflow`` node of the sweep's config (None: the sweep is not tracked)."""
        if not mlflow_node:
            return cls(None, "", None)
        return cls(mlflow_node.get("tracking_uri"), str(mlflow_node.get("experiment_name")),
                   mlflow_node.get("artifact_location"))

    @property
    def enabled(self) -> bool:
        return bool(self.tracking_uri)

    def prepare(self) -> None:
        """Checks the store and starts finding (or creating) the experiment, without waiting: the store-writer
        process may still be starting while the caller opens the study."""
        if not self.enabled or self._experiment_id is not None:
            return
        check_reachable(self.tracking_uri)
        prepare_local_store(self.tracking_uri)
        # trials' runs of a worker killed before its study knew their ids are closed here, as the next run closes
        # any run whose process died (the sweep may start no run: its trials all ended)
        self._experiment_id = start_store_calls(self.tracking_uri, [
            ("close_orphans", (), {}),
            ("experiment_id", (self.tracking_uri, self.experiment_name, self.artifact_location), {})])

    def create(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> Optional[str]:
        if not self.enabled:
            return None
        self.prepare()
        [_, experiment_id] = self._experiment_id()
        [run_id] = store_calls(self.tracking_uri, [
            ("create_run", (experiment_id,), {"run_name": name, "tags": {"sweep.role": "parent", **tags}})])
        store_calls(self.tracking_uri, [("log_batch", (run_id,), {
            "params": [(k, redact_text(str(v))[:6000]) for k, v in params.items()]})])
        return run_id

    def attach(self, run_id: Optional[str], tags: Mapping[str, str]) -> None:
        self.run_id = run_id if self.enabled else None
        if self.run_id:
            store_calls(self.tracking_uri, [("update_run", (self.run_id,), {"status": "RUNNING"})]
                        + [("set_tag", (self.run_id, key, str(value)), {}) for key, value in tags.items()])

    def other_experiment(self, run_id: Optional[str]) -> Optional[str]:
        """The name of the experiment holding the study's parent run ``run_id`` where it is not the one this command
        logs to (a resume with another logger.mlflow.experiment_name or MLFLOW_EXPERIMENT_NAME); else None."""
        if not self.enabled or not run_id:
            return None
        self.prepare()
        [_, mine] = self._experiment_id()
        [(theirs, name)] = store_calls(self.tracking_uri, [("experiment_of_run", (run_id,), {})])
        return None if str(theirs) == str(mine) else name

    def registered_task_refusal(self, name: Optional[str], task: str) -> Optional[str]:
        """Why the best runs (of ``task``) cannot be registered as ``name``, whose versions are of another task
        (``run.check_registered_task``), asked before any trial trains; None where they can, or where the store
        cannot be asked (their runs' own check says it then)."""
        if not self.enabled or not name:
            return None
        try:
            return _by_the_writer("_registered_task_refusal", self.tracking_uri, str(name), task)
        except Exception as error:
            log.debug("could not look up the registered model %s: %s", name, error)
            return None

    def record(self, files: Mapping[str, list[Path]], metrics: Mapping[str, float], tags: Mapping[str, str]) -> None:
        """Files ({artifact folder: paths}), metrics and tags of the sweep's summary."""
        if not self.run_id:
            return
        now = int(time.time() * 1000)
        calls = [("log_artifact", (self.run_id, str(path), folder), {}) for folder, paths in files.items()
                 for path in paths]
        calls.append(("log_batch", (self.run_id,), {
            "metrics": [(k, float(v), now, 0) for k, v in metrics.items()],
            "tags": [(k, redact_text(str(v))[:5000]) for k, v in tags.items()]}))
        store_calls(self.tracking_uri, calls)
        if "best.trial_number" in tags:  # a new best described: what described an earlier one goes
            drop_stale_best_tags(self.tracking_uri, self.run_id, list(tags))

    def finish(self, status: str, error: Optional[str] = None) -> None:
        """End the parent run ``status``; a KILLED or FAILED one says why in its ``error`` tag (as a run's does), and
        a FINISHED one drops the tag an earlier, stopped command of the study left."""
        if not self.run_id:
            return
        if status == "FINISHED":
            with contextlib.suppress(Exception):  # no such tag: nothing to drop
                store_calls(self.tracking_uri, [("delete_tag", (self.run_id, "error"), {})])
        tags = [("set_tag", (self.run_id, "error", redact_text(" ".join(error.split()))[:5000]), {})] if error else []
        store_calls(self.tracking_uri, tags + [("set_terminated", (self.run_id,), {"status": status})])


def tag_run(tracking_uri: Optional[str], run_id: Optional[str], tags: Mapping[str, str], wait: bool = False) -> None:
    """Tags on a trial's run; tracking is a side channel, so a store error is only logged (nobody waits, unless
    ``wait``: the process is about to end, as after an interrupt)."""
    if not tracking_uri or not run_id:
        return
    tracking_uri = _unmasked(tracking_uri)
    try:
        store_calls(tracking_uri, [("set_tag", (run_id, key, str(value)), {}) for key, value in tags.items()],
                    wait=wait)
    except Exception as error:
        log.warning("could not tag MLflow run %s: %s", run_id, error)


def close_runs_of_dead_processes(tracking_uri: Optional[str]) -> None:
    """Runs left RUNNING by processes that died are marked KILLED now (a sweep's worker killed before its study knew
    its trial's run: the store-writer was still starting the run), rather than by the next command."""
    if not tracking_uri:
        return
    try:
        store_calls(_unmasked(tracking_uri), [("close_orphans", (), {})])
    except Exception as error:
        log.warning("could not close the runs of processes that died: %s", error)


def retire_best_runs(tracking_uri: Optional[str], parent_run_id: Optional[str], keep_trials: list[int],
                     ranks: Optional[Mapping[int, int]] = None) -> None:
    """Once a sweep has trained its best trials again: the runs under its parent run tagged ``best=true`` that are
    not the finished final run of a trial in ``keep_trials`` (a trial no longer among the best; a final run that
    failed, was killed while it trained, or was deleted since) are tagged ``best=false``, so that ``tags.best =
    'true'`` finds the sweep's current best runs only, a deleted one restored included (it stays deleted: MLflow
    tags an active run alone, so it is restored for the tag and deleted again). One still RUNNING (its process
    killed with SIGKILL) is marked KILLED, and the parent's ``best.run_id`` that named one of them is removed. The
    model versions these runs registered (``logger.mlflow.register_as``) are tagged alike, and a kept run whose trial
    has another rank now (``ranks``: {trial number: rank}, a better trial since) gets it, on the run and its versions.
    Tracking is a side channel: a store error is logged."""
    if not tracking_uri or not parent_run_id:
        return
    try:
        retired = _by_the_writer("_retire_best_runs", tracking_uri, parent_run_id, [int(n) for n in keep_trials],
                                 {int(k): int(v) for k, v in (ranks or {}).items()})
    except Exception as error:
        log.warning("could not update the best=true tags of the sweep's earlier final runs: %s", error)
        return
    if retired:
        log.info("tagged best=false (no longer a finished final run of the sweep's best trials): %s", ", ".join(retired))


def _by_the_writer(function: str, *args):
    """This module's ``function(*args)``, called in the store-writer process (or here, with
    ``PIPELINE_STORE_WRITER=0``); raises what it raised."""
    from .remote import call_in_writer, enabled

    if not enabled():
        return globals()[function](*args)
    ok, value = call_in_writer(f"pipeline.tracking.sweeps:{function}", *args).result()
    if not ok:
        raise RuntimeError(value)
    return value


def _retire_best_runs(tracking_uri: str, parent_run_id: str, keep_trials: list[int],
                      ranks: Optional[Mapping[int, int]] = None) -> list[str]:
    from mlflow.entities import ViewType

    client = open_client(tracking_uri)
    parent = client.get_run(parent_run_id)
    # deleted runs too: one in the trash is trained again, and restored it would be a second best run
    runs = client.search_runs([parent.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.best = 'true'",
                              run_view_type=ViewType.ALL)
    retired, said = [], []
    for run in runs:
        trial = run.data.tags.get("sweep.trial_number", "")
        deleted = run.info.lifecycle_stage == "deleted"
        if run.info.status == "FINISHED" and trial.isdigit() and int(trial) in keep_trials and not deleted:
            rank = (ranks or {}).get(int(trial))
            if rank is not None and run.data.tags.get("sweep.rank") != str(rank):
                client.set_tag(run.info.run_id, "sweep.rank", str(rank))
                _tag_versions_of(client, run.info.run_id, "sweep.rank", str(rank))
            continue
        if deleted:  # MLflow tags active runs only: restored for its tags, then deleted again
            client.restore_run(run.info.run_id)
        try:
            if run.info.status == "RUNNING":
                client.set_tag(run.info.run_id, "error", "its process was gone when the sweep trained its best trials")
                client.set_terminated(run.info.run_id, status="KILLED")
            client.set_tag(run.info.run_id, "best", "false")
            _tag_versions_of(client, run.info.run_id, "best", "false")
        finally:
            if deleted:
                client.delete_run(run.info.run_id)
        retired.append(run.info.run_id)
        said.append(f"{run.info.run_id} (deleted)" if deleted else run.info.run_id)
    if parent.data.tags.get("best.run_id") in retired:
        client.delete_tag(parent_run_id, "best.run_id")
    return said


def _tag_versions_of(client, run_id: str, key: str, value: str) -> None:
    """The tag ``key`` on the registered model versions of run ``run_id``'s model (a sweep's final run's, which carry
    its ``best`` and ``sweep.rank``: ``artifacts.VERSION_TAGS``) that have it: they say what the run says."""
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        if key in (version.tags or {}):
            client.set_model_version_tag(version.name, version.version, key, value)


def trials_with_final_runs(tracking_uri: Optional[str], parent_run_id: Optional[str], trials: list[int]) -> list[int]:
    """Those of ``trials`` whose final run (``best=true``, FINISHED) the store still holds: one deleted (in the trash)
    is trained again by the sweep, as one that did not finish is. Where the store cannot be asked, ``trials``."""
    if not tracking_uri or not parent_run_id or not trials:
        return list(trials)
    try:
        return _by_the_writer("_trials_with_final_runs", tracking_uri, parent_run_id, [int(n) for n in trials])
    except Exception as error:
        log.warning("could not look up the sweep's final runs: %s", error)
        return list(trials)


def _registered_task_refusal(tracking_uri: str, name: str, task: str) -> Optional[str]:
    from pipeline.errors import ConfigError

    from .run import check_registered_task

    try:
        check_registered_task(open_client(tracking_uri), name, task, tracking_uri)
    except ConfigError as refusal:
        return str(refusal)
    return None


def _trials_with_final_runs(tracking_uri: str, parent_run_id: str, trials: list[int]) -> list[int]:
    client = open_client(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.best = 'true'")  # active runs
    held = {int(run.data.tags["sweep.trial_number"]) for run in runs if run.info.status == "FINISHED"
            and run.data.tags.get("sweep.trial_number", "").isdigit()}
    return [number for number in trials if number in held]


def drop_stale_best_tags(tracking_uri: str, run_id: str, keep: list[str]) -> None:
    """The parent run's ``best.<key>`` tags that ``keep`` lacks are deleted: a key the earlier best trial had and the
    new one has not (``best.optimizer.momentum`` of an SGD trial beside ``best.optimizer=adam``). ``best.run_id`` is
    left to :func:`retire_best_runs`, which removes it with the run it names."""
    try:
        _by_the_writer("_drop_stale_best_tags", tracking_uri, run_id, keep)
    except Exception as error:
        log.warning("could not remove the parent run's tags of an earlier best trial: %s", error)


def _drop_stale_best_tags(tracking_uri: str, run_id: str, keep: list[str]) -> list[str]:
    client = open_client(tracking_uri)
    stale = [key for key in client.get_run(run_id).data.tags
             if key.startswith("best.") and key != "best.run_id" and key not in keep]
    for key in stale:
        client.delete_tag(run_id, key)
    return stale


def close_stale_run(tracking_uri: Optional[str], run_id: Optional[str], reason: str) -> None:
    """The run of a trial whose worker died is still RUNNING: mark it KILLED with the reason."""
    if not tracking_uri or not run_id:
        return
    tracking_uri = _unmasked(tracking_uri)
    try:
        store_calls(tracking_uri, [("set_tag", (run_id, "sweep.state", "FAIL"), {}),
                                   ("set_tag", (run_id, "error", reason), {}),
                                   ("set_terminated", (run_id,), {"status": "KILLED"})], wait=False)
    except Exception as error:
        log.warning("could not close MLflow run %s: %s", run_id, error)
