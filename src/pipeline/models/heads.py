"""What a trained model is served as: the task kind's outputs turned into predictions (probabilities,
targets in the data's units). Plain modules without Lightning, so that the MLflow store-writer process can
load a pickled predictor and log it."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def in_weights_dtype(model: nn.Module, x: Tensor) -> Tensor:
    """Floating-point inputs in the dtype of the model's weights. A model trained with ``trainer.precision=64-true``
    or ``bf16-true`` holds float64 or bfloat16 weights; Lightning converted its float32 batches in training and test,
    and the served model (the logged one, the test split's predictions, pipeline-predict) does the same, so that it
    takes the float32 rows a user gives it. Token ids and other integer inputs stay as they are."""
    if not x.is_floating_point():
        return x
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    return x if weight is None or weight.dtype == x.dtype else x.to(weight.dtype)


class Probabilities(nn.Module):
    """Binary: P(class 1) per row from one logit; multiclass: softmax over the logits."""

    def __init__(self, model: nn.Module, binary: bool):
        super().__init__()
        self.model, self.binary = model, binary

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(in_weights_dtype(self.model, x))
        # float32 whatever the weights (numpy has no bfloat16), as the task's metrics take them
        return (torch.sigmoid(logits) if self.binary else logits.softmax(-1)).float()


# the largest log1p value whose expm1 float32 holds (about 3.4e38)
LOG_FLOAT32_MAX = 88.7


class Rescaled(nn.Module):
    """Standardised regression outputs back in the data's units (``log``: the model learned log1p of the
    target, so its outputs go back through expm1)."""

    log: bool = False  # predictors pickled before the option unpickle without the attribute

    def __init__(self, model: nn.Module, mean: float, std: float, log: bool = False):
        super().__init__()
        self.model, self.mean, self.std, self.log = model, mean, std, log

    def forward(self, x: Tensor) -> Tensor:
        value = self.model(in_weights_dtype(self.model, x)).double() * self.std + self.mean  # in float64, as the task's predict
        return torch.expm1(value.clamp(max=LOG_FLOAT32_MAX)) if self.log else value
