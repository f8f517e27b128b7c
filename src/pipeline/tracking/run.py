"""The MLflow run lifecycle. This module (and the rest of ``tracking/``) is the only code that
talks to MLflow; training code sees a Lightning logger and a few ``log_*`` calls.

One training run is one MLflow run, created by global rank 0 only. Its status says how it
ended: FINISHED, FAILED (with the error as a tag) or KILLED (Ctrl-C / SIGTERM).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional

from pipeline.errors import TrackingFailed, TrackingUnavailable
from pipeline.ranks import is_rank_zero
from pipeline.sqlite import sqlite_path, sqlite_uri

from .redact import redact_text

log = logging.getLogger(__name__)


# the stores MLflow 3 can track into (a plain local path counts as file:)
TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc")


def _scheme(tracking_uri: str) -> str:
    """A tracking URI's scheme as MLflow reads it: ``file`` for a plain path."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", tracking_uri)
    scheme = match.group(1).lower().split("+", 1)[0] if match else "file"
    return "file" if len(scheme) == 1 else scheme  # a Windows drive letter, C://...


def refused_folder_store(tracking_uri: str) -> Optional[str]:
    """The folder of a folder store (a plain path, ``file:``), which MLflow 3 refuses (in maintenance) unless
    MLFLOW_ALLOW_FILE_STORE is set; None for any other store, or where it is set."""
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1")
    if _scheme(tracking_uri) != "file" or allowed:
        return None
    return re.sub(r"^file:(//)?", "", tracking_uri).rstrip("/") or "."


def check_tracking_uri(tracking_uri: str) -> None:
    """A tracking URI MLflow cannot use is refused with the key named, before anything runs."""
    scheme = _scheme(tracking_uri)
    given = (f"MLFLOW_TRACKING_URI={redact_text(tracking_uri)}" if os.environ.get("MLFLOW_TRACKING_URI") == tracking_uri
             else f"logger.mlflow.tracking_uri={redact_text(tracking_uri)}")
    if scheme not in TRACKING_SCHEMES:
        raise TrackingUnavailable(
            f"{given}: MLflow cannot track to a {scheme}:// store; use sqlite:///path/mlflow.db, "
            "http(s)://host:port of an MLflow server, or postgresql://host/db")
    folder = refused_folder_store(tracking_uri)
    if folder is not None:  # said here, before the data is read
        raise TrackingUnavailable(
            f"{given}: a folder store, which MLflow 3 no longer opens by default; use a database in it, "
            f"sqlite:///{folder}/mlflow.db (or leave the variable unset for the local store, mlruns/mlflow.db), "
            "or set MLFLOW_ALLOW_FILE_STORE=true to use the folder as it is")


def writable_example(name: str) -> str:
    """``name`` under a folder this process can write: the current one, else the home or temporary folder (a
    read-only working directory made an example repeat the failing place)."""
    import tempfile

    for base in (Path.cwd(), Path.home(), Path(tempfile.gettempdir())):
        if os.access(base, os.W_OK):
            return name if base == Path.cwd() else str(base / name)
    return name


def check_store_folder(tracking_uri: str) -> None:
    """A local store's folder can be made and written (started in a read-only folder, a run failed once its data was
    read, with the store's OSError and no word of the key to set)."""
    database = sqlite_path(tracking_uri)
    if database is None:
        return
    if database.is_file() and not _opens_as_sqlite(database):  # sqlite's error, with its SQL, once the data was read
        raise TrackingUnavailable(f"the MLflow store {redact_text(tracking_uri)}: {database} is not an SQLite "
                                  "database; give the store a database of its own (or a new file), or log nothing "
                                  "with logger=none")
    existing = database.parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    problem = f"{existing} is a file" if not existing.is_dir() else (
        None if os.access(existing, os.W_OK) else f"{existing} is not writable")
    if problem is None:
        return
    if os.environ.get("MLFLOW_TRACKING_URI") == tracking_uri:
        given, fix = "MLFLOW_TRACKING_URI", f"MLFLOW_TRACKING_URI=sqlite:///{writable_example('mlruns')}/mlflow.db"
    else:
        given, fix = "paths.mlruns_dir", f"paths.mlruns_dir={writable_example('mlruns')}"
    raise TrackingUnavailable(f"the MLflow store {redact_text(tracking_uri)} ({given}) cannot be written there "
                              f"({problem}); give it a writable folder, e.g. {fix}, or log nothing with logger=none")


def error_text(error: BaseException) -> str:
    """An error's text on one line, without the SQL statement and parameters SQLAlchemy appends (they hold the
    run's values and bury the reason)."""
    text = " ".join(str(error).split())
    text = re.sub(r"\s*\[SQL: .*?\](?=\s*(\[|\(Background|$))", "", text)
    text = re.sub(r"\s*\[parameters: .*?\](?=\s*(\(Background|$))", "", text)
    return re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)


class _OutageWords(NamedTuple):
    store: str  # "MLflow store <uri>"
    noun: str  # store, server
    down: str  # is locked by another process
    back: str  # is free again
    still: str  # is still locked
    lasted: str  # has been locked


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast when an http(s) tracking server does not answer (not after an hour of training).
    Credentials in the URI (http://user:password@host) are sent as HTTP basic auth, as MLflow does."""
    check_tracking_uri(tracking_uri)
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.parse

    parts = urllib.parse.urlsplit(tracking_uri)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    request = urllib.request.Request(url)
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # the server answered, even if it has no /health route
    except Exception as error:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        raise TrackingUnavailable(
            f"MLflow tracking server {redact_text(tracking_uri)} does not answer ({error}). Start it "
            f"(mlflow server --host {parts.hostname or '127.0.0.1'} --port {port}), fix logger.mlflow.tracking_uri / "
            "MLFLOW_TRACKING_URI, or run without a server: unset MLFLOW_TRACKING_URI for the local store, or logger=none"
        ) from None


def check_registered_task(client, name: str, task: Optional[str], tracking_uri: str) -> None:
    """Refuse (before the run is created, so before it trains) to make a run of ``task`` a version of the registered
    model ``name`` whose versions are of another task (their runs' ``task`` tag): ``models:/<name>/latest`` would
    then serve a regression model where a classifier was, and ``pipeline-predict`` mix tasks without a word. Where
    the registry cannot be asked, nothing is refused: registering at the run's end says what fails."""
    if not task:
        return
    try:
        versions = client.search_model_versions(f"name = '{name}'")
        found = {}
        for version in sorted(versions, key=lambda v: -int(v.version)):
            if version.run_id:
                other = client.get_run(version.run_id).data.tags.get("task")
                if other and other != task:
                    found.setdefault(other, version.version)
    except Exception:
        return
    if found:
        held = ", ".join(f"task={other} (version {number})" for other, number in sorted(found.items()))
        from pipeline.errors import ConfigError

        raise ConfigError(
            f"logger.mlflow.register_as={name}: the registered model '{name}' in {redact_text(tracking_uri)} holds "
            f"versions of {held}, and this run is task={task}: models:/{name}/latest would serve another task's "
            f"model; register it under another name (e.g. logger.mlflow.register_as={name}-{task}) or leave "
            "register_as out")


#: the tag that marks a run whose split digests (its MLflow dataset inputs, tag data_digest) identify the rows drawn
#: (raw inputs and targets, before preprocessing); runs logged before it digested the preprocessed inputs, which change
#: with preprocessing fitted on the training rows. Digests are compared only with digests of the same kind.
DIGESTS_TAG, ROWS, PREPROCESSED = "split_digests", "rows", "preprocessed"


def digest_kind(run) -> str:
    """:data:`ROWS` or, for a run logged before (no tag), :data:`PREPROCESSED`."""
    return ROWS if run.data.tags.get(DIGESTS_TAG) == ROWS else PREPROCESSED


def default_store() -> tuple[str, str]:
    """(tracking URI, artifact folder) of the default store, as conf/logger/mlflow.yaml has them:
    ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<working dir>/mlruns/mlflow.db``; artifacts in
    ``<working dir>/mlruns/artifacts``. The command-line tools use it."""
    mlruns = Path.cwd() / "mlruns"
    return os.environ.get("MLFLOW_TRACKING_URI") or sqlite_uri(mlruns / "mlflow.db"), str(mlruns / "artifacts")


def prepare_local_store(tracking_uri: str) -> None:
    path = sqlite_path(tracking_uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def store_creation_lock(tracking_uri: str):
    """MLflow creates and migrates a SQLite store on first use; two processes doing that at once break
    each other's migration ("table _alembic_tmp_... already exists"). A lock file next to the database
    makes them take turns. Once the tables exist, SQLite's own locking (MLflow waits up to 20 s for a
    busy database) is enough."""
    path = sqlite_path(tracking_uri)
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_client(tracking_uri: str):
    """An ``MlflowClient`` on ``tracking_uri``, creating a local SQLite store safely if it is new."""
    from mlflow import MlflowClient

    if tracking_uri.startswith(("http://", "https://")):
        limit_http_retries()
    for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..." is no news
        logger = logging.getLogger(name)  # (not below a level set for all of MLflow: the store-writer's)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    database = sqlite_path(tracking_uri)
    # MLflow makes the database's folder from the URI as written, %-escapes and all: odd/q%3Fx beside odd/q?x
    as_written = Path(tracking_uri.removeprefix("sqlite:///")).parent if database is not None else None
    stray = [] if as_written is None or as_written == database.parent else \
        [f for f in (as_written, *as_written.parents) if not f.exists()]
    with store_creation_lock(tracking_uri):
        client = MlflowClient(tracking_uri)  # creates (and migrates) the store's tables
    for folder in stray:  # deepest first; only those MLflow made, while empty
        try:
            folder.rmdir()
        except OSError:
            break
    if sqlite_path(tracking_uri) is not None:
        from pipeline.sqlite import use_write_ahead_log

        # a run writes dozens of small records (params, tags, a metric row per epoch, a trial's run per trial)
        engine = getattr(getattr(client._tracking_client, "store", None), "engine", None)
        if engine is not None:
            use_write_ahead_log(engine)
    return client


class StoreUnusable(LookupError):
    """The store a run tool was given cannot be one: a folder, a file that is no database (the message says which)."""


def check_store_to_read(tracking_uri: str) -> None:
    """The store a run tool (pipeline-compare, -ui, -eval, -predict, -rerun) is given, checked before MLflow opens it:
    a folder gave MLflow's traceback ("The filesystem tracking backend ... is in maintenance mode", exit 1),
    ``sqlite:///<folder>`` its retries of "unable to open database file" for minutes, a file that is no database
    sqlite's traceback."""
    given = ("MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") == tracking_uri else "--tracking-uri")
    shown = f"{given}={redact_text(tracking_uri)}"
    folder = refused_folder_store(tracking_uri)
    if folder is not None:
        there = " (there is one)" if (Path(folder) / "mlflow.db").is_file() else ""
        raise StoreUnusable(f"{shown}: a folder store, which MLflow 3 no longer opens by default; give the database "
                            f"in it, --tracking-uri sqlite:///{Path(folder).absolute()}/mlflow.db{there}, or set "
                            "MLFLOW_ALLOW_FILE_STORE=true to use the folder as it is")
    database = sqlite_path(tracking_uri)
    if database is None:
        return
    if database.is_dir():
        there = " (there is one)" if (database / "mlflow.db").is_file() else ""
        raise StoreUnusable(f"{shown}: {database} is a folder; the store is the database file in it, e.g. "
                            f"--tracking-uri sqlite:///{database}/mlflow.db{there}")
    if database.is_file() and not _opens_as_sqlite(database):
        raise StoreUnusable(f"{shown}: {database} is not an SQLite database (an MLflow store is one, e.g. "
                            "mlruns/mlflow.db where pipeline-train ran)")


def _opens_as_sqlite(database: Path) -> bool:
    """Whether SQLite reads ``database`` as a database (an empty file is one, to be). Asked of SQLite itself: a file
    opened and closed here beside this process's own connection to the store would drop that connection's POSIX
    locks (close() releases every lock the process holds on the file), and a writer beside it could then damage it."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{database.absolute().as_uri()}?mode=ro", uri=True)) as connection:
            connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as error:
        return "not a database" not in str(error)
    return True


def existing_client(tracking_uri: str, wanted: str = ""):
    """``open_client`` for a command that looks runs up (pipeline-rerun, -eval, -predict): a local store that does not
    exist is not created (an empty mlruns/mlflow.db was left where the command started) but said, as LookupError."""
    check_store_to_read(tracking_uri)
    database = sqlite_path(tracking_uri)
    if database is not None and not database.exists():
        raise LookupError(f"{wanted + ': ' if wanted else ''}no MLflow store at {database} (nothing was trained with "
                          "it): give the store the run went to with --tracking-uri or MLFLOW_TRACKING_URI, or start "
                          "the command in the folder pipeline-train ran in (its store is mlruns/mlflow.db there)")
    return open_client(tracking_uri)


def limit_http_retries() -> None:
    """MLflow retries a failed HTTP call 7 times with exponential backoff: minutes per call. A server that
    stops answering mid-run should cost seconds, after which training goes on without it. Values the user
    set in the environment win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


# ----- runs whose process died -------------------------------------------------------------------
HOST_TAG, PID_TAG, PROCESS_START_TAG, HEARTBEAT_TAG = "pipeline_host", "pipeline_pid", "pipeline_process_start", "pipeline_heartbeat"
MACHINE_TAG = "pipeline_machine"  # this_machine(): which kernel boot and pid namespace the pid is of
HEARTBEAT_S = 60.0
# a RUNNING run of another machine whose heartbeat is older than this is taken for dead
STALE_AFTER_S = 15 * 60.0
MARKED_KILLED = "marked KILLED by the next run on this store"  # how the error tag of a run closed as orphaned ends
WRONGLY_KILLED_TAG = "pipeline_marked_killed_while_alive"  # that tag's text, kept when the run lived on and ended


def proc_stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command's name (which may hold spaces and parentheses): [0] the
    state, [1] the parent's pid, [19] the start time in clock ticks since boot. Raises OSError (FileNotFoundError:
    no such process) where /proc does not have it."""
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def _process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell it from a later process
    that got the same pid; None where /proc is not available."""
    try:
        return proc_stat_fields(pid)[19]
    except (OSError, IndexError):
        return None


def this_machine() -> Optional[str]:
    """``<boot id>+<pid namespace>``: where a pid means one process. Two containers of one host share its name (with
    ``--network host``) and its kernel's boot id, but not their pids: a pid is looked up only in its own namespace.
    None where /proc does not say (not Linux)."""
    try:
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()
        namespace = "".join(ch for ch in os.readlink("/proc/self/ns/pid") if ch.isdigit())
    except OSError:
        return None
    return f"{boot}+{namespace}"


def liveness_tags() -> dict[str, str]:
    import socket

    pid = os.getpid()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), HEARTBEAT_TAG: str(int(time.time()))}
    start = _process_start(pid)
    if start is not None:
        tags[PROCESS_START_TAG] = start
    machine = this_machine()
    if machine is not None:
        tags[MACHINE_TAG] = machine
    return tags


def _process_alive(pid: int, start: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or _process_start(pid) in (None, start)


def _tag_epochs_trained(client, run) -> None:
    """``stopped_early_at_epoch`` of a run whose process died: the epochs whose training loss reached the store, as a
    run stopped by Ctrl-C records them (pipeline-compare showed such a run's epochs as trainer.max_epochs)."""
    if "stopped_early_at_epoch" in run.data.tags:
        return
    try:
        epochs = {metric.step for metric in client.get_metric_history(run.info.run_id, "train/loss")}
    except Exception:
        return
    if epochs and str(len(epochs)) != run.data.params.get("trainer.max_epochs"):
        client.set_tag(run.info.run_id, "stopped_early_at_epoch", str(len(epochs)))


def close_orphaned_runs(client) -> list[str]:
    """Runs left RUNNING by a process that died without ending them (kill -9, out of memory, a lost node)
    are marked KILLED with the reason, so the store never shows a run as running forever. Returns their ids.
    A store that cannot be searched is left as it is: this is housekeeping, not the run's business."""
    import socket

    host, machine, now, closed = socket.gethostname(), this_machine(), time.time(), []
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000) if experiments else []
    except Exception:
        return closed
    for run in runs:
        tags = run.data.tags
        if HOST_TAG not in tags or run.data.tags.get("sweep.role") == "parent":
            continue
        try:
            # its pid is looked up here only where it is of this machine's kernel and pid namespace (a run of a
            # container of the same host name is alive though its pid is not found here); a run recorded before
            # the machine was, by its host name alone
            if tags[HOST_TAG] == host and tags.get(MACHINE_TAG, machine) == machine:
                dead = not _process_alive(int(tags.get(PID_TAG, "0")), tags.get(PROCESS_START_TAG))
                why = f"its process (pid {tags.get(PID_TAG)} on {host}) ended without ending the run"
            else:
                dead = now - float(tags.get(HEARTBEAT_TAG, now)) > STALE_AFTER_S
                why = f"no heartbeat from {tags[HOST_TAG]} for over {int(STALE_AFTER_S // 60)} min"
            if not dead:
                continue
            client.set_tag(run.info.run_id, "error", f"{why} (killed, out of memory or a lost node); {MARKED_KILLED}")
            if tags.get("sweep.role") == "trial" and tags.get("sweep.state") == "RUNNING":
                client.set_tag(run.info.run_id, "sweep.state", "FAIL")  # as its study has it: failed, and retried
            _tag_epochs_trained(client, run)
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
            log.warning("MLflow run %s was left RUNNING by a process that died; marked KILLED", run.info.run_id)
        except Exception:
            continue
    return closed


# MLflow 3's UI opens an experiment on its GenAI trace overview unless the experiment says it holds
# model training runs; then it opens on the runs table
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


# what a write that lost a race with another writer of the same record says (MLflow looks a record up, then
# inserts it: two runs doing that at once for one data set or one experiment tag both insert it)
CONFLICT_MARKERS = ("IntegrityError", "UNIQUE constraint", "duplicate key", "Duplicate entry", "database is locked")


def is_write_conflict(error: BaseException) -> bool:
    """A write that lost a race with another writer of the same record (worth trying again), not a broken store."""
    text = f"{type(error).__name__}: {error}"
    return any(marker in text for marker in CONFLICT_MARKERS)


def ending(exc_type, exc) -> tuple[str, Optional[str]]:
    """(status, error tag) of a run left with this exception (none: FINISHED)."""
    if exc_type is None:
        return "FINISHED", None
    if issubclass(exc_type, KeyboardInterrupt):
        return "KILLED", "interrupted (Ctrl-C or SIGTERM)"
    return "FAILED", redact_text(f"{exc_type.__name__}: {exc}")[:5000] if exc is not None else None


class TrackedRun:
    """Context manager around one MLflow run. With ``tracking_uri=None`` it records nothing.

    Training never waits on the store: metrics go to it from a background thread, and a store that
    fails mid-run is noted once and then left alone, so training finishes with everything kept on disk
    (``output_dir``); the run then ends with :class:`TrackingFailed` saying where those files are.
    """

    def __init__(
        self,
        tracking_uri: Optional[str],
        experiment_name: str,
        run_name: Optional[str] = None,
        artifact_location: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
        parent_run_id: Optional[str] = None,
        enabled: bool = True,
        output_dir: Optional[Path] = None,
        close_orphans: bool = True,
        on_failure=None,
        on_notice=None,
        register_as: Optional[str] = None,
    ):
        self.tracking_uri = tracking_uri
        self.register_as = register_as  # the registered model the run's model is to be a version of (its task checked)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.artifact_location = artifact_location
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.enabled = bool(tracking_uri) and enabled and is_rank_zero()
        self.output_dir = output_dir
        self.client = None
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self.failure: Optional[str] = None  # what went wrong with the store, once it did
        self._pending: list[Future] = []
        self._writer: Optional[ThreadPoolExecutor] = None
        self._unsent: list = []  # epochs' metrics waiting for the next write
        self._last_write = -math.inf
        self._heartbeat: Optional[threading.Event] = None
        self.final_status: Optional[str] = None
        self.close_orphans = close_orphans  # the store-writer process does it once, not for every run
        self.closed_orphans: list[str] = []
        self.on_failure = on_failure  # told the failure message once, when the store fails
        self.on_notice = on_notice or log.warning  # told when a server stops answering and when it answers again
        # an http(s) server that does not answer: since when (monotonic), the last error, and the metrics held
        # meanwhile (touched by the metrics thread only, and by end() once that thread is idle)
        self.outage_since: Optional[float] = None
        self._outage_error: Optional[BaseException] = None
        self._held: list = []
        self._held_calls: list[tuple[str, Any]] = []  # (what, call) of params, tags and files met by an outage
        self._outage_lock = threading.RLock()
        self._created_at = math.inf
        self._own_tags: set[str] = set()  # tags this run set (not the orphan closer)

    @property
    def active(self) -> bool:
        """Whether anything is sent to the store: tracking is on and the store has not failed."""
        return self.enabled and self.run_id is not None and self.failure is None

    def known_run_id(self) -> Optional[str]:
        """The run's id if it is known without waiting (a sweep trial's run may still be being created)."""
        return self.run_id

    # ----- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "TrackedRun":
        if not self.enabled:
            return self
        check_reachable(self.tracking_uri)
        self.create()
        return self

    def create(self, liveness: Optional[dict] = None) -> None:
        """Create the MLflow run (the store opened, its experiment created when new). ``liveness``: the tags
        that tell whether the training process still runs (the store-writer process passes its parent's)."""
        prepare_local_store(self.tracking_uri)
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        self.client = open_client(self.tracking_uri)
        if self.close_orphans:
            self.closed_orphans = close_orphaned_runs(self.client)
        self.experiment_id = self.experiment()
        if self.register_as:
            check_registered_task(self.client, self.register_as, self.tags.get("task"), self.tracking_uri)
        tags = {**self.tags, **(liveness or liveness_tags())}
        if self.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        self._created_at = time.monotonic()
        self.run_name = run.info.run_name
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        """A tag with the time, renewed every HEARTBEAT_S: a run whose process died on another machine is
        recognised by its silence (one on this machine by its process being gone)."""
        stop = self._heartbeat = threading.Event()
        client, run_id = self.client, self.run_id

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                try:
                    client.set_tag(run_id, HEARTBEAT_TAG, str(int(time.time())))
                except Exception:  # the store's health is judged by the writes that matter
                    pass

        threading.Thread(target=beat, name="mlflow-heartbeat", daemon=True).start()

    def experiment(self) -> str:
        """The id of this run's experiment, created (or restored from the trash) when needed."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                # restoring it would bring back every run of it, those deleted one by one before too: a teammate's
                # clean-up undone without a word; MLflow keeps the name until the experiment is deleted for good
                uri, number = redact_text(self.tracking_uri), experiment.experiment_id
                raise TrackingUnavailable(
                    f"the MLflow experiment '{self.experiment_name}' is deleted (in the trash of {uri}, id {number}); "
                    f"log to another one (logger.mlflow.experiment_name=...), restore it with its runs "
                    f"(MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id {number}), or delete it for "
                    f"good to reuse its name (mlflow gc --backend-store-uri {uri} --experiment-ids {number})")
            if EXPERIMENT_KIND_TAG not in experiment.tags:
                try:
                    self.client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
                except Exception as error:  # another run tagged it at the same moment, with the same value
                    if not is_write_conflict(error):
                        raise
            return experiment.experiment_id
        try:
            return self.client.create_experiment(self.experiment_name, artifact_location=self._artifact_root(),
                                                 tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:  # created concurrently by another run
            return self.client.get_experiment_by_name(self.experiment_name).experiment_id

    def _artifact_root(self) -> Optional[str]:
        """Where a new experiment keeps its artifacts: a URI as given; a local folder for a local store;
        for a tracking server its own default (it may run elsewhere and proxy the artifacts)."""
        location = self.artifact_location
        if not location:
            return None
        if "://" in location:
            return location
        if self.tracking_uri.startswith(("http://", "https://")):
            return None
        return Path(location).absolute().as_uri()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._heartbeat is not None:
            self._heartbeat.set()
        if not self.enabled or self.run_id is None:
            return False
        self.end(*ending(exc_type, exc))
        if self.failure is not None:
            message = self.failure_message()
            if exc_type is None:
                raise TrackingFailed(message)
            log.error(message)  # the original error matters more; say where the results are anyway
        return False

    def end(self, status: str, error: Optional[str]) -> None:
        """Send what is queued, then mark the run ``status`` (FINISHED, FAILED or KILLED) with ``error`` as its tag."""
        if self._heartbeat is not None:
            self._heartbeat.set()
        self.flush()
        if self.active and self.outage_since is not None:  # the server still does not answer: the run is incomplete
            since = time.monotonic() - self.outage_since
            what = self._held_calls[0][0] if self._held_calls else "logging metrics"
            words = self._outage_words()
            self._store_failed(f"{what} (the {words.noun} {words.lasted} for {since:.0f} s)", self._outage_error)
        if self.active:
            with self.recording("ending the run"):
                if status == "FINISHED" and time.monotonic() - self._created_at > STALE_AFTER_S:
                    self._undo_a_wrong_kill()
                if error:
                    self.client.set_tag(self.run_id, "error", error)
                self.client.set_terminated(self.run_id, status=status)
                self.final_status = status
        elif self.enabled and self.run_id is not None:
            # the store failed on one part (an artifact, the model) and may still take the end: the run is marked
            # FAILED with what failed instead of staying RUNNING (which the next run would call KILLED); a database
            # that is gone fails here again, quietly; a server is asked only if it answers at once (back after an
            # outage), as its retries would keep the run waiting
            try:
                if self.tracking_uri.startswith(("http://", "https://")):
                    check_reachable(self.tracking_uri, timeout_s=2.0)
                self.client.set_tag(self.run_id, "error", error or f"TrackingFailed: {self.failure}"[:5000])
                self.client.set_terminated(self.run_id, status="FAILED" if status == "FINISHED" else status)
            except Exception:
                pass
        if self._writer is not None:
            self._writer.shutdown(wait=False)

    def _undo_a_wrong_kill(self) -> None:
        """A run whose heartbeat did not reach the store for STALE_AFTER_S (a long outage, a machine's clock) was
        marked KILLED by another machine's next run while it trained on. It ends FINISHED; the closer's error tag
        (and the epochs it counted) would say otherwise, so they go, the closer's text kept in its own tag."""
        run = self.client.get_run(self.run_id)
        said = run.data.tags.get("error", "")
        if run.info.status != "KILLED" or not said.endswith(MARKED_KILLED):
            return
        self.client.set_tag(self.run_id, WRONGLY_KILLED_TAG, said)
        self.client.delete_tag(self.run_id, "error")
        if "stopped_early_at_epoch" in run.data.tags and "stopped_early_at_epoch" not in self._own_tags:
            self.client.delete_tag(self.run_id, "stopped_early_at_epoch")

    def failure_message(self) -> str:
        where = f"in {self.output_dir}" if self.output_dir else "in the run's output directory"
        return (f"the MLflow store {redact_text(str(self.tracking_uri))} failed during the run ({self.failure}); "
                f"training went on and nothing is lost: the config, checkpoints/, metrics.jsonl (every epoch's "
                f"and the test metrics), plots/ and predictions/ are {where} (pipeline-eval <best checkpoint> logs the "
                f"model in a new run). MLflow run {self.run_id} is incomplete")

    @contextlib.contextmanager
    def recording(self, what: str):
        """Send something to the store; if the store fails, note it and carry on without it."""
        try:
            yield
        except Exception as error:
            self._store_failed(what, error)

    def _store_failed(self, what: str, error: BaseException) -> None:
        if self.failure is None:
            self.failure = f"while {what}: {type(error).__name__}: {redact_text(error_text(error))[:300]}"
            log.error("MLflow store failed %s; training goes on without it, results are kept in %s",
                      self.failure, self.output_dir)
            if self.on_failure is not None:
                self.on_failure(self.failure)

    # ----- logging ---------------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]

        def call() -> None:
            for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
                self.client.log_batch(self.run_id, params=items[start : start + 100])

        self.write("logging params", call)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.active or not tags:
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, redact_text(str(v))[:5000]) for k, v in tags.items()]
        self._own_tags.update(tags)
        self.write("setting tags", lambda: self.client.log_batch(self.run_id, tags=items))

    # A write of one epoch's metrics to a SQLite store takes ~5-10 ms of Python (SQLAlchemy), which holds
    # the GIL even on the background thread: on a tabular epoch of ~30 ms that was +15-30 %. Epochs that end
    # within this many seconds of the last write are sent together with the next one (or by flush()).
    METRICS_WRITE_INTERVAL_S = 1.0
    # While an http(s) tracking server does not answer (restarted, a network blip), epochs' metrics are held and sent
    # again this often; the store counts as failed only if it still does not answer when the run ends (or once this
    # many metrics are held).
    OUTAGE_RETRY_S = 15.0
    OUTAGE_HELD_LIMIT = 1_000_000

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue one epoch's metrics; they are written from a background thread, batched, at most one write
        in flight and at most one per ``METRICS_WRITE_INTERVAL_S`` (the UI lags training by about a second).
        Not MLflow's own async logging: ending a run with it costs ~1 s."""
        if not self.active or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._unsent.extend(Metric(k, float(v), now, int(step)) for k, v in metrics.items())
        self._pending = [future for future in self._pending if not future.done()]
        interval = self.METRICS_WRITE_INTERVAL_S if self.outage_since is None else self.OUTAGE_RETRY_S
        if not self._pending and time.monotonic() - self._last_write >= interval:
            self._write_unsent()

    def _write_unsent(self) -> None:
        items, self._unsent = self._unsent, []
        self._last_write = time.monotonic()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-metrics")
        self._pending.append(self._writer.submit(self._send_metrics, items))

    def _send_metrics(self, items: list) -> None:
        if self.failure is not None:  # after a failure, queued epochs are not sent (each would wait for retries)
            return
        # the lock only while a server does not answer: it orders the held writes before the ones made after them
        in_outage = self.outage_since is not None
        with self._outage_lock if in_outage else contextlib.nullcontext():
            items, self._held = self._held + items, []
            start = 0
            try:
                if in_outage:  # a server that does not answer yet costs 2 s, not MLflow's retries
                    check_reachable(self.tracking_uri, timeout_s=2.0)
                    while self._held_calls:  # in the order they were made
                        self._held_calls[0][1]()
                        self._held_calls.pop(0)
                for start in range(0, len(items), 1000):  # MLflow's limit per batch
                    self.client.log_batch(self.run_id, metrics=items[start : start + 1000])
            except Exception as error:
                if len(items) - start <= self.OUTAGE_HELD_LIMIT and self._server_down(error):
                    with self._outage_lock:
                        self._held = items[start:]  # the batches before it are in the store
                        self._begin_outage(error)
                    return
                self._store_failed(self._held_calls[0][0] if self._held_calls else "logging metrics", error)
                return
            if in_outage:  # (an outage a write of another thread met meanwhile waits for the next try)
                words = self._outage_words()
                self.on_notice(f"{words.store} {words.back} after {time.monotonic() - self.outage_since:.0f} s; what "
                               "the run logged meanwhile is in it")
                self.outage_since, self._outage_error = None, None

    def write(self, what: str, call) -> None:
        """Make one write to the store (params, tags, a file); one that meets a server that does not answer is
        held, and made again with the epochs' metrics once it answers (in the order the writes were made)."""
        if self.outage_since is not None:
            with self._outage_lock:
                if self.outage_since is not None:  # still: the metrics thread may have sent what was held meanwhile
                    self._held_calls.append((what, call))
                    return
        try:  # without the lock: a write while the server answers does not wait for the metrics thread's
            call()
        except Exception as error:
            if self._server_down(error):
                with self._outage_lock:
                    self._held_calls.append((what, call))
                    self._begin_outage(error)
            else:
                self._store_failed(what, error)

    def _begin_outage(self, error: BaseException) -> None:
        self._outage_error = error
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            words = self._outage_words()
            self.on_notice(
                f"{words.store} {words.down} ({type(error).__name__}: {redact_text(error_text(error))[:200]}); "
                f"training goes on, and what the run logs is kept and written when it {words.back} (tried every "
                f"{self.OUTAGE_RETRY_S:.0f} s; the run fails only if it {words.still} at its end)")

    def _outage_words(self) -> "_OutageWords":
        """How the console names the store, its outage, its return, the outage at the run's end and its length: a
        server, or a SQLite file another process holds locked."""
        uri = redact_text(str(self.tracking_uri))
        if uri.startswith("sqlite:"):
            return _OutageWords(f"MLflow store {uri}", "store", "is locked by another process", "is free again",
                                "is still locked", "has been locked")
        return _OutageWords(f"MLflow tracking server {uri}", "server", "does not answer", "answers again",
                            "still does not answer", "has not answered")

    def _server_down(self, error: BaseException) -> bool:
        """Whether a failed write met an http(s) server that does not answer at all (not one that refused it), or a
        SQLite store that another process holds locked for longer than SQLite waits (a backup, a long query)."""
        if str(self.tracking_uri).startswith("sqlite:"):
            return "database is locked" in str(error)
        if not str(self.tracking_uri).startswith(("http://", "https://")):
            return False
        if isinstance(error, TrackingUnavailable):  # check_reachable's own answer
            return True
        try:
            check_reachable(self.tracking_uri, timeout_s=2.0)
        except TrackingUnavailable:
            return True
        except Exception:
            return False
        return False

    def flush(self, wait: bool = True) -> None:
        """Write every metric queued so far and wait until it is in the store (or the store has failed);
        ``wait=False``: start writing them and return."""
        if (self._unsent or self._held or self.outage_since is not None) and self.active:
            self._write_unsent()
        if not wait:
            return
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        if self.active:
            self.write(f"logging {Path(path).name}",
                        lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_artifacts(self, directory: Path, artifact_path: Optional[str] = None) -> None:
        if self.active:
            self.write(f"logging {artifact_path or Path(directory).name}",
                        lambda: self.client.log_artifacts(self.run_id, str(directory), artifact_path))

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.active:
            self.write(f"logging {artifact_file}", lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_dict(self, data: dict, artifact_file: str) -> None:
        if self.active:
            self.write(f"logging {artifact_file}", lambda: self.client.log_dict(self.run_id, data, artifact_file))
