"""``pipeline-train [overrides]`` (or ``python -m pipeline.cli.train``): compose the config with Hydra,
train, and answer with one line on a mistake (exit 2), an interrupt (exit 130) or a bug (exit 1)."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.claims import CLAIM_FILE, release_claim
from pipeline.cli.errors import (check_command_line, closed_stdout_ignored, hydra_errors_described,
                                 refuse_base_file_choice, refuse_experiment_as_primary_config, refuse_hidden_own_options,
                                 refuse_null_groups_and_removed_settings, refuse_show_with_multirun,
                                 report_errors, several_jobs)
from pipeline.config import CONFIG_DIR
from pipeline.errors import (EXIT_INTERRUPTED, EXIT_USER_ERROR, forget_warnings, remember_resume_point,
                             remember_run_ended, run_ended)
from pipeline.ranks import is_rank_zero


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig

    from pipeline.train import train

    refuse_base_file_choice(HydraConfig.get().runtime.choices, CONFIG_DIR)
    if is_rank_zero():
        from pipeline.tracking.redact import redact_hydra_record

        redact_hydra_record(Path(HydraConfig.get().runtime.output_dir) / ".hydra")
    if OmegaConf.select(cfg, "logger.mlflow.log_model", default=False):  # a run logs it; a sweep's best trial does
        from pipeline.data import TENSOR_MODEL_DATA
        from pipeline.tracking.remote import warm_for_model

        warm_for_model(raw_rows=OmegaConf.select(cfg, "data._target_") not in TENSOR_MODEL_DATA)
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    remember_run_ended(None)  # a job of a multirun or a sweep's final runs: the previous job's run is not this one
    try:
        with console_copied_to(output_dir / "train.log"), report_errors():
            metrics = train(cfg)
    except SystemExit as refused:
        if refused.code == EXIT_USER_ERROR:
            remove_untouched_output_dir(output_dir)
        raise
    return metrics.get(cfg.task.monitor.replace("val/", "test/"))


# a terminal's escape sequences: colours and styles (CSI, ``\x1b[1m``), titles and links (OSC), single-character ones
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


class _CopiedLines:
    """A console stream whose finished lines are also appended to a file; of a line a progress bar redrew (``\r``)
    only its last state, and without the terminal's escape sequences (transformers' load report is printed in bold:
    the file held its ``\x1b[1m`` codes, which a text view or the logged artifact shows as they are)."""

    def __init__(self, stream, file):
        self._stream, self._file, self._pending = stream, file, ""

    def write(self, text: str) -> int:
        text = _redact(text)  # docs/tracking.md: secrets are masked in what is printed, and train.log is logged
        try:
            self._pending += text
            if "\n" in self._pending:
                *lines, self._pending = self._pending.split("\n")
                self._file.write(_ANSI_ESCAPE.sub("", "".join(line.rsplit("\r", 1)[-1] + "\n" for line in lines)))
        except (OSError, ValueError):  # the copy matters less than the console
            pass
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def console_copied_to(log: Path):
    """What the run prints (its data line, epoch lines, test metrics and where things are, a refusal's or an
    interrupt's line) is also appended to its folder's ``train.log``, beside the log records Hydra writes there (it
    held those alone, so it was empty after nearly every run). Rank 0 only: the other ranks print nothing of their
    own."""
    if not is_rank_zero():
        yield
        return
    try:
        file = open(log, "a", buffering=1, encoding="utf-8")
    except OSError:
        yield
        return
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _CopiedLines(sys.stdout, file), _CopiedLines(sys.stderr, file)
    # log records reach Hydra's console and train.log handlers, which hold the streams from before
    handlers = [handler for handler in logging.getLogger().handlers if _masked_record not in handler.filters]
    for handler in handlers:
        handler.addFilter(_masked_record)
    # Hydra's file handler writes train.log itself: a record of a library that logs in colour (transformers' load
    # report, which reaches the root logger where CI is set) went there with its escape codes
    files = {handler: handler.formatter for handler in handlers if isinstance(handler, logging.FileHandler)}
    for handler, formatter in files.items():
        handler.setFormatter(_PlainFormatter(formatter))
    try:
        yield
    finally:
        for handler, formatter in files.items():
            handler.setFormatter(formatter)
        for handler in handlers:
            handler.removeFilter(_masked_record)
        sys.stdout, sys.stderr = streams
        file.close()


class _PlainFormatter(logging.Formatter):
    """A file handler's formatter whose lines are written without the terminal's escape sequences."""

    def __init__(self, formatter: Optional[logging.Formatter]):
        super().__init__()
        self._formatter = formatter or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI_ESCAPE.sub("", self._formatter.format(record))


def _redact(text: str) -> str:
    from pipeline.tracking.redact import redact_text  # imported with the run (pipeline.tracking costs ~40 ms)

    return redact_text(text)


def _masked_record(record: logging.LogRecord) -> bool:
    """A log record with the secrets of its message masked, as printed lines are."""
    message = record.getMessage()
    masked = _redact(message)
    if masked != message:
        record.msg, record.args = masked, None
    return True


# what Hydra and the folder's claim put into a run's output folder before anything of the run is written
UNTOUCHED_OUTPUT = {".hydra", "train.log", CLAIM_FILE}


def remove_untouched_output_dir(folder: Path) -> None:
    """A command refused before its run wrote anything (a config, data or resume refusal: exit 2) leaves no
    ``outputs/<date>/<time>/`` folder behind holding only Hydra's copy of the config and an empty log, nor its
    claim on the folder (a named folder's next run wrote to ``<folder>-2``). A folder with anything else in it (a
    config.yaml, checkpoints, a user's files), one named by hydra.run.dir that was there before the command, one of
    hydra.sweep.dir, and the folder the command runs in are kept."""
    import shutil

    release_claim(folder)  # the folder's next run writes there, not to <folder>-2
    named = any(a.lstrip("+~").startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in sys.argv[1:])
    if named and _NAMED_FOLDERS_THERE_BEFORE.get(folder.absolute(), True):
        return  # a folder the user named that was there before (one they made, or the folder they work in): theirs
    try:
        here = Path.cwd().resolve()
        if folder.resolve() == here or folder.resolve() in here.parents:
            return
        if folder.is_dir() and {entry.name for entry in folder.iterdir()} <= UNTOUCHED_OUTPUT:
            shutil.rmtree(folder)
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", folder.parent.name) and not any(folder.parent.iterdir()):
                folder.parent.rmdir()  # the day's folder (outputs/<date>/) this run created
                outputs = folder.parent.parent
                if outputs.name == "outputs" and outputs.resolve() != here and not any(outputs.iterdir()):
                    outputs.rmdir()  # and outputs/ itself, left empty (a first command refused in a new folder)
    except OSError:
        pass  # a folder that cannot be removed is left as it is


# hydra.run.dir's folder (after free_run_dir) -> whether it was there before this command: one it made is removed
# when the command is refused, as an outputs/<date>/<time>/ folder is
_NAMED_FOLDERS_THERE_BEFORE: dict[Path, bool] = {}


def main() -> None:
    # SIGTERM in the seconds before a run starts (imports, composing the config) ended the command silently with
    # 143; it is an interrupt like Ctrl-C from the start (a run's and a sweep's own handlers take over inside them)
    previous = signal.signal(signal.SIGTERM, _interrupt) if _in_main_thread() else None
    try:
        _main()
    except KeyboardInterrupt:
        ended = run_ended()
        if ended is None:
            _remove_untouched_job_folder()
        print(f"Interrupted (Ctrl-C or SIGTERM) after the run ended: it is recorded as it finished; its outputs in "
              f"{ended}" if ended is not None else
              "Interrupted (Ctrl-C or SIGTERM) before a run started: nothing was trained or recorded",
              file=sys.stderr, flush=True)
        if launched_as_a_command():
            os._exit(EXIT_INTERRUPTED)
        raise SystemExit(EXIT_INTERRUPTED)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _remove_untouched_job_folder() -> None:
    """The job's folder Hydra made before the interrupt (only its .hydra/ and an empty log), as a refusal's."""
    with contextlib.suppress(Exception):
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized() and HydraConfig.get().mode.name == "RUN":
            remove_untouched_output_dir(Path(HydraConfig.get().runtime.output_dir))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _main() -> None:
    closed_stdout_ignored()  # pipeline-train | head: a closed stdout ends no run FAILED (before Hydra's logging takes it)
    forget_warnings()
    remember_resume_point(None)
    remember_run_ended(None)
    free_run_dir(sys.argv)
    unset_empty_mlflow_variables()
    refuse_show_with_multirun(sys.argv[1:])
    refuse_experiment_as_primary_config(sys.argv[1:])
    refuse_hidden_own_options(sys.argv[1:], CONFIG_DIR)
    refuse_null_groups_and_removed_settings(sys.argv[1:], CONFIG_DIR)
    if several_jobs(sys.argv[1:]):  # -m a=x,y: every job's config is checked before the first one trains
        check_command_line(sys.argv[1:], CONFIG_DIR)
    if tracks_to_mlflow(sys.argv[1:]):
        from pipeline.tracking.remote import start_early

        # MLflow is imported in the store-writer process while this one imports torch (what logging the model needs
        # at the end is asked for once the config names the data: _hydra_main)
        start_early()
    with hydra_errors_described(sys.argv[1:], CONFIG_DIR):  # a wrong option or key: one line, exit 2
        if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
            _help_without_base_files()
        _hydra_main()
    if launched_as_a_command():
        exit_at_once()


def unset_empty_mlflow_variables() -> None:
    """``MLFLOW_TRACKING_URI=`` (set, empty) is unset to MLflow and to pipeline-compare/-predict; the config's
    ``oc.env`` took it as the URI, and a run then logged nothing at all, exit 0. Empty means unset here too."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        if name in os.environ and not os.environ[name].strip():
            del os.environ[name]


# Hydra's options after which no job runs; --config-dir, --config-name ... run one and are no reason to skip
_NOTHING_RUNS = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc"}


def free_run_dir(argv: list[str]) -> None:
    """``hydra.run.dir=<folder>`` naming a folder another run claimed (the same command given twice): this run takes
    ``<folder>-2`` (``-3`` ...) before Hydra starts, as ``train.claim_output_dir`` would once it ran, so that Hydra's
    record of the job (``.hydra/*.yaml``, its log) goes there too and does not overwrite the other run's."""
    if not is_rank_zero() or any(a in ("-m", "--multirun") for a in argv[1:]):
        return  # other ranks write into rank 0's folder; a multirun's jobs have folders of their own
    if any(a.partition("=")[0] in _NOTHING_RUNS for a in argv[1:]):
        return  # --cfg job, --help ...: nothing runs (and a line before --cfg's YAML broke it as YAML)
    for index, argument in enumerate(argv[1:], start=1):
        key, _, value = argument.partition("=")
        if key.lstrip("+") != "hydra.run.dir" or not value or "${" in value:
            continue
        folder, chosen = Path(value), Path(value)
        for attempt in range(2, 1000):
            if not (chosen / CLAIM_FILE).exists():
                break
            chosen = folder.with_name(f"{folder.name}-{attempt}")
        if chosen != folder:
            print(f"Output folder {folder} belongs to another run; this run writes to {chosen}", flush=True)
            argv[index] = f"{key}={chosen}"
        _NAMED_FOLDERS_THERE_BEFORE[chosen.absolute()] = chosen.exists()


def _help_without_base_files() -> None:
    """Hydra's --help, less the ``_*.yaml`` base files its list of config groups shows as options (``data: _common,
    _image_files, adult, ...``): they are not options (``data=_common`` is refused)."""
    import contextlib
    import io

    text = io.StringIO()
    try:
        with contextlib.redirect_stdout(text):
            _hydra_main()
    finally:
        groups, _, rest = text.getvalue().partition("== Config ==")
        lines = []
        for line in groups.splitlines(keepends=True):
            group = re.match(r"([\w/]+): (.*?)(\n?)$", line)
            if group:
                options = [o for o in group.group(2).split(", ") if not o.startswith("_")]
                line = f"{group.group(1)}: {', '.join(options)}{group.group(3)}"
            lines.append(line)
        sys.stdout.write("".join(lines) + ("== Config ==" + rest if rest else ""))
        sys.stdout.flush()


def launched_as_a_command() -> bool:
    """``pipeline-train`` or ``python -m pipeline.cli.train`` (argv[0] is the script's file), not ``main()`` called
    by other code (the tests call it in their own process)."""
    return bool(sys.argv and sys.argv[0]) and Path(sys.argv[0]).is_file()


def exit_at_once() -> None:
    """Everything is recorded (the store-writer process has finished, logs are flushed): skip the interpreter's
    teardown of torch, Lightning, Hydra and matplotlib, which took 2-4 s on this project's machine after the
    work was done (a plain ``import torch`` script spends ~2 s there too)."""
    import logging
    import os

    from pipeline.sqlite import close_write_ahead_logs
    from pipeline.tracking.remote import close_writer

    close_writer()
    close_write_ahead_logs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def tracks_to_mlflow(arguments: list[str]) -> bool:
    """Whether this command will probably record MLflow runs (the default logger, unless the command line picks
    others); a wrong guess only starts the store-writer process for nothing, or later."""
    if not is_rank_zero() or any(a.startswith("-") and a not in ("-m", "--multirun") for a in arguments):
        return False  # other ranks never record; --help, --cfg ... do not run
    choices = [a.split("=", 1)[1] for a in arguments if a.lstrip("+~").startswith("logger=")]
    return not choices or "mlflow" in choices[-1]


if __name__ == "__main__":
    main()
