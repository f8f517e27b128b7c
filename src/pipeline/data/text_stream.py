"""Texts that stay on disk, and batches tokenised in ``DataLoader`` workers.

For corpora that do not fit in memory as token tensors (``data.in_memory=false``, or ``auto`` for
large files): a text file is indexed once (the byte offset of every row: 8 bytes a row) and a row
is read only when a batch needs it; tokenisation runs in the worker processes, batch by batch
(one ``encode_batch`` call each), and each batch is padded to its longest text. Which rows form
which batch is decided in the main process by :class:`EpochBatchSampler` (shuffled per
``seed + epoch``, sharded across DDP ranks), so workers hold no state that the epoch changes.
"""
from __future__ import annotations

import bisect
import codecs
import logging
import math
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

log = logging.getLogger(__name__)


def decode_line(data: bytes) -> str:
    """One row of a text file: UTF-8, else Windows-1252, else Latin-1 (which decodes any byte)."""
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def decode_text(path: Path, data: bytes) -> str:
    """UTF-8 (with or without BOM); in a file that is not valid UTF-8 as a whole, each line that is not is read as
    :func:`decode_line` reads it (Windows-1252, else Latin-1), and the UTF-8 lines stay UTF-8: what the streamed
    reader, which decodes line by line, reads from the same file. (A file decoded whole as Windows-1252 because
    of one stray byte turned every "é" of its UTF-8 lines into "Ã©".)

    "Latin-1" as these files are found in the wild is Windows-1252 (MR's original archive holds
    0x85/0x91/0x96/0x97 for ellipses, quotes and dashes): it is tried first, as it agrees with
    ISO 8859-1 on every printable character; ISO 8859-1 itself, which decodes any byte, is last.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its BOM (Excel's "Unicode text", PowerShell)
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines, other = data.split(b"\n"), 0
    decoded = []
    for line in lines:
        try:
            decoded.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            decoded.append(decode_line(line))
            other += 1
    log.info("%s is not all UTF-8: %d of its %d lines read as Windows-1252 (Latin-1 where that fails)", path, other,
             len(lines) - (lines[-1] == b""))  # a file's last line ends with a newline: not one more line
    return "\n".join(decoded)


def read_text(path: Path) -> str:
    return decode_text(path, path.read_bytes())


#: the encoding (for ``open``, pandas) that reads a file as :func:`decode_text` does: each line UTF-8, else as
#: :func:`decode_line` reads it; for a file that is not all UTF-8 (a table of new texts for pipeline-predict)
BY_LINE_ENCODING = "utf_8_else_cp1252_by_line"


class _ByLineDecoder(codecs.IncrementalDecoder):
    """:func:`decode_text`, incrementally: whole lines are decoded as they arrive (the rest waits for its newline),
    a leading UTF-8 BOM left out."""

    def __init__(self, errors: str = "strict"):
        super().__init__(errors)
        self.pending, self.started = b"", False

    def decode(self, data, final: bool = False) -> str:
        data = self.pending + bytes(data)
        if not self.started:
            if len(data) < 3 and not final:
                self.pending = data
                return ""
            data, self.started = data.removeprefix(b"\xef\xbb\xbf"), True
        cut = len(data) if final else data.rfind(b"\n") + 1
        data, self.pending = data[:cut], data[cut:]
        return "\n".join(decode_line(line) for line in data.split(b"\n")) if data else ""

    def reset(self) -> None:
        self.pending, self.started = b"", False

    def getstate(self):
        return self.pending, int(self.started)

    def setstate(self, state) -> None:
        self.pending, self.started = state[0], bool(state[1])


def _by_line_codec(name: str) -> Optional[codecs.CodecInfo]:
    if name != BY_LINE_ENCODING:
        return None
    utf8 = codecs.lookup("utf-8")
    return codecs.CodecInfo(name=BY_LINE_ENCODING, encode=utf8.encode,
                            decode=lambda data, errors="strict": (_ByLineDecoder().decode(data, final=True), len(data)),
                            incrementalencoder=utf8.incrementalencoder, incrementaldecoder=_ByLineDecoder)


codecs.register(_by_line_codec)


class LineTexts(Sequence[str]):
    """Row ``i`` is field ``column`` (split at ``separator``) of the line starting at byte ``offsets[i]``.
    Holds only the offsets; opens the file lazily, once per process (a forked worker reopens it)."""

    def __init__(self, path: Path, offsets: np.ndarray, column: Optional[int] = None, separator: str = "\t"):
        self.path = Path(path)
        self.offsets = offsets
        self.column = column
        self.separator = separator
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.offsets)

    def _handle(self):
        import os

        if self._file is None or self._pid != os.getpid():
            self._file = open(self.path, "rb")
            self._pid = os.getpid()
        return self._file

    def _field(self, line: bytes) -> str:
        text = decode_line(line.rstrip(b"\r\n"))
        return text if self.column is None else text.split(self.separator)[self.column]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        handle = self._handle()
        handle.seek(int(self.offsets[index]))
        return self._field(handle.readline())

    def __getstate__(self):  # a file handle does not travel to a spawned worker
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state


class FileTexts(Sequence[str]):
    """Row ``i`` is the whole file ``paths[i]`` (aclImdb keeps one review a file), read when asked for."""

    def __init__(self, paths: Sequence[str], clean: Callable[[str], str] = lambda text: text):
        self.paths = list(paths)
        self.clean = clean

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.clean(read_text(Path(self.paths[index])))


class ConcatTexts(Sequence[str]):
    """Several text sequences (train, dev, test files) numbered one after another."""

    def __init__(self, parts: Sequence[Sequence[str]]):
        self.parts = [p for p in parts if len(p)]
        self.starts = list(np.cumsum([0] + [len(p) for p in self.parts[:-1]]))
        self.total = sum(len(p) for p in self.parts)

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not 0 <= index < self.total:
            raise IndexError(index)
        part = bisect.bisect_right(self.starts, index) - 1
        return self.parts[part][index - self.starts[part]]


def texts_at(texts: Sequence[str], rows: Sequence[int]) -> list[str]:
    """``[texts[i] for i in rows]``, reading a file-backed sequence in file order (sequential reads)."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(texts, list):
        return [texts[i] for i in rows.tolist()]
    order = np.argsort(rows, kind="stable")
    found = [None] * len(rows)
    for position in order.tolist():
        found[position] = texts[int(rows[position])]
    return found


class TokenizedBatches(Dataset):
    """Item ``[row, row, ...]`` (one batch of row numbers) -> (token ids (B, longest text), labels (B,))."""

    def __init__(self, texts: Sequence[str], rows: Tensor, labels: Tensor, tokenizer, pad_id: int):
        self.texts = texts
        self.rows = rows.numpy() if isinstance(rows, Tensor) else np.asarray(rows)
        self.labels = labels
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer with truncation on and padding to the longest
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: Sequence[int]) -> tuple[Tensor, Tensor]:
        positions = np.asarray(positions, dtype=np.int64)
        batch_texts = texts_at(self.texts, self.rows[positions])
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        encodings = encode(batch_texts)
        longest = max((len(e.ids) for e in encodings), default=1)
        ids = np.full((len(encodings), max(longest, 1)), self.pad_id, dtype=np.int64)
        for i, encoding in enumerate(encodings):
            ids[i, : len(encoding.ids)] = encoding.ids
        return torch.from_numpy(ids), self.labels[torch.from_numpy(positions)]


class EpochBatchSampler(DistributedSampler):
    """Batches of positions into a split: shuffled from ``seed + epoch`` (Lightning calls ``set_epoch``
    at each epoch, as for any ``DistributedSampler``), each rank taking a disjoint, equally long shard
    (padded by wrapping around) - the order :class:`~pipeline.data.base.TensorBatcher` gives in memory.
    A ``DistributedSampler`` subclass so that Lightning leaves it in place under DDP."""

    def __init__(self, num_rows: int, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, epoch_fn: Optional[Callable[[], int]] = None):
        super().__init__(range(num_rows), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.epoch_fn = epoch_fn

    def _shard_size(self) -> int:
        return math.ceil(self.num_rows / self.num_replicas)

    def __len__(self) -> int:
        return math.ceil(self._shard_size() / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
        if self.shuffle:
            order = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(self.num_rows)
        if self.num_replicas > 1:
            total = self._shard_size() * self.num_replicas
            if total > self.num_rows:
                order = torch.cat([order, order[: total - self.num_rows]])
            order = order[self.rank : total : self.num_replicas]
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size].tolist()
