"""The core pipeline through its real entry points: what a researcher sees after a run."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from conftest import compose, compose_for_train, run_cli, runs_in


def test_default_command_trains_on_bundled_data_and_says_where_results_are(store):
    result = run_cli([], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test metrics:" in result.stdout
    assert str(store["outputs"]) in result.stdout
    assert "MLflow run" in result.stdout
    runs = runs_in(store, "classification")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["test/acc"] > 0.9
    assert (store["outputs"] / "checkpoints" / "last.ckpt").is_file()


def test_linear_regression_recovers_w_and_b(store):
    from pipeline.train import train

    cfg = compose_for_train(store, ["experiment=linear_regression", "logger=none",
                                    f"paths.output_dir={store['outputs']}"])
    metrics = train(cfg)
    checkpoint = torch.load(store["outputs"] / "checkpoints" / "last.ckpt", weights_only=True)
    weight = checkpoint["state_dict"]["model.linear.weight"]
    bias = checkpoint["state_dict"]["model.linear.bias"]
    assert weight.shape == (1, 1)
    assert abs(weight.item() - 2.0) < 0.05, weight
    assert abs(bias.item() - 0.5) < 0.05, bias
    assert metrics["test/r2"] > 0.99


def test_textbook_network_reaches_90_percent_on_synthetic_binary(store):
    from pipeline.train import train

    cfg = compose_for_train(store, ["experiment=textbook_mlp", "logger=none"])
    assert cfg.model.hidden_dims == [20] and cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.01
    metrics = train(cfg)
    state = torch.load(store["outputs"] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["model.fc1.weight"].shape == (20, 10) and state["model.fc2.weight"].shape == (1, 20)
    assert metrics["test/acc"] >= 0.90, metrics


def test_same_command_twice_gives_identical_metrics(store, tmp_path):
    from pipeline.train import train

    overrides = ["task=image_classification", "model=cnn", "trainer.max_epochs=2", "logger=none",
                 "data.limit_rows=600"]
    first = train(compose_for_train(store, overrides))
    store2 = dict(store, outputs=tmp_path / "second")
    second = train(compose_for_train(store2, overrides))
    timings = ("train/epoch_time_s", "train/samples_per_s")
    assert {k: v for k, v in first.items() if k not in timings} == {k: v for k, v in second.items() if k not in timings}
    assert {"val/loss", "val/acc", "val/acc_best", "test/acc", "test/loss"} <= set(first)


def test_hydra_does_not_change_working_directory_and_writes_under_outputs():
    cfg = compose([])
    assert cfg.paths.data_dir.endswith("data") or cfg.paths.data_dir
    from hydra import compose as hydra_compose, initialize_config_dir

    from pipeline.config import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        full = hydra_compose(config_name="config", return_hydra_config=True)
    assert full.hydra.job.chdir is False
    assert full.hydra.run.dir.startswith(str(Path.cwd() / "outputs"))  # where pipeline-train is started
    assert full.hydra.sweep.dir.startswith(str(Path.cwd() / "multirun"))


def test_data_dir_follows_environment(monkeypatch):
    monkeypatch.setenv("PIPELINE_DATA_DIR", "/somewhere/else")
    assert compose([]).paths.data_dir == "/somewhere/else"
    monkeypatch.delenv("PIPELINE_DATA_DIR")
    assert compose([]).paths.data_dir == str(Path.cwd() / "data")


def test_task_selects_defaults_and_everything_can_be_overridden():
    cfg = compose(["task=image_classification", "data=digits", "model=cnn", "optimizer=rmsprop",
                   "optimizer.lr=3e-4", "optimizer.weight_decay=1e-4", "model.dropout=0.2",
                   "trainer.max_epochs=20", "seed=7"])
    assert cfg.task.name == "image_classification"
    assert cfg.optimizer._target_ == "torch.optim.RMSprop" and cfg.optimizer.lr == 3e-4
    assert cfg.model.dropout == 0.2 and cfg.trainer.max_epochs == 20 and cfg.seed == 7 and cfg.data.seed == 7
    sentiment = compose(["task=sentiment"])
    assert sentiment.data._target_.endswith("MovieReviews") and sentiment.model._target_.endswith("BagOfWords")
    regression = compose(["task=regression"])
    assert regression.data._target_.endswith("Diabetes") and regression.task.monitor == "val/rmse"


def trained_checkpoint(store, tmp_path, name: str, overrides: list[str]) -> dict:
    from pipeline.train import train

    outputs = tmp_path / name
    train(compose_for_train(dict(store, outputs=outputs), [*overrides, "logger=none", "callbacks=[model_checkpoint]"]))
    return torch.load(outputs / "checkpoints" / "last.ckpt", weights_only=True)


# (optimizer, scheduler, extra overrides, what the final learning rate must be, as a function of the initial one)
SCHEDULES = [
    ("sgd", "none", [], lambda lr0, lr: lr == lr0),
    ("adam", "cosine", [], lambda lr0, lr: lr < 0.1 * lr0),
    ("adamw", "step", ["scheduler.step_size=1"], lambda lr0, lr: lr == pytest.approx(lr0 * 0.01)),
    ("rmsprop", "onecycle", [], lambda lr0, lr: lr < 0.1 * lr0),
    ("sgd", "plateau", [], lambda lr0, lr: lr == lr0),
]
LEARNING_RATES = {"sgd": 0.05, "adam": 0.01, "adamw": 0.01, "rmsprop": 0.001}
OPTIMIZER_STATE_KEYS = {"sgd": "momentum", "adam": "amsgrad", "adamw": "amsgrad", "rmsprop": "alpha"}


@pytest.mark.parametrize("optimizer,scheduler,extra,final_lr", SCHEDULES, ids=[f"{o}-{s}" for o, s, _, _ in SCHEDULES])
def test_every_optimizer_and_scheduler_trains(store, tmp_path, optimizer, scheduler, extra, final_lr):
    from pipeline.train import train

    lr = LEARNING_RATES[optimizer]
    metrics = train(compose_for_train(store, [f"optimizer={optimizer}", f"scheduler={scheduler}", *extra,
                                              "trainer.max_epochs=2", "logger=none", "callbacks=[model_checkpoint]",
                                              f"optimizer.lr={lr}"]))
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert len(losses) == 2 and losses[1] < losses[0], losses  # it learns
    assert metrics["test/acc"] > 0.7  # above the majority class (0.63)
    checkpoint = torch.load(store["outputs"] / "checkpoints" / "last.ckpt", weights_only=True)
    group = checkpoint["optimizer_states"][0]["param_groups"][0]
    assert OPTIMIZER_STATE_KEYS[optimizer] in group  # the optimizer asked for, not a default one
    assert (optimizer == "adamw") == (group.get("decoupled_weight_decay", optimizer == "adamw") and group["weight_decay"] > 0)
    assert bool(checkpoint["lr_schedulers"]) == (scheduler != "none")
    assert final_lr(lr, group["lr"]), (lr, group["lr"])


def _weights(checkpoint: dict) -> torch.Tensor:
    return torch.cat([v.flatten() for k, v in checkpoint["state_dict"].items() if k.endswith("weight")])


# ----- the short loop (the task module steps the optimizer) against Lightning's automatic loop --------------------
LOOP_RUN = ["task=regression", "logger=none", "callbacks=[model_checkpoint]", "optimizer=sgd", "optimizer.lr=0.05",
            "trainer.max_epochs=4"]
# a clipping threshold no gradient reaches: Lightning's automatic loop (clipping is its part), the same arithmetic
AUTOMATIC_LOOP = ["trainer.gradient_clip_val=1e9"]
PLATEAU = ["scheduler=plateau", "scheduler.patience=0", "+scheduler.threshold=0.5"]  # no epoch improves by 50 %


def _loop_run(store: dict, folder: Path, overrides: list[str]) -> tuple[dict, list[dict], dict]:
    """Test metrics and the per-epoch history (both without timings), and last.ckpt of one in-process run."""
    from pipeline.train import train

    metrics = train(compose_for_train(dict(store, outputs=folder), [*LOOP_RUN, *overrides]))
    untimed = lambda values: {k: v for k, v in values.items() if "time" not in k and "per_s" not in k}  # noqa: E731
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return (untimed(metrics), [untimed(row) for row in rows],
            torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True))


def _steps(checkpoint: dict) -> tuple[int, int]:
    """Optimizer steps counted by Lightning's automatic loop and by the manual (short) one."""
    loops = checkpoint["loops"]["fit_loop"]
    return (loops["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"],
            loops["epoch_loop.manual_optimization.optim_step_progress"]["total"]["completed"])


@pytest.mark.parametrize("schedule", [["scheduler=onecycle"], PLATEAU], ids=["per-step-onecycle", "per-epoch-plateau"])
def test_the_short_loop_trains_what_lightnings_automatic_loop_trains(store, tmp_path, schedule):
    short = _loop_run(store, tmp_path / "short", schedule)
    automatic = _loop_run(store, tmp_path / "automatic", [*schedule, *AUTOMATIC_LOOP])
    assert _steps(short[2]) == (0, short[2]["global_step"]) and _steps(automatic[2]) == (automatic[2]["global_step"], 0)
    assert short[2]["global_step"] == automatic[2]["global_step"] > 0
    assert short[0] == automatic[0] and short[1] == automatic[1]  # test metrics, every epoch's values
    for key, value in short[2]["state_dict"].items():
        assert torch.equal(value, automatic[2]["state_dict"][key]), key
    (short_schedule,), (automatic_schedule,) = short[2]["lr_schedulers"], automatic[2]["lr_schedulers"]
    if schedule == PLATEAU:  # the short loop's last.ckpt holds the epoch's step: what makes its resume exact (below)
        assert short_schedule["last_epoch"] == automatic_schedule["last_epoch"] + 1
    else:
        assert short_schedule == automatic_schedule
    assert short[2]["optimizer_states"][0]["param_groups"][0]["lr"] < 0.05  # the schedule did lower the rate


def test_a_plateau_schedule_is_stepped_on_the_epochs_that_validate(store, tmp_path):
    """With trainer.check_val_every_n_epoch=2 the run failed after its first epoch ("ReduceLROnPlateau conditioned on
    metric val/loss which is not available"): the schedule is now stepped after each validation, in both loops."""
    every_other = [*PLATEAU, "trainer.check_val_every_n_epoch=2"]
    short = _loop_run(store, tmp_path / "short", every_other)
    automatic = _loop_run(store, tmp_path / "automatic", [*every_other, *AUTOMATIC_LOOP])
    assert short[0] == automatic[0] and short[1] == automatic[1]
    # the second validation lowered the rate; the short loop's last.ckpt holds that step (Lightning's saves before it)
    assert short[2]["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.025)
    assert short[2]["lr_schedulers"][0]["last_epoch"] == automatic[2]["lr_schedulers"][0]["last_epoch"] + 1 == 2
    # last.ckpt is written at the end of the epoch that validates (it was before the epoch's end: a run resumed from
    # it logged train/loss 0 for that epoch again, and went on without the epoch's scheduler step)
    _loop_run(store, tmp_path / "half", [*every_other, "trainer.max_epochs=2"])
    half = torch.load(tmp_path / "half" / "checkpoints" / "last.ckpt", weights_only=True)
    assert half["lr_schedulers"][0]["last_epoch"] == 1  # the step after epoch 2's validation is in it
    resumed = _loop_run(store, tmp_path / "resumed",
                        [*every_other, f"ckpt_path={tmp_path / 'half' / 'checkpoints' / 'last.ckpt'}"])
    assert resumed[0] == short[0] and resumed[1] == short[1]  # no row of 0s (epochs 1-2 copied from the checkpoint)
    assert resumed[2]["lr_schedulers"] == short[2]["lr_schedulers"]


def test_a_schedule_or_callback_of_ones_own_without_a_mode_follows_task_mode(store, tmp_path):
    """A plateau schedule and early stopping of one's own config dir without ``mode``, watching val/acc (max): torch's
    and Lightning's default, min, halved the rate after each better epoch and stopped the run while val/acc rose."""
    from conftest import run_cli_in_process, runs_in

    mine = tmp_path / "my_conf"
    (mine / "scheduler").mkdir(parents=True)
    (mine / "callbacks").mkdir()
    (mine / "scheduler" / "myplateau.yaml").write_text(
        "_target_: torch.optim.lr_scheduler.ReduceLROnPlateau\n_partial_: true\nfactor: 0.5\npatience: 0\n")
    (mine / "callbacks" / "my_es.yaml").write_text(
        "my_es:\n  _target_: pytorch_lightning.callbacks.EarlyStopping\n  monitor: ${task.monitor}\n  patience: 1\n")
    common = ["--config-dir", str(mine), "scheduler=myplateau", "task.monitor=val/acc", "task.mode=max",
              "trainer.max_epochs=3", "callbacks=[default,my_es]"]
    result = run_cli_in_process(common, store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    assert run.data.params["scheduler.mode"] == "max" and run.data.params["callbacks.my_es.mode"] == "max"
    # a direction set against task.mode is refused, for a callback as for the schedule
    refused = run_cli_in_process([*common, "+callbacks.my_es.mode=min"], store)
    assert refused.returncode == 2 and ("callbacks.my_es.mode=min: callbacks.my_es watches val/acc, whose better "
                                        "direction is task.mode=max") in refused.stderr, refused.stderr[-2000:]


def test_a_run_records_the_code_of_its_own_callbacks_and_models(store, tmp_path, monkeypatch):
    """git_commit covers the pipeline, not a --config-dir's module: a model or callback edited between two runs left
    no trace in MLflow. Its code is now an artifact (code/<module>.py, secrets masked) and a tag (code.<module>: a
    digest)."""
    from conftest import run_cli_in_process, runs_in

    (tmp_path / "my_callbacks.py").write_text(
        "import pytorch_lightning as pl\n"
        "API_TOKEN = 'hf_abcdefghijklmnopqrstuvwxyz123456'\n"
        "class Counter(pl.Callback):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_conf" / "callbacks").mkdir(parents=True)
    (tmp_path / "my_conf" / "callbacks" / "counter.yaml").write_text("counter:\n  _target_: my_callbacks.Counter\n")
    result = run_cli_in_process(["--config-dir", str(tmp_path / "my_conf"), "callbacks=[default,counter]",
                                 "trainer.max_epochs=1", "logger.mlflow.log_model=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    assert re.fullmatch(r"[0-9a-f]{12}", run.data.tags["code.my_callbacks"]), run.data.tags
    assert not any(tag.startswith("code.pipeline") or tag.startswith("code.torch") for tag in run.data.tags)
    logged = (Path(run.info.artifact_uri.removeprefix("file://")) / "code" / "my_callbacks.py").read_text()
    assert "class Counter(pl.Callback)" in logged and "hf_abc" not in logged


def test_a_model_or_callback_of_ones_own_that_cannot_serve_is_refused_before_any_run(store, tmp_path, monkeypatch):
    """A model of one's own giving [rows, 3] on a binary task failed in the loss (exit 1, "Target size ([46]) must be
    the same as input size ([46, 3])", the run FAILED); a class that is no callback failed mid-run ("'NotACallback'
    object has no attribute 'on_exception'"). Both are now one line, exit 2, before any run."""
    from conftest import run_cli_in_process, runs_in

    (tmp_path / "mine_pkg.py").write_text(
        "import torch.nn as nn\n"
        "class WrongShape(nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs, dropout=0.0, l1=0.0):\n"
        "        super().__init__()\n        self.l1 = l1\n        self.fc = nn.Linear(input_shape[0], 3)\n"
        "    def forward(self, x):\n        return self.fc(x)\n"
        "class NotACallback:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = tmp_path / "my_conf"
    (mine / "model").mkdir(parents=True)
    (mine / "callbacks").mkdir()
    (mine / "model" / "wrong.yaml").write_text("_target_: mine_pkg.WrongShape\n")
    (mine / "callbacks" / "odd.yaml").write_text("odd:\n  _target_: mine_pkg.NotACallback\n")
    for args, says in (
            (["model=wrong"], "Error: model._target_=mine_pkg.WrongShape: its forward gives outputs of shape [2, 3] "
                              "for 2 rows; this task needs [2, 1] (one logit per row for two classes"),
            (["callbacks=[default,odd]"], "Error: callbacks.odd: mine_pkg.NotACallback builds a NotACallback, not a "
                                          "Lightning callback")):
        refused = run_cli_in_process(["--config-dir", str(mine), *args, "trainer.max_epochs=1"], store)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr[-2000:]
    assert runs_in(store) == []


def test_a_model_of_ones_own_that_is_no_module_or_gives_a_tuple_is_named_for_what_it_is(store, tmp_path, monkeypatch):
    """A model class that does not subclass nn.Module was "unexpected AttributeError: 'NotAModule' object has no
    attribute 'training'" (exit 1, a bug's, traceback in error.log); a forward returning (outputs, features) was
    said to give "outputs of shape []". Both are one line naming what the class built or gave, exit 2, no run."""
    from conftest import error_line, model_of_ones_own, run_cli_in_process, runs_in

    mine = model_of_ones_own(tmp_path, monkeypatch, "mine_odd", (
        "import torch.nn as nn\n"
        "class NotAModule:\n"
        "    def __init__(self, input_shape, num_outputs, dropout=0.0, l1=0.0):\n        self.l1 = l1\n"
        "    def __call__(self, x):\n        return x[:, :1]\n"
        "class Pair(nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs, dropout=0.0, l1=0.0):\n"
        "        super().__init__()\n        self.l1 = l1\n        self.fc = nn.Linear(input_shape[0], num_outputs)\n"
        "    def forward(self, x):\n        return self.fc(x), x\n"),
        {"plain": "_target_: mine_odd.NotAModule\n", "pair": "_target_: mine_odd.Pair\n"})
    for choice, says in (
            ("plain", "Error: model._target_=mine_odd.NotAModule built a mine_odd.NotAModule, not a torch.nn.Module: "
                      "a model is a class of nn.Module (class Mine(nn.Module), calling super().__init__() first) or "
                      "a function that returns one"),
            ("pair", "Error: model._target_=mine_odd.Pair: its forward gives a tuple, not a tensor, for 2 rows; this "
                     "task needs [2, 1] (one logit per row for two classes: the model is built with num_outputs, "
                     "which its last layer must give)")):
        refused = run_cli_in_process(["--config-dir", str(mine), f"model={choice}", "trainer.max_epochs=1"], store)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert error_line(refused.stderr) == says
    assert runs_in(store) == []


def test_a_model_of_ones_own_that_takes_l1_without_keeping_it_is_refused_a_penalty(store, tmp_path, monkeypatch):
    """The training loss reads the L1 penalty from the model's ``l1`` attribute (docs/training.md: "store self.l1"). A
    class taking ``l1`` without keeping it trained with no penalty while the run logged model.l1=0.01, exit 0, and a
    sweep over model.l1 searched a value that changed nothing. Refused now, one line, exit 2, before any run."""
    from conftest import error_line, model_of_ones_own, run_cli_in_process, runs_in

    mine = model_of_ones_own(tmp_path, monkeypatch, "mine_l1", (
        "import torch.nn as nn\n"
        "class Forgets(nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs, dropout=0.0, l1=0.0):\n"
        "        super().__init__()\n        self.fc = nn.Linear(input_shape[0], num_outputs)\n"
        "    def forward(self, x):\n        return self.fc(x)\n"),
        {"forgets": "_target_: mine_l1.Forgets\ndropout: 0.0\nl1: 0.0\n"})
    refused = run_cli_in_process(["--config-dir", str(mine), "model=forgets", "model.l1=0.01", "trainer.max_epochs=1",
                                  "logger.mlflow.log_model=false"], store)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert error_line(refused.stderr) == (
        "Error: model.l1=0.01: mine_l1.Forgets keeps no l1 (self.l1 = l1 in its __init__), which the training loss "
        "reads: the penalty would not be applied; store it, or leave model.l1 at 0")
    assert runs_in(store) == []


def test_a_model_of_ones_own_without_the_categorical_arguments_is_told_them_and_onehot(store, tmp_path, monkeypatch):
    """A class of one's own taking only (input_shape, num_outputs, dropout, l1), on a table with a string column, was
    "model: cannot build it: Plain.__init__() got an unexpected keyword argument 'categorical_cardinalities'": it
    named neither the categorical column nor the two ways out docs/training.md gives. It names them now, exit 2, no
    run; with data.categorical_encoding=onehot the same class trains."""
    from conftest import error_line, model_of_ones_own, run_cli_in_process, runs_in

    mine = model_of_ones_own(tmp_path, monkeypatch, "mine_plain", (
        "import torch.nn as nn\n"
        "class Plain(nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs, dropout=0.0, l1=0.0):\n"
        "        super().__init__()\n        self.l1 = l1\n        self.fc = nn.Linear(input_shape[0], num_outputs)\n"
        "    def forward(self, x):\n        return self.fc(x)\n"),
        {"plain": "_target_: mine_plain.Plain\ndropout: 0.0\nl1: 0.0\n"})
    table = tmp_path / "rows.csv"
    table.write_text("x,site,y\n" + "".join(f"{i * 0.5},{'abc'[i % 3]},{i % 2}\n" for i in range(90)))
    common = ["--config-dir", str(mine), "model=plain", "task=classification", "data=csv", f"data.path={table}",
              "data.target=y", "trainer.max_epochs=1", "logger.mlflow.log_model=false"]
    refused = run_cli_in_process(common, store)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert error_line(refused.stderr) == (
        "Error: model._target_=mine_plain.Plain takes no categorical_cardinalities or categorical_unknown_seen: the "
        "table has 1 categorical column, given to the model as the category codes that close each row, with their cardinalities "
        "(docs/training.md, 'A model of your own'); take categorical_cardinalities and categorical_unknown_seen, or "
        "set data.categorical_encoding=onehot (one-hot columns, no argument)")
    assert runs_in(store) == []
    trained = run_cli_in_process([*common, "data.categorical_encoding=onehot"], store)
    assert trained.returncode == 0, trained.stderr[-2000:]


def test_a_run_resumed_under_a_plateau_schedule_matches_the_uninterrupted_run(store, tmp_path):
    """ReduceLROnPlateau lowers the rate after an epoch's validation; a run resumed from that epoch's last.ckpt
    goes on with the lowered rate (Lightning's automatic loop saved the checkpoint before stepping it and did not
    step it on resume: the resumed epochs trained at the old rate)."""
    full = _loop_run(store, tmp_path / "full", PLATEAU)
    _loop_run(store, tmp_path / "half", [*PLATEAU, "trainer.max_epochs=2"])
    resumed = _loop_run(store, tmp_path / "resumed", [*PLATEAU, f"ckpt_path={tmp_path / 'half' / 'checkpoints' / 'last.ckpt'}"])
    assert resumed[0] == full[0]
    assert resumed[1] == full[1]  # the epochs before the resume copied from the checkpoint
    assert resumed[2]["lr_schedulers"] == full[2]["lr_schedulers"] and resumed[2]["global_step"] == full[2]["global_step"]


def test_a_checkpoint_of_the_automatic_loop_resumes_in_the_short_loop_with_its_step_count(store, tmp_path):
    schedule = ["scheduler=step", "scheduler.step_size=1"]
    full = _loop_run(store, tmp_path / "full", schedule)
    half = _loop_run(store, tmp_path / "half", [*schedule, *AUTOMATIC_LOOP, "trainer.max_epochs=2"])
    assert _steps(half[2]) == (half[2]["global_step"], 0) and half[2]["global_step"] > 0
    resumed = _loop_run(store, tmp_path / "resumed", [*schedule, f"ckpt_path={tmp_path / 'half' / 'checkpoints' / 'last.ckpt'}"])
    assert resumed[2]["global_step"] == full[2]["global_step"] == 2 * half[2]["global_step"]
    assert resumed[0] == full[0]
    assert resumed[1] == full[1]  # the epochs before the resume copied from the checkpoint


def test_each_regularization_option_changes_the_trained_model_the_way_it_should(store, tmp_path):
    common = ["trainer.max_epochs=4", "optimizer.lr=0.01", "model.hidden_dims=[32]"]
    base = trained_checkpoint(store, tmp_path, "base", common)
    w0 = _weights(base)

    l1 = _weights(trained_checkpoint(store, tmp_path, "l1", [*common, "model.l1=1e-3"]))
    assert l1.abs().sum() < 0.9 * w0.abs().sum()  # L1 shrinks the absolute weights
    decay = _weights(trained_checkpoint(store, tmp_path, "decay", [*common, "optimizer=adamw", "optimizer.lr=0.01",
                                                                    "optimizer.weight_decay=0.5"]))
    no_decay = _weights(trained_checkpoint(store, tmp_path, "no_decay", [*common, "optimizer=adamw",
                                                                         "optimizer.weight_decay=0.0"]))
    assert decay.norm() < 0.95 * no_decay.norm()  # weight decay shrinks the weights
    dropout = _weights(trained_checkpoint(store, tmp_path, "dropout", [*common, "model.dropout=0.5"]))
    assert not torch.allclose(dropout, w0)  # dropout masks change what is learnt
    clipped = trained_checkpoint(store, tmp_path, "clipped", [*common, "trainer.gradient_clip_val=0.001",
                                                              "optimizer=sgd", "optimizer.momentum=0.0"])
    unclipped = trained_checkpoint(store, tmp_path, "unclipped", [*common, "optimizer=sgd", "optimizer.momentum=0.0"])
    initial = trained_checkpoint(store, tmp_path, "initial", [*common, "optimizer=sgd", "optimizer.lr=1e-12"])
    moved = lambda ckpt: (_weights(ckpt) - _weights(initial)).norm()  # noqa: E731
    assert moved(clipped) < 0.5 * moved(unclipped)  # clipped gradients move the weights less
    smoothed = trained_checkpoint(store, tmp_path, "smoothed", [*common, "task.label_smoothing=0.2"])
    # with smoothed targets the logits stay smaller: the last layer's weights are smaller
    last = lambda ckpt: [v for k, v in ckpt["state_dict"].items() if k.endswith("weight")][-1].norm()  # noqa: E731
    assert last(smoothed) < last(base)


def test_early_stopping_stops_when_the_monitor_stalls_and_says_so(store, capsys):
    from pipeline.train import train

    train(compose_for_train(store, ["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=2",
                                    "trainer.max_epochs=200", "optimizer.lr=0.05", "logger=none"]))
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    epochs = max(row["epoch"] for row in rows if "train/loss" in row) + 1
    assert epochs < 200
    # the console's last epoch line alone did not say why it was the last
    assert f"Stopped early after epoch {epochs} of 200: Monitored metric val/loss did not improve in the last 2 " \
        "records. Best score: " in capsys.readouterr().out


def test_last_checkpoint_holds_the_last_epoch_also_after_epochs_without_improvement(store):
    """pytorch-lightning 2.6 alone leaves last.ckpt at the best epoch; a resume must start after the last one."""
    from pipeline.train import train

    # by accuracy, which stops improving once it is reached (ties do not replace the best)
    train(compose_for_train(store, ["trainer.max_epochs=60", "task.monitor=val/acc", "task.mode=max", "logger=none"]))
    checkpoints = store["outputs"] / "checkpoints"
    [best] = checkpoints.glob("best-epoch*.ckpt")
    best_epoch = torch.load(best, weights_only=True)["epoch"]
    assert best_epoch < 59, "the run must end with epochs that do not improve for this test to mean anything"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["epoch"] == 59 and last["global_step"] == 60 * 7  # 409 rows, batch 64


def test_resume_from_checkpoint_continues_training(store, tmp_path):
    from pipeline.train import train

    train(compose_for_train(store, ["trainer.max_epochs=2", "logger=none"]))
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    store2 = dict(store, outputs=tmp_path / "resumed")
    train(compose_for_train(store2, ["trainer.max_epochs=4", "logger=none", f"ckpt_path={last}"]))
    resumed = torch.load(store2["outputs"] / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 3
    # what the saved state would override silently, or fail on after set-up, is refused before training
    from pipeline.errors import ConfigError

    refusals = {"optimizer.lr=0.5": r"its optimizer has lr=0\.\d+, this config gives lr=0\.5; a resumed run continues",
                "optimizer=sgd": r"was written by another optimizer \(it has no .*momentum",
                "trainer.max_epochs=1": r"was written in epoch 2, past trainer.max_epochs=1; resume with trainer.max_epochs>=2"}
    for number, (override, message) in enumerate(refusals.items()):
        with pytest.raises(ConfigError, match=message):
            train(compose_for_train(dict(store, outputs=tmp_path / f"refused{number}"),
                                    ["trainer.max_epochs=4", "logger=none", override, f"ckpt_path={last}"]))


def test_a_resume_with_another_patience_or_dropout_stops_by_the_new_patience_and_says_what_changed(store):
    """Lightning loaded the checkpoint's early-stopping patience over the config's: a run resumed with patience 3 logged
    3 and stopped by the saved 8 (its rerun then stopped elsewhere). Settings a resume may change (dropout, l1, class
    weights, patience) changed without a word, while the run's params named the new values for every epoch."""
    from conftest import rerun_cli

    # min_delta 10: no epoch after the first improves, so the count of epochs without improvement is the epoch count
    stopping = ["callbacks=[default,early_stopping]", "callbacks.early_stopping.min_delta=10",
                "logger.mlflow.log_plots=false", "trainer.enable_progress_bar=false"]
    first = run_cli([*stopping, "callbacks.early_stopping.patience=8", "trainer.max_epochs=3"], store)
    assert first.returncode == 0, first.stderr[-3000:]
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    resumed = run_cli([*stopping, "callbacks.early_stopping.patience=3", "model.dropout=0.25", "trainer.max_epochs=10",
                       f"ckpt_path={last}"], store)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Stopped early after epoch 4 of 10" in resumed.stdout, resumed.stdout[-2000:]
    said = resumed.stdout + resumed.stderr
    assert "callbacks.early_stopping.patience 8 -> 3; model.dropout 0.0 -> 0.25" in said, said[-3000:]
    run = next(r for r in runs_in(store) if r.data.tags.get("resumed_from_checkpoint"))
    assert run.data.tags["changed_on_resume"] == ("callbacks.early_stopping.patience 8 -> 3; model.dropout 0.0 -> 0.25 "
                                                  "after the checkpoint of epoch 3")
    assert run.data.params["callbacks.early_stopping.patience"] == "3"
    code, stdout, stderr = rerun_cli([run.info.run_id, "--tracking-uri", store["uri"], "trainer.max_epochs=1",
                                      "--output-dir", str(store["tmp"] / "rerun")])
    assert code == 0, stderr[-3000:]
    assert "was resumed with other settings than it began with (callbacks.early_stopping.patience 8 -> 3" in stdout


def test_console_output_is_one_line_per_epoch_without_adverts_when_not_on_a_terminal(store):
    result = run_cli(["trainer.max_epochs=3", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/3", "2/3", "3/3"], result.stdout
    assert all("train/loss" in line and "val/loss" in line and line.endswith(" s") for line in epoch_lines)
    for noise in ("litlogger", "Tip:", "GPU available", "TPU available", "v_num"):
        assert noise not in printed, noise
    # and the run's folder keeps what it printed: train.log held Hydra's log records alone (nearly always none)
    kept = (store["outputs"] / "train.log").read_text().splitlines()
    assert [line for line in kept if line.startswith("epoch ")] == epoch_lines
    assert kept[0].startswith("Data: breast_cancer") and any(line.startswith("Test metrics:") for line in kept), kept


def test_an_epoch_without_validation_prints_no_validation_values(store):
    """With trainer.check_val_every_n_epoch=2 the line of an epoch that did not validate repeated the last
    validation's values as if measured that epoch."""
    result = run_cli(["trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert ["val/loss" in line for line in lines] == [False, True, False, True], lines


def test_max_time_stops_a_run_inside_its_first_epoch(store):
    """200,000 rows in steps of 4: a whole epoch would take minutes; max_time stops it after 2 s."""
    import json

    result = run_cli(["data=synthetic_binary", "data.n_samples=200000", "data.batch_size=4", "data.eval_batch_size=8192",
                      "trainer.max_time=00:00:00:02", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    [train_row] = [row for row in rows if "train/loss" in row]  # one (partial) epoch
    trained = train_row["train/samples_per_s"] * train_row["train/epoch_time_s"]
    assert trained < 0.5 * 140_000, trained
    assert (result.stdout + result.stderr).count("Time limit reached") <= 1
    assert "Test metrics:" in result.stdout
    # said, as early stopping is: a run the clock cut short is not taken for one that trained its epochs
    assert "Stopped by the time limit after epoch 1 of 50: trainer.max_time (2 s) ran out" in result.stdout


def test_a_run_the_time_limit_stopped_is_tagged_so(store):
    result = run_cli(["data=synthetic_binary", "data.n_samples=200000", "data.batch_size=4", "data.eval_batch_size=8192",
                      "trainer.max_time=2", "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert {k: run.data.tags.get(k) for k in ("stopped_by", "max_time", "stopped_early_at_epoch")} == {
        "stopped_by": "trainer.max_time", "max_time": "2 s", "stopped_early_at_epoch": "1"}
    # pipeline-compare's epochs: those it trained, of trainer.max_epochs (it showed 50, as for a run that trained them)
    from pipeline.cli.compare import main

    assert main(["--tracking-uri", store["uri"], "--output", str(store["tmp"] / "compare")]) == 0
    with (store["tmp"] / "compare" / "compare.csv").open() as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["epochs"], row["max_epochs"]) == ("1", "50")  # numbers a spreadsheet sorts; the console shows 1/50


@pytest.mark.parametrize("limit", ["{seconds: 2}", "2"])
def test_max_time_as_timedelta_keys_or_seconds_stops_the_run(store, limit):
    """Lightning's dict of timedelta keys failed ('Missing key total_seconds': it came as a DictConfig) and a
    number ('int' object has no attribute 'total_seconds'); both are limits now."""
    from conftest import run_cli_in_process

    result = run_cli_in_process(["data=synthetic_binary", "data.n_samples=200000", "data.batch_size=4",
                                 "data.eval_batch_size=8192", f"trainer.max_time={limit}", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    [train_row] = [row for row in rows if "train/loss" in row]
    assert train_row["train/samples_per_s"] * train_row["train/epoch_time_s"] < 0.5 * 140_000
    assert "Test metrics:" in result.stdout


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_gradient_clipping_under_bf16_mixed_trains_the_unfused_optimizer_and_says_so(store, optimizer):
    """Lightning refuses to clip a fused optimizer's gradients under mixed precision: the default (fused) Adam with
    bf16-mixed and gradient clipping failed in its first step, a FAILED run. The unfused optimizer trains, said in
    one line, and the run records the optimizer it built."""
    from conftest import run_cli_in_process

    result = run_cli_in_process([f"optimizer={optimizer}", "trainer.precision=bf16-mixed",
                                 "trainer.gradient_clip_val=1", "trainer.max_epochs=1"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert printed.count("optimizer.fused=false for this run") == 1, printed[-3000:]
    assert "trainer.precision=bf16-mixed" in printed and "Test metrics:" in result.stdout
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and run.data.params["optimizer.fused"] == "False"


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_lr_monitor_records_each_step_or_epoch_under_its_epoch(store, interval):
    """callbacks.lr_monitor.logging_interval=step logged nothing on breast_cancer (7 steps per epoch, Lightning logs
    every 50th), and the epoch interval's values were filed under the step count as their epoch (0, 7, 14)."""
    from mlflow import MlflowClient

    from conftest import run_cli_in_process

    result = run_cli_in_process(["callbacks=[default,lr_monitor]", f"callbacks.lr_monitor.logging_interval={interval}",
                                 "scheduler=onecycle", "trainer.max_epochs=2"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    rates = [row for row in rows if "lr-Adam" in row]
    [run] = runs_in(store)
    logged = MlflowClient(store["uri"]).get_metric_history(run.info.run_id, "lr-Adam")
    if interval == "step":  # 7 optimizer steps per epoch, each with its rate: the one-cycle schedule rises and falls
        assert [(row["epoch"], row["step"]) for row in rates] == [(step // 7, step) for step in range(14)]
        values = [row["lr-Adam"] for row in rates]
        assert len(set(values)) == 14 and max(values) == pytest.approx(1e-3, rel=0.05)
        assert sorted((m.step, m.value) for m in logged) == [(row["step"], row["lr-Adam"]) for row in rates]
    else:
        assert [row["epoch"] for row in rates] == [0, 1] and all("step" not in row for row in rates)
        assert sorted(m.step for m in logged) == [0, 1]


# ----- data.val_fraction=0: every training row trains, the last epoch is tested -----------------------------
def test_without_a_validation_split_every_training_row_trains_and_the_last_epoch_is_tested(store):
    result = run_cli(["data.val_fraction=0", "trainer.max_epochs=3"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("Data: breast_cancer in memory: 455 train / 0 validation / 114 test rows; no validation split "
            "(data.val_fraction=0): the last epoch is tested") in result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith("Checkpoint of the last epoch")]
    tested = torch.load(line.split(": ", 1)[1], weights_only=True)
    assert tested["epoch"] == 2 and tested["global_step"] == 3 * 8  # 455 rows, batch 64: 8 steps an epoch
    assert Path(line.split(": ", 1)[1]).name == "epoch002.ckpt"  # not best-epoch002: nothing chose it as best
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and run.data.params["data.val_fraction"] == "0"
    assert {"test/acc", "train/loss"} <= set(run.data.metrics)
    assert not [name for name in run.data.metrics if name.startswith("val/")]
    contexts = sorted(tag.value for record in run.inputs.dataset_inputs for tag in record.tags)
    assert contexts == ["testing", "training"]


@pytest.mark.parametrize("override,named", [
    ("callbacks=[default,early_stopping]", "callbacks.early_stopping stops on val/loss"),
    ("scheduler=plateau", "scheduler=plateau steps on val/loss"),
])
def test_without_a_validation_split_what_watches_validation_is_refused(empty_store, override, named):
    from conftest import run_cli_in_process

    result = run_cli_in_process(["data.val_fraction=0", override], empty_store)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"Error: data.val_fraction=0 leaves no validation split, and {named}" in result.stderr
    assert not (Path(empty_store["artifacts"]).parent / "mlflow.db").exists()  # no run, not even a store


def test_a_sweep_without_a_validation_split_is_refused_before_its_study_exists(store, tmp_path):
    result = run_cli(["hparams_search=classification_optuna", "data.val_fraction=0", "hydra.sweeper.n_trials=2",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], store, multirun=True)
    assert result.returncode == 2, result.stderr[-3000:]
    assert ("Error: a trial of this search cannot run: data.val_fraction=0 leaves no validation split, and a sweep "
            "selects its trials on val/loss") in result.stderr
    assert not (Path(store["artifacts"]).parent / "optuna").exists()  # no study


@pytest.mark.unit
def test_without_a_validation_split_the_datas_own_validation_rows_train_too():
    from pipeline.data.base import InMemoryDataModule, LoadedData, Split

    def rows(start, stop):
        return Split(torch.arange(start, stop, dtype=torch.float32).view(-1, 1), torch.zeros(stop - start))

    module = InMemoryDataModule(val_fraction=0)
    train, val, test = module._split(LoadedData(train=rows(0, 8), val=rows(8, 10), test=rows(10, 13)))
    assert train.x.view(-1).tolist() == list(range(10)) and len(val) == 0 and len(test) == 3
    train, val, _ = InMemoryDataModule(val_fraction=0.25)._split(LoadedData(train=rows(0, 8), val=rows(8, 10),
                                                                           test=rows(10, 13)))
    assert len(train) == 8 and len(val) == 2  # otherwise the data's validation rows are the validation split


def test_without_a_validation_split_a_resumed_run_ends_as_the_uninterrupted_one(store, tmp_path):
    from pipeline.train import train

    common = ["data.val_fraction=0", "logger=none"]
    train(compose_for_train(store, [*common, "trainer.max_epochs=2"]))
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    resumed = train(compose_for_train(dict(store, outputs=tmp_path / "resumed"),
                                      [*common, "trainer.max_epochs=4", f"ckpt_path={last}"]))
    uninterrupted = train(compose_for_train(dict(store, outputs=tmp_path / "whole"), [*common, "trainer.max_epochs=4"]))
    timing = ("train/epoch_time_s", "train/samples_per_s")
    same = lambda metrics: {k: v for k, v in metrics.items() if k not in timing}  # noqa: E731
    assert same(resumed) == same(uninterrupted) and "test/acc" in resumed


def test_bf16_mixed_test_metrics_are_those_of_the_predictions_it_writes(store):
    """Under bf16-mixed the test pass ran under autocast: test/auroc and test/ap were of bfloat16 outputs, while
    predictions/test.csv (and the logged model) answer in float32, so the metrics recomputed from the predictions
    differed in the 4th digit. The float32 weights are now tested in float32."""
    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score

    from conftest import run_cli_in_process

    result = run_cli_in_process(["trainer.precision=bf16-mixed", "trainer.max_epochs=6", "logger.mlflow.log_model=false",
                                 "logger.mlflow.log_plots=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    tested = pd.read_csv(store["outputs"] / "predictions" / "test.csv")
    positive = run.data.tags["positive_class"]
    truth = tested["target"].astype(str) == positive
    assert run.data.metrics["test/auroc"] == pytest.approx(roc_auc_score(truth, tested[f"probability_{positive}"]),
                                                           abs=1e-6)
    assert run.data.metrics["test/ap"] == pytest.approx(
        average_precision_score(truth, tested[f"probability_{positive}"]), abs=1e-6)


def test_the_best_validation_value_is_the_epochs_value_itself(store):
    """val/rmse_best was the best val/rmse rounded to float32 (54.54946517944336 for 54.549463311835595): an epoch's
    own value could come out below its 'best so far', and selecting the epoch by equality found none."""
    from conftest import run_cli_in_process

    result = run_cli_in_process(["task=regression", "trainer.max_epochs=4", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    values = [row for row in rows if "val/rmse" in row]
    assert len(values) == 4
    for index, row in enumerate(values):
        assert row["val/rmse_best"] == min(r["val/rmse"] for r in values[:index + 1]), values


def test_a_best_value_reached_at_several_epochs_says_which_checkpoint_is_tested(store):
    """val/acc 0.8 at every epoch while val/loss fell by half: the first epoch's checkpoint was tested (Lightning keeps
    a value only when it is better), the least trained model, without a word."""
    from conftest import run_cli

    result = run_cli(["data=synthetic_binary", "trainer.max_epochs=4", "task.monitor=val/acc", "task.mode=max",
                      "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    best = re.search(r"Best checkpoint: \S+best-epoch(\d+)\.ckpt\n  \(val/acc ([\d.]+) at epochs ([\d, ]+): the first of "
                     r"them is the checkpoint tested; a finer measure breaks such ties, e\.g\. task\.monitor=val/loss",
                     result.stdout)
    assert best, result.stdout[-2000:]
    epochs = [int(e) for e in best.group(3).split(", ")]
    assert int(best.group(1)) + 1 == epochs[0] and len(epochs) > 1
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    assert {row["epoch"] + 1 for row in rows if "val/acc" in row and f"{row['val/acc']:.6g}" == best.group(2)} == \
        set(epochs)


def test_a_schedule_that_counts_its_steps_prints_no_lightning_note(store):
    """scheduler=onecycle (and linear_warmup) asks Lightning for the run's number of steps, which printed
    "Loading `train_dataloader` to estimate number of stepping batches." to the console and train.log."""
    result = run_cli(["scheduler=onecycle", "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stepping batches" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "stepping batches" not in (store["outputs"] / "train.log").read_text()
