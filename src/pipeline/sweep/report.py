"""The sweep in MLflow and on disk: one parent run per study, the trials table, plots, and the
best trial written as an ``experiment`` config that ``pipeline-train`` accepts."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, NamedTuple, Optional

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from pipeline.tracking.redact import redact_override, redact_text

from pipeline.tracking.sweeps import ParentRun

from .study import SETUP_DONE_ATTR, SweepSettings, progress

log = logging.getLogger("pipeline.sweep")


def parent_run_params(settings: SweepSettings) -> dict[str, Any]:
    """What the parent run records of the study's set-up."""
    return {
        "study_name": settings.study_name, "storage": settings.redacted_storage,
        "sampler": settings.sampler, "sampler_options": json.dumps(settings.sampler_options),
        "pruner": settings.pruner, "pruner_options": json.dumps(settings.pruner_options),
        "objectives": ",".join(settings.objectives), "directions": ",".join(settings.directions),
        "seed": settings.seed,
        **{f"space.{name}": text for name, text in settings.space.describe().items()},
        "fixed_overrides": " ".join(redact_override(o) for o in settings.space.fixed_overrides) or "-",
    }


# ----- the end of a sweep ---------------------------------------------------------------------------
# what drawing the study's plots imports (pyplot ~0.3 s; Optuna's plots without scikit-learn ~0.4 s, see
# pipeline.lean_imports); imported by the store-writer process while the trials run, so that the end of the sweep
# does not wait for it
PLOT_MODULES = ("matplotlib.pyplot", "pipeline.lean_imports:optuna_plots")


def warm_plots(parent: ParentRun) -> None:
    if parent.enabled:
        from pipeline.tracking import remote

        remote.start_early(modules=PLOT_MODULES)


def start_plots(settings: SweepSettings, parent: ParentRun):
    """When the sweep is tracked, the store-writer process draws the study's plots while this process trains the
    best trials again; returns the future of their paths (None: :func:`summarize` draws them)."""
    if not parent.enabled:
        return None
    from pipeline.tracking import remote

    if not remote.enabled():
        return None
    return remote.call_in_writer("pipeline.sweep.report:draw_study_plots", settings.storage, settings.study_name,
                                 list(settings.objectives), str(Path(settings.sweep_dir) / "plots"))


def draw_study_plots(storage: str, study_name: str, objectives: list[str], plot_dir: str) -> list[str]:
    """:func:`write_plots` of a study given by its storage and name (in the store-writer process)."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    if not counts_complete(progress(study)):
        return []
    settings = SweepSettings(study_name=study_name, storage=storage, n_trials=0, objectives=objectives,
                             directions=[], space=None)
    return [str(path) for path in write_plots(study, settings, Path(plot_dir))]


class SweepTables(NamedTuple):
    """What :func:`write_tables` wrote: the trials table, the best trial(s) and the best config's file."""
    table: Path
    best: list
    best_file: Optional[Path]


def write_tables(study: optuna.Study, settings: SweepSettings, config_loader, base_config: DictConfig) -> SweepTables:
    """``trials.csv`` and the best trial's experiment config into the sweep dir. Done when the trials have ended,
    before the best trials train again: this process writes them while the store-writer process draws the
    study's plots, instead of after the final runs."""
    out_dir = Path(settings.sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = write_trials_table(study, out_dir / "trials.csv")
    best = best_trials(study)
    best_file = write_best_config(study, best[0], settings, config_loader, base_config) if best else None
    return SweepTables(table, best, best_file)


def summarize(study: optuna.Study, settings: SweepSettings, parent: ParentRun, config_loader,
              base_config: DictConfig, finals: Optional[list[dict]] = None, plots_drawn=None,
              tables: Optional[SweepTables] = None) -> dict[str, Any]:
    """Trials table, plots and best config into the sweep dir and the parent run; prints the result.
    ``plots_drawn``: the future of :func:`start_plots`; ``tables``: what :func:`write_tables` wrote (None: written
    here)."""
    out_dir = Path(settings.sweep_dir)
    state = progress(study)
    if tables is None:
        tables = write_tables(study, settings, config_loader, base_config)
    plots = None
    if plots_drawn is not None:
        ok, drawn = plots_drawn.result()
        plots = [Path(path) for path in drawn] if ok else None
        if not ok:
            log.info("the study's plots could not be drawn in the store-writer process (%s); drawing them here", drawn)
    if plots is None:
        plots = write_plots(study, settings, out_dir / "plots") if counts_complete(state) else []
    counts = {s.name.lower(): sum(t.state == s for t in state.finished) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    best, best_file = tables.best, tables.best_file
    files = {"sweep": [tables.table] + ([best_file] if best_file else []), "sweep/plots": plots}
    metrics = {f"trials_{k}": v for k, v in counts.items()}
    tags = {}
    if best:
        metrics.update({f"best/{name}": value for name, value in zip(settings.objectives, best[0].values)})
        tags = {**{f"best.{name}": value for name, value in best[0].params.items()},
                "best.trial_number": best[0].number}
    for final in finals or []:
        if final["trial"] == (best[0].number if best else None):
            metrics.update({f"best_run/{k}": v for k, v in final["metrics"].items() if k.startswith("test/")})
            if final.get("run_id"):
                tags["best.run_id"] = final["run_id"]
    parent.record(files, metrics, tags)
    print_summary(study, settings, state, counts, best, best_file, parent, finals or [], train_command(settings, base_config))
    return {"counts": counts, "best_values": best[0].values if best else None,
            "best_params": best[0].params if best else None, "best_config": str(best_file) if best_file else None}


def write_trials_table(study: optuna.Study, path: Path) -> Path:
    """The columns of ``study.trials_dataframe(multi_index=False)`` (number, value or values_*, datetime_start,
    datetime_complete, duration, params_*, user_attrs_*, system_attrs_*, state) as CSV, written without pandas:
    importing it cost ~0.4 s at the end of every sweep. Empty cells where a trial has no value."""
    import csv

    trials = study.get_trials(deepcopy=False)
    names = study.metric_names
    if len(study.directions) == 1:
        value_columns = ["value" if names is None else f"value_{names[0]}"]
    else:
        value_columns = [f"values_{label}" for label in (names or range(len(study.directions)))]
    nested = {kind: sorted({key for trial in trials for key in getattr(trial, kind)})
              for kind in ("params", "user_attrs", "system_attrs")}
    header = ["number", *value_columns, "datetime_start", "datetime_complete", "duration",
              *[f"{kind}_{key}" for kind in nested for key in nested[kind]], "state"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for trial in trials:
            values = trial.values or [None] * len(value_columns)
            row = [trial.number, *values, trial.datetime_start, trial.datetime_complete, _duration(trial.duration)]
            for kind in nested:
                attrs = getattr(trial, kind)
                row += [attrs.get(key) for key in nested[kind]]
            writer.writerow([*["" if cell is None else cell for cell in row], trial.state.name])
    return path


def _duration(delta) -> Optional[str]:
    """As pandas writes a Timedelta: ``0 days 00:00:01.250000``."""
    if delta is None:
        return None
    seconds, micro = divmod(delta.seconds * 10**6 + delta.microseconds, 10**6)
    return f"{delta.days} days {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micro:06d}"


def counts_complete(state) -> int:
    return sum(t.state == TrialState.COMPLETE for t in state.finished)


def best_trials(study: optuna.Study) -> list:
    """The best trial (one objective) or the Pareto front ordered by the first objective."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1
    return sorted(study.best_trials, key=lambda t: sign * t.values[0])


def write_plots(study: optuna.Study, settings: SweepSettings, plot_dir: Path) -> list[Path]:
    import warnings

    import matplotlib
    # pyplot first: the import waits while another thread of this process is importing it (PLOT_MODULES), where
    # matplotlib.use would reach into the half-imported module; pyplot picks no backend before it draws
    import matplotlib.pyplot as plt

    from pipeline.lean_imports import optuna_plots

    plots = optuna_plots()
    matplotlib.use("Agg")

    plot_dir.mkdir(parents=True, exist_ok=True)
    first = settings.objectives[0]
    target = (lambda t: t.values[0]) if len(settings.objectives) > 1 else None
    wanted = {
        "optimization_history": lambda: plots.plot_optimization_history(study, target=target, target_name=first),
        # PED-ANOVA: a fraction of a second where the default fANOVA forest takes ~10 s
        "param_importances": lambda: plots.plot_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target=target, target_name=first),
        "parallel_coordinate": lambda: plots.plot_parallel_coordinate(study, target=target, target_name=first),
        "intermediate_values": lambda: plots.plot_intermediate_values(study),
    }
    if len(settings.objectives) > 1:
        wanted["pareto_front"] = lambda: plots.plot_pareto_front(study, target_names=settings.objectives)
    written = []
    for name, draw in wanted.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw()
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            path = plot_dir / f"{name}.png"
            figure.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(figure)
            written.append(path)
        except Exception as error:  # e.g. importances need two finished trials with varying params
            log.info("plot %s skipped: %s", name, str(error).splitlines()[0] if str(error) else type(error).__name__)
    return written


# ----- the best trial as an experiment config ----------------------------------------------------
SKIPPED_GROUPS = ("hydra", "hparams_search", "experiment", "debug")


def best_config_name(settings: SweepSettings) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", settings.study_name) + "_best"


def user_config_dir(base_config: DictConfig) -> Optional[str]:
    """The sweep's ``--config-dir`` (None without one)."""
    return next((source.path for source in base_config.hydra.runtime.config_sources
                 if source.provider == "command-line" and source.schema == "file"), None)


def train_command(settings: SweepSettings, base_config: DictConfig) -> str:
    """The ``pipeline-train`` command that trains the best config as the sweep composed its trials: the best config
    differs from the sweep's primary config (``--config-name``), and may choose options of the sweep's own
    ``--config-dir``; the sweep dir, which holds ``experiment/<study>_best.yaml``, is then added to the search path
    (Hydra takes one ``--config-dir``)."""
    import shlex

    sweep_dir = str(Path(settings.sweep_dir).resolve())
    user_dir = user_config_dir(base_config)
    config_name = str(base_config.hydra.job.config_name)
    words = ["pipeline-train", "--config-dir", user_dir or sweep_dir]
    if config_name != "config":
        words += ["--config-name", config_name]
    if user_dir:
        searchpath = [str(p) for p in base_config.hydra.searchpath or ()] + [f"file://{sweep_dir}"]
        words.append(f"hydra.searchpath=[{','.join(searchpath)}]")
    words.append(f"experiment={best_config_name(settings)}")
    return " ".join(shlex.quote(word) for word in [*words, *deletions(base_config)])


def deletions(base_config: DictConfig) -> list[str]:
    """The sweep's ``~key`` overrides: a YAML file cannot delete a key, so the command that trains the best config
    repeats them (without them the file trained with the key the trials did not have: not the trial's numbers)."""
    return [str(o) for o in (OmegaConf.select(base_config, "hydra.overrides.task") or ()) if str(o).startswith("~")]


def write_best_config(study: optuna.Study, trial, settings: SweepSettings, config_loader, base_config: DictConfig) -> Path:
    """``<sweep dir>/experiment/<study>_best.yaml``: the groups and values in which the best trial's
    config differs from the defaults, so ``experiment=<study>_best`` reproduces it exactly."""
    import shlex

    from hydra.types import RunMode

    from .space import trial_overrides

    config_name = base_config.hydra.job.config_name
    # this command line's fixed overrides (the study's records mask credentials) and the trial's values
    trial_config = config_loader.load_sweep_config(base_config, trial_overrides(settings.space, dict(trial.params)))
    defaults = config_loader.load_configuration(config_name, [], RunMode.RUN)
    chosen = {g: c for g, c in trial_config.hydra.runtime.choices.items()
              if c is not None and not g.startswith(SKIPPED_GROUPS)}
    ordered: list[tuple[str, str]] = []
    if chosen.get("task") != defaults.hydra.runtime.choices.get("task"):
        # the task comes first: it brings its own data set and model, which need no override then
        ordered.append(("task", chosen["task"]))
        defaults = config_loader.load_configuration(config_name, ["task=" + chosen["task"]], RunMode.RUN)
    ordered += [(g, c) for g, c in chosen.items() if g != "task" and defaults.hydra.runtime.choices.get(g) != c]
    plain = config_loader.load_configuration(config_name, [f"{g}={c}" for g, c in ordered], RunMode.RUN)
    from pipeline.config import absolute_data_paths

    # data files as the trials read them, from wherever the file is run (the sweep's folder may be elsewhere)
    for config in (trial_config, plain):
        absolute_data_paths(config)
    values = _difference(_without_hydra(trial_config), _without_hydra(plain))
    secrets = _take_out_secrets(values)
    lines = [
        "# @package _global_",
        f"# Best trial {trial.number} of Optuna study '{settings.study_name}': "
        + ", ".join(f"{n}={v:.6g}" for n, v in zip(settings.objectives, trial.values)),
        f"# Run it: {train_command(settings, base_config)}",
        f"# (or copy this file into {user_config_dir(base_config) or 'conf'}/experiment/ and run: pipeline-train "
        + (f"--config-dir {user_config_dir(base_config)} " if user_config_dir(base_config) else "")
        + (f"--config-name {config_name} " if config_name != "config" else "")
        + f"experiment={best_config_name(settings)}"
        + "".join(f" {shlex.quote(d)}" for d in deletions(base_config)) + ")",
    ]
    if secrets:  # this file is logged to the store: credentials stay on the command line
        lines.append(f"# Left out (credentials): {', '.join(secrets)}; give them on the command line as the sweep had them")
    body = {}
    if ordered:
        body["defaults"] = [{f"override /{g}": c} for g, c in ordered]
    body.update(values)
    path = Path(settings.sweep_dir) / "experiment" / f"{best_config_name(settings)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + (OmegaConf.to_yaml(OmegaConf.create(body)) if body else ""))
    return path


def _take_out_secrets(values: dict, prefix: str = "") -> list[str]:
    """Remove from ``values`` (nested) every value the store would mask (a key that looks like a credential, a URL
    with a password, a credential from the environment); returns their dotted keys."""
    from pipeline.tracking.redact import is_secret_key

    taken = []
    for key in list(values):
        dotted = f"{prefix}.{key}" if prefix else str(key)
        value = values[key]
        if isinstance(value, dict):
            taken += _take_out_secrets(value, dotted)
            if not value:
                del values[key]
        elif value not in (None, "") and (is_secret_key(dotted) or redact_text(str(value)) != str(value)):
            del values[key]
            taken.append(dotted)
    return taken


def _without_hydra(config: DictConfig) -> dict:
    container = OmegaConf.to_container(config, resolve=False)
    container.pop("hydra", None)
    container.pop("sweep", None)
    return container


def _difference(config: dict, reference: dict) -> dict:
    """The entries of ``config`` that ``reference`` lacks or holds with another value."""
    changed = {}
    for key, value in config.items():
        if key not in reference:
            changed[key] = value
        elif isinstance(value, dict) and isinstance(reference[key], dict):
            nested = _difference(value, reference[key])
            if nested:
                changed[key] = nested
        elif value != reference[key]:
            changed[key] = value
    return changed


def print_summary(study, settings: SweepSettings, state, counts: dict, best: list, best_file: Optional[Path],
                  parent: ParentRun, finals: list[dict], command: str) -> None:
    from pipeline.tasks.intervals import split_intervals, with_interval

    finished = len(state.finished)
    counted = f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed)"
    if finished > settings.n_trials:  # "17 of 2 trials finished" read as a count gone wrong
        lines = ["", f"Optuna study '{settings.study_name}' ({settings.redacted_storage}): {finished} trials finished "
                     f"{counted}; hydra.sweeper.n_trials={settings.n_trials}: the study already had {finished} >= "
                     f"{settings.n_trials}, so this command ran no trial (a larger n_trials adds trials)"]
    else:
        lines = ["", f"Optuna study '{settings.study_name}' ({settings.redacted_storage}): "
                     f"{finished} of {settings.n_trials} trials finished {counted}"]
    # counted above by their latest attempt; Optuna's failed_trial names the first attempt of a chain of retries
    retried = {int(t.system_attrs["failed_trial"]) for t in state.finished + state.running + state.waiting
               if t.system_attrs.get("failed_trial") is not None}
    if retried:
        lines.append(f"  {len(retried)} trial(s) retried with the same parameters after the process running them stopped "
                     f"(interrupted or killed; the earlier attempts are FAIL in trials.csv): {', '.join(map(str, sorted(retried)))}")
    queued = int(study.user_attrs.get(SETUP_DONE_ATTR) or settings.n_trials)
    if state.waiting and not state.running and len(state.finished) >= settings.n_trials:
        lines.append(f"  {len(state.waiting)} more queued: the study was given n_trials={queued} by an earlier command; "
                     f"hydra.sweeper.n_trials={queued} runs them")
    elif settings.timeout is not None and finished < settings.n_trials and not state.running:
        lines.append(f"  hydra.sweeper.timeout={settings.timeout:g} (seconds) stopped the sweep with "
                     f"{settings.n_trials - finished} of its {settings.n_trials} trials not run; the sweep ended as the "
                     "timeout asks (its parent run FINISHED) with the best of the finished trials: rerun the same "
                     "command to run the rest")
    elif state.waiting or state.running:
        lines.append(f"  {len(state.waiting)} waiting, {len(state.running)} running: rerun the same command to continue")
    if best:
        values = ", ".join(f"{n}={v:.6g}" for n, v in zip(settings.objectives, best[0].values))
        lines.append(f"Best trial {best[0].number}: {values}")
        if len(best) > 1:
            lines.append(f"  ({len(best)} trials on the Pareto front; this one is best on {settings.objectives[0]}; "
                         "see plots/pareto_front.png)")
        lines.append("  " + " ".join(f"{k}={v}" for k, v in best[0].params.items()))
        for final in finals:
            shown, bounds = split_intervals({k: v for k, v in final["metrics"].items() if k.startswith("test/")})
            tested = ", ".join(f"{k}={with_interval(v, bounds.get(k))}" for k, v in sorted(shown.items()))
            note = "" if final["reproduced"] else " (its validation value differs from the trial's: see the log)"
            lines.append(f"Trial {final['trial']} trained again and tested: {tested}{note}")
            lines.append(f"  checkpoint, model and plots: {final['output_dir']}"
                         + (f"; MLflow run {final['run_id']} (tagged best=true)" if final.get("run_id") else ""))
        lines.append(f"Best config: {best_file}")
        lines.append(f"  train it: {command}")
    lines.append(f"Trials table and plots: {Path(settings.sweep_dir).resolve()}")
    if parent.run_id:
        lines.append(f"MLflow parent run {parent.run_id} in experiment '{parent.experiment_name}' at {redact_text(parent.tracking_uri)}")
    lines.append(f"Dashboard: optuna-dashboard {settings.redacted_storage}")
    print("\n".join(lines), flush=True)
