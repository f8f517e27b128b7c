"""Training throughput (samples/s) on the image and sentiment tasks: the pipeline, the plain loop,
and plain-loop variants that might be faster on CPU (channels-last vs channels-first memory
layout, ``torch.compile``, fused against foreach Adam), so that the faster choice can be kept as the default.

Samples/s counts training rows over the training part of an epoch only (no validation). The
pipeline runs through ``train(cfg)`` with the default MLflow logging, alternating epoch by epoch
with the plain loop (as in overhead.py); each variant then runs on its own. Medians after warm-up
(the warm-up epoch also absorbs ``torch.compile``'s compilation).

    .venv/bin/python benchmarks/throughput.py
    .venv/bin/python benchmarks/throughput.py --tasks sentiment --variants eager foreach_adam
    .venv/bin/python benchmarks/throughput.py --smoke
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from common import (task_overrides, TASKS, PlainLoop, build_model, compose_config, machine, markdown_table, median, quiet_logs,
                    setup_data, train_with_clock, write_results)

# The image epoch is long on 2 cores; samples/s is a steady-state rate, so a 12,000-row slice
# (10,800 training rows, 85 steps) measures it as well as the full 54,000 rows would.
DEFAULT_EXTRA = {"image": ["data.limit_rows=12000"], "sentiment": []}


def _channels_first(model: torch.nn.Module) -> torch.nn.Module:
    """The CNN with its channels-last conversion undone (weights and inputs in NCHW)."""
    model.to(memory_format=torch.contiguous_format)
    model.forward = types.MethodType(lambda self, x: self.head(self.features(x.contiguous())), model)
    return model


# name -> (extra config overrides, model transform, tasks it applies to)
VARIANTS = {
    "eager": ([], None, {"image", "sentiment"}),
    "channels_first": ([], _channels_first, {"image"}),
    "compile": ([], torch.compile, {"image", "sentiment"}),
    "foreach_adam": (["optimizer.fused=false"], None, {"image", "sentiment"}),
    # bf16 autocast (trainer.precision=bf16-mixed; the plain loop autocasts the same way): AMX on recent Xeons
    "bf16": (["trainer.precision=bf16-mixed"], None, {"image", "sentiment"}),
    # the bag of words' embedding size before it became 10 (conf/model/bow.yaml)
    "embed_dim_64": (["model.embed_dim=64"], None, {"sentiment"}),
}


def plain_samples_per_s(cfg, datamodule, transform, warmup: int, epochs: int) -> tuple[float, list[float]]:
    model = build_model(cfg, datamodule.spec)
    if transform is not None:
        model = transform(model)
    loop = PlainLoop(cfg, datamodule, model=model)
    seconds = []
    for _ in range(warmup + epochs):
        started = time.perf_counter()
        loop.train_epoch()
        seconds.append(time.perf_counter() - started)
    return loop.train_rows / median(seconds[warmup:]), [round(s, 4) for s in seconds]


def measure_task(task: str, overrides: list[str], variants: list[str], warmup: int, epochs: int,
                 workdir: Path) -> dict:
    result: dict = {"task": task, "overrides": overrides, "samples_per_s": {}, "epoch_s": {}}
    cfg = compose_config([*overrides, f"trainer.max_epochs={warmup + epochs}"], workdir)
    datamodule = setup_data(cfg)
    plain = PlainLoop(cfg, datamodule)
    clock, _ = train_with_clock(cfg, plain)
    rows = plain.train_rows
    result["train_rows"], result["batch_size"] = rows, int(cfg.data.batch_size)
    result["samples_per_s"]["pipeline (mlflow)"] = rows / median(e["train_s"] for e in clock.pipeline[warmup:])
    result["samples_per_s"]["plain (alternating)"] = rows / median(e["train_s"] for e in clock.plain[warmup:])
    print(f"  {task} pipeline: {result['samples_per_s']['pipeline (mlflow)']:.0f} samples/s, plain: "
          f"{result['samples_per_s']['plain (alternating)']:.0f} samples/s", flush=True)
    for name in variants:
        variant_overrides, transform, tasks = VARIANTS[name]
        if task not in tasks:
            continue
        variant_cfg = compose_config([*overrides, *variant_overrides], workdir) if variant_overrides else cfg
        rate, seconds = plain_samples_per_s(variant_cfg, datamodule, transform, warmup, epochs)
        result["samples_per_s"][f"plain {name}"] = rate
        result["epoch_s"][f"plain {name}"] = seconds
        print(f"  {task} plain {name}: {rate:.0f} samples/s (epochs {seconds})", flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=["image", "sentiment"], default=["image", "sentiment"])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs after warm-up (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="TASK:OVERRIDE",
                        help="an extra override for one task (replaces the default image slice if given for image)")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1+1 epochs, eager and channels_first only")
    parser.add_argument("--output", default="throughput")
    args = parser.parse_args(argv)
    quiet_logs()

    extra = task_overrides(parser, args.set, DEFAULT_EXTRA)
    for task in extra:
        extra[task] = extra[task] or list(DEFAULT_EXTRA[task])
    if args.smoke:
        args.epochs, args.warmup = 1, 1
        args.variants = [v for v in args.variants if v in ("eager", "channels_first", "foreach_adam", "bf16")]
        extra = {task: ["data.limit_rows=300"] for task in extra}
        extra["sentiment"].append("model.bigram_buckets=1000")

    workdir = Path(tempfile.mkdtemp(prefix="pipeline-throughput-"))
    results = {"machine": machine(), "warmup": args.warmup, "epochs": args.epochs, "smoke": args.smoke, "tasks": {}}
    try:
        for task in args.tasks:
            print(f"{task}:", flush=True)
            results["tasks"][task] = measure_task(task, [*TASKS[task], *extra[task]], args.variants, args.warmup,
                                                  args.epochs, workdir)
            write_results(args.output, results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = []
    for task, r in results["tasks"].items():
        base = r["samples_per_s"].get("plain eager", r["samples_per_s"]["plain (alternating)"])
        for name, rate in r["samples_per_s"].items():
            rows.append([task, name, f"{rate:.0f}", f"{rate / base:.2f}"])
    print()
    print(markdown_table(["task", "loop", "samples/s", "vs plain eager"], rows))
    print(f"\nresults: {write_results(args.output, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
