"""Optuna sweeps: the search space, the study, the trial workers, pruning and the sweep report.

The Hydra side (``pipeline-train -m hparams_search=...``) is the sweeper plugin in
``src/hydra_plugins/pipeline_optuna_sweeper``; everything it does is here.
"""
