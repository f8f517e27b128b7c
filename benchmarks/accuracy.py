"""Accuracy against published tables: one ``experiment=`` config per row (conf/experiment/), on CPU.

Each row runs the pipeline's real ``train(cfg)`` in this process (one import for all folds):
once on the official test split, or once per fold of K-fold cross-validation
(``data.cv_folds=K data.fold=i``, K taken from the experiment config), and prints the result
(mean ± sample std over folds) beside the published anchor, with the wall time of the row.
Each fold's result is written to ``benchmarks/results/accuracy_<row>.json`` as soon as it is
known, so an interrupted run keeps what it measured (``--resume`` skips the folds already there).

Settings are chosen on validation data only: ``--validate`` runs the same folds but reports the
validation metric (at the epoch with the best monitored value; each fold's validation rows come
out of its training part) and never prints or stores a test value. Every validation run is
appended to ``benchmarks/results/validation_log.jsonl``.

    .venv/bin/python benchmarks/accuracy.py                          # every row
    .venv/bin/python benchmarks/accuracy.py --rows digits breast_cancer diabetes
    .venv/bin/python benchmarks/accuracy.py --rows mr --validate --folds 0 1 2 --set optimizer.lr=0.002
    .venv/bin/python benchmarks/accuracy.py --smoke                  # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common import RESULTS_DIR, compose_config, machine, markdown_table, quiet_logs, train_with_clock, write_results


@dataclass(frozen=True)
class Row:
    experiment: str  # conf/experiment/<experiment>.yaml
    data: str
    metric: str  # the test metric read: test/<metric>
    target: float
    anchor: str
    percent: bool = False  # shown as a percentage, as the papers do
    scale: float = 1.0  # the metric is reported times this (California: $ -> units of 100,000 $)
    higher_is_better: bool = True


ROWS = {
    "fashion_mnist": Row("fashion_mnist_cnn", "image / fashion_mnist", "acc", 0.940,
                         "2-conv CNN 0.916-0.922; 2 conv + 2 FC with flips 0.939; ResNet18 0.949"),
    # the same images as 70,000 PNG files (scripts/fashion_mnist_to_png.py), streamed from disk: the issue asks for
    # the in-memory row's accuracy within 0.3 points, same seed
    "fashion_mnist_streamed": Row("fashion_mnist_cnn_streamed", "image / fashion_mnist as PNG files, streamed", "acc",
                                  0.940, "the in-memory row, same seed (within 0.3 points)"),
    "mr": Row("mr_bow_cv", "sentiment / mr", "acc", 0.795,
              "Kim 2014 CNN-rand 76.1; NBSVM-bigram 79.4; MNB 79.0", percent=True),
    "mr_nbsvm": Row("mr_nbsvm_cv", "sentiment / mr", "acc", 0.795,
                    "Kim 2014 CNN-rand 76.1; NBSVM-bigram 79.4; MNB 79.0", percent=True),
    # the same settings refitted on every training row of each fold (data.val_fraction=0), the last epoch tested
    "mr_nbsvm_refit": Row("mr_nbsvm_refit_cv", "sentiment / mr", "acc", 0.795,
                          "Kim 2014 CNN-rand 76.1; NBSVM-bigram 79.4; MNB 79.0", percent=True),
    "digits": Row("digits_cnn_cv", "image / digits", "acc", 0.990, "RBF SVM 0.987, kNN 0.988"),
    "breast_cancer": Row("breast_cancer_logistic_cv", "classification / breast_cancer", "acc", 0.980,
                         "logistic regression 0.979"),
    "diabetes": Row("diabetes_linear_cv", "regression / diabetes", "r2", 0.49, "linear regression R² 0.489"),
    "adult": Row("adult_resnet", "classification / adult", "acc", 0.855,
                 "one-hot logistic regression 0.851; HistGradientBoosting 0.871; Gorishniy et al. 2021: MLP 0.852, "
                 "ResNet 0.854, FT-Transformer 0.859"),
    "california": Row("california_resnet_cv", "regression / california_housing", "rmse", 0.50,
                      "one-hot ridge 0.689; HistGradientBoosting 0.477 (same folds); Gorishniy et al. 2021 (their "
                      "split): MLP 0.499, ResNet 0.486, FT-Transformer 0.459", scale=1e-5, higher_is_better=False),
}

SMOKE_OVERRIDES = ["trainer.max_epochs=1", "data.limit_rows=400"]


def best_validation_epoch(output_dir: Path, monitor: str, mode: str) -> dict:
    """The validation metrics of the epoch whose monitored value was best, from the run's metrics.jsonl."""
    path = output_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    epochs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    epochs = [e for e in epochs if monitor in e]
    if not epochs:
        return {}
    pick = min if mode == "min" else max
    return {k: v for k, v in pick(epochs, key=lambda e: e[monitor]).items() if k.startswith("val/")}


def run_fold(row: Row, fold: Optional[int], overrides: list[str], workdir: Path, validate: bool) -> dict:
    fold_override = [f"data.fold={fold}"] if fold is not None else []
    cfg = compose_config([f"experiment={row.experiment}", "logger=none", *fold_override, *overrides], workdir)
    started = time.perf_counter()
    clock, metrics = train_with_clock(cfg)
    wall = time.perf_counter() - started
    best = best_validation_epoch(Path(cfg.paths.output_dir), cfg.task.monitor, cfg.task.mode)
    result = {"fold": fold, "wall_s": wall, "epochs": len(clock.pipeline), "val": best.get(f"val/{row.metric}"),
              "monitor": cfg.task.monitor, "monitor_best": best.get(cfg.task.monitor)}
    if result["val"] is not None:
        result["val"] *= row.scale
    if not validate:
        result["test"] = metrics[f"test/{row.metric}"] * row.scale
    shutil.rmtree(cfg.paths.output_dir, ignore_errors=True)  # checkpoints of every fold add up
    return result


def folds_of(row: Row, overrides: list[str], workdir: Path) -> list[Optional[int]]:
    cfg = compose_config([f"experiment={row.experiment}", *overrides], workdir)
    return list(range(cfg.data.cv_folds)) if cfg.data.cv_folds else [None]


def summarize(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_row(name: str, row: Row, args, workdir: Path) -> dict:
    overrides = [*args.set, *(SMOKE_OVERRIDES if args.smoke else [])]
    all_folds = folds_of(row, overrides, workdir)
    folds = [f for f in all_folds if args.folds is None or f is None or f in args.folds]
    if args.smoke:
        folds = folds[:2]
    output = f"{'validation' if args.validate else 'accuracy'}_{name}{'_smoke' if args.smoke else ''}"
    path = RESULTS_DIR / f"{output}.json"
    record = {"row": name, "experiment": row.experiment, "overrides": overrides, "folds_total": len(all_folds),
              "validate": args.validate, "machine": machine(), "folds": []}
    if args.resume and path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("overrides") == overrides:
            record["folds"] = previous["folds"]
    done = {f["fold"] for f in record["folds"]}
    for fold in folds:
        if fold in done:
            continue
        result = run_fold(row, fold, overrides, workdir, args.validate)
        record["folds"].append(result)
        write_results(output, record)
        shown = result["val"] if args.validate else result["test"]
        print(f"  {name} fold {fold}: {'val' if args.validate else 'test'}/{row.metric} = {shown:.4f} "
              f"({result['epochs']} epochs, {result['wall_s']:.0f} s)", flush=True)
    key = "val" if args.validate else "test"
    values = [f[key] for f in record["folds"] if f.get(key) is not None]
    record["mean"], record["std"] = summarize(values) if values else (float("nan"), float("nan"))
    record["wall_s"] = sum(f["wall_s"] for f in record["folds"])
    write_results(output, record)
    if args.validate:
        with (RESULTS_DIR / "validation_log.jsonl").open("a") as log:
            log.write(json.dumps({"row": name, "overrides": overrides, "folds": [f["fold"] for f in record["folds"]],
                                  f"val/{row.metric} mean": record["mean"], "std": record["std"],
                                  f"{record['folds'][0]['monitor']} mean": statistics.fmean(
                                      f["monitor_best"] for f in record["folds"]),
                                  "date_utc": record["machine"]["date_utc"]}) + "\n")
    return record


def format_value(row: Row, record: dict) -> str:
    scale = 100 if row.percent else 1
    digits = 1 if row.percent else 3
    mean, std = record["mean"] * scale, record["std"] * scale
    n = len(record["folds"])
    if record["folds_total"] > 1:
        partial = "" if n == record["folds_total"] else f" ({n}/{record['folds_total']} folds)"
        return f"{mean:.{digits}f} ± {std:.{digits}f}{partial}"
    return f"{mean:.{digits + 1}f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--folds", nargs="+", type=int, default=None, help="run only these folds (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="OVERRIDE",
                        help="an extra config override for every row run, e.g. optimizer.lr=0.002")
    parser.add_argument("--validate", action="store_true", help="report validation metrics only (choose settings)")
    parser.add_argument("--resume", action="store_true", help="keep the folds already in the results file")
    parser.add_argument("--smoke", action="store_true", help="1 epoch on 400 rows, first 2 folds")
    args = parser.parse_args(argv)
    quiet_logs()

    workdir = Path(tempfile.mkdtemp(prefix="pipeline-accuracy-"))
    table = []
    try:
        for name in args.rows:
            row = ROWS[name]
            print(f"{name} (experiment={row.experiment}):", flush=True)
            record = run_row(name, row, args, workdir)
            protocol = f"{record['folds_total']}-fold CV" if record["folds_total"] > 1 else "official test set"
            metric = f"{'val' if args.validate else 'test'} {row.metric}"
            target = f"{'≥' if row.higher_is_better else '≤'} {row.target * (100 if row.percent else 1):g}"
            better = record["mean"] >= row.target if row.higher_is_better else record["mean"] <= row.target
            met = "yes" if better else "no"
            if args.validate or args.smoke or len(record["folds"]) < record["folds_total"]:
                met = "-"
            table.append([row.data, f"experiment={row.experiment}", protocol, row.anchor, target,
                          f"{metric} {format_value(row, record)}", met, f"{record['wall_s'] / 60:.1f} min"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(markdown_table(["task / data", "config", "protocol", "anchor", "target", "result", "met", "wall time"],
                         table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
