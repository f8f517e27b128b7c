"""Hydra sweeper plugin ``hydra/sweeper=pipeline_optuna``: Optuna >= 4 studies with pruning,
parallel workers, resume and shared (distributed) storage. The work is done in ``pipeline.sweep``."""
