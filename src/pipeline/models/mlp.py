"""Multi-layer perceptron on flattened inputs (tabular features or image pixels)."""
from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar, Optional, Sequence

from torch import nn

from pipeline.models.categorical import tabular_inputs

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MLP(nn.Sequential):
    """[embed] → fc1 → [bn1] → act1 → [drop1] → fc2 → ... → fc{n+1}.

    Layers are named (not numbered) so that ``MLP((10,), 1, hidden_dims=[20])`` is exactly the
    textbook network ``fc1: Linear(10, 20) → ReLU → fc2: Linear(20, 1)``, state_dict keys included.
    ``embed`` (learned embeddings of categorical columns) exists only when the data has such columns.
    """

    modalities: ClassVar[frozenset[str]] = frozenset({"tabular", "image"})
    tasks: ClassVar[frozenset[str]] = frozenset({"regression", "classification"})

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        hidden_dims: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        l1: float = 0.0,
        batch_norm: bool = False,
        embedding_dim: int = 8,
        categorical_cardinalities: Sequence[int] = (),
        categorical_unknown_seen: Optional[Sequence[bool]] = None,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"model.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        embed, in_features = tabular_inputs(input_shape, categorical_cardinalities, embedding_dim,
                                             categorical_unknown_seen)
        if embed is not None:
            layers["embed"] = embed
        elif len(input_shape) > 1:  # tabular inputs are already flat; keep the textbook net minimal
            layers["flatten"] = nn.Flatten()
        for i, width in enumerate(hidden_dims, start=1):
            layers[f"fc{i}"] = nn.Linear(in_features, width)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm1d(width)
            layers[f"act{i}"] = ACTIVATIONS[activation]()
            if dropout > 0:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            in_features = width
        layers[f"fc{len(hidden_dims) + 1}"] = nn.Linear(in_features, num_outputs)
        super().__init__(layers)
        self.l1 = l1
