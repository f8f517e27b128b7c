"""Everything that talks to MLflow. Training code calls these functions and nothing else; the MLflow
logger of the config (``conf/logger/mlflow.yaml``, a :class:`MLflowLogger`) says where and how.

A run records: params (the whole resolved config, flattened and redacted, plus the chosen config
options and the overrides), per-epoch metrics, test metrics, tags (task, seed, git, command, host,
versions), the data set digests as inputs, and artifacts: config.yaml (and the YAML files of a --config-dir it came
from, under user_config/), the best checkpoint, the model
(``runs:/<id>/model``), the tokenizer of text tasks, plots, environment.txt (every installed package) and, when
the checkout had uncommitted changes, git.diff.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import uuid
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import TrackingFailed, TrackingUnavailable
from pipeline.ranks import is_rank_zero

from .run import TrackedRun, check_reachable, check_tracking_uri, open_client

# the Lightning loggers are imported when first used: the store-writer process imports this package and
# must not pay for Lightning
_LOGGERS = ("MLflowLogger", "RunHistory", "find_mlflow_logger")


def __getattr__(name: str):
    if name in _LOGGERS:
        from . import loggers

        return getattr(loggers, name)
    raise AttributeError(f"module 'pipeline.tracking' has no attribute {name!r}")


__all__ = ["MLflowLogger", "RunHistory", "TrackedRun", "TrackingUnavailable", "TrackingFailed", "start_run",
           "log_run_start", "log_run_end", "check_reachable", "check_tracking_uri", "find_mlflow_logger",
           "open_client", "launched_as"]

# How a run was asked for, when it was not through Hydra's command line (pipeline-rerun): the config
# options it was composed from and the overrides given.
_launch: contextvars.ContextVar[Optional[tuple[dict, list]]] = contextvars.ContextVar("pipeline_launch", default=None)


@contextlib.contextmanager
def launched_as(choices: dict[str, str], overrides: list[str], user_config: Optional[dict[str, str]] = None):
    """Record ``choices`` (e.g. ``{"model": "mlp"}``) and ``overrides`` for runs started inside, and the files of a
    user's config folder their config came from (a rerun's: its source run's ``user_config/``)."""
    token = _launch.set((dict(choices), list(overrides), dict(user_config or {})))
    try:
        yield
    finally:
        _launch.reset(token)


def _hydra_config():
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return HydraConfig.get()
    except Exception:
        pass
    return None


def _choices() -> dict[str, str]:
    if _launch.get() is not None:
        return _launch.get()[0]
    hydra = _hydra_config()
    try:
        return {k: str(v) for k, v in hydra.runtime.choices.items() if v is not None} if hydra else {}
    except Exception:
        return {}


def _overrides() -> list[str]:
    if _launch.get() is not None:
        return _launch.get()[1]
    hydra = _hydra_config()
    try:
        return list(hydra.overrides.task) if hydra else []
    except Exception:
        return []


def choice_name(cfg: DictConfig, group: str) -> str:
    chosen = _choices().get(group)
    if chosen:
        return chosen
    node = cfg.get(group)
    target = node.get("_target_") if node is not None else None
    return str(target).rsplit(".", 1)[-1].lower() if target else "none"


def start_run(cfg: DictConfig, loggers, output_dir: Path, parent_run_id: Optional[str] = None,
              extra_tags: Optional[dict] = None) -> TrackedRun:
    """The MLflow run of this training run, as a context manager (FINISHED, FAILED or KILLED on exit). It
    records nothing when the config has no MLflow logger (``logger=none``, ``logger=csv``). Names and tags
    are redacted: a secret from the environment never reaches the store, the run name or the console."""
    from .redact import redact_text, redact_value

    from .loggers import find_mlflow_logger

    mlflow_logger = find_mlflow_logger(loggers)
    if mlflow_logger is None:
        return TrackedRun(None, "", output_dir=output_dir)
    run_name = mlflow_logger.run_name or f"{choice_name(cfg, 'model')}-{choice_name(cfg, 'optimizer')}-{uuid.uuid4().hex[:6]}"
    user_tags = {k: str(redact_value(k, v)) for k, v in flat_tags(cfg.get("tags")).items()}
    from . import remote

    settings = dict(
        tracking_uri=mlflow_logger.tracking_uri,
        experiment_name=redact_text(str(mlflow_logger.experiment_name)),
        run_name=redact_text(str(run_name)),
        artifact_location=mlflow_logger.artifact_location,
        parent_run_id=parent_run_id,
        register_as=getattr(mlflow_logger, "register_as", None),
        tags={"task": cfg.task.name, "seed": str(cfg.seed), **user_tags, **(extra_tags or {})},
        output_dir=output_dir,
    )
    if remote.enabled() and is_rank_zero():
        sweep = cfg.get("sweep")
        trial = bool(sweep) and sweep.get("trial_number") is not None and not sweep.get("final")
        run = remote.RemoteRun(**settings, log_model_expected=bool(mlflow_logger.log_model and cfg.get("test", True)),
                               wait_for_store=not trial)
    else:
        run = TrackedRun(**settings)
    mlflow_logger.run = run
    run.settings = mlflow_logger
    return run


def log_run_start(run: TrackedRun, cfg: DictConfig, datamodule, trainer) -> None:
    """Params (whole config, flattened and redacted), tags, data set inputs, the resolved config as an artifact."""
    from .artifacts import log_dataset_inputs
    from .run import DIGESTS_TAG, ROWS
    from .params import config_params
    from .provenance import git_state, installed_packages, provenance_tags
    from .redact import redact_tree

    resolved = OmegaConf.to_container(cfg, resolve=True)
    world = trainer.world_size if trainer is not None else 1
    choices = _choices() or {g: choice_name(cfg, g) for g in ("data", "model", "optimizer")}
    import torch

    # the number of torch threads is part of what a run's numbers depend on (results can differ in their last bits
    # from one count to another); it comes from the environment (OMP_NUM_THREADS), not the config
    extra = {"effective_batch_size": str(cfg.data.batch_size * world * cfg.trainer.get("accumulate_grad_batches", 1)),
             "torch_threads": str(torch.get_num_threads())}
    if "task" not in choices:
        extra["task"] = cfg.task.name
    if hasattr(run, "send_config"):  # flattened and redacted in the store-writer process
        run.send_config(resolved, choices, _overrides(), extra)
        if run.log_model_expected:  # the writer imports what logging this data's kind of model needs, meanwhile
            from .remote import warm_for_model

            warm_for_model(raw_rows=type(datamodule).model_takes_raw_rows())
    else:
        run.log_params({**config_params(resolved, choices, _overrides()), **extra})
    config_yaml = yaml_text(redact_tree(resolved))
    if is_rank_zero():  # every rank of a DDP run shares the output directory; rank 0 writes it
        (run.output_dir / "config.yaml").write_text(config_yaml)
    run.log_text(config_yaml, "config.yaml")
    if run.active and is_rank_zero():  # the files of a --config-dir the config came from: the run recomposed from them
        from pipeline.config import CONFIG_DIR

        from .provenance import USER_CONFIG_FOLDER, user_config_files

        launched = _launch.get()
        files = launched[2] if launched is not None else user_config_files(_hydra_config(), CONFIG_DIR)
        for relative, text in files.items():
            run.log_text(text, f"{USER_CONFIG_FOLDER}/{relative}")
    if run.active and is_rank_zero():  # a model or callback of one's own: its code, which git_commit does not cover
        import hashlib

        from .provenance import own_code

        code = own_code(resolved)
        for module, (_, text) in code.items():
            run.log_text(text, f"code/{module}.py")
        if code:
            run.set_tags({f"code.{module}": hashlib.sha256(text.encode()).hexdigest()[:12]
                          for module, (_, text) in code.items()})
    if run.active and hasattr(run, "send_provenance"):  # the store-writer process runs git and reads versions
        from pipeline.config import PROJECT_ROOT

        from .provenance import command_line

        run.send_provenance(PROJECT_ROOT, command_line(), is_rank_zero())
        data_name = _choices().get("data") or getattr(datamodule, "name", None) or choice_name(cfg, "data")
        digests = log_dataset_inputs(run, datamodule, data_name)
        # an evaluation on a test file alone has no training rows
        run.set_tags({DIGESTS_TAG: ROWS, **({"data_digest": digests["training"]} if "training" in digests else {})})
    elif run.active:
        from pipeline.config import PROJECT_ROOT

        git = git_state(PROJECT_ROOT)
        data_name = _choices().get("data") or getattr(datamodule, "name", None) or choice_name(cfg, "data")
        digests = log_dataset_inputs(run, datamodule, data_name)
        run.set_tags({**provenance_tags(PROJECT_ROOT, git), DIGESTS_TAG: ROWS,
                      **({"data_digest": digests["training"]} if "training" in digests else {})})
        run.log_text(installed_packages(), "environment.txt")
        if git is not None and git.dirty:
            diff = run.output_dir / "git.diff"
            diff.write_text(git.diff)  # masked by git_state (redact_diff)
            run.log_artifact(diff)


@functools.cache
def _yaml_dumper():
    """OmegaConf's YAML dumper, on libyaml's emitter where PyYAML has it: the same text (the representers, which
    decide quoting, are OmegaConf's) in a quarter of the time (~2 ms for a run's config instead of ~8)."""
    import yaml
    from omegaconf._utils import OmegaConfDumper, get_omega_conf_dumper

    if not getattr(yaml, "__with_libyaml__", False):
        return get_omega_conf_dumper()

    class FastOmegaConfDumper(yaml.CDumper):
        pass

    FastOmegaConfDumper.add_representer(str, OmegaConfDumper.str_representer)
    return FastOmegaConfDumper


def yaml_text(tree: Any) -> str:
    """``OmegaConf.to_yaml`` of a plain tree (``OmegaConf.to_container``'s), without building a node from it."""
    import yaml

    return yaml.dump(tree, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=_yaml_dumper())


def flat_tags(tags) -> dict[str, Any]:
    """The ``tags`` node as MLflow tags: nested keys dotted (``+tags.mlflow.note.content=...`` is the tag
    ``mlflow.note.content``, the run's description, not a tag ``mlflow`` holding a dict's text), as params are."""
    from omegaconf import OmegaConf

    from .params import flatten

    if tags is None:
        return {}
    plain = OmegaConf.to_container(tags, resolve=True) if OmegaConf.is_config(tags) else dict(tags)
    return {key: value for key, value in flatten(plain) if key}


def log_run_end(run: TrackedRun, cfg: DictConfig, task_module, datamodule, trainer, checkpoint, metrics: dict,
                output_dir: Path, history: list[dict], tested: bool = True, log_model: bool = True) -> None:
    """Test metrics, the best checkpoint, the data module's files (tokenizer), plots and the model; prints
    where the results are. Plots of the test split and the model are made only when the run was tested."""
    from .artifacts import log_data_artifacts, start_log_model

    settings = getattr(run, "settings", None)
    already_logged = {key for row in history for key in row}  # the test metrics went through the loggers
    run.log_metrics({k: v for k, v in metrics.items() if k not in already_logged}, step=trainer.current_epoch)
    if checkpoint is not None and checkpoint.best_model_path:
        run.log_artifact(Path(checkpoint.best_model_path), "checkpoints")
        if tested and run.active and is_rank_zero():  # which epoch's model the test metrics are of
            tags = {"tested_checkpoint": f"checkpoints/{Path(checkpoint.best_model_path).name}"}
            epoch = re.search(r"epoch(\d+)", Path(checkpoint.best_model_path).name)
            if epoch:
                tags["tested_epoch"] = str(int(epoch.group(1)) + 1)
            run.set_tags(tags)
    model_logged = None
    if run.active and settings is not None and settings.log_model and tested and log_model:
        # started first: the store-writer process exports the model while this process draws the plots
        model_logged = start_log_model(run, task_module.predictor(), datamodule.example_input(),
                                       datamodule.raw_input_adapter(), datamodule.spec)
    # a store that failed mid-run takes nothing more, but the run's own files are still written in its folder
    kept = run.active or getattr(run, "failure", None) is not None
    if is_rank_zero():
        log_data_artifacts(run, datamodule, output_dir)
        if kept and tested:
            summary, count = model_summary(task_module.model)
            (Path(output_dir) / "model_summary.txt").write_text(summary)
            run.log_text(summary, "model_summary.txt")
            run.set_tags({"model_parameters": str(count)})
        if kept and settings is not None:
            _log_test_outputs(run, cfg, task_module, datamodule, history, output_dir, tested, settings)
    registered, unregistered = None, None
    if model_logged is not None and model_logged() is not None and getattr(settings, "register_as", None):
        registered, unregistered = _register_model(run, settings.register_as)
    run.flush()
    _print_summary(run, metrics, output_dir, checkpoint, tested, registered,
                   getattr(task_module, "positive_name", None), tied_best_epochs(checkpoint, history))
    if unregistered is not None:  # the run ends FAILED with the reason: it did not do all it was asked
        from pipeline.errors import RegistrationFailed

        raise RegistrationFailed(f"the run's model is logged (runs:/{run.run_id}/model), but registering it as "
                                 f"{settings.register_as!r} failed: {unregistered}; register it in the UI or with "
                                 f"mlflow.register_model('runs:/{run.run_id}/model', {settings.register_as!r})")


def model_summary(model) -> tuple[str, int]:
    """(the model as PyTorch prints it, then each parameter's name, shape and count; the number of trainable
    parameters): what the run trained, readable without loading the checkpoint (``model_summary.txt``)."""
    rows = [(name, tuple(p.shape), p.numel(), p.requires_grad) for name, p in model.named_parameters()]
    trainable = sum(count for *_, count, grad in rows if grad)
    lines = [str(model), "", f"trainable parameters: {trainable:,}", f"all parameters: {sum(r[2] for r in rows):,}", ""]
    lines += [f"{name}  {list(shape)}  {count:,}{'' if grad else '  (frozen)'}" for name, shape, count, grad in rows]
    return "\n".join(lines) + "\n", trainable


def _register_model(run: TrackedRun, name: str) -> tuple[Optional[str], Optional[str]]:
    """(``models:/<name>/<version>``, None) for the run's logged model registered as ``name``'s next version (by the
    store-writer process when it records the run), or (None, why not)."""
    from .redact import redact_text

    if hasattr(run, "note_failure"):  # recorded by the store-writer process
        from .remote import call_in_writer

        ok, value = call_in_writer("pipeline.tracking.artifacts:register_model", run.tracking_uri, run.run_id,
                                   name).result()
        return (f"models:/{name}/{value}", None) if ok else (None, redact_text(" ".join(str(value).split()))[:300])
    from .artifacts import register_model

    try:
        return f"models:/{name}/{register_model(run.tracking_uri, run.run_id, name)}", None
    except Exception as error:
        return None, redact_text(" ".join(f"{type(error).__name__}: {error}".split()))[:300]


def _log_test_outputs(run: TrackedRun, cfg: DictConfig, task_module, datamodule, history: list[dict],
                      output_dir: Path, tested: bool, settings) -> None:
    """With ``log_plots``: the learning curves and, when the run was tested, the task kind's plots of the test split
    (confusion matrix and ROC/precision-recall curves, predicted vs true), as PNGs in ``<output_dir>/plots`` logged
    under ``plots/``. With ``log_predictions`` and a test: each test row's target and prediction (and class
    probabilities) as ``<output_dir>/predictions/test.csv``, logged under ``predictions/``."""
    from .artifacts import test_predictions, write_predictions

    plots_wanted = settings.log_plots
    predictions_wanted = tested and getattr(settings, "log_predictions", True)
    if not plots_wanted and not predictions_wanted:
        return
    y_true, outputs = (test_predictions(task_module.predictor(), datamodule, task_module.device)
                       if tested else (None, None))
    if predictions_wanted:
        folder = output_dir / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        sources = getattr(datamodule, "test_row_sources", lambda: None)()  # image paths, texts
        run.log_artifact(write_predictions(y_true, outputs, datamodule.spec, folder / "test.csv", sources),
                         "predictions")
    if plots_wanted:
        from pipeline import plots

        folder = output_dir / "plots"
        folder.mkdir(parents=True, exist_ok=True)
        plots.learning_curves(history, folder / "learning_curves.png", monitor=cfg.task.monitor)
        if tested:
            task_module.test_plots(y_true, outputs, folder, datamodule.spec)
        run.log_artifacts(folder, "plots")


def tied_best_epochs(checkpoint, history: list[dict]) -> Optional[str]:
    """A line where the best value of the checkpoint's monitor was reached at several epochs: the first of them is
    the checkpoint kept and tested (Lightning keeps a value only when it is better), which on a small validation
    split of accuracies (0.8 at every epoch while val/loss fell by half) is the least trained model."""
    monitor = getattr(checkpoint, "monitor", None) if checkpoint is not None else None
    if not monitor or not getattr(checkpoint, "best_model_path", None):
        return None
    values = [(int(row["epoch"]), float(row[monitor])) for row in history if monitor in row and "epoch" in row]
    if len(values) < 2:
        return None
    best = (min if getattr(checkpoint, "mode", "min") == "min" else max)(value for _, value in values)
    tied = sorted({epoch + 1 for epoch, value in values if value == best})
    if len(tied) < 2:
        return None
    shown = ", ".join(map(str, tied[:6])) + (", ..." if len(tied) > 6 else "")
    return (f"  ({monitor} {best:.6g} at epochs {shown}: the first of them is the checkpoint tested; a finer "
            "measure breaks such ties, e.g. task.monitor=val/loss task.mode=min)")


def _print_summary(run: TrackedRun, metrics: dict, output_dir: Path, checkpoint, tested: bool,
                   registered: Optional[str] = None, positive: Optional[str] = None,
                   tie: Optional[str] = None) -> None:
    if not is_rank_zero():
        return
    shown = {k: v for k, v in metrics.items() if k.startswith("test/")} if tested else {
        k: v for k, v in metrics.items() if k.startswith("val/")}
    from pipeline.tasks.intervals import split_intervals, with_interval

    shown, bounds = split_intervals(shown)
    title = "Test metrics: " if tested else "Validation metrics (not tested: test=false): "
    lines = ["", title + ", ".join(f"{k}={with_interval(v, bounds.get(k))}" for k, v in sorted(shown.items()))]
    if bounds:
        lines.append("  (in brackets: the 95 % bootstrap interval over the test rows, task.test_intervals)")
    if positive is not None:
        lines.append(f"  (f1 and ap: of the class {positive}, the positive class; task.positive_class)")
    # what the folder holds (a sweep's trial: no checkpoints, plots or predictions)
    held = [label for name, label in (("config.yaml", "config"), ("checkpoints", "checkpoints"),
                                      ("metrics.jsonl", "metrics.jsonl"), ("plots", "plots"),
                                      ("predictions", "predictions")) if (Path(output_dir) / name).exists()]
    lines.append(f"Outputs ({', '.join(held)}): {output_dir}" if held else f"Outputs: {output_dir}")
    if checkpoint is not None and checkpoint.best_model_path:
        # without a validation split (data.val_fraction=0) the checkpoint callback monitors nothing: the last epoch
        kind = "Best checkpoint" if checkpoint.monitor else "Checkpoint of the last epoch (no validation split)"
        lines.append(f"{kind}: {checkpoint.best_model_path}")
        if tie:
            lines.append(tie)
    if run.run_id and run.failure is None:
        from .redact import redact_text

        lines.append(f"MLflow run {redact_text(str(run.run_name))} ({run.run_id}) in experiment "
                     f"'{redact_text(str(run.experiment_name))}' at {redact_text(str(run.tracking_uri))}")
        if registered:
            lines.append(f"Registered model: {redact_text(registered)} (pipeline-predict {redact_text(registered)} "
                         "--input ... --output ...)")
        lines.append(store_commands_line(str(run.tracking_uri)))
    print("\n".join(lines), flush=True)


def store_commands_line(tracking_uri: str) -> str:
    """How to open the UI on the run's store and compare its runs: plain commands for the default store
    (``./mlruns/mlflow.db``), which is what they read without options; ``--tracking-uri <uri>`` for any other
    (``paths.mlruns_dir``, ``MLFLOW_TRACKING_URI``, which a later shell may not have set)."""
    import shlex

    from pipeline.sqlite import sqlite_path

    from .redact import redact_text

    path = sqlite_path(tracking_uri)
    if path is not None and Path(path).resolve() == (Path.cwd() / "mlruns" / "mlflow.db").resolve():
        return "Open the UI with: pipeline-ui   (or: make ui); compare runs: pipeline-compare"
    option = f"--tracking-uri {shlex.quote(redact_text(tracking_uri))}"
    return f"Open the UI with: pipeline-ui {option}; compare runs: pipeline-compare {option}"
