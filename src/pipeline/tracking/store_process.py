"""The store-writer process: every MLflow call of a training process, made in a process of its own.

Started by :mod:`pipeline.tracking.remote` (``python -m pipeline.tracking.store_process``), as early as the
command line allows: it imports MLflow (2.5-4 s on this project's machine) on the other core while the
training process imports torch and Lightning, and afterwards its SQLite writes (~5-10 ms of Python each)
never hold the training process's interpreter lock. It never imports Lightning.

Requests arrive on stdin as pickled ``(op, request id, arguments)`` tuples and are carried out in order;
answers (``(request id, ok, value)``) and failure notices (``(None, "failure", (run key, message))``) go back
on the original stdout, while anything printed here goes to stderr. Each training run is a
:class:`~pipeline.tracking.run.TrackedRun` here, so a store that fails mid-run is noted once and left
alone exactly as in-process; the training process learns of it and ends its run as before. At the end of
stdin (the training process exited or died) the queued requests are carried out and the process exits; a
run its training process did not end stays RUNNING and is closed by the next run on the store (by the
training process's pid and start time in its tags).
"""
from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from pipeline.sqlite import close_write_ahead_logs

log = logging.getLogger("pipeline.tracking.store_process")


class StoreServer:
    def __init__(self, answer: Callable[[tuple], None]):
        self.answer = answer
        self.runs: dict[int, Any] = {}  # run key (chosen by the training process) -> TrackedRun
        self.orphans_closed: set[str] = set()  # tracking URIs whose dead runs this process has closed
        self.experiments: dict[tuple[str, str], str] = {}  # (tracking URI, experiment name) -> id
        self.functions: list[threading.Thread] = []
        self.git_states: dict[str, Any] = {}
        self.not_started: set[int] = set()  # keys of runs that could not be created

    # ----- dispatch ------------------------------------------------------------------------------------
    def handle(self, op: str, request_id: Optional[int], arguments: dict) -> None:
        if op == "call_function":  # long (drawing plots): beside the requests of the runs
            thread = threading.Thread(target=self._handle, args=(op, request_id, arguments), name="store-function")
            self.functions.append(thread)
            thread.start()
            return
        self._handle(op, request_id, arguments)

    def _handle(self, op: str, request_id: Optional[int], arguments: dict) -> None:
        if op != "start_run" and arguments.get("key") in self.not_started:
            # sent while the run was being created (a sweep's trial does not wait): the failure was answered
            if request_id is not None:
                self.answer((request_id, True, None))
            return
        try:
            value = getattr(self, f"op_{op}")(**arguments)
        except Exception as error:  # answered; the training process decides what it means
            from .redact import redact_text

            if op == "start_run":
                self.not_started.add(arguments.get("key"))

            if request_id is not None:
                self.answer((request_id, False, redact_text(f"{type(error).__name__}: {' '.join(str(error).split())}")[:2000]))
            else:
                log.warning("MLflow store request %s failed: %s", op, redact_text(str(error))[:500])
            return
        if request_id is not None:
            self.answer((request_id, True, value))

    def _run(self, key: int):
        return self.runs[key]

    # ----- the store -----------------------------------------------------------------------------------
    def op_warm(self, tracking_uri: Optional[str] = None, modules: tuple[str, ...] = ()) -> None:
        """Import what later requests need (and open the store) before they arrive."""
        import mlflow  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (what opening a local store imports)
        from mlflow.entities import Metric, Param, RunTag  # noqa: F401

        if tracking_uri:
            from .run import open_client, prepare_local_store

            prepare_local_store(tracking_uri)
            open_client(tracking_uri)
        if modules:  # beside the requests that arrive meanwhile (a request needing one of them waits for it)
            threading.Thread(target=_import_all, args=(modules,), name="store-warm", daemon=True).start()

    def op_start_run(self, key: int, tracking_uri: str, experiment_name: str, run_name: Optional[str],
                     artifact_location: Optional[str], tags: dict, parent_run_id: Optional[str],
                     output_dir: Optional[str], liveness: dict, register_as: Optional[str] = None) -> dict:
        from .run import TrackedRun, close_orphaned_runs, open_client

        if tracking_uri not in self.orphans_closed:
            close_orphaned_runs(open_client(tracking_uri))
            self.orphans_closed.add(tracking_uri)
        run = TrackedRun(tracking_uri, experiment_name, run_name=run_name, artifact_location=artifact_location,
                         tags=tags, parent_run_id=parent_run_id, output_dir=Path(output_dir) if output_dir else None,
                         register_as=register_as,
                         close_orphans=False, on_failure=lambda message: self.answer((None, "failure", (key, message))),
                         on_notice=lambda message: self.answer((None, "notice", (key, message))))
        run.experiment = self._cached_experiment(run)
        run.create(liveness)
        self.runs[key] = run
        return {"run_id": run.run_id, "run_name": run.run_name, "experiment_id": run.experiment_id}

    def _cached_experiment(self, run) -> Callable[[], str]:
        find = run.experiment

        def experiment() -> str:
            where = (run.tracking_uri, run.experiment_name)
            if where not in self.experiments:
                self.experiments[where] = find()
            return self.experiments[where]

        return experiment

    def op_call(self, key: int, method: str, args: tuple = (), kwargs: Optional[dict] = None) -> None:
        """A TrackedRun method (log_params, set_tags, log_metrics, log_artifact(s), log_text, log_dict)."""
        getattr(self._run(key), method)(*args, **(kwargs or {}))

    def op_flush(self, key: int) -> Optional[str]:
        run = self._run(key)
        run.flush()
        return run.failure

    def op_end_run(self, key: int, status: str, error: Optional[str]) -> Optional[str]:
        run = self.runs.pop(key)
        run.end(status, error)
        return run.failure

    def op_log_inputs(self, key: int, name: str, source: str, splits: list) -> None:
        from .inputs import log_dataset_entities

        log_dataset_entities(self._run(key), name, source, splits)

    def op_provenance(self, key: int, root: str, command: str, output_dir: Optional[str], rank_zero: bool) -> None:
        """Git state, command, host, user and library versions as tags; every installed package as environment.txt;
        git.diff when the checkout is dirty."""
        from .provenance import git_state, installed_packages, provenance_tags

        run = self._run(key)
        if not run.active:
            return
        # the code a training process runs was imported when it started: its checkout's state is read once
        if root not in self.git_states:
            self.git_states[root] = git_state(Path(root))
        git = self.git_states[root]
        run.set_tags(provenance_tags(Path(root), git, command=command))
        run.log_text(installed_packages(), "environment.txt")  # this process runs the training's interpreter
        if git is not None and git.dirty and output_dir:
            diff = Path(output_dir) / "git.diff"
            if rank_zero:
                diff.write_text(git.diff)  # masked by git_state (redact_diff)
            run.log_artifact(diff)

    def op_log_model(self, key: int, model: bytes, example, search_path: list[str]) -> Optional[str]:
        """A model that takes tensors, sent pickled by the training process through this process's own pipe (never a
        file); exported and logged as in-process. An error answer starting with ``unavailable:`` means the module
        could not be loaded here (the training process then logs it itself)."""
        import torch

        from .artifacts import log_model

        for entry in reversed(search_path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        try:
            predictor = pickle.loads(model)
        except Exception as error:
            raise RuntimeError(f"unavailable: {type(error).__name__}: {error}") from None
        return log_model(self._run(key), predictor, torch.as_tensor(example))

    def op_log_model_parts(self, key: int, folder: str, artifacts: dict[str, str], description: dict,
                           model_name: str) -> Optional[str]:
        """A raw-rows model whose parts the training process wrote into ``folder`` (deleted here when done): MLflow's
        part only, without torch."""
        import shutil

        from .raw_model import log_model_parts

        try:
            return log_model_parts(self._run(key), artifacts, description, model_name)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # ----- runs of a sweep that this process did not create ------------------------------------------------
    def op_client_call(self, tracking_uri: str, calls: list[tuple[str, tuple, dict]]) -> list:
        """MlflowClient methods on any run (a sweep's parent run, tags on a finished trial's run)."""
        from .run import open_client, prepare_local_store

        prepare_local_store(tracking_uri)
        client = open_client(tracking_uri)
        return [self._client_call(client, method, args, kwargs) for method, args, kwargs in calls]

    @staticmethod
    def _client_call(client, method: str, args: tuple, kwargs: dict):
        from mlflow.entities import Metric, Param, RunTag

        if method == "log_batch":  # entities travel as tuples: the training process has no MLflow
            kwargs = dict(kwargs)
            kwargs["metrics"] = [Metric(*m) for m in kwargs.get("metrics", ())]
            kwargs["params"] = [Param(*p) for p in kwargs.get("params", ())]
            kwargs["tags"] = [RunTag(*t) for t in kwargs.get("tags", ())]
        if method == "create_run":
            return client.create_run(*args, **kwargs).info.run_id
        if method == "close_orphans":  # runs left RUNNING by processes that died (a sweep's start)
            from .run import close_orphaned_runs

            return close_orphaned_runs(client)
        if method == "experiment_of_run":  # (id, name) of the experiment holding a run
            experiment = client.get_experiment(client.get_run(*args).info.experiment_id)
            return experiment.experiment_id, experiment.name
        if method == "experiment_id":
            from .run import TrackedRun

            tracking_uri, name, location = args
            locator = TrackedRun(tracking_uri, name, artifact_location=location)
            locator.client = client
            return locator.experiment()
        getattr(client, method)(*args, **kwargs)
        return None

    def op_call_function(self, function: str, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        """A function of this package (``module:name``), e.g. drawing a sweep's plots while the training
        process goes on."""
        import importlib

        module, name = function.split(":")
        return getattr(importlib.import_module(module), name)(*args, **(kwargs or {}))

    def op_log_config(self, key: int, resolved: dict, choices: dict, overrides: list, extra: dict) -> None:
        """The whole config as params (flattened, redacted) and the chosen options and overrides."""
        from .params import config_params

        params = config_params(resolved, choices, overrides)
        params.update(extra)
        self._run(key).log_params(params)

    def close(self) -> None:
        for thread in self.functions:
            thread.join()
        for key, run in list(self.runs.items()):
            if run._heartbeat is not None:
                run._heartbeat.set()
            run.flush()


def _import_all(modules: tuple[str, ...]) -> None:
    """Each ``module`` imported, or ``module:function`` called (a function that imports, see
    ``pipeline.lean_imports``)."""
    import importlib

    for entry in modules:
        module, _, function = entry.partition(":")
        imported = importlib.import_module(module)
        if function:
            getattr(imported, function)()


def main() -> None:
    # Ctrl-C in a terminal and a scheduler's SIGTERM reach the whole process group: the training process
    # ends its runs (KILLED) through this process, which must outlive that moment
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the answers
    requests = sys.stdin.buffer
    # MLflow sets its loggers' levels itself when imported (a level set here before was undone): its own
    # variable keeps its "SQLAlchemy database error" tracebacks (a full disk: ~200 lines) off the console
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "CRITICAL")
    for name in ("mlflow", "alembic", "pipeline.tracking.run", "urllib3.connectionpool"):
        # the training process reports store failures (once) and outages; MLflow's and urllib3's retries are not news here
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.basicConfig(level=logging.WARNING, format="[store writer] %(message)s")
    answer_lock = threading.Lock()

    def answer(message: tuple) -> None:
        with answer_lock:
            try:
                pickle.dump(message, answers, protocol=pickle.HIGHEST_PROTOCOL)
                answers.flush()
            except (BrokenPipeError, ValueError):
                pass  # the training process is gone; its answers are not needed

    server = StoreServer(answer)
    lanes = Lanes(server)
    while True:
        try:
            request = pickle.load(requests)
        except (EOFError, OSError, pickle.UnpicklingError):
            break
        lanes.put(request)
    lanes.close()
    server.close()
    close_write_ahead_logs()
    try:
        answers.close()  # flushes what is left: a training process killed (kill -9) no longer reads it
    except (BrokenPipeError, OSError, ValueError):
        pass
    # everything is in the store (committed, files closed): skip the interpreter's teardown of MLflow, SQLAlchemy
    # and torch (and their exit handlers), 2-3 s the training command would otherwise wait for at its exit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class Lanes:
    """One queue and thread per run (requests carrying its ``key``), one for everything else: the requests of a
    run are carried out in order, while a new trial's run is created without waiting behind the previous
    trial's writes. A ``client_call`` (tags on a run this process did not start, e.g. a finished trial's state)
    is carried out after everything already asked of every run: it may tag a run whose own lane is still
    writing."""

    def __init__(self, server: StoreServer):
        self.server = server
        self.lanes: dict[Any, tuple[queue.Queue, threading.Thread]] = {}
        self.ending: list[threading.Thread] = []  # lanes told to end (their run's end_run is queued)

    def put(self, request: tuple) -> None:
        op, request_id, arguments = request
        lane = arguments.get("key") if op not in ("warm", "client_call", "call_function") else None
        if op == "client_call":
            self.ending = [thread for thread in self.ending if thread.is_alive()]
            markers = []
            for key, (inbox, _) in self.lanes.items():
                if key is not None:
                    marker = threading.Event()
                    inbox.put(marker)
                    markers.append(marker)
            request = ("after", list(self.ending), markers, request)
        if lane not in self.lanes:
            inbox: queue.Queue = queue.Queue()
            thread = threading.Thread(target=self._serve, args=(inbox,), name=f"store-lane-{lane}")
            self.lanes[lane] = (inbox, thread)
            thread.start()
        self.lanes[lane][0].put(request)
        if op == "end_run":  # nothing more comes for this run
            inbox, thread = self.lanes.pop(lane)
            inbox.put(None)
            self.ending.append(thread)

    def _serve(self, inbox: queue.Queue) -> None:
        while True:
            request = inbox.get()
            if request is None:
                return
            if isinstance(request, threading.Event):  # a later client_call waits for this lane up to here
                request.set()
                continue
            if request[0] == "after":
                _, threads, markers, request = request
                for thread in threads:
                    thread.join()
                for marker in markers:
                    marker.wait()
            self.server.handle(*request)

    def close(self) -> None:
        """Carry out what is queued (the end of stdin: the training process exited or died)."""
        for inbox, _ in self.lanes.values():
            inbox.put(None)
        for thread in threading.enumerate():
            if thread.name.startswith("store-lane-"):
                thread.join()


if __name__ == "__main__":
    main()
