"""PNG figures of a run: learning curves, confusion matrix (classification), predicted vs true
(regression). Built on matplotlib's object API with the Agg canvas, so no display and no global
pyplot state are involved."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _figure(width: float = 6.0, height: float = 4.5, layout: Optional[str] = "constrained"):
    """A figure; ``layout=None`` for two side-by-side panels of curves, placed by :func:`_two_panels` instead:
    matplotlib's constrained layout measures every label first, half of such a figure's ~0.3 s."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def _two_panels(figure) -> None:
    """Fixed margins for two panels of curves with numeric ticks (room for the labels of 0.0001 or 1e+04)."""
    figure.subplots_adjust(left=0.065, right=0.985, bottom=0.12, top=0.92, wspace=0.2)


def _epoch_axis(axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def learning_curves(history: Sequence[dict], path: Path, monitor: Optional[str] = None) -> Optional[Path]:
    """Training and validation loss per epoch and, beside them, the other validation metrics.

    ``history`` is what the epoch logger saw: one dict per logging call, each with an ``epoch``."""
    series: dict[str, dict[int, float]] = {}
    for row in history:
        for key, value in row.items():
            if key.endswith("/loss") and not key.startswith("test/") or key.startswith("val/") and not key.endswith("_best"):
                series.setdefault(key, {})[int(row["epoch"])] = float(value)
    if not series:
        return None
    figure = _figure(11, 4.2, layout=None)
    loss_axes, metric_axes = figure.subplots(1, 2)
    _two_panels(figure)
    for key in sorted(series):
        axes = loss_axes if key.endswith("/loss") else metric_axes
        epochs = sorted(series[key])
        style = "-o" if len(epochs) < 30 else "-"
        axes.plot(epochs, [series[key][e] for e in epochs], style, markersize=3,
                  linewidth=2.5 if key == monitor else 1.5, label=key)
    loss_axes.set_title("loss")
    metric_axes.set_title("validation metrics" + (f" (monitored: {monitor})" if monitor else ""))
    for axes in (loss_axes, metric_axes):
        _epoch_axis(axes)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=8)
    figure.savefig(path)
    return path


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, path: Path,
                     class_names: Optional[Sequence[str]] = None) -> Path:
    """Counts of true (rows) against predicted (columns) classes on the test split."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    names = list(class_names) if class_names and len(class_names) == num_classes else [str(i) for i in range(num_classes)]
    size = min(4 + 0.45 * num_classes, 14)
    figure = _figure(size + 1, size)
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_xticks(range(num_classes), names, rotation=45 if num_classes > 4 else 0, ha="right" if num_classes > 4 else "center")
    axes.set_yticks(range(num_classes), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axes.set_title(f"confusion matrix (test, n={counts.sum()}, accuracy {accuracy:.3f})")
    if num_classes <= 20:
        threshold = counts.max() / 2
        for row in range(num_classes):
            for column in range(num_classes):
                axes.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize=8,
                          color="white" if counts[row, column] > threshold else "black")
    figure.savefig(path)
    return path


def roc_and_precision_recall(y_true: np.ndarray, probabilities: np.ndarray, path: Path,
                             class_names: Optional[Sequence[str]] = None, max_classes: int = 10,
                             positive_class: int = 1) -> Optional[Path]:
    """The ROC curve and the precision-recall curve of the test split, side by side: of ``positive_class`` (0 or 1,
    task.positive_class) for a binary model (``probabilities``: P(class 1) per row), with the operating point of
    the 0.5 cut-off; one versus rest per class for up to ``max_classes`` classes (None beyond: too many lines to
    read)."""
    labels = y_true.astype(np.int64).reshape(-1)
    binary = probabilities.ndim == 1 or probabilities.shape[-1] == 1
    scores = probabilities.reshape(-1, 1) if binary else probabilities
    if binary and positive_class == 0:  # class 0 scored by -P(class 1): the same ranking reversed, and the same
        scores, labels = -scores.astype(np.float64), 1 - labels  # 0.5 cut-off (class 0 where P(class 1) <= 0.5)
    count = 2 if binary else scores.shape[1]
    if not binary and count > max_classes:
        return None
    names = list(class_names) if class_names and len(class_names) == count else [str(i) for i in range(count)]
    figure = _figure(11, 4.6, layout=None)
    roc_axes, pr_axes = figure.subplots(1, 2)
    _two_panels(figure)
    for column, k in ([(0, 1)] if binary else [(k, k) for k in range(count)]):
        positive = labels == k
        if not positive.any() or positive.all():
            continue  # no curve without both positive and negative rows
        false_rate, true_rate, precision, recall, area, average = _curves(scores[:, column], positive)
        label = f"{names[k]}: " if not binary else ""
        roc_axes.plot(false_rate, true_rate, linewidth=1.5, label=f"{label}auroc {area:.3f}")
        pr_axes.step(recall, precision, where="pre", linewidth=1.5, label=f"{label}ap {average:.3f}")
        if binary:
            cut = scores[:, 0] > 0.5 if positive_class == 1 else scores[:, 0] >= -0.5
            point_tpr, point_fpr = cut[positive].mean(), cut[~positive].mean()
            point_precision = positive[cut].mean() if cut.any() else 1.0
            roc_axes.plot([point_fpr], [point_tpr], "ko", markersize=5, label="cut-off 0.5")
            pr_axes.plot([point_tpr], [point_precision], "ko", markersize=5, label="cut-off 0.5")
            pr_axes.axhline(positive.mean(), color="grey", linestyle=":", linewidth=1, label="chance")
    roc_axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    if binary and positive_class == 0:
        names = names[::-1]  # the labels were flipped above: "class 1" of the curves is class 0
    what = f"class {names[1]}" if binary else "one vs rest"
    roc_axes.set(xlabel="false positive rate", ylabel="true positive rate (recall)", xlim=(-0.01, 1.01),
                 ylim=(-0.01, 1.01), title=f"ROC curve (test, n={len(labels)}, {what})")
    pr_axes.set(xlabel="recall", ylabel="precision", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01),
                title=f"precision-recall curve (test, {what})")
    if not pr_axes.lines:  # every test row of one class (an evaluation on a file of one class): no curve
        pr_axes.text(0.5, 0.5, "no curve: the test rows hold one class", ha="center", va="center")
    for axes in (roc_axes, pr_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:  # matplotlib warns of a legend with nothing in it
            axes.legend(fontsize=8, loc="lower right" if axes is roc_axes else "lower left")
    figure.savefig(path)
    return path


def _curves(scores: np.ndarray, positive: np.ndarray):
    """(false positive rates, true positive rates, precisions, recalls, auroc, average precision) at every distinct
    score as a cut-off, highest first; ties enter together (the definitions of ``pipeline.tasks.metrics``)."""
    order = np.argsort(-scores, kind="stable")
    ordered, hits = scores[order], positive[order]
    last_of_score = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1]
    true_positives = np.cumsum(hits)[last_of_score].astype(np.float64)
    false_positives = (last_of_score + 1) - true_positives
    positives, negatives = true_positives[-1], false_positives[-1]
    true_rate, false_rate = np.r_[0.0, true_positives / positives], np.r_[0.0, false_positives / negatives]
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / positives
    area = float(np.trapezoid(true_rate, false_rate))
    average = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return false_rate, true_rate, np.r_[1.0, precision], np.r_[0.0, recall], area, average


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray, path: Path) -> Path:
    """Each test row as a point; the diagonal is a perfect prediction."""
    figure = _figure(5.5, 5)
    axes = figure.subplots()
    axes.scatter(y_true, y_pred, s=10, alpha=0.6)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    axes.plot([low, high], [low, high], "k--", linewidth=1, label="perfect")
    rmse = float(np.sqrt(np.mean((y_pred - y_true) ** 2)))
    axes.set_title(f"predicted vs true (test, n={len(y_true)}, rmse {rmse:.3g})")
    axes.set_xlabel("true")
    axes.set_ylabel("predicted")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path)
    return path


def overlay_curves(curves: dict[str, list[tuple[int, float]]], metric: str, path: Path) -> Path:
    """One line per run (label -> [(epoch, value)]), e.g. the validation curves of the best runs."""
    figure = _figure(8, 5)
    axes = figure.subplots()
    for label, points in curves.items():
        if points:
            epochs, values = zip(*sorted(points))
            axes.plot(epochs, values, "-o" if len(points) < 30 else "-", markersize=3, label=label)
    _epoch_axis(axes)
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per epoch")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend(fontsize=8)
    figure.savefig(path)
    return path
