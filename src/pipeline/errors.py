"""The errors a user can fix, and the exit codes the command-line tools answer with.

The ground floor of the package: it imports nothing of the pipeline, so every module may raise these.
A user-fixable error prints one ``Error: ...`` line and exits with ``EXIT_USER_ERROR``; Ctrl-C or
SIGTERM ends with ``EXIT_INTERRUPTED``; anything else is a bug and exits with ``EXIT_UNEXPECTED``.
"""
from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from pathlib import Path
from typing import Iterator, Optional

EXIT_UNEXPECTED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """The composed config is invalid; the message names the key, the value and what is allowed."""


class DataError(ValueError):
    """A data set is missing, malformed or incompatible; the message says which file and why."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, value: float, epoch: int, step: int):
        self.value, self.epoch, self.step = value, epoch, step
        super().__init__(
            # epochs counted from 1 as the console prints them (epoch 1/3); MLflow's steps count from 0
            f"training loss is {value} at epoch {epoch + 1} (MLflow step {epoch}), global step {step}; lower optimizer.lr, "
            "enable gradient clipping (trainer.gradient_clip_val=1.0) or check the data for NaN/Inf"
        )


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached; raised before any training starts."""


class TrackingFailed(TrackingUnavailable):
    """The store failed during the run. Training went on; the message says where its results are."""


class RegistrationFailed(RuntimeError):
    """The run's model was logged but registering it in the Model Registry (logger.mlflow.register_as) failed."""


class RankFailed(RuntimeError):
    """Another rank of this run exited with an error (its message is printed above this one)."""


class StorageFull(OSError):
    """No space left where a run writes (checkpoints, outputs); the message names the place."""


class SweepError(RuntimeError):
    """The sweep cannot start or has to stop; the message says why and what to change."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training. A KeyboardInterrupt, so the MLflow run is marked KILLED."""

    def __init__(self, resume_from: Optional[Path], job_overrides: Optional[list[str]] = None):
        self.resume_from, self.job_overrides = resume_from, job_overrides  # job_overrides: in a multirun
        super().__init__(str(resume_from) if resume_from else "")

    def __str__(self) -> str:
        if self.resume_from is None:
            return "stopped before the first epoch ended, so there is no checkpoint to resume from; run again"
        if self.job_overrides is not None:  # ckpt_path on the multirun's command would go to every job
            return (f"the newest saved end of an epoch of this job is in {self.resume_from}; resume this job alone "
                    f"with pipeline-train {' '.join(map(shlex.quote, self.job_overrides))} ckpt_path={self.resume_from}, then run the "
                    "multirun's jobs after it")
        return (f"the newest saved end of an epoch is in {self.resume_from}; "
                f"resume with the same command plus ckpt_path={self.resume_from}")


# what report_errors() answers with one line and EXIT_USER_ERROR
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError, NonFiniteLossError, TrackingUnavailable,
                                                 RankFailed, StorageFull, SweepError, RegistrationFailed)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler ending a job, ``kill``) raises KeyboardInterrupt meanwhile, so it ends a run or a
    sweep the way Ctrl-C does: checkpoint named, run marked KILLED, one line. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        _quiet_multiprocessing_teardown()
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    previous_int = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _quiet_multiprocessing_teardown() -> None:
    """The process is going down: DataLoader workers are stopped while the thread that hands their batches'
    file descriptors over may be mid-handshake, and it prints a BrokenPipe traceback unless multiprocessing
    knows the process is exiting (what its own exit hook would tell it a moment later)."""
    import multiprocessing.util

    multiprocessing.util._exiting = True


_WARNED: set[str] = set()


def warn_once(logger, message: str) -> None:
    """A warning about a command's settings, once per command: a sweep's trials (and a multirun's jobs) build
    their module from the same settings, with the same warning, unless a searched key changes it."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def forget_warnings() -> None:
    """A new command (the tests run several in one process) warns again."""
    _WARNED.clear()


_RESUME_POINT: list = []  # a function naming the running run's newest checkpoint (train() sets it while it runs)


def remember_resume_point(find) -> None:
    """``find()`` -> a :class:`RunInterrupted` naming the run's newest saved epoch end, or None: what an interrupt
    that escapes the run's own handler (a second Ctrl-C during the first one's clean-up, one while the run's model
    and plots are logged) is told with, instead of no checkpoint at all."""
    _RESUME_POINT[:] = [find] if find is not None else []


_RUN_ENDED: list = []  # the output folder of the run train() has just recorded as ended (FINISHED)


def remember_run_ended(output_dir) -> None:
    """``output_dir``: the run is recorded as ended, its outputs written; an interrupt from here on (while the
    command tears down) is told so, not that the run is KILLED and to resume it. None: a run starts."""
    _RUN_ENDED[:] = [output_dir] if output_dir is not None else []


def run_ended():
    """The output folder of the run that has ended (see :func:`remember_run_ended`), or None."""
    return _RUN_ENDED[0] if _RUN_ENDED else None


def resume_point() -> Optional["RunInterrupted"]:
    try:
        return _RESUME_POINT[0]() if _RESUME_POINT else None
    except Exception:
        return None
