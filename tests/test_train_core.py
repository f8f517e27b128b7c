"""The core pipeline through its real entry points: what a researcher sees after a run."""
from __future__ import annotations

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

    from pipeline.config import CONFIG_DIR, PROJECT_ROOT

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        full = hydra_compose(config_name="config", return_hydra_config=True)
    assert full.hydra.job.chdir is False
    assert full.hydra.run.dir.startswith(str(PROJECT_ROOT / "outputs"))
    assert full.hydra.sweep.dir.startswith(str(PROJECT_ROOT / "multirun"))


def test_data_dir_follows_environment(monkeypatch):
    monkeypatch.setenv("PIPELINE_DATA_DIR", "/somewhere/else")
    assert compose([]).paths.data_dir == "/somewhere/else"
    monkeypatch.delenv("PIPELINE_DATA_DIR")
    from pipeline.config import PROJECT_ROOT

    assert compose([]).paths.data_dir == str(PROJECT_ROOT / "data")


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


@pytest.mark.parametrize("optimizer,scheduler", [
    ("sgd", "none"), ("adam", "cosine"), ("adamw", "step"), ("rmsprop", "onecycle"), ("sgd", "plateau")])
def test_every_optimizer_and_scheduler_trains(store, optimizer, scheduler):
    from pipeline.train import train

    cfg = compose_for_train(store, [f"optimizer={optimizer}", f"scheduler={scheduler}", "trainer.max_epochs=2",
                                    "logger=none", "callbacks=none"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_regularization_options_apply(store):
    from pipeline.train import train

    cfg = compose_for_train(store, [
        "model.dropout=0.3", "model.l1=1e-4", "optimizer.weight_decay=1e-3", "task.label_smoothing=0.1",
        "trainer.gradient_clip_val=1.0", "callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=1",
        "trainer.max_epochs=30", "logger=none"])
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.85


def test_last_checkpoint_holds_the_last_epoch_also_after_epochs_without_improvement(store):
    """pytorch-lightning 2.6 alone leaves last.ckpt at the best epoch; a resume must start after the last one."""
    from pipeline.train import train

    train(compose_for_train(store, ["trainer.max_epochs=60", "logger=none"]))
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
