"""Nothing silently wrong, nothing half-done, no way in (issue 11), through the real CLI:
values refused by building them before any run exists, crafted rerun configs, sweeps that would mix
experiments, runs killed with SIGKILL, checkpoints on a full disk, secrets in run names, shared folders."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from conftest import PROJECT_ROOT, run_cli, run_cli_in_process, runs_in, store_overrides


def store_file(store: dict) -> Path:
    return Path(store["uri"][len("sqlite:///"):])


def one_error_line(result, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(("Error:", "Interrupted"))]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def assert_no_run(store: dict) -> None:
    assert not store_file(store).exists() or runs_in(store) == [], "an MLflow run was created"


# ----- values that only fail when built are refused before the run exists ----------------------------------
def write_checkpoint_of_another_model(path: Path) -> Path:
    """A real Lightning checkpoint, of a network with other layer sizes."""
    from pipeline.train import train
    from conftest import compose

    cfg = compose(["logger=none", "callbacks=[model_checkpoint]", "model.hidden_dims=[7]", "trainer.max_epochs=1",
                   f"paths.output_dir={path}", "test=false"])
    train(cfg)
    return path / "checkpoints" / "last.ckpt"


BUILT_VALUES = [
    (["model.activation=foo"], ["model", "activation", "foo"]),
    (["optimizer.betas=[2,3]"], ["optimizer", "beta"]),
    (["scheduler=step", "scheduler.step_size=0"], ["scheduler.step_size=0 is out of range; allowed: an integer >= 1"]),
    # text models: a ZeroDivisionError, a max() of nothing, a negative count reaching the tokenizer (exit 1)
    (["task=sentiment", "model=nbsvm", "model.ngram_buckets=0"], ["model.ngram_buckets=0 is out of range"]),
    (["task=sentiment", "model=textcnn", "model.kernel_sizes=[]"], ["model.kernel_sizes=[] is out of range"]),
    (["task=sentiment", "data.min_frequency=-1"], ["data.min_frequency=-1 is out of range; allowed: an integer >= 1"]),
    (["task=sentiment", "model.embed_dim=0"], ["model.embed_dim=0 is out of range"]),
    (["trainer.accumulate_grad_batches=0"], ["trainer.accumulate_grad_batches=0"]),
    (["task.monitor=val/rmse"], ["task.monitor='val/rmse'", "val/loss", "val/acc"]),
    (["seed=-1"], ["seed=-1", "0.."]),
    (["logger.mlflow.tracking_uri=ftp://files.example.org/mlruns"], ["ftp", "logger.mlflow.tracking_uri"]),
]


@pytest.mark.parametrize("args,fragments", BUILT_VALUES, ids=[a[0][-1] for a in BUILT_VALUES])
def test_a_bad_value_inside_a_built_object_is_one_line_and_no_run(store, args, fragments):
    result = run_cli_in_process(["trainer.max_epochs=1", *args], store)
    line = one_error_line(result)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert "unexpected" not in line
    assert_no_run(store)


def test_the_environments_mlflow_variables_empty_or_naming_a_folder(store, tmp_path):
    """``MLFLOW_TRACKING_URI=`` (empty) made a run log nothing at all, exit 0, though MLflow and pipeline-compare
    read it as unset; ``MLFLOW_EXPERIMENT_NAME=`` was refused as an empty logger.mlflow.experiment_name, a key the user
    never set. Both mean unset. A folder as the URI (which the pipeline's own hint suggested) failed after the data was
    read with MLflow's paragraph; it is one line before anything runs, naming the variable and the database to use."""
    result = run_cli(["trainer.max_epochs=1", "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"], store,
                     env={"MLFLOW_TRACKING_URI": "", "MLFLOW_EXPERIMENT_NAME": " "})
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store, "classification")
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    folder = tmp_path / "folder-store"
    result = run_cli(["trainer.max_epochs=1"], store, env={"MLFLOW_TRACKING_URI": str(folder)})
    line = one_error_line(result)
    assert line == (f"Error: MLFLOW_TRACKING_URI={folder}: a folder store, which MLflow 3 no longer opens by default; "
                    f"use a database in it, sqlite:///{folder}/mlflow.db (or leave the variable unset for the local "
                    "store, mlruns/mlflow.db), or set MLFLOW_ALLOW_FILE_STORE=true to use the folder as it is"), line
    assert "data" not in result.stdout and not folder.exists()
    # a file that is no database: sqlite's error with its SQL statement, after the data was read
    table = tmp_path / "table.db"
    table.write_text("a,b\n1,2\n")
    result = run_cli(["trainer.max_epochs=1"], store, env={"MLFLOW_TRACKING_URI": f"sqlite:///{table}"})
    line = one_error_line(result)
    assert f"{table} is not an SQLite database" in line and "[SQL" not in line, line
    assert "data" not in result.stdout and table.read_text() == "a,b\n1,2\n"


def test_a_failed_download_leaves_no_empty_folders_in_the_data_folder(store, tmp_path):
    """data=mnist with no files and no network: the one-line refusal, as documented, but torchvision's download left
    an empty MNIST/raw/ in the (shared, read-only in CI) data folder."""
    data = tmp_path / "shared-data"
    data.mkdir()
    result = run_cli(["task=image_classification", "data=mnist", "trainer.max_epochs=1"], store,
                     env={"PIPELINE_DATA_DIR": str(data)})
    line = one_error_line(result)
    assert "mnist: files not found" in line and "Download via torchvision failed" in line, line
    assert list(data.iterdir()) == []


def test_a_checkpoint_of_another_model_or_not_lightning_is_refused_before_the_run(store, tmp_path):
    other = write_checkpoint_of_another_model(tmp_path / "other")
    line = one_error_line(run_cli_in_process([f"ckpt_path={other}"], store))
    assert "another model" in line and "model.fc1" in line and "[7] there but [64] here" in line and str(other) in line
    plain = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    line = one_error_line(run_cli_in_process([f"ckpt_path={plain}"], store))
    assert "not a Lightning checkpoint" in line
    assert_no_run(store)


def test_an_unwritable_output_folder_is_one_line(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli_in_process(["trainer.max_epochs=1", "paths.output_dir=" + str(blocker / "run")], store)
    line = one_error_line(result)
    assert "cannot write into the output folder" in line and str(blocker) in line
    assert_no_run(store)


def test_a_store_folder_that_cannot_be_written_is_one_line_before_the_data(tmp_path, monkeypatch):
    """Started in a read-only folder, a run failed after reading its data with the store's OSError and no word of
    the key to set; and the run folder's refusal suggested hydra.run.dir=outputs/my-run, in the same read-only
    folder. Both name a writable place (here: the home folder, where the current one is not writable)."""
    from pipeline.tracking import run as tracking_run

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli_in_process(["trainer.max_epochs=1", f"paths.mlruns_dir={blocker / 'mlruns'}",
                                 f"hydra.run.dir={tmp_path / 'run'}"])
    line = one_error_line(result)
    assert line.startswith(f"Error: the MLflow store sqlite:///{blocker}/mlruns/mlflow.db (paths.mlruns_dir) cannot "
                           f"be written there ({blocker} is a file); give it a writable folder, e.g. "
                           "paths.mlruns_dir=mlruns, or log nothing with logger=none"), line
    assert "data" not in result.stdout and not (tmp_path / "run").exists()
    writable = os.access
    monkeypatch.setattr(tracking_run.os, "access", lambda path, mode: Path(path) != Path.cwd() and writable(path, mode))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tracking_run.writable_example("outputs/my-run") == f"{tmp_path}/outputs/my-run"


# ----- crafted configs in the store cannot make pipeline-rerun run code or write elsewhere -------------------
@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    from conftest import compose, new_store
    from pipeline.train import train

    root = tmp_path_factory.mktemp("logged")
    store = new_store(root)
    cfg = compose([f"paths.mlruns_dir={root / 'mlruns'}", f"paths.output_dir={root / 'source'}", "trainer.max_epochs=1",
                   "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"])
    train(cfg)
    [run] = runs_in(store)
    return store, run


CRAFTED = [
    # an alias of a function outside the allowed modules, reached through a module that imports it
    ("callbacks.evil", {"_target_": "pipeline.tracking.provenance.subprocess.run", "_args_": [["touch", "{victim}"]]}),
    # a class of the standard library under an allowed-looking name
    ("model._target_", "pipeline.cli.rerun.tempfile.TemporaryDirectory"),
    # nested inside an allowed object
    ("trainer.strategy", {"_target_": "pipeline.tracking.provenance.subprocess.Popen", "args": ["touch", "{victim}"]}),
    # a partial of a refused function
    ("optimizer", {"_target_": "pipeline.cli.rerun.shutil.rmtree", "_partial_": True}),
    # a real optimizer class where a model belongs
    ("model._target_", "torch.optim.SGD"),
    # torch.load reached through torch.optim's own import of torch
    ("scheduler", {"_target_": "torch.optim.lr_scheduler.torch.load", "_args_": ["{victim}"]}),
    # an allowed class writing outside the new run's folder
    ("callbacks.model_checkpoint.dirpath", "{outside}"),
]


@pytest.mark.parametrize("key,value", CRAFTED, ids=[f"{k}" + (f"={v}" if isinstance(v, str) else "")
                                                    for k, v in CRAFTED])
def test_rerun_refuses_crafted_configs_by_what_they_build(logged_run, tmp_path, key, value):
    import json

    from omegaconf import OmegaConf

    from pipeline.tracking import TrackedRun

    store, source = logged_run
    victim, outside = tmp_path / "victim.txt", tmp_path / "outside"
    victim.write_text("keep me")
    filled = json.loads(json.dumps(value).replace("{victim}", str(victim)).replace("{outside}", str(outside)))
    logged = Path(source.info.artifact_uri.removeprefix("file://")) / "config.yaml"
    cfg = OmegaConf.load(logged)
    OmegaConf.update(cfg, key, filled, force_add=True, merge=False)
    with TrackedRun(store["uri"], "crafted", run_name="crafted", artifact_location=store["artifacts"]) as run:
        run.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
    before = len(runs_in(store))
    result = run_cli([run.run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "rerun")],
                     module="pipeline.cli.rerun")
    line = one_error_line(result)
    assert "Refusing to run it" in line and key.split(".")[0] in line
    assert victim.read_text() == "keep me" and not outside.exists() and not (tmp_path / "rerun").exists()
    assert len(runs_in(store)) == before


def test_an_evaluation_leaves_out_the_runs_own_callbacks_and_builds_none(logged_run, tmp_path):
    """A run with a callback of one's own (a class from a --config-dir's module) could not be evaluated at all: the
    whole config was refused. An evaluation trains nothing: such callbacks are left out, with a note, and never
    built (a crafted one that would run a command runs nothing); a rerun, which trains, still refuses them."""
    from omegaconf import OmegaConf

    from pipeline.tracking import TrackedRun

    store, source = logged_run
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    source_folder = Path(source.info.artifact_uri.removeprefix("file://"))
    cfg = OmegaConf.load(source_folder / "config.yaml")
    OmegaConf.update(cfg, "callbacks.mine", {"_target_": "mycallbacks.EpochCounter"}, force_add=True, merge=False)
    OmegaConf.update(cfg, "callbacks.evil", {"_target_": "pipeline.tracking.provenance.subprocess.run",
                                             "_args_": [["touch", str(victim)]]}, force_add=True, merge=False)
    with TrackedRun(store["uri"], "own", run_name="own", artifact_location=store["artifacts"]) as run:
        run.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        for checkpoint in (source_folder / "checkpoints").glob("*.ckpt"):
            run.log_artifact(str(checkpoint), "checkpoints")
    evaluated = run_cli([run.run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "evaluation")],
                        module="pipeline.cli.eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert ("Note: the run's own callbacks (callbacks.mine, callbacks.evil) are left out of the evaluation, which "
            "trains nothing") in evaluated.stdout, evaluated.stdout[-2000:]
    assert victim.read_text() == "keep me"
    rerun = run_cli([run.run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "rerun")],
                    module="pipeline.cli.rerun")
    line = one_error_line(rerun)
    assert "callbacks.mine._target_='mycallbacks.EpochCounter', which is not allowed" in line and \
        "pipeline-rerun and pipeline-eval build only classes defined in" in line, line


# ----- sweeps never mix two experiments ----------------------------------------------------------------------
SWEEP = ["hparams_search=classification_optuna", "trainer.max_epochs=1", "data.limit_rows=200", "logger=none",
         "hydra.sweeper.n_trials=1"]


def sweep_args(tmp_path: Path, *extra: str) -> list[str]:
    return [*SWEEP, f"paths.mlruns_dir={tmp_path / 'mlruns'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra]


def test_a_search_config_runs_as_a_sweep_without_dash_m(tmp_path):
    result = run_cli(sweep_args(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Created Optuna study 'classification_optuna'" in result.stdout
    assert "1 of 1 trials finished" in result.stdout


def test_resuming_a_study_with_another_model_or_search_space_is_refused_with_the_difference(tmp_path):
    assert run_cli(sweep_args(tmp_path)).returncode == 0
    line = one_error_line(run_cli(sweep_args(tmp_path, "model=logistic")))
    assert "choice.model: mlp -> logistic" in line and "hydra.sweeper.study_name=classification_optuna_2" in line
    changed = run_cli(sweep_args(tmp_path, "optimizer.lr=tag(log, interval(0.001, 0.1))"), multirun=True)
    line = one_error_line(changed)
    assert "search.optimizer.lr: log interval(0.0001, 0.1) -> log interval(0.001, 0.1)" in line
    # the same settings resume (and more trials top the study up); the test's intervals are no trial's setting
    more = run_cli(sweep_args(tmp_path, "hydra.sweeper.n_trials=2", "task.test_intervals=0"))
    assert more.returncode == 0 and "Resuming Optuna study" in more.stdout and "2 of 2 trials" in more.stdout


def test_resuming_a_study_into_another_experiment_or_store_is_refused_before_any_trial_is_added(tmp_path):
    """A resume with another logger.mlflow.experiment_name (or MLFLOW_EXPERIMENT_NAME in a worker's shell) put its
    trials in that experiment under a parent run of the first: the UI's nesting and pipeline-compare of the study's
    experiment missed them. A worker without the team's MLFLOW_TRACKING_URI failed on 'Run ... not found' after it had
    added trials to the study."""
    import optuna

    tracked = [a for a in SWEEP if a != "logger=none"]
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = [*tracked, f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    first = run_cli([*args, f"paths.mlruns_dir={tmp_path / 'mlruns'}"])
    assert first.returncode == 0, first.stderr[-3000:]
    line = one_error_line(run_cli([*args, f"paths.mlruns_dir={tmp_path / 'mlruns'}", "hydra.sweeper.n_trials=2",
                                   "logger.mlflow.experiment_name='Other exp'"]))
    assert ("study 'classification_optuna' logs its runs in the experiment 'classification', and this command in "
            "'Other exp'") in line, line
    line = one_error_line(run_cli([*args, f"paths.mlruns_dir={tmp_path / 'elsewhere'}", "hydra.sweeper.n_trials=2"]))
    assert "logs its runs under the parent run" in line and "which the MLflow store" in line, line
    assert len(optuna.load_study(study_name="classification_optuna", storage=storage).trials) == 1  # none added


@pytest.mark.parametrize("searched", [[], ["data.batch_size=choice(32,64)"]], ids=["", "a data key searched"])
def test_resuming_a_study_on_a_file_whose_rows_changed_is_refused(tmp_path, searched):
    """The same data.path with other rows (a file cut down, fixed or regenerated in place): the study went on and
    ranked trials of the two data sets together, its best trial's score from rows the later ones never saw. Also
    where a data key is searched (the check was left out for any searched data.* key, data.batch_size too)."""
    import numpy as np

    rng = np.random.default_rng(0)
    table = tmp_path / "mine.csv"

    def write(rows: int) -> None:
        x = rng.normal(size=(rows, 3))
        lines = ["a,b,c,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{int(a + b > 0)}" for a, b, c in x]
        table.write_text("\n".join(lines) + "\n")

    write(300)
    args = [*SWEEP, "data=csv", f"data.path={table}", "data.target=label", *searched]
    assert run_cli(sweep_args(tmp_path, *args[len(SWEEP):])).returncode == 0
    write(200)
    line = one_error_line(run_cli(sweep_args(tmp_path, *args[len(SWEEP):], "hydra.sweeper.n_trials=2")))
    assert "was run with other settings (data contents (digest of each split's rows): testing " in line, line
    assert "hydra.sweeper.study_name=classification_optuna_2" in line


def test_sigterm_to_a_sweep_ends_it_with_one_line(tmp_path):
    tracked = [a for a in sweep_args(tmp_path, "hydra.sweeper.n_trials=50", "trainer.max_epochs=30") if a != "logger=none"]
    command = [sys.executable, "-m", "pipeline.cli.train", *tracked]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "sweep").glob("*/metrics.jsonl")):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    line = one_error_line(subprocess.CompletedProcess(command, process.returncode, stdout, stderr), code=130)
    assert line.startswith("Interrupted") and "rerun the same command to continue" in line
    assert "ExperimentalWarning" not in stderr
    # the interrupted trial's run is KILLED and tagged as its trial ended (it kept sweep.state=RUNNING)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    trials = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
              if "sweep.trial_number" in r.data.tags or r.info.run_name.startswith("trial-")]
    killed = [r for r in trials if r.info.status == "KILLED"]
    assert len(killed) == 1 and killed[0].data.tags["sweep.state"] == "FAIL", [
        (r.info.status, r.data.tags.get("sweep.state")) for r in trials]


# ----- a run whose process died is not left RUNNING; a resumed run names it ------------------------------------
def test_a_run_killed_with_sigkill_is_closed_by_the_next_run_and_linked_from_its_resume(store, tmp_path):
    command = [sys.executable, "-m", "pipeline.cli.train", "data=synthetic_binary", "data.batch_size=8",
               "trainer.max_epochs=200", *store_overrides(store)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.kill()
    process.wait()
    [killed] = runs_in(store)
    assert killed.info.status == "RUNNING"  # nobody could end it
    resumed = dict(store, outputs=tmp_path / "resumed")
    result = run_cli(["data=synthetic_binary", "data.batch_size=8", "trainer.max_epochs=200", f"ckpt_path={last}",
                      "trainer.max_time=00:00:00:03"], resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {run.info.run_id: run for run in runs_in(store)}
    closed = runs[killed.info.run_id]
    assert closed.info.status == "KILLED" and "ended without ending the run" in closed.data.tags["error"]
    # the epochs it trained, as a run stopped by Ctrl-C says them (pipeline-compare showed 200)
    from mlflow import MlflowClient

    trained = len(MlflowClient(store["uri"]).get_metric_history(killed.info.run_id, "train/loss"))
    assert 0 < trained < 200 and closed.data.tags["stopped_early_at_epoch"] == str(trained), closed.data.tags
    [new] = [run for run in runs.values() if run.info.run_id != killed.info.run_id]
    assert new.info.status == "FINISHED" and new.data.tags["resumed_from_run"] == killed.info.run_id


def test_a_live_run_of_a_container_with_the_same_host_name_is_not_closed(tmp_path, migrated_store_db):
    """A container of the same host name (docker --network host) has pids of its own: its live run's pid was not
    found here, and the next run on the store marked it KILLED while it trained (its finished run then kept the error
    and a wrong epoch count). A pid is looked up only in its own kernel boot and pid namespace; elsewhere the run's
    heartbeat decides."""
    import socket

    from mlflow import MlflowClient

    from conftest import new_store
    from pipeline.tracking.run import close_orphaned_runs, this_machine

    store = new_store(tmp_path, migrated_store_db)
    client = MlflowClient(store["uri"])
    experiment = client.create_experiment("team")
    gone_pid = "4194303"  # above any pid this machine hands out by default (pid_max 4194304)
    boot = this_machine().split("+")[0]

    def running(machine):
        tags = {"pipeline_host": socket.gethostname(), "pipeline_pid": gone_pid,
                "pipeline_heartbeat": str(int(time.time()))}
        if machine is not None:
            tags["pipeline_machine"] = machine
        return client.create_run(experiment, tags=tags).info.run_id

    in_a_container = running(f"{boot}+4026599999")  # the same kernel, another pid namespace
    here, before = running(this_machine()), running(None)  # this namespace; a run recorded before machines were
    closed = close_orphaned_runs(client)
    assert sorted(closed) == sorted([here, before])
    assert client.get_run(in_a_container).info.status == "RUNNING"


def test_a_run_marked_killed_while_it_trained_on_ends_finished_without_the_closers_error(tmp_path, migrated_store_db):
    """A run whose heartbeat had not reached the store for 15 minutes (a long outage) was marked KILLED by another
    machine's next run while it trained on; it then ended FINISHED but kept the closer's error tag and its count of
    epochs, so pipeline-compare showed a finished run as stopped early with an error. Both go; the closer's text
    stays in a tag of its own."""
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    from conftest import new_store
    from pipeline.tracking.run import HEARTBEAT_TAG, HOST_TAG, STALE_AFTER_S, TrackedRun, close_orphaned_runs

    store = new_store(tmp_path, migrated_store_db)
    client = MlflowClient(store["uri"])
    run = TrackedRun(store["uri"], "long", run_name="long", close_orphans=False)
    run.create()
    run.log_params({"trainer.max_epochs": 10})
    for epoch in range(3):
        run.log_metrics({"train/loss": 1.0 / (epoch + 1)}, step=epoch)
    run.flush()
    run._heartbeat.set()  # the heartbeat did not get through; the run looks like another machine's silent one
    stale = str(int(time.time() - STALE_AFTER_S - 60))
    client.log_batch(run.run_id, tags=[RunTag(HOST_TAG, "node-7"), RunTag(HEARTBEAT_TAG, stale)])
    assert close_orphaned_runs(client) == [run.run_id]
    closed = client.get_run(run.run_id)
    assert closed.info.status == "KILLED" and closed.data.tags["stopped_early_at_epoch"] == "3"
    run._created_at -= STALE_AFTER_S + 60  # it has trained for over 15 minutes
    run.log_metrics({"train/loss": 0.1}, step=3)
    run.end("FINISHED", None)
    ended = client.get_run(run.run_id)
    assert ended.info.status == "FINISHED"
    assert "error" not in ended.data.tags and "stopped_early_at_epoch" not in ended.data.tags
    assert ended.data.tags["pipeline_marked_killed_while_alive"].startswith("no heartbeat from node-7 for over 15 min")


def test_a_sweep_closes_trial_runs_whose_worker_died_before_its_study_knew_them(tmp_path):
    """A worker killed just after its trial's run was created (before the run id reached the study) left that run
    RUNNING (sweep.state RUNNING) after the sweep was rerun and finished: the study could not close a run it did not
    know, and no other run started on the store. A sweep closes the store's runs whose process died as it starts."""
    import socket

    from mlflow import MlflowClient

    from pipeline.tracking.run import this_machine

    tracked = [a for a in SWEEP if a != "logger=none"]
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    first = run_cli([*tracked, f"paths.mlruns_dir={tmp_path / 'mlruns'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"])
    assert first.returncode == 0, first.stderr[-3000:]
    client = MlflowClient(uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "classification"]
    dead = client.create_run(experiment.experiment_id, run_name="trial-1-mlp-sgd", tags={
        "pipeline_host": socket.gethostname(), "pipeline_pid": "4194303", "pipeline_machine": this_machine(),
        "pipeline_heartbeat": str(int(time.time())), "sweep.role": "trial", "sweep.state": "RUNNING",
        "sweep.study_name": "classification_optuna", "sweep.trial_number": "1"}).info.run_id
    again = run_cli([*tracked, f"paths.mlruns_dir={tmp_path / 'mlruns'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"])  # its trials all ended: no run starts
    assert again.returncode == 0, again.stderr[-3000:]
    closed = client.get_run(dead)
    assert closed.info.status == "KILLED" and closed.data.tags["sweep.state"] == "FAIL", closed.data.tags


# ----- checkpoints: atomic, and a full disk keeps the previous one --------------------------------------------
@pytest.mark.unit
def test_an_interrupted_checkpoint_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    from pipeline.callbacks import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, target)

    def stopped_before_the_bytes_reach_the_disk(descriptor):
        raise KeyboardInterrupt  # the process is stopped with the new file half written

    monkeypatch.setattr(os, "fsync", stopped_before_the_bytes_reach_the_disk)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(3)}}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


@pytest.mark.unit
def test_random_states_in_a_checkpoint_restore_every_generator(tmp_path):
    """What a resumed run draws next (dropout, augmentation, Python's random) is what the saved run drew next,
    with the states as checkpoints hold them now (Python's as one tensor) and as they held them before (a tuple)."""
    import random

    import numpy as np

    from pipeline.tasks import restore_rng_states, rng_states

    def draws():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]

    torch.save({"rng_states": rng_states()}, tmp_path / "states.ckpt")
    expected = draws()
    saved = torch.load(tmp_path / "states.ckpt", weights_only=True)["rng_states"]
    assert isinstance(saved["python"][1], torch.Tensor) and saved["python"][1].shape == (625,)
    restore_rng_states(saved)
    assert draws() == expected
    version, internal, gauss_next = saved["python"]
    restore_rng_states(dict(saved, python=(version, tuple(internal.tolist()), gauss_next)))  # the older format
    assert draws() == expected


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MiB file system (tmpfs) when this machine lets the test mount one, else None."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so_in_one_line(store, small_disk, monkeypatch, tmp_path):
    # ~1.9 MB per checkpoint (159k parameters + Adam state): epoch 1 writes best + last (3.8 MB), the third file does not fit
    args = ["model.hidden_dims=[384,384]", "trainer.max_epochs=5", "logger.mlflow.log_model=false",
            "logger.mlflow.log_plots=false"]
    if small_disk is not None:
        out = small_disk / "run"
        result = run_cli([*args, f"paths.mlruns_dir={Path(store['artifacts']).parent}", f"hydra.run.dir={out}"])
    else:  # no mount here: the same failure injected where the bytes are written
        import errno

        out = tmp_path / "run"
        real_open, writes = open, []

        def fill_up(path, mode="r", *a, **kw):
            if "w" in mode and ".tmp-" in str(path):
                writes.append(path)
                if len(writes) > 2:
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real_open(path, mode, *a, **kw)

        monkeypatch.setattr("builtins.open", fill_up)
        result = run_cli_in_process([*args, f"paths.mlruns_dir={Path(store['artifacts']).parent}",
                                     f"paths.output_dir={out}"])
        monkeypatch.undo()
    line = one_error_line(result)
    assert "no space left" in line and str(out / "checkpoints") in line
    last = out / "checkpoints" / "last.ckpt"
    # the files that are there (it named a best-epoch file that was never written) and how to go on
    kept = sorted(p.name for p in last.parent.glob("*.ckpt"))
    assert f"kept there: {', '.join(kept)}; resume with ckpt_path={last}." in line, line
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the previous one, whole
    assert not [p for p in last.parent.iterdir() if ".tmp-" in p.name]
    [run] = runs_in(store)
    assert run.info.status == "FAILED"


def test_a_file_size_limit_is_told_as_a_full_disk_not_as_a_bug(store, tmp_path):
    """A write past the file-size limit (``ulimit -f``, or a FAT/exFAT disk's 4 GB) fails with EFBIG: it was an
    "unexpected OSError" with a traceback file (exit 1), where a full disk is told in one line (exit 2)."""
    import resource

    limit = 1_000_000  # a checkpoint of this model is ~1.9 MB: the first one does not fit

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "run"
    command = [sys.executable, "-m", "pipeline.cli.train", "model.hidden_dims=[384,384]", "trainer.max_epochs=2",
               "logger=none", f"hydra.run.dir={out}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                            preexec_fn=limited)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result)
    assert "file-size limit (ulimit -f)" in line and str(out / "checkpoints") in line, line
    assert "kept there: no checkpoint" in line and "unexpected" not in result.stderr, line
    assert not [p for p in (out / "checkpoints").iterdir() if ".tmp-" in p.name]


# ----- secrets, shared folders, credentials in the tracking URI ------------------------------------------------
def test_a_secret_in_the_run_or_experiment_name_is_masked_everywhere(store):
    secret = "s3cr3t-Value-8841"
    result = run_cli(["trainer.max_epochs=1", "logger.mlflow.run_name=run-${oc.env:TEAM_API_TOKEN}",
                      "logger.mlflow.experiment_name=exp-${oc.env:TEAM_API_TOKEN}", "logger.mlflow.log_model=false"],
                     store, env={"TEAM_API_TOKEN": secret})
    assert result.returncode == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    [run] = runs_in(store)
    assert run.info.run_name == "run-***"
    from mlflow import MlflowClient

    assert MlflowClient(store["uri"]).get_experiment(run.info.experiment_id).name == "exp-***"
    assert secret not in str(run.data.params) + str(run.data.tags)


def test_a_secret_in_a_data_files_name_is_masked_in_what_is_printed_and_in_the_runs_inputs(store):
    """A table named after the value of a secret environment variable: the config's data.path was masked, but the
    printed data line, a log record naming the file, train.log and MLflow's dataset records (the UI's inputs of the
    run) held it."""
    secret = "s3cr3t-Value-7719"
    table = store["tmp"] / f"{secret}.csv"
    rows = [f"{i % 7};{(i * 13) % 5};{'ab'[i % 2]}" for i in range(60)]
    table.write_text("x;z;y\n" + "\n".join(rows) + "\n")  # ';': a log record names the file it read so
    result = run_cli(["task=classification", "data=csv", f"data.path={table}", "data.target=y", "trainer.max_epochs=1",
                      "logger.mlflow.log_model=false"], store, env={"TEAM_API_TOKEN": secret})
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert "***.csv" in printed and "read as" in printed, printed[-3000:]
    assert secret not in printed
    assert secret not in (store["outputs"] / "train.log").read_text()
    [run] = runs_in(store)
    sources = [entry.dataset.source for entry in run.inputs.dataset_inputs]
    assert sources and all("***.csv" in source and secret not in source for source in sources), sources


@pytest.mark.unit
def test_personal_access_tokens_are_masked_by_name_and_by_shape(monkeypatch):
    """GH_PAT=ghp_... was kept in clear: the variable's name says neither token nor secret. A *_PAT name is a
    credential's, and GitHub's and Hugging Face's tokens are masked by their shape wherever they show up."""
    from pipeline.tracking import redact

    token = "ghp_" + "A1b2C3d4" * 5
    hf = "hf_" + "Zy9Xw8Vu7" * 4
    monkeypatch.setenv("GH_PAT", "team-pat-value-77")
    assert redact.is_secret_key("GH_PAT") and redact.is_secret_key("tags.github_pat") and not redact.is_secret_key("data.path")
    assert redact.redact_text("clone with team-pat-value-77") == "clone with ***"
    assert redact.redact_text(f"https://x.org/?t={token} and {hf}") == "https://x.org/?t=*** and ***"
    assert redact.redact_text("hf_hub_download and ghp_short stay") == "hf_hub_download and ghp_short stay"
    # glued to a word by an underscore (\b saw no boundary there: kept in the command tag, the params, config.yaml)
    assert redact.redact_override(f"+tags.note=mytok_{token}") == "+tags.note=mytok_***"
    assert redact.redact_yaml_text(f"note: mytok_{token}\n") == "note: mytok_***\n"


def test_a_rerun_of_a_run_with_masked_values_says_so_or_asks_for_them(store, tmp_path, monkeypatch):
    """The logged config holds a secret's value as ***: pipeline-rerun used the three stars as the value without a
    word (a run named run-*** tagged ***). Labels are kept so with a note; a setting is asked for again."""
    from conftest import rerun_cli

    secret = "s3cr3t-Value-5512"
    folder = tmp_path / secret
    folder.mkdir()
    rows = ["x1,x2,y"] + [f"{i % 7},{(i * 3) % 5},{int(i % 7 > 3)}" for i in range(80)]
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("TEAM_API_TOKEN", secret)
    result = run_cli(["task=classification", "data=csv", f"data.path={folder / 'table.csv'}", "data.target=y",
                      "trainer.max_epochs=1", "+tags.note=${oc.env:TEAM_API_TOKEN}",
                      "logger.mlflow.run_name=run-${oc.env:TEAM_API_TOKEN}", "logger.mlflow.log_model=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    assert run.data.params["data.path"] == str(tmp_path / "***" / "table.csv")
    code, stdout, stderr = rerun_cli([run.info.run_id, "--tracking-uri", store["uri"]])
    assert code == 2, stdout[-2000:] + stderr[-2000:]
    assert (f"run {run.info.run_id} logged data.path masked as *** (a secret is never stored); give data.path=... "
            "to set it again") in stderr, stderr[-2000:]
    code, stdout, stderr = rerun_cli([run.info.run_id, "--tracking-uri", store["uri"], "--output-dir",
                                      str(tmp_path / "rerun"), f"data.path={folder / 'table.csv'}"])
    assert code == 0, stdout[-2000:] + stderr[-2000:]
    assert ("Note: tags.note, logger.mlflow.run_name logged masked as *** (a secret is never stored) and kept so; "
            "give tags.note=... to set it again") in stdout, stdout[-2000:]


def test_two_runs_never_share_an_output_folder(store):
    first = run_cli(["trainer.max_epochs=1", "logger=none"], store)
    second = run_cli(["trainer.max_epochs=2", "logger=none"], store)
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-3000:]
    moved = Path(f"{store['outputs']}-2")
    assert f"this run writes to {moved}" in second.stdout
    assert "max_epochs: 1" in (store["outputs"] / "config.yaml").read_text()
    assert "max_epochs: 2" in (moved / "config.yaml").read_text()
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows if "train/loss" in row] == [0]  # the second run's epochs went elsewhere
    # Hydra's record of the job went with it: the first run's .hydra/ still says what the first run was
    assert "trainer.max_epochs=1" in (store["outputs"] / ".hydra" / "overrides.yaml").read_text()
    assert "trainer.max_epochs=2" in (moved / ".hydra" / "overrides.yaml").read_text()
    # so with a config folder of one's own (--config-dir is an option, and options once skipped the move)
    own = store["outputs"].parent / "own-configs"
    own.mkdir()
    third = run_cli(["--config-dir", str(own), "trainer.max_epochs=3", "logger=none"], store)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "trainer.max_epochs=3" in (Path(f"{store['outputs']}-3") / ".hydra" / "overrides.yaml").read_text()
    assert "trainer.max_epochs=2" in (moved / ".hydra" / "overrides.yaml").read_text()
    # --cfg job runs nothing: its YAML alone (a line about the taken folder came first and broke it as YAML)
    import yaml

    shown = run_cli(["--cfg", "job", "trainer.max_epochs=3"], store)
    assert shown.returncode == 0 and yaml.safe_load(shown.stdout)["trainer"]["max_epochs"] == 3, shown.stdout[:500]


class _BasicAuthHealth(BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802
        self.seen.append((self.path, self.headers.get("Authorization")))
        ok = self.headers.get("Authorization") == "Basic dXNlcjpwQHNz"  # user:p@ss
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.unit
def test_a_tracking_uri_with_credentials_is_checked_with_them():
    from pipeline.errors import TrackingUnavailable
    from pipeline.tracking import check_reachable

    server = HTTPServer(("127.0.0.1", 0), _BasicAuthHealth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        check_reachable(f"http://user:p%40ss@127.0.0.1:{port}")
        assert _BasicAuthHealth.seen[-1] == ("/health", "Basic dXNlcjpwQHNz")
    finally:
        server.shutdown()
    with pytest.raises(TrackingUnavailable, match=r"does not answer") as refused:
        check_reachable(f"http://user:p%40ss@127.0.0.1:{port}")
    assert "p%40ss" not in str(refused.value) and "***" in str(refused.value)
    # the hint starts a server where the URI points, not on MLflow's default port
    assert f"mlflow server --host 127.0.0.1 --port {port})" in str(refused.value)


# ----- two runs of one experiment logging the same data set at once ------------------------------------------
def _two_runs(tmp_path, migrated_store_db):
    from conftest import new_store

    from pipeline.tracking.run import TrackedRun

    store = new_store(tmp_path, migrated_store_db)
    runs = [TrackedRun(store["uri"], "same-data", run_name=f"run-{i}", close_orphans=False) for i in range(2)]
    for run in runs:
        run.create()
    return store, runs


@pytest.mark.unit
def test_runs_logging_the_same_data_set_at_once_both_record_it(tmp_path, migrated_store_db):
    """MLflow looks a data set up, then inserts it: two runs of one experiment doing that at the same moment (a
    sweep's trials in the store-writer's lanes) both inserted it, the second write failed on the table's key and
    its run was left RUNNING without its tags, metrics and end (a sweep test saw it about once in ten runs)."""
    import numpy as np

    from pipeline.tracking.inputs import log_dataset_entities, split_description

    store, runs = _two_runs(tmp_path, migrated_store_db)
    for attempt in range(15):
        splits = [split_description("training", np.zeros((3, 2)), np.zeros(3), f"digest-{attempt}")]
        start = threading.Barrier(2)

        def log(run):
            start.wait()
            log_dataset_entities(run, "table", "source", splits)

        threads = [threading.Thread(target=log, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [run.failure for run in runs] == [None, None]
    for run in runs:
        run.end("FINISHED", None)
    recorded = {r.info.run_name: r for r in runs_in(store, "same-data")}
    assert {name: r.info.status for name, r in recorded.items()} == {"run-0": "FINISHED", "run-1": "FINISHED"}
    assert all(len(r.inputs.dataset_inputs) == 15 for r in recorded.values())


@pytest.mark.unit
def test_a_data_set_write_that_lost_a_race_is_tried_again_and_a_broken_store_is_not(tmp_path, migrated_store_db):
    """Another process wrote the same data set between the lookup and the insert: tried again, it is found. Any
    other failure is the store's: noted once, as before, without trying again."""
    import numpy as np
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.inputs import log_dataset_entities, split_description

    _, (lost_race, broken) = _two_runs(tmp_path, migrated_store_db)
    splits = [split_description("training", np.zeros((3, 2)), np.zeros(3), "digest")]
    calls = {"lost": 0, "broken": 0}

    def conflict_once(original):
        def log_inputs(*args, **kwargs):
            calls["lost"] += 1
            if calls["lost"] == 1:
                raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
                                      "datasets.name, datasets.digest")
            return original(*args, **kwargs)
        return log_inputs

    def unreachable(*args, **kwargs):
        calls["broken"] += 1
        raise MlflowException("API request to http://tracking/api/2.0/mlflow/runs/log-inputs failed: Connection refused")

    lost_race.client.log_inputs = conflict_once(lost_race.client.log_inputs)
    broken.client.log_inputs = unreachable
    log_dataset_entities(lost_race, "table", "source", splits)
    log_dataset_entities(broken, "table", "source", splits)
    assert calls == {"lost": 2, "broken": 1}
    assert lost_race.failure is None
    assert broken.failure is not None and "Connection refused" in broken.failure
    assert len(lost_race.client.get_run(lost_race.run_id).inputs.dataset_inputs) == 1
    for run in (lost_race, broken):
        run._heartbeat.set()


@pytest.mark.unit
def test_runs_starting_at_once_in_an_experiment_made_elsewhere_both_start(tmp_path, migrated_store_db):
    """An experiment created outside the pipeline (the UI, ``mlflow experiments create``) gets the tag that opens it
    on its runs table when its first run starts; two runs starting at that moment (a sweep's first trials) both
    inserted the tag, and the second run could not be created. An experiment in the trash is refused to both (it is
    not restored with its runs)."""
    from conftest import new_store

    from pipeline.tracking.run import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, TrackedRun, open_client

    store = new_store(tmp_path, migrated_store_db)
    client = open_client(store["uri"])
    for attempt in range(12):
        name = f"made-elsewhere-{attempt}"
        experiment_id = client.create_experiment(name)
        if attempt % 3 == 2:
            client.delete_experiment(experiment_id)
        runs = [TrackedRun(store["uri"], name, close_orphans=False) for _ in range(2)]
        start, errors = threading.Barrier(2), []

        def create(run):
            start.wait()
            try:
                run.create()
            except Exception as error:
                errors.append(error)

        threads = [threading.Thread(target=create, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if attempt % 3 == 2:
            assert len(errors) == 2 and all(f"'{name}' is deleted" in str(error) for error in errors), errors
            assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
            continue
        assert errors == []
        assert all(run.run_id and run.experiment_id == experiment_id for run in runs)
        experiment = client.get_experiment(experiment_id)
        assert experiment.lifecycle_stage == "active" and experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
        for run in runs:
            run.end("FINISHED", None)
