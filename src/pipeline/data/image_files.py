"""Image files at their real resolution: a folder with one sub-folder per class (``data=image_folder``) or a
CSV of ``path,label`` (``data=image_csv``).

Files are listed once (paths, sizes, modification times, labels: no pixels) and their headers checked, so a
file that is not an image is named before anything trains. Images are decoded in ``DataLoader`` workers
(``torchvision.io.decode_image``, EXIF orientation applied, grey/RGBA/CMYK/palette converted to
``data.channels``; PIL for the formats it does not read) and transformed with torchvision's
``transforms.v2``: for training ``RandomResizedCrop`` (or resize + centre crop + padded random crop),
horizontal flips, TrivialAugmentWide or RandAugment, normalisation, ``RandomErasing``; for evaluation
``Resize`` + ``CenterCrop``. See :mod:`pipeline.data.streaming` for the order of the items, the in-memory
choice and resuming.

Folder layouts:
* ``<path>/<class>/...``: every image in one pool; test and validation splits are held out of it;
* ``<path>/train/<class>/...`` with ``val/`` and/or ``test/`` beside it: fixed splits. With ``train/`` and
  ``val/`` but no ``test/`` (the PyTorch transfer-learning tutorial's layout), ``val/`` is the split the run
  reports as ``test/*`` and the validation split that selects the checkpoint is held out of ``train/``, so the
  reported figure is not the one the checkpoint was chosen on. The run says so when it starts.
"""
from __future__ import annotations

import logging
import os
import unicodedata
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from . import raw_inputs
from .base import DataError, DataSpec, LoadedData, Split, label_sort_key, one_spelling
from .images import ImageDataModule, auto_augment_on, imagenet_statistics
from .streaming import ItemDataset, StreamedDataModule, UnreadableItem

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = raw_inputs.IMAGE_EXTENSIONS  # what torchvision's ImageFolder reads, and more
#: how many training images the "dataset" normalisation statistics are estimated from
STATISTICS_SAMPLE = 1000
#: split folder names, in any case (Kaggle's Training/ and Testing/, training_set/ and test_set/ too)
TRAIN_FOLDERS = ("train", "training", "train_set", "training_set", "trainset")
VAL_FOLDERS = ("val", "valid", "validation", "val_set", "valid_set", "validation_set")
TEST_FOLDERS = ("test", "testing", "test_set", "testing_set", "testset")
AUTO_AUGMENTS = ("trivial", "randaugment")

# torchvision 0.29 warns on every decode that its decoders will move to TorchCodec; they are used while they
# exist (see _torchvision_decoder) and the warning says nothing a user can act on
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


# ----- reading one image (runs in the DataLoader workers: everything here pickles) ------------------------------
def decode_image_file(path: str, channels: int) -> Tensor:
    """The image at ``path`` as uint8 (channels, H, W), upright (EXIF orientation applied); raises
    :class:`UnreadableItem`. (The decoding itself is :mod:`pipeline.data.raw_inputs`', which the logged model
    carries: served images are decoded as training ones.)"""
    try:
        return raw_inputs.decode_image_file(path, channels)
    except raw_inputs.UnreadableImage as error:
        raise UnreadableItem(str(error)) from None


_reason = raw_inputs.reason



def listed_path(root: Path, image: str) -> str:
    """A listing's path as written, or with its backslashes read as folder separators where it was written on Windows
    (``train\\cats\\1.png``) and only that spelling names a file here."""
    image = image.strip()
    if "\\" in image and os.sep == "/" and not (root / image).exists():
        written = image.replace("\\", "/")
        if (root / written).exists():
            return written
    return image


class ImageFileReader:
    """row -> uint8 image; the paths are one numpy string array (no Python object per file, so forked workers
    do not copy the list page by page as they touch reference counts)."""

    def __init__(self, root: Path, relative_paths: np.ndarray, channels: int):
        self.root = str(root)
        self.relative_paths = relative_paths
        self.channels = channels

    def __call__(self, row: int) -> Tensor:
        return decode_image_file(os.path.join(self.root, str(self.relative_paths[row])), self.channels)


def header_problem(path: Path) -> Optional[str]:
    """Why ``path`` is not an image, from its header alone (cheap: no pixels are decoded), or None. A PNG whose header
    PIL refuses is named as :func:`raw_inputs.decode_image_file` names it (pipeline-predict reads no header first):
    "damaged PNG data: ..." in both, where training said "not an image file PIL or torchvision can read" or "Truncated
    File Read" for a file pipeline-predict called damaged PNG data."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return None
    except UnidentifiedImageError as error:
        refused: BaseException = error
    except Exception as error:
        refused = error
    damage = _png_damage(path)  # only for the files refused: the whole file is read
    if damage is not None:
        return f"damaged PNG data: {damage}"
    if isinstance(refused, UnidentifiedImageError):
        return "not an image file PIL or torchvision can read"
    return _reason(refused)


def _png_damage(path: Path) -> Optional[str]:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return raw_inputs._png_damage(data) if data[:8] == raw_inputs.PNG_SIGNATURE else None


# ----- the data modules -------------------------------------------------------------------------------------------
class ImageFiles(StreamedDataModule, ImageDataModule):
    """What the folder and CSV layouts share: transforms, normalisation, the file table, the split rules.

    Read into memory (``data.in_memory``), images are decoded once with the evaluation transform and training
    batches are augmented on the device by :class:`ImageDataModule` (``crop_padding``, ``hflip``, ``erasing``);
    streamed, every training image gets the per-image ``transforms.v2`` pipeline.
    """

    # what a split's digest covers, said where a digest differs from a run's (pipeline-rerun, pipeline-eval)
    digest_covers = ("a file's path, size and modification time: a copy that did not keep the times, cp without -p, "
                     "counts as changed")

    modality: ClassVar[str] = "image"
    task_kind: ClassVar[str] = "classification"
    item_noun: ClassVar[str] = "image"

    def __init__(
        self,
        path: str = "",
        image_size: int = 224,
        resize_size: Optional[int] = None,
        channels: int = 3,
        random_resized_crop: bool = True,
        crop_scale: Sequence[float] = (0.08, 1.0),
        auto_augment: Optional[str] = None,
        augment: bool = True,
        hflip: bool = True,
        **kwargs,
    ):
        super().__init__(augment=augment, hflip=hflip, **kwargs)
        if channels not in (1, 3):
            raise DataError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise DataError(f"data.image_size must be >= 1, got {image_size}")
        if resize_size is not None and resize_size < image_size:
            raise DataError(f"data.resize_size={resize_size} must be >= data.image_size={image_size} "
                            "(evaluation resizes to it, then crops the centre image_size square)")
        scale = tuple(float(v) for v in crop_scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise DataError(f"data.crop_scale={list(crop_scale)} must be [min, max] with 0 < min <= max <= 1")
        if not auto_augment_on(auto_augment):
            auto_augment = None
        elif auto_augment not in AUTO_AUGMENTS:
            raise DataError(f"data.auto_augment={auto_augment!r} is not allowed; choose one of "
                            f"{', '.join(AUTO_AUGMENTS)} or none")
        self.path = Path(path) if path else None
        self.image_size = int(image_size)
        self.resize_size = int(resize_size) if resize_size is not None else self.image_size
        self.channels = channels
        self.random_resized_crop = bool(random_resized_crop)
        self.crop_scale = scale
        self.auto_augment = auto_augment
        self.root: Optional[Path] = None
        self.fitted: Optional[tuple[dict, DataSpec]] = None  # a trained run's (image input state, spec): use_fitted
        self.files = np.array([], dtype=str)  # paths relative to root, one per row
        self.file_sizes = np.array([], dtype=np.int64)
        self.file_mtimes = np.array([], dtype=np.int64)

    def use_fitted(self, adapter_state: Optional[dict], spec: dict) -> bool:
        """The run's normalisation (the statistics of its training images) and classes, for images read at the
        run's size and channels; instead of statistics taken again from this config's training images."""
        state = adapter_state or {}
        same_reading = [state.get(key) for key in ("channels", "image_size", "resize_size")] == [
            self.channels, self.image_size, self.resize_size]
        if state.get("class") != raw_inputs.ImageInput.__name__ or not same_reading:
            return False
        if self.normalize and state.get("mean") is not None:  # data.normalization as the run had it, or refit
            imagenet = self.channels in (1, 3) and np.allclose(state["mean"], imagenet_statistics(self.channels)[0])
            if imagenet != (self.normalization == "imagenet"):
                return False
        self.fitted = adapter_state, DataSpec.from_dict(spec)
        return True

    # ----- the file table ----------------------------------------------------------------------------------
    def _resolved_path(self, what: str) -> Path:
        if self.path is None:
            raise DataError(f"data.path is required for data={self.name} ({what})")
        return self.path if self.path.is_absolute() else Path.cwd() / self.path

    def _set_table(self, root: Path, files: list[str]) -> list[Optional[str]]:
        """Record the files (relative to ``root``) with their sizes and modification times; returns, per
        file, why it cannot be read (missing, empty, not an image) or None."""
        self.root = root
        sizes, mtimes, problems = [], [], []
        for name in files:
            path = root / name
            try:
                stat = path.stat()
            except OSError as error:
                sizes.append(-1)
                mtimes.append(-1)
                problems.append("no such file" if isinstance(error, FileNotFoundError) else _reason(error))
                continue
            sizes.append(stat.st_size)
            mtimes.append(stat.st_mtime_ns)
            problems.append("empty file" if stat.st_size == 0 else header_problem(path))
        self.files = np.array(files, dtype=str)
        self.file_sizes = np.array(sizes, dtype=np.int64)
        self.file_mtimes = np.array(mtimes, dtype=np.int64)
        return problems

    def _drop_unreadable(self, parts: dict[str, list[tuple[int, int]]], problems: list[Optional[str]]):
        """Refuse the first unreadable file, or (skip_bad_files) leave them all out and note them."""
        bad = [row for row, problem in enumerate(problems) if problem is not None]
        if not bad:
            return parts
        if not self.skip_bad_files:
            first = bad[0]
            # a header is read for every file first; a file cut short after its header is found only as it is decoded
            more = (f" ({len(bad)} files in all are no image by their first bytes; one cut short further on is found "
                    "only when it is read)") if len(bad) > 1 else ""
            raise DataError(f"{self.row_name(first)}: cannot read the image ({problems[first]}){more}; remove or "
                            "replace it, or set data.skip_bad_files=true to leave such files out")
        for row in bad:
            self.leave_out(self.row_name(row), problems[row])
        bad_rows = set(bad)
        return {name: [(row, label) for row, label in rows if row not in bad_rows] for name, rows in parts.items()}

    def _arrange(self, parts: dict[str, list[tuple[int, int]]], class_names: list[str],
                 sources: dict[str, str]) -> LoadedData:
        """The fixed splits (``train`` and optionally ``val``, ``test``: rows and labels) for the base class to
        split, with a note of where each split comes from (``sources`` names them: "train/", "the val rows")."""
        def split(name: str) -> Optional[Split]:
            rows = parts.get(name)
            if rows is None:
                return None
            ids = torch.as_tensor([row for row, _ in rows], dtype=torch.long)
            labels = torch.as_tensor([label for _, label in rows], dtype=torch.long)
            return Split(ids.view(-1), labels.view(-1))

        train, val, test = split("train"), split("val"), split("test")
        share = f"{self.val_fraction:.0%} of {sources['train']}" if self.val_fraction else "none"
        if self.cv_folds:
            pooled = ", ".join(sources[name] for name in ("train", "val", "test") if parts.get(name) is not None)
            self.split_notes = [f"the folds pool {pooled}"] if (val or test) else []
        elif val is not None and test is None:
            # the transfer-learning tutorial's train/ + val/: report on val/, select the checkpoint on a cut of train/
            test, val = val, None
            selection = f" and the validation split, which selects the checkpoint, is {share}" if self.val_fraction else ""
            self.split_notes = [f"no test split given: {sources['val']} is the test split (reported as test/*)"
                                + selection]
        elif test is None:
            self.split_notes = [f"test {self.test_fraction:.0%} and validation {self.val_fraction:.0%} of the rest "
                                f"held out of {sources['train']}"]
        elif val is None:
            self.split_notes = [f"test split: {sources['test']}; validation split: {share}"]
        else:
            self.split_notes = [f"splits as given: {sources['train']}, {sources['val']}, {sources['test']}"]
        return LoadedData(train=train, val=val, test=test, class_names=class_names)

    def _test_files_alone(self, root: Path, files: list[str], labels: list[str], source: str) -> LoadedData:
        """The test images alone (``test_file_alone``): ``files`` relative to ``root``, labelled as the trained
        run's classes; a label it was not trained on is refused."""
        trained = list(self.fitted[1].class_names or [])
        index_of = {_one_form(name): index for index, name in enumerate(trained)}
        unknown = sorted({label for label in labels if _one_form(label) not in index_of})
        if unknown:
            respelled = _spelled_in_training(unknown[:5], trained)
            if self.test_path is not None and self.test_path.is_dir():
                respelled += _split_folders_hint(self.test_path, unknown)
            raise DataError(f"{source}: labels {unknown[:5]} are not classes the model was trained on "
                            f"({', '.join(map(repr, trained))}){respelled}")
        parts = self._drop_unreadable({"test": [(row, index_of[_one_form(label)]) for row, label in enumerate(labels)]},
                                      self._set_table(root, files))
        self.split_notes = [f"test split: {source}"]
        test = Split(torch.as_tensor([row for row, _ in parts["test"]], dtype=torch.long).view(-1),
                     torch.as_tensor([label for _, label in parts["test"]], dtype=torch.long).view(-1))
        return LoadedData(train=None, test=test, class_names=trained)

    def _split(self, data: LoadedData) -> tuple[Split, Split, Split]:
        train, val, test = super()._split(data)
        repeated = self._repeated_files(train, test)
        if repeated:
            self.split_notes = [*self.split_notes, f"{repeated:,} test image{'s' if repeated > 1 else ''} "
                                f"({repeated / len(test):.1%}) "
                                f"{'are also training images' if repeated > 1 else 'is also a training image'} (the "
                                "same file): the test metrics overstate how the model does on new images"]
        return train, val, test

    def test_row_sources(self) -> tuple[str, list[str]]:
        """The file of each test row, in the test split's order (a ``path`` column of predictions/test.csv)."""
        # the test pass of a streamed run may have left out more unreadable files since setup
        return "path", [self._path_of(row) for row in self.without_skipped(self.rows["test"]).x.tolist()]

    def _path_of(self, row: int) -> str:
        return os.path.normpath(os.path.join(str(self.root), str(self.files[row])))

    def _repeated_files(self, train: Split, test: Split) -> int:
        """How many test rows name a file a training row names too (a test folder that is the training folder, a
        listing with a path in both splits)."""
        trained = {self._path_of(row) for row in train.x.tolist()}
        return sum(self._path_of(row) in trained for row in test.x.tolist())

    def _check_classes(self, train: list[tuple[int, int]], class_names: Sequence[str], where: str,
                       images_of: Optional[Callable[[str], str]] = None) -> None:
        """Refuse training images of fewer than two classes, or a class whose every training image was left out as
        unreadable (data.skip_bad_files): the model would have a class it never saw an image of. ``images_of(name)``
        names where that class's images are (default: the training rows labelled ``name`` in ``where``)."""
        present = [class_names[label] for label in sorted({label for _, label in train})]
        lost = [name for name in class_names if name not in present]
        if lost and present:  # (none readable at all: said below)
            place = images_of(lost[0]) if images_of else f"{where}: no readable training image labelled {lost[0]!r}"
            others = f" (and the same for {', '.join(map(repr, lost[1:]))})" if len(lost) > 1 else ""
            raise DataError(f"{place}{others}: every one is unreadable and data.skip_bad_files=true left it out, "
                            "which would leave a class the model never saw an image of; replace them with readable "
                            f"images or remove the class's {'folder' if images_of else 'rows'}")
        if len(present) < 2:
            found = f"one class ({present[0]})" if present else "no readable image"
            raise DataError(f"{where} has {found}; classification needs at least two classes"
                            f"{self.class_hint()}")

    def class_hint(self) -> str:
        return ""

    # ----- StreamedDataModule -----------------------------------------------------------------------------
    def row_name(self, row: int) -> str:
        return os.path.join(str(self.root), str(self.files[row]))

    def row_records(self, rows: np.ndarray) -> tuple[np.ndarray, bytes]:
        files, sizes, mtimes = self.files[rows], self.file_sizes[rows], self.file_mtimes[rows]
        identity = "\n".join(f"{f}\0{s}\0{m}" for f, s, m in zip(files.tolist(), sizes.tolist(), mtimes.tolist()))
        return files, identity.encode()

    def resume_identity(self, rows: np.ndarray) -> bytes:
        """Each file's path and size, not its modification time: a run resumed on a copy of its folder (another
        machine, cp without -p) resumes on the same images."""
        files, sizes = self.files[rows], self.file_sizes[rows]
        return "\n".join(f"{f}\0{s}" for f, s in zip(files.tolist(), sizes.tolist())).encode()

    def preparation(self) -> Optional[bytes]:
        mean, std = self._statistics()
        listed = lambda values: None if values is None else [round(float(v), 6) for v in values]  # noqa: E731
        return repr((self.channels, self.image_size, self.resize_size, listed(mean), listed(std))).encode()

    def reader(self) -> ImageFileReader:
        return ImageFileReader(self.root, self.files, self.channels)

    def item_shape(self) -> tuple[int, ...]:
        return self.channels, self.image_size, self.image_size

    def streamed_only_transforms(self) -> list[str]:
        if not self.augment or self.test_file_only:  # a test file alone (pipeline-eval): nothing is trained
            return []
        named = [("data.random_resized_crop=true", self.random_resized_crop),
                 (f"data.auto_augment={self.auto_augment}", self.auto_augment is not None)]
        return [name for name, on in named if on]

    def random_transform(self) -> bool:
        return self.augment and (self.random_resized_crop or self.auto_augment is not None or self.crop_padding > 0
                                 or self.hflip or self.erasing > 0)

    def _geometry(self) -> list:
        """Evaluation: the shorter side resized to resize_size, the centre image_size square (uint8); the same
        steps as the logged model's (:mod:`pipeline.data.raw_inputs`)."""
        return raw_inputs.evaluation_geometry(self.resize_size, self.image_size)

    def _to_model_input(self) -> list:
        return raw_inputs.to_model_input(*self._statistics())

    def _statistics(self) -> tuple:
        """(mean, std) of the normalisation, or (None, None) without one."""
        return (self.channel_mean, self.channel_std) if self.normalize else (None, None)

    def transform(self, train: bool):
        from torchvision.transforms import v2

        if not (train and self.augment):
            return v2.Compose(self._geometry() + self._to_model_input())
        if self.random_resized_crop:
            steps = [v2.RandomResizedCrop(self.image_size, scale=self.crop_scale, antialias=True)]
        else:
            steps = self._geometry()
            if self.crop_padding > 0:  # black borders, as the in-memory path pads
                steps.append(v2.RandomCrop(self.image_size, padding=self.crop_padding, fill=0))
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if self.auto_augment == "trivial":
            steps.append(v2.TrivialAugmentWide())
        elif self.auto_augment == "randaugment":
            steps.append(v2.RandAugment())
        steps += self._to_model_input()
        if self.erasing > 0:  # after normalisation, value 0 is the mean colour (as in the in-memory path)
            steps.append(v2.RandomErasing(p=self.erasing, value=0))
        return v2.Compose(steps)

    def fit_preprocessing_rows(self, train: Split) -> None:
        """Normalisation statistics: ImageNet's, or estimated on up to STATISTICS_SAMPLE training images
        (seeded sample) after the evaluation resize and crop; exact integer sums, so the figure does not
        depend on the order or batching of the reads."""
        self._augment_epoch = -1
        if not self.normalize:
            return
        if self.fitted is not None and self.fitted[0].get("mean") is not None:  # the trained run's
            self.channel_mean = torch.tensor(self.fitted[0]["mean"], dtype=torch.float32)
            self.channel_std = torch.tensor(self.fitted[0]["std"], dtype=torch.float32)
            return
        if self.normalization == "imagenet":
            self.channel_mean, self.channel_std = imagenet_statistics(self.channels)
            return
        from torchvision.transforms import v2

        count = min(STATISTICS_SAMPLE, len(train))
        chosen = np.sort(np.random.default_rng(self.seed).choice(len(train), count, replace=False))
        sample = train.subset(chosen)
        dataset = ItemDataset(sample.x.numpy(), sample.y.numpy(), self.reader(), v2.Compose(self._geometry()))
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        pixels = 0
        for x, _y, failed in self._reading_loader(dataset):
            self.unreadable(failed)
            if not len(x):
                continue
            values = x.to(torch.int64).transpose(0, 1).reshape(self.channels, -1)
            total += values.sum(1).double()
            squares += (values * values).sum(1).double()
            pixels += values.shape[1]
        if pixels < 2:
            raise DataError(f"data.path: no readable training image in {self.root} to take statistics from")
        mean = total / pixels
        variance = (squares - pixels * mean * mean) / (pixels - 1)
        self.channel_mean = (mean / 255).float()
        self.channel_std = (variance.clamp_min(0).sqrt() / 255).float().clamp_min(1e-6)

    @classmethod
    def model_takes_raw_rows(cls) -> bool:
        return True  # image files

    def raw_input_adapter(self) -> raw_inputs.ImageInput:
        """What turns image files into this data's model inputs: the evaluation transform, with the statistics
        :meth:`setup` took (a ``path`` column in; the logged model and ``pipeline-predict`` read folders)."""
        return raw_inputs.ImageInput(self.channels, self.resize_size, self.image_size, *self._statistics())

    @property
    def augmentation_active(self) -> bool:
        """Batch augmentation on the device: only in the in-memory path (streamed images are augmented one
        by one as they are read)."""
        return self.streamed is False and super().augmentation_active

    def describe_rows(self, train: Split, class_names):
        if self.fitted is not None:  # what the trained run's model was built for, if these are its classes
            trained = list(self.fitted[1].class_names or [])
            if list(class_names) != trained:
                raise DataError(f"data.path: the classes {list(class_names)} are not the ones the model was trained "
                                f"on ({trained})")
            return self.fitted[1]
        spec = super().describe_rows(train, class_names)
        spec.extra["image_size"] = self.image_size
        return spec


def _one_form(name: str) -> str:
    """A class name as compared across folders and listings: Unicode's composed form (NFC), so that "blé" written
    by macOS (e + a combining accent, NFD) is the "blé" of a folder made elsewhere."""
    return unicodedata.normalize("NFC", name)


def _labels(column) -> list[str]:
    """A listing's labels as classes are spelled (``1``, `` 1`` and ``1.0`` are one class, as in tables and texts)."""
    return [one_spelling(_one_form(label.strip())) for label in column]


def _warn_of_files_with_two_labels(csv: Path, files: list[str], labels: list[str]) -> None:
    """A warning when a listing gives one image file two labels (the model is then taught both)."""
    labels_of: dict[str, dict[str, None]] = {}  # file -> its labels, in the order listed
    for path, label in zip(files, labels):
        labels_of.setdefault(os.path.normpath(path), {})[label] = None
    twice = {path: list(named) for path, named in labels_of.items() if len(named) > 1}
    if twice:
        path, named = next(iter(twice.items()))
        log.warning("%s: %d image file(s) listed with two labels, e.g. %s as %s: the model is taught both",
                    csv, len(twice), path, " and ".join(map(repr, named)))


def _warn_of_files_labelled_otherwise(test_csv: Path, csv: Path, files: list[str], labels: list[str],
                                      test_files: list[str], test_labels: list[str]) -> None:
    """A warning when data.test_path labels an image file of the listing otherwise (it was said as a file of the
    listing with two labels that "the model is taught both", though the test file's label is only tested)."""
    listed = {os.path.normpath(path): label for path, label in zip(files, labels)}
    other = {path: (listed[path], label) for path, label in
             ((os.path.normpath(p), label) for p, label in zip(test_files, test_labels))
             if path in listed and listed[path] != label}
    if other:
        path, (theirs, ours) = next(iter(other.items()))
        log.warning("%s (data.test_path): %d image file(s) labelled otherwise than in %s, e.g. %s as %r there and %r "
                    "here: tested against this label", test_csv, len(other), csv, path, theirs, ours)


def _warn_if_splits_as_classes(root: Path) -> None:
    """A warning when the class folders of ``root`` hold no image of their own but the same sub-folders (e.g.
    ``seg_train/`` and ``seg_test/``, each with the real classes): they are then likely splits, and a model of
    "which split is this image from" would be trained. Only a warning: ``cat/2020/`` and ``dog/2020/`` is a layout
    of classes too."""
    classes = _class_folders(root)
    if len(classes) < 2:
        return
    inner = []
    for name in classes:
        entries = list(os.scandir(root / name))
        if any(e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) for e in entries):
            return
        inner.append({e.name for e in entries if e.is_dir() and not e.name.startswith(".")})
    shared = sorted(set.intersection(*inner))
    if len(shared) >= 2:
        log.warning("data.path: the class folders %s of %s hold no image of their own but the same sub-folders (%s): "
                    "if they are splits of the data rather than classes, name them train/, val/, test/ (or point "
                    "data.path at one of them); the classes are now %s", classes, root,
                    ", ".join(shared[:6]) + (", ..." if len(shared) > 6 else ""), classes)


def _spelled_in_training(labels: Sequence[str], trained: Sequence[str]) -> str:
    """'; 'Bees' is spelled 'bees' in training' for each of ``labels`` that is a trained class in another case."""
    by_case = {name.casefold(): name for name in trained}
    return "".join(f"; {label!r} is spelled {by_case[label.casefold()]!r} in training"
                   for label in labels if label.casefold() in by_case)


def _split_folders_hint(test_path: Path, labels: Sequence[str]) -> str:
    """For a data.test_path whose sub-folders, taken for classes, are splits (a data set's root: train/, test/):
    which folder to name instead; empty when none of them is a test split."""
    splits = [label for label in labels if label.lower() in (*TRAIN_FOLDERS, *VAL_FOLDERS, *TEST_FOLDERS)]
    test = next((label for label in splits if label.lower() in TEST_FOLDERS), None)
    if test is None:
        return ""
    return (f"; {', '.join(label + '/' for label in splits)} are split folders: name the one to test, "
            f"data.test_path={test_path / test}")


def _class_folders(folder: Path) -> list[str]:
    """Sub-folders of ``folder`` in the order of class names (numbers by value: ``2`` before ``10``, as in a listing
    or a table; then names); hidden ones (.ipynb_checkpoints, .git) are not classes."""
    return sorted((entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")),
                  key=label_sort_key)


def _image_files(folder: Path, others: Optional[Counter] = None) -> list[str]:
    """Image files under ``folder`` (recursively, sorted), relative to it; hidden files and folders skipped, and a
    folder reached again through a link (``ln -s . self``: a loop) read once, not without end or twice. ``others``
    counts the files left out for their extension (``.avif``, ``.txt``, none), by extension."""
    found = []
    seen = {str(parent) for parent in Path(os.path.realpath(folder)).parents}  # a link up the tree is a loop too
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        seen.add(os.path.realpath(directory))
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")
                               and os.path.realpath(os.path.join(directory, d)) not in seen)
        relative = os.path.relpath(directory, folder)
        for name in sorted(names):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(name if relative == "." else os.path.join(relative, name))
            elif others is not None:
                others[os.path.splitext(name)[1].lower() or "(no extension)"] += 1
    return found


def say_other_files(where: str, others: Counter) -> None:
    """One warning line for the files under a folder of images that were not read for their extension: a class
    of ``.jfif`` or ``.avif`` files trained without them, and the class balance changed, without a word."""
    if not others:
        return
    kinds = ", ".join(f"{count} {extension}" for extension, count in others.most_common(6))
    log.warning("%s: %d file(s) left out, not of an image kind read here (%s%s); read are %s", where,
                sum(others.values()), kinds, ", ..." if len(others) > 6 else "", " ".join(IMAGE_EXTENSIONS))


def _loose_images(folder: Path) -> list[str]:
    """Image files directly in ``folder`` (not in a class sub-folder): they have no label."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith(".")
                  and entry.name.lower().endswith(IMAGE_EXTENSIONS))


class ImageFolder(ImageFiles):
    """A folder with one sub-folder of images per class (torchvision's ImageFolder layout), optionally split
    into ``train/``, ``val/``, ``test/`` folders; see the module docstring."""

    name: ClassVar[str] = "image_folder"
    reads_test_file_alone: ClassVar[bool] = True

    def __init__(self, test_path: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.test_path = Path(test_path) if test_path else None  # a labelled folder of test images of its own

    def class_hint(self) -> str:
        return " (one sub-folder per class, e.g. <path>/cat/1.jpg and <path>/dog/2.jpg)"

    def _test_folder(self, train_folder: str) -> Path:
        test = self.test_path if self.test_path.is_absolute() else Path.cwd() / self.test_path
        if not test.is_dir() or not _class_folders(test):
            raise DataError(f"data.test_path: {test} is " + ("not a folder" if not test.is_dir() else
                                                             "a folder without class sub-folders")
                            + f" (one sub-folder per class, named as in {train_folder})")
        return test

    def load(self) -> LoadedData:
        if self.test_file_only:  # the test folder alone, with the trained run's classes
            test = self._test_folder("the training folder")
            files, labels = [], []
            others: Counter = Counter()
            for class_name in _class_folders(test):
                images = _image_files(test / class_name, others)
                files += [os.path.join(class_name, image) for image in images]
                labels += [class_name] * len(images)
            say_other_files(f"data.test_path: {test}", others)
            return self._test_files_alone(test, files, labels, f"{test} (data.test_path)")
        root = self._resolved_path("a folder with one sub-folder per class")
        if root.is_file():
            raise DataError(f"data.path: {root} is a file, not a folder (data=image_folder reads a folder with one "
                            "sub-folder per class; unpack an archive first; a CSV of path,label is data=image_csv)")
        if not root.is_dir():
            raise DataError(f"data.path: image folder not found: {root}")
        # split folders whatever their case (Train/ and Val/ of a Windows export are splits, not two classes)
        subfolders = {}
        for folder in sorted(root.iterdir(), key=lambda path: path.name != path.name.lower()):  # exact names first
            if folder.is_dir():
                subfolders.setdefault(folder.name.lower(), folder)
        folders = {"train": next((subfolders[n] for n in TRAIN_FOLDERS if n in subfolders), root / "train")}
        for part, names in (("val", VAL_FOLDERS), ("test", TEST_FOLDERS)):
            found = next((subfolders[n] for n in names if n in subfolders), None)
            if found is not None:
                folders[part] = found
        split_layout = folders["train"].is_dir() and bool(_class_folders(folders["train"]))
        if not split_layout and folders["train"].is_dir() and len(folders) > 1:
            named = ", ".join(f"{folder.name}/" for folder in folders.values())
            raise DataError(f"data.path: {root} holds the split folders {named} but {folders['train']} has no class "
                            f"sub-folders: they would be trained as classes named after the splits; put each "
                            f"split's images in one sub-folder per class ({folders['train'].name}/cat/1.jpg, "
                            f"{folders['train'].name}/dog/2.jpg)")
        if split_layout:
            for part, folder in list(folders.items())[1:]:
                if not _class_folders(folder) and not (part == "test" and self.test_path is not None):
                    loose = len(_loose_images(folder))
                    raise DataError(f"data.path: {folder} has no class sub-folders"
                                    + (f" ({loose} image(s) directly in it: unlabelled)" if loose else "")
                                    + f"; its images need one sub-folder per class, as in {folders['train']}, "
                                    f"or move the folder away (the {part} split is then held out of "
                                    f"{folders['train'].name}/)")
        loose = {folder: len(_loose_images(folder)) for folder in ([root, *folders.values()] if split_layout else [root])}
        not_used = [f"{count} image(s) directly in {folder} (not in a class folder)"
                    for folder, count in loose.items() if count]
        if split_layout:
            used = {folder.name for folder in folders.values()}
            not_used += [f"the folder {root / name}/ (not train/, val/ or test/)"
                         for name in _class_folders(root) if name not in used]
        if not split_layout:
            folders = {"train": root}
            _warn_if_splits_as_classes(root)
        if self.test_path is not None:  # the test images, whatever the folder holds
            if "test" in folders:
                not_used.append(f"the folder {folders['test']}/ (data.test_path gives the test images)")
            folders["test"] = self._test_folder(str(folders["train"]))
        if not_used:
            log.warning("data.path: not used: %s", "; ".join(not_used))
        others: Counter = Counter()
        classes = _class_folders(folders["train"])
        if not classes:
            raise DataError(f"data.path: no class sub-folders in {folders['train']}{self.class_hint()}")
        trained = [_one_form(str(name)) for name in (self.fitted[1].class_names or [])] if self.fitted else []
        if trained and sorted(trained) == sorted(_one_form(name) for name in classes):
            # a trained run's classes in its own order (one trained before numbered folders were ordered by value:
            # 0, 1, 10, 2), so that its evaluation reads each folder as the class the model learned
            classes = sorted(classes, key=lambda name: trained.index(_one_form(name)))
        files: list[str] = []
        parts: dict[str, list[tuple[int, int]]] = {}
        index_of = {_one_form(name): index for index, name in enumerate(classes)}
        for part, folder in folders.items():
            # in the classes' order (a trained run's own): the files' order, and so the split drawn, is its
            part_classes = sorted(_class_folders(folder), key=lambda name: index_of.get(_one_form(name), len(index_of)))
            unknown = sorted(name for name in part_classes if _one_form(name) not in index_of)
            if unknown:
                hint = _spelled_in_training(unknown, classes)
                hint += _split_folders_hint(folder, unknown) if part == "test" and self.test_path is not None else ""
                raise DataError(f"{folder}: class folders {unknown} do not exist in {folders['train']}{hint}")
            rows = parts.setdefault(part, [])
            for class_name in part_classes:
                images = _image_files(folder / class_name, others)
                if not images and part == "train":
                    raise DataError(f"data.path: no images in {folder / class_name} (looked for "
                                    f"{', '.join(IMAGE_EXTENSIONS)}); add its images or remove the folder")
                label = index_of[_one_form(class_name)]
                prefix = os.path.relpath(folder / class_name, root)
                for image in images:
                    rows.append((len(files), label))
                    files.append(os.path.join(prefix, image))
        say_other_files(f"data.path: {root}", others)
        problems = self._set_table(root, files)
        parts = self._drop_unreadable(parts, problems)
        self._check_classes(parts["train"], classes, f"data.path: {folders['train']}",
                            lambda name: f"data.path: no readable images in {folders['train'] / name}")
        if split_layout:
            sources = {part: f"{folder.name}/" for part, folder in folders.items()}
        else:
            sources = {"train": f"all images in {root}"}
        if self.test_path is not None:
            sources["test"] = f"{folders['test']} (data.test_path)"
        return self._arrange(parts, classes, sources)


class ImageCSV(ImageFiles):
    """A CSV file with a column of image paths (relative to the CSV's folder, or absolute) and a column of
    labels; an optional split column (train / val / test) gives fixed splits, as the folders of
    :class:`ImageFolder` do; ``test_path`` names a second such CSV whose rows are the test split."""

    name: ClassVar[str] = "image_csv"
    reads_test_file_alone: ClassVar[bool] = True

    def __init__(self, path_column: str = "path", label_column: str = "label", split_column: str = "split",
                 test_path: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.path_column = path_column
        self.label_column = label_column
        self.split_column = split_column
        self.test_path = Path(test_path) if test_path else None  # a labelled CSV of test images of its own

    def _read_listing(self, csv: Path, key: str):
        """The listing's table (all columns as text), its path and label columns checked (``key`` names the
        config key of the file in errors)."""
        import pandas as pd

        if csv.is_dir():
            raise DataError(f"data.{key}: {csv} is a folder, not a CSV file (a folder with one sub-folder per class is "
                            "data=image_folder)")
        if not csv.is_file():
            raise DataError(f"data.{key}: CSV file not found: {csv}")
        try:
            table = pd.read_csv(csv, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise DataError(f"{csv}: not a readable CSV file ({_reason(error)})") from None
        for option, column in (("path_column", self.path_column), ("label_column", self.label_column)):
            if column not in table.columns:
                raise DataError(f"{csv}: no column '{column}' (data.{option}); its columns are {list(table.columns)}")
        for index, (image, label) in enumerate(zip(table[self.path_column], table[self.label_column])):
            if not image.strip() or not label.strip():
                raise DataError(f"{csv}, line {index + 2}: empty {'path' if not image.strip() else 'label'}")
        table[self.path_column] = [listed_path(csv.parent, image) for image in table[self.path_column]]
        return table

    def load(self) -> LoadedData:
        if self.test_file_only:  # the test listing alone, with the trained run's classes
            test_csv = self.test_path if self.test_path.is_absolute() else Path.cwd() / self.test_path
            table = self._read_listing(test_csv, "test_path")
            return self._test_files_alone(test_csv.parent, [p.strip() for p in table[self.path_column]],
                                          _labels(table[self.label_column]),
                                          f"{test_csv} (data.test_path)")
        csv = self._resolved_path("a CSV file with a path and a label column")
        table = self._read_listing(csv, "path")
        has_splits = self.split_column in table.columns
        split_names = {**{name: "train" for name in TRAIN_FOLDERS}, **{name: "val" for name in VAL_FOLDERS},
                       **{name: "test" for name in TEST_FOLDERS}}
        rows_by_part: dict[str, list[int]] = {}
        for index in range(len(table)):
            part = "train"
            if has_splits:
                value = table[self.split_column].iat[index].strip().lower()
                if value not in split_names:
                    raise DataError(f"{csv}, line {index + 2}: {self.split_column}={value!r}; allowed: train, val, "
                                    "test")
                part = split_names[value]
            rows_by_part.setdefault(part, []).append(index)
        if "train" not in rows_by_part:
            raise DataError(f"{csv}: no training rows ({self.split_column}=train)")
        labels = _labels(table[self.label_column])
        files = [p.strip() for p in table[self.path_column]]
        sources = ({"train": f"the train rows of {csv.name}", "val": "its val rows", "test": "its test rows"}
                   if has_splits else {"train": f"{csv}"})
        if self.test_path is not None:  # the test images, whatever test rows the listing holds
            test_csv = self.test_path if self.test_path.is_absolute() else Path.cwd() / self.test_path
            test_table = self._read_listing(test_csv, "test_path")
            left_out = len(rows_by_part.pop("test", []))
            rows_by_part["test"] = list(range(len(files), len(files) + len(test_table)))
            labels += _labels(test_table[self.label_column])
            # its paths are relative to its own folder: written relative to the listing's, or absolute
            files += [os.path.relpath(test_csv.parent / p.strip(), csv.parent) if not os.path.isabs(p.strip())
                      else p.strip() for p in test_table[self.path_column]]
            sources["test"] = f"{test_csv} (data.test_path" + (
                f"; the {left_out} test rows of {csv.name} are left out)" if left_out else ")")
        listed = len(table)  # the listing's own rows; those after it are data.test_path's
        _warn_of_files_with_two_labels(csv, files[:listed], labels[:listed])
        if listed < len(files):
            _warn_of_files_labelled_otherwise(self.test_path, csv, files[:listed], labels[:listed], files[listed:],
                                              labels[listed:])
        classes = sorted({labels[i] for i in rows_by_part["train"]}, key=label_sort_key)
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            where = f"{csv}" + (f" and {self.test_path}" if self.test_path is not None else "")
            raise DataError(f"{where}: labels {unknown[:5]} of the val/test rows never occur in the training rows")
        index_of = {name: i for i, name in enumerate(classes)}
        parts = {part: [(i, index_of[labels[i]]) for i in indices] for part, indices in rows_by_part.items()}
        problems = self._set_table(csv.parent, files)
        parts = self._drop_unreadable(parts, problems)
        self._check_classes(parts["train"], classes, f"{csv} (column '{self.label_column}')")
        return self._arrange(parts, classes, sources)
