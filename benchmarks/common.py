"""What the benchmark scripts share: composing the real config, the hand-written baseline loop,
a clock for the pipeline's epochs, and writing results.

The baseline (``PlainLoop``) is what a researcher would write by hand: the same model class
from ``pipeline.models``, the same in-memory tensors, batch size and optimizer, a shuffled
index-slicing loop, and a ``torch.no_grad`` pass over the validation split; no logging, no
checkpoints. The pipeline is timed through its real entry point ``pipeline.train.train(cfg)``,
with one extra Lightning callback (``EpochClock``) that also runs a baseline epoch just before
each pipeline epoch, so both are measured alternately under the same load and thread settings.
"""
from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import redirect_stdout
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import torch
from pytorch_lightning.callbacks import Callback
from torch.nn import functional as F

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# BENCHMARK_RESULTS_DIR moves them (the smoke tests write into a temporary folder)
RESULTS_DIR = Path(os.environ.get("BENCHMARK_RESULTS_DIR") or PROJECT_ROOT / "benchmarks" / "results")

# The default data and model of each task (conf/task/*.yaml), except that the image task's
# published benchmark is Fashion-MNIST rather than the offline digits.
TASKS: dict[str, list[str]] = {
    "image": ["task=image_classification", "data=fashion_mnist"],
    "sentiment": ["task=sentiment"],
    "classification": ["task=classification"],
    "regression": ["task=regression"],
}


def compose_config(overrides: list[str], workdir: Path):
    """The real config (as ``pipeline-train`` composes it), writing into ``workdir``."""
    from hydra import compose, initialize_config_dir

    from pipeline.config import CONFIG_DIR

    workdir.mkdir(parents=True, exist_ok=True)
    outputs = workdir / f"outputs-{time.time_ns()}"
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(config_name="config", overrides=[
            f"paths.mlruns_dir={workdir / 'mlruns'}",
            f"paths.output_dir={outputs}",
            "trainer.enable_progress_bar=false",
            *overrides,
        ])


def setup_data(cfg):
    """The data module of ``cfg``, loaded and split exactly as ``train(cfg)`` will do it."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule


def build_model(cfg, spec):
    from pipeline.models import build_model as build

    return build(cfg.model, spec)


def loss_function(cfg, spec) -> Callable:
    """The task's loss, written out as a hand-written loop would (same maths as pipeline.tasks)."""
    if cfg.task.kind == "regression":
        mean, std = spec.extra.get("target_mean", 0.0), spec.extra.get("target_std", 1.0)
        return lambda output, y: F.mse_loss(output.squeeze(-1), (y - mean) / std)
    if spec.num_outputs == 1:
        return lambda output, y: F.binary_cross_entropy_with_logits(output.squeeze(-1), y.float())
    return F.cross_entropy


class PlainLoop:
    """The hand-written baseline: shuffled index slices, forward, loss, backward, step;
    then the validation loss over the validation split under ``torch.no_grad``."""

    def __init__(self, cfg, datamodule, model: Optional[torch.nn.Module] = None):
        from hydra.utils import instantiate

        torch.manual_seed(cfg.seed)
        self.model = model if model is not None else build_model(cfg, datamodule.spec)
        self.optimizer = instantiate(cfg.optimizer)(params=self.model.parameters())
        self.loss = loss_function(cfg, datamodule.spec)
        self.train_x, self.train_y = datamodule.train_split.x, datamodule.train_split.y
        self.val_x, self.val_y = datamodule.val_split.x, datamodule.val_split.y
        self.batch_size = datamodule.batch_size
        self.eval_batch_size = datamodule.eval_batch_size
        self.train_rows = len(self.train_y)
        # the same mixed precision as the pipeline's trainer.precision (bf16-mixed: autocast, weights stay fp32)
        self.autocast_bf16 = str(cfg.trainer.get("precision", "32")).startswith("bf16")

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast_bf16)

    def train_epoch(self) -> float:
        """One pass over the training split; returns the mean training loss."""
        self.model.train()
        order = torch.randperm(self.train_rows)
        loss_sum = 0.0
        for start in range(0, self.train_rows, self.batch_size):
            index = order[start:start + self.batch_size]
            x, y = self.train_x[index], self.train_y[index]
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self.loss(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item() * len(y)
        return loss_sum / self.train_rows

    @torch.no_grad()
    def validate(self) -> float:
        self.model.eval()
        loss_sum = 0.0
        for start in range(0, len(self.val_y), self.eval_batch_size):
            x, y = self.val_x[start:start + self.eval_batch_size], self.val_y[start:start + self.eval_batch_size]
            with self._autocast():
                loss_sum += self.loss(self.model(x), y).item() * len(y)
        return loss_sum / len(self.val_y)

    def timed_epoch(self) -> dict[str, float]:
        started = time.perf_counter()
        self.train_epoch()
        trained = time.perf_counter()
        self.validate()
        finished = time.perf_counter()
        return {"train_s": trained - started, "epoch_s": finished - started}


class EpochClock(Callback):
    """Times each pipeline epoch from one ``on_train_epoch_start`` to the next (so everything
    the pipeline does per epoch counts: training steps, validation, metric logging, checkpoints),
    and its training part up to the start of validation. With a ``PlainLoop`` it runs one
    baseline epoch before each pipeline epoch, outside the pipeline's timed span."""

    def __init__(self, plain: Optional[PlainLoop] = None):
        super().__init__()
        self.plain_loop = plain
        self.pipeline: list[dict[str, float]] = []
        self.plain: list[dict[str, float]] = []
        self._started: Optional[float] = None
        self._validation_started: Optional[float] = None
        self._checkpoint_s = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        # checkpoint writing is timed apart: it is the largest per-epoch cost for big embeddings
        save_checkpoint = trainer.save_checkpoint

        def timed_save(*args, **kwargs):
            started = time.perf_counter()
            try:
                return save_checkpoint(*args, **kwargs)
            finally:
                self._checkpoint_s += time.perf_counter() - started

        trainer.save_checkpoint = timed_save

    def _close_epoch(self, now: float) -> None:
        if self._started is None:
            return
        train_end = self._validation_started or now
        self.pipeline.append({"train_s": train_end - self._started, "epoch_s": now - self._started,
                              "checkpoint_s": self._checkpoint_s})
        self._started = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._close_epoch(time.perf_counter())
        if self.plain_loop is not None:
            self.plain.append(self.plain_loop.timed_epoch())
        self._validation_started = None
        self._checkpoint_s = 0.0
        self._started = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self._started is not None:
            self._validation_started = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._close_epoch(time.perf_counter())


def train_with_clock(cfg, plain: Optional[PlainLoop] = None) -> tuple[EpochClock, dict[str, float]]:
    """Run the pipeline's real ``train(cfg)`` with an ``EpochClock``; returns it and the test metrics."""
    from pipeline.train import train

    clock = EpochClock(plain)
    with redirect_stdout(io.StringIO()):  # train() prints a summary per run
        metrics = train(cfg, callbacks=[clock])
    return clock, metrics


def median(values) -> float:
    return float(statistics.median(values))


def machine() -> dict:
    """Where a number was measured."""
    model_name = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model_name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import pytorch_lightning

    return {
        "cpu": model_name,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "load_average_1min_at_start": os.getloadavg()[0],
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def write_results(name: str, results: dict, results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def quiet_logs() -> None:
    """Benchmarks print tables; Lightning's and MLflow's info lines would bury them."""
    import logging
    import warnings

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def task_overrides(parser, items: list[str], tasks) -> dict[str, list[str]]:
    """``--set TASK:OVERRIDE`` arguments grouped by task; a malformed one is a usage error."""
    extra: dict[str, list[str]] = {task: [] for task in tasks}
    for item in items:
        task, _, override = item.partition(":")
        if task not in extra or not override:
            parser.error(f"--set {item!r}: expected TASK:OVERRIDE with TASK one of {sorted(extra)}")
        extra[task].append(override)
    return extra
