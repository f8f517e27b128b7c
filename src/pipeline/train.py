"""Entry point: ``pipeline-train [overrides]`` (or ``python -m pipeline.train``).

config -> validated config -> (data, model, objective, trainer, tracker) -> fit -> test -> store.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.config import CONFIG_DIR, validate

log = logging.getLogger("pipeline")

# Lightning's advice that does not apply here: metrics are logged per epoch by design.
warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# epoch metrics come from torchmetrics (synchronised across DDP ranks by compute()) or are per-rank timings
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, test the best checkpoint, record everything; return the final metrics."""
    validate(cfg)
    from pipeline import distributed

    distributed.check_trainer(cfg)

    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from pipeline import tracking
    from pipeline.callbacks import build_callbacks
    from pipeline.models import build_model
    from pipeline.objectives import build_objective

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec

    # a DDP run started as one process starts its other ranks here, once rank 0 has the data ready
    with distributed.other_ranks_started(cfg), tracking.start_run(cfg, output_dir) as run:
        model = build_model(cfg.model, spec)
        scheduler = instantiate(cfg.scheduler) if cfg.scheduler.get("_target_") else None
        objective = build_objective(cfg.task.objective, model, instantiate(cfg.optimizer), scheduler, spec, cfg.task)
        checkpoint, callbacks = build_callbacks(cfg, output_dir)
        trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=run.lightning_logger(),
            default_root_dir=str(output_dir),
            enable_progress_bar=progress_bar(cfg.trainer.get("enable_progress_bar")),
            enable_model_summary=False,
        )
        tracking.log_run_start(run, cfg, datamodule, trainer)
        with interrupt_names_checkpoint(trainer, checkpoint, run):
            trainer.fit(objective, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
            best = checkpoint.best_model_path or None
            results = trainer.test(objective, datamodule=datamodule, ckpt_path=best or "last",
                                   weights_only=True, verbose=False)
        metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        tracking.log_run_end(run, cfg, objective, datamodule, trainer, checkpoint, metrics, output_dir)
    return metrics


def progress_bar(setting: Optional[bool]) -> bool:
    return sys.stderr.isatty() if setting is None else bool(setting)


@contextlib.contextmanager
def interrupt_names_checkpoint(trainer, checkpoint, run):
    """Ctrl-C / SIGTERM during fit or test ends as a :class:`RunInterrupted` naming the checkpoint of the
    last completed epoch (resuming from it is exact). Lightning answers an interrupt inside fit/test with
    its own cleanup and ``sys.exit(1)``; that exit is turned back into the interrupt it was, so the
    MLflow run is marked KILLED, not FAILED."""
    from pipeline.cli.errors import RunInterrupted

    try:
        yield
    except (KeyboardInterrupt, SystemExit) as stop:
        if isinstance(stop, SystemExit) and not trainer.interrupted:
            raise
        last = Path(checkpoint.last_model_path) if checkpoint.last_model_path else None
        resume_from = last.resolve() if last is not None and last.is_file() else None
        if resume_from is not None:
            with contextlib.suppress(Exception):  # the interrupt matters more than the tag
                run.set_tags({"resume_from": str(resume_from)})
        raise RunInterrupted(resume_from) from None


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> Optional[float]:
    from pipeline.cli.errors import report_errors

    with report_errors():
        metrics = train(cfg)
    monitor = cfg.task.monitor.replace("val/", "test/")
    return metrics.get(monitor)


def main() -> None:
    from pipeline.cli.errors import check_command_line

    check_command_line(sys.argv[1:], CONFIG_DIR)  # a wrong option or key: one line, before Hydra runs
    _hydra_main()


if __name__ == "__main__":
    main()
