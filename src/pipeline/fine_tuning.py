"""Fine-tuning a pretrained backbone: train the new head alone first, then everything.

The model owns what is frozen (``set_backbone_trainable``); this callback only says when. Frozen parameters
stay in the optimizer with no gradient, so unfreezing needs no new parameter group, and the state is set
again at the start of every epoch from the epoch number alone: a run resumed after the unfreezing epoch
trains the backbone too."""
from __future__ import annotations

from pytorch_lightning.callbacks import Callback


class UnfreezeBackbone(Callback):
    def __init__(self, epoch: int):
        self.epoch = int(epoch)

    def on_train_start(self, trainer, pl_module) -> None:
        last = trainer.max_epochs
        if last is not None and last >= 0 and self.epoch >= last and trainer.is_global_zero:
            print(f"Note: model.unfreeze_at_epoch={self.epoch} is not an epoch of this run (epochs 0..{last - 1}, "
                  f"trainer.max_epochs={last}): the backbone stays frozen throughout", flush=True)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        model = pl_module.model
        trainable = trainer.current_epoch >= self.epoch
        if model.backbone_trainable != trainable:
            model.set_backbone_trainable(trainable)
