"""Data-parallel runs (DDP): which process is rank 0, early checks of the trainer config, and
starting the other ranks of a one-node run.

Lightning's own launcher for ``strategy=ddp`` starts each extra rank by running ``sys.argv``
again. Under Hydra that goes wrong: in a sweep the argv holds ``-m`` and the search space, so
every rank starts a sweep of its own (and the Optuna sweeper samples other parameters per rank);
each rank composes its config again and may get its own output directory; and when ``train()``
was called from the compose API (``pipeline-rerun``, a sweeper, tests) the argv is not the job
at all. ``ddp_spawn`` avoids the argv but pickles the model and data into new processes and
trains outside the process that holds the MLflow run.

So this module starts the other ranks itself, the way ``torchrun`` does, through the contract
Lightning documents for externally created processes: each child gets ``LOCAL_RANK``,
``NODE_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its environment from the
start (so Lightning launches nothing more, and ``is_rank_zero()`` is false in it before any
tracking code runs), and rank 0's fully resolved config on stdin (so it trains exactly the
same job, sampled sweep parameters included, writes into the same output directory, and never
runs Hydra: no directory, no composition, no sweep).

Under torchrun, SLURM (srun) or another launcher that creates the processes, nothing is started
here: every process runs the job and the rank variables say which one is rank 0. The started ranks
run ``python -m pipeline.cli.rank``, which reads the config and calls ``train()``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.errors import ConfigError, RankFailed
from pipeline.ranks import external_world_size, launched_externally

log = logging.getLogger(__name__)

# Trainer.precision values; 32/16/64/"bf16" are Lightning's aliases of the -true/-mixed names.
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true", "32", "16", "bf16", "64",
              32, 16, 64)

# the "-true" precisions: Lightning converts the whole module to this dtype (its weights are held in it)
TRUE_PRECISION_DTYPES = {"64-true": "float64", "64": "float64", 64: "float64", "bf16-true": "bfloat16",
                         "16-true": "float16"}


def weights_dtype(precision: Any):
    """The torch dtype a model trained with ``trainer.precision=precision`` holds its weights in (None: float32, as
    built): a checkpoint's weights loaded into a freshly built model are converted to it, so that the model
    computes as it did in the run's test (its predictions/test.csv, its logged model)."""
    import torch

    name = TRUE_PRECISION_DTYPES.get(precision if isinstance(precision, int) else str(precision))
    return getattr(torch, name) if name else None


# Strategies whose extra ranks Lightning would start by re-running the script.
SCRIPT_STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false", "fsdp")

# How long rank 0 waits for the other ranks once it is done, and after another rank failed, for
# itself to fail before it is killed (blocked in an NCCL collective, it sees no exception).
CHILD_EXIT_TIMEOUT_S = 120.0
FAILURE_GRACE_S = 60.0


# ----- checks before any data is loaded -----------------------------------------------------------
def check_trainer(cfg: DictConfig) -> None:
    """Refuse a trainer config that cannot run here, with one line naming the key and the way out."""
    trainer = cfg.trainer
    precision = trainer.get("precision", "32-true")
    if precision not in PRECISIONS:
        allowed = ", ".join(str(p) for p in PRECISIONS if isinstance(p, str) and "-" in p)
        raise ConfigError(f"trainer.precision={precision!r} is not allowed; choose one of {allowed} (or 32)")
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        _check_gpus(trainer, accelerator)
    num_nodes = int(trainer.get("num_nodes", 1) or 1)
    if num_nodes > 1 and not launched_externally() and "MASTER_ADDR" not in os.environ:
        raise ConfigError(
            f"trainer.num_nodes={num_nodes} needs a cluster launcher: start the run with torchrun or srun "
            "(see docs/clusters.md 'Several nodes'), or set MASTER_ADDR, MASTER_PORT and NODE_RANK on every node")
    check_not_sweeping_in_every_rank()
    _check_one_output_dir_for_all_ranks()


def _check_gpus(trainer: DictConfig, accelerator: str) -> None:
    import torch

    visible = torch.cuda.device_count()
    choice = _trainer_choice()
    if visible == 0:
        raise ConfigError(
            f"{choice} needs a GPU (trainer.accelerator={accelerator}) but none is visible to PyTorch "
            f"(torch.cuda.is_available() is False); use trainer=cpu, or trainer=ddp_cpu trainer.devices=N "
            "for N CPU processes")
    wanted = gpu_count(trainer.get("devices", "auto"), visible)
    if wanted > visible:
        raise ConfigError(
            f"trainer.devices={trainer.get('devices')} asks for {wanted} GPUs but {visible} "
            f"{'is' if visible == 1 else 'are'} visible; use trainer.devices={visible} or fewer")


def _trainer_choice() -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return f"trainer={HydraConfig.get().runtime.choices.get('trainer')}"
    except Exception:
        pass
    return "this trainer config"


def check_not_sweeping_in_every_rank(launcher: Optional[str] = None) -> None:
    """A Hydra sweep (-m) started under torchrun or srun runs the whole sweep in every rank: each
    rank would sample its own parameters. (Hydra's submitit launcher, with a sweeper that uses
    Hydra's launchers, is fine: it samples once and submits each job to SLURM, whose tasks are the ranks.)"""
    if launcher is None:  # a job's: from Hydra's config of the job (a sweeper gives its own launcher)
        try:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
                return
            launcher = str(HydraConfig.get().launcher.get("_target_", ""))
        except Exception:
            return
    if "submitit" in launcher or not launched_externally() or external_world_size() <= 1:
        return
    raise ConfigError(
        "a sweep (-m) cannot be started under torchrun or srun: every rank would run the whole sweep. "
        "start each sweep worker as one process (with trainer=ddp the ranks of each trial are started for it) "
        "and share the study between workers through one storage (README 'Sweeps on a cluster')")


def _check_one_output_dir_for_all_ranks() -> None:
    """Under torchrun or srun every process runs Hydra, and the default output directory is named
    after the time it starts: each rank would get its own. The run needs one directory that every
    rank knows: one given on the command line, or one named after the job."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN:
            return
        hydra = HydraConfig.get()
        given = any(o.startswith("hydra.run.dir=") for o in hydra.overrides.hydra)
        run_dir = str(hydra.run.dir)
    except Exception:
        return
    if given or not launched_externally() or external_world_size() <= 1:
        return
    job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID")
    if job_id and job_id in run_dir:
        return
    raise ConfigError(
        "this run is started as several processes (torchrun or srun): give them one output directory, "
        "e.g. hydra.run.dir=outputs/multinode/$SLURM_JOB_ID (docs/clusters.md 'Several nodes')")


# ----- how many processes this node runs -----------------------------------------------------------
def gpu_count(devices: Any, visible: int) -> int:
    """The number of devices ``trainer.devices`` asks for: N, -1/"auto" (all visible), "0,1" or [0, 1]."""
    if devices is None or devices in ("auto", -1, "-1"):
        return visible
    if isinstance(devices, (list, tuple, ListConfig)):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    return int(devices)


def processes_per_node(trainer: DictConfig) -> int:
    """How many processes Lightning runs on each node for this trainer config."""
    strategy = trainer.get("strategy", "auto")
    if isinstance(strategy, DictConfig):  # strategy: {_target_: ...DDPStrategy, ...}
        target = str(strategy.get("_target_", ""))
        if not target.endswith(("DDPStrategy", "FSDPStrategy")) or strategy.get("start_method", "popen") != "popen":
            return 1
    elif str(strategy) not in SCRIPT_STRATEGIES:
        return 1
    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", "auto")
    if accelerator == "auto":
        import torch

        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        import torch

        return gpu_count(devices, torch.cuda.device_count())
    if accelerator == "cpu":
        return gpu_count(devices, visible=1)  # the same forms; "auto" is one CPU process
    return 1


# ----- starting the other ranks --------------------------------------------------------------------
@contextlib.contextmanager
def other_ranks_started(cfg: DictConfig) -> Iterator[None]:
    """Start local ranks 1..N-1 of this run when this process has to (a DDP run started as one
    process); no-op otherwise. Around the rest of rank 0's work: on the way out it waits for the
    other ranks (and fails if one failed), or stops them if rank 0 failed; either way the process
    group and the environment are left as found, so the next trial of a sweep starts clean."""
    per_node = processes_per_node(cfg.trainer)
    if per_node <= 1 or launched_externally():
        yield
        return
    num_nodes = int(cfg.trainer.get("num_nodes", 1) or 1)
    from lightning_fabric.plugins.environments.lightning import find_free_network_port

    rank_env = {
        "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": os.environ.get("MASTER_PORT") or str(find_free_network_port()),
        "NODE_RANK": os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")),
        "WORLD_SIZE": str(per_node * num_nodes),
    }
    saved_env = {name: os.environ.get(name) for name in (*rank_env, "LOCAL_RANK")}
    children: list[subprocess.Popen] = []
    watcher = _Watcher(children)
    try:
        # LOCAL_RANK in rank 0's own environment tells Lightning the processes exist already
        os.environ.update(rank_env, LOCAL_RANK="0")
        config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        children.extend(_start_rank(local_rank) for local_rank in range(1, per_node))
        for child in children:
            # the config travels on stdin, not in a file: it may hold credentials (a tracking URI)
            child.stdin.write(config_yaml)
            child.stdin.close()
        watcher.start()
        with _sigterm_forwarded(children):
            yield
    except BaseException:
        watcher.stop()
        _stop(children)
        raise
    else:
        watcher.stop()
        _wait_for(children)
    finally:
        _destroy_process_group()
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def no_collective_on_sigterm(trainer) -> None:
    """Lightning's SIGTERM handler broadcasts from rank 0 inside the handler, wherever the signal lands: the other
    ranks are in another collective (their step's all-reduce) or in none, so a SIGTERM to rank 0 of a DDP run hung
    every process, a second signal included (the handler never returned). SIGTERM is this package's interrupt, as
    Ctrl-C is (``sigterm_as_interrupt``, composed after Lightning's handler; rank 0 passes it on to the ranks it
    started): Lightning's part is left out. Its SLURM requeue handlers stay."""
    trainer._signal_connector._sigterm_notifier_fn = lambda signum, frame: None


@contextlib.contextmanager
def _sigterm_forwarded(children: list[subprocess.Popen]) -> Iterator[None]:
    """SIGTERM to rank 0 alone (``kill``, ``timeout``, a scheduler, ``docker stop``) reaches the ranks it started
    too, as Ctrl-C reaches a terminal's whole group: each rank stops where it is, instead of waiting in its next
    collective for a rank 0 that has stopped until ``_stop`` kills it. (One already in that collective when the
    signal lands is killed there, as under Ctrl-C.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def forward(signum, frame):
        for child in children:
            with contextlib.suppress(OSError):
                child.send_signal(signum)  # skips a child that has exited
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_rank(local_rank: int) -> subprocess.Popen:
    env = dict(os.environ, LOCAL_RANK=str(local_rank))
    child = subprocess.Popen([sys.executable, "-m", "pipeline.cli.rank"], stdin=subprocess.PIPE, env=env,
                             text=True)
    child.local_rank = local_rank  # type: ignore[attr-defined]
    return child


def _wait_for(children: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + CHILD_EXIT_TIMEOUT_S
    failed = []
    for child in children:
        try:
            code = child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
        if code != 0:
            failed.append(f"local rank {child.local_rank} exited with code {code}")
    if failed:
        raise RankFailed("; ".join(failed))


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _Watcher(threading.Thread):
    """When another rank dies, rank 0 fails in its next collective over gloo, but waits for the
    timeout (30 min) over NCCL. Kill rank 0 (as Lightning's own launcher does) if it is still
    running a grace period after another rank failed."""

    def __init__(self, children: list[subprocess.Popen]):
        super().__init__(daemon=True, name="rank-watcher")
        self.children = children
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()

    def run(self) -> None:
        while not self._stopped.wait(1.0):
            failed = [c for c in self.children if c.poll() not in (None, 0)]
            if failed:
                break
        else:
            return
        if self._stopped.wait(FAILURE_GRACE_S):
            return
        with self._lock:
            if self._stopped.is_set():
                return
            log.error("local rank %d exited with code %d and rank 0 is still blocked %.0f s later; stopping the run",
                      failed[0].local_rank, failed[0].returncode, FAILURE_GRACE_S)
            _stop(self.children)
            os.kill(os.getpid(), signal.SIGKILL)
