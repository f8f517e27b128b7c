"""Tabular data sets: synthetic ones with a known truth, scikit-learn's bundled ones, any table file."""
from __future__ import annotations

import csv
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Optional, Union

import numpy as np
import torch

from .base import (REGRESSION_TARGET, DataError, DataSpec, InMemoryDataModule, LoadedData, Split, onto_classes,
                   repeats_note, test_file_note)

if TYPE_CHECKING:
    from .preprocessing import TablePreprocessor

# pandas (with pyarrow) is imported by the table files' reader and preprocessing only (tables.py,
# preprocessing.py): the bundled and synthetic data sets do not pay its ~0.5 s import

log = logging.getLogger(__name__)

#: a table file larger than this is said as its reading starts ("Data: reading ..."): a 1M-row CSV takes ~10 s to
#: read, and nothing was printed before the data line that follows it
LARGE_TABLE_BYTES = 50 * 2**20


class TabularDataModule(InMemoryDataModule):
    """Feature matrix + target. Features are standardised with training-split statistics."""

    modality: ClassVar[str] = "tabular"
    numbers_rows: ClassVar[bool] = True

    def __init__(self, standardize: bool = True, standardize_target: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.standardize = standardize
        self.standardize_target = standardize_target
        self.feature_mean: Optional[torch.Tensor] = None
        self.feature_std: Optional[torch.Tensor] = None
        self._example_rows: list[list[float]] = []
        self.fitted: Optional[tuple[object, DataSpec]] = None  # a trained run's (raw input adapter, spec): use_fitted

    def use_fitted(self, adapter_state: Optional[dict], spec: dict) -> bool:
        """The run's standardisation (feature means and deviations of its training rows) and model spec."""
        from .numeric_inputs import NumericColumns

        if (adapter_state or {}).get("class") != NumericColumns.__name__ or adapter_state.get("columns") != self.feature_names():
            return False
        self.fitted = NumericColumns.from_dict(adapter_state), DataSpec.from_dict(spec)
        return True

    def feature_names(self) -> Optional[list[str]]:
        """The names of the feature columns, in order: what the logged model reads from a DataFrame of raw rows.
        None: the data set has no names (its model then takes tensors)."""
        return None

    def test_row_sources(self) -> Optional[tuple[str, list[str]]]:
        """Where each test row is in the data set (a ``data_row`` column of predictions/test.csv): its place in the
        arrays the loader gives (``load_diabetes().data[data_row]``, 0 = the first), whatever data.limit_rows and the
        hold-out drew, so that predictions can be joined with the data set."""
        rows = getattr(self, "test_rows", None)
        return None if rows is None else ("data_row", [str(row) for row in rows.tolist()])

    def fit_preprocessing(self, train: Split) -> None:
        self._example_rows = train.x[:2].double().tolist()
        if self.fitted is not None:  # a trained run's (use_fitted)
            columns = self.fitted[0]
            self.feature_mean = None if columns.mean is None else torch.tensor(columns.mean, dtype=torch.float32)
            self.feature_std = None if columns.std is None else torch.tensor(columns.std, dtype=torch.float32)
            self._example_rows = [list(row) for row in columns.example_rows]
        elif self.standardize:
            self.feature_mean = train.x.mean(0)
            self.feature_std = train.x.std(0).clamp_min(1e-8)

    def apply_preprocessing(self, split: Split) -> Split:
        if not self.standardize:
            return split
        return Split((split.x - self.feature_mean) / self.feature_std, split.y)

    def describe(self, train: Split, class_names) -> DataSpec:
        if self.fitted is not None:  # what the trained run's model was built for
            return self.fitted[1]
        spec = super().describe(train, class_names)
        if self.task_kind == "regression":
            y = train.y.double()
            _say_far_out_targets(y.numpy())
            spec.extra["target_min"] = float(y.min())  # task.target_transform=log needs y > -1
            if self.standardize_target:
                spec.extra["target_mean"] = float(y.mean())
                spec.extra["target_std"] = float(y.std().clamp_min(1e-8))
                if spec.extra["target_min"] > -1:  # the scale of log1p(y), for task.target_transform=log
                    logged = torch.log1p(y)
                    spec.extra["log_target_mean"] = float(logged.mean())
                    spec.extra["log_target_std"] = float(logged.std().clamp_min(1e-8))
        return spec

    def raw_input_adapter(self):
        """The feature columns by name, standardised as in training (:mod:`pipeline.data.numeric_inputs`)."""
        names = self.feature_names()
        if names is None:
            return None
        from .numeric_inputs import NumericColumns

        if self.spec is not None and tuple(self.spec.input_shape) != (len(names),):
            raise DataError(f"data '{self.name}': {len(names)} feature names for inputs of shape {self.spec.input_shape}")
        standardized = self.standardize and self.feature_mean is not None
        return NumericColumns(names, self.feature_mean.tolist() if standardized else None,
                              self.feature_std.tolist() if standardized else None, self._example_rows)


def _say_far_out_targets(y: np.ndarray) -> None:
    """A regression target whose spread a few far-out training values set (a typo, 1e6 among values near 100): the
    standardised loss and the RMSE are then mostly theirs, as the columns' far-out cells are said of inputs."""
    from .preprocessing import far_out

    found = far_out(y, float(y.std()), float(np.median(y))) if len(y) >= 4 else None
    if found is not None:
        extreme, std, spread = found
        log.warning("data.target: the training rows' target holds values far from the rest (e.g. %.6g): its standard "
                    "deviation %.3g is %.3g times the spread of its middle half (%.3g), so the loss and the RMSE are "
                    "mostly those rows'. Check them (a unit or a typo?)", extreme, std, std / spread, spread)


def _regression_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=REGRESSION_TARGET).reshape(-1))


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

    def feature_names(self) -> list[str]:
        return ["x"] if self.n_features == 1 else [f"x{i + 1}" for i in range(self.n_features)]

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

    def feature_names(self) -> list[str]:
        return [f"x{i + 1}" for i in range(self.n_features)]

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
    #: the loader's ``feature_names`` (written out: reading them from scikit-learn costs its ~1.5 s import)
    columns: ClassVar[tuple[str, ...]] = ()

    def feature_names(self) -> Optional[list[str]]:
        return list(self.columns) or None

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
    columns: ClassVar[tuple[str, ...]] = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


_CELL_MEASURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave points",
                  "symmetry", "fractal dimension")


class BreastCancer(SklearnDataset):
    task_kind: ClassVar[str] = "classification"
    name: ClassVar[str] = "breast_cancer"
    loader: ClassVar[str] = "load_breast_cancer"
    bundled_csv: ClassVar[Optional[str]] = "breast_cancer.csv"
    columns: ClassVar[tuple[str, ...]] = (*(f"mean {m}" for m in _CELL_MEASURES), *(f"{m} error" for m in _CELL_MEASURES),
                                          *(f"worst {m}" for m in _CELL_MEASURES))


class Wine(SklearnDataset):
    task_kind: ClassVar[str] = "classification"
    name: ClassVar[str] = "wine"
    loader: ClassVar[str] = "load_wine"
    bundled_csv: ClassVar[Optional[str]] = "wine_data.csv"
    columns: ClassVar[tuple[str, ...]] = (
        "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
        "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315_of_diluted_wines", "proline")


class CsvData(TabularDataModule):
    """Any table: CSV, TSV, Parquet, Feather or JSON lines (``format`` or the file's extension), read with
    pandas/pyarrow as it comes (see :mod:`pipeline.data.tables`).

    Columns of numbers are numeric; strings, booleans and integer columns with few values are categorical;
    identifier-like and free-text columns are left out with a notice (``categorical`` / ``numeric`` override
    either choice). Missing cells (empty, ``NA``, ``?``, ``na_values``) are imputed. ``test_path`` names an
    official test file; without it a seeded hold-out (or ``cv_folds``) split is drawn. The preprocessing
    (:class:`~pipeline.data.preprocessing.TablePreprocessor`) is fitted on the training rows only and is
    the logged model's raw input adapter. For classification the labels may be names or integers
    (``1``, ``1.0`` and `` 1`` are one class); for regression the target must be numeric.
    """

    name: ClassVar[str] = "csv"
    reads_test_file_alone: ClassVar[bool] = True
    numbers_rows: ClassVar[bool] = False  # its splits hold rows of self.frame: file_row says where they are

    def __init__(self, path: str = "", target: str = "", task_kind: str = "regression",
                 features: Optional[list] = None, drop: Optional[list] = None,
                 categorical: Optional[list] = None, numeric: Optional[list] = None,
                 test_path: Optional[str] = None, format: Optional[str] = None, sep: Optional[str] = None,
                 columns: Optional[list] = None, date_features: bool = True, sheet: Union[str, int, None] = None,
                 skip_rows: int = 0, groups: Optional[str] = None, order_by: Optional[str] = None,
                 na_values: Union[str, list, None] = None, target_keep_values: Optional[list] = None,
                 encoding: Optional[str] = None, decimal: str = ".",
                 categorical_encoding: str = "embedding", numeric_transform: str = "standard",
                 min_category_count: int = 5, max_integer_categories: int = 10, piecewise_bins: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.path = Path(path) if path else None
        self.test_path = Path(test_path) if test_path else None
        self.target = target
        if features is not None and len(features) == 0:  # null reads every column; an empty list is a mistake
            raise DataError("data.features=[] lists no column; list the feature columns, or leave data.features out "
                            "(null) to read every column but the target")
        self.features = [str(c) for c in features] if features is not None else None
        self.drop = [str(c) for c in drop or ()]
        self.categorical = [str(c) for c in categorical or ()]
        self.numeric = [str(c) for c in numeric or ()]
        self.format = format
        self.sep = sep
        self.columns = [str(c).strip() for c in columns] if columns is not None else None  # a file without a header row
        self.date_features = bool(date_features)
        self.sheet = sheet  # the sheet of an Excel workbook (None: the first)
        self.skip_rows = skip_rows  # lines (sheet rows) above the header to leave out: a report's title
        # a column naming each row's group (a patient, a user): rows of a group are held out together
        self.groups = str(groups) if groups is not None else None
        self.row_groups: Optional[np.ndarray] = None  # the group of every row of self.frame
        # a column of times (dates or numbers): the test and validation splits are the latest rows
        self.order_by = str(order_by) if order_by is not None else None
        self.row_order: Optional[np.ndarray] = None  # the time of every row of self.frame (training file)
        self.row_order_text: Optional[np.ndarray] = None  # ... as written, for the data line
        self._order_notes: list[str] = []
        if self.groups is not None and self.order_by is not None:
            raise DataError("data.groups and data.order_by both choose how rows are held out; set one of them")
        self.date_parts: dict[str, list[str]] = {}  # a date column -> its parts that are categorical inputs too
        self.na_values = [str(v) for v in ([na_values] if isinstance(na_values, str) else na_values or ())]
        self.encoding = encoding
        if task_kind not in ("regression", "classification"):
            raise DataError(f"data.task_kind must be 'regression' or 'classification', got {task_kind!r}")
        self.target_keep_values = _target_keep_values(target_keep_values, self.na_values, task_kind)
        self.task_kind = task_kind  # an instance attribute: one table reader serves both tasks
        from .preprocessing import CATEGORICAL_ENCODINGS, NUMERIC_TRANSFORMS

        self.decimal = decimal  # checked by the reader (data.tables), before any run
        _choice("data.categorical_encoding", categorical_encoding, CATEGORICAL_ENCODINGS)
        _choice("data.numeric_transform", numeric_transform, NUMERIC_TRANSFORMS)
        if min_category_count < 1:
            raise DataError(f"data.min_category_count must be >= 1, got {min_category_count}")
        self.categorical_encoding = categorical_encoding
        self.numeric_transform = numeric_transform if self.standardize else "none"
        self.min_category_count = min_category_count
        if piecewise_bins < 1:
            raise DataError(f"data.piecewise_bins must be >= 1, got {piecewise_bins}")
        self.piecewise_bins = piecewise_bins
        self.max_integer_categories = max_integer_categories
        self.kinds: dict[str, str] = {}
        self.frame = None  # the feature columns of every row read (train file, then test file), as read
        self.row_hashes = None  # a hash of each row of self.frame, all its columns as read (row_identity)
        # where each row of self.frame is in its file: the file's row number as pandas reads it (0 = the first row
        # under the header) and which file (0: data.path, 1: data.test_path); the test split's rows in self.frame
        self.file_rows: Optional[np.ndarray] = None
        self.file_of_rows: Optional[np.ndarray] = None
        self.row_files: list[Path] = []
        self.test_positions: Optional[np.ndarray] = None
        self.preprocessor: Optional[TablePreprocessor] = None
        self.timings: dict[str, float] = {}  # seconds spent reading, fitting and applying the preprocessing

    def source_label(self) -> str:
        """The data line's name for the table: the reader and the file (``csv adult.data``), so that ``data=adult``
        and every other table config say which file they read."""
        path = self.test_path if self.test_file_only else self.path
        return f"{self.name} {path.name}" if path is not None else self.name

    def use_fitted(self, adapter_state: Optional[dict], spec: dict) -> bool:
        """The run's preprocessing, columns (their kinds and date parts) and classes, instead of what this
        config's training rows would give: the test rows are read as the model's inputs were."""
        from .preprocessing import TablePreprocessor

        if (adapter_state or {}).get("class") != TablePreprocessor.__name__:
            return False
        self.fitted = TablePreprocessor.from_dict(adapter_state), DataSpec.from_dict(spec)
        return True

    # ----- reading ---------------------------------------------------------------------------------------
    def _resolve(self, path: Optional[Path], key: str) -> Path:
        if path is None:
            raise DataError(f"{key} is required for data=csv (e.g. data.path=/path/to/file.csv data.target=label)")
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]+:/", str(path)):  # https://..., s3://... (the path joined the //)
            scheme, rest = str(path).split(":/", 1)  # file:///tmp/x.csv was joined to file:/tmp/x.csv
            written = f"{scheme}:///{rest}" if scheme.lower() == "file" else f"{scheme}://{rest}"
            raise DataError(f"{key}={written} is a URL; tables are read from local files: "
                            + ("give its path (/" + rest + ")" if scheme.lower() == "file" else
                               "download it first and give its path"))
        path = path if path.is_absolute() else Path.cwd() / path
        if path.is_dir():
            from .tables import COMPRESSIONS, FORMATS

            tables = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                            and (p.suffix.lower() in FORMATS or p.suffix.lower() in COMPRESSIONS))
            held = f" (it holds {', '.join(tables[:5])}{', ...' if len(tables) > 5 else ''})" if tables else ""
            raise DataError(f"{key}={path} is a folder; give the table's file{held}")
        if not path.is_file():
            raise DataError(f"{key}: file not found: {path}{self._data_dir_hint(path)}")
        return path

    def _data_dir_hint(self, path: Path) -> str:
        """For a file under paths.data_dir (data=adult, data=california_housing): how to point it elsewhere."""
        data_dir = self.data_dir if self.data_dir.is_absolute() else Path.cwd() / self.data_dir
        try:
            inside = path.relative_to(data_dir)
        except ValueError:
            return ""
        held = f"{inside.parts[0]}/" if len(inside.parts) > 1 else inside.name
        return (f" (it is read from paths.data_dir, {data_dir}: set PIPELINE_DATA_DIR or paths.data_dir to the "
                f"folder that holds {held})")

    def _read(self, path: Path):
        from pytorch_lightning.utilities import rank_zero_only

        from .tables import read_table

        size = path.stat().st_size
        if size > LARGE_TABLE_BYTES and getattr(rank_zero_only, "rank", 0) == 0:
            print(f"Data: reading {path.name} ({size / 2**20:,.0f} MB) ...", flush=True)
        return read_table(path, self.format, self.sep, self.na_values, self.encoding, self.decimal, self.columns,
                          self.sheet, self.skip_rows, self.target, self.target_keep_values)

    def _feature_columns(self, columns: list[str], path: Path) -> list[str]:
        for key, names in (("data.features", self.features or []), ("data.drop", self.drop),
                           ("data.categorical", self.categorical), ("data.numeric", self.numeric)):
            unknown = [c for c in names if c not in columns or c == self.target]
            if unknown:
                raise DataError(f"{key}: {unknown} are not feature columns of {path}; columns are {columns} "
                                f"(target: {self.target!r}){_nearest_name(unknown[0], columns)}")
        both = sorted(set(self.categorical) & set(self.numeric))
        if both:
            raise DataError(f"data.categorical and data.numeric both list {both}; a column is one or the other")
        if self.groups is not None and self.groups in [*(self.features or []), *self.categorical, *self.numeric]:
            raise DataError(f"data.groups={self.groups!r} says which rows belong together; it cannot be a feature "
                            "too (leave it out of data.features, data.categorical and data.numeric)")
        chosen = self.features or [c for c in columns if c not in (self.target, self.groups)]
        return [c for c in chosen if c not in self.drop]

    def load(self) -> LoadedData:
        import pandas as pd

        from .tables import check_numeric_column, header_hint, separator_hint

        started = time.perf_counter()
        if self.test_file_only:
            return self._load_test_file_alone(started)
        train = self._read(self._resolve(self.path, "data.path"))
        columns = list(train.frame.columns)
        if self.target not in columns:
            hint = (separator_hint(columns) or train.sheet_hint() or (header_hint(columns) if self.columns is None else "")
                    or _nearest_name(self.target, columns))
            raise DataError(f"data.target: column {self.target!r} not in {train.path}; columns are {columns}{hint}")
        for key, column in (("data.groups", self.groups), ("data.order_by", self.order_by)):
            if column is not None and (column not in columns or column == self.target):
                raise DataError(f"{key}: column {column!r} " + (
                    "is the target" if column == self.target else f"not in {train.path}; columns are {columns}"))
        if self.order_by is not None and self.cv_folds:
            raise DataError("data.order_by holds out the latest rows; data.cv_folds draws folds across all times: "
                            "set one of them")
        features = self._feature_columns(columns, train.path) if self.fitted is None else list(self.fitted[0].columns)
        if self.fitted is not None:
            absent = [c for c in features if c not in columns]
            if absent:
                raise DataError(f"data.path: {train.path} has no column {', '.join(map(repr, absent))}, which the "
                                f"model reads; its columns are {columns}")
        tables = [train]
        if self.test_path is not None:
            tables.append(self._test_table(features))
        if self.fitted is None:
            self._type_columns(train, features)
        else:  # the trained run's columns: the train file is checked as the test file is
            self.kinds, self.date_parts = dict(self.fitted[0].columns), dict(self.fitted[0].date_parts)
        for table in tables[1:] if self.fitted is None else tables:  # typing checked the training file's numbers
            for name, kind in self.kinds.items():
                if kind == "numeric":
                    check_numeric_column(table, name, self.na_values, self.decimal)
        targets, class_names, present = self._targets(tables)
        if class_names is None and self.fitted is None:
            trained = targets[0][present[0]]
            if (trained == trained[0]).all():  # rmse 0 and a model that learns nothing, as one class is refused
                raise DataError(f"{train.path}: column {self.target!r} holds a single value, {trained[0]:g}, in every "
                                f"row; a regression model needs a target that varies")
        if class_names is not None:
            seen = sorted(set(targets[0][present[0]].tolist()))
            if len(seen) < 2:
                raise DataError(f"{train.path}: column {self.target!r} holds a single class "
                                f"{[class_names[i] for i in seen]}; a classifier needs at least two")
            unlearned = [(name, int((targets[1] == i).sum())) for i, name in enumerate(class_names)
                         if i not in seen] if len(tables) > 1 and self.fitted is None and not self.cv_folds else []
            if unlearned:
                # the classes are the training file's: a test file must not add outputs to the model (nor columns to
                # its predictions), and its rows of a class never trained on would measure something else
                known = [name for i, name in enumerate(class_names) if i in seen]
                cased = {k.casefold(): k for k in known}
                hints = [f"{n!r} may be {cased[n.casefold()]!r}" for n, _ in unlearned if n.casefold() in cased]
                raise DataError(
                    f"data.test_path: labels in the test file {tables[1].path} that the training file {train.path} does "
                    f"not hold: {', '.join(f'{n!r} ({c} rows)' for n, c in unlearned)}; the model learns the training "
                    f"file's classes ({', '.join(map(repr, known))}) and cannot be tested on others"
                    + (f" ({'; '.join(hints)}: write labels one way in both files)" if hints else
                       "; spell them as the training file does, or leave those rows out of the test file"))
        frames = [t.frame.loc[keep, list(self.kinds)] for t, keep in zip(tables, present)]
        self._note_file_rows(tables, frames)
        self.frame = pd.concat(frames, ignore_index=True)
        if len(frames) > 1:  # the test file's rows: compared with the training rows once preprocessing is fitted
            self.test_file_rows = (tables[1].path, len(frames[0]), len(frames[0]) + len(frames[1]))
        self.row_hashes = np.concatenate([_row_hashes(t.frame.loc[keep]) for t, keep in zip(tables, present)])
        if self.groups is not None:
            self.row_groups = np.concatenate([self._groups_of(t, keep, i) for i, (t, keep) in
                                              enumerate(zip(tables, present))])
        if self.order_by is not None:  # the training file's rows only: a test file is a split of its own
            self.row_order, self.row_order_text = self._times_of(train, present[0])
        splits, start = [], 0
        for frame, y, keep in zip(frames, targets, present):
            rows = torch.arange(start, start + len(frame), dtype=torch.long)
            start += len(frame)
            y = torch.as_tensor(y[keep], dtype=torch.long if class_names is not None else REGRESSION_TARGET)
            splits.append(Split(rows, y))
        self.timings["read_s"] = time.perf_counter() - started
        return LoadedData(train=splits[0], test=splits[1] if len(splits) > 1 else None, class_names=class_names)

    def _load_test_file_alone(self, started: float) -> LoadedData:
        """The test file's rows alone, read as the trained run's (``use_fitted``) columns and classes: what
        ``pipeline-eval <run> data.test_path=new.csv`` tests, without reading the training file."""
        from .tables import check_numeric_column

        test = self._test_table(list(self.fitted[0].columns))
        self.kinds, self.date_parts = dict(self.fitted[0].columns), dict(self.fitted[0].date_parts)
        for name, kind in self.kinds.items():
            if kind == "numeric":
                check_numeric_column(test, name, self.na_values, self.decimal)
        (targets,), class_names, (keep,) = self._targets([test])
        frame = test.frame.loc[keep, list(self.kinds)]
        self._note_file_rows([test], [frame])
        self.frame = frame.reset_index(drop=True)
        self.test_file_rows = (test.path, 0, len(self.frame))
        self.row_hashes = _row_hashes(test.frame.loc[keep])
        y = torch.as_tensor(targets[keep], dtype=torch.long if class_names is not None else REGRESSION_TARGET)
        self.timings["read_s"] = time.perf_counter() - started
        return LoadedData(train=None, test=Split(torch.arange(len(self.frame), dtype=torch.long), y),
                          class_names=class_names)

    def _test_table(self, features: list[str]):
        """The test file (``data.test_path``), read, with every feature column and the target."""
        from .tables import separator_hint

        test = self._read(self._resolve(self.test_path, "data.test_path"))
        absent = [c for c in [*features, self.target] if c not in test.frame.columns]
        if absent:
            raise DataError(f"data.test_path: {test.path} has no column {', '.join(map(repr, absent))}; "
                            f"its columns are {list(test.frame.columns)}{separator_hint(list(test.frame.columns))}")
        return test

    def _targets(self, tables) -> tuple[list[np.ndarray], Optional[list[str]], list[np.ndarray]]:
        """(targets per table, class names or None, rows with a target per table): classes mapped onto the trained
        run's where its preprocessing is used; rows without a target are left out with a warning."""
        from .tables import class_labels, regression_targets

        if self.task_kind == "classification":
            targets, class_names = class_labels(tables, self.target, self.target_keep_values)
            if self.fitted is not None:
                targets, class_names = self._as_trained_classes(tables, targets, class_names)
            present = [t >= 0 for t in targets]
        else:
            targets, class_names = [regression_targets(t, self.target, self.decimal) for t in tables], None
            present = [~np.isnan(t) for t in targets]
        for table, keep in zip(tables, present):
            if not keep.all():
                first = table.where(table.frame.index[int(np.flatnonzero(~keep)[0])])
                said, hint = self._missing_spellings(table)
                log.warning("data.target: %d row(s) of %s have no value in column %r%s and are left out (first: %s)%s",
                            int((~keep).sum()), table.path, self.target, said, first, hint)
            if not keep.any():
                raise DataError(f"{table.path}: no row has a value in the target column {self.target!r}")
        return targets, class_names, present

    def _missing_spellings(self, table) -> tuple[str, str]:
        """How the target's missing cells are written (`` (291 written 'NA', 3 empty)``) and, for classes spelled
        as pandas' missing values (``NA``: North America; ``None``), the key that keeps them as classes."""
        from .preprocessing import MISSING_TOKENS

        spelled = sorted(table.target_missing.items(), key=lambda item: -item[1])
        if not spelled:
            return "", ""
        said = ", ".join(f"{n} empty" if text == "" else f"{n} written {text!r}" for text, n in spelled)
        labels = [text for text, _ in spelled if text and text in MISSING_TOKENS and text not in self.na_values]
        if self.task_kind != "classification" or not labels:
            return f" ({said})", ""
        from .tables import list_override

        keep = list_override("data.target_keep_values", [*self.target_keep_values, *labels])
        return f" ({said})", f"; if {' or '.join(map(repr, labels))} is a class, keep it with {keep}"

    def _groups_of(self, table, keep: np.ndarray, position: int) -> np.ndarray:
        """The group names of the kept rows of ``table`` (the training file, or the test file: its groups matter
        when data.cv_folds pools the two; a test file without the column gives each row a group of its own)."""
        from .preprocessing import canonical_values

        if self.groups not in table.frame.columns:
            return np.array([f"\x00{position}:{i}" for i in range(int(keep.sum()))], dtype=object)
        names = np.array(canonical_values(table.frame[self.groups]), dtype=object)
        missing = np.flatnonzero(names == None)  # noqa: E711 (element-wise: canonical_values marks missing by None)
        if len(missing):
            raise DataError(f"{table.where(table.frame.index[int(missing[0])])}: no group in column {self.groups!r} "
                            "(data.groups); every row needs one")
        return names[keep]

    def _times_of(self, table, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The times of the kept rows of ``table`` (dates as day counts, or numbers), and as written."""
        import pandas as pd

        from .preprocessing import MISSING_TOKENS, to_numbers

        column, missing = table.frame[self.order_by], frozenset([*MISSING_TOKENS, *self.na_values])
        values, _ = to_numbers(column, missing, self.decimal)
        unreadable = np.flatnonzero(np.isnan(values))
        if len(unreadable):
            cell = column.iloc[int(unreadable[0])]
            what = ("no time" if pd.isna(cell) or str(cell).strip() in missing
                    else f"{str(cell)!r} is neither a date nor a number" + (
                        " (dates are read as ISO 8601, 2024-01-05 or 2024-01-05T10:30: a day/month order cannot be "
                        "told from month/day; write them so)"
                        if re.fullmatch(r"\d{1,4}[/.]\d{1,2}[/.]\d{1,4}( .*)?", str(cell).strip()) else ""))
            raise DataError(f"{table.where(table.frame.index[int(unreadable[0])])}: {what} in column "
                            f"{self.order_by!r} (data.order_by); every row needs one")
        return values[keep], column.astype("string").to_numpy(dtype=object)[keep]

    def split_groups(self, split: Split) -> Optional[np.ndarray]:
        return None if self.row_groups is None else self.row_groups[split.x.numpy()]

    def split_order(self, split: Split) -> Optional[np.ndarray]:
        # only the training file's rows are ever held out by time (a test file is its own split; with data.cv_folds,
        # which would pool it, data.order_by is refused), and they come first in self.frame
        return None if self.row_order is None else self.row_order[split.x.numpy()]

    def _note_file_rows(self, tables, frames) -> None:
        import pandas as pd

        self.row_files = [Path(t.path) for t in tables]
        if not all(pd.api.types.is_integer_dtype(frame.index) for frame in frames):
            self.file_rows = self.file_of_rows = None  # a table whose file kept an index of its own: not numbered
            return
        self.file_rows = np.concatenate([frame.index.to_numpy(dtype=np.int64) for frame in frames])
        self.file_of_rows = np.concatenate([np.full(len(frame), i, dtype=np.int64) for i, frame in enumerate(frames)])

    def _test_file_splits(self, data: LoadedData) -> tuple[Split, Split, Split]:
        train, val, test = super()._test_file_splits(data)
        self.test_positions = test.x.numpy().copy()
        return train, val, test

    def test_row_sources(self) -> Optional[tuple[str, list[str]]]:
        """Where each test row is in its file (a ``file_row`` column of predictions/test.csv): its row number as
        pandas reads the file (``pd.read_csv(path).iloc[file_row]``, 0 = the first row under the header), so that
        rows can be joined with the file's other columns. Rows of a test split that pools two files (data.cv_folds
        with data.test_path) are written ``<file name>:<row>``."""
        if self.test_positions is None or self.file_rows is None:
            return None
        rows, files = self.file_rows[self.test_positions], self.file_of_rows[self.test_positions]
        if len(np.unique(files)) <= 1:
            return "file_row", [str(row) for row in rows.tolist()]
        names = [path.name for path in self.row_files]
        return "file_row", [f"{names[f]}:{row}" for f, row in zip(files.tolist(), rows.tolist())]

    def _split(self, data: LoadedData) -> tuple[Split, Split, Split]:
        train, val, test = super()._split(data)
        self.test_positions = test.x.numpy().copy()
        self._order_notes = []
        if self.row_order is not None:
            for name, split, drawn in (("test", test, data.test is None), ("validation", val, True)):
                rows = split.x.numpy()
                if drawn and len(rows):
                    first = rows[np.argmin(self.row_order[rows])]
                    self._order_notes.append(f"{name} rows are the latest by {self.order_by!r}, from "
                                             f"{self.row_order_text[first]} on")
            self._order_notes[-1:] = [note + " (data.order_by)" for note in self._order_notes[-1:]]
        self._repeat_note = self._repeated_inputs(train, test)
        return train, val, test

    def _repeated_inputs(self, train: Split, test: Split) -> Optional[str]:
        """A note when test rows repeat a training row's input cells exactly (duplicated records: the model may
        have seen those answers, and the test metrics then overstate how it does on new rows)."""
        import pandas as pd

        columns = [c for c in self.kinds if c in self.frame.columns]
        if not len(test) or not len(train) or not columns:
            return None
        hashes = pd.util.hash_pandas_object(self.frame[columns], index=False).to_numpy()
        repeated = int(np.isin(hashes[test.x.numpy()], hashes[train.x.numpy()]).sum())
        return repeats_note(repeated, len(test), "a training row's inputs")

    def how_split(self) -> list[str]:
        notes = []
        if self.test_path is not None:
            notes.append(test_file_note(self.test_path, self.cv_folds))
        if self.row_groups is not None:
            notes.append(f"rows of one {self.groups!r} stay in one split (data.groups; {len(set(self.row_groups)):,} "
                         "groups)")
        else:
            notes += self._order_notes
        if getattr(self, "_repeat_note", None):  # set when the splits are drawn
            notes.append(self._repeat_note)
        return notes

    def _type_columns(self, train, features: list[str]) -> None:
        """``self.kinds`` (numeric or categorical, per feature column) and ``self.date_parts`` from the training
        file, with a notice for the columns left out and those read as numbers."""
        from .tables import column_kinds

        plan = column_kinds(train, features, self.categorical, self.numeric, self.max_integer_categories,
                            self.na_values, self.decimal, chosen=self.features or ())
        if plan.left_out:
            listed = ", ".join(f"{name!r} ({why})" for name, why in plan.left_out.items())
            log.warning("data: left out %s: identifier-like, free text or empty; bring one back with "
                        "data.categorical=[<name>] (or data.numeric=[<name>])", listed)
        if plan.single_valued:
            listed = ", ".join(f"{name!r} ({value!r} in every row)" for name, value in plan.single_valued.items())
            log.warning("data: left out %s: one value throughout, nothing to learn from; bring one back with "
                        "data.categorical=[<name>] (or data.numeric=[<name>])", listed)
        for name, kind in plan.kinds.items():
            if kind != "categorical":
                continue
            for word, count in train.missing_words.get(name, {}).items():
                if count >= max(10, 0.05 * len(train.frame)):
                    log.warning("data: column %r: %d of its %d cells are written %r, read as a missing value (the "
                                "unseen/missing category, shared with new values at prediction); if %r is a value "
                                "here (North America, 'None': none), write it otherwise in the file, e.g. %r",
                                name, count, len(train.frame), word, word, f"{word}_")
        if plan.with_units:
            listed = ", ".join(f"{name!r} (e.g. {cell!r})" for name, cell in plan.with_units.items())
            log.warning("data: read as categories, one input per value with no order between them: %s, numbers "
                        "written with a unit; write the numbers alone (the unit in the column's name) to read them "
                        "as numbers", listed)
        if plan.few_integers:
            listed = ", ".join(f"{name!r} ({count} values)" for name, count in plan.few_integers.items())
            log.warning("data: read as categories (whole numbers with at most data.max_integer_categories=%d distinct "
                        "values: one input per value, no slope): %s; read one as a number with data.numeric=[<name>]",
                        self.max_integer_categories, listed)
        from .tables import comma_could_be_decimal

        written = [f"{name!r} ({text!r} -> {value:g}" + (
            f"; or {value / 1000:g}, if ',' is the decimal mark: 'data.decimal=\",\"')"
            if self.decimal == "." and comma_could_be_decimal(train.frame[name]) else ")")
            for name, (text, value) in plan.written.items()]
        if self.task_kind == "regression":  # the target's numbers are read the same way: named too
            from .preprocessing import MISSING_TOKENS
            from .tables import _written_example

            example = _written_example(train.frame[self.target], frozenset([*MISSING_TOKENS, *self.na_values]),
                                       self.decimal)
            if example is not None:
                written.append(f"{self.target!r}, the target ({example[0]!r} -> {example[1]:g})")
        if written:
            listed = ", ".join(written)
            log.warning("data: read as numbers (written with a currency sign, thousands separators or '%%'; ISO dates as "
                        "days since 1970-01-01): %s%s", listed,
                        "; keep one as text with data.categorical=[<name>]" if plan.written else "")
        if not plan.kinds:
            raise DataError(f"{train.path}: no feature columns left (target {self.target!r}; left out: "
                            f"{', '.join([*plan.left_out, *plan.single_valued]) or '-'}); choose them with "
                            "data.features=[...]")
        self.kinds = plan.kinds
        if self.date_features:
            clashing = {name: [f"{name}.{part}" for part in ("month", "weekday", "hour") if f"{name}.{part}" in plan.kinds]
                        for name in plan.dates}
            self.date_parts = {name: ["month", "weekday", *(["hour"] if timed else [])]
                               for name, timed in plan.dates.items() if not clashing[name]}
            for name, taken in clashing.items():
                if taken:
                    log.warning("data: the dates of %r give no month/weekday/hour inputs: the file has a column named "
                                "%s already (its day count stays an input); rename that column to have them", name,
                                " and ".join(map(repr, taken)))
        if self.date_parts:
            listed = ", ".join(f"{name!r} ({', '.join(parts)})" for name, parts in self.date_parts.items())
            log.warning("data: dates also give categorical inputs of their parts (as written, not in UTC): %s; "
                        "data.date_features=false keeps the day count alone", listed)

    def _as_trained_classes(self, tables, targets: list[np.ndarray], class_names: list[str]):
        """The class indices of the trained run (``use_fitted``): this data's labels mapped onto its classes; a
        label it was not trained on is refused with the file that holds it."""
        trained = list(self.fitted[1].class_names or [])
        mapping, unseen = onto_classes(class_names, trained, key="data.target")
        if unseen is not None:
            index = class_names.index(unseen)
            table, labels = next((t, y) for t, y in zip(tables, targets) if (y == index).any())
            where = table.where(table.frame.index[int(np.flatnonzero(labels == index)[0])])
            count = sum(int((y == index).sum()) for y in targets)
            raise DataError(f"{where}: label {unseen!r} ({count:,} row{'s' if count != 1 else ''}) in column "
                            f"{self.target!r} is not a class the model was trained on ({', '.join(map(repr, trained))})")
        return [np.where(y >= 0, mapping[np.maximum(y, 0)], -1) for y in targets], trained

    # ----- preprocessing: fitted on the training rows only -------------------------------------------------
    def fit_preprocessing(self, train: Split) -> None:
        from .preprocessing import MISSING_TOKENS, TablePreprocessor
        from .tables import list_override

        if self.fitted is not None:  # a trained run's (use_fitted)
            self.preprocessor = self.fitted[0]
            self._compare_test_file()
            return
        started = time.perf_counter()
        self.preprocessor = TablePreprocessor(
            self.kinds, self.numeric_transform, self.categorical_encoding, self.min_category_count,
            [*MISSING_TOKENS, *self.na_values], self.piecewise_bins, self.decimal, self.columns, self.date_parts,
            self.target if self.columns is not None else None).fit(
                self.frame.iloc[train.x.numpy()], train.y.numpy(), classification=self.task_kind != "regression")
        for name, (extreme, std, spread) in self.preprocessor.far_out.items():
            log.warning("data: column %r holds values far from the rest (e.g. %.6g): its standard deviation %.3g is "
                        "%.3g times the spread of its middle half (%.3g), so standardised, every other row of it is ~0. "
                        "Check those cells (a unit or a typo?), or set data.numeric_transform=quantile",
                        name, extreme, std, std / spread, spread)
        for name, (values, rows, present) in self.preprocessor.folded.items():
            if rows >= present / 2:  # most rows in one code: the column says next to nothing
                log.warning("data: column %r: %d of its %d distinct values (%d of %d rows) are seen fewer than "
                            "data.min_category_count=%d times and share the unseen/rare category, leaving %d "
                            "categories; lower data.min_category_count, or leave the column out with %s",
                            name, values, values + len(self.preprocessor.categories[name]), rows, present,
                            self.min_category_count, len(self.preprocessor.categories[name]),
                            list_override("data.drop", [name]))
        self.timings["fit_s"] = time.perf_counter() - started
        self._compare_test_file()

    def _compare_test_file(self) -> None:
        """Say where the test file's (data.test_path) cells are mostly of a kind the training rows were not: its
        categories spelled otherwise, its numbers in another unit or read with another decimal mark, a column
        empty. Its metrics measure the model on inputs it cannot read as meant, and pipeline-predict says as much
        of new rows."""
        from .preprocessing import InputDrift

        if getattr(self, "test_file_rows", None) is None:
            return
        path, start, end = self.test_file_rows
        drift = InputDrift(self.preprocessor)
        drift.count(self.frame.iloc[start:end])
        for line in drift.messages():
            log.warning("data.test_path: %s: %s", path, line)

    def row_identity(self, split: Split) -> list:
        """Each row's cells as read, every column (not only the features chosen: runs that differ in data.drop or
        data.features are tested on the same rows), and its target."""
        return [self.row_hashes[split.x.numpy()], split.y]

    def apply_preprocessing(self, split: Split) -> Split:
        started = time.perf_counter()
        x = self.preprocessor.transform(self.frame.iloc[split.x.numpy()])
        self.timings["transform_s"] = self.timings.get("transform_s", 0.0) + time.perf_counter() - started
        return Split(x, split.y)

    def describe(self, train: Split, class_names) -> DataSpec:
        if self.fitted is not None:  # what the trained run's model was built for
            return self.fitted[1]
        spec = super().describe(train, class_names)
        if self.preprocessor.embedded_cardinalities:
            spec.model_inputs["categorical_cardinalities"] = self.preprocessor.embedded_cardinalities
            if self.preprocessor.embedded_unknown_seen:  # a column whose code 0 the model never trains
                spec.model_inputs["categorical_unknown_seen"] = self.preprocessor.embedded_unknown_seen
        return spec

    def raw_input_adapter(self) -> TablePreprocessor:
        return self.preprocessor


def _target_keep_values(values, na_values: list[str], task_kind: str) -> list[str]:
    """data.target_keep_values: spellings of pandas' missing values (``NA``, ``None``, ``null``, ``N/A``, ``nan``)
    that are labels in the target column (a region ``NA``), checked."""
    from .preprocessing import MISSING_TOKENS

    values = [values] if isinstance(values, str) else list(values or ())
    if any(not isinstance(v, str) for v in values):  # [null] arrives as None, [NaN] as the float nan
        raise DataError("data.target_keep_values: quote each spelling, as Hydra reads null, NaN and nan unquoted as "
                        "other things than text: \"data.target_keep_values=['null','NaN']\"")
    allowed = [t for t in MISSING_TOKENS if t]
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise DataError(f"data.target_keep_values: {unknown[0]!r} is not read as missing, so there is nothing to keep; "
                        f"list spellings that are: {', '.join(allowed)}")
    both = [v for v in values if v in na_values]
    if both:
        raise DataError(f"data.target_keep_values and data.na_values both list {both[0]!r}; a value is a label or "
                        "missing, not both")
    if values and task_kind != "classification":
        raise DataError("data.target_keep_values keeps class labels spelled like missing values (NA); a regression "
                        "target is numbers: leave it out")
    return values


def _choice(key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise DataError(f"{key}={value!r} is not allowed; choose one of {', '.join(allowed)}")


def nearest_column(name: str, columns: list[str]) -> Optional[str]:
    """The column of ``columns`` that ``name`` is written otherwise (another case or a small typo); else None."""
    import difflib

    by_case = [c for c in columns if str(c).casefold() == str(name).casefold()]
    close = by_case or difflib.get_close_matches(str(name), [str(c) for c in columns], n=1, cutoff=0.75)
    return close[0] if close and close[0] != name else None


def _nearest_name(name: str, columns: list[str]) -> str:
    """``; did you mean 'Survived'?`` for a column name written with another case or a small typo; else ``""``."""
    close = nearest_column(name, columns)
    return f"; did you mean {close!r}?" if close is not None else ""


def _row_hashes(frame) -> np.ndarray:
    """A 64-bit hash of each row of a table as read (its cells, not its position)."""
    import pandas as pd

    try:
        return pd.util.hash_pandas_object(frame, index=False).to_numpy()
    except TypeError:  # cells pandas cannot hash (lists of a JSON lines file): as text
        return pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy()
