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
    (["task=regression", "task.monitor=val/acc"], ["task.monitor='val/acc'", "val/rmse"]),
    (["task.monitor=test/acc"], ["task.monitor", "validation metric"]),
    (["task.mode=up"], ["task.mode='up'", "min, max"]),
    (["data=wine", "data.val_fraction=1.5"], ["data.val_fraction=1.5", "(0, 1)"]),
    (["trainer.max_time=abc"], ["trainer", "DD:HH:MM:SS"]),
    (["trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val=-1", ">= 0"]),
    (["trainer.limit_train_batches=0"], ["trainer.limit_train_batches=0", "> 0"]),
    (["trainer.limit_val_batches=0"], ["trainer.limit_val_batches=0", "model selection"]),
    (["model=cnn"], ["model=cnn", "tabular"]),
    (["experiment=nonexistent"], ["experiment=nonexistent", "textbook_mlp"]),
    (["model.activation=[relu]"], ["model.activation", "string"]),
    (["optimizer=sgd", "optimizer.dampening=0.5"], ["'optimizer.dampening'", "+optimizer.dampening"]),
    (["logger.mlflow.experiment_name="], ["logger.mlflow.experiment_name is empty"]),
    (["logger.mlflow.tracking_uri=ftp://files.example.org/x"], ["ftp", "sqlite:///"]),
    (["scheduler=plateau", "task.monitor=val/acc", "task.mode=max", "scheduler.mode=min"], ["scheduler.mode"]),
    (["ckpt_path=/dev/null"], ["ckpt_path=/dev/null"]),
    (["test=maybe"], ["test"]),
    (["hparams_search=classification_optuna", "hydra.sweeper.n_trials=0", "logger=none"], ["n_trials=0", ">= 1"]),
    (["hparams_search=classification_optuna", "hydra.sweeper.sampler=foo", "logger=none"], ["sampler='foo'", "tpe"]),
    (["hparams_search=classification_optuna", "hydra.sweeper.finalize_top_k=-1", "logger=none"], ["finalize_top_k"]),
]


@pytest.mark.parametrize("args,fragments", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_a_mistake_is_one_line_exit_2_and_no_run(store, args, fragments):
    refused(run_cli_in_process(["trainer.max_epochs=1", *args], store), store, *fragments)


def test_a_run_folder_that_cannot_be_created_is_one_line(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli_in_process([f"hydra.run.dir={blocker}/run"])
    refused(result, store, "hydra.run.dir", "cannot create the run's folder", "is a file")


def test_a_searched_key_that_no_trial_can_set_stops_the_sweep_before_it_starts(store, tmp_path):
    from conftest import run_cli

    result = run_cli(["hparams_search=classification_optuna", "hydra.sweeper.n_trials=2", "logger=none",
                      "trainer.max_epochs=1", f"paths.mlruns_dir={tmp_path / 'mlruns'}",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}", "model.nonexistent=interval(0,1)"], multirun=True)
    line = refused(result, store, "a trial of this search cannot run", "'model.nonexistent'")
    assert not (tmp_path / "mlruns" / "optuna" / "optuna.db").exists(), line  # no study was created
