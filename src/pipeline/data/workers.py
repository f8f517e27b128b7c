"""What every ``DataLoader`` worker of the pipeline runs first (``worker_init_fn``).

A worker hands each batch's tensors to the main process as file descriptors, served by
``multiprocessing.resource_sharer``'s background thread. When Ctrl-C or SIGTERM stops the main process while
it is fetching one, the worker's thread sees the connection drop and prints a traceback of
``ConnectionResetError``/``BrokenPipeError`` to the terminal, under the one-line "Interrupted ..." message,
although nothing went wrong that the user could act on. :func:`quiet_worker` drops exactly those (an error
of the connection, raised in ``resource_sharer``); every other exception still reaches ``sys.excepthook``.
"""
from __future__ import annotations

import sys
import traceback

_CONNECTION_ERRORS = (ConnectionError, EOFError)  # ConnectionError covers reset, refused, aborted, broken pipe


def _from_resource_sharer(tb) -> bool:
    return any(frame.filename.endswith("resource_sharer.py") for frame in traceback.extract_tb(tb))


def _excepthook(previous):
    def hook(kind, value, tb):
        if issubclass(kind, _CONNECTION_ERRORS) and _from_resource_sharer(tb):
            return  # the main process went away while fetching a batch: nothing to report
        previous(kind, value, tb)

    hook.quiet_worker = True
    return hook


def quiet_worker(worker_id: int = 0) -> None:
    """``worker_init_fn``: silence the resource sharer's dropped connections in this worker process."""
    if not getattr(sys.excepthook, "quiet_worker", False):
        sys.excepthook = _excepthook(sys.excepthook)
