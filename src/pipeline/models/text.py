"""Text classifiers over right-padded token ids (B, L): fastText-style bag of words, Kim's CNN
and a (bi)directional GRU/LSTM. Padding never changes a prediction: appending more ``pad_id``
tokens to a sequence leaves its logits as they were."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# fastText's bigram hashing multiplier
BIGRAM_HASH_PRIME = 116_049_371


def token_lengths(tokens: Tensor, pad_id: int) -> Tensor:
    """Number of non-pad tokens per row, at least 1 so an all-pad row still has one step."""
    return (tokens != pad_id).sum(dim=1).clamp(min=1)


class BagOfWords(nn.Module):
    """fastText: mean of unigram and hashed-bigram embeddings → dropout → linear.

    Unigrams and bigrams share one embedding table: rows [0, vocab_size) are tokens, rows
    vocab_size + (prev * p + cur) % bigram_buckets are bigrams. Pads and bigrams touching a pad
    map to ``pad_id``, which ``EmbeddingBag(padding_idx=...)`` leaves out of the mean.
    """

    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        pad_id: int = 0,
        embed_dim: int = 64,
        bigram_buckets: int = 200_000,
        dropout: float = 0.0,
        l1: float = 0.0,
    ):
        super().__init__()
        self.l1 = l1
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.bigram_buckets = bigram_buckets
        self.embedding = nn.EmbeddingBag(
            vocab_size + bigram_buckets, embed_dim, mode="mean", padding_idx=pad_id
        )
        # fastText's initialisation: N(0, 1) rows would dwarf what Adam moves them by
        with torch.no_grad():
            self.embedding.weight.uniform_(-1 / embed_dim, 1 / embed_dim)
            self.embedding.weight[pad_id].zero_()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(embed_dim, num_outputs)

    def bigram_ids(self, tokens: Tensor) -> Tensor:
        prev, cur = tokens[:, :-1], tokens[:, 1:]
        ids = self.vocab_size + (prev * BIGRAM_HASH_PRIME + cur) % self.bigram_buckets
        return ids.masked_fill((prev == self.pad_id) | (cur == self.pad_id), self.pad_id)

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = tokens.long()  # int32 ids would overflow in the bigram hash
        ids = torch.cat([tokens, self.bigram_ids(tokens)], dim=1)
        return self.linear(self.dropout(self.embedding(ids)))


class TextCNN(nn.Module):
    """Kim (2014) CNN-rand: embedding → parallel Conv1d + ReLU → max over time → dropout → linear.

    The max runs only over windows that lie wholly within the text (just the first window when
    the text is shorter than the kernel), so trailing padding does not change the logits.
    """

    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        pad_id: int = 0,
        embed_dim: int = 128,
        num_filters: int = 100,
        kernel_sizes: Sequence[int] = (3, 4, 5),
        dropout: float = 0.5,
        l1: float = 0.0,
    ):
        super().__init__()
        self.l1 = l1
        self.pad_id = pad_id
        self.kernel_sizes = [int(k) for k in kernel_sizes]
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in self.kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(num_filters * len(self.kernel_sizes), num_outputs)

    def forward(self, tokens: Tensor) -> Tensor:
        lengths = token_lengths(tokens, self.pad_id)
        shortfall = max(self.kernel_sizes) - tokens.shape[1]
        if shortfall > 0:  # a conv needs at least kernel_size steps
            tokens = F.pad(tokens, (0, shortfall), value=self.pad_id)
        embedded = self.embedding(tokens).transpose(1, 2)  # (B, E, L) for Conv1d
        pooled = []
        for kernel_size, conv in zip(self.kernel_sizes, self.convs):
            activations = F.relu(conv(embedded))  # (B, filters, L - k + 1)
            starts = torch.arange(activations.shape[2], device=tokens.device)
            last_start = (lengths - kernel_size).clamp(min=0)
            outside = starts[None, :] > last_start[:, None]
            # activations are >= 0 after ReLU, so zeroing the outside windows drops them from the max
            pooled.append(activations.masked_fill(outside[:, None, :], 0.0).amax(dim=2))
        return self.linear(self.dropout(torch.cat(pooled, dim=1)))


def reverse_within_length(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse the first ``length`` steps of each row of ``x`` (B, L, D); padding stays put."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


class RNNClassifier(nn.Module):
    """Embedding → (bi)directional GRU/LSTM → final state of each direction of the last layer →
    dropout → linear.

    Computes what a packed ``nn.GRU/LSTM(bidirectional=True)`` computes (a test checks it), but
    runs each direction on unpacked tensors: the backward direction reads every text reversed
    within its own length, so it starts at the last real token, not at padding. On CPU this is
    2-3x faster to train than packing, whose backward pass rebuilds a full-size gradient
    at every time step.
    """

    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})
    CELLS: ClassVar[dict[str, type[nn.RNNBase]]] = {"gru": nn.GRU, "lstm": nn.LSTM}

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        pad_id: int = 0,
        embed_dim: int = 128,
        hidden_dim: int = 128,
        num_layers: int = 1,
        cell: str = "gru",
        bidirectional: bool = True,
        dropout: float = 0.0,
        l1: float = 0.0,
    ):
        super().__init__()
        if cell not in self.CELLS:
            raise ValueError(f"model.cell must be one of {sorted(self.CELLS)}, got {cell!r}")
        self.l1 = l1
        self.pad_id = pad_id
        self.hidden_dim = hidden_dim
        directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        # layers[depth][direction]; a deeper layer reads both directions' outputs
        self.layers = nn.ModuleList(
            nn.ModuleList(
                self.CELLS[cell](embed_dim if depth == 0 else directions * hidden_dim, hidden_dim, batch_first=True)
                for _ in range(directions)
            )
            for depth in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(directions * hidden_dim, num_outputs)

    def forward(self, tokens: Tensor) -> Tensor:
        lengths = token_lengths(tokens, self.pad_id)
        if not torch.compiler.is_exporting():  # steps past the longest text are idle (the outputs before them are
            tokens = tokens[:, : int(lengths.max())]  # the same without them); torch.export cannot trace the cut
        x = self.embedding(tokens)
        for depth, directions in enumerate(self.layers):
            if depth > 0:  # dropout between layers, as nn.GRU(dropout=...) does
                x = self.dropout(x)
            outputs = [directions[0](x)[0]]
            if len(directions) == 2:
                backward, _ = directions[1](reverse_within_length(x, lengths))
                outputs.append(reverse_within_length(backward, lengths))
            x = torch.cat(outputs, dim=2)
        # forward direction ends at the last real token, backward direction at the first
        rows = torch.arange(tokens.shape[0], device=tokens.device)  # not len(): export keeps it free
        final = torch.cat([x[rows, lengths - 1, : self.hidden_dim], x[:, 0, self.hidden_dim :]], dim=1)
        return self.linear(self.dropout(final))
