"""Bad input gets one clear error, early, and leaves no half-logged run.

Every case goes through the CLI entry point (``pipeline.cli.train.main``). Most run in-process (the same
code path, without ~5 s of imports per case); each category also has a real ``python -m
pipeline.train`` run. "No run" is checked on the store itself: its SQLite file is never even created.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import run_cli, run_cli_in_process, runs_in


def store_file(store: dict) -> Path:
    return Path(store["uri"][len("sqlite:///"):])


def assert_refused(result, store: dict, *fragments: str, code: int = 2) -> str:
    """Non-zero exit, exactly one ``Error:`` line naming every fragment, no traceback, no MLflow run."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert not store_file(store).exists() or runs_in(store) == [], "an MLflow run was created"
    return errors[0]


# ----- unknown options and keys (Hydra composition) ------------------------------------------------
UNKNOWN_NAMES = [
    (["optimizer=adamm"], ["optimizer=adamm", "did you mean optimizer=adam?", "adam, adamw, lbfgs, rmsprop, sgd"]),
    (["experiment=textbook"], ["experiment=textbook", "textbook_mlp"]),
    (["trainer.max_epoch=3"], ["'trainer.max_epoch'", "did you mean 'trainer.max_epochs'?"]),
    (["optimzer=adam"], ["'optimzer'", "did you mean 'optimizer'?"]),
    (["data=wine", "data.val_fractoin=0.2"], ["'data.val_fractoin'", "did you mean 'data.val_fraction'?"]),
    (["+model.hidden_dim=[8]"], ["'model.hidden_dim'", "did you mean 'hidden_dims'?"]),
    (["+trainer.max_epoch=3"], ["'trainer.max_epoch'", "did you mean 'max_epochs'?"]),
    # a bundled data set has no test file of its own: "did you mean 'data.test_fraction'?" was the hint
    (["data=wine", "data.test_path=new.csv"], ["unknown key 'data.test_path': this data set reads its own files",
                                              "data=csv", "pipeline-predict"]),
    (["optimizer.lr=[0.1,"], ["cannot parse the override 'optimizer.lr=[0.1,'"]),
    # a plain word with an umlaut is not "special characters" to a user: the quoting Hydra needs, written out
    (["data=csv", "data.target=größe"], ["Hydra reads letters beyond ASCII (here ßö) only inside quotes: write "
                                         "\"data.target='größe'\""]),
    (["data=csv", "data.numeric=[größe,b]"], ["write \"data.numeric=['größe','b']\""]),
    # conf/data/_common.yaml is a base of the data options (Hydra's --help listed it beside them)
    (["data=_common"], ["data=_common: a base file that the data options build on", "Available: adult, breast_cancer"]),
    (["optimizer=SGD"], ["optimizer=SGD: no such option in conf/optimizer/; did you mean optimizer=sgd?"]),
    (["optimizer=xyzzy"], ["optimizer=xyzzy: no such option in conf/optimizer/. Available: adam, adamw"]),
    (["optimizer.lr=1e-3,1e-2"], ["optimizer.lr=1e-3,1e-2", "several values run as a multirun: add -m"]),
    # a key the class takes gets the '+' to add it; one it does not take is not sent to a '+' it would then refuse
    (["optimizer.amsgrad=true"], ["unknown key 'optimizer.amsgrad'", "needs a '+': +optimizer.amsgrad=..."]),
    (["task=image_classification", "model=cnn", "model.freeze_backbone=true"],
     ["unknown key 'model.freeze_backbone': pipeline.models.cnn.CNN takes no 'freeze_backbone'; keys under 'model'"]),
]


@pytest.mark.parametrize("args,fragments", UNKNOWN_NAMES, ids=[" ".join(a) for a, _ in UNKNOWN_NAMES])
def test_unknown_option_or_key_names_it_and_the_nearest_valid_one(store, args, fragments):
    assert_refused(run_cli_in_process(args, store), store, *fragments)


def test_a_config_file_of_ones_own_that_is_not_yaml_names_the_file_and_line(store):
    """A model YAML of one's own with a list left open (``width: [8``) was PyYAML's ParserError under ~90 lines of
    Hydra's traceback, exit 1 (a bug's); it is one line naming the file, line and column, exit 2, no run. A real
    command for one, an in-process one for a file a search chooses."""
    folder = store["tmp"] / "cd"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "mine.yaml").write_text("_target_: pipeline.models.mlp.MLP\nhidden_dims: [8\n")
    says = (f"{folder / 'model' / 'mine.yaml'}, line 3, column 1: not valid YAML: expected ',' or ']', but got "
            "'<stream end>' (while parsing a flow sequence)")
    assert_refused(run_cli(["--config-dir", str(folder), "model=mine"], store), store, says)
    (folder / "hparams_search").mkdir()
    (folder / "hparams_search" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/sweeper: pipeline_optuna\n"
        "hydra:\n  sweeper:\n    params:\n      optimizer.lr: interval(0.001, 0.01)\n     model.l1: 0\n")
    result = run_cli_in_process(["--config-dir", str(folder), "hparams_search=mine"], store)
    assert_refused(result, store, f"{folder / 'hparams_search' / 'mine.yaml'}, line 8, column 6: not valid YAML")


def test_a_model_file_without_target_or_naming_a_module_says_so(store, monkeypatch):
    """A model YAML of one's own with 'target:' for '_target_' was "config group 'model' is missing; choose one with
    model=<option>", though model=mine was chosen; a _target_ naming a module (mine_models.wide, the class left out)
    was "mine_models has no 'wide'", though the file is there. Each now says what it is, exit 2, no run."""
    package = store["tmp"] / "src" / "mine_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "wide.py").write_text("import torch.nn as nn\nclass Wide(nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(package.parent))
    folder = store["tmp"] / "cd"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "untargeted.yaml").write_text("target: pipeline.models.mlp.MLP\nhidden_dims: [8]\n")
    (folder / "model" / "module.yaml").write_text("_target_: mine_models.wide\n")
    result = run_cli_in_process(["--config-dir", str(folder), "model=untargeted"], store)
    assert_refused(result, store, "Error: model=untargeted has no _target_ (the class it builds, e.g. _target_: "
                                  "mymodels.Net); its keys: target, hidden_dims; did you mean _target_ for 'target'?")
    result = run_cli_in_process(["--config-dir", str(folder), "model=module"], store)
    assert_refused(result, store, "Error: model._target_: 'mine_models.wide' is a module, not a class or function: "
                                  "write mine_models.wide.<Class>; it defines Wide")


def test_an_unknown_option_in_a_config_files_defaults_names_the_file(store):
    """An experiment of one's own ``--config-dir`` whose defaults name a missing option gave Hydra's multi-line
    report (``In 'task/classification': Could not find 'data/nosuch'``, the search path) and exit 1: the check of
    the command line was skipped for any ``--config-dir`` or ``--config-name``."""
    folder = store["tmp"] / "cd" / "experiment"
    folder.mkdir(parents=True)
    (folder / "x.yaml").write_text("# @package _global_\ndefaults:\n- override /data: wines\n")
    result = run_cli_in_process(["--config-dir", str(folder.parent), "experiment=x"], store)
    assert_refused(result, store, f"{folder / 'x.yaml'}: its defaults choose data=wines: no such option in data/; "
                                  "did you mean data=wine?", "Available: adult, breast_cancer")
    # the other checks of the command line hold with --config-dir and --config-name too
    (folder.parent / "mine.yaml").write_text("defaults:\n  - config\n  - _self_\nseed: 7\n")
    result = run_cli_in_process(["--config-dir", str(folder.parent), "--config-name", "mine", "optimizer.lrr=1"], store)
    assert_refused(result, store, "unknown key 'optimizer.lrr'; did you mean 'optimizer.lr'?")
    # an option of one's own inside a list: the suggestion and the options offered include the config dir's
    (folder.parent / "callbacks").mkdir()
    (folder.parent / "callbacks" / "epoch_counter.yaml").write_text(
        "epoch_counter:\n  _target_: pytorch_lightning.callbacks.Timer\n")
    result = run_cli_in_process(["--config-dir", str(folder.parent), "callbacks=[default,epoch_countr]"], store)
    line = assert_refused(result, store, "callbacks=epoch_countr: no such option in conf/callbacks/; did you mean "
                                         "callbacks=epoch_counter?")
    assert "epoch_counter" in line.split("Available: ", 1)[1], line
    # an option of one's own named as a packaged one: the packaged file won (30 epochs, its lr) without a word
    (folder / "textbook_mlp.yaml").write_text("# @package _global_\noptimizer:\n  lr: 0.123\n")
    result = run_cli_in_process(["--config-dir", str(folder.parent), "experiment=textbook_mlp"], store)
    assert_refused(result, store, f"experiment=textbook_mlp: {folder / 'textbook_mlp.yaml'} has the name of the "
                                  "packaged pipeline/conf/experiment/textbook_mlp.yaml, which is read first and wins",
                   "rename yours (e.g. experiment/textbook_mlp_mine.yaml, experiment=textbook_mlp_mine)")


def test_a_sweeps_best_config_given_as_the_whole_config_names_the_command_that_trains_it(store):
    """``--config-path <sweep>/experiment --config-name <study>_best`` (the file is an experiment: overrides under
    ``# @package _global_``) was Hydra's "In 'regression_optuna_best': Could not override 'task'. No match in the
    defaults list." and exit 1 (a relative --config-path: "Primary config module ... not found"); now one line, exit
    2, with the command the sweep printed and wrote into the file."""
    sweep = store["tmp"] / "multirun" / "regression_optuna"
    (sweep / "experiment").mkdir(parents=True)
    command = f"pipeline-train --config-dir {sweep} experiment=regression_optuna_best '~tags'"
    best = sweep / "experiment" / "regression_optuna_best.yaml"
    best.write_text("# @package _global_\n# Best trial 1 of Optuna study 'regression_optuna': val/rmse_best=63.5\n"
                    f"# Run it: {command}\n# (or copy this file into conf/experiment/ and run: pipeline-train "
                    "experiment=regression_optuna_best '~tags')\ndefaults:\n- override /task: regression\n"
                    "- override /optimizer: rmsprop\noptimizer:\n  lr: 0.00024\ntrainer:\n  max_epochs: 2\n")
    for how in (["--config-path", str(best.parent), "--config-name", "regression_optuna_best"],
                [f"--config-path={os.path.relpath(best.parent)}", "--config-name=regression_optuna_best.yaml"],
                ["--config-dir", str(best.parent), "--config-name", "regression_optuna_best"]):
        result = run_cli_in_process([*how, "trainer.max_epochs=1"], store)
        line = assert_refused(result, store, f"{best} is an experiment config", f"train it with {command} "
                                             "trainer.max_epochs=1")
        assert "HYDRA_FULL_ERROR" not in result.stderr, result.stderr
        assert not store["outputs"].exists() or not any(store["outputs"].rglob(".hydra")), line
    # a file without the sweep's line, in a folder named experiment: the folder above it is the --config-dir
    mine = store["tmp"] / "mine" / "experiment" / "fast.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("# @package _global_\ntrainer:\n  max_epochs: 1\n")
    result = run_cli_in_process(["--config-path", str(mine.parent), "--config-name", "fast"], store)
    assert_refused(result, store, f"train it with pipeline-train --config-dir {mine.parent.parent} experiment=fast")


def test_help_lists_the_options_without_the_base_files(store):
    result = run_cli(["--help"], store)
    assert result.returncode == 0, result.stderr[-2000:]
    groups, _, config = result.stdout.partition("== Config ==")
    assert "\ndata: adult, breast_cancer," in groups and "_common" not in groups and "_image_files" not in groups
    assert "optimizer: adam, adamw, lbfgs, rmsprop, sgd" in groups and "max_epochs: 50" in config


def test_unknown_option_and_key_through_the_real_cli(store):
    result = run_cli(["optimizer=adamm", "trainer.max_epochs=1"], store)
    assert_refused(result, store, "optimizer=adamm", "Available: adam, adamw, lbfgs, rmsprop, sgd")
    assert "HYDRA_FULL_ERROR" not in result.stderr  # Hydra's own multi-line report is not shown

    result = run_cli(["trainer.max_epoch=3"], store)
    assert_refused(result, store, "'trainer.max_epoch'", "did you mean 'trainer.max_epochs'?")


def test_multirun_with_an_unknown_option_fails_before_any_job(store):
    result = run_cli_in_process(["-m", "optimizer=sgd,adamm", "trainer.max_epochs=1"],
                                dict(store, outputs=store["tmp"] / "sweep"))
    assert_refused(result, store, "optimizer=adamm")
    assert not (store["tmp"] / "sweep").exists()


def test_a_multirun_stopped_by_a_failing_job_says_the_jobs_after_it_did_not_run(store):
    """Hydra's basic sweeper stops at the first job that fails: the error line named only that job's problem,
    and nothing said that the jobs after it never ran."""
    import numpy as np
    import pandas as pd

    x = np.random.default_rng(0).normal(size=80)
    good, bad = store["tmp"] / "good.csv", store["tmp"] / "bad.csv"
    pd.DataFrame({"x": x, "y": np.where(x > 0, "a", "b")}).to_csv(good, index=False)
    pd.DataFrame({"x": x, "z": np.where(x > 0, "a", "b")}).to_csv(bad, index=False)
    result = run_cli(["data=csv", f"data.path={good},{bad},{good}", "data.target=y", "trainer.max_epochs=1",
                      "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false",
                      "trainer.enable_progress_bar=false"], dict(store, outputs=store["tmp"] / "sweep"), multirun=True)
    assert result.returncode == 2, result.stderr[-3000:]
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"column 'y' not in {bad}" in error
    assert error.endswith("[multirun job #1: the multirun stops here, the jobs after it did not run; job #0 ran]")
    assert [run.info.status for run in runs_in(store)] == ["FINISHED"]


# ----- wrong type or out of range (config.validate) ------------------------------------------------
OUT_OF_RANGE = [
    (["optimizer.weight_decay=null"], ["optimizer.weight_decay=null: a number is needed here; allowed: >= 0"]),
    # 'unexpected TypeError: unsupported operand type(s) for *: 'int' and 'NoneType'' (exit 1) before
    (["data.val_fraction=null"], ["data.val_fraction=null: a number is needed here; allowed: in [0, 1)"]),
    (["data.batch_size=null"], ["data.batch_size=null: a number is needed here; allowed: an integer >= 1"]),
    (["model.hidden_dims=[-3]"], ["model.hidden_dims=[-3] is out of range; allowed: a list of integers >= 1"]),
    (["model.hidden_dims=[8,0.5]"], ["model.hidden_dims=[8, 0.5] is out of range"]),
    (["optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
    (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "> 0"]),
    (["optimizer.lr=abc"], ["optimizer.lr", "must be a number", "'abc'"]),
    (["model.dropout=1.0"], ["model.dropout=1.0", "[0, 1)"]),
    (["model.dropout=-0.5"], ["model.dropout=-0.5", "[0, 1)"]),
    (["data.batch_size=0"], ["data.batch_size=0", ">= 1"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs=0", ">= 1"]),
    (["data.val_fraction=-0.1"], ["data.val_fraction=-0.1", "[0, 1)"]),
    (["data.val_fraction=1.5"], ["data.val_fraction=1.5", "[0, 1)", "0: no validation split"]),
    (["data.cv_folds=1"], ["data.cv_folds=1", ">= 2"]),
    (["data.cv_folds=5", "data.fold=5"], ["data.fold=5", "0..4"]),
    (["data.fold=2"], ["data.fold=2", "data.cv_folds"]),
    (["seed=1.5"], ["seed", "integer", "1.5"]),
    # a typo in a class path: "cannot import 'torch.optim.Adamw' (Error loading 'torch.optim.Adamw':)", the reason on
    # lines of Hydra's log
    (["optimizer._target_=torch.optim.Adamw"], ["optimizer._target_: cannot import 'torch.optim.Adamw': torch.optim "
                                                "has no 'Adamw'; did you mean 'torch.optim.AdamW'?"]),
    (["model._target_=nosuchmodule.Net"], ["model._target_: cannot import 'nosuchmodule.Net': no module named "
                                           "'nosuchmodule'"]),
    # an environment variable is text: "seed must be an integer, got '7'" did not say why or what reads it as one
    (["seed=${oc.env:PIPELINE_TEST_UNSET,7}"], ["seed must be an integer, got '7' (text, not a number: ${oc.env:...} "
                                                "gives text; seed='${oc.decode:${oc.env:NAME}}' reads the variable as a "
                                                "number"]),
    (["task.test_intervals=20"], ["task.test_intervals=20", "0 (no intervals) or 100-100000 redraws"]),
    (["task.test_intervals=0.5"], ["task.test_intervals", "0.5"]),
    (["model.hidden_dims=abc"], ["model.hidden_dims='abc'", "Sequence[int]"]),
    (["model.batch_norm=maybe"], ["model.batch_norm='maybe'", "true or false"]),
    (["data=csv", "task=regression"], ["data.path", "data.target", "must be set"]),
    (["ckpt_path=/no/such/last.ckpt"], ["ckpt_path=/no/such/last.ckpt", "no such file"]),
    # schedules that took the learning rate below 0 (gradient ascent) trained to the end, FINISHED
    (["scheduler=step", "scheduler.gamma=-1", "scheduler.step_size=1"], ["scheduler.gamma=-1 is out of range",
                                                                         "allowed: > 0"]),
    (["scheduler=step", "scheduler.gamma=0"], ["scheduler.gamma=0 is out of range", "allowed: > 0"]),
    (["scheduler=cosine", "scheduler.eta_min=-0.01"], ["scheduler.eta_min=-0.01 is out of range", "allowed: >= 0"]),
    (["scheduler=onecycle", "scheduler.max_lr=-1"], ["scheduler.max_lr=-1 is out of range", "allowed: > 0"]),
    (["scheduler=onecycle", "scheduler.max_lr=[0.1,-1]"], ["scheduler.max_lr=[0.1, -1] is out of range"]),
    (["scheduler=onecycle", "+scheduler.div_factor=-25"], ["scheduler.div_factor=-25 is out of range", "> 0"]),
    # torch's "optimizer must support momentum or beta1" alone did not say what to change
    (["optimizer=lbfgs", "model=logistic", "data.batch_size=1000", "scheduler=onecycle", "scheduler.cycle_momentum=true"],
     ["scheduler: cannot build it", "set scheduler.cycle_momentum=false"]),
    (["scheduler=plateau", "scheduler.factor=-0.5"], ["scheduler.factor=-0.5 is out of range", "in (0, 1)"]),
    (["scheduler=plateau", "scheduler.factor=0"], ["scheduler.factor=0 is out of range", "in (0, 1)"]),
    (["scheduler=plateau", "scheduler.patience=-1"], ["scheduler.patience=-1 is out of range", ">= 0"]),
    # Lightning's forms of a time limit, or seconds; "'int' object has no attribute 'total_seconds'" was the answer
    (["trainer.max_time=00:30:00"], ["trainer.max_time='00:30:00' is not a time limit", '"DD:HH:MM:SS"',
                                     "trainer.max_time={minutes: 30}", "a number of seconds"]),
    (["trainer.max_time={mins:5}"], ["trainer.max_time={'mins': 5} is not a time limit", "timedelta keys"]),
    (["trainer.max_time=0"], ["trainer.max_time=0 is not a time limit", "more than 0"]),
    # null, Lightning trained 1000 epochs without a word the user saw
    (["trainer.max_epochs=null"], ["trainer.max_epochs is not set (null or removed)", "1000 epochs",
                                   "an integer >= 1", "trainer.max_steps=N or trainer.max_time"]),
    # removed, the class's own default was used and not recorded: torch's SGD lr 0.001 where sgd.yaml says 0.01
    (["optimizer=sgd", "~optimizer.lr"], ["~optimizer.lr: removing a setting of optimizer leaves its class to use "
                                          "its own default for lr", "would not record", "optimizer.lr=<value>"]),
    (["~trainer.max_epochs"], ["~trainer.max_epochs: removing a setting of trainer", "trainer.max_epochs=<value>"]),
    # removed and set again: "unknown key 'trainer.max_epochs'; did you mean 'trainer.max_epochs'?"
    (["~trainer.max_epochs", "trainer.max_epochs=3"], ["~trainer.max_epochs: removing a setting of trainer"]),
    (["-m", "~model.dropout"], ["~model.dropout: removing a setting of model"]),
    # a group set to null: Hydra's traceback ("Config group override must be a string or a list. Got NoneType")
    (["optimizer=null"], ["optimizer=null: optimizer is a config group, set to one of its options (Available: adam, "
                          "adamw, lbfgs, rmsprop, sgd)"]),
    (["scheduler=null"], ["scheduler=null", "scheduler=none switches it off"]),
    (["+experiment=null"], ["experiment=null", "textbook_mlp", "without experiment=<option> the group is left out"]),
]


@pytest.mark.parametrize("args,fragments", OUT_OF_RANGE, ids=[" ".join(a) for a, _ in OUT_OF_RANGE])
def test_wrong_type_or_out_of_range_is_refused_before_anything_runs(store, args, fragments):
    assert_refused(run_cli_in_process(args, store), store, *fragments)


def test_a_seed_from_an_environment_variable_read_as_the_refusal_says_is_used(store):
    result = run_cli_in_process(["seed='${oc.decode:${oc.env:PIPELINE_TEST_UNSET,7}}'", "trainer.max_epochs=1"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    assert run.data.params["seed"] == "7"


def test_a_url_as_a_data_path_is_refused_with_its_password_masked(store):
    result = run_cli_in_process(["data=csv", "task=regression", "data.path=https://alice:hunter2pass@example.com/x.csv",
                                 "data.target=y"], store)
    assert_refused(result, store, "data.path=https://alice:***@example.com/x.csv is a URL", "download it first")
    assert "hunter2pass" not in result.stderr + result.stdout
    # a file: URL is named as written (file:/// was shown as file://tmp/...) with the path to give instead
    result = run_cli_in_process(["data=csv", "task=regression", "data.path=file:///tmp/x.csv", "data.target=y"], store)
    assert_refused(result, store, "data.path=file:///tmp/x.csv is a URL", "give its path (/tmp/x.csv)")


def test_out_of_range_through_the_real_cli(store):
    assert_refused(run_cli(["optimizer.lr=-1"], store), store, "optimizer.lr=-1", "allowed: > 0")
    # nothing ran: no outputs/<date>/<time>/ folder holding only Hydra's copy of the config and an empty log is
    # left behind, nor one hydra.run.dir named that the command made; a folder that was there (one the user made, the
    # one they work in) is kept, without the refused run's claim on it (the next run there wrote to <folder>-2)
    import subprocess
    import sys

    here = store["tmp"] / "here"
    (here / "theirs").mkdir(parents=True)
    for extra in ([], ["hydra.run.dir=."], ["hydra.run.dir=made"], ["hydra.run.dir=theirs"]):
        result = subprocess.run([sys.executable, "-m", "pipeline.cli.train", "optimizer.lr=-1", *extra],
                                cwd=here, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-2000:]
    assert here.is_dir() and (here / "theirs").is_dir() and not (here / "made").exists(), sorted(here.iterdir())
    assert not (here / "outputs").exists(), list((here / "outputs").rglob("*"))  # not even an empty outputs/
    assert not list(here.rglob(".pipeline-run")), list(here.rglob(".pipeline-run"))


# ----- incompatible choices --------------------------------------------------------------------------
INCOMPATIBLE = [
    (["task=regression", "data=breast_cancer"], ["data=breast_cancer", "classification data set", "regression"]),
    (["task=classification", "data=diabetes"], ["data=diabetes", "regression data set"]),
    (["task=image_classification", "model=textcnn"], ["model=textcnn", "text", "image"]),
    (["task=sentiment", "model=cnn"], ["model=cnn", "image", "text"]),
    # not "model.name=resnet18: not in the Hugging Face cache" (the text data's tokenizer defaults to model.name)
    (["task=sentiment", "model=torchvision"], ["model=torchvision takes image inputs but data=mr is text data"]),
    (["task=classification", "model=linear"], ["model=linear", "regression", "classification"]),
]


@pytest.mark.parametrize("args,fragments", INCOMPATIBLE, ids=[" ".join(a) for a, _ in INCOMPATIBLE])
def test_incompatible_choices_are_refused(store, args, fragments):
    assert_refused(run_cli_in_process(args, store), store, *fragments)


def test_incompatible_choice_through_the_real_cli(store):
    assert_refused(run_cli(["task=image_classification", "model=textcnn"], store), store,
                   "model=textcnn takes text inputs but data=digits is image data")


# ----- missing data ------------------------------------------------------------------------------------
def test_missing_fashion_mnist_says_where_it_looked_and_how_to_get_it(store, monkeypatch):
    empty = store["tmp"] / "empty"
    empty.mkdir()
    monkeypatch.delenv("PIPELINE_DATA_DIR", raising=False)
    # data.download=false: a test must not depend on (or wait for) the network
    result = run_cli(["task=image_classification", "data=fashion_mnist", f"paths.data_dir={empty}",
                      "data.download=false"], store)
    assert_refused(result, store, "train-images-idx3-ubyte.gz", f"{empty}/fashion-mnist",
                   "/usr/share/datasets/fashion-mnist", "https://github.com/zalandoresearch/fashion-mnist",
                   "dataset-fashion-mnist")


@pytest.mark.parametrize("data,folder", [("adult", "adult"), ("california_housing", "california-housing")])
def test_a_missing_table_of_the_data_folder_says_how_to_point_at_it(store, data, folder):
    empty = store["tmp"] / "empty"
    empty.mkdir()
    task = "classification" if data == "adult" else "regression"
    result = run_cli_in_process([f"task={task}", f"data={data}", f"paths.data_dir={empty}"], store)
    assert_refused(result, store, f"file not found: {empty}/{folder}/",
                   f"set PIPELINE_DATA_DIR or paths.data_dir to the folder that holds {folder}/")
    # a path of one's own gets no such hint
    result = run_cli_in_process(["data=csv", f"data.path={empty}/mine.csv", "data.target=y"], store)
    assert "paths.data_dir" not in assert_refused(result, store, f"file not found: {empty}/mine.csv")


def test_missing_movie_reviews_says_where_it_looked_and_how_to_get_it(store):
    empty = store["tmp"] / "empty"
    empty.mkdir()
    result = run_cli_in_process(["task=sentiment", f"paths.data_dir={empty}", "data.download=false"], store)
    assert_refused(result, store, "rt-polarity.pos", f"{empty}/mr", "http")


# ----- corrupt or malformed data -------------------------------------------------------------------------
def test_truncated_gz_names_the_file(store, real_data_dir):
    data_dir = store["tmp"] / "data"
    folder = data_dir / "fashion-mnist"
    folder.mkdir(parents=True)
    for source in (real_data_dir / "fashion-mnist").glob("*.gz"):
        shutil.copy(source, folder / source.name)
    broken = folder / "train-labels-idx1-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:5000])
    result = run_cli(["task=image_classification", "data=fashion_mnist", f"paths.data_dir={data_dir}",
                      "data.download=false"], store)
    assert_refused(result, store, "truncated or corrupt", str(broken))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD_ROWS = "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40))
# A missing value is no longer refused: it is imputed (tests/test_tabular.py).
MALFORMED_CSV = [
    ("non-numeric feature", "a,b,label\n1,2,0\n3,x7,1\n" + GOOD_ROWS, "classification", [":3:", "'x7'", "not a number"]),
    ("label 0.5", "a,b,label\n1,2,0\n3,4,0.5\n" + GOOD_ROWS, "classification", [":3:", "'0.5'", "not a class"]),
    ("short row", "a,b,label\n1,2,0\n3,4\n" + GOOD_ROWS, "classification", [":3:", "expected 3 columns, found 2"]),
    ("regression target text", "a,b,label\n1,2,0.5\n3,4,high\n" + GOOD_ROWS, "regression", [":3:", "'high'"]),
    ("empty file", "", "classification", ["the file is empty"]),
    ("header only", "a,b,label\n", "classification", ["no data rows"]),
    ("no target column", "a,b,y\n" + GOOD_ROWS, "classification", ["'label'", "columns are"]),
]


@pytest.mark.parametrize("case,text,task,fragments", MALFORMED_CSV, ids=[c[0] for c in MALFORMED_CSV])
def test_malformed_csv_names_file_and_line(store, case, text, task, fragments):
    path = write(store["tmp"] / "table.csv", text)
    result = run_cli_in_process([f"task={task}", "data=csv", f"data.path={path}", "data.target=label"], store)
    assert_refused(result, store, str(path), *fragments)


def test_malformed_csv_through_the_real_cli(store):
    path = write(store["tmp"] / "table.csv", "a,b,label\n1,2,0\n3,x7,1\n" + GOOD_ROWS)
    result = run_cli(["task=classification", "data=csv", f"data.path={path}", "data.target=label"], store)
    assert_refused(result, store, f"{path}:3: column 'b' holds 'x7', not a number")


MALFORMED_TSV = [
    ("row without label cell", "sentence\tlabel\ngood film\t1\nbad film\n", [":3:", "expected 2 columns"]),
    ("empty label", "sentence\tlabel\ngood film\t1\nbad film\t\n", [":3:", "missing label"]),
    ("empty file", "", ["the file is empty"]),
    ("header only", "sentence\tlabel\n", ["no data rows"]),
]


@pytest.mark.parametrize("case,text,fragments", MALFORMED_TSV, ids=[c[0] for c in MALFORMED_TSV])
def test_malformed_tsv_names_file_and_line(store, case, text, fragments):
    folder = store["tmp"] / "sst"
    path = write(folder / "train.tsv", text)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={folder}"], store)
    assert_refused(result, store, str(path), *fragments)


def test_empty_split_is_refused(store):
    result = run_cli_in_process(["data=wine", "data.limit_rows=1"], store)
    assert_refused(result, store, "wine", "split would be empty")



def test_cfg_with_a_multirun_is_one_line(store):
    """``-m seed=1,2 --cfg job`` printed Hydra's traceback ("Only one of --run, --multirun, --cfg ...")."""
    result = run_cli(["-m", "seed=1,2", "--cfg", "job"])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip() == ("Error: --cfg shows one job's config and -m runs several: give --cfg without -m, "
                                     "with one value of each swept key (e.g. seed=1 rather than seed=1,2)")


def test_an_experiments_values_for_its_own_choice_are_said_when_the_command_line_chooses_another(store):
    """experiment=textbook_mlp optimizer=adam: Adam trained at the experiment's SGD rate (0.01 for Adam's 0.001)
    without a word; an SGD-only key of an experiment was refused as unknown to Adam without naming the experiment."""
    result = run_cli(["experiment=textbook_mlp", "optimizer=adam", "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("experiment=textbook_mlp sets optimizer.lr=0.01 for its optimizer=sgd; this run's optimizer=adam (the "
            "command line) takes it too: give optimizer.lr=... for adam's own") in result.stdout + result.stderr
    given = run_cli(["experiment=textbook_mlp", "optimizer=adam", "optimizer.lr=0.001", "trainer.max_epochs=1",
                     "logger=none"], dict(store, outputs=store["outputs"].parent / "given"))
    assert given.returncode == 0 and "experiment=textbook_mlp sets" not in given.stdout + given.stderr
