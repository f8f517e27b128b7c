"""Regression: mean squared error (of the target, or of log1p of it: ``task.target_transform=log``); metrics mse,
rmse, mae, r2 in the data's own units; a predicted-vs-true plot of the test split."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pipeline.errors import ConfigError
from pipeline.models.heads import LOG_FLOAT32_MAX, Rescaled

from .metrics import regression
from .base import TaskModule


def log_target_refusal(smallest: float, rows: str, detail: str = "") -> str:
    """Why targets down to ``smallest`` (of ``rows``: "the training rows'") cannot be learned or tested in log1p."""
    return (f"task.target_transform=log needs targets > -1 (log1p); {rows} smallest is {smallest}"
            + (f" ({detail})" if detail else ""))


def check_log_test_targets(task_module, datamodule) -> None:
    """pipeline-eval of a model that learned log1p of its target: test targets <= -1 would give a NaN loss; refused
    as training refuses them, naming the file, the column and the values."""
    split = getattr(datamodule, "test_split", None)
    if not getattr(task_module, "log_target", False) or getattr(split, "y", None) is None:
        return
    y = split.y.double().reshape(-1)
    below = y[y <= -1].tolist()
    if not below:
        return
    path, column = getattr(datamodule, "test_path", None), getattr(datamodule, "target", None)
    where = [f"data.test_path={path}"] if path is not None else []
    where += [f"column '{column}'"] if column else []
    shown = ", ".join(f"{value:g}" for value in below[:5]) + (" ..." if len(below) > 5 else "")
    raise ConfigError(log_target_refusal(float(y.min()), "the test rows'",
                                         ", ".join(where + [f"{len(below)} row(s) <= -1: {shown}"])))


class RegressionModule(TaskModule):
    """Targets are standardised for the loss when the data provides the scale, and predictions are mapped
    back, so metrics (and the served model) are always in the data's own units. ``log_target``: the model
    learns log1p of the target (prices, counts: errors relative to the value), predictions are expm1 of it."""

    kind: ClassVar[str] = "regression"
    # r2 is undefined where a redraw's targets are all one value (few test rows: one row drawn every time)
    undefined_on_redraws: ClassVar[str] = "with few test rows, a redraw often holds one target value only"
    stratify: ClassVar[bool] = False
    undefined_reasons: ClassVar[dict[str, str]] = {"r2": "r2 needs targets that vary"}

    def __init__(self, model: nn.Module, optimizer, scheduler=None, monitor: str = "val/rmse", mode: str = "min",
                 target_mean: float = 0.0, target_std: float = 1.0, log_target: bool = False):
        super().__init__(model, optimizer, scheduler, monitor, mode)
        self.target_mean = float(target_mean)
        self.target_std = float(target_std)
        self.log_target = bool(log_target)

    @classmethod
    def from_spec(cls, model, optimizer, scheduler, spec, task_cfg) -> "RegressionModule":
        if task_cfg.get("target_transform", "none") == "none":  # the config's checks allow none and log
            return cls(model, optimizer, scheduler, monitor=task_cfg.monitor, mode=task_cfg.mode,
                       target_mean=spec.extra.get("target_mean", 0.0), target_std=spec.extra.get("target_std", 1.0))
        smallest = spec.extra.get("target_min")
        if smallest is None or smallest <= -1:
            raise ConfigError(log_target_refusal(smallest, "the training rows'") if smallest is not None else
                              "task.target_transform=log needs the training targets' range, which this data does not give")
        return cls(model, optimizer, scheduler, monitor=task_cfg.monitor, mode=task_cfg.mode, log_target=True,
                   target_mean=spec.extra.get("log_target_mean", 0.0), target_std=spec.extra.get("log_target_std", 1.0))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        target = torch.log1p(target) if self.log_target else target
        # standardised where the target is held (float64 for tables), then in the model's float32
        scaled = (target - self.target_mean) / self.target_std
        return F.mse_loss(output.squeeze(-1), scaled.to(torch.float64 if output.dtype == torch.float64 else torch.float32))

    def predict(self, output: Tensor) -> Tensor:
        """In the data's units, in float64: a float32 output of 1e9 is a multiple of 64."""
        value = output.squeeze(-1).double() * self.target_std + self.target_mean
        return torch.expm1(value.clamp(max=LOG_FLOAT32_MAX)) if self.log_target else value

    @classmethod
    def metric_names(cls, spec) -> tuple[str, ...]:
        return ("mse", "rmse", "mae", "r2")

    def metric_inputs(self, output: Tensor) -> Tensor:
        return self.predict(output)

    def compute_metrics(self, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return regression(inputs, targets)

    def weighted_metrics(self, inputs, targets):
        from .intervals import regression as weighted

        return weighted(inputs, targets)

    def predictor(self) -> nn.Module:
        return Rescaled(self.model, self.target_mean, self.target_std, log=self.log_target)

    def output_settings(self) -> dict[str, str]:
        return {"task.target_transform": "log" if self.log_target else "none"}

    def test_plots(self, y_true, outputs, folder: Path, spec) -> list[Path]:
        from pipeline import plots

        return [plots.predicted_vs_true(y_true, outputs.reshape(-1), folder / "predicted_vs_true.png")]

_Rescaled = Rescaled  # the name pickled models of earlier versions refer to
