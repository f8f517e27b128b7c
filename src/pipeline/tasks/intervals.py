"""95 % bootstrap intervals of the test metrics: how far the test split's score could move on other test rows.

A test split of 114 rows (breast_cancer's) scores accuracy in steps of 0.9 %: two runs 0.956 and 0.965 apart may
be one row apart. Each metric gets the 2.5th and 97.5th percentiles of its value over ``resamples`` redraws of
the test rows with replacement (the percentile bootstrap), logged as ``test/<metric>_ci_low`` and ``_ci_high``.

A redraw is a count per row (how often it was drawn); the metrics here are those of :mod:`.metrics` computed
with the counts as row weights, for a block of redraws at once: the rows are sorted by score once, and each
redraw costs a few matrix products instead of a sort (Adult's 16,281 test rows, 1,000 redraws: ~0.9 s; BENCHMARKS.md
section 9). With a
weight of 1 per row they are the metrics of :mod:`.metrics` (tested). The redraws are seeded: the same
predictions get the same intervals.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

LEVEL = 0.95
SEED = 0
# a metric undefined on more redraws than this share (auroc where a class has a row or two in the test split, absent
# from a third of the redraws or more) has no interval: over the redraws that define it, the interval describes other
# rows than the test split's (macro auroc without its rare classes), and it could miss the split's own value
MIN_DEFINED_SHARE = 0.9
BLOCK_VALUES = 65_536  # weights held at once: 512 kB of float64, in cache (4 redraws of Adult's test rows)

Weighted = Callable[[np.ndarray], dict[str, np.ndarray]]


def bootstrap(weighted: Weighted, rows: int, resamples: int, seed: int = SEED) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)}: the central ``LEVEL`` share of ``weighted``'s values over ``resamples`` redraws of
    ``rows`` rows with replacement. ``weighted`` maps row weights (redraws x rows) to {metric: value per redraw}.
    A metric undefined on a redraw (NaN: auroc of a redraw without a positive row) is taken over the redraws where
    it is defined; one undefined on more than 1 - ``MIN_DEFINED_SHARE`` of them has no interval."""
    out = {}
    for name, values in redrawn(weighted, rows, resamples, seed).items():
        bounds = _central(values)
        if bounds is not None:
            out[name] = bounds
    return out


def _central(values: np.ndarray) -> Optional[tuple[float, float]]:
    """The bounds of the central ``LEVEL`` share of the defined (non-NaN) ``values`` (their percentiles); None
    where fewer than ``MIN_DEFINED_SHARE`` of them are defined."""
    redraws = len(values)
    values = values[~np.isnan(values)]
    if not len(values) or len(values) < MIN_DEFINED_SHARE * redraws:
        return None
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def redrawn(weighted: Weighted, rows: int, resamples: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """{metric: its value on each of ``resamples`` redraws of ``rows`` rows with replacement}, drawn in blocks."""
    if rows == 0 or resamples <= 0:
        return {}
    generator = np.random.default_rng(seed)
    block = max(1, min(resamples, BLOCK_VALUES // rows))
    values: dict[str, list[np.ndarray]] = {}
    for start in range(0, resamples, block):
        count = min(block, resamples - start)
        drawn = generator.integers(0, rows, size=(count, rows)) + rows * np.arange(count)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=count * rows).reshape(count, rows).astype(np.float64)
        for name, value in weighted(weights).items():
            values.setdefault(name, []).append(value)
    return {name: np.concatenate(parts) for name, parts in values.items()}


def paired(first: Weighted, second: Weighted, rows: int, resamples: int,
           seed: int = SEED) -> dict[str, tuple[float, float, float, float, float, float]]:
    """Two models' predictions of the same test rows, redrawn together: {metric: (first's value, second's value,
    the central ``LEVEL`` share of first - second over the redraws (low, high), the share of redraws where the first
    scores higher, and lower)}. A difference whose interval holds 0 is one these rows cannot tell from chance."""
    ones = np.ones((1, rows))
    points = first(ones), second(ones)

    def both(weights: np.ndarray) -> dict[str, np.ndarray]:
        a, b = first(weights), second(weights)
        return {**{f"difference/{name}": a[name] - b[name] for name in a},
                **{f"higher/{name}": (a[name] > b[name]).astype(np.float64) for name in a},
                **{f"lower/{name}": (a[name] < b[name]).astype(np.float64) for name in a}}

    values = redrawn(both, rows, resamples, seed)
    out = {}
    for name in points[0]:
        bounds = _central(values[f"difference/{name}"])
        if bounds is None or np.isnan(points[0][name][0]) or np.isnan(points[1][name][0]):
            continue  # undefined on these rows (auroc of a split with one class)
        low, high = bounds
        out[name] = (float(points[0][name][0]), float(points[1][name][0]), low, high,
                     float(values[f"higher/{name}"].mean()), float(values[f"lower/{name}"].mean()))
    return out


def in_canonical_order(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows sorted by target, then by their metric inputs: the redraws then do not depend on the order the rows
    came in (a DDP run gathers them rank by rank), only on the predictions themselves."""
    keys = [column for column in inputs.reshape(len(inputs), -1).T[::-1]] + [targets.reshape(len(targets), -1)[:, 0]]
    order = np.lexsort(keys)
    return inputs[order], targets[order]


def binary(probabilities: np.ndarray, targets: np.ndarray, positive_class: int = 1) -> Weighted:
    """:func:`.metrics.binary` with row weights (redraws x rows): acc, f1 (class 1 above 0.5; NaN on a redraw without
    a positive row or prediction), auroc, ap; f1 and ap of ``positive_class`` (0: class 0 where P(class 1) <= 0.5,
    ranked by -P(class 1)), as there."""
    values, positive = probabilities.reshape(-1).astype(np.float64), targets.reshape(-1).astype(bool)
    predicted = values > 0.5
    if positive_class == 0:
        values, positive, predicted = -values, ~positive, ~predicted
    hit = (predicted & positive).astype(np.float64)
    miss = (predicted != positive).astype(np.float64)  # false positives and false negatives
    curves = _Curves(values, positive)

    def weighted(weights: np.ndarray) -> dict[str, np.ndarray]:
        true_positives, wrong = weights @ hit, weights @ miss
        area, precision = curves(weights)
        f1_denominator = 2 * true_positives + wrong
        return {"acc": 1 - _ratio(wrong, weights.sum(1)),
                "f1": np.where(f1_denominator > 0, _ratio(2 * true_positives, f1_denominator), np.nan),
                "auroc": area, "ap": precision}

    return weighted


class _Curves:
    """(auroc, average precision) per redraw of row weights, as :func:`.metrics._curves` defines them; NaN where
    undefined.

    The rows are sorted by score once and grouped by distinct score (ties enter together); per group and redraw,
    the weight of its rows and of its positive rows. auroc: each positive group wins over the negatives scored
    below it and half those tied with it. Average precision: each positive group's weight times the precision
    among the rows scored at least as high. Only the groups that hold a positive row are summed over."""

    def __init__(self, values: np.ndarray, positive: np.ndarray):
        self.order = np.argsort(values, kind="stable")
        ordered = values[self.order]
        self.is_positive = positive[self.order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.starts = starts if len(starts) < len(ordered) else None  # None: every score distinct
        grouped = self.is_positive if self.starts is None else np.add.reduceat(self.is_positive, starts) > 0
        self.kept = np.flatnonzero(grouped)

    def __call__(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = weights[:, self.order]
        positives = weights * self.is_positive
        if self.starts is not None:  # one column per distinct score
            weights = np.add.reduceat(weights, self.starts, axis=1)
            positives = np.add.reduceat(positives, self.starts, axis=1)
        up_to, positives_up_to = np.cumsum(weights, axis=1), np.cumsum(positives, axis=1)  # ascending scores
        total, total_positive = up_to[:, -1], positives_up_to[:, -1]
        total_negative = total - total_positive
        kept = self.kept
        weights, positives, up_to, positives_up_to = (a[:, kept] for a in (weights, positives, up_to, positives_up_to))
        negatives = weights - positives
        wins = (positives * (up_to - positives_up_to - 0.5 * negatives)).sum(1)
        # the rows scored at least as high as a group: the group and every group above it
        above = total[:, None] - up_to + weights
        positives_above = total_positive[:, None] - positives_up_to + positives
        with np.errstate(invalid="ignore", divide="ignore"):
            precision_sum = (positives * positives_above / np.where(above > 0, above, 1.0)).sum(1)
            area = np.where((total_positive > 0) & (total_negative > 0), wins / (total_positive * total_negative),
                            np.nan)
            # without negatives it is 1 whatever the scores: undefined, as in .metrics._curves
            precision = np.where((total_positive > 0) & (total_negative > 0), precision_sum / total_positive, np.nan)
        return area, precision


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def multiclass(probabilities: np.ndarray, targets: np.ndarray, num_classes: int) -> Weighted:
    """:func:`.metrics.multiclass` with row weights: acc (micro), f1 (macro over the classes among the redraw's
    targets or predictions), auroc and ap (macro one versus rest over the classes of the split; NaN on a redraw that
    leaves one of them out: a mean over the others is the macro of other classes, and a rare class scored badly
    made every such redraw score above the split's own value)."""
    values = probabilities.astype(np.float64)
    labels = targets.reshape(-1).astype(np.int64)
    predicted = values.argmax(-1)
    classes = np.arange(num_classes)
    is_predicted, is_target = predicted[:, None] == classes, labels[:, None] == classes
    hits = (is_predicted & is_target).astype(np.float64)  # rows x classes
    false_alarms = (is_predicted & ~is_target).astype(np.float64)
    misses = (~is_predicted & is_target).astype(np.float64)
    right = (predicted == labels).astype(np.float64)
    curves = [_Curves(values[:, k], labels == k) for k in range(num_classes)]

    def weighted(weights: np.ndarray) -> dict[str, np.ndarray]:
        true_positives = weights @ hits  # redraws x classes
        denominator = 2 * true_positives + weights @ false_alarms + weights @ misses
        present = denominator > 0
        f1 = _ratio((_ratio(2 * true_positives, denominator) * present).sum(1), present.sum(1).astype(np.float64))
        areas, precisions = zip(*(curve(weights) for curve in curves))
        return {"acc": _ratio(weights @ right, weights.sum(1)), "f1": f1,
                "auroc": _split_mean(np.stack(areas, 1), defined), "ap": _split_mean(np.stack(precisions, 1), defined)}

    defined = is_target.any(0) & (~is_target).any(0)  # the classes with rows of the class and rows of others
    return weighted


def _split_mean(values: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """Mean per redraw (row of ``values``, redraws x classes) over the ``defined`` classes; NaN on a redraw where
    one of them is undefined (absent from it), and where none is defined."""
    if not defined.any():
        return np.full(len(values), np.nan)
    return values[:, defined].mean(1)


def regression(predictions: np.ndarray, targets: np.ndarray) -> Weighted:
    """:func:`.metrics.regression` with row weights: mse, rmse, mae and r2 (NaN where the targets do not vary)."""
    actual = targets.reshape(-1).astype(np.float64)
    error = predictions.reshape(-1).astype(np.float64) - actual
    squared_error, absolute_error = error ** 2, np.abs(error)
    centre = actual.mean()
    squared_about_centre = (actual - centre) ** 2

    def weighted(weights: np.ndarray) -> dict[str, np.ndarray]:
        total = weights.sum(1)
        squared = weights @ squared_error
        mse = _ratio(squared, total)
        mean = _ratio(weights @ actual, total)
        # the weighted sum of squares about the weighted mean, centred first (no cancellation of large values)
        spread = weights @ squared_about_centre - total * (mean - centre) ** 2
        return {"mse": mse, "rmse": np.sqrt(mse), "mae": _ratio(weights @ absolute_error, total),
                "r2": np.where(spread > 0, 1 - _ratio(squared, spread), np.nan)}

    return weighted


def interval_metrics(intervals: dict[str, tuple[float, float]], prefix: str) -> dict[str, float]:
    """``{prefix/<metric>_ci_low: low, prefix/<metric>_ci_high: high}`` for the loggers."""
    out: dict[str, float] = {}
    for name, (low, high) in intervals.items():
        out[f"{prefix}/{name}_ci_low"], out[f"{prefix}/{name}_ci_high"] = low, high
    return out


def split_intervals(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """(the metrics without interval bounds, {metric: (low, high)}) from a run's metrics."""
    plain = {k: v for k, v in metrics.items() if not k.endswith(("_ci_low", "_ci_high"))}
    bounds: dict[str, tuple[float, float]] = {}
    for key in plain:
        low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
        if low is not None and high is not None:
            bounds[key] = (low, high)
    return plain, bounds


def with_interval(value: float, bounds: Optional[tuple[float, float]], digits: int = 4) -> str:
    """``0.9561 [0.9211, 0.9912]``, or the value alone."""
    text = f"{value:.{digits}f}"
    return text if bounds is None else f"{text} [{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"
