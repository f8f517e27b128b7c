"""Experiment-tracking research pipeline for PyTorch (Hydra, Lightning, Optuna, MLflow)."""
import os

# MLflow 3 reports usage events to its vendor's servers by default. A research pipeline sends nothing
# anywhere the user did not point it to (and training offline should not wait on such calls), so it is
# off unless the user sets MLFLOW_DISABLE_TELEMETRY=false themselves.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# the command-line tools download one small file at a time: MLflow's progress bars would only clutter stderr
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
