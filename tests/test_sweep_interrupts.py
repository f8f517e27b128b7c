"""Sweeps interrupted where a trial is claimed, in a second worker, and in the best trial's final training: one
line, exit 130, no trial left RUNNING, and a rerun that finishes the sweep (a module of its own so that pytest's
workers share the sweep tests' time)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from conftest import PROJECT_ROOT, run_cli, runs_in
from test_sweep import parent_and_children, study_trials, sweep_store

@pytest.mark.slow
@pytest.mark.parametrize("where", ["claim", "sample"])
def test_an_interrupt_right_after_a_trial_is_claimed_leaves_no_trial_running_for_ever(tmp_path, monkeypatch, where):
    """Ctrl-C while the first trial was claimed (or drew its values) left it RUNNING with no heartbeat: the command
    said "the interrupted one is queued again", and every rerun ran the other trials, then waited for it for ever,
    its parent run RUNNING. Interrupted in drawing, it is queued again at once; interrupted before its worker knew
    it (in the claim itself), the next run takes it for a trial whose worker is gone once the heartbeat's grace
    period has passed, and runs it again."""
    from conftest import run_cli_in_process

    import pipeline.sweep.worker as worker

    name = {"claim": "claim_waiting_trial", "sample": "sample"}[where]
    real = getattr(worker, name)

    def interrupted(*args, **kwargs):  # Ctrl-C just after the storage has the trial RUNNING (or its values drawn)
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, name, interrupted)
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=classification_optuna", "trainer.max_epochs=1", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.pruner=none", "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.study_name=early", f"hydra.sweeper.storage={storage}",
            "logger.mlflow.tracking_uri=" + store["uri"], "logger.mlflow.artifact_location=" + store["artifacts"],
            f"hydra.sweep.dir={store['outputs']}"]
    first = run_cli_in_process(args)
    assert first.returncode == 130, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    monkeypatch.setattr(worker, name, real)
    trials = study_trials(storage, "early")
    if where == "sample":  # the trial knew it was interrupted: FAIL, and its retry waits
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
        assert trials[2].system_attrs.get("failed_trial") == 0
    second = run_cli(args, multirun=True, timeout=120)  # was: waited for trial 0 for ever
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 of 2 trials finished" in second.stdout
    trials = study_trials(storage, "early")
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert trials[0].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    parents, _ = parent_and_children(store, "classification")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


@pytest.mark.slow
def test_a_tracking_store_that_stops_answering_queues_the_trial_again_and_stops_the_sweep(tmp_path, monkeypatch):
    """A tracking server down for seconds failed each trial that started meanwhile (in 0.1 s each): they counted as
    the trials' failures, the sweep then refused to go on (max_failure_rate) however often it was rerun, and the
    lost trials were never run, so the study reported another best trial than the uninterrupted one. Now the trial
    waits at the head of the queue, the sweep stops saying why, and the same command finishes it."""
    from conftest import run_cli_in_process

    from pipeline.errors import TrackingUnavailable
    import pipeline.sweep.worker as worker

    real, calls = worker.train, []

    def store_down_in_the_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise TrackingUnavailable("MLflow tracking server http://127.0.0.1:5473 does not answer")
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "train", store_down_in_the_second_trial)
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=classification_optuna", "trainer.max_epochs=1", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.pruner=none", "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.study_name=outage",
            f"hydra.sweeper.storage={storage}", "logger.mlflow.tracking_uri=" + store["uri"],
            "logger.mlflow.artifact_location=" + store["artifacts"], f"hydra.sweep.dir={store['outputs']}"]
    first = run_cli_in_process(args)
    assert first.returncode == 2, first.stderr[-3000:]
    assert ("Error: trial 1: the MLflow tracking store stopped answering (MLflow tracking server http://127.0.0.1:5473 "
            "does not answer); the trial is queued again: rerun the same command once the store answers") \
        in first.stderr, first.stderr[-3000:]
    assert len(calls) == 2, first.stderr  # no trial started after it
    trials = study_trials(storage, "outage")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    monkeypatch.setattr(worker, "train", real)
    second = run_cli_in_process(args)
    assert second.returncode == 0, second.stderr[-3000:]
    trials = study_trials(storage, "outage")
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == trials[1].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3


@pytest.mark.slow
def test_sigterm_to_one_of_two_commands_of_a_study_leaves_the_parent_run_to_the_other(tmp_path):
    """Two commands work on one study (two shells, two machines); SIGTERM to one marked the shared parent run KILLED
    while the other went on training its trials (the UI showed an active sweep as killed until it ended)."""
    import threading
    from pathlib import Path

    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=classification_optuna", "trainer.max_epochs=3000", "hydra.sweeper.n_trials=4",
            "hydra.sweeper.pruner=none", "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.study_name=shared",
            f"hydra.sweeper.storage={storage}", f"paths.mlruns_dir={Path(store['artifacts']).parent}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}

    def start(folder: str):
        process = subprocess.Popen([sys.executable, "-m", "pipeline.cli.train", *args, f"hydra.sweep.dir={tmp_path / folder}"],
                                   cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
        return process, lines

    def wait_for(lines, marker):
        deadline = time.time() + 180
        while time.time() < deadline and not any(marker in line for line in lines):
            time.sleep(0.2)
        assert any(marker in line for line in lines), "".join(lines)[-3000:]

    first, first_lines = start("a")
    try:
        wait_for(first_lines, "trial 0 (worker 0)")
        second, second_lines = start("b")
        try:
            wait_for(second_lines, "trial 1 (worker 0)")
            time.sleep(1.0)
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=120)
            assert second.poll() is None  # the second command trains on
            parents, _ = parent_and_children(store, "classification")
            assert [p.info.status for p in parents] == ["RUNNING"], "".join(first_lines)[-3000:]
        finally:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()


def two_worker_sweep(tmp_path, study: str):
    """An n_jobs=2 sweep of long trials (2,000 epochs: many seconds each; 150 could all end within the seconds a test
    waits on a quiet machine) started in a session of its own, its output read line by line: (process, lines so far,
    reader thread, storage)."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=classification_optuna", "logger=none", "trainer.max_epochs=2000", "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none", "hydra.sweeper.finalize_top_k=0",
            f"hydra.sweeper.study_name={study}", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"]
    return (*started_sweep(args, PROJECT_ROOT), storage)


def started_sweep(args: list[str], cwd):
    """``pipeline-train <args>`` started in a session of its own, its output read line by line by a thread: (process,
    lines so far, reader thread)."""
    import threading

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    sweep = subprocess.Popen([sys.executable, "-m", "pipeline.cli.train", *args], cwd=cwd, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(sweep.stdout), daemon=True)
    reader.start()
    return sweep, lines, reader


def interrupted_once(sweep, lines: list[str], reader, marker: str, poll_s: float, interrupt) -> str:
    """Once a line holding ``marker`` is printed, ``interrupt()``; the sweep's whole output once it has ended (killed
    after 120 s, or if the interrupt's checks fail)."""
    try:
        deadline = time.time() + 180
        while time.time() < deadline and sweep.poll() is None and not any(marker in l for l in lines):
            time.sleep(poll_s)
        interrupt()
        sweep.wait(timeout=120)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    reader.join(timeout=10)
    return "".join(lines)


@pytest.mark.slow
def test_sigterm_to_a_sweep_of_two_workers_ends_it_in_one_line(tmp_path):
    """SIGTERM to the command of an n_jobs=2 sweep printed a traceback from 'Process sweep-worker-1' ending in
    "RunInterrupted: stopped before the first epoch ended, so there is no checkpoint to resume from" (trials keep
    no checkpoint). The workers stop quietly; the command says in one line that the sweep was interrupted."""
    sweep, lines, reader, storage = two_worker_sweep(tmp_path, "par")

    def sigterm() -> None:
        assert sweep.poll() is None, "".join(lines)[-3000:]
        time.sleep(3)  # worker 1 is training its trial
        sweep.send_signal(signal.SIGTERM)  # the command's own process, as `kill <pid>` does

    output = interrupted_once(sweep, lines, reader, "(worker 1)", 0.1, sigterm)
    assert sweep.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "RunInterrupted" not in output, output[-3000:]
    assert [l for l in output.splitlines() if l.startswith("Interrupted")] == [
        "Interrupted (Ctrl-C or SIGTERM): the sweep stopped; finished trials are kept in the study and those that "
        "were training are queued again: rerun the same command to continue"]
    assert not [t.number for t in study_trials(storage, "par") if t.state == TrialState.RUNNING]


def sigterm_in_final_training(tmp_path, extra: list[str], pause_s: float) -> tuple[list[str], str]:
    """A one-trial sweep (``extra``: its store and folder) sent SIGTERM ``pause_s`` into its best trial's final
    training; it must exit 130. (The command, what it printed after the final training began)."""
    args = [sys.executable, "-u", "-m", "pipeline.cli.train", "-m", "hydra/sweeper=pipeline_optuna", "task=regression",
            "optimizer.lr=choice(0.01)", "trainer.max_epochs=400", "hydra.sweeper.n_trials=1",
            "hydra.sweeper.pruner=none", "hydra.sweeper.study_name=term", f"hydra.sweeper.storage=sqlite:///{tmp_path}/o.db",
            *extra]
    process = subprocess.Popen(args, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "training it again" in line:
            time.sleep(pause_s)
            process.send_signal(signal.SIGTERM)
            break
    rest = process.stdout.read()
    assert process.wait(timeout=120) == 130, rest[-3000:]
    return args, rest


@pytest.mark.slow
def test_sigterm_in_the_best_trials_final_training_says_so_and_a_rerun_finishes_it(tmp_path):
    """SIGTERM while the best trial was trained again said "the interrupted one is queued again", though every
    trial had ended and none was queued."""
    args, rest = sigterm_in_final_training(tmp_path, ["logger=none", f"hydra.sweep.dir={tmp_path / 'out'}"], 1.0)
    assert ("Interrupted (Ctrl-C or SIGTERM) in the best trial's final training (every trial had ended and is kept in "
            "the study): rerun the same command to finish it") in rest, rest[-3000:]
    assert "queued again" not in rest
    again = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Trial 0 trained again and tested: test/loss=" in again.stdout


@pytest.mark.slow
def test_a_final_run_interrupted_is_no_longer_tagged_best(tmp_path, migrated_store_db):
    """SIGTERM while the best trial was trained again left its KILLED run tagged best=true (what tags.best = 'true'
    finds) until the sweep was run again; it is tagged best=false as it ends, and the rerun's final run is the one."""
    import shutil

    store = sweep_store(tmp_path)
    shutil.copyfile(migrated_store_db, tmp_path / "mlruns" / "mlflow.db")
    args, _ = sigterm_in_final_training(tmp_path, [f"paths.mlruns_dir={tmp_path / 'mlruns'}",
                                                   f"hydra.sweep.dir={store['outputs']}"], 2.0)
    [killed] = [run for run in runs_in(store) if run.info.run_name.startswith("best-")]
    assert killed.info.status == "KILLED" and killed.data.tags["best"] == "false", (killed.info, killed.data.tags)
    again = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    best = [run for run in runs_in(store) if run.data.tags.get("best") == "true"]
    assert [run.info.status for run in best] == ["FINISHED"], [(r.info.status, r.info.run_name) for r in best]


def exact_sweep(tmp_path, name: str) -> tuple[list[str], str]:
    """A 10-trial Hyperband sweep of 9 epochs a trial, in a store and storage of its own: (overrides, storage)."""
    store = sweep_store(tmp_path / name)
    storage = f"sqlite:///{tmp_path / name}/optuna.db"
    return ["hparams_search=classification_optuna", "trainer.max_epochs=9", "data.limit_rows=240",
            "data.batch_size=32", "hydra.sweeper.n_trials=10", "hydra.sweeper.finalize_top_k=0",
            "hydra.sweeper.study_name=exact", f"hydra.sweeper.storage={storage}", "logger=none",
            f"hydra.sweep.dir={store['outputs']}"], storage


def outcomes(storage: str) -> dict[int, tuple]:
    """Each trial's (state, value, params), a retry under the number of the trial it replaces."""
    trials = study_trials(storage, "exact")
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return {t.system_attrs.get("retry_history", [t.number])[0]: (t.state, t.value, t.params)
            for t in trials if t.number not in replaced}


@pytest.mark.slow
def test_a_trial_interrupted_mid_training_ends_as_in_the_uninterrupted_sweep_once_resumed(tmp_path, monkeypatch):
    """Ctrl-C in trial 1's third epoch, then the same command again: its retry was queued last (after every trial
    waiting), under another number (another Hyperband bracket), began past the rung its stopped attempt had recorded,
    and was compared with that attempt's own values; it could be pruned where the uninterrupted trial completed. The
    retry now runs first and is pruned as the trial it replaces: every trial ends as in the uninterrupted sweep.
    So after kill -9: the trial's heartbeats were still fresh when the command was given again at once, so the
    trials queued after it ran first and its retry later (pruned after 3 epochs where it had completed); a worker
    process that has ended on this machine is now known as such."""
    from conftest import run_cli_in_process

    from pipeline.sweep.pruning import PruningCallback

    args, reference = exact_sweep(tmp_path, "uninterrupted")
    assert run_cli_in_process(args).returncode == 0
    expected = outcomes(reference)
    assert {state for state, _, _ in expected.values()} == {TrialState.COMPLETE, TrialState.PRUNED}

    real = PruningCallback.on_validation_end

    def interrupted(self, trainer, pl_module):  # Ctrl-C as trial 1's third epoch ends (after two reports)
        if self.trial is not None and self.trial.number == 1 and trainer.current_epoch == 2:
            raise KeyboardInterrupt
        real(self, trainer, pl_module)

    args, storage = exact_sweep(tmp_path, "interrupted")
    monkeypatch.setattr(PruningCallback, "on_validation_end", interrupted)
    assert run_cli_in_process(args).returncode == 130
    monkeypatch.setattr(PruningCallback, "on_validation_end", real)
    trials = study_trials(storage, "exact")
    assert trials[1].state == TrialState.FAIL and trials[1].intermediate_values  # stopped after reporting
    resumed = run_cli_in_process(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert outcomes(storage) == expected

    # kill -9 of the whole command in the same place (its heartbeat, every 10 s, still fresh), then at once again
    args, storage = exact_sweep(tmp_path, "killed")
    killed = subprocess.run([sys.executable, "-c", """
import os, signal, sys
from pipeline.sweep.pruning import PruningCallback
real = PruningCallback.on_validation_end
def killed(self, trainer, pl_module):
    if self.trial is not None and self.trial.number == 1 and trainer.current_epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, trainer, pl_module)
PruningCallback.on_validation_end = killed
from pipeline.cli.train import main
sys.argv = ["pipeline-train", *sys.argv[1:]]
main()
""", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert study_trials(storage, "exact")[1].state == TrialState.RUNNING
    resumed = run_cli(args, multirun=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "trial 1 was left RUNNING by a worker process that has ended on this machine" in \
        resumed.stdout + resumed.stderr, resumed.stdout[-3000:]
    assert outcomes(storage) == expected


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_while_a_worker_imports_ends_the_sweep_in_one_line(tmp_path):
    """Ctrl-C in the terminal reaches every process of the group: a second worker still importing torch printed a
    50-line KeyboardInterrupt traceback from multiprocessing's spawn. It ignores Ctrl-C until its imports are done;
    the command stops it and says in one line that the sweep was interrupted."""
    sweep, lines, reader, _ = two_worker_sweep(tmp_path, "group")

    def ctrl_c() -> None:
        assert sweep.poll() is None and not any("(worker 1)" in l for l in lines), "".join(lines)[-3000:]
        os.killpg(sweep.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the command and its worker, still importing

    output = interrupted_once(sweep, lines, reader, "(worker 0)", 0.05, ctrl_c)
    assert sweep.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert len([l for l in output.splitlines() if l.startswith("Interrupted")]) == 1, output[-3000:]


def test_an_interrupt_after_every_trial_ended_does_not_say_one_was_queued_again(tmp_path, monkeypatch):
    """Ctrl-C while the sweep waited for its other worker, every trial ended: the line said "the interrupted one is
    queued again", and the study held no such trial. It says where the sweep stopped and what a rerun does."""
    from conftest import run_cli_in_process

    import pipeline.sweep.worker as worker

    real = worker.run_workers

    def then_interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "run_workers", then_interrupted)  # the sweep imports it when it starts
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=classification_optuna", "logger=none", "trainer.max_epochs=1", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.study_name=ended", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"]
    result = run_cli_in_process(args)
    assert result.returncode == 130, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("Interrupted")] == [
        "Interrupted (Ctrl-C or SIGTERM) in the sweep's end, after every trial had ended (they are kept in the study) "
        "and before the best trial's final training: rerun the same command to train it"]
    monkeypatch.setattr(worker, "run_workers", real)
    again = run_cli_in_process(args)
    assert again.returncode == 0 and "trained again and tested" in again.stdout, again.stderr[-3000:]


def test_a_worker_still_starting_when_the_trials_end_is_not_waited_for(tmp_path):
    """n_jobs=2 on a small table: worker 0 ran every trial while worker 1 imported torch (seconds), then the sweep
    waited for worker 1 to finish importing, find nothing to do and exit: 7-12 s idle before the final training.
    (A one-epoch trial takes about a second here, a worker's imports several.)"""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=classification_optuna", "logger=none", "trainer.max_epochs=1", "hydra.sweeper.n_trials=1",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.study_name=quick",
            f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"]
    result = run_cli(args, multirun=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert "the trials ended before sweep-worker-1 started: stopped" in output, output[-3000:]
    assert [t.state for t in study_trials(storage, "quick")] == [TrialState.COMPLETE]


def _spawned_worker(parent: int) -> int | None:
    """The pid of the sweep's spawned worker (``multiprocessing.spawn``'s child of ``parent``), or None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in command:
            return int(entry)
    return None


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_a_whole_sweep_with_its_best_run(tmp_path):
    """kill -9 of an n_jobs=2 sweep's second worker (the out-of-memory killer) while it trained: its trial was run
    again and every trial ended, but the command failed (exit 2, "sweep-worker-1 stopped with an error (see the log
    above)", with nothing above but the store-writer's BrokenPipeError traceback), its parent run FAILED and no best
    run was trained. Now the sweep ends as a sweep does, saying which worker was killed."""
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=classification_optuna", "trainer.max_epochs=600", "data.limit_rows=240",
            "data.batch_size=32", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.study_name=oom", f"hydra.sweeper.storage={storage}",
            f"paths.mlruns_dir={tmp_path / 'mlruns'}", f"hydra.sweep.dir={store['outputs']}"]
    sweep, lines, reader = started_sweep(args, tmp_path)
    killed = None

    def kill_worker_1() -> None:
        nonlocal killed
        assert sweep.poll() is None, "".join(lines)[-3000:]
        time.sleep(2)  # worker 1 is training its trial, its run recorded
        killed = _spawned_worker(sweep.pid)
        assert killed is not None, "".join(lines)[-3000:]
        os.kill(killed, signal.SIGKILL)
        sweep.wait(timeout=300)

    output = interrupted_once(sweep, lines, reader, "(worker 1)", 0.1, kill_worker_1)
    assert sweep.returncode == 0, output[-4000:]
    assert "sweep-worker-1 was killed (SIGKILL) while the sweep ran" in output, output[-4000:]
    assert "Traceback" not in output and "BrokenPipeError" not in output, output[-4000:]
    trials = study_trials(storage, "oom")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4, [(t.number, t.state) for t in trials]
    assert [t.state for t in trials].count(TrialState.FAIL) == 1
    runs = runs_in(store, "oom") or runs_in(store)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"], [(r.info.run_name, r.info.status) for r in runs]
    [parent] = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    assert parent.info.status == "FINISHED"
    [best] = [r for r in runs if r.data.tags.get("best") == "true"]
    assert best.info.status == "FINISHED" and "test/acc" in best.data.metrics
    dead = [r for r in runs if r.info.status == "KILLED"]
    assert len(dead) == 1 and dead[0].data.tags.get("sweep.state") == "FAIL", dead
    assert re.search(r"the worker running this trial died|ended without ending the run", dead[0].data.tags["error"])
