"""Everything that talks to MLflow. Training code calls these functions and nothing else."""
from __future__ import annotations

import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .run import EpochMetricsLogger, TrackedRun, TrackingUnavailable, check_reachable

__all__ = ["TrackedRun", "TrackingUnavailable", "start_run", "log_run_start", "log_run_end", "check_reachable"]


def _choices() -> dict[str, str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    except Exception:
        pass
    return {}


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return list(HydraConfig.get().overrides.task)
    except Exception:
        pass
    return []


def choice_name(cfg: DictConfig, group: str) -> str:
    chosen = _choices().get(group)
    if chosen:
        return chosen
    node = cfg.get(group)
    target = node.get("_target_") if node is not None else None
    return str(target).rsplit(".", 1)[-1].lower() if target else "none"


def start_run(cfg: DictConfig, output_dir: Path) -> TrackedRun:
    logger_cfg = cfg.logger
    run_name = logger_cfg.run_name or f"{choice_name(cfg, 'model')}-{choice_name(cfg, 'optimizer')}-{uuid.uuid4().hex[:6]}"
    run = TrackedRun(
        tracking_uri=logger_cfg.tracking_uri,
        experiment_name=logger_cfg.experiment_name,
        run_name=run_name,
        artifact_location=logger_cfg.artifact_location,
        tags={"task": cfg.task.name, "seed": str(cfg.seed), **{str(k): str(v) for k, v in cfg.tags.items()}},
    )
    run.output_dir = output_dir
    return run


def log_run_start(run: TrackedRun, cfg: DictConfig, datamodule, trainer) -> None:
    """Params (whole config, flattened and redacted), tags, the resolved config as an artifact."""
    from .params import config_params
    from .redact import redact_tree

    resolved = OmegaConf.to_container(cfg, resolve=True)
    world = trainer.world_size if trainer is not None else 1
    params = config_params(resolved, _choices() or {g: choice_name(cfg, g) for g in ("data", "model", "optimizer")}, _overrides())
    params["effective_batch_size"] = str(cfg.data.batch_size * world * cfg.trainer.get("accumulate_grad_batches", 1))
    params.setdefault("task", cfg.task.name)
    run.log_params(params)
    config_yaml = OmegaConf.to_yaml(OmegaConf.create(redact_tree(resolved)))
    (run.output_dir / "config.yaml").write_text(config_yaml)
    run.log_text(config_yaml, "config.yaml")
    if isinstance(trainer.logger, EpochMetricsLogger):
        trainer.logger.local_path = run.output_dir / "metrics.jsonl"


def log_run_end(run: TrackedRun, cfg: DictConfig, objective, datamodule, trainer, checkpoint, metrics, output_dir: Path) -> None:
    """Test metrics and the best checkpoint; prints where the results are."""
    run.log_metrics({k: v for k, v in metrics.items()}, step=trainer.current_epoch)
    if checkpoint.best_model_path:
        run.log_artifact(Path(checkpoint.best_model_path), "checkpoints")
    run.flush()
    _print_summary(run, metrics, output_dir, checkpoint)


def _print_summary(run: TrackedRun, metrics: dict, output_dir: Path, checkpoint) -> None:
    if not _is_main():
        return
    lines = ["", "Test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))]
    lines.append(f"Outputs (config, checkpoints, metrics.jsonl): {output_dir}")
    if checkpoint.best_model_path:
        lines.append(f"Best checkpoint: {checkpoint.best_model_path}")
    if run.run_id:
        lines.append(f"MLflow run {run.run_name} ({run.run_id}) in experiment '{run.experiment_name}' at {run.tracking_uri}")
        lines.append("Open the UI with: pipeline-ui   (or: make ui)")
    print("\n".join(lines), flush=True)


def _is_main() -> bool:
    from .run import is_rank_zero

    return is_rank_zero()
