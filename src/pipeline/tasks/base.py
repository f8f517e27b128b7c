"""What every task kind's LightningModule shares: optimisation, L1, epoch-level logging, the best
value of the monitored metric, and exact resume.

A task module owns the loss, the metrics and the optimizer/scheduler of its kind; it wraps any plain
``nn.Module`` and never knows which data set feeds it. Per-step work is kept to the minimum
(forward, loss, backward, step; the optimizer stepped by the module itself unless Lightning's automatic loop
is needed, see ``use_short_loop``): the training loss is summed in Python floats and logged once per epoch,
and evaluation metrics are computed once per epoch over the split's predictions (``tasks.metrics``).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from pipeline.errors import NonFiniteLossError


class TaskModule(pl.LightningModule):
    """The LightningModule of a task kind. A subclass is the one home of its kind: the loss, the metrics,
    the predictions as served, the test plots and whether splits keep the class balance."""

    #: the value of ``task.kind`` that selects this module
    kind: ClassVar[str] = ""
    #: hold-out and cross-validation splits keep the class proportions (data modules read it)
    stratify: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Optional[Callable[..., Any]] = None,
        monitor: str = "val/loss",
        mode: str = "min",
    ):
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.mode = mode
        self.l1 = float(getattr(model, "l1", 0.0) or 0.0)
        # the epoch's training loss summed in Python floats (each step reads its loss once anyway, to check it
        # is finite); not buffers: DDP overwrites every buffer with rank 0's before each forward
        self._train_loss_sum = 0.0
        self._train_rows = 0
        self._epoch_started = 0.0
        self.best_value: Optional[float] = None
        #: redraws of the test rows for the 95 % intervals of the test metrics (``task.test_intervals``; 0: none)
        self.test_resamples = 0
        #: whether task.monitor was undefined on the last validation rows (counted as 0), and whether that was said
        self.monitor_undefined, self._said_monitor_undefined = False, False
        #: the test metrics undefined on the test rows, left out of the logged metrics (see ``undefined_reasons``)
        self.undefined_test_metrics: list[str] = []

    # plain attributes set on every training step: Lightning sets _current_fx_name around every hook it calls (~50
    # times per step), the step's loss and the epoch's sums are updated once per step. nn.Module's __setattr__
    # (parameter, buffer and submodule checks) made the first ~10 % of a small model's step.
    _PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_batch_loss", "_train_loss_sum", "_train_rows"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    # Lightning reads the signature of training_step / validation_step / test_step with inspect.getfullargspec
    # at every batch (does it take batch_idx?): ~30 us each time on a 2-core machine. A function's __signature__
    # is what inspect returns without rebuilding it (~8 us).
    _STEP_METHODS = ("training_step", "validation_step", "test_step", "predict_step")

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        _remember_step_signatures(cls)

    # ----- the part a subclass defines -----------------------------------------------------------
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def metric_inputs(self, output: Tensor) -> Tensor:
        """What the metrics are computed from, per row of a batch (probabilities, predictions in the data's units)."""
        raise NotImplementedError

    def compute_metrics(self, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """The metrics (names without ``val/``) of a whole split from its rows' ``metric_inputs`` and targets."""
        raise NotImplementedError

    def weighted_metrics(self, inputs, targets):
        """``compute_metrics`` of the rows' ``metric_inputs`` and targets (numpy arrays) as a function of row weights
        (redraws x rows) -> {metric: value per redraw}, for the bootstrap intervals of the test metrics."""
        raise NotImplementedError

    def predictor(self) -> nn.Module:
        """The model as it should be served: inputs in, predictions in the data's units out."""
        return self.model

    def output_settings(self) -> dict[str, str]:
        """The task keys that say what the model's outputs are (what it learns to output): a checkpoint keeps them,
        and a run that resumes or evaluates it must read the outputs the same way (``train.check_resume_checkpoint``)."""
        return {}

    @classmethod
    def metric_names(cls, spec) -> tuple[str, ...]:
        """The names (without ``val/``) of the metrics this kind computes for data described by ``spec``."""
        raise NotImplementedError

    def test_plots(self, y_true, outputs, folder: Path, spec) -> list[Path]:
        """Figures of the test split's predictions (``outputs``: the predictor's outputs), saved into ``folder``."""
        return []

    # ----- training --------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def l1_penalty(self) -> Tensor:
        weights = [p.abs().sum() for name, p in self.model.named_parameters() if p.dim() > 1]
        return self.l1 * torch.stack(weights).sum()

    def on_fit_start(self) -> None:
        """A model with statistics of the training split (NBSVM's naive-Bayes ratios) gets them here, from
        one pass over the training batches, summed over ranks, before the sanity check and the first
        optimizer step. Recounted on resume: the same rows give the same counts."""
        if not hasattr(self.model, "count_features"):
            return
        total = None
        for x, y in self.trainer.datamodule.train_dataloader():
            counts = self.model.count_features(x.to(self.device), y.to(self.device))
            total = counts if total is None else total + counts
        if total is not None:
            self.model.set_feature_counts(self.trainer.strategy.reduce(total, reduce_op="sum"))

    def on_train_start(self) -> None:
        self._log_epochs_before_resume()
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        batches = self.trainer.num_training_batches
        if isinstance(optimizer, torch.optim.LBFGS) and batches > 1 and self.trainer.is_global_zero:
            logging.getLogger("pipeline").warning(
                "optimizer=lbfgs with %s batches per epoch: L-BFGS assumes one fixed objective and its line search "
                "is unreliable on mini-batches; set data.batch_size to at least the training rows (per device)",
                batches if batches != float("inf") else "unknown")

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum = 0.0
        self._train_rows = 0
        self._epoch_started = time.perf_counter()

    def training_step(self, batch, batch_idx: int) -> Optional[Tensor]:
        if self.automatic_optimization:
            return self._training_loss(batch)
        # the short loop (see use_short_loop): zero the gradients, backward, step; the per-step schedulers after
        # the batch's on_train_batch_end callbacks, as in Lightning's loop
        optimizer = self.optimizers()
        loss = self._training_loss(batch)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return None

    def _training_loss(self, batch) -> Tensor:
        x, y = batch
        loss = self.loss(self.model(x), y)
        # one read of the value (a device sync, as any finiteness check is): ~0.3 us against ~14 us for
        # bool(torch.isfinite(loss)) on the CPU
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(value, self.current_epoch, self.global_step)
        # counted once the step is done (on_train_batch_end): L-BFGS evaluates a batch several times per step
        self._batch_loss = value
        if self.l1:
            loss = loss + self.l1_penalty()
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        rows = len(batch[1])
        self._train_loss_sum += self._batch_loss * rows
        self._train_rows += rows
        if not self.automatic_optimization:
            self._step_schedulers("step", batch_idx + 1)

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self._epoch_started
        # the mean over every rank's rows, and training rows per second over all ranks (each counts its shard)
        totals = self.trainer.strategy.reduce(torch.tensor(
            [self._train_loss_sum, self._train_rows, self._train_rows / seconds], device=self.device), reduce_op="sum")
        self._publish({"train/loss": totals[0] / totals[1].clamp_min(1), "train/epoch_time_s": torch.tensor(seconds),
                       "train/samples_per_s": totals[2]})
        self._send_to_loggers()
        if not self.automatic_optimization and self._whole_epoch_trained():
            self._step_schedulers("epoch", self.current_epoch + 1)

    def on_train_end(self) -> None:
        self._send_to_loggers()  # a last validation without a training epoch end after it (a stop mid-epoch)

    def on_fit_end(self) -> None:
        # a checkpoint of a run that had trained every epoch (its Ctrl-C came while it tested or logged): Lightning
        # trains nothing and skips on_train_start, and the resumed run had none of its epochs
        if getattr(self, "_resumed_history", None):
            if self.trainer.is_global_zero:
                print(f"Note: the checkpoint had trained all {self.trainer.current_epoch} epochs "
                      f"(trainer.max_epochs={self.trainer.max_epochs}): nothing left to train; its model is tested "
                      "and logged, with the saved run's epochs", flush=True)
            self._log_epochs_before_resume()

    # ----- epoch values: to the callbacks and the loggers --------------------------------------------------
    # Each `self.log` costs ~0.5 ms of Lightning's result bookkeeping, and every read of
    # `trainer.callback_metrics` recomputes all logged values; on a tabular epoch of ~10 ms that was a third of
    # the epoch. The values of an epoch are computed here once (reduced over ranks where they need it), put
    # where the callbacks read them (`trainer.callback_metrics`: checkpoint, early stopping, pruning, console)
    # and sent to every logger once per epoch, training and validation values together.
    def _publish(self, values: dict[str, Tensor]) -> None:
        callback_metrics = self.trainer.callback_metrics
        for key, value in values.items():
            callback_metrics[key] = value.detach() if isinstance(value, Tensor) else torch.tensor(float(value))
        if not self.trainer.sanity_checking:
            self._unsent.update({key: float(value) for key, value in values.items()})

    def _send_to_loggers(self) -> None:
        values, self._unsent = self._unsent, {}
        if not values or not self.trainer.loggers:
            return
        for logger in self.trainer.loggers:
            logger.log_metrics({**values, "epoch": self.current_epoch}, step=self.global_step)
            logger.save()

    # ----- evaluation --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self._unsent: dict[str, float] = {}

    # The evaluation loss is summed here over the epoch's rows (all ranks) rather than logged per batch:
    # the objective then knows val/loss when the epoch ends, so `val/loss_best` and the best value kept
    # in checkpoints exist also without a logger (a sweep with logger=none optimises val/loss_best),
    # and one `self.log` per batch (~0.5 ms each) is saved.
    def _start_evaluation(self, split: str) -> None:
        self._eval_loss_sum = torch.zeros((), device=self.device)
        self._eval_rows = torch.zeros((), device=self.device)
        self._eval_inputs: list[Tensor] = []
        self._eval_targets: list[Tensor] = []
        # Under DDP each rank evaluates rows split_position = local_position * world_size + rank of the split, the
        # last shards padded by wrapping around to the first rows (DistributedSampler's dealing, also
        # TensorBatcher's) so that every rank takes as many rows: those repeats are left out of the loss and
        # metrics, which are then the split's, row for row (predictions/test.csv has each row once)
        self._eval_split_rows: Optional[int] = None
        self._eval_seen = 0
        rows_of = getattr(self.trainer.datamodule, "evaluation_rows", None)
        if self.trainer.world_size > 1 and rows_of is not None:
            self._eval_split_rows = rows_of(split)

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def _evaluate(self, batch) -> None:
        x, y = batch
        output = self.model(x)
        scored, targets = output, y
        if self._eval_split_rows is not None:  # under DDP: the repeats padding this rank's shard are not scored
            rows = len(y)
            positions = torch.arange(self._eval_seen, self._eval_seen + rows) * self.trainer.world_size \
                + self.trainer.global_rank
            self._eval_seen += rows
            own = positions < self._eval_split_rows
            if not bool(own.all()):
                own = own.to(output.device)
                scored, targets = output[own], y[own]
        rows = len(targets)
        if rows:
            self._eval_loss_sum += self.evaluation_loss(scored, targets).detach() * rows
        self._eval_rows += rows
        inputs = self.metric_inputs(output).detach()  # float64 stays (regression values in the data's units)
        self._eval_inputs.append(inputs if inputs.dtype == torch.float64 else inputs.float())
        self._eval_targets.append(y.detach())

    def evaluation_loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The loss reported as val/loss and test/loss (training-only terms such as label smoothing left out,
        so that runs with different regularisation are compared on the same measure)."""
        return self.loss(output, target)

    def _epoch_evaluation_loss(self) -> Tensor:
        totals = self.trainer.strategy.reduce(torch.stack([self._eval_loss_sum, self._eval_rows]), reduce_op="sum")
        return totals[0] / totals[1].clamp_min(1)

    def _epoch_evaluation(self, prefix: str, resamples: int = 0) -> dict[str, Tensor]:
        """Loss and metrics of the split just evaluated, over the rows of every rank; with ``resamples``, also the
        95 % bootstrap interval of each metric (``<prefix>/<metric>_ci_low``, ``_ci_high``; see ``intervals``)."""
        values = {f"{prefix}/loss": self._epoch_evaluation_loss()}
        if self._eval_inputs:
            inputs, targets = torch.cat(self._eval_inputs), torch.cat(self._eval_targets)
            if self.trainer.world_size > 1:  # the shards are equally long (padded), as all_gather needs
                inputs, targets = (self._split_order(self.all_gather(tensor)) for tensor in (inputs, targets))
            metrics = self.compute_metrics(inputs, targets)
            # the metrics some splits leave undefined (NaN there); a NaN of any other metric (a diverged model's
            # rmse) stays what it is
            may_lack = sorted(name for name in self.undefined_reasons if name in metrics)
            if prefix == "test":  # left out, and said: a 0 would read as the worst score
                self.test_rows_note = self.note_on_test_rows(targets)
                self.undefined_test_metrics = [name for name in may_lack if math.isnan(float(metrics[name]))]
                for name in self.undefined_test_metrics:
                    del metrics[name]
            else:  # 0, as torchmetrics gives, so that a monitor or early stopping on it keeps working (no sync)
                for name in may_lack:
                    if f"{prefix}/{name}" == self.monitor:  # what the checkpoint is chosen by: said (one sync)
                        self.monitor_undefined = bool(torch.isnan(metrics[name]))
                    metrics[name] = torch.where(torch.isnan(metrics[name]), torch.zeros_like(metrics[name]),
                                                metrics[name])
            values.update({f"{prefix}/{name}": value for name, value in metrics.items()})
            if resamples:
                from .intervals import bootstrap, in_canonical_order, interval_metrics

                weighted = self.weighted_metrics(*in_canonical_order(inputs.cpu().numpy(), targets.cpu().numpy()))
                intervals = {name: bounds for name, bounds in bootstrap(weighted, len(targets), resamples).items()
                             if name in metrics}
                if prefix == "test":
                    self.interval_note = self._note_on_intervals(sorted(set(metrics) - set(intervals)))
                # in the metrics' precision (float64 for regression values in the data's units, as the metrics are)
                dtype = torch.float64 if inputs.dtype == torch.float64 else torch.float32
                values.update({key: torch.tensor(value, dtype=dtype)
                               for key, value in interval_metrics(intervals, prefix).items()})
        self._eval_inputs, self._eval_targets = [], []
        return values

    def _split_order(self, gathered: Tensor) -> Tensor:
        """The rows every rank evaluated (all_gather's ``(world_size, rows per rank, ...)``) in the split's order,
        without the repeats that padded the last shards (see :meth:`_start_evaluation`)."""
        rows = gathered.transpose(0, 1).reshape(-1, *gathered.shape[2:])  # row i of rank r: position i * W + r
        return rows if self._eval_split_rows is None else rows[: self._eval_split_rows]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch)

    def test_step(self, batch, batch_idx: int) -> None:
        if "mixed" in str(self.trainer.precision):
            # the weights are float32: tested in float32, as the logged model and predictions/test.csv answer (under
            # autocast the test metrics were of bfloat16 outputs, and differed from the predictions' in the 4th digit)
            with torch.autocast(device_type=self.device.type, enabled=False):
                self._evaluate(batch)
        else:
            self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:
        values = self._epoch_evaluation("val")
        if not self.trainer.sanity_checking:
            if self.monitor_undefined and not self._said_monitor_undefined and self.trainer.is_global_zero:
                self._said_monitor_undefined = True
                reason = self.undefined_reasons.get(self.monitor.partition("/")[2], "")
                logging.getLogger("pipeline").warning(
                    "%s is undefined on the validation rows%s and counts as 0 there: the checkpoint tested and early "
                    "stopping, chosen by it, are then arbitrary; select by task.monitor=val/loss task.mode=min, or "
                    "hold out more rows (data.val_fraction)", self.monitor, f" ({reason})" if reason else "")
            current = values.get(self.monitor)
            if current is not None and math.isfinite(float(current)):
                current = float(current)
                better = self.best_value is None or (current < self.best_value if self.mode == "min" else current > self.best_value)
                if better:
                    self.best_value = current
            if self.best_value is not None:
                # float64: the value itself (float32 rounded val/rmse 54.549463311835595 to 54.54946517944336)
                values[f"{self.monitor}_best"] = torch.tensor(self.best_value, dtype=torch.float64)
        self._publish(values)

    #: why a metric can be undefined on a split (its value NaN), for the note that says it is not logged
    undefined_reasons: ClassVar[dict[str, str]] = {}
    #: what the test metrics are over, where the test rows make it less than a reader assumes (see note_on_test_rows)
    test_rows_note: Optional[str] = None
    interval_note: Optional[str] = None  # test metrics left without an interval (intervals.MIN_DEFINED_SHARE)

    def note_on_test_rows(self, targets: Tensor) -> Optional[str]:
        """A note on the test rows' targets that the metrics depend on (classes absent from them), or None."""
        return None

    def on_test_epoch_end(self) -> None:
        # through Lightning's logging: trainer.test() returns what is logged here
        self.log_dict(self._epoch_evaluation("test", self.test_resamples))
        if self.undefined_test_metrics and self.trainer.is_global_zero:
            reasons = sorted({self.undefined_reasons.get(name, "") for name in self.undefined_test_metrics} - {""})
            print(f"Note: {', '.join('test/' + name for name in self.undefined_test_metrics)} not logged: undefined on "
                  f"these test rows{' (' + '; '.join(reasons) + ')' if reasons else ''}", flush=True)
        if self.test_rows_note and self.trainer.is_global_zero:
            print(f"Note: {self.test_rows_note}", flush=True)
        if self.interval_note and self.trainer.is_global_zero:
            print(f"Note: {self.interval_note}", flush=True)

    #: why a redraw of the test rows leaves a metric undefined, as the task's metrics are
    undefined_on_redraws = "a class with only a few test rows is absent from many of them"

    def _note_on_intervals(self, without: list[str]) -> Optional[str]:
        """The test metrics left without an interval (undefined on too many redraws), said: a missing interval is not
        a narrow one."""
        if not without:
            return None
        from .intervals import MIN_DEFINED_SHARE

        return (f"no 95 % interval for {', '.join('test/' + name for name in without)}: more than "
                f"{1 - MIN_DEFINED_SHARE:.0%} of the redraws of the test rows leave it undefined "
                f"({self.undefined_on_redraws}), and an interval over the others would describe other rows than these")

    # ----- checkpoints: a resumed run continues exactly where the saved one was ------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["best_value"] = self.best_value
        checkpoint["rng_states"] = rng_states()
        history = self._run_history()
        if history is not None:  # the epochs so far, for the run that resumes from this checkpoint
            checkpoint["run_history"] = [dict(entry) for entry in history.history]

    def _run_history(self):
        """The run's history logger (``tracking.loggers.RunHistory``, named "history"; not imported: the tracking
        floor is above this one)."""
        trainer = self._trainer  # None outside a Trainer (a checkpoint saved by hand)
        return next((logger for logger in (trainer.loggers if trainer is not None else ())
                     if getattr(logger, "name", None) == "history" and isinstance(getattr(logger, "history", None),
                                                                                 list)), None)

    def _log_epochs_before_resume(self) -> None:
        """A resumed run's metrics of the epochs its checkpoint had trained, logged again into this run (every logger:
        the MLflow run, metrics.jsonl, the learning curves): the resumed run held only the epochs after the resume,
        its curves one dot each, and its history was in the killed run alone. Tagged ``epochs_from_checkpoint``."""
        earlier, self._resumed_history = getattr(self, "_resumed_history", None), None
        if not earlier or not self.trainer.is_global_zero:
            return
        start = int(self.trainer.current_epoch)  # a checkpoint written during an epoch: that epoch is trained again
        copied = [entry for entry in earlier if int(entry.get("epoch", 0)) < start]
        for entry in copied:
            for logger in self.trainer.loggers:
                logger.log_metrics(dict(entry), step=int(entry.get("step", entry.get("epoch", 0))))
        epochs = sorted({int(entry.get("epoch", 0)) for entry in copied})
        for logger in self.trainer.loggers:
            run = getattr(logger, "run", None)
            if epochs and run is not None and getattr(run, "active", False):
                run.set_tags({"epochs_from_checkpoint": f"{epochs[0] + 1}-{epochs[-1] + 1}"})

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_history = checkpoint.get("run_history")
        self.best_value = checkpoint.get("best_value", self.best_value)
        _carry_step_count(checkpoint, self.automatic_optimization)
        if "rng_states" in checkpoint:  # dropout after a resume draws what it would have drawn
            restore_rng_states(checkpoint["rng_states"])

    # ----- optimisation ------------------------------------------------------------------------------
    # Lightning's automatic optimisation builds a closure per step and calls ~10 hooks, strategy and precision
    # methods around it: on a small model ~10 % of an epoch (BENCHMARKS.md section 7). Where none of what that
    # machinery is for is asked for, the task module steps the optimizer itself (Lightning's manual optimisation,
    # "the short loop"): the same zero_grad, backward and step in the same order, the same hooks
    # (on_before_backward, on_after_backward, on_before_optimizer_step), and the schedulers stepped where Lightning
    # steps them. Gradient accumulation, gradient clipping, L-BFGS (its closure) and mixed precision keep Lightning's
    # automatic loop.
    @staticmethod
    def use_short_loop(trainer_cfg, optimizer_factory) -> bool:
        """Whether a run with this Trainer config and optimizer takes the short loop (see above)."""
        target = getattr(optimizer_factory, "func", optimizer_factory)
        lbfgs = isinstance(target, type) and issubclass(target, torch.optim.LBFGS)
        accumulates = (trainer_cfg.get("accumulate_grad_batches") or 1) > 1
        not_32_bit = str(trainer_cfg.get("precision") or "32-true") not in ("32", "32-true")
        return not (lbfgs or accumulates or trainer_cfg.get("gradient_clip_val") or not_32_bit)

    def _whole_epoch_trained(self) -> bool:
        """Whether this epoch ran to its last batch (not stopped by max_steps), as Lightning asks before it steps
        the per-epoch schedulers; never on the epoch a mid-epoch resume restarted."""
        fit_loop = self.trainer.fit_loop
        progress = fit_loop.epoch_loop.batch_progress
        return not fit_loop.restarting and (progress.is_last_batch
                                            or progress.current.ready == self.trainer.num_training_batches)

    def _step_schedulers(self, interval: str, index: int) -> None:
        """What Lightning's automatic loop does with the schedulers of ``interval`` ("step": after each optimizer
        step, ``index`` the batch of the epoch counted from 1; "epoch": after a whole epoch, ``index`` the epoch
        counted from 1), for the short loop."""
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != interval or index % config.frequency:
                continue
            metric = None
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                metric = self.trainer.callback_metrics.get(self.monitor)
                if metric is None:
                    raise RuntimeError(f"ReduceLROnPlateau conditioned on metric {self.monitor} which is not "
                                       f"available. Available metrics are: {list(self.trainer.callback_metrics)}.")
            self.lr_scheduler_step(config.scheduler, metric)

    def parameter_groups(self) -> Any:
        """The model's parameters, or its parameter groups when it defines ``parameter_groups()`` (a list of
        ``{"params": [...], "lr_scale": s}``, e.g. a pretrained backbone trained at a fraction of the head's
        learning rate); ``lr_scale`` becomes the group's ``lr`` (base ``optimizer.lr`` x scale)."""
        if not hasattr(self.model, "parameter_groups"):
            return self.model.parameters()
        base_lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        groups = []
        for group in self.model.parameter_groups():
            group = dict(group)
            scale = group.pop("lr_scale", 1.0)
            if base_lr is not None and scale != 1.0:
                group["lr"] = base_lr * scale
            groups.append(group)
        return groups

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        from pipeline.schedulers import per_group_peaks, spans_the_run

        factory = self.scheduler_factory
        if spans_the_run(factory):
            # schedules over the whole run, stepped every optimizer step (one-cycle, warm-up + decay)
            total = int(self.trainer.estimated_stepping_batches)
            peaks = per_group_peaks(factory, optimizer)
            scheduler = factory(optimizer=optimizer, total_steps=total, **({"max_lr": peaks} if peaks else {}))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        scheduler = factory(optimizer=optimizer)
        config = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # stepped after the epochs that validate, on their metric (every trainer.check_val_every_n_epoch epochs:
            # its patience counts validations); stepped every epoch, it found no metric after the first
            config["frequency"] = int(getattr(self.trainer, "check_val_every_n_epoch", None) or 1)
            if self.automatic_optimization:
                config["monitor"] = self.monitor  # the short loop steps it on self.monitor itself
        return {"optimizer": optimizer, "lr_scheduler": config}


def _carry_step_count(checkpoint: dict, automatic: bool) -> None:
    """Lightning counts optimizer steps (``global_step``) apart for its automatic and manual loops; a checkpoint
    written by one loop and resumed by the other continues the count of the one that wrote it."""
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic_steps = loops.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
    manual_steps = loops.get("epoch_loop.manual_optimization.optim_step_progress")
    if not automatic_steps or not manual_steps:
        return
    source, target = (manual_steps, automatic_steps) if automatic else (automatic_steps, manual_steps)
    if target["total"]["completed"] == 0 and source["total"]["completed"] > 0:
        for scope in ("total", "current"):
            target[scope].update(source[scope])


def _remember_step_signatures(cls: type) -> None:
    import inspect

    for name in TaskModule._STEP_METHODS:
        function = cls.__dict__.get(name)
        if inspect.isfunction(function) and "__signature__" not in function.__dict__:
            function.__signature__ = inspect.signature(function)


_remember_step_signatures(TaskModule)


def rng_states() -> dict:
    """The global torch/CUDA/numpy/Python random states as tensors and plain values, so that a
    checkpoint holding them still loads with ``torch.load(weights_only=True)``."""
    import random

    import numpy as np

    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        # 625 ints as one tensor: a checkpoint of a small model is copied every epoch (AtomicCheckpointIO), and
        # 625 separate ints were most of the nodes walked
        "python": (version, torch.tensor(internal, dtype=torch.int64), gauss_next),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, internal, gauss_next = states["python"]
    internal = internal.tolist() if isinstance(internal, torch.Tensor) else internal  # a tuple before 2026-12
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
