"""What a run stores besides params and metrics: the model (an MLflow model that loads and predicts
anywhere), the tokenizer of text tasks, the data set digests, test-set predictions for the plots."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .model_context import _no_environment_scan, _on_cpu, _quiet_export, _tracking_uri  # noqa: F401
from .run import ROWS, TrackedRun

log = logging.getLogger(__name__)

MODEL_NAME = "model"  # load with mlflow.pytorch.load_model("runs:/<run id>/model")
# the logged model's output columns, as pyfunc_model names them (it imports mlflow, which a run's training process
# does not; a test checks the two agree)
PREDICTION, PROBABILITY_PREFIX = "prediction", "probability_"
DIGEST_LENGTH = 16


# ----- data set inputs -------------------------------------------------------------------------------
def tensor_digest(*tensors: Tensor) -> str:
    """A content hash of tensors (values, dtype and shape): equal only for the same data."""
    from pipeline.data.base import rows_digest

    return rows_digest(tensors)


def split_digests(datamodule, kind: str = ROWS) -> dict[str, str]:
    """The digest of each split: of the rows drawn (``setup`` hashed them once), or with ``kind=PREPROCESSED`` of the
    split's tensors, as runs logged before the rows' digests were (kept on the data module: a sweep's worker reuses
    one data module for every trial and hashes its splits once)."""
    if kind == ROWS:
        return dict(getattr(datamodule, "rows_digests", None) or {})
    splits = {"training": datamodule.train_split, "validation": datamodule.val_split,
              "testing": datamodule.test_split}
    key = tuple(id(split) for split in splits.values())
    cached = getattr(datamodule, "_pipeline_split_digests", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    # an empty split (no validation rows: data.val_fraction=0) is no data set input
    digests = {context: tensor_digest(split.x, _as_logged_before(split.y)) for context, split in splits.items()
               if split is not None and len(split)}
    datamodule._pipeline_split_digests = (key, digests)
    return digests


def _as_logged_before(y: Tensor) -> Tensor:
    """Regression targets (float64 since 2026-12-05) digested as the float32 they were held in before, so that the
    digests runs logged earlier (a resumed sweep's, a rerun's source) still compare equal on the same data."""
    return y.float() if y.dtype == torch.float64 else y


def dataset_records(datamodule, kind: str = ROWS) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """MLflow dataset context -> (digest, features, targets) of each split: a streamed data module describes
    its splits without reading them (``dataset_records()``: file paths, sizes and times, whatever the kind); the
    others by their tensors."""
    if hasattr(datamodule, "dataset_records"):
        return datamodule.dataset_records()
    digests = split_digests(datamodule, kind)
    splits = {"training": datamodule.train_split, "validation": datamodule.val_split,
              "testing": datamodule.test_split}
    return {context: (digests[context], split.x.numpy(), split.y.numpy())
            for context, split in splits.items() if context in digests}


def digests_now(datamodule, kind: str = ROWS) -> dict[str, str]:
    """{context: digest} of a data module's splits, of the kind a logged run's are (:func:`digest_kind`)."""
    return {context: digest for context, (digest, _, _) in dataset_records(datamodule, kind).items()}


def log_dataset_inputs(run: TrackedRun, datamodule, name: str) -> dict[str, str]:
    """The train/validation/test splits as MLflow dataset inputs, each with the digest of its contents,
    so that two runs on different data (another data set, split, fold or row limit) are told apart.
    Returns the digests by split."""
    from .inputs import log_dataset_entities, split_description
    from .redact import redact_text

    records = dataset_records(datamodule)
    digests = {context: digest for context, (digest, _, _) in records.items()}
    if not run.active:
        return digests
    described = [split_description(context, features, targets, digest)
                 for context, (digest, features, targets) in records.items()]
    path = getattr(datamodule, "test_path" if getattr(datamodule, "test_file_only", False) else "path", "")
    # masked as the config's data.path is: a file named after a secret (a token in its name, the value of a secret
    # environment variable) reached MLflow's dataset records, which the UI shows as the run's inputs
    source = redact_text(str(path or datamodule.data_dir))
    if hasattr(run, "send_dataset_inputs"):  # a run recorded by the store-writer process
        run.send_dataset_inputs(name, source, described)
    else:
        log_dataset_entities(run, name, source, described)
    return digests


# ----- predictions on the test split -------------------------------------------------------------------
@torch.inference_mode()
def test_predictions(predictor: nn.Module, datamodule, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(true targets, predictor outputs) over the whole test split, in evaluation batches."""
    was_training = predictor.training
    predictor.eval()
    outputs, targets = [], []
    for x, y in datamodule.evaluation_batches(datamodule.test_split):  # a streamed split is not in memory
        output = predictor(x.to(device))  # float64 stays (regression values in the data's units)
        outputs.append((output if output.dtype == torch.float64 else output.float()).cpu())
        targets.append(y)
    predictor.train(was_training)
    return torch.cat(targets).numpy(), torch.cat(outputs).numpy()


def write_predictions(y_true: np.ndarray, outputs: np.ndarray, spec, path: Path,
                      sources: Optional[tuple[str, Sequence[str]]] = None) -> Path:
    """Each test row as a CSV line: ``row`` (its position in the test split), the row's source where the data
    names one (``sources``: ``path`` of an image file, ``text`` of a text: what a misclassified row was), ``target``
    and ``prediction`` (class names, or values in the target's units) and, for classification,
    ``probability_<class>`` per class, the columns the logged model and ``pipeline-predict`` answer with. A binary
    row is predicted class 1 above 0.5, as test/acc counts it."""
    import csv

    from pipeline.tasks.classification import predicted_classes

    outputs = np.asarray(outputs, dtype=np.float64 if spec.task_kind == "regression" else np.float32)
    columns: dict[str, np.ndarray] = {"row": np.arange(len(y_true)).astype(str)}
    if sources is not None and len(sources[1]) == len(y_true):  # not where unreadable files were left out
        columns[sources[0]] = np.asarray(sources[1], dtype=object)
    if spec.task_kind == "regression":
        columns["target"] = np.asarray(y_true, dtype=np.float64).reshape(-1).astype(str)
        columns[PREDICTION] = outputs.reshape(-1).astype(str)
    else:
        probabilities = outputs.reshape(len(outputs), -1)
        if probabilities.shape[1] == 1:  # binary: P(class 1)
            probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
        names = np.asarray([str(n) for n in spec.class_names] if spec.class_names and
                           len(spec.class_names) == probabilities.shape[1] else
                           [str(k) for k in range(probabilities.shape[1])], dtype=object)
        columns["target"] = names[np.asarray(y_true).astype(np.int64).reshape(-1)]
        columns[PREDICTION] = names[predicted_classes(outputs)]
        for k, name in enumerate(names):
            columns[PROBABILITY_PREFIX + name] = probabilities[:, k].astype(str)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values()))
    return path


# ----- the model ---------------------------------------------------------------------------------------
def log_model(run: TrackedRun, predictor: nn.Module, input_example: Tensor, adapter=None, spec=None) -> Optional[str]:
    """Log ``predictor`` (inputs in, predictions in the data's units out) with its signature and an input
    example. Saved as a ``torch.export`` program ("pt2"), which loads without this project's code and
    without unpickling; a model that cannot be exported is saved pickled instead. Returns the format.

    With the data's raw input ``adapter`` (``datamodule.raw_input_adapter()``) in the self-contained form
    :mod:`pipeline.tracking.raw_model` stores (tables: ``to_dict``/``from_dict``, ``input_schema``), the model
    is a pyfunc model that takes raw rows instead: table columns (a table file's, or the named features of
    scikit-learn's bundled and the synthetic tables), a ``text`` column, or a ``path`` column of image files
    (:mod:`pipeline.data.raw_inputs`; image folders, and the 8-bit arrays of MNIST, Fashion-MNIST, CIFAR-10). Data
    sets without one (scikit-learn's digits) log a model that takes the tensors the data module makes."""
    return start_log_model(run, predictor, input_example, adapter, spec)()


def start_log_model(run: TrackedRun, predictor: nn.Module, input_example: Tensor, adapter=None,
                    spec=None) -> Callable[[], Optional[str]]:
    """Start logging the model (see :func:`log_model`); the returned function waits until it is logged and returns
    the format. A run recorded by the store-writer process has it logged there while this process goes on (drawing
    the plots); in-process it is done before this returns. A raw-rows model is exported here first (this process has
    torch, the writer then only MLflow); a model that takes tensors is exported by ``mlflow.pytorch`` in the writer."""
    if not run.active:
        return lambda: None
    raw_rows = adapter is not None and hasattr(adapter, "to_dict") and hasattr(adapter, "input_schema")
    predictor = _on_cpu(predictor).eval()
    example = input_example[:4].cpu()
    if len(example) == 1:  # a one-row test split: torch.export would fix the batch size at the example's 1
        example = example.repeat(2, *([1] * (example.dim() - 1)))
    if raw_rows:
        return _start_log_raw_model(run, predictor, example, adapter, spec)
    if hasattr(run, "start_model"):
        wait = run.start_model(predictor, example)

        def finish() -> Optional[str]:
            logged, in_process = wait()
            # the writer could not load the module (e.g. a class defined in __main__): logged here then
            return logged if in_process is None else _log_model_here(in_process, predictor, example)

        return finish
    logged = _log_model_here(run, predictor, example)
    return lambda: logged


def _start_log_raw_model(run: TrackedRun, predictor: nn.Module, example: Tensor, adapter,
                         spec) -> Callable[[], Optional[str]]:
    """The raw-rows model's parts written to a folder of their own here, then logged by the writer (which deletes
    the folder when done) or in-process."""
    import shutil
    import tempfile

    from .raw_model import log_model_parts, model_description, write_model_parts

    folder = Path(tempfile.mkdtemp(prefix="pipeline-model-"))
    handed_on, artifacts, description = False, None, None
    try:
        with run.recording("logging the model"):  # a part that cannot be written fails the model, not the run
            artifacts = write_model_parts(folder, predictor, adapter, spec, example)
            description = model_description(adapter, spec)
        if description is None:  # noted as the store's failure by run.recording()
            return lambda: None
        if hasattr(run, "start_model_parts"):
            wait = run.start_model_parts(str(folder), artifacts, description, MODEL_NAME)
            handed_on = True
            return wait
        logged = log_model_parts(run, artifacts, description, MODEL_NAME)
        return lambda: logged
    finally:
        if not handed_on:
            shutil.rmtree(folder, ignore_errors=True)


def _log_model_here(run: TrackedRun, predictor: nn.Module, example: Tensor) -> Optional[str]:
    with run.recording("logging the model"), _tracking_uri(run.tracking_uri), _no_environment_scan(), _quiet_export():
        for serialization in ("pt2", "pickle"):
            logged = run.client.create_logged_model(run.experiment_id, name=MODEL_NAME, source_run_id=run.run_id)
            try:
                _log_pytorch_model(run, predictor, example, logged.model_id, serialization)
                run.client.finalize_logged_model(logged.model_id, "READY")
                return serialization
            except Exception as error:
                run.client.delete_logged_model(logged.model_id)  # so runs:/<id>/model never names a half-saved one
                if serialization == "pickle":
                    raise
                log.warning("the model cannot be exported as a torch.export program (%s); logging it pickled",
                            " ".join(str(error).split())[:300])
    return None


def _log_pytorch_model(run: TrackedRun, predictor: nn.Module, example: Tensor, model_id: str, serialization: str):
    import mlflow
    import mlflow.pytorch

    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    options = {}
    if serialization == "pt2":
        # MLflow would load the saved program again to run the example through it; export just ran it.
        # (Not for pickle: there MLflow hands unknown options on to torch.save, which rejects this one.)
        options["validate_serving_input"] = False
    else:
        import cloudpickle

        requirements.append(f"cloudpickle=={cloudpickle.__version__}")
    mlflow.pytorch.log_model(
        predictor,
        name=MODEL_NAME,
        run_id=run.run_id,
        model_id=model_id,
        input_example=example.numpy(),
        pip_requirements=requirements,  # explicit: inferring them loads the model in a subprocess
        serialization_format=serialization,
        metadata={"pipeline_serialization": serialization},
        **options,
    )


# run tags a registered version carries too: which of a sweep's final runs (finalize_top_k) it is, seen in the registry
# without opening each version's run (all its versions looked alike, the best trial's among them)
VERSION_TAGS = ("best", "sweep.rank", "sweep.trial_number", "sweep.objective", "sweep.study_name")


def register_model(tracking_uri: str, run_id: str, name: str) -> str:
    """The model run ``run_id`` logged, as the next version of the registered model ``name`` (created if new) in
    the store's Model Registry, tagged with the run's :data:`VERSION_TAGS`; returns the version number."""
    from mlflow.exceptions import MlflowException

    from .run import open_client

    client = open_client(tracking_uri)
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    run = client.get_run(run_id)
    experiment_id = run.info.experiment_id
    logged = [m for m in client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
              if m.name == MODEL_NAME]
    if not logged:
        raise RuntimeError(f"run {run_id} has no logged model to register")
    model = max(logged, key=lambda m: m.creation_timestamp)
    with _tracking_uri(tracking_uri):  # the registry looks the logged model up through MLflow's global URI
        version = client.create_model_version(name, source=f"models:/{model.model_id}", run_id=run_id,
                                              model_id=model.model_id,
                                              tags={k: v for k, v in run.data.tags.items() if k in VERSION_TAGS})
    return str(version.version)


# ----- the tokenizer -----------------------------------------------------------------------------------
def log_data_artifacts(run: TrackedRun, datamodule, output_dir: Path) -> list[Path]:
    """Files the data module needs to turn raw inputs into model inputs (the tokenizer of a text task),
    saved under ``<output_dir>/data`` and logged under ``data/``."""
    files = datamodule.save_artifacts(output_dir / "data")
    for path in files:
        run.log_artifact(path, "data")
    return files
