"""Optimizers the pipeline adds to ``torch.optim`` (``conf/optimizer/<name>.yaml`` names them by ``_target_``).

:class:`LBFGS` is ``torch.optim.LBFGS`` made to fit the pipeline's runs: an L2 penalty (``weight_decay``, the
same penalty SGD's ``weight_decay`` puts on the gradient, here also added to the loss the line search sees, so
the problem L-BFGS solves is the penalised one) and, under DDP, the loss averaged over the ranks, so that every
rank takes the same line-search decisions on the same (averaged) gradients and the replicas stay identical.

It is meant for full-batch training of convex models -- linear and logistic regression, NBSVM -- to convergence:
``data.batch_size`` at least the training rows, one optimizer step per epoch of ``max_iter`` L-BFGS iterations.
"""
from __future__ import annotations

from typing import Callable

import torch


class LBFGS(torch.optim.LBFGS):
    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval=None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100, line_search_fn=None,
                 weight_decay: float = 0.0):
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                         tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        self.weight_decay = float(weight_decay)

    def step(self, closure: Callable[[], torch.Tensor]):
        return super().step(self._penalised(closure))

    def _penalised(self, closure: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        params = [p for group in self.param_groups for p in group["params"]]
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized() and \
            torch.distributed.get_world_size() > 1

        def evaluate() -> torch.Tensor:
            loss = closure()
            value = loss.detach().clone()
            if distributed:  # DDP has averaged the gradients; the line search must see the averaged loss too
                torch.distributed.all_reduce(value)
                value /= torch.distributed.get_world_size()
            if self.weight_decay:
                with torch.no_grad():
                    value += self.weight_decay / 2 * sum(p.pow(2).sum() for p in params)
                    for p in params:
                        if p.grad is not None:
                            p.grad.add_(p, alpha=self.weight_decay)
            return value

        return evaluate
