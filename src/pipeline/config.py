"""Typed config schema and validation: a wrong config is refused before any data is loaded.

Three layers, checked in this order by :func:`validate`:
1. the fixed parts (task, paths, logger, callbacks, top-level keys) against dataclass schemas;
2. every ``_target_`` node (data, model, optimizer, scheduler, trainer) against the signature of
   the class it builds: an unknown key is named with the nearest valid one (hydra-zen's idea);
3. value ranges and choices that only make sense together (model vs data vs task).
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"

if not OmegaConf.has_resolver("pipeline_root"):
    OmegaConf.register_new_resolver("pipeline_root", lambda: str(PROJECT_ROOT))


class ConfigError(ValueError):
    """The composed config is invalid; the message names the key, the value and what is allowed."""


# ----- schemas of the fixed parts ---------------------------------------------------------------
@dataclass
class TaskConfig:
    name: str = "classification"
    objective: str = "classification"  # regression | classification
    monitor: str = "val/acc"
    mode: str = "max"  # min | max
    label_smoothing: float = 0.0


@dataclass
class PathsConfig:
    root_dir: str = "."
    data_dir: str = "data"
    mlruns_dir: str = "mlruns"
    output_dir: str = "outputs"


@dataclass
class LoggerConfig:
    tracking_uri: Optional[str] = None
    artifact_location: Optional[str] = None
    experiment_name: str = "default"
    run_name: Optional[str] = None
    log_model: bool = True
    log_plots: bool = True


@dataclass
class CheckpointConfig:
    save_last: bool = True


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


FIXED_SCHEMAS = {
    "task": TaskConfig,
    "paths": PathsConfig,
    "logger": LoggerConfig,
    "callbacks": CallbacksConfig,
}
TARGET_GROUPS = ("data", "model", "optimizer", "scheduler", "trainer")
TOP_LEVEL_KEYS = set(FIXED_SCHEMAS) | set(TARGET_GROUPS) | {"seed", "ckpt_path", "tags", "sweep"}

# arguments that train.py passes when it builds the object, never set in YAML
WIRED_ARGUMENTS = {
    "model": {"input_shape", "num_outputs", "vocab_size", "pad_id"},
    "optimizer": {"params"},
    "scheduler": {"optimizer", "total_steps", "epochs", "steps_per_epoch"},
    "trainer": {"callbacks", "logger", "plugins", "default_root_dir"},
}


def nearest(name: str, choices) -> str:
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


# ----- validation ---------------------------------------------------------------------------------
def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` with a one-line reason if ``cfg`` cannot give a meaningful run."""
    _check_fixed_parts(cfg)
    for group in TARGET_GROUPS:
        node = cfg.get(group)
        if node is not None and "_target_" in node:
            _check_against_signature(group, node)
    _check_ranges(cfg)
    _check_compatibility(cfg)


def _check_fixed_parts(cfg: DictConfig) -> None:
    for key in cfg.keys():
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"unknown top-level key '{key}'{nearest(key, TOP_LEVEL_KEYS)}")
    for group, schema in FIXED_SCHEMAS.items():
        if group not in cfg:
            raise ConfigError(f"missing config group '{group}'")
        try:
            OmegaConf.merge(OmegaConf.structured(schema), cfg[group])
        except OmegaConfBaseException as error:
            key = getattr(error, "key", None)
            allowed = _fields(schema)
            if key is not None and str(key) not in allowed:
                raise ConfigError(f"unknown key '{group}.{key}'{nearest(str(key), allowed)}") from None
            raise ConfigError(f"{group}.{key}: {_first_line(error)}") from None
    task = cfg.task
    _choice("task.objective", task.objective, ("regression", "classification"))
    _choice("task.mode", task.mode, ("min", "max"))


def _fields(schema) -> list[str]:
    return list(schema.__dataclass_fields__)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def resolve_target(group: str, path: str) -> Callable:
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception as error:  # ImportError, AttributeError, ...
        raise ConfigError(f"{group}._target_: cannot import '{path}' ({_first_line(error)})") from None


def _check_against_signature(group: str, node: DictConfig) -> None:
    target = resolve_target(group, node._target_)
    parameters = _parameters(target)
    if parameters is None:  # accepts **kwargs all the way down
        return
    wired = WIRED_ARGUMENTS.get(group, set())
    for key in node.keys():
        if key.startswith("_"):
            continue
        if key in wired:
            raise ConfigError(f"{group}.{key} is set by the pipeline, not in the config; remove it")
        if key not in parameters:
            raise ConfigError(
                f"unknown key '{group}.{key}' for {node._target_}{nearest(key, parameters - wired)}"
            )


def _parameters(target: Callable) -> Optional[set[str]]:
    """Names accepted by ``target``, following ``**kwargs`` up the class hierarchy."""
    names: set[str] = set()
    classes = inspect.getmro(target) if inspect.isclass(target) else (target,)
    for owner in classes:
        function = owner.__init__ if inspect.isclass(owner) else owner
        if inspect.isclass(owner) and "__init__" not in vars(owner):
            continue
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return None
        has_var_kwargs = False
        for parameter in signature.parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                has_var_kwargs = True
            elif parameter.kind is not parameter.VAR_POSITIONAL and parameter.name != "self":
                names.add(parameter.name)
        if not has_var_kwargs:
            return names
        if not inspect.isclass(owner) or owner is object:
            return None
    return names


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return value


def _choice(key: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")


def _get(cfg: DictConfig, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted, default=None)


# key -> (check, description of what is allowed)
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "optimizer.lr": (lambda v: v > 0, "> 0"),
    "optimizer.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optimizer.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.l1": (lambda v: v >= 0, ">= 0"),
    "data.val_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "data.test_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "task.label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
}
INTEGER_MINIMUMS = {
    "data.batch_size": 1,
    "data.eval_batch_size": 1,
    "trainer.max_epochs": 1,
    "trainer.devices": 1,
    "trainer.num_nodes": 1,
    "data.cv_folds": 2,
    "data.limit_rows": 1,
}


def _check_ranges(cfg: DictConfig) -> None:
    for key, (check, allowed) in RANGES.items():
        value = _get(cfg, key)
        if value is not None and not check(_number(key, value)):
            raise ConfigError(f"{key}={value} is out of range; allowed: {allowed}")
    for key, minimum in INTEGER_MINIMUMS.items():
        value = _get(cfg, key)
        if value is None or (key == "trainer.devices" and isinstance(value, (str, list))):
            continue
        if _integer(key, value) < minimum:
            raise ConfigError(f"{key}={value} is out of range; allowed: an integer >= {minimum}")
    _integer("seed", cfg.seed)
    folds = _get(cfg, "data.cv_folds")
    fold = _get(cfg, "data.fold")
    if fold is not None:
        _integer("data.fold", fold)
        upper = folds if folds else 1
        if not 0 <= fold < upper:
            allowed = f"0..{folds - 1} (data.cv_folds={folds})" if folds else "0 (set data.cv_folds=K for K-fold CV)"
            raise ConfigError(f"data.fold={fold} is out of range; allowed: {allowed}")


def _check_compatibility(cfg: DictConfig) -> None:
    data_class = resolve_target("data", cfg.data._target_)
    model_class = resolve_target("model", cfg.model._target_)
    data_task = cfg.data.get("task_kind") or getattr(data_class, "task_kind", None)
    modality = getattr(data_class, "modality", None)
    data_name = _choice_name(cfg, "data")
    model_name = _choice_name(cfg, "model")
    objective = cfg.task.objective
    if data_task and data_task != objective:
        raise ConfigError(
            f"data={data_name} is a {data_task} data set but task.objective is {objective}; "
            f"pick a {objective} data set or task={'regression' if data_task == 'regression' else 'classification'}"
        )
    modalities = getattr(model_class, "modalities", None)
    if modalities is not None and modality not in modalities:
        raise ConfigError(
            f"model={model_name} takes {'/'.join(sorted(modalities))} inputs but data={data_name} is {modality} data"
        )
    tasks = getattr(model_class, "tasks", None)
    if tasks is not None and objective not in tasks:
        raise ConfigError(f"model={model_name} is for {'/'.join(sorted(tasks))}, not {objective}")
    scheduler_target = _get(cfg, "scheduler._target_") or ""
    if scheduler_target.endswith("ReduceLROnPlateau") and cfg.scheduler.get("mode") not in (None, cfg.task.mode):
        raise ConfigError(f"scheduler.mode must match task.mode ({cfg.task.mode})")


def _choice_name(cfg: DictConfig, group: str) -> str:
    """The option name the user picked (``data=wine``) when Hydra recorded it, else the class."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return str(HydraConfig.get().runtime.choices.get(group))
    except Exception:
        pass
    return str(cfg[group]._target_).rsplit(".", 1)[-1]
