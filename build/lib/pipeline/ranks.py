"""Which process of a run this is. Known from the environment before Lightning sets anything up, so
it is right from the first line of ``train()`` in every rank, however the ranks were started
(this package's DDP launcher, torchrun, SLURM's srun, LSF's jsrun, Open MPI)."""
from __future__ import annotations

import os

# A process is rank 0 when every one of these that is set is 0 (under torchrun inside srun,
# SLURM_PROCID is the node index and RANK the global rank: both are 0 only on global rank 0).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK",
                  "OMPI_COMM_WORLD_RANK")


def is_rank_zero() -> bool:
    """True in the process that owns the run: creates the MLflow run and writes its files."""
    return all(int(os.environ[name]) == 0 for name in RANK_VARIABLES if os.environ.get(name, "").strip())


def launched_externally() -> bool:
    """The processes of this run were created by torchrun, srun, jsrun or this package's launcher."""
    if "LOCAL_RANK" in os.environ or "RANK" in os.environ:
        return True
    from lightning_fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment

    return TorchElasticEnvironment.detect() or SLURMEnvironment.detect() or LSFEnvironment.detect()


def external_world_size() -> int:
    for name in ("WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").strip():
            return int(os.environ[name])
    return 1
