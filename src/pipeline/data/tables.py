"""Reading tables as they come: CSV, TSV, Parquet, Feather, JSON lines and Excel workbooks (``.xlsx``, one sheet),
through pandas/pyarrow/openpyxl; the text formats also compressed (``.gz``, ``.bz2``, ``.xz``, ``.zip`` of one
file, ``.zst``), as downloads often are.

:func:`read_table` reads a whole file (training), :func:`iter_table` streams one in batches (prediction).
Both answer a problem with one :class:`DataError` line that names the file (and the line, where there is
one). :func:`column_kinds` decides, per column, numeric / categorical / left out, and
:func:`class_labels` / :func:`regression_targets` read the target.
"""
from __future__ import annotations

import csv
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from pipeline.errors import DataError  # not from .base: that imports Lightning (~1 s), which pipeline-predict needs not
from .preprocessing import (DECIMAL_MARKS, FLOAT32_MAX, MISSING_TOKENS, canonical_values, cell_number, date_number,
                            to_numbers)

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".feather": "feather", ".arrow": "feather", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".xlsx": "excel", ".xlsm": "excel"}
FORMAT_NAMES = ("csv", "tsv", "parquet", "feather", "jsonl", "excel")
# a text table compressed as a whole, by its last extension (``adult.data.gz``, ``train.csv.zip``); pandas reads
# these itself, the checks here read them through :func:`_open_bytes`
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd"}
# spreadsheets of other programs, refused by name: pandas reads them only with engines not installed here
SPREADSHEETS = (".xls", ".ods")
TEXT_FORMATS = ("csv", "tsv", "jsonl")
DEFAULT_SEPARATORS = {"csv": ",", "tsv": "\t"}
# tried, in order, when a CSV/TSV file's header is one column with its format's separator (a ';' export)
SEPARATORS = (";", "\t", "|", ",")
SNIFFED_ROWS = 50  # the rows after the header that must split into as many cells as the header
TITLE_LINES = 10  # a title over a table (data.skip_rows) is suggested for a first wide row up to this line
# a column whose values are numbers but for a few cells: those cells are typos or unlisted missing-value codes
TYPO_SHARE = 0.05
# a string column with at least this share of distinct values (and more than IDENTIFIER_MIN values) is an
# identifier or free text: a category per row teaches a model nothing
IDENTIFIER_SHARE = 0.5
IDENTIFIER_MIN = 10
# a column named like an identifier: "id", "user_id", "row id", "PassengerId", "customerID" (not "paid", "VALID")
_IDENTIFIER_NAME = re.compile(
    r"(?:^|[_\s.\-])[iI][dD]$|[a-z](?:Id|ID)$|^(?:id|ID|Id)$"
    # names of record numbers (a different integer per row named so is one: a row number out of order, which leaks
    # the label of a file sorted by it): No, Nr, record, serial, RowNumber, CaseNo, patient_number, ...
    r"|^(?i:index|idx|no|nr|num|number|row|rownum|row_?number|record|record_?(?:no|nr|number)|serial|s\.?no|key|uid"
    r"|uuid|sample|case|subject|patient|obs|observation|accession|entry)$"
    r"|(?i:[_\s.\-](?:no|nr|num|number|idx|index|key))$|[a-z](?:No|Nr|Num|Number|Idx|Index|Key)$")
# a column without a name in the header: the index pandas writes first (to_csv's default index=True), named
# "Unnamed: 0" by pandas ("Unnamed: 0_level_0" under a header of two rows, "Unnamed: 0.1" beside a column named so
# already), "__index_level_0__" by pyarrow, or left empty by a reader that keeps the header as written
_UNNAMED = re.compile(r"Unnamed: \d+(?:_level_\d+)?(?:\.\d+)*|__index_level_\d+__|")


def unnamed_column(name: object) -> bool:
    """Whether a column's header cell was empty (a row index written by pandas, not a measurement)."""
    return bool(_UNNAMED.fullmatch(str(name).strip()))


# a header cell that is a number: the first row of a file without a header row (header_hint)
_INTEGER_OR_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")


@dataclass
class Table:
    """A table as read: ``frame`` keeps the row numbers of the file as its index (for messages)."""

    frame: pd.DataFrame
    path: Path
    format: str
    header_lines: int = 1  # 0: a CSV/TSV file without a header row, its columns named by data.columns
    sheet: str = ""  # an Excel workbook: the sheet read, and all its sheets
    sheets: tuple = ()
    skipped: int = 0  # lines (rows of a sheet) above the header left out: data.skip_rows
    # the target's cells read as missing, by their spelling ('' for empty): {'NA': 291}
    target_missing: dict = field(default_factory=dict)
    # the other columns' cells read as missing that are written as a word: {'region': {'NA': 400}}
    missing_words: dict = field(default_factory=dict)

    def sheet_hint(self) -> str:
        """For a workbook of several sheets: which one was read and how to choose another (for an error about a
        missing column)."""
        if len(self.sheets) < 2:
            return ""
        others = ", ".join(repr(s) for s in self.sheets if s != self.sheet)
        return f" (read its sheet {self.sheet!r}; it also has {others}: choose one with data.sheet=<name>)"

    def where(self, index) -> str:
        """``path:line`` of a row (text formats; the header is line 1), or ``path: row N``."""
        if self.format in ("csv", "tsv"):
            return f"{self.path}:{int(index) + 1 + self.header_lines + self.skipped}"
        if self.format == "jsonl":
            return f"{self.path}:{int(index) + 1}"
        if self.format == "excel":  # the row number the spreadsheet shows, its header being row 1
            return f"{self.path}: row {int(index) + 2 + self.skipped}"
        return f"{self.path}: row {int(index) + 1}"


def table_format(path: Path, format: Optional[str] = None, flags: bool = False) -> str:
    """The format named by ``format`` or, failing that, by the extension (the one before a compression's:
    ``train.csv.gz`` is CSV); anything else is read as CSV (e.g. UCI's ``adult.data``). ``flags``: ``format`` is
    pipeline-predict's --format, not data.format."""
    if format:
        name = str(format).lower().lstrip(".")
        name = {"parq": "parquet", "pq": "parquet", "arrow": "feather", "ndjson": "jsonl", "json": "jsonl",
                "tab": "tsv", "xlsx": "excel", "xlsm": "excel"}.get(name, name)
        if name not in FORMAT_NAMES:
            given = f"--format {format}" if flags else f"data.format={format!r}"
            raise DataError(f"{given} is not a table format; choose one of {', '.join(FORMAT_NAMES)}")
    else:
        suffix = table_suffix(path)
        if suffix in SPREADSHEETS:
            raise DataError(f"{path}: a {suffix} spreadsheet is not read; save the sheet as .xlsx or CSV and give that "
                            "file")
        name = FORMATS.get(suffix, "csv")
    if compression(path) and name not in TEXT_FORMATS:
        raise DataError(f"{path}: a compressed {name.capitalize()} file is not read; {name.capitalize()} compresses "
                        "its own columns: decompress the file, or write it with its own compression")
    return name


def compression(path: Path) -> Optional[str]:
    """How a text table is compressed, by its last extension (None: not compressed)."""
    return COMPRESSIONS.get(Path(path).suffix.lower())


def table_suffix(path: Path) -> str:
    """The extension that names the table's format: the one before ``.gz`` and the like."""
    path = Path(path)
    return Path(path.stem).suffix.lower() if compression(path) else path.suffix.lower()


def _open_bytes(path: Path):
    """The file's bytes, decompressed where its extension says so; a file that does not decompress (or a
    ``.zip`` that does not hold exactly one file) is a :class:`DataError` naming it."""
    kind = compression(path)
    if kind is None:
        return path.open("rb")
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise DataError(f"{path}: reading .zst files needs the zstandard package (pip install zstandard), "
                            "or decompress the file first") from None
        return zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True)
    if kind == "zip":
        import zipfile

        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(f"{path}: not a readable zip file ({_first_line(error)})") from None
        # without folders and what macOS's Finder adds to every zip it makes (__MACOSX/, ._<name> resource forks)
        members = [m for m in archive.namelist() if not m.endswith("/") and not m.startswith("__MACOSX/")
                   and not m.rsplit("/", 1)[-1].startswith("._")]
        if len(members) != 1:
            archive.close()
            raise DataError(f"{path}: a zip file must hold exactly one table, this one holds {len(members)} files"
                            f"{': ' + ', '.join(members[:5]) if members else ''}; unzip it and give "
                            "the table's file")
        return archive.open(members[0])
    return stream_opener(kind)(path, "rb")


def _source(path: Path):
    """What pandas reads: the path, or a zip's one table opened here (pandas refuses a zip of several files, and
    every zip macOS's Finder makes holds a __MACOSX/ entry beside the table)."""
    return _open_bytes(path) if compression(path) == "zip" else path


def stream_opener(kind: Optional[str]):
    """``open`` of a stream compression (``gzip.open``, ``bz2.open``, ``lzma.open``); None for another kind."""
    if kind == "gzip":
        import gzip

        return gzip.open
    if kind == "bz2":
        import bz2

        return bz2.open
    if kind == "xz":
        import lzma

        return lzma.open
    return None


def _open_text(path: Path, encoding: str):
    """The file as text (decompressed where its extension says so), newlines left to the csv module."""
    import io

    return io.TextIOWrapper(_open_bytes(path), encoding=encoding, newline="")


def _read_head(path: Path, size: Optional[int]) -> bytes:
    """The first ``size`` bytes of the file's (decompressed) content, all of it for None."""
    try:
        with _open_bytes(path) as handle:
            return handle.read(size) if size is not None else handle.read()
    except DataError:
        raise
    except Exception as error:  # gzip.BadGzipFile, EOFError (truncated), lzma.LZMAError, zlib.error, OSError
        raise DataError(f"{path}: cannot be decompressed as {compression(path)} ({_first_line(error)})") from None


# ----- reading ---------------------------------------------------------------------------------------
def read_table(path: Path, format: Optional[str] = None, sep: Optional[str] = None,
               na_values: Sequence[str] = (), encoding: Optional[str] = None, decimal: str = ".",
               names: Optional[Sequence[str]] = None, sheet: Optional[str] = None, skip_rows: int = 0,
               target: Optional[str] = None, target_keep: Sequence[str] = ()) -> Table:
    """The whole file as a DataFrame: column names and string cells stripped of white space, missing-value
    codes (pandas' defaults, ``?`` and ``na_values``) read as missing, blank lines dropped. ``decimal``: the
    decimal mark of the numbers in a CSV/TSV file (``","``: ``3,14``); ``names``: the columns of a CSV/TSV
    file without a header row, in order (a first row equal to them is read as the header); ``sheet``: the sheet
    of an Excel workbook, by name or position (None: the first); ``skip_rows``: lines of a CSV/TSV file (rows of
    a sheet) above the header to leave out, e.g. a report's title. ``target``: the column whose cells read as
    missing are counted by spelling (``Table.target_missing``), but for ``target_keep``, missing-value spellings
    that are labels there (a class ``NA``)."""
    path = Path(path)
    _check_decimal(decimal)
    _check_sep(sep)
    fmt = table_format(path, format)
    _check_names(path, fmt, names)
    _check_sheet(path, fmt, sheet)
    _check_skip(path, fmt, skip_rows)
    _check_file(path, fmt)
    missing = [*MISSING_TOKENS, *map(str, na_values)]
    header_lines, sheet_read, sheet_names = 1, "", ()
    if fmt in ("csv", "tsv"):
        frame, header_lines = _read_delimited(path, fmt, sep, missing, encoding, decimal, names, skip_rows, target)
    elif fmt == "jsonl":
        frame = _read_json_lines(path, encoding)
    elif fmt == "excel":
        frame, sheet_read, sheet_names = _read_excel(path, sheet, skip_rows)
    else:
        frame = _read_arrow(path, fmt)
    spelled, words = {}, {}
    frame = _tidy(frame, missing, target=target, target_keep=target_keep, spelled=spelled, words=words)
    if frame.shape[1] == 0:
        raise DataError(f"{path}: the file is empty (expected a header row and data rows)")
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows after the header")
    return Table(frame, path, fmt, header_lines, sheet_read, tuple(sheet_names), skip_rows, spelled, words)


def _check_skip(path: Path, fmt: str, skip_rows, flags: bool = False) -> None:
    """``flags``: named as pipeline-predict's --skip-rows, not data.skip_rows."""
    key = "--skip-rows" if flags else "data.skip_rows"
    if isinstance(skip_rows, bool) or not isinstance(skip_rows, int) or skip_rows < 0:
        given = f"--skip-rows {skip_rows}" if flags else f"data.skip_rows={skip_rows!r}"
        raise DataError(f"{given}: the number of lines above the header to leave out, 0 or more")
    if skip_rows and fmt not in ("csv", "tsv", "excel"):
        raise DataError(f"{key} leaves out lines above the header of a CSV/TSV file or a sheet; {path} is "
                        f"{fmt.capitalize()}: leave {key} out")


# a first line (sheet row) with one name above wider rows: a report's title above its table
_TITLE_HINT = " (a title over the table? leave out the {skip} line(s) above its header with {key}={skip})"


def _check_sheet(path: Path, fmt: str, sheet, flags: bool = False) -> None:
    """``flags``: named as pipeline-predict's --sheet, not data.sheet."""
    if sheet is not None and fmt != "excel":
        key = "--sheet" if flags else "data.sheet"
        raise DataError(f"{key} chooses a sheet of an Excel workbook (.xlsx); {path} is {fmt.upper()}: leave "
                        f"{key} out")


def _read_excel(path: Path, sheet, skip_rows: int = 0, key: str = "data.skip_rows") -> tuple[pd.DataFrame, str, list[str]]:
    """One sheet of a workbook (the first when ``sheet`` is None, with a notice naming the others), its name and
    the names of all; cells that hold a formula are read as the value Excel saved with it."""
    try:
        import openpyxl
    except ImportError:
        raise DataError(f"{path}: reading .xlsx files needs the openpyxl package (pip install openpyxl), or save the "
                        "sheet as CSV") from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # zipfile.BadZipFile, KeyError, InvalidFileException: not a workbook
        raise DataError(f"{path}: not a readable Excel workbook ({_first_line(error)})") from None
    try:
        names = book.sheetnames
        if sheet is None:
            chosen = names[0]
            if len(names) > 1:
                log.warning("%s: read its first sheet, %r, of %d (%s); choose another with data.sheet=<name> "
                            "(pipeline-predict: --sheet <name>)", path, chosen, len(names), ", ".join(map(repr, names)))
        elif str(sheet) in names:
            chosen = str(sheet)
        elif isinstance(sheet, int) and 0 <= sheet < len(names):
            chosen = names[sheet]
        else:
            raise DataError(f"data.sheet={sheet!r}: {path} has no such sheet; its sheets are "
                            f"{', '.join(map(repr, names))} (or their positions 0..{len(names) - 1})")
        rows = book[chosen].iter_rows(values_only=True)
        for _ in range(skip_rows):
            next(rows, None)
        header = next(rows, None)
        if header is None or all(cell is None for cell in header):
            raise DataError(f"{path}: sheet {chosen!r} is empty (expected a header row and data rows)")
        width = max((i + 1 for i, cell in enumerate(header) if cell is not None), default=0)
        # a cell of the header without a name is named as pandas names it, "Unnamed: <position>" (the index
        # to_excel writes first, index=True being its default): left out as a CSV file's is (column_kinds)
        names_in_sheet = [f"Unnamed: {i}" if cell is None or not str(cell).strip() else str(cell).strip()
                          for i, cell in enumerate(header[:width])]
        _refuse_duplicates(path, names_in_sheet)
        rows = list(rows)
        wide = None if width > 1 else next(
            (i for i, row in enumerate(rows[:SNIFFED_ROWS]) if sum(cell is not None for cell in row) > 1), None)
        if wide is not None:  # the first wide row is the header: leave out the rows above it
            raise DataError(f"{path}: sheet {chosen!r}: row {skip_rows + 1} holds one name, {names_in_sheet[0]!r}, above "
                            f"rows of more cells{_TITLE_HINT.format(key=key, skip=skip_rows + 1 + wide)}")
        body = [list(row[:width]) + [None] * (width - len(row)) for row in rows]
    finally:
        book.close()
    # cells right of the header's last name (notes, totals) are not read; a column's type is inferred from its
    # cells, as pandas.read_excel does (numbers, dates as datetime64, text)
    return pd.DataFrame(body, columns=names_in_sheet), chosen, names


def _check_names(path: Path, fmt: str, names: Optional[Sequence[str]]) -> None:
    if names is None:
        return
    if fmt not in ("csv", "tsv"):
        raise DataError(f"data.columns names the columns of a CSV/TSV file without a header row; {path} is "
                        f"{fmt.capitalize()}, whose columns have their names: leave data.columns out")
    if not names:
        raise DataError("data.columns is empty; list the file's column names in order, or leave it out (null)")
    _refuse_duplicates(Path("data.columns"), [str(n) for n in names])


def header_hint(columns: Sequence[str], flags: bool = False) -> str:
    """For a file whose header row holds numbers (UCI's files as downloaded start with data, not names): how
    to name the columns of a file without a header row (``flags``: for pipeline-predict, whose model was
    trained on a file with one). Empty when the header looks like names: it looks like data when more than a third
    of its names, and two at least, are numbers (UCI's adult.data: 6 of 15); a header naming a year (``2024``) or
    two among more names is names."""
    numbers = sum(_is_number_name(c) for c in columns)
    if numbers < 2 or numbers * 3 <= len(columns):
        return ""
    if flags:
        return " (its first row looks like data, not column names: add a header row that names the columns)"
    return (f" (its first row looks like data, not column names: for a file without a header row, name its "
            f"{len(columns)} columns in order with data.columns=[name1,name2,...])")


def _is_number_name(name) -> bool:
    return bool(_INTEGER_OR_DECIMAL.fullmatch(str(name).strip()))


def separator_hint(columns: Sequence[str], flags: bool = False) -> str:
    """For a delimited file read as one column: the separator its header seems to use, as a hint to add to an
    error about a missing column (a ``;``-separated export read with the default ``,``). ``flags``: named as
    pipeline-predict's options (``--sep``) instead of the config keys (``data.sep``)."""
    if len(columns) != 1:
        # a ;-separated header with a comma inside a name ('Gewicht, kg;Alter;Klasse'): split at the comma only
        found = [sep for sep in (";", "\t", "|") if any(sep in str(c) for c in columns)]
        if not found or len(columns) > 4:
            return ""
        how = ("--format tsv" if flags else "data.format=tsv") if found[0] == "\t" else \
            (f"--sep '{found[0]}'" if flags else f"'data.sep=\"{found[0]}\"'")
        return (f" (the header's names hold {found[0]!r}: the file looks {found[0]!r}-separated, with a ',' inside a "
                f"name; set {how})")
    header = str(columns[0])
    found = [sep for sep in (";", "\t", "|", ",") if sep in header]
    if not found:
        return ""
    if found[0] == "\t":
        return f" (the file was read as one column: it looks tab-separated; set {'--format tsv' if flags else 'data.format=tsv'})"
    # quoted for Hydra inside quotes for the shell: data.sep=; alone is refused by Hydra's override parser
    how = f"--sep '{found[0]}'" if flags else f"'data.sep=\"{found[0]}\"'"
    return f" (the file was read as one column: it looks {found[0]!r}-separated; set {how})"


def iter_table(path: Path, batch_size: int, format: Optional[str] = None, sep: Optional[str] = None,
               na_values: Sequence[str] = (), encoding: Optional[str] = None,
               decimal: str = ".", flags: bool = False, names: Optional[Sequence[str]] = None,
               required: Sequence[str] = (), sheet=None, skip_rows: int = 0,
               text_columns: Sequence[str] = (), target: Optional[str] = None,
               literal_columns: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """The file in DataFrames of ``batch_size`` rows (index: row number in the file), read as
    :func:`read_table` reads, without holding the whole file for CSV, TSV, JSON lines and Parquet. ``flags``:
    a hint in an error names pipeline-predict's options (``--sep``), not the config's keys. ``names`` (the
    training file's columns, when it had no header row) apply to a CSV/TSV file whose first row does not hold
    every ``required`` column; other formats name their columns themselves. ``text_columns`` are read as the text
    written (an id ``000123`` stays ``000123``, a code ``NA`` stays ``NA``), not as numbers or missing values. ``target``: the one of ``names`` a file
    without a header row may lack (new rows have no label). ``literal_columns`` (a text model's texts) are read as
    written, as its training file was: ``NA``, ``None``, ``?`` and empty cells are texts, not missing values, and a
    TSV file has no quoting (a quote character is part of the text)."""
    path = Path(path)
    _check_decimal(decimal)
    _check_sep(sep, flags)
    fmt = table_format(path, format, flags)
    _check_sheet(path, fmt, sheet, flags)
    _check_skip(path, fmt, skip_rows, flags)
    _check_file(path, fmt)
    missing = [*MISSING_TOKENS, *map(str, na_values)]
    as_written = [*literal_columns, *text_columns]  # columns whose cells are kept as written, codes for missing too
    skip_key = "--skip-rows" if flags else "data.skip_rows"
    if fmt in ("csv", "tsv"):
        encoding = encoding or _text_encoding(path, head_only=True, flags=flags)
        sep, header, names, header_lines = _layout(path, fmt, sep, encoding, names, required, skip_rows, target,
                                                   "--sep" if flags else "data.sep")
        checked = False
        options = _csv_options(fmt, sep, missing, encoding, decimal, names, skip_rows)
        try:
            if text_columns or literal_columns:
                # the header as written ("id " is the column "id" once tidied)
                written = {str(c).strip(): c for c in pd.read_csv(_source(path), nrows=0, **options).columns}
                # read as written: no missing-value codes (an id 'NA', a country code 'NA' copied by --keep)
                literal = {written[c] for c in [*literal_columns, *text_columns] if c in written}
                options.update(keep_default_na=False, na_values={c: missing for c in written.values() if c not in literal},
                               dtype={c: str for c in literal})
                if literal_columns and fmt == "tsv":
                    options["quoting"] = csv.QUOTE_NONE
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                for chunk in pd.read_csv(_source(path), chunksize=batch_size, **options):
                    if not checked and (caught or (chunk.shape[1] and chunk.iloc[:, -1].isna().any())):
                        _refuse_ragged_rows(path, sep or DEFAULT_SEPARATORS[fmt], encoding, header, flags, header_lines,
                                            skip_rows)
                        checked = True  # one pass over the file answers for every chunk
                    yield _tidy(chunk, missing, as_written, copied=text_columns)
        except DataError:
            raise
        except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as error:
            raise _parser_error(path, fmt, error, encoding, header, flags, sep or DEFAULT_SEPARATORS[fmt]) from None
    elif fmt == "jsonl":
        encoding = encoding or _text_encoding(path, head_only=True, flags=flags)
        frame = _read_json_array(path, encoding)  # an array is read whole, then served in batches
        if frame is not None:
            frame = _tidy(frame, missing, as_written, copied=text_columns)
            for start in range(0, len(frame), batch_size):
                yield frame.iloc[start:start + batch_size]
            return
        try:
            for chunk in pd.read_json(_source(path), lines=True, chunksize=batch_size, dtype=False, convert_dates=False,
                                      encoding=encoding):
                if chunk.index[0] == 0:
                    _refuse_json_columns(path, chunk)
                yield _tidy(chunk, missing, as_written, copied=text_columns)
        except DataError:
            raise
        except ValueError as error:
            raise _json_error(path, error) from None
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            source = pq.ParquetFile(path)
            _refuse_duplicates(path, source.schema_arrow.names)
            start = 0
            for batch in source.iter_batches(batch_size=batch_size):
                chunk = batch.to_pandas()
                chunk.index = pd.RangeIndex(start, start + len(chunk))
                start += len(chunk)
                yield _tidy(chunk, missing, as_written, copied=text_columns)
        except DataError:
            raise
        except Exception as error:
            raise DataError(f"{path}: not a readable Parquet file ({_first_line(error)})") from None
    else:  # Feather/Arrow IPC files are memory-mapped: slicing them costs no copy of the whole file; a sheet is small
        frame = _tidy(_read_excel(path, sheet, skip_rows, skip_key)[0] if fmt == "excel" else _read_arrow(path, fmt),
                      missing, as_written, copied=text_columns)
        for start in range(0, len(frame), batch_size):
            yield frame.iloc[start:start + batch_size]


def _check_file(path: Path, fmt: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt in TEXT_FORMATS:
        head = _read_head(path, 1 << 16)
        if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(f"{path}: a binary file (it holds NUL bytes), not {fmt.upper()} text; for a Parquet or "
                            "Feather file use the .parquet/.feather extension or data.format=parquet|feather")


def _text_encoding(path: Path, head_only: bool = False, flags: bool = False) -> str:
    """UTF-8 (BOM or not; UTF-16 with its BOM); a file that is not valid UTF-8 is read as Windows-1252
    (what "Latin-1" files in the wild are), or as ISO 8859-1 when Windows-1252 cannot decode it, with a
    notice: both decode every accented letter of Western European text, and guessing further is not safe.
    ``head_only``: judge by the first MiB (streaming a large file; a later bad byte is then reported). ``flags``: the
    notice names pipeline-predict's --encoding, not data.encoding."""
    import codecs

    data = _read_head(path, 1 << 20 if head_only else None)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(data, final=not head_only)
        except UnicodeDecodeError as error:
            if encoding == "utf-8-sig":
                first_bad = error.start
            continue
        if encoding != "utf-8-sig":
            log.warning("%s is not UTF-8 (byte %d is 0x%02x); read it as %s. If its text looks wrong, convert "
                        "it to UTF-8 or set %s", path, first_bad, data[first_bad],
                        "Windows-1252 (Latin-1)" if encoding == "cp1252" else "ISO 8859-1 (Latin-1)",
                        _encoding_key(flags))
        return encoding
    raise AssertionError("unreachable: latin-1 decodes any byte")


def _encoding_key(flags: bool) -> str:
    """The setting that names a file's encoding: pipeline-predict's flag (``flags``) or the data config's key."""
    return "--encoding" if flags else "data.encoding"


def _check_decimal(decimal: str) -> None:
    if decimal not in DECIMAL_MARKS:
        raise DataError(f"data.decimal={decimal!r} is not a decimal mark; choose '.' (3.14) or ',' (3,14)")


def _check_sep(sep, flags: bool = False) -> None:
    """A separator is one character (pandas' and the csv module's); an empty one (what Hydra makes of an unquoted
    tab) is refused rather than read as the default. ``flags``: named as pipeline-predict's --sep."""
    if sep is None or (isinstance(sep, str) and len(sep) == 1):
        return
    key = "--sep" if flags else "data.sep"
    tab = ("--format tsv, or a real tab: --sep $'\\t'" if flags else
           """data.format=tsv, or a real tab: $'data.sep="\\t"'""")
    if sep == "\\t":
        raise DataError(f"{key}: \\t arrives as two characters, a backslash and a t, and a column separator is one "
                        f"character; for a tab-separated file set {tab}")
    if sep == "":
        dropped = "" if flags else " (an unquoted tab is dropped on the command line)"
        raise DataError(f"{key} is empty{dropped}, and a column separator is one character; for a tab-separated file "
                        f"set {tab}")
    raise DataError(f"{key} {sep!r}: a column separator is one character, e.g. ',' ';' '|'" if flags else
                    f"data.sep={sep!r}: a column separator is one character, e.g. 'data.sep=\";\"'")


def _naming(first_row: Sequence[str], names: Optional[Sequence[str]],
            required: Sequence[str] = (), target: Optional[str] = None) -> tuple[Optional[list[str]], int]:
    """(the names to give the columns, None: the header's; 1 when the first row is a header, else 0). With
    ``names`` the file has no header row, unless its first row spells them or holds every ``required`` column
    (a file to predict on that came with a header); a row one cell short of ``names`` is read without ``target``."""
    cells = [str(c).strip() for c in first_row]
    if names is None or cells == [str(n).strip() for n in names] or (required and set(required) <= set(cells)):
        return None, 1
    names = [str(n).strip() for n in names]
    if target is not None and target in names and len(cells) == len(names) - 1:
        names.remove(target)
    return names, 0


def _csv_options(fmt: str, sep: Optional[str], missing: list[str], encoding: str, decimal: str = ".",
                 names: Optional[Sequence[str]] = None, skip_rows: int = 0) -> dict:
    # decimal=",": pandas reads 3,14 as a number and leaves 1.234 (a thousand and more) as text for to_numbers
    named = {} if names is None else dict(names=list(names), header=None)
    return dict(sep=sep or DEFAULT_SEPARATORS[fmt], decimal=decimal, skipinitialspace=True, na_values=missing,
                **named, skiprows=skip_rows or None, keep_default_na=True,
                skip_blank_lines=False, index_col=False, encoding=encoding, low_memory=False, engine="c")


def _read_delimited(path: Path, fmt: str, sep: Optional[str], missing: list[str], encoding: Optional[str],
                    decimal: str = ".", names: Optional[Sequence[str]] = None,
                    skip_rows: int = 0, target: Optional[str] = None) -> tuple[pd.DataFrame, int]:
    """The frame, and 1 when the file's first line is its header (0: a file without one, ``names`` given).
    ``target``'s cells are read as written (``_tidy`` reads its missing-value spellings, counting them)."""
    encoding = encoding or _text_encoding(path)
    sep, header, names, header_lines = _layout(path, fmt, sep, encoding, names, (), skip_rows, None, "data.sep")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            options = _csv_options(fmt, sep, missing, encoding, decimal, names, skip_rows)
            if target is not None:  # the header as written ("label " is the column "label" once tidied)
                written = [c for c in pd.read_csv(_source(path), nrows=0, **options).columns]
                if target in [str(c).strip() for c in written]:  # empty stays missing: a short row's cells too
                    # every missing-value code is read as written, and made missing by _tidy, which counts them by
                    # spelling: the target's (rows left out, said), a category's ('NA' for North America, said)
                    options.update(keep_default_na=False, na_values={c: [""] for c in written})
            frame = pd.read_csv(_source(path), **options)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header row and data rows)") from None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError, LookupError) as error:
        raise _parser_error(path, fmt, error, encoding, header, sep=sep or DEFAULT_SEPARATORS[fmt]) from None
    # pandas drops the extra cells of a long row with only a warning, and fills a short row with missing
    # values without one (a short row leaves the last column missing): both mean a broken line
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught) or \
            (frame.shape[1] and frame.iloc[:, -1].isna().any()):
        _refuse_ragged_rows(path, sep or DEFAULT_SEPARATORS[fmt], encoding, header, header_lines=header_lines,
                            skip_rows=skip_rows)
    return frame, header_lines


def _layout(path: Path, fmt: str, sep: Optional[str], encoding: str, names: Optional[Sequence[str]],
            required: Sequence[str], skip_rows: int, target: Optional[str],
            key: str) -> tuple[Optional[str], list[str], Optional[list[str]], int]:
    """How a CSV/TSV file is laid out: (its separator, its columns, the names to give pandas (None: the header's),
    1 when its first line after ``skip_rows`` is a header). An empty file and duplicate names are refused."""
    header = _check_header(path, fmt, sep, encoding, skip_rows, flags=key.startswith("--"))
    if header is None:
        raise DataError(f"{path}: the file is empty (expected a header row and data rows)")
    sep, header = _detect_separator(path, fmt, sep, encoding, header, key, skip_rows)
    names, header_lines = _naming(header, names, required, target)
    if names is None:
        _refuse_duplicates(path, header, flags=key.startswith("--"))
    return sep, header if names is None else names, names, header_lines


def _detect_separator(path: Path, fmt: str, sep: Optional[str], encoding: str, header: list[str],
                      key: str, skip_rows: int = 0) -> tuple[Optional[str], list[str]]:
    """(the separator to read with, the header's cells with it). Without ``sep``, a header that is one column
    with the format's separator is tried with the others (``;``, tab, ``|``, ``,``): the first that splits it
    into two or more names, and the first rows into as many cells, is taken, with a notice. Otherwise nothing
    changes (a file that is one column stays one; a ``;`` header over ragged rows gets separator_hint)."""
    if sep is not None or len(header) != 1:
        return sep, header
    default = DEFAULT_SEPARATORS[fmt]
    for candidate in SEPARATORS:
        if candidate == default:
            continue
        with _open_text(path, encoding) as handle:
            reader = csv.reader(handle, delimiter=candidate, skipinitialspace=True)
            try:
                for _ in range(skip_rows):
                    next(reader, None)
                rows = [row for _, row in zip(range(SNIFFED_ROWS + 1), reader) if any(c.strip() for c in row)]
            except csv.Error:
                continue
        if len(rows) > 1 and len(rows[0]) > 1 and all(len(row) == len(rows[0]) for row in rows[1:]):
            name = "tab" if candidate == "\t" else repr(candidate)
            log.warning("%s: read as %s-separated (its header holds no %r); set %s to read it otherwise", path, name,
                        default, key)
            return candidate, [cell.strip() for cell in rows[0]]
    return sep, header


def _check_header(path: Path, fmt: str, sep: Optional[str], encoding: str, skip_rows: int = 0,
                  flags: bool = False) -> Optional[list[str]]:
    """The first row's cells (None for an empty file): the header's column names, unless data.columns names
    them (the caller refuses duplicate names, which pandas would silently rename: ``a``, ``a.1``)."""
    try:
        with _open_text(path, encoding) as handle:
            reader = csv.reader(handle, delimiter=sep or DEFAULT_SEPARATORS[fmt], skipinitialspace=True)
            for _ in range(skip_rows):
                next(reader, None)
            first = next(reader, None)
    except (UnicodeDecodeError, LookupError) as error:
        raise DataError(f"{path}: cannot be read as {encoding} text ({_first_line(error)}); set "
                        f"{_encoding_key(flags)} to the file's encoding or convert it to UTF-8") from None
    except csv.Error as error:
        raise DataError(f"{path}:1: the header row cannot be read ({error})") from None
    if first is None:
        return None
    return [name.strip() for name in first]


def _refuse_duplicates(path: Path, names: Sequence[str], flags: bool = False) -> None:
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(names, start=1):
        seen.setdefault(str(name).strip(), []).append(position)
    duplicated = {name: places for name, places in seen.items() if len(places) > 1}
    if duplicated:
        listed = "; ".join(f"{name!r} (columns {', '.join(map(str, places))})" for name, places in duplicated.items())
        # a first row of data read as names repeats its values (0, 1, ...): say so rather than ask for other names
        hint = header_hint(list(names), flags) if any(map(_is_number_name, duplicated)) else ""
        raise DataError(f"{path}: duplicate column names: {listed}" + (hint or "; give each column its own name"))


def _refuse_ragged_rows(path: Path, sep: str, encoding: str, header: Sequence[str], flags: bool = False,
                        header_lines: int = 1, skip_rows: int = 0) -> None:
    """A row with fewer or more cells than the header (an unquoted separator, a truncated write, or a header
    read as one column: another separator)."""
    width = len(header)
    with _open_text(path, encoding) as handle:
        reader = csv.reader(handle, delimiter=sep, skipinitialspace=True)
        for _ in range(skip_rows + header_lines):
            next(reader, None)
        try:
            for row in reader:
                if row and len(row) != width and any(cell.strip() for cell in row):
                    named = "" if header_lines else f", as {'the training run' if flags else 'data.columns'} named them " \
                        f"({', '.join(header)}; a value left out is an empty cell)"
                    raise DataError(f"{path}:{reader.line_num}: expected {width} columns{named}, found {len(row)}"
                                    f"{_ragged_hint(path, sep, encoding, header, flags, reader.line_num, len(row))}")
        except csv.Error as error:
            raise DataError(f"{path}:{reader.line_num}: {error}") from None


def _ragged_hint(path: Path, sep: str, encoding: str, header: Sequence[str], flags: bool, line: int,
                 found: int) -> str:
    """For a row of another width than the header, at ``line``: another separator (a header of one column), or a
    title over the table (the row comes within the first lines, wider, and the rows after it are as wide: it is
    the header, and the lines above it are to be left out)."""
    hint = separator_hint(header, flags) if len(header) == 1 else ""
    if hint or found <= len(header) or line > TITLE_LINES:
        return hint
    with _open_text(path, encoding) as handle:
        reader = csv.reader(handle, delimiter=sep, skipinitialspace=True)
        rows = []
        try:
            for row in reader:
                if reader.line_num >= line and any(cell.strip() for cell in row):
                    rows.append(row)
                if len(rows) > SNIFFED_ROWS:
                    break
        except csv.Error:
            return ""
    if len(rows) > 1 and all(len(row) == found for row in rows):
        return _TITLE_HINT.format(key="--skip-rows" if flags else "data.skip_rows", skip=line - 1)
    return ""


def _parser_error(path: Path, fmt: str, error: Exception, encoding: Optional[str] = None,
                  header: Sequence[str] = (), flags: bool = False, sep: str = ",") -> DataError:
    text = str(error)
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if fields:
        expected, line, found = fields.groups()
        return DataError(f"{path}:{line}: expected {expected} columns, found {found}"
                         f"{_ragged_hint(path, sep, encoding, header, flags, int(line), int(found))}")
    if isinstance(error, (UnicodeDecodeError, LookupError)):
        return DataError(f"{path}: cannot be read as {encoding} text ({_first_line(error)}); set "
                         f"{_encoding_key(flags)} to the file's encoding or convert it to UTF-8")
    return DataError(f"{path}: cannot be read as {fmt.upper()} ({_first_line(error)})")


JSON_LAYOUTS = ("JSON lines (one object per line: df.to_json(path, orient='records', lines=True)) or one array of "
                "objects ([{...}, {...}]: orient='records')")


def _read_json_lines(path: Path, encoding: Optional[str]) -> pd.DataFrame:
    encoding = encoding or _text_encoding(path)
    frame = _read_json_array(path, encoding)
    if frame is not None:
        return frame
    try:
        frame = pd.read_json(_source(path), lines=True, dtype=False, convert_dates=False, encoding=encoding)
    except ValueError as error:
        raise _json_error(path, error) from None
    _refuse_json_columns(path, frame)
    return frame


def _read_json_array(path: Path, encoding: str) -> Optional[pd.DataFrame]:
    """The file as a table when it is one JSON array of records (on one line or indented); None when it does not
    start with ``[`` (JSON lines). An array of anything but objects is refused."""
    head = _read_head(path, 1 << 12).decode(encoding, errors="ignore").lstrip("\ufeff \t\r\n")
    if not head.startswith("["):
        return None
    if not re.match(r"\[\s*(\{|\]|$)", head):
        raise DataError(f"{path}: a JSON array of {head[1:].lstrip()[:1]!r}..., not of objects (one per row); tables are "
                        f"read from {JSON_LAYOUTS}")
    try:
        return pd.read_json(_source(path), orient="records", dtype=False, convert_dates=False, encoding=encoding)
    except ValueError as error:
        raise _json_error(path, error) from None


def _refuse_json_columns(path: Path, frame: pd.DataFrame) -> None:
    """One object whose values are objects: a table written by pandas' default orient='columns' (or 'index'), read
    as JSON lines it is one row of dictionaries."""
    if len(frame) == 1 and frame.shape[1] and all(isinstance(value, dict) for value in frame.iloc[0]):
        raise DataError(f"{path}: one JSON object of columns (pandas' to_json() default, orient='columns'), not rows; "
                        f"tables are read from {JSON_LAYOUTS}")


def _json_error(path: Path, error: ValueError) -> DataError:
    return DataError(f"{path}: not a readable JSON table ({_first_line(error)[:200]}); tables are read from "
                     f"{JSON_LAYOUTS}")


def _read_arrow(path: Path, fmt: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            import pyarrow.feather as feather

            table = feather.read_table(path, memory_map=True)
    except Exception as error:
        raise DataError(f"{path}: not a readable {fmt.capitalize()} file ({_first_line(error)})") from None
    _refuse_duplicates(path, table.column_names)
    return _arrow_numbers(table, path).to_pandas()


# a duration's unit in seconds
_DURATION_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def _arrow_numbers(table, path: Path):
    """Decimal columns (a database's NUMERIC(12,2)) as float64, and durations as seconds, so both are numeric
    features: pandas holds the first as Decimal objects and the second as timedeltas, read before as text (a model
    logged with Decimal examples failed to save, durations were left out as identifier-like)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as types

    for position, column in enumerate(table.schema):
        if types.is_decimal(column.type):
            table = table.set_column(position, column.name, pc.cast(table.column(position), pa.float64()))
        elif types.is_duration(column.type):
            seconds = pc.divide(pc.cast(pc.cast(table.column(position), pa.int64()), pa.float64()),
                                _DURATION_UNITS[column.type.unit])
            table = table.set_column(position, column.name, seconds)
            log.warning("%s: read the durations of column %r as seconds", path, column.name)
    return table


def _tidy(frame: pd.DataFrame, missing: Sequence[str], literal: Sequence[str] = (), target: Optional[str] = None,
          target_keep: Sequence[str] = (), spelled: Optional[dict] = None, copied: Sequence[str] = (),
          words: Optional[dict] = None) -> pd.DataFrame:
    """Names and string cells without surrounding white space; missing-value codes as missing, except in the
    ``literal`` columns (texts) and, in the ``target`` column, the ``target_keep`` ones; rows with nothing in them
    (blank lines) dropped, keeping the file's row numbers as the index. ``spelled``: filled with the target's
    missing cells by their spelling as written ('' for empty); ``words``: with the other columns' missing cells
    written as a word (``NA``, ``None``), {column: {word: count}}."""
    frame = frame.set_axis([str(c).strip() for c in frame.columns], axis=1)
    tokens = set(missing)
    written = None
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.StringDtype):
            stripped = column.str.strip()
        elif column.dtype == object:  # mixed cells (JSON): strip the strings, nested values as their JSON text
            stripped = column.map(_plain_cell)
        else:
            continue
        if name == target:
            written = stripped
            frame[name] = stripped.mask(stripped.isin(tokens - set(map(str, target_keep))))
        elif name in literal:
            frame[name] = stripped
        else:
            masked = stripped.isin(tokens)
            if words is not None and masked.any():
                counted = stripped[masked].value_counts()
                said = {str(k): int(n) for k, n in counted.items() if any(c.isalpha() for c in str(k))}
                if said:
                    words[name] = said
            frame[name] = stripped.mask(masked)
    if any(name in frame.columns for name in copied):  # columns copied as written: an empty cell is still empty
        empty = frame.isna()
        for name in copied:
            if name in frame.columns:
                empty[name] |= frame[name].eq("")
        frame = frame[~empty.all(axis=1)]
    else:
        frame = frame.dropna(how="all")
    if spelled is not None and target in frame.columns:
        absent = frame[target].isna()
        if absent.any():
            cells = written.loc[frame.index[absent]] if written is not None else pd.Series([""] * int(absent.sum()))
            spelled.update({("" if pd.isna(k) else str(k)): int(n)
                            for k, n in cells.value_counts(dropna=False).items()})
    return frame


def _plain_cell(value):
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (dict, list, tuple)):
        import json

        return json.dumps(value, sort_keys=True, default=str)
    return value


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# ----- what each column is ------------------------------------------------------------------------------
@dataclass
class ColumnPlan:
    """Per feature column: ``"numeric"`` or ``"categorical"``; and the columns left out, with why."""

    kinds: dict[str, str]
    left_out: dict[str, str]
    # numeric columns of text that pandas alone would not read as numbers (written numbers, ISO dates):
    # name -> (a cell, its value)
    written: dict[str, tuple[str, float]] = field(default_factory=dict)
    # the numeric columns whose every value is an ISO date: name -> whether any has a time of day
    dates: dict[str, bool] = field(default_factory=dict)
    # the columns of whole numbers read as categories for having few distinct values: name -> how many
    few_integers: dict[str, int] = field(default_factory=dict)
    # categorical columns of numbers written with a unit (172cm): name -> a cell
    with_units: dict[str, str] = field(default_factory=dict)
    # the columns left out for holding one value in every row (an input that never changes teaches nothing, yet
    # would cost an embedding and be a required column of the model's signature): name -> that value, as written
    single_valued: dict[str, str] = field(default_factory=dict)


def column_kinds(table: Table, columns: Sequence[str], categorical: Sequence[str] = (), numeric: Sequence[str] = (),
                 max_integer_categories: int = 10, na_values: Sequence[str] = (), decimal: str = ".",
                 chosen: Sequence[str] = ()) -> ColumnPlan:
    """Numbers are numeric, except integer columns with at most ``max_integer_categories`` distinct values;
    strings and booleans are categorical; identifier-like or free-text columns (mostly distinct strings, or
    integers counting the rows), columns without a name in the header (an index pandas wrote) and empty columns
    are left out, and so are columns holding one same value in every row (``single_valued``) unless ``chosen``
    (data.features) names them. ``categorical`` / ``numeric`` override.
    A column of numbers written with a decimal comma, read with ``decimal="."``, is refused with the key to set."""
    missing = frozenset([*MISSING_TOKENS, *map(str, na_values)])
    kinds: dict[str, str] = {}
    left_out: dict[str, str] = {}
    few_integers: dict[str, int] = {}
    with_units: dict[str, str] = {}
    single_valued: dict[str, str] = {}
    for name in columns:
        column = table.frame[name]
        present = int(column.notna().sum())
        if name in categorical:
            kinds[name] = "categorical"
            continue
        if present == 0:
            left_out[name] = "no values"
            continue
        if name not in numeric and unnamed_column(name):  # a saved split's index: row numbers out of order
            left_out[name] = "no name in the header: the row index pandas writes"
            continue
        values, bad = to_numbers(column, missing, decimal)
        if name in numeric:
            _refuse_bad_numbers(table, name, column, bad, forced=True, decimal=decimal, missing=missing)
            _refuse_overflow(table, name, values)
            kinds[name] = "numeric"
            continue
        if pd.api.types.is_bool_dtype(column.dtype):
            if name not in chosen and present == len(column) and column.nunique() == 1:
                single_valued[name] = str(column.iloc[0])
            else:
                kinds[name] = "categorical"
            continue
        if not bad.any():
            _refuse_overflow(table, name, values)
            finite = values[~np.isnan(values)]
            integral = bool(np.all(finite == np.round(finite)))
            distinct = len(np.unique(finite))
            if distinct == 1 and len(finite) == len(values) and name not in chosen:  # a missing cell would be news
                single_valued[name] = f"{finite[0]:g}"
                continue
            unique_integers = integral and distinct == len(values) == present and distinct > IDENTIFIER_MIN
            if integral and distinct <= max_integer_categories:
                kinds[name] = "categorical"
                few_integers[name] = distinct
            elif unique_integers and finite.min() in (0, 1) and finite.max() - finite.min() == distinct - 1 \
                    and pd.api.types.is_numeric_dtype(column.dtype):  # not one date a day, nor a year a row (1950..)
                left_out[name] = "a row number"
            elif unique_integers and _IDENTIFIER_NAME.search(str(name)):
                left_out[name] = "a different integer per row, named like an identifier"
            else:
                kinds[name] = "numeric"
            continue
        if _read_with_other_mark(column, np.flatnonzero(bad), decimal):  # 3,14 with data.decimal=".", 3.14 with ","
            first = int(np.flatnonzero(bad)[0])
            raise DataError(f"{table.where(column.index[first])}: column {name!r} holds {str(column.iloc[first]).strip()!r}: "
                            f"numbers written with {_other_mark(decimal)}, or keep the column as text with "
                            f"{list_override('data.categorical', [name])}")
        if bad.sum() < TYPO_SHARE * present:
            _refuse_bad_numbers(table, name, column, bad, forced=False, decimal=decimal, missing=missing)
        spelled = pd.Series(canonical_values(column, missing), dtype=object)
        distinct = spelled.nunique(dropna=True)
        if distinct == 1 and not spelled.isna().any() and name not in chosen:
            single_valued[name] = str(spelled.iloc[0])
            continue
        unit = _number_with_unit(spelled)
        if distinct > IDENTIFIER_MIN and distinct >= IDENTIFIER_SHARE * present:
            left_out[name] = f"{distinct} distinct values in {present} rows" + (
                f": numbers written with a unit, e.g. {unit!r}; write the numbers alone to read them" if unit else "")
        else:
            kinds[name] = "categorical"
            if unit:
                with_units[name] = unit
    written, dates = {}, {}
    for name, kind in kinds.items():
        example = _written_example(table.frame[name], missing, decimal) if kind == "numeric" else None
        if example is not None:
            written[name] = example
            timed = _date_column(table.frame[name], missing)
            if timed is not None:
                dates[name] = timed
    return ColumnPlan(kinds, left_out, written, dates, few_integers, with_units, single_valued)


_WITH_UNIT = re.compile(r"[-+]?\d+(?:[.,]\d+)?\s?([a-zA-Zµ°][a-zA-Z²³/]{0,5})")
_ORDINALS = frozenset(["st", "nd", "rd", "th"])


def _number_with_unit(spelled: pd.Series) -> Optional[str]:
    """A cell of a text column whose distinct values are nearly all a number and one same unit (``172cm``,
    ``72.3 kg``, ``5 mg/l``): read as categories, they are one input per value and no order; None for any other
    column (codes such as ``1A``, ``2B`` differ in their letters; ``1st``, ``2nd`` are ordinals)."""
    values = spelled.dropna().unique()[:1000]
    if len(values) < 3:
        return None
    units = pd.Series([match.group(1) if match else None
                       for match in (_WITH_UNIT.fullmatch(str(v)) for v in values)], dtype=object)
    counted = units.value_counts()
    if not len(counted) or counted.iloc[0] < 0.9 * len(values) or counted.index[0].lower() in _ORDINALS:
        return None
    return str(values[int(np.flatnonzero(units.to_numpy() == counted.index[0])[0])])


def _date_column(column: pd.Series, missing: frozenset) -> Optional[bool]:
    """For a column whose every value is an ISO date: whether any has a time of day other than midnight; None
    for any other column."""
    texts = [t for t in column.dropna().astype(str).str.strip().unique() if t not in missing]
    days = np.array([date_number(t) for t in texts], dtype=np.float64)
    if not len(days) or np.isnan(days).any():
        return None
    return bool((days != np.floor(days)).any())


def _written_example(column: pd.Series, missing: frozenset, decimal: str = ".") -> Optional[tuple[str, float]]:
    """A cell of a column read as numbers that pandas alone would not have read (a currency sign, thousands
    separators, a percent sign, an ISO date), with its value; None when every number is written plainly."""
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        return None
    texts = pd.Series(column.dropna().astype(str).str.strip().unique(), dtype=object)
    values, _ = to_numbers(texts, missing, decimal)
    plain = pd.to_numeric(texts, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for text, value, simple in zip(texts, values, plain):
        if not np.isnan(value) and (decimal == "," or np.isnan(simple)):
            return text, float(value)
    return None


_ONE_GROUP = re.compile(r"[-+]?\d{1,3},\d{3}")


def comma_could_be_decimal(column: pd.Series) -> bool:
    """Whether every cell of ``column`` written with a comma is one digit group after it (``92,375``): as thousands
    separators 92375, as a decimal comma 92.375, and nothing in the cells tells which (``1,234,567`` or ``0,5``
    would)."""
    if pd.api.types.is_numeric_dtype(column.dtype):
        return False
    texts = column.dropna().astype(str).str.strip()
    with_comma = texts[texts.str.contains(",", regex=False)].unique()
    return bool(len(with_comma)) and all(_ONE_GROUP.fullmatch(text) for text in with_comma[:1000])


def check_numeric_column(table: Table, name: str, na_values: Sequence[str] = (), decimal: str = ".") -> None:
    """A column typed numeric in the training file holds numbers in ``table`` too (e.g. the test file)."""
    column = table.frame[name]
    missing = frozenset([*MISSING_TOKENS, *map(str, na_values)])
    values, bad = to_numbers(column, missing, decimal)
    _refuse_bad_numbers(table, name, column, bad, forced=False, decimal=decimal, missing=missing)
    _refuse_overflow(table, name, values)


def _read_with_other_mark(column: pd.Series, positions: np.ndarray, decimal: str) -> bool:
    """Every cell at ``positions``, not a number with ``decimal``, is a number written with the other decimal mark.
    The first few are tried first: a column of names fails there, without a pass over all its cells."""
    other = "," if decimal == "." else "."
    if not len(positions) or any(math.isnan(cell_number(str(column.iloc[p]), other)) for p in positions[:16]):
        return False
    return not to_numbers(column.iloc[positions[16:]].astype(str), decimal=other)[1].any()


def _other_mark(decimal: str) -> str:
    """The other decimal mark, and the key to set for it (quoted for Hydra inside quotes for the shell:
    data.decimal=, alone is a sweep list to Hydra)."""
    if decimal == ".":
        return "a decimal comma; read them with 'data.decimal=\",\"'"
    return ("a decimal point, while data.decimal=',' reads every number of the file with a comma (3,14 and 1.234,5): "
            "if other columns need the comma, this one's numbers must be written with it too (one mark per file); "
            "else read them with 'data.decimal=\".\"'")


def _decimal_hint(value: str, decimal: str) -> str:
    """What to set when a cell that is not a number is one written with the other decimal mark."""
    return f"(written with {_other_mark(decimal)}) " if _read_with_other_mark(pd.Series([value]), np.array([0]), decimal) else ""


def _refuse_bad_numbers(table: Table, name: str, column: pd.Series, bad: np.ndarray, forced: bool,
                        decimal: str = ".", missing: frozenset = frozenset(MISSING_TOKENS)) -> None:
    if not bad.any():
        return
    first = int(np.flatnonzero(bad)[0])
    value = str(column.iloc[first]).strip()
    if _read_with_other_mark(column, np.flatnonzero(bad), decimal):  # not a missing-value code nor a category
        every = "every cell" if bad.sum() == column.notna().sum() else f"{int(bad.sum())} cells"
        raise DataError(f"{table.where(column.index[first])}: column {name!r} holds {value!r}, not a number: {every} "
                        f"of it is written with {_other_mark(decimal)}")
    if _date_column(column[~bad], missing) is not None:  # every other cell an ISO date: a column of dates
        _refuse_bad_dates(table, name, column, bad, missing)
    how = "data.numeric lists it" if forced else f"the column is numbers but for {int(bad.sum())} cell(s)"
    present = int(column.notna().sum())
    if forced and bad.sum() > TYPO_SHARE * present:
        # many cells, not a stray code: numbers written with a unit or a note ('6,971 km') are not missing values
        distinct = int(column[bad].nunique())
        raise DataError(f"{table.where(column.index[first])}: column {name!r} holds {value!r}, not a number "
                        f"{_decimal_hint(value, decimal)}(data.numeric lists it; {int(bad.sum())} of {present} cells, "
                        f"{distinct} distinct, are not numbers as written, e.g. with a unit); write them as plain "
                        f"numbers in the file, or read the column as categories with "
                        f"{list_override('data.categorical', [name])}")
    values, listed = _bad_cells(column, bad)
    if len(values) == 1:
        holds, missing = f"holds {value!r}, not a number {_decimal_hint(value, decimal)}", "if it means missing add"
    else:  # every distinct value, so that following the hint does not meet the next one
        holds, missing = f"holds values that are not numbers: {listed} ", "if they mean missing add"
    suggestion = (f"{missing} {_shell_safe(f'data.na_values={values!r}')}" if len(values) <= SHOWN_VALUES
                  else "if they mean missing list them in data.na_values")
    raise DataError(f"{table.where(column.index[first])}: column {name!r} {holds}({how}); {suggestion}, "
                    f"if the column is categorical add {list_override('data.categorical', [name])}")


SHOWN_VALUES = 5  # the distinct cells an error lists ("and N more" after them)


def _refuse_bad_dates(table: Table, name: str, column: pd.Series, bad: np.ndarray, missing: frozenset) -> None:
    """A column of ISO dates but for the cells at ``bad`` (``2021-02-30``, ``01/05/2021``): refused as dates, each
    such cell named with its lines (not as "not numbers", nor with data.categorical, which would make every date a
    category of its own)."""
    example = next(t for t in column[~bad].dropna().astype(str).str.strip() if t not in missing)
    positions = np.flatnonzero(bad)
    rows: dict[str, list] = {}
    for position, text in zip(positions, column.iloc[positions].astype(str).str.strip()):
        rows.setdefault(text, []).append(column.index[position])
    ordered = sorted(rows.items(), key=lambda item: -len(item[1]))  # most frequent first, then in file order
    shown = [f"{text!r} ({len(at)} row{'s' if len(at) != 1 else ''}: {_line_numbers(table, at)})"
             for text, at in ordered[:SHOWN_VALUES]]
    more = f" and {len(ordered) - SHOWN_VALUES} more" if len(ordered) > SHOWN_VALUES else ""
    values = [text for text, _ in ordered]
    suggestion = (f"if they mean missing add {_shell_safe(f'data.na_values={values!r}')}" if len(values) <= SHOWN_VALUES
                  else "if they mean missing list them in data.na_values")
    count = len(positions)
    raise DataError(f"{table.where(column.index[positions[0]])}: column {name!r} reads as dates (ISO 8601, e.g. "
                    f"{example!r}), and {count} cell{'s are' if count != 1 else ' is'} not valid dates: "
                    f"{', '.join(shown)}{more}; write them as dates that exist, in ISO 8601 (YYYY-MM-DD: other "
                    f"spellings such as 01/05/2021 read as a different day in different countries), or {suggestion}")


def _line_numbers(table: Table, indexes: Sequence) -> str:
    """``lines 12, 22`` (``rows 3, 4`` of a workbook or a binary format) of the first few of a table's rows."""
    marks = [table.where(index)[len(str(table.path)):].lstrip(":").strip() for index in indexes[:3]]
    word = "line" if all(mark.isdigit() for mark in marks) else "row"
    marks = [mark.removeprefix("row").strip() for mark in marks]
    return f"{word}{'s' if len(indexes) > 1 else ''} {', '.join(marks)}{', ...' if len(indexes) > 3 else ''}"


def _bad_cells(column: pd.Series, bad: np.ndarray) -> tuple[list[str], str]:
    """The distinct cells at ``bad`` as written (most frequent first, then in file order), and those of them an
    error shows with their counts: ``'unknown' (2 rows), '2024-02-30' (1 row)``, ``and N more`` past a few."""
    counts = column[bad].astype(str).str.strip().value_counts(sort=False)
    counts = counts.iloc[np.argsort(-counts.to_numpy(), kind="stable")]
    shown = [f"{text!r} ({int(n)} row{'s' if n != 1 else ''})" for text, n in counts.iloc[:SHOWN_VALUES].items()]
    more = f" and {len(counts) - SHOWN_VALUES} more" if len(counts) > SHOWN_VALUES else ""
    return list(counts.index), ", ".join(shown) + more


def _refuse_overflow(table: Table, name: str, values: np.ndarray, role: str = "column") -> None:
    infinite = np.isinf(values)
    too_large = np.abs(np.where(infinite, 0.0, np.nan_to_num(values))) > FLOAT32_MAX
    for mask, what, remedy in ((infinite, "not a finite number", "if it means missing, leave the cell empty"),
                               (too_large, "larger than float32 can hold (3.4e38)", "rescale it")):
        if mask.any():
            first = int(np.flatnonzero(mask)[0])
            leave_out = "" if role != "column" else f", or leave the column out with {list_override('data.drop', [name])}"
            raise DataError(f"{table.where(table.frame.index[first])}: {role} {name!r} holds {float(values[first])!r}, "
                            f"{what}; {remedy}{leave_out}")


PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# plain names that Hydra reads as something else unquoted: [null] is None, [NaN] the float nan, [true] a bool
HYDRA_WORDS = ("null", "nan", "inf", "true", "false")


def _shell_safe(override: str) -> str:
    """``override`` as it is typed in a shell: in double quotes when it holds anything but letters, digits and
    ``_.=,[]+:/-`` (a space, a quote, a parenthesis: ``"data.categorical=['sepal length (cm)']"``)."""
    return override if re.fullmatch(r"[A-Za-z0-9_.=,\[\]+:/-]*", override) else '"' + override.replace('"', '\\"') + '"'


def list_override(key: str, names: Sequence[str]) -> str:
    """``key=[a,b]`` to type in a shell, names that are not plain quoted for Hydra (``'sepal length (cm)'``)."""
    items = [name if PLAIN_NAME.fullmatch(name) and name.lower() not in HYDRA_WORDS
             else "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'" for name in map(str, names)]
    return _shell_safe(f"{key}=[{','.join(items)}]")


# ----- the target -----------------------------------------------------------------------------------------
def class_labels(tables: Sequence[Table], target: str, keep: Sequence[str] = ()) -> tuple[list[np.ndarray], list[str]]:
    """Class indices (-1 where the label is missing) per table and the class names, sorted.

    Labels are spelled one way (``1``, ``1.0`` and `` 1`` are one class, see ``canonical_value``); labels that
    differ only by trailing punctuation or space (``>50K`` in a training file, ``>50K.`` in UCI's test file)
    are merged, with a notice; numbers with a fraction are refused (a regression target, most likely)."""
    from .base import label_sort_key, without_trailing_punctuation

    missing = frozenset(MISSING_TOKENS) - set(map(str, keep))  # data.target_keep_values: labels, not missing
    spelled = [canonical_values(t.frame[target], missing) for t in tables]
    every = pd.Series(np.concatenate(spelled), dtype=object).dropna()
    counts = every.value_counts()
    if len(counts) and all(_is_number(label) for label in counts.index):
        for table, labels in zip(tables, spelled):
            for position, label in enumerate(labels):
                if label is not None and not float(label).is_integer():
                    raise DataError(f"{table.where(table.frame.index[position])}: label {label!r} in column {target!r} "
                                    "is not a class (classification labels must be integers or names; for a "
                                    "numeric target use task=regression)")
    groups: dict[str, list[str]] = {}
    for label in counts.index:
        groups.setdefault(without_trailing_punctuation(label), []).append(label)
    rename: dict[str, str] = {}
    merged = []
    for key, spellings in groups.items():
        if len(spellings) > 1:
            name = key if key in spellings else max(spellings, key=lambda s: (int(counts[s]), s))
            rename.update({s: name for s in spellings})
            merged.append(" and ".join(f"{s!r} ({int(counts[s])} rows)" for s in sorted(spellings)) + f" as {name!r}")
    if merged:
        log.warning("data.target: labels in column %r that differ only by trailing punctuation or space are read "
                    "as one class: %s", target, "; ".join(merged))
    classes = sorted({rename.get(label, label) for label in counts.index}, key=label_sort_key)
    by_case: dict[str, list[str]] = {}
    for label in classes:
        by_case.setdefault(without_trailing_punctuation(label).casefold(), []).append(label)
    cased = [spellings for spellings in by_case.values() if len(spellings) > 1]
    if cased:  # 'A' and 'a' may be two classes (letters): said, not merged
        total = counts.groupby(lambda label: rename.get(label, label)).sum()
        log.warning("data.target: labels in column %r that differ only by case (or case and trailing punctuation) are separate classes: %s; if they "
                    "mean one class, write them one way in the file", target,
                    "; ".join(", ".join(f"{s!r} ({int(total[s])} rows)" for s in spellings) for spellings in cased))
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for labels in spelled:
        out.append(np.array([-1 if label is None else index[rename.get(label, label)] for label in labels],
                            dtype=np.int64))
    return out, classes


def regression_targets(table: Table, target: str, decimal: str = ".") -> np.ndarray:
    """The target as float64 (NaN where missing); a cell that is not a number is refused, naming its line."""
    column = table.frame[target]
    values, bad = to_numbers(column, decimal=decimal)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = str(column.iloc[first]).strip()
        texts, listed = _bad_cells(column, bad)
        other_mark = _read_with_other_mark(column, np.flatnonzero(bad), decimal)  # the hint names the mark to set
        holds = (f"holds {value!r}, not a number {_decimal_hint(value, decimal)}" if len(texts) == 1 or other_mark
                 else f"holds values that are not numbers: {listed} ")
        # a few cells: a missing-value code ('-', 'unknown'), whose rows are then left out with a notice
        few = bad.sum() < TYPO_SHARE * int(column.notna().sum()) and len(texts) <= SHOWN_VALUES and not other_mark
        missing = (f"; if {'it means' if len(texts) == 1 else 'they mean'} missing add "
                   f"{_shell_safe(f'data.na_values={texts!r}')} (those rows are then left out)" if few else "")
        raise DataError(f"{table.where(column.index[first])}: column {target!r} {holds}(a regression target must be "
                        f"numeric; for classes use task=classification){missing}")
    _refuse_overflow(table, target, values, role="target column")
    return values


def _is_number(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return True
