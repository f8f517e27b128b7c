"""Preprocessing of raw table rows, fitted on the training rows only: one small, inspectable object.

:class:`TablePreprocessor` turns a pandas DataFrame of raw columns (strings, numbers, missing values, in
any column order, with extra columns) into the float32 tensor the model reads:

* a **numeric** column -> its missing cells imputed with the training median, then standardised (or
  quantile-transformed to a normal distribution, or piecewise-linear encoded over quantile bins, or over
  bins whose edges a small decision tree on the target chose: one number per bin, Gorishniy et al. 2022,
  arXiv 2203.05556, "PLE-Q" and "PLE-T"), plus a 0/1 missing indicator when the training
  rows had missing values in it;
* a **categorical** column -> an integer code per category seen at least ``min_category_count`` times in
  the training rows; code 0 is the bucket for unseen, rare and missing values. The codes are the last
  columns of the tensor, read by the model's embeddings (``categorical_encoding="embedding"``), or
  expanded here into one-hot columns (``"onehot"``);
* a numeric column of **dates** may also give categorical inputs of their parts (``date_parts``: the month, the
  weekday, the hour), derived from the same cells, so that a season or a weekday effect can be learned.

The same object is the **raw input adapter** of the model logged to MLflow: its state is plain JSON
(:meth:`to_dict`), and this file is stored beside it and imported from there when the model is loaded.
So this module imports nothing of the project, only numpy, pandas and torch; keep it that way.
"""
from __future__ import annotations

import datetime
import math
import re
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

FORMAT_VERSION = 1
# What a table cell may hold for "missing": pandas' default list, plus "?" (UCI data sets) and the error values
# of a spreadsheet's formulas (in a workbook, or a CSV saved from one).
MISSING_TOKENS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                  "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?",
                  "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!")
NUMERIC_TRANSFORMS = ("standard", "quantile", "piecewise", "piecewise_tree", "none")
CATEGORICAL_ENCODINGS = ("embedding", "onehot")
# the decimal mark of numbers written as text: "." (3.14, 1,234.5) or "," (3,14, 1.234,5: continental Europe)
DECIMAL_MARKS = (".", ",")
_SWAP_MARKS = str.maketrans({".": ",", ",": "."})
FLOAT32_MAX = float(np.finfo(np.float32).max)
# a standardised column whose standard deviation is this many times the spread of its middle half (its interquartile
# range) is scaled by a few far-out values: every other row becomes ~0 (heavy-tailed columns such as incomes stay
# well under it: a log-normal of sigma 2 gives ~15)
FAR_OUT_RATIO = 100.0
QUANTILES = 1000  # at most this many reference quantiles per numeric column (scikit-learn's default)
PIECEWISE_BINS = 16  # bins of the piecewise-linear encoding (fewer where a column has fewer distinct values)

_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# a number as spreadsheets and reports write it: a currency sign before or after, thousands separated by commas,
# a percent sign ("$1,234.50", "1,234", "10.65%", "-€5", "5 €")
_WRITTEN_NUMBER = re.compile(
    r"(?P<sign>[+-]?)\s*(?P<before>[$€£¥]?)\s*(?P<sign2>[+-]?)(?P<digits>[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?|\d+\.?\d*|\.\d+)"
    r"(?P<exponent>[eE][+-]?\d+)?\s*(?P<after>[$€£¥]?)\s*(?P<percent>%?)")
# an ISO 8601 date, with a time and a zone or not ("2024-01-05", "2024-01-05T13:45:00Z", "2024-01-05 13:45")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
DATE_PARTS = ("month", "weekday", "hour")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class RawInputError(ValueError):
    """Raw rows the fitted preprocessing cannot read (a column missing, a number that is not one)."""


# ----- one spelling per value ------------------------------------------------------------------------
def canonical_float(value: float) -> str:
    """``1.0`` -> ``"1"``, ``0.5`` -> ``"0.5"``: integral numbers without a fraction, others as Python's shortest repr."""
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def canonical_value(value: Any, missing: frozenset = frozenset(MISSING_TOKENS)) -> Optional[str]:
    """The one spelling of a category or class label; None for a missing value.

    ``1``, ``1.0``, ``" 1"`` and ``"1.0"`` are all ``"1"``; ``True``, ``"true"`` and ``"TRUE"`` are ``"True"``;
    other strings lose surrounding white space and are in Unicode's composed form (NFC)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else canonical_float(float(value))
    text = _nfc(str(value).strip())  # one spelling of 'Zürich' whichever Unicode form the file wrote it in
    if text in missing:
        return None
    if text.lower() in ("true", "false"):
        return text.capitalize()
    if _INTEGER.fullmatch(text):
        return str(int(text))
    if _NUMBER.fullmatch(text):
        return canonical_float(float(text))
    return text


def canonical_values(column: pd.Series, missing: frozenset = frozenset(MISSING_TOKENS)) -> np.ndarray:
    """:func:`canonical_value` of every cell (an object array, None where missing); each distinct raw value is
    converted once, so this costs little more than one ``pd.factorize``."""
    codes, spelled = _spelled_codes(column, missing)
    return spelled[codes]  # code -1 (missing) picks the None appended last


def _spelled_codes(column: pd.Series, missing: frozenset) -> tuple[np.ndarray, np.ndarray]:
    """(a code per cell, the spelling of each code): :func:`canonical_value` of each distinct value, and None last,
    which code -1 (missing) picks."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return codes, np.array([canonical_value(u, missing) for u in uniques] + [None], dtype=object)


def written_number(text: str) -> float:
    """The value of a number written with a currency sign, thousands separators or a percent sign
    (``"$1,234.50"`` -> 1234.5, ``"10.65%"`` -> 0.1065: a percentage is its fraction, so that ``"5%"`` and
    ``"0.05"`` in one column agree); NaN for anything else, plain numbers included (pandas reads those)."""
    match = _WRITTEN_NUMBER.fullmatch(text)
    if match is None or (match["sign"] and match["sign2"]) or (match["before"] and match["after"]) or \
            (match["percent"] and (match["before"] or match["after"])):
        return math.nan
    if not (match["before"] or match["after"] or match["percent"] or "," in match["digits"]):
        return math.nan
    value = float(match["digits"].replace(",", "") + (match["exponent"] or ""))
    if "-" in (match["sign"], match["sign2"]):
        value = -value
    return value / 100 if match["percent"] else value


def date_number(text: str, local: bool = False) -> float:
    """An ISO 8601 date as days since 1970-01-01 (a time of day as the fraction; a zone converted to UTC, none
    read as UTC): ``"2024-01-05"`` -> 19727.0. NaN for anything else; other spellings (``01/05/2024``) are
    ambiguous between countries and are not read. ``local``: the time as written, its zone's offset not applied
    (what a date's weekday and hour are taken from)."""
    if not _ISO_DATE.fullmatch(text):
        return math.nan
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:  # 2024-13-45
        return math.nan
    if local:
        moment = moment.replace(tzinfo=None)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return (moment - _EPOCH).total_seconds() / 86400.0


def text_number(text: str) -> float:
    """What a cell that pandas does not read as a number means as one: :func:`written_number`, else
    :func:`date_number`; NaN for anything else."""
    value = written_number(text)
    return date_number(text) if math.isnan(value) else value


def cell_number(text: str, decimal: str = ".") -> float:
    """One text cell as :func:`to_numbers` reads it (NaN: not a number), without pandas' per-call cost."""
    text = written = text.strip()
    if decimal == ",":
        written = text.translate(_SWAP_MARKS)
    value = float(written) if _NUMBER.fullmatch(written) else text_number(written)
    return date_number(text) if decimal == "," and math.isnan(value) else value


_VECTORISED_FROM = 64  # distinct texts from which :func:`to_numbers` reads written numbers and dates in bulk
# the same patterns for RE2 (pyarrow.compute): "$" ends the text there. RE2's \d and \s are ASCII only, so it matches
# a subset of what Python's re matches (the rest is read one by one), with the same groups (leftmost-first)
_WRITTEN_NUMBER_RE2 = r"^(?:" + _WRITTEN_NUMBER.pattern + r")$"
# dates that datetime.fromisoformat and pandas read alike (a zone as Z or +hh:mm, at most microseconds)
_ZONE = r"(?:Z|[+-]\d{2}:\d{2})"
_ZONE_RE2 = _ZONE + "$"
_PLAIN_DATE_RE2 = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?" + _ZONE + "?)?$"


def _bulk_texts(texts: np.ndarray):
    """``texts`` as an Arrow string array, or None where pyarrow is not installed (then all is read one by one)."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pandas' parquet support brings it
        return None
    try:
        return pa.array(texts, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a cell that is not a str
        return pa.array([str(text) for text in texts], type=pa.string())


def _written_numbers(texts: np.ndarray) -> np.ndarray:
    """:func:`written_number` of many stripped texts at once, the same values (the same pattern and rules, the
    digits converted as ``float`` converts them); NaN for the others, which :func:`cell_number` reads one by one."""
    values = np.full(len(texts), np.nan)
    array = _bulk_texts(texts)
    if array is None:
        return values
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.extract_regex(array, _WRITTEN_NUMBER_RE2)
    matched = np.flatnonzero(found.is_valid().to_numpy(zero_copy_only=False))
    if not len(matched):
        return values
    found = found.take(matched)
    has = {name: pc.not_equal(found.field(name), "").to_numpy(zero_copy_only=False)
           for name in ("sign", "before", "sign2", "exponent", "after", "percent")}
    minus = (pc.equal(found.field("sign"), "-").to_numpy(zero_copy_only=False)
             | pc.equal(found.field("sign2"), "-").to_numpy(zero_copy_only=False))
    digits = found.field("digits")
    valid = ~(has["sign"] & has["sign2"]) & ~(has["before"] & has["after"])
    valid &= ~(has["percent"] & (has["before"] | has["after"]))
    valid &= has["before"] | has["after"] | has["percent"] | pc.match_substring(digits, ",").to_numpy(
        zero_copy_only=False)
    if not valid.any():
        return values
    written = pc.binary_join_element_wise(pc.replace_substring(digits, ",", ""), found.field("exponent"), "")
    # Arrow reads decimal text as float() does (correctly rounded: fast_float)
    numbers = pc.cast(written.filter(pa.array(valid)), pa.float64()).to_numpy(zero_copy_only=False)
    numbers = np.where(minus[valid], -numbers, numbers)
    numbers = np.where(has["percent"][valid], numbers / 100, numbers)
    values[matched[valid]] = numbers
    return values


def _plain_dates(texts: np.ndarray, local: bool = False) -> np.ndarray:
    """:func:`date_number` (``local``: as written, the zone not applied) of many stripped texts at once, for the
    ISO spellings that pandas and ``datetime.fromisoformat`` read alike; NaN for the others, which
    :func:`date_number` reads one by one."""
    values = np.full(len(texts), np.nan)
    array = _bulk_texts(texts)
    if array is None:
        return values
    import pyarrow.compute as pc

    plain = np.flatnonzero(pc.match_substring_regex(array, _PLAIN_DATE_RE2).to_numpy(zero_copy_only=False))
    if len(plain):
        written = array.take(plain)
        days = _whole_days(written)
        if days is not None:
            values[plain] = days
            return values
        if local:
            written = pc.replace_substring_regex(written, _ZONE_RE2, "")
        moments = pd.to_datetime(pd.Series(written.to_numpy(zero_copy_only=False)), format="ISO8601", utc=True,
                                 errors="coerce").dt.tz_localize(None)
        known = moments.notna().to_numpy()
        micros = moments[known].to_numpy().astype("datetime64[us]").astype(np.int64)  # whole: <= 6 digits
        # divided as datetime's total_seconds() divides them, where a float64 holds them exactly
        values[plain[known]] = np.where(np.abs(micros) < 2**53, micros / 1e6 / 86400.0, np.nan)
    return values


_FIRST_DAY = int(np.datetime64("0001-01-01", "D").astype(np.int64))  # datetime's first; numpy's calendar has a year 0


def _whole_days(dates) -> Optional[np.ndarray]:
    """Days since 1970-01-01 of ISO dates without a time (an Arrow array of ``YYYY-MM-DD`` texts, as
    :data:`_PLAIN_DATE_RE2` matched them), read by numpy at once (~20x pandas' ISO8601 parser); None where one has a
    time, or is no day of the calendar (``2023-02-29``: numpy refuses the lot), for the general path. A whole day is
    ``float(days)`` exactly, as ``date_number`` gives it; year 0, which ``datetime`` has not, is NaN as there."""
    import pyarrow.compute as pc

    if not pc.all(pc.equal(pc.utf8_length(dates), 10)).as_py():
        return None
    try:
        days = dates.to_numpy(zero_copy_only=False).astype("datetime64[D]").astype(np.int64)
    except ValueError:
        return None
    return np.where(days >= _FIRST_DAY, days.astype(np.float64), np.nan)


def to_numbers(column: pd.Series, missing: frozenset = frozenset(MISSING_TOKENS),
               decimal: str = ".") -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with NaN where missing, boolean mask of the cells that hold something that is not a number).
    Numbers written with a currency sign, thousands separators or a percent sign, and ISO dates, are numbers
    (:func:`text_number`). ``decimal=","``: text is read with a decimal comma and ``.`` between thousands
    (``"3,14"`` is 3.14, ``"1.234,5 €"`` 1234.5, ``"1.500"`` 1500, and ``"3.14"`` is not a number)."""
    if pd.api.types.is_bool_dtype(column.dtype):
        values = column.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.zeros(len(values), dtype=bool)
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(column), dtype=bool)
    if pd.api.types.is_timedelta64_dtype(column.dtype):  # a duration: seconds, as a Parquet file's are read
        return column.dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(column), dtype=bool)
    text = column.astype("string").str.strip()
    # each distinct text parsed once: a column of category names has few, and parsing them is the slow part
    codes, uniques = pd.factorize(text.mask(text.isin(missing)), use_na_sentinel=True)
    written = np.asarray(uniques, dtype=object)
    if decimal == ",":  # "1.234,5" read as the English "1,234.5"; dates hold neither mark
        written = np.array([str(u).translate(_SWAP_MARKS) for u in written], dtype=object)
    parsed, rest = np.full(len(written), np.nan), np.arange(len(written))
    if len(written) >= _VECTORISED_FROM:  # e.g. a date per row: the common spellings all at once, dates first, so that
        # pandas' number parser does not try each (~1 us a text; no text is both: a date's '-' between digits is no
        # number's)
        parsed = _plain_dates(np.asarray(uniques, dtype=object))
        rest = np.flatnonzero(np.isnan(parsed))
    if len(rest):
        numbers = pd.to_numeric(pd.Series(written[rest], dtype=object), errors="coerce")
        parsed[rest] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    unread = rest[np.isnan(parsed[rest])]
    if len(unread) >= _VECTORISED_FROM:  # e.g. a price per row
        parsed[unread] = _written_numbers(written[unread])
        unread = unread[np.isnan(parsed[unread])]
    for position in unread:  # written numbers and dates, one distinct text at a time
        parsed[position] = cell_number(str(uniques[position]), decimal)
    parsed = np.append(parsed, np.nan)  # code -1: missing
    values = parsed[codes]
    bad = (codes >= 0) & np.isnan(values)
    return values, bad


def local_days(column: pd.Series, missing: frozenset = frozenset(MISSING_TOKENS)) -> np.ndarray:
    """The dates of a column as days since 1970-01-01 in the time as written (``date_number(local=True)``; a
    datetime column as its wall-clock time), NaN where a cell is missing or not a date."""
    text = column.astype("string").str.strip()
    codes, uniques = pd.factorize(text.mask(text.isin(missing)), use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    values = _plain_dates(uniques, local=True) if len(uniques) >= _VECTORISED_FROM else np.full(len(uniques), np.nan)
    for position in np.flatnonzero(np.isnan(values)):  # the other spellings, one distinct text at a time
        values[position] = date_number(str(uniques[position]), local=True)
    return np.append(values, np.nan)[codes]  # code -1 (missing) picks the NaN appended last


def date_part_labels(days: np.ndarray, part: str) -> np.ndarray:
    """The ``part`` (month ``"1"``..``"12"``, weekday ``"Mon"``..``"Sun"``, hour ``"0"``..``"23"``) of each date given
    as days since 1970-01-01 (:func:`local_days`); None where the date is missing."""
    labels = np.full(len(days), None, dtype=object)
    present = ~np.isnan(days)
    whole = np.floor(days[present]).astype(np.int64)
    if part == "weekday":  # 1970-01-01 was a Thursday
        labels[present] = np.asarray(WEEKDAYS, dtype=object)[(whole + 3) % 7]
    elif part == "month":
        months = whole.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12 + 1
        labels[present] = months.astype(str).astype(object)
    elif part == "hour":  # a hair over the fraction: 13:00 is 0.54166.. of a day, which times 24 may fall short of 13
        hours = np.clip(np.floor((days[present] - whole) * 24 + 1e-6), 0, 23).astype(np.int64)
        labels[present] = hours.astype(str).astype(object)
    else:
        raise ValueError(f"date part {part!r}; allowed: {', '.join(DATE_PARTS)}")
    return labels


def _normal_quantile(p: np.ndarray) -> np.ndarray:
    return torch.special.ndtri(torch.from_numpy(p)).numpy()


def _plain_value(value: Any) -> Any:
    """A cell as a JSON value: None for missing, numpy scalars as Python's, a date or time (an Excel cell, a
    Parquet timestamp) as its ISO text, which :func:`date_number` reads back."""
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, (datetime.date, datetime.time)):  # pd.Timestamp is a datetime.datetime
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


# ----- the fitted object -----------------------------------------------------------------------------
class TablePreprocessor:
    """Raw table columns -> model input tensor, with statistics of the training rows only.

    ``columns`` maps each raw input column, in order, to ``"numeric"`` or ``"categorical"``; ``date_parts``
    maps a numeric column of dates to the parts of its dates that are also categorical inputs, named
    ``<column>.<part>`` (e.g. ``listed.weekday``) after the raw categorical columns.
    Inspect it with ``print(preprocessor)`` or :meth:`to_dict`; the layout of the output tensor is
    ``[numeric columns | missing indicators | one-hot blocks or category codes]``.
    """

    transforms_in_bulk = True  # a row is a few numbers, each its own: many rows per transform (pyfunc_model)

    def __init__(self, columns: dict[str, str], numeric_transform: str = "standard",
                 categorical_encoding: str = "embedding", min_category_count: int = 1,
                 missing_tokens: Sequence[str] = MISSING_TOKENS, piecewise_bins: int = PIECEWISE_BINS,
                 decimal: str = ".", file_columns: Optional[Sequence[str]] = None,
                 date_parts: Optional[dict[str, Sequence[str]]] = None, file_target: Optional[str] = None):
        if numeric_transform not in NUMERIC_TRANSFORMS:
            raise ValueError(f"numeric_transform must be one of {', '.join(NUMERIC_TRANSFORMS)}, got {numeric_transform!r}")
        if categorical_encoding not in CATEGORICAL_ENCODINGS:
            raise ValueError(f"categorical_encoding must be one of {', '.join(CATEGORICAL_ENCODINGS)}, "
                             f"got {categorical_encoding!r}")
        self.columns = dict(columns)
        self.numeric_transform = numeric_transform
        self.categorical_encoding = categorical_encoding
        self.min_category_count = int(min_category_count)
        if piecewise_bins < 1:
            raise ValueError(f"piecewise_bins must be >= 1, got {piecewise_bins}")
        self.piecewise_bins = int(piecewise_bins)
        self.missing_tokens = [str(t) for t in missing_tokens]
        if decimal not in DECIMAL_MARKS:
            raise ValueError(f"decimal must be one of {' '.join(map(repr, DECIMAL_MARKS))}, got {decimal!r}")
        self.decimal = decimal  # how numbers written as text are read (to_numbers)
        # the training file's columns when it had no header row (data.columns): how pipeline-predict names the
        # columns of a new file without one
        self.file_columns = [str(c) for c in file_columns] if file_columns is not None else None
        self.file_target = file_target  # the one of them new rows to predict on may lack
        self.date_parts = {str(c): [str(p) for p in parts] for c, parts in (date_parts or {}).items() if parts}
        for column, parts in self.date_parts.items():
            if self.columns.get(column) != "numeric":
                raise ValueError(f"date_parts: {column!r} is not a numeric input column")
            unknown = [p for p in parts if p not in DATE_PARTS]
            if unknown:
                raise ValueError(f"date_parts of {column!r}: {unknown}; allowed: {', '.join(DATE_PARTS)}")
        # fitted state, per column
        self.numeric: dict[str, dict] = {}  # name -> {median, mean, std, missing_indicator, [quantiles]}
        self.categories: dict[str, list[str]] = {}  # name -> categories with codes 1..K (0: unseen/missing)
        self.unknown_seen: dict[str, bool] = {}  # set by fit (see there)
        self.example_rows: list[dict] = []  # a few raw training rows: the logged model's input example

    # ----- what the model sees ---------------------------------------------------------------------
    @property
    def numeric_columns(self) -> list[str]:
        return [c for c, kind in self.columns.items() if kind == "numeric"]

    @property
    def categorical_columns(self) -> list[str]:
        """The raw categorical columns, then the date parts (``listed.month``)."""
        raw = [c for c, kind in self.columns.items() if kind == "categorical"]
        return raw + [f"{c}.{p}" for c, parts in self.date_parts.items() for p in parts]

    def _categorical_values(self, frame: pd.DataFrame, name: str, missing: frozenset,
                            days: Optional[dict] = None) -> np.ndarray:
        """One spelling per cell of a categorical input (None: missing): a raw column's, or a date part's.
        ``days``: the dates already read, by column (a column's month and weekday read it once)."""
        if name in self.columns:
            return canonical_values(frame[name], missing)
        column, _, part = name.rpartition(".")
        if days is None:
            days = {}
        if column not in days:
            days[column] = local_days(frame[column], missing)
        return date_part_labels(days[column], part)  # not a date: refused as a number

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column, the unseen/missing bucket included."""
        return [len(self.categories[c]) + 1 for c in self.categorical_columns]

    @property
    def num_features(self) -> int:
        """Width of the output tensor."""
        indicators = sum(bool(s["missing_indicator"]) for s in self.numeric.values())
        categorical = sum(self.cardinalities) if self.categorical_encoding == "onehot" else len(self.categories)
        numeric = sum(len(s["edges"]) - 1 if "edges" in s else 1 for s in self.numeric.values())
        return numeric + indicators + categorical

    @property
    def embedded_cardinalities(self) -> list[int]:
        """What the model's embeddings must cover: the cardinalities when codes are passed on, else nothing."""
        return self.cardinalities if self.categorical_encoding == "embedding" else []

    @property
    def embedded_unknown_seen(self) -> list[bool]:
        """Per embedded categorical column, whether its code 0 (unseen, rare, missing) occurred in the fitted
        rows; empty without embeddings, and when every column's did (the model then needs no word of it)."""
        seen = [self.unknown_seen.get(c, True) for c in self.categorical_columns]
        return seen if self.categorical_encoding == "embedding" and not all(seen) else []

    def input_schema(self) -> list[tuple[str, str]]:
        """(raw column name, kind) of every input column, in training order."""
        return list(self.columns.items())

    def input_example(self) -> pd.DataFrame:
        return pd.DataFrame(self.example_rows, columns=list(self.columns))

    # ----- fitting -----------------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, target: Optional[np.ndarray] = None,
            classification: bool = True) -> "TablePreprocessor":
        """Learn medians, scales, quantiles and category lists from ``frame`` (the training rows).

        ``target`` (the training rows' class codes or values) is needed by ``numeric_transform="piecewise_tree"``
        only: its bin edges are the thresholds of a small decision tree fitted per column on that target."""
        if self.numeric_transform == "piecewise_tree" and (target is None or len(target) != len(frame)):
            raise ValueError("numeric_transform='piecewise_tree' needs the training rows' target to place its bins")
        frame = self._select(frame)
        missing = frozenset(self.missing_tokens)
        self.numeric, self.categories = {}, {}
        #: standardised columns whose scale a few far-out values set: name -> (the farthest value, std, the spread
        #: of the middle half); said by the data module, not saved
        self.far_out: dict[str, tuple[float, float, float]] = {}
        self.folded: dict[str, tuple[int, int, int]] = {}
        #: categorical columns -> whether a training row had code 0 (a missing or rare value): where none did, the
        #: model's embedding of code 0 is never trained (``embedded_unknown_seen``); known after fit only, not saved
        #: (the model spec carries it)
        self.unknown_seen = {}
        for name in self.numeric_columns:
            values, _ = to_numbers(frame[name], missing, self.decimal)
            present = values[~np.isnan(values)]
            median = float(np.median(present)) if len(present) else 0.0
            filled = np.where(np.isnan(values), median, values)
            stats = {"median": median, "mean": float(filled.mean()) if len(filled) else 0.0,
                     "std": float(filled.std()) if len(filled) else 1.0,
                     "missing_indicator": bool(len(present) < len(values))}
            if not stats["std"] > 0:
                stats["std"] = 1.0
            found = far_out(present, stats["std"], median) if self.numeric_transform == "standard" else None
            if found is not None:
                self.far_out[name] = found
            if self.numeric_transform == "quantile" and len(filled):
                count = min(QUANTILES, len(filled))
                stats["quantiles"] = np.quantile(filled, np.linspace(0, 1, count)).tolist()
            if self.numeric_transform == "piecewise":
                edges = np.unique(np.quantile(filled, np.linspace(0, 1, self.piecewise_bins + 1))) if len(filled) else []
            elif self.numeric_transform == "piecewise_tree":
                edges = self._tree_edges(filled, np.asarray(target), classification) if len(filled) else []
            if self.numeric_transform in ("piecewise", "piecewise_tree"):
                stats["edges"] = [float(e) for e in edges] if len(edges) > 1 else [stats["median"] - 1.0, stats["median"] + 1.0]
            self.numeric[name] = stats
        for name in self.categorical_columns:
            spelled = pd.Series(self._categorical_values(frame, name, missing), dtype=object).dropna()
            counts = spelled.value_counts()
            kept = counts[counts >= self.min_category_count]
            rare = counts[counts < self.min_category_count]
            if len(rare):  # (values, rows) that share the unseen/missing code, of the rows with a value
                self.folded[name] = (len(rare), int(rare.sum()), int(counts.sum()))
            self.unknown_seen[name] = bool(len(rare)) or len(spelled) < len(frame)
            # most frequent first, then by name: the order does not depend on the row order
            self.categories[name] = sorted(kept.index.tolist(), key=lambda c: (-int(kept[c]), c))
        # rows without a missing value where there are such: a NaN in the example is a bare NaN in the model's
        # serving_input_example.json, which strict JSON parsers (JavaScript's, jq) refuse
        complete = frame.dropna()
        sample = (complete if len(complete) >= min(4, len(frame)) else frame).head(4).astype(object)
        self.example_rows = [{k: _plain_value(v) for k, v in row.items()} for row in sample.to_dict(orient="records")]
        return self

    # ----- transforming ------------------------------------------------------------------------------
    def _select(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise RawInputError(f"expected a pandas DataFrame of raw rows, got {type(frame).__name__}")
        stripped = {str(c).strip(): c for c in frame.columns}
        absent = [c for c in self.columns if c not in stripped]
        if absent:
            raise RawInputError(
                f"the input has no column {', '.join(repr(c) for c in absent)} (the model reads "
                f"{', '.join(self.columns)}); add {'it' if len(absent) == 1 else 'them'}: empty cells count as missing")
        return frame[[stripped[c] for c in self.columns]].set_axis(list(self.columns), axis=1)

    def transform_numpy(self, frame: pd.DataFrame) -> np.ndarray:
        frame = self._select(frame)
        missing = frozenset(self.missing_tokens)
        rows = len(frame)
        blocks: list[np.ndarray] = []
        indicators: list[np.ndarray] = []
        for name, stats in self.numeric.items():
            values, bad = to_numbers(frame[name], missing, self.decimal)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                cell = frame[name].iloc[first]
                comma = self.decimal == "." and np.isfinite(cell_number(str(cell).strip(), ","))
                raise RawInputError(f"column {name!r} holds {_plain_value(cell)!r} at index {_plain_value(frame.index[first])!r}, not a number"
                                    + (" (numbers are read with a decimal comma, as in training: 3,14 and 1.234,5)"
                                       if self.decimal == "," else "")
                                    + (" (written with a decimal comma; the model reads numbers as its training file "
                                       "wrote them, with a decimal point: save the file so)" if comma else "")
                                    + (" (a date is read as ISO 8601, 2024-01-05 or 2024-01-05T10:30; a day/month "
                                       "order cannot be told from month/day: write the dates so)"
                                       if re.fullmatch(r"\d{1,4}[/.]\d{1,2}[/.]\d{1,4}", str(cell).strip()) else ""))
            too_large = np.abs(values) > FLOAT32_MAX
            if too_large.any():
                first = int(np.flatnonzero(too_large)[0])
                raise RawInputError(f"column {name!r} holds {float(values[first])!r} at index "
                                    f"{_plain_value(frame.index[first])!r}, more than float32 can hold")
            absent = np.isnan(values)
            filled = np.where(absent, stats["median"], values)
            if self.numeric_transform == "standard":
                filled = (filled - stats["mean"]) / stats["std"]
            elif self.numeric_transform == "quantile" and "quantiles" in stats:
                filled = self._quantile(filled, np.asarray(stats["quantiles"]))
            if "edges" in stats:
                blocks.extend(self._piecewise(filled, np.asarray(stats["edges"])).T)
            else:
                blocks.append(filled)
            if stats["missing_indicator"]:
                indicators.append(absent.astype(np.float64))
        codes = []
        days: dict[str, np.ndarray] = {}
        for name, categories in self.categories.items():
            index = {_nfc(c): i + 1 for i, c in enumerate(categories)}  # a model fitted before NFC spellings too
            spelled = self._categorical_values(frame, name, missing, days)
            found, uniques = pd.factorize(pd.Series(spelled, dtype=object), use_na_sentinel=True)
            code_of_unique = np.array([index.get(u, 0) for u in uniques] + [0], dtype=np.int64)
            codes.append(code_of_unique[found])
        out = np.empty((rows, self.num_features), dtype=np.float32)
        position = 0
        for block in [*blocks, *indicators]:
            out[:, position] = block
            position += 1
        for name, code in zip(self.categories, codes):
            if self.categorical_encoding == "onehot":
                width = len(self.categories[name]) + 1
                out[:, position:position + width] = 0.0
                out[np.arange(rows), position + code] = 1.0
                position += width
            else:
                out[:, position] = code
                position += 1
        return out

    def transform(self, frame: pd.DataFrame) -> torch.Tensor:
        """The model input tensor (float32, one row per row of ``frame``)."""
        return torch.from_numpy(self.transform_numpy(frame))

    def _tree_edges(self, values: np.ndarray, target: np.ndarray, classification: bool) -> np.ndarray:
        """The column's range cut at the thresholds of a decision tree with at most ``piecewise_bins`` leaves
        fitted on this one column (each leaf holds at least 0.5 % of the rows). scikit-learn is needed to fit
        only: the fitted edges are plain numbers, and a loaded model reads them without it."""
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        tree_class = DecisionTreeClassifier if classification else DecisionTreeRegressor
        tree = tree_class(max_leaf_nodes=max(2, self.piecewise_bins), min_samples_leaf=max(1, len(values) // 200),
                          random_state=0).fit(values.reshape(-1, 1), target.reshape(len(values), -1).squeeze(1))
        inner = tree.tree_.children_left != tree.tree_.children_right
        thresholds = tree.tree_.threshold[inner]
        return np.unique(np.concatenate([[values.min(), values.max()], thresholds]))

    @staticmethod
    def _piecewise(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """One column per bin: 0 below the bin, 1 above it, the position inside it in between (the first and
        last bins extend linearly beyond the training range)."""
        low, high = edges[:-1], edges[1:]
        encoded = (values[:, None] - low[None, :]) / (high - low)[None, :]
        encoded[:, 1:] = np.maximum(encoded[:, 1:], 0.0)
        encoded[:, :-1] = np.minimum(encoded[:, :-1], 1.0)
        return encoded

    @staticmethod
    def _quantile(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
        references = np.linspace(0, 1, len(quantiles))
        # the mean of a forward and a backward interpolation, as scikit-learn does: repeated quantiles
        # (a column with few distinct values) then map to the middle of their range, not its end
        p = 0.5 * (np.interp(values, quantiles, references) - np.interp(-values, -quantiles[::-1], -references[::-1]))
        return _normal_quantile(np.clip(p, 1e-7, 1 - 1e-7))

    # ----- plain-JSON state --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "module": type(self).__module__, "class": type(self).__name__,
                "columns": self.columns,
                "numeric_transform": self.numeric_transform, "categorical_encoding": self.categorical_encoding,
                "min_category_count": self.min_category_count, "missing_tokens": self.missing_tokens,
                "piecewise_bins": self.piecewise_bins, "decimal": self.decimal, "file_columns": self.file_columns,
                "file_target": self.file_target, "date_parts": self.date_parts,
                "numeric": self.numeric, "categories": self.categories, "example_rows": self.example_rows}

    @classmethod
    def from_dict(cls, state: dict) -> "TablePreprocessor":
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"preprocessing state of format {state.get('format_version')!r}; this code reads "
                             f"format {FORMAT_VERSION}")
        made = cls(state["columns"], state["numeric_transform"], state["categorical_encoding"],
                   state["min_category_count"], state["missing_tokens"], state.get("piecewise_bins", PIECEWISE_BINS),
                   state.get("decimal", "."), state.get("file_columns"), state.get("date_parts"),
                   state.get("file_target"))
        made.numeric = {k: dict(v) for k, v in state["numeric"].items()}
        made.categories = {k: list(v) for k, v in state["categories"].items()}
        made.example_rows = list(state.get("example_rows", []))
        return made

    def __repr__(self) -> str:
        numeric = ", ".join(f"{c}{' (+missing)' if self.numeric[c]['missing_indicator'] else ''}" for c in self.numeric)
        categorical = ", ".join(f"{c} ({len(v) + 1})" for c, v in self.categories.items())
        return (f"TablePreprocessor(numeric [{self.numeric_transform}]: {numeric or '-'}; categorical "
                f"[{self.categorical_encoding}, codes incl. unseen/missing]: {categorical or '-'}; "
                f"{self.num_features} model inputs)")


def far_out(values: np.ndarray, std: float, median: float) -> Optional[tuple[float, float, float]]:
    """(the value farthest from ``median``, ``std``, the spread of the middle half) when a few far-out values set
    the standard deviation of ``values``: ``std`` is over FAR_OUT_RATIO times their interquartile range (a unit or
    a typo: standardised, every other value is ~0); None otherwise, or for no values."""
    if not len(values):
        return None
    low, high = np.quantile(values, [0.25, 0.75])
    if high > low and std > FAR_OUT_RATIO * (high - low):
        return float(values[np.argmax(np.abs(values - median))]), std, float(high - low)
    return None


# ----- new rows against the training rows --------------------------------------------------------------
FAR_STDS = 10.0  # a number this many training standard deviations from the training mean is far out


class InputDrift:
    """Counts, over batches of raw rows read by a fitted :class:`TablePreprocessor`, the cells no training row
    prepared the model for: categories the training rows did not have (a renamed or respelled category), numbers far
    outside the training rows' (``FAR_STDS`` standard deviations from their mean: another unit, a decimal comma read
    as a thousands separator, a typo) and missing cells. ``messages`` says, one line per column, where such cells are
    most of those given: the model answers them all the same (the unseen category, the median) or from far outside
    what it was fitted on, which no metric or prediction shows."""

    def __init__(self, preprocessor: Optional["TablePreprocessor"]):
        columns = getattr(preprocessor, "columns", {})
        self.decimal = getattr(preprocessor, "decimal", ".")
        self.missing = frozenset(getattr(preprocessor, "missing_tokens", ()))
        # raw columns only (not date parts); the keys as canonical_values spells them
        self.categories = {name: {_nfc(c) for c in values}
                           for name, values in getattr(preprocessor, "categories", {}).items() if name in columns}
        self.numeric = {name: (float(stats["mean"]), float(stats["std"]), float(stats["median"]))
                        for name, stats in getattr(preprocessor, "numeric", {}).items()}
        self.rows = 0
        self.absent = dict.fromkeys([*self.numeric, *self.categories], 0)  # missing cells per column
        self.unseen = {name: [0, 0, None] for name in self.categories}  # given, unseen, an unseen value
        self.far = {name: [0, 0, None] for name in self.numeric}  # given, far out, (a far cell as written, its value)

    def count(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        stripped = {str(c).strip(): c for c in frame.columns}
        for name, known in self.categories.items():
            if name not in stripped:
                continue
            # each distinct value judged once (canonical_values' spellings), the cells counted by their codes
            codes, spelled = _spelled_codes(frame[stripped[name]], self.missing)
            absent = np.array([value is None for value in spelled])[codes]
            new = np.array([value is not None and value not in known for value in spelled])[codes]
            self.absent[name] += int(absent.sum())
            counts = self.unseen[name]
            counts[0] += len(codes) - int(absent.sum())
            counts[1] += int(new.sum())
            if counts[2] is None and new.any():
                counts[2] = spelled[codes[int(np.argmax(new))]]
        for name, (mean, std, _) in self.numeric.items():
            if name not in stripped:
                continue
            column = frame[stripped[name]]
            values, _ = to_numbers(column, self.missing, self.decimal)
            present = ~np.isnan(values)
            self.absent[name] += int((~present).sum())
            far = present & (np.abs(values - mean) > FAR_STDS * std)
            counts = self.far[name]
            counts[0] += int(present.sum())
            counts[1] += int(far.sum())
            if counts[2] is None and far.any():
                first = int(np.flatnonzero(far)[0])
                counts[2] = (_plain_value(column.iloc[first]), float(values[first]))

    def messages(self) -> list[str]:
        lines = []
        for name, (given, new, example) in self.unseen.items():
            if new and new > given / 2:
                lines.append(f"column {name!r}: {new} of its {given} values are categories the model's training rows "
                             f"did not have (e.g. {example!r}); it reads them as one unseen category")
        for name, (given, far, example) in self.far.items():
            if far and far > given / 2:
                mean, std, _ = self.numeric[name]
                written, value = example
                as_written = f", written {written!r}" if isinstance(written, str) and written.strip() != repr(value) \
                    and written.strip() != f"{value:g}" else ""
                lines.append(f"column {name!r}: {far} of its {given} values lie more than {FAR_STDS:g} standard "
                             f"deviations from the training rows' mean, {mean:.6g} (standard deviation {std:.3g}; e.g. "
                             f"{value:.6g}{as_written}): another unit, another decimal mark or a typo? The model was "
                             "fitted on nothing like them")
        for name, count in self.absent.items():
            if count and count > self.rows / 2:
                instead = (f"the training rows' median, {self.numeric[name][2]:.6g}" if name in self.numeric
                           else "one unseen/missing category")
                lines.append(f"column {name!r}: {count} of its {self.rows} cells are missing; the model reads them as "
                             f"{instead}")
        return lines


def _nfc(text: Any) -> Any:
    """``text`` in Unicode's composed form (NFC): 'Zürich' typed on one machine, exported in decomposed form (NFD, as
    macOS writes file names) on another, is one spelling."""
    if isinstance(text, str) and not text.isascii():
        import unicodedata

        return unicodedata.normalize("NFC", text)
    return text

