"""pipeline-compare and pipeline-rerun on the runs of a real multirun (two seeds)."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import another_thread_count, error_line, new_store, run_cli, runs_in

EXPERIMENT = "classification"


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, migrated_store_db):
    """``pipeline-train -m seed=1,2``: one MLflow run per job."""
    folder = tmp_path_factory.mktemp("two_seeds")
    store = dict(new_store(folder, migrated_store_db), outputs=folder / "multirun")
    result = run_cli(["seed=1,2", "trainer.max_epochs=2", "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"],
                     store, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return store


def cli(main, argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_multirun_of_two_seeds_gives_two_runs(two_seeds):
    runs = runs_in(two_seeds, EXPERIMENT)
    assert sorted(r.data.params["seed"] for r in runs) == ["1", "2"]
    assert all(r.info.status == "FINISHED" and "test/loss" in r.data.metrics for r in runs)
    assert len({r.info.run_name for r in runs}) == 2
    # other seeds split the data otherwise: the digests of the training data differ
    assert len({r.data.tags["data_digest"] for r in runs}) == 2
    assert all(r.inputs.dataset_inputs[0].dataset.name == "breast_cancer" for r in runs)


def test_compare_ranks_runs_by_the_task_metric_and_writes_markdown_csv_and_a_plot(two_seeds, capsys, tmp_path):
    from pipeline.cli.compare import main

    code, out, err = cli(main, ["--tracking-uri", two_seeds["uri"], "--plot", "--output", str(tmp_path)], capsys)
    assert code == 0, err
    # ranked by the best validation loss (the task's monitor, lower is better), not by a test metric
    runs = sorted(runs_in(two_seeds, EXPERIMENT), key=lambda r: r.data.metrics["val/loss_best"])
    assert "by val/loss_best (lower is better; test metrics are shown, not ranked on)" in out
    assert out.index(runs[0].info.run_name) < out.index(runs[1].info.run_name)
    with (tmp_path / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run_id"] for row in rows] == [r.info.run_id for r in runs]
    assert {"task", "data", "model", "optimizer", "lr", "weight_decay", "dropout", "epochs", "seed", "test/acc"} <= set(rows[0])
    assert rows[0]["lr"] == "0.001" and rows[0]["epochs"] == "2" and rows[0]["data"] == "breast_cancer"
    markdown = (tmp_path / "compare.md").read_text()
    assert markdown.count(f"| {runs[0].info.run_name} |") == 1 and "|---|" in markdown
    assert (tmp_path / "val_curves.png").read_bytes()[:4] == b"\x89PNG"

    code, out, _ = cli(main, ["--tracking-uri", two_seeds["uri"], "--metric", "test/acc", "--top", "1",
                              "--output", str(tmp_path / "acc")], capsys)
    best_acc = max(runs, key=lambda r: r.data.metrics["test/acc"])
    assert code == 0 and "higher is better" in out and best_acc.info.run_id in out
    assert f"Experiment '{EXPERIMENT}': the best 1 of 2 finished runs on breast_cancer by test/acc" in out, out  # was "1 finished run"
    assert len(list(csv.DictReader((tmp_path / "acc" / "compare.csv").open()))) == 1


@pytest.mark.parametrize("module,required", [("rerun", "run_id"), ("eval", "source")])
def test_rerun_and_eval_without_arguments_name_only_what_is_required(module, required, capsys):
    """pipeline-rerun with no arguments said "the following arguments are required: run_id, overrides", though
    the overrides are optional."""
    import importlib

    main = importlib.import_module(f"pipeline.cli.{module}").main
    code, _, err = cli(main, [], capsys)
    assert code == 2 and err.strip().splitlines()[-1].endswith(f"the following arguments are required: {required}"), err


def test_compare_names_what_is_missing(two_seeds, capsys, tmp_path):
    from pipeline.cli.compare import main

    code, _, err = cli(main, ["--tracking-uri", two_seeds["uri"], "--experiment", "nope", "--output", str(tmp_path)], capsys)
    assert code == 2 and "no experiment 'nope'" in err and EXPERIMENT in err
    code, _, err = cli(main, ["--tracking-uri", two_seeds["uri"], "--metric", "test/nope", "--output", str(tmp_path)], capsys)
    assert code == 2 and "test/nope" in err and "test/acc" in err


@pytest.mark.slow
def test_rerun_reproduces_the_test_metrics_and_names_its_source(two_seeds, tmp_path):
    source = next(r for r in runs_in(two_seeds, EXPERIMENT) if r.data.params["seed"] == "1")
    result = run_cli([source.info.run_id, "--tracking-uri", two_seeds["uri"], "--output-dir", str(tmp_path / "rerun")],
                     module="pipeline.cli.rerun")
    assert result.returncode == 0, result.stderr[-3000:]
    [rerun] = [r for r in runs_in(two_seeds, EXPERIMENT) if r.data.tags.get("rerun_of") == source.info.run_id]
    assert rerun.info.status == "FINISHED"
    test_metrics = {k: v for k, v in source.data.metrics.items() if k.startswith("test/")}
    assert {k: rerun.data.metrics[k] for k in test_metrics} == test_metrics  # exactly, not approximately
    assert rerun.data.params["seed"] == "1" and rerun.data.params["model"] == "mlp"
    assert rerun.data.params["data"] == "breast_cancer"  # the option names, not class names
    assert (tmp_path / "rerun" / "checkpoints" / "last.ckpt").is_file()
    assert "torch threads" not in result.stderr  # the same environment, the same count: nothing to note
    log = (tmp_path / "rerun" / "train.log").read_text()  # what it printed, as a pipeline-train run folder keeps it
    assert log.startswith(f"Rerunning {source.info.run_name} ({source.info.run_id})") and "Test metrics:" in log


def test_rerun_overrides_carry_linked_keys(two_seeds, capsys, tmp_path, monkeypatch):
    """``seed=7`` changes data.seed too, as on pipeline-train's command line (data.seed: ${seed})."""
    from pipeline.cli.rerun import main

    source = runs_in(two_seeds, EXPERIMENT)[0]
    with another_thread_count() as threads:  # another count than the source run's: the rerun says so
        code, _, err = cli(main, [source.info.run_id, "seed=7", "trainer.max_epochs=1", "--tracking-uri",
                                  two_seeds["uri"], "--output-dir", str(tmp_path / "seven")], capsys)
    assert code == 0, err
    assert (f"Note: the run trained with {source.data.params['torch_threads']} torch threads and this process has "
            f"{threads}") in err and f"OMP_NUM_THREADS={source.data.params['torch_threads']}" in err
    [rerun] = [r for r in runs_in(two_seeds, EXPERIMENT) if r.data.params["seed"] == "7"]
    assert rerun.data.params["data.seed"] == "7" and rerun.data.params["trainer.max_epochs"] == "1"
    assert rerun.data.tags["rerun_of"] == source.info.run_id and "seed=7" in rerun.data.params["overrides"]
    code, _, err = cli(main, [source.info.run_id, "optimizer=sgd", "--tracking-uri", two_seeds["uri"]], capsys)
    assert code == 2 and "optimizer.<key>" in err
    # the store is --tracking-uri's: paths.mlruns_dir was logged as the rerun's while the run went to the old store
    code, _, err = cli(main, [source.info.run_id, f"paths.mlruns_dir={tmp_path / 'other'}", "--tracking-uri",
                              two_seeds["uri"]], capsys)
    assert code == 2 and "a rerun writes to the store --tracking-uri names" in err, err
    assert not (tmp_path / "other").exists()
    # MLFLOW_EXPERIMENT_NAME names the experiment, as for pipeline-train (the rerun went to the run's own)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "reruns")
    code, _, err = cli(main, [source.info.run_id, "trainer.max_epochs=1", "--tracking-uri", two_seeds["uri"],
                              "--output-dir", str(tmp_path / "named")], capsys)
    assert code == 0, err
    [named] = runs_in(two_seeds, "reruns")
    assert named.data.tags["rerun_of"] == source.info.run_id


def test_a_rerun_override_carries_the_keys_made_of_it(tmp_path):
    """``pipeline-rerun <id> paths.data_dir=<new folder>`` logged the new folder but read the old one: the logged
    data.path (${.data_dir}/adult/adult.data, with data.data_dir: ${paths.data_dir}) was not made again."""
    from omegaconf import OmegaConf

    from conftest import compose
    from pipeline.cli.rerun import apply_overrides, linked_keys

    composed = compose(["data=adult", f"paths.data_dir={tmp_path / 'old'}", f"paths.output_dir={tmp_path}"])
    logged = OmegaConf.create(OmegaConf.to_container(composed, resolve=True))  # a logged config: values only
    links = linked_keys({"data": "adult"})
    moved = apply_overrides(logged, [f"paths.data_dir={tmp_path / 'new'}"], links)
    assert moved.data.data_dir == str(tmp_path / "new")
    assert (moved.data.path, moved.data.test_path) == (f"{tmp_path}/new/adult/adult.data", f"{tmp_path}/new/adult/adult.test")
    # a key the run set itself (not what its template makes) stays as it was, and one given too wins
    logged.data.test_path = "/elsewhere/test.csv"
    moved = apply_overrides(logged, [f"paths.data_dir={tmp_path / 'new'}", "data.path=/mine.csv"], links)
    assert (moved.data.path, moved.data.test_path) == ("/mine.csv", "/elsewhere/test.csv")
    assert apply_overrides(logged, ["seed=7"], links).data.seed == 7  # data.seed: ${seed}, a number still
    # a run started with a relative PIPELINE_DATA_DIR (the README's ../shared/data): logged as data.data_dir is, so
    # the override moves the data keys (data.data_dir, made absolute, was taken for a value the run set itself)
    import os

    from pipeline.config import absolute_data_paths

    composed = compose(["data=adult", "paths.data_dir=../shared-data", f"paths.output_dir={tmp_path}"])
    absolute_data_paths(composed)  # as train() does before the run is logged
    logged = OmegaConf.create(OmegaConf.to_container(composed, resolve=True))
    assert logged.paths.data_dir == os.path.normpath(os.path.join(os.getcwd(), "../shared-data"))
    moved = apply_overrides(logged, [f"paths.data_dir={tmp_path / 'new'}"], links)
    assert moved.data.path == f"{tmp_path}/new/adult/adult.data"


def test_a_run_of_a_config_dir_logs_its_files_and_reruns_from_the_store(tmp_path, migrated_store_db):
    """pipeline-train --config-dir DIR experiment=mine: the store held the resolved config.yaml, but none of DIR's files
    the run was composed from, and `pipeline-rerun <id> seed=3` (DIR gone) kept data.seed at the run's seed: its
    option of one's own (model=tiny_mlp) could not be composed, so no linked key followed. The files are logged under
    user_config/ (secrets masked; not the project's own), the rerun composes with them and logs them again."""
    from mlflow import MlflowClient

    from conftest import rerun_cli

    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "model").mkdir()
    (conf / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: tiny_mlp\ntrainer:\n  max_epochs: 1\nseed: 7\n"
        "tags:\n  api_token: s3cr3t-value\n")
    (conf / "model" / "tiny_mlp.yaml").write_text((Path(__file__).parents[1] / "src/pipeline/conf/model/mlp.yaml")
                                                  .read_text().replace("[64, 64]", "[8]"))
    store = new_store(tmp_path, migrated_store_db)
    result = run_cli(["--config-dir", str(conf), "experiment=mine"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    client = MlflowClient(store["uri"])
    logged = client.download_artifacts(run.info.run_id, "user_config", str(tmp_path / "got"))
    assert sorted(p.relative_to(logged).as_posix() for p in Path(logged).rglob("*.yaml")) == [
        "experiment/mine.yaml", "model/tiny_mlp.yaml"]
    mine = (Path(logged) / "experiment" / "mine.yaml").read_text()
    assert "override /model: tiny_mlp" in mine and "s3cr3t-value" not in mine, mine
    import shutil

    shutil.rmtree(conf)  # the store alone reproduces the run
    code, out, err = rerun_cli([run.info.run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "r"),
                                "seed=3"])
    assert code == 0, err[-3000:]
    [rerun] = [r for r in runs_in(store) if r.data.tags.get("rerun_of") == run.info.run_id]
    assert (rerun.data.params["seed"], rerun.data.params["data.seed"]) == ("3", "3"), rerun.data.params
    assert rerun.data.params["model.hidden_dims"] == run.data.params["model.hidden_dims"]
    assert [a.path for a in client.list_artifacts(rerun.info.run_id, "user_config/model")] == \
        ["user_config/model/tiny_mlp.yaml"]


def test_a_rerun_whose_overrides_are_refused_names_no_folder(two_seeds, capsys, tmp_path, monkeypatch):
    """``pipeline-rerun <id> optimizer.lrr=1`` printed "Rerunning ... into outputs/<date>/<time>" before the refusal,
    naming a folder that was never kept."""
    from pipeline.cli.rerun import main

    monkeypatch.chdir(tmp_path)  # the default output folder: ./outputs/<date>/<time>
    source = runs_in(two_seeds, EXPERIMENT)[0]
    code, out, err = cli(main, [source.info.run_id, "optimizer.lrr=1", "--tracking-uri", two_seeds["uri"]], capsys)
    assert code == 2, err
    assert "optimizer.lrr" in error_line(err)
    assert "Rerunning" not in out + err and "outputs" not in out, out
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.yaml"))


@pytest.mark.parametrize("key,value,named", [
    ("model._target_", "os.system", "'os.system'"),
    ("optimizer._target_", "torch.hub.load", "'torch.hub.load'"),
    ("logger.mlflow.experiment_name", "${oc.env:HOME}", "interpolation"),
])
def test_rerun_refuses_a_tampered_config(two_seeds, capsys, tmp_path, key, value, named):
    from omegaconf import OmegaConf

    from pipeline.cli.rerun import main
    from pipeline.tracking import TrackedRun

    source = runs_in(two_seeds, EXPERIMENT)[0]
    logged = Path(source.info.artifact_uri.removeprefix("file://")) / "config.yaml"
    cfg = OmegaConf.load(logged)
    OmegaConf.update(cfg, key, value)
    with TrackedRun(two_seeds["uri"], "tampered", run_name="tampered", artifact_location=two_seeds["artifacts"]) as run:
        run.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
    code, _, err = cli(main, [run.run_id, "--tracking-uri", two_seeds["uri"], "--output-dir", str(tmp_path / "x")], capsys)
    assert code == 2
    assert named in err and re.search(r"Refusing to run it", err) and "Traceback" not in err
    if "_target_" in key:
        assert key in err and "pipeline.models.*" in err and "torch.optim.*" in err
    assert not (tmp_path / "x").exists()
    assert [r.info.run_name for r in runs_in(two_seeds, EXPERIMENT) if r.data.tags.get("rerun_of") == run.run_id] == []


@pytest.mark.unit
def test_compare_tells_apart_two_folders_of_one_name():
    """Two image folders named simple/ in different places (4 classes and 2) were ranked as one data set,
    image_folder:simple; a run with a test folder of its own is on other data too."""
    from types import SimpleNamespace

    from pipeline.cli.compare import data_identity, differing_keys, same_data

    def run(path: str, test_path: str = "") -> SimpleNamespace:
        params = {"data": "image_folder", "data.path": path, **({"data.test_path": test_path} if test_path else {})}
        return SimpleNamespace(data=SimpleNamespace(params=params, tags={}))

    newest, elsewhere, same, tested = run("/d/simple"), run("/other/simple"), run("/d/simple"), run("/d/simple", "/t")
    assert data_identity(newest) == data_identity(elsewhere) == "image_folder:simple"  # as shown
    assert same_data([newest, elsewhere, same, tested]) == ([newest, same], 2)
    fewer = run("/d/simple")  # 600 rows of it validate on other rows than all of it
    fewer.data.params["data.limit_rows"] = "600"
    assert same_data([newest, fewer, same]) == ([newest, same], 1)
    # shown as they differ, and the keys they differ in named (runs left out were shown as the kept ones were)
    assert data_identity(tested) == "image_folder:simple test:t" and data_identity(fewer) == "image_folder:simple limit:600"
    assert differing_keys(newest, [elsewhere, tested, fewer]) == ["data.path", "data.test_path", "data.limit_rows"]


@pytest.mark.unit
def test_compare_keeps_one_data_set_and_complete_runs_unless_asked_and_rounds(tmp_path, capsys, migrated_store_db):
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from pipeline.cli.compare import main

    store = new_store(tmp_path, migrated_store_db)
    client = MlflowClient(store["uri"])
    experiment = client.create_experiment("houses", artifact_location=Path(store["artifacts"]).as_uri())  # not ./mlruns

    def fake_run(name: str, data: str, val_loss: float, test_loss: float, status: str = "FINISHED",
                 r2: tuple = (), **tags) -> str:
        run = client.create_run(experiment, run_name=name)
        params = {"task": "regression", "data": data, "task.monitor": "val/loss", "task.mode": "min",
                  "optimizer.lr": "0.00123456789", "trainer.max_epochs": "20"}
        metrics = [Metric("val/loss_best", val_loss, 0, 0), Metric("test/loss", test_loss, 0, 0)]
        metrics += [Metric(f"test/r2{part}", value, 0, 0) for part, value in zip(("_ci_low", "", "_ci_high"), r2)]
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()], metrics=metrics,
                         tags=[RunTag(k, v) for k, v in tags.items()])
        client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    fake_run("good-val", "diabetes", 0.10, 0.90)       # best by validation, worse on test
    fake_run("good-test", "diabetes", 0.20, 0.10, r2=(0.301, 0.45, 0.5678123456789))
    fake_run("pruned", "diabetes", 0.01, 0.01, **{"sweep.state": "PRUNED"})
    fake_run("failed", "diabetes", 0.02, 0.02, status="FAILED")
    fake_run("killed", "diabetes", 0.03, 0.03, status="KILLED", **{"sweep.state": "FAIL"})  # an interrupted trial
    fake_run("other-data", "wine", 0.001, 0.001)       # newest: its data set is the default
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "houses", "--output", str(tmp_path / "a")],
                         capsys)
    assert code == 0, err
    assert "other-data" in out and "good-val" not in out
    assert "(2 runs on other data left out: they differ in data; --all-data ranks them too)" in out, out
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "houses", "--all-data",
                                "--output", str(tmp_path / "b")], capsys)
    listed = [line.split()[1] for line in out.splitlines() if line[:1].isdigit()]
    assert listed == ["other-data", "good-val", "good-test"], out  # by val/loss_best; pruned and failed left out
    assert "0.001235" in out and "0.00123456789" not in out  # 4 significant digits
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "houses", "--all-data", "--all",
                                "--output", str(tmp_path / "c")], capsys)
    listed = [line.split()[1] for line in out.splitlines() if line[:1].isdigit()]
    assert listed[:4] == ["other-data", "pruned", "failed", "killed"] and "PRUNED" in out and "FAILED" in out
    killed = next(line for line in out.splitlines() if " killed " in line)
    assert " KILLED " in killed and " FAIL " not in killed, out  # MLflow's status, not Optuna's FAIL
    # a test metric's 95 % bootstrap interval: in brackets in the table, its own columns in the CSV
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "houses", "--all-data",
                                "--by", "test/r2_ci_low", "--output", str(tmp_path / "d")], capsys)
    assert code == 0 and "by test/r2_ci_low (higher is better" in out, err
    assert "0.45 [0.301, 0.5678]" in out and "0.45 [0.301, 0.5678]" in (tmp_path / "d" / "compare.md").read_text()
    rows = list(csv.DictReader((tmp_path / "d" / "compare.csv").open()))
    # the table rounds; the CSV holds what the run logged, every digit (a spreadsheet sorts and subtracts those)
    assert [(r["run"], r["test/r2_ci_low"], r["test/r2"], r["test/r2_ci_high"], r["lr"]) for r in rows][0] == (
        "good-test", "0.301", "0.45", "0.5678123456789", "0.00123456789")
    header = next(csv.reader((tmp_path / "d" / "compare.csv").open()))
    assert header.count("test/r2_ci_low") == 1, header  # the --by column was written again as test/r2's bound


def test_compare_says_data_sets_differ_only_in_keys_that_tell_them_apart():
    """A run of data=csv beside one of data=diabetes: 'they differ in data, data.path, data.sheet, data.target_keep_values,
    data.groups, ...', keys data=csv sets to nothing and diabetes lacks. Only keys with values that differ."""
    from types import SimpleNamespace

    from pipeline.cli.compare import keys_differing

    def run(**params):
        return SimpleNamespace(data=SimpleNamespace(params=params, tags={}))

    bundled = run(**{"data": "diabetes", "data.val_fraction": "0.1"})
    table = run(**{"data": "csv", "data.path": "/d/houses.csv", "data.sheet": "None", "data.groups": "null",
                   "data.target_keep_values": "[]", "data.limit_rows": "None", "data.val_fraction": "0.1"})
    assert keys_differing(table, bundled) == ["data", "data.path"]
    assert keys_differing(run(**{**table.data.params, "data.groups": "town"}), table) == ["data.groups"]


def test_compare_names_settings_every_run_sets_before_those_some_lack():
    """After a sweep with a searched data.batch_size, the trials' and final runs' differences (a checkpoint callback
    the trials lack) came first in key order and pushed the searched key into "and 11 more"."""
    from types import SimpleNamespace

    from pipeline.cli.compare import params_without_a_column

    def run(params):
        return SimpleNamespace(data=SimpleNamespace(params=params))

    final = {"callbacks.model_checkpoint.monitor": "val/loss", "callbacks.model_checkpoint.save_top_k": "1",
             "data.batch_size": "32", "trainer.gradient_clip_val": "0"}
    trial = {"data.batch_size": "128", "trainer.gradient_clip_val": "0"}
    keys = [key for key, _ in params_without_a_column([run(final), run(trial)])]
    assert keys == ["data.batch_size", "callbacks.model_checkpoint.monitor", "callbacks.model_checkpoint.save_top_k"]


def test_compare_names_the_study_of_each_sweep_run(tmp_path, capsys, migrated_store_db):
    """Trials of two sweeps ranked together were told apart only by their run ids: a ``study`` column names each
    run's sweep, in the table, compare.md and compare.csv; runs of no sweep leave it empty, and without any sweep
    run there is no such column."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from pipeline.cli.compare import main

    store = new_store(tmp_path, migrated_store_db)
    client = MlflowClient(store["uri"])
    experiment = client.create_experiment("tables", artifact_location=Path(store["artifacts"]).as_uri())  # not ./mlruns

    def fake_run(name: str, val_loss: float, **tags) -> None:
        run = client.create_run(experiment, run_name=name)
        params = {"task": "classification", "data": "breast_cancer", "task.monitor": "val/loss", "task.mode": "min"}
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()],
                         metrics=[Metric("val/loss_best", val_loss, 0, 0)], tags=[RunTag(k, v) for k, v in tags.items()])
        client.set_terminated(run.info.run_id, "FINISHED")

    fake_run("single", 0.30)
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "tables", "--output",
                                str(tmp_path / "a")], capsys)
    assert code == 0 and not re.search(r"\bstudy\b", out), out
    fake_run("trial-a", 0.10, **{"sweep.study_name": "lr-search", "sweep.role": "trial", "sweep.trial_number": "0"})
    fake_run("trial-b", 0.20, **{"sweep.study_name": "wd-search", "sweep.role": "trial", "sweep.trial_number": "0"})
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "tables", "--output",
                                str(tmp_path / "b")], capsys)
    assert code == 0, err
    ranked = {line.split()[1]: line for line in out.splitlines() if line[:1].isdigit()}
    assert set(ranked) == {"trial-a", "trial-b", "single"}, out
    assert "lr-search" in ranked["trial-a"] and "wd-search" in ranked["trial-b"], out
    rows = {r["run"]: r for r in csv.DictReader((tmp_path / "b" / "compare.csv").open())}
    assert (rows["trial-a"]["study"], rows["trial-b"]["study"], rows["single"]["study"]) == ("lr-search", "wd-search", "")
    assert "| study |" in (tmp_path / "b" / "compare.md").read_text()


def test_compare_all_ranks_the_training_runs_data_after_an_evaluation_on_other_data(tmp_path, capsys, migrated_store_db):
    """``pipeline-eval <run> data.test_path=test.csv`` and then ``pipeline-compare --all``: the newest run, the
    evaluation, was taken as the data set to rank, which no training run was on: "Error: no run of 'regression' has
    the metric 'val/rmse_best'", exit 2 (``--by test/rmse --all`` listed the evaluation alone). The newest training
    run names the data set; an evaluation on other data is left out with the other runs on other data."""
    from conftest import eval_cli, run_cli_in_process

    from pipeline.cli.compare import main

    store = new_store(tmp_path, migrated_store_db)
    rng = np.random.default_rng(0)
    for name, rows in (("train.csv", 150), ("test.csv", 40)):
        x = rng.normal(size=(rows, 3))
        pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "target": x @ [1.0, -2.0, 0.5]}).to_csv(
            tmp_path / name, index=False)
    for seed in (1, 2):
        result = run_cli_in_process(["task=regression", "data=csv", f"data.path={tmp_path / 'train.csv'}",
                                     "data.target=target", "trainer.max_epochs=2", f"seed={seed}",
                                     "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false",
                                     f"hydra.run.dir={tmp_path / f'out{seed}'}", f"paths.mlruns_dir={tmp_path / 'mlruns'}"])
        assert result.returncode == 0, result.stderr[-3000:]
    trained = {run.info.run_id for run in runs_in(store, "regression")}
    code, _, err = eval_cli([sorted(trained)[0], f"data.test_path={tmp_path / 'test.csv'}", "--tracking-uri", store["uri"],
                             "--output-dir", str(tmp_path / "eval")])
    assert code == 0, err
    for by in ([], ["--by", "val/loss"], ["--by", "test/rmse"]):
        code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "regression", "--all", *by,
                                    "--output", str(tmp_path / "compare")], capsys)
        assert code == 0, (by, err)
        listed = {line.split()[2] for line in out.splitlines() if line[:1].isdigit()}
        assert listed == trained, (by, out)  # the two training runs; the evaluation on test.csv is on other data
        assert "(1 run on other data left out: it differs in data.test_path; --all-data ranks it too)" in out, out
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "regression", "--all", "--all-data",
                                "--by", "test/rmse", "--output", str(tmp_path / "compare")], capsys)
    assert code == 0 and "EVALUATION" in out and len([l for l in out.splitlines() if l[:1].isdigit()]) == 3, out


def test_compare_paired_tells_two_runs_on_the_same_test_rows_apart_only_where_the_rows_can(tmp_path, capsys,
                                                                                            migrated_store_db):
    """pipeline-compare --paired A B: both runs' predictions/test.csv redrawn together. A run right on 80 more of 200
    rows is better on every metric; one right on 2 more rows is 'neither'; an error metric is better when lower;
    runs without the same test rows, or without predictions, are refused with the reason."""
    from mlflow import MlflowClient

    from pipeline.cli.compare import main

    store = new_store(tmp_path, migrated_store_db)
    client = MlflowClient(store["uri"])
    experiment = client.create_experiment("paired", artifact_location=Path(store["artifacts"]).as_uri())  # not ./mlruns
    rows = np.arange(200)
    labels = np.where(rows % 2 == 0, "no", "yes")

    def logged(name: str, frame: pd.DataFrame) -> str:
        run = client.create_run(experiment, run_name=name)
        folder = tmp_path / name
        folder.mkdir()
        frame.to_csv(folder / "test.csv", index=False)
        client.log_artifact(run.info.run_id, str(folder / "test.csv"), "predictions")
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    def classifier(name: str, wrong: int) -> str:
        probability = np.where(labels == "yes", 0.8, 0.2)
        probability[:wrong] = 1 - probability[:wrong]  # the first rows predicted the other class
        return logged(name, pd.DataFrame({"row": rows, "target": labels, "prediction": np.where(probability > 0.5, "yes", "no"),
                                          "probability_no": 1 - probability, "probability_yes": probability}))

    good, bad, close = classifier("good", 10), classifier("bad", 90), classifier("close", 12)
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--paired", good, bad], capsys)
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["acc"], ["f1"], ["auroc"], ["ap"])}
    assert "0.9500    0.5500   +0.4000 [" in lines["acc"] and "100.0%   better: A" in lines["acc"]
    assert all(line.endswith("better: A") for line in lines.values()), out
    code, out, _ = cli(main, ["--tracking-uri", store["uri"], "--paired", good, close], capsys)
    acc = next(line for line in out.splitlines() if line.startswith("acc"))
    assert "+0.0100 [" in acc and acc.endswith("better: neither"), out

    truth = rows / 10.0
    near = logged("near", pd.DataFrame({"row": rows, "target": truth, "prediction": truth + 0.1}))
    far = logged("far", pd.DataFrame({"row": rows, "target": truth, "prediction": truth + 1.0}))
    code, out, _ = cli(main, ["--tracking-uri", store["uri"], "--paired", near, far], capsys)
    rmse = next(line for line in out.splitlines() if line.startswith("rmse"))
    assert "0.1000    1.0000   -0.9000 [-0.9000, -0.9000]" in rmse and rmse.endswith("100.0%   better: A"), out
    # errors in dollars squared (mse 3.0e9) ran together with their neighbours: "3001864798.28563048273109.0659"
    dollars = logged("dollars", pd.DataFrame({"row": rows, "target": truth * 1e5, "prediction": truth * 1e5 + 54_000}))
    cents = logged("cents", pd.DataFrame({"row": rows, "target": truth * 1e5, "prediction": truth * 1e5 + 55_000}))
    code, out, _ = cli(main, ["--tracking-uri", store["uri"], "--paired", dollars, cents], capsys)
    mse = next(line for line in out.splitlines() if line.startswith("mse")).split()
    assert mse[:4] == ["mse", "2.916e+09", "3.025e+09", "-1.09e+08"], out

    other_rows = logged("other", pd.DataFrame({"row": rows[:50], "target": labels[:50], "prediction": labels[:50],
                                               "probability_no": 0.5, "probability_yes": 0.5}))
    three = logged("three", pd.DataFrame({"row": rows, "target": labels, "prediction": labels, "probability_no": 0.4,
                                          "probability_yes": 0.4, "probability_maybe": 0.2}))
    nothing = client.create_run(experiment, run_name="nothing").info.run_id
    client.set_terminated(nothing)  # finished without predictions (test=false)
    running = client.create_run(experiment, run_name="running").info.run_id  # still training, or killed -9
    # a sweep's trial is not tested: pipeline-eval, which the message advised, refuses trials
    trial = client.create_run(experiment, run_name="trial-3", tags={"sweep.role": "trial", "sweep.trial_number": "3",
                                                                     "sweep.study_name": "s"}).info.run_id
    client.set_terminated(trial)
    for pair, fragments in [((good, other_rows), ["different test rows", "same data, split and seed"]),
                            ((good, near), ["different test rows"]), ((good, three), ["predict different classes"]),
                            ((good, nothing), [f"run {nothing} logged no predictions/test.csv", f"pipeline-eval {nothing}"]),
                            ((good, trial), [f"run {trial} is trial 3 of the sweep 's': a trial is not tested",
                                             "compare the sweep's best run (tag best=true)"]),
                            ((good, running), [f"run {running} is still RUNNING (or its process was killed) before it "
                                               "logged its test predictions"]),
                            ((good, "0" * 32), ["no run '" + "0" * 32 + "'"])]:
        code, _, err = cli(main, ["--tracking-uri", store["uri"], "--paired", *pair], capsys)
        assert code == 2 and err.startswith("Error: ") and all(f in err for f in fragments), err


def test_a_deleted_run_is_not_used_to_rerun_evaluate_predict_or_compare(tmp_path, capsys, migrated_store_db):
    """A run deleted in the UI (deleted because it was wrong, most likely) was trained again, evaluated, answered
    predictions and was paired in pipeline-compare, without a word that it is in the trash."""
    from mlflow import MlflowClient

    from conftest import eval_cli, predict_cli
    from pipeline.cli import compare, rerun

    store = new_store(tmp_path, migrated_store_db)
    result = run_cli(["trainer.max_epochs=1", "logger.mlflow.register_as=trashed"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    run_id = run.info.run_id
    MlflowClient(store["uri"]).delete_run(run_id)
    says = (f"run {run_id} is deleted (in the trash of {store['uri']}); restore it first if it is to be used: "
            f"MLFLOW_TRACKING_URI={store['uri']} mlflow runs restore --run-id {run_id}")
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"x": [1.0]}).to_csv(rows, index=False)
    answers = {
        "rerun": cli(rerun.main, [run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "r")], capsys),
        "eval": eval_cli([run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "e")]),
        "predict": predict_cli([run_id, "--input", str(rows), "--output", str(tmp_path / "p.csv"),
                                "--tracking-uri", store["uri"]]),
        "predict a registered version": predict_cli(["models:/trashed/1", "--input", str(rows), "--output",
                                                     str(tmp_path / "p.csv"), "--tracking-uri", store["uri"]]),
        "compare": cli(compare.main, ["--paired", run_id, run_id, "--tracking-uri", store["uri"]], capsys),
    }
    for command, (code, _, err) in answers.items():
        assert code == 2 and says in err and "Traceback" not in err, (command, err[-2000:])
    assert [r.info.run_id for r in runs_in(store)] == []  # nothing new: the store's active runs


def _compare_store(tmp_path, migrated_store_db, name: str):
    """A store with one experiment, and a function that logs a finished run of it: (run name, params, metrics)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    store = new_store(tmp_path, migrated_store_db)
    client = MlflowClient(store["uri"])
    experiment = client.create_experiment(name, artifact_location=Path(store["artifacts"]).as_uri())  # not ./mlruns

    def fake_run(run_name: str, params: dict, metrics: dict) -> str:
        run = client.create_run(experiment, run_name=run_name)
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()],
                         metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    return store, fake_run


def test_compare_keeps_apart_runs_split_by_groups_or_by_time(tmp_path, capsys, migrated_store_db):
    """data.groups=grp (groups held out whole) and data.order_by=date (the latest rows tested) draw other validation
    and test rows from the same file: the three runs were all labelled csv:cls4.csv->label and ranked together."""
    from pipeline.cli.compare import main

    store, fake_run = _compare_store(tmp_path, migrated_store_db, "classification")
    base = {"task": "classification", "data": "csv", "data.path": "/d/cls4.csv", "data.target": "label",
            "task.monitor": "val/loss", "task.mode": "min", "data.groups": "null", "data.order_by": "null"}
    fake_run("random", base, {"val/loss_best": 0.3})
    fake_run("by-time", {**base, "data.order_by": "date"}, {"val/loss_best": 0.2})
    fake_run("quantile", {**base, "data.numeric_transform": "quantile"}, {"val/loss_best": 0.4})  # the same rows
    fake_run("grouped", {**base, "data.groups": "grp"}, {"val/loss_best": 0.1})  # newest: its data is ranked
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert [line.split()[1] for line in out.splitlines() if line[:1].isdigit()] == ["grouped"], out
    assert "on csv:cls4.csv->label groups:grp by val/loss_best" in out, out
    assert "(3 runs on other data left out: they differ in data.groups, data.order_by; --all-data ranks them too)" in out
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification", "--all-data",
                                "--output", str(tmp_path / "b")], capsys)
    assert "csv:cls4.csv->label order_by:date" in out and "csv:cls4.csv->label groups:grp" in out, out
    assert "held other training rows" not in out, out
    # the same keys, other rows: the file changed between two runs (one rerun said so); ranked together, now said
    from mlflow import MlflowClient

    client = MlflowClient(store["uri"])
    for name, digest, seed in (("before", "aaaa1111", "1"), ("after", "bbbb2222", "1"), ("seed2", "cccc3333", "2")):
        run_id = fake_run(name, {**base, "data.groups": "grp", "data.seed": seed}, {"val/loss_best": 0.2})
        client.set_tag(run_id, "data_digest", digest)  # seed2: other rows drawn by another data.seed, not a change
    run_id = [r.info.run_id for r in runs_in(store) if r.info.run_name == "after"][0]
    client.set_tag(run_id, "data_differs_from_source", "training rows: the files it read have changed since")
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "c")], capsys)
    assert code == 0, err
    assert re.search(r"\(the same data keys \(csv:cls4.csv->label groups:grp\) and data.seed held other training rows "
                     r"across these runs, the file changed between them: 2 training-row digests \(tag data_digest\) "
                     r"bbbb2222: \w{8}; aaaa1111: \w{8}\)", out), out
    assert "cccc3333" not in out, out
    assert f"(trained or tested on other rows than the run it repeats: {run_id[:8]}; tag data_differs_from_source)" \
        in out, out


def test_compare_names_the_newest_run_without_validation_rows_when_no_run_has_the_metric(tmp_path, capsys,
                                                                                      migrated_store_db):
    """The newest run trained with data.val_fraction=0 (no validation split): "Error: no run of 'regression' has
    the metric 'val/rmse_best'", though five runs had it. The error names that run and the ways round it."""
    from pipeline.cli.compare import main

    store, fake_run = _compare_store(tmp_path, migrated_store_db, "regression")
    base = {"task": "regression", "data": "diabetes", "task.monitor": "val/rmse", "task.mode": "min",
            "data.val_fraction": "0.1"}
    for k in range(2):
        fake_run(f"with-val-{k}", base, {"val/rmse_best": 50.0 + k, "test/rmse": 55.0})
    fake_run("no-val", {**base, "data.val_fraction": "0"}, {"test/rmse": 54.0})
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "regression",
                                "--output", str(tmp_path / "a")], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("Error: no run ranked has the metric 'val/rmse_best': the newest training run, no-val, "
                          "trained with data.val_fraction=0"), err
    assert "--by test/rmse" in err and "--all-data" in err, err
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "regression", "--by", "test/rmse",
                                "--output", str(tmp_path / "b")], capsys)
    assert code == 0 and "no-val" in out, err


def test_compare_top_counts_the_data_sets_of_the_runs_ranked_not_of_the_rows_shown(tmp_path, capsys, migrated_store_db):
    """--all-data --top 2 over runs on two data sets whose best two are on one: "the best 2 of 3 finished runs on
    wine", where the 3 runs ranked were on two data sets and nothing said they were ranked together. The line counts
    the data sets of the runs ranked; two data sets of one name (the same file name in two folders) are two."""
    from pipeline.cli.compare import main

    store, fake_run = _compare_store(tmp_path, migrated_store_db, "classification")
    base = {"task": "classification", "task.monitor": "val/acc", "task.mode": "max"}
    fake_run("cancer", {**base, "data": "breast_cancer"}, {"val/acc_best": 0.8})
    fake_run("wine-a", {**base, "data": "wine"}, {"val/acc_best": 0.95})
    fake_run("wine-b", {**base, "data": "wine"}, {"val/acc_best": 0.9})
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification", "--all-data",
                                "--top", "2", "--output", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert "the best 2 of 3 finished runs on 2 data sets (--all-data: ranked together) by val/acc_best" in out, out
    assert [line.split()[1] for line in out.splitlines() if line[:1].isdigit()] == ["wine-a", "wine-b"], out
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification", "--top", "1",
                                "--output", str(tmp_path / "b")], capsys)  # the newest run's data alone: one data set
    assert code == 0 and "the best 1 of 2 finished runs on wine by val/acc_best" in out, out
    folder = {**base, "data": "csv", "data.target": "y"}
    fake_run("here", {**folder, "data.path": "/a/simple.csv"}, {"val/acc_best": 0.7})
    fake_run("there", {**folder, "data.path": "/b/simple.csv"}, {"val/acc_best": 0.6})
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification", "--all-data",
                                "--top", "5", "--by", "val/acc_best", "--output", str(tmp_path / "c")], capsys)
    assert code == 0 and "5 finished runs on 4 data sets (--all-data: ranked together)" in out, out


def test_compare_all_data_says_it_mixes_data_sets_and_ranks_runs_without_the_metric_last(tmp_path, capsys,
                                                                                         migrated_store_db):
    """--all-data printed "10 finished runs on wine" over a table of wine and breast_cancer runs; a regression run
    sat in a classification ranking with an empty cell, unexplained; --by test/acc said test metrics were not
    ranked on."""
    from pipeline.cli.compare import main

    store, fake_run = _compare_store(tmp_path, migrated_store_db, "classification")
    base = {"task": "classification", "task.monitor": "val/acc", "task.mode": "max"}
    fake_run("cancer", {**base, "data": "breast_cancer"}, {"val/acc_best": 0.95, "test/acc": 0.9})
    fake_run("houses", {"task": "regression", "data": "diabetes", "task.monitor": "val/rmse", "task.mode": "min"},
             {"val/rmse_best": 50.0})
    fake_run("wine", {**base, "data": "wine"}, {"val/acc_best": 0.9, "test/acc": 0.97})
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification", "--all-data",
                                "--output", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert "3 finished runs on 3 data sets (--all-data: ranked together) by val/acc_best" in out, out
    assert "(1 run without val/acc_best ranked last, 1 of another task (regression))" in out, out
    assert [line.split()[1] for line in out.splitlines() if line[:1].isdigit()] == ["cancer", "wine", "houses"], out
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification", "--all-data",
                                "--by", "test/acc", "--output", str(tmp_path / "b")], capsys)
    assert "by test/acc (higher is better; ranked on a test metric, so the test rows choose the run)" in out, out
    assert "not ranked on" not in out
    assert "f1 and ap are of different classes" not in out
    # a key that differs among the ranked runs and has no column (a model of one's own's width) is named with its values
    fake_run("narrow", {**base, "data": "breast_cancer", "model.width": "8", "data.batch_size": "32"},
             {"val/acc_best": 0.9})
    fake_run("wide", {**base, "data": "breast_cancer", "model.width": "64", "data.batch_size": "32"},
             {"val/acc_best": 0.91})
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "w")], capsys)
    assert ("(also set otherwise among these runs, without a column: data.batch_size (-, 32); model.width (-, 64, 8))"
            in out), out  # "-": a run without the key (another model)
    # and in the file written, which had none of the printed notes
    assert ("also set otherwise among these runs, without a column: data.batch_size (-, 32); model.width (-, 64, 8)"
            in (tmp_path / "w" / "compare.md").read_text())
    # a sweep's final run that a better trial replaced (best=false) is left out unless --all
    from mlflow import MlflowClient

    MlflowClient(store["uri"]).set_tag(fake_run("replaced", {**base, "data": "breast_cancer"}, {"val/acc_best": 0.99}),
                                       "best", "false")
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "r")], capsys)
    assert "replaced" not in out and "3 finished runs on breast_cancer" in out, out
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification", "--all",
                                "--output", str(tmp_path / "r2")], capsys)
    assert "replaced" in out, out
    # runs that score f1 and ap of another class (task.positive_class) are left out, and said to be when ranked
    # together: their f1 shared one column without a word
    from mlflow import MlflowClient

    client = MlflowClient(store["uri"])
    for name, positive in (("benign", "1"), ("malignant", "0")):
        client.set_tag(fake_run(name, {**base, "data": "breast_cancer"}, {"val/acc_best": 0.9, "test/f1": 0.93}),
                       "positive_class", positive)
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "c")], capsys)
    assert "(3 runs on other data left out: they differ in data, task.positive_class; --all-data" in out, out
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification", "--all-data",
                                "--output", str(tmp_path / "d")], capsys)
    assert ("(f1 and ap are of different classes here (task.positive_class): 0 in 1 run, 1 in 1 run; compare them "
            "within a class)") in out, out


def test_compare_does_not_name_other_optimizers_defaults_or_what_a_sweep_sets_in_its_trials(tmp_path, capsys,
                                                                                           migrated_store_db):
    """A sweep's trials and best runs ranked together: the note of keys without a column listed RMSprop's alpha
    (absent from Adam's runs), Adam's fused, the trials' num_sanity_val_steps=0 and the best run's checkpoint
    settings, before (and instead of) the key searched, model.l1."""
    from mlflow import MlflowClient

    from pipeline.cli.compare import main

    store, fake_run = _compare_store(tmp_path, migrated_store_db, "classification")
    client = MlflowClient(store["uri"])
    base = {"task": "classification", "data": "breast_cancer", "task.monitor": "val/loss", "task.mode": "min"}
    adam = {"optimizer": "adam", "optimizer.fused": "True"}
    trial = {"trainer.num_sanity_val_steps": "0"}
    for number, (name, params) in enumerate([("t0", {**adam, **trial, "model.l1": "1e-05"}),
                                             ("t1", {**adam, **trial, "model.l1": "0.0001"}),
                                             ("t2", {"optimizer": "rmsprop", "optimizer.alpha": "0.99", **trial,
                                                     "model.l1": "1e-05"})]):
        run_id = fake_run(name, {**base, **params}, {"val/loss_best": 0.3 + number / 10})
        for key, value in {"sweep.role": "trial", "sweep.trial_number": str(number)}.items():
            client.set_tag(run_id, key, value)
    best = fake_run("best", {**base, **adam, "model.l1": "1e-05", "callbacks.model_checkpoint.monitor": "val/loss",
                             "callbacks.model_checkpoint.save_last": "True"}, {"val/loss_best": 0.3})
    client.set_tag(best, "sweep.role", "final")
    client.set_tag(best, "best", "true")
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "c")], capsys)
    assert code == 0, err
    assert "(also set otherwise among these runs, without a column: model.l1 (1e-05, 0.0001))" in out, out
    # one optimizer's runs setting its own key otherwise are still named
    fake_run("t3", {**base, "optimizer": "rmsprop", "optimizer.alpha": "0.9", "model.l1": "1e-05"},
             {"val/loss_best": 0.9})
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "d")], capsys)
    assert "optimizer.alpha (-, 0.99, 0.9)" in out, out


def test_the_ui_on_a_store_that_does_not_exist_says_it_makes_an_empty_one(tmp_path, capsys):
    """pipeline-ui --tracking-uri with a mistyped path served an empty UI (and made the store) without a word."""
    import socket

    from pipeline.cli.ui import main

    missing = tmp_path / "typo" / "mlflow.db"
    with socket.socket() as busy:  # a port in use: the command stops before it serves anything
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = cli(main, ["--tracking-uri", f"sqlite:///{missing}", "--port", str(port)], capsys)
    assert code == 2 and f"Note: no MLflow store at {missing} yet: a new, empty one is made there" in err, err
    assert not missing.exists()


def test_a_folder_or_a_file_that_is_no_database_given_as_the_store_is_said_by_every_run_tool(tmp_path, capsys,
                                                                                               monkeypatch):
    """--tracking-uri <folder> gave MLflow's traceback ("The filesystem tracking backend ... is in maintenance mode",
    exit 1), sqlite:///<folder> minutes of "unable to open database file ... will be retried", a file that is no
    database sqlite's traceback, and pipeline-ui on a folder that cannot be made a FileNotFoundError."""
    from conftest import eval_cli, predict_cli, rerun_cli
    from pipeline.cli.compare import main as compare
    from pipeline.cli.ui import main as ui

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    folder = tmp_path / "mlruns"
    folder.mkdir()
    (folder / "mlflow.db").write_bytes(b"")
    not_a_database = tmp_path / "table.db"
    not_a_database.write_text("a,b\n1,2\n")
    cases = [(str(folder), f"--tracking-uri={folder}: a folder store, which MLflow 3 no longer opens by default; give "
                           f"the database in it, --tracking-uri sqlite:///{folder}/mlflow.db (there is one)"),
             (f"sqlite:///{folder}", f"--tracking-uri=sqlite:///{folder}: {folder} is a folder; the store is the "
                                     f"database file in it, e.g. --tracking-uri sqlite:///{folder}/mlflow.db"),
             (f"sqlite:///{not_a_database}", f"{not_a_database} is not an SQLite database")]
    for uri, said in cases:
        for name, run in (("compare", lambda a: cli(compare, [*a, "--output", str(tmp_path / "c")], capsys)),
                          ("ui", lambda a: cli(ui, [*a, "--port", "1"], capsys)),
                          ("eval", lambda a: eval_cli(["0123456789abcdef0123456789abcdef", *a])),
                          ("predict", lambda a: predict_cli(["models:/m/1", "--input", str(not_a_database),
                                                             "--output", str(tmp_path / "p.csv"), *a])),
                          ("rerun", lambda a: rerun_cli(["0123456789abcdef0123456789abcdef", *a]))):
            code, _, err = run(["--tracking-uri", uri])
            assert code == 2 and said in error_line(err) and "Traceback" not in err, (name, uri, err[-2000:])
            assert "checkpoint file" not in error_line(err), (name, err)
    code, _, err = cli(ui, ["--tracking-uri", "sqlite:////proc/no-such-folder/mlflow.db", "--port", "0"], capsys)
    assert code == 2 and "none can be made (No such file or directory: /proc/no-such-folder)" in error_line(err), err


def test_compare_gives_mean_and_spread_over_seeds_and_folds(tmp_path, capsys, migrated_store_db):
    """-m seed=1,2,3 and -m 'data.fold=range(0,5)' gave one row per run and no summary: a paper's table needs the
    mean and spread of each setting over its seeds (or folds), which had to be worked out by hand."""
    from pipeline.cli.compare import main

    store, fake_run = _compare_store(tmp_path, migrated_store_db, "classification")
    base = {"task": "classification", "data": "breast_cancer", "task.monitor": "val/acc", "task.mode": "max",
            "model": "mlp", "optimizer": "adam", "optimizer.lr": "0.001"}
    for seed, (val, test) in zip((1, 2, 3), ((0.95, 0.93), (0.97, 0.95), (0.96, 0.97))):
        fake_run(f"adam-{seed}", {**base, "seed": str(seed), "data.seed": str(seed)},
                 {"val/acc_best": val, "test/acc": test})
    fake_run("sgd-1", {**base, "optimizer": "sgd", "optimizer.lr": "0.1", "seed": "1", "data.seed": "1"},
             {"val/acc_best": 0.9, "test/acc": 0.9})
    code, out, err = cli(main, ["--tracking-uri", store["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "a")], capsys)
    assert code == 0, err
    [line] = [l for l in out.splitlines() if l.startswith("  ranks ")]
    assert line == "  ranks 1, 2, 3 (3 runs over seed 1, 2, 3): val/acc_best 0.96 ± 0.01; test/acc 0.95 ± 0.02", out
    assert "mean ± sample std" in (tmp_path / "a" / "compare.md").read_text()

    folds, fake_fold = _compare_store(tmp_path / "cv", migrated_store_db, "classification")
    for fold in range(5):
        fake_fold(f"fold-{fold}", {**base, "seed": "42", "data.cv_folds": "5", "data.fold": str(fold)},
                  {"val/acc_best": 0.9 + fold / 100, "test/acc": 0.9 + fold / 100})
    code, out, err = cli(main, ["--tracking-uri", folds["uri"], "--experiment", "classification",
                                "--output", str(tmp_path / "b")], capsys)
    assert "the other folds of the cross-validation are left out as other test rows: --all-data" in out, out
    code, out, err = cli(main, ["--tracking-uri", folds["uri"], "--experiment", "classification", "--all-data",
                                "--output", str(tmp_path / "c")], capsys)
    [line] = [l for l in out.splitlines() if l.startswith("  ranks ")]
    assert line == ("  ranks 1, 2, 3, 4, 5 (5 runs over data.fold 0, 1, 2, 3, 4): val/acc_best 0.92 ± 0.01581; "
                    "test/acc 0.92 ± 0.01581"), out


def test_predict_from_a_checkpoint_of_a_model_of_ones_own_names_the_run_to_predict_with(tmp_path, migrated_store_db,
                                                                                      monkeypatch):
    """pipeline-predict <checkpoint> of a run of one's own model class said only "model._target_='mine_pkg.Tiny' is
    not one of the pipeline's models; refusing it", though docs/training.md says such runs are predicted like any
    other: the refusal now says why (a folder's config.yaml builds only the pipeline's classes) and names the command
    that predicts, with the run id the checkpoint holds."""
    from conftest import eval_cli, model_of_ones_own, predict_cli

    conf = model_of_ones_own(tmp_path, monkeypatch, "mine_pkg", (
        "import torch.nn as nn\n"
        "class Tiny(nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs, dropout=0.0, l1=0.0):\n"
        "        super().__init__()\n        self.l1 = l1\n        self.fc = nn.Linear(input_shape[0], num_outputs)\n"
        "    def forward(self, x):\n        return self.fc(x)\n"),
        {"tiny": "_target_: mine_pkg.Tiny\ndropout: 0.0\nl1: 0.0\n"})
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"a": np.arange(60) * 0.3, "b": np.arange(60) % 9 * 1.5, "y": np.arange(60) % 2}).to_csv(rows, index=False)
    store = new_store(tmp_path, migrated_store_db)
    result = run_cli(["--config-dir", str(conf), "model=tiny", "task=classification", "data=csv", f"data.path={rows}",
                      "data.target=y", "trainer.max_epochs=1", "logger.mlflow.log_model=false"], store,
                     env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1] / 'src'}"})
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    code, out, err = predict_cli([str(checkpoint), "--input", str(rows), "--output", str(tmp_path / "p.csv")])
    assert code == 2, err[-3000:]
    assert error_line(err) == (
        f"Error: {checkpoint}: its run's model is model._target_='mine_pkg.Tiny', not one of the pipeline's models "
        "(pipeline.models.*), and a checkpoint's config.yaml builds no other class (a file in a folder runs no code "
        f"of its own); predict with the run's logged model, which carries its code: pipeline-predict {run.info.run_id}")
    # pipeline-eval <checkpoint> refuses it too (documented), naming the folder's config.yaml as such: it said "the
    # config logged with run <path>" and "which is not allowed: it is mine_pkg.Tiny", the class named twice
    code, out, err = eval_cli([str(checkpoint)])
    assert code == 2, err[-3000:]
    line = error_line(err)
    assert line.startswith(f"Error: {store['outputs'] / 'config.yaml'}, the config of the checkpoint's run folder, "
                           "sets model._target_='mine_pkg.Tiny', which is not allowed: it is outside the modules a "
                           "rerun builds from. "), line
