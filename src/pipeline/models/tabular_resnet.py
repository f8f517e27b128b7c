"""The residual MLP of Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data"
(arXiv 2106.11959), their "ResNet" baseline:

    x -> Linear(d_in, width) -> blocks x [x + Dropout(Linear(ReLU-Dropout(Linear(Norm(x)))))] -> Norm -> ReLU -> Linear

Each block is Norm -> Linear(width, hidden) -> ReLU -> Dropout -> Linear(hidden, width) -> Dropout, added
to its input; hidden = width x hidden_factor. Categorical columns go through learned embeddings first.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Sequence

from torch import Tensor, nn

from pipeline.models.categorical import tabular_inputs

NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class ResidualBlock(nn.Module):
    def __init__(self, width: int, hidden: int, norm: str, dropout: float, residual_dropout: float):
        super().__init__()
        self.norm = NORMS[norm](width)
        self.linear1 = nn.Linear(width, hidden)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, width)
        self.residual_dropout = nn.Dropout(residual_dropout)

    def forward(self, x: Tensor) -> Tensor:
        update = self.dropout(self.activation(self.linear1(self.norm(x))))
        return x + self.residual_dropout(self.linear2(update))


class TabularResNet(nn.Module):
    """Gorishniy et al.'s ResNet for tabular data; ``norm`` is ``batch`` (theirs) or ``layer``."""

    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})
    tasks: ClassVar[frozenset[str]] = frozenset({"regression", "classification"})

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        width: int = 128,
        blocks: int = 2,
        hidden_factor: float = 2.0,
        norm: str = "batch",
        dropout: float = 0.1,
        residual_dropout: float = 0.0,
        l1: float = 0.0,
        embedding_dim: int = 8,
        categorical_cardinalities: Sequence[int] = (),
        categorical_unknown_seen: Optional[Sequence[bool]] = None,
    ):
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(f"TabularResNet expects tabular inputs (F,), got input_shape={tuple(input_shape)}")
        if norm not in NORMS:
            raise ValueError(f"model.norm must be one of {sorted(NORMS)}, got {norm!r}")
        if width < 1 or blocks < 0 or hidden_factor <= 0:
            raise ValueError(f"model.width must be >= 1, model.blocks >= 0 and model.hidden_factor > 0; "
                             f"got {width}, {blocks}, {hidden_factor}")
        if not 0 <= residual_dropout < 1:
            raise ValueError(f"model.residual_dropout must be in [0, 1), got {residual_dropout}")
        self.l1 = l1
        embed, in_features = tabular_inputs(input_shape, categorical_cardinalities, embedding_dim,
                                             categorical_unknown_seen)
        self.embed = embed if embed is not None else nn.Identity()
        self.first = nn.Linear(in_features, width)
        hidden = max(1, int(round(width * hidden_factor)))
        self.blocks = nn.Sequential(*(ResidualBlock(width, hidden, norm, dropout, residual_dropout)
                                      for _ in range(blocks)))
        self.head_norm = NORMS[norm](width)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.first(self.embed(x)))
        return self.head(nn.functional.relu(self.head_norm(x)))
