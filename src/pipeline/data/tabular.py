"""Tabular data sets: synthetic ones with a known truth, scikit-learn's bundled ones, any CSV."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np
import torch

from .base import DataError, DataSpec, InMemoryDataModule, LoadedData, Split


class TabularDataModule(InMemoryDataModule):
    """Feature matrix + target. Features are standardised with training-split statistics."""

    modality: ClassVar[str] = "tabular"

    def __init__(self, standardize: bool = True, standardize_target: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.standardize = standardize
        self.standardize_target = standardize_target
        self.feature_mean: Optional[torch.Tensor] = None
        self.feature_std: Optional[torch.Tensor] = None

    def fit_preprocessing(self, train: Split) -> None:
        if self.standardize:
            self.feature_mean = train.x.mean(0)
            self.feature_std = train.x.std(0).clamp_min(1e-8)

    def apply_preprocessing(self, split: Split) -> Split:
        if not self.standardize:
            return split
        return Split((split.x - self.feature_mean) / self.feature_std, split.y)

    def describe(self, train: Split, class_names) -> DataSpec:
        spec = super().describe(train, class_names)
        if self.task_kind == "regression" and self.standardize_target:
            spec.extra["target_mean"] = float(train.y.mean())
            spec.extra["target_std"] = float(train.y.std().clamp_min(1e-8))
        return spec


def _regression_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32).reshape(-1))


def _classification_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long).reshape(-1))


class SyntheticLinear(TabularDataModule):
    """y = x·w + b + noise: the textbook linear regression, with the truth known to the test."""

    task_kind: ClassVar[str] = "regression"
    name: ClassVar[str] = "synthetic_linear"

    def __init__(
        self,
        n_samples: int = 1000,
        n_features: int = 1,
        weight: Optional[list[float]] = None,
        bias: float = 0.5,
        noise: float = 0.1,
        standardize: bool = False,
        standardize_target: bool = False,
        **kwargs,
    ):
        super().__init__(standardize=standardize, standardize_target=standardize_target, **kwargs)
        self.n_samples = n_samples
        self.n_features = n_features
        self.weight = list(weight) if weight is not None else [2.0 - 0.5 * i for i in range(n_features)]
        if len(self.weight) != n_features:
            raise DataError(f"data.weight has {len(self.weight)} values but data.n_features is {n_features}")
        self.bias = bias
        self.noise = noise

    def load(self) -> LoadedData:
        rng = np.random.default_rng(self.seed + 7919)
        x = rng.uniform(-2.0, 2.0, size=(self.n_samples, self.n_features))
        y = x @ np.asarray(self.weight) + self.bias + rng.normal(0.0, self.noise, self.n_samples)
        return LoadedData(train=_regression_split(x, y))


class SyntheticBinary(TabularDataModule):
    """Two classes separated by a random hyperplane in 10 features, with some label noise."""

    task_kind: ClassVar[str] = "classification"
    name: ClassVar[str] = "synthetic_binary"

    def __init__(self, n_samples: int = 2000, n_features: int = 10, flip_fraction: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.n_samples = n_samples
        self.n_features = n_features
        self.flip_fraction = flip_fraction

    def load(self) -> LoadedData:
        rng = np.random.default_rng(self.seed + 104729)
        x = rng.normal(size=(self.n_samples, self.n_features))
        direction = rng.normal(size=self.n_features)
        # a mildly non-linear boundary, so the hidden layer has something to do
        score = x @ direction + 0.5 * (x[:, 0] ** 2 - 1.0)
        y = (score > 0).astype(np.int64)
        flip = rng.random(self.n_samples) < self.flip_fraction
        y[flip] = 1 - y[flip]
        return LoadedData(train=_classification_split(x, y), class_names=["0", "1"])


class SklearnDataset(TabularDataModule):
    """A data set bundled with scikit-learn (nothing is downloaded)."""

    loader: ClassVar[str] = ""
    #: the CSV in sklearn/datasets/data that ``loader`` reads as it is (no rescaling), if it does
    bundled_csv: ClassVar[Optional[str]] = None

    def load(self) -> LoadedData:
        loaded = self._read_bundled_csv()
        if loaded is not None:
            return loaded
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, self.loader)()
        if self.task_kind == "regression":
            return LoadedData(train=_regression_split(bunch.data, bunch.target))
        names = [str(n) for n in getattr(bunch, "target_names", [])] or None
        return LoadedData(train=_classification_split(bunch.data, bunch.target), class_names=names)


    def _read_bundled_csv(self) -> Optional[LoadedData]:
        """The classification sets scikit-learn ships as a CSV (a header ``rows,features,class names``, then the
        features and the class index of each row), read as its loader reads them, without importing
        scikit-learn (with scipy and pandas: ~1.5 s, more than the rest of a tabular run's data work). None:
        the file is not where this scikit-learn keeps it, or not as expected; the loader is used then."""
        import importlib.util

        spec = importlib.util.find_spec("sklearn")
        if self.bundled_csv is None or spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / self.bundled_csv
        try:
            with path.open(newline="") as handle:
                rows = list(csv.reader(handle))
            n_rows, n_features, *class_names = rows[0]
            table = np.asarray(rows[1:], dtype=np.float64)
        except (OSError, ValueError, IndexError):
            return None
        if table.shape != (int(n_rows), int(n_features) + 1) or not class_names:
            return None
        return LoadedData(train=_classification_split(table[:, :-1], table[:, -1].astype(np.int64)),
                          class_names=[str(name) for name in class_names])


class Diabetes(SklearnDataset):
    task_kind: ClassVar[str] = "regression"
    name: ClassVar[str] = "diabetes"
    loader: ClassVar[str] = "load_diabetes"


class BreastCancer(SklearnDataset):
    task_kind: ClassVar[str] = "classification"
    name: ClassVar[str] = "breast_cancer"
    loader: ClassVar[str] = "load_breast_cancer"
    bundled_csv: ClassVar[Optional[str]] = "breast_cancer.csv"


class Wine(SklearnDataset):
    task_kind: ClassVar[str] = "classification"
    name: ClassVar[str] = "wine"
    loader: ClassVar[str] = "load_wine"
    bundled_csv: ClassVar[Optional[str]] = "wine_data.csv"


class CsvData(TabularDataModule):
    """Any CSV with a header row: numeric feature columns and one target column.

    For classification the target may hold any labels (strings or integers); they are mapped
    to class indices in sorted order. For regression it must be numeric.
    """

    name: ClassVar[str] = "csv"

    def __init__(self, path: str = "", target: str = "", task_kind: str = "regression",
                 features: Optional[list[str]] = None, **kwargs):
        super().__init__(**kwargs)
        self.path = Path(path) if path else None
        self.target = target
        self.features = list(features) if features else None
        if task_kind not in ("regression", "classification"):
            raise DataError(f"data.task_kind must be 'regression' or 'classification', got {task_kind!r}")
        self.task_kind = task_kind  # an instance attribute: one CSV reader serves both tasks

    def load(self) -> LoadedData:
        if self.path is None:
            raise DataError("data.path is required for data=csv (e.g. data.path=/path/to/file.csv data.target=label)")
        path = self.path if self.path.is_absolute() else Path.cwd() / self.path
        if not path.is_file():
            raise DataError(f"data.path: CSV file not found: {path}")
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            raise DataError(f"{path}: the file is empty (expected a header row and data rows)")
        header = [h.strip() for h in rows[0]]
        if self.target not in header:
            raise DataError(f"data.target: column {self.target!r} not in {path}; columns are {header}")
        target_index = header.index(self.target)
        feature_columns = self.features or [c for c in header if c != self.target]
        unknown = [c for c in feature_columns if c not in header or c == self.target]
        if unknown:
            raise DataError(f"data.features: {unknown} are not feature columns of {path}; columns are {header}")
        feature_indices = [header.index(c) for c in feature_columns]
        data_rows = [(line_no, row) for line_no, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]
        if not data_rows:
            raise DataError(f"{path}: no data rows after the header")
        features, labels = [], []
        for line_no, row in data_rows:
            if len(row) != len(header):
                raise DataError(f"{path}:{line_no}: expected {len(header)} columns, found {len(row)}")
            features.append([_parse_number(row[i], path, line_no, header[i]) for i in feature_indices])
            labels.append(row[target_index].strip())
        x = np.asarray(features, dtype=np.float64)
        if self.task_kind == "regression":
            y = np.asarray(
                [_parse_number(v, path, n, self.target) for (n, _), v in zip(data_rows, labels)], dtype=np.float64
            )
            return LoadedData(train=_regression_split(x, y))
        for (line_no, _), label in zip(data_rows, labels):
            if label == "":
                raise DataError(f"{path}:{line_no}: missing label in column {self.target!r}")
            if _is_fractional_number(label):
                raise DataError(
                    f"{path}:{line_no}: label {label!r} in column {self.target!r} is not a class "
                    "(classification labels must be integers or names)"
                )
        classes = sorted(set(labels), key=_label_sort_key)
        if len(classes) < 2:
            raise DataError(f"{path}: column {self.target!r} holds a single class {classes}; need at least two")
        index = {c: i for i, c in enumerate(classes)}
        y = np.asarray([index[label] for label in labels], dtype=np.int64)
        return LoadedData(train=_classification_split(x, y), class_names=classes)


def _parse_number(cell: str, path: Path, line_no: int, column: str) -> float:
    text = cell.strip()
    if text == "":
        raise DataError(f"{path}:{line_no}: missing value in column {column!r} (fill or drop the row)")
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}:{line_no}: column {column!r} holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}:{line_no}: column {column!r} holds {text!r}, not a finite number")
    return value


def _is_fractional_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return not math.isfinite(value) or value != int(value)


def _label_sort_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
