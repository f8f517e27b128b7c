"""Logging the model of a data set with a raw input adapter (table rows, texts, image files) as an MLflow pyfunc model that
takes raw rows (see :mod:`pipeline.tracking.pyfunc_model`, the model's code).

Two halves, so that the store-writer process needs no torch: the training process, which has torch, exports the
network and writes the model's parts into a folder (:func:`write_model_parts`, :func:`model_description`); MLflow's
part, :func:`log_model_parts`, copies them into the run's model and imports neither torch nor the adapter's classes."""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .model_context import _no_environment_scan, _quiet_export, _tracking_uri
from .run import TrackedRun

if TYPE_CHECKING:
    from torch import Tensor, nn

log = logging.getLogger(__name__)


def export_predictor(predictor: "nn.Module", example: "Tensor", path: Path) -> str:
    """Save ``predictor`` as a ``torch.export`` program with a free batch size ("pt2"), or, if it cannot be
    traced, pickled ("pickle"). Returns the format."""
    import torch

    try:
        with warnings.catch_warnings():  # nn.GRU/LSTM re-assign their _flat_weights while traced: torch's note to itself
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            program = torch.export.export(predictor, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        _check_free_batch(program, predictor, example)
        with _quiet_export():
            torch.export.save(program, path)
        return "pt2"
    except Exception as error:
        log.warning("the model cannot be exported as a torch.export program (%s); saving it pickled, so loading "
                    "it needs the pipeline package", " ".join(str(error).split())[:300])
        torch.save(predictor, path)
        return "pickle"


def _check_free_batch(program, predictor: "nn.Module", example: "Tensor") -> None:
    """Raise unless the exported program answers a batch of another size than the example's as the model does: code
    that reads the batch size as a number (``len(x)``) has torch.export fix it at the example's, with only a warning,
    and the logged model would then refuse every other batch size."""
    import torch

    other = example[:1] if len(example) > 1 else example.repeat(2, *([1] * (example.dim() - 1)))
    with torch.no_grad():
        exported, eager = program.module()(other), predictor(other)
    if exported.shape != eager.shape or not torch.allclose(exported, eager, rtol=1e-3, atol=1e-5):
        raise ValueError(f"the exported program answers a batch of {len(other)} unlike the model")


def write_model_parts(folder: Path, predictor: "nn.Module", adapter, spec, example: "Tensor") -> dict[str, str]:
    """The artifacts of the pyfunc model, written into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"adapter_code": folder / "adapter.py", "adapter_state": folder / "adapter.json",
             "predictor": folder / "predictor.pt2", "meta": folder / "meta.json"}
    parts["adapter_code"].write_text(Path(inspect.getsourcefile(type(adapter))).read_text())
    parts["adapter_state"].write_text(json.dumps(adapter.to_dict(), indent=1))
    predictor_format = export_predictor(predictor, example, parts["predictor"])
    # positive_class: a binary model's class of pipeline-predict --threshold (task.positive_class)
    parts["meta"].write_text(json.dumps({"task_kind": spec.task_kind, "class_names": spec.class_names,
                                         "positive_class": getattr(predictor, "positive_class", None),
                                         "predictor_format": predictor_format}, indent=1))
    return {name: str(path) for name, path in parts.items()}


def model_description(adapter, spec) -> dict[str, Any]:
    """What :func:`log_model_parts` needs of the adapter and the data's spec, as plain values: the raw columns, the
    input example (a pandas frame, or (columns, rows) from an adapter that offers ``input_example_rows()``, so that
    a run that has not imported pandas does not import it for this), the task and the requirements besides MLflow's
    own."""
    import torch

    example_rows = getattr(adapter, "input_example_rows", None)
    example = {"input_example_rows": example_rows()} if example_rows is not None else {
        "input_example": adapter.input_example()}
    return {"inputs": [name for name, _ in adapter.input_schema()], **example,
            "task_kind": spec.task_kind, "class_names": spec.class_names, "num_classes": spec.num_classes,
            "requirements": [f"torch=={torch.__version__.split('+')[0]}",
                             *(_pinned(name) for name in getattr(adapter, "requirements", ()))]}


def _pinned(distribution: str) -> str:
    """``name==<installed version>`` (the adapter's own needs: tokenizers for texts, torchvision and pillow
    for images), or the bare name where it is not installed here."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{distribution}=={version(distribution)}"
    except PackageNotFoundError:
        return distribution


def signature(description: dict[str, Any]):
    """Inputs: the raw columns, by name (``description``: :func:`model_description`'s). Their type is "any": MLflow's
    own casting refuses an integer column declared double and a missing value in a column declared integer, so the
    adapter checks values itself."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from .pyfunc_model import PREDICTION, PROBABILITY_PREFIX

    inputs = Schema([ColSpec(AnyType(), name) for name in description["inputs"]])
    if description["task_kind"] == "regression":
        outputs = Schema([ColSpec("double", PREDICTION)])
    else:
        names = description["class_names"] or [str(i) for i in range(description["num_classes"] or 2)]
        outputs = Schema([ColSpec("string", PREDICTION), *(ColSpec("double", PROBABILITY_PREFIX + str(n)) for n in names)])
    return ModelSignature(inputs=inputs, outputs=outputs)


@contextlib.contextmanager
def _no_serving_check():
    """After saving, MLflow loads the model again and predicts its input example, and only warns when that fails
    (a warning the store-writer process never shows): it would import torch there (~2 s of the run's end on this
    project's machine). Skipped; the tests load every kind of raw-rows model and compare its predictions with
    ``pipeline-predict``'s."""
    import mlflow.models.utils as utils

    original = getattr(utils, "_validate_serving_input", None)
    if original is None:  # a later MLflow that validates otherwise
        yield
        return
    utils._validate_serving_input = lambda model_uri, serving_input: None
    try:
        yield
    finally:
        utils._validate_serving_input = original


@contextlib.contextmanager
def _quiet_model_validation():
    """MLflow prints "INFO mlflow.pyfunc: Validating input example against model signature" in every run that
    logs a model: a check of its own, not news for the user (a failure still raises)."""
    logger = logging.getLogger("mlflow.pyfunc")
    previous = logger.level
    logger.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def _no_copy_progress_bars():
    """MLflow draws a progress bar for each artifact it copies into the model folder (four tiny files)."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def log_model_parts(run: TrackedRun, artifacts: dict[str, str], description: dict[str, Any],
                    model_name: str) -> Optional[str]:
    """Log the pyfunc model made of ``artifacts`` (:func:`write_model_parts`' files) under
    ``runs:/<run id>/<model_name>``; returns the predictor's format, or None when the store failed
    (``run.recording()`` keeps the run going)."""
    import mlflow
    import mlflow.pyfunc
    import numpy
    from mlflow.models import Model
    import pandas

    import pipeline.tracking.pyfunc_model as pyfunc_model

    requirements = [*description["requirements"], f"mlflow=={mlflow.__version__}", f"pandas=={pandas.__version__}",
                    f"numpy=={numpy.__version__}"]
    predictor_format = json.loads(Path(artifacts["meta"]).read_text())["predictor_format"]
    example = description.get("input_example")
    if description.get("input_example_rows") is not None:
        columns, rows = description["input_example_rows"]
        example = pandas.DataFrame(rows, columns=columns) if rows else None
    with run.recording("logging the model"), _tracking_uri(run.tracking_uri), _no_environment_scan(), \
            _no_serving_check(), _no_copy_progress_bars(), _quiet_model_validation(), warnings.catch_warnings():
        # an image model has no input example on purpose (this machine's file paths would mean nothing where
        # it is served): MLflow's warning that it lacks one is not news for the user
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        logged = run.client.create_logged_model(run.experiment_id, name=model_name, source_run_id=run.run_id)
        try:
            Model.log(  # what mlflow.pyfunc.log_model does, with this run's id rather than an active run's
                artifact_path=None,
                name=model_name,
                flavor=mlflow.pyfunc,
                flavor_name="pyfunc.ModelFromCode",
                python_model=pyfunc_model.__file__,
                artifacts=artifacts,
                signature=signature(description),
                input_example=example,
                pip_requirements=requirements,  # explicit: inferring them loads the model in a subprocess
                metadata={"pipeline_serialization": f"raw-rows/{predictor_format}"},
                run_id=run.run_id,
                model_id=logged.model_id,
            )
            run.client.finalize_logged_model(logged.model_id, "READY")
        except BaseException:
            run.client.delete_logged_model(logged.model_id)  # so runs:/<id>/model never names a half-saved one
            raise
        return predictor_format
    return None
