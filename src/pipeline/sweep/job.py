"""One trial's job: what Hydra's ``run_job`` does for a sweep job, without the copies it makes of a config that is
already the trial's own.

Hydra's ``run_job`` copies the job's config four times (two masked copies of its ``hydra`` node when it sets
``HydraConfig`` twice, a deep copy for the task, a deep copy of the ``hydra`` node for the job's return), ~45 ms
per trial here. A trial's config is composed fresh for it (``TrialConfigs.compose``), so the job may take it as
it is: ``HydraConfig`` is set once (its copy of the ``hydra`` node made by pickling), the task gets a copy
without ``hydra`` made by pickling too (4x faster than ``copy.deepcopy`` of an OmegaConf tree), the job returns
the ``hydra`` node ``HydraConfig`` held, and the job's YAML files are written by libyaml's emitter (the same
text as ``OmegaConf.to_yaml``). What the job leaves behind is Hydra's: the same output folder, the same
``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``, the job's logging set-up, ``hydra.job.env_set``,
the ``JobReturn``. Where Hydra would do more (``hydra.callbacks`` configured, ``hydra.job.chdir`` not false) the
trial runs through Hydra's own ``run_job``.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf, flag_override, open_dict, read_write

from pipeline.tracking import yaml_text


def copy_config(config: DictConfig) -> DictConfig:
    """An independent copy of a root config (or of a node detached from its parent), as ``copy.deepcopy`` makes
    (flags, types, interpolations kept)."""
    assert config._get_parent() is None, "only a config without a parent is copied whole by pickling"
    return pickle.loads(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))


def hydra_config_copy(config: DictConfig) -> DictConfig:
    """What ``HydraConfig.set_config(config)`` keeps: ``OmegaConf.masked_copy(config, "hydra")`` (a root holding a
    copy of the ``hydra`` node) whose node is parented to ``config``, so that its interpolations see the job's keys.
    The node is copied by pickling (masked_copy deep-copies it: ~4x slower)."""
    node = config._get_node("hydra")
    parent = node._get_parent()
    node._set_parent(None)  # pickled alone, not with the config around it
    try:
        copied = copy_config(node)
    finally:
        node._set_parent(parent)
    root = DictConfig(content={})
    with flag_override(root, "no_deepcopy_set_nodes", True):
        root["hydra"] = copied  # as masked_copy sets it, without copying it again
    copied._set_parent(config)
    return root


def config_yaml(config: DictConfig | ListConfig) -> str:
    """``OmegaConf.to_yaml(config)``, on libyaml's emitter where PyYAML has it (~4 ms per trial instead of ~17)."""
    return yaml_text(OmegaConf.to_container(config, resolve=False, enum_to_str=True))


def save_config(config: DictConfig | ListConfig, filename: str, folder: Path) -> None:
    """Hydra's ``_save_config``: ``folder/filename`` holds the config as YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(config_yaml(config), encoding="utf-8")


def run_trial_job(task_function: Callable[[DictConfig], Any], config: DictConfig, job_dir_key: str,
                  job_subdir_key: Optional[str], hydra_context) -> Any:
    """Run ``task_function`` as Hydra's ``run_job(hydra_context, task_function, config, job_dir_key,
    job_subdir_key)`` would, on a ``config`` that belongs to this job alone (it is changed in place)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _flush_loggers, configure_log, env_override, run_job

    if hydra_context.callbacks.callbacks or config.hydra.job.chdir is not False:
        return run_job(hydra_context=hydra_context, task_function=task_function, config=config,
                       job_dir_key=job_dir_key, job_subdir_key=job_subdir_key)
    hydra = HydraConfig.instance()
    previous = hydra.cfg
    # HydraConfig.set_config(config): the job's keys may interpolate ${hydra:...}
    OmegaConf.set_readonly(config.hydra, True)
    hydra.cfg = hydra_config_copy(config)
    try:
        output_dir = str(OmegaConf.select(config, job_dir_key))
        if job_subdir_key is not None:
            output_dir = os.path.join(output_dir, str(OmegaConf.select(config, job_subdir_key)))
        output_dir = os.path.abspath(output_dir)
        # on the config and on the copy of its hydra node that HydraConfig holds (Hydra sets it again instead)
        for runtime in (config.hydra.runtime, hydra.cfg.hydra.runtime):
            with read_write(runtime), open_dict(runtime):
                runtime.output_dir = output_dir
        ret = JobReturn()
        task_cfg = copy_config(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret.cfg = task_cfg
        ret.hydra_cfg = hydra_cfg = hydra.cfg  # read-only, and replaced (not changed) when the job ends
        ret.overrides = OmegaConf.to_container(config.hydra.overrides.task)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        ret.working_dir = os.getcwd()
        configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            hydra_output = Path(output_dir) / Path(config.hydra.output_subdir)
            save_config(task_cfg, "config.yaml", hydra_output)
            save_config(hydra_cfg, "hydra.yaml", hydra_output)
            save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
            from pipeline.tracking.redact import redact_hydra_record

            redact_hydra_record(hydra_output)  # secrets given on the command line, as pipeline-train's job does
        with env_override(hydra_cfg.hydra.job.env_set):
            try:
                ret.return_value = task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as error:
                ret.return_value = error
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        return ret
    finally:
        hydra.cfg = previous
