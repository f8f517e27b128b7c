"""Linear and logistic regression on tabular features: one linear layer."""
from __future__ import annotations

from typing import ClassVar, Optional, Sequence

from torch import Tensor, nn

from pipeline.models.categorical import tabular_inputs


class LinearRegression(nn.Module):
    """y = w·x + b. ``self.linear`` holds w and b. With categorical columns, x holds their learned
    embeddings (``self.embed``), which for a linear model is one learned weight per category."""

    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})
    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})

    def __init__(
        self, input_shape: Sequence[int], num_outputs: int, dropout: float = 0.0, l1: float = 0.0,
        embedding_dim: int = 8, categorical_cardinalities: Sequence[int] = (),
        categorical_unknown_seen: Optional[Sequence[bool]] = None,
    ):
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(
                f"{type(self).__name__} expects tabular inputs (F,), got input_shape={tuple(input_shape)}"
            )
        self.l1 = l1
        embed, in_features = tabular_inputs(input_shape, categorical_cardinalities, embedding_dim,
                                             categorical_unknown_seen)
        self.embed = embed if embed is not None else nn.Identity()  # no parameters: the textbook keys stay
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(in_features, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.dropout(self.embed(x)))


class LogisticRegression(LinearRegression):
    """The same linear layer read as logits; the objective applies the sigmoid / softmax."""

    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})
