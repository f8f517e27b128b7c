"""A process that has imported torch, Lightning, Hydra and Optuna once, and forks a fresh process for each command
line conftest's ``run_cli`` runs: ~5 s of imports a command (half or more of a short training command's time) paid
once per pytest worker.

What the command sees is what ``python -m <module> <args>`` would give it: a process of its own (a fork of this
one, which has run nothing but those imports), the test's environment, working folder, argv (``sys.argv[0]`` the
module's file), ``__main__`` run as the module itself (``runpy``: as ``-m`` does, so a spawned sweep worker imports
it by name), stdin from /dev/null and stdout/stderr into the files the test reads, and its exit code, atexit
handlers and all. The pipeline's own modules are not imported here: the command imports them, as a fresh process
would, after its environment is set. Only which third-party modules are already loaded differs, so tests of what a
command imports, or of how long its imports take, start a real process (``run_cli(..., fresh=True)``), as do
commands whose environment changes what torch reads when it is imported (threads, devices).

Protocol (one request at a time over a SOCK_SEQPACKET pair): the client sends a JSON request with three file
descriptors (stdin, stdout, stderr); this process forks, answers ``{"pid": <pid>}``, waits, then answers
``{"code": <exit code as subprocess reports it>}``.
"""
from __future__ import annotations

import importlib
import json
import os
import runpy
import signal
import socket
import sys


def _child(request: dict, fds: list[int]) -> None:
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    importlib.reload(sys.modules["pipeline"])  # its environment defaults (MLFLOW_*), set in the command's environment
    sys.path[0] = request["cwd"]  # as `python -m` puts it
    sys.argv = [request["module"], *request["args"]]
    sys.orig_argv = [sys.executable, "-m", request["module"], *request["args"]]  # what the command tag records
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    sys.exit(0)  # as a script that ends without sys.exit; an exception propagates: traceback and exit 1


def serve(sock: socket.socket) -> None:
    import pipeline  # noqa: F401  (installs the lean torchmetrics import, as every pipeline process does first)
    import hydra  # noqa: F401
    import omegaconf  # noqa: F401
    import optuna  # noqa: F401
    import pytorch_lightning  # noqa: F401
    import torch  # noqa: F401

    sock.send(b'{"ready": true}')
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        if not message:  # the pytest worker is gone
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(request, fds)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        sock.send(json.dumps({"code": code}).encode())


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to pytest stops the test, which closes the socket
    serve(socket.socket(fileno=int(sys.argv[1])))
