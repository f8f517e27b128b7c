"""The streamed image path on real image files: Fashion-MNIST written out as PNG files
(scripts/fashion_mnist_to_png.py), read by ``data=image_folder``.

1. ``training``: training images/s of ``experiment=fashion_mnist_cnn_streamed`` (CNN, bf16 autocast, random
   crop + flip per image) through ``pipeline.train.train(cfg)``, in memory (decoded once, batches augmented
   on the device) against streamed with 0, 1 and 2 DataLoader workers, on the same files. Median
   rate of the training part of the epochs after the first (``EpochClock``: up to the start of validation);
   setup seconds (listing, header checks,
   normalisation statistics, and for the in-memory path decoding every image) beside it.
2. ``loader``: images/s of the training DataLoader alone (no model): decoding + transforms, 0/1/2 workers, at
   28 px (crop + flip) and on the 224-px files (RandomResizedCrop 224 + flip + TrivialAugmentWide).
3. ``memory``: peak memory of a streamed run (``python -m pipeline.cli.train``, 2 workers, fixed number of steps)
   on folders of 10,000 and 70,000 files, sampled every 50 ms from /proc over the process and its workers:
   the sum of RSS (pages shared by the forked workers counted in each), the sum of PSS (shared pages
   divided among the processes sharing them) and the main process's own RSS.

    .venv/bin/python scripts/fashion_mnist_to_png.py
    .venv/bin/python scripts/fashion_mnist_to_png.py --limit 10000 --out data/fashion-mnist-png-10k
    .venv/bin/python scripts/fashion_mnist_to_png.py --size 224 --limit 10000 --out data/fashion-mnist-png-224
    .venv/bin/python benchmarks/streaming.py                  # all three
    .venv/bin/python benchmarks/streaming.py --only memory
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

from common import (PROJECT_ROOT, compose_config, machine, markdown_table, quiet_logs, setup_data, train_with_clock,
                    write_results)

DATA = PROJECT_ROOT / "data"
FOLDERS = {"70k": DATA / "fashion-mnist-png", "10k": DATA / "fashion-mnist-png-10k",
           "224px": DATA / "fashion-mnist-png-224"}
STREAMED = ["experiment=fashion_mnist_cnn_streamed", "logger=none", "trainer.enable_progress_bar=false"]


# ----- 1. training throughput -----------------------------------------------------------------------------------
def training(epochs: int, batches: int) -> list[dict]:
    rows = []
    variants = [("in memory", ["data.in_memory=true", "data.num_workers=2"])]
    variants += [(f"streamed, {w} worker{'s' if w != 1 else ''}", ["data.in_memory=false", f"data.num_workers={w}"])
                 for w in (0, 1, 2)]
    for name, overrides in variants:
        with tempfile.TemporaryDirectory() as workdir:
            cfg = compose_config([*STREAMED, f"data.path={FOLDERS['70k']}", f"trainer.max_epochs={epochs}",
                                  f"trainer.limit_train_batches={batches}", "trainer.limit_val_batches=2",
                                  "trainer.limit_test_batches=2", *overrides], Path(workdir))
            started = time.perf_counter()
            with redirect_stdout(io.StringIO()):
                setup_data(cfg)  # timed apart: train() sets its own data module up again
            setup_s = time.perf_counter() - started
            clock, _ = train_with_clock(cfg)
        images = batches * cfg.data.batch_size
        rates = [images / epoch["train_s"] for epoch in clock.pipeline[1:]]  # the first epoch starts the workers
        rows.append({"path": name, "images_per_s": statistics.median(rates), "epochs_measured": len(rates),
                     "images_per_epoch": images, "setup_s": setup_s})
        print(f"  {name}: {rows[-1]['images_per_s']:,.0f} images/s (median of {len(rates)} epochs of {images:,} "
              f"images, training part only), setup {setup_s:.1f} s", flush=True)
    return rows


# ----- 2. the loader alone ----------------------------------------------------------------------------------------
def loader(batches: int) -> list[dict]:
    rows = []
    settings = {
        "28 px: crop + flip": [f"data.path={FOLDERS['70k']}"],
        "224 px: RandomResizedCrop + flip + TrivialAugmentWide": [
            f"data.path={FOLDERS['224px']}", "data.image_size=224", "data.random_resized_crop=true",
            "data.auto_augment=trivial", "data.batch_size=64"],
    }
    for name, overrides in settings.items():
        for workers in (0, 1, 2):
            with tempfile.TemporaryDirectory() as workdir:
                cfg = compose_config([*STREAMED, *overrides, f"data.num_workers={workers}"], Path(workdir))
                datamodule = setup_data(cfg)
                iterator = iter(datamodule.train_dataloader())
                next(iterator)  # workers started, first batch in
                started, images = time.perf_counter(), 0
                for _, (x, y, _failed) in zip(range(batches), iterator):
                    images += len(y)
                rate = images / (time.perf_counter() - started)
                del iterator
            rows.append({"images": name, "workers": workers, "images_per_s": rate})
            print(f"  {name}, {workers} workers: {rate:,.0f} images/s", flush=True)
    return rows


# ----- 3. peak memory -----------------------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        current = stack.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    stack += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return pids


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_memory(folder: Path, steps: int) -> dict:
    command = [sys.executable, "-m", "pipeline.cli.train", *STREAMED, f"data.path={folder}", "data.num_workers=2",
               "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=20",
               "trainer.limit_test_batches=20", "logger.mlflow.log_plots=false"]
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen([*command, f"hydra.run.dir={workdir}/run"], cwd=PROJECT_ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = {"rss_sum_mb": 0.0, "pss_sum_mb": 0.0, "main_rss_mb": 0.0, "processes": 0}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                pids = _tree(process.pid)
                rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids) / 1024
                pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) / 1024
                main = _kib(f"/proc/{process.pid}/status", "VmRSS:") / 1024
                peak.update(rss_sum_mb=max(peak["rss_sum_mb"], rss), pss_sum_mb=max(peak["pss_sum_mb"], pss),
                            main_rss_mb=max(peak["main_rss_mb"], main), processes=max(peak["processes"], len(pids)))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, stderr = process.communicate()
        done.set()
        sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    line = next(line for line in stdout.splitlines() if line.startswith("Data: "))
    return {"folder": str(folder.relative_to(PROJECT_ROOT)), "files": sum(1 for _ in folder.rglob("*.png")),
            "data_line": line, **peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("training", "loader", "memory"), nargs="+",
                        default=["training", "loader", "memory"])
    parser.add_argument("--epochs", type=int, default=4, help="training: epochs per variant (the first is not counted)")
    parser.add_argument("--batches", type=int, default=100, help="training: batches of 128 per epoch")
    parser.add_argument("--loader-batches", type=int, default=60)
    parser.add_argument("--memory-steps", type=int, default=150)
    args = parser.parse_args()
    missing = [str(f) for f in FOLDERS.values() if not f.is_dir()]
    if missing:
        sys.exit(f"write the PNG folders first (see this script's docstring): missing {', '.join(missing)}")
    quiet_logs()
    results = {"machine": machine()}
    print(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, load "
          f"{results['machine']['load_average_1min_at_start']:.1f} at start", flush=True)
    if "training" in args.only:
        print("training images/s (experiment=fashion_mnist_cnn_streamed, 70,000 PNG files):", flush=True)
        results["training"] = training(args.epochs, args.batches)
        print(markdown_table(["path", "training images/s", "setup s"],
                             [[r["path"], f"{r['images_per_s']:,.0f}", f"{r['setup_s']:.1f}"] for r in results["training"]]))
    if "loader" in args.only:
        print("DataLoader alone (decode + transforms), images/s:", flush=True)
        results["loader"] = loader(args.loader_batches)
        print(markdown_table(["images", "workers", "images/s"],
                             [[r["images"], r["workers"], f"{r['images_per_s']:,.0f}"] for r in results["loader"]]))
    if "memory" in args.only:
        print("peak memory of a streamed run (2 workers):", flush=True)
        results["memory"] = [peak_memory(FOLDERS[size], args.memory_steps) for size in ("10k", "70k")]
        print(markdown_table(["files", "peak RSS sum MB", "peak PSS sum MB", "main RSS MB", "processes"],
                             [[f"{r['files']:,}", f"{r['rss_sum_mb']:,.0f}", f"{r['pss_sum_mb']:,.0f}",
                               f"{r['main_rss_mb']:,.0f}", r["processes"]] for r in results["memory"]]))
    print(f"results: {write_results('streaming', results)}")


if __name__ == "__main__":
    main()
