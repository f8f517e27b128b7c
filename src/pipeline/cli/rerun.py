"""``pipeline-rerun <run_id> [key=value ...]``: train again from the config logged with a run.

The run's ``config.yaml`` (the resolved config) is downloaded, the overrides are merged into it, and
``train()`` runs it into a fresh ``outputs/<date>/<time>`` folder; the new run is tagged
``rerun_of=<run_id>``. Without overrides, on the CPU, it reproduces the original test metrics exactly.

A config in the store could have been edited by anyone with write access to it, so it is trusted no
further than this, all checked before any run exists:

* every ``_target_`` (nested ones, ``_partial_`` and ``_args_`` included) is imported and judged by the
  object it names, not by its spelling: it must be a class defined in one of the allowed modules and of
  the kind its place builds (a data module under ``data``, an optimizer under ``optimizer`` ...). An
  alias such as ``pipeline.cli.rerun.shutil.rmtree`` names ``shutil.rmtree`` and is refused;
* every folder the config writes to (checkpoints, logger folders) lies inside the new run's output folder;
* since a logged config is resolved, one with ``${...}`` interpolations is refused (an
  ``${oc.env:...}`` would copy an environment secret into the new run).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from pipeline.cli import user_path
from pipeline.config import ConfigError

# Modules whose classes a rerun may build (a class's defining module must be one of these or below it)
ALLOWED_MODULES = ("pipeline.data", "pipeline.models", "pipeline.schedulers", "pipeline.callbacks",
                   "pipeline.fine_tuning", "pipeline.tracking.run", "pipeline.tracking.loggers", "torch.optim",
                   "pytorch_lightning.callbacks", "pytorch_lightning.loggers", "pytorch_lightning.strategies",
                   "pytorch_lightning.plugins", "pytorch_lightning.trainer.trainer", "lightning_fabric.plugins")
# keys whose value is a folder the built object writes into
WRITTEN_FOLDER_KEYS = ("dirpath", "save_dir", "default_root_dir", "log_dir", "output_dir", "root_dir")
# groups picked by name on pipeline-train's command line; a rerun changes values inside them instead
CONFIG_GROUPS = ("task", "data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths")
CHOICE_PARAMS = ("task", "data", "model", "optimizer", "scheduler", "trainer")


# tags a sweep gives its runs in their config (its best runs: best=true); a rerun or an evaluation does not copy them
SWEEP_TAGS = ("best", "sweep.role", "sweep.trial_number", "sweep.study_name", "sweep.rank", "sweep.objective")


class RerunRefused(ConfigError):
    """The logged config or the overrides cannot be run safely or meaningfully; the message says why."""


def run_of(client, source: str, tracking_uri: str):
    """The MLflow run ``source`` names: a run id, ``runs:/<id>/...``, or a model reference (see
    :func:`logging_run_id`: the run that logged it). Raises LookupError saying what the store lacks."""
    if source.startswith("runs:/"):
        source = source[len("runs:/"):].split("/", 1)[0]
    elif source.startswith("models:/"):
        source = logging_run_id(client, source, tracking_uri)
    try:
        run = client.get_run(source)
    except Exception as error:
        raise LookupError(_missing_run(source, tracking_uri, error)) from None
    deleted = deleted_run(run, tracking_uri)
    if deleted:
        raise LookupError(deleted)
    return run


def logging_run_id(client, source: str, tracking_uri: str) -> str:
    """The id of the run that logged the model ``source`` names, resolved as ``mlflow.pyfunc.load_model`` (and so
    pipeline-predict) resolves it: ``models:/<name>/<version>``, ``models:/<name>/latest``, ``models:/<name>/<stage>``,
    ``models:/<name>@<alias>`` (``logger.mlflow.register_as`` makes the versions) or ``models:/<model id>``."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.utils.models import _parse_model_uri, get_model_name_and_version

    from pipeline.tracking.redact import redact_text

    try:
        parsed = _parse_model_uri(source)
    except MlflowException:
        raise LookupError(f"{source} is not a registered model's version; give models:/<name>/<version>, "
                          f"models:/<name>/latest or models:/<name>@<alias> (the versions of "
                          f"{redact_text(tracking_uri)} are listed in its UI)") from None
    try:
        found = get_model_name_and_version(client, source)
        if len(found) == 1:  # models:/<model id>: a model logged by a run
            return client.get_logged_model(found[0]).source_run_id
        return client.get_model_version(*found).run_id
    except MlflowException:
        raise LookupError(_missing_model(client, parsed, source, tracking_uri)) from None


def _missing_run(run_id: str, tracking_uri: str, error: Exception) -> str:
    from pipeline.cli.errors import one_line
    from pipeline.tracking.redact import redact_text

    store = redact_text(tracking_uri)
    if getattr(error, "error_code", None) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
        return f"cannot read run {run_id} from the store {store}: {redact_text(one_line(error))[:300]}"
    return (f"the store {store} has no run {run_id}; if it was recorded in another store, name that one with "
            "--tracking-uri or MLFLOW_TRACKING_URI (a run trained with paths.mlruns_dir=<dir> is in "
            "sqlite:///<dir>/mlflow.db)")


def _brief(items: list) -> str:
    return ", ".join(str(item) for item in items[:10]) + (f" ... ({len(items)} in all)" if len(items) > 10 else "")


def _missing_model(client, parsed, source: str, tracking_uri: str) -> str:
    """What the store lacks of the model ``source`` names: the registered model (and the ones it has), or the
    version, alias or stage (and the versions it has)."""
    from pipeline.tracking.redact import redact_text

    store = redact_text(tracking_uri)
    if parsed.model_id is not None:
        return f"the store {store} has no logged model {parsed.model_id} ({source})"
    try:
        model = client.get_registered_model(parsed.name)
    except Exception:
        try:
            names = sorted(m.name for m in client.search_registered_models(max_results=100))
        except Exception:
            names = []
        return (f"the store {store} has no registered model '{parsed.name}' ({source}); "
                + (f"its registered models: {_brief(names)}" if names else
                   "it has none (logger.mlflow.register_as=<name> registers a run's model)"))
    try:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{parsed.name}'"))
    except Exception:
        versions = []
    has = [f"its versions: {_brief(versions)}" if versions else "it has no versions"]
    if parsed.alias is not None:
        missing = f"no alias '{parsed.alias}'"
        aliases = [f"@{alias} (version {version})" for alias, version in sorted((model.aliases or {}).items())]
        has.append(f"its aliases: {_brief(aliases)}" if aliases else "it has no aliases")
    elif parsed.version is not None:
        missing = f"no version {parsed.version}"
    else:
        missing = f"no version in stage '{parsed.stage}'" if parsed.stage else "no versions"
    return f"the registered model '{parsed.name}' in {store} has {missing} ({source}); {'; '.join(has)}"


def deleted_run(run, tracking_uri: str) -> Optional[str]:
    """Why a deleted run (in the store's trash: deleted because it was wrong, most likely) is not used to train,
    test, predict or compare; None for a run that is not deleted."""
    if getattr(run.info, "lifecycle_stage", "active") != "deleted":
        return None
    return (f"run {run.info.run_id} is deleted (in the trash of {tracking_uri}); restore it first if it is to be used: "
            f"MLFLOW_TRACKING_URI={tracking_uri} mlflow runs restore --run-id {run.info.run_id}")


def unfinished_run(run, lacks: str) -> Optional[str]:
    """Why a run that did not end FINISHED (interrupted, failed, or killed without a word: RUNNING) lacks what its end
    logs (``lacks``: its model, checkpoint, test predictions), and where its training can be resumed from; None for a
    finished run."""
    status = run.info.status
    if status == "FINISHED":
        return None
    state = {"KILLED": "was interrupted", "FAILED": "failed",
             "RUNNING": "is still RUNNING (or its process was killed)"}.get(status, f"is {status}")
    error = " ".join(run.data.tags.get("error", "").split())[:200]
    text = f"run {run.info.run_id} {state}{f' ({error})' if error and status != 'RUNNING' else ''} before it logged {lacks}"
    resume = run.data.tags.get("resume_from")
    return text + (f"; resume its training with its command plus ckpt_path={resume}" if resume else "")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    from pipeline.tracking.run import default_store

    uri, _ = default_store()
    parser = argparse.ArgumentParser(prog="pipeline-rerun", description=__doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("run_id", help="the MLflow run to train again (its id, or a registered model's version: "
                                       "models:/<name>/<version>, models:/<name>/latest, models:/<name>@<alias>)")
    parser.add_argument("overrides", nargs="*", default=[],  # default: optional, not named as required
                        help="values to change, Hydra style: optimizer.lr=0.01 trainer.max_epochs=5")
    parser.add_argument("--tracking-uri", default=uri, help=f"store holding the run, and receiving the new one (default: {uri})")
    parser.add_argument("--output-dir", type=user_path, default=None,
                        help="where the new run writes its config, checkpoints and plots (default: a fresh outputs/<date>/<time>)")
    return parser.parse_intermixed_args(argv)  # overrides before, between or after the options


# ----- checking a config ---------------------------------------------------------------------------
def _leaves(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain (unresolved) config container."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _leaves(value, f"{path}.{index}")
    else:
        yield path, tree


def _expected_base(key: str):
    """The class a ``_target_`` at ``key`` must build, by where it sits in the config."""
    import pytorch_lightning as pl
    import torch
    from torch import nn

    group = key.split(".", 1)[0]
    if key.count(".") > 1 and group not in ("callbacks", "logger"):  # nested, e.g. trainer.strategy._target_
        return object
    return {
        "data": pl.LightningDataModule, "model": nn.Module, "optimizer": torch.optim.Optimizer,
        "scheduler": (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
        "trainer": pl.Trainer, "callbacks": pl.Callback, "logger": pl.loggers.Logger,
    }.get(group, object)


def target_refusal(key: str, target: str) -> Optional[str]:
    """Why the ``_target_`` ``target`` at ``key`` may not be built, or None when it may."""
    import inspect

    from hydra.utils import get_object

    try:
        obj = get_object(str(target))
    except Exception:
        return "it cannot be imported"
    if not inspect.isclass(obj):
        return "it is not a class (a rerun builds classes only)"
    module = getattr(obj, "__module__", "") or ""
    if not any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED_MODULES):
        named = f"{module}.{obj.__qualname__}"  # said once where the key's value names it so already
        return ("it is outside the modules a rerun builds from" if named == str(target) else
                f"it is {named}, outside the modules a rerun builds from")
    try:
        canonical = get_object(f"{module}.{obj.__qualname__}")
    except Exception:
        canonical = None
    if canonical is not obj:
        return f"it is {module}.{obj.__qualname__} under another name"
    if not issubclass(obj, _expected_base(key)):
        return f"{module}.{obj.__qualname__} is not the kind of object {key.split('.', 1)[0]} builds"
    return None


def check_logged_config(cfg: DictConfig, source: str) -> None:
    """Refuse interpolations (a logged config is resolved) and ``_target_`` outside the allow-list; ``source`` names
    the config in the refusal ("the config logged with run <id>", or a run folder's config.yaml: pipeline-eval
    <checkpoint> said "logged with run <path>")."""
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=False)):
        if isinstance(value, str) and "${" in value:
            raise RerunRefused(f"{source} has an interpolation at '{key}' ({value}); "
                               "logged configs are resolved, so it was edited. Refusing to run it")
    check_targets(cfg, source)


def check_targets(cfg: DictConfig, what: str) -> None:
    allowed = ", ".join(f"{module}.*" for module in ALLOWED_MODULES)
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=False)):
        if key == "_target_" or key.endswith("._target_"):
            reason = target_refusal(key, str(value))
            if reason is not None:
                raise RerunRefused(f"{what} sets {key}={value!r}, which is not allowed: {reason}. pipeline-rerun and "
                                   f"pipeline-eval build only classes defined in {allowed} (a config from the store "
                                   "runs no code of its own). Refusing to run it; pipeline-predict <run id> answers "
                                   "with the run's logged model, and pipeline-train with your --config-dir trains anew")


def drop_own_callbacks(cfg: DictConfig) -> list[str]:
    """An evaluation trains nothing: the callbacks of one's own (classes outside :data:`ALLOWED_MODULES`, from a
    config dir) are left out of it instead of refusing the whole evaluation. Returns their names."""
    from omegaconf import open_dict

    node = cfg.get("callbacks")
    if not isinstance(node, DictConfig):
        return []
    targets = {name: entry.get("_target_") for name, entry in node.items() if isinstance(entry, DictConfig)}
    dropped = [name for name, target in targets.items()
               if target and target_refusal(f"callbacks.{name}._target_", str(target)) is not None]
    with open_dict(node):
        for name in dropped:
            node.pop(name)
    return dropped


def confine_written_folders(cfg: DictConfig, old_output_dir: Optional[str], output_dir: Path, what: str) -> None:
    """Folders the logged config writes into (all derived from the old run's output folder) are moved to the
    new one; a folder outside it (an edited config pointing a checkpoint at /etc) is refused."""
    container = OmegaConf.to_container(cfg, resolve=False)
    new_root = output_dir.resolve()
    for key, value in _leaves(container):
        if not isinstance(value, str):
            continue
        if old_output_dir and (value == old_output_dir or value.startswith(old_output_dir.rstrip("/") + "/")):
            value = str(output_dir) + value[len(old_output_dir.rstrip("/")):]
            OmegaConf.update(cfg, key, value, merge=False)
        if key.rsplit(".", 1)[-1] in WRITTEN_FOLDER_KEYS and not key.startswith("paths."):  # paths.*: read or reset
            resolved = Path(value).resolve()
            if resolved != new_root and new_root not in resolved.parents:
                raise RerunRefused(f"{what} sets {key}={value!r}, a folder outside the new run's output folder "
                                   f"{output_dir}. Refusing to run it")


_REFERENCE = re.compile(r"\$\{([^${}:]+)\}")  # an interpolation of another key, no resolver: ${seed}, ${.data_dir}


def linked_keys(choices: dict[str, str], user_config: Optional[dict[str, str]] = None
                ) -> dict[str, list[tuple[str, str]]]:
    """Keys whose value the config files make of other keys (``data.seed: ${seed}``, ``data.path:
    ${.data_dir}/adult/adult.data``), as {source key: [(key that follows it, its template), ...]}, for the config
    options the run was composed from; templates with a resolver (``${oc.env:...}``) are left out. The logged
    config holds values only, so an override of ``seed`` or ``paths.data_dir`` must carry its followers along
    itself. ``user_config``: the files of the user's config folder the run was composed from (``--config-dir``; the
    run's ``user_config/``), searched as that folder was: an option of one's own (``model=tiny``) gave no links, and
    ``seed=3`` left ``data.seed`` at the run's seed."""
    from hydra import compose, initialize_config_dir

    from pipeline.config import CONFIG_DIR

    overrides = [f"{group}={name}" for group, name in choices.items()]
    try:
        with tempfile.TemporaryDirectory() as folder, \
                initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            for relative, text in (user_config or {}).items():
                (Path(folder) / relative).parent.mkdir(parents=True, exist_ok=True)
                (Path(folder) / relative).write_text(text)
            searched = [f"hydra.searchpath=[file://{folder}]"] if user_config else []
            composed = compose("config", overrides=overrides + searched)
    except Exception:  # an option that no longer exists: no links known
        return {}
    links: dict[str, list[tuple[str, str]]] = {}
    for key, value in _leaves(OmegaConf.to_container(composed, resolve=False)):
        if not isinstance(value, str) or "${" not in value or _REFERENCE.sub("", value).count("${"):
            continue  # not a template, or one with a resolver or a nested interpolation
        node = key.rsplit(".", 1)[0] if "." in key else ""
        template = _REFERENCE.sub(lambda m: "${" + _absolute(m.group(1), node) + "}", value)
        for source in {_absolute(ref, node) for ref in _REFERENCE.findall(value)}:
            links.setdefault(source, []).append((key, template))
    return links


def _absolute(reference: str, node: str) -> str:
    """``.data_dir`` inside ``data`` is ``data.data_dir``; ``seed`` is ``seed``."""
    if not reference.startswith("."):
        return reference
    parts = node.split(".") if node else []
    dots = len(reference) - len(reference.lstrip("."))
    return ".".join([*parts[:len(parts) - (dots - 1)], reference.lstrip(".")])


def _rendered(template: str, value_of: Callable[[str], Any]) -> Any:
    """The template with its references replaced by ``value_of`` theirs; a template that is one reference gives the
    value itself (a number stays a number)."""
    whole = _REFERENCE.fullmatch(template)
    if whole:
        return value_of(whole.group(1))
    return _REFERENCE.sub(lambda m: str(value_of(m.group(1))), template)


def apply_overrides(cfg: DictConfig, overrides: list[str], links: dict[str, list[tuple[str, str]]]) -> DictConfig:
    values = {}
    for override in overrides:
        key, equals, value = override.partition("=")
        if not equals or not key.strip("+~"):
            raise RerunRefused(f"cannot read the override '{override}'; write key=value, e.g. optimizer.lr=0.01")
        key = key.lstrip("+")
        if key.startswith("~"):
            raise RerunRefused(f"'{override}': removing keys is not supported by pipeline-rerun")
        if key in CONFIG_GROUPS:
            raise RerunRefused(f"'{override}' picks another {key} option; a rerun starts from the logged config, so change "
                               f"values inside it ({key}.<key>=...) or train anew: pipeline-train {override} ...")
        values[key] = value
    merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{k}={v}" for k, v in values.items()]))
    # the keys that follow an overridden one (data.seed follows seed; data.path follows data.data_dir, which follows
    # paths.data_dir), unless given too or the run had them set otherwise (its value is not its template's)
    changed, queue = set(values), list(values)
    while queue:
        source = queue.pop()
        for follower, template in links.get(source, []):
            if follower in changed or OmegaConf.select(cfg, follower) is None:
                continue
            if _rendered(template, lambda ref: OmegaConf.select(cfg, ref)) != OmegaConf.select(cfg, follower):
                continue
            OmegaConf.update(merged, follower, _rendered(template, lambda ref: OmegaConf.select(merged, ref)),
                             merge=False)
            changed.add(follower)
            queue.append(follower)
    return merged


# ----- running it --------------------------------------------------------------------------------
def fresh_output_dir() -> Path:
    now = datetime.now()
    return Path.cwd() / "outputs" / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


@contextlib.contextmanager
def output_dir_removed_if_refused(output_dir: Path, named_by_user: bool) -> Iterator[None]:
    """A command refused (exit 2) before its run wrote anything leaves no ``outputs/<date>/<time>/`` folder it
    named itself holding only the folder's claim, as ``pipeline-train`` leaves none, nor one ``--output-dir`` named
    that it made; a folder given by ``--output-dir`` that was there before is the user's and kept, without the
    refused command's claim on it."""
    from pipeline.errors import EXIT_USER_ERROR

    there_before = output_dir.exists()
    try:
        yield
    except SystemExit as refused:
        if refused.code == EXIT_USER_ERROR:
            from pipeline.claims import release_claim
            from pipeline.cli.train import remove_untouched_output_dir

            if named_by_user and there_before:
                release_claim(output_dir)
            else:
                remove_untouched_output_dir(output_dir)
        raise


def rerun_config(client, run, tracking_uri: str, overrides: list[str], output_dir: Path,
                 choices: Optional[dict[str, str]] = None, say_registration: bool = False,
                 check: Optional[Callable[[DictConfig, DictConfig], None]] = None,
                 evaluation: bool = False, user_config: Optional[dict[str, str]] = None) -> DictConfig:
    """The logged config of ``run``, checked, with the overrides, writing into ``output_dir`` and the same store.
    The run's ``logger.mlflow.register_as`` is not repeated (a rerun that checks a result made a new version of the
    registered model) unless the overrides set it; ``say_registration``: print a note when it is dropped.
    ``check(logged, overridden)``: called with the logged config and the one with the overrides, to refuse some.
    ``user_config``: a dict filled with the files of a user's config folder the run logged (see :func:`user_config_of`)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run.info.run_id, "config.yaml", folder)
        except Exception as error:
            tags = run.data.tags
            if "sweep.study_name" in tags and "sweep.trial_number" not in tags and "mlflow.parentRunId" not in tags:
                best = tags.get("best.run_id")
                raise RerunRefused(
                    f"run {run.info.run_id} is the parent run of the sweep '{tags['sweep.study_name']}', which holds "
                    "the study's table and plots, not a model: use its best run"
                    + (f", {best}" if best else " (tag best=true), trained again when the sweep ends")) from None
            raise RerunRefused(f"run {run.info.run_id} has no config.yaml artifact ({' '.join(str(error).split())[:200]}); "
                               "only runs logged by pipeline-train can be rerun") from None
        cfg = OmegaConf.load(path)
    files = user_config_of(client, run)
    if user_config is not None:
        user_config.update(files)
    if evaluation:
        say_dropped_callbacks(drop_own_callbacks(cfg))
    check_logged_config(cfg, f"the config logged with run {run.info.run_id}")
    mlflow_node = _mlflow_logger_node(cfg)
    if mlflow_node is None:  # the source was logged to MLflow, so its rerun is too
        raise RerunRefused(f"the config logged with run {run.info.run_id} has no MLflow logger (logger.mlflow); "
                           "it was edited. Refusing to run it")
    if cfg.pop("sweep", None) is not None:
        # a sweep's run is rerun as a run of its own: not named, tagged or found as the sweep's trial or best run
        mlflow_node.run_name = None
        for tag in SWEEP_TAGS:
            (cfg.get("tags") or {}).pop(tag, None)
    source_uri = mlflow_node.get("tracking_uri")
    mlflow_node.tracking_uri = tracking_uri  # the logged one may be redacted (***) or name another machine
    if mlflow_node.get("artifact_location") and tracking_uri != source_uri:
        mlflow_node.artifact_location = None  # the new store keeps its artifacts where it keeps them
    old_output_dir = OmegaConf.select(cfg, "paths.output_dir")
    cfg.paths.output_dir = str(output_dir)
    cfg.ckpt_path = None
    registered = mlflow_node.get("register_as")
    if registered:
        mlflow_node.register_as = None
    confine_written_folders(cfg, str(old_output_dir) if old_output_dir else None, output_dir,
                            f"the config logged with run {run.info.run_id}")
    from pipeline.tracking.redact import redact_text

    for override in overrides:
        if override.lstrip("+").partition("=")[0] in ("paths.mlruns_dir", "paths.root_dir"):
            raise RerunRefused(f"'{override}': a rerun writes to the store --tracking-uri names (default: the run's "
                               f"own, {redact_text(tracking_uri)}), not where paths.mlruns_dir points; give "
                               "--tracking-uri sqlite:///<folder>/mlflow.db for another")
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if experiment and not any(o.lstrip("+").startswith("logger.mlflow.experiment_name=") for o in overrides):
        mlflow_node.experiment_name = experiment  # as pipeline-train takes it (the logged name is the run's)
    logged, cfg = cfg, apply_overrides(cfg, overrides, linked_keys(choices or {}, files) if overrides else {})
    if check is not None:
        check(logged, cfg)
    if registered and say_registration and not _mlflow_logger_node(cfg).get("register_as"):
        print(f"Note: {run.info.run_name or run.info.run_id} registered its model as '{registered}'; this rerun "
              f"registers none (add logger.mlflow.register_as={registered} for a new version)", flush=True)
    changed = run.data.tags.get("changed_on_resume")
    if changed:
        print(f"Note: {run.info.run_name or run.info.run_id} was resumed with other settings than it began with "
              f"({changed}); this rerun trains every epoch with the values its params hold", flush=True)
    check_targets(cfg, "the overrides")
    confine_written_folders(cfg, None, output_dir, "the overrides")
    _refuse_or_say_masked_values(cfg, run.info.run_id)
    if "tags" not in cfg or cfg.tags is None:
        cfg.tags = {}
    cfg.tags.rerun_of = run.info.run_id
    return cfg


def user_config_of(client, run) -> dict[str, str]:
    """{path: text} of the files of a user's config folder (``--config-dir``) run ``run`` logged under
    ``user_config/`` (none for a run without one, or logged before they were)."""
    from pipeline.tracking.provenance import USER_CONFIG_FOLDER

    try:
        listed = client.list_artifacts(run.info.run_id, USER_CONFIG_FOLDER)
    except Exception:
        return {}
    if not listed:
        return {}
    files = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(client.download_artifacts(run.info.run_id, USER_CONFIG_FOLDER, folder))
        for path in sorted(root.rglob("*.yaml")):
            files[path.relative_to(root).as_posix()] = path.read_text()
    return files


# keys that only name or label a run: a value masked there is kept as written (***), with a note
_LABEL_KEYS = ("tags.", "logger.mlflow.run_name", "logger.mlflow.experiment_name", "logger.mlflow.tracking_uri")


def _refuse_or_say_masked_values(cfg: DictConfig, run_id: str) -> None:
    """A value logged masked (a secret from ``${oc.env:...}``, a password in a URI) is ``***`` in the logged config: a
    rerun used the three stars as the value without a word. Where it labels the run (a tag, the run's name) that is
    said; anywhere else (a path, a model's or data's setting) the rerun is refused until the key is given again."""
    from pipeline.tracking.redact import REDACTED

    masked = [key for key, value in _leaves(OmegaConf.to_container(cfg, resolve=False))
              if isinstance(value, str) and REDACTED in value]
    labels = [key for key in masked if key.startswith(_LABEL_KEYS)]
    settings = [key for key in masked if key not in labels]
    if settings:
        raise RerunRefused(f"run {run_id} logged {', '.join(settings)} masked as *** (a secret is never stored); give "
                           f"{' '.join(f'{key}=...' for key in settings)} to set {'it' if len(settings) == 1 else 'them'} "
                           "again (e.g. '" + settings[0] + "=${oc.env:NAME}')")
    if labels:
        print(f"Note: {', '.join(labels)} logged masked as *** (a secret is never stored) and kept so; give "
              f"{labels[0]}=... to set it again", flush=True)


def say_dropped_callbacks(names: list[str]) -> None:
    if names:
        print(f"Note: the run's own callbacks ({', '.join(f'callbacks.{n}' for n in names)}) are left out of the "
              "evaluation, which trains nothing", flush=True)


def _mlflow_logger_node(cfg: DictConfig) -> Optional[DictConfig]:
    loggers = cfg.get("logger")
    if not isinstance(loggers, DictConfig):
        return None
    from hydra.utils import get_object

    from pipeline.tracking import MLflowLogger

    for node in loggers.values():
        if isinstance(node, DictConfig) and node.get("_target_"):
            try:
                if get_object(str(node._target_)) is MLflowLogger:
                    return node
            except Exception:
                continue
    return None


def note_thread_count(logged: Optional[str]) -> None:
    """One line on stderr when this process runs another number of torch threads than the run did: torch's results
    can differ in their last bits between counts, so a rerun's (or an evaluation's) metrics may not repeat the
    run's exactly."""
    import torch

    threads = torch.get_num_threads()
    if logged and logged != str(threads):
        print(f"Note: the run trained with {logged} torch threads and this process has {threads}: the metrics here "
              f"may differ from the run's in their last digits (OMP_NUM_THREADS={logged} repeats the run's setting)",
              file=sys.stderr, flush=True)


def logged_split_digests(run) -> dict[str, str]:
    """{MLflow dataset context (training, validation, testing): the digest of that split's contents} of a run."""
    digests = {}
    for dataset_input in run.inputs.dataset_inputs:
        for tag in dataset_input.tags:
            if tag.key == "mlflow.data.context":
                digests[tag.value] = dataset_input.dataset.digest
    return digests


def data_change_check(source_digests: dict[str, str], run_name: str, data_overridden: bool, kind: str = "rows"):
    """A Lightning callback that says, when training starts, which splits hold other rows than the source run's
    (the files under data.path changed since, or another data set): the rerun then cannot repeat its metrics.
    ``kind``: what the source run's digests cover (``tracking.artifacts.digest_kind``); compared with the same."""
    import pytorch_lightning as pl

    class DataChangeCheck(pl.Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            from pipeline.tracking.artifacts import digests_now

            if not source_digests or not trainer.is_global_zero:
                return
            now = digests_now(trainer.datamodule, kind)
            changed = [context for context in ("training", "validation", "testing")
                       if context in now and context in source_digests and now[context] != source_digests[context]]
            if changed:
                covers = getattr(trainer.datamodule, "digest_covers", "")
                why = "the overrides change the data" if data_overridden else \
                    "the files it read have changed since" + (f" ({covers})" if covers else "") + \
                    ", or the data set's split did"
                print(f"Note: the {', '.join(changed)} rows differ from {run_name}'s (split digests "
                      f"{', '.join(f'{source_digests[c]} -> {now[c]}' for c in changed)}): {why}, so its metrics "
                      "are not repeated here", file=sys.stderr, flush=True)
                # and in the store, where the rerun is looked at later beside its source (tag rerun_of)
                tag = {"data_differs_from_source": f"{', '.join(changed)} rows: {why}"}
                for logger in trainer.loggers:
                    if getattr(logger, "run", None) is not None and logger.run.active:
                        logger.run.set_tags(tag)

    return DataChangeCheck()


def trial_rerun_repeats(client, run, cfg) -> str:
    """What the rerun of a sweep's trial repeats: a complete trial's validation metrics; a pruned one's epochs up to
    where it was pruned, after which the rerun, which nothing prunes, trains on to trainer.max_epochs."""
    if run.data.tags.get("sweep.state") != "PRUNED":
        return "it repeats the trial's validation metrics"
    epochs = cfg.trainer.get("max_epochs")
    try:  # the epochs the trial trained: one validation value each
        trained = len(client.get_metric_history(run.info.run_id, run.data.params.get("task.monitor", "val/loss")))
    except Exception:
        trained = 0
    where = f"after epoch {trained}" if trained else ""
    return (f"the trial was pruned{' ' + where if where else ''}: the rerun repeats its epochs up to there, then trains "
            f"on to trainer.max_epochs={epochs}, which nothing prunes here")


def evaluation_refused(run, verb: str) -> Optional[str]:
    """For a pipeline-eval run (``run_kind=evaluation``): it holds no model, the run it evaluated does, which the line
    names for ``verb``; None for other runs. pipeline-predict, pipeline-eval and pipeline-rerun say it."""
    tags = run.data.tags
    if tags.get("run_kind") != "evaluation" or not tags.get("evaluation_of"):
        return None
    return (f"run {run.info.run_id} is an evaluation of run {tags['evaluation_of']} (pipeline-eval), which holds "
            f"the model: {verb} with {tags['evaluation_of']}")


def main(argv: Optional[list[str]] = None) -> int:
    from pipeline.cli.errors import closed_stdout_ignored, report_errors
    from pipeline.tracking import launched_as
    from pipeline.tracking.run import existing_client

    closed_stdout_ignored()  # pipeline-... | head: a closed stdout ends no run FAILED
    args = parse_args(argv)
    output_dir = args.output_dir or fresh_output_dir()
    with output_dir_removed_if_refused(output_dir, args.output_dir is not None), report_errors():
        try:
            client = existing_client(args.tracking_uri, args.run_id)
            run = run_of(client, args.run_id, args.tracking_uri)
        except LookupError as error:
            print(f"Error: {error}", file=sys.stderr)
            return 2
        source = run.data.tags.get("evaluation_of")
        refused = evaluation_refused(run, "rerun")
        if refused:  # trained nothing: its rerun trained a new model from the source's config on the evaluation's data
            print(f"Error: {refused} (pipeline-rerun {source}), or evaluate it again (pipeline-eval {source})",
                  file=sys.stderr)
            return 2
        choices = {key: run.data.params[key] for key in CHOICE_PARAMS if key in run.data.params}
        user_config: dict[str, str] = {}  # logged with the rerun too: a rerun of it recomposes as this one did
        cfg = rerun_config(client, run, args.tracking_uri, args.overrides, output_dir, choices, say_registration=True,
                           user_config=user_config)
        from pipeline.config import absolute_data_paths, validate
        from pipeline.tracking.run import digest_kind
        from pipeline.train import train

        # checked (as train() checks it) before the folder is named: an override the config refuses
        # (optimizer.lrr=1) printed "Rerunning ... into <folder>" for a folder that was then removed
        absolute_data_paths(cfg)
        validate(cfg)
        from pipeline.cli.train import console_copied_to

        folder = Path(str(cfg.paths.output_dir))
        folder.mkdir(parents=True, exist_ok=True)
        with console_copied_to(folder / "train.log"):  # what the rerun prints, kept as pipeline-train's run keeps it
            print(f"Rerunning {run.info.run_name} ({run.info.run_id}) into {cfg.paths.output_dir}", flush=True)
            if "sweep.state" in run.data.tags and not cfg.get("test", True):
                print(f"Note: {run.info.run_name} is a trial of a sweep: a trial is not tested and keeps no checkpoint "
                      f"or model, and neither does its rerun ({trial_rerun_repeats(client, run, cfg)}). A tested run "
                      "with its checkpoint and model is the sweep's best run (tag best=true), or pipeline-train with "
                      "the sweep's best config", flush=True)
            note_thread_count(run.data.params.get("torch_threads"))
            check = data_change_check(logged_split_digests(run), str(run.info.run_name or run.info.run_id),
                                      any(o.lstrip("+~").startswith(("data.", "data=", "seed=")) for o in args.overrides),
                                      digest_kind(run))
            with launched_as(choices, list(args.overrides), user_config):
                train(cfg, callbacks=[check])
    return 0


if __name__ == "__main__":
    sys.exit(main())
