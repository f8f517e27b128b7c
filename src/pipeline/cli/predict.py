"""``pipeline-predict <run id | checkpoint> --input new.csv --output predictions.csv``: predictions of a
trained model on new raw inputs: table rows, texts, image files.

With a run id (or a ``runs:/`` / ``models:/`` URI, or the folder of such a model downloaded) the MLflow model logged
with the run is loaded, so the
answers are exactly ``mlflow.pyfunc.load_model(...).predict(...)``'s. With a checkpoint file
(``outputs/<date>/<time>/checkpoints/best-*.ckpt``) the network is rebuilt from the run folder's
``config.yaml`` and ``data/`` (the fitted preprocessing) and gives the same answers. The input is any table
format the training reads (CSV, TSV, Parquet, Feather, JSON lines), streamed in batches; for a text model
also a ``.txt`` file (one text per line), for an image model also a folder (every image file under it, with
its path) or one image file. A table given to an image model holds a ``path`` column (relative paths: from the table's folder);
to a text model, a ``text`` column. The output is CSV, TSV, JSON lines or Parquet (by its extension): the
``--keep`` columns (the path or text itself for a folder or ``.txt`` input), ``prediction`` and, for
classification, ``probability_<class>`` per class.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable, Optional

from pipeline.cli import user_path

RUN_ID_LENGTH = 32


class PredictError(RuntimeError):
    """The model or the input cannot be used; the message says which and why."""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    from pipeline.tracking.run import default_store

    uri, _ = default_store()
    parser = argparse.ArgumentParser(prog="pipeline-predict", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("model", help="an MLflow run id (or runs:/<id>/model, models:/...), a logged model's folder "
                                      "(downloaded: it holds an MLmodel file), or a checkpoint file")
    parser.add_argument("--input", required=True, type=user_path,
                        help="what to predict: a table (.csv .tsv .parquet .feather .jsonl .json .xlsx .xlsm, the text "
                             "ones also compressed: .gz .bz2 .xz .zip .zst); for a text model also a .txt "
                             "file (a text per line), for an image model also a folder of images or one image")
    parser.add_argument("--output", required=True, type=user_path,
                        help="where to write the predictions (.csv .tsv .jsonl .parquet .xlsx; the text ones also "
                             "compressed: .csv.gz .csv.bz2 .csv.xz)")
    parser.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                        help="copy this input column (e.g. an id) into the output; repeat or separate by commas")
    parser.add_argument("--rename", action="append", default=[], metavar="COLUMN=NAME",
                        help="read a table input's COLUMN as the model's column NAME (e.g. comment=review when the "
                             "new file names its texts otherwise); repeat for more. A column the model reads, renamed "
                             "to a --keep name, is kept as a copy under that name. A name holding '=' (K=V=k=v) is "
                             "split where COLUMN is a column of the input (then where NAME is one the model reads); "
                             "when that leaves two ways, write COLUMN in double quotes: '--rename=\"K=V\"=k=v'")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="a binary model's cut-off: its positive class (task.positive_class; by default the "
                             "second in sorted order) when its probability is at least P (default: the more "
                             "probable class, 0.5); the probabilities are the same either way")
    parser.add_argument("--batch-size", type=int, default=4096, help="rows per batch (default: 4096)")
    parser.add_argument("--format", default=None, help="input format when the extension does not say it")
    parser.add_argument("--sep", default=None, help="column separator of a CSV/TSV input, one character (default: ',' or tab; "
                                                      "a tab: --format tsv)")
    parser.add_argument("--decimal", choices=[".", ","], default=None,
                        help="the decimal mark of the input's numbers when it is not the training file's, e.g. , "
                             "for 3,14 (default: the training file's, data.decimal)")
    parser.add_argument("--encoding", default=None,
                        help="the text encoding of a CSV/TSV/JSON lines input, e.g. cp1252 or latin-1 (default: UTF-8; a "
                             "file that is not is read as Windows-1252, with a notice), as data.encoding does")
    parser.add_argument("--sheet", default=None, help="the sheet of an Excel (.xlsx) input (default: the first)")
    parser.add_argument("--skip-rows", type=int, default=0, metavar="N",
                        help="lines of a CSV/TSV input (rows of a sheet) above its header to leave out, e.g. a title")
    parser.add_argument("--skip-bad-files", action="store_true",
                        help="an image model: leave unreadable image files out of the output, naming them in a note, "
                             "instead of stopping at the first (as data.skip_bad_files does in training)")
    parser.add_argument("--tracking-uri", default=uri, help=f"the store holding the run (default: {uri})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.skip_rows < 0:
        parser.error("--skip-rows must be 0 or more")
    if args.threshold is not None and not 0 < args.threshold < 1:
        parser.error(f"--threshold {args.threshold:g}: a probability strictly between 0 and 1")
    renames, args.rename_pending = {}, []
    for item in args.rename:
        splits = _rename_splits(item)
        if not splits:
            parser.error(f"--rename {item}: write it COLUMN=NAME (the input's column, then the model's)")
        if len(splits) > 1:  # a name holding '=': split once the input's columns are known
            args.rename_pending.append(item)
            continue
        try:
            _add_rename(renames, item, *splits[0])
        except ValueError as error:
            parser.error(str(error))
    args.rename = renames
    # --keep may name a renamed column by either name; the output has it under the model's
    args.keep = list(dict.fromkeys(renames.get(c, c) for c in (c.strip() for item in args.keep for c in item.split(","))
                                   if c))  # a column named twice is kept once
    return args


def _rename_splits(item: str) -> list[tuple[str, str]]:
    """The ways ``--rename item`` reads as (the input's column, the model's name): one per ``=`` in it whose sides
    are both names, or the one after a COLUMN written in double quotes (``"a=b"=c``)."""
    text = item.strip()
    if text.startswith('"') and '"=' in text[1:]:
        column, name = text[1:].split('"=', 1)
        name = name.strip()
        if len(name) > 1 and name[0] == name[-1] == '"':
            name = name[1:-1]
        return [(column, name)] if column and name else []
    splits = [(item[:i].strip(), item[i + 1:].strip()) for i, mark in enumerate(item) if mark == "="]
    return [(column, name) for column, name in splits if column and name]


def _add_rename(renames: dict, item: str, column: str, name: str) -> None:
    if column in renames or name in renames.values():
        raise ValueError(f"--rename {item}: {column if column in renames else name} is renamed twice")
    renames[column] = name


def _resolve_renames(predictor: "Predictor", args: argparse.Namespace, decimal: str) -> None:
    """Splits each ``--rename`` item holding more than one ``=`` (``K=V=k=v``) where its left side is a column
    of the input (and, when several are, where its right side is a column the model reads), reading the input's
    header for its columns; refuses an item that splits no such way, or still more than one."""
    import shlex

    from pipeline.data.tables import iter_table

    batches = iter_table(args.input, 1, args.format, args.sep, encoding=args.encoding, decimal=decimal, flags=True,
                         names=predictor.file_columns, sheet=args.sheet, skip_rows=args.skip_rows,
                         target=predictor.file_target)
    try:
        first = next(batches, None)
    finally:
        batches.close()
    columns = [str(c) for c in first.columns] if first is not None else []
    resolved = {}
    for item in args.rename_pending:
        splits = _rename_splits(item)
        found = [(column, name) for column, name in splits if column in columns]
        if len(found) > 1:
            found = [(column, name) for column, name in found if name in predictor.columns] or found
        if not found:
            raise PredictError(f"--rename {item}: none of {', '.join(repr(c) for c, _ in splits)} is a column of "
                               f"{args.input}; its columns are {columns}")
        if len(found) > 1:
            ways = " or ".join(f"{column!r} as {name!r}" for column, name in found)
            flags = " or ".join(shlex.quote('--rename="%s"=%s' % split) for split in found)
            raise PredictError(f"--rename {item} reads two ways, {ways}: write the input's column in double quotes "
                               f"to say which: {flags}")
        try:
            _add_rename(args.rename, item, *found[0])
        except ValueError as error:
            raise PredictError(str(error)) from None
        resolved[found[0][0]] = found[0][1]
    args.rename_pending = []
    args.keep = list(dict.fromkeys(resolved.get(c, c) for c in args.keep))


# ----- loading the model -----------------------------------------------------------------------------
class Predictor:
    """A function from a DataFrame of raw rows to a DataFrame of predictions, and the columns it reads."""

    def __init__(self, predict: Callable, schema: list[tuple[str, str]], source: str, accepts_missing: bool = True,
                 decimal: str = ".", file_columns: Optional[list[str]] = None, file_target: Optional[str] = None,
                 positive_class: Optional[str] = None, adapter=None):
        self.predict, self.source, self.accepts_missing = predict, source, accepts_missing
        # a binary model's positive class (task.positive_class), what --threshold cuts; None: the second class
        self.positive_class = positive_class
        self.adapter = adapter  # the raw input adapter (a table's categories: unseen values are counted)
        self.decimal = decimal  # the decimal mark the training file's numbers were read with (data.decimal)
        self.file_columns = file_columns  # the training file's columns when it had no header row (data.columns)
        self.file_target = file_target  # the one of them a file to predict on may lack
        self.columns = [name for name, _ in schema]
        self.numeric = [name for name, kind in schema if kind == "numeric"]
        kinds = [kind for _, kind in schema]
        # one column of texts or of image file paths (pipeline.data.raw_inputs), else table columns
        self.reads = {("text",): "texts", ("image file path",): "images"}.get(tuple(kinds), "rows")


def load_predictor(source: str, tracking_uri: str) -> Predictor:
    path = Path(source)
    if path.suffix == ".ckpt" or path.is_file():
        return _from_checkpoint(path)
    if path.is_dir() and (path / "MLmodel").is_file():  # a logged model downloaded (mlflow.artifacts...)
        return _from_mlflow(str(path.resolve()), tracking_uri)
    bare_run = re.fullmatch(r"runs:/+([0-9a-fA-F]{%d})/*" % RUN_ID_LENGTH, source)
    if bare_run:  # runs:/<id> names the run: its model
        return _from_mlflow(f"runs:/{bare_run.group(1)}/model", tracking_uri)
    if source.startswith(("runs:/", "models:/")):
        return _from_mlflow(source, tracking_uri)
    if len(source) == RUN_ID_LENGTH and all(c in "0123456789abcdef" for c in source.lower()):
        return _from_mlflow(f"runs:/{source}/model", tracking_uri)
    raise PredictError(f"{source!r} is neither a checkpoint file nor an MLflow run id (32 hex digits), a "
                       "runs:/<id>/model URI, a registered model (models:/<name>/<version>) or a logged model's folder "
                       "(one holding its MLmodel file)")


def _from_mlflow(uri: str, tracking_uri: str) -> Predictor:
    import mlflow
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.model_context import _tracking_uri
    from pipeline.tracking.pyfunc_model import RawRowsModel

    if uri.startswith(("runs:/", "models:/")):
        from pipeline.cli.rerun import run_of
        from pipeline.tracking.run import existing_client

        try:
            run_of(existing_client(tracking_uri, uri), uri, tracking_uri)  # a registered version: the run that logged it
        except LookupError as error:  # no such run, model or version, or a deleted run: what the store lacks
            raise PredictError(str(error)) from None
    try:
        with _tracking_uri(tracking_uri):  # MLflow's global URI (and MLFLOW_TRACKING_URI) as it was afterwards
            model = mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        from pipeline.cli.errors import one_line

        trial = (sweep_trial_without_model(uri, tracking_uri) or evaluation_without_model(uri, tracking_uri)
                 or unfinished_without_model(uri, tracking_uri))
        if trial is not None:
            raise PredictError(trial) from None
        raise PredictError(f"cannot load the model {uri} from {tracking_uri}: {one_line(error)[:300]} (was the run "
                           "logged with logger.mlflow.log_model=false? then pass its checkpoint file instead)") from None
    try:
        python_model = model.unwrap_python_model()
    except Exception:
        python_model = None
    if not isinstance(python_model, RawRowsModel) and type(python_model).__name__ != "RawRowsModel":
        raise PredictError(f"{uri} is not a model that takes raw rows (it was logged by a data set without a raw "
                           "input adapter, e.g. scikit-learn's digits); load it with "
                           "mlflow.pytorch.load_model")
    adapter = python_model.adapter
    return Predictor(_logged_predict(model, python_model), adapter.input_schema(), uri,
                     getattr(adapter, "accepts_missing", True),
                     getattr(adapter, "decimal", "."), getattr(adapter, "file_columns", None),
                     getattr(adapter, "file_target", None), getattr(python_model, "positive_class", None), adapter)


def _logged_predict(model, python_model) -> Callable:
    """The logged model's own ``predict`` (its code and adapter, as stored with it) on a batch of raw rows, without
    MLflow's check of the signature: every raw column is typed "any" there, so MLflow looks at each cell in Python
    (~4 us a cell: most of a table model's time) to let it through unchanged. What that check does to a DataFrame
    whose columns are the model's is done here in bulk: each column rebuilt from its values, as MLflow rebuilds it
    (``pd.Series([cell for cell in column])``, e.g. a nullable integer column becomes an object one), so the model
    reads what ``mlflow.pyfunc.load_model(...).predict`` hands it and answers alike. pipeline-predict has checked the
    columns (:func:`_check_columns`) and passes those the model reads, in its order; anything else (another frame,
    a signature of other types or with params) goes through MLflow's ``predict`` as before."""
    import pandas as pd

    meta = model.metadata
    schema = meta.get_input_schema()
    try:
        from mlflow.types.schema import AnyType

        # a signature of required raw columns typed "any", no params, as log_model_parts writes it
        plain = (schema is not None and schema.has_input_names() and not schema.is_tensor_spec()
                 and meta.get_params_schema() is None and not meta._is_signature_from_type_hint()
                 and not meta._is_type_hint_from_example()
                 and all(isinstance(spec.type, AnyType) and spec.required for spec in schema.inputs))
    except Exception:  # another MLflow: its own check, as before
        plain = False
    names = schema.input_names() if plain else None
    unchanged = ("float64", "int64", "bool")  # numpy columns rebuilt from their values are the same column

    def predict(frame):
        if names is None or not isinstance(frame, pd.DataFrame) or list(frame.columns) != names:
            return model.predict(frame)
        rebuilt = {name: frame[name] if str(frame[name].dtype) in unchanged else
                   pd.Series(frame[name].tolist(), index=frame.index, name=name) for name in names}
        return python_model.predict(None, pd.DataFrame(rebuilt))

    return predict


def _run_of_model_uri(uri: str, tracking_uri: str):
    """(client, run) of a ``runs:/<id>/...`` URI, or None (another kind of URI, or the store cannot say)."""
    from mlflow import MlflowClient

    parts = uri.split("/")
    if not uri.startswith("runs:/") or len(parts) < 2:
        return None
    try:
        client = MlflowClient(tracking_uri)
        return client, client.get_run(parts[1])
    except Exception:  # the store cannot say: the plain message then
        return None


def unfinished_without_model(uri: str, tracking_uri: str) -> Optional[str]:
    """Why ``runs:/<id>/model`` of a run that did not finish is absent (None for other runs and URIs)."""
    from pipeline.cli.rerun import unfinished_run

    found = _run_of_model_uri(uri, tracking_uri)
    unfinished = unfinished_run(found[1], "its model") if found else None
    return f"{unfinished}; or answer with a checkpoint file it wrote" if unfinished else None


def evaluation_without_model(uri: str, tracking_uri: str, verb: str = "predict") -> Optional[str]:
    """Why ``runs:/<id>/model`` of a pipeline-eval run is absent (it logs metrics and predictions, not the model or
    a checkpoint), naming the run it evaluated; None for other runs. pipeline-eval says it too."""
    from pipeline.cli.rerun import evaluation_refused

    found = _run_of_model_uri(uri, tracking_uri)
    return evaluation_refused(found[1], verb) if found else None


def sweep_trial_without_model(uri: str, tracking_uri: str, verb: str = "predict") -> Optional[str]:
    """Why ``runs:/<id>/model`` of a sweep's trial is absent (its checkpoint too), and which run to ``verb`` with
    instead; None for other runs. pipeline-eval says it too."""
    found = _run_of_model_uri(uri, tracking_uri)
    if found is None:
        return None
    client, run = found
    run_id, tags = run.info.run_id, run.data.tags
    if "sweep.study_name" in tags and "sweep.trial_number" not in tags:  # the sweep's parent run
        best = tags.get("best.run_id")
        instead = f"{verb} with its best run, {best}" if best else (
            "the sweep's best trial, trained again when the sweep ends, has one")
        return (f"run {run_id} is the parent run of the sweep '{tags['sweep.study_name']}', which holds the "
                f"study's table and plots, not a model: {instead}")
    if "sweep.trial_number" not in tags or tags.get("sweep.role") == "final":
        return None
    try:
        parent = tags.get("mlflow.parentRunId")
        best = client.get_run(parent).data.tags.get("best.run_id") if parent else None
    except Exception:  # the store cannot say: the plain message then
        return None
    instead = f"{verb} with the sweep's best run, {best}" if best else (
        "the sweep's best trial, trained again when the sweep ends, has them")
    return (f"run {run_id} is trial {tags['sweep.trial_number']} of the sweep '{tags.get('sweep.study_name', '?')}': "
            "a trial logs no model or checkpoint (hydra.sweeper.trial_artifacts=false, trial_checkpoints=false); "
            f"{instead}")


def _from_checkpoint(path: Path) -> Predictor:
    import torch
    from omegaconf import OmegaConf

    from pipeline.data.base import DataSpec
    from pipeline.config import ConfigError, refuse_damaged, written_by_torch_save
    from pipeline.models import build_model, weights_from_checkpoint
    from pipeline.tasks import build_task_module
    from pipeline.train import building
    from pipeline.tracking.pyfunc_model import predict_frame

    if not path.is_file():
        raise PredictError(f"{path}: no such checkpoint file")
    if not written_by_torch_save(path):
        raise PredictError(f"{path}: not a PyTorch checkpoint (not a file torch.save or Lightning writes); give a "
                           "run's <output dir>/checkpoints/*.ckpt, its MLflow run id or a runs:/<id>/model URI")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    needed = {"config": run_dir / "config.yaml", "spec": run_dir / "data" / "model_spec.json",
              "adapter": run_dir / "data" / "preprocessing.json"}
    absent = [str(p) for p in needed.values() if not p.is_file()]
    if absent == [str(needed["adapter"])]:  # the run ended (model_spec.json is written beside it), its data had none
        raise PredictError(f"{path}: its run's data has no raw input adapter ({needed['adapter'].name} is written for "
                           "tables, image files and texts; a data set such as scikit-learn's digits is read as "
                           "tensors), so there are no files or rows to predict on; give tensors to the model itself: "
                           "the run's logged model (mlflow.pytorch.load_model) or this checkpoint's state_dict")
    if absent:
        raise PredictError(f"{path}: the run folder {run_dir} lacks {', '.join(absent)} (a checkpoint is read with "
                           "its run's config.yaml and data/, written when the run ends; a run without them can be "
                           "predicted from its MLflow run id)")
    cfg = OmegaConf.load(needed["config"])
    target = str(cfg.model.get("_target_", ""))
    if not target.startswith("pipeline.models."):
        # a model of one's own (--config-dir): the folder's config.yaml is not trusted to import code, but the run's
        # logged model carries its code; "not one of the pipeline's models; refusing it" said neither
        try:
            run_id = torch.load(path, map_location="cpu", weights_only=True).get("mlflow_run_id")
        except Exception:  # damaged, or more than tensors: the run id is then not told
            run_id = None
        raise PredictError(f"{path}: its run's model is model._target_={target!r}, not one of the pipeline's models "
                           "(pipeline.models.*), and a checkpoint's config.yaml builds no other class (a file in a "
                           "folder runs no code of its own); predict with the run's logged model, which carries its "
                           f"code: pipeline-predict {run_id or '<its MLflow run id>'}")
    spec = DataSpec.from_dict(json.loads(needed["spec"].read_text()))
    state = json.loads(needed["adapter"].read_text())
    if not str(state.get("module", "")).startswith("pipeline.data."):
        raise PredictError(f"{needed['adapter']}: names {state.get('module')!r}, not a pipeline data module; refusing it")
    import importlib

    adapter = getattr(importlib.import_module(state["module"]), state["class"]).from_dict(state)
    import pickle

    from pipeline.cli.errors import one_line

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # an intact file holding more than tensors: weights_only refuses it
        raise PredictError(f"{path}: refused, the file holds more than tensors and plain values "
                           f"({one_line(error)[:200]}); checkpoints are loaded with torch.load(weights_only=True), "
                           "so only load files you trust") from None
    except Exception as error:  # a truncated or damaged file, or not one torch.save wrote
        raise PredictError(f"{path}: not a readable PyTorch checkpoint ({one_line(error)[:300]}); a file cut short "
                           "(a full disk, a copy that did not finish) cannot be read: take the run's other "
                           "checkpoint or its MLflow run id") from None
    refuse_damaged(path, PredictError)
    try:
        # the checkpoint holds every weight: a pretrained model's own (model.weights) need not be at hand
        with weights_from_checkpoint(), building("model"):
            model = build_model(cfg.model, spec)
    except ConfigError as error:  # the architecture's own files (model.name's folder) are gone, ...
        run_id = checkpoint.get("mlflow_run_id") if isinstance(checkpoint, dict) else None
        raise PredictError(f"{path}: cannot rebuild the run's model: {one_line(error)}; the checkpoint holds its "
                           "weights, not what model.name reads to build it: put that back, or predict with the "
                           f"run's id{f' ({run_id})' if run_id else ''}, whose logged model needs neither") from None
    try:
        weights = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(weights)
        from pipeline.distributed import weights_dtype

        dtype = weights_dtype(cfg.get("trainer", {}).get("precision"))
        if dtype is not None:  # trained in float64 or bfloat16 (trainer.precision=64-true, bf16-true): computes in it
            model.to(dtype)
    except Exception as error:
        raise PredictError(f"{path}: not a checkpoint of this run's model ({one_line(error)[:300]})") from None
    predictor = build_task_module(cfg.task, model, None, None, spec).predictor().eval()

    def predict(frame):
        return predict_frame(adapter, predictor, spec.task_kind, spec.class_names, frame)

    return Predictor(predict, adapter.input_schema(), str(path), getattr(adapter, "accepts_missing", True),
                     getattr(adapter, "decimal", "."), getattr(adapter, "file_columns", None),
                     getattr(adapter, "file_target", None), getattr(predictor, "positive_class", None), adapter)


# ----- writing ------------------------------------------------------------------------------------------
OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
                  ".xlsx": "excel"}
EXCEL_MAX_ROWS = 1_048_576  # rows of a sheet, its header included
# a text output compressed by its last extension (predictions.csv.gz): the stream compressions of data.tables
OUTPUT_COMPRESSIONS = (".gz", ".bz2", ".xz")


class PredictionWriter:
    """Appends batches to a temporary file beside ``path``, renamed to ``path`` once every batch is in: a
    failed run leaves no half-written predictions behind. CSV, TSV and JSON lines may be compressed
    (``.csv.gz``, ``.bz2``, ``.xz``); an ``.xlsx`` workbook gets one sheet, ``predictions``."""

    def __init__(self, path: Path):
        from pipeline.data.tables import compression, stream_opener, table_suffix

        compressed = compression(path)
        self.format = OUTPUT_FORMATS.get(table_suffix(path))
        self.opener = stream_opener(compressed)  # None: not compressed
        if self.format is None or (compressed and (self.opener is None or self.format in ("parquet", "excel"))):
            raise PredictError(f"--output {path}: unknown extension; use one of {', '.join(OUTPUT_FORMATS)} (the text "
                               f"ones may end in {', '.join(OUTPUT_COMPRESSIONS)} to be compressed)")
        if not path.parent.is_dir():
            raise PredictError(f"--output {path}: the folder {path.parent} does not exist")
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.parquet = None
        self.book = None  # an .xlsx output: a write-only workbook and its sheet
        self.sheet = None
        self.text = None  # the open output of a text format
        self.rows = 0

    def _open_text(self):
        if self.opener is None:
            return self.partial.open("w", encoding="utf-8", newline="")
        return self.opener(self.partial, "wt", encoding="utf-8", newline="")

    def write(self, frame) -> None:
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.partial, table.schema)
            self.parquet.write_table(table)
        elif self.format == "excel":
            self._write_sheet(frame)
        else:
            if self.text is None:
                self.text = self._open_text()
            if self.format == "jsonl":
                frame.to_json(self.text, orient="records", lines=True)
            else:
                frame.to_csv(self.text, sep="\t" if self.format == "tsv" else ",", index=False, header=self.rows == 0)
        self.rows += len(frame)

    def _write_sheet(self, frame) -> None:
        if self.rows + len(frame) >= EXCEL_MAX_ROWS:
            raise PredictError(f"--output {self.path}: more than {EXCEL_MAX_ROWS - 1:,} predictions, what a sheet holds; "
                               "write them to .csv or .parquet")
        import pandas as pd

        if self.book is None:
            import openpyxl

            self.book = openpyxl.Workbook(write_only=True)
            self.sheet = self.book.create_sheet("predictions")
            self.sheet.append([str(c) for c in frame.columns])
        for row in frame.itertuples(index=False):  # empty cells for missing values; numpy scalars as Python's
            self.sheet.append([None if pd.isna(value) else value.item() if hasattr(value, "item") else value
                               for value in row])

    def close(self, success: bool) -> None:
        if self.book is not None:
            if success:
                self.book.save(self.partial)
            self.book = None
        if self.parquet is not None:
            self.parquet.close()
        if self.text is not None:
            self.text.close()
        if success and self.partial.exists():
            os.replace(self.partial, self.path)
        elif self.partial.exists():
            self.partial.unlink()


def iter_inputs(predictor: Predictor, args: argparse.Namespace):
    """``args.input`` in DataFrames of ``args.batch_size`` rows: a table as it is; a folder of images or a
    ``.txt`` file of texts as a one-column table (that column then kept in the output)."""
    from pipeline.data.tables import iter_table

    source = args.input
    [column] = predictor.columns if predictor.reads != "rows" else [None]
    if (args.rename or args.rename_pending) and (source.is_dir() or (source.suffix.lower() == ".txt" and
                                                                  args.format is None)):
        raise PredictError(f"--rename: --input {source} is a {'folder' if source.is_dir() else '.txt file'}, "
                           "which has no columns to rename; it renames the columns of a table")
    if source.is_dir():
        if predictor.reads != "images":
            raise PredictError(f"--input {source} is a folder; this model reads the columns "
                               f"{', '.join(predictor.columns)}: give it a table")
        from collections import Counter

        from pipeline.data.image_files import _image_files, say_other_files

        others: Counter = Counter()
        files = _image_files(source, others)
        say_other_files(f"--input {source}", others)
        if not files:
            raise PredictError(f"--input {source}: no image files in this folder or below it")
        yield from _one_column(column, [str(source / f) for f in files], args)
        return
    from pipeline.data.raw_inputs import IMAGE_EXTENSIONS  # not image_files': it imports Lightning

    if source.suffix.lower() in IMAGE_EXTENSIONS and args.format is None:  # one image file: one prediction
        if predictor.reads != "images":
            raise PredictError(f"--input {source} is an image file, and this model reads the columns "
                               f"{', '.join(predictor.columns)}: give it a table")
        if not source.is_file():
            raise PredictError(f"--input {source}: no such file")
        yield from _one_column(column, [str(source)], args)
        return
    if source.suffix.lower() == ".txt" and args.format is None:
        if predictor.reads != "texts":
            raise PredictError(f"--input {source}: a .txt file is read as one text per line, and this model reads "
                               f"the columns {', '.join(predictor.columns)}: give it a table")
        from pipeline.data.text import text_lines
        from pipeline.data.text_stream import decode_text

        if not source.is_file():
            raise PredictError(f"--input {source}: no such file")
        data = source.read_bytes()
        try:  # decoded once: a UTF-8 file (nearly every one) was decoded a second time only to check that it is
            text = data.decode("utf-8").removeprefix("\ufeff")  # as decode_text reads it, its BOM left out
        except UnicodeDecodeError as error:
            text = decode_text(source, data)
            if not data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its BOM: read as such, no notice
                _say_not_utf8(source, error.start, data[error.start])
        lines = text_lines(text)
        if lines and lines[-1] == "":
            lines.pop()  # the newline that ends the last line
        yield from _one_column(column, lines, args)
        return
    decimal = args.decimal or predictor.decimal
    if args.rename_pending:
        _resolve_renames(predictor, args, decimal)
    original = {name: column for column, name in args.rename.items()}
    required = [original.get(c, c) for c in predictor.columns]  # as the file names them
    # kept columns the model does not read are copied as written (ids with leading zeros, codes)
    text_columns = [original.get(c, c) for c in args.keep if c not in predictor.columns
                    and original.get(c, c) not in predictor.columns]
    encoding = args.encoding or (_texts_encoding(source, args.format) if predictor.reads == "texts" else None)
    for batch in iter_table(source, args.batch_size, args.format, args.sep, encoding=encoding, decimal=decimal,
                            flags=True, names=predictor.file_columns, required=required, sheet=args.sheet,
                            skip_rows=args.skip_rows,
                            text_columns=text_columns, target=predictor.file_target,
                            literal_columns=[original.get(column, column)] if predictor.reads == "texts" else ()):
        if args.rename:
            _check_renames(batch, args)
            renamed = batch.rename(columns=args.rename)
            for column, name in args.rename.items():  # a column the model reads, kept under another name: a copy
                if column in predictor.columns and column not in renamed and name in args.keep:
                    renamed[column] = batch[column]
            batch = renamed
        if decimal != predictor.decimal:
            batch = _written_as_trained(batch, predictor, decimal)
        if predictor.reads == "images" and column in batch:
            from pipeline.data.image_files import listed_path

            written = batch[column]
            batch = batch.copy()
            # relative paths from the table's folder, a Windows listing's backslashes read as training reads them
            batch[column] = [p if not isinstance(p, str) or Path(p).is_absolute()
                             else str(source.parent / listed_path(source.parent, p)) for p in written]
            batch.attrs["as_written"] = {column: written}  # what --keep copies: the paths as the table gives them
        yield batch


def _texts_encoding(source: Path, fmt: Optional[str]) -> Optional[str]:
    """How to read a CSV/TSV of texts (no --encoding given) as training reads its files: None (the table's own
    guess) when it is UTF-8 or UTF-16 with its BOM; else line by line, each line UTF-8 or else Windows-1252
    (``BY_LINE_ENCODING``), with the notice. Read whole as Windows-1252, as a table is, one stray byte turned every
    accented word of the UTF-8 lines into another word, and their answers changed."""
    import codecs

    from pipeline.data.text_stream import BY_LINE_ENCODING

    if (fmt or source.suffix.lower().lstrip(".")) not in ("csv", "tsv") or not source.is_file():
        return None
    decoder, position = codecs.getincrementaldecoder("utf-8")(), 0
    with open(source, "rb") as file:
        if file.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            return None
        file.seek(0)
        while True:
            block = file.read(1 << 24)
            try:
                decoder.decode(block, final=not block)  # the last call: a sequence cut off at the end is an error too
            except UnicodeDecodeError as error:
                at = position + error.start - len(decoder.getstate()[0])  # bytes held from the previous block
                file.seek(at)
                _say_not_utf8(source, at, file.read(1)[0])
                return BY_LINE_ENCODING
            if not block:
                return None
            position += len(block)


def _say_not_utf8(source: Path, position: int, byte: int) -> None:
    """The notice a table that is not UTF-8 gets (tables.py), for texts whose byte ``position`` (``byte``) is not
    UTF-8: their lines that are not UTF-8 are read as training reads them, and a wrong guess would be answered
    without a word."""
    print(f"Note: {source} is not UTF-8 (byte {position} is 0x{byte:02x}); its lines that are not "
          "were read as Windows-1252 (Latin-1 where that fails), as training reads them. If a text looks wrong, "
          "convert the file to UTF-8", file=sys.stderr, flush=True)


def _written_as_trained(batch, predictor: Predictor, decimal: str):
    """``batch`` with the numbers of the model's numeric columns that were read as text (a column that also holds
    a missing-value code, a currency sign, thousands separators) written again with the training file's decimal
    mark, which the model reads them with; cells that read alike either way (integers, dates) and cells that are
    no number (the model's error names them) stay as they are."""
    import math

    import pandas as pd

    from pipeline.data.preprocessing import cell_number

    def rewrite(cell):
        if not isinstance(cell, str):
            return cell
        value = cell_number(cell, decimal)
        if not math.isfinite(value) or value == cell_number(cell, predictor.decimal):
            return cell
        return repr(value).replace(".", ",") if predictor.decimal == "," else repr(value)

    texts = [c for c in predictor.numeric if c in batch and not pd.api.types.is_numeric_dtype(batch[c].dtype)]
    if not texts:
        return batch
    batch = batch.copy()
    for column in texts:
        batch[column] = batch[column].map(rewrite)
    return batch


def _check_renames(batch, args: argparse.Namespace) -> None:
    columns = [str(c) for c in batch.columns]
    absent = [c for c in args.rename if c not in columns]
    if absent:
        raise PredictError(f"--rename {absent[0]}={args.rename[absent[0]]}: {absent[0]!r} is not a column of "
                           f"{args.input}; its columns are {columns}")
    taken = [name for column, name in args.rename.items() if name in columns and name not in args.rename]
    if taken:
        raise PredictError(f"--rename: {args.input} has a column {taken[0]!r} already; renaming another to it would "
                           "give two columns of that name")


def _one_column(column: str, values: list[str], args: argparse.Namespace):
    """``values`` as a table of one column, in batches; the column is kept in the output (it names the row)."""
    import pandas as pd

    args.keep = [column, *[c for c in args.keep if c != column]]
    for start in range(0, len(values), args.batch_size):
        chunk = values[start : start + args.batch_size]
        yield pd.DataFrame({column: chunk}, index=range(start, start + len(chunk)))


def predict_file(predictor: Predictor, args: argparse.Namespace) -> int:
    """Stream ``args.input`` through ``predictor`` into ``args.output``; returns the number of rows."""
    import pandas as pd

    writer = PredictionWriter(args.output)
    from pipeline.data.preprocessing import InputDrift

    drift = InputDrift(predictor.adapter) if predictor.reads == "rows" else None
    skipped = BlankRows()
    unreadable = UnreadableFiles()
    empty = EmptyTexts(predictor.columns[0] if predictor.reads == "texts" else None)
    if predictor.reads == "texts" and predictor.adapter is not None:
        predictor.adapter.texts_cut = 0  # counted by the adapter as it encodes (texts longer than max_length)
    progress = _progress_bar(args)
    success, header_only = False, None
    try:
        for batch in iter_inputs(predictor, args):
            if writer.rows == 0:
                _check_columns(batch, predictor, args)
            if len(batch) == 0:
                header_only = batch
                continue
            skipped.count(batch)  # the rows read, before any unreadable image is left out
            predictions, batch = _predict_readable(predictor, batch, args, unreadable)
            if predictions is None:
                continue
            if drift is not None:
                drift.count(batch)
            if args.threshold is not None:
                predictions = _cut_off(predictions, args.threshold, predictor.positive_class)
            clash = [c for c in args.keep if c in predictions.columns]
            if clash:
                raise PredictError(f"--keep {clash[0]}: the output has a column {clash[0]!r} of its own; keep it under "
                                   f"another name: --rename {clash[0]}=<name> --keep <name>")
            kept = batch[args.keep].copy()
            for name, written in batch.attrs.get("as_written", {}).items():
                if name in kept:
                    kept[name] = written
            empty.count(batch)
            writer.write(pd.concat([kept.reset_index(drop=True), predictions.reset_index(drop=True)], axis=1))
            if progress is not None:
                progress.update(len(batch))
        if writer.rows == 0 and header_only is not None:
            # a header without rows (a batch job's day without records): the output's header alone, its columns
            # those it would have had, as mlflow.pyfunc answers an empty frame
            predictions = _predict(predictor, header_only, args.input)
            if args.threshold is not None:
                predictions = _cut_off(predictions, args.threshold, predictor.positive_class)
            writer.write(pd.concat([header_only[args.keep].reset_index(drop=True),
                                    predictions.reset_index(drop=True)], axis=1))
        elif writer.rows == 0 and unreadable.files:
            raise PredictError(f"--input {args.input}: not one of its {len(unreadable.files)} image files could be "
                               f"read (--skip-bad-files), e.g. {unreadable.files[0][1]}")
        elif writer.rows == 0:
            raise PredictError(f"--input {args.input}: no data rows")
        for line in drift.messages() if drift is not None else ():
            print(f"Warning: {line}", file=sys.stderr, flush=True)
        skipped.note(args.input, writer.rows)
        unreadable.note(args.input, writer.rows)
        empty.note(args.input)
        cut = getattr(predictor.adapter, "texts_cut", 0) if predictor.reads == "texts" else 0
        if cut:
            length = getattr(predictor.adapter, "max_length", "?")
            print(f"Note: {cut} of the {writer.rows} texts of {args.input} {'is' if cut == 1 else 'are'} longer than the "
                  f"model's max_length "
                  f"({length} tokens, data.max_length in training): it answered from their first {length}",
                  file=sys.stderr, flush=True)
        success = True
    finally:
        writer.close(success)
        if progress is not None:
            progress.close()
    return writer.rows


class BlankRows:
    """The rows of a table that reading it skipped (blank lines: a row with nothing in it), found as gaps in the
    batches' row numbers; ``note`` says how many, and which, so that nobody pairs the output's rows with the
    input's one by one unawares (a one-column file of image paths with an empty cell lost that row)."""

    def __init__(self):
        self.next, self.rows = 0, []

    def count(self, batch) -> None:
        import pandas as pd

        if not isinstance(batch.index, pd.RangeIndex) and not pd.api.types.is_integer_dtype(batch.index):
            return
        present = set(int(i) for i in batch.index)
        self.rows += [i for i in range(self.next, max(present) + 1) if i not in present]
        self.next = max(present) + 1

    def note(self, source: Path, written: int) -> None:
        if not self.rows:
            return
        shown = ", ".join(map(str, self.rows[:5])) + (", ..." if len(self.rows) > 5 else "")
        plural = "s" if len(self.rows) > 1 else ""
        print(f"Note: {len(self.rows)} blank row{plural} of {source} skipped (row{plural} {shown}; 0 is the first data "
              f"row): the output has {written} rows for {written + len(self.rows)}; keep an id column (--keep) to "
              "pair them", file=sys.stderr, flush=True)


def _predict_readable(predictor: Predictor, batch, args: argparse.Namespace, unreadable: "UnreadableFiles"):
    """``batch``'s predictions and the rows they answer: all of them, or (--skip-bad-files, an image model) those
    whose image could be read, the others counted in ``unreadable``; (None, None) when none could be."""
    try:
        return _predict(predictor, batch, args.input), batch
    except PredictError:
        if not (args.skip_bad_files and predictor.reads == "images"):
            raise
    import pandas as pd

    answers, kept = [], []
    for index in batch.index:  # a batch with an unreadable file: each file alone, to find which
        row = batch.loc[[index]]
        try:
            answers.append(_predict(predictor, row, args.input))
        except PredictError as error:
            if not any(why in str(error) for why in UnreadableFiles.REASONS):
                raise
            unreadable.files.append((int(index), str(error).split("; --skip-bad-files")[0]))
            continue
        kept.append(index)
    if not kept:
        return None, None
    return pd.concat(answers, ignore_index=True), batch.loc[kept]


class UnreadableFiles:
    """The image files left out as unreadable (--skip-bad-files), with why; ``note`` names them."""

    REASONS = (": cannot read the image", " is empty at index ")

    def __init__(self):
        self.files: list[tuple[int, str]] = []  # (data row, the reason as the refusal would have said it)

    def note(self, source: Path, written: int) -> None:
        if not self.files:
            return
        plural = "s" if len(self.files) > 1 else ""
        shown = "; ".join(reason for _, reason in self.files[:3]) + ("; ..." if len(self.files) > 3 else "")
        # a table's output rows pair with its rows only where the left-out ones are known (a folder's keep their path)
        rows = ", ".join(str(row) for row, _ in self.files[:10]) + (", ..." if len(self.files) > 10 else "")
        where = f" (row{plural} {rows}; 0 is the first data row)" if source.is_file() else ""
        print(f"Note: {len(self.files)} unreadable image file{plural} of {source}{where} left out (--skip-bad-files): "
              f"{shown}; the output has {written} rows for {written + len(self.files)}", file=sys.stderr, flush=True)


class EmptyTexts:
    """The rows whose text is empty or only spaces: the model answers them from no words at all (the same answer
    for each, its bias), which is no reading of a text; ``note`` says how many, and which, so that nobody takes those
    answers for judgements (an empty line of a .txt file keeps its row, so that lines and answers pair up)."""

    def __init__(self, column: str | None):
        self.column, self.rows = column, []

    def count(self, batch) -> None:
        if self.column is None or self.column not in batch:
            return
        self.rows += [int(i) for i, text in zip(batch.index, batch[self.column])
                      if not isinstance(text, str) or not text.strip()]

    def note(self, source: Path) -> None:
        if not self.rows:
            return
        shown = ", ".join(map(str, self.rows[:5])) + (", ..." if len(self.rows) > 5 else "")
        plural = "s" if len(self.rows) > 1 else ""
        first = "line" if source.suffix.lower() == ".txt" else "data row"
        print(f"Note: {len(self.rows)} empty text{plural} in {source} (row{plural} {shown}; 0 is the first {first}): "
              f"the model answered {'them' if plural else 'it'} from no words, the same answer for every empty text",
              file=sys.stderr,
              flush=True)


def _check_columns(batch, predictor: Predictor, args: argparse.Namespace) -> None:
    columns = [str(c) for c in batch.columns]
    absent = [c for c in predictor.columns if c not in columns]
    renamed_away = [c for c in absent if c in args.rename]
    if renamed_away:
        column, name = renamed_away[0], args.rename[renamed_away[0]]
        raise PredictError(f"--rename {column}={name}: the model reads {column!r}, and {args.input} (after --rename) has "
                           f"{name!r} in its place; --rename COLUMN=NAME reads the file's COLUMN as the model's NAME: "
                           f"leave {column} out of it (or add --keep {name} to copy {column!r} into the output as "
                           f"{name!r})")
    if absent:
        from pipeline.data.tables import header_hint, separator_hint

        raise PredictError(f"--input {args.input} has no column {', '.join(map(repr, absent))}, which the model reads "
                           f"(it reads {', '.join(predictor.columns)})"
                           + (_nearest_renames(absent, columns, predictor) or
                              separator_hint(columns, flags=True) or header_hint(columns, flags=True) or
                              _texts_column_rename(absent, columns, predictor, args) or
                              f"; its columns{' after --rename' if args.rename else ''} are {columns}: --rename COLUMN={absent[0]} reads one of them as "
                              f"{absent[0]!r}" + ("; or add it: empty cells count as missing"
                                                  if predictor.accepts_missing and predictor.reads == "rows" else "")))
    unknown = [c for c in args.keep if c not in columns]
    if unknown:
        raise PredictError(f"--keep {', '.join(unknown)}: not a column of {args.input}; its columns are {columns}")


def _texts_column_rename(absent: list[str], columns: list[str], predictor: Predictor, args) -> str:
    """For a text model, the ``--rename`` of the input's column named as exported tables name their texts (``comment``,
    ``review``, ``text``: ``data.text``'s names), pasteable; else ``""``."""
    import shlex

    from pipeline.data.text import TEXT_COLUMN_NAMES

    if predictor.reads != "texts":
        return ""
    likely = next((c for c in columns if c.lower() in TEXT_COLUMN_NAMES and c not in predictor.columns), None)
    if likely is None:
        return ""
    return (f"; its columns{' after --rename' if args.rename else ''} are {columns}: --rename "
            f"{shlex.quote(f'{likely}={absent[0]}')} reads its texts as {absent[0]!r}")


def _nearest_renames(absent: list[str], columns: list[str], predictor: Predictor) -> str:
    """``; did you mean 'My Col'? '--rename=My Col=my col' reads it as 'my col'`` for the columns the model reads
    that the input writes otherwise (another case, a small typo), the flags quoted for a shell; else ``""``."""
    import shlex

    from pipeline.data.tabular import _nearest_name, nearest_column

    others = [c for c in columns if c not in predictor.columns]  # a column the model reads is not renamed away
    pairs = [(close, name) for name in absent if (close := nearest_column(name, others)) is not None]
    if not pairs:
        return ""
    flags = " ".join(shlex.quote(f"--rename={column}={name}") for column, name in pairs)
    if len(pairs) == 1:
        [(column, name)] = pairs
        return f"{_nearest_name(name, others)} {flags} reads it as {name!r}"
    return (f"; did you mean {', '.join(f'{column!r} for {name!r}' for column, name in pairs)}? {flags} read them "
            "under the model's names")


def _predict(predictor: Predictor, batch, source: Path):
    try:
        return predictor.predict(batch[predictor.columns])
    except Exception as error:
        from pipeline.cli.errors import one_line

        if type(error).__name__ in ("RawInputError", "MlflowException"):
            message = one_line(error)
            if "Error: " in message:  # MLflow quotes the whole batch before saying what is wrong
                message = message.rsplit("Error: ", 1)[1]
            mark = ("," if "written with a decimal comma" in message else
                    "." if "read with a decimal comma, as in training" in message else None)
            if predictor.reads != "rows":  # an image file or a text named by its message: no row index to explain
                where = "" if message.startswith(str(source)) else f"{source}: "
                hint = ("; --skip-bad-files leaves such files out" if predictor.reads == "images" and
                        any(why in message for why in UnreadableFiles.REASONS) else "")
                raise PredictError(f"{where}{message[:400]}{hint}") from None
            raise PredictError(f"{source}: {message[:400]} (index: the data row, 0 for the first)"
                               + (f"; --decimal {mark} reads the file's numbers with {mark!r}" if mark else "")) from None
        raise


def _cut_off(predictions, threshold: float, positive: Optional[str] = None):
    """A binary model's predictions with its ``positive`` class (task.positive_class; None, a model logged before
    it: the second, whose probability column is the last) from ``threshold`` on; the probabilities as they are."""
    import numpy as np

    from pipeline.tracking.pyfunc_model import PREDICTION, PROBABILITY_PREFIX

    probabilities = [c for c in predictions.columns if str(c).startswith(PROBABILITY_PREFIX)]
    if len(probabilities) != 2:
        what = "a regression model" if not probabilities else f"a model of {len(probabilities)} classes"
        raise PredictError(f"--threshold is a binary model's cut-off; this is {what}")
    first, second = (name[len(PROBABILITY_PREFIX):] for name in probabilities)
    if positive is not None and str(positive) == first:
        probabilities, first, second = probabilities[::-1], second, first
    predictions = predictions.copy()
    predictions[PREDICTION] = np.where(predictions[probabilities[1]].to_numpy() >= threshold, second, first)
    return predictions


def _refuse_overwriting_input(args: argparse.Namespace) -> None:
    """--output naming the --input file (by another spelling, or a link to it) would replace the rows with their
    predictions; checked before the model is loaded. An --output that does not exist yet is no input."""
    source, output = args.input, args.output
    if source.is_file() and output.exists() and os.path.samefile(source, output):
        raise PredictError(f"--output {output} is the --input file; the predictions would overwrite it: write them to "
                           "another file")


def _progress_bar(args: argparse.Namespace):
    if args.no_progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(desc="predicting", unit=" rows", file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> None:
    from hydra.errors import InstantiationException

    from pipeline.cli.errors import EXIT_USER_ERROR, closed_stdout_ignored, one_line
    from pipeline.config import ConfigError
    from pipeline.errors import DataError  # pipeline.data.base's, without importing Lightning

    closed_stdout_ignored()  # pipeline-... | head: a closed stdout ends no run FAILED
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own bar is about rows
    try:
        _refuse_overwriting_input(args)
        predictor = load_predictor(args.model, args.tracking_uri)
        rows = predict_file(predictor, args)
    except (PredictError, DataError, ConfigError, InstantiationException) as error:
        if isinstance(error, InstantiationException):  # Hydra's wrapping of what a class raised while built
            if not isinstance(error.__cause__, (DataError, ConfigError)):
                raise
            error = error.__cause__
        print(f"Error: {one_line(error)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    if rows == 0:
        print(f"Note: --input {args.input} has no data rows; {args.output} holds the header only", flush=True)
    else:
        print(f"{rows} predictions written to {args.output}", flush=True)


if __name__ == "__main__":
    main()
