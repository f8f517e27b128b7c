"""The training process's side of the store-writer process (:mod:`pipeline.tracking.store_process`).

One writer process per training process, started on first use (``pipeline-train`` starts it before it
imports torch, see :func:`start_early`) and reused by every run of the process (the trials of a sweep). A
:class:`RemoteRun` is a :class:`~pipeline.tracking.run.TrackedRun` whose MLflow calls are sent to it:
training never imports MLflow and never waits for the store, except where an answer is needed (a single run's
id when it starts, its end; a sweep's trial waits for neither). The guarantees stay those of the in-process
run: a failing store is noted once and training goes on, the run ends FINISHED, FAILED or KILLED, and every
run is ended in the store before the command returns. ``PIPELINE_STORE_WRITER=0`` makes every call in the
training process again.
"""
from __future__ import annotations

import atexit
import itertools
import logging
import os
import pickle
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Optional

from pipeline.errors import ConfigError, TrackingUnavailable

from .redact import redact_text
from .run import TrackedRun, check_reachable, error_text, open_client

log = logging.getLogger("pipeline.tracking.run")

WRITER_SWITCH = "PIPELINE_STORE_WRITER"
# how long the command waits, when it exits, for requests that needed no answer (tags of a finished trial)
EXIT_WAIT_S = 120.0


def enabled() -> bool:
    return os.environ.get(WRITER_SWITCH, "1") != "0"


class StoreWriter:
    """The writer process and the two pipes to it."""

    _instance: Optional["StoreWriter"] = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "StoreWriter":
        """This process's writer, started when there is none (or it is gone)."""
        with cls._lock:
            writer = cls._instance
            if (writer is None or writer.owner != os.getpid() or writer.gone is not None
                    or writer.process.poll() is not None):
                writer = cls._instance = StoreWriter()
            return writer

    def __init__(self):
        self.owner = os.getpid()
        self.process = subprocess.Popen([sys.executable, "-m", "pipeline.tracking.store_process"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self.gone: Optional[str] = None
        self.used = False  # asked for anything but warming up
        self.warmed_for_model = False  # warm_for_model has asked for the model's modules
        self.closed = False
        self.runs: dict[int, "RemoteRun"] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[int, Future] = {}
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read_answers, name="store-writer-answers", daemon=True).start()
        atexit.register(self.close)

    # ----- requests --------------------------------------------------------------------------------------
    def send(self, op: str, **arguments) -> None:
        """A request whose answer nobody waits for (its failure reaches the run it belongs to)."""
        self._write((op, None, arguments))

    def ask(self, op: str, **arguments) -> tuple[bool, Any]:
        """A request and its answer: (True, value) or (False, what went wrong)."""
        return self.ask_later(op, **arguments).result()

    def ask_later(self, op: str, **arguments) -> Future:
        """A request; the future gets its answer."""
        future: Future = Future()
        request_id = next(self._ids)
        self._waiting[request_id] = future
        self._write((op, request_id, arguments))
        return future

    def _write(self, message: tuple) -> None:
        self.used = self.used or message[0] != "warm"
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            if self.gone is not None:
                self._answer_all()
                return
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as error:
                self._lost(f"the store-writer process cannot be reached ({type(error).__name__})")

    def _read_answers(self) -> None:
        answers = self.process.stdout
        while True:
            try:
                request_id, ok, value = pickle.load(answers)
            except Exception:  # end of the pipe: the process exited or was killed
                code = self.process.wait()
                if self.closed and code == 0:
                    # the end close() asked for: every failure was reported before it, so the runs that are still
                    # registered (a sweep's trials, which end without waiting) lost nothing
                    self.gone = "the store-writer process has finished"
                    self._answer_all()
                    return
                self._lost(f"the store-writer process ended (exit code {code})")
                return
            if request_id is None and ok == "failure":
                key, message = value
                run = self.runs.get(key)
                if run is not None:
                    run.note_failure(message)
                continue
            if request_id is None and ok == "notice":  # a server that stopped answering, or answers again
                log.warning("%s", value[1])
                continue
            future = self._waiting.pop(request_id, None)
            if future is not None:
                future.set_result((ok, value))

    def _lost(self, why: str) -> None:
        if self.gone is None:
            self.gone = why
        self._answer_all()
        for run in list(self.runs.values()):
            run.note_failure(f"while writing: {why}")

    def _answer_all(self) -> None:
        for request_id in list(self._waiting):
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result((False, self.gone))

    def close(self) -> None:
        """No more requests: the writer carries out what is queued and exits; this waits for it, so that the
        store holds everything when the command returns."""
        if self.owner != os.getpid() or self.closed:
            return
        self.closed = True
        if not self.used:  # it only imported MLflow: nothing of the store to wait for
            self.process.kill()
            self.process.wait()
            return
        with self._send_lock:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("the MLflow store-writer process did not finish within %.0f s; stopping it", EXIT_WAIT_S)
            self.process.kill()


def _release_in_child() -> None:
    """In a process forked from one with a writer (DataLoader workers): let go of the pipe to the writer. The
    writer ends when its input reaches end-of-file, which never happens while a forked copy of the write end
    stays open (persistent workers outlive the training loop): the command would wait for it at exit."""
    writer = StoreWriter._instance
    stdin = getattr(getattr(writer, "process", None), "stdin", None)
    if stdin is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdin.fileno())  # the file object stays valid; the pipe's write end is released
        os.close(devnull)
    except (OSError, ValueError):
        pass
    writer.closed = True  # the child never writes to its parent's writer


os.register_at_fork(after_in_child=_release_in_child)


def close_writer() -> None:
    """Wait until this process's writer has carried out every request and exited (also done at exit)."""
    writer = StoreWriter._instance
    if writer is not None and writer.owner == os.getpid():
        writer.close()


# what logging a model imports in the writer, warmed while training runs: a raw-rows model's (exported by the
# training process) needs MLflow's pyfunc flavour; a model that takes tensors is exported there too (torch.export's
# tracer alone is ~1.4 s)
RAW_MODEL_MODULES = ("mlflow.pyfunc", "mlflow.models.model", "pipeline.tracking.pyfunc_model")
MODEL_EXPORT_MODULES = ("torch", "torch.export", "torch.export._trace", "mlflow.pytorch")


def start_early(tracking_uri: Optional[str] = None, modules: tuple[str, ...] = ()) -> None:
    """Start the writer and have it import MLflow (and open ``tracking_uri``, import ``modules``) now, while this
    process goes on importing torch and Lightning."""
    if enabled():
        StoreWriter.get().send("warm", tracking_uri=tracking_uri, modules=tuple(modules))


def warm_for_model(raw_rows: bool) -> None:
    """Have this process's writer import, while training goes on, what logging the model will need at the end:
    MLflow's pyfunc flavour for a model that takes raw rows, torch's exporter for one that takes tensors. Asked once
    per writer: by ``pipeline-train`` as soon as the config names the data (``pipeline.data.TENSOR_MODEL_DATA``, before
    torch is imported), else when a run starts (the data module's class says)."""
    writer = StoreWriter._instance
    if writer is not None and writer.owner == os.getpid() and not writer.warmed_for_model:
        writer.warmed_for_model = True
        writer.send("warm", modules=RAW_MODEL_MODULES if raw_rows else MODEL_EXPORT_MODULES)


_keys = itertools.count(1)


class RemoteRun(TrackedRun):
    """A TrackedRun whose store calls are carried out by the store-writer process."""

    def __init__(self, *args, log_model_expected: bool = False, wait_for_store: bool = True, **kwargs):
        self._starting: Optional[Future] = None  # the writer's answer to start_run, while not yet read
        self.start_error: Optional[Exception] = None  # TrackingUnavailable, or a ConfigError the store's contents gave
        super().__init__(*args, **kwargs)
        self.key = next(_keys)
        self.writer: Optional[StoreWriter] = None
        self.log_model_expected = log_model_expected
        # False for a sweep's trial: its run is created and ended without waiting for the store (its id is read
        # where it is first needed), so the trial trains meanwhile and the next one starts at once; a store
        # failure is still logged, and the command waits for the writer at exit
        self.wait_for_store = wait_for_store

    @property
    def run_id(self) -> Optional[str]:
        if self._starting is not None:
            self._settle_start()
        return self._run_id

    @run_id.setter
    def run_id(self, value: Optional[str]) -> None:
        self._run_id = value

    @property
    def active(self) -> bool:
        """As for an in-process run; a run being created counts (what is sent now is carried out after it)."""
        return self.enabled and (self._starting is not None or self._run_id is not None) and self.failure is None

    def known_run_id(self) -> Optional[str]:
        """The run's id if the store has answered already (never waits)."""
        if self._starting is not None and not self._starting.done():
            return None
        return self.run_id

    @property
    def client(self):
        """An MlflowClient in this process, made on first use, for code written against an in-process TrackedRun
        (``run.client.log_...``); it imports MLflow here, which the writer spares everything else."""
        if getattr(self, "_client", None) is None and self.enabled and self.run_id is not None:
            self._client = open_client(self.tracking_uri)
        return getattr(self, "_client", None)

    @client.setter
    def client(self, value) -> None:
        self._client = value

    # ----- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> "RemoteRun":
        if not self.enabled:
            return self
        check_reachable(self.tracking_uri)
        from .run import liveness_tags

        self.writer = StoreWriter.get()
        self.writer.runs[self.key] = self
        self._starting = self.writer.ask_later(
            "start_run", key=self.key, tracking_uri=self.tracking_uri, experiment_name=self.experiment_name,
            run_name=self.run_name, artifact_location=self.artifact_location, tags=self.tags,
            parent_run_id=self.parent_run_id, output_dir=str(self.output_dir) if self.output_dir else None,
            liveness=liveness_tags(), register_as=self.register_as)
        if self.wait_for_store:
            try:
                self._settle_start()
            except BaseException:  # Ctrl-C or SIGTERM while the writer creates the run: no __exit__ would end it
                self.__exit__(*sys.exc_info())
                raise
            if self.start_error is not None:
                raise self.start_error
        return self

    def _settle_start(self) -> None:
        """Read the writer's answer to start_run (waiting for it). A run that could not be created records nothing
        more: ``start_error`` says why (raised when the run's block ends, if nothing else went wrong first)."""
        ok, value = self._starting.result()
        self._starting = None
        if ok:
            self._run_id, self.run_name, self.experiment_id = value["run_id"], value["run_name"], value["experiment_id"]
            return
        self.writer.runs.pop(self.key, None)
        self.writer = None
        if str(value).startswith(f"{ConfigError.__name__}: "):  # the config refused by what the store holds: as is
            self.start_error = ConfigError(str(value)[len(ConfigError.__name__) + 2:])
            return
        self.start_error = TrackingUnavailable(
            f"cannot create an MLflow run in {redact_text(str(self.tracking_uri))}: {error_text(value)}")

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._starting is not None:
            self._settle_start()
        if self.start_error is not None:
            if exc_type is None:
                raise self.start_error
            log.error("%s", self.start_error)  # the original error matters more
            return False
        return super().__exit__(exc_type, exc, tb)

    def end(self, status: str, error: Optional[str]) -> None:
        if self.writer is None:
            return
        if not self.wait_for_store:
            self.writer.send("end_run", key=self.key, status=status, error=error)
            if self.failure is None:
                self.final_status = status
            return
        ok, failure = self.writer.ask("end_run", key=self.key, status=status, error=error)
        self.writer.runs.pop(self.key, None)
        if not ok:
            self.note_failure(f"while ending the run: {failure}")
        elif failure is not None:
            self.note_failure(failure)
        elif self.failure is None:
            self.final_status = status

    def note_failure(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            log.error("MLflow store failed %s; training goes on without it, results are kept in %s",
                      message, self.output_dir)

    # ----- logging ---------------------------------------------------------------------------------------
    def _call(self, method: str, *args, **kwargs) -> None:
        if self.active:
            self.writer.send("call", key=self.key, method=method, args=args, kwargs=kwargs)

    def log_params(self, params) -> None:
        self._call("log_params", {str(k): str(v) for k, v in params.items()})

    def set_tags(self, tags) -> None:
        if tags:
            self._call("set_tags", {str(k): redact_text(str(v))[:5000] for k, v in tags.items()})

    def log_metrics(self, metrics, step: int) -> None:
        if metrics:
            self._call("log_metrics", {str(k): float(v) for k, v in metrics.items()}, int(step))

    def flush(self, wait: bool = True) -> None:
        if not self.active or not self.wait_for_store:
            return
        if not wait:  # the writer writes what it holds of the run; a failure is read at the next waiting flush
            self.writer.send("flush", key=self.key)
            return
        ok, failure = self.writer.ask("flush", key=self.key)
        if not ok or failure:
            self.note_failure(failure if ok else f"while writing: {failure}")

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        self._call("log_artifact", Path(path), artifact_path)

    def log_artifacts(self, directory: Path, artifact_path: Optional[str] = None) -> None:
        self._call("log_artifacts", Path(directory), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._call("log_text", text, artifact_file)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        self._call("log_dict", data, artifact_file)

    # ----- what the writer builds itself -------------------------------------------------------------------
    def send_dataset_inputs(self, name: str, source: str, splits: list[dict]) -> None:
        if self.active:
            self.writer.send("log_inputs", key=self.key, name=name, source=source, splits=splits)

    def send_config(self, resolved: dict, choices: dict, overrides: list, extra: dict) -> None:
        if self.active:
            self.writer.send("log_config", key=self.key, resolved=resolved, choices=choices, overrides=overrides,
                             extra=extra)

    def send_provenance(self, root: Path, command: str, rank_zero: bool) -> None:
        if self.active:
            self.writer.send("provenance", key=self.key, root=str(root), command=command,
                             output_dir=str(self.output_dir) if self.output_dir else None, rank_zero=rank_zero)

    def start_model(self, predictor, example) -> Callable[[], tuple[Optional[str], Optional[TrackedRun]]]:
        """Have the writer export and log the model (one that takes tensors); the returned function waits and gives
        (format, None), or (None, an in-process run to log it with) when the writer cannot load the module (it
        pickles classes by reference: one defined in ``__main__`` is not found there)."""
        try:
            model = pickle.dumps(predictor, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return lambda: (None, self.in_process())
        answer = self.writer.ask_later("log_model", key=self.key, model=model, example=example.numpy(),
                                       search_path=list(sys.path))

        def wait() -> tuple[Optional[str], Optional[TrackedRun]]:
            ok, value = answer.result()
            if ok:
                return value, None
            if str(value).startswith("RuntimeError: unavailable:"):
                return None, self.in_process()
            self.note_failure(f"while logging the model: {value}")
            return None, None

        return wait

    def start_model_parts(self, folder: str, artifacts: dict[str, str], description: dict,
                          model_name: str) -> Callable[[], Optional[str]]:
        """Have the writer log the raw-rows model whose parts this process wrote into ``folder`` (the writer deletes
        it afterwards; so does the returned function, for a writer that died first); the returned function waits and
        gives the predictor's format."""
        answer = self.writer.ask_later("log_model_parts", key=self.key, folder=folder, artifacts=artifacts,
                                       description=description, model_name=model_name)

        def wait() -> Optional[str]:
            import shutil

            ok, value = answer.result()
            shutil.rmtree(folder, ignore_errors=True)
            if ok:
                return value
            self.note_failure(f"while logging the model: {value}")
            return None

        return wait

    def in_process(self) -> TrackedRun:
        """This run seen through an MLflow client of this process (for what the writer cannot do)."""
        view = TrackedRun(self.tracking_uri, self.experiment_name, run_name=self.run_name, output_dir=self.output_dir,
                          close_orphans=False, on_failure=self.note_failure)
        view.client = open_client(self.tracking_uri)
        view.run_id, view.experiment_id = self.run_id, self.experiment_id
        return view


def client_calls(tracking_uri: str, calls: list[tuple[str, tuple, dict]], wait: bool = True) -> Optional[list]:
    """MlflowClient calls (``(method, args, kwargs)``) on runs this process did not start (a sweep's parent
    run, a finished trial's tags), made by the writer. Waits for the results unless ``wait`` is false;
    raises :class:`TrackingUnavailable` when they failed."""
    if not wait:
        StoreWriter.get().send("client_call", tracking_uri=tracking_uri, calls=calls)
        return None
    return client_calls_later(tracking_uri, calls)()


def client_calls_later(tracking_uri: str, calls: list[tuple[str, tuple, dict]]) -> Callable[[], list]:
    """:func:`client_calls` sent now; the returned function waits for their results (or raises)."""
    answer = StoreWriter.get().ask_later("client_call", tracking_uri=tracking_uri, calls=calls)

    def results() -> list:
        ok, value = answer.result()
        if not ok:
            raise TrackingUnavailable(f"MLflow store {redact_text(tracking_uri)}: {value}")
        return value

    return results


def call_in_writer(function: str, *args, **kwargs) -> Future:
    """Run ``module:function`` in the writer process (e.g. drawing plots while this process trains); the
    future holds (ok, value)."""
    writer = StoreWriter.get()
    future: Future = Future()

    def wait() -> None:
        future.set_result(writer.ask("call_function", function=function, args=args, kwargs=kwargs))

    threading.Thread(target=wait, name="store-writer-call", daemon=True).start()
    return future
