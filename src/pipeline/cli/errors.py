"""Turn the errors a user can fix into one clear line on stderr and a non-zero exit code.

Two places need it:
* :func:`hydra_errors_described` turns Hydra's own failures (a wrong group option or key, a run folder that
  cannot be created) into one line with the nearest valid choice (exit 2) instead of Hydra's multi-line
  report: when Hydra fails, :func:`check_command_line` composes the command line again to say what is wrong.
  A multirun over a list of values (``optimizer=sgd,adamm``) is checked whole before Hydra runs, so that a
  wrong value is refused before the first job trains. Nothing has been loaded and no MLflow run exists at
  that point. (Checking every command line before Hydra cost each run ~0.3 s of composing.)
* :func:`report_errors` wraps ``train()``: known errors become ``Error: ...`` (exit 2), Ctrl-C or
  SIGTERM becomes ``Interrupted: ...`` with the checkpoint to resume from (exit 130), and anything
  unforeseen becomes one line that says where its traceback was written (exit 1).
  ``HYDRA_FULL_ERROR=1`` shows every traceback instead.
"""
from __future__ import annotations

import contextlib
import difflib
import errno
import re
import logging
import os
import shlex
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Iterable, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.config import TARGET_GROUPS, base_file_chosen, config_options
from pipeline.errors import (EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USER_ERROR, USER_ERRORS,  # noqa: F401
                             RunInterrupted, resume_point, run_ended)


def known_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import InstantiationException

    return (*USER_ERRORS, InstantiationException)


def one_line(message: object) -> str:
    """Error messages from libraries span lines; a terminal answer should not."""
    return " ".join(str(message).split())


class _StdoutOrNothing:
    """``sys.stdout`` of a command whose reader may go away (``pipeline-eval ... | head -4``): once the pipe is
    closed, what the command prints goes to /dev/null (Python's documented way, done where the write fails) and the
    command carries on. Its work is done and recorded all the same: a BrokenPipeError raised inside the MLflow run
    made the run FAILED, and printed a traceback, for output nobody reads."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def closed_stdout_ignored() -> None:
    """Install :class:`_StdoutOrNothing` (the command-line tools call it first, before logging takes the stream)."""
    if not isinstance(sys.stdout, _StdoutOrNothing):
        try:
            sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's StringIO): nothing to close under it
            return
        sys.stdout = _StdoutOrNothing(sys.stdout)


def _full_error_wanted() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _fail(message: str, code: int) -> None:
    from pipeline.tracking.redact import redact_text

    print(f"Error: {redact_text(message)}{_multirun_stop_note()}", file=sys.stderr, flush=True)
    sys.exit(code)


def _multirun_stop_note() -> str:
    """In a multirun over lists of values (Hydra's basic sweeper, which stops at the first job that fails or is
    interrupted): which job it was and that the ones after it did not run. (A sweep's sweeper records a failed
    trial and goes on.)"""
    with contextlib.suppress(Exception):
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        if _in_multirun() and str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            number = int(hydra_cfg.job.num)
            ran = f"; jobs #0-#{number - 1} ran" if number > 1 else "; job #0 ran" if number == 1 else ""
            return f" [multirun job #{number}: the multirun stops here, the jobs after it did not run{ran}]"
    return ""


@contextlib.contextmanager
def report_errors():
    try:
        yield
    except KeyboardInterrupt as interrupt:
        from pipeline.ranks import is_rank_zero

        if not is_rank_zero():  # a DDP run's other ranks: rank 0 says it, once
            _exit_at_once(EXIT_INTERRUPTED)
        ended = run_ended()
        if ended is not None and not isinstance(interrupt, RunInterrupted):  # while the finished command tears down
            print(f"Interrupted (Ctrl-C or SIGTERM) after the run ended: it is recorded as it finished (its MLflow "
                  f"run, if any, FINISHED; its outputs in {ended}); nothing to resume{_multirun_stop_note()}",
                  file=sys.stderr, flush=True)
            _exit_at_once(EXIT_INTERRUPTED)
        if not isinstance(interrupt, RunInterrupted):  # not the run's own handler's: a second Ctrl-C, or after fit
            interrupt = resume_point() or interrupt
        detail = f"; {interrupt}" if isinstance(interrupt, RunInterrupted) else ""
        print(f"Interrupted (Ctrl-C or SIGTERM); the MLflow run, if any, is marked KILLED{detail}"
              f"{_multirun_stop_note()}", file=sys.stderr, flush=True)
        _exit_at_once(EXIT_INTERRUPTED)
    except known_errors() as error:
        if _full_error_wanted():
            raise
        if isinstance(error.__cause__, known_errors()):  # a DataError raised while Hydra built the object
            error = error.__cause__
        _fail(one_line(error), EXIT_USER_ERROR)
    except OSError as error:
        if _full_error_wanted():
            raise
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # a full disk is the user's to fix, not a bug
            where = f" ({error.filename})" if error.filename else ""
            what = ("a file larger than the device or the file-size limit (ulimit -f) allows" if error.errno ==
                    errno.EFBIG else "no space left on the device")
            _fail(f"{what}{where}; free space or write elsewhere (hydra.run.dir=..., paths.mlruns_dir=...)",
                  EXIT_USER_ERROR)
        if error.errno in (errno.EACCES, errno.EROFS, errno.EPERM) and error.filename:
            _fail(f"cannot write {error.filename} ({error.strerror}); choose a writable place "
                  "(hydra.run.dir=..., paths.mlruns_dir=...)", EXIT_USER_ERROR)
        _fail_unexpected(error)
    except Exception as error:  # a bug or a case nobody foresaw: keep the traceback, answer in one line
        if _full_error_wanted():
            raise
        lost = peer_lost(error)
        if lost is not None:  # another rank of a DDP run died: said so, with the checkpoint to go on from
            point = resume_point()
            _fail(f"another process of this DDP run stopped ({lost}): a rank was killed or failed (its own lines, if "
                  f"any, are above; this one's traceback in {_save_traceback()}); the MLflow run, if any, is marked "
                  "FAILED"
                  f"{f'; {point}' if point is not None else '; no epoch had ended, so start it again'}",
                  EXIT_UNEXPECTED)
        _fail_unexpected(error)


# what a collective says when the process at the other end of it has gone (gloo on CPUs, NCCL on GPUs)
_PEER_LOST = re.compile(r"Connection reset by peer|Connection closed by peer|Broken pipe|NCCL communicator was aborted|"
                        r"remote process exited|Socket closed")


def peer_lost(error: BaseException) -> Optional[str]:
    """The phrase of a distributed backend's error saying that another rank went away, or None."""
    text = str(error)
    if type(error).__name__ not in ("RuntimeError", "DistBackendError", "DistNetworkError", "DistError") or not \
            re.search(r"gloo|nccl|ProcessGroup|c10d", text, re.IGNORECASE):
        return None
    found = _PEER_LOST.search(text)
    return found.group(0) if found else None


def _fail_unexpected(error: BaseException) -> None:
    where = _save_traceback()
    _fail(f"unexpected {type(error).__name__}: {one_line(error)[:500]} (traceback in {where}; "
          "HYDRA_FULL_ERROR=1 prints it)", EXIT_UNEXPECTED)


def _exit_at_once(code: int) -> None:
    """The run is recorded and the checkpoint is on disk: skip the seconds Python spends tearing down
    torch, Lightning and MLflow, so the terminal comes back at once. Not inside a sweep, whose sweeper
    still has to record the trial."""
    if _in_multirun():
        sys.exit(code)
    from pipeline.sqlite import close_write_ahead_logs

    close_write_ahead_logs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _in_multirun() -> bool:
    with contextlib.suppress(Exception):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    return False


def _save_traceback() -> Path:
    folder = None
    with contextlib.suppress(Exception):
        from hydra.core.hydra_config import HydraConfig

        folder = Path(HydraConfig.get().runtime.output_dir)
    if folder is None or not folder.is_dir():
        folder = Path(tempfile.mkdtemp(prefix="pipeline-error-"))
    path = folder / "error.log"
    path.write_text(traceback.format_exc())
    return path


# ----- the command line, checked before Hydra runs ---------------------------------------------------
# Hydra options that change what is composed or do not compose at all: left to Hydra.
_HYDRA_ONLY_OPTIONS = ("help", "hydra_help", "version", "info", "shell_completion", "config_path",
                       "experimental_rerun")


@contextlib.contextmanager
def _hydra_for(config_dir: Path, user_dir: Optional[str] = None):
    """Hydra initialized as the command initializes it: the packaged ``config_dir``, and ``--config-dir`` after it."""
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir), job_name="train"):
        if user_dir:
            from hydra._internal.hydra import Hydra
            from hydra._internal.utils import create_config_search_path
            from hydra.core.config_search_path import SearchPathQuery
            from hydra.core.global_hydra import GlobalHydra

            search_path = create_config_search_path(str(config_dir))
            search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(user_dir)}",
                                anchor=SearchPathQuery(provider="schema"))
            GlobalHydra.instance().clear()
            Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
        yield


def check_command_line(argv: Sequence[str], config_dir: Path, config_name: str = "config") -> None:
    """Compose the config as the command line asks; on a composition error print one line and exit 2.

    In multirun mode every value of a ``a=x,y`` sweep is composed too (zipped, not crossed); interval
    sweeps are left to the sweeper. Problems of this check itself never block a run: Hydra then
    reports whatever it finds, as it would without this check.
    """
    if _full_error_wanted():
        return
    try:
        from hydra._internal.utils import get_args_parser

        args = get_args_parser().parse_args(list(argv))
    except BaseException:  # argparse exits on a malformed option: let Hydra print its usage
        return
    if any(getattr(args, name, None) for name in _HYDRA_ONLY_OPTIONS):
        return
    overrides = list(args.overrides or [])
    config_name = args.config_name or config_name
    user_dir = args.config_dir
    if user_dir and not os.path.isdir(user_dir):  # Hydra says so itself
        return
    hydra_sweep = _sweep_over_hydra(overrides)
    if hydra_sweep:
        _fail(hydra_sweep, EXIT_USER_ERROR)
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        jobs = _jobs_to_check(overrides) if args.multirun else [overrides]
        with _hydra_for(config_dir, user_dir):
            if len(jobs) > 1 or jobs[0] != overrides:
                # a search's conditional key (optimizer.momentum=choice(0,0.9), sampled where optimizer=sgd) is not
                # a key of the default optimizer's config: the sweep checks it under its condition
                fixed = _jobs_to_check(overrides, sweeps=False)[0]
                conditional = _conditional_keys(compose(config_name, overrides=fixed, return_hydra_config=True))
                jobs = _jobs_to_check(overrides, leave_out=conditional)
            for job in jobs:
                composed = compose(config_name, overrides=job, return_hydra_config=True)
                base = base_file_chosen(OmegaConf.select(composed, "hydra.runtime.choices") or {}, config_dir)
                if base:
                    _fail(base, EXIT_USER_ERROR)  # SystemExit: neither handler below takes it
    except (HydraException, OmegaConfBaseException) as error:
        _fail(describe_composition_error(error, config_dir, config_name, overrides, user_dir), EXIT_USER_ERROR)
    except Exception as error:
        if _yaml_error(error):  # a config file of one's own that is not YAML: PyYAML's traceback, exit 1
            _fail(_yaml_error(error), EXIT_USER_ERROR)
        misused = _search_parameters_misused(overrides, config_dir, config_name, user_dir)
        if misused:  # hydra.sweeper.params set without a search: OmegaConf's AttributeError, exit 1
            _fail(misused, EXIT_USER_ERROR)
        return
    multirun = args.multirun or composed.hydra.get("mode") == "MULTIRUN"
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = Path(str(OmegaConf.select(composed, key)))
    except Exception:  # a resolver only Hydra's run knows (${now:...}): Hydra checks it itself
        return
    problem = _unwritable(folder)
    if problem:
        from pipeline.tracking.run import writable_example

        _fail(f"{key}={folder}: cannot create the run's folder there ({problem}); choose a writable place, "
              f"e.g. {key}={writable_example('outputs/my-run')}", EXIT_USER_ERROR)


def _sweep_over_hydra(overrides: Sequence[str]) -> Optional[str]:
    """Why an override sweeps over Hydra's own config (``+hydra.sweeper.params.optimizer.lr=interval(...)``, as the
    search files write the space), which Hydra refuses with its own message and exit 1; None when none does."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # a malformed override: Hydra says so itself
        return None
    for override, text in zip(parsed, overrides):
        key = override.key_or_group
        if key.startswith("hydra.") and override.is_sweep_override():
            searched = key[len("hydra.sweeper.params."):] if key.startswith("hydra.sweeper.params.") else "<key>"
            return (f"{text}: Hydra does not sweep over its own config ({key}); a search parameter is given on the "
                    f"command line as {searched}=<expression>, e.g. {searched}='{text.partition('=')[2]}' "
                    "(a key the config lacks takes a leading +)")
    return None


def refuse_show_with_multirun(arguments: Sequence[str]) -> None:
    """``-m seed=1,2 --cfg job`` was Hydra's traceback ("Only one of --run, --multirun, --cfg, --info and
    --shell_completion can be specified"): one line, exit 2."""
    shown = [a.partition("=")[0] for a in arguments if a.partition("=")[0] in ("--cfg", "-c", "--info", "-i")]
    if shown and any(a in ("-m", "--multirun") for a in arguments):
        _fail(f"{shown[0]} shows one job's config and -m runs several: give {shown[0]} without -m, with one value of "
              "each swept key (e.g. seed=1 rather than seed=1,2)", EXIT_USER_ERROR)


def _parsed_command_line(argv: Sequence[str]):
    """Hydra's reading of the command line (its overrides, --config-dir ...) for the checks before it runs; None with
    HYDRA_FULL_ERROR=1 (Hydra's own errors wanted) or a malformed command line (Hydra reports it)."""
    if _full_error_wanted():
        return None
    try:
        from hydra._internal.utils import get_args_parser

        return get_args_parser().parse_args(list(argv))
    except BaseException:
        return None


def refuse_null_groups_and_removed_settings(argv: Sequence[str], config_dir: Path) -> None:
    """``optimizer=null`` (:func:`_group_set_to_null`) and ``~optimizer.lr`` (:func:`_setting_removed`), refused
    in one line (exit 2) before anything runs; a look at the command line's words only."""
    args = _parsed_command_line(argv)
    if args is None:
        return
    overrides = list(args.overrides or [])
    refused = _group_set_to_null(overrides, config_dir, args.config_dir) or _setting_removed(overrides)
    if refused:
        _fail(refused, EXIT_USER_ERROR)


def refuse_hidden_own_options(argv: Sequence[str], config_dir: Path) -> None:
    """An option of one's own ``--config-dir`` named as a packaged one (``experiment/textbook_mlp.yaml``) is read
    after the packaged file, which wins: the packaged experiment trained (30 epochs, its lr) without a word. Chosen
    on the command line, it is refused in one line (exit 2), naming both files."""
    args = _parsed_command_line(argv)
    if args is None or not args.config_dir or not os.path.isdir(args.config_dir):
        return
    for override in args.overrides or []:
        key, equals, value = override.lstrip("+").partition("=")
        if not equals or "." in key or key.startswith(("~", "hydra")):
            continue
        for option in value.strip("[]").split(","):
            option = option.strip()
            mine, packaged = Path(args.config_dir) / key / f"{option}.yaml", config_dir / key / f"{option}.yaml"
            if option and mine.is_file() and packaged.is_file():
                _fail(f"{key}={option}: {mine} has the name of the packaged {packaged.relative_to(config_dir.parent.parent)}, "
                      f"which is read first and wins (--config-dir adds options, it does not replace them); rename "
                      f"yours (e.g. {key}/{option}_mine.yaml, {key}={option}_mine)", EXIT_USER_ERROR)


def refuse_experiment_as_primary_config(argv: Sequence[str]) -> None:
    """``--config-name`` naming an experiment file (a sweep's ``<study>_best.yaml``: ``# @package _global_`` and
    ``override /task: ...`` in its defaults) as the whole config, with ``--config-path`` or ``--config-dir`` at its
    folder: Hydra's "Could not override 'task'. No match in the defaults list" (or, for a relative --config-path,
    "Primary config module ... not found") and exit 1. An experiment file is a set of overrides of the packaged
    config: one line (exit 2) with the command that trains it, the one the sweep printed."""
    args = _parsed_command_line(argv)
    if args is None or not args.config_name:
        return
    name = str(args.config_name)
    name = name[:-len(".yaml")] if name.endswith(".yaml") else name
    for folder in (args.config_path, args.config_dir):
        if not folder or str(folder).startswith(("pkg:", "file:")):
            continue
        path = Path(folder) / f"{name}.yaml"
        if not path.is_file() or not _is_experiment_file(path):
            continue
        path = Path(os.path.abspath(path))
        # a sweep's best config names the command that trains it (its --config-name, search path, ~deletions ...)
        written = re.search(r"^#\s*Run it:\s*(pipeline-train\s.*\S)\s*$", path.read_text(errors="replace"), re.M)
        if written and path.parent.name == "experiment" and _names_folder(written.group(1), path.parent.parent, path.stem):
            command, where = written.group(1), ""
        elif path.parent.name == "experiment":
            command = f"pipeline-train --config-dir {shlex.quote(str(path.parent.parent))} experiment={path.stem}"
            where = ""
        else:  # an experiment option is a file in an experiment/ folder of the --config-dir
            command = f"pipeline-train --config-dir <folder> experiment={path.stem}"
            where = " after moving it into <folder>/experiment/ (or copying it into conf/experiment/)"
        rest = " ".join(shlex.quote(o) for o in args.overrides or [])
        _fail(f"--config-name {args.config_name}: {path} is an experiment config (overrides of the packaged config, "
              f"'# @package _global_'), not a whole config to compose alone; train it with "
              f"{command}{' ' + rest if rest else ''}{where}", EXIT_USER_ERROR)


def _names_folder(command: str, folder: Path, experiment: str) -> bool:
    """Whether ``command`` chooses ``experiment=<experiment>`` from ``folder`` (its --config-dir, or a file:// entry of
    its hydra.searchpath): a best config moved since its sweep wrote it names the folder it was written in."""
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    folders = [after for before, after in zip(words, words[1:]) if before in ("--config-dir", "-cd")]
    for word in words:
        if word.startswith("hydra.searchpath="):
            folders += [item.strip().removeprefix("file://") for item in word.partition("=")[2].strip("[]").split(",")]
    return f"experiment={experiment}" in words and any(
        os.path.abspath(f) == str(folder) for f in folders if f)


def _is_experiment_file(path: Path) -> bool:
    """Whether a YAML file is an experiment (overrides under ``# @package _global_``) rather than a primary config:
    one that composes the packaged ``config`` itself (``defaults: [config, _self_]``) is a whole config."""
    try:
        text = path.read_text(errors="replace")
        loaded = OmegaConf.create(text)
    except Exception:
        return False
    defaults = loaded.get("defaults") if isinstance(loaded, DictConfig) else None
    entries = list(defaults) if isinstance(defaults, ListConfig) else []
    if any(isinstance(entry, str) and entry.strip().lstrip("/") == "config" for entry in entries):
        return False
    overrides = any(isinstance(entry, DictConfig) and any(str(key).startswith("override ") for key in entry)
                    for entry in entries)
    packaged_global = re.search(r"^\s*#\s*@package\s+_global_\s*$", text, re.M) is not None
    return overrides or packaged_global


def several_jobs(argv: Sequence[str]) -> bool:
    """Whether the command line is a multirun over lists of values (``-m optimizer=sgd,adam``): several jobs,
    each composed when its turn comes, so they are checked together before the first one runs."""
    try:
        from hydra._internal.utils import get_args_parser

        args = get_args_parser().parse_args(list(argv))
        return bool(args.multirun) and len(_jobs_to_check(list(args.overrides or []))) > 1
    except BaseException:  # a malformed command line: Hydra reports it
        return False


@contextlib.contextmanager
def hydra_errors_described(argv: Sequence[str], config_dir: Path, config_name: str = "config"):
    """While Hydra runs the command: an error in one of Hydra's own steps (composing the config, creating the
    run's folder, the sweeper) is looked at by :func:`check_command_line` first, which prints one line and exits
    2 when the command line is the cause; anything else reaches Hydra's report as before. The task's own errors
    never get here: :func:`report_errors` answers them inside the task."""
    from hydra._internal import utils as hydra_utils

    hydra_run_and_report = hydra_utils.run_and_report

    def run_and_report(func):
        def described():
            try:
                return func()
            except Exception:
                if not _full_error_wanted():
                    from hydra.core.global_hydra import GlobalHydra

                    GlobalHydra.instance().clear()  # the check composes with a Hydra of its own
                    check_command_line(argv, config_dir, config_name)
                raise
        return hydra_run_and_report(described)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = hydra_run_and_report


def refuse_base_file_choice(choices, config_dir: Path) -> None:
    """Exit 2 with one line when a chosen option is a base file (for the job Hydra composed)."""
    problem = base_file_chosen(choices, config_dir)
    if problem:
        _fail(problem, EXIT_USER_ERROR)


def _unwritable(folder: Path) -> Optional[str]:
    """Why ``folder`` cannot be created (None when it can), without creating it."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            return "no existing parent"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file"
    probe = existing / f".pipeline-write-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as error:
        return f"{existing}: {error.strerror}"
    return None


def _conditional_keys(composed) -> frozenset:
    """The keys an Optuna search samples only under a condition (``hydra.sweeper.conditions``)."""
    conditions = OmegaConf.select(composed, "hydra.sweeper.conditions", default=None) or {}
    return frozenset(key for key, condition in conditions.items() if condition is not None)


def _group_set_to_null(overrides: Sequence[str], config_dir: Path, user_dir: Optional[str]) -> Optional[str]:
    """``optimizer=null``: Hydra's answer was a traceback ("Config group override must be a string or a list. Got
    NoneType", exit 1). Said with the group's options instead; ``callbacks.early_stopping=null`` (a key) is not this."""
    for override in overrides:
        key, equals, value = override.lstrip("+").partition("=")
        if not equals or value.strip() != "null" or override.startswith("~") or key.startswith("hydra"):
            continue
        options = sorted(set(config_options(config_dir, key)) | set(
            config_options(Path(user_dir), key) if user_dir and os.path.isdir(user_dir) else ()))
        if not options and not (config_dir / key).is_dir():
            continue
        off = f"; {key}=none switches it off" if "none" in options else (
            f"; without {key}=<option> the group is left out, as by default" if key in _OPTIONAL_GROUPS else "")
        return f"{key}=null: {key} is a config group, set to one of its options (Available: {', '.join(options)}){off}"
    return None


# the groups the primary config leaves out by default (``experiment: null``)
_OPTIONAL_GROUPS = ("experiment", "hparams_search", "debug")


def _setting_removed(overrides: Sequence[str]) -> Optional[str]:
    """``~optimizer.lr``: the key left the config, the class then took its own default (torch's SGD: lr 0.001, where
    conf/optimizer/sgd.yaml says 0.01; Lightning: 1000 epochs) and the run recorded no value for it. Refused, naming
    how to set it; removing a whole entry (``~callbacks.early_stopping``, ``~logger.csv``) stays allowed."""
    for override in overrides:
        if not override.startswith("~") or override.startswith("~~"):
            continue
        key = override[1:].partition("=")[0]
        if key == "hydra.sweeper" or key.startswith("hydra.sweeper."):
            return _sweeper_setting_removed(override, key)
        group, dot, name = key.partition(".")
        if group in TARGET_GROUPS and dot and name:  # the groups that build an object: their settings are its arguments
            return (f"{override}: removing a setting of {group} leaves its class to use its own default for "
                    f"{name.rsplit('.', 1)[-1]}, which is not the config's and which the run would not record; "
                    f"set it instead: {key}=<value> (or {key}=null where it may be unset)")
    return None


# the sweeper's mappings whose keys are dotted config keys (optimizer.momentum): an override cannot address one
# entry by a dotted path (hydra.sweeper.conditions.optimizer.momentum is read as nested keys)
_SWEEPER_MAPPINGS = ("hydra.sweeper.conditions", "hydra.sweeper.params")


def _shell_quoted(text: str) -> str:
    """``text`` quoted for a POSIX shell as a user would type it: in single quotes, or double ones where it holds a
    single quote (Hydra's own quotes inside stay as they are)."""
    if "'" not in text:
        return f"'{text}'"
    if not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)


def _sweeper_setting_removed(override: str, key: str) -> str:
    """``~hydra.sweeper.conditions``: Hydra's answer was "PipelineOptunaSweeperConf (DictConfig) does not support
    deletion" (a structured config), or, for one entry (``~hydra.sweeper.conditions.optimizer.momentum``), "Could not
    delete from config ... does not exist" (a dotted key is not a path). Said as docs/sweeps.md says it, with the
    override that does what was meant."""
    conditions, params = _SWEEPER_MAPPINGS
    if key == conditions:
        instead = ("hydra.sweeper.conditions=null takes every condition away, "
                   "'hydra.sweeper.conditions={optimizer.momentum:null}' one of them")
    elif key.startswith(conditions + "."):
        instead = f"take that condition away with {_shell_quoted(f'{conditions}={{{key[len(conditions) + 1:]}:null}}')}"
    elif key.startswith(params + "."):
        instead = (f"a searched key is fixed for every trial by a plain override: {key[len(params) + 1:]}=<value>")
    elif key == "hydra.sweeper":
        instead = "set the ones to change: hydra.sweeper.<key>=<value>"
    else:
        instead = f"set it instead: {key}=<value>"
    return f"{override}: the sweeper's settings cannot be deleted; {instead}"


def _search_parameters_misused(overrides: Sequence[str], config_dir: Path, config_name: str,
                                user_dir: Optional[str] = None) -> Optional[str]:
    """Why an override of ``hydra.sweeper.params`` cannot do what it asks, or None. Without a search chosen the
    sweeper is Hydra's own, whose ``params`` is None: ``hydra.sweeper.params={model.dropout:...}`` was OmegaConf's
    traceback ("'NoneType' object has no attribute 'get'"), exit 1. With a search, a parameter set to null (to take
    it out of the search, as a condition is taken away) was "Incompatible value 'None' for field of type 'str'"."""
    params = _SWEEPER_MAPPINGS[1]
    touching = [o for o in overrides if (o.lstrip("+").partition("=")[0] + ".").startswith(params + ".")]
    if not touching:
        return None
    try:
        from hydra import compose
        from hydra.core.override_parser.overrides_parser import OverridesParser

        with _hydra_for(config_dir, user_dir):
            composed = compose(config_name, overrides=[o for o in overrides if o not in touching],
                               return_hydra_config=True)
        parsed = OverridesParser.create().parse_overrides(touching)
    except Exception:  # the other overrides fail by themselves, or a malformed one: said elsewhere
        return None
    if OmegaConf.select(composed, params, default=None) is None:
        searches = ", ".join(config_options(config_dir, "hparams_search"))
        return (f"{touching[0]}: no search is chosen, so there are no search parameters to change; an Optuna search "
                f"starts from a search file, hparams_search=<name> ({searches}), and its parameters are given as "
                "key=<expression>, e.g. model.dropout='interval(0,0.5)'; a grid of values is a multirun: "
                "pipeline-train -m model.dropout=0.1,0.3")
    for override, text in zip(parsed, touching):
        key, value = override.key_or_group, override.value()
        entries = value if key == params and isinstance(value, dict) else {key[len(params) + 1:]: value}
        fixed = [entry for entry, expression in entries.items() if expression is None]
        if fixed:
            return (f"{text}: a search parameter cannot be null; a searched key is fixed for every trial by a plain "
                    f"override: {fixed[0]}=<value> (its range changed by {fixed[0]}=<expression>)")
    return None


def _sweeper_mapping_entry_added(full_key: str, mapping: str, overrides: Sequence[str]) -> str:
    """A new entry of ``hydra.sweeper.conditions`` (or ``params``) given without a '+'
    (``hydra.sweeper.conditions={model.dropout:"optimizer=sgd"}``): the '+' goes on the whole mapping, which merges it
    into the search file's; ``+hydra.sweeper.conditions.model.dropout=...`` (the generic hint) reads the dotted key as
    nested ones and fails in Hydra's merge ("Cannot convert 'dict' to string")."""
    entry = full_key[len(mapping) + 1:]
    given = next((o for o in overrides if o.lstrip("+").partition("=")[0] == mapping
                  and o.partition("=")[2].strip().startswith("{")), None)
    if given is not None:  # the user's own mapping, with the '+'
        hinted = "+" + given.lstrip("+")
    else:  # hydra.sweeper.conditions.model.dropout=...: OmegaConf names its first missing part (...conditions.model)
        dotted = next((o.lstrip("+").partition("=") for o in overrides if "=" in o and (
            o.lstrip("+").partition("=")[0] + ".").startswith(full_key + ".")), None)
        entry = dotted[0][len(mapping) + 1:] if dotted else entry
        value = dotted[2] if dotted else None
        if value is None or not value.strip():
            value = "'<parent>=<value>'" if mapping.endswith("conditions") else "'<expression>'"
        elif value.strip()[:1] not in ("'", '"') and value.strip() != "null":
            value = f"'{value.strip()}'"
        hinted = f"+{mapping}={{{entry}:{value.strip()}}}"
    what = "a condition" if mapping.endswith("conditions") else "a search parameter"
    return (f"unknown key '{mapping}.{entry}' ({what} the search file does not have is added with a '+' on the whole "
            f"mapping, which merges it into the file's: {_shell_quoted(hinted)})")


def _jobs_to_check(overrides: list[str], sweeps: bool = True, leave_out: frozenset = frozenset()) -> list[list[str]]:
    """The jobs a multirun's discrete sweeps make (one per value of the longest; ``sweeps=False``: the fixed
    overrides alone), without the swept keys in ``leave_out``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)  # a parse error is reported by the caller
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    if not sweeps:
        return [fixed]
    sweeps = [(o.get_key_element(), list(o.sweep_string_iterator())) for o in parsed
              if o.is_discrete_sweep() and o.get_key_element().lstrip("+~") not in leave_out]
    count = max((len(values) for _, values in sweeps), default=1)
    return [fixed + [f"{key}={values[i % len(values)]}" for key, values in sweeps] for i in range(count)]


def no_such_option(group: str, name: str, options: Sequence[str]) -> str:
    """What ``pipeline-train optimizer=sgdd`` says: the option, the nearest one, those there are."""
    match = nearest(name, options)
    suggestion = f"; did you mean {group}={match}?" if match else "."
    return f"{group}={name}: no such option in conf/{group}/{suggestion} Available: {', '.join(options)}"


def _yaml_error(error: BaseException) -> Optional[str]:
    """One line for a config file that PyYAML cannot read (``width: [8`` left open), naming the file, the line and
    column, and what PyYAML expected; None for any other error."""
    import yaml

    if not isinstance(error, yaml.YAMLError):
        return None
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    context = getattr(error, "context", None)
    problem = getattr(error, "problem", None) or one_line(error)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def describe_composition_error(error: Exception, config_dir: Path, config_name: str = "config",
                               overrides: Sequence[str] = (), user_dir: Optional[str] = None) -> str:
    from hydra.errors import MissingConfigException, OverrideParseException

    misused = _search_parameters_misused(overrides, config_dir, config_name, user_dir)
    if misused:
        return misused
    missing = re.search(r"Could not load '([\w/]+)/([^'/]+)'", str(error))
    if isinstance(error, MissingConfigException) and not error.options and missing:  # an option inside a list
        group, name = missing.groups()
        error.options = sorted(set(config_options(config_dir, group))  # and those of a --config-dir of one's own
                               | set(config_options(Path(user_dir), group) if user_dir else ()))
        error.missing_cfg_file = f"{group}/{name}"
    if isinstance(error, MissingConfigException) and error.options:
        group, _, name = (error.missing_cfg_file or "").rpartition("/")
        options = sorted(option for option in error.options if not option.startswith("_"))  # _common: a base
        match = nearest(name, options)
        suggestion = f"; did you mean {group}={match}?" if match else "."
        chooser = _file_choosing(group, name, overrides, [d for d in (config_dir, user_dir) if d])
        if chooser:  # a defaults list of a file the command line chose (an experiment's override /data: nosuch)
            return (f"{chooser}: its defaults choose {group}={name}: no such option in {group}/{suggestion} "
                    f"Available: {', '.join(options)}")
        return no_such_option(group, name, options)
    if isinstance(error, OverrideParseException):
        override = str(error.override)
        if not override.isascii():  # größe, dätä/ä.csv: letters Hydra's grammar takes only inside quotes
            key, _, value = override.partition("=")
            if value.startswith("[") and value.endswith("]"):  # a list: each item quoted, or it becomes one string
                value = ",".join(item.strip() if item.strip()[:1] in ("'", '"') else f"'{item.strip()}'"
                                 for item in value[1:-1].split(","))
                value = f"[{value}]"
            else:
                value = f"'{value}'"
            return (f"cannot parse the override '{override}': Hydra reads letters beyond ASCII (here "
                    f"{''.join(sorted({c for c in override if not c.isascii()}))}) only inside quotes: write "
                    f"\"{key}={value}\" (the double quotes keep the single ones from the shell)")
        if "NoneType is incompatible" in str(error.message):  # choice(null,trivial): Hydra's grammar takes no null
            return (f"cannot parse the override '{override}': Hydra's sweep functions take no null as a value; where "
                    "the key names its off value, write that (data.auto_augment and model.weights take none: "
                    "data.auto_augment='choice(none,trivial)')")
        return (f"cannot parse the override '{override}': {one_line(error.message)}; "
                "quote a value that holds special characters, e.g. key='a,b'")
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = error.__cause__
    full_key = getattr(cause, "full_key", None)
    if full_key and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return _unknown_key_message(str(full_key), config_dir, config_name, overrides, user_dir)
    if "Ambiguous value for argument" in str(error):  # a=x,y without -m
        override = next((o for o in overrides if "," in o and "=" in o), None)
        shown = f"{override}: " if override else ""
        return (f"{shown}several values run as a multirun: add -m (pipeline-train -m {override or 'key=x,y'}); "
                "a value that holds a comma is quoted: key='a,b'")
    tags = next((o for o in overrides if o.lstrip("+").startswith("tags=")), None)
    if tags is not None and "Cannot merge DictConfig with" in f"{error} {cause}":  # tags=[a,b]
        from pipeline.config import tags_refused

        return tags_refused(tags.split("=", 1)[1])
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if cause is not None:
        lines.append(one_line(cause).split(" full_key:")[0])
    return one_line(" ".join(lines[:3]))


def _file_choosing(group: str, name: str, overrides: Sequence[str], folders: Sequence) -> Optional[str]:
    """The config file a command line's option names (``experiment=x``: ``<folder>/experiment/x.yaml``) whose
    defaults list chooses ``group=name``; None when the command line chooses it itself, or no such file does."""
    if any(o.lstrip("+~").partition("=")[::2] == (group, name) for o in overrides):
        return None
    for override in overrides:
        chosen_group, _, option = override.lstrip("+~").partition("=")
        if not option or "." in chosen_group or "," in option:
            continue
        for folder in folders:
            path = Path(folder) / chosen_group / f"{option}.yaml"
            try:
                defaults = (OmegaConf.load(path) or {}).get("defaults") or []
            except Exception:  # no such file, or not YAML
                continue
            for entry in defaults:
                pairs = entry.items() if hasattr(entry, "items") else ()
                if any(str(v) == name and str(k).split()[-1].strip("/").rsplit("@", 1)[0] in (
                        group, group.rsplit("/", 1)[-1]) for k, v in pairs):
                    return str(path)
            break  # the first folder that has the file is the one Hydra reads
    return None


def _unknown_key_message(full_key: str, config_dir: Path, config_name: str, overrides: Sequence[str],
                         user_dir: Optional[str] = None) -> str:
    mapping = next((m for m in _SWEEPER_MAPPINGS if full_key.startswith(m + ".")), None)
    if mapping is not None:
        return _sweeper_mapping_entry_added(full_key, mapping, overrides)
    parent, _, key = full_key.rpartition(".")
    if full_key == "data.test_path":  # a bundled data set: data.test_fraction would not be what is meant
        from pipeline.config import NO_TEST_FILE

        return f"unknown key 'data.test_path': {NO_TEST_FILE}"
    # the other overrides may pick other options (data=wine has other keys than data=mnist)
    others = [o for o in overrides if not o.lstrip("+~").split("=")[0].startswith(full_key)]
    siblings, target = _keys_at(parent, config_dir, config_name, others, user_dir)
    where = f"under '{parent}'" if parent else "at the top level"
    match = nearest(key, siblings)
    suggestion = f"; did you mean '{parent + '.' if parent else ''}{match}'?" if match else ""
    listed = f"; keys {where}: {', '.join(sorted(siblings))}" if siblings and len(siblings) <= 30 else ""
    if not match and target is not None and not _takes(target, key):
        # not offered a '+' that the class would then refuse (model=cnn has no model.freeze_backbone)
        return f"unknown key '{full_key}': {target} takes no '{key}'{listed}"
    # '+' adds a key; offered when no existing key is meant (a typo gets the nearest name instead)
    plus = "" if match else f" (a key that is not in the config needs a '+': +{full_key}=...)"
    return f"unknown key '{full_key}'{suggestion}{listed}{plus}"


def _takes(target: str, key: str) -> bool:
    """Whether the class a ``_target_`` names takes ``key`` (True where that cannot be told)."""
    try:
        from pipeline.config import accepted_parameters, resolve_target

        accepted = accepted_parameters(resolve_target("", target))
    except Exception:
        return True
    return accepted is None or key in accepted


def _keys_at(path: str, config_dir: Path, config_name: str,
             overrides: Sequence[str], user_dir: Optional[str] = None) -> tuple[list[str], Optional[str]]:
    """The keys of the config at ``path`` (dotted; '' is the top level) and the ``_target_`` there, if any."""
    try:
        from hydra import compose
        from omegaconf import DictConfig, OmegaConf

        with _hydra_for(config_dir, user_dir):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=path.startswith("hydra"))
        node = OmegaConf.select(cfg, path) if path else cfg
        if not isinstance(node, DictConfig):
            return [], None
        target = node.get("_target_")
        return [str(k) for k in node.keys()], (str(target) if target else None)
    except Exception:
        return [], None


def nearest(name: str, choices: Iterable[str]) -> str:
    """The closest of ``choices`` to a misspelt ``name``, or ''."""
    choices = list(choices)
    folded = {choice.casefold(): choice for choice in choices}
    if name.casefold() in folded:  # optimizer=SGD: the option is sgd
        return folded[name.casefold()]
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return match[0] if match else ""
