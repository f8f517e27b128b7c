"""Lightning callbacks built from ``conf/callbacks``: best/last checkpoints, early stopping."""
from __future__ import annotations

import warnings
from pathlib import Path

from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint


class ResumableCheckpoint(ModelCheckpoint):
    """Keeps comparing against the best score of the run it resumes, also when the resumed run writes to
    a new output directory: Lightning forgets the score then and would call the first resumed epoch the
    best, so a resumed run would test another epoch than an uninterrupted one. Files of the earlier run
    are never deleted (Lightning only removes files in its own directory)."""

    @property
    def state_key(self) -> str:
        # saved under ModelCheckpoint's name: checkpoints stay interchangeable with plain Lightning ones
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*dirpath has changed.*")
            super().load_state_dict(state_dict)
        self.best_model_score = state_dict["best_model_score"]
        self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
        self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
        self.kth_value = state_dict.get("kth_value", self.kth_value)

    # pytorch-lightning 2.6 writes last.ckpt only in an epoch that also wrote a best file, so after a
    # run of epochs without improvement "last" held the best epoch and a resume repeated the epochs after
    # it. Here last.ckpt is written at the end of every epoch, in the hook where Lightning saves.
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def _save_last_every_epoch(self, trainer) -> None:
        # _should_skip_saving_checkpoint is also true when this step was just saved (best and last)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        # after a resume, the metrics logger's `<monitor>_best` continues from the same best score
        if self.best_model_score is None:
            return
        for logger in trainer.loggers:
            if getattr(logger, "monitor", None) == self.monitor and getattr(logger, "best", 0) is None:
                logger.best = float(self.best_model_score)


def build_callbacks(cfg: DictConfig, output_dir: Path) -> tuple[ModelCheckpoint, list[Callback]]:
    """The checkpoint callback (returned separately: train.py tests its best file) and all callbacks."""
    monitor, mode = cfg.task.monitor, cfg.task.mode
    checkpoint = ResumableCheckpoint(
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
    if cfg.model.get("unfreeze_at_epoch") is not None:  # a pretrained backbone trained from that epoch on
        from pipeline.fine_tuning import UnfreezeBackbone

        callbacks.append(UnfreezeBackbone(cfg.model.unfreeze_at_epoch))
    sweep = cfg.get("sweep")
    if sweep and sweep.get("trial_number") is not None:
        # this run is one trial of an Optuna study: report to it each epoch and stop when it prunes
        from pipeline.sweep.pruning import PruningCallback

        callbacks.append(PruningCallback.from_config(sweep, monitor=cfg.task.monitor))
    return checkpoint, callbacks
