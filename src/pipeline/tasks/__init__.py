"""Task kinds: one module per kind (``regression.py``, ``classification.py``) is its one home: loss,
metrics, predictions as served, test plots, stratification. ``task.kind`` in the config picks one.

A new kind (e.g. multi-label) is one new module here, registered in ``KINDS``, plus a ``conf/task`` file.
"""
from __future__ import annotations

from pipeline.config import TaskConfig
from pipeline.errors import ConfigError

from .base import TaskModule, restore_rng_states, rng_states
from .classification import ClassificationModule
from .regression import RegressionModule

KINDS: dict[str, type[TaskModule]] = {module.kind: module for module in (RegressionModule, ClassificationModule)}


def task_kind(name: str) -> type[TaskModule]:
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"task.kind={name!r} is not a task kind; choose one of {', '.join(KINDS)}") from None


def build_task_module(task_cfg, model, optimizer, scheduler, spec) -> TaskModule:
    """The LightningModule of ``task_cfg.kind`` around ``model``, sized for the data ``spec``."""
    module = task_kind(task_cfg.kind).from_spec(model, optimizer, scheduler, spec, task_cfg)
    # a config logged before the key existed gets the default
    module.test_resamples = int(task_cfg.get("test_intervals", TaskConfig.test_intervals) or 0)
    return module


__all__ = ["KINDS", "ClassificationModule", "RegressionModule", "TaskModule", "build_task_module", "task_kind",
           "restore_rng_states", "rng_states"]
