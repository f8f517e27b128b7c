"""Classification: binary (one logit, BCE-with-logits) or multiclass (K logits, cross-entropy); metrics acc, f1
and auroc (macro one versus rest for more than two classes); a confusion matrix of the test split; stratified
splits."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pipeline.models.heads import Probabilities

from .metrics import binary, multiclass
from .base import TaskModule


class ClassificationModule(TaskModule):
    kind: ClassVar[str] = "classification"
    stratify: ClassVar[bool] = True

    def __init__(self, model: nn.Module, optimizer, scheduler=None, monitor: str = "val/acc", mode: str = "max",
                 num_classes: int = 2, label_smoothing: float = 0.0):
        super().__init__(model, optimizer, scheduler, monitor, mode)
        self.num_classes = int(num_classes)
        self.binary = self.num_classes == 2
        self.label_smoothing = float(label_smoothing)

    @classmethod
    def from_spec(cls, model, optimizer, scheduler, spec, task_cfg) -> "ClassificationModule":
        return cls(model, optimizer, scheduler, monitor=task_cfg.monitor, mode=task_cfg.mode,
                   num_classes=spec.num_classes or 2, label_smoothing=task_cfg.get("label_smoothing", 0.0))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return self._cross_entropy(output, target, self.label_smoothing)

    def evaluation_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return self._cross_entropy(output, target, 0.0)

    def _cross_entropy(self, output: Tensor, target: Tensor, smoothing: float) -> Tensor:
        if self.binary:
            target = target.to(output.dtype)
            if smoothing:
                target = target * (1 - smoothing) + 0.5 * smoothing
            return F.binary_cross_entropy_with_logits(output.squeeze(-1), target)
        return F.cross_entropy(output, target, label_smoothing=smoothing)

    @classmethod
    def metric_names(cls, spec) -> tuple[str, ...]:
        return ("acc", "f1", "auroc")

    def metric_inputs(self, output: Tensor) -> Tensor:
        return self.probabilities(output)

    def compute_metrics(self, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return binary(inputs, targets) if self.binary else multiclass(inputs, targets, self.num_classes)

    def probabilities(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.squeeze(-1)) if self.binary else output.softmax(-1)

    def predictor(self) -> nn.Module:
        return Probabilities(self.model, self.binary)

    def test_plots(self, y_true, outputs, folder: Path, spec) -> list[Path]:
        from pipeline import plots

        return [plots.confusion_matrix(y_true, predicted_classes(outputs), spec.num_classes or 2,
                                       folder / "confusion_matrix.png", spec.class_names)]


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """Binary models output P(class 1) per row; multiclass models a probability per class."""
    if probabilities.ndim == 1 or probabilities.shape[-1] == 1:
        return (probabilities.reshape(-1) >= 0.5).astype(np.int64)
    return probabilities.argmax(-1)

_Probabilities = Probabilities  # the name pickled models of earlier versions refer to
