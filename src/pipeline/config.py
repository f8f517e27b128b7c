"""Typed config schema and validation: a wrong config is refused before any data is loaded.

Checked in this order by :func:`validate`:
1. the fixed parts (task, paths, top-level keys) against dataclass schemas, and no value left as ``???``;
2. value ranges (``optimizer.lr > 0``, ``data.fold < data.cv_folds`` ...);
3. every ``_target_`` node (data, model, optimizer, scheduler, trainer, each callback and logger)
   against the signature of the class it builds: an unknown key is named with the nearest valid one,
   a value of the wrong type is refused (hydra-zen's idea);
4. choices that only make sense together (model vs data vs task);
   then a built class's own ``check_config(node)``, where it has one (a pretrained model: its weights file);
5. a checkpoint to resume from exists and is safe to load (``weights_only=True``).
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from pipeline.errors import ConfigError

# the packaged configs (pip install . ships them); a user's own folder extends them: --config-dir DIR
CONFIG_DIR = Path(__file__).resolve().parent / "conf"
# the source checkout this package runs from (for the git provenance of runs; not a git checkout when installed)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _working_dir() -> str:
    """Where pipeline-train was started: Hydra's record of it when a job runs (``hydra.job.chdir=true`` moves the
    process into the run's folder, and each run would get a store of its own there), else the current folder."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        started = HydraConfig.get().runtime.get("cwd")
        if started:
            return str(started)
    return os.getcwd()


#: keys of the data config naming a local file or folder
LOCAL_PATH_KEYS = ("data_dir", "path", "test_path")


def absolute_data_paths(cfg: DictConfig) -> None:
    """Make ``data.path``, ``data.test_path`` and ``data.data_dir`` absolute, against where pipeline-train was
    started, before a run is built (and ``model.name`` / ``data.tokenizer`` where they name a folder there): the logged config (and ``pipeline-rerun``) then finds the files from any
    folder, and ``hydra.job.chdir=true`` (which moves the process into the run's folder) still finds them. URLs are
    left for the data module to refuse."""
    started = Path(_working_dir())
    paths = cfg.get("paths")
    if isinstance(paths, DictConfig) and isinstance(paths.get("data_dir"), str) and paths.get("data_dir"):
        # recorded as data.data_dir is (a relative PIPELINE_DATA_DIR=../shared/data was logged as written): else
        # pipeline-rerun paths.data_dir=<new folder> took data.data_dir for one the run set itself, and read the old
        with open_dict(paths):
            paths.data_dir = os.path.normpath(started / Path(paths.data_dir).expanduser())
    # a pretrained model or tokenizer folder given beside the command (model.name=my-bert): a name that is a folder
    # there is read as that folder (transformers' own rule), so it is recorded as one; logged as written, the run's
    # evaluation from another folder looked for a Hugging Face model of that name. data.tokenizer follows model.name
    # by interpolation unless set apart
    for node, key, marker in ((cfg.get("model"), "name", "config.json"), (cfg.get("data"), "tokenizer", None)):
        value = node.get(key) if isinstance(node, DictConfig) else None
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            folder = started / Path(value).expanduser()
            if folder.is_dir() and (marker is None or (folder / marker).is_file()):
                with open_dict(node):
                    node[key] = os.path.normpath(folder)
    data = cfg.get("data")
    if not isinstance(data, DictConfig):
        return
    for key in LOCAL_PATH_KEYS:
        if key not in data:
            continue
        value = data.get(key)
        if not isinstance(value, str) or not value or re.match(r"[a-zA-Z][a-zA-Z0-9+.-]+:/", value):
            continue
        path = Path(value).expanduser()
        if not path.is_absolute() or str(path) != value:
            with open_dict(data):
                data[key] = os.path.normpath(started / path)


if not OmegaConf.has_resolver("working_dir"):
    # outputs, the default store and data/ live where pipeline-train is started, not where the code is
    OmegaConf.register_new_resolver("working_dir", _working_dir)
if not OmegaConf.has_resolver("sqlite_uri"):
    from pipeline.sqlite import sqlite_uri

    # the default MLflow store's URL (conf/logger/mlflow.yaml): the folder as written, whatever characters it holds
    OmegaConf.register_new_resolver("sqlite_uri", sqlite_uri)


# ----- schemas of the fixed parts ---------------------------------------------------------------
@dataclass
class TaskConfig:
    name: str = "classification"
    kind: str = "classification"  # a module of pipeline.tasks: regression | classification
    monitor: str = "val/acc"
    mode: str = "max"  # min | max
    label_smoothing: float = 0.0
    # classification: null | balanced | [w_0, w_1, ...] in class order | {class: weight}; see tasks/classification.py
    class_weights: Any = None
    # binary classification: the class f1, ap, the precision-recall curve and predict --threshold are of, a label
    # as written in the data (fraud) or a number; null: the second class in sorted order
    positive_class: Any = None
    # regression: none | log (the model learns log1p of the target; predictions and metrics in the target's units)
    target_transform: str = "none"
    # redraws of the test rows for the 95 % bootstrap interval of each test metric (test/<metric>_ci_low, _ci_high);
    # 0: none
    test_intervals: int = 1000


@dataclass
class PathsConfig:
    root_dir: str = "."
    data_dir: str = "data"
    mlruns_dir: str = "mlruns"
    output_dir: str = "outputs"


FIXED_SCHEMAS = {
    "task": TaskConfig,
    "paths": PathsConfig,
}
TARGET_GROUPS = ("data", "model", "optimizer", "scheduler", "trainer")
REQUIRED_TARGET_GROUPS = ("data", "model", "optimizer", "trainer")  # scheduler=none is {}
# groups whose options add named ``_target_`` nodes side by side: callbacks=[default,lr_monitor], logger=[mlflow,csv]
TARGET_COLLECTIONS = ("callbacks", "logger")
TOP_LEVEL_KEYS = (set(FIXED_SCHEMAS) | set(TARGET_GROUPS) | set(TARGET_COLLECTIONS)
                  | {"seed", "ckpt_path", "tags", "sweep", "test"})

# arguments that train.py passes when it builds the object, never set in YAML
WIRED_ARGUMENTS = {
    "model": {"input_shape", "num_outputs", "vocab_size", "pad_id", "categorical_cardinalities",
              "categorical_unknown_seen", "vocabulary"},
    "optimizer": {"params"},
    "scheduler": {"optimizer", "total_steps", "epochs", "steps_per_epoch"},
    "trainer": {"callbacks", "logger", "plugins", "default_root_dir"},
}
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


def nearest(name: str, choices) -> str:
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


# ----- validation ---------------------------------------------------------------------------------
def config_options(config_dir: Path, group: str) -> list[str]:
    """The options of a config group: its files, less the ``_*.yaml`` bases they share."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml") if not p.stem.startswith("_"))


def base_file_chosen(choices, config_dir: Path = CONFIG_DIR) -> Optional[str]:
    """What is wrong when an option is a base file (``data=_common``: the ``_*.yaml`` files hold the keys that the
    group's options share); None when no chosen option (``hydra.runtime.choices``) is one."""
    for group, name in choices.items():
        if str(group).startswith("hydra") or not isinstance(name, str) or not name.startswith("_"):
            continue
        return (f"{group}={name}: a base file that the {group} options build on, not an option of its own; "
                f"Available: {', '.join(config_options(config_dir, group))}")
    return None


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` with a one-line reason if ``cfg`` cannot give a meaningful run."""
    _check_fixed_parts(cfg)
    _check_required(cfg)
    _check_ranges(cfg)  # before the types: "optimizer.lr must be a number" says more than a type annotation
    own_checks = []
    for group in TARGET_GROUPS:
        node = cfg.get(group)
        if node is not None and "_target_" in node:
            own_checks.append(_check_against_signature(group, node))
    for group in TARGET_COLLECTIONS:
        for name, node in _collection(cfg, group).items():
            own_checks.append(_check_against_signature(f"{group}.{name}", node))
    _check_compatibility(cfg)
    # after the compatibility of the choices: model=torchvision on text data is that, not a tokenizer named like
    # the model (data.tokenizer defaults to model.name) that is not in the Hugging Face cache
    for check in own_checks:
        check()
    _check_checkpoint(cfg.get("ckpt_path"))


def written_by_torch_save(path: Path) -> bool:
    """Whether the file begins as torch.save writes one: its zip, or a legacy pickle."""
    with open(path, "rb") as file:
        head = file.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def damaged_part(path: Path) -> Optional[str]:
    """The first part of a checkpoint (torch.save writes a zip) whose bytes fail their CRC, or None. torch.load
    checks no CRC: a file with flipped bits (a failing disk, a copy gone wrong) loaded without a word, with
    other weights than were saved. Reads the whole file (~1 GB/s)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return None  # not a zip, or cut short: torch.load says what it is
    except Exception as error:  # a damaged header (zlib, struct): the part is unknown
        return f"? ({_first_line(error)})"


def refuse_damaged(path: Path, error: Optional[type[Exception]] = None, named: str = "") -> None:
    """Raise ``error`` (ConfigError by default) naming the checkpoint ``path`` (after ``named``, e.g. ``ckpt_path=``)
    when a part of it fails its CRC (:func:`damaged_part`)."""
    part = damaged_part(path)
    if part is not None:
        raise (error or ConfigError)(
            f"{named}{path} is damaged: its part {part} does not match its checksum (flipped bits: a failing disk or a "
            "copy gone wrong), so its weights are not the ones saved; take another checkpoint of the run (the "
            "best-epoch file beside last.ckpt, or its copy in the MLflow run) or copy the file again")


def _check_checkpoint(ckpt_path: Optional[str]) -> None:
    """A checkpoint to resume from exists and loads with ``torch.load(weights_only=True)``: a file that
    would run code when unpickled is refused here, before anything is trained or logged."""
    if ckpt_path is None:
        return
    import pickle
    import re

    import torch

    path = Path(str(ckpt_path))
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file (resume from e.g. <output dir>/checkpoints/last.ckpt)")
    if not written_by_torch_save(path):
        raise ConfigError(f"ckpt_path={ckpt_path}: not a PyTorch checkpoint (not a file torch.save or Lightning "
                          "writes); resume from e.g. <output dir>/checkpoints/last.ckpt")
    try:
        try:  # memory-mapped: only the pickled structure is read, not every tensor
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"GLOBAL (\S+)", str(error))
        what = f"it names {unsafe.group(1)}" if unsafe else _first_line(error)
        raise ConfigError(
            f"ckpt_path={ckpt_path}: refused, the file holds more than tensors and plain values ({what}); "
            "checkpoints are loaded with torch.load(weights_only=True), so only load files you trust"
        ) from None
    except Exception as error:
        raise ConfigError(f"ckpt_path={ckpt_path}: not a readable PyTorch checkpoint ({_first_line(error)})") from None
    refuse_damaged(path, named="ckpt_path=")


def _collection(cfg: DictConfig, group: str) -> dict[str, DictConfig]:
    """The named ``_target_`` nodes of a collection group (``callbacks``, ``logger``); ``null`` entries are
    switched off (``callbacks.early_stopping=null``)."""
    node = cfg.get(group)
    if node is None:
        return {}
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{group} must be a mapping of named entries, each with a _target_ (see conf/{group}/)")
    entries = {}
    for name in node.keys():
        entry = node.get(name)
        if entry is None:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise ConfigError(f"{group}.{name} must be a node with a _target_ (a class to build), e.g. conf/{group}/ "
                              f"files; got {_plain(entry)!r}")
        entries[str(name)] = entry
    return entries


def collection(cfg: DictConfig, group: str) -> dict[str, DictConfig]:
    """The enabled entries of ``callbacks`` or ``logger``, by name, for the code that builds them."""
    return _collection(cfg, group)


def _check_required(cfg: DictConfig) -> None:
    """Every group that builds an object is there, and no value is left as ``???``."""
    for group in REQUIRED_TARGET_GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig) and "_target_" not in node and len(node):
            # an option chosen whose file lacks _target_ (a file of one's own with 'target:'): "the group is missing,
            # choose one" sent the user to choose what they had chosen
            choice = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
            if choice is None:  # a run's config, its hydra node left out: the choices of the Hydra that composed it
                from hydra.core.hydra_config import HydraConfig

                with contextlib.suppress(Exception):
                    choice = HydraConfig.get().runtime.choices.get(group)
            chosen = f"{group}={choice}" if choice else f"the config's {group}"
            close = difflib.get_close_matches("_target_", [str(k) for k in node.keys()], n=1, cutoff=0.6)
            raise ConfigError(f"{chosen} has no _target_ (the class it builds, e.g. _target_: mymodels.Net); its keys: "
                              f"{', '.join(str(k) for k in node.keys())}"
                              + (f"; did you mean _target_ for {close[0]!r}?" if close else ""))
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"config group '{group}' is missing; choose one with {group}=<option> "
                              f"(the options are the files in conf/{group}/)")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        example = " ".join(f"{key}=..." for key in missing)
        raise ConfigError(f"{', '.join(missing)} must be set (it is ??? in the config); add {example} "
                          "to the command line")


def _check_fixed_parts(cfg: DictConfig) -> None:
    for key in cfg.keys():
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"unknown top-level key '{key}'{nearest(key, TOP_LEVEL_KEYS)}")
    for group, schema in FIXED_SCHEMAS.items():
        if group not in cfg:
            raise ConfigError(f"missing config group '{group}'")
        try:
            OmegaConf.merge(OmegaConf.structured(schema), cfg[group])
        except OmegaConfBaseException as error:
            path = str(getattr(error, "full_key", None) or getattr(error, "key", None) or "")
            if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
                parent, _, key = path.rpartition(".")
                allowed = _schema_fields(schema, parent)
                raise ConfigError(f"unknown key '{group}.{path}'{nearest(key, allowed)}") from None
            raise ConfigError(f"{group}.{path}: {_first_line(error)}") from None
    tags = cfg.get("tags")
    if tags is not None and not isinstance(tags, DictConfig):
        raise ConfigError(tags_refused(OmegaConf.to_yaml(tags).strip() if OmegaConf.is_config(tags) else str(tags)))
    seed = _integer("seed", cfg.get("seed"))  # before data.seed=${seed} is checked against its class
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed={seed} is out of range; allowed: an integer in 0..{MAX_SEED}")
    if cfg.get("test") is not None and not isinstance(cfg.get("test"), bool):
        raise ConfigError(f"test={cfg.get('test')!r} must be true or false")
    loggers = cfg.get("logger")
    mlflow_node = loggers.get("mlflow") if isinstance(loggers, DictConfig) else None
    if isinstance(mlflow_node, DictConfig) and mlflow_node.get("register_as") is not None and cfg.get("test") is False:
        raise ConfigError("logger.mlflow.register_as registers the run's logged model, and a run with test=false "
                          "logs none (its model is logged once it is tested); set test=true or register_as=null")
    task = cfg.task
    _choice("task.mode", task.mode, ("min", "max"))
    if task.get("class_weights") is not None and task.kind != "classification":
        raise ConfigError(f"task.class_weights weighs classes; task.kind={task.kind} has none (leave it null)")
    _choice("task.target_transform", task.get("target_transform", "none"), ("none", "log"))
    if task.get("target_transform", "none") != "none" and task.kind != "regression":
        raise ConfigError(f"task.target_transform transforms a regression target; task.kind={task.kind} has none")
    if not str(task.monitor).startswith("val/"):
        raise ConfigError(f"task.monitor={task.monitor!r} must be a validation metric (val/loss, val/acc, val/rmse ...); "
                          "model selection never looks at the test split")


def tags_refused(value: str) -> str:
    """Why ``tags=<value>`` (a word, a number, a list) is refused: tags are names with values."""
    return (f"tags={value}: tags are names with values (the run's MLflow tags); add one as +tags.note=<value> "
            "(several: +tags.note=... +tags.owner=...)")


# metrics whose better side their name says: the last part of val/acc, test/rmse, val/f1_best...
HIGHER_IS_BETTER = ("acc", "f1", "auroc", "ap", "r2")
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae")


def metric_direction(metric: str) -> Optional[str]:
    """"max" for a metric better higher (an accuracy, a score), "min" for one better lower (a loss, an error),
    None for others (epoch time, a metric of the user's own)."""
    name = metric.rsplit("/", 1)[-1].removesuffix("_best")
    return "max" if name in HIGHER_IS_BETTER else "min" if name in LOWER_IS_BETTER else None


def _fields(schema) -> list[str]:
    return list(schema.__dataclass_fields__)


def _schema_fields(schema, dotted: str) -> list[str]:
    """The field names of the (nested) dataclass at ``dotted`` inside ``schema``."""
    for part in filter(None, dotted.split(".")):
        field_type = schema.__dataclass_fields__[part].default_factory if part in schema.__dataclass_fields__ else None
        if not inspect.isclass(field_type):
            return []
        schema = field_type
    return _fields(schema)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def resolve_target(group: str, path: str) -> Callable:
    """The object ``path`` names, or a one-line error saying which part is missing (Hydra's own said "Error loading
    'mymodels.Nett':" with the reason on lines of its log)."""
    import importlib

    parts = str(path).split(".")
    found, cut = None, 0
    for cut in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module
        name = ".".join(parts[:cut])
        try:
            found = importlib.import_module(name)
            break
        except ModuleNotFoundError as error:
            if error.name and (name == error.name or name.startswith(error.name + ".")):
                continue  # this prefix is no module: try a shorter one
            raise ConfigError(f"{group}._target_: cannot import '{path}': importing {name} failed "
                              f"({_first_line(error)})") from None
        except Exception as error:  # the module itself fails (a syntax error, its own import)
            raise ConfigError(f"{group}._target_: cannot import '{path}': importing {name} failed "
                              f"({type(error).__name__}: {_first_line(error)})") from None
    if found is None:
        raise ConfigError(f"{group}._target_: cannot import '{path}': no module named {parts[0]!r} (write "
                          "module.Class, with the module's folder on PYTHONPATH or installed)")
    obj = found
    for position in range(cut, len(parts)):
        if not hasattr(obj, parts[position]) and inspect.ismodule(obj):
            # a submodule not imported by its package (mymodels.wide): "mymodels has no 'wide'" denied a file that is
            # there; it is imported, and a _target_ that ends at a module is named as such below
            with contextlib.suppress(ImportError):
                importlib.import_module(".".join(parts[: position + 1]))
        if not hasattr(obj, parts[position]):
            owner = ".".join(parts[:position])
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = [n for n in names if n.lower() == parts[position].lower()] or \
                difflib.get_close_matches(parts[position], names, n=1)
            raise ConfigError(f"{group}._target_: cannot import '{path}': {owner} has no {parts[position]!r}"
                              + (f"; did you mean '{owner}.{close[0]}'?" if close else "")) from None
        obj = getattr(obj, parts[position])
    if inspect.ismodule(obj):
        classes = sorted(n for n, v in vars(obj).items() if inspect.isclass(v) and v.__module__ == obj.__name__)
        raise ConfigError(f"{group}._target_: '{path}' is a module, not a class or function: write "
                          f"{path}.<Class>" + (f"; it defines {', '.join(classes)}" if classes else ""))
    return obj


# why a bundled data set takes no data.test_path, and what does
NO_TEST_FILE = ("this data set reads its own files and has no test file of its own; a labelled file of yours is read "
                "by data=csv (tables), data=text_tsv (texts) or data=image_folder / image_csv (images), and "
                "pipeline-predict answers any model on it")


def _check_against_signature(group: str, node: DictConfig) -> Callable[[], None]:
    """Check ``node``'s keys and values against the class it builds; returns the class's own checks of the node
    (``check_config``, e.g. pretrained weights at hand), to run once the choices are known to fit together."""
    target = resolve_target(group, node._target_)
    parameters = accepted_parameters(target)
    wired = WIRED_ARGUMENTS.get(group, set())
    for key in node.keys():
        if key.startswith("_"):
            continue
        if key in wired:
            raise ConfigError(f"{group}.{key} is set by the pipeline, not in the config; remove it")
        if parameters is not None and key not in parameters:  # None: accepts **kwargs all the way down
            if group == "data" and key == "test_path":  # a bundled data set (mr, imdb, fashion_mnist): its own files
                raise ConfigError(f"unknown key 'data.test_path' for {node._target_}: {NO_TEST_FILE}")
            raise ConfigError(
                f"unknown key '{group}.{key}' for {node._target_}{nearest(key, parameters - wired)}"
            )
    _check_types(group, node, _annotations(target))
    check = getattr(target, "check_config", None)  # the class's own checks that need no data
    return (lambda: check(node)) if callable(check) else (lambda: None)


def _check_types(group: str, node: DictConfig, annotations: dict[str, Any]) -> None:
    """Each value against the type its parameter declares (``model.hidden_dims=abc`` is not a list).
    ``null`` always passes: several classes take ``None`` as "not set" without saying Optional."""
    for key in node.keys():
        if key.startswith("_") or key not in annotations:
            continue
        try:
            value = _plain(node[key])
        except OmegaConfBaseException as error:
            raise ConfigError(f"{group}.{key}: cannot resolve its value ({_first_line(error)})") from None
        if value is not None and not _matches(value, annotations[key]):
            allowed = _describe(annotations[key])
            if allowed.startswith("one of "):  # Literal values (trainer.precision=bf17): not a question of type
                raise ConfigError(f"{group}.{key}={value!r} is not allowed; choose {allowed}")
            raise ConfigError(f"{group}.{key}={value!r} has the wrong type; allowed: {allowed}")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _annotations(target: Callable) -> dict[str, Any]:
    """Parameter name -> type for ``target`` and, through ``**kwargs``, its base classes."""
    import typing

    annotations: dict[str, Any] = {}
    classes = inspect.getmro(target) if inspect.isclass(target) else (target,)
    for owner in reversed(classes):  # a subclass's annotation wins
        function = owner.__init__ if inspect.isclass(owner) else owner
        if (inspect.isclass(owner) and "__init__" not in vars(owner)) or owner is object:
            continue
        try:
            annotations.update(typing.get_type_hints(function))
        except Exception:  # an annotation that does not evaluate: check nothing for this class
            continue
    return annotations


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a config value (plain Python) fits a type annotation; unknown annotations accept anything."""
    import collections.abc
    import types
    import typing

    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is type(None) or annotation is None:
        return value is None
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, argument) for argument in arguments)
    if origin is typing.Literal:
        return value in arguments
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            return len(value) == len(arguments) and all(map(_matches, value, arguments))
        return not arguments or all(_matches(item, arguments[0]) for item in value)
    return True


def _describe(annotation: Any) -> str:
    import typing

    literals = [a for a in _flatten_union(annotation) if typing.get_origin(a) is typing.Literal]
    if literals and len(literals) == len(_flatten_union(annotation)):  # Literal[...] | Literal[...]: list the values
        values = dict.fromkeys(str(v) for literal in literals for v in typing.get_args(literal))  # once each
        return "one of " + ", ".join(values)[:300]
    text = str(annotation).replace("typing.", "").replace("collections.abc.", "").replace("NoneType", "null")
    return {"<class 'int'>": "an integer", "<class 'float'>": "a number", "<class 'bool'>": "true or false",
            "<class 'str'>": "a string"}.get(text, text)[:300]


def _flatten_union(annotation: Any) -> list:
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for argument in typing.get_args(annotation) for a in _flatten_union(argument)
                if argument is not type(None)]
    return [annotation]


def accepted_parameters(target: Callable) -> Optional[set[str]]:
    """Names accepted by ``target``, following ``**kwargs`` up the class hierarchy (None: any)."""
    names: set[str] = set()
    classes = inspect.getmro(target) if inspect.isclass(target) else (target,)
    for owner in classes:
        function = owner.__init__ if inspect.isclass(owner) else owner
        if inspect.isclass(owner) and "__init__" not in vars(owner):
            continue
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return None
        has_var_kwargs = False
        for parameter in signature.parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                has_var_kwargs = True
            elif parameter.kind is not parameter.VAR_POSITIONAL and parameter.name != "self":
                names.add(parameter.name)
        if not has_var_kwargs:
            return names
        if not inspect.isclass(owner) or owner is object:
            return None
    return names


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}{_text_hint(key, value)}")
    return float(value)


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}{_text_hint(key, value)}")
    return value


def _text_hint(key: str, value: Any) -> str:
    """For a number written as text: what reads it as a number. An environment variable (``${oc.env:SEED}``) is
    always text, and so is a quoted value in YAML or on the command line."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return (f" (text, not a number: ${{oc.env:...}} gives text; {key}='${{oc.decode:${{oc.env:NAME}}}}' reads the "
            f"variable as a number, and a value written in quotes is text too)")


def _choice(key: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")


def _get(cfg: DictConfig, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted, default=None)


# key -> (check, description of what is allowed)
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "trainer.gradient_clip_val": (lambda v: v >= 0, ">= 0 (null or 0: no clipping)"),
    # 0 would skip training, validation (model selection) or the test: the pipeline needs all three
    "trainer.limit_train_batches": (lambda v: v > 0, "> 0 (a fraction in (0, 1] or a number of batches)"),
    "trainer.limit_val_batches": (lambda v: v > 0, "> 0 (model selection needs validation)"),
    "trainer.limit_test_batches": (lambda v: v > 0, "> 0 (test=false skips the test instead)"),
    "optimizer.lr": (lambda v: v > 0, "> 0"),
    "optimizer.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optimizer.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.l1": (lambda v: v >= 0, ">= 0"),
    "data.val_fraction": (lambda v: 0 <= v < 1, "in [0, 1) (0: no validation split, every training row trains)"),
    "data.test_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "task.label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "task.test_intervals": (lambda v: v == 0 or 100 <= v <= 100_000, "0 (no intervals) or 100-100000 redraws"),
}
# scheduler values that would take the learning rate to 0 or below (a negative one is gradient ascent) or make no
# schedule; key -> (check, what is allowed, the scheduler classes it is checked for by name: None for any).
# A value may be a list, one per parameter group (OneCycleLR's max_lr): each is checked.
SCHEDULER_RANGES: dict[str, tuple[Callable[[float], bool], str, Optional[tuple[str, ...]]]] = {
    "scheduler.gamma": (lambda v: v > 0, "> 0 (the factor the learning rate is multiplied by)", None),
    "scheduler.eta_min": (lambda v: v >= 0, ">= 0 (the lowest learning rate)", None),
    "scheduler.max_lr": (lambda v: v > 0, "> 0 (the peak learning rate)", None),
    "scheduler.div_factor": (lambda v: v > 0, "> 0 (the first learning rate is max_lr / div_factor)", None),
    "scheduler.final_div_factor": (lambda v: v > 0, "> 0 (the last learning rate is the first / final_div_factor)",
                                   None),
    "scheduler.factor": (lambda v: 0 < v < 1, "in (0, 1) (the learning rate is multiplied by it when the metric "
                                              "stops improving)", ("ReduceLROnPlateau",)),
}
INTEGER_MINIMUMS = {
    "data.batch_size": 1,
    "data.eval_batch_size": 1,
    "trainer.max_epochs": 1,
    "trainer.devices": 1,
    "trainer.num_nodes": 1,
    "trainer.accumulate_grad_batches": 1,
    "trainer.check_val_every_n_epoch": 1,
    "trainer.min_epochs": 0,
    "callbacks.early_stopping.patience": 0,
    "data.cv_folds": 2,
    "data.limit_rows": 1,
    "data.skip_rows": 0,
    "scheduler.step_size": 1,
    "scheduler.T_max": 1,
    "scheduler.patience": 0,
    # text models and their vocabulary: 0 or less failed mid-build (a division by zero, a negative count)
    "model.embed_dim": 1,
    "model.num_filters": 1,
    "model.bigram_buckets": 1,
    "model.ngram_buckets": 1,
    "data.min_frequency": 1,
}


# keys that, where the config has them, must hold a number (null would reach torch as a TypeError)
NOT_NULL = ("optimizer.lr", "optimizer.weight_decay", "optimizer.momentum", "model.l1", "data.val_fraction",
            "data.test_fraction", "data.batch_size")


# the keyword arguments of datetime.timedelta: the keys of a trainer.max_time mapping
TIMEDELTA_KEYS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")
MAX_TIME_FORMS = ('"DD:HH:MM:SS" (e.g. trainer.max_time=00:00:30:00), a mapping of timedelta keys '
                  "(e.g. 'trainer.max_time={minutes: 30}') or a number of seconds (e.g. trainer.max_time=1800)")


def max_time(value: Any):
    """``trainer.max_time`` as the ``timedelta`` handed to the Trainer (None: no limit). Lightning takes a
    "DD:HH:MM:SS" string or a dict of timedelta keys (a DictConfig failed: 'Missing key total_seconds'); a number
    of seconds is taken too. Anything else, or a limit of 0 or less, is refused naming the accepted forms."""
    import datetime

    value = _plain(value)
    if value is None:
        return None
    limit = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        limit = datetime.timedelta(seconds=value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+:\d+:\d+:\d+\s*", value):
        days, hours, minutes, seconds = (int(part) for part in value.split(":"))
        limit = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    elif isinstance(value, dict) and value and all(key in TIMEDELTA_KEYS for key in value) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        limit = datetime.timedelta(**value)
    if limit is None or limit.total_seconds() <= 0:
        shown = value if isinstance(value, (dict, list)) else repr(value) if isinstance(value, str) else value
        raise ConfigError(f"trainer.max_time={shown} is not a time limit; allowed: {MAX_TIME_FORMS}, more than 0")
    return limit


def _check_ranges(cfg: DictConfig) -> None:
    limit = max_time(OmegaConf.select(cfg, "trainer.max_time", default=None))
    trainer = cfg.get("trainer")
    if (isinstance(trainer, DictConfig) and trainer.get("max_epochs") is None
            and trainer.get("max_steps") in (None, -1) and limit is None):
        # removed ('~trainer.max_epochs') or null: Lightning trains 1000 epochs then, a number nobody chose
        raise ConfigError("trainer.max_epochs is not set (null or removed), and Lightning would then train 1000 "
                          "epochs; allowed: an integer >= 1 (e.g. trainer.max_epochs=20), or keep it null with a "
                          "limit of another kind: trainer.max_steps=N or trainer.max_time (" + MAX_TIME_FORMS + ")")
    for key in NOT_NULL:
        if OmegaConf.select(cfg, key, default=0) is None:
            allowed = (RANGES[key][1] if key in RANGES else
                       f"an integer >= {INTEGER_MINIMUMS[key]}" if key in INTEGER_MINIMUMS else "a number")
            raise ConfigError(f"{key}=null: a number is needed here; allowed: {allowed}")
    dims = OmegaConf.select(cfg, "model.hidden_dims", default=None)
    if OmegaConf.is_list(dims) or isinstance(dims, (list, tuple)):  # not a list: the type check says so
        values = list(dims)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise ConfigError(f"model.hidden_dims={OmegaConf.to_container(dims) if OmegaConf.is_list(dims) else dims} "
                              "is out of range; allowed: a list of integers >= 1, one width per hidden layer "
                              "(e.g. model.hidden_dims=[64,32]; [] for none)")
    sizes = OmegaConf.select(cfg, "model.kernel_sizes", default=None)
    if OmegaConf.is_list(sizes) or isinstance(sizes, (list, tuple)):
        values = list(sizes)
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise ConfigError(f"model.kernel_sizes={OmegaConf.to_container(sizes) if OmegaConf.is_list(sizes) else sizes} "
                              "is out of range; allowed: a non-empty list of integers >= 1, one convolution width "
                              "each (e.g. model.kernel_sizes=[3,4,5])")
    for key, (check, allowed) in RANGES.items():
        value = _get(cfg, key)
        if value is not None and not check(_number(key, value)):
            raise ConfigError(f"{key}={value} is out of range; allowed: {allowed}")
    scheduler_class = str(_get(cfg, "scheduler._target_") or "").rsplit(".", 1)[-1]
    for key, (check, allowed, classes) in SCHEDULER_RANGES.items():
        value = _get(cfg, key)
        if value is None or (classes is not None and scheduler_class not in classes):
            continue
        values = _plain(value) if OmegaConf.is_list(value) else [value]
        if not all(check(_number(key, item)) for item in values):
            raise ConfigError(f"{key}={_plain(value)} is out of range; allowed: {allowed}")
    for key, minimum in INTEGER_MINIMUMS.items():
        value = _get(cfg, key)
        if value is None or (key == "trainer.devices" and isinstance(_plain(value), (str, list))):
            continue
        if _integer(key, value) < minimum:
            raise ConfigError(f"{key}={value} is out of range; allowed: an integer >= {minimum}")
    folds = _get(cfg, "data.cv_folds")
    fold = _get(cfg, "data.fold")
    if fold is not None:
        _integer("data.fold", fold)
        upper = folds if folds else 1
        if not 0 <= fold < upper:
            allowed = f"0..{folds - 1} (data.cv_folds={folds})" if folds else "0 (set data.cv_folds=K for K-fold CV)"
            raise ConfigError(f"data.fold={fold} is out of range; allowed: {allowed}")


def data_parallel(trainer: Any) -> bool:
    """Whether the trainer config trains on several processes (DDP, FSDP, several devices or nodes)."""
    if trainer is None:
        return False
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    return ("ddp" in strategy or "fsdp" in strategy or int(trainer.get("num_nodes", 1) or 1) > 1
            or (isinstance(devices, int) and devices > 1))


def _models_for(modality: Optional[str], task_kind: str) -> list[str]:
    """The packaged model options whose class reads ``modality`` inputs for ``task_kind`` (a refusal names them: the
    model refused may be a task's default, which the command never named)."""
    found = []
    for option in config_options(CONFIG_DIR, "model"):
        try:
            target = OmegaConf.load(CONFIG_DIR / "model" / f"{option}.yaml").get("_target_")
            model_class = resolve_target("model", target) if target else None
        except Exception:  # a model whose libraries are not installed is not one to suggest
            continue
        modalities, tasks = getattr(model_class, "modalities", None), getattr(model_class, "tasks", None)
        if modalities is not None and modality in modalities and (tasks is None or task_kind in tasks):
            found.append(option)
    return found


def _check_compatibility(cfg: DictConfig) -> None:
    if cfg.model.get("unfreeze_at_epoch") is not None and data_parallel(cfg.get("trainer")):
        raise ConfigError("model.unfreeze_at_epoch cannot be used with data-parallel training (DDP fixes "
                          "the trainable parameters when it starts); train on one device, or keep the "
                          "backbone frozen or trainable throughout")
    data_class = resolve_target("data", cfg.data._target_)
    model_class = resolve_target("model", cfg.model._target_)
    data_task = cfg.data.get("task_kind") or getattr(data_class, "task_kind", None)
    modality = getattr(data_class, "modality", None)
    data_name = _choice_name(cfg, "data")
    model_name = _choice_name(cfg, "model")
    objective = cfg.task.kind
    if data_task and data_task != objective:
        raise ConfigError(
            f"data={data_name} is a {data_task} data set but task.kind is {objective}; "
            f"pick a {objective} data set or task={'regression' if data_task == 'regression' else 'classification'}"
        )
    modalities = getattr(model_class, "modalities", None)
    if modalities is not None and modality not in modalities:
        fitting = _models_for(modality, objective)
        raise ConfigError(
            f"model={model_name} takes {'/'.join(sorted(modalities))} inputs but data={data_name} is {modality} data"
            + (f"; the models for {modality} data: model={', '.join(fitting)}" if fitting else "")
        )
    tasks = getattr(model_class, "tasks", None)
    if tasks is not None and objective not in tasks:
        raise ConfigError(f"model={model_name} is for {'/'.join(sorted(tasks))}, not {objective}")
    _check_lbfgs(cfg, model_class)
    _check_eps_in_float16(cfg)
    _check_without_validation(cfg)
    scheduler_target = _get(cfg, "scheduler._target_") or ""
    if scheduler_target.endswith("ReduceLROnPlateau") and cfg.scheduler.get("mode") not in (None, cfg.task.mode):
        raise ConfigError(f"scheduler.mode must match task.mode ({cfg.task.mode})")
    for path, node in directed_nodes(cfg):
        if _watches_the_monitor(cfg, node):
            if path != "scheduler" and node.get("mode") not in (None, cfg.task.mode):
                raise ConfigError(f"{path}.mode={node.get('mode')}: {path} watches {cfg.task.monitor}, whose better "
                                  f"direction is task.mode={cfg.task.mode}; set it so, or leave mode out (then it is "
                                  "task.mode's)")
            continue
        # a metric of its own (callbacks.model_checkpoint.monitor=val/acc), its mode still task.mode's min: the
        # checkpoint of the worst epoch was kept and tested, with exit 0
        monitor, mode = node.get("monitor"), node.get("mode")
        better = metric_direction(str(monitor)) if monitor else None
        if better is not None and mode is not None and better != mode:
            source = " (from task.mode)" if OmegaConf.is_interpolation(node, "mode") else ""
            raise ConfigError(f"{path}.monitor={monitor} is better {'higher' if better == 'max' else 'lower'}, but "
                              f"{path}.mode={mode}{source} would "
                              + ("keep (and test) the checkpoint of its worst epoch" if "checkpoint" in path else
                                 "stop the run as it improves" if "stopping" in path else
                                 "lower the rate as it improves")
                              + f"; add {path}.mode={better}")


# what watches a validation metric and has a direction: a plateau schedule, early stopping, a best checkpoint
_DIRECTED = ("ReduceLROnPlateau", "EarlyStopping", "ModelCheckpoint", "ResumableCheckpoint")


def _watches_the_monitor(cfg: DictConfig, node) -> bool:
    target = str(node.get("_target_", "") if isinstance(node, DictConfig) else "")
    monitor = node.get("monitor", cfg.task.monitor) if isinstance(node, DictConfig) else None
    return target.rsplit(".", 1)[-1] in _DIRECTED and monitor == cfg.task.monitor


def experiment_values_for_another_choice(cfg: DictConfig) -> list[str]:
    """``experiment=X optimizer=adam`` where X chooses ``optimizer: sgd`` and sets ``optimizer.lr``: the experiment's
    values meant for its choice are merged into the command line's (Adam trained at SGD's rate, and an SGD-only key
    was refused as unknown to Adam, without naming the experiment). One line per group, naming the keys and how to
    set them; nothing for a sweep's trial (its search file's warning says this once) or without an experiment."""
    if cfg.get("sweep") is not None:
        return []
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        choices = hydra_cfg.runtime.choices
        experiment = choices.get("experiment")
        if not experiment:
            return []
        folders = [CONFIG_DIR] + [Path(source.path.removeprefix("file://")) for source in hydra_cfg.runtime.config_sources
                                  if str(source.path).startswith("file://")]
        path = next((folder / "experiment" / f"{experiment}.yaml" for folder in folders
                     if (folder / "experiment" / f"{experiment}.yaml").is_file()), None)
        if path is None:
            return []
        loaded = OmegaConf.to_container(OmegaConf.load(path))
        given = {str(o).lstrip("+~").partition("=")[0] for o in hydra_cfg.overrides.task}
    except Exception:  # a note, never a reason to fail
        return []

    def flatten(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:  # (tracking.params' is a floor above)
        return [item for key, value in tree.items() for item in
                (flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)])]

    lines = []
    for entry in loaded.get("defaults") or []:
        for key, value in (entry.items() if isinstance(entry, dict) else ()):
            group = str(key).replace("override", "").strip().lstrip("/")
            if group not in given or str(choices.get(group)) == str(value) or not isinstance(loaded.get(group), dict):
                continue
            keys = [(f"{group}.{k}", v) for k, v in flatten(loaded[group]) if f"{group}.{k}" not in given]
            if keys:
                lines.append(f"experiment={experiment} sets {', '.join(f'{k}={v}' for k, v in keys)} for its {group}="
                             f"{value}; this run's {group}={choices.get(group)} (the command line) takes "
                             f"{'it' if len(keys) == 1 else 'them'} too: give {' '.join(f'{k}=...' for k, _ in keys)} "
                             f"for {choices.get(group)}'s own")
    return lines


def directed_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(key, node) of the scheduler and callbacks that watch a metric in a direction (``mode``): plateau schedules,
    early stopping, checkpoints."""
    named = [("scheduler", cfg.get("scheduler"))] + [(f"callbacks.{name}", node)
                                                    for name, node in _collection(cfg, "callbacks").items()]
    return [(key, node) for key, node in named if isinstance(node, DictConfig)
            and str(node.get("_target_", "")).rsplit(".", 1)[-1] in _DIRECTED]


def directions_of_the_monitor(cfg: DictConfig) -> None:
    """A plateau schedule, early stopping or a checkpoint of one's own (a YAML of a config dir) that watches
    task.monitor without a ``mode`` gets task.mode: torch's and Lightning's default, min, halved the rate, stopped
    the run and kept the checkpoint of the worst epochs of a val/acc that rose. Recorded in ``cfg`` (the logged
    config, pipeline-rerun)."""
    for _, node in directed_nodes(cfg):
        if _watches_the_monitor(cfg, node) and node.get("mode") is None:
            with open_dict(node):
                node.mode = cfg.task.mode


def mixed_precision(cfg: DictConfig) -> bool:
    """Whether ``trainer.precision`` trains under Lightning's mixed precision (autocast: 16-mixed, bf16-mixed)."""
    precision = str(_get(cfg, "trainer.precision") or "32-true")
    return precision.endswith("-mixed") or precision in ("16", "bf16")


def unfused_for_clipping(cfg: DictConfig) -> Optional[str]:
    """Lightning refuses to clip the gradients of a fused optimizer under mixed precision, mid-training (a FAILED
    run): under 16-mixed a fused step unscales the gradients itself, after clipping would have seen them scaled;
    under bf16-mixed (no scaling) it refuses all the same. ``optimizer.fused`` says how the update runs, not what it
    computes, so with gradient clipping under mixed precision the unfused (foreach) optimizer is built instead, and
    ``cfg`` records it (the logged config, ``pipeline-rerun``). Returns the line saying so; None: nothing changed."""
    optimizer = cfg.get("optimizer")
    if not (isinstance(optimizer, DictConfig) and optimizer.get("fused") is True and mixed_precision(cfg)
            and _get(cfg, "trainer.gradient_clip_val")):
        return None
    with open_dict(optimizer):
        optimizer.fused = False
    return (f"optimizer.fused=false for this run: Lightning cannot clip the gradients of a fused optimizer under "
            f"trainer.precision={_get(cfg, 'trainer.precision')} (trainer.gradient_clip_val); the unfused optimizer "
            "makes the same update, somewhat slower")


def without_validation(cfg: DictConfig) -> bool:
    """``data.val_fraction=0``: no validation split; the data's own validation rows, if any, train too."""
    value = _get(cfg, "data.val_fraction")
    return value is not None and float(value) == 0


def _check_without_validation(cfg: DictConfig) -> None:
    """What watches validation metrics cannot run without a validation split: refused in one line."""
    if not without_validation(cfg):
        return
    why = "data.val_fraction=0 leaves no validation split"
    for name, node in _collection(cfg, "callbacks").items():
        if str(node.get("_target_", "")).endswith("EarlyStopping"):
            raise ConfigError(f"{why}, and callbacks.{name} stops on {node.get('monitor', cfg.task.monitor)}; drop it "
                              f"(callbacks.{name}=null) or hold rows out (data.val_fraction > 0)")
    if str(_get(cfg, "scheduler._target_") or "").endswith("ReduceLROnPlateau"):
        raise ConfigError(f"{why}, and scheduler=plateau steps on {cfg.task.monitor}; pick another scheduler or hold "
                          "rows out (data.val_fraction > 0)")
    if cfg.get("sweep"):
        check_sweepable(cfg)


def check_sweepable(cfg: DictConfig) -> None:
    """A sweep selects its trials on validation metrics: a config without a validation split is refused."""
    if without_validation(cfg):
        raise ConfigError(f"data.val_fraction=0 leaves no validation split, and a sweep selects its trials on "
                          f"{cfg.task.monitor}; hold rows out (data.val_fraction > 0)")


def _check_lbfgs(cfg: DictConfig, model_class) -> None:
    """L-BFGS evaluates the loss several times per step (Lightning's closure) and keeps one parameter group."""
    import torch

    optimizer_class = resolve_target("optimizer", cfg.optimizer._target_)
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.LBFGS)):
        return
    name = _choice_name(cfg, "optimizer")
    precision = str(_get(cfg, "trainer.precision") or "32")
    if "mixed" in precision:
        raise ConfigError(f"optimizer={name} cannot train with trainer.precision={precision} (Lightning's mixed "
                          "precision does not support L-BFGS); use trainer.precision=32-true")
    if _get(cfg, "trainer.gradient_clip_val"):
        raise ConfigError(f"optimizer={name} cannot be combined with trainer.gradient_clip_val: clipped gradients "
                          "would not be the gradients of the loss its line search evaluates")
    if (_get(cfg, "trainer.accumulate_grad_batches") or 1) > 1:
        raise ConfigError(f"optimizer={name} needs trainer.accumulate_grad_batches=1: each step evaluates the "
                          "loss of one (full) batch several times")
    if hasattr(model_class, "parameter_groups"):
        raise ConfigError(f"optimizer={name} keeps one parameter group, but model={_choice_name(cfg, 'model')} "
                          "trains its parameters in groups (a learning rate per group); use optimizer=adamw")


def _check_eps_in_float16(cfg: DictConfig) -> None:
    """Under ``trainer.precision=16-true`` the weights and the optimizer's state are float16, where Adam's and
    RMSprop's default eps (1e-8) is 0: the first step divides by 0 and the run failed with an inf/NaN loss whose
    hint (lower the learning rate) did not help. Refused before the run, saying what does."""
    if str(_get(cfg, "trainer.precision") or "") != "16-true":
        return
    import inspect

    import torch

    optimizer_class = resolve_target("optimizer", cfg.optimizer._target_)
    try:
        default = inspect.signature(optimizer_class).parameters.get("eps")
    except (TypeError, ValueError):
        return
    eps = cfg.optimizer.get("eps", default.default if default is not None else None)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        return
    if torch.tensor(float(eps), dtype=torch.float16).item() == 0:
        name = _choice_name(cfg, "optimizer")
        raise ConfigError(
            f"optimizer={name} cannot train with trainer.precision=16-true: its state is float16 there, where its "
            f"eps ({eps:g}) is 0, so its first steps divide by 0 (an inf or NaN loss); use trainer.precision=16-mixed "
            "(float32 weights, float16 compute) or bf16-true, or give it an eps float16 holds (+optimizer.eps=1e-4)")


def _choice_name(cfg: DictConfig, group: str) -> str:
    """The option name the user picked (``data=wine``) when Hydra recorded it, else the class."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return str(HydraConfig.get().runtime.choices.get(group))
    except Exception:
        pass
    return str(cfg[group]._target_).rsplit(".", 1)[-1]
