"""The entry point of the extra ranks of a DDP run started as one process (``pipeline.distributed``):
``python -m pipeline.cli.rank`` reads rank 0's resolved config on stdin and trains the same job.

Rank 0 hands its callbacks to ``train()``; a rank started here builds the ones it needs from the config:
a sweep trial's pruning callback must run in every rank, because rank 0 broadcasts its decision to them
(and must not run in the ranks of a sweep's final run, where rank 0 has none to broadcast).
"""
from __future__ import annotations

import os
import sys
import threading
import time

from omegaconf import OmegaConf


def main() -> None:
    from pipeline.cli.errors import report_errors
    from pipeline.train import train

    cfg = OmegaConf.create(sys.stdin.read())
    _exit_with_parent()
    with report_errors():
        callbacks = []
        if cfg.get("sweep") and not cfg.sweep.get("final"):  # a sweep's final run has no trial to prune
            from pipeline.sweep.pruning import PruningCallback

            callbacks.append(PruningCallback.from_config(cfg.sweep, objective=f"{cfg.task.monitor}_best"))
        train(cfg, callbacks=callbacks)
    # the work is done: skip the interpreter's teardown, where gloo's threads can abort the process (exit -6)
    # once rank 0 has already closed the process group, failing a run that succeeded
    from pipeline.cli.train import exit_at_once

    exit_at_once()


def _exit_with_parent() -> None:
    """If rank 0 dies (killed, out of memory), this rank would wait for it in a collective until the
    timeout: leave as soon as it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watcher").start()


if __name__ == "__main__":
    main()
