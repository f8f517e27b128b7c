"""Lightning callbacks and the checkpoint writer. Which callbacks a run gets is config
(``conf/callbacks/*.yaml``, each a named ``_target_`` node); launchers hand in the ones they need on top
(a sweep's pruning callback) through ``train(cfg, callbacks=...)``."""
from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, ProgressBar, TQDMProgressBar
from pytorch_lightning.callbacks import EarlyStopping as _LightningEarlyStopping
from pytorch_lightning.callbacks import LearningRateMonitor as _LightningLearningRateMonitor
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.profilers import PassThroughProfiler

from pipeline.config import collection
from pipeline.errors import StorageFull


class ResumableCheckpoint(ModelCheckpoint):
    """Keeps comparing against the best score of the run it resumes, also when the resumed run writes to
    a new output directory: Lightning forgets the score then and would call the first resumed epoch the
    best, so a resumed run would test another epoch than an uninterrupted one. Files of the earlier run
    are never deleted (Lightning only removes files in its own directory)."""

    def __init__(self, *args, write_interval_s: float = 10.0, refresh_share: float = 0.02, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0 < refresh_share <= 1:
            raise ValueError(f"refresh_share must be in (0, 1], got {refresh_share}")
        self.write_interval_s = write_interval_s
        self.refresh_share = refresh_share
        self._gathered: Optional[tuple[tuple, dict]] = None  # (epoch, step, weights only), the checkpoint
        self._saved_at = -math.inf  # when a checkpoint was last gathered and saved (time.perf_counter)
        self._save_seconds = 0.0  # what that took
        self._copied: dict[str, str] = {}  # a resumed run's best file of the earlier folder -> its copy in this one

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        """As Lightning's, except that the best file and last.ckpt of one epoch share one gathering of the state
        (~1 ms each on a small model); this callback's own state is taken afresh for each file."""
        from weakref import proxy

        started = time.perf_counter()
        key = (trainer.current_epoch, trainer.global_step, self.save_weights_only)
        if self._gathered is None or self._gathered[0] != key:
            self._gathered = (key, trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only))
        checkpoint = self._gathered[1]
        if self.state_key in checkpoint.get("callbacks", {}):
            checkpoint["callbacks"][self.state_key] = self.state_dict()
        trainer.strategy.save_checkpoint(checkpoint, filepath)
        trainer.strategy.barrier("Trainer.save_checkpoint")
        self._saved_at = time.perf_counter()
        self._save_seconds = self._saved_at - started
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self._gathered = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        checkpoint_io = trainer.strategy.checkpoint_io
        if isinstance(checkpoint_io, AtomicCheckpointIO):
            checkpoint_io.write_interval_s = self.write_interval_s

    @property
    def state_key(self) -> str:
        # saved under ModelCheckpoint's name: checkpoints stay interchangeable with plain Lightning ones. Lightning
        # builds the key (a repr of the settings) again for each hook it calls on each callback, ~40 times per
        # training step; the settings it is made of do not change after construction, so it is built once
        if getattr(self, "_state_key", None) is None:
            self._state_key = super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)
        return self._state_key

    def _monitor_candidates(self, trainer) -> dict:
        """Lightning's, with each metric tensor cloned instead of the dict deep-copied: the same fresh values
        at a tenth of the cost (tensor ``__deepcopy__`` is ~40 us in Python; this runs 2-3 times per epoch)."""
        import torch

        candidates = {name: value.detach().clone() if isinstance(value, torch.Tensor) else value
                      for name, value in trainer.callback_metrics.items()}
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, torch.Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, torch.Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def on_fit_start(self, trainer, pl_module) -> None:
        super().on_fit_start(trainer, pl_module)
        self._copy_best_of_resumed_run(trainer)

    def _copy_best_of_resumed_run(self, trainer) -> None:
        """A run resumed into a new folder whose best epoch came before the interruption: that epoch's file is copied
        into this run's checkpoints/ and is the run's best from here on. It stayed in the interrupted run's folder,
        which has no data/ (pipeline-predict refused the "Best checkpoint" the resumed run printed) and whose run in
        the store is the KILLED one. The earlier file is kept; the copy is replaced, as any best file of this folder,
        when a later epoch does better."""
        import shutil

        best, dirpath = self.best_model_path, self.dirpath
        if not best or dirpath is None or "://" in str(dirpath) or "://" in str(best):
            return
        source, target = Path(best), Path(dirpath) / Path(best).name
        if source.absolute().parent == target.absolute().parent:
            return
        if trainer.is_global_zero and source.is_file() and not target.exists():
            partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, partial)
                os.replace(partial, target)
            except OSError as error:  # the run goes on with the earlier folder's file as its best
                with contextlib.suppress(OSError):
                    partial.unlink()
                warnings.warn(f"could not copy the best checkpoint of the resumed run, {source}, into {target.parent} "
                              f"({error.strerror or error}); the run's best checkpoint stays there")
        trainer.strategy.barrier("ResumableCheckpoint.copy_best")
        if not target.is_file():
            return
        self._copied[best] = str(target)
        self._name_copies()

    def _name_copies(self) -> None:
        """The paths of copied files as their copies' (also after trainer.test loads a checkpoint's state again)."""
        copies = self._copied
        if copies:
            self.best_k_models = {copies.get(path, path): score for path, score in self.best_k_models.items()}
            self.kth_best_model_path = copies.get(self.kth_best_model_path, self.kth_best_model_path)
            self.best_model_path = copies.get(self.best_model_path, self.best_model_path)

    def load_state_dict(self, state_dict: dict) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*dirpath has changed.*")
            super().load_state_dict(state_dict)
        self.best_model_score = state_dict["best_model_score"]
        self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
        self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
        self.kth_value = state_dict.get("kth_value", self.kth_value)
        self._name_copies()  # testing the copy loads the state it holds, which names the original file

    # pytorch-lightning 2.6 writes last.ckpt only in an epoch that also wrote a best file, so after a
    # run of epochs without improvement "last" held the best epoch and a resume repeated the epochs after
    # it. Here last.ckpt is also saved at the end of epochs without a best file (between file writes not at every
    # one: see _refresh_due), in the hook where Lightning saves.
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def _should_save_on_train_epoch_end(self, trainer) -> bool:
        """Lightning saves after validation instead when trainer.check_val_every_n_epoch > 1, before the epoch's
        end: a run resumed from that last.ckpt ran the epoch's end again with no batch (train/loss 0 logged for it)
        and without its schedulers' step. Where validation comes only at epochs' ends, saving there instead judges the
        same validation metrics, and the file holds the whole epoch."""
        if self._save_on_train_epoch_end is None and trainer.check_val_every_n_epoch != 1 \
                and trainer.val_check_interval == 1.0:
            return True
        return super()._should_save_on_train_epoch_end(trainer)

    def _save_last_every_epoch(self, trainer) -> None:
        # _should_skip_saving_checkpoint is also true when this step was just saved (best and last)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer) and self._refresh_due(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _refresh_due(self, trainer) -> bool:
        """Whether last.ckpt is saved at the end of this epoch. While files are kept in memory between writes
        (``write_interval_s`` > 0), saving it means gathering the whole state and copying it (~0.5-1 ms on a small
        model: a twentieth of a tabular epoch). It is then saved when at least ``1 / refresh_share`` times the last
        save's duration has passed since (with 0.02: at most 2 % of the training time; every epoch once epochs
        take longer than that), and always in the epoch that saves a best file and in the run's last epoch. An
        interrupt (Ctrl-C, SIGTERM, an error) writes the newest one: resuming from it repeats at most those
        milliseconds of training, exactly. Every epoch with ``refresh_share=1``, ``write_interval_s=0`` or DDP
        (all ranks must save together)."""
        if self.refresh_share >= 1 or self.write_interval_s <= 0 or trainer.world_size > 1 or trainer.should_stop:
            return True
        last_epoch = trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1
        last_step = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        if last_epoch or last_step:
            return True
        return time.perf_counter() - self._saved_at >= self._save_seconds / self.refresh_share


class LearningRateMonitor(_LightningLearningRateMonitor):
    """Lightning's learning-rate monitor, recorded the way the pipeline's loggers record a run. Lightning's logs
    ``logging_interval=step`` values only every ``trainer.log_every_n_steps`` (50) optimizer steps, so a run of
    fewer steps logged none, and it hands every value over with the optimizer step as the step, which the
    pipeline's loggers (metrics.jsonl, MLflow) read as the epoch. Here an ``epoch`` value is logged at the start
    of each epoch under that epoch, a ``step`` value at every optimizer step under its epoch with the step beside
    it (``{"epoch": 0, "step": 3, "lr-Adam": ...}``; in MLflow at that step). Other loggers (csv, tensorboard) get
    what Lightning gives them."""

    def on_train_batch_start(self, trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval != "epoch":
            self._send(trainer, self._extract_stats(trainer, "step" if self.logging_interval is None else "any"),
                       per_step=True)

    def on_train_epoch_start(self, trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval != "step":
            self._send(trainer, self._extract_stats(trainer, "epoch" if self.logging_interval is None else "any"),
                       per_step=False)

    @staticmethod
    def _send(trainer, stats: dict, per_step: bool) -> None:
        from pipeline.tracking.loggers import MLflowLogger, RunHistory

        if not stats:
            return
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            if isinstance(logger, (RunHistory, MLflowLogger)):
                logger.log_metrics({**stats, "epoch": trainer.current_epoch, **({"step": step} if per_step else {})})
            else:
                logger.log_metrics(stats, step=step)


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler (none) without its cost. Lightning wraps every hook it calls, every
    strategy call and every loop step in ``with trainer.profiler.profile(name)`` (~45 times per training step),
    and its pass-through profiler still builds a generator-based context manager for each. This one hands back
    one shared no-op context. A profiler in the config (``+trainer.profiler=simple``) replaces it as usual."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._nothing


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in the same folder, fsyncs it, then renames it over the old
    one: a kill or power loss during the write leaves the previous file whole (Lightning's own writer goes
    through a temporary file that may be on another file system, where the final move is a copy). On a
    full disk the temporary file is removed and the error names the place.

    With ``write_interval_s`` > 0 (set by :class:`ResumableCheckpoint`), a file already written less than that
    many seconds ago is not written again at once: the checkpoint is kept in memory as a copy of the state at
    that moment (the end of an epoch) and written when the interval has passed, when training ends or stops
    (Ctrl-C, SIGTERM, an error: Lightning tears the run down through :meth:`teardown`). A tabular epoch of
    ~10 ms spent ~5 ms on two fsynced writes. When the interval has passed, the copies are written by a
    background thread while training goes on (two fsynced 26 MB files of the MR model cost the training
    thread ~0.1-0.2 s); the end of training, an interrupt or an error waits for it. What is on disk is always
    consistent: the files kept in memory are written together, one batch after the other, the best file before
    last.ckpt that names it, and files the checkpoint callback removes meanwhile are deleted only after that.
    A failed background write (a full disk) is raised at the next save or at the end of training. A kill -9
    loses at most the last interval; resuming from last.ckpt stays exact (it continues from the end of the
    epoch it holds)."""

    # larger checkpoints are written at once: copying them costs memory, and their epochs are long anyway
    MAX_HELD_BYTES = 256 * 2**20

    def __init__(self, write_interval_s: float = 0.0):
        super().__init__()
        self.write_interval_s = write_interval_s
        self._held: dict[str, dict[str, Any]] = {}  # path -> the checkpoint as it was when saved
        self._removals: list[str] = []  # files to delete once the held ones are written
        self._written_at: dict[str, float] = {}
        self._writing: Optional[threading.Thread] = None  # the batch being written in the background
        self._write_error: Optional[BaseException] = None  # what that batch raised, for the training thread
        self._copies = _Copies()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        self._raise_write_error()
        path = str(path)
        first_last = Path(path).name.startswith("last") and path not in self._written_at  # resumable from epoch 1
        recent = max(self._written_at.values(), default=-math.inf) > time.monotonic() - self.write_interval_s
        if self.write_interval_s > 0 and not first_last and _tensor_bytes(checkpoint) <= self.MAX_HELD_BYTES:
            self._held[path] = self._copies.snapshot(checkpoint)  # training goes on changing the tensors it holds
            if not recent:
                self._write_held_in_background()
            return
        self._held.pop(path, None)
        self.flush()
        self._write(checkpoint, path)
        self._written_at[path] = time.monotonic()

    def remove_checkpoint(self, path) -> None:
        path = str(path)
        self._held.pop(path, None)
        self._written_at.pop(path, None)
        if self._writing is not None:  # being written, or named by the last.ckpt being written: after that
            self._removals.append(path)
            return
        if not Path(path).exists():
            return
        if self._held:  # the last.ckpt on disk may name this file: delete it once the held ones are written
            self._removals.append(path)
            return
        super().remove_checkpoint(path)

    def flush(self) -> None:
        """Wait for the background write, then write the checkpoints kept in memory (best files first, last.ckpt
        after) and delete the removed ones."""
        held, removals = self._take_held()
        self._copies.clear()
        self._write_batch(held, removals)
        written = time.monotonic()
        for path in held:
            self._written_at[path] = written

    def teardown(self) -> None:
        self.flush()
        super().teardown()

    def _take_held(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """After the background write (its error raised here): the held checkpoints and the removals, handed over."""
        self._wait_for_background()
        self._raise_write_error()
        held, self._held = self._held, {}
        removals, self._removals = self._removals, []
        return held, removals

    def _write_held_in_background(self) -> None:
        held, removals = self._take_held()
        handed_over = time.monotonic()
        for path in held:  # the interval counts from now: no second batch while this one is written (the writer
            self._written_at[path] = handed_over  # thread never touches this dict)

        def write() -> None:
            try:
                self._write_batch(held, removals)
            except BaseException as error:  # raised in the training thread
                self._write_error = error

        self._writing = threading.Thread(target=write, name="checkpoint-writer", daemon=True)
        self._writing.start()

    def _wait_for_background(self) -> None:
        if self._writing is not None:
            self._writing.join()
            self._writing = None

    def _raise_write_error(self) -> None:
        if self._writing is not None and not self._writing.is_alive():
            self._writing = None
        error, self._write_error = self._write_error, None
        if error is not None:
            raise error

    def _write_batch(self, held: dict[str, dict[str, Any]], removals: list[str]) -> None:
        for path in sorted(held, key=lambda p: Path(p).name.startswith("last")):
            self._write(held[path], path)
        for path in removals:
            if path not in held:
                with _ignore_missing():
                    super().remove_checkpoint(path)

    def _write(self, checkpoint: dict[str, Any], path) -> None:
        import torch

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        # serialised in memory first: torch.save reports a failed write (a full disk) as an opaque RuntimeError
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            with open(temporary, "wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
            _fsync_directory(target.parent)
        except OSError as error:
            with _ignore_missing():
                temporary.unlink()
            why = {errno.ENOSPC: "no space left on the device of", errno.EDQUOT: "the disk quota is used up on",
                   errno.EFBIG: "the file is larger than the device or the file-size limit (ulimit -f) allows in",
                   errno.EACCES: "no permission to write in", errno.EPERM: "the system does not allow writing in",
                   errno.EROFS: "read-only file system:"}.get(error.errno)
            if why is not None:
                # a best-epochNNN file is new (the previous best has another name); last.ckpt is replaced
                kept = sorted(p.name for p in target.parent.glob("*.ckpt"))
                last = target.parent / "last.ckpt"
                resume = f"; resume with ckpt_path={last}" if last.exists() else ""
                raise StorageFull(f"{why} {target.parent} while writing {target.name} ({error.strerror}); "
                                  f"kept there: {', '.join(kept) or 'no checkpoint'}{resume}. Free space or set "
                                  "hydra.run.dir to another place") from None
            raise
        except BaseException:
            with _ignore_missing():
                temporary.unlink()
            raise


class _Copies:
    """Copies of checkpoints (:func:`_snapshot`) that share the copy of a tensor already copied for another file of
    the same epoch: the best file and last.ckpt of one epoch are saved from one gathering of the state
    (:class:`ResumableCheckpoint`), so the same tensor objects, unchanged since (same ``_version``), are copied
    once (~7 ms for the MR model with its Adam state)."""

    def __init__(self):
        self._step: Optional[tuple] = None
        self._copied: dict[int, tuple[Any, int, Any]] = {}  # id(tensor) -> (tensor, its version, the copy)

    def clear(self) -> None:
        self._step, self._copied = None, {}

    def snapshot(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        step = (checkpoint.get("epoch"), checkpoint.get("global_step"))
        if step != self._step or None in step:
            self._step, self._copied = step, {}
        return _snapshot(checkpoint, self._copy_tensor)

    def _copy_tensor(self, tensor):
        known = self._copied.get(id(tensor))
        # the tensor itself is kept in the entry, so its id cannot be reused by another one meanwhile
        if known is not None and known[0] is tensor and known[1] == tensor._version:
            return known[2]
        copy = tensor.detach().clone()
        self._copied[id(tensor)] = (tensor, tensor._version, copy)
        return copy


# leaves of a checkpoint kept as they are (immutable), by exact type: most of a checkpoint's ~200 nodes (the loops'
# progress counters, hyperparameters) are these
_ATOMS = frozenset((str, bytes, int, float, bool, type(None)))


def _snapshot(tree: Any, copy_tensor: Callable[[Any], Any]) -> Any:
    """A copy of a checkpoint: its containers copied, its tensors copied by ``copy_tensor``, the rest
    copied (``copy.deepcopy`` would do the same at ~10x the cost). torch and copy are looked up once per call, not
    at each node (~0.5 us each: a third of the time on a small model's checkpoint)."""
    import copy

    import torch

    tensor_type, copy_node, deepcopy, clone = torch.Tensor, copy.copy, copy.deepcopy, copy_tensor

    def walk(node: Any) -> Any:
        kind = type(node)
        if kind in _ATOMS:
            return node
        if isinstance(node, tensor_type):
            return clone(node)
        if kind is dict:
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, dict):  # e.g. a state_dict's OrderedDict, with its _metadata
            copied = copy_node(node)
            for key, value in node.items():
                copied[key] = walk(value)
            return copied
        if kind is list:
            return [walk(value) for value in node]
        if kind is tuple:
            return tuple(walk(value) for value in node)
        if isinstance(node, (str, bytes, int, float, bool)):
            return node
        return deepcopy(node)

    return walk(tree)


def _tensor_bytes(tree: Any) -> int:
    import torch

    tensor_type = torch.Tensor

    def walk(node: Any) -> int:
        if type(node) in _ATOMS:
            return 0
        if isinstance(node, tensor_type):
            return node.numel() * node.element_size()
        if isinstance(node, dict):
            return sum(walk(value) for value in node.values())
        if isinstance(node, (list, tuple)):
            return sum(walk(value) for value in node)
        return 0

    return walk(tree)


class _ignore_missing:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, FileNotFoundError)


def _fsync_directory(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class ConsoleProgress(TQDMProgressBar):
    """On a terminal, Lightning's progress bar showing train/loss, val/loss and the monitored metric (not
    ``v_num``). When the output goes to a file (cluster logs), no bars but one line per epoch:
    ``epoch 3/20  train/loss 0.4121  val/loss 0.3925  val/acc 0.9123  0.8 s``."""

    def __init__(self, monitor: Optional[str] = None, refresh_rate: int = 1, stream: Any = None):
        super().__init__(refresh_rate=refresh_rate)
        self.monitor = monitor
        self.stream = stream
        self._on_terminal = stream is None and sys.stdout.isatty()
        self._pending_epoch: Optional[int] = None
        self._epoch_started = 0.0
        self._epoch_seconds = 0.0
        self._validated_epoch: Optional[int] = None  # the last epoch that validated (not the sanity check)
        if not self._on_terminal:
            self.disable()

    def _shown(self, trainer, epoch: Optional[int] = None) -> dict[str, float]:
        """The values shown; for ``epoch``'s line, its validation values only where it validated (with
        trainer.check_val_every_n_epoch the others would repeat an earlier epoch's as if measured)."""
        wanted = ["train/loss", "val/loss"] + ([self.monitor] if self.monitor and self.monitor != "val/loss" else [])
        if epoch is not None and self._validated_epoch != epoch:
            wanted = [key for key in wanted if not key.startswith("val/")]
        metrics = trainer.callback_metrics
        return {key: float(metrics[key]) for key in wanted if key in metrics}

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        return {key.split("/", 1)[-1] if key.endswith("/loss") else key: f"{value:.4g}"
                for key, value in self._shown(trainer).items()}

    # the epoch's train/loss is logged by the task module after the callbacks' on_train_epoch_end, so the
    # line of an epoch is printed when the next one starts, or when training ends
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._on_terminal:
            super().on_train_epoch_start(trainer, pl_module)
        self._print_pending(trainer)
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._on_terminal:
            super().on_train_epoch_end(trainer, pl_module)
        self._epoch_seconds = time.perf_counter() - self._epoch_started
        self._pending_epoch = trainer.current_epoch

    def on_train_end(self, trainer, pl_module) -> None:
        if self._on_terminal:
            super().on_train_end(trainer, pl_module)
        self._print_pending(trainer)

    def _print_pending(self, trainer) -> None:
        if self._on_terminal or self._pending_epoch is None or trainer.sanity_checking:
            return
        if trainer.global_rank != 0:
            return
        epoch, self._pending_epoch = self._pending_epoch, None
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        values = "  ".join(f"{key} {value:.4g}" for key, value in self._shown(trainer, epoch).items())
        print(f"epoch {epoch + 1}/{total}  {values}  {self._epoch_seconds:.1f} s", file=self.stream or sys.stdout,
              flush=True)


def build_callbacks(cfg: DictConfig, extra: Iterable[Callback] = ()) -> list[Callback]:
    """The callbacks ``cfg.callbacks`` names, then the ones a launcher hands in. A progress bar from the
    config (e.g. rich_progress_bar) replaces the console output."""
    from hydra.utils import instantiate

    built = []
    for name, node in collection(cfg, "callbacks").items():
        callback = instantiate(node)
        if not isinstance(callback, Callback):  # it failed mid-run, on the first hook it lacked
            from pipeline.config import ConfigError

            raise ConfigError(f"callbacks.{name}: {node.get('_target_')} builds a {type(callback).__name__}, not a "
                              "Lightning callback (a subclass of pytorch_lightning.Callback)")
        if type(callback) is _LightningEarlyStopping:
            callback.__class__ = EarlyStopping  # the configured patience, also on resume
        built.append(callback)
    if cfg.model.get("unfreeze_at_epoch") is not None:  # a pretrained backbone trained from that epoch on
        from pipeline.fine_tuning import UnfreezeBackbone

        built.append(UnfreezeBackbone(cfg.model.unfreeze_at_epoch))
    callbacks = [*built, *extra]
    bars = [c for c in callbacks if isinstance(c, ProgressBar)]
    if len(bars) > 1:
        callbacks = [c for c in callbacks if not isinstance(c, ConsoleProgress)]
    return callbacks


class EarlyStopping(_LightningEarlyStopping):
    """Lightning's early stopping, whose patience on resume is the config's: Lightning loads the checkpoint's patience
    over it, so a run resumed with another ``patience`` logged the new value and stopped by the old one (its rerun
    then stopped elsewhere). The checkpoint's count of validations without improvement is kept."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience


# settings whose saved value a resume does not restore: the resumed epochs take them as given. A checkpoint keeps them
# and a resume that changes them is said and tagged (changed_on_resume), as the run's params hold the new values only
GIVEN_ON_RESUME = ("model.dropout", "model.residual_dropout", "model.l1", "task.class_weights", "task.label_smoothing",
                   "trainer.gradient_clip_val", "trainer.gradient_clip_algorithm")


def given_settings(cfg: DictConfig) -> dict[str, Any]:
    """The resolved values of :data:`GIVEN_ON_RESUME` and of every early stopping's ``patience`` and ``min_delta``
    (``callbacks.<name>.patience``), as ``{dotted key: value}`` (keys the config lacks are left out)."""
    from omegaconf import OmegaConf

    def plain(value: Any) -> Any:
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

    settings = {}
    for key in GIVEN_ON_RESUME:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            settings[key] = plain(value)
    for name, node in collection(cfg, "callbacks").items():
        if str(node.get("_target_", "")).endswith("EarlyStopping"):
            for key in ("patience", "min_delta"):
                if node.get(key) is not None:
                    settings[f"callbacks.{name}.{key}"] = plain(node.get(key))
    return settings


def find_checkpoint(callbacks: Iterable[Callback]) -> Optional[ModelCheckpoint]:
    """The callback that keeps the best checkpoint (tested at the end), if the run has one."""
    return next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)


# optimizer keys that say how it runs, not what it computes (they may differ between machines)
_NOT_TRAINING = frozenset({"optimizer.fused", "optimizer.foreach", "optimizer.capturable", "optimizer.differentiable",
                           # the model's keys that the resumed epochs use as given, or that build no weight
                           "model.dropout", "model.residual_dropout", "model.l1", "model.weights", "model.download",
                           "model.freeze_backbone", "model.unfreeze_at_epoch", "model.channels_last", "model.bf16"})


def training_settings(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config values that a checkpoint's saved state overrides on resume, as ``{dotted key: value}``:
    the optimizer's and the scheduler's keys (Lightning loads the saved optimizer and scheduler state over the new
    ones: a new learning rate under a schedule, a new step size or decay, another kind of scheduler would be logged
    as the run's while the run went on with the saved ones) and, for a schedule that spans the whole run (OneCycleLR,
    a warm-up and decay by steps, whose saved state fixes the number of steps), what sets that number:
    ``trainer.max_epochs``, ``accumulate_grad_batches``, ``limit_train_batches`` and ``data.batch_size``. A checkpoint
    keeps them and a run resumed from it must have the same (``train.check_resume_checkpoint``). So do the model's
    keys: the saved weights were trained as that model (another activation keeps every shape, and the run would be
    logged as a model it partly was not). Settings that the resumed epochs do use as given (dropout, l1, clipping
    ...) are not among them."""
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    settings: dict[str, Any] = {}

    def add(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                add(f"{prefix}.{key}", value)
        elif prefix not in _NOT_TRAINING:
            settings[prefix] = list(node) if isinstance(node, tuple) else node

    for group in ("optimizer", "scheduler", "model"):
        node = cfg.get(group)
        if node is not None:
            add(group, OmegaConf.to_container(node, resolve=True))
    from pipeline.schedulers import spans_the_run

    spans_run = False
    target = (cfg.get("scheduler") or {}).get("_target_")
    if target:
        try:
            spans_run = spans_the_run(get_object(str(target)))
        except Exception:  # a scheduler that cannot be found fails where it is built
            pass
    if spans_run:
        trainer = cfg.get("trainer") or {}
        for key in ("max_epochs", "accumulate_grad_batches", "limit_train_batches"):
            if key in trainer:
                add(f"trainer.{key}", trainer.get(key))
        data = cfg.get("data") or {}
        if "batch_size" in data:
            add("data.batch_size", data.get("batch_size"))
    return settings


class SameBuffersOnEveryRank(Callback):
    """Under DDP each rank's forward passes update its own copy of the buffers (BatchNorm's running statistics); DDP
    sends rank 0's to the others at the next training step, but a validation right after an epoch ran on each rank's
    own, while checkpoints hold rank 0's alone. A run resumed from one then validated the other ranks' rows with
    other statistics than the uninterrupted run (val/loss 0.0405 for 0.0409 after a resume). Rank 0's buffers go to
    every rank before each validation, as they would at the next step: a resume validates as the run did."""

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        import torch.distributed as dist

        if trainer.world_size < 2 or not (dist.is_available() and dist.is_initialized()):
            return
        for buffer in pl_module.buffers():
            dist.broadcast(buffer.data, src=0)


class RunIdInCheckpoint(Callback):
    """Writes the MLflow run id into every checkpoint, so a run resumed from it is linked to the run that
    wrote it (tag ``resumed_from_run``). ``run``: the tracking run, whose id is read when a checkpoint is saved.
    Also the run's ``seed``, its ``training_settings``, what its model's outputs are (the task's
    ``output_settings``) and the digests of its training and validation rows (data held in memory), which a resume
    must have too (``check_resume_checkpoint``)."""

    def __init__(self, run: Any = None, seed: Optional[int] = None, settings: Optional[dict[str, Any]] = None,
                 given: Optional[dict[str, Any]] = None):
        self.run, self.seed, self.settings, self.given = run, seed, settings, given

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        run_id = self.run.run_id if self.run is not None else None
        if run_id:
            checkpoint["mlflow_run_id"] = run_id
        if self.seed is not None:
            checkpoint["seed"] = int(self.seed)
        if self.settings is not None:
            checkpoint["training_settings"] = self.settings
        if self.given is not None:
            checkpoint["given_settings"] = self.given
        output_settings = getattr(pl_module, "output_settings", None)
        if output_settings is not None:
            checkpoint["output_settings"] = output_settings()
        digests = fitted_rows_digests(trainer.datamodule)
        if digests:
            from pipeline.tracking.run import PREPROCESSED, ROWS

            # the kind says these digest the rows drawn; a checkpoint without it, the preprocessed inputs
            checkpoint["data_digests"], checkpoint["data_digests_kind"] = digests, ROWS
            # and the inputs made of them (preprocessing fitted on the training rows): the same rows prepared
            # otherwise (another data.numeric_transform ...) are not the inputs the weights were trained on
            checkpoint["input_digests"] = fitted_rows_digests(trainer.datamodule, PREPROCESSED)


def fitted_rows_digests(datamodule, kind: Optional[str] = None) -> dict[str, str]:
    """{training, validation: digest} of a data module's fitted splits (hashed once per run): of the rows drawn, or
    of the preprocessed inputs (``kind``, see ``tracking.artifacts.split_digests``). A module of files (image
    folders, streamed or read into memory) says its own (``resume_digests``): the files drawn and their labels, and
    how they are made into inputs (its logged data set digests cover modification times, which a copy changes)."""
    from pipeline.tracking.run import PREPROCESSED, ROWS

    if datamodule is not None and hasattr(datamodule, "resume_digests"):
        return datamodule.resume_digests(prepared=kind == PREPROCESSED)
    if datamodule is None or hasattr(datamodule, "dataset_records") or getattr(datamodule, "train_split", None) is None:
        return {}
    from pipeline.tracking.artifacts import split_digests

    return {k: v for k, v in split_digests(datamodule, kind or ROWS).items() if k in ("training", "validation")}
