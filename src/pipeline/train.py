"""``train(cfg)``: one training run, the function every launcher calls (``pipeline-train`` in
``pipeline.cli.train``, the DDP ranks, the sweep, ``pipeline-rerun``, ``pipeline-eval``).

config -> validated config -> data -> (model, task module, callbacks, loggers, trainer) -> tracker
-> fit -> test -> store. Everything a run is built from is built before its MLflow run exists, so a bad
value anywhere is one ``Error:`` line with nothing left behind.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, open_dict

from pipeline import interpolation_cache
from pipeline.config import (ConfigError, absolute_data_paths, collection, directions_of_the_monitor,
                             experiment_values_for_another_choice, max_time, refuse_damaged, unfused_for_clipping,
                             validate, without_validation)
from pipeline.claims import CLAIM_FILE, claim_text
from pipeline.errors import (DataError, RunInterrupted, remember_resume_point, remember_run_ended,
                             sigterm_as_interrupt)
from pipeline.ranks import is_rank_zero

interpolation_cache.install()

log = logging.getLogger("pipeline")

# Lightning's advice that does not apply here: metrics are logged per epoch by design.
warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# epoch metrics come from torchmetrics (synchronised across DDP ranks by compute()) or are per-rank timings
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
# torch 2.14 deprecates the collective Lightning's all_gather calls (gathering the test rows for the plots under DDP);
# a note to Lightning's authors, printed by every rank at every test
warnings.filterwarnings("ignore", message=".*torch.distributed.nn.functional.all_gather is deprecated.*")


def train(cfg: DictConfig, callbacks: Iterable[Any] = (), parent_run: Optional[str] = None,
          datamodule: Any = None) -> dict[str, float]:
    """Train, test the best checkpoint, record everything.

    ``callbacks`` are added to the ones the config names (a sweep hands in its pruning callback);
    ``parent_run`` is the MLflow run this one is recorded under (a sweep's); ``datamodule`` a data module
    already built and set up from this very ``cfg.data``, or a :class:`PreparedData` that keeps one (a sweep's
    worker reuses it for every trial). Returns the metrics at the end of fit (``val/*``, ``<monitor>_best``,
    ``train/*``) and, unless ``test=false``, the test metrics."""
    absolute_data_paths(cfg)
    directions_of_the_monitor(cfg)
    unfused = unfused_for_clipping(cfg)
    if is_rank_zero():  # before the checks: an SGD-only key of the experiment is refused under Adam
        for line in experiment_values_for_another_choice(cfg):
            log.warning(line)
    validate(cfg)
    if is_rank_zero():
        from pipeline.data.images import ignored_augmentation
        from pipeline.tracking import _overrides

        for note in (unfused, ignored_augmentation(cfg.get("data"), _overrides())):
            if note:
                log.warning(note)
    from pipeline import distributed

    distributed.check_trainer(cfg)
    quiet_lightning()

    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from pipeline import tracking

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    skip_gpu_probe_without_a_driver()
    remember_lightning_entry_points()
    remember_run_ended(None)
    with sigterm_as_interrupt():
        output_dir = claim_output_dir(cfg)
        if isinstance(datamodule, PreparedData):
            datamodule = datamodule(cfg)
        elif datamodule is None:
            datamodule = instantiate(cfg.data)
            datamodule.setup("fit")
        # a DDP run started as one process starts its other ranks here, once rank 0 has the data ready
        with distributed.other_ranks_started(cfg):
            run_parts = build(cfg, datamodule, callbacks, output_dir)
            trainer, task_module, checkpoint = run_parts.trainer, run_parts.task_module, run_parts.checkpoint
            check_batch_limits(trainer, datamodule, tested=bool(cfg.get("test", True)))
            with tracking.start_run(cfg, run_parts.loggers, output_dir, parent_run,
                                    {**(run_parts.resume_tags or {}), **task_tags(task_module)}) as run:
                run_parts.run_id_writer.run = run
                tracking.log_run_start(run, cfg, datamodule, trainer)
                if parent_run is None and checkpoint is not None:  # a sweep's trials are queued again instead
                    remember_resume_point(lambda: newest_checkpoint(checkpoint))
                with interrupt_names_checkpoint(trainer, checkpoint, run):
                    trainer.fit(task_module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
                    metrics = scalar_metrics(trainer.callback_metrics)
                    stopped = early_stop(trainer)
                    if stopped is not None:  # said: the console's last epoch line alone did not tell why it was last
                        run.set_tags(stopped[2])
                        if is_rank_zero() and parent_run is None:
                            print(stopped[1], flush=True)
                    best_key = f"{task_module.monitor}_best"
                    if best_key not in metrics and task_module.best_value is not None:
                        # resumed from a checkpoint of the last epoch: no epoch ran, and the best validation value
                        # is the checkpoint's (pipeline-compare ranks by it; a run without it came last)
                        metrics[best_key] = float(task_module.best_value)
                    if cfg.get("test", True):
                        best = checkpoint.best_model_path if checkpoint is not None else None
                        tested_from = best or ("last" if checkpoint is not None and checkpoint.last_model_path else None)
                        results = trainer.test(task_module, datamodule=datamodule, ckpt_path=tested_from,
                                               weights_only=True, verbose=False)
                        metrics.update(scalar_metrics(results[0] if results else {}))
                tracking.log_run_end(run, cfg, task_module, datamodule, trainer, checkpoint, metrics, output_dir,
                                     run_parts.history.history, tested=bool(cfg.get("test", True)))
            remember_resume_point(None)  # the run is recorded as ended: nothing to resume
            remember_run_ended(output_dir)
    return metrics


def task_tags(task_module) -> dict[str, str]:
    """The task's own tags of the run (a binary classifier's ``positive_class``)."""
    tags = getattr(task_module, "run_tags", None)
    return tags() if tags is not None else {}


def early_stop(trainer) -> Optional[tuple[int, str, dict[str, str]]]:
    """(the last epoch trained, counted from 1, a line saying why, the run's tags saying so) where early stopping or
    the time limit (``trainer.max_time``) ended the fit before ``trainer.max_epochs``, else None."""
    from pytorch_lightning.callbacks import EarlyStopping, Timer

    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            epoch = callback.stopped_epoch + 1
            reason = (callback.stopping_reason_message or f"{callback.monitor} stopped improving")
            reason = reason.replace(" Signaling Trainer to stop.", "")
            return (epoch, f"Stopped early after epoch {epoch} of {trainer.max_epochs}: {reason}",
                    {"stopped_early_at_epoch": str(epoch)})
    for callback in trainer.callbacks:
        duration = getattr(callback, "_duration", None)
        if (isinstance(callback, Timer) and duration is not None and trainer.current_epoch < (trainer.max_epochs or 0)
                and callback.time_elapsed() >= duration):
            epoch = max(int(trainer.current_epoch), 1)
            limit = f"{duration:g} s"
            return (epoch, f"Stopped by the time limit after epoch {epoch} of {trainer.max_epochs}: trainer.max_time "
                           f"({limit}) ran out; how many epochs fit in it depends on the machine, so a rerun may train "
                           "other epochs and end with other metrics",
                    {"stopped_early_at_epoch": str(epoch), "stopped_by": "trainer.max_time", "max_time": limit})
    return None


def _warn_if_other_test_rows(datamodule, source_digest: str, kind: str) -> dict[str, str]:
    """A warning when the test rows are not the source run's; the tag that records it with the evaluation."""
    from pipeline.tracking.artifacts import digests_now

    now = digests_now(datamodule, kind).get("testing")  # a digest of the kind the source run logged
    if now is not None and now != source_digest:
        covers = getattr(datamodule, "digest_covers", "")
        print(f"Warning: the test rows differ from the source run's (digest {source_digest} -> {now}): the files it "
              f"read have changed since{f' ({covers})' if covers else ''}, or this version draws the split otherwise; "
              "some may be rows the model was "
              "trained on, and the metrics are not the run's to compare", file=sys.stderr, flush=True)
        return {"data_differs_from_source": f"testing rows: digest {source_digest} -> {now}"}
    return {}


def evaluate(cfg: DictConfig, weights: Path, source_run: Optional[str] = None,
             source_data: Optional[Path] = None, source_test_digest: Optional[str] = None,
             source_digest_kind: str = "rows", checkpoint_name: Optional[str] = None,
             announce: Optional[str] = None) -> dict[str, float]:
    """Test the model saved in ``weights`` (a checkpoint written by a run of ``cfg``) on the test split of the
    data ``cfg`` describes, recorded as an evaluation run (tags ``run_kind=evaluation``, ``evaluation_of``).

    ``source_data`` is the source run's ``data/`` folder (its fitted preprocessing and model spec). Every data set
    takes them as they are (``use_fitted``), so ``data.test_path=new.csv`` tests the new rows as the model's
    inputs were made, whatever rows the config now leaves for training. Where it cannot (the overrides read the
    data otherwise: another normalisation, image size, tokenizer) the preprocessing is fitted again; when that
    does not come out as the source run's, the evaluation is refused before any run rather than tested on
    inputs the model was not trained on. ``source_test_digest``: the digest of the source run's test rows, where
    the overrides keep them; other rows now (the files changed, or the split is drawn otherwise) are warned of.
    ``source_digest_kind``: what that digest covers (``tracking.artifacts.digest_kind``). ``announce``
    (``Evaluating <what>``) is printed with the output folder once the data is read and nothing refused the
    evaluation: a refused one leaves no folder behind, and names none."""
    absolute_data_paths(cfg)
    from pipeline.data.base import fitted_differences, saved_fitted_state
    from pipeline.hub import TOKENIZER_CHECKED
    from pipeline.models import weights_from_checkpoint

    saved = saved_fitted_state(source_data)
    # with the source run's fitted state, a pretrained tokenizer is not loaded: it need not be at hand; nor need
    # a pretrained model's weights (model.weights), which the checkpoint's replace
    checked = TOKENIZER_CHECKED.set(saved is None)
    try:
        with weights_from_checkpoint():
            validate(cfg)
    finally:
        TOKENIZER_CHECKED.reset(checked)
    from pipeline import distributed

    distributed.check_trainer(cfg)
    quiet_lightning()
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from pipeline import tracking

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    with sigterm_as_interrupt():
        output_dir = claim_output_dir(cfg)
        datamodule = instantiate(cfg.data)
        if saved is not None and datamodule.use_fitted(*saved):
            datamodule.test_file_alone()  # with a test file of its own: the training data is not read
        datamodule.setup("test")
        differ = fitted_differences(datamodule, *saved) if saved is not None else []
        if differ:
            raise DataError(
                f"with these settings the model would be tested on inputs it was not trained on: the data's "
                f"preprocessing would not be the source run's (it differs in {', '.join(differ[:4])}"
                f"{' ...' if len(differ) > 4 else ''}). Keep the data keys as the run had them (other test rows: "
                "data.test_path), or answer for new rows with pipeline-predict")
        differs = _warn_if_other_test_rows(datamodule, source_test_digest, source_digest_kind) \
            if source_test_digest else {}
        with weights_from_checkpoint():
            run_parts = build(cfg, datamodule, (), output_dir)
        refuse_damaged(Path(weights))
        written_by = check_resume_checkpoint(str(weights), run_parts.task_module).get("resumed_from_run")
        check_batch_limits(run_parts.trainer, datamodule, splits=())
        from pipeline.tasks.regression import check_log_test_targets

        check_log_test_targets(run_parts.task_module, datamodule)  # as training refuses them: before the run
        # where the checkpoint is kept (runs:/<id>/checkpoints/... for one from the store, not the temporary copy)
        tags = {"run_kind": "evaluation", "evaluated_checkpoint": checkpoint_name or str(Path(weights).resolve())}
        if source_run or written_by:  # a checkpoint file names the run that wrote it
            tags["evaluation_of"] = source_run or written_by
        tags.update(differs)
        if announce:
            print(f"{announce} into {output_dir}", flush=True)
        with tracking.start_run(cfg, run_parts.loggers, output_dir,
                                extra_tags={**(tags or {}), **task_tags(run_parts.task_module)}) as run:
            tracking.log_run_start(run, cfg, datamodule, run_parts.trainer)
            with interrupted_evaluation(run_parts.trainer):
                results = run_parts.trainer.test(run_parts.task_module, datamodule=datamodule, ckpt_path=str(weights),
                                                 weights_only=True, verbose=False)
            metrics = scalar_metrics(results[0] if results else {})
            tracking.log_run_end(run, cfg, run_parts.task_module, datamodule, run_parts.trainer, None, metrics,
                                 output_dir, run_parts.history.history, tested=True, log_model=False)
    return metrics


def skip_gpu_probe_without_a_driver() -> None:
    """Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that forked data loader workers of a GPU
    machine stay usable); torch then asks NVML whether a GPU exists on every ``torch.cuda.is_available()``,
    which fused Adam calls each step: ~80 us to try to load libnvidia-ml, ~1 ms of a 10 ms tabular epoch. On a
    machine without NVIDIA's driver there is no GPU to protect and the answer is always no: the plain check
    (~5 us, CUDA cannot be initialised without a driver) is used instead."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def remember_lightning_entry_points() -> None:
    """Every Trainer asks ``importlib.metadata`` for callbacks that installed packages register (two entry-point
    groups), which reads the metadata of every installed distribution: ~20-40 ms per Trainer, i.e. per trial of
    a sweep. What is installed does not change while a process runs: each group is looked up once per process
    (the callbacks themselves are still made anew for each Trainer)."""
    import functools
    import importlib.metadata

    try:
        from lightning_fabric.utilities import registry
    except ImportError:
        return
    if getattr(registry.entry_points, "_pipeline_cached", False):
        return

    @functools.lru_cache(maxsize=None)
    def group_entry_points(group: str) -> tuple:
        return tuple(importlib.metadata.entry_points(group=group))

    def entry_points(group: Optional[str] = None, **selection):
        if group is None or selection:
            return importlib.metadata.entry_points(**({"group": group} if group else {}), **selection)
        return group_entry_points(group)

    entry_points._pipeline_cached = True
    registry.entry_points = entry_points


class PreparedData:
    """The data module of the last data config asked for, built and set up once: the trials of a sweep that
    does not search a data key all train on the same data, and loading, splitting and preprocessing it
    (with its imports) is paid once per worker. Keyed by the resolved ``cfg.data`` (the seed included)."""

    def __init__(self):
        self.key: Optional[str] = None
        self.datamodule: Any = None

    def __call__(self, cfg: DictConfig):
        import json

        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        key = json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True, default=str)
        if key != self.key:
            self.key, self.datamodule = None, None
            datamodule = instantiate(cfg.data)
            datamodule.setup("fit")
            self.key, self.datamodule = key, datamodule
        return self.datamodule


@dataclass
class RunParts:
    task_module: Any
    trainer: Any
    checkpoint: Any  # the ModelCheckpoint callback, if the config has one
    loggers: list
    history: Any  # tracking.RunHistory: every epoch's metrics, also in metrics.jsonl
    run_id_writer: Any
    resume_tags: dict


def build(cfg: DictConfig, datamodule, extra_callbacks: Iterable[Any], output_dir: Path) -> RunParts:
    """Every object of the run, from the config and the data's description. A value that cannot build
    (an unknown activation, Adam's betas out of range, a scheduler step of 0, a checkpoint of another model)
    fails here, before the MLflow run is created."""
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ProgressBar

    from pipeline import distributed
    from pipeline.callbacks import (AtomicCheckpointIO, NoProfiler, RunIdInCheckpoint, SameBuffersOnEveryRank,
                                     build_callbacks, find_checkpoint, given_settings, training_settings)
    from pipeline.models import build_model
    from pipeline.tasks import build_task_module
    from pipeline.tracking import RunHistory

    spec = datamodule.spec
    with building("model"):
        model = build_model(cfg.model, spec)
    with building("optimizer"):
        optimizer = instantiate(cfg.optimizer)
    with building("scheduler"):
        scheduler = instantiate(cfg.scheduler) if cfg.scheduler.get("_target_") else None
    task_module = build_task_module(cfg.task, model, optimizer, scheduler, spec)
    task_module.automatic_optimization = not task_module.use_short_loop(cfg.trainer, optimizer)
    check_monitor(cfg, task_module, spec)
    probe_outputs(cfg, task_module, datamodule, spec)
    probe_optimization(task_module)
    with building("callbacks"):
        callbacks = build_callbacks(cfg, extra_callbacks)
    run_id_writer = RunIdInCheckpoint(seed=cfg.get("seed"), settings=training_settings(cfg), given=given_settings(cfg))
    callbacks += [run_id_writer, SameBuffersOnEveryRank()]
    if cfg.trainer.get("enable_progress_bar") is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    history = RunHistory(output_dir / "metrics.jsonl" if is_rank_zero() else None)
    with building("logger"):
        loggers = [history, *(instantiate(node) for node in collection(cfg, "logger").values())]
    checkpoint = find_checkpoint(callbacks)
    with building("trainer"):
        trainer_cfg = {k: v for k, v in cfg.trainer.items() if k != "enable_progress_bar"}
        # a timedelta: Lightning reads a dict of timedelta keys only as a plain dict (not a DictConfig), and no number
        time_limit = {"max_time": max_time(trainer_cfg.pop("max_time", None))}
        if without_validation(cfg):  # data.val_fraction=0: no validation loop; the last epoch is the one tested
            trainer_cfg.update(limit_val_batches=0, num_sanity_val_steps=0)
            if checkpoint is not None:
                checkpoint.monitor = None  # keeps the latest epoch (and last.ckpt)
                if checkpoint.filename and checkpoint.filename.startswith("best-"):  # no best without validation
                    checkpoint.filename = checkpoint.filename[len("best-"):]
        if checkpoint is None:
            # without a checkpoint callback in the config (a sweep's trial, callbacks=none) Lightning would add
            # its own and write a checkpoint every epoch into <output dir>/<logger name>/<version>/checkpoints
            trainer_cfg.setdefault("enable_checkpointing", False)
        if trainer_cfg.get("profiler") is None:  # none asked for: Lightning's no-op profiler without its cost
            trainer_cfg.pop("profiler", None)
            extra_arguments = {"profiler": NoProfiler()}
        else:
            extra_arguments = {}
        trainer = instantiate(
            DictConfig(trainer_cfg),
            callbacks=callbacks,
            logger=loggers,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=str(output_dir),
            enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
            enable_model_summary=False,
            **time_limit,
            **extra_arguments,
        )
        distributed.no_collective_on_sigterm(trainer)
    resume_tags = check_resume_checkpoint(cfg.get("ckpt_path"), task_module, trainer.max_epochs, seed=cfg.get("seed"),
                                          datamodule=datamodule, cfg=cfg)
    return RunParts(task_module, trainer, checkpoint, loggers, history, run_id_writer, resume_tags)


# (split, the data key of its batch size) of each trainer.limit_<split>_batches
BATCH_LIMITS = {"train": ("training", "data.batch_size"), "val": ("validation", "data.eval_batch_size"),
                "test": ("test", "data.eval_batch_size")}


def check_batch_limits(trainer, datamodule, tested: bool = True, splits: Iterable[str] = ("train", "val")) -> None:
    """A fraction ``trainer.limit_<split>_batches`` that keeps no batch of its split (0.01 of 7 batches) is refused
    here, before the run exists: Lightning refused it only once fit (or test) began, a FAILED run and a traceback.
    The batches are counted as Lightning will count them, per process under DDP."""
    splits = [*splits, *(["test"] if tested else [])]
    attached = datamodule.trainer
    datamodule.trainer = trainer  # the loaders then shard as the run's ranks will
    try:
        for split in splits:
            limit = getattr(trainer, f"limit_{split}_batches")
            if not isinstance(limit, float) or limit <= 0 or limit >= 1:
                continue
            batches = len(getattr(datamodule, f"{split}_dataloader")())
            if batches == 0 or int(batches * limit) > 0:
                continue
            name, size_key = BATCH_LIMITS[split]
            size = datamodule.batch_size if split == "train" else datamodule.eval_batch_size
            per = " per process" if trainer.world_size > 1 else ""
            raise ConfigError(
                f"trainer.limit_{split}_batches={limit:g} keeps no batch: the {name} split makes {batches} "
                f"batch{'es' if batches > 1 else ''}{per} ({size_key}={size}), and {limit:g} x {batches} < 1; "
                f"use at least trainer.limit_{split}_batches={smallest_fraction(batches)}, or a number of batches "
                f"(an integer, e.g. trainer.limit_{split}_batches=1)")
    finally:
        datamodule.trainer = attached


def smallest_fraction(batches: int) -> str:
    """1/``batches`` rounded up to three significant digits (1/7: 0.143), which Lightning counts as one batch."""
    import math

    if batches <= 1:
        return "1.0"
    decimals = 2 - math.floor(math.log10(1 / batches))
    scale = 10 ** decimals
    numerator = -(-scale // batches)  # rounded up
    while int(batches * (numerator / scale)) < 1:
        numerator += 1
    return f"{numerator / scale:.{decimals}f}".rstrip("0")


@contextlib.contextmanager
def building(group: str):
    """An error raised while building ``group`` becomes a one-line ConfigError naming the group."""
    from hydra.errors import InstantiationException

    try:
        yield
    except ConfigError:
        raise
    except Exception as error:  # whatever the constructor or the probe raised, it was this config's value
        from pipeline.errors import DataError

        cause = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
        if isinstance(cause, (ConfigError, DataError)):
            raise cause from None
        message = " ".join(str(cause).split())
        if isinstance(cause, ModuleNotFoundError):
            message += f" (install it: pip install {cause.name})" if cause.name else ""
        hint = ("; this optimizer has no momentum for scheduler=onecycle to cycle: set scheduler.cycle_momentum=false"
                if "cycle_momentum" in message else "")
        raise ConfigError(f"{group}: cannot build it: {message[:400]}{hint}") from None


def check_monitor(cfg: DictConfig, task_module, spec) -> None:
    """``task.monitor`` must be a metric this run logs, or checkpoints, early stopping and sweeps watch nothing."""
    names = ("loss", *task_module.metric_names(spec))
    allowed = [f"val/{name}" for name in names]
    if cfg.task.monitor not in allowed:
        raise ConfigError(f"task.monitor={cfg.task.monitor!r} is not a metric of this run; a {task_module.kind} "
                          f"run logs {', '.join(allowed)}")
    from pipeline.config import metric_direction

    better, mode = metric_direction(cfg.task.monitor), cfg.task.mode
    if better is not None and better != mode:  # the task's config says min (val/loss): its worst epoch was kept
        raise ConfigError(f"task.monitor={cfg.task.monitor} is better {'higher' if better == 'max' else 'lower'}, "
                          f"but task.mode={mode} would keep (and test) the checkpoint of its "
                          f"{'lowest' if better == 'max' else 'highest'}, i.e. worst, epoch and stop early on it; "
                          f"add task.mode={better}")


def probe_outputs(cfg: DictConfig, task_module, datamodule, spec) -> None:
    """A model's forward on two training rows (data held in memory) must give ``(rows, num_outputs)`` (or ``(rows,)``
    for one output): a model of one's own that gave another shape failed in the loss, after the run was created
    (exit 1, "Target size ([46]) must be the same as input size ([46, 3])"). A forward that fails here is left to
    fail where it runs."""
    import torch

    split = getattr(datamodule, "train_split", None)
    x = getattr(split, "x", None)
    if not isinstance(x, torch.Tensor) or len(x) == 0:
        return
    model = task_module.model
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = task_module(x[:2])
    except Exception:
        return
    finally:
        model.train(was_training)
    rows, wanted = len(x[:2]), spec.num_outputs
    shape = tuple(getattr(out, "shape", ()))
    if shape not in ((rows, wanted), *([(rows,)] if wanted == 1 else [])):
        what = {"regression": "a value per row", "classification": "a logit per class"}.get(spec.task_kind, "")
        if spec.task_kind == "classification" and wanted == 1:
            what = "one logit per row for two classes"
        # a tuple (outputs and features) has no shape: "outputs of shape []" named none of what it gave
        gave = (f"outputs of shape {list(shape)}" if isinstance(out, torch.Tensor) else
                f"a {type(out).__name__}, not a tensor,")
        raise ConfigError(f"model._target_={cfg.model.get('_target_')}: its forward gives {gave} for {rows} rows; "
                          f"this task needs [{rows}, {wanted}] ({what}: the model is built with num_outputs, which its "
                          "last layer must give)")


def probe_optimization(task_module) -> None:
    """Build the optimizer and scheduler once on the model's parameters and take one (gradient-free) step,
    so that values only they check (Adam's betas, a StepLR step of 0) are refused before the run starts."""
    import torch

    factory, scheduler_factory = task_module.optimizer_factory, task_module.scheduler_factory
    with building("optimizer"):
        optimizer = factory(params=task_module.parameter_groups())
    if scheduler_factory is None:
        return
    with building("scheduler"):
        from pipeline.schedulers import spans_the_run

        wired = {"total_steps": 10} if spans_the_run(scheduler_factory) else {}
        scheduler = scheduler_factory(optimizer=optimizer, **wired)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if needs_closure(optimizer):  # L-BFGS evaluates the loss itself: a loss of 0 with no gradient, no move
                optimizer.step(lambda: torch.zeros(()))
            else:
                optimizer.step()
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(1.0)
            else:
                scheduler.step()


def needs_closure(optimizer) -> bool:
    """Whether ``optimizer.step`` must be given a closure (L-BFGS: it re-evaluates the loss itself)."""
    import inspect

    try:
        closure = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return closure is not None and closure.default is inspect.Parameter.empty


def check_resume_checkpoint(ckpt_path: Optional[str], task_module, max_epochs: Optional[int] = None,
                            seed: Optional[int] = None, datamodule=None, cfg: Optional[DictConfig] = None
                            ) -> dict[str, str]:
    """A checkpoint to resume from must be a Lightning checkpoint of this very model (same parameter names
    and shapes), of an optimizer with this config's settings (the saved state would replace them silently), of
    no more epochs than ``max_epochs`` and, where given, of a run with this ``seed``, the training and validation
    rows of ``datamodule`` and the training settings of ``cfg`` (``callbacks.training_settings``); returns the
    tags that link the new run to the one that wrote it."""
    if not ckpt_path:
        return {}
    import torch

    path = Path(str(ckpt_path))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
        raise ConfigError(f"ckpt_path={ckpt_path}: not a Lightning checkpoint (no state_dict / version); resume from "
                          "a file a run wrote, e.g. <output dir>/checkpoints/last.ckpt")
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items() if hasattr(v, "shape")}
    expected = {k: tuple(v.shape) for k, v in task_module.state_dict().items()}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    reshaped = sorted(k for k in set(saved) & set(expected) if saved[k] != expected[k])
    if missing or unexpected or reshaped:
        details = []
        if missing:
            details.append(f"it lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            details.append(f"it has {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''} that this model lacks")
        if reshaped:
            key = reshaped[0]
            details.append(f"{key} is {list(saved[key])} there but {list(expected[key])} here")
        raise ConfigError(f"ckpt_path={ckpt_path} was written by another model or data set ({'; '.join(details)}); "
                          "resume with the same model, data and task options as the run that wrote it")
    _check_output_settings(ckpt_path, checkpoint, task_module)
    _check_resumed_optimizer(ckpt_path, checkpoint, task_module)
    if cfg is not None:
        _check_resumed_settings(ckpt_path, checkpoint, cfg)
    _check_resumed_rows(ckpt_path, checkpoint, seed, datamodule)
    epoch = checkpoint.get("epoch")  # from 0: the epoch the checkpoint was written in (at its end, or during it)
    if max_epochs is not None and max_epochs != -1 and isinstance(epoch, int) and epoch + 1 > max_epochs:
        raise ConfigError(f"ckpt_path={ckpt_path} was written in epoch {epoch + 1}, past trainer.max_epochs="
                          f"{max_epochs}; resume with trainer.max_epochs>={epoch + 1} (the epochs after it are trained up to "
                          "that number; the run's own trainer.max_epochs goes on as planned)")
    tags = {"resumed_from_checkpoint": str(path.resolve())}
    if checkpoint.get("mlflow_run_id"):
        tags["resumed_from_run"] = str(checkpoint["mlflow_run_id"])
    if cfg is not None:
        tags.update(_changed_on_resume(ckpt_path, checkpoint, cfg))
    return tags


def _changed_on_resume(ckpt_path: str, checkpoint: dict, cfg: DictConfig) -> dict[str, str]:
    """Settings a resume may change (``callbacks.GIVEN_ON_RESUME``, early stopping's patience) that differ from those
    of the run that wrote the checkpoint: its epochs so far trained with the saved values, and the run's params name
    only the new ones. Said, and tagged ``changed_on_resume`` (``key saved -> new after the checkpoint of epoch N``)."""
    from pipeline.callbacks import given_settings

    saved = checkpoint.get("given_settings")
    if not isinstance(saved, dict):
        return {}
    now = given_settings(cfg)
    differ = [key for key in sorted(set(saved) | set(now)) if _as_plain(saved.get(key)) != _as_plain(now.get(key))]
    if not differ:
        return {}
    epoch = checkpoint.get("epoch")
    since = f" after the checkpoint of epoch {epoch + 1}" if isinstance(epoch, int) else ""
    changes = "; ".join(f"{key} {saved.get(key)!r} -> {now.get(key)!r}" for key in differ)
    log.warning("ckpt_path=%s was written by a run with other settings than this one's: %s. The epochs before the "
                "resume trained with the saved values, this run goes on with the new ones%s; its params name only "
                "the new ones (tag changed_on_resume)", ckpt_path, changes, since)
    return {"changed_on_resume": changes + since}


def _check_output_settings(ckpt_path: str, checkpoint: dict, task_module) -> None:
    """A checkpoint's model learned to output what its task's ``output_settings`` say (the target or log1p of it):
    read otherwise (a resume or an evaluation with another ``task.target_transform``), its outputs were tested in
    the wrong units and the run logged the new setting for a model that never learned it. Refused, naming the key."""
    saved = checkpoint.get("output_settings")
    if not isinstance(saved, dict) or not hasattr(task_module, "output_settings"):
        return  # a checkpoint written before they were kept
    now = task_module.output_settings()
    differ = [key for key in sorted(set(saved) & set(now)) if saved[key] != now[key]]
    if differ:
        key = differ[0]
        raise ConfigError(f"ckpt_path={ckpt_path} holds a model that learned with {key}={saved[key]}, and this run has "
                          f"{key}={now[key]}: its outputs would be read as what they are not; use {key}={saved[key]} "
                          f"with it (a new run, without ckpt_path, learns with {key}={now[key]})")


def _differing_splits(saved: dict, now: dict) -> list[str]:
    """The fitted splits (training, validation) whose digest both sides have and that differ."""
    return [name for name in ("training", "validation") if name in saved and name in now and saved[name] != now[name]]


def _check_resumed_rows(ckpt_path: str, checkpoint: dict, seed: Optional[int], datamodule) -> None:
    """A checkpoint of a run with another seed (another split, batch order and initialisation: a multirun's
    ``seed=1,2,3`` resumed with one job's checkpoint) or other training/validation rows is refused: the resumed
    run would be neither that run nor this one, and its test rows may be the checkpoint's training rows."""
    from pipeline.callbacks import fitted_rows_digests

    saved_seed = checkpoint.get("seed")
    if seed is not None and saved_seed is not None and int(saved_seed) != int(seed):
        raise ConfigError(f"ckpt_path={ckpt_path} was written by a run with seed={saved_seed}, and this run has "
                          f"seed={seed} (other splits, batch order and initial weights); resume with seed={saved_seed}, "
                          "or in a multirun resume the interrupted job alone (its overrides plus ckpt_path)")
    from pipeline.tracking.run import PREPROCESSED

    saved_digests = checkpoint.get("data_digests") or {}
    # compared with digests of the same kind: a checkpoint written before the rows were digested holds the
    # preprocessed inputs' digests
    now = fitted_rows_digests(datamodule, checkpoint.get("data_digests_kind", PREPROCESSED)) if saved_digests else {}
    differ = _differing_splits(saved_digests, now)
    if differ:
        raise ConfigError(f"ckpt_path={ckpt_path} was written on other {' and '.join(differ)} rows than this run's "
                          f"(digests {', '.join(f'{saved_digests[n]} -> {now[n]}' for n in differ)}): the data or its "
                          "split settings differ; resume with the data and data.* settings of the run that wrote it")
    saved_inputs = checkpoint.get("input_digests") or {}
    now = fitted_rows_digests(datamodule, PREPROCESSED) if saved_inputs else {}
    differ = _differing_splits(saved_inputs, now)
    if differ:
        raise ConfigError(f"ckpt_path={ckpt_path} was written on the same rows prepared otherwise (digests of the "
                          f"{' and '.join(differ)} inputs {', '.join(f'{saved_inputs[n]} -> {now[n]}' for n in differ)})"
                          ": a data.* setting of the preprocessing differs (numeric_transform, categorical_encoding, "
                          "the tokenizer, image_size, normalization ...), and the saved weights learned the other "
                          "inputs; resume with the data.* settings of the run that wrote it")


# how an optimizer runs, not what it computes (they may differ between machines): not compared on resume
_OPTIMIZER_FLAGS = frozenset({"params", "initial_lr", "foreach", "fused", "capturable", "differentiable"})
_PLAIN_SETTINGS = (int, float, bool, str, tuple, list, type(None))  # compared; a tensor lr or a callable is not


def _check_resumed_optimizer(ckpt_path: str, checkpoint: dict, task_module) -> None:
    """Lightning loads the saved optimizer state over the new optimizer: its settings (learning rate, weight decay,
    momentum ...) replace this config's without a word, and another optimizer's state fails at its first step.
    Both are refused here, naming the first setting that differs."""
    saved_states = checkpoint.get("optimizer_states") or []
    factory = getattr(task_module, "optimizer_factory", None)
    if len(saved_states) != 1 or factory is None:
        return
    fresh = factory(params=task_module.parameter_groups()).state_dict()["param_groups"]
    saved = saved_states[0].get("param_groups", [])
    hint = ("a resumed run continues the optimizer it saved: resume with the run's own optimizer settings, or "
            "start a new run (without ckpt_path) for new ones")
    if len(saved) != len(fresh):
        raise ConfigError(f"ckpt_path={ckpt_path}: its optimizer has {len(saved)} parameter group(s), this config's "
                          f"{len(fresh)}; {hint}")
    for was, now in zip(saved, fresh):
        keys = set(now) - _OPTIMIZER_FLAGS  # this optimizer's own settings; a schedule may add its own to the group
        if not keys <= set(was):
            raise ConfigError(f"ckpt_path={ckpt_path} was written by another optimizer (it has no "
                              f"{', '.join(sorted(keys - set(was)))}); {hint}")
        # a cyclic schedule (OneCycleLR, CyclicLR) sets lr, and may cycle the momentum, itself
        moved = {"lr", "momentum", "betas"} if "max_lr" in was else set()
        if "initial_lr" not in was and checkpoint.get("lr_schedulers"):
            moved.add("lr")  # ReduceLROnPlateau lowers lr and keeps no record of where it began
        for key in sorted(keys - moved):
            old = was.get("initial_lr", was[key]) if key == "lr" else was[key]  # a schedule moves lr, not initial_lr
            new = now[key]
            comparable = isinstance(old, _PLAIN_SETTINGS) and isinstance(new, _PLAIN_SETTINGS)
            if comparable and _as_plain(old) != _as_plain(new):
                raise ConfigError(f"ckpt_path={ckpt_path}: its optimizer has {key}={_as_plain(old)}, this config gives "
                                  f"{key}={_as_plain(new)}; {hint}")


def _check_resumed_settings(ckpt_path: str, checkpoint: dict, cfg: DictConfig) -> None:
    """Lightning loads the saved scheduler state over the new scheduler (its step size, decay, cycle length and
    even its kind), and the saved optimizer state over settings a schedule moves (a OneCycleLR's or a plateau's
    learning rate): a resume that changes them would log the new values while training on with the saved ones.
    Any such difference from the run that wrote the checkpoint is refused, naming the keys
    (``callbacks.training_settings``). A checkpoint written before the settings were kept is checked by its
    optimizer alone."""
    from omegaconf import OmegaConf

    from pipeline.callbacks import training_settings

    saved = checkpoint.get("training_settings")
    if not isinstance(saved, dict):
        return
    now = training_settings(cfg)
    keys = sorted(key for key in set(saved) | set(now)
                  if (key in saved and key in now) or key.endswith("._target_"))
    differ = [key for key in keys if _as_plain(saved.get(key)) != _as_plain(now.get(key))]
    if not differ:
        return

    def source(key: str) -> str:  # scheduler.T_max: ${trainer.max_epochs} names what the user changed
        group, _, rest = key.partition(".")
        node = cfg.get(group)
        try:
            raw = OmegaConf.to_container(node, resolve=False) if node is not None else {}
            for part in rest.split("."):
                raw = raw[part]
        except (KeyError, TypeError, ValueError):
            return ""
        return f" (set by {raw})" if isinstance(raw, str) and raw.startswith("${") else ""

    models = [key for key in differ if key.startswith("model.")]
    if models:
        shown = "; ".join(f"{key}={saved.get(key)!r} there, {now.get(key)!r} here{source(key)}" for key in models[:3])
        raise ConfigError(f"ckpt_path={ckpt_path} was written by a run of another model: {shown}. Its weights were "
                          "trained as that model, and the resumed run would be logged as this one; resume with the "
                          "run's own model keys (model.dropout and model.l1 may change), or start a new run (without "
                          "ckpt_path) for another model")
    shown = "; ".join(f"{key}={saved.get(key)!r} there, {now.get(key)!r} here{source(key)}" for key in differ[:3])
    more = f" (and {len(differ) - 3} more: {', '.join(differ[3:6])}{' ...' if len(differ) > 6 else ''})" \
        if len(differ) > 3 else ""
    spans = (" The scheduler's saved state fixes the number of steps of the whole run, so the epochs and the "
             "batches per epoch cannot change either."
             if any(key.startswith(("trainer.", "data.")) for key in differ) else "")
    raise ConfigError(f"ckpt_path={ckpt_path} was written by a run with other optimizer or scheduler settings: "
                      f"{shown}{more}. A resumed run goes on with the optimizer and scheduler state it saved, so these "
                      f"would be logged but not used.{spans} Resume with the run's own settings (pipeline-rerun <run "
                      "id> ckpt_path=... keeps them), or start a new run (without ckpt_path) for new ones")


def _as_plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def claim_output_dir(cfg: DictConfig) -> Path:
    """The run's output folder, created and claimed by rank 0. Two runs never share one: when the folder is
    already claimed (two runs of one SLURM job, a repeated ``hydra.run.dir``), this run writes to
    ``<folder>-2`` (``-3`` ...) and says so; ``paths.output_dir`` follows, so everything lands there."""
    output_dir = Path(str(cfg.paths.output_dir))
    if not is_rank_zero():
        return output_dir
    chosen = output_dir
    for attempt in range(2, 1000):
        try:
            chosen.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(chosen / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            chosen = output_dir.with_name(f"{output_dir.name}-{attempt}")
            continue
        except OSError as error:
            raise ConfigError(f"cannot write into the output folder {chosen} ({error.strerror}); choose a writable "
                              "one with hydra.run.dir=... (or paths.output_dir=... when calling train())") from None
        with os.fdopen(descriptor, "w") as marker:
            marker.write(claim_text())
        break
    if chosen != output_dir:
        print(f"Output folder {output_dir} belongs to another run; this run writes to {chosen}", flush=True)
        with open_dict(cfg):
            cfg.paths.output_dir = str(chosen)
    return chosen


def scalar_metrics(metrics) -> dict[str, float]:
    return {str(k): float(v) for k, v in (metrics or {}).items() if getattr(v, "numel", lambda: 1)() == 1}


# Lightning's console lines that say nothing about this run (adverts, hardware a CPU run does not use)
_LIGHTNING_NOISE = ("Tip:", "GPU available", "TPU available", "HPU available", "IPU available",
                    "LOCAL_RANK:", "Restoring states from the checkpoint", "Loaded model weights from",
                    "Restored all states from the checkpoint", "Trainer already configured with model summary",
                    "`Trainer.fit` stopped: `max_epochs=", "Using default `ModelCheckpoint`",
                    "to estimate number of stepping batches")  # a schedule that counts the run's steps asked


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in _LIGHTNING_NOISE)


def quiet_lightning() -> None:
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


@contextlib.contextmanager
def interrupted_evaluation(trainer):
    """Ctrl-C / SIGTERM while an evaluation tests: Lightning's cleanup ends with ``sys.exit(1)``, which marked the run
    FAILED ("SystemExit: 1") and exited 1; it is the interrupt it was (KILLED, exit 130)."""
    try:
        yield
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt("interrupted while testing") from None


def multirun_job_overrides() -> Optional[list[str]]:
    """The overrides of this job where it is one of a multirun's (``-m seed=1,2,3``), else None."""
    with contextlib.suppress(Exception):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        config = HydraConfig.get()
        if config.mode == RunMode.MULTIRUN:
            return list(config.overrides.task)
    return None


@contextlib.contextmanager
def interrupt_names_checkpoint(trainer, checkpoint, run):
    """Ctrl-C / SIGTERM during fit or test ends as a :class:`RunInterrupted` naming the checkpoint of the
    newest saved epoch end (resuming from it is exact). Lightning answers an interrupt inside fit/test with
    its own cleanup and ``sys.exit(1)``; that exit is turned back into the interrupt it was, so the
    MLflow run is marked KILLED, not FAILED. A run that fails in training (a NaN loss, a full disk) is tagged with
    the epochs that ended, as an interrupted one: pipeline-compare showed it as having trained every epoch."""
    try:
        yield
    except Exception:
        trained = trainer.current_epoch
        if getattr(trainer.state.fn, "value", None) == "fit" and trained < (trainer.max_epochs or 0):
            with contextlib.suppress(Exception):  # the failure matters more than the tags
                run.set_tags({"stopped_early_at_epoch": str(trained), "stopped_by": "error"})
        raise
    except (KeyboardInterrupt, SystemExit) as stop:
        if isinstance(stop, SystemExit) and not trainer.interrupted:
            raise
        interrupted = newest_checkpoint(checkpoint)
        tags = {"resume_from": str(interrupted.resume_from)} if interrupted.resume_from is not None else {}
        trained = max(trainer.current_epoch, _epochs_saved(interrupted.resume_from))  # pipeline-compare's epochs
        if getattr(trainer.state.fn, "value", None) == "fit" and trained < (trainer.max_epochs or 0):
            tags.update({"stopped_early_at_epoch": str(trained), "stopped_by": "interrupt"})
        if tags:
            with contextlib.suppress(Exception):  # the interrupt matters more than the tags
                run.set_tags(tags)
        raise interrupted from None


def _epochs_saved(path: Optional[Path]) -> int:
    """The epochs that had ended when ``path`` (an end-of-epoch checkpoint) was written; 0 without one. An interrupt
    between its writing and Lightning's count of the epoch finds the trainer's count one short."""
    if path is None:
        return 0
    import torch

    try:
        epoch = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    except Exception:  # the tag matters less than the interrupt
        return 0
    return epoch + 1 if isinstance(epoch, int) else 0


def newest_checkpoint(checkpoint) -> RunInterrupted:
    """The interrupt of a run, naming its ``last.ckpt`` (the newest saved epoch end) where one was written."""
    last = Path(checkpoint.last_model_path) if checkpoint is not None and checkpoint.last_model_path else None
    return RunInterrupted(last.resolve() if last is not None and last.is_file() else None, multirun_job_overrides())
