"""The sweeper's config node (``hydra.sweeper.*``), registered as ``hydra/sweeper: pipeline_optuna``.

Kept free of heavy imports: Hydra imports every plugin module on every run.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class PipelineOptunaSweeperConf:
    _target_: str = "hydra_plugins.pipeline_optuna_sweeper.optuna_sweeper.PipelineOptunaSweeper"
    # the total number of trials the study should hold (a rerun finishes the study, not n_trials more)
    n_trials: int = 20
    # parallel workers on this machine; each takes the next trial as soon as its own one ends
    n_jobs: int = 1
    # seconds after which no new trial is started (null: no limit)
    timeout: Optional[float] = None
    # SQLAlchemy URL; null: sqlite:///<paths.mlruns_dir>/optuna/optuna.db
    storage: Optional[str] = None
    # null: the hparams_search option's name (e.g. regression_optuna)
    study_name: Optional[str] = None
    # tpe | random | grid | cmaes, and keyword arguments of the Optuna sampler
    sampler: str = "tpe"
    sampler_options: Dict[str, Any] = field(default_factory=dict)
    # null: the config's seed
    seed: Optional[int] = None
    # hyperband | median | successive_halving | none, and keyword arguments of the Optuna pruner
    pruner: str = "hyperband"
    pruner_options: Dict[str, Any] = field(default_factory=dict)
    # metrics to optimise: any metric logged during fit, as at its end (val/*, val/*_best,
    # train/epoch_time_s); test/* is refused (selection is by validation); null: [<task.monitor>_best]
    objectives: Optional[List[str]] = None
    # minimize | maximize per objective; null: from task.mode
    directions: Optional[List[str]] = None
    # stop the sweep when more than this share of (at least 3) finished trials failed or diverged
    max_failure_rate: float = 0.5
    # seconds between a running trial's heartbeats; a trial silent for twice as long is retried
    heartbeat_interval: int = 10
    # the search space in Hydra's sweep grammar: key: choice(...) | interval(...) | range(...) | tag(log, ...)
    params: Optional[Dict[str, str]] = field(default_factory=dict)  # Optional: `params:` left empty in a YAML
    # parameters sampled only under a condition on another one, e.g. optimizer.momentum: optimizer=sgd; a null
    # condition is none (hydra.sweeper.conditions={optimizer.momentum:null} on the command line)
    conditions: Optional[Dict[str, Optional[str]]] = field(default_factory=dict)
    # what each trial records besides params, per-epoch metrics, status and pruning (selection is by validation:
    # by default a trial writes no checkpoint, is not tested and logs no model or plots)
    trial_checkpoints: bool = False
    trial_test: bool = False
    trial_artifacts: bool = False
    # the best trials (by the first objective) trained once more with everything: tested, checkpoint, model,
    # plots, in child runs tagged best=true
    finalize_top_k: int = 1


ConfigStore.instance().store(group="hydra/sweeper", name="pipeline_optuna", node=PipelineOptunaSweeperConf,
                             provider="pipeline")
