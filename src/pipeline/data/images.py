"""Image classification data sets held in memory as float32 tensors (N, C, H, W); image files at
real resolution (folders, CSV lists) are in :mod:`pipeline.data.image_files`.

Pixels are scaled to [0, 1] when loaded and normalised per channel with the training split's
mean and standard deviation (``normalization=dataset``) or with ImageNet's, which pretrained
backbones expect (``normalization=imagenet``; conf/data/*.yaml take it from
``model.input_normalization`` when the model declares one). Training-time augmentation (random
crop with padding, horizontal flip, random erasing) is drawn per sample and applied to whole
batches on the device, in ``on_after_batch_transfer``; it never touches validation or test batches.
"""
from __future__ import annotations

import contextlib
import gzip
import socket
import struct
import zlib
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np
import torch
from torch import Tensor

from .base import DataError, DataSpec, InMemoryDataModule, LoadedData, Split


@contextlib.contextmanager
def network_timeout(seconds: float = 15.0):
    """torchvision downloads without a timeout: behind a firewall that drops packets a run would wait
    minutes per mirror before saying the data is missing. Every socket gets a deadline meanwhile."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


#: ImageNet's per-channel mean and standard deviation (pixels in [0, 1]): what torchvision's pretrained
#: weights expect their inputs to be normalised with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("dataset", "imagenet", "none")


def check_normalization(normalization: str) -> str:
    if normalization not in NORMALIZATIONS:
        raise DataError(f"data.normalization={normalization!r} is not allowed; choose one of {', '.join(NORMALIZATIONS)}")
    return normalization


def imagenet_statistics(channels: int) -> tuple[Tensor, Tensor]:
    """ImageNet's mean and std for ``channels`` (3, or 1 for grey images a model repeats into RGB: the
    averages of the three)."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if channels == 1:
        return mean.mean().view(1), std.mean().view(1)
    if channels != 3:
        raise DataError(f"data.normalization=imagenet needs grey or RGB images, these have {channels} channels")
    return mean, std


def auto_augment_on(value) -> bool:
    """null, or 'none' as a sweep writes it (Hydra's choice(...) refuses null), is off."""
    return value is not None and str(value).lower() != "none"


#: the data keys of training-time augmentation, each with whether its value asks for any; only data.augment=true
#: switches them on (the data options keep their recipe in them with augment off: fashion_mnist's hflip=true)
AUGMENTATION_KEYS = {
    "crop_padding": lambda v: v is not None and v > 0,
    "hflip": lambda v: v is True,
    "erasing": lambda v: v is not None and v > 0,
    "random_resized_crop": lambda v: v is True,
    "auto_augment": auto_augment_on,
}
# values that no data option sets: asked for wherever they come from (the others, when named on the command line)
_NEVER_DEFAULTS = ("erasing", "auto_augment")


def ignored_augmentation(data_cfg, overrides) -> Optional[str]:
    """The line saying which augmentation values a run with ``data.augment=false`` asked for and leaves unused
    (they trained bit for bit as a run without them); None when there are none."""
    if data_cfg is None or data_cfg.get("augment") is not False:
        return None
    named = {str(o).lstrip("+~").split("=", 1)[0] for o in overrides or ()}
    asked = [key for key, on in AUGMENTATION_KEYS.items()
             if key in data_cfg and on(data_cfg.get(key)) and (key in _NEVER_DEFAULTS or f"data.{key}" in named)]
    if not asked:
        return None
    values = {key: data_cfg.get(key) for key in asked}
    shown = ", ".join(f"data.{key}={str(v).lower() if isinstance(v, bool) else v}" for key, v in values.items())
    return (f"{shown} not used: training-time augmentation is off (data.augment=false); add data.augment=true to "
            "train with it")


class ImageDataModule(InMemoryDataModule):
    """Images (N, C, H, W) in [0, 1], normalised per channel (training-split or ImageNet statistics)."""

    modality: ClassVar[str] = "image"
    task_kind: ClassVar[str] = "classification"
    #: the arrays are 8-bit images (pixels / 255), so image files are the raw inputs of its model
    arrays_are_images: ClassVar[bool] = False

    def __init__(
        self,
        augment: bool = False,
        crop_padding: int = 0,
        hflip: bool = False,
        erasing: float = 0.0,
        normalize: bool = True,
        normalization: str = "dataset",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_normalization(normalization)
        if crop_padding < 0:
            raise DataError(f"data.crop_padding must be >= 0, got {crop_padding}")
        if not 0.0 <= erasing <= 1.0:
            raise DataError(f"data.erasing is a probability in [0, 1], got {erasing}")
        self.augment = augment
        self.crop_padding = int(crop_padding)
        self.hflip = hflip
        self.erasing = float(erasing)
        self.normalization = normalization if normalize else "none"
        self.normalize = self.normalization != "none"
        self.channel_mean: Optional[Tensor] = None
        self.channel_std: Optional[Tensor] = None
        self.fitted_spec: Optional[DataSpec] = None  # a trained run's (use_fitted)
        self._augment_epoch = -1
        self._augment_batch = 0

    def use_fitted(self, adapter_state: Optional[dict], spec: dict) -> bool:
        """The run's normalisation (``channel_mean``/``channel_std`` of its spec, the statistics of its training
        images) and spec; not when this config normalises otherwise than the run did."""
        saved = DataSpec.from_dict(spec)
        if self.normalize != ("channel_mean" in saved.extra) or self.normalization == "imagenet":
            return False
        self.fitted_spec = saved
        return True

    def setup(self, stage: Optional[str] = None) -> None:
        self._augment_epoch = -1  # every fit (Trainer.fit calls setup) counts batches from 0 again
        super().setup(stage)

    # ----- preprocessing ---------------------------------------------------------------
    def fit_preprocessing(self, train: Split) -> None:
        if not self.normalize:
            return
        if self.fitted_spec is not None:  # the trained run's statistics
            self.channel_mean = torch.tensor(self.fitted_spec.extra["channel_mean"], dtype=torch.float32)
            self.channel_std = torch.tensor(self.fitted_spec.extra["channel_std"], dtype=torch.float32)
            return
        if self.normalization == "imagenet":
            self.channel_mean, self.channel_std = imagenet_statistics(int(train.x.shape[1]))
            return
        # torch's CPU reductions sum pairwise / by Welford: float32 is exact enough for 47M pixels
        std, mean = torch.std_mean(train.x, dim=(0, 2, 3))
        self.channel_mean = mean
        self.channel_std = std.clamp_min(1e-6)

    def apply_preprocessing(self, split: Split) -> Split:
        if not self.normalize:
            return split
        mean = self.channel_mean.view(1, -1, 1, 1)
        std = self.channel_std.view(1, -1, 1, 1)
        return Split((split.x - mean) / std, split.y)

    def describe(self, train: Split, class_names) -> DataSpec:
        if self.fitted_spec is not None and list(class_names or []) == list(self.fitted_spec.class_names or []):
            return self.fitted_spec  # what the trained run's model was built for
        spec = super().describe(train, class_names)
        spec.extra["channels"] = int(train.x.shape[1])
        if self.normalize:
            spec.extra["channel_mean"] = [float(v) for v in self.channel_mean]
            spec.extra["channel_std"] = [float(v) for v in self.channel_std]
        return spec

    @classmethod
    def model_takes_raw_rows(cls) -> bool:
        return cls.arrays_are_images

    def raw_input_adapter(self):
        """Image files -> this data's model inputs (:class:`~pipeline.data.raw_inputs.ImageInput`: decoded to the
        data's channels, the shorter side resized to the arrays' size and the centre square cropped, pixels / 255,
        normalised with the run's statistics), where the arrays are 8-bit images: a PNG of a Fashion-MNIST image
        gives the tensor training used, to float32 rounding (torchvision multiplies by 1/255 where the arrays were
        divided by 255: <= 3e-7 apart). None for other arrays (scikit-learn's digits: 17 grey levels)."""
        if not self.arrays_are_images or self.spec is None:
            return None
        from .raw_inputs import ImageInput

        channels, height, width = self.spec.input_shape
        if height != width:
            return None
        mean, std = (self.channel_mean.tolist(), self.channel_std.tolist()) if self.normalize else (None, None)
        return ImageInput(channels, width, width, mean, std)

    # ----- augmentation ----------------------------------------------------------------
    @property
    def augmentation_active(self) -> bool:
        return self.augment and (self.crop_padding > 0 or self.hflip or self.erasing > 0)

    def _black(self, channels: int, device, dtype) -> Tensor:
        """The value of a black pixel after normalisation (what RandomCrop pads with)."""
        if not self.normalize:
            return torch.zeros(channels, device=device, dtype=dtype)
        return (-self.channel_mean / self.channel_std).to(device=device, dtype=dtype)

    def augment_batch(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Per-sample random crop / horizontal flip / erasing of a batch (N, C, H, W).

        Random parameters are drawn on the CPU from ``generator`` (so a run is reproducible
        whatever the device); crop and flip together are one ``gather`` of pixel positions.
        """
        if self.crop_padding > 0 or self.hflip:
            x = self._crop_and_flip(x, generator)
        if self.erasing > 0:
            x = self._erase(x, generator)
        return x

    def _crop_and_flip(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, c, h, w = x.shape
        p = self.crop_padding
        if p > 0:  # pad with black, as torchvision's RandomCrop(padding=p) does
            source = x.new_empty((n, c, h + 2 * p, w + 2 * p))
            source[:] = self._black(c, x.device, x.dtype).view(1, c, 1, 1)
            source[:, :, p : p + h, p : p + w] = x
        else:
            source = x
        width = w + 2 * p
        top = torch.randint(0, 2 * p + 1, (n, 1, 1), generator=generator)
        left = torch.randint(0, 2 * p + 1, (n, 1, 1), generator=generator)
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        if self.hflip:
            flip = torch.rand(n, 1, 1, generator=generator) < 0.5
            cols = torch.where(flip, w - 1 - cols, cols)
        # flat position in the padded image of every output pixel: (n, h*w)
        index = ((top + rows) * width + left + cols).view(n, 1, h * w).to(x.device)
        out = source.reshape(n, c, -1).gather(2, index.expand(n, c, h * w))
        return out.view(n, c, h, w)

    def _erase(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """RandomErasing (Zhong et al. 2017) per sample: with probability ``erasing`` a rectangle
        of 2-33% of the area, aspect ratio 0.3-3.3, is set to 0 (the channel mean after
        normalisation), as torchvision's ``RandomErasing(value=0)`` does. Where torchvision
        redraws a rectangle that does not fit, this clamps it to the image."""
        n, _, h, w = x.shape
        device = x.device
        apply = torch.rand(n, generator=generator) < self.erasing
        area = h * w * torch.empty(n).uniform_(0.02, 0.33, generator=generator)
        log_ratio = torch.empty(n).uniform_(float(np.log(0.3)), float(np.log(3.3)), generator=generator)
        ratio = torch.exp(log_ratio)
        eh = torch.sqrt(area * ratio).round().long().clamp(1, h)
        ew = torch.sqrt(area / ratio).round().long().clamp(1, w)
        top = (torch.rand(n, generator=generator) * (h - eh + 1)).long()
        left = (torch.rand(n, generator=generator) * (w - ew + 1)).long()
        rows = torch.arange(h)
        cols = torch.arange(w)
        in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < (top + eh)[:, None])  # (n,h)
        in_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < (left + ew)[:, None])  # (n,w)
        mask = (in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]).to(device)
        return x.masked_fill(mask[:, None, :, :], 0.0)

    def _augment_generator(self) -> torch.Generator:
        """A generator seeded from (seed, epoch, rank, batch number within the epoch)."""
        trainer = self.trainer
        epoch = int(getattr(trainer, "current_epoch", 0))
        rank = int(getattr(trainer, "global_rank", 0))
        if epoch != self._augment_epoch:
            self._augment_epoch, self._augment_batch = epoch, 0
        batch = self._augment_batch
        self._augment_batch += 1
        state = np.random.SeedSequence([self.seed, epoch, rank, batch]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if trainer is None or not trainer.training or not self.augmentation_active:
            return batch
        x, y = batch
        return self.augment_batch(x, self._augment_generator()), y


# ----- scikit-learn digits ------------------------------------------------------------------
class Digits(ImageDataModule):
    """scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn)."""

    name: ClassVar[str] = "digits"

    def load(self) -> LoadedData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.as_tensor(bunch.target, dtype=torch.long)
        return LoadedData(train=Split(x, y), class_names=[str(c) for c in bunch.target_names])


# ----- idx files (MNIST, Fashion-MNIST) -----------------------------------------------------
_IDX_UBYTE = 0x08


def read_idx(path: Path, ndim: int, how_to_get: str = "") -> np.ndarray:
    """Parse an idx file (``.gz`` or not) of unsigned bytes with ``ndim`` dimensions."""
    opener = gzip.open if path.suffix == ".gz" else open

    def corrupt(reason: str) -> DataError:
        return DataError(f"truncated or corrupt: {path}: {reason}; re-download it{how_to_get}")

    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise corrupt(str(error) or type(error).__name__) from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise corrupt(f"{len(raw)} bytes, shorter than the {header}-byte idx header")
    zero, dtype_code, file_ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != _IDX_UBYTE or file_ndim != ndim:
        magic = int.from_bytes(raw[:4], "big")
        raise corrupt(f"magic number 0x{magic:08x}, expected 0x{(_IDX_UBYTE << 8) | ndim:08x} (unsigned bytes, {ndim}-d)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise corrupt(f"{len(raw)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class IdxImages(ImageDataModule):
    """MNIST-format data: four idx files, a fixed 60,000/10,000 train/test split."""

    arrays_are_images: ClassVar[bool] = True
    #: folder names under data_dir, then absolute folders (e.g. a Debian package's)
    folders: ClassVar[tuple[str, ...]] = ()
    system_folders: ClassVar[tuple[str, ...]] = ()
    torchvision_class: ClassVar[str] = ""
    url: ClassVar[str] = ""
    how_to_get: ClassVar[str] = ""
    class_names: ClassVar[list[str]] = [str(i) for i in range(10)]
    files: ClassVar[dict[str, str]] = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }

    def __init__(self, download: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.download = download

    def candidate_folders(self) -> list[Path]:
        return [self.data_dir / f for f in self.folders] + [Path(f) for f in self.system_folders]

    def _find_files(self, folder: Path) -> Optional[dict[str, Path]]:
        """The four files in ``folder`` (each ``.gz`` or already decompressed), or None."""
        found = {}
        for key, stem in self.files.items():
            for candidate in (folder / f"{stem}.gz", folder / stem):
                if candidate.is_file():
                    found[key] = candidate
                    break
            else:
                return None
        return found

    def _locate(self) -> dict[str, Path]:
        folders = self.candidate_folders()
        for folder in folders:
            found = self._find_files(folder)
            if found is not None:
                return found
        download_error = None
        if self.download:
            target = self.data_dir / self.torchvision_class / "raw"
            made = [f for f in (self.data_dir, target.parent, target) if not f.exists()]  # outermost first
            try:
                import torchvision.datasets

                with network_timeout():
                    getattr(torchvision.datasets, self.torchvision_class)(root=str(self.data_dir), download=True)
            except Exception as error:  # offline, read-only data_dir, ...: report below
                download_error = f"{type(error).__name__}: {error}"
                for folder in reversed(made):  # a failed download leaves no empty folders in a shared data folder
                    try:
                        folder.rmdir()
                    except OSError:
                        pass
            else:
                found = self._find_files(self.data_dir / self.torchvision_class / "raw")
                if found is not None:
                    return found
                download_error = "torchvision reported success but the files are not where expected"
        names = ", ".join(f"{stem}.gz" for stem in self.files.values())
        looked = "; ".join(str(f) for f in folders)
        tried = (
            f" Download via torchvision failed ({download_error})."
            if download_error
            else " Downloading is off (data.download=false)."
        )
        raise DataError(
            f"{self.name}: files not found ({names}); looked in: {looked}.{tried} "
            f"Get them from {self.url} and put them in {self.data_dir / self.folders[0]}{self.how_to_get}."
        )

    def load(self) -> LoadedData:
        paths = self._locate()
        hint = f" from {self.url}"
        arrays = {key: read_idx(path, 3 if key.endswith("images") else 1, hint) for key, path in paths.items()}
        splits = {}
        for part in ("train", "test"):
            images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
            if len(images) != len(labels):
                raise DataError(
                    f"{paths[f'{part}_images']} holds {len(images)} images but {paths[f'{part}_labels']} "
                    f"holds {len(labels)} labels; re-download them{hint}"
                )
            if labels.size and labels.max() >= len(self.class_names):
                raise DataError(
                    f"{paths[f'{part}_labels']}: label {int(labels.max())} out of range 0..{len(self.class_names) - 1}"
                )
            x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1).div_(255.0)
            splits[part] = Split(x, torch.from_numpy(labels.astype(np.int64)))
        return LoadedData(train=splits["train"], test=splits["test"], class_names=list(self.class_names))


class FashionMNIST(IdxImages):
    """Zalando's Fashion-MNIST (Xiao et al. 2017): 28x28 grey clothing images, 10 classes."""

    name: ClassVar[str] = "fashion_mnist"
    folders: ClassVar[tuple[str, ...]] = ("fashion-mnist", "FashionMNIST/raw")
    system_folders: ClassVar[tuple[str, ...]] = ("/usr/share/datasets/fashion-mnist",)
    torchvision_class: ClassVar[str] = "FashionMNIST"
    url: ClassVar[str] = "https://github.com/zalandoresearch/fashion-mnist"
    how_to_get: ClassVar[str] = ", or install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
    class_names: ClassVar[list[str]] = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]  # fmt: skip


class MNIST(IdxImages):
    """LeCun's handwritten digits: 28x28 grey, 10 classes."""

    name: ClassVar[str] = "mnist"
    folders: ClassVar[tuple[str, ...]] = ("mnist", "MNIST/raw")
    torchvision_class: ClassVar[str] = "MNIST"
    url: ClassVar[str] = "https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of http://yann.lecun.com/exdb/mnist/)"


# ----- CIFAR-10 ---------------------------------------------------------------------------
class CIFAR10(ImageDataModule):
    """CIFAR-10 (32x32 colour, 10 classes) read through torchvision, converted to tensors once."""

    arrays_are_images: ClassVar[bool] = True
    name: ClassVar[str] = "cifar10"
    url: ClassVar[str] = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

    def __init__(self, download: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.download = download

    def load(self) -> LoadedData:
        import torchvision.datasets

        splits, classes = {}, None
        for part, train in (("train", True), ("test", False)):
            try:
                with network_timeout():
                    dataset = torchvision.datasets.CIFAR10(root=str(self.data_dir), train=train, download=self.download)
            except Exception as error:
                tried = "download failed" if self.download else "downloading is off (data.download=false)"
                raise DataError(
                    f"cifar10: data not found or corrupt in {self.data_dir / 'cifar-10-batches-py'} "
                    f"({type(error).__name__}: {error}); {tried}. Get {self.url} and extract it into "
                    f"{self.data_dir} (giving {self.data_dir / 'cifar-10-batches-py'})"
                ) from None
            x = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).float().div_(255.0)
            splits[part] = Split(x.contiguous(), torch.as_tensor(dataset.targets, dtype=torch.long))
            classes = list(dataset.classes)
        return LoadedData(train=splits["train"], test=splits["test"], class_names=classes)
