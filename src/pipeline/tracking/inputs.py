"""The data set inputs of a run as MLflow records, from a description of each split (no tensors needed:
the store-writer process builds them from the first row and the split's shape)."""
from __future__ import annotations

import json
import warnings

import numpy as np

from .run import TrackedRun


def split_description(context: str, x, y, digest: str) -> dict:
    """What MLflow records of one split: its first row (for the schema), its shapes, sizes and bytes."""
    x, y = np.asarray(x), np.asarray(y)
    profile = {"features_shape": list(x.shape), "features_size": int(x.size), "features_nbytes": int(x.nbytes),
               "targets_shape": list(y.shape), "targets_size": int(y.size), "targets_nbytes": int(y.nbytes)}
    return {"context": context, "x_head": np.array(x[:1]), "y_head": np.array(y[:1]), "profile": profile,
            "digest": digest}


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
        run.client.log_inputs(run.run_id, datasets=inputs)
