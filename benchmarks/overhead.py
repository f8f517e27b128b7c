"""Framework overhead: one epoch of the pipeline against one epoch of a hand-written PyTorch loop.

For each task's default data and model, ``train(cfg)`` (the real entry point of
``pipeline-train``) runs ``warmup + epochs`` epochs; before each of its epochs the same process
runs one epoch of the plain loop (``common.PlainLoop``: same model class, same in-memory
tensors, batch size and optimizer, no logging), so the two alternate under the same conditions.
Both epochs include a validation pass. Reported: the medians after warm-up and their ratio,
once with the default MLflow logging and once with ``logger=none`` (what MLflow adds).

Also measured: the wall time and peak memory of ``make train`` (the default run, after set-up),
with ``--vs-plain-train N`` N alternating pairs of ``make train`` and ``benchmarks/plain_train.py`` (the same
job written by hand: load breast_cancer, 50 epochs with a validation loss each, test the best epoch's weights,
print; ``--train-epochs 10`` has both train 10 epochs, the job ``make train`` had when the speed issue was
written), and, with ``--profile``, where that run's
time goes (cProfile, top functions by cumulative time).

    .venv/bin/python benchmarks/overhead.py                      # everything (~20 min on 2 cores)
    .venv/bin/python benchmarks/overhead.py --tasks classification regression --make-train-runs 0
    .venv/bin/python benchmarks/overhead.py --set image:data.limit_rows=20000   # a shorter image epoch
    .venv/bin/python benchmarks/overhead.py --tasks --make-train-runs 0 --vs-plain-train 5   # make train vs by hand
    .venv/bin/python benchmarks/overhead.py --smoke               # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from common import (task_overrides, PROJECT_ROOT, TASKS, PlainLoop, compose_config, machine, markdown_table, median, quiet_logs,
                    setup_data, train_with_clock, write_results)


# A tabular epoch lasts milliseconds: its median needs many more epochs to be stable.
DEFAULT_EPOCHS = {"image": 5, "sentiment": 5, "classification": 40, "regression": 40}


def measure_task(task: str, overrides: list[str], loggers: list[str], warmup: int, epochs: int,
                 workdir: Path) -> dict:
    result: dict = {"task": task, "overrides": overrides, "by_logger": {}}
    for logger in loggers:
        cfg = compose_config([*overrides, f"logger={logger}", f"trainer.max_epochs={warmup + epochs}",
                              "trainer.min_epochs=1"], workdir)
        datamodule = setup_data(cfg)
        plain = PlainLoop(cfg, datamodule)
        clock, _ = train_with_clock(cfg, plain)
        pipeline_epochs, plain_epochs = clock.pipeline[warmup:], clock.plain[warmup:]
        if not pipeline_epochs or not plain_epochs:
            raise RuntimeError(f"{task}: no epochs measured after {warmup} warm-up epochs")
        measured = {
            "plain_epoch_s": median(e["epoch_s"] for e in plain_epochs),
            "pipeline_epoch_s": median(e["epoch_s"] for e in pipeline_epochs),
            "plain_train_s": median(e["train_s"] for e in plain_epochs),
            "pipeline_checkpoint_s": median(e["checkpoint_s"] for e in pipeline_epochs),
            "pipeline_train_s": median(e["train_s"] for e in pipeline_epochs),
            "epochs_measured": len(pipeline_epochs),
            "all_plain_epoch_s": [round(e["epoch_s"], 4) for e in clock.plain],
            "all_pipeline_epoch_s": [round(e["epoch_s"], 4) for e in clock.pipeline],
        }
        measured["ratio_epoch"] = measured["pipeline_epoch_s"] / measured["plain_epoch_s"]
        measured["ratio_train"] = measured["pipeline_train_s"] / measured["plain_train_s"]
        result["by_logger"][logger] = measured
        result.update(batch_size=int(cfg.data.batch_size), train_rows=plain.train_rows,
                      val_rows=len(plain.val_y), model=cfg.model._target_.rsplit(".", 1)[-1],
                      data=cfg.data._target_.rsplit(".", 1)[-1])
        print(f"  {task} logger={logger}: pipeline {measured['pipeline_epoch_s']:.3f}s / plain "
              f"{measured['plain_epoch_s']:.3f}s per epoch = {measured['ratio_epoch']:.3f}", flush=True)
    by_logger = result["by_logger"]
    if "mlflow" in by_logger and "none" in by_logger:
        # each ratio is against its own interleaved baseline, so slow drift in load cancels out
        result["mlflow_cost"] = by_logger["mlflow"]["ratio_epoch"] / by_logger["none"]["ratio_epoch"] - 1
    return result


def time_make_train(runs: int, workdir: Path, extra_args: list[str]) -> dict:
    """``make train`` as a user runs it (set-up already done), into a store of its own under ``workdir``.
    The first run creates the SQLite store; later runs reuse it, as a researcher's runs do."""
    store = workdir / "make-train-mlruns"
    args = [f"paths.mlruns_dir={store}", *extra_args]
    walls, peaks = [], []
    for run in range(runs):
        out = workdir / f"make-train-out-{run}"
        # -o: treat the set-up stamp as up to date, so this times the run and never a reinstall
        command = ["/usr/bin/time", "-v", "make", "-s", "-o", ".venv/.installed", "train",
                   "ARGS=" + " ".join([*args, f"hydra.run.dir={out}"])]
        completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"make train failed:\n{completed.stderr[-3000:]}")
        walls.append(_elapsed_seconds(completed.stderr))
        peaks.append(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr).group(1)) / 1024)
        print(f"  make train run {run + 1}: {walls[-1]:.2f} s, peak RSS {peaks[-1]:.0f} MiB", flush=True)
    later = walls[1:] or walls
    return {"runs": runs, "wall_s": walls, "peak_rss_mib": peaks, "first_run_wall_s": walls[0],
            "median_wall_s_existing_store": median(later), "max_peak_rss_mib": max(peaks),
            "args": args}


def make_train_vs_plain(pairs: int, workdir: Path, extra_args: list[str], epochs: Optional[int] = None) -> dict:
    """``make train`` (set-up done, the store exists) against ``benchmarks/plain_train.py`` (the same job by hand),
    each a fresh process timed from start to exit, alternating which goes first. ``epochs``: both train that many
    epochs (None: the default run's)."""
    store = workdir / "vs-plain-mlruns"
    subprocess.run([sys.executable, "-c", "import sys; from pipeline.tracking.run import open_client, "
                    "prepare_local_store; prepare_local_store(sys.argv[1]); open_client(sys.argv[1])",
                    f"sqlite:///{store}/mlflow.db"], cwd=PROJECT_ROOT, check=True)
    make_args, plain = list(extra_args), [sys.executable, "benchmarks/plain_train.py"]
    if epochs:  # one trainer.max_epochs for make train, the same number for the plain script
        make_args = [a for a in make_args if not a.startswith("trainer.max_epochs=")] + [f"trainer.max_epochs={epochs}"]
        plain += ["--epochs", str(epochs)]
    runs = []
    for pair in range(pairs):
        out = workdir / f"vs-plain-out-{pair}"
        make = ["make", "-s", "-o", ".venv/.installed", "train",
                "ARGS=" + " ".join([f"paths.mlruns_dir={store}", f"hydra.run.dir={out}", *make_args])]
        order = [("make_train", make), ("plain", plain)]
        if pair % 2:
            order.reverse()
        walls = {"first": order[0][0], "load_1min": os.getloadavg()[0]}
        for side, command in order:
            started = time.perf_counter()
            completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
            walls[side] = time.perf_counter() - started
            if completed.returncode != 0:
                raise RuntimeError(f"{side} failed:\n{completed.stderr[-3000:]}")
        walls["ratio"] = walls["make_train"] / walls["plain"]
        runs.append(walls)
        print(f"  pair {pair + 1} ({walls['first']} first, load {walls['load_1min']:.1f}): make train "
              f"{walls['make_train']:.2f} s, plain {walls['plain']:.2f} s, ratio {walls['ratio']:.2f}", flush=True)
    return {"runs": runs, "epochs": epochs or "default", "median_make_train_s": median(r["make_train"] for r in runs),
            "median_plain_s": median(r["plain"] for r in runs), "median_ratio": median(r["ratio"] for r in runs)}


def _elapsed_seconds(time_output: str) -> float:
    value = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", time_output).group(1)
    seconds = 0.0
    for part in value.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def time_imports() -> float:
    """Seconds to import what ``pipeline-train`` imports before training (a fresh interpreter)."""
    code = ("import time; t = time.perf_counter(); import pipeline.train, pytorch_lightning, mlflow, "
            "pipeline.tasks, pipeline.tracking; print(time.perf_counter() - t)")
    completed = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                               check=True)
    return float(completed.stdout.strip().splitlines()[-1])


def profile_default_run(workdir: Path, extra_args: list[str], top: int = 40) -> str:
    """cProfile of the default run (existing store), the top functions by cumulative time."""
    import pstats

    profile_path = workdir / "default-run.prof"
    args = [f"paths.mlruns_dir={workdir / 'make-train-mlruns'}", f"hydra.run.dir={workdir / 'profile-out'}",
            *extra_args]
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile_path), "-m", "pipeline.cli.train", *args],
                   cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    from io import StringIO

    text = StringIO()
    pstats.Stats(str(profile_path), stream=text).sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", choices=sorted(TASKS), default=list(TASKS),
                        help="tasks whose epochs are timed (none: only the make train measurements)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"measured epochs after warm-up (median); default per task: {DEFAULT_EPOCHS}")
    parser.add_argument("--warmup", type=int, default=1, help="epochs left out of the median")
    parser.add_argument("--loggers", nargs="+", choices=["mlflow", "none"], default=["mlflow", "none"])
    parser.add_argument("--set", action="append", default=[], metavar="TASK:OVERRIDE",
                        help="an extra config override for one task, e.g. image:data.limit_rows=20000")
    parser.add_argument("--make-train-runs", type=int, default=4, help="0 skips the make train timing")
    parser.add_argument("--profile", action="store_true", help="cProfile the default run")
    parser.add_argument("--vs-plain-train", type=int, default=0, metavar="PAIRS",
                        help="alternating pairs of make train and benchmarks/plain_train.py (0: none)")
    parser.add_argument("--train-epochs", type=int, default=None, metavar="N",
                        help="with --vs-plain-train: both train N epochs (default: the default run's 50)")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1+1 epochs, 1 make train run")
    parser.add_argument("--output", default="overhead", help="results/<name>.json")
    parser.add_argument("--workdir", default=None, help="where runs write (default: a temporary folder)")
    args = parser.parse_args(argv)
    quiet_logs()

    extra = task_overrides(parser, args.set, TASKS)
    make_train_args: list[str] = []
    if args.smoke:
        args.epochs, args.warmup, args.make_train_runs = 1, 1, min(args.make_train_runs, 1)
        for task in TASKS:
            extra[task].append("data.limit_rows=400")
        extra["sentiment"].append("model.bigram_buckets=1000")
        make_train_args = ["trainer.max_epochs=1"]

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pipeline-overhead-"))
    results = {"machine": machine(), "warmup": args.warmup, "smoke": args.smoke, "tasks": {}}
    try:
        for task in args.tasks:
            print(f"{task}:", flush=True)
            epochs = args.epochs or DEFAULT_EPOCHS[task]
            results["tasks"][task] = measure_task(task, [*TASKS[task], *extra[task]], args.loggers, args.warmup,
                                                  epochs, workdir)
            write_results(args.output, results)
        if args.make_train_runs:
            print("make train:", flush=True)
            results["import_s"] = time_imports()
            results["make_train"] = time_make_train(args.make_train_runs, workdir, make_train_args)
            write_results(args.output, results)
        if args.vs_plain_train:
            print("make train vs a plain script:", flush=True)
            results["make_train_vs_plain"] = make_train_vs_plain(args.vs_plain_train, workdir, make_train_args,
                                                                 1 if args.smoke else args.train_epochs)
            write_results(args.output, results)
        if args.profile:
            profile = profile_default_run(workdir, make_train_args)
            (write_results(args.output, results).parent / f"{args.output}_profile.txt").write_text(profile)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = []
    for task, r in results["tasks"].items():
        by = r["by_logger"]
        cells = [task, f"{r['data']} / {r['model']}", r["batch_size"], r["train_rows"]]
        for logger in ("mlflow", "none"):
            m = by.get(logger)
            cells += [f"{m['plain_epoch_s']:.3f}", f"{m['pipeline_epoch_s']:.3f}", f"{m['ratio_epoch']:.3f}",
                      f"{m['ratio_train']:.3f}"] if m else ["-"] * 4
        cells.append(f"{100 * r['mlflow_cost']:+.1f}%" if "mlflow_cost" in r else "-")
        rows.append(cells)
    print()
    print(markdown_table(
        ["task", "data / model", "batch", "train rows",
         "plain epoch s", "pipeline epoch s (mlflow)", "ratio (mlflow)", "ratio train part (mlflow)",
         "plain epoch s", "pipeline epoch s (none)", "ratio (none)", "ratio train part (none)", "MLflow cost"],
        rows))
    if "make_train" in results:
        m = results["make_train"]
        print(f"\nimports: {results['import_s']:.2f} s; make train: first run (new store) {m['first_run_wall_s']:.2f} s, "
              f"median of later runs {m['median_wall_s_existing_store']:.2f} s, peak RSS {m['max_peak_rss_mib']:.0f} MiB")
    if "make_train_vs_plain" in results:
        m = results["make_train_vs_plain"]
        print(f"\nmake train vs plain script, {len(m['runs'])} alternating pairs: median make train "
              f"{m['median_make_train_s']:.2f} s, plain {m['median_plain_s']:.2f} s, median ratio {m['median_ratio']:.2f}")
    print(f"\nresults: {write_results(args.output, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
