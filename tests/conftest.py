"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pytest

# `make test` runs several pytest workers (pytest-xdist). Each worker, and every process its tests start, gets
# its share of the cores as torch threads: two workers of two threads each on a 2-core machine spent their time
# waiting for each other (the suite took 23.7 min on two workers that way, 21.8 min with one thread each).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)


# The modules that take longest, longest first (minutes of one worker, `--durations=0` on 2026-12-06): pytest-xdist's
# loadscope hands a module to whichever worker is free, in collection order, so with the long ones last one worker
# ran test_sweep_end and test_sweep_interrupts alone for minutes after the other had finished.
_LONGEST_MODULES = ("test_reliability", "test_tabular", "test_tracking", "test_sweep_interrupts", "test_benchmarks_smoke",
                    "test_sweep_end", "test_sweep", "test_ddp", "test_tasks_cli", "test_images_streamed", "test_faults",
                    "test_train_core", "test_text_models", "test_bad_input")


def pytest_collection_modifyitems(items) -> None:
    rank = {name: index for index, name in enumerate(_LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: a module's own order is kept


# what a test must not leave in the project folder: a user's own runs live there (the default store, Hydra's
# outputs), and a test's stray store or run folder mixes with them (an empty mlruns/mlflow.db was found there)
_PROJECT_FOLDER = Path(__file__).resolve().parents[1]
_STRAY = ("mlruns/mlflow.db", "mlruns/artifacts", "outputs", "multirun")


def _stray_state() -> dict[str, float]:
    found = {}
    for name in _STRAY:
        try:
            found[name] = (_PROJECT_FOLDER / name).stat().st_mtime
        except OSError:
            pass
    return found


@pytest.fixture(autouse=True)
def _writes_nothing_into_the_project_folder():
    before = _stray_state()
    yield
    after = _stray_state()
    new = sorted(name for name, mtime in after.items() if before.get(name) != mtime)
    if new:
        pytest.fail(f"this test wrote {', '.join(new)} into the project folder ({_PROJECT_FOLDER}); a test writes "
                    "into its own tmp_path (conftest's store_overrides)", pytrace=False)


@pytest.fixture
def real_data_dir() -> Path:
    """``PIPELINE_DATA_DIR`` (the real data sets, e.g. ../shared/data).

    Unset: the test is skipped, unless ``PIPELINE_REQUIRE_DATA=1`` (CI), where it fails.
    """
    value = os.environ.get("PIPELINE_DATA_DIR")
    if not value:
        message = "PIPELINE_DATA_DIR not set: point it at the real data (e.g. ../shared/data) to run this test"
        if os.environ.get("PIPELINE_REQUIRE_DATA") == "1":
            pytest.fail(message + " (PIPELINE_REQUIRE_DATA=1)")
        pytest.skip(message)
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"PIPELINE_DATA_DIR={value} is not a directory")
    return path


# ----- running the pipeline ---------------------------------------------------------------------
import contextlib
import subprocess
import sys

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def another_thread_count():
    """torch in this process runs one thread more than it does (than a run it started recorded), for a block;
    yields that count and restores the old one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        yield threads + 1
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def store(tmp_path, migrated_store_db) -> dict:
    """An isolated MLflow store and output folder for one test, its tables made (a copy of
    :func:`migrated_store_db`: creating them costs ~4 s in each test's first command)."""
    return new_store(tmp_path, migrated_store_db)


@pytest.fixture
def empty_store(tmp_path) -> dict:
    """An isolated output folder and a store not yet made, for tests of what makes one (or must not)."""
    mlruns = tmp_path / "mlruns"
    mlruns.mkdir()
    return {
        "uri": f"sqlite:///{mlruns}/mlflow.db",
        "artifacts": str(mlruns / "artifacts"),
        "outputs": tmp_path / "outputs",
        "tmp": tmp_path,
    }


def store_overrides(store: dict, multirun: bool = False, args: Sequence[str] = ()) -> list[str]:
    """The store's folder as ``paths.mlruns_dir``: the MLflow logger's tracking URI and artifacts (and a
    sweep's Optuna storage) follow it, whichever loggers a test picks. A sweep (``-m``, or an ``hparams_search=``,
    which sweeps without it) gets the outputs folder as its sweep folder: it wrote ./multirun/ into the project."""
    out = store["outputs"]
    sweeping = multirun or "-m" in args or "--multirun" in args or any(
        str(a).startswith("hparams_search=") for a in args)
    return [
        f"paths.mlruns_dir={Path(store['artifacts']).parent}",
        f"hydra.sweep.dir={out}" if sweeping else f"hydra.run.dir={out}",
    ]


def run_cli(args: list[str], store: dict | None = None, multirun: bool = False, timeout: float = 600,
            env: dict | None = None, module: str = "pipeline.cli.train", fresh: bool = False
            ) -> subprocess.CompletedProcess:
    """Run ``python -m pipeline.cli.train`` as a user would (a process of its own, no TTY): forked from this worker's
    :mod:`cli_forkserver`, which has imported torch, Lightning, Hydra and Optuna once, or with ``fresh=True`` (and
    where the environment changes what torch reads at import) a new interpreter."""
    command = [sys.executable, "-m", module]
    if multirun:
        command.append("-m")
    command += list(args)
    if store is not None:
        command += store_overrides(store, multirun, args)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    full_env.update(env or {})
    if not fresh and _forkable(env or {}):
        return _forked_run(command, full_env, timeout)
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


# what torch and its libraries read when they are imported: a command that sets one needs a new interpreter
_READ_AT_IMPORT = ("OMP_", "MKL_", "OPENBLAS_", "GOMP_", "KMP_", "CUDA_", "TORCH", "PYTORCH_", "PYTHON", "LD_",
                   "PIPELINE_FULL_TORCHMETRICS")
_FORK_SERVER: dict = {}


def _forkable(env: dict) -> bool:
    return os.environ.get("PIPELINE_TEST_FORK", "1") != "0" and not any(
        name.startswith(_READ_AT_IMPORT) for name in env)


def _fork_server():
    """This worker's fork server (started on first use, again if it died): (socket, process)."""
    import socket

    server = _FORK_SERVER.get("server")
    if server is not None and server[1].poll() is None:
        return server
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_forkserver.py")),
                                str(theirs.fileno())], pass_fds=(theirs.fileno(),), cwd=PROJECT_ROOT, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    theirs.close()
    ours.settimeout(300)
    if ours.recv(1 << 16) != b'{"ready": true}':
        raise RuntimeError("the test fork server did not start (tests/cli_forkserver.py)")
    _FORK_SERVER["server"] = (ours, process)
    return ours, process


def _forked_run(command: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """:func:`run_cli`'s command (``python -m <module> <args>``) in a process forked from the fork server; its output
    read as ``subprocess.run(..., text=True)`` reads it."""
    import json
    import locale
    import signal
    import socket
    import tempfile

    sock, _ = _fork_server()
    module, args = command[2], command[3:]
    request = json.dumps({"module": module, "args": args, "env": env, "cwd": str(PROJECT_ROOT)}).encode()
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        socket.send_fds(sock, [request], [stdin.fileno(), out.fileno(), err.fileno()])
        sock.settimeout(60)
        pid = json.loads(sock.recv(1 << 16))["pid"]
        sock.settimeout(timeout)
        timed_out = False
        try:
            answer = sock.recv(1 << 16)
        except socket.timeout:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            sock.settimeout(60)
            answer = sock.recv(1 << 16)
        code = json.loads(answer)["code"]
        encoding = locale.getpreferredencoding(False)
        texts = []
        for handle in (out, err):
            handle.seek(0)
            texts.append(handle.read().decode(encoding).replace("\r\n", "\n").replace("\r", "\n"))
    if timed_out:
        raise subprocess.TimeoutExpired(command, timeout, output=texts[0], stderr=texts[1])
    return subprocess.CompletedProcess(command, code, texts[0], texts[1])


def runs_in(store: dict, experiment: str | None = None):
    """All runs of the store (optionally of one experiment), newest first."""
    from mlflow import MlflowClient

    client = MlflowClient(store["uri"])
    experiments = client.search_experiments()
    ids = [e.experiment_id for e in experiments if experiment is None or e.name == experiment]
    return client.search_runs(ids, max_results=1000) if ids else []


def compose(overrides: list[str]):
    """The real config, composed with Hydra's compose API (as the CLI would)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from pipeline.config import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return hydra_compose(config_name="config", overrides=overrides)


def compose_for_train(store: dict, overrides: list[str]):
    """A composed config for calling ``train(cfg)`` in-process, writing into ``store``."""
    return compose([
        f"paths.mlruns_dir={Path(store['artifacts']).parent}",
        f"paths.output_dir={store['outputs']}",
        *overrides,
    ])


def load_pyfunc(store: dict, run_id: str):
    """The model logged by run ``run_id`` of ``store``, as ``mlflow.pyfunc`` loads it."""
    import mlflow
    import mlflow.pyfunc

    mlflow.set_tracking_uri(store["uri"])
    try:
        return mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)


def predict_cli(args: list[str]) -> tuple[int, str, str]:
    """``pipeline-predict`` in this process: (exit code, stdout, stderr)."""
    from pipeline.cli.predict import main

    return _main_in_process(main, args)


def rerun_cli(args: list[str]) -> tuple[int, str, str]:
    """``pipeline-rerun`` in this process: (exit code, stdout, stderr)."""
    from pipeline.cli.rerun import main

    return _main_in_process(main, args)


def eval_cli(args: list[str]) -> tuple[int, str, str]:
    """``pipeline-eval`` in this process: (exit code, stdout, stderr)."""
    from pipeline.cli.eval import main

    return _main_in_process(main, args)


def _main_in_process(main, args: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(args) or 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, stdout.getvalue(), stderr.getvalue()


def error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def run_cli_in_process(args: list[str], store: dict | None = None) -> subprocess.CompletedProcess:
    """``pipeline.cli.train.main()`` with ``args`` as the command line, in this process: the same code path as
    :func:`run_cli` without ~5 s of imports, for cases that fail before training. Captures what is
    printed to stdout/stderr and the exit code. A store-writer process that recorded anything is closed at the
    end, as the command closes it before exiting: the store then holds everything (trials' runs are recorded
    without waiting, so the end of a sweep may come before the last of them is written)."""
    import contextlib
    import io

    from hydra.core.global_hydra import GlobalHydra

    from pipeline.cli.train import main

    argv = ["pipeline-train", *args, *(store_overrides(store, args=args) if store is not None else [])]
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv, code = sys.argv, 0
    GlobalHydra.instance().clear()
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved_argv
        GlobalHydra.instance().clear()
        from pipeline.tracking.remote import StoreWriter, close_writer

        if StoreWriter._instance is not None and StoreWriter._instance.used:
            close_writer()
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


# ----- stores that start with their tables already created ------------------------------------------
@pytest.fixture(scope="session")
def migrated_store_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database with its tables created. Creating them costs ~4 s per store;
    :func:`new_store` copies this file instead, for tests that are not about creating a store."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("migrated-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}")
    return path


def new_store(folder: Path, migrated_db: Path | None = None) -> dict:
    """A store like the ``store`` fixture's in ``folder``, started from ``migrated_db`` when given."""
    import shutil

    mlruns = folder / "mlruns"
    mlruns.mkdir(parents=True, exist_ok=True)
    if migrated_db is not None:
        shutil.copy(migrated_db, mlruns / "mlflow.db")
    return {"uri": f"sqlite:///{mlruns}/mlflow.db", "artifacts": str(mlruns / "artifacts"),
            "outputs": folder / "outputs", "tmp": folder}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_idx(path: Path, array) -> None:
    """``array`` as an idx file of unsigned bytes (gzip), as MNIST and Fashion-MNIST are distributed."""
    import gzip
    import struct

    import numpy as np

    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def fake_fashion(folder: Path, n_train=30, n_test=10) -> None:
    """Random 28x28 images with labels 0..9 in Fashion-MNIST's four files."""
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def model_of_ones_own(folder: Path, monkeypatch, module: str, source: str, yamls: dict[str, str]) -> Path:
    """A model of one's own as docs/training.md has it written: ``<folder>/<module>.py`` holding ``source``, importable
    (``folder`` on sys.path for this test), and a config folder ``<folder>/my_conf`` whose ``model/<name>.yaml`` hold
    ``yamls``; returns the config folder, for ``--config-dir``."""
    (folder / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    conf = folder / "my_conf"
    (conf / "model").mkdir(parents=True)
    for name, text in yamls.items():
        (conf / "model" / f"{name}.yaml").write_text(text)
    return conf
