"""What the test metrics' 95 % bootstrap intervals cost (``task.test_intervals``, 1,000 redraws by default): the
pipeline's weighted metrics over blocks of redraws (``pipeline.tasks.intervals``) against the loop a researcher
would write by hand (draw row indices, index the predictions, compute the metrics, 1,000 times; with the
pipeline's own one-pass metrics, themselves faster than torchmetrics'), on predictions shaped like the bundled
test splits: breast_cancer (114 rows, binary), diabetes (89 rows, as its first CV folds; the default split tests 88; regression), MR (1,066 rows, binary), Adult
(16,281 rows, binary, with ties), Fashion-MNIST (10,000 rows, 10 classes). The predictions are generated (no data
set needed); the cost depends only on their shape. Both give the same intervals (the hand loop draws the same
rows; asserted). Medians of ``--repeats``, the two alternating.

    .venv/bin/python benchmarks/intervals.py
    .venv/bin/python benchmarks/intervals.py --smoke
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import machine, markdown_table, write_results

SHAPES = {  # name -> (rows, classes: 0 regression, 2 binary, k classes)
    "breast_cancer": (114, 2),
    "diabetes": (89, 0),
    "MR": (1066, 2),
    "Adult": (16281, 2),
    "Fashion-MNIST": (10000, 10),
}


def predictions(rows: int, classes: int):
    import numpy as np

    rng = np.random.default_rng(0)
    if classes == 0:
        truth = rng.normal(150, 75, rows)
        return (truth + rng.normal(0, 55, rows)).astype(np.float32), truth.astype(np.float32)
    labels = rng.integers(0, classes, rows)
    if classes == 2:  # float32 probabilities rounded as a sigmoid's are: ties
        scores = 1 / (1 + np.exp(-(2.5 * (labels - 0.5) + rng.normal(0, 1.2, rows))))
        return np.round(scores.astype(np.float32), 4), labels
    logits = rng.normal(0, 1, (rows, classes))
    logits[np.arange(rows), labels] += 2
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probabilities.astype(np.float32), labels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redraws", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="100 redraws, 1 repeat")
    parser.add_argument("--output", default="intervals")
    args = parser.parse_args(argv)
    if args.smoke:
        args.redraws, args.repeats, args.output = 100, 1, args.output + "_smoke"
    import numpy as np
    import torch

    from pipeline.tasks import intervals, metrics

    def weighted(inputs, targets, classes):
        if classes == 0:
            return intervals.regression(inputs, targets)
        return intervals.binary(inputs, targets) if classes == 2 else intervals.multiclass(inputs, targets, classes)

    def plain(inputs, targets, classes):
        x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
        if classes == 0:
            return lambda rows: metrics.regression(x[rows], y[rows])
        if classes == 2:
            return lambda rows: metrics.binary(x[rows], y[rows])
        return lambda rows: metrics.multiclass(x[rows], y[rows], classes)

    def pipeline_way(inputs, targets, classes):
        return intervals.bootstrap(weighted(*intervals.in_canonical_order(inputs, targets), classes), len(targets),
                                   args.redraws)

    def by_hand(inputs, targets, classes):
        inputs, targets = intervals.in_canonical_order(inputs, targets)  # the same rows drawn as the pipeline's
        drawn = np.random.default_rng(intervals.SEED).integers(0, len(targets), size=(args.redraws, len(targets)))
        score = plain(inputs, targets, classes)
        values = [score(torch.from_numpy(rows)) for rows in drawn]
        return {name: tuple(np.percentile([float(v[name]) for v in values], [2.5, 97.5])) for name in values[0]}

    results, table = {}, []
    for name, (rows, classes) in SHAPES.items():
        inputs, targets = predictions(rows, classes)
        seconds = {"pipeline": [], "by hand": []}
        answers = {}
        for _ in range(args.repeats):
            for label, way in (("pipeline", pipeline_way), ("by hand", by_hand)):  # alternating
                started = time.perf_counter()
                answers[label] = way(inputs, targets, classes)
                seconds[label].append(time.perf_counter() - started)
        for metric, bounds in answers["by hand"].items():  # the same intervals (float32 metrics by hand)
            np.testing.assert_allclose(answers["pipeline"][metric], bounds, atol=1e-5, err_msg=f"{name} {metric}")
        medians = {label: statistics.median(values) for label, values in seconds.items()}
        results[name] = {"rows": rows, "classes": classes, "seconds": seconds, "median_s": medians}
        table.append([name, f"{rows:,}", {0: "regression", 2: "binary"}.get(classes, f"{classes} classes"),
                      f"{medians['pipeline'] * 1000:,.0f}", f"{medians['by hand'] * 1000:,.0f}",
                      f"{medians['by hand'] / medians['pipeline']:.1f}x"])
    print(f"{args.redraws} redraws, medians of {args.repeats}")
    print(markdown_table(["test split like", "rows", "task", "pipeline (ms)", "loop by hand (ms)", "speed-up"], table))
    write_results(args.output, {"command": " ".join(sys.argv), "redraws": args.redraws, "repeats": args.repeats,
                                "machine": machine(), "splits": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
