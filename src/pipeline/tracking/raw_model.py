"""Logging the model of a data set with a raw input adapter (table rows, texts, image files) as an MLflow pyfunc model that
takes raw rows (see :mod:`pipeline.tracking.pyfunc_model`, the model's code)."""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from .model_context import _no_environment_scan, _quiet_export, _tracking_uri
from .run import TrackedRun

log = logging.getLogger(__name__)


def export_predictor(predictor: nn.Module, example: Tensor, path: Path) -> str:
    """Save ``predictor`` as a ``torch.export`` program with a free batch size ("pt2"), or, if it cannot be
    traced, pickled ("pickle"). Returns the format."""
    try:
        program = torch.export.export(predictor, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        with _quiet_export():
            torch.export.save(program, path)
        return "pt2"
    except Exception as error:
        log.warning("the model cannot be exported as a torch.export program (%s); saving it pickled, so loading "
                    "it needs the pipeline package", " ".join(str(error).split())[:300])
        torch.save(predictor, path)
        return "pickle"


def write_model_parts(folder: Path, predictor: nn.Module, adapter, spec, example: Tensor) -> dict[str, str]:
    """The artifacts of the pyfunc model, written into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"adapter_code": folder / "adapter.py", "adapter_state": folder / "adapter.json",
             "predictor": folder / "predictor.pt2", "meta": folder / "meta.json"}
    parts["adapter_code"].write_text(Path(inspect.getsourcefile(type(adapter))).read_text())
    parts["adapter_state"].write_text(json.dumps(adapter.to_dict(), indent=1))
    predictor_format = export_predictor(predictor, example, parts["predictor"])
    parts["meta"].write_text(json.dumps({"task_kind": spec.task_kind, "class_names": spec.class_names,
                                         "predictor_format": predictor_format}, indent=1))
    return {name: str(path) for name, path in parts.items()}


def _pinned(distribution: str) -> str:
    """``name==<installed version>`` (the adapter's own needs: tokenizers for texts, torchvision and pillow
    for images), or the bare name where it is not installed here."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{distribution}=={version(distribution)}"
    except PackageNotFoundError:
        return distribution


def signature(adapter, spec):
    """Inputs: the raw columns, by name. Their type is "any": MLflow's own casting refuses an integer column
    declared double and a missing value in a column declared integer, so the adapter checks values itself."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from .pyfunc_model import PREDICTION, PROBABILITY_PREFIX

    inputs = Schema([ColSpec(AnyType(), name) for name, _ in adapter.input_schema()])
    if spec.task_kind == "regression":
        outputs = Schema([ColSpec("double", PREDICTION)])
    else:
        names = spec.class_names or [str(i) for i in range(spec.num_classes or 2)]
        outputs = Schema([ColSpec("string", PREDICTION), *(ColSpec("double", PROBABILITY_PREFIX + str(n)) for n in names)])
    return ModelSignature(inputs=inputs, outputs=outputs)


@contextlib.contextmanager
def _no_requirement_check_on_load():
    """MLflow loads the logged model once to run its input example through it (a real check that it loads
    and predicts, kept), and loading compares the model's requirements with every installed distribution's
    file list: 1.7 s, and the requirements are this process's own versions. Skipped during logging."""
    import mlflow.pyfunc

    original = getattr(mlflow.pyfunc, "warn_dependency_requirement_mismatches", None)
    if original is None:
        yield
        return
    mlflow.pyfunc.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        mlflow.pyfunc.warn_dependency_requirement_mismatches = original


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


def log_raw_input_model(run: TrackedRun, predictor: nn.Module, adapter, spec, example: Tensor,
                        model_name: str) -> Optional[str]:
    """Log the pyfunc model under ``runs:/<run id>/<model_name>``; returns the predictor's format. ``predictor`` is
    on the CPU in eval mode and ``example`` a few rows, as :func:`~pipeline.tracking.artifacts.start_log_model`
    hands them on."""
    import mlflow
    import mlflow.pyfunc
    import numpy
    from mlflow.models import Model
    import pandas

    import pipeline.tracking.pyfunc_model as pyfunc_model

    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                    f"pandas=={pandas.__version__}", f"numpy=={numpy.__version__}"]
    requirements += [_pinned(name) for name in getattr(adapter, "requirements", ())]
    predictor_format = None  # stays None when the store fails: run.recording() keeps the run going
    with tempfile.TemporaryDirectory(prefix="pipeline-model-") as tmp, run.recording("logging the model"), \
            _tracking_uri(run.tracking_uri), _no_environment_scan(), _no_requirement_check_on_load(), \
            _no_copy_progress_bars(), _quiet_model_validation(), warnings.catch_warnings():
        # an image model has no input example on purpose (this machine's file paths would mean nothing where
        # it is served): MLflow's warning that it lacks one is not news for the user
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        artifacts = write_model_parts(Path(tmp), predictor, adapter, spec, example)
        predictor_format = json.loads(Path(artifacts["meta"]).read_text())["predictor_format"]
        logged = run.client.create_logged_model(run.experiment_id, name=model_name, source_run_id=run.run_id)
        try:
            Model.log(  # what mlflow.pyfunc.log_model does, with this run's id rather than an active run's
                artifact_path=None,
                name=model_name,
                flavor=mlflow.pyfunc,
                flavor_name="pyfunc.ModelFromCode",
                python_model=pyfunc_model.__file__,
                artifacts=artifacts,
                signature=signature(adapter, spec),
                input_example=adapter.input_example(),
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
