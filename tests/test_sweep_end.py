"""The end of a sweep and its resumes, through the real CLI: the best trials trained again (one best=true run),
a study stopped by its timeout or SIGKILL and finished by the next command. Apart from test_sweep.py so that the
two modules, each a few minutes of sweeps, run on two pytest workers side by side."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from conftest import PROJECT_ROOT, error_line, run_cli
from test_sweep import TINY, final_runs, parent_and_children, study_trials, sweep_store


@pytest.mark.slow
def test_one_best_run_after_a_killed_final_run_and_after_more_trials(tmp_path):
    """A final run killed while it trained (its process gone, the run left RUNNING) kept best=true beside the run
    trained in its place, and a finished study given more trials never trained its new best trial: its parent's
    best.run_id named the old one. Now the earlier runs are tagged best=false (and a RUNNING one KILLED), and
    exactly one run is best=true: the finished final run of the study's best trial."""
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hydra/sweeper=pipeline_optuna", "task=regression", "optimizer=sgd", "optimizer.lr=choice(0.01, 1e-6)",
            *TINY, "hydra.sweeper.sampler=grid", "hydra.sweeper.study_name=best", f"hydra.sweeper.storage={storage}"]
    first = run_cli([*args, "hydra.sweeper.n_trials=1"], store, multirun=True)
    assert first.returncode == 0, first.stderr[-4000:]
    [killed] = final_runs(store, "regression")
    assert killed.data.tags["best"] == "true" and killed.data.tags["sweep.trial_number"] == "0"
    # as kill -9 leaves it while the best trial is trained again: the study's record names a process that is gone
    from mlflow import MlflowClient

    dead = subprocess.Popen(["true"])
    dead.wait()
    MlflowClient(store["uri"]).update_run(killed.info.run_id, status="RUNNING")
    study = optuna.load_study(study_name="best", storage=storage)
    study.set_user_attr("pipeline.finalized", {"by": f"{os.uname().nodename}:{dead.pid}", "at": time.time(), "done": []})
    second = run_cli([*args, "hydra.sweeper.n_trials=1"], store, multirun=True)  # the same command again
    assert second.returncode == 0, second.stderr[-4000:]
    runs = {r.info.run_id: r for r in final_runs(store, "regression")}
    assert runs[killed.info.run_id].info.status == "KILLED" and runs[killed.info.run_id].data.tags["best"] == "false"
    [retrained] = [r for r in runs.values() if r.data.tags["best"] == "true"]
    assert retrained.info.status == "FINISHED" and retrained.data.tags["sweep.trial_number"] == "0"
    # a second trial, which is better (the grid, shuffled by the seed, tried 1e-6 first): it is trained again, and
    # trial 0's run is no longer the best
    third = run_cli([*args, "hydra.sweeper.n_trials=2"], store, multirun=True)
    assert third.returncode == 0, third.stderr[-4000:]
    study = optuna.load_study(study_name="best", storage=storage)
    assert study.best_trial.number == 1 and study.best_trial.params["optimizer.lr"] == 0.01
    runs = {r.info.run_id: r for r in final_runs(store, "regression")}
    best = [r for r in runs.values() if r.data.tags["best"] == "true"]
    assert len(runs) == 3 and len(best) == 1, [(r.data.tags["best"], r.info.status) for r in runs.values()]
    assert best[0].info.status == "FINISHED" and best[0].data.tags["sweep.trial_number"] == "1"
    assert runs[retrained.info.run_id].data.tags["best"] == "false"
    [parent], _ = parent_and_children(store, "regression")
    assert parent.data.tags["best.run_id"] == best[0].info.run_id and parent.data.tags["best.trial_number"] == "1"
    assert study.user_attrs["pipeline.finalized"] == [1]
    # the two best: trial 0 trained again beside trial 1's run; then the best alone: trial 0's new run retires
    # (finalize_top_k=3 of 2 complete trials: both, said in a line, where it was silent)
    both = run_cli([*args, "hydra.sweeper.n_trials=2", "hydra.sweeper.finalize_top_k=3"], store, multirun=True)
    assert both.returncode == 0, both.stderr[-4000:]
    assert ("hydra.sweeper.finalize_top_k=3, and only 2 trial(s) of the study completed: 2 best run(s)"
            in both.stdout + both.stderr)
    assert "Trial 0 trained again" in both.stdout and "Trial 1 trained again" not in both.stdout
    assert sorted(r.data.tags["sweep.trial_number"] for r in final_runs(store, "regression")
                  if r.data.tags["best"] == "true") == ["0", "1"]
    one = run_cli([*args, "hydra.sweeper.n_trials=2", "hydra.sweeper.finalize_top_k=1"], store, multirun=True)
    assert one.returncode == 0, one.stderr[-4000:]
    assert "trained again" not in one.stdout and len(final_runs(store, "regression")) == 4  # trial 1 has its run
    assert [r.info.run_id for r in final_runs(store, "regression") if r.data.tags["best"] == "true"] == \
        [best[0].info.run_id]


@pytest.mark.slow
def test_a_sweep_stopped_by_its_timeout_is_finished_with_fewer_trials(tmp_path):
    """A timeout reached before any trial finished was reported as "no trial completed (0 failed or diverged, 0
    pruned) ... once the cause is fixed"; and a study so stopped, run again with a smaller n_trials, ran them and then
    never trained its best trial ("rerun the same command to continue", which ran nothing more)."""
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hydra/sweeper=pipeline_optuna", "task=regression", "optimizer=sgd", "optimizer.lr=interval(0.001, 0.1)",
            *TINY, "hydra.sweeper.study_name=timed", f"hydra.sweeper.storage={storage}"]
    stopped = run_cli([*args, "hydra.sweeper.n_trials=5", "hydra.sweeper.timeout=0.001"], store, multirun=True)
    assert stopped.returncode == 2
    assert error_line(stopped.stderr) == (
        "Error: hydra.sweeper.timeout=0.001 (seconds, counted from the command's start) was reached before a trial of "
        "study 'timed' finished; its 5 queued trials wait: rerun the command with a larger hydra.sweeper.timeout (or "
        "none) to run them")
    fewer = run_cli([*args, "hydra.sweeper.n_trials=2"], store, multirun=True)
    assert fewer.returncode == 0, fewer.stderr[-4000:]
    assert "2 of 2 trials finished" in fewer.stdout
    assert ("3 more queued: the study was given n_trials=5 by an earlier command; hydra.sweeper.n_trials=5 runs them"
            in fewer.stdout)
    [final] = final_runs(store, "regression")
    assert final.info.status == "FINISHED" and final.data.tags["best"] == "true"
    study = optuna.load_study(study_name="timed", storage=storage)
    assert final.data.tags["sweep.trial_number"] == str(study.best_trial.number)


@pytest.mark.slow
def test_a_time_objective_is_not_taken_for_a_result_that_was_not_reproduced(tmp_path):
    """With train/epoch_time_s among the objectives, every final run was reported as "its validation value differs
    from the trial's": a measured time differs from run to run; what training computes is what must be equal."""
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hydra/sweeper=pipeline_optuna", "task=regression", "optimizer=sgd",
                      "optimizer.lr=interval(0.001, 0.1)", *TINY, "hydra.sweeper.study_name=timed",
                      "hydra.sweeper.objectives=[val/rmse_best,train/epoch_time_s]",
                      "hydra.sweeper.directions=[minimize,minimize]", "hydra.sweeper.n_trials=2",
                      f"hydra.sweeper.storage={storage}"], store, multirun=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "trained again and tested" in result.stdout
    assert "differs from the trial's" not in result.stdout and "not bit-identical" not in result.stderr


@pytest.mark.slow
def test_the_best_of_several_final_runs_is_the_latest_version_of_the_registered_model(tmp_path):
    """finalize_top_k=2 with register_as: the best trial's run was trained and registered first, the runner-up's
    last, so models:/<name>/latest (the README's reference) served the weaker model. And the two versions carried no
    tag: in the registry nothing told the best trial's from the runner-up's; each has its run's rank, trial and
    objective value now."""
    from mlflow import MlflowClient

    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hydra/sweeper=pipeline_optuna", "task=regression", "optimizer=sgd",
                      "optimizer.lr=choice(0.01, 1e-6)", *TINY, "hydra.sweeper.sampler=grid",
                      "hydra.sweeper.study_name=two_best", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.finalize_top_k=2", "logger.mlflow.register_as=house-prices"], store, multirun=True)
    assert result.returncode == 0, result.stderr[-4000:]
    best = optuna.load_study(study_name="two_best", storage=storage).best_trial.number
    client = MlflowClient(store["uri"])
    versions = sorted(client.search_model_versions("name='house-prices'"), key=lambda v: int(v.version))
    assert len(versions) == 2
    latest = client.get_run(versions[-1].run_id)
    assert latest.data.tags["sweep.trial_number"] == str(best) and latest.data.tags["best"] == "true"
    trials = {t.number: t for t in optuna.load_study(study_name="two_best", storage=storage).trials}
    for version, rank in zip(reversed(versions), ("1", "2")):
        tags = client.get_model_version("house-prices", version.version).tags
        run_tags = client.get_run(version.run_id).data.tags
        assert tags["sweep.rank"] == run_tags["sweep.rank"] == rank and tags["best"] == "true", tags
        trial = trials[int(tags["sweep.trial_number"])]
        assert tags["sweep.trial_number"] == run_tags["sweep.trial_number"] and tags["sweep.study_name"] == "two_best"
        assert tags["sweep.objective"] == run_tags["sweep.objective"], tags
        assert tags["sweep.objective"].endswith(f"={trial.values[0]:.6g}"), tags
    assert client.get_model_version("house-prices", versions[-1].version).tags["sweep.trial_number"] == str(best)


# ----- resume after SIGKILL --------------------------------------------------------------------------
@pytest.mark.slow
def test_a_deleted_final_run_is_trained_again_by_the_same_command(tmp_path):
    """The best trial's final run deleted (in the trash): the same command again said nothing and trained nothing,
    its summary dropped the final run's line, and the parent's best.run_id named the deleted run. Then, trained
    again, the deleted run kept best=true (a search of the store's active runs did not find it): restored, it was a
    second best run of the study. It is tagged best=false, said as for a killed final run, and stays deleted."""
    from mlflow import MlflowClient

    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hydra/sweeper=pipeline_optuna", "task=regression", "optimizer=sgd", "optimizer.lr=choice(0.01, 1e-6)",
            *TINY, "hydra.sweeper.sampler=grid", "hydra.sweeper.study_name=gone", f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.n_trials=1"]
    first = run_cli(args, store, multirun=True)
    assert first.returncode == 0, first.stderr[-4000:]
    [deleted] = final_runs(store, "regression")
    MlflowClient(store["uri"]).delete_run(deleted.info.run_id)
    again = run_cli(args, store, multirun=True)
    assert again.returncode == 0, again.stderr[-4000:]
    [retrained] = final_runs(store, "regression")  # the active ones
    assert retrained.info.run_id != deleted.info.run_id and retrained.data.tags["best"] == "true"
    assert retrained.info.status == "FINISHED" and retrained.data.tags["sweep.trial_number"] == "0"
    [parent], _ = parent_and_children(store, "regression")
    assert parent.data.tags["best.run_id"] == retrained.info.run_id
    assert f"tagged best=false (no longer a finished final run of the sweep's best trials): {deleted.info.run_id} (deleted)" \
        in again.stdout + again.stderr, again.stdout[-4000:]
    client = MlflowClient(store["uri"])
    assert client.get_run(deleted.info.run_id).info.lifecycle_stage == "deleted"
    client.restore_run(deleted.info.run_id)
    assert [r.info.run_id for r in final_runs(store, "regression") if r.data.tags["best"] == "true"] == \
        [retrained.info.run_id]


@pytest.mark.slow
def test_killed_sweep_resumes_to_exactly_n_trials_and_retries_the_stale_trial(tmp_path):
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    # longer trials (small batches, 30 epochs: ~1.5 s each on a fast machine): the kill must land inside one, after
    # the trial has recorded its MLflow run (at its first epoch end that finds the run created)
    args = ["hparams_search=regression_optuna", *TINY, "trainer.max_epochs=30", "data.batch_size=8",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner=none", "hydra.sweeper.heartbeat_interval=1",
            "logger.mlflow.tracking_uri=" + store["uri"], "logger.mlflow.artifact_location=" + store["artifacts"],
            f"hydra.sweep.dir={store['outputs']}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    first = subprocess.Popen([sys.executable, "-m", "pipeline.cli.train", "-m", *args], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    polled = None  # one storage for the polling: opening one per look (~0.1 s, more under load) could miss a trial
    try:
        deadline = time.time() + 180
        while time.time() < deadline and first.poll() is None:
            try:
                polled = polled or optuna.storages.RDBStorage(storage)
                trials = optuna.load_study(study_name="regression_optuna", storage=polled).get_trials(deepcopy=False)
            except Exception:  # the study (or its database) does not exist yet
                trials = []
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if any(t.state == TrialState.COMPLETE for t in trials) and running and "mlflow_run_id" in running[0].user_attrs:
                break
            time.sleep(0.1)
        assert first.poll() is None, "the sweep ended before a trial with its MLflow run was seen running"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        if polled is not None:
            polled.engine.dispose()
    left_running = [t for t in study_trials(storage, "regression_optuna") if t.state == TrialState.RUNNING]
    assert len(left_running) == 1, "the kill should leave exactly the trial in progress RUNNING"
    killed_number = left_running[0].number
    time.sleep(2.5)  # past the heartbeat grace period (2 x 1 s)
    second = run_cli(args, multirun=True)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "Resuming Optuna study 'regression_optuna'" in second.stdout
    assert "4 of 4 trials finished" in second.stdout  # each trial once, by its latest attempt, and the retry said
    assert ("1 trial(s) retried with the same parameters after the process running them stopped (interrupted or "
            "killed; the earlier attempts are FAIL in trials.csv)") in second.stdout
    trials = study_trials(storage, "regression_optuna")
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == 5  # 4 trials + the killed one
    stale = next(t for t in trials if t.number == killed_number)
    assert stale.state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == stale.params
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 4
    parents, children = parent_and_children(store, "regression")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    if "mlflow_run_id" in stale.user_attrs:  # killed after its MLflow run started (the usual case)
        killed_run = next(c for c in children if c.info.run_id == stale.user_attrs["mlflow_run_id"])
        assert killed_run.info.status == "KILLED" and killed_run.data.tags["sweep.state"] == "FAIL"
        assert len(children) == 5


def test_the_parent_run_describes_the_current_best_trial_only(tmp_path, monkeypatch, migrated_store_db):
    """A study whose best trial changed kept the earlier best's tags on its parent run (best.optimizer.momentum of an
    SGD trial beside best.optimizer=adam); and extended with finalize_top_k=0, its earlier best trial's final run
    stayed best=true and the parent's best.run_id named it, beside best.trial_number of the new best."""
    from types import SimpleNamespace

    from mlflow import MlflowClient
    from omegaconf import OmegaConf
    from optuna.distributions import FloatDistribution

    from conftest import new_store
    from pipeline.sweep.study import PARENT_RUN_ATTR
    from pipeline.sweep.worker import FINALIZED_ATTR, finalize
    from pipeline.tracking.sweeps import ParentRun

    monkeypatch.setenv("PIPELINE_STORE_WRITER", "0")
    store = new_store(tmp_path, migrated_store_db)
    client = MlflowClient(store["uri"])
    experiment = client.create_experiment("sweep")
    parent = client.create_run(experiment, tags={"best.optimizer": "sgd", "best.optimizer.momentum": "0.62",
                                                 "best.trial_number": "0"})
    parent_id = parent.info.run_id
    old_final = client.create_run(experiment, tags={"mlflow.parentRunId": parent_id, "best": "true",
                                                    "sweep.trial_number": "0"})
    client.set_terminated(old_final.info.run_id, "FINISHED")
    client.set_tag(parent_id, "best.run_id", old_final.info.run_id)
    recorder = ParentRun.__new__(ParentRun)
    recorder.run_id, recorder.tracking_uri = parent_id, store["uri"]
    recorder.record({}, {}, {"best.optimizer": "adam", "best.optimizer.lr": "0.01", "best.trial_number": 1})
    tags = client.get_run(parent_id).data.tags
    assert {k: v for k, v in tags.items() if k.startswith("best.")} == {
        "best.optimizer": "adam", "best.optimizer.lr": "0.01", "best.trial_number": "1",
        "best.run_id": old_final.info.run_id}  # left to the retirement of the run it names, below

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db", study_name="s")
    for number, value in enumerate((0.5, 0.1)):  # trial 0 was the best; trial 1 is now
        study.add_trial(optuna.trial.create_trial(params={"x": float(number)}, distributions={
            "x": FloatDistribution(0, 1)}, value=value))
    study.set_user_attr(FINALIZED_ATTR, [0])
    study.set_user_attr(PARENT_RUN_ATTR, parent_id)
    settings = SimpleNamespace(finalize_top_k=0, storage=f"sqlite:///{tmp_path}/optuna.db")
    base_config = OmegaConf.create({"logger": {"mlflow": {"tracking_uri": store["uri"]}}})
    assert finalize(study, settings, None, base_config) == []
    assert client.get_run(old_final.info.run_id).data.tags["best"] == "false"
    assert "best.run_id" not in client.get_run(parent_id).data.tags
    assert study.user_attrs[FINALIZED_ATTR] == []


def _train_it(stdout: str, run_dir) -> subprocess.CompletedProcess:
    """The summary's "train it:" command, run as printed (in a shell; its run folder named)."""
    [line] = [l for l in stdout.splitlines() if l.strip().startswith("train it: pipeline-train ")]
    command = line.split("train it: ", 1)[1]
    script = f"pipeline-train() {{ {sys.executable} -m pipeline.cli.train \"$@\"; }}; {command} hydra.run.dir={run_dir}"
    return subprocess.run(["bash", "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def _assert_train_it_reproduces(result, tmp_path, study: str, storage: str, metric: str) -> None:
    """The sweep ended well, and its printed "train it:" command, run as printed, logs the best trial's value."""
    import json

    assert result.returncode == 0, result.stderr[-4000:]
    best = optuna.load_study(study_name=study, storage=storage).best_trial
    again = _train_it(result.stdout, tmp_path / "again")
    assert again.returncode == 0, again.stderr[-4000:]
    lines = [json.loads(l) for l in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert [row[metric] for row in lines if metric in row][-1] == pytest.approx(best.value, rel=1e-6)


@pytest.mark.slow
def test_the_printed_best_command_reproduces_a_sweep_of_another_primary_config(tmp_path):
    """A sweep with ``--config-name myconfig`` (seed 7): its best config was a difference from myconfig, and the
    printed command named the sweep dir alone, so it trained the packaged config's seed 42 on another split,
    without a word. The command now names the primary config and its folder."""
    conf = tmp_path / "my_conf"
    conf.mkdir()
    (conf / "myconfig.yaml").write_text("defaults:\n  - config\n  - _self_\nseed: 7\n")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["--config-dir", str(conf), "--config-name", "myconfig", "hydra/sweeper=pipeline_optuna",
                      "task=regression", "logger=none", "optimizer.lr=tag(log, interval(1e-3, 1e-1))", *TINY,
                      "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none", "hydra.sweeper.study_name=cn",
                      f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], multirun=True)
    _assert_train_it_reproduces(result, tmp_path, "cn", storage, "val/rmse_best")


@pytest.mark.slow
def test_the_printed_best_command_finds_the_options_of_the_sweeps_config_dir(tmp_path):
    """A search over a data set of the user's ``--config-dir`` (data/tiny.yaml): the printed command failed with
    Hydra's "Could not find 'data/tiny'" (exit 1): it named only the sweep dir."""
    import numpy as np

    rows = np.random.default_rng(0).normal(size=(200, 3))
    (tmp_path / "tiny.csv").write_text("a,b,c,label\n" + "".join(
        f"{a:.4f},{b:.4f},{c:.4f},{int(a + 0.5 * b > 0)}\n" for a, b, c in rows))
    conf = tmp_path / "my_conf"
    (conf / "data").mkdir(parents=True)
    (conf / "data" / "tiny.yaml").write_text(f"defaults: [csv, _self_]\npath: {tmp_path / 'tiny.csv'}\ntarget: label\n")
    (conf / "hparams_search").mkdir()
    (conf / "hparams_search" / "tinys.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /task: classification\n  - override /data: tiny\n"
        "  - override /hydra/sweeper: pipeline_optuna\ntrainer: {max_epochs: 2}\n"
        "hydra:\n  sweeper:\n    n_trials: 2\n    pruner: none\n    params:\n"
        "      optimizer.lr: tag(log, interval(1e-3, 1e-1))\n")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["--config-dir", str(conf), "hparams_search=tinys", "logger=none", "hydra.sweeper.study_name=tn",
                      f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], multirun=True)
    _assert_train_it_reproduces(result, tmp_path, "tn", storage, "val/loss_best")


@pytest.mark.slow
def test_the_summary_says_what_a_timeout_or_a_smaller_n_trials_left_unrun(tmp_path):
    """A timeout that left trials unrun ended FINISHED with "3 waiting, 0 running: rerun the same command to
    continue" and no word of the timeout; a later n_trials smaller than the study's trials printed "2 of 1 trials
    finished" and retagged the parent run sweep.n_trials=1."""
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hydra/sweeper=pipeline_optuna", "task=regression", "logger.mlflow.log_model=false",
            "optimizer.lr=tag(log, interval(0.001, 0.1))", *TINY, "hydra.sweeper.pruner=none",
            "hydra.sweeper.study_name=cut", f"hydra.sweeper.storage={storage}"]
    first = run_cli([*args, "hydra.sweeper.n_trials=2"], store, multirun=True)
    assert first.returncode == 0, first.stderr[-4000:]
    cut = run_cli([*args, "hydra.sweeper.n_trials=5", "hydra.sweeper.timeout=0.001"], store, multirun=True)
    assert cut.returncode == 0, cut.stderr[-4000:]
    assert "2 of 5 trials finished" in cut.stdout
    assert ("hydra.sweeper.timeout=0.001 (seconds) stopped the sweep with 3 of its 5 trials not run; the sweep ended "
            "as the timeout asks (its parent run FINISHED) with the best of the finished trials: rerun the same command "
            "to run the rest") in cut.stdout, cut.stdout
    fewer = run_cli([*args, "hydra.sweeper.n_trials=1"], store, multirun=True)
    assert fewer.returncode == 0, fewer.stderr[-4000:]
    assert ("2 trials finished (2 complete, 0 pruned, 0 failed); hydra.sweeper.n_trials=1: the study already had 2 >= "
            "1, so this command ran no trial (a larger n_trials adds trials)") in fewer.stdout, fewer.stdout
    [parent], _ = parent_and_children(store, "regression")
    assert parent.data.tags["sweep.n_trials"] == "5"


@pytest.mark.slow
def test_a_resumed_sweep_retags_the_registered_versions_of_its_retired_and_reranked_final_runs(tmp_path):
    """finalize_top_k=2 with register_as, then the study resumed with a third trial that beats both: the registry's
    versions must follow their runs, the old runner-up's retired (best=false), the old best's re-ranked (sweep.rank 2),
    the new best's rank 1 and the latest version of the model."""
    from mlflow import MlflowClient

    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hydra/sweeper=pipeline_optuna", "task=regression", "optimizer=sgd",
            "optimizer.lr=choice(1e-6, 1e-7, 0.01)", *TINY, "hydra.sweeper.sampler=grid",
            "hydra.sweeper.study_name=resumed", f"hydra.sweeper.storage={storage}", "hydra.sweeper.finalize_top_k=2",
            "logger.mlflow.register_as=house-prices"]
    first = run_cli([*args, "hydra.sweeper.n_trials=2"], store, multirun=True)
    assert first.returncode == 0, first.stderr[-4000:]
    second = run_cli([*args, "hydra.sweeper.n_trials=3"], store, multirun=True)
    assert second.returncode == 0, second.stderr[-4000:]
    trials = optuna.load_study(study_name="resumed", storage=storage).trials
    ranked = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.values[0])
    # the grid, shuffled by the sampler's seed, tries 0.01 last: the resume's trial is the best, the first command's
    # best the runner-up, its runner-up retired (a deterministic order, asserted so that the test checks what it says)
    assert [t.number for t in ranked] == [2, 0, 1] and ranked[0].params["optimizer.lr"] == 0.01, \
        [(t.number, t.params, t.values) for t in ranked]
    client = MlflowClient(store["uri"])
    versions = sorted(client.search_model_versions("name='house-prices'"), key=lambda v: int(v.version))
    said = {}
    for version in versions:
        tags = client.get_model_version("house-prices", version.version).tags
        run_tags = client.get_run(version.run_id).data.tags
        said[version.version] = (tags.get("sweep.trial_number"), tags.get("best"), tags.get("sweep.rank"),
                                 run_tags.get("best"), run_tags.get("sweep.rank"))
    expected = {"2": ("true", "1"), "0": ("true", "2"), "1": ("false", None)}
    for trial, best, rank, run_best, run_rank in said.values():
        assert (best, run_best) == (expected[trial][0],) * 2, said
        if expected[trial][1] is not None:
            assert rank == run_rank == expected[trial][1], said
    assert {trial for trial, *_ in said.values()} == {"0", "1", "2"}, said
    assert said[versions[-1].version][0] == "2", said  # models:/house-prices/latest is the new best
