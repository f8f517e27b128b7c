"""MLflow tracking through the real entry points: what a researcher finds in the store after a run.

One short run through the CLI (``logged_run``) is shared by the tests that read what it recorded;
the other runs are in-process (``train(cfg)``) where the CLI itself is not the point.
"""
from __future__ import annotations

import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import (PROJECT_ROOT, _main_in_process, compose_for_train, error_line, free_port, load_pyfunc, new_store,
                      predict_cli, rerun_cli, run_cli, run_cli_in_process, runs_in)

SECRET_PASSWORD = "s3cretPassw0rd"
SECRET_TOKEN = "tok-abc-123456"
SECRET_FROM_ENV = "envtok-987654"


def client_of(store: dict):
    from mlflow import MlflowClient

    return MlflowClient(store["uri"])


def artifact_paths(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return found


# ----- one short run through the CLI, read by several tests ----------------------------------------
@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, migrated_store_db):
    store = new_store(tmp_path_factory.mktemp("logged"), migrated_store_db)
    result = run_cli(
        ["trainer.max_epochs=2", f"+tags.storage=postgresql://user:{SECRET_PASSWORD}@localhost/db",
         f"+tags.api_token={SECRET_TOKEN}", "+tags.note=${oc.env:PIPELINE_NOTE_TOKEN}",
         "+tags.mlflow.note.content=baseline by alice"],
        store, env={"PIPELINE_NOTE_TOKEN": SECRET_FROM_ENV})
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_in(store)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return {"store": store, "run": runs[0], "client": client_of(store), "result": result}


def test_run_records_config_params_and_per_epoch_metrics(logged_run):
    run, client = logged_run["run"], logged_run["client"]
    assert run.info.status == "FINISHED"
    assert re.fullmatch(r"mlp-adam-[0-9a-f]{6}", run.info.run_name)
    assert client.get_experiment(run.info.experiment_id).name == "classification"
    params = run.data.params
    assert params["optimizer.lr"] == "0.001" and params["model.dropout"] == "0.0" and params["trainer.max_epochs"] == "2"
    assert {k: params[k] for k in ("task", "data", "model", "optimizer")} == {
        "task": "classification", "data": "breast_cancer", "model": "mlp", "optimizer": "adam"}
    assert "trainer.max_epochs=2" in params["overrides"] and params["effective_batch_size"] == "64"
    import shlex

    # quoted for a shell, as the command tag is: pasted back, each override is one argument again
    assert shlex.split(params["overrides"])[:3] == [
        "trainer.max_epochs=2", "+tags.storage=postgresql://user:***@localhost/db", "+tags.api_token=***"]
    assert "'+tags.api_token=***'" in params["overrides"]  # a shell would expand the * unquoted
    # a dotted tag is that tag (mlflow.note.content: the run's description in the UI), not a dict's text under 'mlflow'
    assert run.data.tags["mlflow.note.content"] == "baseline by alice" and "mlflow" not in run.data.tags
    assert params["torch_threads"] == str(torch.get_num_threads())  # the same environment: the same count
    for key in ("train/loss", "train/epoch_time_s", "val/loss", "val/acc", "val/f1", "val/auroc", "val/ap", "val/loss_best"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 1], key
    val_loss = [m.value for m in client.get_metric_history(run.info.run_id, "val/loss")]
    best = [m.value for m in client.get_metric_history(run.info.run_id, "val/loss_best")]
    assert best == [val_loss[0], min(val_loss)]
    for key in ("test/acc", "test/f1", "test/auroc", "test/ap", "test/loss"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key  # logged once, not twice
    assert run.data.metrics["test/acc"] > 0.8
    # each test metric with its 95 % bootstrap interval (task.test_intervals), printed in brackets
    metrics = run.data.metrics
    for name in ("acc", "f1", "auroc", "ap"):
        low, value, high = (metrics[f"test/{name}{part}"] for part in ("_ci_low", "", "_ci_high"))
        assert low <= value <= high and low < high, (name, low, value, high)
        assert f"test/{name}={value:.4f} [{low:.4f}, {high:.4f}]" in logged_run["result"].stdout
    assert "test/loss_ci_low" not in metrics


def test_run_records_artifacts_and_keeps_local_copies(logged_run):
    run, client, store = logged_run["run"], logged_run["client"], logged_run["store"]
    paths = artifact_paths(client, run.info.run_id)
    assert "config.yaml" in paths
    assert any(re.fullmatch(r"checkpoints/best-epoch\d+\.ckpt", p) for p in paths), paths
    for plot in ("plots/learning_curves.png", "plots/confusion_matrix.png", "plots/roc_pr_curves.png"):
        assert plot in paths
        local = client.download_artifacts(run.info.run_id, plot, str(store["tmp"]))
        assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(local).stat().st_size > 5000
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout
    assert ("git.diff" in paths) == bool(dirty.strip())
    outputs = store["outputs"]
    for name in ("config.yaml", "metrics.jsonl", "plots/learning_curves.png", "checkpoints/last.ckpt"):
        assert (outputs / name).is_file(), name
    lines = [json.loads(line) for line in (outputs / "metrics.jsonl").read_text().splitlines()]
    assert any("test/acc" in line for line in lines) and sum("train/loss" in line for line in lines) == 2
    # what was trained, readable without the checkpoint: the default MLP (30 -> 64 -> 32 -> 1 ...)
    summary = (outputs / "model_summary.txt").read_text()
    assert "model_summary.txt" in paths and summary.startswith("MLP(") and "Linear(in_features=30" in summary
    count = int(run.data.tags["model_parameters"])
    assert f"trainable parameters: {count:,}" in summary and count > 1000


def test_logged_model_reads_the_named_feature_columns_and_scores_the_test_metrics(logged_run, tmp_path):
    """The model at runs:/<id>/model of the default data set takes raw rows: scikit-learn's feature columns by
    name, in any order, extra columns ignored. On the test rows it scores test/acc; ``pipeline-predict`` answers
    the same from the run id and from the checkpoint; an absent column or a cell that is not a number is one line."""
    from pipeline.data.tabular import BreastCancer

    run, store = logged_run["run"], logged_run["store"]
    model = load_pyfunc(store, run.info.run_id)
    assert [column["name"] for column in model.metadata.signature.inputs.to_dict()] == list(BreastCancer.columns)
    data = BreastCancer(seed=42, standardize=False)  # the same split, the features as scikit-learn gives them
    data.setup("fit")
    test_rows = pd.DataFrame(data.test_split.x.double().numpy(), columns=list(BreastCancer.columns))
    test_rows = test_rows[test_rows.columns[::-1]].assign(id=np.arange(len(test_rows)) + 1000)
    predicted = model.predict(test_rows)
    assert list(predicted.columns) == ["prediction", "probability_malignant", "probability_benign"]
    labels = np.asarray(["malignant", "benign"])[data.test_split.y.numpy()]
    accuracy = float((predicted["prediction"].to_numpy() == labels).mean())
    assert accuracy == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)
    # predictions/test.csv: the same rows, targets, predictions and probabilities, in the artifacts and the outputs
    logged = pd.read_csv(client_of(store).download_artifacts(run.info.run_id, "predictions/test.csv", str(tmp_path)))
    assert logged.equals(pd.read_csv(store["outputs"] / "predictions" / "test.csv"))
    assert list(logged.columns) == ["row", "data_row", "target", "prediction", "probability_malignant",
                                    "probability_benign"]
    from pipeline.tracking import artifacts, pyfunc_model

    assert (artifacts.PREDICTION, artifacts.PROBABILITY_PREFIX) == (pyfunc_model.PREDICTION, pyfunc_model.PROBABILITY_PREFIX)
    assert logged["row"].tolist() == list(range(len(labels))) and (logged["target"] == labels).all()
    assert (logged["prediction"] == predicted["prediction"].to_numpy()).all()
    assert logged["probability_benign"].to_numpy() == pytest.approx(predicted["probability_benign"].to_numpy(), abs=1e-6)

    table = tmp_path / "new.csv"
    test_rows.to_csv(table, index=False)
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    for source in (run.info.run_id, str(checkpoint)):
        output = tmp_path / "predictions.csv"
        code, _, stderr = predict_cli([source, "--input", str(table), "--output", str(output), "--keep", "id",
                                       "--tracking-uri", store["uri"]])
        assert code == 0, stderr[-3000:]
        answered = pd.read_csv(output)
        assert (answered["id"] == test_rows["id"]).all()
        assert (answered["prediction"] == predicted["prediction"]).all()
        np.testing.assert_allclose(answered["probability_benign"], predicted["probability_benign"], atol=1e-6)

    def refusal(frame) -> str:
        frame.to_csv(table, index=False)
        code, _, stderr = predict_cli([run.info.run_id, "--input", str(table), "--output", str(tmp_path / "never.csv"),
                                       "--tracking-uri", store["uri"]])
        assert code == 2 and not (tmp_path / "never.csv").exists()
        return error_line(stderr)

    line = refusal(test_rows.drop(columns=["worst area"]))
    assert "no column 'worst area'" in line and "missing" not in line, line  # no imputation: no "add it empty"
    broken = test_rows.astype({"mean radius": object, "mean area": float})
    broken.loc[3, "mean radius"] = "abc"
    assert "column 'mean radius' holds 'abc' at index 3, not a number" in refusal(broken)
    broken.loc[3, "mean radius"], broken.loc[5, "mean area"] = 1.0, None
    assert "column 'mean area' at index 5 is missing" in refusal(broken)


@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_a_run_trained_in_float64_or_bfloat16_finishes_with_its_predictions_and_model(store, tmp_path, precision):
    """trainer.precision=64-true (bf16-true) trained and tested, then ended 'Error: unexpected RuntimeError: mat1 and
    mat2 must have the same dtype, but got Float and Double' (BFloat16), exit 1: a FAILED run without
    predictions/test.csv or a logged model, the test split's float32 batches run through float64 weights outside
    Lightning. Now the run finishes; its predictions score test/acc, and the logged model and pipeline-predict (from
    the run id and from the checkpoint) take the float32 rows a user gives and answer as the run's test did."""
    from pipeline.data.tabular import BreastCancer

    result = run_cli([f"trainer.precision={precision}", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"],
                     store)
    assert result.returncode == 0 and "Error:" not in result.stderr, result.stderr[-3000:]
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert "predictions/test.csv" in artifact_paths(client_of(store), run.info.run_id)
    tested = pd.read_csv(store["outputs"] / "predictions" / "test.csv")
    assert float((tested["prediction"] == tested["target"]).mean()) == pytest.approx(run.data.metrics["test/acc"],
                                                                                     abs=1e-6)
    data = BreastCancer(seed=42, standardize=False)  # the same split, the features as scikit-learn gives them
    data.setup("fit")
    rows = pd.DataFrame(data.test_split.x.double().numpy(), columns=list(BreastCancer.columns))
    predicted = load_pyfunc(store, run.info.run_id).predict(rows)
    assert (predicted["prediction"].to_numpy() == tested["prediction"].to_numpy()).all()
    np.testing.assert_allclose(predicted["probability_benign"], tested["probability_benign"], atol=1e-6)
    table = tmp_path / "rows.csv"
    rows.to_csv(table, index=False)
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    for source in (run.info.run_id, str(checkpoint)):
        output = tmp_path / "answered.csv"
        code, _, stderr = predict_cli([source, "--input", str(table), "--output", str(output),
                                       "--tracking-uri", store["uri"]])
        assert code == 0, stderr[-3000:]
        answered = pd.read_csv(output)
        assert (answered["prediction"] == tested["prediction"]).all(), source
        np.testing.assert_allclose(answered["probability_benign"], tested["probability_benign"], atol=1e-6,
                                   err_msg=source)


def test_the_run_end_says_how_to_open_its_own_store(logged_run, tmp_path, monkeypatch):
    """A run logged to another store (paths.mlruns_dir, MLFLOW_TRACKING_URI) ended with "Open the UI with:
    pipeline-ui ...; compare runs: pipeline-compare", which then found no store: the commands now name it."""
    from pipeline.cli.compare import main as compare_main
    from pipeline.tracking import store_commands_line

    uri = logged_run["store"]["uri"]
    line = next(line for line in logged_run["result"].stdout.splitlines() if line.startswith("Open the UI"))
    assert line == f"Open the UI with: pipeline-ui --tracking-uri {uri}; compare runs: pipeline-compare --tracking-uri {uri}"
    code, stdout, stderr = _main_in_process(compare_main, line.split("pipeline-compare ", 1)[1].split()
                                            + ["--output", str(tmp_path / "compare")])
    assert code == 0 and logged_run["run"].info.run_id[:8] in stdout + (tmp_path / "compare").joinpath(
        "compare.md").read_text(), (stdout[-2000:], stderr[-2000:])
    monkeypatch.chdir(tmp_path)  # the default store, ./mlruns/mlflow.db: what the commands read without options
    assert store_commands_line("sqlite:///mlruns/mlflow.db") == \
        "Open the UI with: pipeline-ui   (or: make ui); compare runs: pipeline-compare"


def test_tags_say_where_the_run_came_from(logged_run):
    run = logged_run["run"]
    tags = run.data.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout
    assert tags["git_commit"] == head and tags["git_dirty"] == str(bool(dirty.strip())).lower()
    assert "pipeline.cli.train" in tags["command"] and "trainer.max_epochs=2" in tags["command"]
    assert tags["host"] == socket.gethostname()
    import mlflow
    import pytorch_lightning

    assert tags["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert tags["torch_version"] == torch.__version__.split("+")[0] or tags["torch_version"] == torch.__version__
    assert tags["pytorch_lightning_version"] == pytorch_lightning.__version__
    assert tags["mlflow_version"] == mlflow.__version__
    import numpy
    import sklearn

    # and what reads and splits the data, and the machine: what a rerun elsewhere needs to be exact
    assert (tags["numpy_version"], tags["sklearn_version"]) == (numpy.__version__, sklearn.__version__)
    assert {"pandas_version", "hydra_version", "omegaconf_version", "optuna_version", "torchvision_version"} <= set(tags)
    assert tags["os"] and tags["cpu"]
    # and every installed package, as pip freeze lists them: an environment to rebuild with pip install -r
    from importlib import metadata

    environment = Path(logged_run["client"].download_artifacts(run.info.run_id, "environment.txt",
                                                               str(logged_run["store"]["tmp"]))).read_text()
    lines = environment.splitlines()
    assert lines[0].startswith("# pip install -r environment.txt") and platform.python_version() in lines[0]
    for name in ("torch", "pytorch-lightning", "mlflow", "optuna", "hydra-core", "numpy", "pyyaml"):
        assert f"{name}=={metadata.version(name)}" in lines, name
    assert len(lines) == len(set(lines)) > 100, len(lines)  # the whole interpreter, not the 11 libraries of the tags
    assert tags["seed"] == "42" and tags["task"] == "classification"
    contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "validation", "testing"}
    assert contexts["training"].name == "breast_cancer" and contexts["training"].digest == tags["data_digest"]
    assert len({d.digest for d in contexts.values()}) == 3


def test_secrets_reach_neither_params_nor_tags_nor_the_logged_config(logged_run):
    run, client, store = logged_run["run"], logged_run["client"], logged_run["store"]
    config_yaml = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(store["tmp"]))).read_text()
    # Hydra's own record of the job (.hydra/overrides.yaml, config.yaml, hydra.yaml) held the command line's secrets
    hydra_record = [path.read_text() for path in sorted((store["outputs"] / ".hydra").glob("*.yaml"))]
    assert len(hydra_record) == 3 and "api_token=***" in hydra_record[2]
    logged_text = "\n".join([*run.data.params.values(), *run.data.tags.values(), config_yaml,
                             (store["outputs"] / "config.yaml").read_text(), *hydra_record])
    for secret in (SECRET_PASSWORD, SECRET_TOKEN, SECRET_FROM_ENV):
        assert secret not in logged_text, secret
        assert secret not in logged_run["result"].stdout
    # what was redacted is still recognisable
    assert run.data.tags["storage"] == "postgresql://user:***@localhost/db"
    assert run.data.params["tags.api_token"] == "***" and run.data.tags["api_token"] == "***"


@pytest.mark.parametrize("writer", ["0", "1"], ids=["in-process", "store-writer"])
def test_secrets_written_into_the_checkout_are_masked_in_git_diff(shared_store, tmp_path, monkeypatch, writer):
    """A credential written into a file of the checkout (a config's ``wandb_api_key: ...``, ``HF_TOKEN = "..."`` in
    a .py file, a comment's ``password=...``) was in plain text in git.diff, in the output folder and the store,
    while the same key was ``'***'`` in config.yaml and the params: values of keys named like credentials are
    masked in the diff too, the rest of it stays as git wrote it."""
    import pipeline.config

    checkout = tmp_path / "checkout"
    (checkout / "conf").mkdir(parents=True)
    (checkout / "conf" / "config.yaml").write_text("seed: 1\ntags: {}\nlr: 0.1\n")
    (checkout / "settings.py").write_text("BATCH = 8\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    subprocess.run([*git, "add", "."], cwd=checkout, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], cwd=checkout, check=True)
    secrets = ["blocksecret7171", "wbsecretkey4242", "hfsecrettoken5151", "pwdsecret6161", "jsonsecret3131",
               # a secret key=value inside another key's value (they were kept: the outer key took the whole value)
               "nestedsecret1", "nestedsecret2", "nestedsecret3", "nestedsecret4"]
    (checkout / "conf" / "config.yaml").write_text(
        "seed: 1\ntags:\n  wandb_api_key: blocksecret7171\nlr: 0.5\n"
        "other: {wandb_api_key: wbsecretkey4242, size: 3}\n# service password=pwdsecret6161\n"
        "# creds: password=nestedsecret1\nargs: --password=nestedsecret2\nenv: API_KEY=nestedsecret3\n")
    (checkout / "settings.py").write_text(
        'BATCH = 8\nHF_TOKEN = "hfsecrettoken5151"\nHEADERS = {"api_key": "jsonsecret3131", "name": "x"}\n'
        'CMD = "run --token=nestedsecret4 --fast"\n')
    # a model of one's own not yet committed: its contents are in the diff (it was named only), a data file is named
    (checkout / "extra_model.py").write_text('class Extra:\n    SCALE = 3.0\n    API_KEY = "untrackedsecret8181"\n')
    (checkout / "rows.csv").write_text("a,b\n1,2\n")
    secrets.append("untrackedsecret8181")
    monkeypatch.setattr(pipeline.config, "PROJECT_ROOT", checkout)
    monkeypatch.setenv("PIPELINE_STORE_WRITER", writer)
    store = in_store(shared_store, tmp_path)
    name = f"git-diff-{writer}"
    result = run_cli_in_process(["trainer.max_epochs=1", "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false",
                                 f"logger.mlflow.experiment_name={name}"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store, name)
    client = client_of(store)
    logged = Path(client.download_artifacts(run.info.run_id, "git.diff", str(tmp_path))).read_text()
    local = (store["outputs"] / "git.diff").read_text()
    for diff in (logged, local):
        assert not [secret for secret in secrets if secret in diff], diff
        for line in ("+  wandb_api_key: ***", "+other: {wandb_api_key: ***, size: 3}", "+# service password=***",
                     '+HF_TOKEN = "***"', '+HEADERS = {"api_key": "***", "name": "x"}', "-lr: 0.1", "+lr: 0.5",
                     "-tags: {}", "+# creds: password=***", "+args: --password=***", "+env: API_KEY=***",
                     '+CMD = "run --token=*** --fast"'):
            assert line in diff.splitlines(), (line, diff)
        assert "+    SCALE = 3.0" in diff.splitlines() and '+    API_KEY = "***"' in diff.splitlines(), diff
        assert "#   rows.csv" in diff.splitlines() and "+a,b" not in diff.splitlines(), diff
    assert not [secret for secret in secrets if secret in result.stdout + result.stderr]
    again = tmp_path / "again"  # the commit and the logged diff make the checkout again, the untracked model too
    subprocess.run(["git", "clone", "-q", str(checkout), str(again)], check=True)
    subprocess.run(["git", "apply", str(store["outputs"] / "git.diff")], cwd=again, check=True)
    assert "SCALE = 3.0" in (again / "extra_model.py").read_text()


def test_the_store_file_alone_holds_the_run_once_the_command_returns(logged_run, tmp_path):
    """The store is written in write-ahead-log mode (cheaper commits; the UI reading it does not block the run);
    the command folds the log into mlflow.db before it returns, so the file alone, copied or backed up, holds
    the whole run."""
    import contextlib
    import shutil
    import sqlite3

    database = Path(logged_run["store"]["uri"][len("sqlite:///"):])
    shutil.copy(database, tmp_path / "mlflow.db")  # without mlflow.db-wal, as a user copies a store
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert copy.execute("SELECT status FROM runs").fetchall() == [("FINISHED",)]
        assert copy.execute("SELECT count(*) FROM latest_metrics WHERE key = 'test/acc'").fetchone()[0] == 1


# ----- other tasks, in-process, in one store (an experiment each) ---------------------------------------
@pytest.fixture(scope="module")
def shared_store(tmp_path_factory, migrated_store_db) -> dict:
    return new_store(tmp_path_factory.mktemp("shared"), migrated_store_db)


def in_store(store: dict, tmp_path: Path) -> dict:
    return dict(store, outputs=tmp_path / "outputs", tmp=tmp_path)


def test_regression_logs_predicted_vs_true_and_a_model_in_original_units(shared_store, tmp_path):
    from pipeline.train import train

    store = in_store(shared_store, tmp_path)
    metrics = train(compose_for_train(store, ["task=regression", "trainer.max_epochs=3"]))
    [run] = runs_in(store, "regression")
    client = client_of(store)
    paths = artifact_paths(client, run.info.run_id)
    assert "plots/predicted_vs_true.png" in paths and "plots/confusion_matrix.png" not in paths
    assert "plots/roc_pr_curves.png" not in paths
    from pipeline.data.tabular import Diabetes

    data = Diabetes(seed=42, standardize=False)
    data.setup("fit")
    rows = pd.DataFrame(data.test_split.x.double().numpy(), columns=list(Diabetes.columns))
    predicted = load_pyfunc(store, run.info.run_id).predict(rows)["prediction"].to_numpy()
    rmse = float(np.sqrt(np.mean((predicted - data.test_split.y.double().numpy()) ** 2)))
    assert rmse == pytest.approx(metrics["test/rmse"], rel=1e-4)  # original units, as the test metric
    logged = pd.read_csv(store["outputs"] / "predictions" / "test.csv")
    assert list(logged.columns) == ["row", "data_row", "target", "prediction"] and "predictions/test.csv" in paths
    assert logged["target"].to_numpy() == pytest.approx(data.test_split.y.double().numpy(), rel=1e-6)
    assert logged["prediction"].to_numpy() == pytest.approx(predicted, rel=1e-5)


def test_regression_intervals_keep_the_precision_of_their_metric(tmp_path, migrated_store_db):
    """A regression metric is logged in float64 (the data's units); its bootstrap interval was float32 beside it
    (test/mse=4333870.101239996, test/mse_ci_high=7462357.0): the bounds are float64 too."""
    from pipeline.train import train

    store = new_store(tmp_path, migrated_store_db)
    train(compose_for_train(store, ["task=regression", "data=synthetic_linear", "data.bias=3000", "data.noise=700",
                                    "trainer.max_epochs=1", "logger.mlflow.log_model=false",
                                    "logger.mlflow.log_plots=false", "task.test_intervals=200"]))
    [run] = runs_in(store, "regression")
    metrics = run.data.metrics
    for name in ("mse", "rmse", "mae"):
        low, value, high = (metrics[f"test/{name}{part}"] for part in ("_ci_low", "", "_ci_high"))
        assert low < value < high, (name, low, value, high)
        for bound in (low, high):  # not rounded to float32 (24 bits: a multiple of 1/16 above 1e5)
            assert float(np.float32(bound)) != bound, (name, bound)


def test_text_task_logs_its_tokenizer_and_respects_log_model_and_log_plots(shared_store, tmp_path):
    from pipeline.train import train

    folder = tmp_path / "tsv"
    folder.mkdir()
    rows = [f"{'a fine good film' if i % 2 else 'a dull bad film'} number {i}\t{i % 2}" for i in range(120)]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    store = in_store(shared_store, tmp_path)
    train(compose_for_train(store, ["task=sentiment", "data=text_tsv", f"data.path={folder}", "trainer.max_epochs=1",
                                    "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false",
                                    "logger.mlflow.log_predictions=false"]))
    [run] = runs_in(store, "sentiment")
    paths = artifact_paths(client_of(store), run.info.run_id)
    assert "data/tokenizer.json" in paths
    assert not any(p.startswith(("plots/", "predictions/")) for p in paths)
    assert client_of(store).search_logged_models([run.info.experiment_id]) == []
    tokenizer = json.loads((store["outputs"] / "data" / "tokenizer.json").read_text())
    assert "good" in tokenizer["model"]["vocab"]


class CutAtLongest(torch.nn.Module):
    """A text model that cuts its input at the longest text (data-dependent, which torch.export cannot trace), as
    the recurrent model did before it skipped the cut while exported."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.EmbeddingBag(50, 4, padding_idx=0)
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, tokens):
        return self.linear(self.embedding(tokens[:, : int((tokens != 0).sum(1).max())]))


def test_a_model_that_torch_export_cannot_trace_is_logged_pickled_and_loads(shared_store):
    import mlflow
    import mlflow.pytorch

    from pipeline.tracking import TrackedRun
    from pipeline.tracking.artifacts import log_model

    torch.manual_seed(0)
    model = CutAtLongest().eval()
    tokens = torch.randint(1, 50, (6, 16))
    with TrackedRun(shared_store["uri"], "pickled-models", run_name="rnn", artifact_location=shared_store["artifacts"]) as run:
        assert log_model(run, model, tokens[:4]) == "pickle"
    mlflow.set_tracking_uri(shared_store["uri"])
    try:
        loaded = mlflow.pytorch.load_model(f"runs:/{run.run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))
    [logged] = client_of(shared_store).search_logged_models([run.experiment_id])  # the failed pt2 attempt is gone
    assert logged.source_run_id == run.run_id


# ----- how runs end -------------------------------------------------------------------------------
def test_a_diverging_run_is_failed_with_the_reason(shared_store, tmp_path):
    from pipeline.errors import NonFiniteLossError
    from pipeline.train import train

    store = in_store(shared_store, tmp_path)
    with pytest.raises(NonFiniteLossError):
        train(compose_for_train(store, ["task=regression", "optimizer=sgd", "optimizer.lr=1e12", "trainer.max_epochs=2",
                                        "logger.mlflow.experiment_name=diverging"]))
    [run] = runs_in(store, "diverging")
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["error"] and "training loss is" in run.data.tags["error"]


@pytest.mark.parametrize("writer", ["0", "1"], ids=["in-process", "store-writer"])
def test_a_model_the_store_cannot_take_fails_the_tracking_not_the_results(shared_store, tmp_path, monkeypatch, writer):
    """The raw-rows model is written by the training process into a temporary folder that the store then copies:
    when the store fails on it, the run ends with TrackingFailed naming the model, the run's files are all there, no
    half-saved model is left in the store, and the temporary folder is gone (in-process and by the writer)."""
    import tempfile

    from pipeline.errors import TrackingFailed
    from pipeline.tracking import raw_model
    from pipeline.train import train

    store = in_store(shared_store, tmp_path)
    temporary = tmp_path / "tmp"  # where the training process makes the model's folder
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setenv("PIPELINE_STORE_WRITER", writer)
    write_model_parts = raw_model.write_model_parts

    def parts_with_the_network_missing(folder, *args):  # the store cannot copy the model
        parts = write_model_parts(folder, *args)
        Path(parts["predictor"]).unlink()
        return parts

    monkeypatch.setattr(raw_model, "write_model_parts", parts_with_the_network_missing)
    with pytest.raises(TrackingFailed, match="while logging the model") as failed:
        train(compose_for_train(store, ["trainer.max_epochs=2", f"logger.mlflow.experiment_name=model-refused-{writer}",
                                        "logger.mlflow.log_plots=false"]))
    assert "nothing is lost" in str(failed.value)
    lines = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    assert any("test/acc" in line for line in lines) and list((store["outputs"] / "checkpoints").glob("best-*.ckpt"))
    [run] = runs_in(store, f"model-refused-{writer}")
    # ended, with what failed (it stayed RUNNING, and the next run on the store called it KILLED by a lost process)
    assert run.info.status == "FAILED" and "while logging the model" in run.data.tags["error"], run.data.tags
    assert not client_of(store).search_logged_models([run.info.experiment_id])
    assert not list(temporary.glob("pipeline-model-*"))


def test_an_interrupted_run_is_killed(shared_store):
    from pipeline.tracking import TrackedRun

    with pytest.raises(KeyboardInterrupt):
        with TrackedRun(shared_store["uri"], "interrupts", run_name="stopped",
                        artifact_location=shared_store["artifacts"]) as run:
            run.log_metrics({"train/loss": 1.0}, step=0)
            raise KeyboardInterrupt
    [logged] = runs_in(shared_store, "interrupts")
    assert logged.info.status == "KILLED" and logged.data.metrics["train/loss"] == 1.0


def test_a_run_interrupted_while_the_store_writer_creates_it_is_killed(shared_store, monkeypatch, tmp_path):
    """Ctrl-C or SIGTERM while the run waited for the store-writer to create it (pipeline-eval: its first seconds,
    the writer still importing MLflow) raised out of ``__enter__``, so no ``__exit__`` ended the run: it stayed
    RUNNING, and the next command on the store called it KILLED by a lost process."""
    from pipeline.tracking import remote

    real, calls = remote.RemoteRun._settle_start, []

    def interrupted_once(self):
        calls.append(self._starting)
        if len(calls) == 1:
            raise KeyboardInterrupt  # while waiting for the writer's answer
        real(self)

    monkeypatch.setattr(remote.RemoteRun, "_settle_start", interrupted_once)
    entered = False
    with pytest.raises(KeyboardInterrupt):
        with remote.RemoteRun(shared_store["uri"], "interrupted-start", run_name="stopped",
                              artifact_location=shared_store["artifacts"], output_dir=tmp_path):
            entered = True
    remote.close_writer()
    assert not entered and len(calls) == 2 and calls[1] is calls[0]  # the same request, answered once
    [logged] = runs_in(shared_store, "interrupted-start")
    assert logged.info.status == "KILLED" and logged.data.tags["error"].startswith("interrupted"), logged.data.tags


def test_pipeline_eval_interrupted_while_testing_is_killed_exit_130(store, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM while pipeline-eval tested: Lightning's cleanup ends with sys.exit(1), and the evaluation run
    was marked FAILED ("SystemExit: 1") and the command exited 1."""
    from conftest import eval_cli

    result = run_cli(["trainer.max_epochs=1"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [source] = runs_in(store)
    from pipeline.tasks.base import TaskModule

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt  # as the signal handler raises it inside the test loop

    monkeypatch.setattr(TaskModule, "test_step", interrupt)
    import pipeline.cli.errors

    monkeypatch.setattr(pipeline.cli.errors, "_exit_at_once", sys.exit)  # not os._exit: this is pytest's process
    code, _, stderr = eval_cli([source.info.run_id, "--tracking-uri", store["uri"],
                                "--output-dir", str(tmp_path / "evaluation")])
    assert code == 130, stderr[-3000:]
    assert "Interrupted (Ctrl-C or SIGTERM)" in stderr
    [evaluation] = [r for r in runs_in(store) if r.data.tags.get("evaluation_of") == source.info.run_id]
    assert evaluation.info.status == "KILLED" and evaluation.data.tags["error"].startswith("interrupted")
    # the checkpoint as the store keeps it (it named the temporary copy, deleted when the evaluation ended)
    assert re.fullmatch(rf"runs:/{source.info.run_id}/checkpoints/best-epoch\d+\.ckpt",
                        evaluation.data.tags["evaluated_checkpoint"]), evaluation.data.tags["evaluated_checkpoint"]


def test_fast_epochs_are_written_together_and_none_is_lost(shared_store):
    """Epochs of a few milliseconds share one store write (it holds the GIL for ~5-10 ms); every epoch
    still arrives with its own step, also when the run is interrupted right after."""
    from pipeline.tracking import TrackedRun

    writes = []
    with pytest.raises(KeyboardInterrupt):
        with TrackedRun(shared_store["uri"], "coalesced", run_name="fast", artifact_location=shared_store["artifacts"]) as run:
            send = run.client.log_batch
            run.client.log_batch = lambda *a, **k: (writes.append(len(k.get("metrics") or [])), send(*a, **k))[1]
            for epoch in range(50):
                run.log_metrics({"train/loss": 1.0 / (epoch + 1), "val/loss": 2.0}, step=epoch)
            raise KeyboardInterrupt
    [logged] = runs_in(shared_store, "coalesced")
    history = metric_history(shared_store, logged.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(50))
    assert [m.value for m in history] == [1.0 / (e + 1) for e in range(50)]
    metric_writes = [n for n in writes if n]
    assert sum(metric_writes) == 100 and len(metric_writes) <= 3, metric_writes


def metric_history(store: dict, run_id: str, key: str):
    return sorted(client_of(store).get_metric_history(run_id, key), key=lambda m: m.step)


# ----- stores -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_four_runs_started_at_once_on_a_new_local_store_are_all_logged(tmp_path):
    store = new_store(tmp_path)  # no tables yet: four processes creating them at once is the hard case
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    processes = []
    for seed in range(4):
        command = [sys.executable, "-m", "pipeline.cli.train", f"seed={seed}", "trainer.max_epochs=1",
                   f"logger.mlflow.tracking_uri={store['uri']}", f"logger.mlflow.artifact_location={store['artifacts']}",
                   f"hydra.run.dir={tmp_path / f'out{seed}'}", "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"]
        processes.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    for code, stderr in results:
        assert code == 0, stderr[-2000:]
        assert "database is locked" not in stderr
    runs = runs_in(store)
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1", "2", "3"]
    assert all(r.info.status == "FINISHED" and "test/acc" in r.data.metrics for r in runs)


def test_an_unreachable_tracking_server_fails_before_training(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    store = new_store(tmp_path)
    result = run_cli_in_process([f"logger.mlflow.tracking_uri={uri}", f"hydra.run.dir={store['outputs']}"])
    assert result.returncode != 0
    assert uri in result.stderr and "mlflow server" in result.stderr and "Traceback" not in result.stderr
    assert not (store["outputs"] / "checkpoints").exists()  # nothing was trained


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """``mlflow server`` on a free loopback port, with its own SQLite store and artifact folder (the
    test that stops it comes last)."""
    tmp_path = tmp_path_factory.mktemp("server")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
               "--artifacts-destination", str(tmp_path / "server-artifacts")]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except Exception:
            assert process.poll() is None, "mlflow server exited"
            time.sleep(0.5)
    else:
        pytest.fail("mlflow server did not start")
    yield {"url": url, "process": process, "tmp": tmp_path}
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_a_run_against_a_tracking_server_is_recorded_there(tracking_server):
    from mlflow import MlflowClient

    out = tracking_server["tmp"] / "outputs"
    result = run_cli(["trainer.max_epochs=2", f"logger.mlflow.tracking_uri={tracking_server['url']}", f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_server["url"])
    [run] = client.search_runs([client.get_experiment_by_name("classification").experiment_id])
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2
    paths = artifact_paths(client, run.info.run_id)
    assert {"config.yaml", "plots/learning_curves.png"} <= set(paths)
    assert list((tracking_server["tmp"] / "server-artifacts").rglob("config.yaml"))  # proxied to the server's folder


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_not_printed(tracking_server):
    """``MLFLOW_TRACKING_URI=http://alice:<password>@host`` printed the password on the console: MLflow's own
    "View run ... at: http://alice:<password>@..." line when a run ended on a tracking server."""
    from mlflow import MlflowClient

    password = "uripass" + "9191"
    out = tracking_server["tmp"] / "outputs-password"
    url = tracking_server["url"].replace("http://", f"http://alice:{password}@")
    result = run_cli(["trainer.max_epochs=1", "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false",
                      "logger.mlflow.experiment_name=with-password", f"hydra.run.dir={out}"],
                     env={"MLFLOW_TRACKING_URI": url})
    assert result.returncode == 0, result.stderr[-3000:]
    assert password not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "alice:***@" in result.stdout  # where the run is, as the pipeline says it
    client = MlflowClient(tracking_server["url"])
    [run] = client.search_runs([client.get_experiment_by_name("with-password").experiment_id])
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_a_sweep_keeps_the_tracking_servers_password_out_of_its_study_and_trials_table(tracking_server):
    """Each trial recorded its tracking URI, password and all, in the Optuna database and so in trials.csv, locally
    and as the parent run's artifact. It is recorded masked, and the sweep still tags its trials' runs."""
    from mlflow import MlflowClient

    password = "sweeppass" + "7373"
    folder = tracking_server["tmp"] / "sweep-password"
    url = tracking_server["url"].replace("http://", f"http://alice:{password}@")
    result = run_cli(["hparams_search=classification_optuna", "trainer.max_epochs=2", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.pruner=none", "hydra.sweeper.study_name=masked", "hydra.sweeper.finalize_top_k=0",
                      f"hydra.sweeper.storage=sqlite:///{folder}/optuna.db", f"hydra.sweep.dir={folder / 'sweep'}",
                      "logger.mlflow.experiment_name=sweep-with-password"], multirun=True,
                     env={"MLFLOW_TRACKING_URI": url})
    assert result.returncode == 0, result.stderr[-3000:]
    leaks = [str(p) for p in folder.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert leaks == [], leaks  # the study's database, trials.csv
    assert "alice:***@" in (folder / "sweep" / "trials.csv").read_text()
    client = MlflowClient(tracking_server["url"])
    runs = client.search_runs([client.get_experiment_by_name("sweep-with-password").experiment_id])
    trials = [r for r in runs if r.data.tags.get("sweep.role") == "trial"]
    assert sorted(r.data.tags["sweep.state"] for r in trials) == ["COMPLETE", "COMPLETE"]  # tagged through the URI
    leaks = [path for path in (tracking_server["tmp"] / "server-artifacts").rglob("trials.csv")
             if password.encode() in path.read_bytes()]
    assert leaks == [], leaks


class _Relay:
    """A TCP relay to a server, to cut like a network blip or a server restart: while cut, its open connections
    are closed and new ones are closed as soon as they are accepted."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.is_cut = False
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.is_cut:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.open += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.is_cut = True
        for end in self.open:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open = []

    def restore(self) -> None:
        self.is_cut = False


@pytest.mark.slow
def test_a_server_that_stops_answering_for_a_while_loses_no_epoch_of_the_run(tracking_server):
    """A tracking server that stopped answering for seconds (restarted, a network blip) failed the run's store for
    good: no epoch after it reached the run, which ended FAILED. The epochs' metrics are held and sent when it answers
    again, and the run ends FINISHED; one that still does not answer at the run's end fails it, saying so."""
    from mlflow import MlflowClient

    from pipeline.tracking.run import TrackedRun

    client = MlflowClient(tracking_server["url"])
    for comes_back in (True, False):
        relay, notices = _Relay(int(tracking_server["url"].rsplit(":", 1)[1])), []
        run = TrackedRun(relay.url, "blip", run_name=f"back-{comes_back}", close_orphans=False,
                         on_notice=notices.append)
        run.create()
        run.log_metrics({"val/loss": 0.5}, step=0)
        run.flush()
        relay.cut()
        run.log_metrics({"val/loss": 0.4}, step=1)
        run.flush()
        assert run.failure is None and run.outage_since is not None
        assert len(notices) == 1 and f"MLflow tracking server {relay.url} does not answer" in notices[0]
        run.log_metrics({"val/loss": 0.3}, step=2)  # within the retry interval: held, not tried
        if comes_back:
            relay.restore()
        run.end("FINISHED", None)
        stored = client.get_run(run.run_id)
        steps = [m.step for m in client.get_metric_history(run.run_id, "val/loss")]
        if comes_back:
            assert stored.info.status == "FINISHED" and sorted(steps) == [0, 1, 2], (stored.info.status, steps)
            assert "answers again after" in notices[-1]
        else:
            assert run.failure is not None and "has not answered for" in run.failure
            assert steps == [0] and stored.info.status == "RUNNING"  # the server never heard the end either
        relay.listener.close()


@pytest.mark.slow
def test_a_sqlite_store_locked_for_longer_than_sqlite_waits_loses_no_epoch(tmp_path):
    """Another process holding the SQLite store locked past SQLite's 20 s wait (a backup, a long query in a notebook)
    failed the run's store for good, its message the SQL statement with the run's values: the epochs after it never
    reached the run, which ended FAILED though the store was free seconds later. Held and written once it is free, as
    for a server that does not answer; the failure text carries no SQL."""
    import sqlite3

    from mlflow import MlflowClient

    from pipeline.tracking.run import TrackedRun

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    notices = []
    run = TrackedRun(uri, "locked", run_name="locked", close_orphans=False, on_notice=notices.append)
    run.create()
    run.log_metrics({"val/loss": 0.5}, step=0)
    run.flush()
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        run.log_metrics({"val/loss": 0.4}, step=1)
        run.flush()  # waits SQLite's 20 s, then holds the epoch
        assert run.failure is None and run.outage_since is not None, run.failure
        assert len(notices) == 1 and f"MLflow store {uri} is locked by another process" in notices[0], notices
        assert "[SQL:" not in notices[0] and "parameters" not in notices[0], notices[0]
        run.set_tags({"during": "lock"})  # a write of another kind is held too, and made in order
    finally:
        holder.execute("COMMIT")
        holder.close()
    run.log_metrics({"val/loss": 0.3}, step=2)
    run.end("FINISHED", None)
    stored = MlflowClient(uri).get_run(run.run_id)
    steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(run.run_id, "val/loss"))
    assert stored.info.status == "FINISHED" and steps == [0, 1, 2], (stored.info.status, steps, run.failure)
    assert stored.data.tags["during"] == "lock" and "is free again after" in notices[-1], notices


@pytest.mark.unit
def test_a_store_error_is_told_without_sqlalchemy_s_statement_and_values():
    from pipeline.tracking.run import error_text

    error = Exception("(sqlite3.OperationalError) database is locked\n[SQL: INSERT INTO metrics (key, value, step) "
                      "VALUES (?, ?, ?)]\n[parameters: ('val/loss', 0.4, 1)]\n(Background on this error at: "
                      "https://sqlalche.me/e/20/e3q8)")
    assert error_text(error) == "(sqlite3.OperationalError) database is locked"
    assert error_text(Exception("a\n  plain   error")) == "a plain error"


@pytest.mark.slow
def test_a_training_command_keeps_its_epochs_through_a_server_outage(tracking_server, tmp_path):
    """The same through pipeline-train, whose store-writer process writes the run: the outage and the server's return
    are said on the console, the run ends FINISHED with every epoch."""
    from mlflow import MlflowClient

    relay = _Relay(int(tracking_server["url"].rsplit(":", 1)[1]))
    out = tmp_path / "outputs"
    metrics_file = out / "metrics.jsonl"

    def blip():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not metrics_file.exists():
            time.sleep(0.02)
        relay.cut()
        time.sleep(4.5)  # longer than MLflow's own retries of a request (~3 s); the run trains ~10 s more
        relay.restore()

    blipper = threading.Thread(target=blip, daemon=True)
    blipper.start()
    result = run_cli(["trainer.max_epochs=200", "data.batch_size=8", "logger.mlflow.log_model=false",
                      "logger.mlflow.experiment_name=blip-cli", f"hydra.run.dir={out}"],
                     env={"MLFLOW_TRACKING_URI": relay.url})
    blipper.join(timeout=5)
    relay.listener.close()
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert f"MLflow tracking server {relay.url} does not answer" in console
    assert "answers again after" in console and "Retrying" not in console  # urllib3's retries are not news
    client = MlflowClient(tracking_server["url"])
    [run] = client.search_runs([client.get_experiment_by_name("blip-cli").experiment_id])
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val/loss")) == list(range(200))


@pytest.mark.slow
def test_a_run_whose_server_failed_mid_run_and_answers_again_is_marked_failed_with_why(tracking_server):
    """A server that failed one request (an outage of seconds) and answers again by the run's end: the run is marked
    FAILED with what failed, not left RUNNING for the next run to call KILLED, and not FINISHED either, as it lacks
    what the failed request carried."""
    from mlflow import MlflowClient

    from pipeline.tracking.run import TrackedRun

    run = TrackedRun(tracking_server["url"], "outage-then-back", run_name="outage", close_orphans=False)
    run.create()
    run.log_metrics({"val/loss": 0.5}, step=0)
    with run.recording("logging the model"):
        raise ConnectionError("Max retries exceeded with url: /api/2.0/mlflow-artifacts/artifacts/model")
    assert not run.active  # the store is not written to again during the run
    run.log_metrics({"val/loss": 0.4}, step=1)
    run.end("FINISHED", None)
    stored = MlflowClient(tracking_server["url"]).get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags["error"].startswith("TrackingFailed: while logging the model: ConnectionError: Max retries")


@pytest.mark.slow
def test_a_store_that_stops_mid_run_loses_nothing_and_says_where_results_are(tracking_server):
    out = tracking_server["tmp"] / "outputs-stopped"
    metrics_file = out / "metrics.jsonl"

    def stop_server_after_first_epoch():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not metrics_file.exists():
            time.sleep(0.05)
        os.killpg(tracking_server["process"].pid, signal.SIGKILL)

    stopper = threading.Thread(target=stop_server_after_first_epoch, daemon=True)
    stopper.start()
    result = run_cli(["trainer.max_epochs=40", f"logger.mlflow.tracking_uri={tracking_server['url']}", f"hydra.run.dir={out}"])
    stopper.join(timeout=5)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "failed during the run" in result.stderr and str(out) in result.stderr
    lines = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert sum("train/loss" in line for line in lines) == 40  # training went on to the end
    assert any("test/acc" in line for line in lines)
    assert (out / "checkpoints" / "last.ckpt").is_file() and list((out / "checkpoints").glob("best-*.ckpt"))
    # the run's own files are written as when the store answers (plots and test predictions were left out)
    assert (out / "predictions" / "test.csv").is_file() and (out / "plots" / "learning_curves.png").is_file()
    assert (out / "model_summary.txt").is_file()


def test_a_deleted_experiment_is_not_restored_with_its_runs_by_the_next_run(tmp_path, migrated_store_db):
    """A run into an experiment a teammate had deleted restored it without a word, and with it every run of it, those
    deleted one by one before too. It is refused, naming the ways on."""
    from mlflow import MlflowClient

    from conftest import new_store, run_cli_in_process

    store = new_store(tmp_path, migrated_store_db)
    client = MlflowClient(store["uri"])
    experiment = client.create_experiment("scratch")
    bad = client.create_run(experiment).info.run_id
    client.delete_run(bad)
    client.delete_experiment(experiment)
    result = run_cli_in_process(["trainer.max_epochs=1", "logger.mlflow.experiment_name=scratch"], store)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"the MLflow experiment 'scratch' is deleted (in the trash of {store['uri']}, id {experiment})" in result.stderr
    assert client.get_experiment(experiment).lifecycle_stage == "deleted"
    assert client.get_run(bad).info.lifecycle_stage == "deleted"


def test_other_loggers_sit_beside_mlflow(store):
    """logger=[mlflow,csv,tensorboard]: one YAML each; MLflow still gets the run, the others their files."""
    result = run_cli(["trainer.max_epochs=2", "logger=[mlflow,csv,tensorboard]", "logger.mlflow.log_model=false",
                      "logger.mlflow.log_plots=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and "val/loss" in run.data.metrics
    import csv

    with (store["outputs"] / "csv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"val/loss", "train/loss", "epoch"} <= set(rows[0]) and {row["epoch"] for row in rows} >= {"0", "1"}
    assert list((store["outputs"] / "tensorboard").glob("events.out.tfevents.*"))


def test_register_as_refuses_a_name_whose_versions_are_of_another_task(tmp_path, migrated_store_db):
    """A regression run registered under a name holding a classifier's versions was taken without a word:
    models:/<name>/latest then served the regression model, and pipeline-predict mixed tasks. Refused before the run
    is created (exit 2, one line naming the registered model, both tasks and another name); the registry unchanged."""
    store = new_store(tmp_path, migrated_store_db)
    first = run_cli(["trainer.max_epochs=1", "logger.mlflow.register_as=tumours"], store)
    assert first.returncode == 0, first.stderr[-3000:]
    refused = run_cli_in_process(["task=regression", "trainer.max_epochs=1", "logger.mlflow.register_as=tumours"], store)
    assert refused.returncode == 2, refused.stderr[-3000:]
    line = error_line(refused.stderr)
    assert ("logger.mlflow.register_as=tumours: the registered model 'tumours' in " f"{store['uri']} holds versions of "
            "task=classification (version 1), and this run is task=regression") in line, line
    assert "logger.mlflow.register_as=tumours-regression" in line and "Test metrics" not in refused.stdout
    assert [int(v.version) for v in client_of(store).search_model_versions("name='tumours'")] == [1]
    assert len(runs_in(store)) == 1, line  # no run created for the refused one
    # a sweep, whose best runs register at its end: refused before its first trial (it failed after all of them)
    swept = run_cli_in_process(["-m", "hparams_search=regression_optuna", "trainer.max_epochs=1", "data.limit_rows=100",
                                "hydra.sweeper.n_trials=1", "logger.mlflow.register_as=tumours",
                                f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"], store)
    assert swept.returncode == 2, swept.stderr[-3000:]
    line = error_line(swept.stderr)
    assert "the registered model 'tumours'" in line and "task=classification (version 1), and this run is " \
        "task=regression" in line and "(the sweep's best runs register their models)" in line, line
    assert len(runs_in(store)) == 1 and "trial 0" not in swept.stdout + swept.stderr


def test_register_as_makes_each_run_the_next_version_of_a_registered_model(tmp_path, migrated_store_db, monkeypatch):
    """logger.mlflow.register_as: the run's logged model is the registered model's next version (through the CLI,
    where the store-writer process records the run, and through train() in this process); pipeline-predict and
    mlflow.pyfunc load models:/<name>/<version> and answer as the run's own model; a config that logs no model is
    refused before any run."""
    from pipeline.train import train

    store = new_store(tmp_path, migrated_store_db)
    result = run_cli(["trainer.max_epochs=2", "logger.mlflow.register_as=tumours"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Registered model: models:/tumours/1 (pipeline-predict models:/tumours/1" in result.stdout
    train(compose_for_train(store, ["trainer.max_epochs=3", "logger.mlflow.register_as=tumours"]))
    first, second = sorted(runs_in(store), key=lambda r: r.info.start_time)
    versions = {int(v.version): v for v in client_of(store).search_model_versions("name='tumours'")}
    assert sorted(versions) == [1, 2]
    assert (versions[1].run_id, versions[2].run_id) == (first.info.run_id, second.info.run_id)
    from sklearn.datasets import load_breast_cancer

    load_breast_cancer(as_frame=True).frame.head(40).to_csv(tmp_path / "rows.csv", index=False)
    answers = {}
    for model in ("models:/tumours/2", second.info.run_id):
        output = tmp_path / f"{len(answers)}.csv"
        code, _, stderr = predict_cli([model, "--input", str(tmp_path / "rows.csv"), "--output", str(output),
                                       "--tracking-uri", store["uri"]])
        assert code == 0, stderr[-2000:]
        answers[model] = pd.read_csv(output)
    pd.testing.assert_frame_equal(answers["models:/tumours/2"], answers[second.info.run_id])
    # a rerun checks a result: it made version 3 of the registered model unasked; now it says it registers none
    from conftest import rerun_cli

    code, out, err = rerun_cli(["models:/tumours/2", "--tracking-uri", store["uri"], "--output-dir",
                                str(tmp_path / "rerun")])
    assert code == 0, err[-2000:]
    assert "registered its model as 'tumours'; this rerun registers none (add logger.mlflow.register_as=tumours " \
        "for a new version)" in out, out[-2000:]
    assert sorted(int(v.version) for v in client_of(store).search_model_versions("name='tumours'")) == [1, 2]
    first, second = sorted([r for r in runs_in(store) if "rerun_of" not in r.data.tags], key=lambda r: r.info.start_time)
    for extra, fragment in (("test=false", "a run with test=false logs none"),
                            ("logger.mlflow.log_model=false", "logger.mlflow.log_model=false logs none"),
                            ("", "logger.mlflow.register_as='a/b': a registered model's name")):
        overrides = ["logger.mlflow.register_as=a/b"] if not extra else ["logger.mlflow.register_as=tumours", extra]
        refused = run_cli_in_process(overrides, store)
        assert refused.returncode == 2 and fragment in error_line(refused.stderr), refused.stderr[-2000:]
    # '@': the printed models:/a@b/1 read as the alias b of a model named a, and pipeline-predict failed on it
    refused = run_cli_in_process(["logger.mlflow.register_as=a@b"], store)
    assert refused.returncode == 2 and "register_as='a@b': a registered model's name" in error_line(refused.stderr)
    assert "no '/', ':' or '@'" in error_line(refused.stderr)
    assert len(runs_in(store)) == 3  # the two runs and the rerun
    # a registry that fails: the run did not do all it was asked, so it ends FAILED with the reason (its model
    # logged all the same), and the command with that one line
    import pipeline.tracking.artifacts as artifacts
    from pipeline.errors import RegistrationFailed

    def unavailable(*args, **kwargs):
        raise RuntimeError("registry unavailable")

    monkeypatch.setattr(artifacts, "register_model", unavailable)
    monkeypatch.setenv("PIPELINE_STORE_WRITER", "0")  # registered from this process, where the fault is
    with pytest.raises(RegistrationFailed, match="registering it as 'tumours' failed: RuntimeError: registry "
                                                  "unavailable; register it in the UI or with mlflow.register_model"):
        train(compose_for_train(store, ["trainer.max_epochs=2", "logger.mlflow.register_as=tumours"]))
    failed = max(runs_in(store), key=lambda r: r.info.start_time)
    assert failed.info.status == "FAILED" and failed.data.tags["error"].startswith("RegistrationFailed: the run's model")
    assert load_pyfunc(store, failed.info.run_id) is not None
    assert len(client_of(store).search_model_versions("name='tumours'")) == 2
    # pipeline-eval (and pipeline-rerun) take a registered version for the run that logged it
    from conftest import eval_cli

    code, stdout, stderr = eval_cli(["models:/tumours/1", "--tracking-uri", store["uri"],
                                     "--output-dir", str(tmp_path / "evaluation")])
    assert code == 0, stderr[-2000:]
    assert f"({first.info.run_id}, checkpoints/" in stdout
    evaluation = max(runs_in(store), key=lambda r: r.info.start_time)
    assert evaluation.data.tags["evaluation_of"] == first.info.run_id
    code, _, stderr = eval_cli(["models:/tumours/7", "--tracking-uri", store["uri"]])
    assert code == 2 and (f"the registered model 'tumours' in {store['uri']} has no version 7 (models:/tumours/7); "
                          "its versions: 1, 2") in error_line(stderr)


def test_eval_rerun_and_predict_take_the_same_model_references(tmp_path, migrated_store_db):
    """models:/<name>/latest and models:/<name>@<alias> name the run that logged the version for pipeline-eval and
    pipeline-rerun as they do for pipeline-predict (they said "is not a registered model's version")."""
    from conftest import eval_cli, rerun_cli
    from pipeline.train import train

    store = new_store(tmp_path, migrated_store_db)
    train(compose_for_train(store, ["trainer.max_epochs=1", "logger.mlflow.register_as=refs",
                                    "logger.mlflow.log_plots=false"]))
    [run] = runs_in(store)
    client_of(store).set_registered_model_alias("refs", "champion", "1")
    from sklearn.datasets import load_breast_cancer

    load_breast_cancer(as_frame=True).frame.head(20).to_csv(tmp_path / "rows.csv", index=False)
    for number, reference in enumerate(("models:/refs/latest", "models:/refs@champion")):
        code, stdout, stderr = eval_cli([reference, "--tracking-uri", store["uri"],
                                         "--output-dir", str(tmp_path / f"evaluation{number}")])
        assert code == 0, (reference, stderr[-2000:])
        assert f"({run.info.run_id}, checkpoints/" in stdout
        code, _, stderr = predict_cli([reference, "--input", str(tmp_path / "rows.csv"), "--output",
                                       str(tmp_path / f"p{number}.csv"), "--tracking-uri", store["uri"]])
        assert code == 0, (reference, stderr[-2000:])
    code, _, stderr = rerun_cli(["models:/refs/latest", "trainer.max_epochs=1", "--tracking-uri", store["uri"],
                                 "--output-dir", str(tmp_path / "rerun")])
    assert code == 0, stderr[-2000:]
    evaluations = [r for r in runs_in(store) if r.data.tags.get("evaluation_of") == run.info.run_id]
    reruns = [r for r in runs_in(store) if r.data.tags.get("rerun_of") == run.info.run_id]
    assert len(evaluations) == 2 and len(reruns) == 1


def test_what_the_store_lacks_is_said_not_a_log_model_hint(tmp_path, migrated_store_db):
    """A run id of another store, a version or a registered model the store lacks: each is said (with the store,
    and what it has), not "was the run logged with logger.mlflow.log_model=false?"; a run that logged no checkpoint
    (killed before its end) but left one in its output folder: pipeline-eval names that file, which it evaluates."""
    import shutil
    import urllib.parse

    from conftest import eval_cli, rerun_cli
    from pipeline.train import train

    store, other = new_store(tmp_path / "a", migrated_store_db), new_store(tmp_path / "b", migrated_store_db)
    train(compose_for_train(store, ["trainer.max_epochs=1", "logger.mlflow.register_as=lacks",
                                    "logger.mlflow.log_plots=false"]))
    [run] = runs_in(store)
    from sklearn.datasets import load_breast_cancer

    rows = tmp_path / "rows.csv"
    load_breast_cancer(as_frame=True).frame.head(20).to_csv(rows, index=False)
    predict = ["--input", str(rows), "--output", str(tmp_path / "p.csv")]
    code, _, stderr = predict_cli([run.info.run_id, *predict, "--tracking-uri", other["uri"]])
    line = error_line(stderr)
    assert code == 2 and f"the store {other['uri']} has no run {run.info.run_id}; " in line and \
        "--tracking-uri or MLFLOW_TRACKING_URI" in line and "log_model" not in line, line
    for reference, said in (("models:/lacks/9", f"the registered model 'lacks' in {store['uri']} has no version 9 "
                                                "(models:/lacks/9); its versions: 1"),
                            ("models:/nope/1", f"the store {store['uri']} has no registered model 'nope' "
                                               "(models:/nope/1); its registered models: lacks"),
                            ("models:/lacks@gold", "the registered model 'lacks' in")):
        for cli, args in ((predict_cli, [reference, *predict]), (eval_cli, [reference]), (rerun_cli, [reference])):
            code, _, stderr = cli([*args, "--tracking-uri", store["uri"]])
            line = error_line(stderr)
            assert code == 2 and said in line and "log_model" not in line, (cli.__name__, line)
    # a run killed before it logged its checkpoint: the store has none, its output folder has one
    shutil.rmtree(Path(urllib.parse.urlparse(run.info.artifact_uri).path) / "checkpoints")
    code, _, stderr = eval_cli([run.info.run_id, "--tracking-uri", store["uri"]])
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    assert code == 2 and (f"logged no checkpoint (checkpoints/*.ckpt); it cannot be evaluated from the store; its "
                          f"output folder has {checkpoint}: evaluate that file (pipeline-eval {checkpoint})"
                          ) in error_line(stderr), stderr[-2000:]
    code, _, stderr = eval_cli([str(checkpoint), "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "e")])
    assert code == 0, stderr[-2000:]
    # linked to the run that wrote the checkpoint, as an evaluation by run id is (it was not linked to any)
    evaluation = max(runs_in(store), key=lambda r: r.info.start_time)
    assert evaluation.data.tags["run_kind"] == "evaluation"
    assert evaluation.data.tags["evaluation_of"] == run.info.run_id


def test_a_closed_stdout_leaves_the_run_finished_and_prints_no_traceback(tmp_path, migrated_store_db):
    """pipeline-eval ... | head -1 (and pipeline-train): the reader goes away after a line; the command's work is
    done and recorded all the same, so its run stays FINISHED (a BrokenPipeError made it FAILED) and stderr holds
    no traceback; the exit code is the command's own."""
    from pipeline.train import train

    store = new_store(tmp_path, migrated_store_db)
    train(compose_for_train(store, ["trainer.max_epochs=1", "logger.mlflow.log_model=false",
                                    "logger.mlflow.log_plots=false"]))
    [trained] = runs_in(store)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    commands = ([sys.executable, "-m", "pipeline.cli.eval", trained.info.run_id, "--tracking-uri", store["uri"],
                 "--output-dir", str(tmp_path / "evaluation")],
                [sys.executable, "-m", "pipeline.cli.train", "trainer.max_epochs=1", "logger.mlflow.log_model=false",
                 f"paths.mlruns_dir={tmp_path / 'mlruns'}", f"hydra.run.dir={tmp_path / 'again'}"])
    for command in commands:
        before = {r.info.run_id for r in runs_in(store)}
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
        process.stdout.readline()
        process.stdout.close()  # as head -1 does
        stderr = process.stderr.read()
        assert process.wait(timeout=600) == 0, stderr[-3000:]
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr[-3000:]
        [new] = [r for r in runs_in(store) if r.info.run_id not in before]
        assert new.info.status == "FINISHED", (command[2], new.data.tags.get("error"))


def test_a_store_folder_with_url_characters_is_used_as_written(tmp_path):
    """paths.mlruns_dir with '?', '%' or '#': the database is <dir>/mlflow.db and the artifacts <dir>/artifacts (a
    '?' made the database the file before it, a '%20' a folder 'pc t' that sqlite could not open, retried nine
    times with SQLAlchemy's messages), and the store the run prints is the one pipeline-eval reads."""
    from mlflow import MlflowClient

    from conftest import eval_cli

    folder = tmp_path / "odd" / "q?x pc%20t#h"
    result = run_cli_in_process(["trainer.max_epochs=1", "logger.mlflow.log_model=false",
                                 f"paths.mlruns_dir='{folder}'", f"hydra.run.dir={tmp_path / 'outputs'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "OperationalError" not in output and "sqlalche.me" not in output, output[-3000:]
    assert (folder / "mlflow.db").is_file() and not (tmp_path / "odd" / "q").exists()
    assert sorted(p.name for p in (tmp_path / "odd").iterdir()) == [folder.name]  # no escaped twin (MLflow made one)
    uri = re.search(r"in experiment 'classification' at (sqlite:///.*)$", output, re.M).group(1)
    [run] = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("classification").experiment_id])
    assert run.info.status == "FINISHED" and (folder / "artifacts" / run.info.run_id).is_dir()
    code, _, stderr = eval_cli([run.info.run_id, "--tracking-uri", uri, "--output-dir", str(tmp_path / "evaluation")])
    assert code == 0, stderr[-2000:]
    assert len(MlflowClient(uri).search_runs([run.info.experiment_id])) == 2


def test_hydra_job_chdir_keeps_the_store_where_the_command_was_started(tmp_path):
    """hydra.job.chdir=true moves the process into the run's folder: each run got an MLflow store of its own
    there, which pipeline-ui and pipeline-compare started where the command was never saw."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli.train", "trainer.max_epochs=1", "hydra.job.chdir=true",
                             "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"at sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" in result.stdout + result.stderr
    assert (tmp_path / "mlruns" / "mlflow.db").is_file() and not list((tmp_path / "outputs").rglob("mlruns"))


def test_a_relative_data_path_is_logged_absolute_and_reruns_from_another_folder(tmp_path):
    """data.path=tables/x.csv was logged as written: pipeline-rerun started in any other folder stopped with
    "file not found", and with hydra.job.chdir=true (the process moved into the run's folder) the file was not
    found at all."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "tables").mkdir(parents=True)
    elsewhere.mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=120)
    pd.DataFrame({"x": x, "y": np.where(x > 0, "yes", "no")}).to_csv(project / "tables" / "x.csv", index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli.train", "data=csv", "data.path=tables/x.csv",
                             "data.target=y", "trainer.max_epochs=1", "hydra.job.chdir=true",
                             "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"],
                            cwd=project, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    store = {"uri": f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"}
    [run] = runs_in(store)
    assert run.data.params["data.path"] == str(project / "tables" / "x.csv")
    rerun = subprocess.run([sys.executable, "-m", "pipeline.cli.rerun", run.info.run_id, "--tracking-uri", store["uri"],
                            "--output-dir", str(elsewhere / "rerun")],
                           cwd=elsewhere, capture_output=True, text=True, timeout=600, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    [again] = [r for r in runs_in(store) if r.data.tags.get("rerun_of") == run.info.run_id]
    assert again.data.metrics["test/acc"] == run.data.metrics["test/acc"]
    assert "rows differ" not in rerun.stderr

    # the file changed since: the rerun says its metrics are not the run's to repeat
    table = pd.read_csv(project / "tables" / "x.csv")
    table.loc[::7, "x"] *= -1
    table.to_csv(project / "tables" / "x.csv", index=False)
    rerun = subprocess.run([sys.executable, "-m", "pipeline.cli.rerun", run.info.run_id, "--tracking-uri", store["uri"],
                            "--output-dir", str(elsewhere / "rerun-2")],
                           cwd=elsewhere, capture_output=True, text=True, timeout=600, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # the splits holding a changed row (the rows' digests: not every split's, as when standardisation spread a change)
    assert re.search(r"Note: the training(, validation)?, testing rows differ from \S+'s \(split digests \w+ -> \w+, "
                     r".*\): the files it read have changed since", rerun.stderr), rerun.stderr[-3000:]
    # and the store says so with the rerun (the note was printed only: the rerun looked like a failed repeat)
    changed = [r for r in runs_in(store) if r.data.tags.get("rerun_of") == run.info.run_id and r.info.run_id != again.info.run_id]
    assert [r.data.tags.get("data_differs_from_source", "")[:9] for r in changed] == ["training,"]
    assert "data_differs_from_source" not in again.data.tags


def test_split_digests_name_the_rows_drawn_not_how_they_were_preprocessed(tmp_path):
    """The digests hashed the inputs after preprocessing fitted on the training rows: two runs on the same rows,
    one with data.numeric_transform=quantile, were refused by pipeline-compare --paired as "tested on different
    rows", and a rerun with data.val_fraction=0 (other training rows, so another standardisation) said its testing
    rows differed from the run's, though the same rows were tested."""
    from pipeline.cli.compare import main as compare_main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    pd.DataFrame({"a": x[:, 0], "b": np.exp(x[:, 1]), "c": x[:, 2],
                  "label": np.where(x[:, 0] + x[:, 2] > 0, "yes", "no")}).to_csv(tmp_path / "t.csv", index=False)
    store = {"uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    for name, extra in (("standard", []), ("quantile", ["data.numeric_transform=quantile"])):
        result = run_cli_in_process(["data=csv", f"data.path={tmp_path / 't.csv'}", "data.target=label",
                                     "trainer.max_epochs=1", "logger.mlflow.log_model=false",
                                     "logger.mlflow.log_plots=false", *extra, f"hydra.run.dir={tmp_path / name}",
                                     f"paths.mlruns_dir={tmp_path / 'mlruns'}"])
        assert result.returncode == 0, result.stderr[-3000:]
    quantile, standard = runs_in(store)
    code, out, err = _main_in_process(compare_main, ["--tracking-uri", store["uri"], "--paired",
                                                     standard.info.run_id, quantile.info.run_id])
    assert code == 0 and "40 test rows" in out, err
    code, _, err = rerun_cli([standard.info.run_id, "data.val_fraction=0", "--tracking-uri", store["uri"],
                              "--output-dir", str(tmp_path / "rerun")])
    assert code == 0, err[-3000:]
    note = next(line for line in err.splitlines() if line.startswith("Note: the "))
    assert note.startswith("Note: the training rows differ from ") and "testing" not in note, note


def test_opening_a_store_does_not_lower_the_level_the_store_writer_set_for_mlflow(tmp_path):
    """The store-writer silences MLflow's loggers (the training process reports a store failure once, in one line);
    opening a store set mlflow.store.db.utils back to WARNING, and a store on a full disk printed ~250 lines of
    "ERROR mlflow.store.db.utils: SQLAlchemy database error" tracebacks before that line."""
    import logging

    import mlflow  # noqa: F401  (configures its loggers when first imported)

    from pipeline.tracking.run import open_client

    mlflow_logger, store_logger = logging.getLogger("mlflow"), logging.getLogger("mlflow.store.db.utils")
    previous = mlflow_logger.level, store_logger.level
    try:
        mlflow_logger.setLevel(logging.CRITICAL)
        store_logger.setLevel(logging.NOTSET)
        open_client(f"sqlite:///{tmp_path}/mlflow.db")
        assert store_logger.getEffectiveLevel() == logging.CRITICAL
        mlflow_logger.setLevel(logging.INFO)  # elsewhere (pipeline-compare): "Creating initial tables..." stays quiet
        open_client(f"sqlite:///{tmp_path}/other.db")
        assert store_logger.getEffectiveLevel() == logging.CRITICAL  # already set: not lowered
        store_logger.setLevel(logging.NOTSET)
        open_client(f"sqlite:///{tmp_path}/third.db")
        assert store_logger.getEffectiveLevel() == logging.WARNING
    finally:
        mlflow_logger.setLevel(previous[0])
        store_logger.setLevel(previous[1])
