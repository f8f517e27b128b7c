"""What logging a model to MLflow needs around it: the model on the CPU, MLflow's global tracking URI set to
this run's store, and MLflow's requirement scan skipped. Shared by the two ways a model is logged
(``artifacts``: a torch model; ``raw_model``: a model that takes raw inputs)."""
from __future__ import annotations

import contextlib
import copy
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is not imported here: the store-writer process logs a raw-rows model without it
    from torch import nn


def _on_cpu(module: "nn.Module") -> "nn.Module":
    """The module on the CPU, copied when it is elsewhere so the trained objective is left as it is."""
    if all(p.device.type == "cpu" for p in module.parameters()):
        return module
    return copy.deepcopy(module).cpu()


@contextlib.contextmanager
def _quiet_export():
    """Channels-last weights (conv nets) are not "complete" row-major tensors to the writer of torch.export's
    archive, which warns once per model ("No complete tensor found in the group"); it saves them whole all the
    same, and the loaded program gives the checkpoint's predictions (tests/test_images_streamed.py compares
    them). Not news for the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        yield


@contextlib.contextmanager
def _tracking_uri(uri: str):
    """``mlflow.pytorch.log_model`` reads the global tracking URI; point it at this run's store meanwhile."""
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@contextlib.contextmanager
def _no_environment_scan():
    """MLflow checks that the requirements it writes are installed by reading the file list of every
    installed distribution: 1-3 s, the largest part of logging a small model. Our requirements are the
    versions this process runs, so the check cannot fail; it is skipped while the model is logged."""
    import mlflow.utils.environment as environment

    original = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if original is None:  # a later MLflow without this check
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = original
