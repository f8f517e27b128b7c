"""Optuna sweeps through the real CLI (``pipeline-train -m hparams_search=...``): the study in its
storage, the runs in MLflow, pruning, resume after SIGKILL, two workers on PostgreSQL, NaN trials."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import PROJECT_ROOT, error_line, eval_cli, predict_cli, run_cli, runs_in

TINY = ["trainer.max_epochs=2", "data.limit_rows=240", "data.batch_size=32"]


def sweep_store(root: Path) -> dict:
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    return {"uri": f"sqlite:///{root}/mlruns/mlflow.db", "artifacts": str(root / "mlruns" / "artifacts"),
            "outputs": root / "multirun", "tmp": root}


def study_trials(storage: str, name: str) -> list:
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def parent_and_children(store: dict, experiment: str):
    runs = runs_in(store, experiment)
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags and r.data.tags.get("sweep.role") != "final"]
    return parents, children


def final_runs(store: dict, experiment: str):
    """The best trials' runs, trained again with everything when the sweep ended."""
    return [r for r in runs_in(store, experiment) if r.data.tags.get("sweep.role") == "final"]


# ----- the search space (in-process, no training) ------------------------------------------------
@pytest.mark.unit
def test_search_space_from_sweep_grammar_with_conditional_momentum():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from pipeline.sweep.space import parse_search_space, sample, trial_overrides

    space = parse_search_space(
        {"optimizer": "choice(sgd, adam, rmsprop)", "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
         "optimizer.momentum": "interval(0.0, 0.95)", "data.crop_padding": "range(0, 3)"},
        ["trainer.max_epochs=3", "optimizer.lr=tag(log, interval(1e-3, 1e-2))"],  # the command line wins
        {"optimizer.momentum": "optimizer=sgd"})
    params = {p.name: p.distribution for p in space.params}
    assert params["optimizer"] == CategoricalDistribution(["sgd", "adam", "rmsprop"])
    assert params["optimizer.lr"] == FloatDistribution(1e-3, 1e-2, log=True)
    assert params["data.crop_padding"] == IntDistribution(0, 2)
    assert space.fixed_overrides == ("trainer.max_epochs=3",)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values = sample(trial, space)
        seen.add(values["optimizer"])
        assert ("optimizer.momentum" in values) == (values["optimizer"] == "sgd"), values
        overrides = trial_overrides(space, values)
        assert overrides[0] == "trainer.max_epochs=3" and f"optimizer={values['optimizer']}" in overrides
        study.tell(trial, 0.0)
    assert seen == {"sgd", "adam", "rmsprop"}


@pytest.mark.unit
def test_the_corners_checked_before_a_study_respect_conditions_and_a_fixed_parent():
    """The check before the study composed one trial of every parameter's first value, conditions ignored: adam
    with the momentum only sgd takes (optimizer=choice(adam,sgd) refused, choice(rmsprop,adam) accepted), and no
    later value checked (dropout's upper end of 1.5 failed trial after trial). optimizer=adam fixed on the command
    line of a search conditioned on it was refused as "must be an unconditional parameter"."""
    from pipeline.sweep.space import corners, parse_search_space

    conditions = {"optimizer.momentum": "optimizer=sgd"}
    params = {"optimizer": "choice(adam, sgd)", "optimizer.momentum": "interval(0.0, 0.95)",
              "model.dropout": "interval(0.0, 0.5)"}
    probes = corners(parse_search_space(params, [], conditions))
    assert probes[0] == {"optimizer": "adam", "model.dropout": 0.0}
    assert {"optimizer": "sgd", "model.dropout": 0.0, "optimizer.momentum": 0.0} in probes
    assert {"optimizer": "sgd", "model.dropout": 0.0, "optimizer.momentum": 0.95} in probes
    assert {"optimizer": "adam", "model.dropout": 0.5} in probes
    assert all("optimizer.momentum" not in p for p in probes if p["optimizer"] == "adam")
    # a list among the choices (model.hidden_dims=choice([32],[64,32])) goes into a trial's overrides, and from there
    # into the best config YAML, as a list: it was the text '[64, 32]', which pipeline-train refused as a wrong type
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from pipeline.sweep.space import trial_overrides

    listed = parse_search_space({"model.hidden_dims": "choice([32],[64,32])"}, [], {})
    [override] = trial_overrides(listed, {"model.hidden_dims": [64, 32]})
    assert OverridesParser.create().parse_overrides([override])[0].value() == [64, 32]
    # a value the parent never takes: the parameter was silently never searched
    from pipeline.sweep.space import SearchSpaceError

    with pytest.raises(SearchSpaceError, match=r"optimizer=sgdd is not a value optimizer takes \(choice\(adam, sgd\)\)"):
        parse_search_space(params, [], {"optimizer.momentum": "optimizer=sgdd"})
    # the parent fixed on the command line: the condition decided once
    for fixed, searched in (("optimizer=adam", False), ("optimizer=sgd", True)):
        space = parse_search_space(params, [fixed], conditions)
        names = {p.name: p.condition for p in space.params}
        assert ("optimizer.momentum" in names) == searched and names.get("optimizer.momentum") is None


@pytest.mark.unit
def test_a_choice_narrowed_on_the_command_line_leaves_out_what_only_its_dropped_values_take():
    """'optimizer=choice(adam,rmsprop)' on the command line of a search whose momentum is sampled for sgd only was
    refused ("optimizer=sgd is not a value optimizer takes"), though the command line adds to or replaces entries of
    the space: momentum is not searched, with a note. A condition the search file gets wrong is still refused; a null
    condition is none; the grid's refusal of a conditional parameter advises overrides that work."""
    from pipeline.sweep.space import SearchSpaceError, parse_search_space

    params = {"optimizer": "choice(sgd, adam, rmsprop)", "optimizer.momentum": "choice(0.0, 0.9)"}
    conditions = {"optimizer.momentum": "optimizer=sgd"}
    for narrowed, written in (("optimizer=choice(adam,rmsprop)", "optimizer=choice(adam, rmsprop)"),
                              ("optimizer=choice(adam)", "optimizer=choice(adam)"), ("optimizer=adam", "optimizer=adam")):
        space = parse_search_space(params, [narrowed], conditions)
        assert [p.name for p in space.params] == (["optimizer"] if "choice" in narrowed else [])
        assert space.notes == (f"optimizer.momentum is not searched: optimizer no longer takes sgd ({written}), "
                               "which its condition optimizer=sgd needs",)
    space = parse_search_space(params, ["optimizer=choice(sgd,adam)"], {"optimizer.momentum": "optimizer=sgd,rmsprop"})
    assert {p.name: p.condition for p in space.params}["optimizer.momentum"] == ("optimizer", ("sgd", "rmsprop"))
    assert space.notes == ()
    for narrowed in ("optimizer=choice(adam,rmsprop)", "optimizer=adam"):  # a typo of the file's: not a narrowing
        with pytest.raises(SearchSpaceError, match=r"optimizer=sgdd is not a value optimizer takes "):
            parse_search_space(params, [narrowed], {"optimizer.momentum": "optimizer=sgdd"})
    # hydra.sweeper.conditions={optimizer.momentum:null}: the condition taken away
    space = parse_search_space(params, [], {"optimizer.momentum": None})
    assert {p.name: p.condition for p in space.params} == {"optimizer": None, "optimizer.momentum": None}
    # sampler=grid advised "drop hydra.sweeper.conditions", which the command line cannot do
    with pytest.raises(SearchSpaceError) as refused:
        parse_search_space(params, [], conditions).grid()
    assert str(refused.value) == (
        "sampler=grid cannot search 'optimizer.momentum', which is sampled only where optimizer=sgd "
        "(hydra.sweeper.conditions): search it in every trial with optimizer=sgd, leave it out with "
        "'optimizer=choice(adam,rmsprop)', or pick another sampler (hydra.sweeper.sampler=random)")
    assert parse_search_space(params, ["optimizer=sgd"], conditions).grid() == {"optimizer.momentum": [0.0, 0.9]}
    assert parse_search_space(params, ["optimizer=choice(adam,rmsprop)"], conditions).grid() == {
        "optimizer": ["adam", "rmsprop"]}


def test_a_sweep_over_a_narrowed_optimizer_choice_runs_without_the_momentum_of_sgd(tmp_path):
    """``-m hparams_search=classification_optuna 'optimizer=choice(adam,rmsprop)'`` exit 2: "condition for
    'optimizer.momentum': optimizer=sgd is not a value optimizer takes". It runs, saying momentum is not searched."""
    from conftest import run_cli_in_process

    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli_in_process(["-m", "hparams_search=classification_optuna", "optimizer=choice(adam,rmsprop)",
                                 "hydra.sweeper.n_trials=2", "trainer.max_epochs=1", "logger=none",
                                 "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.study_name=narrowed",
                                 f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    notes = [line for line in result.stdout.splitlines() if "is not searched" in line]
    assert notes == ["Note: optimizer.momentum is not searched: optimizer no longer takes sgd (optimizer=choice(adam, "
                     "rmsprop)), which its condition optimizer=sgd needs"], result.stdout[-3000:]
    trials = study_trials(storage, "narrowed")
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.params["optimizer"] in ("adam", "rmsprop") and "optimizer.momentum" not in t.params for t in trials)


def test_a_command_line_choice_of_a_conditional_key_is_searched_under_its_condition_with_m(tmp_path):
    """``-m hparams_search=classification_optuna 'optimizer.momentum=choice(0,0.9)'``: the check before Hydra
    composed each value of the choice with the default optimizer (adam), and refused 'unknown key optimizer.momentum'
    (without -m it ran). The choice replaces the search file's momentum, sampled where optimizer=sgd."""
    from conftest import run_cli_in_process

    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli_in_process(["-m", "hparams_search=classification_optuna",
                                 "optimizer.momentum=choice(0,0.9)", "hydra.sweeper.n_trials=4",
                                 "hydra.sweeper.pruner=none",
                                 "trainer.max_epochs=1", "logger=none", "hydra.sweeper.finalize_top_k=0",
                                 "hydra.sweeper.study_name=momentum", f"hydra.sweeper.storage={storage}",
                                 f"hydra.sweep.dir={tmp_path / 'out'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_trials(storage, "momentum")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.params.get("optimizer.momentum", "-") in ((0, 0.9) if t.params["optimizer"] == "sgd" else ("-",))
               for t in trials), [t.params for t in trials]


@pytest.mark.unit
def test_a_log_range_with_a_step_is_refused_not_searched_without_it():
    """tag(log, range(16, 129, 16)) drew 115, 37, 24: Optuna's log scale has no steps, and the step was dropped."""
    from pipeline.sweep.space import SearchSpaceError, parse_search_space

    # integers are offered a range (interval() drew 16.0, which an integer key refuses), other numbers an interval
    for expression, instead in [("tag(log, range(16, 129, 16))", "tag(log, range(16, 129))"),
                                ("tag(log, range(0.001, 0.1, 0.01))", "tag(log, interval(0.001, 0.1))")]:
        with pytest.raises(SearchSpaceError, match=r"cannot keep the step .* use " + re.escape(instead) + " or"):
            parse_search_space({"data.batch_size": expression}, [], {})
        [param] = parse_search_space({"data.batch_size": instead}, [], {}).params  # the advice is taken
        assert param.distribution.log and isinstance(param.distribution.low, int) == ("range" in instead)
    [param] = parse_search_space({"data.batch_size": "tag(log, range(16, 129))"}, [], {}).params  # step 1: kept
    assert (param.distribution.low, param.distribution.high, param.distribution.log) == (16, 128, True)


@pytest.mark.unit
def test_an_empty_range_is_refused_as_written():
    """range(64, 16) was refused as "empty range (64 > 15)": the last value range() reaches, not what was typed."""
    from pipeline.sweep.space import SearchSpaceError, parse_search_space

    for expression, said in (("range(64, 16)", "range(64, 16) is empty: it counts from 64 by 1, up to 16 excluded"),
                             ("range(8, 8)", "range(8, 8) is empty"), ("range(0.5, 0.1, 0.1)", "range(0.5, 0.1, 0.1)")):
        with pytest.raises(SearchSpaceError, match=re.escape(f"'data.batch_size': {said}")):
            parse_search_space({"data.batch_size": expression}, [], {})
    [param] = parse_search_space({"data.batch_size": "range(16, 17)"}, [], {}).params
    assert (param.distribution.low, param.distribution.high) == (16, 16)


@pytest.mark.unit
def test_a_condition_on_a_bool_or_int_choice_reads_its_value_as_hydra_does():
    """``conditions: {data.crop_padding: data.augment=true}`` over ``choice(true,false)`` was refused ("data.augment=true
    is not a value data.augment takes (choice(True, False))"): only ``=True`` was taken."""
    from pipeline.sweep.space import corners, parse_search_space

    for written in ("true", "True"):
        space = parse_search_space({"data.augment": "choice(true,false)", "data.crop_padding": "range(0, 3)",
                                    "data.batch_size": "choice(16, 32)", "model.dropout": "interval(0, 0.5)"}, [],
                                   {"data.crop_padding": f"data.augment={written}", "model.dropout": "data.batch_size=32"})
        probes = corners(space)
        assert all(("data.crop_padding" in p) == (p["data.augment"] is True) for p in probes), probes
        assert all(("model.dropout" in p) == (p["data.batch_size"] == 32) for p in probes), probes
        assert any("data.crop_padding" in p for p in probes) and any("model.dropout" in p for p in probes)
    # a parent fixed on the command line: its condition holds as it is written there
    space = parse_search_space({"data.crop_padding": "range(0, 3)"}, ["data.augment=true"],
                               {"data.crop_padding": "data.augment=True"})
    assert [p.name for p in space.params] == ["data.crop_padding"]


@pytest.mark.unit
def test_best_runs_left_unfinished_by_a_killed_process_are_trained_again():
    """kill -9 while the best trial was trained again left the study marked "started" for ever: rerunning the
    command printed the summary and exit 0, and the study never got its tested best run."""
    import subprocess
    import time

    from pipeline.sweep.worker import FINALIZER_STALE_S, _finalizer_gone

    host = os.uname().nodename
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert _finalizer_gone({"by": f"{host}:{dead.pid}", "at": time.time()})
    assert not _finalizer_gone({"by": f"{host}:{os.getpid()}", "at": time.time()})  # still at it
    assert not _finalizer_gone([3])  # done: the final trials
    assert _finalizer_gone("started")  # an older version's record: its process cannot be found
    assert not _finalizer_gone({"by": "another-machine:12", "at": time.time()})
    assert _finalizer_gone({"by": "another-machine:12", "at": time.time() - FINALIZER_STALE_S - 1})


@pytest.mark.unit
def test_studies_with_different_seeds_draw_different_trials():
    """Each trial's sampler is seeded from (study seed, trial number): reproducible, but study seed 1 must
    not replay study seed 0's trials shifted by one (as seed + trial_number did)."""
    from types import SimpleNamespace

    from pipeline.sweep.study import make_sampler

    def first_draws(seed: int) -> list[float]:
        settings = SimpleNamespace(seed=seed, sampler="random", sampler_options={})
        draws = []
        for number in range(4):
            study = optuna.create_study(sampler=make_sampler(settings, number))
            draws.append(study.ask().suggest_float("lr", 1e-4, 1e-1, log=True))
        return draws

    seed0, seed1 = first_draws(0), first_draws(1)
    assert first_draws(0) == seed0  # reproducible
    assert len(set(seed0)) == 4  # trials of one study differ
    assert not set(seed0) & set(seed1), (seed0, seed1)


@pytest.mark.unit
def test_a_study_begun_before_a_key_was_added_resumes_when_the_key_is_off():
    """An upgrade that adds an optional key (null: off) leaves the study's trials comparable; any other
    difference, a new key that is on included, is one."""
    from pipeline.sweep.study import fingerprint_difference

    before = {"choice.model": "mlp", "data.path": "a.csv", "data.removed": "None"}
    assert fingerprint_difference(before, {"choice.model": "mlp", "data.path": "a.csv", "data.groups": "None"}) == []
    assert fingerprint_difference(before, {"choice.model": "mlp", "data.path": "a.csv", "data.groups": "patient"}) == [
        "data.groups: (not set) -> patient"]
    assert fingerprint_difference(before, {"choice.model": "cnn", "data.path": "a.csv"}) == ["choice.model: mlp -> cnn"]
    assert fingerprint_difference({"data.seed": "None"}, {"data.seed": "3"}) == ["data.seed: None -> 3"]


def test_grid_trials_take_distinct_points_whatever_worker_draws_them():
    """Trial n takes grid point n of one shuffled order shared by all trials and workers, so concurrent
    workers never evaluate the same point twice (each trial builds its own sampler)."""
    from types import SimpleNamespace

    from pipeline.sweep.study import make_sampler

    grid = {"optimizer.lr": [0.1, 0.03, 0.01, 0.003, 0.001, 0.0003]}
    settings = SimpleNamespace(seed=0, sampler="grid", sampler_options={}, space=SimpleNamespace(grid=lambda: grid))
    study = optuna.create_study()
    drawn = []
    for number in range(6):
        study.sampler = make_sampler(settings, number)
        trial = study.ask()
        drawn.append(trial.suggest_categorical("optimizer.lr", grid["optimizer.lr"]))
    assert sorted(drawn) == sorted(grid["optimizer.lr"]), drawn


# ----- a 6-trial sweep, run once for several tests ------------------------------------------------
@pytest.fixture(scope="module")
def six_trial_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("six")
    store = sweep_store(root)
    storage = f"sqlite:///{root}/optuna.db"
    args = ["hparams_search=regression_optuna", *TINY, f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler=random",
            # keeps only the best third of the trials that reached epoch 1
            "hydra.sweeper.pruner=successive_halving",
            "+hydra.sweeper.pruner_options={min_resource: 1, reduction_factor: 3, min_early_stopping_rate: 0}",
            "logger.mlflow.register_as=house-prices",  # the best run's model, not the trials'
            "~tags"]  # a deletion, which the best config's command repeats (a YAML cannot)
    result = run_cli(args, store, multirun=True)
    assert result.returncode == 0, result.stderr[-4000:]
    return {"store": store, "storage": storage, "result": result, "args": args}


@pytest.mark.slow
def test_sweep_fills_the_study_and_one_parent_run_with_a_child_per_trial(six_trial_sweep):
    trials = study_trials(six_trial_sweep["storage"], "regression_optuna")
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [t.state for t in trials]
    parents, children = parent_and_children(six_trial_sweep["store"], "regression")
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    output = six_trial_sweep["result"].stdout + six_trial_sweep["result"].stderr
    # the store-writer's normal end at exit is not a store failure of the trials (it was reported once per trial)
    assert "MLflow store failed" not in output, output[-3000:]
    assert parent.data.params["sampler"] == "random" and parent.data.params["pruner"] == "successive_halving"
    assert parent.data.params["space.optimizer.lr"] == "log interval(0.0001, 0.1)"
    assert "optimizer in ['sgd']" in parent.data.params["space.optimizer.momentum"]
    by_number = {t.number: t for t in trials}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        trial = by_number[int(child.data.tags["sweep.trial_number"])]
        assert child.data.tags["sweep.state"] == trial.state.name
        assert child.data.params["optimizer"] == trial.params["optimizer"]
        assert float(child.data.params["optimizer.lr"]) == pytest.approx(trial.params["optimizer.lr"])
        assert float(child.data.params["model.dropout"]) == pytest.approx(trial.params["model.dropout"])
        assert ("optimizer.momentum" in trial.params) == (trial.params["optimizer"] == "sgd")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)
    assert parent.data.metrics["best/val/rmse_best"] == pytest.approx(best.value)
    assert parent.data.tags["best.trial_number"] == str(best.number)
    from mlflow import MlflowClient

    artifacts = {a.path for a in MlflowClient(six_trial_sweep["store"]["uri"]).list_artifacts(parent.info.run_id, "sweep")}
    assert "sweep/trials.csv" in artifacts and "sweep/regression_optuna_best.yaml" in artifacts
    plots = {a.path for a in MlflowClient(six_trial_sweep["store"]["uri"]).list_artifacts(parent.info.run_id, "sweep/plots")}
    assert {"sweep/plots/optimization_history.png", "sweep/plots/intermediate_values.png",
            "sweep/plots/parallel_coordinate.png"} <= plots


@pytest.mark.slow
def test_only_the_best_trial_is_tested_and_it_reproduces_its_trial(six_trial_sweep):
    """Selection is by validation: no trial run is evaluated on the test split, writes a checkpoint or logs a
    model; the best trial is trained again once, tested, and matches its trial's validation value exactly."""
    from mlflow import MlflowClient

    store = six_trial_sweep["store"]
    trials = study_trials(six_trial_sweep["storage"], "regression_optuna")
    best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    parents, trial_runs = parent_and_children(store, "regression")
    [final] = final_runs(store, "regression")
    assert final.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert len(trial_runs) == 6
    for run in trial_runs:
        assert not any(key.startswith("test/") for key in run.data.metrics), run.data.metrics
        assert not MlflowClient(store["uri"]).list_artifacts(run.info.run_id, "checkpoints")
    assert not list(store["outputs"].glob("[0-9]*/checkpoints/*.ckpt"))
    assert final.data.tags["best"] == "true" and final.data.tags["sweep.trial_number"] == str(best.number)
    assert final.info.run_name.startswith(f"best-{best.number}-")
    assert final.data.metrics["val/rmse_best"] == best.value  # the same training, bit for bit
    assert "test/rmse" in final.data.metrics
    assert (store["outputs"] / f"best-{best.number}" / "checkpoints" / "last.ckpt").is_file()
    # its folder keeps what it printed, as a pipeline-train run's does (its train.log was empty)
    kept = (store["outputs"] / f"best-{best.number}" / "train.log").read_text()
    assert "Test metrics:" in kept and "test/rmse" in kept, kept
    assert parents[0].data.tags["best.run_id"] == final.info.run_id
    assert f"Trial {best.number} trained again and tested: " in six_trial_sweep["result"].stdout
    # logger.mlflow.register_as: the best run's model is the registered model's one version; no trial registered
    [version] = MlflowClient(store["uri"]).search_model_versions("name='house-prices'")
    assert int(version.version) == 1 and version.run_id == final.info.run_id
    # asked to predict with a trial's run, pipeline-predict says which run has the model
    code, _, stderr = predict_cli([trial_runs[0].info.run_id, "--input", str(store["tmp"] / "new.csv"), "--output",
                                   str(store["tmp"] / "never.csv"), "--tracking-uri", store["uri"]])
    line = error_line(stderr)
    assert code == 2 and f"is trial {trial_runs[0].data.tags['sweep.trial_number']} of the sweep 'regression_optuna'" in line
    assert f"predict with the sweep's best run, {final.info.run_id}" in line
    # and pipeline-eval, which needs its checkpoint, says so too
    code, _, stderr = eval_cli([trial_runs[0].info.run_id, "--tracking-uri", store["uri"],
                                "--output-dir", str(store["tmp"] / "never")])
    assert code == 2 and f"evaluate with the sweep's best run, {final.info.run_id}" in error_line(stderr), stderr
    # the sweep's parent run: pipeline-predict said "cannot load the model runs:/<parent>/model ... (was the run
    # logged with logger.mlflow.log_model=false?"
    code, _, stderr = predict_cli([parents[0].info.run_id, "--input", str(store["tmp"] / "new.csv"), "--output",
                                   str(store["tmp"] / "never.csv"), "--tracking-uri", store["uri"]])
    assert code == 2 and error_line(stderr).endswith(
        f"is the parent run of the sweep 'regression_optuna', which holds the study's table and plots, not a model: "
        f"predict with its best run, {final.info.run_id}"), stderr
    # the sweep's parent run: "only runs logged by pipeline-train can be rerun" (it was logged by pipeline-train)
    code, _, stderr = eval_cli([parents[0].info.run_id, "--tracking-uri", store["uri"],
                                "--output-dir", str(store["tmp"] / "never")])
    assert code == 2 and error_line(stderr).endswith(
        f"is the parent run of the sweep 'regression_optuna', which holds the study's table and plots, not a model: "
        f"use its best run, {final.info.run_id}"), stderr


@pytest.mark.slow
def test_pruned_trials_stop_after_epoch_one_and_are_tagged_in_mlflow(six_trial_sweep):
    trials = study_trials(six_trial_sweep["storage"], "regression_optuna")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "a pruner keeping the best third at epoch 1 must prune some of 6 trials"
    for trial in pruned:
        assert list(trial.intermediate_values) == [1]  # reported epoch 1, then stopped
    for trial in (t for t in trials if t.state == TrialState.COMPLETE):
        assert list(trial.intermediate_values) == [1, 2]
    _, children = parent_and_children(six_trial_sweep["store"], "regression")
    from mlflow import MlflowClient

    client = MlflowClient(six_trial_sweep["store"]["uri"])
    pruned_numbers = {str(t.number) for t in pruned}
    pruned_runs = [c for c in children if c.data.tags["sweep.trial_number"] in pruned_numbers]
    assert len(pruned_runs) == len(pruned)
    for run in pruned_runs:
        assert run.data.tags["sweep.state"] == "PRUNED"
        assert len(client.get_metric_history(run.info.run_id, "val/rmse")) == 1  # one epoch trained


@pytest.mark.slow
def test_best_config_is_printed_and_pipeline_train_accepts_it_as_experiment(six_trial_sweep):
    stdout = six_trial_sweep["result"].stdout
    best_file = six_trial_sweep["store"]["outputs"] / "experiment" / "regression_optuna_best.yaml"
    assert f"Best config: {best_file}" in stdout
    command = (f"pipeline-train --config-dir {six_trial_sweep['store']['outputs'].resolve()} "
               "experiment=regression_optuna_best '~tags'")
    assert command in stdout and command in best_file.read_text()
    assert best_file.read_text().startswith("# @package _global_")
    trials = study_trials(six_trial_sweep["storage"], "regression_optuna")
    best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    shown = subprocess.run([sys.executable, "-m", "pipeline.cli.train", "--config-dir", str(best_file.parent.parent),
                            "experiment=regression_optuna_best", "~tags", "--cfg", "job"],
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-3000:]
    composed = yaml.safe_load(shown.stdout)
    # the trial's own resolved config, as written into its output dir
    trial_config = yaml.safe_load((six_trial_sweep["store"]["outputs"] / str(best.number) / "config.yaml").read_text())
    for section, key in [("optimizer", "_target_"), ("optimizer", "lr"), ("optimizer", "weight_decay"),
                         ("model", "dropout"), ("model", "l1"), ("data", "_target_"), ("data", "limit_rows"),
                         ("trainer", "max_epochs"), ("task", "name"), ("task", "monitor")]:
        assert composed[section][key] == trial_config[section][key], (section, key)
    assert "tags" not in composed
    assert "sweep" not in composed


@pytest.mark.slow
def test_every_trial_folder_holds_hydras_three_config_files_for_that_trial(six_trial_sweep):
    """Trials run as Hydra jobs without Hydra's config copies (pipeline.sweep.job): each job folder still gets
    the .hydra/ files Hydra writes, in Hydra's YAML, describing that trial and that folder."""
    from omegaconf import OmegaConf

    outputs = six_trial_sweep["store"]["outputs"]
    trials = {t.number: t for t in study_trials(six_trial_sweep["storage"], "regression_optuna")}
    best = min((t for t in trials.values() if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    folders = {number: outputs / str(number) for number in trials} | {"final": outputs / f"best-{best.number}"}
    for name, folder in folders.items():
        trial = best if name == "final" else trials[name]
        files = {f: folder / ".hydra" / f for f in ("config.yaml", "hydra.yaml", "overrides.yaml")}
        for path in files.values():
            assert path.read_text() == OmegaConf.to_yaml(OmegaConf.load(path)), path  # Hydra's own writer
        config, hydra = OmegaConf.load(files["config.yaml"]), OmegaConf.load(files["hydra.yaml"]).hydra
        assert "hydra" not in config and config.sweep.trial_number == trial.number
        assert config.optimizer.lr == pytest.approx(trial.params["optimizer.lr"])
        assert hydra.runtime.output_dir == str(folder.resolve()) and hydra.job.num == trial.number
        assert hydra.mode == "MULTIRUN" and hydra.runtime.choices.optimizer == trial.params["optimizer"]
        overrides = OmegaConf.to_container(OmegaConf.load(files["overrides.yaml"]))
        assert list(hydra.overrides.task) == overrides and f"optimizer={trial.params['optimizer']}" in overrides
        resolved = folder / "config.yaml"  # the run's own config, resolved and redacted, beside them
        assert resolved.read_text() == OmegaConf.to_yaml(OmegaConf.load(resolved))
        assert OmegaConf.load(resolved).optimizer.lr == config.optimizer.lr


@pytest.mark.slow
def test_an_evaluation_or_rerun_of_a_sweeps_run_is_not_tagged_as_the_sweeps(six_trial_sweep, tmp_path):
    """pipeline-eval of the best run made a run tagged best=true, sweep.role=final and named best-<n>-..., found by a
    search for the sweep's best runs; pipeline-rerun of a trial made an untested run named like the trial, silently,
    and of a pruned trial said it repeats the trial's metrics. (Last of the tests on this sweep: it adds runs to its experiment.)"""
    from conftest import _main_in_process
    from pipeline.cli.rerun import main as rerun_main

    store = six_trial_sweep["store"]
    [final] = final_runs(store, "regression")
    _, trial_runs = parent_and_children(store, "regression")
    code, _, stderr = eval_cli([final.info.run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "e")])
    assert code == 0, stderr[-3000:]
    # a pruned trial (one epoch of two): its rerun trains on past the epoch the trial was pruned at; the note said
    # the rerun "repeats the trial's validation metrics"
    pruned = next(run for run in trial_runs if run.data.tags.get("sweep.state") == "PRUNED")
    code, stdout, stderr = _main_in_process(rerun_main, [pruned.info.run_id, "--tracking-uri", store["uri"],
                                                         "--output-dir", str(tmp_path / "r")])
    assert code == 0, stderr[-3000:]
    assert f"Note: {pruned.info.run_name} is a trial of a sweep: a trial is not tested" in stdout
    assert ("(the trial was pruned after epoch 1: the rerun repeats its epochs up to there, then trains on to "
            "trainer.max_epochs=2, which nothing prunes here)") in stdout, stdout
    assert "repeats the trial's validation metrics" not in stdout
    made = [r for r in runs_in(store, "regression") if r.data.tags.get("evaluation_of") or r.data.tags.get("rerun_of")]
    assert len(made) == 2
    for run in made:
        # nor its rank among the best trials (which a version it registered would carry into the registry)
        assert not {"best", "sweep.role", "sweep.trial_number", "sweep.rank", "sweep.objective"} & set(run.data.tags), \
            run.data.tags
        assert not run.info.run_name.startswith(("best-", "trial-")), run.info.run_name
    assert [r.info.run_id for r in final_runs(store, "regression")] == [final.info.run_id]


@pytest.mark.unit
def test_fast_yaml_writer_gives_omegaconfs_text():
    from omegaconf import OmegaConf

    from conftest import compose
    from pipeline.sweep.job import config_yaml, copy_config

    tricky = OmegaConf.create({"a": "1.0", "b": "true", "c": "", "d": "${a}", "e": "é ü 日本", "f": "x: y # z",
                               "g": "line one\nline two", "h": "null", "i": 1e-7, "j": [None, "-", "'q'", '"dq"'],
                               "k": "a" * 120 + " " + "b" * 40, "l": {"m": "~", "n": "0x1F", "o": "2026-12-01"}})
    assert config_yaml(tricky) == OmegaConf.to_yaml(tricky)
    composed = compose(["hparams_search=classification_optuna"])
    assert config_yaml(composed) == OmegaConf.to_yaml(composed)
    copied = copy_config(composed)
    assert copied == composed and copied is not composed
    assert OmegaConf.is_struct(copied) == OmegaConf.is_struct(composed)
    assert OmegaConf.get_type(copied, "optimizer") is OmegaConf.get_type(composed, "optimizer")


@pytest.mark.unit
def test_a_jobs_hydra_config_is_what_hydras_set_config_keeps():
    """A trial's job sets ``HydraConfig`` with a pickled copy of its ``hydra`` node instead of Hydra's deep copy:
    the same text, flags, types and parent (``${hydra:...}`` in the job's keys and the node's own
    interpolations of them resolve the same)."""
    import pickle

    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from pipeline.config import CONFIG_DIR
    from pipeline.sweep.job import hydra_config_copy

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        composed = hydra_compose(config_name="config", overrides=["hparams_search=classification_optuna"],
                                 return_hydra_config=True)
    ours_source, theirs_source = (pickle.loads(pickle.dumps(composed)) for _ in range(2))
    HydraConfig.instance().set_config(theirs_source)
    theirs = HydraConfig.instance().cfg
    OmegaConf.set_readonly(ours_source.hydra, True)
    ours = hydra_config_copy(ours_source)
    assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(theirs)
    assert list(ours) == list(theirs) == ["hydra"] and ours.hydra is not ours_source.hydra
    assert ours.hydra._get_parent() is ours_source and ours._get_parent() is None
    for flag in ("readonly", "struct"):
        assert ours.hydra._get_flag(flag) == theirs.hydra._get_flag(flag)
        assert ours._get_flag(flag) == theirs._get_flag(flag)
    assert OmegaConf.get_type(ours, "hydra") is OmegaConf.get_type(theirs, "hydra")
    HydraConfig.instance().cfg = ours
    assert HydraConfig.get().job.name == theirs.hydra.job.name
    # resolved: the node's interpolations of the job's keys (${paths.root_dir}) and of its own
    assert ours.hydra.sweep.dir.rsplit("/", 2)[0] == theirs.hydra.sweep.dir.rsplit("/", 2)[0]  # up to ${now:...}
    assert ours.hydra.job.override_dirname == theirs.hydra.job.override_dirname


# ----- failures ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_pruner_compares_the_studys_objective_and_a_pruned_trial_keeps_its_value(tmp_path):
    """A study of val/acc (maximised) was fed task.monitor (val/loss, minimised) each epoch: its pruner pruned the
    most accurate trials, and a pruned trial's value, printed and told to the sampler as its val/acc, was its last
    val/loss. Each epoch's report is now the objective, as the trial's run logged it."""
    from mlflow import MlflowClient

    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hparams_search=classification_optuna", "trainer.max_epochs=3", "hydra.sweeper.n_trials=4",
                      "hydra.sweeper.sampler=random", "hydra.sweeper.objectives=[val/acc]",
                      "hydra.sweeper.directions=[maximize]", "hydra.sweeper.pruner=median",
                      "+hydra.sweeper.pruner_options={n_startup_trials: 1, n_warmup_steps: 0}",
                      "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.study_name=acc",
                      f"hydra.sweeper.storage={storage}"], store, multirun=True)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(store["uri"])
    trials = [t for t in study_trials(storage, "acc") if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(trials) == 4
    for trial in trials:
        history = sorted(client.get_metric_history(trial.user_attrs["mlflow_run_id"], "val/acc"), key=lambda m: m.step)
        assert trial.intermediate_values == {epoch: m.value for epoch, m in enumerate(history, 1)}, trial.number
        assert trial.value == history[-1].value  # a pruned trial's too: its val/acc when it stopped
        assert f"trial {trial.number} {trial.state.name} val/acc={trial.value:.4g} " in result.stdout + result.stderr


def test_a_study_resumed_with_other_objectives_is_refused(tmp_path):
    """A study of val/loss_best resumed with objectives=[val/loss] went on, and printed its best trial's val/loss_best
    as its val/loss (val/f1 read as val/acc likewise). Refused in one line naming both; a study recorded before its objectives were (an older version)
    adopts those of its first resume."""
    from conftest import run_cli_in_process

    fingerprint, objectives = "pipeline.fingerprint", "hydra.sweeper.objectives"  # the study's record of its settings
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=classification_optuna", "logger=none", "trainer.max_epochs=1", "hydra.sweeper.n_trials=1",
            "hydra.sweeper.pruner=none", "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.study_name=obj",
            f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"]
    assert run_cli_in_process(args).returncode == 0
    refused = run_cli_in_process([*args, "hydra.sweeper.objectives=[val/loss]", "hydra.sweeper.n_trials=2"])
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert error_line(refused.stderr) == (
        f"Error: study 'obj' in {storage} was run with other settings (hydra.sweeper.objectives: [val/loss_best] -> "
        "[val/loss]); its trials are not comparable with these. Resume it with the settings it was created with, or "
        "start a new study: hydra.sweeper.study_name=obj_2")
    assert len(study_trials(storage, "obj")) == 1  # no trial added
    # a study of an older version: its objectives are not known, and the first resume's are taken
    study = optuna.load_study(study_name="obj", storage=storage)
    study.set_user_attr(fingerprint, {k: v for k, v in study.user_attrs[fingerprint].items() if k != objectives})
    assert run_cli_in_process([*args, "hydra.sweeper.objectives=[val/loss]"]).returncode == 0
    assert optuna.load_study(study_name="obj", storage=storage).user_attrs[fingerprint][objectives] == "[val/loss]"
    assert run_cli_in_process(args).returncode == 2


@pytest.mark.slow
def test_nan_trial_is_pruned_and_sweep_goes_on_with_two_workers(tmp_path):
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hydra/sweeper=pipeline_optuna", "task=regression", "optimizer=sgd",
                      "optimizer.lr=choice(1e6, 0.01)", *TINY, "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.n_jobs=2", "hydra.sweeper.study_name=nan", f"hydra.sweeper.storage={storage}"],
                     store, multirun=True)
    assert result.returncode == 0, result.stderr[-4000:]
    trials = {t.params["optimizer.lr"]: t for t in study_trials(storage, "nan")}
    assert set(trials) == {1e6, 0.01}
    assert trials[1e6].state == TrialState.PRUNED
    assert "NonFiniteLossError" in trials[1e6].user_attrs["fail_reason"]
    assert trials[0.01].state == TrialState.COMPLETE
    assert "Best trial" in result.stdout
    parents, children = parent_and_children(store, "regression")
    assert len(parents) == 1 and len(children) == 2


@pytest.mark.slow
def test_a_second_worker_runs_trials_that_choose_a_config_group(tmp_path):
    """A spawned worker composes each trial's config group (optimizer=...) itself; Hydra's plugin scan executes
    the launcher's module again there, and a config typed by the first execution's class could not be pickled
    (every trial of worker 1 failed, while the sweep exited 0). Trials long enough that worker 1, which imports
    for ~10 s, gets some."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hydra/sweeper=pipeline_optuna", "task=classification", "logger=none",
                      "trainer.max_epochs=1000", "data.limit_rows=240", "data.batch_size=32",
                      "optimizer=choice(adam, sgd, rmsprop, adamw)", "hydra.sweeper.sampler=grid",
                      "hydra.sweeper.pruner=none", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                      "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.study_name=two",
                      f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"], multirun=True)
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert "(worker 1)" in output, output[-3000:]
    assert "Traceback" not in output, output[-4000:]
    trials = study_trials(storage, "two")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, [t.user_attrs.get("fail_reason") for t in trials]


def test_classification_search_runs_without_a_logger(tmp_path):
    """A search optimises `<monitor>_best`; it must exist with logger=none too (classification monitors
    val/loss, which only the objective itself can track without a logger)."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hparams_search=classification_optuna", "logger=none", "trainer.max_epochs=2",
                      "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none", "hydra.sweeper.study_name=cls",
                      f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"], multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_trials(storage, "cls")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(0 < t.value < 1 for t in trials), [t.value for t in trials]  # a binary cross-entropy


def test_a_search_over_list_choices_prints_no_optuna_warning(tmp_path):
    """``model.hidden_dims: choice([32],[64,32])`` printed Optuna's UserWarning "Choices for a categorical distribution
    should be a tuple of None, bool, int, float and str" several times a trial: list choices are handled by design."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hydra/sweeper=pipeline_optuna", "task=classification", "logger=none", "trainer.max_epochs=1",
                      "model.hidden_dims=choice([32],[64,32])", "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.study_name=lists", f"hydra.sweeper.storage={storage}",
                      f"hydra.sweep.dir={tmp_path / 'out'}"], multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Choices for a categorical distribution" not in result.stdout + result.stderr
    assert sorted(str(t.params["model.hidden_dims"]) for t in study_trials(storage, "lists")) == ["[32]", "[64, 32]"]


def test_a_search_space_no_trial_can_run_is_refused_before_the_study(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hydra/sweeper=pipeline_optuna", "task=regression", "logger=none",
                      "optimizer.lr=choice(-1.0, -2.0)", "hydra.sweeper.n_trials=10", "hydra.sweeper.study_name=bad",
                      f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"], multirun=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: a trial of this search cannot run: optimizer.lr=-1.0 is out of range; allowed: > 0"]
    assert not (tmp_path / "optuna.db").exists() or "bad" not in optuna.get_all_study_names(storage)


SWEEP_REFUSALS = [
    # a grid cannot search an interval: one line, exit 2 (was a traceback, exit 1)
    (["hparams_search=classification_optuna", "hydra.sweeper.sampler=grid"],
     "Error: hydra.sweeper.sampler=grid needs choice(...) or range(...) for 'optimizer.lr', not log interval(0.0001, 0.1)"),
    # an objective no run logs: refused before the study (every trial used to train to its end and fail)
    # a direction against its objective: the sweep maximised val/loss_best and trained the worst trial as best
    (["hparams_search=classification_optuna", "hydra.sweeper.directions=[maximize]"],
     "Error: hydra.sweeper.directions: maximize for val/loss_best, which is better lower; set minimize: "
     "hydra.sweeper.directions=[minimize]"),
    # an objective other than the search file's: its directions ([minimize]) cannot be left out, as was advised
    (["hparams_search=classification_optuna", "hydra.sweeper.objectives=[val/acc]"],
     "Error: hydra.sweeper.directions: minimize for val/acc, which is better higher; set maximize: "
     "hydra.sweeper.directions=[maximize]"),
    # more trials than grid points: Optuna's grid trained points again, counted as trials of their own
    (["--multirun", "hydra/sweeper=pipeline_optuna", "task=regression", "optimizer.lr=choice(0.01)",
      "hydra.sweeper.sampler=grid"],
     "Error: hydra.sweeper.n_trials=2 is more than the 1 point of the grid (sampler=grid tries each once); set "
     "hydra.sweeper.n_trials=1"),
    # the upper end of a range no trial can run: found by the check of every corner (was: trials FAILED one by one)
    (["hparams_search=classification_optuna", "model.dropout=interval(0.0,1.5)"],
     "Error: a trial of this search cannot run (one drawing model.dropout=1.5): model.dropout=1.5 is out of range"),
    # a test objective: without trial_test no trial has it (the study was created and every trial failed); with it,
    # the sweep selected on the test rows, whose score then no longer estimates new data
    (["hparams_search=classification_optuna", "hydra.sweeper.directions=[maximize]", "hydra.sweeper.objectives=[test/acc]"],
     "Error: hydra.sweeper.objectives: 'test/acc' is measured on the test split, which selection must not see (the "
     "chosen trial's test score would no longer estimate new data); select by validation: "
     "hydra.sweeper.objectives=[val/acc] (the best trials are tested when the sweep ends)"),
    (["hparams_search=classification_optuna", "hydra.sweeper.objectives=[val/loss_best,test/acc]",
      "hydra.sweeper.directions=[minimize,maximize]", "hydra.sweeper.trial_test=true"],
     "Error: hydra.sweeper.objectives: 'test/acc' is measured on the test split, which selection must not see (the "
     "chosen trial's test score would no longer estimate new data); select by validation: "
     "hydra.sweeper.objectives=[val/loss_best,val/acc]"),
    (["hparams_search=classification_optuna", "hydra.sweeper.objectives=[val/nonexistent]"],
     "Error: a trial of this search cannot run: hydra.sweeper.objectives: 'val/nonexistent' is not a metric of this "
     "search's runs; a classification run logs val/loss, val/acc, val/f1, val/auroc, val/ap, val/loss_best"),
    # the best value of a metric that is not task.monitor: not kept, so every trial failed (was allowed here)
    (["hparams_search=classification_optuna", "hydra.sweeper.objectives=[val/loss_best,val/acc_best]",
      "hydra.sweeper.directions=[minimize,maximize]"],
     "Error: a trial of this search cannot run: hydra.sweeper.objectives: 'val/acc_best' is not a metric of this "
     "search's runs; a classification run logs val/loss, val/acc, val/f1, val/auroc, val/ap, val/loss_best; a best "
     "value is kept of task.monitor (val/loss) alone: task.monitor=val/acc task.mode=max keeps it"),
    # a task.monitor no run logs: named as a single run names it, before the objectives judged against it (was blamed
    # on the search file's val/rmse_best, listing val/foo_best among the metrics the runs log)
    (["hparams_search=regression_optuna", "task.monitor=val/foo"],
     "Error: a trial of this search cannot run: task.monitor='val/foo' is not a metric of this run; a regression run "
     "logs val/loss, val/mse, val/rmse, val/mae, val/r2"),
    # values only the optimizer checks: built at the corners (was: the trials that drew them FAILED one by one)
    (["hparams_search=classification_optuna", "optimizer=sgd", "optimizer.momentum=choice(0.0,0.9)",
      "optimizer.nesterov=choice(true,false)"],
     "Error: a trial of this search cannot run (one drawing optimizer.lr=0.0001, optimizer.weight_decay=1e-06, "
     "optimizer.momentum=0.0, optimizer.nesterov=True): optimizer: cannot build it: Nesterov momentum requires a "
     "momentum and zero dampening"),
    # values only the model's class judges: the model built at the corners, as a run builds it (was: a study
    # created, its trials FAILED, exit 2, and the study's name taken)
    (["hparams_search=classification_optuna", "model.activation=choice(relu,tanhh)"],
     "Error: a trial of this search cannot run (one drawing model.activation=tanhh): model: cannot build it: "
     "model.activation must be one of ['gelu', 'relu', 'sigmoid', 'tanh'], got 'tanhh'"),
    (["hparams_search=classification_optuna", "model.activation=choice(swishy,relu)"],
     "Error: a trial of this search cannot run (one drawing model.activation=swishy): model: cannot build it: "),
    # a typo in a key of a searched optimizer: which optimizer the first trial drew (it read as if SGD were chosen)
    (["hparams_search=classification_optuna", "optimizer.lrr=interval(0.001,0.01)"],
     "Error: a trial of this search cannot run (one drawing optimizer=sgd): unknown key 'optimizer.lrr' for "
     "torch.optim.SGD; did you mean 'lr'?"),
    # the seed removed: refused as a single run refuses it (was a traceback, "Key 'seed' is not in struct", exit 1)
    (["-m", "hparams_search=classification_optuna", "~seed"], "Error: seed must be an integer, got None"),
    # the space as the search files write it (hydra.sweeper.params): Hydra's own refusal, exit 1
    (["hparams_search=classification_optuna", "+hydra.sweeper.params.optimizer.lrr=interval(0.001,0.01)"],
     "Error: +hydra.sweeper.params.optimizer.lrr=interval(0.001,0.01): Hydra does not sweep over its own config "
     "(hydra.sweeper.params.optimizer.lrr); a search parameter is given on the command line as "
     "optimizer.lrr=<expression>, e.g. optimizer.lrr='interval(0.001,0.01)'"),
    # a misspelt option in a narrowed choice: the condition on sgd, which the choice no longer took, was the error
    (["hparams_search=classification_optuna", "optimizer=choice(adam,sgdd)"],
     "Error: optimizer=sgdd: no such option in conf/optimizer/; did you mean optimizer=sgd? Available: adam, adamw, "
     "lbfgs, rmsprop, sgd"),
    (["hparams_search=classification_optuna", "optimizer=choice(adam,rmsproop)"],
     "Error: optimizer=rmsproop: no such option in conf/optimizer/; did you mean optimizer=rmsprop? Available: adam, "
     "adamw, lbfgs, rmsprop, sgd"),
    # a condition taken away (docs/sweeps.md): was "Incompatible value 'None' for field of type 'str'"; momentum is
    # then sampled for adam too, which takes none
    (["hparams_search=classification_optuna", "hydra.sweeper.conditions={optimizer.momentum:null}"],
     "Error: a trial of this search cannot run (one drawing optimizer=adam): unknown key 'optimizer.momentum' for "
     "torch.optim.Adam"),
    # the sweeper's settings are a structured config: Hydra's "PipelineOptunaSweeperConf (DictConfig) does not support
    # deletion" (or, for one dotted entry, "Could not delete ... does not exist"), said as docs/sweeps.md says it
    (["hparams_search=regression_optuna", "~hydra.sweeper.conditions"],
     "Error: ~hydra.sweeper.conditions: the sweeper's settings cannot be deleted; hydra.sweeper.conditions=null takes "
     "every condition away, 'hydra.sweeper.conditions={optimizer.momentum:null}' one of them"),
    (["hparams_search=regression_optuna", "~hydra.sweeper.conditions.optimizer.momentum"],
     "Error: ~hydra.sweeper.conditions.optimizer.momentum: the sweeper's settings cannot be deleted; take that "
     "condition away with 'hydra.sweeper.conditions={optimizer.momentum:null}'"),
    (["hparams_search=regression_optuna", "~hydra.sweeper.n_trials"],
     "Error: ~hydra.sweeper.n_trials: the sweeper's settings cannot be deleted; set it instead: "
     "hydra.sweeper.n_trials=<value>"),
    # a searched key set to null, to take it out of the search as a condition is taken away: was Hydra's "Incompatible
    # value 'None' for field of type 'str'", or, as a dotted path, "a search parameter the search file does not have"
    (["hparams_search=classification_optuna", "hydra.sweeper.params={model.l1:null}"],
     "Error: hydra.sweeper.params={model.l1:null}: a search parameter cannot be null; a searched key is fixed for "
     "every trial by a plain override: model.l1=<value> (its range changed by model.l1=<expression>)"),
    # null inside choice(): Hydra's "TypeError while evaluating ... NoneType is incompatible with Union[...]", which
    # did not say that data.auto_augment names its off value none
    (["hparams_search=image_classification_optuna", "data.auto_augment=choice(null,trivial)"],
     "Error: cannot parse the override 'data.auto_augment=choice(null,trivial)': Hydra's sweep functions take no null "
     "as a value; where the key names its off value, write that (data.auto_augment and model.weights take none: "
     "data.auto_augment='choice(none,trivial)')"),
    (["hparams_search=classification_optuna", "hydra.sweeper.params.model.l1=null"],
     "Error: hydra.sweeper.params.model.l1=null: a search parameter cannot be null; a searched key is fixed for "
     "every trial by a plain override: model.l1=<value>"),
]


@pytest.mark.parametrize("args,line", SWEEP_REFUSALS, ids=[a[-1] for a, _ in SWEEP_REFUSALS])
def test_a_sweep_setting_no_trial_can_use_is_refused_before_the_study(tmp_path, args, line):
    from conftest import run_cli_in_process

    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli_in_process([*args, "hydra.sweeper.n_trials=2", "logger=none", "hydra.sweeper.study_name=refused",
                                 f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert [l for l in result.stderr.splitlines() if l.startswith("Error:")][0].startswith(line), result.stderr
    assert not (tmp_path / "optuna.db").exists() or "refused" not in optuna.get_all_study_names(storage)


@pytest.mark.parametrize("override", ['hydra.sweeper.params={model.dropout:"interval(0,0.5)"}',
                                      "hydra.sweeper.params.model.dropout=0.1"])
def test_search_parameters_without_a_search_get_one_line(tmp_path, override):
    """Without hparams_search the sweeper is Hydra's own, whose params is None: setting the mapping was OmegaConf's
    traceback ("'NoneType' object has no attribute 'get'"), exit 1. Now one line that names the search files."""
    from conftest import run_cli_in_process

    result = run_cli_in_process([override, "logger=none", f"hydra.run.dir={tmp_path / 'out'}"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert error_line(result.stderr) == (
        f"Error: {override}: no search is chosen, so there are no search parameters to change; an Optuna search "
        "starts from a search file, hparams_search=<name> (classification_optuna, image_classification_optuna, "
        "regression_optuna, sentiment_optuna), and its parameters are given as key=<expression>, e.g. "
        "model.dropout='interval(0,0.5)'; a grid of values is a multirun: pipeline-train -m model.dropout=0.1,0.3")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("added", ['hydra.sweeper.conditions={model.dropout:"optimizer=sgd"}',
                                   "hydra.sweeper.conditions.model.dropout='optimizer=sgd'"])
def test_the_hint_for_a_new_sweep_condition_works_as_hinted(tmp_path, added):
    """A condition the search file lacks, given without a '+', was hinted as +hydra.sweeper.conditions.model.dropout=...,
    which Hydra reads as nested keys ("Cannot convert 'dict' to string"). The hinted override, run as the line
    writes it (shell quoting included), is accepted and conditions model.dropout on sgd."""
    import shlex

    from conftest import run_cli_in_process

    storage = f"sqlite:///{tmp_path}/optuna.db"
    common = ["hparams_search=regression_optuna", "trainer.max_epochs=1", "hydra.sweeper.n_trials=1", "logger=none",
              "hydra.sweeper.finalize_top_k=0", "hydra.sweeper.study_name=cond", f"hydra.sweeper.storage={storage}",
              f"hydra.sweep.dir={tmp_path / 'out'}"]
    refused = run_cli_in_process([*common, added])
    assert refused.returncode == 2, refused.stderr[-3000:]
    line = error_line(refused.stderr)
    assert line.startswith("Error: unknown key 'hydra.sweeper.conditions.model.dropout' "), line
    hinted = shlex.split(line.rsplit(": ", 1)[1].rstrip(")"))
    assert len(hinted) == 1 and hinted[0].startswith("+hydra.sweeper.conditions="), line
    accepted = run_cli_in_process([*common, *hinted])
    assert accepted.returncode == 0, (line, accepted.stderr[-3000:])
    fingerprint = optuna.load_study(study_name="cond", storage=storage).user_attrs["pipeline.fingerprint"]
    assert fingerprint["search.model.dropout"] == "interval(0.0, 0.5) if optimizer in ['sgd']"
    assert fingerprint["search.optimizer.momentum"] == "interval(0.0, 0.95) if optimizer in ['sgd']"


def test_a_monitor_no_run_logs_as_the_objective_is_refused_before_the_study_or_any_run(tmp_path, store):
    """task.monitor=val/foo with objectives=[val/foo_best] (the best value of the monitor, allowed as such): the
    study was created, every trial FAILED, a FAILED parent run was left, and only then was task.monitor named.
    Refused before any study or MLflow run exists, as docs/sweeps.md promises."""
    from conftest import run_cli_in_process

    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli_in_process(["hparams_search=regression_optuna", "trainer.max_epochs=1", "hydra.sweeper.n_trials=3",
                                 "task.monitor=val/foo", "hydra.sweeper.objectives=[val/foo_best]",
                                 "hydra.sweeper.study_name=mon2", f"hydra.sweeper.storage={storage}"], store)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: a trial of this search cannot run: task.monitor='val/foo' is not a metric of this run; a "
                      "regression run logs val/loss, val/mse, val/rmse, val/mae, val/r2"], result.stderr
    assert not (tmp_path / "optuna.db").exists() or "mon2" not in optuna.get_all_study_names(storage)
    assert not Path(store["uri"][len("sqlite:///"):]).exists() or runs_in(store) == [], "an MLflow run was created"


def test_a_sweep_puts_no_credential_into_the_study_the_store_or_its_files(tmp_path):
    """A token given on the command line of a sweep was masked in the runs but kept in clear in the parent run's
    fixed_overrides param, each trial's overrides (Optuna's database, trials.csv), multirun.yaml and the best
    config YAML (also logged to the store); a storage URL's password in multirun.yaml."""
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    secret = "hf_" + "ABCDEF" + "secret123"  # not in this file as one string: a checkout with changes logs git.diff
    result = run_cli(["hparams_search=classification_optuna", "trainer.max_epochs=1", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.pruner=none", "hydra.sweeper.study_name=tokens", f"hydra.sweeper.storage={storage}",
                      f"+tags.hf_token={secret}", "logger.mlflow.log_model=false"], store, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    leaks = [str(path) for path in tmp_path.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert leaks == [], leaks  # the databases (Optuna's, MLflow's), the artifacts, the sweep folder
    best = next(store["outputs"].rglob("experiment/tokens_best.yaml")).read_text()
    assert "# Left out (credentials): tags.hf_token; give them on the command line" in best, best
    [parent] = [r for r in runs_in(store) if r.info.run_name == "sweep-tokens"]
    assert "+tags.hf_token=***" in parent.data.params["fixed_overrides"]


def test_the_best_config_names_a_relative_data_file_as_the_trials_read_it(tmp_path):
    """A data file given relative to where the sweep ran was written so into the best config, whose command runs
    from anywhere: from another folder it failed with 'file not found' in that folder."""
    import numpy as np
    import pandas as pd

    store = sweep_store(tmp_path)
    table = tmp_path / "rows.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["y"] = frame["a"] - frame["b"] + rng.normal(scale=0.1, size=200)
    frame.to_csv(table, index=False)
    relative = os.path.relpath(table, PROJECT_ROOT)
    result = run_cli(["hparams_search=regression_optuna", "data=csv", f"data.path={relative}", "data.target=y",
                      "trainer.max_epochs=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none",
                      "hydra.sweeper.study_name=relative", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
                      "logger.mlflow.log_model=false"], store, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load(next(store["outputs"].rglob("experiment/relative_best.yaml")).read_text())
    assert best["data"]["path"] == str(table), best


@pytest.mark.parametrize("setting,line", [
    ("hydra.sweeper.storage=sqlite:///{tmp}/a-folder",  # a folder where the database file would be
     "Error: hydra.sweeper.storage: cannot open the study's storage (OperationalError: "),
    ("logger.mlflow.tracking_uri=http://127.0.0.1:1", "Error: MLflow tracking server http://127.0.0.1:1 does not answer"),
], ids=["storage", "tracking"])
def test_a_sweep_whose_stores_cannot_be_reached_is_one_line_exit_2(tmp_path, setting, line):
    """A plain run says so in one line; a sweep printed a traceback (SQLAlchemy's, or TrackingUnavailable) and
    exit 1."""
    from conftest import run_cli_in_process

    (tmp_path / "a-folder").mkdir()
    result = run_cli_in_process(["hparams_search=classification_optuna", "hydra.sweeper.n_trials=1",
                                 f"hydra.sweep.dir={tmp_path / 'out'}", f"hydra.sweeper.storage=sqlite:///{tmp_path}/o.db",
                                 f"paths.mlruns_dir={tmp_path / 'mlruns'}", setting.replace("{tmp}", str(tmp_path))])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert [l for l in result.stderr.splitlines() if l.startswith("Error:")][0].startswith(line), result.stderr
    # and no sweep folder of a lone multirun.yaml is left behind (a refused command leaves no output folder)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("multirun.yaml"))


def test_a_storage_whose_database_driver_is_missing_is_one_line_exit_2(tmp_path, monkeypatch):
    """mysql:// without its driver (mysqlclient) was Optuna's ImportError "Failed to import DB access module for the
    specified storage URL", a traceback and exit 1; now one line naming the storage (password masked), the package
    to install and the storages whose drivers are installed, before any study, run or folder exists."""
    from conftest import run_cli_in_process

    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # not installed, whatever this machine has
    result = run_cli_in_process(["hparams_search=regression_optuna", "trainer.max_epochs=3",
                                 "hydra.sweeper.storage=mysql://bob:hunter2@127.0.0.1:1/db", "hydra.sweeper.study_name=my",
                                 f"hydra.sweep.dir={tmp_path / 'out'}", f"paths.mlruns_dir={tmp_path / 'mlruns'}"])
    assert result.returncode == 2, result.stderr[-3000:]
    line = error_line(result.stderr)
    assert line.startswith("Error: hydra.sweeper.storage=mysql://bob:***@127.0.0.1:1/db: its database driver (mysql) "
                           "needs the Python package mysqlclient (module MySQLdb), which is not installed: "
                           "pip install 'mysqlclient', or use a storage whose driver is: sqlite:///path.db"), line
    assert "hunter2" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("multirun.yaml"))
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_a_sampler_whose_package_is_missing_is_refused_before_the_study(tmp_path, monkeypatch):
    """sampler=cmaes without the cmaes package: Optuna imports it when the second trial samples, so the study, the
    parent run and trial 0 existed when the sweep crashed with ModuleNotFoundError (exit 1, the trial left RUNNING,
    the parent run FAILED, the best config written anyway). Refused first, in one line, exit 2."""
    from conftest import run_cli_in_process

    monkeypatch.setitem(sys.modules, "cmaes", None)  # as on a machine without it
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli_in_process(["hparams_search=classification_optuna", "trainer.max_epochs=4",
                                 "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler=cmaes",
                                 "hydra.sweeper.pruner=successive_halving", "hydra.sweeper.study_name=cm",
                                 f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}",
                                 f"paths.mlruns_dir={tmp_path / 'mlruns'}"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr) == ("Error: hydra.sweeper.sampler=cmaes needs the Python package cmaes "
                                         "(pip install cmaes); or choose one of tpe, random, grid")
    assert not (tmp_path / "optuna.db").exists() or "cm" not in optuna.get_all_study_names(storage)
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_the_cmaes_sampler_the_docs_list_runs_a_sweep(tmp_path):
    """docs/sweeps.md lists sampler=cmaes; its package was not a dependency, so the sweep crashed at trial 1."""
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hparams_search=regression_optuna", *TINY, "hydra.sweeper.n_trials=3",
                      "hydra.sweeper.sampler=cmaes", "hydra.sweeper.pruner=none", "hydra.sweeper.finalize_top_k=0",
                      "hydra.sweeper.study_name=cm", f"hydra.sweeper.storage={storage}"], store, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_trials(storage, "cm")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3, [(t.state, t.user_attrs.get("fail_reason")) for t in trials]


def test_a_search_file_with_empty_params_and_conditions_is_read(tmp_path):
    """``conditions:`` (or ``params:``) left empty in a search file of one's own was Hydra's ValidationError "field
    'hydra.sweeper.conditions' is not Optional", exit 1; an empty node is no condition (no parameter)."""
    from conftest import run_cli_in_process

    (tmp_path / "hparams_search").mkdir()
    (tmp_path / "hparams_search" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/sweeper: pipeline_optuna\n"
        "hydra:\n  sweeper:\n    n_trials: 1\n    params:\n    conditions:\n")
    result = run_cli_in_process(["-m", "--config-dir", str(tmp_path), "hparams_search=mine",
                                 f"hydra.sweep.dir={tmp_path / 'out'}", f"hydra.sweeper.storage=sqlite:///{tmp_path}/o.db"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr).startswith("Error: the search space is empty: set hydra.sweeper.params")


def test_a_sweep_whose_trials_all_fail_exits_2_and_says_so_again_when_resumed(tmp_path):
    """Trials that all fail while training (learning rates that make the first loss infinite; data that cannot be
    read is refused before the study exists): no trial completes. The sweep used to exit 0 with its parent run
    FINISHED, and running it again printed "3 of 3 trials finished" and exit 0."""
    store = sweep_store(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hydra/sweeper=pipeline_optuna", "task=regression", "optimizer=sgd", "optimizer.lr=choice(1e30, 1e31)",
            "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=2", "hydra.sweeper.max_failure_rate=1",
            "hydra.sweeper.study_name=unread", f"hydra.sweeper.storage={storage}"]
    for attempt in range(2):
        result = run_cli(args, store, multirun=True)
        assert result.returncode == 2, result.stderr[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and errors[0].startswith(
            "Error: no trial of study 'unread' completed (2 failed or diverged, 0 pruned); last failure: "), errors
        assert "start a new study (hydra.sweeper.study_name=<new name>)" in errors[0]
    states = [t.state for t in study_trials(storage, "unread")]
    assert len(states) == 2 and TrialState.COMPLETE not in states, states  # a diverged trial is stored as pruned
    parents, _ = parent_and_children(store, "regression")
    assert [p.info.status for p in parents] == ["FAILED"]
    # and says why, as a run's error tag does (it had none)
    assert parents[0].data.tags["error"].startswith("SweepError: no trial of study 'unread' completed"), parents[0].data.tags


def test_sweep_where_every_trial_fails_stops_at_the_failure_rate(tmp_path):
    # learning rates this large are valid values but make the loss infinite in the first step: every trial
    # fails while training, which no check before the study can see
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["hydra/sweeper=pipeline_optuna", "task=regression", "logger=none", "optimizer=sgd",
                      "optimizer.lr=choice(1e30, 1e31)", "hydra.sweeper.sampler=random", "hydra.sweeper.n_trials=10",
                      "hydra.sweeper.max_failure_rate=0.5", "hydra.sweeper.study_name=broken",
                      f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}"], multirun=True)
    assert result.returncode == 2
    assert "sweep stopped: 3 of 3 finished trials failed" in result.stderr
    assert "training loss is" in result.stderr  # the reason of the last failure
    trials = study_trials(storage, "broken")
    finished = [t for t in trials if t.state != TrialState.WAITING]
    # a diverged trial is recorded as pruned (so the sampler learns to avoid the region), tagged diverged
    assert [(t.state, t.user_attrs.get("diverged")) for t in finished] == [(TrialState.PRUNED, True)] * 3


# ----- two workers on one PostgreSQL storage -----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    """A throwaway PostgreSQL cluster on 127.0.0.1 (run as the ``postgres`` user when we are root)."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    initdb = shutil.which("initdb") or (str(binaries[-1] / "initdb") if binaries else None)
    assert initdb, "PostgreSQL is not installed (Debian: apt-get install postgresql)"
    bin_dir = Path(initdb).resolve().parent
    data = Path(tempfile_dir()) / f"pg-{os.getpid()}-{free_port()}"
    data.mkdir(parents=True)
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, text=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres", "--no-sync")
    run(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-o",
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        for database in ("optuna", "mlflow"):
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
        # a password in the URL (ignored by trust auth) shows that it never reaches MLflow
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the dev extras install psycopg2
        yield f"postgresql+psycopg2://postgres:s3cret@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()  # not pytest's tmp_path: the postgres user must be able to reach it


@pytest.mark.slow
def test_two_processes_on_one_postgres_storage_run_one_study_to_exactly_n_trials(postgres, tmp_path):
    from mlflow import MlflowClient

    storage, tracking = f"{postgres}/optuna", f"{postgres}/mlflow"
    MlflowClient(tracking).search_experiments()  # creates MLflow's tables once, before the race
    args = ["hparams_search=regression_optuna", *TINY, f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.n_trials=6", "hydra.sweeper.study_name=shared", f"logger.mlflow.tracking_uri={tracking}",
            f"logger.mlflow.artifact_location={tmp_path / 'artifacts'}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    workers = [subprocess.Popen([sys.executable, "-m", "pipeline.cli.train", "-m", *args,
                                 f"hydra.sweep.dir={tmp_path / f'machine{i}'}"],
                                cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    outputs = [w.communicate(timeout=400) for w in workers]
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-4000:]
    assert sorted("Created" in out for out, _ in outputs) == [False, True]  # one created it, one joined
    trials = study_trials(storage, "shared")
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    store = {"uri": tracking}
    parents, children = parent_and_children(store, "regression")
    assert len(parents) == 1 and len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].data.params["storage"] == storage.replace("s3cret", "***")
    assert sorted(int(c.data.tags["sweep.trial_number"]) for c in children) == list(range(6))


def test_a_sweep_over_data_sets_warns_that_their_validation_values_are_not_comparable(tmp_path):
    """data=choice(breast_cancer,wine) picked its best trial by comparing val/loss across the two data sets, with no
    word: the winner was the easier data set, not the better model."""
    from conftest import run_cli_in_process

    result = run_cli_in_process(["-m", "task=classification", "data=choice(breast_cancer,wine)",
                                 "hydra/sweeper=pipeline_optuna", "trainer.max_epochs=1", "hydra.sweeper.n_trials=2",
                                 "hydra.sweeper.finalize_top_k=0", "logger=none",
                                 f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
                                 f"hydra.sweep.dir={tmp_path / 'out'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("data searched: the study compares val/loss_best across data sets, whose values do not measure the same "
            "thing") in result.stdout + result.stderr


def test_a_sweep_over_folds_warns_that_its_trials_validate_on_other_rows(tmp_path):
    """data.fold=choice(0,1,2) picked its best trial partly by its fold's rows, with no word (as a search over data
    sets is warned of)."""
    from conftest import run_cli_in_process

    result = run_cli_in_process(["-m", "task=regression", "data.cv_folds=3", "data.fold=choice(0,1,2)",
                                 "hydra/sweeper=pipeline_optuna", "trainer.max_epochs=1", "hydra.sweeper.n_trials=2",
                                 "hydra.sweeper.finalize_top_k=0", "logger=none",
                                 f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
                                 f"hydra.sweep.dir={tmp_path / 'out'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data.fold searched: each trial validates on other rows" in result.stdout + result.stderr


def test_a_search_over_an_experiment_says_which_of_its_keys_the_search_replaces(tmp_path):
    """experiment=diabetes_linear_cv (200 epochs) with hparams_search=regression_optuna (20, composed after it):
    the trials trained 20 epochs, and nothing said the experiment's 200 were dropped."""
    from conftest import run_cli_in_process

    common = ["hparams_search=regression_optuna", "experiment=diabetes_linear_cv", "hydra.sweeper.n_trials=1",
              "hydra.sweeper.finalize_top_k=0", "logger=none", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"]
    result = run_cli_in_process([*common, f"hydra.sweep.dir={tmp_path / 'a'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    said = ("experiment=diabetes_linear_cv sets trainer.max_epochs=200, and hparams_search=regression_optuna (composed "
            "after it) sets trainer.max_epochs=20: the trials take 20; add trainer.max_epochs=200")
    assert said in result.stdout + result.stderr
    assert "sets optimizer.lr" not in result.stdout + result.stderr  # a searched key: the trial's value is meant to win
    # the key given on the command line: nothing to say
    again = run_cli_in_process([*common, "trainer.max_epochs=2", "hydra.sweeper.study_name=given",
                                f"hydra.sweep.dir={tmp_path / 'b'}"])
    assert again.returncode == 0 and "composed after it" not in again.stdout + again.stderr, again.stderr[-3000:]


def test_a_searched_constructor_argument_the_model_yaml_lacks_is_refused_before_the_study(tmp_path):
    """A model YAML of one's own without a key its class takes (MLP's activation), searched as
    ``model.activation=choice(...)``: every trial set it on its config and trained, and then the sweep's end, which
    composes the best trial with Hydra, failed on it ("Could not override 'model.activation'", exit 1, for a search
    file's key; "Sweep parameters ... requires --multirun" for the command line's), the parent run FAILED, no best run
    or config. It is refused before the study, as ``pipeline-train model.activation=tanh`` is,
    saying to search it with a '+'."""
    from conftest import run_cli_in_process

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("_target_: pipeline.models.mlp.MLP\ndropout: 0.0\nl1: 0.0\n")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    common = ["--config-dir", str(tmp_path), "hparams_search=regression_optuna", "model=mine", *TINY,
              "trainer.max_epochs=1", "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=absent",
              f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}",
              f"paths.mlruns_dir={tmp_path / 'mlruns'}"]
    result = run_cli_in_process([*common, "model.activation=choice(relu,tanh)"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr) == (
        "Error: a trial of this search cannot run: 'model.activation' is not in the config (pipeline.models.mlp.MLP "
        "takes it); keys under 'model': _target_, dropout, l1; a key the config lacks is searched with a '+' "
        "(+model.activation: ... in hydra.sweeper.params, '+model.activation=...' on the command line), or add it "
        "to the option's YAML")
    assert not (tmp_path / "optuna.db").exists() or "absent" not in optuna.get_all_study_names(storage)
    # a key the class does not take is still named with the class and the nearest key
    result = run_cli_in_process([*common, "model.activaton=choice(relu,tanh)"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "unknown key 'model.activaton' for pipeline.models.mlp.MLP; did you mean 'activation'?" in error_line(
        result.stderr)
