"""Evaluation metrics of a whole split, computed in one pass over its predictions at the end of the epoch.

The same definitions as torchmetrics' (BinaryAccuracy/F1Score/AUROC/AveragePrecision, MulticlassAccuracy micro
and F1Score macro, MeanSquaredError, MeanAbsoluteError, R2Score); torchmetrics' update/compute/reset per
epoch cost ~1.3 ms on a one-batch validation split, these ~0.07 ms (binary). The predictions of every rank are
gathered first, so a DDP run scores its whole (padded) split as torchmetrics' synchronised states would.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor


def binary(probabilities: Tensor, targets: Tensor, positive_class: int = 1) -> dict[str, Tensor]:
    """acc, f1 (class 1 above 0.5, as torchmetrics decides), auroc and ap (average precision) of P(class 1) per row;
    auroc with tied scores counted half (the area under the ROC curve of every distinct threshold), NaN (undefined)
    when a class is absent; ap NaN as well (without positive rows it has nothing to average, without negative
    ones it is 1 whatever the scores); f1 NaN when there is no positive row and none is predicted (0/0:
    torchmetrics gives 0, which reads as the worst model for one that answered every row right).

    f1 and ap are those of ``positive_class`` (0 or 1, ``task.positive_class``): with 0, class 0 is predicted where
    class 1 is not (P(class 1) <= 0.5, the same predictions as acc counts) and ranked by -P(class 1); acc and auroc
    do not depend on it."""
    values, positive = _numpy(probabilities.reshape(-1).float(), np.float64), _numpy(targets.reshape(-1), bool)
    predicted = values > 0.5
    if positive_class == 0:  # the same predictions, the other class scored: exact (negation loses no bits)
        values, positive, predicted = -values, ~positive, ~predicted
    true_positives = int((predicted & positive).sum())
    wrong = int((predicted != positive).sum())  # false positives and false negatives
    f1 = 2 * true_positives / (2 * true_positives + wrong) if true_positives + wrong else None
    area, precision = _curves(values, positive)
    device = probabilities.device
    return {"acc": _value(1 - wrong / len(values) if len(values) else 0.0, device), "f1": _value(f1, device),
            "auroc": _value(area, device), "ap": _value(precision, device)}


def _curves(values: np.ndarray, positive: np.ndarray) -> tuple[Optional[float], Optional[float]]:
    """(auroc, average precision) of float64 ``values`` against the boolean ``positive``; None where undefined (no
    negative or no positive row: auroc has no pairs, ap is nothing or 1 whatever the scores). In numpy: a handful of calls of ~2 us each on a
    validation split, where torch takes ~6 us per call.

    auroc is Mann-Whitney's: the chance that a positive row scores above a negative one, ties counted half (for
    each positive score, the negatives below it and those not above it, counted by binary search in the sorted
    negative scores, sum to twice its wins). Average precision is the area under the precision-recall curve as
    scikit-learn and torchmetrics take it (the precision at each distinct score, rows of one score entering
    together, weighted by the recall it adds): for each positive row, the share of positives among the rows
    scored at least as high, averaged over the positive rows. Exact counts, O(n log n)."""
    positives, negatives = np.sort(values[positive]), np.sort(values[~positive])
    if len(positives) == 0:
        return None, None
    not_below = len(negatives) - np.searchsorted(negatives, positives)  # negatives scored at least this high
    hits = len(positives) - np.searchsorted(positives, positives)  # and positives
    precision = float((hits / (hits + not_below)).mean())
    if len(negatives) == 0:  # every row positive: precision is 1 at every threshold, whatever the model scored
        return None, None
    twice_wins = int((np.searchsorted(negatives, positives) + np.searchsorted(negatives, positives, "right")).sum())
    return twice_wins / (2.0 * len(positives) * len(negatives)), precision


def _numpy(tensor: Tensor, dtype) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(dtype, copy=False)


def _value(number: Optional[float], device: torch.device = torch.device("cpu")) -> Tensor:
    """A metric as a float32 scalar on ``device`` (where the predictions were); NaN where it is undefined (the
    task module logs 0 for it in validation, as torchmetrics does, and leaves it out of the test metrics)."""
    return torch.tensor(math.nan if number is None else number, dtype=torch.float32, device=device)


def multiclass(probabilities: Tensor, targets: Tensor, num_classes: int) -> dict[str, Tensor]:
    """acc (micro), f1 (macro over the classes that occur among targets or predictions), auroc and ap (macro one
    versus rest over the classes that occur among the targets: torchmetrics' MulticlassAUROC and
    MulticlassAveragePrecision when every class occurs; a class absent from the split has no ROC curve, and
    torchmetrics would count it as 0)."""
    predicted = probabilities.argmax(-1)
    targets = targets.reshape(-1)
    classes = torch.arange(num_classes)
    is_predicted = predicted.unsqueeze(-1) == classes
    is_target = targets.unsqueeze(-1) == classes
    true_positives = (is_predicted & is_target).sum(0).float()
    false_positives = (is_predicted & ~is_target).sum(0).float()
    false_negatives = (~is_predicted & is_target).sum(0).float()
    denominator = 2 * true_positives + false_positives + false_negatives
    present = denominator > 0
    per_class = torch.where(present, 2 * true_positives / denominator.clamp_min(1), torch.zeros(()))
    f1 = per_class[present].mean() if bool(present.any()) else torch.zeros(())
    values, labels = _numpy(probabilities, np.float64), _numpy(targets, np.int64)
    curves = [_curves(values[:, k], labels == k) for k in range(num_classes)]
    areas = [area for area, _ in curves if area is not None]  # the classes that occur, not in every row
    precisions = [precision for _, precision in curves if precision is not None]  # the classes that occur
    device = probabilities.device
    return {"acc": (predicted == targets).float().mean(), "f1": f1,
            "auroc": _value(float(np.mean(areas)) if areas else None, device),
            "ap": _value(float(np.mean(precisions)) if precisions else None, device)}


def regression(predictions: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """mse, rmse, mae and r2 (1 - residual / total sum of squares; NaN where the targets do not vary), in the
    targets' units."""
    predictions, targets = predictions.reshape(-1).double(), targets.reshape(-1).double()  # large values, exactly
    error = predictions - targets
    mse = (error ** 2).mean()
    total = ((targets - targets.mean()) ** 2).sum()
    r2 = 1 - (error ** 2).sum() / total if total > 0 else torch.tensor(math.nan)
    return {"mse": mse, "rmse": mse.sqrt(), "mae": error.abs().mean(), "r2": r2}
