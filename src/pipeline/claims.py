"""A run's claim on its output folder: the file ``.pipeline-run`` naming the process that writes there. Two runs never
share a folder (``train.claim_output_dir``); a refused command gives its claim back (``cli.train``). Light: no torch."""
from __future__ import annotations

import os
from pathlib import Path

CLAIM_FILE = ".pipeline-run"


def claim_text() -> str:
    """What this process writes into the folders it claims."""
    return f"pid {os.getpid()} on {os.uname().nodename}\n"


def release_claim(folder: Path) -> None:
    """The folder's claim, where this process wrote it, removed: the folder's next run writes there."""
    marker = Path(folder) / CLAIM_FILE
    try:
        if marker.read_text() == claim_text():
            marker.unlink()
    except OSError:
        pass
