"""``pipeline-train [overrides]`` (or ``python -m pipeline.cli.train``): compose the config with Hydra,
train, and answer with one line on a mistake (exit 2), an interrupt (exit 130) or a bug (exit 1)."""
from __future__ import annotations

import sys
from typing import Optional

import hydra
from omegaconf import DictConfig

from pipeline.cli.errors import check_command_line, report_errors
from pipeline.config import CONFIG_DIR
from pipeline.train import train


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> Optional[float]:
    with report_errors():
        metrics = train(cfg)
    return metrics.get(cfg.task.monitor.replace("val/", "test/"))


def main() -> None:
    check_command_line(sys.argv[1:], CONFIG_DIR)  # a wrong option or key: one line, before Hydra runs
    _hydra_main()


if __name__ == "__main__":
    main()
