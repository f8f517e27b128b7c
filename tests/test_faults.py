"""Faults lose nothing: NaN/Inf loss, Ctrl-C / SIGTERM with an exact resume, unsafe checkpoints.

All through the real CLI (``python -m pipeline.cli.train``) as a user would see them.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import PROJECT_ROOT, run_cli, run_cli_in_process, runs_in, store_overrides


def single_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith(("Error:", "Interrupted"))]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


# ----- NaN / Inf loss ------------------------------------------------------------------------------------
def test_nan_loss_stops_training_and_marks_the_run_failed_with_the_step(store):
    result = run_cli(["task=regression", "optimizer=sgd", "optimizer.lr=1e10", "trainer.max_epochs=3",
                      "callbacks=none"], store)
    assert result.returncode == 2, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert "training loss is" in line and "global step" in line and "optimizer.lr" in line, line
    [run] = runs_in(store)
    assert run.info.status == "FAILED"
    error = run.data.tags["error"]
    match = re.search(r"^NonFiniteLossError: training loss is (nan|inf|-inf) at epoch (\d+) \(MLflow step (\d+)\), "
                      r"global step (\d+)", error)
    assert match, error
    # the epoch as the console counts it (epoch 1/3), and the step of the metrics in MLflow
    assert int(match.group(2)) == int(match.group(3)) + 1
    failed_epoch = int(match.group(3))
    # training stopped there: no epoch from the failing one on was completed, and nothing was tested
    from mlflow import MlflowClient

    trained = [m.step for m in MlflowClient(store["uri"]).get_metric_history(run.info.run_id, "train/loss")]
    assert all(epoch < failed_epoch for epoch in trained), trained
    assert not any(key.startswith("test/") for key in run.data.metrics)
    # the epochs that ended, as for an interrupt: pipeline-compare showed such a run as having trained all 3
    assert (run.data.tags["stopped_early_at_epoch"], run.data.tags["stopped_by"]) == (str(failed_epoch), "error")


# ----- interruption and exact resume ---------------------------------------------------------------------
# dropout: the resumed run must also restore the random state, not only weights and optimizer
TRAINING = ["data=synthetic_binary", "data.batch_size=16", "trainer.max_epochs=4", "model.dropout=0.3",
            "callbacks=model_checkpoint"]


def start_training(store: dict, extra: list[str] = ()) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [sys.executable, "-m", "pipeline.cli.train", *TRAINING, *extra, *store_overrides(store)]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def interrupt_after_first_epoch(store: dict, signum: int) -> tuple[subprocess.CompletedProcess, float]:
    """Start a run, send ``signum`` once the first epoch's checkpoint exists; return the result and how
    many seconds the process took to exit after the signal."""
    process = start_training(store)
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be interrupted"
    process.send_signal(signum)
    sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), time.monotonic() - sent


def assert_killed_with_checkpoint(store: dict, result: subprocess.CompletedProcess, exit_seconds: float) -> Path:
    assert result.returncode == 130, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    last = (store["outputs"] / "checkpoints" / "last.ckpt").resolve()
    assert line.startswith("Interrupted") and "KILLED" in line and f"ckpt_path={last}" in line, line
    assert exit_seconds < 10, f"took {exit_seconds:.1f} s to exit after the signal"
    [run] = runs_in(store)
    assert run.info.status == "KILLED"
    assert run.data.tags["resume_from"] == str(last)
    saved_epoch = torch.load(last, weights_only=True)["epoch"]
    assert saved_epoch < 3  # a checkpoint of an unfinished run
    # the epochs it trained, for pipeline-compare's <trained>/<max> (it showed 4, as for a run that trained them)
    assert run.data.tags["stopped_by"] == "interrupt"
    assert saved_epoch + 1 <= int(run.data.tags["stopped_early_at_epoch"]) < 4
    return last


def final_metrics(run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if "time" not in k and "per_s" not in k}


def test_an_interrupt_after_the_run_ended_says_it_finished(store):
    """A Ctrl-C in the moment after a run was recorded FINISHED (its summary printed) said that the run was marked
    KILLED and to resume it: a second run for nothing."""
    program = ("import sys, pipeline.train\n"
               "recorded = pipeline.train.remember_run_ended\n"
               "def ended(folder):\n    recorded(folder)\n    if folder is not None:\n        raise KeyboardInterrupt\n"
               "pipeline.train.remember_run_ended = ended  # Ctrl-C right after the run is recorded as ended\n"
               "from pipeline.cli.train import main\nsys.argv = ['pipeline-train', *sys.argv[1:]]\nmain()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run([sys.executable, "-c", program, *TRAINING[:-1], "trainer.max_epochs=1",
                             "logger.mlflow.log_model=false", *store_overrides(store)],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert line == (f"Interrupted (Ctrl-C or SIGTERM) after the run ended: it is recorded as it finished (its MLflow "
                    f"run, if any, FINISHED; its outputs in {store['outputs']}); nothing to resume"), line
    assert [run.info.status for run in runs_in(store)] == ["FINISHED"]


def test_an_interrupted_multirun_job_says_the_jobs_after_it_did_not_run(store):
    """A failing multirun job said that the jobs after it did not run; an interrupted one said nothing of them,
    and the multirun's last lines were its first job's, as if that had been the whole command."""
    program = ("import sys, pipeline.tracking\n"
               "def interrupted(*args, **kwargs):\n    raise KeyboardInterrupt\n"
               "pipeline.tracking.log_run_end = interrupted  # Ctrl-C as the first job's model is logged\n"
               "from pipeline.cli.train import main\nsys.argv = ['pipeline-train', *sys.argv[1:]]\nmain()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run([sys.executable, "-c", program, "-m", "seed=1,2,3", *TRAINING[:-1], "trainer.max_epochs=1",
                             "logger.mlflow.log_model=false", *store_overrides(store, multirun=True)],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert line.startswith("Interrupted") and "KILLED" in line, line
    assert line.endswith("[multirun job #0: the multirun stops here, the jobs after it did not run]"), line
    assert [run.info.status for run in runs_in(store)] == ["KILLED"]  # seeds 2 and 3 never started


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_marks_killed_and_resume_gives_the_uninterrupted_metrics(store, tmp_path):
    result, exit_seconds = interrupt_after_first_epoch(store, signal.SIGINT)
    last = assert_killed_with_checkpoint(store, result, exit_seconds)

    resumed = dict(store, outputs=tmp_path / "resumed")
    result = run_cli([*TRAINING, f"ckpt_path={last}"], resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    uninterrupted = dict(store, outputs=tmp_path / "uninterrupted")
    result = run_cli(TRAINING, uninterrupted)
    assert result.returncode == 0, result.stderr[-3000:]

    _killed, resumed_run, full_run = sorted(runs_in(store), key=lambda run: run.info.start_time)
    assert (resumed_run.info.status, full_run.info.status) == ("FINISHED", "FINISHED")
    assert "test/acc" in final_metrics(full_run)
    assert final_metrics(resumed_run) == final_metrics(full_run)
    # its history holds every epoch, those before the resume copied from the checkpoint (it held the later ones only,
    # and its learning curves a dot each)
    from mlflow import MlflowClient

    client = MlflowClient(store["uri"])
    for key in ("val/loss", "train/loss", "val/loss_best"):
        history = {run: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key),
                                                           key=lambda m: m.step)] for run in (resumed_run, full_run)}
        assert history[resumed_run] == history[full_run] and len(history[full_run]) > 1, (key, history)
    assert resumed_run.data.tags["epochs_from_checkpoint"].startswith("1-"), resumed_run.data.tags
    # which epoch's model the test metrics are of, in the store (only the artifact's file name said it)
    tested = re.fullmatch(r"checkpoints/best-epoch(\d{3})\.ckpt", full_run.data.tags["tested_checkpoint"])
    assert tested and full_run.data.tags["tested_epoch"] == str(int(tested.group(1)) + 1), full_run.data.tags
    assert [a.path for a in client.list_artifacts(full_run.info.run_id, "checkpoints")] == \
        [full_run.data.tags["tested_checkpoint"]]
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert sorted({row["epoch"] for row in rows if "val/loss" in row})[0] == 0


def test_an_interrupt_after_training_still_names_the_checkpoint_to_resume_from(store):
    """SIGTERM while the run's model and plots were logged (after its test), or a second Ctrl-C during the first
    one's clean-up, escaped the run's own handler: the line said nothing of last.ckpt, which was there, and a user
    trained again from the start."""
    program = ("import sys, pipeline.tracking\n"
               "def interrupted(*args, **kwargs):\n    raise KeyboardInterrupt\n"
               "pipeline.tracking.log_run_end = interrupted  # Ctrl-C as the run's model and plots are logged\n"
               "from pipeline.cli.train import main\nsys.argv = ['pipeline-train', *sys.argv[1:]]\nmain()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run([sys.executable, "-c", program, *TRAINING, "logger.mlflow.log_model=false",
                             *store_overrides(store)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    last = (store["outputs"] / "checkpoints" / "last.ckpt").resolve()
    assert result.returncode == 130 and last.is_file(), result.stderr[-3000:]
    assert single_error_line(result.stderr) == (
        "Interrupted (Ctrl-C or SIGTERM); the MLflow run, if any, is marked KILLED; the newest saved end of an epoch "
        f"is in {last}; resume with the same command plus ckpt_path={last}")
    [run] = runs_in(store)
    assert run.info.status == "KILLED"
    # the tools that need what the run's end logs say that it was interrupted (they said it logged nothing, asked
    # whether log_model=false was set, and named test=false)
    from conftest import eval_cli, predict_cli

    from pipeline.cli.compare import main as compare

    run_id, said = run.info.run_id, f"run {run.info.run_id} was interrupted"
    code, _, stderr = eval_cli([run_id, "--tracking-uri", store["uri"]])
    assert code == 2 and said in stderr and "before it logged a checkpoint" in stderr, stderr[-2000:]
    assert "its output folder has" in stderr, stderr[-2000:]  # and the file it left, to evaluate or resume from
    rows = store["tmp"] / "rows.csv"
    rows.write_text("x0,x1\n0.1,0.2\n")
    code, _, stderr = predict_cli([run_id, "--input", str(rows), "--output", str(store["tmp"] / "p.csv"),
                                   "--tracking-uri", store["uri"]])
    assert code == 2 and said in stderr and "before it logged its model" in stderr, stderr[-2000:]
    assert compare(["--paired", run_id, run_id, "--tracking-uri", store["uri"]]) == 2


def test_a_run_resumed_from_its_last_epoch_keeps_its_best_validation_value(store, tmp_path):
    """Resumed from the last.ckpt of its last epoch (as after a stop during the test that follows it): no epoch
    runs, and the run had no val/loss_best, so pipeline-compare ranked it below every run that has one."""
    first = run_cli(TRAINING, store)
    assert first.returncode == 0, first.stderr[-3000:]
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    resumed = run_cli([*TRAINING, f"ckpt_path={last}"], dict(store, outputs=tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full, again = sorted(runs_in(store), key=lambda run: run.info.start_time)
    assert again.data.metrics["val/loss_best"] == full.data.metrics["val/loss_best"]
    assert again.data.metrics["test/acc"] == full.data.metrics["test/acc"]
    # and its history: the saved run's epochs, copied as a resume mid-training copies them (it had none: no epoch
    # starts, so the copy at the start of training never ran)
    assert "nothing left to train" in resumed.stdout, resumed.stdout[-2000:]
    # its best checkpoint is in its own folder, beside the data/ and config.yaml that pipeline-predict reads with it:
    # the printed one was the first run's file, in a folder without them (after an interrupt: the KILLED run's)
    best = Path(re.search(r"Best checkpoint: (\S+)", resumed.stdout).group(1))
    original = store["outputs"] / "checkpoints" / best.name
    assert best.parent == tmp_path / "resumed" / "checkpoints", best
    assert best.read_bytes() == original.read_bytes()  # a copy: the first run's file stays
    assert {"model_spec.json"} <= {p.name for p in (tmp_path / "resumed" / "data").iterdir()}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store["uri"])
    for key in ("train/loss", "val/loss", "val/acc"):
        history = [(m.step, m.value) for m in client.get_metric_history(again.info.run_id, key)]
        assert history == [(m.step, m.value) for m in client.get_metric_history(full.info.run_id, key)], key
        assert len(history) == 4, (key, history)
    assert again.data.tags["epochs_from_checkpoint"] == "1-4"


def test_a_checkpoint_of_another_seed_or_other_rows_is_refused_and_a_multirun_job_is_told_to_resume_alone(store, tmp_path):
    """`pipeline-train -m seed=1,2,3 ... ckpt_path=<job 2's last.ckpt>`, as the interrupted multirun's message said,
    resumed every job from job 2's weights: seed 1's run was tested on rows that were seed 2's training rows, and
    finished as if nothing were amiss."""
    from pipeline.errors import RunInterrupted

    first = run_cli(TRAINING, store)
    assert first.returncode == 0, first.stderr[-3000:]
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["seed"] == 42 and set(saved["data_digests"]) == {"training", "validation"}
    for override, said in (("seed=7", f"ckpt_path={last} was written by a run with seed=42, and this run has seed=7"),
                           ("data.val_fraction=0.2", f"ckpt_path={last} was written on other training and "
                                                     "validation rows than this run's (digests ")):
        result = run_cli_in_process([*TRAINING, override, f"ckpt_path={last}"],
                                    dict(store, outputs=tmp_path / override.partition("=")[0]))
        assert result.returncode == 2, result.stderr[-3000:]
        assert said in single_error_line(result.stderr), result.stderr[-2000:]
    assert len(runs_in(store)) == 1  # refused before any run
    job = str(RunInterrupted(Path("/r/1/checkpoints/last.ckpt"), ["task=regression", "seed=2", "+tags.note=a b"]))
    assert job == ("the newest saved end of an epoch of this job is in /r/1/checkpoints/last.ckpt; resume this job "
                   "alone with pipeline-train task=regression seed=2 '+tags.note=a b' "
                   "ckpt_path=/r/1/checkpoints/last.ckpt, then run the multirun's jobs after it")


def test_a_checkpoint_of_the_same_rows_prepared_otherwise_is_refused(store, tmp_path):
    """The split's digests identify the rows drawn, whatever their preprocessing; the weights, though, learned the
    inputs one preprocessing made of them: resumed with another data.numeric_transform they would continue on
    inputs they never saw, and the run would end FINISHED."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)) * [1, 10, 100]
    table = tmp_path / "t.csv"
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": (x[:, 0] > 0).astype(int)}).to_csv(table, index=False)
    training = ["task=classification", "data=csv", f"data.path={table}", "data.target=y", "trainer.max_epochs=2"]
    first = run_cli_in_process(training, store)
    assert first.returncode == 0, first.stderr[-3000:]
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    assert set(torch.load(last, weights_only=True)["input_digests"]) == {"training", "validation"}
    result = run_cli_in_process([*training, "trainer.max_epochs=4", "data.numeric_transform=quantile",
                                 f"ckpt_path={last}"], dict(store, outputs=tmp_path / "resumed"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert (f"ckpt_path={last} was written on the same rows prepared otherwise"
            in single_error_line(result.stderr)), result.stderr[-2000:]
    assert len(runs_in(store)) == 1  # refused before any run
    again = run_cli_in_process([*training, "trainer.max_epochs=4", f"ckpt_path={last}"],
                               dict(store, outputs=tmp_path / "same"))
    assert again.returncode == 0, again.stderr[-3000:]


def test_a_checkpoint_is_not_read_with_another_target_transform(store, tmp_path):
    """A model that learned the raw target, resumed (or evaluated) with task.target_transform=log, had its outputs
    read as log1p of the target: the run FINISHED with a test r2 of 0.26 for 0.35, logging target_transform=log for
    a model that never learned it."""
    from conftest import eval_cli

    training = ["task=regression", "trainer.max_epochs=2", "logger.mlflow.log_model=false",
                "logger.mlflow.log_plots=false"]
    first = run_cli_in_process(training, store)
    assert first.returncode == 0, first.stderr[-3000:]
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["output_settings"] == {"task.target_transform": "none"}
    said = (f"ckpt_path={last} holds a model that learned with task.target_transform=none, and this run has "
            "task.target_transform=log")
    result = run_cli_in_process([*training, "trainer.max_epochs=3", "task.target_transform=log", f"ckpt_path={last}"],
                                dict(store, outputs=tmp_path / "resumed"))
    assert result.returncode == 2 and said in single_error_line(result.stderr), result.stderr[-2000:]
    code, _, stderr = eval_cli([str(last), "task.target_transform=log", "--tracking-uri", store["uri"],
                                "--output-dir", str(tmp_path / "evaluated")])
    assert code == 2 and said in stderr, stderr[-2000:]
    assert len(runs_in(store)) == 1  # refused before any run


def test_a_resume_with_other_scheduler_settings_is_refused_naming_them(store, tmp_path):
    """Lightning loads the saved scheduler and optimizer state over the new ones: a run resumed under OneCycleLR
    with optimizer.lr=0.2 trained on at the saved 0.1, a StepLR checkpoint resumed with scheduler=cosine mixed the
    two schedules, and each FINISHED with the new values logged as its params. A schedule spanning the run cannot
    be stretched by trainer.max_epochs either, nor the model changed. Settings the resumed epochs use as given
    (dropout) are allowed."""
    training = ["task=classification", "scheduler=onecycle", "optimizer=sgd", "optimizer.lr=0.1", "trainer.max_epochs=2"]
    first = run_cli_in_process(training, store)
    assert first.returncode == 0, first.stderr[-3000:]
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["training_settings"]["scheduler.pct_start"] == 0.3
    for override, said in (
            ("optimizer.lr=0.2", "optimizer.lr=0.1 there, 0.2 here; scheduler.max_lr=0.1 there, 0.2 here (set by "
                                 "${optimizer.lr})"),
            ("scheduler.pct_start=0.5", "scheduler.pct_start=0.3 there, 0.5 here"),
            ("trainer.max_epochs=4", "trainer.max_epochs=2 there, 4 here")):
        result = run_cli_in_process([*training, override, f"ckpt_path={last}"],
                                    dict(store, outputs=tmp_path / override.partition("=")[0]))
        assert result.returncode == 2, result.stderr[-3000:]
        line = single_error_line(result.stderr)
        assert f"ckpt_path={last} was written by a run with other optimizer or scheduler settings: {said}" in line, line
        assert ("the epochs and the batches per epoch cannot change either" in line) \
            == override.startswith("trainer.max_epochs"), line
    step = ["task=classification", "scheduler=step", "scheduler.step_size=1", "trainer.max_epochs=2"]
    second = run_cli_in_process(step, dict(store, outputs=tmp_path / "step"))
    assert second.returncode == 0, second.stderr[-3000:]
    step_last = tmp_path / "step" / "checkpoints" / "last.ckpt"
    for override, said in (("scheduler=cosine", "scheduler._target_='torch.optim.lr_scheduler.StepLR' there, "
                                                "'torch.optim.lr_scheduler.CosineAnnealingLR' here"),
                           ("scheduler.gamma=0.5", "scheduler.gamma=0.1 there, 0.5 here")):
        args = [*step, override, f"ckpt_path={step_last}"]
        if override == "scheduler=cosine":
            args.remove("scheduler.step_size=1")
        result = run_cli_in_process(args, dict(store, outputs=tmp_path / "other"))
        assert result.returncode == 2, result.stderr[-3000:]
        assert said in single_error_line(result.stderr), result.stderr[-2000:]
    # another activation keeps every weight's shape: the run went on, logged as a tanh model whose first epochs
    # trained with relu
    result = run_cli_in_process([*step, "model.activation=tanh", f"ckpt_path={step_last}"],
                                dict(store, outputs=tmp_path / "tanh"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert (f"ckpt_path={step_last} was written by a run of another model: model.activation='relu' there, 'tanh' "
            "here. Its weights were trained as that model") in single_error_line(result.stderr), result.stderr[-2000:]
    assert len(runs_in(store)) == 2  # refused before any run
    # a step schedule does not span the run: more epochs with the same settings go on from the checkpoint, and a
    # setting the resumed epochs use as given may change
    longer = run_cli_in_process([*step, "trainer.max_epochs=3", "model.dropout=0.2", f"ckpt_path={step_last}"],
                                dict(store, outputs=tmp_path / "longer"))
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert runs_in(store)[0].data.tags["resumed_from_checkpoint"] == str(step_last.resolve())


def test_sigterm_while_the_command_starts_is_an_interrupt_in_one_line(store, tmp_path):
    """SIGTERM in the seconds before the run starts (Hydra setting up the job, imports) ended the command silently
    with 143; it is told as an interrupt in one line, exit 130, as Ctrl-C is."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli.train", "trainer.max_epochs=1", "logger=none",
                                f"hydra.run.dir={out}"], cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not out.is_dir():  # Hydra is setting up the job
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, (process.returncode, stderr[-3000:])
    lines = [line for line in stderr.splitlines() if line.startswith("Interrupted (Ctrl-C or SIGTERM)")]
    assert len(lines) == 1 and "Traceback" not in stderr and "Data:" not in stdout, (stdout, stderr)


def test_sigterm_saves_a_checkpoint_and_marks_the_run_killed(store):
    result, exit_seconds = interrupt_after_first_epoch(store, signal.SIGTERM)
    assert_killed_with_checkpoint(store, result, exit_seconds)


# ----- checkpoints are loaded with weights_only=True -----------------------------------------------------
class RunsCode:
    """Unpickling this object runs a command: what a tampered checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_with_a_pickled_object_is_refused(empty_store):
    store = empty_store
    marker = store["tmp"] / "code-ran"
    evil = store["tmp"] / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "payload": RunsCode(marker)}, evil)
    result = run_cli(["trainer.max_epochs=1", f"ckpt_path={evil}"], store)
    assert result.returncode == 2, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert f"ckpt_path={evil}" in line and "refused" in line and "weights_only=True" in line, line
    assert not marker.exists(), "unpickling the checkpoint ran code"
    assert not Path(store["uri"][len("sqlite:///"):]).exists(), "refused only after an MLflow run was created"
    with pytest.raises(pickle.UnpicklingError):  # the file really is unsafe: a plain torch.load refuses it too
        torch.load(evil, weights_only=True)


def _flip_weight_bytes(path: Path) -> None:
    """Flip bytes inside the first tensor's data of a checkpoint (a zip of stored, uncompressed parts), as a failing
    disk would: the file still loads with torch.load, which checks no CRC."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 64)
    with open(path, "r+b") as file:
        file.seek(info.header_offset + 26)
        name_length, extra_length = np.frombuffer(file.read(4), dtype="<u2")
        start = info.header_offset + 30 + int(name_length) + int(extra_length)
        file.seek(start)
        data = bytearray(file.read(32))
        file.seek(start)
        file.write(bytes(b ^ 0x5A for b in data))


def test_a_checkpoint_with_flipped_bits_is_refused_by_resume_and_evaluation(store, tmp_path):
    """A checkpoint damaged on disk (flipped bits in its weights) resumed with rc 0 and no word: torch.load checks
    no CRC, so the run went on from other weights than were saved."""
    first = run_cli(TRAINING, store)
    assert first.returncode == 0, first.stderr[-3000:]
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(last.read_bytes())
    _flip_weight_bytes(damaged)
    torch.load(damaged, weights_only=True)  # loads: the damage is silent there
    resumed = run_cli([*TRAINING, f"ckpt_path={damaged}"], dict(store, outputs=tmp_path / "resumed"))
    line = single_error_line(resumed.stderr)
    assert resumed.returncode == 2 and f"ckpt_path={damaged} is damaged" in line and "checksum" in line, line
    assert len(runs_in(store)) == 1  # refused before a run
    # pipeline-eval of a checkpoint in a run folder reads it the same way
    copy = store["outputs"] / "checkpoints" / "damaged.ckpt"
    copy.write_bytes(damaged.read_bytes())
    evaluated = run_cli([str(copy), "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "eval")],
                        module="pipeline.cli.eval")
    assert evaluated.returncode == 2 and "is damaged" in evaluated.stderr, evaluated.stderr[-3000:]


def test_every_checkpoint_load_in_the_project_is_weights_only():
    """A guard for code added later: every torch.load, load_from_checkpoint and Trainer call given a
    ckpt_path passes weights_only=True."""
    offenders = []
    for path in sorted((PROJECT_ROOT / "src").rglob("*.py")):
        text = path.read_text()
        for call in re.finditer(r"torch\.load\(|\.load_from_checkpoint\(|\.(fit|test|validate|predict)\(", text):
            arguments = _arguments(text, call.end())
            loads_checkpoint = not call.group(1) or "ckpt_path" in arguments
            line_end = text.find("\n", call.end())
            # the one exception, marked where it is: a logged MLflow model saved pickled (torch.export could not
            # trace it) is unpickled when its owner loads it, as mlflow.pytorch does; no checkpoint goes there
            marked = "# logged-model-pickle" in text[call.start():line_end]
            if loads_checkpoint and "weights_only=True" not in arguments and not marked:
                line = text.count("\n", 0, call.start()) + 1
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{line}: {call.group(0)}{arguments[:80]}")
    assert offenders == []


def _arguments(text: str, start: int) -> str:
    """The text between the opening parenthesis (just before ``start``) and its closing one."""
    depth = 1
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    return text[start:]
