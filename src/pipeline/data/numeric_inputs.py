"""The raw input adapter of the numeric tables that come without a file of their own: scikit-learn's bundled
sets (``diabetes``, ``breast_cancer``, ``wine``) and the synthetic ones. Raw rows are a pandas DataFrame with
the data set's feature columns, named as scikit-learn names them (``load_breast_cancer(as_frame=True).frame``);
the adapter selects them by name and standardises them with the training rows' statistics, exactly as training
did (float32, the same operations), so the logged model and ``pipeline-predict`` answer on a user's table as the
run's test metrics say.

Like :mod:`pipeline.data.raw_inputs`, this file is stored with the logged model and imported from there when the
model is loaded: it imports nothing of the project, only numpy and torch at the top (pandas where it is used, so
that a training run on these sets does not import pandas); keep it that way.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

FORMAT_VERSION = 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


class RawInputError(ValueError):
    """Raw rows the adapter cannot read (a column missing, a cell that is not a number)."""


class NumericColumns:
    """Numeric columns by name -> (N, columns) float32, standardised with ``mean``/``std`` when given."""

    transforms_in_bulk = True  # a row is a few numbers, each its own: many rows per transform (pyfunc_model)

    accepts_missing = False  # pipeline-predict says so when a column is absent

    def __init__(self, columns: Sequence[str], mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, example_rows: Sequence[Sequence[float]] = ()):
        self.columns = [str(c) for c in columns]
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != len(self.columns):
                raise ValueError(f"{len(values)} {name} values for {len(self.columns)} columns")
        self.example_rows = [[float(v) for v in row] for row in example_rows][:4]

    def input_schema(self) -> list[tuple[str, str]]:
        return [(column, "numeric") for column in self.columns]

    def input_example(self):
        import pandas as pd

        columns, rows = self.input_example_rows()
        return pd.DataFrame(rows, columns=columns) if rows else None

    def input_example_rows(self) -> tuple[list[str], list[list[float]]]:
        """The input example as (columns, rows), without pandas (a training run on these sets never imports it)."""
        return self.columns, self.example_rows

    def transform(self, frame) -> Tensor:
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise RawInputError(f"expected a pandas DataFrame of raw rows, got {type(frame).__name__}")
        stripped = {str(c).strip(): c for c in frame.columns}
        absent = [c for c in self.columns if c not in stripped]
        if absent:
            raise RawInputError(f"the input has no column {', '.join(repr(c) for c in absent)} (the model reads "
                                f"{', '.join(repr(c) for c in self.columns)})")
        values = np.empty((len(frame), len(self.columns)), dtype=np.float64)
        for position, name in enumerate(self.columns):
            raw = frame[stripped[name]]
            numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.flatnonzero(~np.isfinite(numbers) | (np.abs(numbers) > FLOAT32_MAX))
            if len(bad):
                first = int(bad[0])
                cell = raw.iloc[first]
                where = f"column {name!r} at index {frame.index[first]!r}"
                if pd.isna(cell):
                    raise RawInputError(f"{where} is missing; the model was trained on a table without missing values "
                                        "and needs a number in every cell")
                cell = cell.item() if isinstance(cell, np.generic) else cell
                why = "more than float32 can hold" if np.isfinite(numbers[first]) else "not a number"
                raise RawInputError(f"column {name!r} holds {cell!r} at index {frame.index[first]!r}, {why}")
            values[:, position] = numbers
        x = torch.as_tensor(values, dtype=torch.float32)
        if self.mean is not None and self.std is not None:
            x = (x - torch.tensor(self.mean, dtype=torch.float32)) / torch.tensor(self.std, dtype=torch.float32)
        return x

    to_tensor = transform

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "module": type(self).__module__, "class": type(self).__name__,
                "columns": self.columns, "mean": self.mean, "std": self.std, "example_rows": self.example_rows}

    @classmethod
    def from_dict(cls, state: dict) -> "NumericColumns":
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"raw input state of format {state.get('format_version')!r}; this code reads format "
                             f"{FORMAT_VERSION}")
        return cls(state["columns"], state.get("mean"), state.get("std"), state.get("example_rows", ()))

    def __repr__(self) -> str:
        how = "standardised" if self.mean is not None else "as they are"
        return f"NumericColumns({len(self.columns)} columns, {how}: {', '.join(self.columns)})"
