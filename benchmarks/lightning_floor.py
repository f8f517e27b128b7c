"""How fast can a Lightning epoch be? The floor under the pipeline's tabular epoch ratio (section 7).

On the default task's real data and model (``task=classification``: breast_cancer, the MLP, batch 64, fused
Adam), three loops train and validate the same epochs, alternating round by round:

* ``plain``: the hand-written loop of the other benchmarks (``common.PlainLoop``);
* ``lightning``: a bare ``LightningModule`` (forward, loss, nothing else) in a ``Trainer`` with no logger, no
  checkpoints, no progress bar and no callbacks, automatic optimisation;
* ``lightning-manual``: the same with ``automatic_optimization = False`` (``zero_grad``, ``manual_backward``,
  ``step`` in ``training_step``), what a "manual-optimisation fast path" could at best save.

Whatever the pipeline adds (metrics, logging, checkpoints, resume state) comes on top of the bare ``lightning``
row, so ``lightning / plain`` is the lowest epoch ratio reachable while Lightning runs the loop.

    .venv/bin/python benchmarks/lightning_floor.py                 # 3 rounds x 300 epochs, ~1 min
    .venv/bin/python benchmarks/lightning_floor.py --smoke         # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from common import PlainLoop, build_model, compose_config, loss_function, machine, median, setup_data, write_results


def bare_lightning(cfg, datamodule, epochs: int, manual: bool) -> list[float]:
    """Per-epoch seconds (training and validation) of a bare LightningModule on the same tensors."""
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
            self.started = None

        def on_train_epoch_start(self, trainer, pl_module):
            now = time.perf_counter()
            if self.started is not None:
                self.seconds.append(now - self.started)
            self.started = now

    clock = Clock()
    trainer = pl.Trainer(max_epochs=epochs + 1, callbacks=[clock], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1)
    train, val = datamodule.train_split, datamodule.val_split
    trainer.fit(Bare(), train_dataloaders=Batches(train.x, train.y, datamodule.batch_size, True),
                val_dataloaders=Batches(val.x, val.y, datamodule.eval_batch_size, False))
    return clock.seconds  # the epochs 0..epochs-1, each up to the start of the next


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--output", default="lightning_floor")
    parser.add_argument("--smoke", action="store_true", help="1 round of 6 epochs (checks that it runs)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.epochs, args.warmup, args.output = 1, 6, 2, f"{args.output}_smoke"
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    cfg = compose_config(["task=classification", "logger=none"], Path(tempfile.mkdtemp()))
    datamodule = setup_data(cfg)
    sides: dict[str, list[float]] = {"plain": [], "lightning": [], "lightning-manual": []}
    for round_ in range(args.rounds):
        plain = PlainLoop(cfg, datamodule)
        epochs = [plain.timed_epoch()["epoch_s"] for _ in range(args.epochs)]
        sides["plain"].append(median(epochs[args.warmup:]))
        for name, manual in (("lightning", False), ("lightning-manual", True)):
            sides[name].append(median(bare_lightning(cfg, datamodule, args.epochs, manual)[args.warmup:]))
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {values[-1] * 1000:.2f} ms" for name, values in sides.items()),
              flush=True)
    plain_ms = median(sides["plain"]) * 1000
    print("\n| loop | epoch (ms), median of rounds | per round (ms) | / plain |\n|---|---|---|---|")
    for name, values in sides.items():
        ms = median(values) * 1000
        print(f"| {name} | {ms:.2f} | {' / '.join(f'{v * 1000:.2f}' for v in values)} | {ms / plain_ms:.2f} |")
    path = write_results(args.output, {"machine": machine(), "epochs": args.epochs, "warmup": args.warmup,
                                       "epoch_s": sides})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
