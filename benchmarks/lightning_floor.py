"""How fast can a Lightning epoch be? The floor under the pipeline's tabular epoch ratio (section 7).

On the default task's real data and model (``task=classification``: breast_cancer, the MLP, batch 64, fused
Adam; or ``--task sentiment``: MR, the bag of words, batch 64), three loops train and validate the same epochs,
alternating round by round (or, with ``--interleave``, epoch by epoch: a plain epoch runs just before each
Lightning epoch, outside its clock, as in ``overhead.py``; for epochs long enough to drift with the machine):

* ``plain``: the hand-written loop of the other benchmarks (``common.PlainLoop``);
* ``lightning``: a bare ``LightningModule`` (forward, loss, nothing else) in a ``Trainer`` with no logger, no
  checkpoints, no progress bar and no callbacks, automatic optimisation, and the two Lightning-level savings every
  pipeline run has (since 2026-12-02): the no-op profiler without its contexts (``pipeline.callbacks.NoProfiler``)
  and, on a machine without NVIDIA's driver, no NVML probe at each optimizer step (for the plain loop as well, as in
  ``overhead.py``, where both loops run inside the pipeline's process);
* ``lightning-manual``: the same with ``automatic_optimization = False`` (``zero_grad``, ``manual_backward``,
  ``step`` in ``training_step``): the loop a pipeline run takes since 2026-12-02 unless it accumulates gradients,
  clips them, uses L-BFGS or mixed precision (``TaskModule.use_short_loop``).

Whatever the pipeline adds (metrics, logging, checkpoints, resume state) comes on top of the bare rows, so
``lightning-manual / plain`` is the lowest epoch ratio reachable for a pipeline run while Lightning runs the loop
(``lightning / plain`` for runs that keep Lightning's automatic loop).

    .venv/bin/python benchmarks/lightning_floor.py                 # 3 rounds x 300 epochs, ~1 min
    .venv/bin/python benchmarks/lightning_floor.py --smoke         # seconds: checks that it runs
    PIPELINE_DATA_DIR=../shared/data .venv/bin/python benchmarks/lightning_floor.py --task sentiment --threads 2 \
        --rounds 3 --epochs 10 --warmup 1 --interleave                # MR, ~2 min
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from common import PlainLoop, build_model, compose_config, loss_function, machine, median, setup_data, write_results
from pipeline.callbacks import NoProfiler
from pipeline.train import skip_gpu_probe_without_a_driver


def bare_lightning(cfg, datamodule, epochs: int, manual: bool, plain: Optional[PlainLoop] = None
                   ) -> tuple[list[float], list[float]]:
    """Per-epoch seconds (training and validation) of a bare LightningModule on the same tensors; with ``plain``,
    also those of the plain loop's epoch run just before each Lightning epoch (not on Lightning's clock)."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    torch.manual_seed(cfg.seed)
    model, loss = build_model(cfg, datamodule.spec), loss_function(cfg, datamodule.spec)
    make_optimizer = instantiate(cfg.optimizer)

    class Batches:
        def __init__(self, x, y, batch_size, shuffle):
            self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle

        def __len__(self):
            return -(-len(self.y) // self.batch_size)

        def __iter__(self):
            order = torch.randperm(len(self.y)) if self.shuffle else torch.arange(len(self.y))
            for start in range(0, len(self.y), self.batch_size):
                index = order[start:start + self.batch_size]
                yield self.x[index], self.y[index]

    class Bare(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model
            self.automatic_optimization = not manual

        def training_step(self, batch, batch_idx):
            x, y = batch
            value = loss(self.model(x), y)
            if manual:
                optimizer = self.optimizers()
                optimizer.zero_grad()
                self.manual_backward(value)
                optimizer.step()
            return value

        def validation_step(self, batch, batch_idx):
            x, y = batch
            return loss(self.model(x), y)

        def configure_optimizers(self):
            return make_optimizer(params=self.model.parameters())

    class Clock(pl.Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self.plain_seconds: list[float] = []
            self.started = None

        def on_train_epoch_start(self, trainer, pl_module):
            now = time.perf_counter()
            if self.started is not None:
                self.seconds.append(now - self.started)
            if plain is not None and trainer.current_epoch < epochs:
                self.plain_seconds.append(plain.timed_epoch()["epoch_s"])
            self.started = time.perf_counter()

    clock = Clock()
    trainer = pl.Trainer(max_epochs=epochs + 1, callbacks=[clock], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1, profiler=NoProfiler())
    train, val = datamodule.train_split, datamodule.val_split
    trainer.fit(Bare(), train_dataloaders=Batches(train.x, train.y, datamodule.batch_size, True),
                val_dataloaders=Batches(val.x, val.y, datamodule.eval_batch_size, False))
    return clock.seconds, clock.plain_seconds  # the epochs 0..epochs-1, each up to the start of the next


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--task", choices=["classification", "sentiment"], default="classification")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--interleave", action="store_true",
                        help="a plain epoch before each Lightning epoch instead of a plain round before each loop")
    parser.add_argument("--output", default=None, help="results/<name>.json (default: lightning_floor[_<task>])")
    parser.add_argument("--smoke", action="store_true", help="1 round of 6 epochs (checks that it runs)")
    args = parser.parse_args()
    args.output = args.output or ("lightning_floor" if args.task == "classification" else f"lightning_floor_{args.task}")
    if args.smoke:
        args.rounds, args.epochs, args.warmup, args.output = 1, 6, 2, f"{args.output}_smoke"
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    skip_gpu_probe_without_a_driver()  # Lightning, imported with pipeline.callbacks, switched the probe on

    cfg = compose_config([f"task={args.task}", "logger=none"], Path(tempfile.mkdtemp()))
    datamodule = setup_data(cfg)
    sides: dict[str, list[float]] = {"plain": [], "lightning": [], "lightning-manual": []}
    # each loop against the plain epochs measured beside it: the whole round's (rounds), or the epochs run just
    # before its own (--interleave)
    ratios: dict[str, list[float]] = {"plain": [], "lightning": [], "lightning-manual": []}
    for round_ in range(args.rounds):
        plain = PlainLoop(cfg, datamodule)
        plain_epochs = [] if args.interleave else [
            plain.timed_epoch()["epoch_s"] for _ in range(args.epochs)][args.warmup:]
        for name, manual in (("lightning", False), ("lightning-manual", True)):
            seconds, beside = bare_lightning(cfg, datamodule, args.epochs, manual, plain if args.interleave else None)
            if args.interleave:
                beside = beside[args.warmup:]
                plain_epochs += beside
            sides[name].append(median(seconds[args.warmup:]))
            ratios[name].append(sides[name][-1] / median(beside if args.interleave else plain_epochs))
        sides["plain"].append(median(plain_epochs))
        ratios["plain"].append(1.0)
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {values[-1] * 1000:.2f} ms" for name, values in sides.items()),
              flush=True)
    print("\n| loop | epoch (ms), median of rounds | per round (ms) | / plain, per round | / plain, median |"
          "\n|---|---|---|---|---|")
    for name, values in sides.items():
        print(f"| {name} | {median(values) * 1000:.2f} | {' / '.join(f'{v * 1000:.2f}' for v in values)} | "
              f"{' / '.join(f'{r:.2f}' for r in ratios[name])} | {median(ratios[name]):.2f} |")
    path = write_results(args.output, {"machine": machine(), "task": args.task, "threads": args.threads,
                                       "interleave": args.interleave, "epochs": args.epochs, "warmup": args.warmup,
                                       "epoch_s": sides, "ratio_to_plain": ratios})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
