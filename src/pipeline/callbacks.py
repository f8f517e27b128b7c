"""Lightning callbacks built from ``conf/callbacks``: best/last checkpoints, early stopping."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint


def build_callbacks(cfg: DictConfig, output_dir: Path) -> tuple[ModelCheckpoint, list[Callback]]:
    """The checkpoint callback (returned separately: train.py tests its best file) and all callbacks."""
    monitor, mode = cfg.task.monitor, cfg.task.mode
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=cfg.callbacks.checkpoint.save_last,
    )
    callbacks: list[Callback] = [checkpoint]
    stopping = cfg.callbacks.early_stopping
    if stopping.enabled:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=stopping.patience,
                                       min_delta=stopping.min_delta))
    return checkpoint, callbacks
