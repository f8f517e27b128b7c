"""The MLflow model of a run whose data takes raw rows: a pandas DataFrame in, predictions out.

    model = mlflow.pyfunc.load_model("runs:/<run id>/model")
    model.predict(pd.read_csv("new.csv"))                  # a table's model: its raw columns
    model.predict(pd.DataFrame({"text": ["a fine film"]}))  # a text model
    model.predict(pd.DataFrame({"path": ["cat.jpg"]}))      # an image model: image files
    # -> prediction (+ probability_<class> per class)

It is logged as an MLflow "model from code": this file is stored with the model as its code, with four
artifacts: the raw input adapter's source file and its state (plain JSON; for tables the fitted
preprocessing, ``pipeline.data.preprocessing``; for texts and images ``pipeline.data.raw_inputs``), the trained network as a ``torch.export`` program, and
``meta.json`` (task kind, class names). Loading therefore runs no pickle and needs mlflow, torch, numpy and
pandas, not this project's package. For that reason this file imports nothing of the project; keep it so.

``pipeline-predict`` uses :func:`predict_frame` with the same adapter and the checkpoint's network, so both
answer alike.
"""
from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
CHUNK_ROWS = 256  # rows predicted at once (and transformed at once, but by adapters that transform in bulk)
# an adapter whose rows are a few numbers each, each row's independent of the others' (``transforms_in_bulk``), is
# handed this many rows at once (a multiple of CHUNK_ROWS), since a table's transform costs ~1 ms a call whatever its
# rows, in pandas' calls per column; the network still answers CHUNK_ROWS at a time, so every number is the same
BULK_ROWS = 64 * CHUNK_ROWS


def predict_frame(adapter, predictor, task_kind: str, class_names: Optional[Sequence[str]],
                  frame: pd.DataFrame) -> pd.DataFrame:
    """Raw rows -> ``prediction`` (a class name, or a value in the target's units) and, for classification,
    ``probability_<class>`` per class; one output row per input row, with the input's index."""
    import torch

    outputs = []
    step = BULK_ROWS if getattr(adapter, "transforms_in_bulk", False) else CHUNK_ROWS
    for start in range(0, len(frame), step):  # bounded memory: images are decoded a chunk at a time
        rows = frame.iloc[start : start + step]
        try:
            inputs = adapter.transform(rows)
        except Exception:
            if step == CHUNK_ROWS:
                raise
            inputs = None  # refused: chunk by chunk, so that the refusal names the cell it always named
        for offset in range(0, len(rows), CHUNK_ROWS):
            # a chunk of the bulk transform in a tensor of its own, as a chunk transformed alone is
            x = (inputs[offset : offset + CHUNK_ROWS].clone() if inputs is not None
                 else adapter.transform(rows.iloc[offset : offset + CHUNK_ROWS]))
            with torch.inference_mode():
                output = predictor(x)  # float64 stays (regression values in the data's units)
                outputs.append((output if output.dtype == torch.float64 else output.float()).cpu().numpy())
    width = len(class_names) if task_kind != "regression" and class_names and len(class_names) > 2 else 1
    output = np.concatenate(outputs) if outputs else np.empty((0, width), dtype=np.float32)
    if task_kind == "regression":
        return pd.DataFrame({PREDICTION: output.reshape(-1).astype(np.float64)}, index=frame.index)
    if output.ndim == 1 or output.shape[1] == 1:  # binary: P(second class)
        positive = output.reshape(-1)
        output = np.stack([1.0 - positive, positive], axis=1)
    names = [str(c) for c in class_names] if class_names else [str(i) for i in range(output.shape[1])]
    columns = {PREDICTION: np.asarray(names, dtype=object)[output.argmax(axis=1)]}
    for position, name in enumerate(names):
        columns[PROBABILITY_PREFIX + name] = output[:, position].astype(np.float64)
    return pd.DataFrame(columns, index=frame.index)


def import_file(path: str):
    """The module in the file ``path``, under a name of its own (nothing installed is shadowed)."""
    spec = importlib.util.spec_from_file_location(f"pipeline_logged_adapter_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_adapter(code_path: str, state_path: str):
    state = json.loads(Path(state_path).read_text())
    return getattr(import_file(code_path), state["class"]).from_dict(state)


class RawRowsModel(PythonModel):
    """Raw rows -> predictions; the parts are read from the model's artifacts in :meth:`load_context`."""

    def __init__(self):
        self.adapter = None
        self.predictor = None
        self.task_kind = "regression"
        self.class_names: Optional[list[str]] = None
        self.positive_class: Optional[str] = None  # a binary model's (task.positive_class); None: logged before it

    def load_context(self, context) -> None:
        import torch  # here, not at the top: MLflow runs this file when it saves the model, which needs no torch

        artifacts = context.artifacts
        meta = json.loads(Path(artifacts["meta"]).read_text())
        self.task_kind, self.class_names = meta["task_kind"], meta.get("class_names")
        self.positive_class = meta.get("positive_class")
        self.adapter = load_adapter(artifacts["adapter_code"], artifacts["adapter_state"])
        if meta.get("predictor_format", "pt2") == "pt2":
            self.predictor = torch.export.load(artifacts["predictor"]).module()
        else:  # a network torch.export could not trace, saved pickled: needs the classes it was built from
            # not a checkpoint: the run's own logged model, unpickled only by whoever loads it (as mlflow.pytorch does)
            self.predictor = torch.load(artifacts["predictor"], weights_only=False).eval()  # logged-model-pickle

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return predict_frame(self.adapter, self.predictor, self.task_kind, self.class_names, rows_of(model_input))


def rows_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a caller meant: MLflow makes ``{"text": ["a", "b"]}`` (a dict of lists, as a serving request sends
    them) one row whose cells are the lists, since the inputs' type is "any"; that row was answered as one text,
    the list's printed form. Cells that are all lists (of one length per row) are spread into one row each."""
    if not isinstance(frame, pd.DataFrame) or not len(frame) or not len(frame.columns):
        return frame
    if not isinstance(frame.iat[0, 0], (list, tuple, np.ndarray)):  # plain rows: not every cell a list (no copy)
        return frame
    cells = frame.to_numpy(dtype=object)
    if not all(isinstance(cell, (list, tuple, np.ndarray)) for cell in cells.ravel()):
        return frame
    lengths = [{len(cell) for cell in row} for row in cells]
    if any(len(each) != 1 for each in lengths):
        raise ValueError(f"the input's columns {list(frame.columns)} hold lists of different lengths; give one value per "
                         "row (a DataFrame, or a dict of equally long lists)")
    return pd.DataFrame({column: [value for cell in frame[column] for value in cell] for column in frame.columns})


if not __name__.startswith("pipeline."):  # run by MLflow as the logged model's code file
    import mlflow.models

    mlflow.models.set_model(RawRowsModel())
