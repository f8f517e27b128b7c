"""Experiment-tracking research pipeline for PyTorch (Hydra, Lightning, Optuna, MLflow)."""
import os

# MLflow 3 reports usage events to its vendor's servers by default. A research pipeline sends nothing
# anywhere the user did not point it to (and training offline should not wait on such calls), so it is
# off unless the user sets MLFLOW_DISABLE_TELEMETRY=false themselves.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# the command-line tools download one small file at a time: MLflow's progress bars would only clutter stderr
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow prints "View run ... at: <tracking URI>/#/..." when a run on a tracking server ends, with the URI's password
# (http://user:password@host) in clear; the pipeline prints where the run is itself, the password masked. Set here,
# where every process of the pipeline starts (the training process, the store-writer process, the tools)
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

# Lightning imports torchmetrics, whose image, audio and plotting modules pull in torchvision.models,
# torch._dynamo, scipy and matplotlib: seconds of imports for metrics this project never computes
from pipeline import lean_imports as _lean_imports  # noqa: E402

_lean_imports.install()
