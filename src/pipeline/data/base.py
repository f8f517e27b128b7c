"""In-memory data modules: every data set the pipeline knows is loaded into tensors once,
split (fixed split, seeded hold-out, or one fold of K-fold CV), preprocessed with statistics
of the training split only, and batched by shuffled index slicing.

A subclass implements ``load()`` (raw tensors) and, where needed, ``fit_preprocessing`` /
``apply_preprocessing``. It never knows which model will consume the batches: it only
describes them through ``spec`` (a :class:`DataSpec`).
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from pipeline.errors import DataError

log = logging.getLogger(__name__)


#: regression targets are held in float64: float32 keeps 24 bits, so targets of 1e9 that vary by 100 would be
#: rounded to steps of 64 (and their metrics with them); the loss still sees float32 standardised targets
REGRESSION_TARGET = torch.float64


@dataclass
class Split:
    x: Tensor
    y: Tensor
    #: each row's place in the data set as its loader gave it, where the data module numbers them
    #: (:attr:`InMemoryDataModule.numbers_rows`): kept through data.limit_rows and the splits, for predictions/test.csv
    rows: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray | Tensor) -> "Split":
        index = torch.as_tensor(index, dtype=torch.long)
        return Split(self.x[index], self.y[index], None if self.rows is None else self.rows[index.numpy()])


def rows_digest(parts) -> str:
    """A content hash of arrays or tensors (values, dtype and shape): equal only for the same rows."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        array = np.ascontiguousarray(part.detach().cpu().numpy() if isinstance(part, Tensor) else part)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def limited_rows(rows: int, limit: int, seed: int) -> np.ndarray:
    """``data.limit_rows``: the positions of a seeded random subset of ``limit`` of ``rows`` rows, in their order
    (all of them when there are no more). Not the first rows: a file sorted by label (iris by species, a text
    export by class, an image listing by folder) would give one class."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))


@dataclass
class LoadedData:
    """What ``load()`` returns: a train split and, when the data set has them, fixed val/test splits."""

    train: Split
    test: Optional[Split] = None
    val: Optional[Split] = None
    class_names: Optional[list[str]] = None


@dataclass
class DataSpec:
    """What a model needs to know about its inputs and outputs, and nothing more."""

    input_shape: tuple[int, ...]
    num_outputs: int
    task_kind: str  # "regression" | "classification"
    num_classes: Optional[int] = None
    vocab_size: Optional[int] = None
    class_names: Optional[list[str]] = None
    extra: dict = field(default_factory=dict)
    # further constructor arguments of the model that only the data knows (e.g. categorical cardinalities)
    model_inputs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able values (saved beside a run's checkpoints, to rebuild its model)."""
        return {**asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        return cls(**{**values, "input_shape": tuple(values["input_shape"])})


class TensorBatcher:
    """Iterates over tensors in (optionally shuffled) contiguous index slices.

    Replaces a per-row DataLoader + collate for data that fits in memory. The permutation is
    drawn from ``seed + epoch`` so a resumed run sees the same order as an uninterrupted one.
    Under data parallelism each rank takes a disjoint, equally long shard of the permutation
    (padded by wrapping around, like ``DistributedSampler``).
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        epoch_fn: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch_fn = epoch_fn
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.num_rows = len(self.tensors[0])

    def _shard_size(self) -> int:
        return math.ceil(self.num_rows / self.world_size)

    def __len__(self) -> int:
        rows = self._shard_size()
        return rows // self.batch_size if self.drop_last else math.ceil(rows / self.batch_size)

    def _indices(self) -> Optional[Tensor]:
        if not self.shuffle and self.world_size == 1:
            return None  # plain contiguous slices: no gather needed
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch_fn())
            order = torch.randperm(self.num_rows, generator=generator)
        else:
            order = torch.arange(self.num_rows)
        if self.world_size > 1:
            total = self._shard_size() * self.world_size
            if total > self.num_rows:
                order = torch.cat([order, order[: total - self.num_rows]])
            order = order[self.rank : total : self.world_size]
        return order

    def __iter__(self):
        order = self._indices()
        rows = self.num_rows if order is None else len(order)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = min(start + self.batch_size, rows)
            if order is None:
                yield tuple(t[start:stop] for t in self.tensors)
            else:
                index = order[start:stop]
                yield tuple(t[index] for t in self.tensors)


class InMemoryDataModule(pl.LightningDataModule):
    """Base for every data set. Subclasses set ``modality``/``task_kind`` and implement ``load``."""

    modality: ClassVar[str] = "tabular"  # "tabular" | "image" | "text"
    task_kind: ClassVar[str] = "classification"  # "regression" | "classification"
    #: Data sets with an official test split set this; the others get a seeded hold-out split.
    name: ClassVar[str] = "data"
    #: Whether the data set can read its test file (``data.test_path``) without its training data, when a trained
    #: run's preprocessing is used (``use_fitted``): ``pipeline-eval <run> data.test_path=new.csv`` then needs only
    #: the new file, not the files the run was trained on (see :meth:`test_file_alone`).
    reads_test_file_alone: ClassVar[bool] = False
    #: Whether the rows of a data set loaded as one array are numbered (:attr:`Split.rows`) so that
    #: predictions/test.csv names each test row's place in it (``data_row``): its ``row`` is the place in the test
    #: split, which a random hold-out (and data.limit_rows) draws, so that rows could not be joined back to the data.
    numbers_rows: ClassVar[bool] = False

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: Optional[int] = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        cv_folds: Optional[int] = None,
        fold: int = 0,
        seed: int = 0,
        limit_rows: Optional[int] = None,
    ):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 1024)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.cv_folds = cv_folds
        self.fold = fold
        self.seed = seed
        self.limit_rows = limit_rows
        self.train_split: Optional[Split] = None
        self.val_split: Optional[Split] = None
        self.test_split: Optional[Split] = None
        self.spec: Optional[DataSpec] = None
        self.rows_digests: dict[str, str] = {}  # MLflow dataset context -> digest of the split's rows (setup)
        self.test_file_only = False  # test_file_alone(): load() reads the test file alone, as LoadedData.test

    def test_file_alone(self) -> bool:
        """Read only the test file (``data.test_path``) from now on, with the trained run's preprocessing that
        :meth:`use_fitted` took: the training and validation splits are empty, and the files the run was trained
        on need not exist (an evaluation on new rows, from another folder or machine). False where this data
        set cannot, or has no test file of its own (under ``data.cv_folds`` the folds pool it with the training
        data)."""
        if not self.reads_test_file_alone or getattr(self, "test_path", None) is None or self.cv_folds:
            return False
        self.test_file_only = True
        return True

    # ----- to implement in subclasses -------------------------------------------------
    def load(self) -> LoadedData:
        raise NotImplementedError

    def fit_preprocessing(self, train: Split) -> None:
        """Learn preprocessing statistics (scaling, vocabulary) from the training split only."""

    def apply_preprocessing(self, split: Split) -> Split:
        return split

    def describe(self, train: Split, class_names: Optional[list[str]]) -> DataSpec:
        input_shape = tuple(train.x.shape[1:])
        if self.task_kind == "regression":
            return DataSpec(input_shape, 1, "regression")
        num_classes = int(train.y.max().item()) + 1 if class_names is None else len(class_names)
        num_classes = max(num_classes, 2)
        # the training rows per class: what task.class_weights=balanced weighs by
        counts = torch.bincount(train.y.reshape(-1).long().cpu(), minlength=num_classes).tolist()
        return DataSpec(
            input_shape,
            1 if num_classes == 2 else num_classes,
            "classification",
            num_classes=num_classes,
            class_names=class_names,
            extra={"class_counts": counts},
        )

    def save_artifacts(self, directory: Path) -> list[Path]:
        """Files ``pipeline-predict <checkpoint>`` needs beside the checkpoint (see :func:`save_raw_input_artifacts`)."""
        return save_raw_input_artifacts(self, directory)

    def use_fitted(self, adapter_state: Optional[dict], spec: dict) -> bool:
        """Take the preprocessing a trained run fitted (its ``data/preprocessing.json``, absent for a data set
        without a raw input adapter, and ``model_spec.json``) instead of fitting it again on this config's
        training rows, so that ``pipeline-eval`` can test the model on other rows (``data.test_path``) with the
        inputs it was trained on. False where a data set cannot (or the run read its data otherwise): its
        preprocessing is then fitted again, and :func:`fitted_differences` tells whether it came out the same."""
        return False

    @classmethod
    def model_takes_raw_rows(cls) -> bool:
        """Whether this data's logged model will take raw rows (:meth:`raw_input_adapter` not None), said by the class
        alone, before any data is read. The classes that say no are listed in ``pipeline.data.TENSOR_MODEL_DATA``
        (``pipeline-train`` reads the list before it imports them; a test keeps the two in step)."""
        return True

    def raw_input_adapter(self):
        """An object that turns a pandas DataFrame of raw inputs (a table's columns; later an image ``path``
        or a ``text`` column) into this model's input tensor, or None when the data set has none (the model
        is then logged to take tensors). It must provide ``transform(frame) -> Tensor``, ``input_schema() ->
        [(column, kind)]``, ``input_example() -> DataFrame``, ``to_dict()`` with a classmethod
        ``from_dict(state)``, and its class must live in a module that imports only numpy, pandas and torch:
        that file is stored with the logged model and imported from there when the model is loaded."""
        return None

    # ----- splitting ---------------------------------------------------------------------
    def _split(self, data: LoadedData) -> tuple[Split, Split, Split]:
        rng = np.random.default_rng(self.seed)
        if self.cv_folds:
            full = data.train if data.test is None else _concat(data.train, data.test)
            if data.val is not None:
                full = _concat(full, data.val)
            train, test = self._fold(full)
            val = None
        else:
            train, test, val = data.train, data.test, data.val
            if test is None:
                train, test = self._holdout(train, self.test_fraction, rng)
        if self.val_fraction == 0:  # data.val_fraction=0: every training row trains, the data's validation rows too
            train = train if val is None else _concat(train, val)
            val = train.subset(np.arange(0))
        elif val is None:
            train, val = self._holdout(train, self.val_fraction, rng)
        for name, split in (("train", train), ("validation", val), ("test", test)):
            if len(split) == 0 and not (name == "validation" and self.val_fraction == 0):
                raise DataError(f"data: the {name} split of '{self.name}' is empty; use more rows or other split fractions")
        return train, val, test

    def _test_file_splits(self, data: LoadedData) -> tuple[Split, Split, Split]:
        """The splits of an evaluation on the test file alone (:meth:`test_file_alone`): its rows, nothing to train
        or validate on."""
        empty = data.test.subset(np.arange(0))
        return empty, empty, data.test

    def row_identity(self, split: Split) -> list:
        """What identifies the rows of ``split`` as drawn, before any preprocessing (arrays or tensors): what the
        split's digest covers (:attr:`rows_digests`). Here its raw inputs and targets."""
        return [split.x, split.y]

    def how_split(self) -> list[str]:
        """What the run's data line says about how the splits were drawn, besides their sizes."""
        return []

    def split_order(self, split: Split) -> Optional[np.ndarray]:
        """A time (or any order) of each row of ``split``: a held-out split is then its latest rows, so the model is
        tested on what came after what it learned from; None: rows are drawn at random."""
        return None

    def split_groups(self, split: Split) -> Optional[np.ndarray]:
        """The group of each row of ``split`` (a patient, a user: rows of one group are held out together, so no
        group is both trained and tested on), or None: every row on its own."""
        return None

    def _holdout(self, split: Split, fraction: float, rng: np.random.Generator) -> tuple[Split, Split]:
        n = len(split)
        if n < 2:
            raise DataError(f"data: {n} row(s) of '{self.name}' cannot be split into a training and a held-out "
                            "split; the train, validation or test split would be empty; use more rows")
        groups, order = self.split_groups(split), self.split_order(split)
        if groups is not None or order is not None:
            mask = (_group_mask(groups, split.y.numpy(), fraction, rng, self._stratified()) if order is None
                    else _latest_mask(order, fraction))
            if groups is not None and abs(mask.mean() - fraction) > 0.1:
                log.warning("data.groups: a held-out split of %s takes %d of %d groups, %.0f %% of the rows where %.0f %% "
                            "were asked: groups are held out whole; with more (or more even) groups the splits come "
                            "closer to the fractions", self.name, len(np.unique(groups[mask])), len(np.unique(groups)),
                            100 * mask.mean(), 100 * fraction)
            return split.subset(np.flatnonzero(~mask)), split.subset(np.flatnonzero(mask))
        n_out = max(1, int(round(n * fraction)))
        if self._stratified():
            order = _stratified_order(split.y.numpy(), rng)
            held = _every_kth(n, n_out, rng)
            mask = np.zeros(n, dtype=bool)
            mask[order[held]] = True
        else:
            mask = np.zeros(n, dtype=bool)
            mask[rng.permutation(n)[:n_out]] = True
        return split.subset(np.flatnonzero(~mask)), split.subset(np.flatnonzero(mask))

    def _stratified(self) -> bool:
        """Whether splits keep the class proportions: the task kind says (classification does)."""
        from pipeline.tasks import task_kind

        return task_kind(self.task_kind).stratify

    def _fold(self, full: Split) -> tuple[Split, Split]:
        from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

        groups = self.split_groups(full)
        if groups is not None:
            count = len(np.unique(groups))
            if count < self.cv_folds:
                raise DataError(f"data.groups: {count} groups cannot fill data.cv_folds={self.cv_folds} folds "
                                "(a fold holds whole groups); use fewer folds")
            kind = StratifiedGroupKFold if self._stratified() else GroupKFold
            folds = list(kind(self.cv_folds, shuffle=True, random_state=self.seed).split(
                np.zeros(len(full)), full.y.numpy(), groups))
            train_index, test_index = folds[self.fold]
            return full.subset(train_index), full.subset(test_index)
        if self._stratified():
            splitter = StratifiedKFold(self.cv_folds, shuffle=True, random_state=self.seed)
        else:
            splitter = KFold(self.cv_folds, shuffle=True, random_state=self.seed)
        folds = list(splitter.split(np.zeros(len(full)), full.y.numpy()))
        train_index, test_index = folds[self.fold]
        return full.subset(train_index), full.subset(test_index)

    # ----- Lightning hooks -----------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_split is not None:
            return
        data = self.load()
        if self.numbers_rows and data.test is None and data.val is None:  # one array: its positions say the row
            data.train.rows = np.arange(len(data.train))
        if self.limit_rows:
            data.train, data.val, data.test = (
                None if split is None else split.subset(limited_rows(len(split), self.limit_rows, self.seed))
                for split in (data.train, data.val, data.test))
        train, val, test = self._test_file_splits(data) if self.test_file_only else self._split(data)
        self.test_rows = test.rows  # before preprocessing, which makes new splits
        # hashed here, before preprocessing fitted on the training rows (standardisation, a vocabulary) changes
        # the inputs: the digests say which rows were drawn, whatever the inputs were made of them
        self.rows_digests = {context: rows_digest(self.row_identity(split)) for context, split in
                             (("training", train), ("validation", val), ("testing", test)) if len(split)}
        self.fit_preprocessing(train)
        self.train_split, self.val_split, self.test_split = (
            self.apply_preprocessing(s) for s in (train, val, test)
        )
        self.spec = self.describe(self.train_split, data.class_names)
        how = "streamed (read and tokenised per batch)" if getattr(self, "streaming", False) else "in memory"
        announce_splits(self, how, (len(self.train_split), len(self.val_split), len(self.test_split)),
                        notes=self.how_split())

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _batcher(self, split: Split, train: bool) -> TensorBatcher:
        rank, world_size = self._rank()
        return TensorBatcher(
            (split.x, split.y),
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            epoch_fn=self._epoch,
            rank=rank,
            world_size=world_size,
        )

    def train_dataloader(self):
        return self._batcher(self.train_split, train=True)

    def val_dataloader(self):
        return self._batcher(self.val_split, train=False)

    def test_dataloader(self):
        return self._batcher(self.test_split, train=False)

    def predict_dataloader(self):
        return self._batcher(self.test_split, train=False)

    def evaluation_rows(self, split: str) -> int:
        """How many rows the ``val`` or ``test`` split holds (the task leaves out the repeats that pad the ranks'
        last shards under DDP)."""
        return len(self.val_split if split == "val" else self.test_split)

    def evaluation_batches(self, split: Split):
        """(x, y) batches of every row of ``split`` once, in order, on this process alone (not sharded
        across ranks): what the run's test-set plots are drawn from."""
        return TensorBatcher((split.x, split.y), self.eval_batch_size, shuffle=False)

    def example_input(self, rows: int = 4) -> Tensor:
        return self.test_split.x[:rows]


def _concat(a: Split, b: Split) -> Split:
    rows = None if a.rows is None or b.rows is None else np.concatenate([a.rows, b.rows])
    return Split(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), rows)


def _group_mask(groups: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator,
                stratified: bool) -> np.ndarray:
    """Rows to hold out: ``fraction`` of the groups, whole (at least one; at least one left). Stratified, the
    groups are ordered by their most common label before every k-th one is taken, as rows are without groups."""
    names, inverse = np.unique(groups, return_inverse=True)
    if len(names) < 2:
        raise DataError(f"data.groups: every row is in one group ({names[0]!r}); a held-out split needs rows of "
                        "another group")
    n_out = min(len(names) - 1, max(1, int(round(len(names) * fraction))))
    if stratified:
        classes = int(labels.max()) + 1
        counts = np.bincount(inverse * classes + labels.astype(np.int64), minlength=len(names) * classes)
        label_of = counts.reshape(len(names), classes).argmax(1)
        order = _stratified_order(label_of, rng)
        held = order[_every_kth(len(names), n_out, rng)]
    else:
        held = rng.permutation(len(names))[:n_out]
    return np.isin(inverse, held)


def _latest_mask(order: np.ndarray, fraction: float) -> np.ndarray:
    """Rows to hold out: the latest ``fraction`` of them by ``order``; rows of the first held-out time all go with it
    (a time is never on both sides)."""
    ranked = np.sort(order, kind="stable")
    first = ranked[len(order) - max(1, int(round(len(order) * fraction)))]
    mask = order >= first
    if mask.all():
        raise DataError("data.order_by: the rows left to split all have one time; a held-out split needs later rows")
    return mask


def _every_kth(n: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    """``n_out`` positions of ``n``, one in every n / n_out, from a random start: taken from a label-sorted order
    they keep the class balance, and a class gets its share rounded up or down at random in proportion (a start
    at 0 always rounded the first class up and the others down: 9 positives of 1,000 rows labelled 1 gave a 10 %
    split none, labelled 0 one)."""
    step = n / n_out
    return np.unique((rng.random() * step + np.arange(n_out) * step).astype(int))


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shuffled = rng.permutation(len(labels))
    return shuffled[np.argsort(labels[shuffled], kind="stable")]


FEW_VALIDATION_ROWS = 10  # fewer validation rows than this choose the tested checkpoint by chance: said


def announce_splits(module: InMemoryDataModule, how: str, sizes: Sequence[int], noun: str = "row",
                    notes: Sequence[str] = ()) -> None:
    """Print at the start of a run (rank 0 only) how the data is read and how many rows each split has."""
    from pytorch_lightning.utilities import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        return
    counts = " / ".join(f"{size:,} {name}" for size, name in zip(sizes, ("train", "validation", "test")))
    notes = list(notes)
    if getattr(module, "test_file_only", False):
        notes.append("the source run's preprocessing; its training data is not read")
    elif getattr(module, "val_fraction", None) == 0:
        notes.append("no validation split (data.val_fraction=0): the last epoch is tested")
    validated = sizes[1] if len(sizes) > 1 else 0
    if 0 < validated < FEW_VALIDATION_ROWS and not getattr(module, "test_file_only", False):
        plural = "s" if validated > 1 else ""
        notes.append(f"the checkpoint tested and early stopping are chosen on only {validated} validation {noun}{plural} "
                     f"(one is {100 / validated:.0f} % of val/acc): hold out more with data.val_fraction")
    if module.cv_folds:
        notes.insert(0, f"data.fold={module.fold} (counted from 0: fold {module.fold + 1} of {module.cv_folds}) of "
                        f"{module.cv_folds}-fold cross-validation is the test split")
    source = getattr(module, "source_label", lambda: module.name)()
    print(f"Data: {source} {how}: {counts} {noun}s" + "".join(f"; {note}" for note in notes), flush=True)


def resolve_first_existing(candidates: Sequence[Path], what: str, how_to_get: str) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(f"{what} not found; looked in: {looked}. {how_to_get}")


def repeats_note(repeated: int, rows: int, what: str) -> Optional[str]:
    """The data line's note that ``repeated`` of the ``rows`` test rows repeat ``what`` (a training row's inputs, a
    training text) exactly: the test metrics then overstate how the model does on new rows. None for none."""
    if not repeated:
        return None
    return (f"{repeated:,} test row{'s' if repeated > 1 else ''} ({repeated / rows:.1%}) repeat"
            f"{'' if repeated > 1 else 's'} {what} exactly")


def test_file_note(test_path: Path, cv_folds: int) -> str:
    """What the data line says of a labelled test file of its own (``data.test_path``): the test split, or, under
    ``data.cv_folds``, a part of the rows the folds are drawn from."""
    test = Path.cwd() / test_path  # an absolute path stays as it is
    return f"the folds pool data.path and {test} (data.test_path)" if cv_folds else f"test split: {test} (data.test_path)"


_WHOLE_NUMBER = re.compile(r"[+-]?\d+(?:\.0*)?")


def one_spelling(label: str) -> str:
    """A class label read from text (a text file's or an image listing's label column) as tables spell classes:
    ``1``, ``1.0`` and ``+1`` are one class, ``"1"``; other labels as written."""
    if _WHOLE_NUMBER.fullmatch(label):
        return str(int(float(label))) if "." in label else str(int(label))
    return label


def label_sort_key(label: str):
    """The order of class names: numbers by value (``2`` before ``10``), then names alphabetically."""
    try:
        value = float(label)
    except ValueError:
        return (1, 0.0, label)
    return (0, value if math.isfinite(value) else 0.0, label)


def without_trailing_punctuation(label: str) -> str:
    """A class label as compared across files: ``>50K.`` (UCI Adult's test file) is ``>50K``."""
    stripped = label.rstrip(" .,;:!")
    return stripped or label


def onto_classes(names: Sequence[str], trained: Sequence[str],
                 key: Optional[str] = None) -> tuple[np.ndarray, Optional[str]]:
    """(for each of ``names``, its index among a trained model's classes ``trained``; the first name that is not
    one of them, or None): how labels read now become the class indices the model was trained with. With ``key``
    (the label's key, for data whose training merges such labels: tables), a label that differs from one trained
    class only by trailing punctuation or space is that class, as in training (a note says so)."""
    trained = list(trained)
    bare = {}
    for index, name in enumerate(trained if key is not None else ()):
        bare.setdefault(without_trailing_punctuation(name), []).append(index)
    indices, unseen, merged = [], None, []
    for name in names:
        if name in trained:
            indices.append(trained.index(name))
            continue
        same = bare.get(without_trailing_punctuation(name), [])
        if len(same) == 1:
            indices.append(same[0])
            merged.append(f"{name!r} as {trained[same[0]]!r}")
            continue
        indices.append(-1)
        unseen = name if unseen is None else unseen
    if merged:
        log.warning("%s: labels that differ from a trained class only by trailing punctuation or space are read as "
                    "that class: %s", key, "; ".join(merged))
    return np.array(indices, dtype=np.int64), unseen


def saved_fitted_state(directory: Optional[Path]) -> Optional[tuple[Optional[dict], dict]]:
    """(preprocessing state or None, model spec) that :func:`save_raw_input_artifacts` wrote into ``directory`` (a
    run's ``data/``); None when it holds no model spec (no folder, or a run from before it was written)."""
    import json

    if directory is None or not (Path(directory) / "model_spec.json").is_file():
        return None
    state = Path(directory) / "preprocessing.json"
    return (json.loads(state.read_text()) if state.is_file() else None,
            json.loads((Path(directory) / "model_spec.json").read_text()))


def fitted_differences(datamodule, adapter_state: Optional[dict], spec: dict) -> list[str]:
    """What the data module's fitted preprocessing and model spec (after ``setup``) differ in from a trained
    run's saved ones: ``preprocessing.<key>`` / ``model_spec.<key>``; empty when they are the same."""
    import json

    adapter = datamodule.raw_input_adapter()
    now = {"preprocessing": adapter.to_dict() if adapter is not None else {},
           "model_spec": datamodule.spec.to_dict() if datamodule.spec is not None else {}}
    saved = {"preprocessing": adapter_state or {}, "model_spec": spec}
    differ = []
    for part in ("preprocessing", "model_spec"):
        # through JSON, as the saved files went: tuples are lists, keys strings
        before, after = (_as_inputs_are_made(json.loads(json.dumps(state[part]))) for state in (saved, now))
        differ += [f"{part}.{key}" for key in sorted(set(before) | set(after))
                   if key not in EXAMPLE_KEYS and before.get(key) != after.get(key)]
    return differ


# a raw input adapter's input examples (a few training rows, for the logged model): not how inputs are made
EXAMPLE_KEYS = ("examples", "example_rows")


def _as_inputs_are_made(state: dict) -> dict:
    """A saved preprocessing state without what does not change a model's inputs: a text tokenizer's padding (to
    ``max_length`` when the texts are held in memory, to each batch's longest when streamed; a batch is trimmed to
    its longest text either way, and the logged model pads on its own), so that a run read one way can be evaluated
    on a test file read the other."""
    import json

    if isinstance(state.get("tokenizer"), str):
        tokenizer = json.loads(state["tokenizer"])
        tokenizer.pop("padding", None)
        state = {**state, "tokenizer": tokenizer}
    return state


def save_raw_input_artifacts(datamodule, directory: Path) -> list[Path]:
    """``preprocessing.json`` (the raw input adapter's state: what turns raw texts, image files or table rows into
    model inputs) and ``model_spec.json`` (what the model was built for): with a checkpoint, all
    ``pipeline-predict`` needs."""
    import json

    if datamodule.spec is None:
        return []
    adapter = datamodule.raw_input_adapter()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if adapter is not None:
        written.append(directory / "preprocessing.json")
        written[-1].write_text(json.dumps(adapter.to_dict(), indent=1))
    # without an adapter too: pipeline-eval compares the data's spec (its normalisation) with it
    written.append(directory / "model_spec.json")
    written[-1].write_text(json.dumps(datamodule.spec.to_dict(), indent=1))
    return written
