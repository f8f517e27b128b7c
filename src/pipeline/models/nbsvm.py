"""Naive-Bayes-weighted n-grams (NBSVM, Wang & Manning 2012): a linear classifier over binarised
unigram + hashed n-gram features, each scaled by its naive-Bayes log-count ratio.

The ratios are statistics of the training split. The model never sees a data set: it says how to
count (:meth:`NBSVM.count_features`, summable over batches and ranks) and what to do with the totals
(:meth:`NBSVM.set_feature_counts`); the training objective runs that one pass over the training
batches before the first optimizer step. The ratios are a buffer, so checkpoints and the logged
model carry them.

With ``char_ngrams=[lo, hi]`` the features also hold the character n-grams (lengths lo..hi) of each word, taken
within the word padded by a space on each side (scikit-learn's ``char_wb``), hashed into ``char_buckets`` ids:
word endings, stems and misspellings share statistics that whole words do not. The model gets the words of the
data's word-level vocabulary (``vocabulary``, wired from the data) and keeps a table of each token's character
n-gram ids.

Where Wang & Manning train an SVM on the scaled features and interpolate its weights towards the naive-Bayes
solution (``w' = (1 - beta) mean|w| + beta w``), this model is a logistic regression on the scaled features
(NB-LR) whose weights start *at* the naive-Bayes solution (all 1) and are trained on the task's own loss
(cross-entropy) like every other model. Fitted to convergence with an L2 penalty (``optimizer=lbfgs``,
``optimizer.weight_decay``, full batch) it is scikit-learn's ``LogisticRegression`` on these features; a few
epochs of Adam from the NB start are the cheaper alternative.
"""
from __future__ import annotations

import zlib
from typing import ClassVar, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# large odd multipliers for hashing n-grams of token ids (fastText's bigram prime and a second one)
NGRAM_HASH_PRIMES = (116_049_371, 2_654_435_761)


class NBSVM(nn.Module):
    """logit_k = sum over the text's distinct n-grams f of r_kf * w_kf + b_k, with w starting at 1 (naive Bayes).

    Features: token ids ``[0, vocab_size)`` (unigrams), then ``ngram_buckets`` hashed ids per n-gram
    order 2..``max_n``, then (with ``char_ngrams``) ``char_buckets`` hashed character n-gram ids. A feature
    occurring in a text counts once (binarised, as in the paper).
    ``r_k`` is the log-count ratio of class k against the rest (binary: positive against negative),
    smoothed by ``smoothing`` (the paper's alpha); a feature the training split never showed gets 0.
    """

    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        pad_id: int = 0,
        max_n: int = 2,
        ngram_buckets: int = 1 << 20,
        smoothing: float = 1.0,
        char_ngrams: Optional[Sequence[int]] = None,
        char_buckets: int = 1 << 20,
        dropout: float = 0.0,
        l1: float = 0.0,
        vocabulary: Optional[Sequence[str]] = None,
    ):
        super().__init__()
        if not 1 <= max_n <= 3:
            raise ValueError(f"model.max_n must be 1, 2 or 3 (unigrams up to trigrams), got {max_n}")
        if smoothing <= 0:
            raise ValueError(f"model.smoothing must be > 0, got {smoothing}")
        chars = check_char_ngrams(char_ngrams, char_buckets, vocabulary, vocab_size)
        self.l1 = l1
        self.vocab_size = int(vocab_size)
        self.pad_id = int(pad_id)
        self.max_n = int(max_n)
        self.ngram_buckets = int(ngram_buckets)
        self.smoothing = float(smoothing)
        self.num_outputs = int(num_outputs)
        self.char_offset = self.vocab_size + (self.max_n - 1) * self.ngram_buckets
        self.char_buckets = int(char_buckets) if chars else 0
        self.num_features = self.char_offset + self.char_buckets
        # (vocab_size, most n-grams of a word): each token's character n-gram ids, pad_id where a word has fewer;
        # derived from the vocabulary and the settings, so not saved in checkpoints
        table = token_char_ids(vocabulary, chars, self.char_buckets, self.char_offset, self.pad_id) if chars else None
        self.register_buffer("token_chars", table, persistent=False)
        self.feature_dropout = float(dropout)
        # (features, outputs): looked up per text with F.embedding
        self.register_buffer("ratios", torch.zeros(self.num_features, self.num_outputs))
        self.weights = nn.Parameter(torch.ones(self.num_features, self.num_outputs))
        self.bias = nn.Parameter(torch.zeros(self.num_outputs))

    # ----- features ------------------------------------------------------------------------------
    def feature_ids(self, tokens: Tensor, packed: bool = False) -> Tensor:
        """(B, M) feature ids of each text, every distinct feature once; ``pad_id`` fills the rest.

        ``packed``: each row's ids moved to the left and M cut to the row with the most -- far fewer slots to sort,
        look up and back-propagate through (with character n-grams ~7 % of the slots hold distinct features on
        MR), but M then depends on the data, which ``torch.export`` cannot trace: training packs, evaluation and
        the exported model do not."""
        tokens = tokens.long()  # int32 ids would overflow in the hash
        features = [tokens]
        pad = tokens == self.pad_id
        for n in range(2, self.max_n + 1):
            if tokens.shape[1] < n:
                break
            window = tokens[:, : tokens.shape[1] - n + 1]
            touches_pad = pad[:, : tokens.shape[1] - n + 1].clone()
            hashed = window.clone()
            for offset in range(1, n):
                following = tokens[:, offset : tokens.shape[1] - n + 1 + offset]
                hashed = hashed * NGRAM_HASH_PRIMES[offset - 1] + following
                touches_pad |= pad[:, offset : tokens.shape[1] - n + 1 + offset]
            ids = self.vocab_size + (n - 2) * self.ngram_buckets + hashed.remainder(self.ngram_buckets)
            features.append(ids.masked_fill(touches_pad, self.pad_id))
        if self.token_chars is not None:  # one row per token id of the vocabulary (check_char_ngrams)
            features.append(self.token_chars[tokens].reshape(tokens.shape[0], -1))
        features = torch.cat(features, dim=1)
        if packed:
            features = left_aligned(features, features != self.pad_id, self.pad_id)
        ids, _ = features.sort(dim=1)
        repeated = torch.zeros_like(ids, dtype=torch.bool)
        repeated[:, 1:] = ids[:, 1:] == ids[:, :-1]
        if packed:
            return left_aligned(ids, (ids != self.pad_id) & ~repeated, self.pad_id)
        return ids.masked_fill(repeated, self.pad_id)

    def _training_feature_ids(self, tokens: Tensor) -> Tensor:
        """:meth:`feature_ids`, remembered for the last training batch: L-BFGS evaluates one (full) batch up to
        1.25 x max_iter times per step, and on MR with character n-grams the ids are 2/3 of an evaluation."""
        last = self.__dict__.get("_last_batch")
        if last is not None and last[0] is tokens and last[1] == tokens._version:
            return last[2]
        ids = self.feature_ids(tokens, packed=True)
        self.__dict__["_last_batch"] = (tokens, tokens._version, ids)
        return ids

    def train(self, mode: bool = True):
        self.__dict__["_last_batch"] = None  # nothing of training kept for evaluation, export or pickling
        return super().train(mode)

    # ----- the naive-Bayes statistics (one pass over the training split, run by the objective) -----
    def count_features(self, tokens: Tensor, labels: Tensor) -> Tensor:
        """(classes, features) document frequencies of one batch; summed over batches (and ranks)
        they are what :meth:`set_feature_counts` takes."""
        ids = self.feature_ids(tokens, packed=True)
        classes = max(2, self.num_outputs)
        counts = torch.zeros(classes, self.num_features, device=ids.device)
        rows = labels.long()[:, None].expand_as(ids)
        counts.index_put_((rows.reshape(-1), ids.reshape(-1)), torch.ones(ids.numel(), device=ids.device),
                          accumulate=True)
        counts[:, self.pad_id] = 0
        return counts

    @torch.no_grad()
    def set_feature_counts(self, counts: Tensor) -> None:
        """Log-count ratios from the training split's per-class document frequencies."""
        counts = counts.to(self.ratios.device, torch.float64)
        seen = counts.sum(0) > 0  # the smoothing mass covers the features of the training split only
        alpha = self.smoothing

        def log_share(frequencies: Tensor) -> Tensor:
            smoothed = frequencies + alpha
            return torch.log(smoothed) - torch.log(smoothed[seen].sum())

        if self.num_outputs == 1:  # binary: positive (label 1) against negative (label 0)
            ratios = (log_share(counts[1]) - log_share(counts[0]))[:, None]
        else:  # one against the rest per class
            total = counts.sum(0)
            ratios = torch.stack([log_share(counts[k]) - log_share(total - counts[k])
                                  for k in range(self.num_outputs)], dim=1)
        self.ratios.copy_(ratios.masked_fill(~seen[:, None], 0.0).to(self.ratios.dtype))

    # ----- prediction ----------------------------------------------------------------------------
    def forward(self, tokens: Tensor) -> Tensor:
        ids = self._training_feature_ids(tokens) if self.training else self.feature_ids(tokens)
        present = (ids != self.pad_id).to(self.ratios.dtype)
        if self.training and self.feature_dropout > 0:
            present = F.dropout(present, self.feature_dropout)
        weights = F.embedding(ids, self.ratios) * F.embedding(ids, self.weights)  # (B, M, K)
        return (weights * present[:, :, None]).sum(dim=1) + self.bias


def left_aligned(ids: Tensor, keep: Tensor, pad_id: int) -> Tensor:
    """Each row's kept ids moved left in their order, ``pad_id`` after them; as wide as the row keeping the most."""
    column = keep.cumsum(dim=1) - 1
    width = max(1, int(column[:, -1].max()) + 1) if ids.numel() else 1
    packed = ids.new_full((ids.shape[0], width + 1), pad_id)
    packed.scatter_(1, torch.where(keep, column, width), ids)  # the dropped slots all land in the spare last column
    return packed[:, :width]


# ----- character n-grams of the vocabulary's words ----------------------------------------------------
def check_char_ngrams(char_ngrams, char_buckets: int, vocabulary, vocab_size: int) -> Optional[tuple[int, int]]:
    if char_ngrams is None:
        return None
    lengths = tuple(int(n) for n in char_ngrams)
    if len(lengths) != 2 or not 1 <= lengths[0] <= lengths[1] <= 8:
        raise ValueError(f"model.char_ngrams must be [shortest, longest] with 1 <= shortest <= longest <= 8 "
                         f"(e.g. [2, 5]), got {list(char_ngrams)}")
    if char_buckets < 1:
        raise ValueError(f"model.char_buckets must be >= 1, got {char_buckets}")
    if vocabulary is None:
        raise ValueError("model.char_ngrams needs the words of the data's vocabulary: use it with a text data set "
                         "whose tokenizer is word-level (the default; not data.tokenizer=<a Hugging Face model>)")
    if len(vocabulary) != vocab_size:
        raise ValueError(f"the vocabulary has {len(vocabulary)} words for vocab_size {vocab_size}")
    return lengths


def char_ngram_id(ngram: str, buckets: int) -> int:
    """A fixed hash (CRC-32 of the UTF-8 bytes: the same in every process, unlike ``hash``)."""
    return zlib.crc32(ngram.encode("utf-8")) % buckets


def token_char_ids(vocabulary: Sequence[str], lengths: tuple[int, int], buckets: int, offset: int,
                   pad_id: int) -> Tensor:
    """(len(vocabulary), widest) feature ids of each word's character n-grams, ``pad_id`` filling the rest.
    Special tokens (``[PAD]``, ``[UNK]``, ...) have none."""
    rows = []
    for word in vocabulary:
        if word.startswith("[") and word.endswith("]") and len(word) > 2:
            rows.append([])
            continue
        padded = f" {word} "
        # as scikit-learn's char_wb: a padded word shorter than n counts as a whole
        grams = {padded[i:i + n] for n in range(lengths[0], lengths[1] + 1)
                 for i in range(max(1, len(padded) - n + 1))}
        rows.append(sorted({offset + char_ngram_id(gram, buckets) for gram in grams}))
    table = torch.full((len(rows), max(1, max(map(len, rows), default=1))), pad_id, dtype=torch.long)
    for i, ids in enumerate(rows):
        table[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return table
