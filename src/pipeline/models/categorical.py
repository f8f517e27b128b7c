"""Learned embeddings of categorical columns, in front of any tabular model.

A tabular data set with categorical columns (``data.categorical_encoding=embedding``) hands the model a
float tensor whose last columns are integer category codes (0: unseen or missing) and tells it their
cardinalities (``spec.model_inputs["categorical_cardinalities"]``). :class:`CategoricalEmbedding` passes the
other columns through and replaces each code by a learned vector of ``embedding_dim`` numbers.

Code 0's vector is learned from the training rows that have it (missing or rare values). A column where no
training row has code 0 (``spec.model_inputs["categorical_unknown_seen"]``, False for that column) never trains
it: an unseen category or a missing value at prediction time then reads the mean of the column's learned
vectors instead of the random start, which would move the prediction by chance.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn


class CategoricalEmbedding(nn.Module):
    """``[x_numeric | codes]`` -> ``[x_numeric | embedding(code_1) | ... | embedding(code_k)]``.

    One table holds the rows of every column (column j's codes are offset by the cardinalities before
    it), which is one embedding per column in a single lookup."""

    def __init__(self, in_features: int, cardinalities: Sequence[int], embedding_dim: int = 8,
                 unknown_seen: Optional[Sequence[bool]] = None):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        cardinalities = [int(c) for c in cardinalities]
        if not cardinalities or min(cardinalities) < 1 or len(cardinalities) > in_features:
            raise ValueError(f"categorical cardinalities {cardinalities} do not fit {in_features} input features")
        unknown_seen = [True] * len(cardinalities) if unknown_seen is None else [bool(s) for s in unknown_seen]
        if len(unknown_seen) != len(cardinalities):
            raise ValueError(f"categorical_unknown_seen {unknown_seen} does not fit cardinalities {cardinalities}")
        self.num_numeric = in_features - len(cardinalities)
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.embedding = nn.Embedding(sum(cardinalities), embedding_dim)
        self.out_features = self.num_numeric + len(cardinalities) * embedding_dim
        # code 0 of a column that no training row had: its row of the table is replaced by the mean of the
        # column's other rows (non-persistent buffers: a checkpoint's keys stay those of the embedding alone)
        untrained = [not seen and card > 1 for seen, card in zip(unknown_seen, cardinalities)]
        self.averages_unknown = any(untrained)  # a plain bool: the forward of other models is the one it was
        if self.averages_unknown:
            column = torch.repeat_interleave(torch.arange(len(cardinalities)), torch.tensor(cardinalities))
            replaced = torch.zeros(sum(cardinalities), dtype=torch.bool)
            replaced[offsets[torch.tensor(untrained)]] = True
            known = torch.ones(sum(cardinalities), dtype=torch.bool)
            known[offsets] = False  # the mean is over the categories, without code 0
            counts = torch.tensor([max(card - 1, 1) for card in cardinalities], dtype=torch.float32)
            self.register_buffer("row_column", column, persistent=False)
            self.register_buffer("unknown_replaced", replaced.unsqueeze(1), persistent=False)
            self.register_buffer("category_row", known.unsqueeze(1), persistent=False)
            self.register_buffer("category_counts", counts.unsqueeze(1), persistent=False)

    def table(self) -> Tensor:
        """The embedding table as looked up: code 0 of a column never trained on it is the mean of the column's
        category vectors (computed from the weights, so it follows training)."""
        weight = self.embedding.weight
        if not self.averages_unknown:
            return weight
        categories = torch.where(self.category_row, weight, torch.zeros_like(weight))
        sums = torch.zeros(len(self.category_counts), weight.shape[1], dtype=weight.dtype,
                           device=weight.device).index_add(0, self.row_column, categories)
        means = sums / self.category_counts.to(weight.dtype)
        return torch.where(self.unknown_replaced, means[self.row_column], weight)

    def forward(self, x: Tensor) -> Tensor:
        codes = x[:, self.num_numeric:].long() + self.offsets
        # training rows never hold the code 0 of a column no training row had (that is what makes it untrained):
        # in training the table is the weights as they are, without recomputing the averages every step
        if not self.averages_unknown or self.training:
            return torch.cat([x[:, : self.num_numeric], self.embedding(codes).flatten(1)], dim=1)
        looked_up = nn.functional.embedding(codes, self.table())
        return torch.cat([x[:, : self.num_numeric], looked_up.flatten(1)], dim=1)


def tabular_inputs(input_shape: Sequence[int], cardinalities: Optional[Sequence[int]],
                   embedding_dim: int, unknown_seen: Optional[Sequence[bool]] = None
                   ) -> tuple[Optional[CategoricalEmbedding], int]:
    """The embedding module a tabular model puts first (None without categorical columns) and the number
    of features after it. ``unknown_seen``: per categorical column, whether training rows had its code 0
    (None: all did, as in runs from before it was known)."""
    in_features = int(torch.Size(input_shape).numel())
    if not cardinalities:
        return None, in_features
    if len(input_shape) != 1:
        raise ValueError(f"categorical columns need flat tabular inputs (F,), got input_shape={tuple(input_shape)}")
    embed = CategoricalEmbedding(in_features, cardinalities, embedding_dim, unknown_seen)
    return embed, embed.out_features
