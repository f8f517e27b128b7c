"""Text classification data sets: sentences -> token ids with a HuggingFace ``tokenizers``
word-level tokenizer trained on the training split only.

Until preprocessing, a :class:`Split` holds row numbers into ``TextDataModule.texts`` (a
LongTensor), so the base class can subset, concatenate and fold it like any other tensor.
``apply_preprocessing`` turns them into token ids (N, max_length), padded with [PAD]=0;
words the training split never showed map to [UNK]=1.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import re
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .base import (DataError, DataSpec, InMemoryDataModule, LoadedData, Split, TensorBatcher, label_sort_key,
                   one_spelling, onto_classes, repeats_note, test_file_note)
from .raw_inputs import TextInput
from .text_stream import decode_text, read_text  # noqa: F401  (read here, used by the readers below)
from .text_stream import (ConcatTexts, EpochBatchSampler, FileTexts, LineTexts, TokenizedBatches, decode_line,
                          texts_at)
from .workers import quiet_worker

log = logging.getLogger(__name__)

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1
SENTIMENT_CLASSES = ["negative", "positive"]


REVIEW_REPLACEMENTS = (("<br />", " "),)  # aclImdb's line breaks; the logged model replaces them too


def text_lines(text: str) -> list[str]:
    # not str.splitlines(): it also splits at U+0085 / U+2028, which Latin-1 text can hold
    return [line.rstrip("\r") for line in text.split("\n")]


def trim_padding(tokens: Tensor, pad_id: int) -> Tensor:
    """``tokens`` (B, L) cut after the last column that holds a non-pad token of any row: each batch is
    padded only to its longest text. At least one column is kept."""
    used = (tokens != pad_id).any(dim=0).nonzero()
    length = int(used[-1]) + 1 if len(used) else 1
    return tokens[:, :length]


def text_lengths(tokens: Tensor, pad_id: int, chunk_rows: int = 8192) -> Tensor:
    """Per row of ``tokens`` (N, L): one past its last non-pad column (0 for a row of pads only), computed in
    chunks of rows (the temporary stays at most ``chunk_rows`` x L int32s, 16 MiB for L = 512)."""
    positions = torch.arange(1, tokens.shape[1] + 1, dtype=torch.int32)
    if not len(tokens):
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([((chunk != pad_id) * positions).amax(dim=1) for chunk in tokens.split(chunk_rows)]).long()


class TrimmedBatcher(TensorBatcher):
    """A :class:`TensorBatcher` of (token ids, labels) whose batches are padded only to their longest
    text (text models give the same outputs for any amount of trailing padding; TextCNN on MR-length
    sentences computes a quarter of the 64 positions). Each text's length is found once, when the batcher
    is made: a batch's length is then the maximum of its rows' (~10 us), not a scan of its tokens (~80 us)."""

    def __init__(self, tensors, *args, pad_id: int = 0, **kwargs):
        tokens, *rest = tensors
        super().__init__((tokens, *rest, text_lengths(tokens, pad_id)), *args, **kwargs)

    def __iter__(self):
        for tokens, *rest, lengths in super().__iter__():
            yield (tokens[:, :max(int(lengths.max()), 1)], *rest)


@dataclass
class RawTexts:
    """What a text data set reads: texts and class indices per split."""

    class_names: list[str]
    train: Optional[tuple[list[str], list[int]]] = None  # None: an evaluation on the test file alone
    val: Optional[tuple[list[str], list[int]]] = None
    test: Optional[tuple[list[str], list[int]]] = None


class TextDataModule(InMemoryDataModule):
    """Texts -> token ids. Subclasses implement ``read_texts``.

    Two tokenizers: ``data.tokenizer=null`` trains a word-level one on the training split; a Hugging
    Face model id or local folder (by default the model's ``model.name`` when it has one, e.g.
    ``model=transformer``) loads that model's own tokenizer from the HF cache or the folder.

    Two ways to batch: in memory (every text encoded once into a (N, max_length) tensor; batches sliced
    from it) or streamed (``data.in_memory=false``: texts read when a batch needs them, tokenised in
    ``data.num_workers`` DataLoader workers). ``auto`` streams when rows x max_length is over
    ``STREAM_ABOVE_TOKENS``. Either way a batch is padded only to its longest text.
    """

    # (old, new) replaced in every text before it is tokenised, by the reader and by the logged model
    text_replacements: ClassVar[tuple[tuple[str, str], ...]] = ()

    modality: ClassVar[str] = "text"
    task_kind: ClassVar[str] = "classification"
    #: ``data.in_memory=auto`` streams when rows x max_length exceeds this many token ids (a 256 MiB int64
    #: tensor; in memory, 1M rows of max_length 64 took 1.3 GB more peak RSS than streamed: BENCHMARKS.md)
    STREAM_ABOVE_TOKENS: ClassVar[int] = 32 * 1024 * 1024

    @classmethod
    def check_config(cls, node) -> None:
        """Before anything runs (config validation): a pretrained tokenizer is a folder, in the Hugging Face cache,
        or can be downloaded; a name the model's (``model.name``) is reported under that key."""
        from omegaconf import OmegaConf

        from pipeline.config import ConfigError
        from pipeline.hub import TOKENIZER_CHECKED, check_at_hand

        name = node.get("tokenizer")
        if not name or not TOKENIZER_CHECKED.get():
            return
        model_name = OmegaConf.select(node._get_root(), "model.name", default=None)
        key = "model.name" if model_name is not None and str(model_name) == str(name) else "data.tokenizer"
        try:
            check_at_hand(key, name, files=() if key == "data.tokenizer" else ("config.json",))
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def __init__(
        self,
        vocab_size: int = 20000,
        min_frequency: int = 1,
        max_length: int = 64,
        lowercase: bool = True,
        tokenizer: Optional[str] = None,
        in_memory: Union[bool, str] = True,
        num_workers: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if vocab_size < 3:
            raise DataError(f"data.vocab_size must be at least 3 ([PAD], [UNK] and one word), got {vocab_size}")
        if max_length < 1:
            raise DataError(f"data.max_length must be >= 1, got {max_length}")
        if in_memory not in (True, False, "auto"):
            raise DataError(f"data.in_memory={in_memory!r} is not allowed; choose true, false or auto")
        if num_workers < 0:
            raise DataError(f"data.num_workers must be >= 0, got {num_workers}")
        self.vocab_size = vocab_size
        self.min_frequency = min_frequency
        self.max_length = max_length
        self.lowercase = lowercase
        self.pretrained_tokenizer = str(tokenizer) if tokenizer else None
        self.in_memory = in_memory
        self.num_workers = num_workers
        #: every text ``load`` read (a list, or file-backed rows when streamed); a split's x holds row numbers into it
        self.texts: Sequence[str] = []
        #: which rows of ``texts`` each split holds ("train"/"val"/"test"), e.g. to show misclassified sentences
        self.row_index: dict[str, Tensor] = {}
        self.tokenizer = None  # a tokenizers.Tokenizer once fit_preprocessing has run
        self.pad_id = PAD_ID
        self.streaming = False
        self.fitted: Optional[tuple[dict, DataSpec]] = None  # a trained run's (tokenizer state, spec): use_fitted

    def use_fitted(self, adapter_state: Optional[dict], spec: dict) -> bool:
        """The run's tokenizer (its vocabulary, or the pretrained one it loaded), ``max_length`` and classes,
        instead of a vocabulary learned again from this config's training rows."""
        if (adapter_state or {}).get("class") != TextInput.__name__:
            return False
        self.fitted = adapter_state, DataSpec.from_dict(spec)
        self.max_length, self.pad_id = int(adapter_state["max_length"]), int(adapter_state["pad_id"])
        return True

    # ----- reading -------------------------------------------------------------------------
    def read_texts(self) -> RawTexts:
        raise NotImplementedError

    def wants_streaming(self, rows: int) -> bool:
        """Whether to read texts lazily, given (about) how many rows there are."""
        if self.in_memory == "auto":
            return rows * self.max_length > self.STREAM_ABOVE_TOKENS
        return not self.in_memory

    def load(self) -> LoadedData:
        if self.pretrained_tokenizer is not None and self.fitted is None:
            # a missing tokenizer is refused before reading a big corpus
            self.tokenizer, self.pad_id = load_pretrained_tokenizer(self.pretrained_tokenizer, self.max_length)
        raw = self.read_texts()
        if self.fitted is not None:
            raw = self._as_trained_classes(raw)
        parts, splits, start = [], {}, 0
        for part in ("train", "val", "test"):
            pair = getattr(raw, part)
            if pair is None:
                continue
            texts, labels = pair
            parts.append(texts)
            splits[part] = Split(
                torch.arange(start, start + len(texts), dtype=torch.long), torch.as_tensor(labels, dtype=torch.long)
            )
            start += len(texts)
        if all(isinstance(p, list) for p in parts):
            self.texts = [text for p in parts for text in p]
        else:
            self.texts = ConcatTexts(parts)
            self.streaming = True
        if self.in_memory is False:
            self.streaming = True
        log.info("%s: %d texts, %s", self.name, len(self.texts),
                 "streamed (read and tokenised per batch)" if self.streaming else "in memory")
        return LoadedData(  # no training rows in an evaluation on the test file alone (test_file_alone)
            train=splits.get("train"), val=splits.get("val"), test=splits.get("test"), class_names=raw.class_names
        )

    def _as_trained_classes(self, raw: RawTexts) -> RawTexts:
        """The labels of ``raw`` as indices of the trained run's classes (``use_fitted``); a label it was not
        trained on is refused."""
        trained = list(self.fitted[1].class_names or [])
        if raw.class_names == trained:
            return raw
        mapping, unseen = onto_classes(raw.class_names, trained)
        if unseen is not None:
            where, rows = self.name, ""
            if self.test_path is not None and raw.test is not None:  # an evaluation on a test file: name it
                where = f"{self._test_file()} (data.test_path)"
                ids = np.asarray(raw.test[1], dtype=np.int64)
                found = np.flatnonzero(ids == raw.class_names.index(unseen))
                rows = f" ({len(found):,} row{'s' if len(found) != 1 else ''}, the first is data row {found[0] + 1:,})"
            raise DataError(f"{where}: label {unseen!r}{rows} is not a class the model was trained on "
                            f"({', '.join(map(repr, trained))})")
        parts = {part: (pair[0], mapping[np.asarray(pair[1], dtype=np.int64)])
                 for part in ("train", "val", "test") if (pair := getattr(raw, part)) is not None}
        return RawTexts(class_names=trained, **parts)

    def _split(self, data: LoadedData) -> tuple[Split, Split, Split]:
        train, val, test = self._index_rows(*super()._split(data))
        self._repeat_note = self._repeated_texts(train, test)
        return train, val, test

    def _repeated_texts(self, train: Split, test: Split) -> Optional[str]:
        """A note when test rows repeat a training text exactly (duplicated rows, or the training file given as
        data.test_path): the test metrics then overstate how the model does on new texts. Texts held in memory
        only (a streamed corpus is not read whole for it)."""
        if not isinstance(self.texts, list) or not len(test) or not len(train):
            return None
        trained = set(self.texts_of(train.x))
        return repeats_note(sum(text in trained for text in self.texts_of(test.x)), len(test), "a training text")

    def how_split(self) -> list[str]:
        note = getattr(self, "_repeat_note", None)
        return ([note] if note else []) + self._cut_note()

    def _cut_note(self) -> list[str]:
        """How many texts are longer than data.max_length tokens: everything after is never read (an IMDB review
        loses most of its words at the default 64), which nothing said."""
        counts = getattr(self, "_cut_counts", [])
        cut, total = sum(c for c, _ in counts), sum(n for _, n in counts)
        if not cut:
            return []
        return [f"{cut:,} of {total:,} texts ({100 * cut / total:.0f} %) are longer than data.max_length="
                f"{self.max_length} tokens: only their first {self.max_length} are read (raise data.max_length to "
                "read more)"]

    def _test_file_splits(self, data: LoadedData) -> tuple[Split, Split, Split]:
        return self._index_rows(*super()._test_file_splits(data))

    def _index_rows(self, train: Split, val: Split, test: Split) -> tuple[Split, Split, Split]:
        self.row_index = {"train": train.x.clone(), "val": val.x.clone(), "test": test.x.clone()}
        return train, val, test

    def test_row_sources(self) -> Optional[tuple[str, list[str]]]:
        """The text of each test row, in the test split's order (a ``text`` column of predictions/test.csv)."""
        rows = self.row_index.get("test")
        return None if rows is None else ("text", self.texts_of(rows))

    def texts_of(self, rows: Tensor) -> list[str]:
        return texts_at(self.texts, rows.tolist() if isinstance(rows, Tensor) else rows)

    # ----- tokenizer -----------------------------------------------------------------------
    def build_tokenizer(self):
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if self.lowercase else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # words and runs of punctuation
        return tokenizer

    def _training_texts(self, rows: Tensor):
        """The training split's texts, in chunks (a streamed corpus is never held whole)."""
        rows = np.sort(rows.numpy())
        for start in range(0, len(rows), 65536):
            yield from texts_at(self.texts, rows[start : start + 65536])

    def fit_preprocessing(self, train: Split) -> None:
        if self.fitted is not None:  # the trained run's, padding and truncation included
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(self.fitted[0]["tokenizer"])
        elif self.pretrained_tokenizer is not None:
            tokenizer = self.tokenizer  # loaded in load(); nothing is learned from the data
        else:
            from tokenizers import trainers

            tokenizer = self.build_tokenizer()
            trainer = trainers.WordLevelTrainer(
                vocab_size=self.vocab_size,
                min_frequency=self.min_frequency,
                special_tokens=[PAD, UNK],  # in this order: ids 0 and 1
                show_progress=False,
            )
            tokenizer.train_from_iterator(self._training_texts(train.x), trainer, length=len(train))
            if tokenizer.token_to_id(PAD) != PAD_ID or tokenizer.token_to_id(UNK) != UNK_ID:
                raise RuntimeError("tokenizer: special tokens did not get ids [PAD]=0, [UNK]=1")
            if tokenizer.get_vocab_size() <= 2:  # every text would be [UNK]s: a model of the text lengths
                raise DataError(f"data: no word occurs data.min_frequency={self.min_frequency} times in the "
                                f"{len(train):,} training texts, so the vocabulary holds [PAD] and [UNK] only; lower "
                                "data.min_frequency")
            tokenizer.enable_truncation(max_length=self.max_length)
        pad_token = tokenizer.id_to_token(self.pad_id)
        # in memory: every row padded to max_length (encode() pads them in its array; the saved tokenizer pads so);
        # streamed: each batch is padded to its longest text as it is encoded
        tokenizer.enable_padding(pad_id=self.pad_id, pad_token=pad_token,
                                 length=None if self.streaming else self.max_length)
        self.tokenizer = tokenizer

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Token ids (len(texts), max_length) of any texts, with the data's tokenizer."""
        if self.tokenizer is None:
            raise RuntimeError("the tokenizer is trained in setup(); call setup() first")
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets nobody here reads
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        ids = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int64)
        cut = 0
        # the array pads; padded to max_length by the tokenizer, each encoding held max_length tokens with their
        # offsets and masks: data.max_length=100000 on 1,206 short texts took 9.7 GB and 50 s before the first epoch
        padding = self.tokenizer.padding
        self.tokenizer.no_padding()
        try:
            for start in range(0, len(texts), 65536):  # bounded temporary memory for big corpora
                for i, encoding in enumerate(encode(list(texts[start : start + 65536])), start=start):
                    ids[i, : len(encoding.ids)] = encoding.ids
                    cut += bool(encoding.overflowing)
        finally:
            if padding is not None:
                self.tokenizer.enable_padding(**padding)
        self.last_cut = cut  # texts longer than max_length tokens, of these (said on the data line)
        return torch.from_numpy(ids)

    def row_identity(self, split: Split) -> list:
        """The texts themselves (held in memory) and labels, not their token ids, which come from a vocabulary fitted
        on the training rows; a streamed corpus, not read here: its row numbers."""
        if self.streaming:
            return [split.x, split.y]
        texts = "\0".join(self.texts_of(split.x)).encode("utf-8", "surrogatepass")
        return [np.frombuffer(texts, dtype=np.uint8), split.y]

    def apply_preprocessing(self, split: Split) -> Split:
        if self.streaming:
            return split  # row numbers: texts are read and encoded per batch
        encoded = Split(self.encode(self.texts_of(split.x)), split.y)
        self._cut_counts = [*getattr(self, "_cut_counts", []), (self.last_cut, len(split))]  # train, val, test
        return encoded

    def describe(self, train: Split, class_names) -> DataSpec:
        if self.fitted is not None:  # what the trained run's model was built for
            return self.fitted[1]
        spec = super().describe(train, class_names)
        spec.input_shape = (self.max_length,)
        spec.vocab_size = self.tokenizer.get_vocab_size()
        spec.extra.update(pad_id=self.pad_id, max_length=self.max_length,
                          tokenizer=self.pretrained_tokenizer or "word-level")
        if self.pretrained_tokenizer is None:
            spec.extra["unk_id"] = UNK_ID
            # the words, for models that look inside them (NBSVM's character n-grams); a model gets it only if it
            # asks for it (pipeline.models.model_inputs)
            spec.model_inputs["vocabulary"] = [self.tokenizer.id_to_token(i) for i in range(spec.vocab_size)]
        return spec

    # ----- batches ---------------------------------------------------------------------------
    def _batcher(self, split: Split, train: bool):
        rank, world_size = self._rank()
        batch_size = self.batch_size if train else self.eval_batch_size
        if not self.streaming:
            return TrimmedBatcher((split.x, split.y), batch_size, shuffle=train, seed=self.seed,
                                  epoch_fn=self._epoch, rank=rank, world_size=world_size, pad_id=self.pad_id)
        from torch.utils.data import DataLoader

        if self.num_workers > 0:
            # the workers are forked after the tokenizer may have used its own threads
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        sampler = EpochBatchSampler(len(split), batch_size, shuffle=train, seed=self.seed, rank=rank,
                                    world_size=world_size, epoch_fn=self._epoch)
        from .streaming import DeferredLoader

        # deferred: Lightning creates the first epoch's iterator before it restores a resumed run's epoch, and a
        # loader with workers prefetches (reads the epoch's order) at once: a resumed run replayed epoch 0's order
        return DeferredLoader(DataLoader(
            TokenizedBatches(self.texts, split.x, split.y, self.tokenizer, self.pad_id),
            sampler=sampler,
            batch_size=None,  # an item is a whole batch: one encode_batch call per batch
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0 and train,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=quiet_worker,
            # the loader's base seed would otherwise be drawn from the global RNG (dropout's) whenever an iterator
            # starts: every epoch without workers, once with persistent ones, again after a resume, so a resumed run
            # and runs with another data.num_workers trained otherwise
            generator=torch.Generator().manual_seed(self.seed if self.seed is not None else 0),
        ))

    def evaluation_batches(self, split: Split):
        """Every row of ``split`` once, in order, on one process (the run's test-set plots)."""
        if not self.streaming:
            return TrimmedBatcher((split.x, split.y), self.eval_batch_size, shuffle=False, pad_id=self.pad_id)
        dataset = TokenizedBatches(self.texts, split.x, split.y, self.tokenizer, self.pad_id)
        sampler = EpochBatchSampler(len(split), self.eval_batch_size, shuffle=False)
        return (dataset[rows] for rows in sampler)

    def example_input(self, rows: int = 4) -> Tensor:
        """Test rows as the logged model takes them: token ids padded to ``max_length``."""
        if not self.streaming:
            return super().example_input(rows)
        return self.encode(self.texts_of(self.test_split.x[:rows]))

    def raw_input_adapter(self, column: str = "text") -> TextInput:
        """What turns raw texts (column ``column`` of a DataFrame) into the model's inputs, as training did."""
        examples: Sequence[str] = ()
        if self.train_split is not None and len(self.train_split):  # two training texts: the model's input example
            first = self.train_split.x[:2]
            examples = (self.texts_of(first) if self.streaming  # row numbers; in memory: token ids
                        else [self.tokenizer.decode([int(i) for i in row if int(i) != self.pad_id]) for row in first])
        return TextInput(self.tokenizer_json(), self.max_length, self.pad_id, column, examples, self.text_replacements)

    # ----- artifacts -------------------------------------------------------------------------
    def tokenizer_json(self) -> str:
        """The tokenizer (vocabulary, normaliser, padding) as JSON, e.g. to log it."""
        if self.tokenizer is None:
            raise RuntimeError("the tokenizer is trained in setup(); call setup() first")
        return self.tokenizer.to_str()

    def save_artifacts(self, directory: Path) -> list[Path]:
        if self.tokenizer is None:
            return []
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "tokenizer.json"
        self.tokenizer.save(str(path))
        return [path, *super().save_artifacts(directory)]


def load_pretrained_tokenizer(name: str, max_length: int):
    """The fast tokenizer of a Hugging Face model (id in the HF cache, or a local folder) as a
    ``tokenizers.Tokenizer`` truncating to ``max_length`` (special tokens included), and its pad id."""
    from pipeline.hub import unavailable

    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise DataError(f"data.tokenizer={name} needs the transformers package: pip install transformers") from None
    try:
        pretrained = AutoTokenizer.from_pretrained(str(Path(name).expanduser()) if Path(name).expanduser().is_dir()
                                                   else name)
    except Exception as error:  # OSError (not cached / offline / no such repo), ValueError (no tokenizer files)
        raise DataError(unavailable("data.tokenizer", name, error)) from None
    if not getattr(pretrained, "is_fast", False):
        raise DataError(f"data.tokenizer={name}: only fast (Rust) tokenizers are supported; this one is "
                        f"{type(pretrained).__name__}")
    limit = getattr(pretrained, "model_max_length", None)
    if limit is not None and limit < 1_000_000 and max_length > limit:
        raise DataError(f"data.max_length={max_length} is longer than {name} takes ({limit} tokens); "
                        f"set data.max_length<={limit}")
    pad_id = next((i for i in (pretrained.pad_token_id, pretrained.eos_token_id) if i is not None), None)
    if pad_id is None:
        # not its unknown token: the attention mask and the batch trimming take the pad id for padding, so every
        # word the tokenizer does not know would be left out
        unknown = ("" if pretrained.unk_token is None else f", and its unknown token {pretrained.unk_token} would pad "
                   "them: every word it does not know would be read as padding and left out")
        raise DataError(f"data.tokenizer={name} has no pad token (nor an end-of-sequence one) to pad batches "
                        f"with{unknown}; set one and save the tokenizer again (tokenizer.pad_token = '[PAD]'; "
                        "tokenizer.save_pretrained(folder))")
    special = pretrained.num_special_tokens_to_add()
    if max_length <= special:  # the tokenizer cannot cut below its own markers: it would not truncate at all
        raise DataError(f"data.max_length={max_length} leaves no room for words: {name} adds {special} special "
                        f"tokens to every text; set data.max_length>{special}")
    tokenizer = pretrained.backend_tokenizer
    if tokenizer.get_vocab_size(with_added_tokens=True) <= len(set(pretrained.all_special_ids)):
        # a folder saved with the model alone: transformers makes a tokenizer of special tokens only, and every
        # word would be [UNK] (a run that learns nothing, with exit 0)
        folder = Path(str(name)).expanduser()
        found = [f for f in ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer_config.json")
                 if (folder / f).is_file()] if folder.is_dir() else []
        where = (f"the folder's {', '.join(found)} hold{'s' if len(found) == 1 else ''} no vocabulary (a tokenizer made "
                 "before its words were added, or without them)" if found else
                 "the folder holds no tokenizer files (tokenizer.json, or vocab.txt with tokenizer_config.json)")
        raise DataError(f"data.tokenizer={name} (model.name, unless set apart): the tokenizer has no words, only its "
                        f"special tokens ({', '.join(pretrained.all_special_tokens)}); {where}: save the trained "
                        "tokenizer beside the model (tokenizer.save_pretrained(folder))")
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer, int(pad_id)


def _shuffled(texts: list[str], labels: list[int], seed: int = 0) -> tuple[list[str], list[int]]:
    """A fixed mixing of class-sorted files, so ``limit_rows`` takes rows of every class."""
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order], [labels[i] for i in order]


# ----- movie review sentence polarity (Pang & Lee 2005) --------------------------------------
class MovieReviews(TextDataModule):
    """MR: 5,331 positive + 5,331 negative one-line snippets; no official split (10-fold CV)."""

    name: ClassVar[str] = "mr"
    url: ClassVar[str] = "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
    files: ClassVar[tuple[str, str]] = ("rt-polarity.neg", "rt-polarity.pos")  # label 0, 1

    def __init__(self, download: bool = True, max_length: int = 64, **kwargs):
        super().__init__(max_length=max_length, **kwargs)
        self.download = download

    def candidate_folders(self) -> list[Path]:
        return [self.data_dir / "mr", self.data_dir / "mr" / "rt-polaritydata", self.data_dir / "rt-polaritydata"]

    def _locate(self) -> Optional[Path]:
        for folder in self.candidate_folders():
            if all((folder / f).is_file() for f in self.files):
                return folder
        return None

    def _download(self) -> None:
        target = self.data_dir / "mr"
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target) as tmp:
            archive = Path(tmp) / "rt-polaritydata.tar.gz"
            with urllib.request.urlopen(self.url, timeout=60) as response, archive.open("wb") as out:
                out.write(response.read())
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    if member.isfile() and Path(member.name).name in self.files:
                        (target / Path(member.name).name).write_bytes(tar.extractfile(member).read())

    def read_texts(self) -> RawTexts:
        folder = self._locate()
        download_error = None
        if folder is None and self.download:
            try:
                self._download()
            except Exception as error:  # offline, read-only data_dir, bad archive: reported below
                download_error = f"{type(error).__name__}: {error}"
            folder = self._locate()
        if folder is None:
            looked = "; ".join(str(f) for f in self.candidate_folders())
            tried = (
                f" Downloading {self.url} failed ({download_error})."
                if download_error
                else (" Downloading is off (data.download=false)." if not self.download else "")
            )
            raise DataError(
                f"mr: {' and '.join(self.files)} not found; looked in: {looked}.{tried} "
                f"Get {self.url} and extract rt-polarity.pos/.neg into {self.data_dir / 'mr'}"
            )
        texts, labels = [], []
        for label, name in enumerate(self.files):
            path = folder / name
            lines = [line.strip() for line in text_lines(read_text(path))]
            lines = [line for line in lines if line]
            if not lines:
                raise DataError(f"{path}: the file is empty (expected one sentence a line); re-download {self.url}")
            texts += lines
            labels += [label] * len(lines)
        texts, labels = _shuffled(texts, labels)
        return RawTexts(train=(texts, labels), class_names=list(SENTIMENT_CLASSES))


# ----- a folder of train/dev/test tables (GLUE layout) ----------------------------------------
# the names exported review and tweet tables give their columns, for the hint of a missing column
TEXT_COLUMN_NAMES = ("text", "review", "sentence", "comment", "content", "body", "tweet", "document", "message",
                     "reviewtext", "review_text", "phrase")
LABEL_COLUMN_NAMES = ("label", "sentiment", "polarity", "class", "target", "rating", "stars", "score", "y")


def _column_keys(header: list[str], text: bool, label: bool) -> str:
    """The keys to set for missing columns, with the header's likely column as an example where one is
    named as exported tables name them (``data.text_column=review``)."""
    def key(name: str, known: tuple[str, ...]) -> str:
        likely = next((column for column in header if column.lower() in known), None)
        return f"data.{name}={likely}" if likely is not None else f"data.{name}"

    keys = ([key("text_column", TEXT_COLUMN_NAMES)] if text else []) + \
        ([key("label_column", LABEL_COLUMN_NAMES)] if label else [])
    return " ".join(keys)


def _header_problem(path: Path, header: list[str], text_column: str, label_column: str) -> Optional[str]:
    """What is wrong with a first line that names neither column, where no column key can fix it: a file separated
    otherwise (the header read as one column), or a file without a header row (its first line is data)."""
    if len(header) == 1:
        separator = next((sep for sep in (";", "|", "\t", ",") if sep in header[0]), None)
        if separator is not None:
            read_as = "tab-separated" if path.suffix == ".tsv" else "comma-separated (CSV quoting)"
            return (f"the file seems separated by {separator!r}, and a {path.suffix} file is read as {read_as}; "
                    f"write it with tabs (.tsv) or commas (.csv), e.g. pandas.read_csv(path, sep={separator!r})"
                    ".to_csv('texts.csv', index=False)")
    looks_like_data = [cell for cell in header if re.fullmatch(r"\s*[-+]?\d+(\.\d+)?\s*", cell)
                       or len(cell.split()) >= 4]
    if looks_like_data:
        sep = "<tab>" if path.suffix == ".tsv" else ","
        return (f"the first line looks like data ({looks_like_data[0]!r}), not a header naming the columns; add a "
                f"header line first, e.g. '{text_column}{sep}{label_column}' for a text then a label (if it is the "
                "header, set data.text_column and data.label_column to its names)")
    return None


class TextTSV(TextDataModule):
    """``train``, optional ``dev`` and ``test`` files (``.tsv`` or ``.csv``) with a header row,
    a text column and a label column, as GLUE's SST-2; or one such file (``data.path=reviews.csv``),
    split into training, validation and test rows as a folder with only ``train`` is. A file without the
    label column (GLUE's test set) is treated as absent. Labels map to class indices in sorted order."""

    name: ClassVar[str] = "text_tsv"
    reads_test_file_alone: ClassVar[bool] = True
    part_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": ("train",),
        "val": ("dev", "val", "validation"),
        "test": ("test",),
    }

    def __init__(self, path: str = "", text_column: str = "sentence", label_column: str = "label",
                 test_path: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.path = Path(path) if path else None
        self.test_path = Path(test_path) if test_path else None  # a labelled test file of its own
        self.text_column = text_column
        self.label_column = label_column

    def raw_input_adapter(self, column: Optional[str] = None) -> TextInput:
        """Texts in a column named as in the training files (``data.text_column``)."""
        return super().raw_input_adapter(column or self.text_column)

    def test_row_sources(self) -> Optional[tuple[str, list[str]]]:
        """The test rows' texts under ``data.text_column``, the column the logged model reads, so that
        predictions/test.csv is an input pipeline-predict takes as it is (it was ``text``); ``text`` where that name
        is one of the file's own columns."""
        found = super().test_row_sources()
        own = self.text_column in ("row", "target", "prediction") or self.text_column.startswith("probability_")
        return None if found is None else ("text" if own else self.text_column, found[1])

    def how_split(self) -> list[str]:
        if self.test_path is None:
            return super().how_split()
        return [test_file_note(self.test_path, self.cv_folds), *super().how_split()]

    def _find(self, root: Path, part: str) -> Optional[Path]:
        for stem in self.part_names[part]:
            for suffix in (".tsv", ".csv"):
                if (root / f"{stem}{suffix}").is_file():
                    return root / f"{stem}{suffix}"
        return None

    def _rows(self, path: Path) -> list[tuple[int, list[str]]]:
        """(line number, cells) of every non-blank line, the header first."""
        text = read_text(path)
        if path.suffix == ".tsv":
            # no quoting: SST-2 sentences hold bare quote characters
            numbered = [(n, line) for n, line in enumerate(text_lines(text), start=1)]
            return [(n, line.split("\t")) for n, line in numbered if line.strip()]
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a whole book in one cell (default: 128 KiB)
        rows, reader = [], csv.reader(io.StringIO(text, newline=""))
        start = 1
        try:
            for cells in reader:
                if any(c.strip() for c in cells):
                    rows.append((start, cells))
                start = reader.line_num + 1
        except csv.Error as error:
            raise DataError(f"{path}:{start}: {error}") from None
        return rows

    def _columns(self, path: Path, line_no: int, header: list[str], required: bool) -> Optional[tuple[int, int]]:
        """Where the text and label columns are in ``header``; None for a file without labels (not used)."""
        if self.test_path is not None and path == Path.cwd() / self.test_path and (self.text_column not in header or (required and self.label_column not in header)):
            # the column keys read every file: the hint to set them would break the training file
            raise DataError(f"{path}:{line_no}: the header {header} lacks {self.text_column!r} or {self.label_column!r} "
                            f"(data.text_column, data.label_column, as the training file names them); name the test "
                            "file's columns as the training file's")
        if self.text_column not in header:
            raise DataError(f"{path}:{line_no}: no column {self.text_column!r} in the header {header}; "
                            + (_header_problem(path, header, self.text_column, self.label_column) or "set "
                               + _column_keys(header, text=True, label=required and self.label_column not in header)))
        if self.label_column not in header:
            if required:
                raise DataError(f"{path}:{line_no}: no column {self.label_column!r} in the header {header}; set "
                                f"{_column_keys(header, text=False, label=True)}")
            log.info("%s has no %r column (unlabelled, like GLUE's test set): not used", path, self.label_column)
            return None
        return header.index(self.text_column), header.index(self.label_column)

    def _label(self, path: Path, line_no: int, cells: list[str], header: list[str], label_at: int) -> str:
        """The label of one data row, after checking the row has every column and a label."""
        if len(cells) != len(header):
            raise DataError(
                f"{path}:{line_no}: expected {len(header)} columns ({', '.join(header)}), found {len(cells)}"
            )
        label = cells[label_at].strip()
        if not label:
            raise DataError(f"{path}:{line_no}: missing label in column {self.label_column!r}")
        return one_spelling(label)

    def _read(self, path: Path, required: bool) -> Optional[tuple[list[str], list[str], list[int]]]:
        rows = self._rows(path)
        if not rows:
            raise DataError(f"{path}: the file is empty (expected a header row with {self.text_column!r} and {self.label_column!r})")
        header = [h.strip() for h in rows[0][1]]
        columns = self._columns(path, rows[0][0], header, required)
        if columns is None:
            return None
        text_at, label_at = columns
        texts, labels, lines = [], [], []
        for line_no, cells in rows[1:]:
            labels.append(self._label(path, line_no, cells, header, label_at))
            texts.append(cells[text_at])
            lines.append(line_no)
        if not texts:
            raise DataError(f"{path}: no data rows after the header")
        return texts, labels, lines

    def _index(self, path: Path, required: bool) -> Optional[tuple[LineTexts, list[str], list[int]]]:
        """The streamed counterpart of ``_read`` for a ``.tsv`` file: one pass that keeps the byte offset
        and the label of each row (not its text); the same checks and messages."""
        from array import array

        offsets, label_ids, first_lines = array("q"), array("q"), []
        labels: dict[str, int] = {}
        header, text_at, label_at = None, None, None
        with open(path, "rb") as file:
            position, line_no = 0, 0
            for raw in file:
                line_no += 1
                start, position = position, position + len(raw)
                if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw, start = raw[3:], start + 3
                if line_no == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise DataError(f"{path}: a UTF-16 file (its byte-order mark), which is not read line by line; "
                                    "save it as UTF-8, or set data.in_memory=true")
                if not raw.strip():
                    continue
                cells = decode_line(raw.rstrip(b"\r\n")).split("\t")
                if header is None:
                    header = [h.strip() for h in cells]
                    columns = self._columns(path, line_no, header, required)
                    if columns is None:
                        return None
                    text_at, label_at = columns
                    continue
                label = self._label(path, line_no, cells, header, label_at)
                if label not in labels:
                    labels[label] = len(labels)
                    first_lines.append(line_no)
                offsets.append(start)
                label_ids.append(labels[label])
        if header is None:
            raise DataError(f"{path}: the file is empty (expected a header row with {self.text_column!r} and "
                            f"{self.label_column!r})")
        if not offsets:
            raise DataError(f"{path}: no data rows after the header")
        names = sorted(labels, key=labels.get)
        texts = LineTexts(path, np.frombuffer(offsets, dtype=np.int64).copy(), column=text_at)
        return texts, names, np.frombuffer(label_ids, dtype=np.int64).copy(), first_lines

    def _labels_required(self, part: str) -> bool:
        """A dev/test file without labels is ignored (GLUE's test set); a test file named by data.test_path is not."""
        return part == "test" and self.test_path is not None

    def _classes(self, train_path: Path, labels, rows: int) -> list[str]:
        """The training file's classes in sorted order; at least two, and not one per row (an identifier or the
        text column read as the label). A trained run's classes (``use_fitted``) instead, when they hold every
        label."""
        if self.fitted is not None and set(labels) <= set(self.fitted[1].class_names or []):
            return list(self.fitted[1].class_names)
        classes = sorted(labels, key=label_sort_key)
        if len(classes) < 2:
            raise DataError(f"{train_path}: column {self.label_column!r} holds a single class {classes}; need at least two")
        if self.label_column == self.text_column:
            raise DataError(f"data.label_column and data.text_column both name {self.label_column!r}; the label is "
                            "another column")
        _warn_of_labels_differing_by_case(train_path, self.label_column, classes)
        if len(classes) > 20 and len(classes) > rows / 2:
            raise DataError(f"{train_path}: column {self.label_column!r} (data.label_column) holds {len(classes):,} "
                            f"different labels in {rows:,} rows, about one per row: an identifier or a text, not "
                            "a class; name the label column with data.label_column=<column>")
        return classes

    def _read_streamed(self, found: dict[str, Optional[Path]]) -> RawTexts:
        train_path = found["train"]
        for path in found.values():
            if path is not None and path.suffix != ".tsv":
                raise DataError(f"{path}: streamed reading (data.in_memory=false or auto on a large corpus) takes "
                                ".tsv files, not CSV, whose quoted fields may span lines; convert it to .tsv or set "
                                "data.in_memory=true")
        texts, names, label_ids, _ = self._index(train_path, required=True)
        classes = self._classes(train_path, names, len(label_ids))
        index = {c: i for i, c in enumerate(classes)}
        parts = {"train": (texts, np.array([index[n] for n in names], dtype=np.int64)[label_ids])}
        for part in ("val", "test"):
            if found[part] is None or (read := self._index(found[part], required=self._labels_required(part))) is None:
                continue
            texts, names, label_ids, first_lines = read
            for name, line_no in zip(names, first_lines):
                if name not in index:
                    raise DataError(f"{found[part]}:{line_no}: label {name!r} does not occur in {train_path} "
                                    f"(classes {classes})")
            parts[part] = (texts, np.array([index[n] for n in names], dtype=np.int64)[label_ids])
        return RawTexts(class_names=classes, **parts)

    def _files(self) -> dict[str, Optional[Path]]:
        """The training file and the validation and test files beside it (None: absent): a folder's
        ``train``/``dev``/``test`` files, or one file given by name (the other splits then drawn from it)."""
        if self.path is None:
            raise DataError("data.path is required for data=text_tsv (a folder with train.tsv and optionally dev.tsv, "
                            "test.tsv; or one .tsv/.csv file)")
        found = self._layout()
        if self.test_path is not None:  # an official test file: the test rows, labelled, whatever the folder holds
            found["test"] = self._test_file()
        return found

    def _test_file(self) -> Path:
        test = self.test_path if self.test_path.is_absolute() else Path.cwd() / self.test_path
        if not test.is_file() or test.suffix.lower() not in (".tsv", ".csv"):
            raise DataError(f"data.test_path: {test} is " + ("not a .tsv or .csv file" if test.is_file() else
                                                             "not found") + " (a header row, then a text and a label per row)")
        return test

    def _read_test_file_alone(self) -> RawTexts:
        """The test file's texts alone (``test_file_alone``), labels as written: ``load`` maps them onto the
        trained run's classes, refusing one it was not trained on."""
        test = self._test_file()
        if test.suffix == ".tsv" and self.wants_streaming(_count_lines(test)):
            texts, names, label_ids, _ = self._index(test, required=True)
            return RawTexts(class_names=names, test=(texts, label_ids))
        texts, labels, _ = self._read(test, required=True)
        names = sorted(set(labels), key=label_sort_key)
        index = {name: i for i, name in enumerate(names)}
        return RawTexts(class_names=names, test=(texts, [index[label] for label in labels]))

    def _layout(self) -> dict[str, Optional[Path]]:
        """The files of ``data.path``: one file to train on, or a folder's train/dev/test files."""
        root = self.path if self.path.is_absolute() else Path.cwd() / self.path
        if root.is_file():
            if root.suffix.lower() not in (".tsv", ".csv"):
                raise DataError(f"data.path: {root} is neither a .tsv nor a .csv file (a header row, then a text and "
                                f"a label per row); or give the folder that holds train.tsv")
            return {"train": root, "val": None, "test": None}
        if not root.is_dir():
            raise DataError(f"data.path: not found: {root} (a folder with train.tsv and optionally dev.tsv, test.tsv; "
                            "or one .tsv/.csv file)")
        found = {part: self._find(root, part) for part in ("train", "val", "test")}
        if found["train"] is None:
            raise DataError(f"data.path: no train.tsv or train.csv in {root}")
        return found

    def read_texts(self) -> RawTexts:
        if self.test_file_only:
            return self._read_test_file_alone()
        found = self._files()
        train_path = found["train"]
        files = [p for p in found.values() if p is not None]
        # auto never streams CSV (streaming takes .tsv only); data.in_memory=false on CSV is refused with the reason
        csv_auto = self.in_memory == "auto" and any(p.suffix != ".tsv" for p in files)
        if not csv_auto and self.wants_streaming(sum(_count_lines(p) for p in files)):
            return self._read_streamed(found)
        train = self._read(train_path, required=True)
        classes = self._classes(train_path, set(train[1]), len(train[1]))
        index = {c: i for i, c in enumerate(classes)}
        parts = {"train": (train[0], [index[c] for c in train[1]])}
        for part in ("val", "test"):
            path = found[part]
            read = self._read(path, required=self._labels_required(part)) if path is not None else None
            if read is None:
                continue
            texts, labels, lines = read
            for label, line_no in zip(labels, lines):
                if label not in index:
                    raise DataError(f"{path}:{line_no}: label {label!r} does not occur in {train_path} (classes {classes})")
            parts[part] = (texts, [index[c] for c in labels])
        return RawTexts(class_names=classes, **parts)


def _count_lines(path: Path) -> int:
    """Newlines in a file, read in 16 MiB blocks (an upper bound on its rows; ~0.1 s per 100 MB)."""
    lines = 0
    with open(path, "rb") as file:
        while block := file.read(1 << 24):
            lines += block.count(b"\n")
    return lines


def _warn_of_labels_differing_by_case(path: Path, column: str, classes: Sequence[str]) -> None:
    by_case: dict[str, list[str]] = {}
    for name in classes:
        by_case.setdefault(name.casefold(), []).append(name)
    alike = [names for names in by_case.values() if len(names) > 1]
    if alike:
        log.warning("%s: labels in column %r that differ only by case are different classes: %s; write each class "
                    "one way if they are one", path, column, "; ".join(" and ".join(map(repr, n)) for n in alike))


# ----- IMDB (Maas et al. 2011) ----------------------------------------------------------------
class IMDB(TextDataModule):
    """Large Movie Review Dataset: ``aclImdb/{train,test}/{pos,neg}/*.txt`` (25k/25k reviews)."""

    name: ClassVar[str] = "imdb"
    url: ClassVar[str] = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
    folders: ClassVar[tuple[str, str]] = ("neg", "pos")  # label 0, 1
    text_replacements = REVIEW_REPLACEMENTS

    def __init__(self, path: Optional[str] = None, max_length: int = 256, **kwargs):
        super().__init__(max_length=max_length, **kwargs)
        self.path = Path(path) if path else None

    def _files(self, root: Path, part: str) -> tuple[list[str], list[int]]:
        """The review files of one part (``train``/``test``) and their labels, in a fixed shuffled order."""
        texts, labels = [], []
        for label, name in enumerate(self.folders):
            folder = root / part / name
            files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
            if not files:
                raise DataError(
                    f"imdb: no reviews in {folder} (expected {root}/{{train,test}}/{{pos,neg}}/*.txt); "
                    f"get {self.url} and extract it into {root.parent}"
                )
            texts += [str(file) for file in files]
            labels += [label] * len(files)
        return _shuffled(texts, labels)

    def read_texts(self) -> RawTexts:
        root = self.path if self.path is not None else self.data_dir / "aclImdb"
        if not root.is_absolute():
            root = Path.cwd() / root
        if not (root / "train").is_dir():
            raise DataError(
                f"imdb: {root / 'train'} not found (expected the aclImdb layout {root}/{{train,test}}/{{pos,neg}}/*.txt); "
                f"get {self.url} and extract it into {root.parent}, or set data.path"
            )
        parts = {"train": self._files(root, "train")}
        if (root / "test").is_dir():
            parts["test"] = self._files(root, "test")
        streamed = self.wants_streaming(sum(len(paths) for paths, _ in parts.values()))
        for part, (paths, labels) in parts.items():
            texts = FileTexts(paths, clean=_clean_review) if streamed else [_clean_review(read_text(Path(p))) for p in paths]
            parts[part] = (texts, labels)
        return RawTexts(class_names=list(SENTIMENT_CLASSES), **parts)


def _clean_review(text: str) -> str:
    for old, new in REVIEW_REPLACEMENTS:
        text = text.replace(old, new)
    return text.strip()
