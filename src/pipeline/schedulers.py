"""Learning-rate schedules that torch.optim.lr_scheduler lacks. Schedules that span the whole run set
``steps_per_batch = True``: the objective steps them every optimizer step and passes ``total_steps``."""
from __future__ import annotations

from typing import Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR


def spans_the_run(target) -> bool:
    """Whether a scheduler class (or a partial of one) schedules over the whole run, stepped every optimizer step
    over the ``total_steps`` the objective passes: OneCycleLR, and ours that set ``steps_per_batch``."""
    target = getattr(target, "func", target)
    return target is OneCycleLR or bool(getattr(target, "steps_per_batch", False))


def per_group_peaks(factory, optimizer) -> Optional[list[float]]:
    """OneCycleLR's peak per parameter group where the groups' learning rates differ (a backbone at
    model.backbone_lr_scale of optimizer.lr): the configured ``max_lr`` times each group's share of optimizer.lr.
    One number for every group would set them all alike, undoing the scale. None: nothing to change."""
    if getattr(factory, "func", factory) is not OneCycleLR:
        return None
    peak, base = getattr(factory, "keywords", {}).get("max_lr"), optimizer.defaults.get("lr")
    rates = [group["lr"] for group in optimizer.param_groups]
    if not isinstance(peak, (int, float)) or not base or len(set(rates)) < 2:
        return None
    return [float(peak) * rate / float(base) for rate in rates]


class LinearWarmupDecay(LRScheduler):
    """Linear warm-up to the optimizer's learning rate over ``warmup_fraction`` of the steps (or ``warmup_steps``;
    step k of w at (k + 1) / (w + 1) of the rate: no step is spent at 0), then linear decay towards ``final_fraction``
    x that rate, which the schedule reaches as training ends (the last of d decay steps is 1/d of the way above it, as
    in Hugging Face's ``get_linear_schedule_with_warmup``): the usual schedule for fine-tuning pretrained
    transformers (BERT, Devlin et al. 2019)."""

    steps_per_batch = True

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.06,
                 warmup_steps: int | None = None, final_fraction: float = 0.0, last_epoch: int = -1):
        if total_steps < 1:
            raise ValueError(f"scheduler total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"scheduler.warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(f"scheduler.final_fraction must be in [0, 1], got {final_fraction}")
        warmup = int(warmup_steps) if warmup_steps is not None else int(round(warmup_fraction * total_steps))
        self.total_steps, self.warmup_steps, self.final_fraction = int(total_steps), warmup, float(final_fraction)
        super().__init__(optimizer, last_epoch=last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        remaining = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / remaining)
        return 1.0 - (1.0 - self.final_fraction) * progress

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]
