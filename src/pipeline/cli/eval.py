"""``pipeline-eval <run id | checkpoint> [key=value ...]``: test a trained model again, on its test split or
on other data (e.g. ``data.test_path=new.csv``), recorded as an evaluation run linked to its source.

With a run id, the run's logged config and best checkpoint are fetched from the store (checked like
``pipeline-rerun`` checks them: only allowed classes, nothing written outside the new output folder). With a
checkpoint file, the config is the ``config.yaml`` of the run folder the checkpoint lies in
(``<output dir>/checkpoints/<file>.ckpt``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from pipeline.cli import user_path
from pipeline.cli.rerun import (CHOICE_PARAMS, RerunRefused, apply_overrides,
                                check_logged_config, check_targets, confine_written_folders, drop_own_callbacks,
                                fresh_output_dir, linked_keys, logged_split_digests, note_thread_count,
                                output_dir_removed_if_refused, rerun_config, run_of, say_dropped_callbacks,
                                unfinished_run)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    from pipeline.tracking.run import default_store

    uri, _ = default_store()
    parser = argparse.ArgumentParser(prog="pipeline-eval", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("source", help="an MLflow run id (or a registered model's version, models:/<name>/<version>, "
                                       "models:/<name>/latest, models:/<name>@<alias>), or a checkpoint file written by a run")
    parser.add_argument("overrides", nargs="*", default=[],  # default: optional, not named as required
                        help="values to change, e.g. data.test_path=new.csv data.eval_batch_size=512")
    parser.add_argument("--tracking-uri", default=uri, help=f"store holding the run and receiving the evaluation (default: {uri})")
    parser.add_argument("--output-dir", type=user_path, default=None, help="where the evaluation writes (default: a fresh outputs/<date>/<time>)")
    return parser.parse_intermixed_args(argv)  # overrides before, between or after the options


def _from_checkpoint(path: Path, overrides: list[str], tracking_uri: str, output_dir: Path):
    config_file = path.resolve().parent.parent / "config.yaml"
    if not config_file.is_file():
        raise RerunRefused(f"{path}: no config.yaml in its run folder ({config_file.parent}); pass the run id instead, "
                           "or keep the checkpoint inside the folder its run wrote")
    cfg = OmegaConf.load(config_file)
    say_dropped_callbacks(drop_own_callbacks(cfg))
    check_logged_config(cfg, f"{config_file}, the config of the checkpoint's run folder,")
    cfg.pop("sweep", None)
    for node in (cfg.get("logger") or {}).values():
        if "tracking_uri" in node:
            node.tracking_uri = tracking_uri
    old_output_dir = OmegaConf.select(cfg, "paths.output_dir")
    cfg.paths.output_dir = str(output_dir)
    cfg.ckpt_path = None
    confine_written_folders(cfg, str(old_output_dir) if old_output_dir else None, output_dir, str(config_file))
    logged, cfg = cfg, apply_overrides(cfg, overrides, linked_keys({}) if overrides else {})
    refuse_other_preprocessing(logged, cfg)
    check_targets(cfg, "the overrides")
    confine_written_folders(cfg, None, output_dir, "the overrides")
    return cfg


# data keys that make the model's inputs from raw rows, texts or images (the table's columns and their encoding, the
# standardisation, the tokenizer, the image size and normalisation): an evaluation takes the run's fitted
# preprocessing, which these would not change. (What else reads the data otherwise is refused by evaluate(), which
# compares the preprocessing fitted again with the run's.)
PREPROCESSING_KEYS = tuple(f"data.{key}" for key in (
    "target", "task_kind", "features", "drop", "categorical", "numeric", "max_integer_categories", "date_features",
    "categorical_encoding", "min_category_count", "numeric_transform", "piecewise_bins", "standardize",
    "standardize_target", "n_features", "vocab_size", "min_frequency", "max_length", "lowercase", "tokenizer",
    "image_size", "channels", "resize_size", "normalization"))

_NOT_SET = object()


def _value(cfg, key: str):
    """``key``'s value in ``cfg`` (resolved where it can be, as plain data), or _NOT_SET."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None)
    if not OmegaConf.is_dict(node) or leaf not in node:
        return _NOT_SET
    try:
        value = node[leaf]
    except Exception:  # an interpolation that cannot be resolved here: compared as written
        return str(node._get_node(leaf)._value())
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _shown(value) -> str:
    """A value as an override writes it."""
    from pipeline.sweep.space import override_value

    return "not set" if value is _NOT_SET else override_value(value)


def refuse_other_preprocessing(logged, cfg) -> None:
    """Refuse overrides that would read the data otherwise than the run (another numeric transform, encoding,
    vocabulary, max_length...): the model is tested with the run's fitted preprocessing, so they would be
    ignored while the evaluation recorded them."""
    differ = [(key, _value(logged, key), _value(cfg, key)) for key in PREPROCESSING_KEYS]
    differ = [(key, before, after) for key, before, after in differ if before != after]
    if not differ:
        return
    named = ", ".join(f"{key}={_shown(after)} (the run's: {_shown(before)})" for key, before, after in differ)
    raise RerunRefused(f"{named}: pipeline-eval tests the model on inputs made as the run made them (its fitted "
                       "preprocessing), so the data cannot be read otherwise; keep these keys as the run had them "
                       "(other test rows: data.test_path), or train anew with them (pipeline-train)")


# keys that choose which rows a drawn test split holds (with data.val_fraction it stays the same rows)
SPLIT_KEYS = ("seed", "data.seed", "data.test_fraction", "data.cv_folds", "data.fold", "data.limit_rows", "data.groups",
              "data.order_by")


def redrawn_test_rows_warning(overrides: list[str]) -> Optional[str]:
    """A warning when the overrides draw other test rows from the data the model was trained on: some of them
    may be its training rows, which flatters the metrics. None for the same rows, or for a test file of its own."""
    keys = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
    changed = sorted(keys & set(SPLIT_KEYS))
    if not changed or "data.test_path" in keys:
        return None
    return (f"Warning: {', '.join(changed)} may draw other test rows than the source run's (where they are drawn "
            "from the training data), some of them rows the model was trained on, and its test metrics then look "
            "better than they are; to test on new rows, give them a file or folder of their own (data.test_path)")


def _other_test_rows_asked(overrides) -> bool:
    """Whether the overrides name other test rows (a test file, or keys that redraw the split)."""
    keys = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
    return bool(keys & {*SPLIT_KEYS, "data.test_path"})


def training_file_as_test_warning(cfg) -> Optional[str]:
    """A warning when data.test_path names the file or folder the run was trained on (data.path): every test row
    is then a training row, and the test metrics look better than they are."""
    data = cfg.get("data") or {}
    test, trained = data.get("test_path"), data.get("path")
    if not test or not trained:
        return None
    test_file, trained_file = (Path(str(p)).expanduser() for p in (test, trained))
    try:
        same = os.path.samefile(test_file, trained_file)
    except OSError:  # either is not there: the data module says so
        return None
    if not same:
        return None
    return (f"Warning: data.test_path={test} is the data the model was trained on (data.path): its rows are training "
            "rows, and the test metrics look better than they are; to test on new rows, give them a file or folder "
            "of their own")


def main(argv: Optional[list[str]] = None) -> int:
    from pipeline.cli.errors import closed_stdout_ignored, report_errors
    from pipeline.tracking import launched_as
    from pipeline.tracking.run import existing_client
    from pipeline.tracking.run import digest_kind
    from pipeline.train import evaluate

    closed_stdout_ignored()  # pipeline-... | head: a closed stdout ends no run FAILED
    args = parse_args(argv)
    output_dir = args.output_dir or fresh_output_dir()
    with output_dir_removed_if_refused(output_dir, args.output_dir is not None), report_errors():
        _warn_if_any(redrawn_test_rows_warning(list(args.overrides)))
        source = Path(args.source)
        if source.suffix == ".ckpt" or source.is_file():
            if not source.is_file():
                raise RerunRefused(f"checkpoint {source} does not exist")
            cfg = _from_checkpoint(source, list(args.overrides), args.tracking_uri, output_dir)
            _warn_if_any(training_file_as_test_warning(cfg))
            evaluate(cfg, source, source_data=source.resolve().parent.parent / "data", announce=f"Evaluating {source}")
            return 0
        try:
            client = existing_client(args.tracking_uri, args.source)
            run = run_of(client, args.source, args.tracking_uri)
        except LookupError as error:
            from pipeline.tracking.run import StoreUnusable

            # a run id (or a name) that could have been a file; not a models:/ or runs:/ reference, nor an unusable store
            file_too = not isinstance(error, StoreUnusable) and not args.source.startswith(("models:/", "runs:/"))
            print(f"Error: {error}{' (and no checkpoint file of that name)' if file_too else ''}", file=sys.stderr)
            return 2
        choices = {key: run.data.params[key] for key in CHOICE_PARAMS if key in run.data.params}
        cfg = rerun_config(client, run, args.tracking_uri, list(args.overrides), output_dir, choices,
                           check=refuse_other_preprocessing, evaluation=True)
        cfg.tags.pop("rerun_of", None)
        _warn_if_any(training_file_as_test_warning(cfg))
        checkpoints = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints") if a.path.endswith(".ckpt")]
        if not checkpoints:
            from pipeline.cli.predict import evaluation_without_model, sweep_trial_without_model

            uri = f"runs:/{run.info.run_id}/model"
            trial = (sweep_trial_without_model(uri, args.tracking_uri, verb="evaluate")
                     or evaluation_without_model(uri, args.tracking_uri, verb="evaluate"))
            unfinished = unfinished_run(run, "a checkpoint (checkpoints/*.ckpt)")
            raise RerunRefused(trial or (f"{unfinished}{local_checkpoint_hint(run)}" if unfinished else
                                         f"run {run.info.run_id} logged no checkpoint (checkpoints/*.ckpt); it cannot "
                                         f"be evaluated from the store{local_checkpoint_hint(run)}"))
        with tempfile.TemporaryDirectory() as folder:
            weights = Path(client.download_artifacts(run.info.run_id, checkpoints[0], folder))
            data = None  # the fitted preprocessing and model spec, where the run logged them
            if any(a.path == "data/model_spec.json" for a in client.list_artifacts(run.info.run_id, "data")):
                data = Path(client.download_artifacts(run.info.run_id, "data", folder))
            note_thread_count(run.data.params.get("torch_threads"))
            with launched_as(choices, list(args.overrides)):
                evaluate(cfg, weights, source_run=run.info.run_id, source_data=data,
                         source_test_digest=None if _other_test_rows_asked(args.overrides) else
                         logged_split_digests(run).get("testing"), source_digest_kind=digest_kind(run),
                         checkpoint_name=f"runs:/{run.info.run_id}/{checkpoints[0]}",
                         announce=f"Evaluating {run.info.run_name} ({run.info.run_id}, {checkpoints[0]})")
    return 0


def local_checkpoint_hint(run) -> str:
    """Where a run that logged no checkpoint (killed before its end, kill -9) left one in its output folder: that
    file, and the commands that take it. An evaluation of a run id tests what the store holds, never a local file
    that may have changed since; the file is evaluated by its path, recorded as the evaluated checkpoint."""
    params = run.data.params
    folder = params.get("callbacks.model_checkpoint.dirpath") or (
        str(Path(params["paths.output_dir"]) / "checkpoints") if params.get("paths.output_dir") else None)
    if not folder or not Path(folder).is_dir():
        return ""
    found = sorted(Path(folder).glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime) or \
        sorted(Path(folder).glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        return ""
    path = found[-1]
    return (f"; its output folder has {path}: evaluate that file (pipeline-eval {path}), answer with it "
            f"(pipeline-predict {path}), or resume the training from it with ckpt_path={path}")


def _warn_if_any(warning: Optional[str]) -> None:
    if warning:
        print(warning, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
