"""The Optuna study behind a sweep: storage, sampler, pruner, and how workers share its trials.

Exactly ``n_trials`` trials: the process that creates the study also creates ``n_trials`` WAITING
trials, and workers only ever *claim* a waiting trial (an atomic WAITING -> RUNNING update in the
storage); no worker creates a trial of its own, so parallel or distributed workers can neither
overshoot nor run a trial twice. A trial whose worker died (SIGKILL, lost machine) stops sending
heartbeats; any worker then fails it and enqueues a retry with the same parameters, which takes
its place in the count.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import fcntl
import functools
import json
import logging
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import optuna
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import SweepError
from pipeline.sqlite import sqlite_path, use_write_ahead_log
from pipeline.tracking.redact import redact_text
from pipeline.tracking.sweeps import close_stale_run

from .space import SearchSpace

log = logging.getLogger("pipeline.sweep")

SAMPLERS = ("tpe", "random", "grid", "cmaes")
# samplers that need a Python package besides Optuna (Optuna imports it only when the first trial samples, which
# crashed the sweep after its study, parent run and first trial existed): sampler -> (module, pip package)
SAMPLER_PACKAGES = {"cmaes": ("cmaes", "cmaes")}
# the database driver a storage URL needs: SQLAlchemy's module name -> the pip package that provides it
DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "pymysql": "pymysql", "psycopg2": "psycopg2-binary",
                   "psycopg": "psycopg[binary]", "mysql": "mysql-connector-python", "asyncpg": "asyncpg",
                   "pg8000": "pg8000", "mariadb": "mariadb"}
# storages offered instead, each where its driver is installed
KNOWN_STORAGES = (("sqlite:///path.db", "sqlite3"), ("postgresql+psycopg2://user:password@host/db", "psycopg2"),
                  ("postgresql+psycopg://user:password@host/db", "psycopg"),
                  ("mysql+pymysql://user:password@host/db", "pymysql"), ("mysql+mysqldb://user:password@host/db", "MySQLdb"))
PRUNERS = ("hyperband", "median", "successive_halving", "none")
DIRECTIONS = ("minimize", "maximize")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# study user attributes through which the processes of one sweep find each other
SETUP_DONE_ATTR = "pipeline.n_trials"
PARENT_RUN_ATTR = "pipeline.mlflow_parent_run_id"
PRUNER_ATTR = "pipeline.pruner"
FINALIZED_ATTR = "pipeline.finalized"
FINGERPRINT_ATTR = "pipeline.fingerprint"
# the fingerprint's digests of the splits the search's first corner trains, validates and tests on (every trial's
# where no data key, data set or seed is searched)
DATA_CONTENTS = "data contents (digest of each split's rows)"
# the key studies recorded before the splits' digests identified the rows drawn (they digested the preprocessed
# inputs): not compared with the rows' digests, which replace it
DATA_CONTENTS_BEFORE = "data contents (digest of each split)"
# the metrics the study optimises (its directions are Optuna's own): a study's values are of these, and no other
OBJECTIVES = "hydra.sweeper.objectives"
# fingerprint keys kept since studies began: a study recorded without one adopts this command's when it resumes
# (an older study's objectives were not recorded: its first resume names them)
KEPT_SINCE = (DATA_CONTENTS, OBJECTIVES)


@dataclass
class SweepSettings:
    """Everything a worker needs to know about the sweep (picklable: sent to worker processes)."""

    study_name: str
    storage: str
    n_trials: int
    objectives: list[str]
    directions: list[str]
    space: SearchSpace
    n_jobs: int = 1
    timeout: Optional[float] = None
    sampler: str = "tpe"
    sampler_options: dict = field(default_factory=dict)
    pruner: str = "hyperband"
    pruner_options: dict = field(default_factory=dict)
    seed: int = 0
    max_failure_rate: float = 0.5
    heartbeat_interval: int = 10
    sweep_dir: str = "."
    started_at: float = field(default_factory=time.time)
    # what makes two trials comparable: the search space and every config value a trial trains with
    fingerprint: dict = field(default_factory=dict)
    trial_checkpoints: bool = False
    trial_test: bool = False
    trial_artifacts: bool = False
    finalize_top_k: int = 1

    def check(self) -> None:
        if self.n_trials < 1:
            raise SweepError(f"hydra.sweeper.n_trials={self.n_trials}: must be >= 1")
        if self.n_jobs < 1:
            raise SweepError(f"hydra.sweeper.n_jobs={self.n_jobs}: must be >= 1")
        if self.timeout is not None and not self.timeout > 0:  # also NaN
            raise SweepError(f"hydra.sweeper.timeout={self.timeout}: must be > 0 seconds (null: no time limit)")
        if self.sampler not in SAMPLERS:
            raise SweepError(f"hydra.sweeper.sampler={self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        module, package = SAMPLER_PACKAGES.get(self.sampler, (None, None))
        if module and not importable(module):
            raise SweepError(f"hydra.sweeper.sampler={self.sampler} needs the Python package {package} "
                             f"(pip install {package}); or choose one of "
                             f"{', '.join(s for s in SAMPLERS if s not in SAMPLER_PACKAGES)}")
        if self.pruner not in PRUNERS:
            raise SweepError(f"hydra.sweeper.pruner={self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        for direction in self.directions:
            if direction not in DIRECTIONS:
                raise SweepError(f"hydra.sweeper.directions: {direction!r} is not one of {', '.join(DIRECTIONS)}")
        if len(self.directions) != len(self.objectives):
            raise SweepError(f"hydra.sweeper.objectives ({len(self.objectives)}) and directions "
                             f"({len(self.directions)}) must have the same length")
        if self.finalize_top_k < 0:
            raise SweepError(f"hydra.sweeper.finalize_top_k={self.finalize_top_k}: must be >= 0 (0: no final runs)")
        if not 0 < self.max_failure_rate <= 1:
            raise SweepError(f"hydra.sweeper.max_failure_rate={self.max_failure_rate}: must be in (0, 1]")
        if not self.storage.startswith(("sqlite:", "postgresql", "mysql")):
            raise SweepError(f"hydra.sweeper.storage={redact_text(self.storage)!r}: use an SQLAlchemy URL "
                             "(sqlite:///path.db, postgresql+psycopg2://user:password@host/db, mysql://...)")
        check_storage_driver(self.storage)
        # options the pruner or sampler does not take: refused now, before a study or a run exists
        for kind, build in (("pruner", lambda: make_pruner(self.pruner, self.pruner_options)),
                            ("sampler", lambda: make_sampler(self) if self.sampler_options else None)):
            try:
                build()
            except (TypeError, ValueError) as error:
                raise SweepError(f"hydra.sweeper.{kind}_options={dict(getattr(self, kind + '_options'))} do not suit "
                                 f"{kind}={getattr(self, kind)!r}: {error}") from None
        if self.sampler == "grid":
            from .space import SearchSpaceError

            try:
                grid = self.space.grid()  # raises on what a grid cannot search
            except SearchSpaceError as error:
                raise SweepError(f"hydra.sweeper.{error}") from None
            points = math.prod(len(values) for values in grid.values())
            if self.n_trials > points:  # Optuna's grid then trains points again (with only a warning)
                raise SweepError(f"hydra.sweeper.n_trials={self.n_trials} is more than the {points} point{'s' if points > 1 else ''} of the grid "
                                 f"(sampler=grid tries each once); set hydra.sweeper.n_trials={points}")

    @property
    def redacted_storage(self) -> str:
        return redact_text(self.storage)


# ----- storage, sampler, pruner ------------------------------------------------------------------
def importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_storage_driver(url: str) -> None:
    """The storage URL's database driver, imported now: a missing one (mysql:// without mysqlclient, SQLAlchemy 2.1's
    postgresql:// without psycopg 3) was Optuna's ImportError "Failed to import DB access module", a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = f"hydra.sweeper.storage={redact_text(url)}"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise SweepError(f"{shown}: not an SQLAlchemy URL SQLAlchemy can open ({redact_text(str(error))}); use "
                         f"{' or '.join(s for s, m in KNOWN_STORAGES if importable(m))}") from None
    try:
        (getattr(dialect, "import_dbapi", None) or dialect.dbapi)()
    except ImportError as error:
        module = (error.name or "").split(".")[0] or "?"
        package = DRIVER_PACKAGES.get(module, module)
        working = [s for s, m in KNOWN_STORAGES if importable(m)]
        raise SweepError(f"{shown}: its database driver ({parsed.drivername}) needs the Python package {package} "
                         f"(module {module}), which is not installed: pip install '{package}', or use a storage "
                         f"whose driver is: {', '.join(working)}") from None


@functools.lru_cache(maxsize=None)
def open_storage(url: str, heartbeat_interval: int = 10) -> "RunningTrialCache":
    """One storage object per URL and process (the trial callback reuses the sweeper's)."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        path = str(sqlite_path(url) or "")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # parallel workers on one machine wait for the file lock instead of failing with "database is locked"
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        engine_kwargs["pool_pre_ping"] = True
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat options are "experimental"
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=max(2 * heartbeat_interval, 2),
                    heartbeat_stale_trial_callback=retry_stale_trial,
                )
            break
        except (IntegrityError, ProgrammingError):
            # two workers started together on a new database both create Optuna's tables (PostgreSQL:
            # "duplicate key ... pg_type_typname_nsp_index"); the other one won: open it again
            if attempt == 5:
                raise
            time.sleep(0.5 * (attempt + 1))
    use_write_ahead_log(storage.engine)  # SQLite only
    return RunningTrialCache(storage)


class RunningTrialCache(_CachedStorage):
    """Optuna's cache of finished trials, plus the trials this process is running.

    Every epoch a trial reports its value and asks whether to stop; the pruners read the trial itself back
    from the storage for that (its bracket and the rungs it completed are system attributes): ~5 ms of
    SQL per epoch, more than the epoch of a small model. Sampling reads it back twice per parameter (the
    trial, then every trial for TPE). This process is the only writer of its running trial's params,
    values and attributes, so a copy kept here, updated on each write, is what the storage would return.
    Held from the moment this process sets the trial RUNNING (or :meth:`hold`) until its state is set
    again; in a list of trials, a held trial whose state another process changed (a heartbeat judged stale)
    is read afresh. Its intermediate values reach the storage together when its state is set, and so do its
    params and user attributes inside :meth:`writes_together` unless flushed before."""

    def __init__(self, backend: optuna.storages.RDBStorage):
        super().__init__(backend)
        self._held: dict[int, FrozenTrial] = {}
        self._waiting: dict[int, FrozenTrial] = {}  # queued trials as last read, while they are WAITING
        self._unwritten: dict[int, dict[int, float]] = {}  # held trials' intermediate values not yet written
        # params and user attributes of held trials inside writes_together(), not yet written
        self._pending_params: dict[int, list[tuple]] = {}
        self._pending_attrs: dict[int, dict[str, Any]] = {}
        self._together: dict[int, int] = {}  # trial id -> depth of writes_together() blocks
        # another Optuna without the one-session writes: each write goes to the storage at once, as Optuna does
        self._one_session_writes = all(hasattr(backend, name) for name in (
            "_set_trial_intermediate_value_without_commit", "_set_trial_param_without_commit",
            "_set_trial_attr_without_commit"))
        self._study_ids: dict[str, int] = {}

    @property
    def engine(self):
        return self._backend.engine

    # Hyperband makes a view of the trial's bracket (an optuna.Study) at every should_prune, which looks the study up
    # by name: an SQL query per epoch. A study keeps its id as long as it exists (the pipeline never deletes one).
    def get_study_id_from_name(self, study_name: str) -> int:
        study_id = self._study_ids.get(study_name)
        if study_id is None:
            study_id = self._study_ids[study_name] = super().get_study_id_from_name(study_name)
        return study_id

    def delete_study(self, study_id: int) -> None:
        self._study_ids = {name: known for name, known in self._study_ids.items() if known != study_id}
        super().delete_study(study_id)

    def hold(self, trial_id: int) -> None:
        if trial_id not in self._held:  # a held copy is ahead of the storage (values not yet written)
            self._held[trial_id] = self._backend.get_trial(trial_id)

    # Whoever reads the held trial gets a shallow copy, and a write replaces the copy's dicts instead of changing
    # them: a list of trials taken before a write keeps what it saw (the successive-halving pruner lists the
    # trials, then records this one's rung value, then compares with the list: the new value must not be in it).
    def get_trial(self, trial_id: int) -> FrozenTrial:
        held = self._held.get(trial_id)
        return copy.copy(held) if held is not None else super().get_trial(trial_id)

    # A held trial's intermediate values (one per epoch) are written when its state is set (it ends, or fails), in one
    # transaction, instead of one SQLite transaction each (~1.7 ms, a third of a small table's epoch). Nothing else
    # reads them meanwhile: the pruners read this trial from here, other trials' rungs from their system attributes
    # (written at once) and other trials' intermediate values only once those are finished. A process killed mid-trial
    # loses its running trial's values, and the trial is failed by its heartbeat and run again anyway.
    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        held = self._held.get(trial_id)
        if held is not None and self._one_session_writes:
            self._unwritten.setdefault(trial_id, {})[step] = intermediate_value
        else:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        if held is not None:
            held.intermediate_values = {**held.intermediate_values, step: intermediate_value}

    # A trial writes a dozen params and user attributes (its sampled values, overrides, worker, MLflow run, timings,
    # how it ended), each an SQLite transaction of its own in Optuna (~2-10 ms, with a query for the trial row). Inside
    # writes_together() those of a held trial are kept with its copy and written in one transaction: at
    # flush_writes(), when its state is set, or at the end of the block. The worker writes the sampled parameters and
    # the MLflow run id at once (a trial whose worker dies is retried with its parameters, and its MLflow run closed);
    # the rest goes with the state. System attributes (the pruners' rungs, read by other workers) are always at once.
    @contextlib.contextmanager
    def writes_together(self, trial_id: int):
        self._together[trial_id] = self._together.get(trial_id, 0) + 1
        try:
            yield
        except BaseException:
            self._end_together(trial_id, quiet=True)  # what the trial wrote is kept if it can be
            raise
        self._end_together(trial_id)

    def _end_together(self, trial_id: int, quiet: bool = False) -> None:
        self._together[trial_id] -= 1
        if self._together[trial_id]:
            return
        del self._together[trial_id]
        try:
            self.flush_writes(trial_id)
        except Exception as error:
            if not quiet:
                raise
            log.warning("trial %s: could not write its attributes: %s", trial_id, error)

    def _queued(self, trial_id: int) -> bool:
        return trial_id in self._together and trial_id in self._held and self._one_session_writes

    def flush_writes(self, trial_id: int) -> None:
        """The held trial's queued params and user attributes, to the storage now (one transaction)."""
        self._write_together(trial_id, with_values=False)

    def _write_together(self, trial_id: int, with_values: bool) -> None:
        params = self._pending_params.pop(trial_id, [])
        attrs = self._pending_attrs.pop(trial_id, {})
        values = self._unwritten.pop(trial_id, {}) if with_values else {}
        if not (params or attrs or values):
            return
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        backend = self._backend
        # Optuna's own writes query the trial row (and an existing row) for each value; this trial is RUNNING and
        # written by this process alone, so its row is checked once and its attributes and values are read once
        with _create_scoped_session(backend.scoped_session, True) as session:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            backend.check_trial_is_updatable(trial_id, trial.state)
            for name, value, distribution, previous in params:
                if previous is None:  # the study's first use of this name: Optuna checks it against the storage
                    backend._set_trial_param_without_commit(session, trial_id, name, value, distribution)
                else:
                    session.add(models.TrialParamModel(
                        trial_id=trial_id, param_name=name, param_value=value,
                        distribution_json=optuna.distributions.distribution_to_json(distribution)))
            if attrs:
                stored = {row.key: row for row in session.query(models.TrialUserAttributeModel).filter(
                    models.TrialUserAttributeModel.trial_id == trial_id)}
                for key, value in attrs.items():
                    if key in stored:
                        stored[key].value_json = json.dumps(value)
                    else:
                        session.add(models.TrialUserAttributeModel(trial_id=trial_id, key=key,
                                                                   value_json=json.dumps(value)))
            if values:
                stored = {row.step: row for row in session.query(models.TrialIntermediateValueModel).filter(
                    models.TrialIntermediateValueModel.trial_id == trial_id)}
                for step, value in values.items():
                    number, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                    if step in stored:
                        stored[step].intermediate_value, stored[step].intermediate_value_type = number, kind
                    else:
                        session.add(models.TrialIntermediateValueModel(
                            trial_id=trial_id, step=step, intermediate_value=number, intermediate_value_type=kind))
        with self._lock:
            study_id = self._trial_id_to_study_id_and_number[trial_id][0] if params else None
            for name, _, distribution, previous in params:
                if previous is None:  # the first trial with this param: as Optuna's cache records it
                    self._studies[study_id].param_distribution.setdefault(name, distribution)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if self._queued(trial_id):
            self._pending_attrs.setdefault(trial_id, {})[key] = value
        else:
            super().set_trial_user_attr(trial_id, key, value)
        held = self._held.get(trial_id)
        if held is not None:
            held.user_attrs = {**held.user_attrs, key: value}

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, value)
        held = self._held.get(trial_id)
        if held is not None:
            held.system_attrs = {**held.system_attrs, key: value}

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float, distribution) -> None:
        with self._lock:
            known = self._trial_id_to_study_id_and_number.get(trial_id)
            previous = self._studies[known[0]].param_distribution.get(param_name) if known else None
        if self._queued(trial_id) and known is not None:
            if previous is not None:  # checked now, as Optuna does (the first trial's is checked when written)
                optuna.distributions.check_distribution_compatibility(previous, distribution)
            self._pending_params.setdefault(trial_id, []).append((param_name, param_value_internal, distribution,
                                                                  previous))
        else:
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        held = self._held.get(trial_id)
        if held is not None:
            held.params = {**held.params, param_name: distribution.to_external_repr(param_value_internal)}
            held.distributions = {**held.distributions, param_name: distribution}

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        self._write_together(trial_id, with_values=True)
        self._held.pop(trial_id, None)
        changed = super().set_trial_state_values(trial_id, state=state, values=values)
        if changed and state == TrialState.RUNNING:  # claimed by this process: it samples and trains it
            self.hold(trial_id)
        return changed

    # Optuna's cache reads every unfinished trial back in full whenever the trials are listed (the pruner at
    # each rung, the sampler for each trial); a sweep queues all its trials as WAITING at the start, so that
    # was up to n_trials trials with five related tables, ~20 ms per listing at 100 trials. A WAITING trial
    # does not change until a worker claims it: one light query finds which trials are still WAITING, and
    # those are taken from here; only the others are read in full.
    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            study = self._studies[study_id]
            trials = self._changed_trials(study_id, study.unfinished_trial_ids, study.last_finished_trial_id)
            if not trials:
                return
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                if trial._trial_id in study.unfinished_trial_ids:
                    study.unfinished_trial_ids.remove(trial._trial_id)

    def _changed_trials(self, study_id: int, unfinished: set[int], last_finished: int) -> list[FrozenTrial]:
        """What ``RDBStorage._get_trials(study_id, None, unfinished, last_finished)`` returns."""
        backend = self._backend
        try:
            import sqlalchemy
            from optuna.storages._rdb import models
            from optuna.storages._rdb.storage import _create_scoped_session

            included = [trial_id for trial_id in unfinished if trial_id <= last_finished]
            with _create_scoped_session(backend.scoped_session) as session:
                query = session.query(models.TrialModel.trial_id, models.TrialModel.state).filter(
                    models.TrialModel.study_id == study_id)
                if last_finished > -1:
                    query = query.filter(sqlalchemy.or_(models.TrialModel.trial_id.in_(included),
                                                        models.TrialModel.trial_id > last_finished))
                rows = query.all()
        except Exception:  # another Optuna: its own way
            return backend._get_trials(study_id, None, unfinished, last_finished)
        still_waiting = {trial_id for trial_id, state in rows
                         if state == TrialState.WAITING and trial_id in self._waiting}
        held = {trial_id for trial_id, state in rows if trial_id in self._held and self._held[trial_id].state == state}
        to_load = {trial_id for trial_id, _ in rows} - still_waiting - held
        newest = max((trial_id for trial_id, _ in rows), default=-1)  # nothing newer than the rows just seen
        loaded = backend._get_trials(study_id, None, to_load, newest) if to_load else []
        for trial in loaded:
            if trial.state == TrialState.WAITING:
                self._waiting[trial._trial_id] = trial
            else:
                self._waiting.pop(trial._trial_id, None)
        return sorted(loaded + [self._waiting[trial_id] for trial_id in still_waiting]
                      + [copy.copy(self._held[trial_id]) for trial_id in held], key=lambda t: t._trial_id)


def writes_together(study: optuna.Study, trial_id: int):
    """The trial's params and user attributes written together (see ``RunningTrialCache.writes_together``); as
    Optuna writes them (each at once) on another storage."""
    storage = study._storage
    return storage.writes_together(trial_id) if isinstance(storage, RunningTrialCache) else contextlib.nullcontext()


def tell(study: optuna.Study, trial: optuna.Trial, values: Optional[list[float]] = None,
         state: Optional[TrialState] = None) -> tuple[TrialState, Optional[list[float]]]:
    """``study.tell``, returning the state and values the trial ended with (for a pruned trial, its last reported
    value) without reading the finished trial back from the storage: ``Study.tell`` returns a deep copy of it, a
    query over five tables that a worker does not need."""
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:  # another Optuna
        finished = study.tell(trial, values, state=state)
        return finished.state, finished.values
    state, values, _ = _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state)
    return state, values


def flush_writes(study: optuna.Study, trial_id: int) -> None:
    if isinstance(study._storage, RunningTrialCache):
        study._storage.flush_writes(trial_id)


@contextlib.contextmanager
def storage_lock(url: str):
    """Serialises claiming and failing trials between processes sharing one SQLite file.

    Optuna checks a trial's state and then updates it; PostgreSQL/MySQL lock the row in between,
    SQLite (through Python's driver) does not, so two local workers could claim the same trial.
    """
    path = str(sqlite_path(url) or "")
    if not path or path == ":memory:":
        yield
        return
    with open(path + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


MAX_RETRY = 2
RUNG_ATTR_PREFIX = "completed_rung_"  # a successive-halving pruner's record of a trial's value at a rung


def queue_retry(study: optuna.Study, trial: FrozenTrial, max_retry: int = MAX_RETRY) -> None:
    """Queue a trial that did not end (interrupted, or its worker died) again with its parameters, as Optuna's
    ``RetryHeartbeatStaleTrialCallback`` does (system attributes ``failed_trial``, ``retry_history``; ``max_retry``
    attempts at most), less the rungs the pruner recorded for the stopped attempt: with them the retry began past its
    first rung and was never compared there. ``claim_waiting_trial`` runs it first, and ``RetriesInPlace`` prunes it
    as the trial it replaces, so a resumed sweep ends as an uninterrupted one."""
    system_attrs: dict[str, Any] = {"failed_trial": trial.number, "retry_history": [],
                                    **{k: v for k, v in trial.system_attrs.items() if not k.startswith(RUNG_ATTR_PREFIX)}}
    system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
    if len(system_attrs["retry_history"]) > max_retry:
        return
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions, user_attrs=trial.user_attrs,
                                        system_attrs=system_attrs))


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial, why: str = "stopped sending heartbeats") -> None:
    """A trial whose worker died: run its parameters again (twice at most) and close its MLflow run."""
    queue_retry(study, trial)
    log.warning("trial %d %s (its worker died or was interrupted): marked FAIL, parameters re-queued", trial.number,
                why)
    close_stale_run(trial.user_attrs.get("mlflow_tracking_uri"), trial.user_attrs.get("mlflow_run_id"),
                    f"the worker running this trial died ({why}); the trial was retried")


WORKER_PROCESS_ATTR = "worker_process"  # <boot id>+<pid ns>:<pid>:<start time> of a trial's process (Linux)


def this_process() -> Optional[str]:
    """This process as ``<boot id>+<pid namespace>:<pid>:<start time>``: a machine's boot and a process in it, told
    apart from a later process given the same pid; None where /proc does not say (not Linux)."""
    from pipeline.tracking.run import this_machine

    machine = this_machine()  # the boot and the pid namespace: a container of the same host has pids of its own
    try:
        return None if machine is None else f"{machine}:{os.getpid()}:{_start_time(os.getpid())}"
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str:
    from pipeline.tracking.run import proc_stat_fields

    return proc_stat_fields(pid)[19]


def trained_elsewhere(study: optuna.Study) -> bool:
    """Whether a trial of the study is RUNNING in a live process that is neither this one nor one it started: another
    command's worker, on this machine (its process is looked up) or another (its heartbeats are not stale)."""
    mine = this_process()
    machine = mine.split(":")[0] if mine else None
    storage = study._storage
    backend = storage._backend if isinstance(storage, RunningTrialCache) else storage
    try:
        stale = set(backend._get_stale_trial_ids(study._study_id)) if hasattr(backend, "_get_stale_trial_ids") else set()
    except Exception:
        stale = set()
    for trial in progress(study).running:
        identity = trial.user_attrs.get(WORKER_PROCESS_ATTR)
        if identity and machine and identity.count(":") == 2 and identity.split(":")[0] == machine:
            pid = int(identity.split(":")[1])
            if not (process_gone(identity) or pid == os.getpid() or _parent_of(pid) == os.getpid()):
                return True
        elif trial._trial_id not in stale and trial.datetime_start is not None:
            return True  # another machine's worker that still beats
    return False


def _parent_of(pid: int) -> Optional[int]:
    from pipeline.tracking.run import proc_stat_fields

    try:
        return int(proc_stat_fields(pid)[1])
    except (OSError, IndexError, ValueError):
        return None


def process_gone(identity: Optional[str]) -> bool:
    """Whether the process ``identity`` (:func:`this_process`) names ran on this machine since its boot and has ended.
    False where that cannot be told (another machine, another boot: the heartbeats decide there)."""
    mine = this_process()
    if not identity or not mine or identity.count(":") != 2 or identity.split(":")[0] != mine.split(":")[0]:
        return False
    _, pid, started = identity.split(":")
    try:
        return _start_time(int(pid)) != started
    except FileNotFoundError:
        return True
    except (OSError, IndexError, ValueError):
        return False


def fail_trials_of_gone_workers(study: optuna.Study, settings: SweepSettings) -> None:
    """RUNNING trials whose worker ran on this machine and has ended (``kill -9``): failed and queued again at once.
    Their heartbeats were still fresh, so the rerun of the sweep ran the trials queued after them first and the retry
    later, among other trials than the uninterrupted sweep's (pruned where it had completed)."""
    with storage_lock(settings.storage), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for trial in progress(study).running:
            if not process_gone(trial.user_attrs.get(WORKER_PROCESS_ATTR)):
                continue
            try:
                if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            retry_stale_trial(study, copy.deepcopy(study._storage.get_trial(trial._trial_id)),
                              "was left RUNNING by a worker process that has ended on this machine")


def make_sampler(settings: SweepSettings, trial_number: int = 0) -> optuna.samplers.BaseSampler:
    """A fresh sampler seeded by (study seed, trial number): reproducible, two workers never draw alike,
    and studies with different seeds draw independently (``seed + trial_number`` made study seed 1 repeat
    study seed 0's trials shifted by one)."""
    seed = int(np.random.SeedSequence([settings.seed, trial_number]).generate_state(1)[0])
    options = dict(settings.sampler_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if settings.sampler == "tpe":
            options = {"multivariate": True, "group": True, "constant_liar": True, **options}
            return optuna.samplers.TPESampler(seed=seed, **options)
        if settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if settings.sampler == "grid":
            # the grid's shuffled order must be the same in every trial and worker: trial n then takes
            # grid point n, and concurrent workers never pick the same point (a per-trial seed would
            # reshuffle the grid for each trial and repeat points)
            return GridSampler(settings.space.grid(), seed=settings.seed)
        return optuna.samplers.CmaEsSampler(seed=seed, **options)


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler stops ``study.optimize`` when the grid is done; here the workers
    count trials themselves (n_trials), and there is no optimize loop to stop."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_pruner(name: str, options: Optional[dict] = None) -> optuna.pruners.BasePruner:
    options = dict(options or {})
    if name == "hyperband":
        return RetriesInPlace(_Hyperband(**{"min_resource": 1, **options}))
    if name == "median":
        return RetriesInPlace(optuna.pruners.MedianPruner(**{"n_startup_trials": 3, **options}))
    if name == "successive_halving":
        return RetriesInPlace(optuna.pruners.SuccessiveHalvingPruner(**{"min_resource": 1, **options}))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SweepError(f"pruner={name!r}: choose one of {', '.join(PRUNERS)}")


def _in_place(trial: FrozenTrial) -> FrozenTrial:
    """A retried trial as the trial it replaces (its first attempt's number); others as they are."""
    history = trial.system_attrs.get("retry_history")
    if not history:
        return trial
    renumbered = copy.copy(trial)
    renumbered._stored_number = trial.number
    renumbered.number = int(history[0])
    return renumbered


class _TrialsView(optuna.Study):
    """The study as a pruner sees it: its trials as the storage lists them, less the attempts in ``replaced``
    (stopped, and queued again), and a retried trial under its first attempt's number."""

    def __init__(self, study: optuna.Study, replaced: frozenset):  # a view: no Study.__init__
        self.__dict__.update(study.__dict__)
        self._study, self._replaced = study, replaced

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list[FrozenTrial]:
        listed = self._study._get_trials(deepcopy=False, states=states, use_cache=use_cache)
        trials = sorted((_in_place(t) for t in listed if t.number not in self._replaced), key=lambda t: t.number)
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)


class RetriesInPlace(optuna.pruners.BasePruner):
    """A pruner that judges a retried trial (queued again after an interrupt or a dead worker) as the trial it
    replaces: under its first attempt's number (Hyperband's bracket follows the number) and without the stopped
    attempts, whose reports would compete with their own retry. An interrupted and resumed sweep then prunes what the
    uninterrupted one did (its retry runs first: ``claim_waiting_trial``). Which attempts were stopped is read once
    per trial, at its first report (a trial's epochs are not slowed by another read of the study)."""

    def __init__(self, pruner: optuna.pruners.BasePruner):
        self.pruner = pruner
        self._replaced: tuple[int, frozenset] = (-1, frozenset())  # (trial id, the stopped attempts it was told of)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if self._replaced[0] != trial._trial_id:
            self._replaced = (trial._trial_id, frozenset(
                n for t in study.get_trials(deepcopy=False) for n in t.system_attrs.get("retry_history", ())))
        replaced = self._replaced[1]
        if not replaced:
            return self.pruner.prune(study, trial)
        if isinstance(self.pruner, _Hyperband):
            self.pruner.replaced = replaced
        return self.pruner.prune(_TrialsView(study, replaced), _in_place(trial))


class _Hyperband(optuna.pruners.HyperbandPruner):
    """Hyperband whose brackets hold a retried trial where the trial it replaces was, and no stopped attempt (its
    bracket studies list the storage's trials, not ``RetriesInPlace``'s view)."""

    replaced: frozenset = frozenset()

    def _get_bracket_id(self, study, trial: FrozenTrial) -> int:
        if getattr(trial, "_stored_number", trial.number) in self.replaced:
            return -1  # in no bracket
        return super()._get_bracket_id(study, _in_place(trial))


def load_study(settings: SweepSettings, trial_number: int = 0) -> optuna.Study:
    storage = open_storage(settings.storage, settings.heartbeat_interval)
    return optuna.load_study(study_name=settings.study_name, storage=storage,
                             sampler=make_sampler(settings, trial_number),
                             pruner=make_pruner(settings.pruner, settings.pruner_options))


# ----- creating / resuming a study -----------------------------------------------------------------
def create_or_resume(settings: SweepSettings, create_parent_run,
                     check_parent_run=None) -> tuple[optuna.Study, bool]:
    """The study, created (with its parent run and WAITING trials) or loaded. Returns (study, created).
    ``check_parent_run(study)``: on resume, before any trial is added, raises where its parent run cannot be used."""
    storage = open_storage(settings.storage, settings.heartbeat_interval)
    with storage_lock(settings.storage):
        return _create_or_resume(settings, storage, create_parent_run, check_parent_run)


def _create_or_resume(settings: SweepSettings, storage, create_parent_run,
                      check_parent_run=None) -> tuple[optuna.Study, bool]:
    try:
        study = optuna.create_study(study_name=settings.study_name, storage=storage,
                                    directions=settings.directions, load_if_exists=False)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=settings.study_name, storage=storage)
        created = False
    if not created and list(study.directions) != [directions_enum(d) for d in settings.directions]:
        existing = [d.name.lower() for d in study.directions]
        raise SweepError(f"study '{settings.study_name}' in {settings.redacted_storage} optimises {existing}, "
                         f"not {settings.directions}; pick another hydra.sweeper.study_name")
    if not created:
        check_same_experiment(study, settings)
        if check_parent_run is not None:
            check_parent_run(study)
    if created:
        study.set_user_attr(FINGERPRINT_ATTR, settings.fingerprint)
        study.set_user_attr(PARENT_RUN_ATTR, create_parent_run())
        add_waiting_trials(study, settings.n_trials)
        study.set_user_attr(SETUP_DONE_ATTR, settings.n_trials)  # last: tells other machines setup is done
    else:
        target = wait_for_setup(study)
        if settings.n_trials > target:
            # more trials asked for than the study was set up with: top it up (one process at a time)
            add_waiting_trials(study, settings.n_trials - target)
            study.set_user_attr(SETUP_DONE_ATTR, settings.n_trials)
    study.set_user_attr(PRUNER_ATTR, {"name": settings.pruner, "options": dict(settings.pruner_options)})
    return study, created


def check_same_experiment(study: optuna.Study, settings: SweepSettings) -> None:
    """Resuming a study with another search space or other fixed settings (another model=, data=, epochs ...)
    would mix trials of two experiments in one ranking: refuse, showing what changed."""
    recorded = study.user_attrs.get(FINGERPRINT_ATTR)
    if recorded is None:  # a study from before fingerprints were kept: adopt this one
        study.set_user_attr(FINGERPRINT_ATTR, settings.fingerprint)
        return
    adopted = {key: settings.fingerprint[key] for key in KEPT_SINCE if key in settings.fingerprint and key not in recorded}
    if adopted:  # kept since: from now on
        replaced = DATA_CONTENTS_BEFORE if DATA_CONTENTS in adopted else None  # the old digests, by the rows'
        recorded = {**{k: v for k, v in recorded.items() if k != replaced}, **adopted}
        study.set_user_attr(FINGERPRINT_ATTR, recorded)
    changed = fingerprint_difference(recorded, settings.fingerprint)
    if changed:
        shown = "; ".join(changed[:5]) + (f"; and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise SweepError(
            f"study '{settings.study_name}' in {settings.redacted_storage} was run with other settings ({shown}); "
            f"its trials are not comparable with these. Resume it with the settings it was created with, or start "
            f"a new study: hydra.sweeper.study_name={settings.study_name}_2")


# fixed settings a study does not compare: how a run prints, and what only a test computes (the final runs'
# intervals, not a trial's value); a study recorded before a key was ignored still holds it
FINGERPRINT_IGNORED = ("trainer.enable_progress_bar", "task.test_intervals")


def fingerprint_difference(before: dict, now: dict) -> list[str]:
    """``key: before -> now`` for each setting that differs. A key one side lacks and the other holds as null
    is not a difference: a key this code added since the study began (or one it dropped) whose null is "off",
    as every optional key's is, so resuming after an upgrade goes on."""
    missing = "(not set)"
    return [f"{key}: {before.get(key, missing)} -> {now.get(key, missing)}"
            for key in sorted(set(before) | set(now), key=lambda k: (not k.startswith(("choice.", "search.")), k))
            if before.get(key) != now.get(key) and {before.get(key, missing), now.get(key, missing)} != {missing, "None"}
            and key not in FINGERPRINT_IGNORED]


def directions_enum(direction: str) -> optuna.study.StudyDirection:
    return optuna.study.StudyDirection.MINIMIZE if direction == "minimize" else optuna.study.StudyDirection.MAXIMIZE


def add_waiting_trials(study: optuna.Study, count: int) -> None:
    study.add_trials([optuna.trial.create_trial(state=TrialState.WAITING) for _ in range(count)])


def wait_for_setup(study: optuna.Study, timeout_s: float = 120) -> int:
    """Another process created the study a moment ago: wait until it has queued its trials."""
    deadline = time.time() + timeout_s
    while True:
        target = study.user_attrs.get(SETUP_DONE_ATTR)
        if target is not None:
            return int(target)
        if time.time() > deadline:
            raise SweepError(f"study '{study.study_name}' exists but was never set up by this sweeper "
                             "(no trial queue); pick another hydra.sweeper.study_name")
        time.sleep(1)


# ----- the trial queue -----------------------------------------------------------------------------
@dataclass
class Progress:
    """What the study holds, counting each retried trial once (by its latest attempt)."""

    finished: list[FrozenTrial]
    running: list[FrozenTrial]
    waiting: list[FrozenTrial]

    @property
    def failed(self) -> list[FrozenTrial]:
        return [t for t in self.finished if t.state == TrialState.FAIL or t.user_attrs.get("diverged")]


def progress(study: optuna.Study) -> Progress:
    trials = study.get_trials(deepcopy=False)
    replaced = {number for t in trials for number in t.system_attrs.get("retry_history", [])}
    current = [t for t in trials if t.number not in replaced]
    return Progress(
        finished=[t for t in current if t.state in FINISHED],
        running=[t for t in current if t.state == TrialState.RUNNING],
        waiting=[t for t in current if t.state == TrialState.WAITING],
    )


def claim_waiting_trial(study: optuna.Study, settings: SweepSettings) -> Optional[FrozenTrial]:
    """Atomically move one WAITING trial to RUNNING for this worker; None when there is none left."""
    storage, n_trials = study._storage, settings.n_trials
    with storage_lock(settings.storage):
        state = progress(study)
        if len(state.finished) + len(state.running) >= n_trials:
            return None  # the study holds more queued trials than this command asks for
        # a retried trial first: it takes the place of the trial it replaces, which ran before the ones queued after it
        for trial in sorted(state.waiting, key=lambda t: ("failed_trial" not in t.system_attrs, t.number)):
            try:
                if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                    return storage.get_trial(trial._trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker claimed and finished it meanwhile
    return None


def fail_stale_trials(study: optuna.Study, settings: SweepSettings) -> None:
    with storage_lock(settings.storage), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
        # Optuna's check looks at heartbeats only: a trial whose worker stopped between claiming it and its first
        # heartbeat (interrupted or killed then) stayed RUNNING forever, and every later run waited for it
        for trial_id in claimed_without_heartbeat(study):
            try:
                if not study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker failed it (or it ended) meanwhile
            retry_stale_trial(study, copy.deepcopy(study._storage.get_trial(trial_id)))


def claimed_without_heartbeat(study: optuna.Study) -> list[int]:
    """Ids of the study's RUNNING trials that have no heartbeat and were claimed longer ago than the heartbeat's grace
    period (a worker records its first heartbeat as soon as it claims a trial)."""
    storage = study._storage
    backend = storage._backend if isinstance(storage, RunningTrialCache) else storage
    grace_s = getattr(backend, "grace_period", None)
    if grace_s is None or not hasattr(backend, "scoped_session"):
        return []
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session) as session:
        rows = [(trial.trial_id, trial.datetime_start) for trial in session.query(models.TrialModel)
                .filter(models.TrialModel.study_id == study._study_id, models.TrialModel.state == TrialState.RUNNING,
                        ~models.TrialModel.heartbeats.any())]
    now = datetime.datetime.now()  # Optuna gives datetime_start in local time, without a time zone
    return [trial_id for trial_id, claimed in rows
            if claimed is None or (now - claimed).total_seconds() > grace_s]


class Heartbeat:
    """Tells the storage every few seconds that this worker still runs the trial."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int, interval_s: float):
        self.storage, self.trial_id, self.interval_s = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as error:  # a storage hiccup must not kill the trial
                log.warning("heartbeat for trial id %d failed: %s", self.trial_id, error)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
