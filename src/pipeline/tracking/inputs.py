"""The data set inputs of a run as MLflow records, from a description of each split (no tensors needed:
the store-writer process builds them from the first row and the split's shape)."""
from __future__ import annotations

import json
import threading
import time
import warnings

import numpy as np

from .run import TrackedRun, is_write_conflict


def split_description(context: str, x, y, digest: str) -> dict:
    """What MLflow records of one split: its first row (for the schema), its shapes, sizes and bytes."""
    x, y = np.asarray(x), np.asarray(y)
    profile = {"features_shape": list(x.shape), "features_size": int(x.size), "features_nbytes": int(x.nbytes),
               "targets_shape": list(y.shape), "targets_size": int(y.size), "targets_nbytes": int(y.nbytes)}
    return {"context": context, "x_head": np.array(x[:1]), "y_head": np.array(y[:1]), "profile": profile,
            "digest": digest}


# MLflow records a data set once per experiment: it looks for it, then inserts it. Two runs of one experiment that
# log the same data set at the same moment (a sweep's trials in the store-writer's lanes, parallel workers) both
# insert it, and the second write failed on the table's key; the store was then taken for broken and the run left
# without its tags, metrics and end. One writer per process takes turns here; across processes the loser tries
# again and finds the data set the other one wrote.
_inputs_lock = threading.Lock()
CONFLICT_RETRIES = 3


def log_dataset_entities(run: TrackedRun, name: str, source: str, splits: list[dict]) -> None:
    """One MLflow dataset input per split (``split_description``), tagged with its context."""
    if not run.active:
        return
    with run.recording("logging the data set inputs"):
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = []
        for split in splits:
            with warnings.catch_warnings():  # MLflow registers the local-file source twice and says so
                warnings.filterwarnings("ignore", message=".*dataset source can be interpreted in multiple ways.*")
                dataset = mlflow.data.from_numpy(split["x_head"], targets=split["y_head"], name=name,
                                                 digest=split["digest"], source=source)
            entity = dataset._to_mlflow_entity()
            entity._profile = json.dumps(split["profile"])  # the whole split's, not the first row's
            inputs.append(DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, split["context"])]))

    def send() -> None:
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                with _inputs_lock:
                    run.client.log_inputs(run.run_id, datasets=inputs)
                return
            except Exception as error:
                if attempt == CONFLICT_RETRIES or not is_write_conflict(error):
                    raise
                time.sleep(0.05 * (attempt + 1))

    if run.active:  # a server that does not answer now gets them when it answers again
        run.write("logging the data set inputs", send)
