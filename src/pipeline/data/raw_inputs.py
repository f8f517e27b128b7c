"""Raw inputs of text and image models: texts and image files in, the model's input tensor out, as training
made it. The table counterpart is :class:`pipeline.data.preprocessing.TablePreprocessor`.

* :class:`TextInput` -- a ``text`` column -> token ids (N, max_length), with the run's tokenizer (its JSON);
* :class:`ImageInput` -- a ``path`` column of image files -> decoded (EXIF orientation applied, converted
  to the run's channels), resized and centre-cropped as the evaluation images were, normalised with the
  run's statistics.

Each is the **raw input adapter** of the model logged to MLflow: its state is plain JSON (:meth:`to_dict`),
and this file is stored beside the model and imported from there when the model is loaded. So this module
imports nothing of the project, only numpy, pandas and torch at the top (``tokenizers``, ``torchvision`` and
``PIL`` where they are used); keep it that way. The training code reads images with :func:`decode_image_file`
from here, so a served image is decoded exactly as a training one.
"""
from __future__ import annotations

import io
import re
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

FORMAT_VERSION = 1
#: what torchvision's ImageFolder reads, plus GIF and JPEG's other names (.jfif, .jpe: images are decoded by their
#: content, not their name); here, not in image_files, so that pipeline-predict tells an image from a table without
#: importing the training side (Lightning)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class RawInputError(ValueError):
    """Raw inputs the adapter cannot read (a column missing, a file that is not an image)."""


class UnreadableImage(Exception):
    """A file that cannot be read or decoded as an image; the message says why."""


# ----- images ------------------------------------------------------------------------------------------
def decode_image_file(path: str, channels: int) -> Tensor:
    """The image at ``path`` as uint8 (channels, H, W), upright (EXIF orientation applied); raises
    :class:`UnreadableImage`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise UnreadableImage(reason(error)) from None
    if data[:8] == PNG_SIGNATURE:
        problem = _png_damage(data)
        if problem is not None:  # refused before libpng sees it (see _png_damage)
            raise UnreadableImage(f"damaged PNG data: {problem}")
    # WebP: torchvision's decoder neither converts it to grey nor applies its EXIF orientation, PIL does
    decoder = None if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else _torchvision_decoder()
    if decoder is not None:
        decode_image, modes = decoder
        try:
            image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                 mode=modes.GRAY if channels == 1 else modes.RGB, apply_exif_orientation=True)
            image = image[0] if image.ndim == 4 else image  # an animated GIF: its first frame
            if image.dtype == torch.uint16:  # a 16-bit PNG: 0..65535 onto 0..255, as an 8-bit save would write it
                image = _sixteen_bits_as_eight(image.to(torch.int32)).to(torch.uint8)
            if image.dtype == torch.uint8 and image.shape[0] == channels:
                return image
            # torchvision ignored the mode (an animated GIF comes back with 3 channels whatever was asked): PIL
            # converts it
            first_error: Optional[BaseException] = None
        except (RuntimeError, ValueError) as error:  # BMP, TIFF, PPM ... or a broken file: PIL decides
            first_error = error
    else:
        first_error = None
    try:
        return _decode_with_pil(io.BytesIO(data), channels)
    except Exception as error:  # PIL's errors for broken files are of many types
        # torchvision's reason where it read the format (a broken JPEG or PNG); PIL's for the formats torchvision
        # does not read (a truncated BMP or TIFF: "Unsupported image file. Only jpeg, png, ..." said nothing)
        known = first_error is not None and "unsupported image file" not in str(first_error).lower()
        raise UnreadableImage(reason(first_error if known else error)) from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_damage(data: bytes) -> Optional[str]:
    """Why the PNG ``data`` is damaged, from its chunks' lengths, types and checksums (no pixels are decoded), or None.

    torchvision's PNG decoder is not safe on damaged data: a flipped byte in the pixel data (IDAT) made it crash the
    process with a segmentation fault after libpng's "IDAT: incorrect data check" (pipeline-predict died without a
    word; in training the DataLoader worker died, which data.skip_bad_files cannot skip), and a damaged header had
    libpng write its own "libpng error: ..." line straight to file descriptor 2, beside this module's reason. The
    critical chunks (IHDR, PLTE, IDAT) carry CRCs, which libpng checks only once a chunk has been decoded, too late:
    they are checked here (zlib's crc32 runs at some GB/s: 3-7% of decode_image_file's time on a good PNG of 3-800 KB,
    measured here, the price of no crash). What libpng itself lets pass is let pass: a damaged ancillary chunk (it
    warns and drops it) and anything after the image data (a missing IEND)."""
    import zlib

    offset, seen_image_data, view = 8, False, memoryview(data)  # a view: the chunks are checksummed uncopied
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + 8]
        if not kind.isalpha() or not kind.isascii():
            return f"a chunk of no valid type at byte {offset}"
        name = kind.decode("ascii")
        if offset == 8 and kind != b"IHDR":
            return f"its first chunk is {name}, not IHDR"
        if kind != b"IDAT" and seen_image_data:
            return None  # the image data is whole; what follows it is not read
        end = offset + 12 + length
        critical = not kind[0] & 0x20
        if end > len(data):
            return f"the file ends inside the {name} chunk at byte {offset} (cut short?)" if critical else None
        if critical and zlib.crc32(view[offset + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"the {name} chunk at byte {offset} fails its checksum (CRC)"
        seen_image_data = kind == b"IDAT"
        offset = end
    return None if seen_image_data else "the file ends before its image data (cut short?)"


def _torchvision_decoder():
    """torchvision's decoder (libjpeg-turbo/libpng: 1.5-3x PIL's speed on JPEG/PNG, measured here), or None
    where a torchvision without it is installed (0.29 deprecates it for TorchCodec); PIL reads the rest."""
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return None
    return decode_image, ImageReadMode


def _decode_with_pil(source, channels: int) -> Tensor:
    from PIL import Image, ImageOps

    with Image.open(source) as image:
        image = _eight_bit(ImageOps.exif_transpose(image)).convert("L" if channels == 1 else "RGB")
        array = np.array(image, dtype=np.uint8)  # a copy torch may write to
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def _sixteen_bits_as_eight(values):
    """0..65535 onto 0..255, rounded, as an 8-bit save would write it (integer tensors or arrays wide enough)."""
    return (values * 255 + 32767) // 65535


def _eight_bit(image):
    """A grey image of more than 8 bits (a 16-bit, 32-bit integer or floating-point TIFF) as 8 bits: PIL's convert
    clips its values at 255, which made a 16-bit image black and white and a 0..1 float image black. 16 bits are
    scaled as a 16-bit PNG is (0..65535 onto 0..255); 32-bit integers and floats are taken as 0..255, floats whose
    values all lie in 0..1 as that range; other values are refused (ValueError), rather than guessed."""
    from PIL import Image

    mode = image.mode
    if mode.startswith("I;16"):
        wide = np.array(image).astype(np.int64)
        return Image.fromarray(_sixteen_bits_as_eight(wide).astype(np.uint8), "L")
    if mode not in ("I", "F"):
        return image
    values = np.array(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "F" and low >= 0 and high <= 1:
        values = values * 255
    elif low < 0 or high > 255 or not np.isfinite(values).all():
        kind = "32-bit integer" if mode == "I" else "floating-point"
        raise ValueError(f"a {kind} image with values from {low:g} to {high:g}; images are read as 8-bit (0-255) or "
                         f"16-bit pixels{', or floats from 0 to 1' if mode == 'F' else ''}: save it in one of these")
    return Image.fromarray(np.round(values).astype(np.uint8), "L")


def reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    # torchvision's decoders answer a damaged file with their source file's path: "decode_png, /__w/vision/.../
    # decode_png.cpp:62, Internal error." (libpng's own reason goes to stderr as a line of its own)
    # (or "operator(), .../decode_png.cpp:79, Out of bound read in decode_png. Probably, the input image is corrupted")
    decoder = re.fullmatch(r"(?:decode_\w+|operator\(\)), \S*?decode_(\w+)\.cpp:\d+, (.*)", text)
    if decoder:
        kind = decoder.group(1).upper()
        said = decoder.group(2).replace("Probably, the input image is corrupted", "").strip().rstrip(".")
        text = f"damaged {kind} data: the {kind} decoder refused it" + ("" if said == "Internal error" else f" with '{said}'")
    # PIL names the in-memory buffer it read: "cannot identify image file <_io.BytesIO object at 0x7f...>"
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", text)
    if text == "cannot identify image file":
        text = "not an image file PIL or torchvision can read"
    if "buffer length (0)" in text:  # torch.frombuffer on no bytes: "both buffer length (0) and count (-1) must not be 0"
        text = "empty file"
    if len(text) > 200:  # cut at a word, said to be cut
        text = text[:200].rsplit(" ", 1)[0] + " ..."
    return text or type(error).__name__


def _column(frame: pd.DataFrame, column: str) -> pd.Series:
    if not isinstance(frame, pd.DataFrame):
        raise RawInputError(f"expected a pandas DataFrame with a {column!r} column, got {type(frame).__name__}")
    stripped = {str(c).strip(): c for c in frame.columns}
    if column not in stripped:
        raise RawInputError(f"the input has no {column!r} column (columns: {', '.join(map(str, frame.columns))})")
    return frame[stripped[column]]


def evaluation_geometry(resize_size: int, image_size: int) -> list:
    """The evaluation images' geometry (uint8 in, uint8 out): the shorter side resized to ``resize_size``, the
    centre ``image_size`` square. Training's data module uses these very steps."""
    from torchvision.transforms import v2

    return [v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size)]


def to_model_input(mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> list:
    """uint8 -> float values in [0, 1], normalised with ``mean``/``std`` when given."""
    from torchvision.transforms import v2

    steps = [v2.ToDtype(torch.float32, scale=True)]
    if mean is not None:
        steps.append(v2.Normalize([float(v) for v in mean], [float(v) for v in std]))
    return steps


class ImageInput:
    """Image file paths -> the model's input tensor (N, channels, image_size, image_size): the evaluation
    transform of the run (shorter side resized to ``resize_size``, centre ``image_size`` square, values in
    [0, 1], normalised with ``mean``/``std`` when given)."""

    requirements = ("torchvision", "pillow")

    def __init__(self, channels: int, resize_size: int, image_size: int, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, column: str = "path"):
        self.channels, self.resize_size, self.image_size, self.column = int(channels), int(resize_size), int(image_size), column
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]
        self._transform = None

    def __getstate__(self):
        return {**self.__dict__, "_transform": None}

    def input_schema(self) -> list[tuple[str, str]]:
        return [(self.column, "image file path")]

    def input_example(self) -> None:
        return None  # paths of this machine's files would mean nothing where the model is served

    def evaluation_transform(self):
        from torchvision.transforms import v2

        return v2.Compose(evaluation_geometry(self.resize_size, self.image_size) + to_model_input(self.mean, self.std))

    def transform(self, frame: pd.DataFrame) -> Tensor:
        paths = _column(frame, self.column)
        if self._transform is None:
            self._transform = self.evaluation_transform()
        images = []
        for index, path in zip(frame.index, paths.tolist()):
            if path is None or (isinstance(path, float) and np.isnan(path)):
                raise RawInputError(f"column {self.column!r} is empty at index {index!r}")
            try:
                images.append(self._transform(decode_image_file(str(path), self.channels)))
            except UnreadableImage as error:
                raise RawInputError(f"{path}: cannot read the image ({error})") from None
        if not images:
            return torch.empty((0, self.channels, self.image_size, self.image_size))
        return torch.stack(images)

    to_tensor = transform

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "module": type(self).__module__, "class": type(self).__name__,
                "column": self.column, "channels": self.channels, "resize_size": self.resize_size,
                "image_size": self.image_size, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, state: dict) -> "ImageInput":
        _check_format(state)
        return cls(state["channels"], state["resize_size"], state["image_size"], state.get("mean"), state.get("std"),
                   state.get("column", "path"))


# ----- texts -------------------------------------------------------------------------------------------
class TextInput:
    """Texts -> token ids (N, max_length) padded with ``pad_id``, with the training run's tokenizer (a
    ``tokenizers`` JSON: vocabulary, normaliser, pre-tokeniser; a word-level one trained on the training split
    or a pretrained model's)."""

    requirements = ("tokenizers",)

    def __init__(self, tokenizer_json: str, max_length: int, pad_id: int, column: str = "text",
                 examples: Sequence[str] = (), replacements: Sequence[Sequence[str]] = ()):
        self.tokenizer_json, self.max_length, self.pad_id, self.column = tokenizer_json, int(max_length), int(pad_id), column
        self.examples = [str(t) for t in examples][:4]
        # what the data's reader replaced in every text before training (IMDB's "<br />" line breaks)
        self.replacements = [(str(old), str(new)) for old, new in replacements]
        self._tokenizer = None

    def __getstate__(self):
        return {**self.__dict__, "_tokenizer": None, "texts_cut": 0}

    def input_schema(self) -> list[tuple[str, str]]:
        return [(self.column, "text")]

    def input_example(self) -> Optional[pd.DataFrame]:
        return pd.DataFrame({self.column: self.examples}) if self.examples else None

    def transform(self, frame: pd.DataFrame) -> Tensor:
        texts = ["" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
                 for text in _column(frame, self.column).tolist()]
        for old, new in self.replacements:
            texts = [text.replace(old, new) for text in texts]
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
            self._tokenizer.no_padding()
            self._tokenizer.enable_truncation(max_length=self.max_length)
        ids = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int64)
        cut = 0
        for i, encoding in enumerate(self._tokenizer.encode_batch(texts)):
            ids[i, : len(encoding.ids)] = encoding.ids[: self.max_length]
            cut += bool(encoding.overflowing)
        # texts longer than max_length tokens, read up to it (pipeline-predict says how many)
        self.texts_cut = getattr(self, "texts_cut", 0) + cut
        return torch.from_numpy(ids)

    to_tensor = transform

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "module": type(self).__module__, "class": type(self).__name__,
                "column": self.column, "max_length": self.max_length, "pad_id": self.pad_id,
                "examples": self.examples, "tokenizer": self.tokenizer_json,
                "replacements": [list(pair) for pair in self.replacements]}

    @classmethod
    def from_dict(cls, state: dict) -> "TextInput":
        _check_format(state)
        return cls(state["tokenizer"], state["max_length"], state["pad_id"], state.get("column", "text"),
                   state.get("examples", ()), state.get("replacements", ()))


def _check_format(state: dict) -> None:
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"raw input state of format {state.get('format_version')!r}; this code reads format "
                         f"{FORMAT_VERSION}")
