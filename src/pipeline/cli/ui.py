"""``pipeline-ui [--host 127.0.0.1] [--port 5000]``: the MLflow UI on this project's store.

The store is the one training writes to (``MLFLOW_TRACKING_URI``, else ``mlruns/mlflow.db`` in the
project). The UI is bound to the loopback interface unless ``--host`` says otherwise: MLflow's UI has
no login, so whoever reaches its port can read and delete every run.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STARTUP_TIMEOUT_S = 120.0


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    from pipeline.tracking.run import default_store

    uri, artifacts = default_store()
    parser = argparse.ArgumentParser(prog="pipeline-ui", description="Start the MLflow UI on this project's store and print its URL.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--tracking-uri", default=uri, help=f"store to show (default: {uri})")
    parser.add_argument("--artifacts", default=artifacts, help=f"artifact folder of new experiments (default: {artifacts})")
    return parser.parse_args(argv)


def server_command(args: argparse.Namespace) -> list[str]:
    artifacts = args.artifacts if "://" in args.artifacts else Path(args.artifacts).absolute().as_uri()
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", args.tracking_uri,
            "--default-artifact-root", artifacts, "--host", args.host, "--port", str(args.port),
            "--workers", "1"]


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = STARTUP_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return True
        except Exception:
            time.sleep(0.3)
    return False


def main(argv: Optional[list[str]] = None) -> int:
    from pipeline.tracking.redact import redact_text

    args = parse_args(argv)
    shown_uri = redact_text(args.tracking_uri)
    if args.tracking_uri.startswith(("http://", "https://")):
        print(f"The store is the MLflow server at {shown_uri}: open that address in a browser.")
        return 0
    from pipeline.sqlite import sqlite_path
    from pipeline.tracking.run import StoreUnusable, check_store_to_read

    try:
        check_store_to_read(args.tracking_uri)
    except StoreUnusable as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    database = sqlite_path(args.tracking_uri)
    if database is not None and not database.exists():  # a typo in --tracking-uri shows an empty UI: said
        print(f"Note: no MLflow store at {database} yet: a new, empty one is made there (runs are written to the "
              "store their pipeline-train names; a mistyped --tracking-uri?)", file=sys.stderr, flush=True)
    if not port_free(args.host, args.port):
        print(f"Error: port {args.port} on {args.host} is in use (another UI?); pick another with --port",
              file=sys.stderr)
        return 2
    if args.host not in LOOPBACK:
        print(f"Warning: the UI listens on {args.host}, so other machines can reach it. MLflow's UI has no login: "
              f"anyone who reaches port {args.port} can read every run (params, metrics, artifacts) and delete runs. "
              "Prefer the default 127.0.0.1 with an SSH tunnel (ssh -L 5000:127.0.0.1:5000 host).", file=sys.stderr)

    from pipeline.tracking.run import open_client, prepare_local_store

    try:
        prepare_local_store(args.tracking_uri)
        open_client(args.tracking_uri)  # create the store's tables now, safely beside running trainings
    except OSError as error:  # sqlite:////proc/x/mlflow.db: a traceback (FileNotFoundError)
        print(f"Error: --tracking-uri={shown_uri}: no store there, and none can be made ({error.strerror or error}: "
              f"{error.filename})", file=sys.stderr)
        return 2
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown_host}:{args.port}"
    print(f"Starting the MLflow UI on {shown_uri} ...", flush=True)
    # its own process group: the server's workers are stopped with it, whatever signal stops us
    # MLflow's job runner (GenAI evaluation jobs) is one more process to start and nothing this UI uses
    environment = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    process = subprocess.Popen(server_command(args), start_new_session=True, env=environment)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        if wait_until_up(url, process):
            print(f"MLflow UI: {url}   (Ctrl-C stops it)", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


if __name__ == "__main__":
    sys.exit(main())
