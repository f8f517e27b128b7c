"""The adversarial pass of issue 11, written down after it was run: mistakes a user can make that no other
test had tried. Each is refused with exit code 2 and one ``Error:`` line naming what to fix, before any
MLflow run exists; none ends in a traceback, exit code 1 or a FINISHED run."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli_in_process, runs_in


def store_file(store: dict) -> Path:
    return Path(store["uri"][len("sqlite:///"):])


def refused(result, store: dict, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert not store_file(store).exists() or runs_in(store) == []
    return errors[0]


# (command-line overrides, fragments the one line must hold)
CASES = [
    (["optimizer.lr=-1"], ["optimizer.lr=-1", "> 0"]),
    (["optimizer.lr=abc"], ["optimizer.lr", "number"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs=0", ">= 1"]),
    (["trainer.precision=8"], ["trainer.precision=8", "bf16-mixed"]),
    (["data.batch_size=0"], ["data.batch_size=0"]),
    (["model.hidden_dims=[-5]"], ["model", "-5"]),
    (["callbacks=[default,nonexistent]"], ["callbacks=nonexistent", "early_stopping"]),
    (["logger=[mlflow,nonexistent]"], ["logger=nonexistent", "tensorboard"]),
    (["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=-1"], ["patience=-1", ">= 0"]),
    (["seed=abc"], ["seed", "integer"]),
    (["seed=99999999999"], ["seed=99999999999", "4294967295"]),
    (["+foo=bar"], ["'foo'"]),
    # tags are names with values: a word crashed (AttributeError) after the run began; a list gave Hydra's merge error
    (["tags=foo"], ["tags=foo: tags are names with values", "+tags.note=<value>"]),
    (["tags=123"], ["tags=123: tags are names with values", "+tags.note=<value>"]),
    (["tags=[a,b]"], ["tags=[a,b]: tags are names with values", "+tags.note=<value>"]),
    (["task=regression", "task.monitor=val/acc"], ["task.monitor='val/acc'", "val/rmse"]),
    (["task.monitor=test/acc"], ["task.monitor", "validation metric"]),
    # a metric better higher with the task's mode=min: the worst epoch's checkpoint was kept and tested, silently
    (["task.monitor=val/f1"], ["task.monitor=val/f1 is better higher, but task.mode=min", "add task.mode=max"]),
    (["task=regression", "task.monitor=val/r2"], ["task.monitor=val/r2", "task.mode=min", "add task.mode=max"]),
    (["task=image_classification", "data=digits", "model=mlp", "task.monitor=val/loss"],
     ["task.monitor=val/loss is better lower, but task.mode=max", "add task.mode=min"]),
    (["hparams_search=classification_optuna", "task.monitor=val/acc", "hydra.sweeper.objectives=[val/acc_best]",
      "hydra.sweeper.directions=[maximize]", "logger=none"],
     ["task.monitor=val/acc is better higher, but task.mode=min", "add task.mode=max"]),
    # the checkpoint (or early stopping) set on a metric of its own kept task.mode's min: it tested the worst epoch
    (["callbacks.model_checkpoint.monitor=val/acc"],
     ["callbacks.model_checkpoint.monitor=val/acc is better higher, but callbacks.model_checkpoint.mode=min (from "
      "task.mode) would keep (and test) the checkpoint of its worst epoch", "add callbacks.model_checkpoint.mode=max"]),
    (["callbacks=[default,early_stopping]", "callbacks.early_stopping.monitor=val/auroc"],
     ["callbacks.early_stopping.mode=min (from task.mode) would stop the run as it improves",
      "add callbacks.early_stopping.mode=max"]),
    (["task.mode=up"], ["task.mode='up'", "min, max"]),
    (["data=wine", "data.val_fraction=1.5"], ["data.val_fraction=1.5", "[0, 1)"]),
    (["trainer.max_time=abc"], ["trainer", "DD:HH:MM:SS"]),
    (["trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val=-1", ">= 0"]),
    (["trainer.limit_train_batches=0"], ["trainer.limit_train_batches=0", "> 0"]),
    (["trainer.limit_val_batches=0"], ["trainer.limit_val_batches=0", "model selection"]),
    # a fraction that keeps no batch of its split: Lightning refused it once fit or test began (exit 1, a FAILED run)
    (["trainer.limit_train_batches=0.01"], ["trainer.limit_train_batches=0.01", "7 batches",
                                            "at least trainer.limit_train_batches=0.143", "integer"]),
    (["trainer.limit_val_batches=0.5"], ["trainer.limit_val_batches=0.5", "1 batch",
                                         "at least trainer.limit_val_batches=1.0", "integer"]),
    (["trainer.limit_test_batches=0.5"], ["trainer.limit_test_batches=0.5", "1 batch",
                                          "at least trainer.limit_test_batches=1.0", "integer"]),
    (["model=cnn"], ["model=cnn", "tabular"]),
    (["experiment=nonexistent"], ["experiment=nonexistent", "textbook_mlp"]),
    (["model.activation=[relu]"], ["model.activation", "string"]),
    (["optimizer=sgd", "optimizer.dampening=0.5"], ["'optimizer.dampening'", "+optimizer.dampening"]),
    (["logger.mlflow.experiment_name="], ["logger.mlflow.experiment_name is empty"]),
    (["logger.mlflow.tracking_uri=ftp://files.example.org/x"], ["ftp", "sqlite:///"]),
    (["scheduler=plateau", "task.monitor=val/acc", "task.mode=max", "scheduler.mode=min"], ["scheduler.mode"]),
    (["ckpt_path=/dev/null"], ["ckpt_path=/dev/null"]),
    (["test=maybe"], ["test"]),
    # a value the choices do not hold: was "has the wrong type; allowed: one of 64, 32, 16, ..., 64, 32, 16, bf16"
    (["trainer.precision=bf17"], ["trainer.precision='bf17' is not allowed; choose one of 64, 32, 16, transformer-engine",
                                  "bf16-mixed"]),
    (["hparams_search=classification_optuna", "hydra.sweeper.n_trials=0", "logger=none"], ["n_trials=0", ">= 1"]),
    # was accepted: a FAILED parent run and a study of WAITING trials, then "the timeout was reached"
    (["hparams_search=classification_optuna", "hydra.sweeper.timeout=-5"], ["hydra.sweeper.timeout=-5", "> 0"]),
    (["hparams_search=classification_optuna", "hydra.sweeper.sampler=foo", "logger=none"], ["sampler='foo'", "tpe"]),
    (["hparams_search=classification_optuna", "hydra.sweeper.finalize_top_k=-1", "logger=none"], ["finalize_top_k"]),
    (["hparams_search=classification_optuna", "hydra.sweeper.pruner=median", "+hydra.sweeper.pruner_options.min_resource=2"],
     ["hydra.sweeper.pruner_options={'min_resource': 2} do not suit pruner='median'", "min_resource"]),
    # data no trial can read: one line before a study or run exists (every trial failed on it, after both were made)
    (["hparams_search=classification_optuna", "data=csv", "data.path=/nonexistent/people.csv", "data.target=y"],
     ["data.path: file not found: /nonexistent/people.csv"]),
    (["hparams_search=classification_optuna", "+hydra.sweeper.sampler_options.nonsense=1", "logger=none"],
     ["hydra.sweeper.sampler_options={'nonsense': 1} do not suit sampler='tpe'"]),
    (["hparams_search=classification_optuna", "hydra.sweeper.finalize_top_k=0", "logger.mlflow.register_as=bc"],
     ["logger.mlflow.register_as", "finalize_top_k=0 trains none"]),
    (["hparams_search=classification_optuna", "data=_common", "logger=none"], ["data=_common: a base file", "Available:"]),
    # L-BFGS evaluates each batch several times per step: what cannot follow that is refused before the run
    (["optimizer=lbfgs", "trainer.precision=bf16-mixed"], ["optimizer=lbfgs", "bf16-mixed", "32-true"]),
    (["optimizer=lbfgs", "trainer.gradient_clip_val=1"], ["optimizer=lbfgs", "gradient_clip_val"]),
    (["optimizer=lbfgs", "trainer.accumulate_grad_batches=2"], ["optimizer=lbfgs", "accumulate_grad_batches=1"]),
    (["optimizer=lbfgs", "optimizer.weight_decay=-1"], ["optimizer.weight_decay=-1", ">= 0"]),
    # float16 state: Adam's and RMSprop's eps of 1e-8 is 0 there (the run failed with an inf loss, told to lower lr)
    (["optimizer=adam", "trainer.precision=16-true"], ["optimizer=adam", "16-true", "eps (1e-08) is 0", "16-mixed",
                                                       "+optimizer.eps=1e-4"]),
    (["optimizer=rmsprop", "trainer.precision=16-true"], ["optimizer=rmsprop", "16-true", "eps (1e-08) is 0"]),
]


@pytest.mark.parametrize("args,fragments", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_a_mistake_is_one_line_exit_2_and_no_run(store, args, fragments):
    refused(run_cli_in_process(["trainer.max_epochs=1", *args], store), store, *fragments)


def test_a_file_that_is_no_checkpoint_is_called_so(store, tmp_path):
    table = tmp_path / "bc.csv"
    table.write_text("a,b\n1,2\n")
    refused(run_cli_in_process([f"ckpt_path={table}"], store), store,
            f"ckpt_path={table}: not a PyTorch checkpoint (not a file torch.save or Lightning writes)")


def test_a_run_folder_that_cannot_be_created_is_one_line(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli_in_process([f"hydra.run.dir={blocker}/run", f"paths.mlruns_dir={tmp_path / 'mlruns'}"])
    refused(result, store, "hydra.run.dir", "cannot create the run's folder", "is a file")


def test_a_searched_key_that_no_trial_can_set_stops_the_sweep_before_it_starts(store, tmp_path):
    from conftest import run_cli

    result = run_cli(["hparams_search=classification_optuna", "hydra.sweeper.n_trials=2", "logger=none",
                      "trainer.max_epochs=1", f"paths.mlruns_dir={tmp_path / 'mlruns'}",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}", "model.nonexistent=interval(0,1)"], multirun=True)
    line = refused(result, store, "a trial of this search cannot run", "'model.nonexistent'")
    assert not (tmp_path / "mlruns" / "optuna" / "optuna.db").exists(), line  # no study was created


# ----- second round: your own files and pretrained models (tables, image folders, torchvision, transformers) -----
GOOD_ROWS = [f"{i * 0.37:.2f},{'xyz'[i % 3]},{i % 5},{i % 2}" for i in range(60)]
FILES = {
    "good.csv": "a,b,c,label\n" + "\n".join(GOOD_ROWS) + "\n",
    "empty.csv": "",
    "header.csv": "a,b,label\n",
    # ';'-separated (found from the header and the first rows) with a short row further down: refused at its line
    "semicolons.csv": "a;b;c;label\n" + "\n".join(r.replace(",", ";") for r in GOOD_ROWS) + "\n1;x\n",
    "blank_b.csv": "a,b,label\n" + "\n".join(f"{i},,{i % 2}" for i in range(60)) + "\n",
    "words.csv": "a,b,label\n" + "\n".join(f"{i * 0.5},{i % 3},{'cat' if i % 2 else 'dog'}" for i in range(60)) + "\n",
    "not_weights.pth": "hello",
}
DATA_CASES = [
    (["data=csv", "data.path={d}/good.csv", "data.target=nope"], ["data.target", "'nope'", "columns are"]),
    (["data=csv", "data.path={d}/empty.csv", "data.target=label"], ["empty.csv", "empty"]),
    (["data=csv", "data.path={d}/header.csv", "data.target=label"], ["header.csv", "no data rows"]),
    (["data=csv", "data.path={d}/good.csv", "data.target=label", "data.test_path={d}/missing.csv"],
     ["data.test_path", "missing.csv"]),
    (["data=csv", "data.path={d}/semicolons.csv", "data.target=label"], ["semicolons.csv:62:", "expected 4 columns, found 2"]),
    (["data=csv", "data.path={d}/good.csv", "data.target=label", "data.features=[nope]"], ["data.features", "nope"]),
    (["data=csv", "data.path={d}/good.csv", "data.target=label", "data.format=xls"], ["data.format='xls'", "parquet", "excel"]),
    (["data=csv", "data.path={d}/blank_b.csv", "data.target=label"], ["no feature columns left", "data.features"]),
    (["task=regression", "data=csv", "data.path={d}/words.csv", "data.target=label"],
     ["words.csv:2", "'dog'", "task=classification"]),
    (["task=image_classification", "data=image_folder", "data.path={d}/no_images"], ["data.path", "no images"]),
    (["task=image_classification", "data=image_folder", "data.path={d}/nothere"], ["data.path", "not found"]),
    (["task=image_classification", "data=image_folder", "data.path={d}/no_images", "data.image_size=0"],
     ["data.image_size", ">= 1"]),
    (["task=image_classification", "data=image_folder", "data.path={d}/no_images", "data.num_workers=-1"],
     ["data.num_workers", ">= 0"]),
    (["task=image_classification", "data=image_folder", "data.path={d}/no_images", "data.in_memory=maybe"],
     ["data.in_memory='maybe'", "auto"]),
    (["task=image_classification", "model=torchvision", "model.name=resnet999"], ["model.name='resnet999'", "resnet"]),
    (["task=image_classification", "model=torchvision", "model.weights={d}/nothere.pth"], ["model.weights", "no such file"]),
    (["task=image_classification", "model=torchvision", "model.weights={d}/not_weights.pth"],
     ["model.weights", "not a readable PyTorch state dict"]),
    (["task=image_classification", "model=torchvision", "model.unfreeze_at_epoch=2"], ["model.freeze_backbone=true"]),
    (["task=sentiment", "model=transformer", "model.name={d}/nothere"], ["model.name", "no such folder"]),
    # a network built for one size, given another: failed mid-run (a FAILED run), now refused before any
    (["task=image_classification", "model=torchvision", "model.name=vit_b_16", "model.weights=none"],
     ["model.name=vit_b_16 does not take 8x8 images", "Wrong image height", "data.image_size"]),
    (["task=image_classification", "model=torchvision", "model.weights=none", "optimizer=lbfgs"],
     ["optimizer=lbfgs", "model=torchvision", "parameter group"]),
]


@pytest.fixture
def files(tmp_path) -> Path:
    folder = tmp_path / "files"
    (folder / "no_images" / "train").mkdir(parents=True)
    for name, text in FILES.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("args,fragments", DATA_CASES, ids=[" ".join(a)[:70] for a, _ in DATA_CASES])
def test_a_mistake_with_your_own_files_is_one_line_exit_2_and_no_run(store, files, args, fragments):
    args = [a.replace("{d}", str(files)) for a in args]
    refused(run_cli_in_process(["trainer.max_epochs=1", *args], store), store, *fragments)


@pytest.mark.parametrize("source,fragments", [
    # a store that does not exist is said so, and not created (an empty mlruns/mlflow.db was left behind)
    ("0123456789abcdef0123456789abcdef", ["0123456789abcdef0123456789abcdef", "no MLflow store at",
                                          "--tracking-uri or MLFLOW_TRACKING_URI"]),
    ("{d}/nothere.ckpt", ["nothere.ckpt", "no such checkpoint file"]),
    # a file torch.save never wrote: said so first (it said the run folder lacked config.yaml, as for a checkpoint)
    ("{d}/not_weights.pth", ["not_weights.pth", "not a PyTorch checkpoint"]),
])
def test_pipeline_predict_on_what_is_not_a_model_is_one_line_exit_2(empty_store, files, source, fragments):
    store = empty_store
    import subprocess
    import sys

    from conftest import PROJECT_ROOT

    result = subprocess.run([sys.executable, "-m", "pipeline.cli.predict", source.replace("{d}", str(files)),
                             "--input", str(files / "good.csv"), "--output", str(files / "out.csv"),
                             "--tracking-uri", store["uri"]],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert not (files / "out.csv").exists()
    assert not Path(store["uri"].removeprefix("sqlite:///")).exists()  # no store made for a look-up
