"""What a trained model is served as: the task kind's outputs turned into predictions (probabilities,
targets in the data's units). Plain modules without Lightning, so that the MLflow store-writer process can
load a pickled predictor and log it."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Probabilities(nn.Module):
    """Binary: P(class 1) per row from one logit; multiclass: softmax over the logits."""

    def __init__(self, model: nn.Module, binary: bool):
        super().__init__()
        self.model, self.binary = model, binary

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        return torch.sigmoid(logits) if self.binary else logits.softmax(-1)


class Rescaled(nn.Module):
    """Standardised regression outputs back in the data's units."""

    def __init__(self, model: nn.Module, mean: float, std: float):
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) * self.std + self.mean
