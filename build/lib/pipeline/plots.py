"""PNG figures of a run: learning curves, confusion matrix (classification), predicted vs true
(regression). Built on matplotlib's object API with the Agg canvas, so no display and no global
pyplot state are involved."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _figure(width: float = 6.0, height: float = 4.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


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
    figure = _figure(11, 4.2)
    loss_axes, metric_axes = figure.subplots(1, 2)
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
