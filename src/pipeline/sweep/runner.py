"""A whole sweep, start to end: settings from ``hydra.sweeper.*``, study set-up or resume,
the MLflow parent run, the workers, the report."""
from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from pipeline.sqlite import sqlite_uri

from .space import SearchSpaceError, parse_search_space
from .study import (DATA_CONTENTS, FINGERPRINT_IGNORED, OBJECTIVES, PARENT_RUN_ATTR, SETUP_DONE_ATTR, SweepError,
                    SweepSettings, create_or_resume, load_study, progress)

log = logging.getLogger("pipeline.sweep")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def build_settings(options: dict, arguments: list[str], base_config: DictConfig) -> SweepSettings:
    options = {k: _plain(v) for k, v in options.items() if k != "_target_"}
    try:
        space = parse_search_space(options.get("params") or {}, arguments, options.get("conditions") or {})
    except SearchSpaceError as error:
        raise SweepError(str(error)) from None
    if not space.params:
        raise SweepError("the search space is empty: set hydra.sweeper.params (see conf/hparams_search/) "
                         "or give sweep overrides such as optimizer.lr='tag(log, interval(1e-4, 1e-1))'")
    task = base_config.task
    objectives = options.get("objectives") or [f"{task.monitor}_best"]
    directions = options.get("directions") or [{"min": "minimize", "max": "maximize"}[task.mode]] * len(objectives)
    study_name = options.get("study_name") or base_config.hydra.runtime.choices.get("hparams_search") or "sweep"
    storage = options.get("storage") or sqlite_uri(Path(base_config.paths.mlruns_dir).resolve() / "optuna" / "optuna.db")
    seed = options.get("seed")
    if seed is None:  # the config's seed (~seed removed it: refused as a single run refuses it, not a traceback)
        from pipeline.config import _integer
        from pipeline.errors import ConfigError

        try:
            seed = _integer("seed", base_config.get("seed"))
        except ConfigError as error:
            raise SweepError(str(error)) from None
    settings = SweepSettings(
        study_name=str(study_name), storage=str(storage), n_trials=int(options.get("n_trials", 20)),
        objectives=list(objectives), directions=[str(d) for d in directions], space=space,
        n_jobs=int(options.get("n_jobs", 1)), timeout=options.get("timeout"),
        sampler=str(options.get("sampler", "tpe")), sampler_options=dict(options.get("sampler_options") or {}),
        pruner=str(options.get("pruner", "hyperband")), pruner_options=dict(options.get("pruner_options") or {}),
        seed=int(seed),
        max_failure_rate=float(options.get("max_failure_rate", 0.5)),
        heartbeat_interval=int(options.get("heartbeat_interval", 10)),
        sweep_dir=str(base_config.hydra.sweep.dir),
        # resumed with other objectives, the study's values (another metric's) would be ranked as these
        fingerprint={**study_fingerprint(base_config, space), OBJECTIVES: f"[{','.join(map(str, objectives))}]"},
        trial_checkpoints=bool(options.get("trial_checkpoints", False)),
        trial_test=bool(options.get("trial_test", False)),
        trial_artifacts=bool(options.get("trial_artifacts", False)),
        finalize_top_k=int(options.get("finalize_top_k", 1)),
    )
    settings.check()
    tested = [objective for objective in settings.objectives if objective.startswith("test/")]
    if tested:  # without trial_test no trial has it (each failed); with it, the sweep selected on the test rows
        chosen = ",".join("val/" + o[len("test/"):] if o in tested else o for o in settings.objectives)
        raise SweepError(f"hydra.sweeper.objectives: {tested[0]!r} is measured on the test split, which selection must "
                         "not see (the chosen trial's test score would no longer estimate new data); select by "
                         f"validation: hydra.sweeper.objectives=[{chosen}] (the best trials are tested when the sweep ends)")
    ways = [_better_way(objective) or way for objective, way in zip(settings.objectives, settings.directions)]
    for objective, way, better in zip(settings.objectives, settings.directions, ways):
        if way != better:  # maximize val/loss_best: the worst trial would be "best"
            # the whole list to set: a search file's directions cannot be left out on the command line
            raise SweepError(f"hydra.sweeper.directions: {way} for {objective}, which is better "
                             f"{'lower' if better == 'minimize' else 'higher'}; set {better}: "
                             f"hydra.sweeper.directions=[{','.join(ways)}]")
    loggers = base_config.get("logger")
    mlflow_node = loggers.get("mlflow") if isinstance(loggers, DictConfig) else None
    if isinstance(mlflow_node, DictConfig) and mlflow_node.get("register_as") and settings.finalize_top_k == 0:
        raise SweepError("logger.mlflow.register_as registers the best runs a sweep trains again at its end, and "
                         "hydra.sweeper.finalize_top_k=0 trains none; set finalize_top_k >= 1 or register_as=null")
    return settings


def check_group_choices(options: dict, arguments: list[str], config_loader) -> None:
    """A choice of config-group options that names one there is not (optimizer=choice(adam,sgdd), in the search
    file or on the command line) is refused as ``pipeline-train optimizer=sgdd`` refuses it, before the space's
    conditions are read: a condition on sgd, which the choice no longer took, was the error named instead."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from pipeline.cli.errors import no_such_option

    parser = OverridesParser.create()
    params = _plain(options.get("params")) or {}
    for line in [f"{key}={value}" for key, value in params.items()] + list(arguments):
        try:
            override = parser.parse_overrides([line])[0]
            if not override.is_discrete_sweep():
                continue
            group = override.key_or_group.lstrip("+~")
            available = sorted(o for o in config_loader.get_group_options(group) if not o.startswith("_"))
        except Exception:  # parse_search_space says what cannot be read
            continue
        for value in override.sweep_string_iterator() if available else ():
            if value not in available:
                raise SweepError(no_such_option(group, value, available))


def mlflow_logger_node(base_config: DictConfig):
    """The config's MLflow logger (``logger.mlflow``), resolved; None when the sweep is not tracked."""
    loggers = base_config.get("logger") or {}
    for node in loggers.values() if isinstance(loggers, DictConfig) else ():
        if isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith("tracking.MLflowLogger"):
            return OmegaConf.to_container(node, resolve=True)
    return None


# keys that choose which rows a run trains and validates on (the top-level seed draws the splits too)
ROW_KEYS = ("seed", "data.seed", "data.fold", "data.cv_folds", "data.val_fraction", "data.test_fraction",
            "data.limit_rows", "data.path", "data.test_path")
# config parts that change what a trial trains and measures (not where it logs or how it prints)
FINGERPRINT_GROUPS = ("task", "data", "model", "optimizer", "scheduler", "trainer", "callbacks", "seed")


def study_fingerprint(base_config: DictConfig, space) -> dict[str, str]:
    """The search space and the trials' fixed settings, as {key: text}: a resumed study must match it."""
    from pipeline.tracking.params import flatten

    fingerprint = {f"search.{name}": text for name, text in space.describe().items()}
    for group in FINGERPRINT_GROUPS:
        node = base_config.get(group)
        tree = OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node
        for key, value in flatten(tree, group):
            searched = any(key == p.name or key.startswith(p.name + ".") for p in space.params)
            if key not in FINGERPRINT_IGNORED and not searched:
                fingerprint[key] = str(value)
    choices = base_config.hydra.runtime.choices
    for group in ("task", "data", "model", "optimizer", "scheduler", "trainer"):
        if choices.get(group):
            fingerprint[f"choice.{group}"] = str(choices[group])
    return fingerprint


def _build_optimizer(config: DictConfig) -> None:
    """Build the config's optimizer on one parameter: values only the optimizer checks (SGD's nesterov=true with
    momentum=0) are refused before the study, not by the trials that draw them."""
    import torch
    from hydra.utils import instantiate

    from pipeline.errors import ConfigError

    try:
        instantiate(config.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    except Exception as error:
        cause = error.__cause__ or error  # Hydra wraps what the optimizer raised
        raise ConfigError(f"optimizer: cannot build it: {' '.join(str(cause).split())[:400]}") from None


def _validate_with(config: DictConfig, values: dict, validate) -> None:
    """``validate`` ``config`` with ``values`` (dotted keys) set, then the config as it was."""
    absent = object()
    before = {key.lstrip("+~"): OmegaConf.select(config, key.lstrip("+~"), default=absent) for key in values}
    try:
        with open_dict(config):
            for key, value in values.items():
                OmegaConf.update(config, key.lstrip("+~"), value, force_add=True)
        validate(config)
    finally:
        with open_dict(config):
            for key, value in before.items():
                if value is absent:  # a key the corner added (+key=...): taken out again
                    parent, _, leaf = key.rpartition(".")
                    node = OmegaConf.select(config, parent) if parent else config
                    node.pop(leaf, None)
                else:
                    OmegaConf.update(config, key, value, force_add=True)


def _better_way(objective: str):
    """minimize or maximize for a metric whose better side its name says (a loss, an error; an accuracy, a score);
    None for others (epoch time, a metric of the user's own)."""
    from pipeline.config import metric_direction

    return {"min": "minimize", "max": "maximize", None: None}[metric_direction(objective)]


def _drawing(probe: dict, first, error: str = "") -> str:
    """Which values a refused trial would draw: where it is not the first corner of the space, those that differ
    from the first's; for the first, a searched config option whose keys the error names (``unknown key
    'optimizer.lrr' for torch.optim.SGD`` where optimizer=choice(sgd,adam) drew sgd)."""
    if first is None:
        drawn = [f"{name}={value}" for name, value in probe.items() if "." not in name and f"{name}." in error]
        built = error.split(": cannot build it", 1)[0] if ": cannot build it" in error else None
        of_built = [name for name in probe if built and name.startswith(f"{built}.")]
        named = [name for name in of_built if name in error]  # model.activation in "model.activation must be one of"
        drawn += [f"{name}={probe[name]}" for name in named or of_built]
    else:
        drawn = [f"{name}={value}" for name, value in probe.items() if first.get(name) != value]
    return f" (one drawing {', '.join(drawn)})" if drawn else ""


def check_a_trial_config(settings: SweepSettings, hydra_context, base_config: DictConfig) -> None:
    """Compose and validate the config of a trial at the corners of the space before any study exists: a
    searched key the config does not have (a typo, a key of another model) is refused in one line, instead
    of failing every trial."""
    from pipeline.config import absolute_data_paths, base_file_chosen, check_sweepable, validate
    from pipeline.errors import ConfigError
    from pipeline.tasks import task_kind
    from pipeline.train import check_monitor

    from .space import corners
    from .worker import trial_configs

    base_file = base_file_chosen(base_config.hydra.runtime.choices)
    if base_file:
        raise SweepError(base_file)
    from pipeline.distributed import check_not_sweeping_in_every_rank

    try:  # every rank of torchrun or srun would create and run the whole study
        check_not_sweeping_in_every_rank(str(base_config.hydra.launcher.get("_target_", "")))
    except ConfigError as error:
        raise SweepError(str(error)) from None

    configs = trial_configs(hydra_context.config_loader, base_config, settings.space)
    first, first_config = None, None
    # the corners that draw a model's values, with their model config: built as a run builds it once the data (whose
    # description sizes the model) is set up below; values only the class judges (an unknown activation) are refused
    models: list[tuple[dict, Any, dict]] = []

    def checked(config: DictConfig) -> None:  # the config's values, then the optimizer they build
        validate(config)
        _build_optimizer(config)
        other_data = first is not None and any(k in ("task", "data") or k.startswith("data.") for k in changed)
        model = OmegaConf.to_container(config.model, resolve=True)
        drawn = any(k == "model" or k.startswith("model.") for k in probe)
        if drawn and not other_data and all(model != built for _, _, built in models):
            models.append((probe, first, model))

    # every choice and both ends of every range (conditional parameters where their condition holds): a value
    # that cannot run is refused now, not found by the trials that draw it (each a FAILED run)
    for probe in corners(settings.space):
        try:
            changed = {} if first is None else {k: v for k, v in probe.items() if first.get(k) != v}
            if first is not None and set(probe) == set(first) and all("." in k for k in changed):
                # values of keys, not other config files: the first corner's config with them (composing each
                # corner anew costs ~60 ms); validated, then given its own values back
                _validate_with(first_config, changed, checked)
                continue
            config = configs.compose(probe, {})
            with open_dict(config):
                config.pop("sweep", None)
                config.pop("hydra", None)
                config.paths.output_dir = str(settings.sweep_dir)
            absolute_data_paths(config)
            checked(config)
            check_sweepable(config)  # validate() checks it only for a trial's config, which names its sweep
            # task.monitor before the objectives, which are judged against it (<task.monitor>_best): a monitor no run
            # logs was blamed on the search file's objective, or, as the objective's own monitor, failed every trial
            check_monitor(config, task_kind(str(config.task.kind)), None)
            check_objectives(settings, str(config.task.kind), str(config.task.monitor), str(config.task.mode))
        except ConfigError as error:
            raise SweepError(f"a trial of this search cannot run{_drawing(probe, first, str(error))}: {error}") from None
        except Exception as error:  # e.g. a choice that names no config file
            raise SweepError(f"a trial of this search cannot be composed{_drawing(probe, first)}: "
                             f"{' '.join(str(error).split())[:400]}") from None
        if first is None:
            first, first_config = probe, config
    # the data of the first corner of the space, set up now (in worker 0's cache: this process, so trials with the
    # same data config reuse it): data that is missing or cannot be read is one line before any study or run
    # exists, not a failure of every trial
    from pipeline.errors import DataError

    from .worker import PREPARED_DATA

    try:
        datamodule = PREPARED_DATA(first_config)
    except Exception as error:
        cause = error if isinstance(error, DataError) else error.__cause__  # Hydra wraps what the data class raised
        if isinstance(cause, (DataError, ConfigError)):
            raise SweepError(str(cause)) from None
        raise
    from pipeline.models import build_model
    from pipeline.train import building

    for probe, before, model in models:
        try:
            with building("model"):
                build_model(OmegaConf.create(model), datamodule.spec)
        except ConfigError as error:
            raise SweepError(f"a trial of this search cannot run{_drawing(probe, before, str(error))}: {error}") from None
    # image files are told apart by path, size and modification time, not contents: a copy on another machine of
    # a study's workers, or a folder copied anew, would differ; only digests of the rows' contents are kept
    if not hasattr(datamodule, "dataset_records"):
        # the rows of the space's first corner (every trial's, unless a data key, the data set or the seed is
        # searched; then one corner's, drawn alike by every command of the study): a study resumed on a file whose
        # rows changed (same path, other contents) would rank trials of two data sets together
        from pipeline.tracking.artifacts import dataset_records

        settings.fingerprint[DATA_CONTENTS] = ", ".join(
            f"{context} {digest}" for context, (digest, _, _) in sorted(dataset_records(datamodule).items()))


def check_objectives(settings: SweepSettings, kind: str, monitor: str, mode: str = "min") -> None:
    """A validation objective must be a metric the trials log (``val/<metric>``, or ``<task.monitor>_best``: the
    best value is kept of the monitored metric alone); else every trial would train to its end and fail. Other
    objectives (``train/epoch_time_s``) are checked per trial."""
    from pipeline.errors import ConfigError
    from pipeline.tasks import task_kind

    names = ("loss", *task_kind(kind).metric_names(None))
    allowed = [f"val/{name}" for name in names] + [f"{monitor}_best"]
    for objective in settings.objectives:
        if objective.startswith("val/") and objective not in allowed:
            from pipeline.config import metric_direction

            metric = objective[:-len("_best")]
            better = metric_direction(metric)
            best = (f"; a best value is kept of task.monitor ({monitor}) alone: task.monitor={metric}"
                    f"{f' task.mode={better}' if better not in (None, mode) else ''} keeps it"
                    if objective.endswith("_best") and metric in allowed else "")
            raise ConfigError(f"hydra.sweeper.objectives: {objective!r} is not a metric of this search's runs; a {kind} "
                              f"run logs {', '.join(allowed)}{best}")


def study_folder(base_config: DictConfig, study_name: str) -> str:
    """Where the sweep writes: ``hydra.sweep.dir`` when given, else ``multirun/<study name>`` under the working
    directory, so that every resume of one study adds to one folder (trial folders are named by trial number)."""
    from omegaconf import read_write

    hydra_node = base_config.hydra
    given = any(o.startswith("hydra.sweep.dir=") for o in hydra_node.overrides.hydra)
    folder = str(OmegaConf.select(base_config, "hydra.sweep.dir")) if given else str(
        Path(str(base_config.paths.root_dir)) / "multirun" / re.sub(r"[^A-Za-z0-9_.-]+", "_", study_name))
    with read_write(hydra_node.sweep), open_dict(hydra_node.sweep):
        hydra_node.sweep.dir = folder
    return folder


def check_some_trial_completed(study, settings: SweepSettings) -> None:
    """A sweep whose every finished trial failed or was pruned has no best trial: it ends with an error (exit 2, the
    parent run FAILED), not as a success with nothing to show."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if not trials or any(t.state == TrialState.COMPLETE for t in trials):
        return
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    if settings.timeout is not None and waiting and not any(t.state.is_finished() for t in trials):
        raise SweepError(
            f"hydra.sweeper.timeout={settings.timeout:g} (seconds, counted from the command's start) was reached before "
            f"a trial of study '{settings.study_name}' finished; its {waiting} queued trials wait: rerun the command "
            "with a larger hydra.sweeper.timeout (or none) to run them")
    failed = [t for t in trials if t.state == TrialState.FAIL or t.user_attrs.get("diverged")]
    pruned = sum(t.state == TrialState.PRUNED and not t.user_attrs.get("diverged") for t in trials)
    last = failed[-1].user_attrs.get("fail_reason", "no reason recorded") if failed else None
    raise SweepError(
        f"no trial of study '{settings.study_name}' completed ({len(failed)} failed or diverged, {pruned} pruned)"
        + (f"; last failure: {last}" if last else "")
        + ". A study keeps its finished trials: once the cause is fixed, start a new study "
          "(hydra.sweeper.study_name=<new name>) or add trials (a larger hydra.sweeper.n_trials)")


def warn_search_over_experiment(settings, base_config: DictConfig) -> None:
    """``experiment=X hparams_search=Y``: both set keys (``trainer.max_epochs``), and the search's file, composed
    after the experiment's, wins; the experiment's value was dropped without a word (its 200 epochs trained 20).
    Said once per key both files set otherwise, unless the command line sets it, with how to keep the
    experiment's. Keys the search samples are left out (a trial's sampled value is meant to win)."""
    from pipeline.config import CONFIG_DIR
    from pipeline.tracking.params import flatten

    try:
        hydra_cfg = base_config.hydra  # the sweeper runs before any job: HydraConfig is not set yet
        choices = hydra_cfg.runtime.choices
        given = {str(o).lstrip("+~").partition("=")[0] for o in hydra_cfg.overrides.task}
        experiment, search = choices.get("experiment"), choices.get("hparams_search")
        if not experiment or not search:
            return
        files = [CONFIG_DIR / "experiment" / f"{experiment}.yaml", CONFIG_DIR / "hparams_search" / f"{search}.yaml"]
        if not all(path.is_file() for path in files):
            return  # options of a --config-dir of the user's: not read here
        set_by = [dict(flatten({k: v for k, v in OmegaConf.to_container(OmegaConf.load(path)).items()
                                if k not in ("defaults", "hydra")})) for path in files]
    except Exception:  # a note, never a reason to fail
        return
    searched = {p.name for p in settings.space.params}
    for key in sorted(set(set_by[0]) & set(set_by[1])):
        if set_by[0][key] != set_by[1][key] and key not in given and key not in searched:
            log.warning("experiment=%s sets %s=%s, and hparams_search=%s (composed after it) sets %s=%s: the trials "
                        "take %s; add %s=%s to the command to keep the experiment's", experiment, key, set_by[0][key],
                        search, key, set_by[1][key], set_by[1][key], key, set_by[0][key])


def _others_train(settings: SweepSettings) -> bool:
    """Whether workers of other commands (another shell, another machine) are training the study's trials: an
    interrupted command leaves the shared parent run RUNNING for them to end."""
    from .study import trained_elsewhere

    try:
        others = trained_elsewhere(load_study(settings))
    except Exception:
        return False
    if others:
        log.info("other workers are training trials of study '%s': its parent run stays RUNNING until they end",
                 settings.study_name)
    return others


def check_parent_run(study, settings: SweepSettings, parent) -> None:
    """A resumed study's trials' runs go under its parent run, in its experiment: a command logging to another store
    (a worker without the team's MLFLOW_TRACKING_URI) or another experiment is refused before it adds any trial."""
    from pipeline.tracking.redact import redact_text

    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if not parent.enabled or not run_id:
        return
    try:
        held_in = parent.other_experiment(run_id)
    except Exception as error:
        if "not found" not in str(error).lower() and "RESOURCE_DOES_NOT_EXIST" not in str(error):
            raise
        recorded = next((t.user_attrs["mlflow_tracking_uri"] for t in study.get_trials(deepcopy=False)
                         if t.user_attrs.get("mlflow_tracking_uri")), None)
        raise SweepError(f"study '{settings.study_name}' logs its runs under the parent run {run_id}, which the MLflow "
                         f"store {redact_text(str(parent.tracking_uri))} does not hold"
                         + (f"; its trials were logged to {recorded}" if recorded else "")
                         + ": resume it with that store (MLFLOW_TRACKING_URI or logger.mlflow.tracking_uri), or start a "
                           "new study (hydra.sweeper.study_name=...)") from None
    if held_in is not None:
        raise SweepError(f"study '{settings.study_name}' logs its runs in the experiment '{held_in}', and this command "
                         f"in '{parent.experiment_name}' (logger.mlflow.experiment_name or MLFLOW_EXPERIMENT_NAME): its "
                         f"trials would be split between the two; resume it with logger.mlflow.experiment_name="
                         f"'{held_in}', or start a new study (hydra.sweeper.study_name=...)")


def run_sweep(options: dict, arguments: list[str], hydra_context, base_config: DictConfig) -> dict:
    from pipeline.tracking.sweeps import ParentRun

    from .report import parent_run_params, start_plots, summarize, warm_plots, write_tables
    from .worker import finalize, run_workers

    check_group_choices(options, arguments, hydra_context.config_loader)
    settings = build_settings(options, arguments, base_config)
    check_a_trial_config(settings, hydra_context, base_config)
    for note in settings.space.notes:  # optimizer.momentum where the command line's optimizer choice has no sgd
        print(f"Note: {note}", flush=True)
    settings.sweep_dir = study_folder(base_config, settings.study_name)
    made = not Path(settings.sweep_dir).exists()
    Path(settings.sweep_dir).mkdir(parents=True, exist_ok=True)
    record = Path(settings.sweep_dir) / "multirun.yaml"  # Hydra's record of the sweep, credentials masked
    from pipeline.tracking.redact import redact_yaml_text

    record.write_text(redact_yaml_text(OmegaConf.to_yaml(base_config)))
    try:
        parent = ParentRun.from_logger_config(mlflow_logger_node(base_config))
        parent.prepare()  # the experiment is looked up while the study's storage opens
        if "task" not in {p.name for p in settings.space.params}:  # the best runs register as the store allows
            refusal = parent.registered_task_refusal(mlflow_logger_node(base_config).get("register_as")
                                                     if parent.enabled else None, str(base_config.task.name))
            if refusal:
                raise SweepError(f"{refusal} (the sweep's best runs register their models)")
        study, created = create_or_resume(settings, lambda: parent.create(
            f"sweep-{settings.study_name}", parent_run_params(settings), {"sweep.study_name": settings.study_name}),
            lambda study: check_parent_run(study, settings, parent))
    except BaseException:  # a storage or store that cannot be opened: refused, and no folder left for nothing
        if made and [path.name for path in Path(settings.sweep_dir).iterdir()] == ["multirun.yaml"]:
            record.unlink()
            Path(settings.sweep_dir).rmdir()
        raise
    # the study's number of trials: a later command's smaller n_trials runs none and takes none away
    queued = max(int(study.user_attrs.get(SETUP_DONE_ATTR) or 0), len(progress(study).finished))
    parent.attach(study.user_attrs.get(PARENT_RUN_ATTR), {"sweep.n_trials": max(settings.n_trials, queued)})
    warm_plots(parent)
    print(f"{'Created' if created else 'Resuming'} Optuna study '{settings.study_name}' in {settings.redacted_storage}: "
          f"{settings.n_trials} trials, {settings.n_jobs} worker(s), sampler={settings.sampler}, "
          f"pruner={settings.pruner}, objective(s) {', '.join(f'{o} ({d})' for o, d in zip(settings.objectives, settings.directions))}",
          flush=True)
    compared = [p.name for p in settings.space.params if p.name in ("data", "task")]
    if compared and all(o.startswith("val/") for o in settings.objectives):
        log.warning("%s searched: the study compares %s across %s, whose values do not measure the same thing; the "
                    "best trial is the one whose data gives the lowest (or highest) number, not the best model",
                    " and ".join(compared), ", ".join(settings.objectives),
                    "data sets" if "data" in compared else "tasks")
    rows = [p.name for p in settings.space.params if p.name in ROW_KEYS]
    if rows and all(o.startswith("val/") for o in settings.objectives):
        log.warning("%s searched: each trial validates on other rows, so the study compares %s measured on different "
                    "rows, and the best trial is partly the one whose rows were easiest; search the model and its "
                    "training on fixed rows, then compare the best across folds or seeds with pipeline-compare",
                    ", ".join(rows), ", ".join(settings.objectives))
    warn_search_over_experiment(settings, base_config)
    plots_drawn = tables = None
    try:
        run_workers(settings, hydra_context, base_config)
        study = load_study(settings)
        check_some_trial_completed(study, settings)
        plots_drawn = start_plots(settings, parent)
        # written while the store-writer draws the plots; the final runs add no trial
        tables = write_tables(study, settings, hydra_context.config_loader, base_config)
        finals = finalize(study, settings, hydra_context, base_config)
    except KeyboardInterrupt as interrupt:
        if not _others_train(settings):  # else the parent run is theirs to end
            parent.finish("KILLED", "interrupted (Ctrl-C or SIGTERM); finished trials are kept in the study: rerun "
                                    "the same command to continue it")
        # every trial had ended: what stopped was the best trial(s) trained again (rerunning trains them again)
        interrupt.sweep_stage = "final training" if tables is not None else None
        if tables is None:
            with contextlib.suppress(Exception):
                state = progress(load_study(settings))
                if not state.waiting and not state.running:  # between the last trial's end and the final training
                    interrupt.sweep_stage = "after the trials"
        raise
    except BaseException as failure:
        # what finished so far is still worth a report; the error itself is what the user sees
        try:
            summarize(load_study(settings), settings, parent, hydra_context.config_loader, base_config, tables=tables)
        except Exception as error:
            log.error("could not write the sweep report: %s", error)
        parent.finish("FAILED", f"{type(failure).__name__}: {failure}")
        raise
    try:
        summary = summarize(load_study(settings), settings, parent, hydra_context.config_loader, base_config, finals,
                            plots_drawn, tables)
    except KeyboardInterrupt as interrupt:
        parent.finish("KILLED", "interrupted (Ctrl-C or SIGTERM) while the sweep's report was written: rerun the same "
                                "command to write it")
        interrupt.sweep_stage = "report"
        raise
    parent.finish("FINISHED")
    return summary
