"""Data-parallel training (DDP) on two CPU processes over gloo, through the real CLI: one MLflow
run, one output directory, one checkpoint, and the numbers of one process with the same global
batch size. The unit tests below them pin the rank and launch decisions without any process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose, run_cli, runs_in

TWO_PROCESSES = ["trainer=ddp_cpu", "trainer.devices=2"]
# 1000 rows: 720 train / 80 validation / 200 test, all even, so each rank gets an equal shard
# without padding and 2 x 32 rows per step are exactly the 64 rows one process takes per step
REGRESSION = ["task=regression", "data=synthetic_linear", "model=linear", "trainer.max_epochs=2"]
# 2000 rows: 1440 / 160 / 400; no dropout, so the two ranks draw no random numbers of their own
CLASSIFICATION = ["task=classification", "data=synthetic_binary", "model=mlp", "model.hidden_dims=[16]",
                  "trainer.max_epochs=2"]


def history(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def per_epoch(rows: list[dict], key: str) -> dict[int, float]:
    return {row["epoch"]: row[key] for row in rows if key in row}


def final(rows: list[dict]) -> dict[str, float]:
    return {k: v for row in rows for k, v in row.items() if k.startswith("test/")}


def single_process(args: list[str], output_dir: Path):
    result = run_cli([*args, "logger=none", f"hydra.run.dir={output_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return history(output_dir)


def assert_one_run_one_directory(result, store: dict):
    """What the user sees after a 2-process run: one summary, one MLflow run, one output directory
    (no second Hydra directory for rank 1), one best checkpoint."""
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Test metrics:") == 1, result.stdout
    assert "deprecated" not in result.stderr, result.stderr[-3000:]  # torch's notes to Lightning are not the user's
    runs = runs_in(store)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["effective_batch_size"] == "64"
    assert sorted(p.name for p in store["tmp"].iterdir()) == ["mlruns", "outputs"]
    assert [p.parent for p in store["tmp"].rglob(".hydra")] == [store["outputs"]]
    assert len(list((store["outputs"] / "checkpoints").glob("best-*.ckpt"))) == 1
    return runs[0]


@pytest.mark.slow
def test_regression_on_two_processes_matches_one_process_and_resumes(store, tmp_path):
    two = run_cli([*REGRESSION, *TWO_PROCESSES, "data.batch_size=32"], store)
    run = assert_one_run_one_directory(two, store)
    # the reference trains one epoch more, to compare the resumed 2-process run with it
    one = single_process([*REGRESSION, "data.batch_size=64", "trainer.max_epochs=3"], tmp_path / "one")
    ddp = history(store["outputs"])
    for key in ("train/loss", "val/rmse"):
        expected = per_epoch(one, key)
        for epoch, value in per_epoch(ddp, key).items():
            assert value == pytest.approx(expected[epoch], rel=1e-4), (key, epoch)
    assert run.data.metrics["val/rmse"] == pytest.approx(per_epoch(one, "val/rmse")[1], rel=1e-4)
    assert run.data.metrics["train/samples_per_s"] > 0

    resumed_dir = tmp_path / "resumed"
    resumed = run_cli([*REGRESSION, *TWO_PROCESSES, "data.batch_size=32", "trainer.max_epochs=3", "logger=none",
                       f"ckpt_path={store['outputs'] / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={resumed_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after_resume = history(resumed_dir)
    # epochs 0 and 1 came from the checkpoint, their metrics copied into the resumed run's history
    assert sorted(per_epoch(after_resume, "train/loss")) == [0, 1, 2]
    assert per_epoch(after_resume, "train/loss") == pytest.approx(per_epoch(ddp, "train/loss") | {
        2: per_epoch(after_resume, "train/loss")[2]}, rel=1e-12)
    assert final(after_resume) == pytest.approx(final(one), rel=1e-4)


@pytest.mark.slow
def test_a_resumed_two_process_run_with_batch_norm_validates_as_the_uninterrupted_one(tmp_path):
    """Each rank's BatchNorm statistics moved with its own rows, and checkpoints hold rank 0's: resumed, the run
    validated rank 1's rows with other statistics than the uninterrupted run (val/loss 1.99186 for 1.99182)."""
    common = ["task=image_classification", *TWO_PROCESSES, "data.limit_rows=600", "logger=none"]  # model=cnn: BatchNorm
    uninterrupted = single_process([*common, "trainer.max_epochs=3"], tmp_path / "whole")
    single_process([*common, "trainer.max_epochs=2"], tmp_path / "first")
    resumed = single_process([*common, "trainer.max_epochs=3",
                              f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "resumed")
    assert per_epoch(resumed, "val/loss") == per_epoch(uninterrupted, "val/loss")  # epochs 1-2 from the checkpoint
    assert final(resumed) == final(uninterrupted)


@pytest.mark.slow
def test_classification_on_two_processes_matches_one_process(store, tmp_path):
    two = run_cli([*CLASSIFICATION, *TWO_PROCESSES, "data.batch_size=32"], store)
    assert_one_run_one_directory(two, store)
    one = single_process([*CLASSIFICATION, "data.batch_size=64"], tmp_path / "one")
    ddp = history(store["outputs"])
    assert per_epoch(ddp, "train/loss") == pytest.approx(per_epoch(one, "train/loss"), rel=1e-4)
    expected = final(one)
    assert sorted(final(ddp)) == sorted(expected) and "test/acc" in expected
    for key, value in final(ddp).items():
        # a logit within float rounding of 0 may flip one of the 400 test rows
        assert value == pytest.approx(expected[key], abs=1 / 400 + 1e-6), key


@pytest.mark.slow
def test_class_weighted_training_on_two_processes_matches_one_process(store, tmp_path):
    """task.class_weights: each rank took the weighted mean over its own rows, so DDP's average of the ranks' gradients
    was not the weighted mean over the global batch (a rank's rows counted by its share of weights): val/loss 0.650
    against 0.683 for one process after the same epoch on a 1-in-10 table. The ranks now share their weight sums."""
    weighted = [*CLASSIFICATION, "task.class_weights=[1,4]"]
    two = run_cli([*weighted, *TWO_PROCESSES, "data.batch_size=32"], store)
    assert_one_run_one_directory(two, store)
    one = single_process([*weighted, "data.batch_size=64"], tmp_path / "one")
    ddp = history(store["outputs"])
    assert per_epoch(ddp, "train/loss") == pytest.approx(per_epoch(one, "train/loss"), rel=1e-4)
    assert per_epoch(ddp, "val/loss") == pytest.approx(per_epoch(one, "val/loss"), rel=1e-4)


@pytest.mark.slow
def test_test_metrics_on_two_processes_count_each_test_row_once(store):
    """A test split of an odd number of rows: the second rank's shard is padded with a repeat of the first row (so
    that both ranks take as many), and that repeat was counted in test/acc and test/loss. They are now those of
    the run's own predictions/test.csv, which holds each row once."""
    import numpy as np
    import pandas as pd

    result = run_cli([*CLASSIFICATION, *TWO_PROCESSES, "data.n_samples=2005", "data.batch_size=32"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/ 401 test rows" in result.stdout, result.stdout[-2000:]
    [run] = runs_in(store)
    predictions = pd.read_csv(store["outputs"] / "predictions" / "test.csv")
    assert len(predictions) == 401
    right = (predictions["target"].astype(str) == predictions["prediction"].astype(str)).mean()
    assert run.data.metrics["test/acc"] == pytest.approx(right, abs=1e-6)
    p = predictions["probability_1"].clip(1e-7, 1 - 1e-7)
    target = predictions["target"].astype(int)
    log_loss = float(-(target * np.log(p) + (1 - target) * np.log(1 - p)).mean())
    assert run.data.metrics["test/loss"] == pytest.approx(log_loss, abs=2e-5)


@pytest.mark.slow
def test_lbfgs_on_two_processes_takes_the_steps_of_one_process(store, tmp_path):
    """L-BFGS's line search decides on loss values: each rank computes its shard's, so the optimizer averages them
    over the ranks (DDP averages the gradients). Full batch on each rank = the full batch of one process; a rank
    deciding on its own loss would take other steps, and its replica would drift from the other's."""
    args = [*REGRESSION, "data.noise=2.0", "optimizer=lbfgs", "optimizer.max_iter=5", "optimizer.weight_decay=0.01",
            "trainer.max_epochs=2"]
    two = run_cli([*args, *TWO_PROCESSES, "data.batch_size=360"], store)
    assert two.returncode == 0, two.stderr[-3000:]
    one = single_process([*args, "data.batch_size=720"], tmp_path / "one")
    ddp = history(store["outputs"])
    for key in ("train/loss", "val/rmse"):
        assert per_epoch(ddp, key) == pytest.approx(per_epoch(one, key), rel=1e-5), key
    assert final(ddp) == pytest.approx(final(one), rel=1e-5)


@pytest.mark.slow
def test_sweep_trials_on_two_processes_train_the_sampled_parameters(tmp_path):
    """Each trial of an Optuna sweep runs on two processes. The sampled width of the hidden layer
    changes the parameter shapes: a rank that sampled (or re-swept) for itself would fail DDP's
    check that every rank holds the same model."""
    import optuna
    from optuna.trial import TrialState

    mlruns = tmp_path / "mlruns"
    mlruns.mkdir()
    store = {"uri": f"sqlite:///{mlruns}/mlflow.db", "artifacts": str(mlruns / "artifacts"),
             "outputs": tmp_path / "multirun", "tmp": tmp_path}
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hparams_search=regression_optuna", *TWO_PROCESSES, "trainer.max_epochs=2", "data.limit_rows=240",
                      "data.batch_size=32", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=3",
                      "hydra.sweeper.sampler=random", "model.hidden_dims.0=range(4, 64)",
                      "hydra.sweeper.trial_checkpoints=true",  # to read each trial's widths back
                      # a trial behind the better half of those before it at epoch 1 is pruned there
                      "hydra.sweeper.pruner=successive_halving",
                      "+hydra.sweeper.pruner_options={min_resource: 1, reduction_factor: 2, min_early_stopping_rate: 0}"],
                     store, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="regression_optuna", storage=storage).get_trials(deepcopy=False)
    assert len(trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [
        (t.state, t.user_attrs.get("fail_reason")) for t in trials]
    # pruning is decided once and every rank stops: a rank that went on would wait for the other forever
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "with these seeds the pruner stops at least one trial after epoch 1"
    for trial in pruned:
        trained = per_epoch(history(store["outputs"] / str(trial.number)), "train/loss")
        assert sorted(trained) == [0], trial.number
    children = [r for r in runs_in(store) if "mlflow.parentRunId" in r.data.tags
                and r.data.tags.get("sweep.role") != "final"]
    assert len(children) == 3  # one MLflow run per trial, none from rank 1
    [final] = [r for r in runs_in(store) if r.data.tags.get("sweep.role") == "final"]  # also trained on 2 ranks
    assert final.info.status == "FINISHED" and "test/rmse" in final.data.metrics
    width_by_run = {r.info.run_id: r.data.params["model.hidden_dims"] for r in children}
    for trial in trials:
        width = trial.params["model.hidden_dims.0"]
        assert width_by_run[trial.user_attrs["mlflow_run_id"]].startswith(f"[{width},"), trial.number
    # one output directory per trial, none per rank
    trial_dirs = sorted(p for p in store["outputs"].iterdir() if p.name.isdigit())
    assert [p.name for p in trial_dirs] == ["0", "1", "2"]
    final_dirs = sorted(p for p in store["outputs"].iterdir() if p.name.startswith("best-"))
    assert len(final_dirs) == 1
    assert sorted(p.parent for p in store["outputs"].rglob(".hydra")) == sorted(trial_dirs + final_dirs)
    for trial_dir in trial_dirs:
        state = torch.load(trial_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        widths = {w.shape[0] for name, w in state.items() if name.endswith("weight") and w.dim() == 2}
        assert len(widths) >= 2  # hidden width(s) and the output


# ----- errors a user can fix, before any data is loaded ------------------------------------------------
def test_ddp_without_gpu_fails_with_one_line(store):
    result = run_cli(["trainer=ddp"], store, env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: trainer=ddp needs a GPU"), result.stderr
    assert "Traceback" not in result.stderr and "trainer=ddp_cpu" in lines[-1]
    assert runs_in(store) == []


def test_gpu_trainers_are_checked_against_the_visible_gpus(monkeypatch):
    from pipeline.config import ConfigError
    from pipeline.distributed import check_trainer

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for choice in ("gpu", "ddp", "multinode"):
        with pytest.raises(ConfigError, match="needs a GPU"):
            check_trainer(compose([f"trainer={choice}"]))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_trainer(compose(["trainer=ddp"]))
    check_trainer(compose(["trainer=ddp", "trainer.precision=bf16-mixed"]))
    with pytest.raises(ConfigError, match="asks for 4 GPUs but 2 are visible"):
        check_trainer(compose(["trainer=ddp", "trainer.devices=4"]))


def test_several_nodes_need_a_launcher(monkeypatch):
    from pipeline.config import ConfigError
    from pipeline.distributed import check_trainer

    for name in ("MASTER_ADDR", "LOCAL_RANK", "RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="torchrun or srun"):
        check_trainer(compose(["trainer=ddp_cpu", "trainer.num_nodes=2"]))


def test_processes_started_by_torchrun_must_share_an_output_dir(tmp_path):
    torchrun_rank1 = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "job42"}
    # the default output directory (named after the start time), under tmp_path
    result = run_cli([*TWO_PROCESSES, "logger=none", f"paths.root_dir={tmp_path}"], env=torchrun_rank1)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: this run is started as several processes")


def test_a_sweep_is_not_started_in_every_rank_of_torchrun(store):
    torchrun_rank0 = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "job42"}
    result = run_cli([*TWO_PROCESSES, "seed=1,2", "logger=none"], store, multirun=True, env=torchrun_rank0)
    assert result.returncode == 2
    assert "Error: a sweep (-m) cannot be started under torchrun or srun" in result.stderr
    assert not list(store["outputs"].rglob("metrics.jsonl"))
    # the sweeper's sweep: refused before a study or a parent run exists (every trial failed, after both were made)
    result = run_cli(["hparams_search=regression_optuna", *TWO_PROCESSES, "hydra.sweeper.n_trials=2"], store,
                     multirun=True, env=torchrun_rank0)
    assert result.returncode == 2, result.stderr[-3000:]
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith("Error: a sweep (-m) cannot be started under torchrun or srun"), error
    assert not (Path(store["artifacts"]).parent / "optuna").exists() and runs_in(store) == []


# ----- who is rank 0, how many processes: decided from the config and the environment --------------
@pytest.mark.parametrize("env, rank_zero", [
    ({}, True),
    ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, False),  # started by other_ranks_started
    ({"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0"}, True),  # torchrun
    ({"RANK": "5", "LOCAL_RANK": "1", "GROUP_RANK": "2"}, False),
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # first process of the second node
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, False),  # srun sets no RANK
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, True),
    ({"SLURM_PROCID": "0", "RANK": "3"}, False),  # torchrun inside srun: SLURM_PROCID is the node
])
def test_rank_zero_is_known_from_the_environment(monkeypatch, env, rank_zero):
    from pipeline.ranks import RANK_VARIABLES, is_rank_zero
    from pipeline.tracking.run import TrackedRun

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_rank_zero() is rank_zero
    assert TrackedRun("sqlite:///unused.db", "x").enabled is rank_zero  # only rank 0 creates MLflow runs


def test_processes_per_node(monkeypatch):
    from pipeline.distributed import processes_per_node

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert processes_per_node(compose(["trainer=ddp_cpu", "trainer.devices=3"]).trainer) == 3
    assert processes_per_node(compose(["trainer=cpu"]).trainer) == 1
    assert processes_per_node(compose(["trainer=gpu"]).trainer) == 1
    assert processes_per_node(compose(["trainer=ddp"]).trainer) == 4
    assert processes_per_node(compose(["trainer=ddp", "trainer.devices=[0,2]"]).trainer) == 2
    # spawn-based strategies start their processes themselves, without re-running the script
    assert processes_per_node(compose(["trainer=ddp_cpu", "trainer.strategy=ddp_spawn"]).trainer) == 1


def test_multinode_reads_the_cluster_size_from_the_launcher(monkeypatch):
    for name in ("SLURM_NNODES", "SLURM_NTASKS_PER_NODE", "GROUP_WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    trainer = compose(["trainer=multinode"]).trainer
    assert (trainer.num_nodes, trainer.devices, trainer.strategy) == (1, "auto", "ddp")
    monkeypatch.setenv("SLURM_NNODES", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "8")
    trainer = compose(["trainer=multinode"]).trainer
    assert (trainer.num_nodes, trainer.devices) == (4, 8)
    for name in ("SLURM_NNODES", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")  # torchrun --nnodes=2 --nproc-per-node=3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    trainer = compose(["trainer=multinode"]).trainer
    assert (trainer.num_nodes, trainer.devices) == (2, 3)


# ----- the in-memory batcher shards like DistributedSampler -------------------------------------------
@pytest.mark.parametrize("rows, world_size", [(100, 2), (101, 2), (10, 3), (7, 4)])
def test_batcher_shards_without_overlap_and_reshuffles_each_epoch(rows, world_size):
    from pipeline.data.base import TensorBatcher

    epoch = [0]
    ids = torch.arange(rows)

    def shards() -> list[list[int]]:
        batchers = [TensorBatcher((ids,), batch_size=8, shuffle=True, seed=3, epoch_fn=lambda: epoch[0],
                                  rank=rank, world_size=world_size) for rank in range(world_size)]
        assert len({len(b) for b in batchers}) == 1  # every rank takes as many steps
        return [[int(i) for (batch,) in b for i in batch] for b in batchers]

    first = shards()
    seen = [i for shard in first for i in shard]
    assert len({len(shard) for shard in first}) == 1
    assert set(seen) == set(range(rows))  # every row, every epoch
    padding = len(seen) - rows  # the last rows are repeated to even the shards out, as DistributedSampler does
    assert padding == (-rows) % world_size
    assert len(seen) - len(set(seen)) == padding
    epoch[0] = 1
    second = shards()
    assert set(i for shard in second for i in shard) == set(range(rows))
    assert second != first  # a new order each epoch
    epoch[0] = 0
    assert shards() == first  # the order is a function of (seed, epoch): a resumed run sees the same


def test_a_rank_that_died_is_said_with_the_checkpoint_to_resume_from(tmp_path, capsys):
    """kill -9 of rank 1 mid-run: rank 0 ended with 'unexpected RuntimeError: [.../gloo/transport/tcp/pair.cc:545]
    Read error ...: Connection reset by peer', nothing about the other rank nor last.ckpt. (The kill itself was
    run by hand: tests/test_faults.py covers the interrupt paths; this pins the answer.)"""
    from pipeline.cli.errors import report_errors
    from pipeline.errors import RunInterrupted, remember_resume_point

    last = tmp_path / "checkpoints" / "last.ckpt"
    remember_resume_point(lambda: RunInterrupted(last))
    try:
        with pytest.raises(SystemExit) as exited, report_errors():
            raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:33172: "
                               "Connection reset by peer")
    finally:
        remember_resume_point(None)
    line = capsys.readouterr().err.strip()
    assert exited.value.code == 1
    assert line.startswith("Error: another process of this DDP run stopped (Connection reset by peer): a rank was "
                           "killed or failed"), line
    assert line.endswith(f"the MLflow run, if any, is marked FAILED; {RunInterrupted(last)}"), line
    with pytest.raises(SystemExit), report_errors():  # any other error stays an unexpected one
        raise RuntimeError("Connection reset by peer")
    assert "unexpected RuntimeError" in capsys.readouterr().err


def interrupt_two_process_run(store, interrupt) -> None:
    """Start a 2-process run, ``interrupt(process)`` once its first epoch has ended, and check what the user gets:
    'Interrupted ... marked KILLED' said once (by rank 0), last.ckpt named, exit 130, the run KILLED, no process left."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import PROJECT_ROOT, store_overrides

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli.train", *CLASSIFICATION, *TWO_PROCESSES,
                                "trainer.max_epochs=200", "logger.mlflow.log_model=false", *store_overrides(store)],
                               cwd=PROJECT_ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        last = store["outputs"] / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 300
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be interrupted"
        interrupt(process)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stderr[-3000:]
        said = [line for line in stderr.splitlines() if line.startswith("Interrupted")]
        assert len(said) == 1 and f"ckpt_path={last.resolve()}" in said[0], stderr[-3000:]
        [run] = runs_in(store)
        assert run.info.status == "KILLED"
        deadline = time.monotonic() + 10  # the started rank and the store's writer have gone too
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("a process of the run is left")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a run that hung is not left behind by the test


@pytest.mark.slow
def test_ctrl_c_to_a_two_process_run_is_said_once_and_names_the_checkpoint(store):
    """Ctrl-C reaches every process of the terminal's group: each rank said 'Interrupted ... marked KILLED'."""
    import os
    import signal

    interrupt_two_process_run(store, lambda process: os.killpg(process.pid, signal.SIGINT))


@pytest.mark.slow
def test_sigterm_to_rank_zero_alone_ends_a_two_process_run_as_ctrl_c_does(store):
    """``kill``, ``timeout``, a scheduler or ``docker stop`` signal rank 0 alone: Lightning's SIGTERM handler
    broadcast from rank 0 while rank 1 was in its step's all-reduce, and every process hung (the run RUNNING)."""
    import signal

    interrupt_two_process_run(store, lambda process: process.send_signal(signal.SIGTERM))
