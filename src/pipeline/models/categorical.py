"""Learned embeddings of categorical columns, in front of any tabular model.

A tabular data set with categorical columns (``data.categorical_encoding=embedding``) hands the model a
float tensor whose last columns are integer category codes (0: unseen or missing) and tells it their
cardinalities (``spec.model_inputs["categorical_cardinalities"]``). :class:`CategoricalEmbedding` passes the
other columns through and replaces each code by a learned vector of ``embedding_dim`` numbers.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn


class CategoricalEmbedding(nn.Module):
    """``[x_numeric | codes]`` -> ``[x_numeric | embedding(code_1) | ... | embedding(code_k)]``.

    One table holds the rows of every column (column j's codes are offset by the cardinalities before
    it), which is one embedding per column in a single lookup."""

    def __init__(self, in_features: int, cardinalities: Sequence[int], embedding_dim: int = 8):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        cardinalities = [int(c) for c in cardinalities]
        if not cardinalities or min(cardinalities) < 1 or len(cardinalities) > in_features:
            raise ValueError(f"categorical cardinalities {cardinalities} do not fit {in_features} input features")
        self.num_numeric = in_features - len(cardinalities)
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.embedding = nn.Embedding(sum(cardinalities), embedding_dim)
        self.out_features = self.num_numeric + len(cardinalities) * embedding_dim

    def forward(self, x: Tensor) -> Tensor:
        codes = x[:, self.num_numeric:].long() + self.offsets
        return torch.cat([x[:, : self.num_numeric], self.embedding(codes).flatten(1)], dim=1)


def tabular_inputs(input_shape: Sequence[int], cardinalities: Optional[Sequence[int]],
                   embedding_dim: int) -> tuple[Optional[CategoricalEmbedding], int]:
    """The embedding module a tabular model puts first (None without categorical columns) and the number
    of features after it."""
    in_features = int(torch.Size(input_shape).numel())
    if not cardinalities:
        return None, in_features
    if len(input_shape) != 1:
        raise ValueError(f"categorical columns need flat tabular inputs (F,), got input_shape={tuple(input_shape)}")
    embed = CategoricalEmbedding(in_features, cardinalities, embedding_dim)
    return embed, embed.out_features
