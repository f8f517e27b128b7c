"""Any torchvision classification model (``torchvision.models.list_models(module=torchvision.models)``),
pretrained or not, with a new head for the data's classes.

Weights (``weights``): a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``, ...) read from torch hub's
cache (``$TORCH_HOME/hub/checkpoints``, where torchvision itself caches them), a state-dict file of the same
architecture, or ``none``. Whether they are there, and fit the architecture, is checked before any data is
loaded (:meth:`TorchvisionClassifier.check_config`, called by config validation): a missing file is refused
with its URL and the path to put it at, unless ``download=true`` and the download succeeds. Every file is
read with ``torch.load(weights_only=True)``, memory-mapped. Built to take a checkpoint's weights
(:func:`pipeline.models.weights_from_checkpoint`: ``pipeline-predict <checkpoint>``, ``pipeline-eval``), the model
reads none of them: the architecture alone.

Fine-tuning: ``freeze_backbone`` trains the new head only, ``unfreeze_at_epoch`` trains everything from that
epoch on (:class:`pipeline.fine_tuning.UnfreezeBackbone` calls :meth:`set_backbone_trainable`), and
``backbone_lr_scale`` gives the pretrained layers a fraction of ``optimizer.lr`` (:meth:`parameter_groups`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from pipeline.config import ConfigError, nearest

NO_WEIGHTS = ("none", "null", "")
#: where a state dict holds the torchvision network's weights: a checkpoint of a run of this model, and a network
#: saved inside DataParallel or DistributedDataParallel
WRAPPED_PREFIXES = ("model.network.", "module.")
DOWNLOAD_TIMEOUT_S = 30.0


def classification_models() -> list[str]:
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    if text.startswith("Weights only load failed"):
        # torch's advice to load it with weights_only=False (no option of this command, and for a file of random
        # bytes bad advice) came first and was cut mid-sentence; its reason is the unpickler's line at the end
        unpickler = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        text = f"not a file torch.save wrote: {unpickler.group(1).strip()}" if unpickler else "not a file torch.save wrote"
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text or type(error).__name__


# ----- which weights, and where they are ------------------------------------------------------------------------
def resolve_weights(name: str, weights: Any) -> tuple[str, Any]:
    """("none", None) | ("torchvision", a WeightsEnum member) | ("file", Path); ConfigError if unknown."""
    import torchvision.models

    text = "none" if weights is None else str(weights).strip()
    if text.lower() in NO_WEIGHTS:
        return "none", None
    if os.sep in text or text.startswith(("~", ".")) or text.endswith((".pth", ".pt")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.weights={text}: no such file (a state dict of torchvision's {name}, "
                              "saved with torch.save(model.state_dict(), path))")
        return "file", path.resolve()
    enum = torchvision.models.get_model_weights(name)
    try:
        return "torchvision", enum[text]
    except KeyError:
        allowed = ", ".join(list(enum.__members__) + ["none", "/path/to/state_dict.pth"])
        raise ConfigError(f"model.weights={text!r} is not a weights name of {name}; allowed: {allowed}") from None


def cache_path(weights) -> Path:
    """Where torchvision reads (and would download) ``weights``: torch hub's checkpoint folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def ensure_cached(name: str, weights, download: bool, requested: str = "") -> Path:
    """The cached weights file; downloaded first when missing and ``download``; else a ConfigError saying
    which file to download and where to put it."""
    path = cache_path(weights)
    if path.is_file():
        return path
    why = "model.download=false"
    if download:
        try:
            _download(weights.url, path)
            return path
        except Exception as error:  # offline, proxy, disk full, ...
            why = f"downloading it failed: {_one_line(error, 200)}"
    raise ConfigError(
        f"model.weights={_weights_label(weights, requested)}: the {name} weights are not in torch hub's cache "
        f"({why}); download "
        f"{weights.url} and save it as {path} (torch hub's cache: $TORCH_HOME/hub/checkpoints, TORCH_HOME="
        f"{os.environ.get('TORCH_HOME', 'unset, so ~/.cache/torch')}), or set model.weights=/path/to/state_dict.pth "
        "or model.weights=none")


def _weights_label(weights, requested: str) -> str:
    return weights.name if requested in ("", weights.name) else f"{requested} ({weights.name})"


def _download(url: str, path: Path) -> None:
    from torch.hub import HASH_REGEX, download_url_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    match = HASH_REGEX.search(path.name)  # torchvision checks the hash its file names carry
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        print(f"Downloading {url} to {path}", file=sys.stderr, flush=True)
        download_url_to_file(url, str(path), match.group(1) if match else None, progress=sys.stderr.isatty())
    finally:
        socket.setdefaulttimeout(previous)


def read_state_dict(path: Path, what: str, cached_as: str = "") -> dict[str, Tensor]:
    """A state dict from ``path``, memory-mapped, with ``weights_only=True`` (a file that would run code when
    unpickled is refused). ``cached_as``: the weights name whose download ``path`` is (torch hub's cache), which an
    unreadable file is then said to be."""
    try:
        state = _load_tensors(path)
    except Exception as error:
        if cached_as:
            raise ConfigError(f"model.weights={cached_as}: {path}, the cached download of these weights, is unreadable "
                              f"(cut off while downloading?: {_one_line(error)}); delete it and download it again"
                              ) from None
        pickled = re.search(r"GLOBAL ([\w.]+) was not an allowed global", str(error))
        if pickled:  # torch's text about weights_only is about options this command does not offer
            raise ConfigError(f"{what}={path}: holds a pickled {pickled.group(1)} (a whole model saved with "
                              "torch.save(model)?), not a state dict, and is not unpickled (that could run any code); "
                              "save its weights with torch.save(model.state_dict(), path)") from None
        raise ConfigError(f"{what}={path}: not a readable PyTorch state dict ({_one_line(error)}); save one with "
                          "torch.save(model.state_dict(), path)") from None
    # a training checkpoint: Lightning's and timm's {"state_dict": ...}, torchvision's reference scripts' {"model": ...}
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{what}={path}: holds no state dict (a dict of tensor names to tensors)")
    return state


def _load_tensors(path: Path):
    # torchvision's reference scripts save their argparse arguments beside the weights: plain values
    with torch.serialization.safe_globals([argparse.Namespace]):
        return _load_state(path)


def _load_state(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap can only be used" not in str(error):
            raise
    # not the zip archive torch.save writes, which alone can be memory-mapped (torch's advice then is to save it
    # so): torch.save's legacy format is read whole; anything else is no file torch.save wrote
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused it: its message says why
        raise
    except Exception:
        raise ValueError("not a file torch.save wrote") from None


@contextlib.contextmanager
def _weights_read_from(path: Path, label: str):
    """torchvision's builders fetch their weights with ``WeightsEnum.get_state_dict`` (a download, then an
    unrestricted ``torch.load``); meanwhile it reads the checked cache file with ``weights_only=True``."""
    from torchvision.models._api import WeightsEnum

    original = WeightsEnum.get_state_dict
    WeightsEnum.get_state_dict = lambda self, *args, **kwargs: read_state_dict(path, "model.weights", cached_as=label)
    try:
        yield
    finally:
        WeightsEnum.get_state_dict = original


def pretrained_weights(weights: Any) -> Any:
    """``weights``, or none where the model is built to take a checkpoint's weights (which hold them all):
    :func:`pipeline.models.weights_from_checkpoint`."""
    from pipeline.models import PRETRAINED_WEIGHTS

    return weights if PRETRAINED_WEIGHTS.get() else None


def trained_size(name: str) -> str:
    """The image size torchvision's default weights of ``name`` were trained (and are evaluated) at: 224x224 for most,
    299x299 for inception_v3, 600x600 for efficientnet_b7."""
    import torchvision.models

    size = torchvision.models.get_model_weights(name).DEFAULT.transforms.keywords.get("crop_size", 224)
    size = size if isinstance(size, int) else size[0]
    return f"{size}x{size}"


# ----- the architecture -------------------------------------------------------------------------------------------
def build_network(name: str, weights: Any, download: bool = True) -> nn.Module:
    """torchvision's ``name`` with ``weights`` loaded (its original head still on)."""
    import torchvision.models

    kind, value = resolve_weights(name, weights)
    if kind == "torchvision":
        path = ensure_cached(name, value, download, str(weights))
        with _weights_read_from(path, _weights_label(value, str(weights))), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(meta parameter|no-op).*")
            try:
                network = torchvision.models.get_model(name, weights=value)
            except RuntimeError as error:  # the cached file does not fit the architecture
                raise ConfigError(f"model.weights={_weights_label(value, str(weights))}: {path} does not fit torchvision's {name} "
                                  f"({_one_line(error)}); delete it and download it again") from None
    else:
        network = torchvision.models.get_model(name, weights=None)
    _drop_auxiliary_heads(network)
    if kind == "file":
        _load_file(network, name, value)
    return network


def _drop_auxiliary_heads(network: nn.Module) -> None:
    """Inception-v3 and GoogLeNet also return auxiliary logits in training; only the main head is trained."""
    if getattr(network, "aux_logits", False):
        network.aux_logits = False
        for attribute in ("AuxLogits", "aux1", "aux2"):
            if hasattr(network, attribute):
                setattr(network, attribute, None)


def _load_file(network: nn.Module, name: str, path: Path) -> None:
    """A state dict of the same architecture, also with its keys under ``module.`` (saved inside DataParallel), or a
    checkpoint of a run of it (``model=torchvision``: under ``model.network.``); its head, of any classes, is left out
    (it is replaced)."""
    state = read_state_dict(path, "model.weights")
    for prefix in WRAPPED_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    head_name, _ = find_head(network)
    expected = network.state_dict()
    head_keys = {key for key in expected if key.startswith(head_name + ".")}
    state = {k: v for k, v in state.items() if not k.startswith(head_name + ".")}
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state) - head_keys)
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if unexpected or missing or wrong:
        details = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                            for label, keys in (("unexpected keys", unexpected), ("missing keys", missing),
                                                ("other shapes", wrong)) if keys)
        raise ConfigError(f"model.weights={path}: not a state dict of torchvision's {name} ({details})")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(meta parameter|no-op).*")
        network.load_state_dict(state, strict=False)


def find_head(network: nn.Module) -> tuple[str, nn.Module]:
    """The final classification layer: the last Linear (or, in SqueezeNet, 1x1 Conv2d) in registration order
    whose outputs are the classes (every torchvision classifier registers its head last)."""
    head = None
    for module_name, module in network.named_modules():
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)):
            head = (module_name, module)
    if head is None:
        raise ValueError(f"no final Linear layer found in {type(network).__name__}")
    return head


def new_head(old: nn.Module, num_outputs: int, dropout: float) -> nn.Module:
    if isinstance(old, nn.Conv2d):
        layer: nn.Module = nn.Conv2d(old.in_channels, num_outputs, kernel_size=1)
    else:
        layer = nn.Linear(old.in_features, num_outputs)
    if old.weight.device.type != "meta":
        layer = layer.to(device=old.weight.device)
    return nn.Sequential(nn.Dropout(dropout), layer) if dropout > 0 else layer


@contextlib.contextmanager
def _running_batch_norm_statistics(network: nn.Module):
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for norm in norms:
        norm.eval()
    try:
        yield
    finally:
        for norm in norms:
            norm.train()


# ----- the model --------------------------------------------------------------------------------------------------
class TorchvisionClassifier(nn.Module):
    """A torchvision classification network with a new head (``num_outputs`` logits). Grey images (1 channel)
    are repeated into the 3 channels the network expects."""

    modalities: ClassVar[frozenset[str]] = frozenset({"image"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        name: str = "resnet18",
        weights: Optional[str] = "DEFAULT",
        download: bool = True,
        freeze_backbone: bool = False,
        unfreeze_at_epoch: Optional[int] = None,
        backbone_lr_scale: float = 1.0,
        input_normalization: str = "imagenet",
        channels_last: bool = True,
        dropout: float = 0.0,
        l1: float = 0.0,
    ):
        """``input_normalization`` is what the weights expect the pixels to be normalised with; the data
        configs read it (``data.normalization: ${oc.select:model.input_normalization,dataset}``), the model
        does not normalise."""
        super().__init__()
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise ValueError(f"{name} expects grey or RGB images (1 or 3, H, W), got input_shape={tuple(input_shape)}")
        self.name = name
        self.input_normalization = input_normalization
        self.network = build_network(name, pretrained_weights(weights), download)
        self.head_name, old_head = find_head(self.network)
        self.network.set_submodule(self.head_name, new_head(old_head, num_outputs, dropout))
        self.grey_input = input_shape[0] == 1
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.l1 = l1
        self.channels_last = channels_last
        self.set_backbone_trainable(not freeze_backbone)
        if channels_last:  # oneDNN and tensor cores prefer NHWC convolutions
            self.to(memory_format=torch.channels_last)
        self._check_image_size(tuple(input_shape))

    def _check_image_size(self, input_shape: tuple[int, ...]) -> None:
        """One image through the network, before any run: a network built for one size (vit_b_16: 224) or with a
        smallest size (inception_v3) failed mid-run on others, leaving a FAILED run, instead of being refused."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self(torch.zeros(1, *input_shape))
        except (AssertionError, RuntimeError, ValueError) as error:
            raise ConfigError(
                f"model.name={self.name} does not take {input_shape[1]}x{input_shape[2]} images ({_one_line(error, 160)}); "
                "give it images of a size it takes (data.image_size for image files; torchvision's pretrained weights "
                f"of {self.name} were trained at {trained_size(self.name)})") from None
        finally:
            self.train(was_training)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.network.get_submodule(self.head_name).parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.network.parameters() if id(p) not in head]

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Frozen parameters stay in the optimizer (their gradients are None, so it skips them): unfreezing
        later needs no new parameter group."""
        for parameter in self.backbone_parameters():
            parameter.requires_grad_(trainable)

    @property
    def backbone_trainable(self) -> bool:
        return all(p.requires_grad for p in self.backbone_parameters())

    def parameter_groups(self) -> list[dict]:
        return [{"params": self.backbone_parameters(), "lr_scale": self.backbone_lr_scale},
                {"params": self.head_parameters(), "lr_scale": 1.0}]

    def forward(self, x: Tensor) -> Tensor:
        if self.grey_input:
            x = x.expand(-1, 3, -1, -1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not (self.training and len(x) == 1):
            return self.network(x)
        try:
            return self.network(x)
        except ValueError as error:
            if "Expected more than 1 value per channel" not in str(error):
                raise
        # a last training batch of one image, at a size where a batch norm sees a 1x1 feature map (resnet at 32
        # px): the batch's own statistics of one value are undefined, so that batch is normalised with the running
        # statistics instead of stopping the run
        with _running_batch_norm_statistics(self.network):
            return self.network(x)

    # ----- checked when the config is validated, before any data is loaded or run created -----------------------
    @classmethod
    def check_config(cls, model) -> None:
        """``model``: the model's config node. (That unfreeze_at_epoch and data-parallel training exclude each
        other is checked with the trainer, in :func:`pipeline.config.validate`.)"""
        name = model.get("name", "resnet18")
        names = classification_models()
        if name not in names:
            raise ConfigError(f"model.name={name!r} is not a torchvision classification model{nearest(str(name), names)} "
                              "(the names: torchvision.models.list_models(module=torchvision.models))")
        unfreeze = model.get("unfreeze_at_epoch")
        if unfreeze is not None:
            if not model.get("freeze_backbone", False):
                raise ConfigError("model.unfreeze_at_epoch is set but model.freeze_backbone=false; add "
                                  "model.freeze_backbone=true (train the head first) or drop unfreeze_at_epoch")
            if unfreeze < 1:
                raise ConfigError(f"model.unfreeze_at_epoch={unfreeze} is out of range; allowed: an epoch >= 1")
        scale = model.get("backbone_lr_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise ConfigError(f"model.backbone_lr_scale={scale!r} is out of range; allowed: a number > 0 "
                              "(freeze with model.freeze_backbone=true)")
        # build it on the meta device: the weights file is found (or downloaded) and its keys and shapes
        # checked against the architecture, without reading its tensors
        with torch.device("meta"):
            build_network(name, pretrained_weights(model.get("weights", "DEFAULT")), bool(model.get("download", True)))
