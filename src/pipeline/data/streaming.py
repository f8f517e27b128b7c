"""Data sets read item by item in ``DataLoader`` workers, for data that does not fit in memory or needs a
random transform per item and epoch (full-resolution photos).

A subclass of :class:`StreamedDataModule` lists its items once (an index: row ids and labels, no contents),
says how to read one row and how to transform it. Everything else is shared here:

* splitting, exactly as the in-memory data sets split (the index is split with
  :meth:`InMemoryDataModule._split`, so hold-out, stratification, K-fold CV and the refusal of empty splits
  are the same code);
* ``data.in_memory=true|false|auto``: small sets are read once into tensors and batched by the in-memory
  :class:`~pipeline.data.base.TensorBatcher` (faster per step); the others are streamed;
* the order of the items: :class:`EpochSampler` is ``DistributedSampler`` (one disjoint shard per DDP rank,
  the permutation drawn from ``seed + epoch``: the same order as the in-memory batcher), and each item's
  random transform is drawn from ``(seed, epoch, row)``, so neither the number of workers nor an interrupted
  and resumed run changes what a model sees;
* unreadable items: a one-line :class:`DataError` naming the item, or (``skip_bad_files``) left out of the
  batch and named once;
* what tracking needs without loading everything: digests of the splits, the test split in batches, an
  input example.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from typing import Any, Callable, ClassVar, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .base import DataError, InMemoryDataModule, Split, announce_splits, limited_rows
from .workers import quiet_worker

#: data.in_memory=auto reads a data set into memory when its items as float32 tensors take at most this much
AUTO_IN_MEMORY_BYTES = 1 << 30
#: rows read per batch while a data set is read into memory or its statistics are estimated
READ_BATCH = 256


def items_digest(identity: bytes, labels: np.ndarray, how: bytes = b"") -> str:
    """The digest of a split's items (``identity``: bytes naming them), their labels and, for a resume's check of
    the inputs, how they are prepared (``how``)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(identity)
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    digest.update(how)
    return digest.hexdigest()


class UnreadableItem(Exception):
    """Raised by a reader for an item it cannot read; the message says why (without the file name)."""


# ----- the order of the items -------------------------------------------------------------------------------
class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (a permutation drawn from ``seed + epoch``, padded by wrapping around and dealt
    out to the ranks: the order :class:`TensorBatcher` gives the in-memory data sets) whose items are
    ``(epoch, index)`` pairs, so that a worker can draw the item's random transform from the epoch and the row.
    The epoch is read from ``epoch_fn`` (the trainer's) when iteration starts (see :class:`DeferredLoader`).
    A subclass of ``DistributedSampler``, so Lightning leaves it in place under DDP."""

    def __init__(self, *args, epoch_fn: Callable[[], int] = lambda: 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch_fn = epoch_fn

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self.set_epoch(self.epoch_fn())
        epoch = self.epoch
        return ((epoch, int(index)) for index in super().__iter__())


class DeferredLoader:
    """A ``DataLoader`` whose iterator is created when the first batch is asked for, not when Lightning calls
    ``iter()``. Lightning creates the first epoch's iterator before it restores the epoch counter of a resumed
    run, and a loader with workers draws its indices (prefetching) at once: a run resumed at epoch 3 would
    replay epoch 0's order. (The in-memory :class:`TensorBatcher` is a generator, lazy in the same way.)"""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        yield from self.loader


def item_seed(seed: int, epoch: int, row: int) -> int:
    """The seed of one item's random transform in one epoch."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, row]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


class ItemDataset(Dataset):
    """The items of one split: item ``(epoch, i)`` is row ``rows[i]`` read by ``read(row)`` and passed through
    ``transform``; a random transform draws from torch's RNG seeded with :func:`item_seed` (the caller's RNG
    is left untouched, also with ``num_workers=0``). Returns ``(x, label, row, None)``, or
    ``(None, label, row, reason)`` for an item ``read`` could not read."""

    def __init__(self, rows: np.ndarray, labels: np.ndarray, read: Callable[[int], Any],
                 transform: Callable[[Any], Tensor], seed: int = 0, random: bool = False):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.read = read
        self.transform = transform
        self.seed = seed
        self.random = random

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Union[int, tuple[int, int]]):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        row, label = int(self.rows[index]), int(self.labels[index])
        try:
            item = self.read(row)
        except UnreadableItem as error:
            return None, label, row, str(error)
        if not self.random:
            return self.transform(item), label, row, None
        with torch.random.fork_rng(devices=()):
            torch.manual_seed(item_seed(self.seed, epoch, row))
            return self.transform(item), label, row, None

    def __getitems__(self, keys: list) -> list:
        """A batch of items (what ``DataLoader`` asks for when this exists), one intra-op thread at a time."""
        with one_thread():
            return [self[key] for key in keys]


@contextlib.contextmanager
def one_thread():
    """torch's intra-op threads at 1 meanwhile, in the training process (``num_workers=0``) as in a worker
    (where ``DataLoader`` sets it): per-image transforms and stacking a batch are too small to split, and
    with 2 threads on 2 busy cores they ran 35x (224-px transforms: 5.7 against 200 images/s) and 4-10x
    (stacking 64 images of 224 px: 0.6-1.5 s against 0.14-0.16 s) slower."""
    threads = torch.get_num_threads()
    if threads == 1 or torch.utils.data.get_worker_info() is not None:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def collate_items(items: Sequence[tuple]) -> tuple[Tensor, Tensor, list[tuple[int, str]]]:
    """``(x, y, failed)``: the readable items stacked, and ``(row, reason)`` of the others."""
    good = [(x, label) for x, label, _row, _reason in items if x is not None]
    failed = [(row, reason) for x, _label, row, reason in items if x is None]
    with one_thread():
        x = torch.stack([x for x, _ in good]) if good else torch.empty(0)
    y = torch.tensor([label for _, label in good], dtype=torch.long)
    return x, y, failed


# ----- the data module ----------------------------------------------------------------------------------------
class StreamedDataModule(InMemoryDataModule):
    """Base of the data sets whose items are read one by one (files); see the module docstring.

    A subclass implements :meth:`load` (an index: a :class:`LoadedData` whose splits hold row ids as ``x`` and
    labels as ``y``), :meth:`reader`, :meth:`transform`, :meth:`item_shape`, :meth:`row_name`,
    :meth:`row_records`, and sets :attr:`item_noun`. Before it chooses the path it calls
    :meth:`fit_preprocessing_rows` with the training rows (e.g. to estimate normalisation statistics).
    """

    #: what one item is called in messages ("image")
    item_noun: ClassVar[str] = "item"

    def __init__(
        self,
        in_memory: Union[bool, str] = "auto",
        num_workers: int = 2,
        pin_memory: Optional[bool] = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        skip_bad_files: bool = False,
        **kwargs,
    ):
        eval_batch_size = kwargs.pop("eval_batch_size", None)
        super().__init__(**kwargs)
        if in_memory not in (True, False, "auto"):
            raise DataError(f"data.in_memory={in_memory!r} is not allowed; choose true, false or auto")
        if num_workers < 0:
            raise DataError(f"data.num_workers must be >= 0, got {num_workers}")
        if prefetch_factor < 1:
            raise DataError(f"data.prefetch_factor must be >= 1, got {prefetch_factor}")
        self.in_memory = in_memory
        self.num_workers = int(num_workers)
        self.pin_memory = pin_memory
        self.persistent_workers = bool(persistent_workers)
        self.prefetch_factor = int(prefetch_factor)
        self.skip_bad_files = bool(skip_bad_files)
        self._eval_batch_size_setting = eval_batch_size
        self.rows: dict[str, Split] = {}  # split name -> row ids (x) and labels (y)
        self.streamed: Optional[bool] = None  # chosen in setup()
        self.path_reason = ""
        self.split_notes: list[str] = []  # printed with the split sizes (where a split came from)
        self.skipped: dict[str, str] = {}  # item (file) -> why it was left out (skip_bad_files)

    # ----- to implement in subclasses -----------------------------------------------------------------
    def reader(self) -> Callable[[int], Any]:
        """A picklable callable: row -> the raw item (raises :class:`UnreadableItem`)."""
        raise NotImplementedError

    def transform(self, train: bool) -> Callable[[Any], Tensor]:
        """A picklable callable: raw item -> model input; random only when ``train``."""
        raise NotImplementedError

    def random_transform(self) -> bool:
        """Whether the training transform draws random numbers."""
        raise NotImplementedError

    def streamed_only_transforms(self) -> list[str]:
        """Configured training transforms that only the streamed path applies (drawn per item); the in-memory
        path refuses them."""
        return []

    def item_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def row_name(self, row: int) -> str:
        """The item in messages, e.g. its file path."""
        raise NotImplementedError

    def row_records(self, rows: np.ndarray) -> tuple[np.ndarray, bytes]:
        """(features for MLflow's dataset record, e.g. the relative paths; bytes that identify the items'
        contents, e.g. path, size and modification time of each file)."""
        raise NotImplementedError

    def resume_identity(self, rows: np.ndarray) -> bytes:
        """Bytes that identify the items for a resume's check (:meth:`resume_digests`): by default those of
        :meth:`row_records`."""
        return self.row_records(rows)[1]

    def preparation(self) -> Optional[bytes]:
        """How items are made into model inputs (sizes, normalisation ...), for a resume's check of the inputs the
        weights learned; None where a module does not say (then no such check)."""
        return None

    def resume_digests(self, prepared: bool = False) -> dict[str, str]:
        """{training, validation: digest} a checkpoint keeps and a resume compares (``callbacks.fitted_rows_digests``):
        of the items drawn into each split and their labels, and with ``prepared``, of how they are made into inputs
        too ({} where :meth:`preparation` says nothing). Hashed once per set-up."""
        how = self.preparation() if prepared else b""
        if how is None or not self.rows:
            return {}
        key = (prepared, id(self.rows.get("train")), id(self.rows.get("val")))
        cached = getattr(self, "_resume_digests", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        digests = {}
        for context, name in (("training", "train"), ("validation", "val")):
            rows = self.rows.get(name)
            if rows is None or not len(rows):
                continue
            digests[context] = items_digest(self.resume_identity(rows.x.numpy()), rows.y.numpy(), how)
        self._resume_digests = (key, digests)
        return digests

    def fit_preprocessing_rows(self, train: Split) -> None:
        """Learn preprocessing statistics from the training rows (read here as needed)."""

    # ----- setup ----------------------------------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        if self.spec is not None:
            return
        per_item = self.streamed_only_transforms()
        if self.in_memory is True and per_item:  # before anything is read
            raise DataError(f"data.in_memory=true cannot apply {', '.join(per_item)} (drawn per {self.item_noun} "
                            "while it is read); set data.in_memory=false or auto, or turn them off")
        data = self.load()
        if self.limit_rows:
            data.train, data.val, data.test = (None if split is None else self._limit(split)
                                               for split in (data.train, data.val, data.test))
        train, val, test = self._test_file_splits(data) if self.test_file_only else self._split(data)
        self.rows = {"train": train, "val": val, "test": test}
        self.fit_preprocessing_rows(train)
        self.streamed, self.path_reason = self._choose_path()
        self.eval_batch_size = self._eval_batch_size_setting or (
            self.batch_size if self.streamed else max(self.batch_size, 1024))
        if not self.streamed:
            self.train_split, self.val_split, self.test_split = (self.read_split(self.rows[name])
                                                                 for name in ("train", "val", "test"))
            # files whose header read well but whose contents did not (a truncated image) are out of the splits
            # read: the sizes announced, the data sets recorded and each test row's file count without them
            self.rows = {name: self.without_skipped(rows) for name, rows in self.rows.items()}
        self.spec = self.describe_rows(train, data.class_names)
        self.announce()

    def evaluation_rows(self, split: str) -> int:
        return len(self.rows[split])

    def _limit(self, split: Split) -> Split:
        """A seeded random subset (listings are grouped by class: their first rows would be one class)."""
        if len(split) <= self.limit_rows:
            return split
        return split.subset(limited_rows(len(split), self.limit_rows, self.seed))

    def _choose_path(self) -> tuple[bool, str]:
        """(streamed?, why), from data.in_memory."""
        per_item = self.streamed_only_transforms()
        if self.in_memory is True:
            return False, "data.in_memory=true"
        if self.in_memory is False:
            return True, "data.in_memory=false"
        if per_item:
            return True, f"data.in_memory=auto: {', '.join(per_item)} is drawn per {self.item_noun}"
        rows = sum(len(split) for split in self.rows.values())
        size = rows * math.prod(self.item_shape()) * 4
        limit = f"{AUTO_IN_MEMORY_BYTES / 2**20:,.0f} MB"
        if size <= AUTO_IN_MEMORY_BYTES:
            return False, f"data.in_memory=auto: {size / 2**20:,.1f} MB as float32 tensors, at most {limit}"
        return True, f"data.in_memory=auto: {size / 2**20:,.0f} MB as float32 tensors, more than {limit}"

    def describe_rows(self, train: Split, class_names: Optional[list[str]]):
        """The :class:`DataSpec`, from the training labels and the item shape."""
        spec = super().describe(Split(torch.empty((len(train), *self.item_shape()), device="meta"), train.y),
                                class_names)
        return spec

    def announce(self) -> None:
        if self.streamed:
            workers = f"{self.num_workers} DataLoader worker{'s' if self.num_workers != 1 else ''}"
            how = f"streamed from the files ({workers}; {self.path_reason})"
        else:
            how = f"read into memory ({self.path_reason})"
        # without the files found unreadable so far (streamed: while the statistics were taken), as the note counts
        sizes = [len(self.without_skipped(self.rows[name])) for name in ("train", "val", "test")]
        announce_splits(self, how, sizes, self.item_noun, self.split_notes + self._skip_note())

    def without_skipped(self, rows: Split) -> Split:
        """``rows`` without those left out as unreadable so far (data.skip_bad_files)."""
        if not self.skipped:
            return rows
        kept = [position for position, row in enumerate(rows.x.tolist()) if self.row_name(row) not in self.skipped]
        return rows if len(kept) == len(rows) else rows.subset(np.asarray(kept, dtype=np.int64))

    def _skip_note(self) -> list[str]:
        if not self.skipped:
            return []
        return [f"left out {len(self.skipped)} unreadable file(s) (data.skip_bad_files=true; each named in a "
                "'Data: left out' line)"]

    # ----- reading -------------------------------------------------------------------------------------------
    def dataset(self, rows: Split, train: bool) -> ItemDataset:
        random = train and self.random_transform()
        return ItemDataset(rows.x.numpy(), rows.y.numpy(), self.reader(), self.transform(train), self.seed, random)

    def unreadable(self, failed: list[tuple[int, str]]) -> None:
        """Refuse the first unreadable item with one line, or (skip_bad_files) note each one once."""
        for row, reason in failed:
            if not self.skip_bad_files:
                raise DataError(f"{self.row_name(row)}: cannot read the {self.item_noun} ({reason}); remove or "
                                "replace the file, or set data.skip_bad_files=true to leave such files out")
            self.leave_out(self.row_name(row), reason)

    def leave_out(self, name: str, reason: str) -> None:
        """An unreadable item left out (data.skip_bad_files), named once, when found: in set-up (before the data
        line, which counts them) or while training."""
        if name not in self.skipped:
            self.skipped[name] = reason
            print(f"Data: left out unreadable {self.item_noun} {name} ({reason}; data.skip_bad_files=true)", flush=True)

    def _reading_loader(self, dataset: Dataset, batch_size: int = READ_BATCH) -> DataLoader:
        """A one-pass loader for setup-time reading (no shuffling, workers not kept)."""
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate_items, generator=torch.Generator(), worker_init_fn=quiet_worker)

    def read_rows(self, rows: Split, train: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """The rows in order, in batches of (x, y), read in the workers; unreadable ones as :meth:`unreadable` says."""
        for x, y, failed in self._reading_loader(self.dataset(rows, train)):
            self.unreadable(failed)
            if len(y):
                yield x, y

    def read_split(self, rows: Split) -> Split:
        """The rows read into one tensor (the in-memory path), without a second copy while reading."""
        x = torch.empty((len(rows), *self.item_shape()), dtype=torch.float32)
        y = torch.empty(len(rows), dtype=torch.long)
        filled = 0
        for batch_x, batch_y in self.read_rows(rows):
            x[filled : filled + len(batch_y)] = batch_x
            y[filled : filled + len(batch_y)] = batch_y
            filled += len(batch_y)
        return Split(x[:filled], y[:filled])

    # ----- Lightning hooks -----------------------------------------------------------------------------------
    def _loader(self, name: str, train: bool) -> DeferredLoader:
        rank, world_size = self._rank()
        dataset = self.dataset(self.rows[name], train)
        sampler = EpochSampler(dataset, num_replicas=world_size, rank=rank, shuffle=train, seed=self.seed,
                               epoch_fn=self._epoch)
        workers = self.num_workers
        return DeferredLoader(DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_items,
            pin_memory=self._pin_memory(),
            persistent_workers=self.persistent_workers and workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            # the loader's base seed would otherwise be drawn from (and advance) the global RNG every epoch
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=quiet_worker,
        ))

    def _pin_memory(self) -> bool:
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self):
        return self._loader("train", True) if self.streamed else super().train_dataloader()

    def val_dataloader(self):
        return self._loader("val", False) if self.streamed else super().val_dataloader()

    def test_dataloader(self):
        return self._loader("test", False) if self.streamed else super().test_dataloader()

    def predict_dataloader(self):
        return self.test_dataloader()

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if len(batch) == 3:  # a streamed batch: (x, y, unreadable items)
            x, y, failed = batch
            self.unreadable(failed)
            return x, y
        return batch

    # ----- what tracking reads -------------------------------------------------------------------------------
    def example_input(self, rows: int = 4) -> Tensor:
        if not self.streamed:
            return super().example_input(rows)
        test = self.rows["test"]
        return next(self.read_rows(test.subset(np.arange(min(rows, len(test))))))[0]

    def evaluation_batches(self, split: Optional[Split]):
        """(x, y) batches of every row of a split once, in order. Streamed, the split is not in memory
        (``test_split`` is None): the test split is read batch by batch."""
        if not self.streamed:
            return super().evaluation_batches(split)
        return self.test_batches()

    def test_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The whole test split in evaluation batches of (x, y), without holding it in memory."""
        if not self.streamed:
            split = self.test_split
            for start in range(0, len(split), self.eval_batch_size):
                yield split.x[start : start + self.eval_batch_size], split.y[start : start + self.eval_batch_size]
            return
        for x, y, failed in self._reading_loader(self.dataset(self.rows["test"], False), self.eval_batch_size):
            self.unreadable(failed)
            if len(y):
                yield x, y

    def dataset_records(self) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
        """MLflow dataset context -> (digest, features, targets) of each split. The digest covers what
        :meth:`row_records` says identifies the items, and the labels: no item is read."""
        records = {}
        for context, name in (("training", "train"), ("validation", "val"), ("testing", "test")):
            rows = self.rows[name]
            if not len(rows):  # no validation rows (data.val_fraction=0): no data set input
                continue
            features, identity = self.row_records(rows.x.numpy())
            records[context] = (items_digest(identity, rows.y.numpy()), features, rows.y.numpy())
        return records
