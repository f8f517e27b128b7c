"""``pipeline-compare [--experiment X] [--by M] [--top N] [--all] [--all-data] [--plot] [--output DIR]``:
the finished runs of one experiment on one data set as a table, best first by the best validation value of
the task's monitored metric (``val/loss_best``; selection never looks at the test split), with their key
params, data and test metrics (shown, not used to rank). Pruned, failed and evaluation runs, and a sweep's final
runs a better trial replaced, are left out unless ``--all``; runs on other data are left out unless ``--all-data``. Printed, and written as Markdown and
CSV; ``--plot`` adds one figure that overlays the validation curves of the top runs."""
from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pipeline.cli import user_path

# (column, param key) of the params shown for every run
KEY_PARAMS = [
    ("task", "task"), ("data", "data"), ("model", "model"), ("optimizer", "optimizer"),
    ("lr", "optimizer.lr"), ("weight_decay", "optimizer.weight_decay"), ("dropout", "model.dropout"),
    ("epochs", "trainer.max_epochs"), ("seed", "seed"),
]
SIGNIFICANT_DIGITS = 4


def _key_param(run, column: str, key: str) -> str:
    """A run's value of a key param; ``epochs``: the epochs it trained where it stopped before trainer.max_epochs
    (early stopping, the time limit, a pruned sweep trial), as ``<trained>/<max_epochs>``."""
    value = _number(run.data.params.get(key, ""))
    stopped = run.data.tags.get("stopped_early_at_epoch") if column == "epochs" else None
    return f"{stopped}/{value}" if stopped and value else value


def _csv_key_params(run) -> list[str]:
    """The key params as compare.csv holds them: numbers a spreadsheet can sort, so ``epochs`` is the epochs the run
    trained and ``max_epochs`` (after it) the trainer.max_epochs it was given, equal where it was not stopped early."""
    cells = []
    for column, key in KEY_PARAMS:
        if column == "data":
            continue
        value = run.data.params.get(key, "")  # as logged: the table rounds, the CSV does not
        if column == "epochs":
            cells += [run.data.tags.get("stopped_early_at_epoch") or value, value]
        else:
            cells.append(value)
    return cells
DEFAULT_PLOTTED_RUNS = 5


class CompareError(RuntimeError):
    """Nothing to compare, or the request names something the store does not hold."""


@dataclass
class Ranking:
    experiment: str
    metric: str
    mode: str  # "min" | "max"
    monitor: str  # the validation metric the task selects on (the curves of --plot)
    header: list[str]
    rows: list[list[str]]  # a test metric's cell with its 95 % interval in brackets where the run logged one
    runs: list  # mlflow Run objects, in table order
    csv_header: list[str]  # as header, with a _ci_low and a _ci_high column after each metric that has intervals
    csv_rows: list[list[str]]


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    from pipeline.tracking.run import default_store

    uri, _ = default_store()
    parser = argparse.ArgumentParser(prog="pipeline-compare", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("--experiment", help="experiment name (default: the one with the most recent run)")
    parser.add_argument("--by", "--metric", dest="metric",
                        help="rank by this metric (default: <the task's monitored metric>_best, e.g. val/loss_best)")
    parser.add_argument("--all", action="store_true", help="also list pruned, failed, killed and evaluation runs")
    parser.add_argument("--all-data", action="store_true",
                        help="rank runs on different data sets together (default: only the data of the newest training run)")
    parser.add_argument("--top", type=int, default=None, help="show only the N best runs")
    parser.add_argument("--plot", action="store_true", help="also write val_curves.png: the validation curves of the top runs")
    parser.add_argument("--output", type=user_path, default=None,
                        help="folder for compare.md, compare.csv and the plot (default: outputs/compare/<experiment>)")
    parser.add_argument("--paired", nargs=2, metavar=("RUN_A", "RUN_B"),
                        help="compare two runs tested on the same rows, row by row: each test metric's difference "
                             "with its 95%% interval over redraws of the rows (from their predictions/test.csv)")
    parser.add_argument("--tracking-uri", default=uri, help=f"store (default: {uri})")
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        parser.error("--top must be at least 1")
    return args


def pick_experiment(client, name: Optional[str]):
    experiments = client.search_experiments()
    if name is not None:
        for experiment in experiments:
            if experiment.name == name:
                return experiment
        known = ", ".join(sorted(e.name for e in experiments)) or "none"
        raise CompareError(f"no experiment '{name}' in the store; experiments: {known}")
    latest = client.search_runs([e.experiment_id for e in experiments], max_results=1,
                                order_by=["attributes.start_time DESC"]) if experiments else []
    if not latest:
        raise CompareError("the store holds no runs yet; train one with pipeline-train")
    return client.get_experiment(latest[0].info.experiment_id)


def finished_runs(client, experiment, include_all: bool = False) -> list:
    """Training runs that finished (a sweep's parent run has no ``task`` param and is left out); with
    ``include_all`` also pruned trials, failed, killed and evaluation runs, and a sweep's final runs that a better
    trial replaced (tag best=false). Newest first."""
    runs, token = [], None
    status = None if include_all else "attributes.status = 'FINISHED'"
    while True:
        page = client.search_runs([experiment.experiment_id], status, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        for run in page:
            tags = run.data.tags
            # a sweep's final run that a better trial replaced (best=false) is one of its trials again
            complete = (tags.get("sweep.state", "COMPLETE") == "COMPLETE" and tags.get("run_kind") != "evaluation"
                        and tags.get("best") != "false")
            if "task" in run.data.params and (include_all or complete):
                runs.append(run)
        token = page.token
        if not token:
            return runs


def data_identity(run) -> str:
    """What a run was trained on: the data option, and for a file its path and target column."""
    params = run.data.params
    parts = [params.get("data", "?")]
    if params.get("data.path") not in (None, "null", ""):
        parts.append(Path(params["data.path"]).name)
    if params.get("data.target") not in (None, "null", ""):
        parts.append(f"->{params['data.target']}")
    # what else draws the rows, where set: runs that differ only there were shown alike
    if params.get("data.test_path") not in (None, "null", ""):
        parts.append(f" test:{Path(params['data.test_path']).name}")
    if params.get("data.limit_rows") not in (None, "null", ""):
        parts.append(f" limit:{params['data.limit_rows']}")
    if params.get("data.cv_folds") not in (None, "null", ""):
        parts.append(f" fold:{params.get('data.fold', '0')}/{params['data.cv_folds']}")
    for key, shown, default in (("data.label_column", "label", "label"), ("data.sheet", "sheet", None),
                                ("data.groups", "groups", None), ("data.order_by", "order_by", None)):
        if params.get(key) not in (None, "null", "", default):
            parts.append(f" {shown}:{params[key]}")
    return ":".join(parts[:2]) + "".join(parts[2:])


# the keys that say which rows a run was validated and tested on (besides the seed, whose runs are compared): the
# file and sheet, the target (label) column and the rows whose label is kept, and how the splits are drawn (groups
# held out whole, the latest rows by a time column). Not the keys of how the rows' inputs are made (columns chosen,
# their transforms, a tokenizer), which are compared on the same rows
DATA_KEYS = ("data", "data.path", "data.test_path", "data.sheet", "data.target", "data.label_column",
             "data.target_keep_values", "data.limit_rows", "data.val_fraction", "data.test_fraction", "data.cv_folds",
             "data.fold", "data.groups", "data.order_by")


# the groups whose keys say how a run trained (not where it wrote, nor what it was called)
SETTING_GROUPS = ("model.", "optimizer.", "scheduler.", "task.", "data.", "trainer.", "callbacks.")
NOT_SETTINGS = ("._target_", "_dir", ".dirpath", "data.path", "data.test_path", "data.data_dir", "trainer.devices",
                "trainer.enable_progress_bar", "data.num_workers")


def params_without_a_column(runs: list) -> list[tuple[str, list[str]]]:
    """The params of the groups that say how a run trained which differ among ``runs`` and have no column of the
    table: [(key, its distinct values)]. Keys every run sets come first (a searched batch size), then those some runs
    lack (a sweep's trials have no checkpoint callback, its final runs do), callbacks last; each in key order."""
    shown = {key for _, key in KEY_PARAMS}
    keys = sorted({key for run in runs for key in run.data.params
                   if key.startswith(SETTING_GROUPS) and key not in shown and not key.endswith(NOT_SETTINGS)})
    found = []
    for key in keys:
        values = list(dict.fromkeys(run.data.params.get(key, "-") for run in runs))
        if len(values) > 1 and not _told_by_another_column(key, runs):
            found.append((key, values))
    return sorted(found, key=lambda item: ("-" in item[1], item[0].startswith("callbacks."), item[0]))


# what a sweep sets in its trials and not in its final runs (no checkpoints, no validation pass before training)
_TRIAL_ONLY = ("trainer.num_sanity_val_steps", "callbacks.model_checkpoint")


def _told_by_another_column(key: str, runs: list) -> bool:
    """Whether ``key`` differs among ``runs`` only as something else in the table says: an optimizer's own setting
    (RMSprop's alpha, Adam's fused: absent, or a default, in runs of another optimizer, which the optimizer column
    shows) or what a sweep sets in its trials alone (tag ``sweep.role=trial``: no checkpoints, no validation pass
    before training). A key that also differs within one optimizer's runs, or within the trials, is not."""
    if key.startswith("optimizer."):
        by = lambda run: run.data.params.get("optimizer", "")  # noqa: E731
    elif key.startswith(_TRIAL_ONLY):
        by = lambda run: getattr(run.data, "tags", {}).get("sweep.role") == "trial"  # noqa: E731
    else:
        return False
    groups: dict = {}
    for run in runs:
        groups.setdefault(by(run), set()).add(run.data.params.get(key, "-"))
    return len(groups) > 1 and all(len(values) == 1 for values in groups.values())


def other_contents(runs: list) -> list[str]:
    """Lines that say where runs ranked together on the same data keys (the same file) were trained on other rows:
    the file changed between them (their training rows' digests, tag ``data_digest``, differ), or a rerun or
    evaluation said so (tag ``data_differs_from_source``). Such a row looked like the same data, scored otherwise."""
    lines = []
    groups: dict[tuple, list] = {}
    for run in runs:  # data.seed (the seed's, by default) draws the split: other seeds, other training rows
        groups.setdefault((*data_key(run), run.data.params.get("data.seed", "")), []).append(run)
    for group in groups.values():
        by_digest: dict[str, list[str]] = {}
        for run in group:
            if run.data.tags.get("data_digest"):
                by_digest.setdefault(run.data.tags["data_digest"], []).append(run.info.run_id[:8])
        if len(by_digest) > 1:
            shown = "; ".join(f"{digest[:8]}: {', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''}"
                              for digest, ids in list(by_digest.items())[:4])
            lines.append(f"\n(the same data keys ({data_identity(group[0])}) and data.seed held other training rows "
                         f"across these runs, the file changed between them: {len(by_digest)} training-row digests (tag "
                         f"data_digest) {shown}{'; ...' if len(by_digest) > 4 else ''})")
    flagged = [run.info.run_id[:8] for run in runs if run.data.tags.get("data_differs_from_source")]
    if flagged:
        lines.append(f"\n(trained or tested on other rows than the run it repeats: {', '.join(flagged[:6])}"
                     f"{', ...' if len(flagged) > 6 else ''}; tag data_differs_from_source)")
    return lines


# what one setting's repeats differ in: the seed (initial weights, batch order, the split through data.seed) and the
# cross-validation fold; runs alike but for these are one row of a paper's table, as mean and spread
REPEAT_KEYS = ("seed", "data.seed", "data.fold")


def _setting_of(run) -> tuple:
    """What a run trained with, less its seed and fold: its data (less the fold) and every setting of the groups
    that say how it trained."""
    params = run.data.params
    data = tuple(value for key, value in zip(DATA_KEYS, data_key(run)) if key not in REPEAT_KEYS)
    chosen = tuple(params.get(group, "") for group in ("task", "model", "optimizer", "scheduler"))
    settings = tuple(sorted((key, value) for key, value in params.items() if key.startswith(SETTING_GROUPS)
                            and not key.endswith(NOT_SETTINGS) and key not in REPEAT_KEYS))
    return data, chosen, settings


def repeats_summary(ranking: "Ranking") -> list[str]:
    """Mean and sample standard deviation of the shown metrics over the ranked runs that differ only in seed,
    data.seed or data.fold (``-m seed=1,2,3``, ``-m 'data.fold=range(0,5)'``), one line per such setting."""
    import statistics

    groups: dict[tuple, list[int]] = {}
    for position, run in enumerate(ranking.runs):
        groups.setdefault(_setting_of(run), []).append(position)
    metrics = ranking.header[ranking.header.index("data") + 1:]
    lines = []
    for positions in groups.values():
        if len(positions) < 2:
            continue
        runs = [ranking.runs[p] for p in positions]
        varied = [key for key in REPEAT_KEYS if len({r.data.params.get(key) for r in runs}) > 1]
        if not varied:
            continue  # the same seed and fold again: reruns, not repeats
        parts = []
        for name in metrics:
            values = [r.data.metrics[name] for r in runs if name in r.data.metrics and not math.isnan(r.data.metrics[name])]
            if len(values) >= 2:
                parts.append(f"{name} {_number(statistics.mean(values))} ± {_number(statistics.stdev(values))}"
                             + (f" (of {len(values)})" if len(values) < len(runs) else ""))
        over = "; ".join(f"{key} {', '.join(sorted({str(r.data.params.get(key)) for r in runs}, key=_numeric_first))}"
                         for key in varied if key != "data.seed" or "seed" not in varied)
        lines.append(f"  ranks {', '.join(str(p + 1) for p in positions)} ({len(runs)} runs over {over}): "
                     + "; ".join(parts))
    if lines:
        lines.insert(0, "\nRepeats of one setting (runs that differ only in seed or data.fold): mean ± sample std")
    return lines


def _numeric_first(text: str):
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def data_key(run) -> tuple[str, ...]:
    """Which runs are ranked together: the data option, the whole paths of the data and test files (two folders
    named ``simple`` in different places are two data sets, though :func:`data_identity` shows both as ``simple``),
    the target column and what draws the splits (600 rows or 2,000 of MR validate on other rows)."""
    params = run.data.params
    # a key a data option lacks is the same as one it sets to nothing (data.sheet of data=csv beside data=diabetes):
    # neither tells the data sets apart
    return tuple("" if params.get(key, "") in UNSET else params[key] for key in DATA_KEYS)


UNSET = ("", "None", "null", "[]")

# besides the data: the class binary f1 and ap are of (the run's tag, from task.positive_class or the second class
# where it is null; a run logged before the tag existed is taken to agree), since one model scores another f1 of it
RANKED_TOGETHER = (*DATA_KEYS, "task.positive_class")


def keys_differing(run, reference) -> list[str]:
    """The keys of :data:`RANKED_TOGETHER` on which ``run`` differs from ``reference`` (empty: ranked together)."""
    keys = [key for key, mine, theirs in zip(DATA_KEYS, data_key(run), data_key(reference)) if mine != theirs]
    positives = run.data.tags.get("positive_class"), reference.data.tags.get("positive_class")
    return keys + (["task.positive_class"] if None not in positives and positives[0] != positives[1] else [])


def differing_keys(run, others: list) -> list[str]:
    """The keys of :data:`RANKED_TOGETHER` on which any of ``others`` differs from ``run``."""
    differ = {key for other in others for key in keys_differing(other, run)}
    return [key for key in RANKED_TOGETHER if key in differ]


def reference_run(runs: list):
    """The run whose data set is ranked: the newest training run. With ``--all`` the newest run may be an evaluation
    (``pipeline-eval <run> data.test_path=...``), on a test file no training run was on and without the validation
    metrics ranked on; the newest run when all are evaluations."""
    return next((run for run in runs if run.data.tags.get("run_kind") != "evaluation"), runs[0])


def same_data(runs: list) -> tuple[list, int]:
    """The runs on the data of the newest training run, and how many were left out."""
    if not runs:
        return runs, 0
    reference = reference_run(runs)
    kept = [run for run in runs if not keys_differing(run, reference)]
    return kept, len(runs) - len(kept)


def _most_common(values) -> Optional[str]:
    counted = Counter(v for v in values if v)
    return counted.most_common(1)[0][0] if counted else None


HIGHER_IS_BETTER = ("acc", "f1", "auroc", "ap", "r2")


def direction(metric: str, monitor: str, task_mode: str) -> str:
    """The task's mode for its own monitored metric (val or test); otherwise by the metric's name."""
    if metric.replace("test/", "val/", 1).removesuffix("_best") == monitor:
        return task_mode
    name = metric.rsplit("/", 1)[-1].removesuffix("_best")
    for suffix in INTERVAL_SUFFIXES:  # an interval's bound: as its metric
        name = name.removesuffix(suffix)
    return "max" if name in HIGHER_IS_BETTER else "min"


def rank(runs: list, experiment_name: str, metric: Optional[str] = None, top: Optional[int] = None,
         reference=None) -> Ranking:
    """``reference``: the run whose data set the runs are on (see :func:`same_data`), named where none has the metric."""
    if not runs:
        raise CompareError(f"experiment '{experiment_name}' has no finished runs")
    monitor = _most_common(r.data.params.get("task.monitor") for r in runs) or "val/loss"
    mode = _most_common(r.data.params.get("task.mode") for r in runs) or "min"
    metric = metric or f"{monitor}_best"
    known = sorted({key for r in runs for key in r.data.metrics})
    if metric not in known:
        if (metric.startswith("val/") and reference is not None
                and reference.data.params.get("data.val_fraction") in ("0", "0.0")):
            test = metric.replace("val/", "test/", 1).removesuffix("_best")
            test = test if test in known else next((k for k in known if k.startswith("test/")), "test/<metric>")
            raise CompareError(
                f"no run ranked has the metric '{metric}': the newest training run, "
                f"{reference.info.run_name or reference.info.run_id}, trained with data.val_fraction=0 (no validation "
                f"split, so no validation metrics), and only the runs on its data ({data_identity(reference)}, "
                f"data.val_fraction=0) are ranked; rank them by a test metric (--by {test}), or rank the runs with a "
                "validation split too with --all-data")
        raise CompareError(f"no run of '{experiment_name}' has the metric '{metric}'; metrics: {', '.join(known)}")
    mode = direction(metric, monitor, mode)

    def sort_key(run):
        value = run.data.metrics.get(metric)
        if value is None or math.isnan(value):
            return (1, 0.0)
        return (0, value if mode == "min" else -value)

    ordered = sorted(runs, key=sort_key)[:top]
    test_metrics = sorted({k for r in ordered for k in r.data.metrics
                           if k.startswith("test/") and not k.endswith(INTERVAL_SUFFIXES)} - {metric})
    shown_metrics = [metric] + test_metrics
    with_bounds = [name for name in shown_metrics if any(name + INTERVAL_SUFFIXES[0] in r.data.metrics for r in ordered)]
    # runs of sweeps: the study each belongs to (trials of two sweeps, or a sweep's and single runs, ranked together)
    studies = any("sweep.study_name" in r.data.tags for r in ordered)
    lead = ["rank", "run", "run_id", "status"] + (["study"] if studies else [])
    header = lead + [column for column, _ in KEY_PARAMS if column != "data"] + ["data"] + shown_metrics
    csv_header = header[: len(header) - len(shown_metrics)]
    csv_header.insert(csv_header.index("epochs") + 1, "max_epochs")
    for name in shown_metrics:  # each column once: --by test/acc_ci_low is also test/acc's bound
        csv_header += [column for column in [name, *([name + s for s in INTERVAL_SUFFIXES] if name in with_bounds else [])]
                       if column not in csv_header]
    rows, csv_rows = [], []
    for position, run in enumerate(ordered, start=1):
        # a pruned trial ended FINISHED in MLflow: its state says more; an interrupted one is Optuna's FAIL, KILLED here
        status = "PRUNED" if run.data.tags.get("sweep.state") == "PRUNED" else run.info.status
        if run.data.tags.get("run_kind") == "evaluation":
            status = "EVALUATION"
        rows.append([str(position), run.info.run_name or "", run.info.run_id, status]
                    + ([run.data.tags.get("sweep.study_name", "")] if studies else [])
                    + [_key_param(run, column, key) for column, key in KEY_PARAMS if column != "data"]
                    + [data_identity(run)])
        metrics = run.data.metrics
        csv_row = rows[-1][:len(lead)] + _csv_key_params(run) + [data_identity(run)]
        csv_rows.append(csv_row + [_exact(metrics.get(key)) for key in csv_header[len(csv_row):]])
        rows[-1] += [_with_interval(metrics, name) for name in shown_metrics]
    return Ranking(experiment_name, metric, mode, monitor, header, rows, ordered, csv_header, csv_rows)


INTERVAL_SUFFIXES = ("_ci_low", "_ci_high")  # a test metric's 95 % bootstrap interval (task.test_intervals)


def _with_interval(metrics: dict, name: str) -> str:
    """The metric's value, followed by its interval in brackets where the run logged one."""
    low, high = (metrics.get(name + suffix) for suffix in INTERVAL_SUFFIXES)
    value = _number(metrics.get(name))
    return f"{value} [{_number(low)}, {_number(high)}]" if value and low is not None and high is not None else value


def _number(value) -> str:
    """A metric or numeric param to SIGNIFICANT_DIGITS significant digits; other text as it is."""
    if value is None or value == "":
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return value  # integers (epochs, seed) as written
    return f"{number:.{SIGNIFICANT_DIGITS}g}"


def _exact(value) -> str:
    """A metric as compare.csv holds it: every digit MLflow stored (the shortest text that reads back as the same
    float), so a spreadsheet sorts and subtracts what the run logged, not the table's rounding."""
    return "" if value is None else repr(float(value))


def as_text(ranking: Ranking) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(ranking.header, *ranking.rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [ranking.header, *ranking.rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def as_markdown(ranking: Ranking) -> str:
    direction = "lower" if ranking.mode == "min" else "higher"
    lines = [f"# Runs of experiment `{ranking.experiment}`, sorted by `{ranking.metric}` ({direction} is better)", "",
             "| " + " | ".join(ranking.header) + " |", "|" + "---|" * len(ranking.header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in ranking.rows]
    return "\n".join(lines) + "\n"


def write_csv(ranking: Ranking, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ranking.csv_header)
        writer.writerows(ranking.csv_rows)


def plot_curves(client, ranking: Ranking, path: Path, count: int) -> Path:
    from pipeline.plots import overlay_curves

    curves = {}
    for run in ranking.runs[:count]:
        history = client.get_metric_history(run.info.run_id, ranking.monitor)
        curves[f"{run.info.run_name} ({_number(run.data.metrics.get(ranking.metric))})"] = [(m.step, m.value) for m in history]
    return overlay_curves(curves, ranking.monitor, path)


# ----- two runs on the same test rows --------------------------------------------------------------------------
PAIRED_REDRAWS = 1000


def paired_text(client, first: str, second: str, resamples: int = PAIRED_REDRAWS) -> str:
    """Two runs' test predictions (``predictions/test.csv``) on the same rows, redrawn together: per test metric
    both values, the difference with its 95 % interval, and the share of redraws where the first scores higher."""
    from pipeline.tasks import intervals

    from pipeline.tracking.run import digest_kind

    runs = [_run(client, run_id) for run_id in (first, second)]
    digests = [_test_digest(run) for run in runs]
    # digests of the rows drawn are compared with their like only: a run logged before them digested its
    # preprocessed inputs (the predictions' targets are compared below, whatever the digests)
    if None not in digests and digests[0] != digests[1] and digest_kind(runs[0]) == digest_kind(runs[1]):
        raise CompareError(f"the two runs were tested on different rows (test split digests {digests[0]} and "
                           f"{digests[1]}); a paired comparison needs the same test rows: the same data, split and seed")
    frames = [_predictions(client, run) for run in runs]
    if len(frames[0]) != len(frames[1]) or not (frames[0]["target"].astype(str) == frames[1]["target"].astype(str)).all():
        raise CompareError("the two runs' predictions/test.csv hold different test rows (their targets differ); a "
                           "paired comparison needs the same test rows: the same data, split and seed")
    columns = [[c for c in frame.columns if c.startswith("probability_")] for frame in frames]
    if columns[0] != columns[1]:
        raise CompareError(f"the two runs predict different classes ({', '.join(columns[0]) or 'values'} against "
                           f"{', '.join(columns[1]) or 'values'})")
    positives = [run.data.tags.get("positive_class") for run in runs]  # the class binary f1 and ap are of
    if len(columns[0]) == 2 and positives[0] != positives[1] and None not in positives:
        raise CompareError(f"the two runs score f1 and ap of different classes (task.positive_class: {positives[0]} "
                           f"and {positives[1]}); a paired comparison needs the same positive class")
    weighted = [_weighted(frame, names, positive) for frame, names, positive in zip(frames, columns, positives)]
    result = intervals.paired(*weighted, len(frames[0]), resamples)
    names = [run.info.run_name or run.info.run_id for run in runs]
    def cell(value: float, sign: str = "") -> str:  # 4 decimals; an error in dollars squared (3.0e9) in 7 digits
        return f"{value:{sign}.4f}" if abs(value) < 1e5 else f"{value:{sign}.7g}"

    cells = {metric: (cell(a), cell(b), f"{cell(a - b, '+')} [{cell(low, '+')}, {cell(high, '+')}]")
             for metric, (a, b, low, high, _, _) in result.items()}
    width = max([10, *(len(c) + 2 for a, b, _ in cells.values() for c in (a, b))])
    spread = max([34, *(len(d) + 3 for _, _, d in cells.values())])
    lines = [f"A = {names[0]} ({runs[0].info.run_id}), B = {names[1]} ({runs[1].info.run_id}): {len(frames[0])} test "
             f"rows, {resamples} paired redraws", "",
             f"{'metric':<8}{'A':>{width}}{'B':>{width}}   {'A - B [95 % interval]':<{spread}}"
             f"{'redraws where A is better':>26}"]
    for metric, (a, b, low, high, higher, lower) in result.items():
        if metric in HIGHER_IS_BETTER:
            better, verdict = higher, "A" if low > 0 else "B" if high < 0 else "neither"
        else:  # an error: lower is better
            better, verdict = lower, "A" if high < 0 else "B" if low > 0 else "neither"
        shown_a, shown_b, difference = cells[metric]
        lines.append(f"{metric:<8}{shown_a:>{width}}{shown_b:>{width}}   {difference:<{spread}}"
                     f"{better:>25.1%}   better: {verdict}")
    lines += ["", "better: the run whose difference interval excludes 0; 'neither': these test rows cannot tell the two "
              "apart (ties count for neither run)"]
    return "\n".join(lines)


def _run(client, run_id: str):
    from pipeline.cli.rerun import deleted_run

    try:
        run = client.get_run(run_id)
    except Exception:
        raise CompareError(f"no run {run_id!r} in the store") from None
    deleted = deleted_run(run, client.tracking_uri)
    if deleted:
        raise CompareError(deleted)
    return run


def _test_digest(run) -> Optional[str]:
    for dataset_input in run.inputs.dataset_inputs:
        if any(tag.key == "mlflow.data.context" and tag.value == "testing" for tag in dataset_input.tags):
            return dataset_input.dataset.digest
    return None


def _predictions(client, run):
    import tempfile

    import pandas as pd

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run.info.run_id, "predictions/test.csv", folder)
        except Exception:
            from pipeline.cli.rerun import unfinished_run

            unfinished = unfinished_run(run, "its test predictions (predictions/test.csv)")
            if unfinished:
                raise CompareError(unfinished) from None
            if run.data.tags.get("sweep.role") == "trial":
                raise CompareError(f"run {run.info.run_id} is trial {run.data.tags.get('sweep.trial_number', '?')} of the "
                                   f"sweep {run.data.tags.get('sweep.study_name', '?')!r}: a trial is not tested (the "
                                   "sweep selects by validation) and logs no predictions/test.csv; compare the sweep's "
                                   "best run (tag best=true) with another tested run") from None
            raise CompareError(f"run {run.info.run_id} logged no predictions/test.csv (a run with test=false or "
                               "logger.mlflow.log_predictions=false, or from before runs logged them); "
                               f"pipeline-eval {run.info.run_id} tests it again and logs them") from None
        return pd.read_csv(path, keep_default_na=False)


def _weighted(frame, probability_columns: list[str], positive: Optional[str] = None):
    """The test metrics of one run's predictions as a function of row weights (``tasks.intervals``); binary f1 and
    ap of the run's positive class (its tag ``positive_class``; the second class where it has none)."""
    import numpy as np

    from pipeline.tasks import intervals

    if not probability_columns:
        return intervals.regression(frame["prediction"].to_numpy(np.float64), frame["target"].to_numpy(np.float64))
    classes = [c.removeprefix("probability_") for c in probability_columns]
    index = {name: k for k, name in enumerate(classes)}
    targets = np.asarray([index[str(t)] for t in frame["target"]], dtype=np.int64)
    probabilities = frame[probability_columns].to_numpy(np.float64)
    if len(classes) == 2:
        return intervals.binary(probabilities[:, 1], targets, positive_class=index.get(str(positive), 1))
    return intervals.multiclass(probabilities, targets, len(classes))


def main(argv: Optional[list[str]] = None) -> int:
    from pipeline.cli.errors import closed_stdout_ignored
    from pipeline.sqlite import sqlite_path
    from pipeline.tracking.run import StoreUnusable, check_store_to_read, open_client

    closed_stdout_ignored()  # pipeline-... | head: a closed stdout ends no run FAILED
    args = parse_args(argv)
    try:
        check_store_to_read(args.tracking_uri)
    except StoreUnusable as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    database = sqlite_path(args.tracking_uri)
    if database is not None and not database.exists():
        print(f"Error: no MLflow store at {database}; train a run first (pipeline-train)", file=sys.stderr)
        return 2
    if args.paired:
        try:
            print(paired_text(open_client(args.tracking_uri), *args.paired))
        except CompareError as error:
            print(f"Error: {error}", file=sys.stderr)
            return 2
        return 0
    try:
        client = open_client(args.tracking_uri)
        experiment = pick_experiment(client, args.experiment)
        runs = finished_runs(client, experiment, include_all=args.all)
        left_out, differ, reference = 0, [], None
        if not args.all_data and runs:
            reference = reference_run(runs)
            differ = differing_keys(reference, [run for run in runs if keys_differing(run, reference)])
            runs, left_out = same_data(runs)
        ranking = rank(runs, experiment.name, args.metric, args.top, reference)
    except CompareError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    output = args.output or Path.cwd() / "outputs" / "compare" / experiment.name
    output.mkdir(parents=True, exist_ok=True)
    direction = "lower" if ranking.mode == "min" else "higher"
    eligible = len(runs)  # --top shows the best of them
    what = ("run" if eligible == 1 else "runs") if args.all else ("finished run" if eligible == 1 else "finished runs")
    counted = f"{eligible} {what}" if len(ranking.rows) == eligible else f"the best {len(ranking.rows)} of {eligible} {what}"
    # the data sets of the runs ranked, which the line counts ("the best 2 of 5 finished runs on ..."), not of the rows
    # --top shows: the best two on one data set read "of 5 finished runs on wine" over runs on two; told apart as the
    # ranking tells them (two files of one name in two folders are two data sets)
    data_sets = {data_key(run): data_identity(run) for run in runs}
    on = (next(iter(data_sets.values())) if len(data_sets) == 1
          else f"{len(data_sets)} data sets (--all-data: ranked together)")
    test = ("ranked on a test metric, so the test rows choose the run" if ranking.metric.startswith("test/")
            else "test metrics are shown, not ranked on")
    print(f"Experiment '{ranking.experiment}': {counted} on {on} "
          f"by {ranking.metric} ({direction} is better; {test})")
    without = [run for run in ranking.runs if _number(run.data.metrics.get(ranking.metric)) in ("", "nan")]
    if without:
        tasks = Counter(run.data.params.get("task", "?") for run in ranking.runs)
        other = [run for run in without if run.data.params.get("task") != tasks.most_common(1)[0][0]]
        print(f"({len(without)} {'run' if len(without) == 1 else 'runs'} without {ranking.metric} ranked last"
              + (f", {len(other)} of another task ({', '.join(sorted({r.data.params.get('task', '?') for r in other}))})"
                 if other else "") + ")")
    positives = Counter(run.data.tags["positive_class"] for run in ranking.runs if run.data.tags.get("positive_class"))
    if len(positives) > 1:  # --all-data: f1 and ap of one class beside those of another, in one column
        print(f"(f1 and ap are of different classes here (task.positive_class): "
              f"{', '.join(f'{c} in {n} run' + ('s' if n > 1 else '') for c, n in sorted(positives.items()))}; "
              "compare them within a class)")
    if left_out:
        runs_word, they, them = ("run", "it differs", "it") if left_out == 1 else ("runs", "they differ", "them")
        print(f"({left_out} {runs_word} on other data left out: {they} in {', '.join(differ)}; "
              f"--all-data ranks {them} too)")
    print()
    print(as_text(ranking))
    unshown = params_without_a_column(ranking.runs)
    repeats = repeats_summary(ranking)
    for line in repeats:
        print(line)
    folds_left_out = differ == ["data.fold"]
    if folds_left_out:
        print("\n(the other folds of the cross-validation are left out as other test rows: --all-data ranks them "
              "with these and gives their mean ± std)")
    other_rows = other_contents(ranking.runs)
    notes = [*repeats, *other_rows]
    if unshown:  # a model of one's own's width, a searched batch size: rows that look alike are not
        print("\n(also set otherwise among these runs, without a column: " + "; ".join(
            f"{key} ({', '.join(values[:4])}{', ...' if len(values) > 4 else ''})" for key, values in unshown[:6])
              + (f"; and {len(unshown) - 6} more, in compare.md" if len(unshown) > 6 else "") + ")")
        notes.append("\n(also set otherwise among these runs, without a column: " + "; ".join(
            f"{key} ({', '.join(values)})" for key, values in unshown) + ")")
    for line in other_rows:
        print(line)
    markdown = as_markdown(ranking)
    if notes:  # the notes printed, with every setting that differs: the file stood alone without them
        markdown += "\n" + "\n".join(line.strip().removeprefix("(").removesuffix(")") + "\n" for line in notes)
    (output / "compare.md").write_text(markdown)
    write_csv(ranking, output / "compare.csv")
    written = [output / "compare.md", output / "compare.csv"]
    if args.plot:
        written.append(plot_curves(client, ranking, output / "val_curves.png", args.top or DEFAULT_PLOTTED_RUNS))
    print("\nWritten: " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
