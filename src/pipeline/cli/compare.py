"""``pipeline-compare [--experiment X] [--metric M] [--top N] [--plot] [--output DIR]``: the finished
runs of one experiment as a table, best first by the task's metric, with their key params and test
metrics. Printed, and written as Markdown and CSV; ``--plot`` adds one figure that overlays the
validation curves of the top runs."""
from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# (column, param key) of the params shown for every run
KEY_PARAMS = [
    ("task", "task"), ("data", "data"), ("model", "model"), ("optimizer", "optimizer"),
    ("lr", "optimizer.lr"), ("weight_decay", "optimizer.weight_decay"), ("dropout", "model.dropout"),
    ("epochs", "trainer.max_epochs"), ("seed", "seed"),
]
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
    rows: list[list[str]]
    runs: list  # mlflow Run objects, in table order


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    from pipeline.tracking.run import default_store

    uri, _ = default_store()
    parser = argparse.ArgumentParser(prog="pipeline-compare", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("--experiment", help="experiment name (default: the one with the most recent run)")
    parser.add_argument("--metric", help="sort by this metric (default: test/<the task's monitored metric>)")
    parser.add_argument("--top", type=int, default=None, help="show only the N best runs")
    parser.add_argument("--plot", action="store_true", help="also write val_curves.png: the validation curves of the top runs")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for compare.md, compare.csv and the plot (default: outputs/compare/<experiment>)")
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


def finished_runs(client, experiment) -> list:
    """Finished training runs (a sweep's parent run has no ``task`` param and is left out)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                                  max_results=1000, page_token=token)
        runs.extend(run for run in page if "task" in run.data.params)
        token = page.token
        if not token:
            return runs


def _most_common(values) -> Optional[str]:
    counted = Counter(v for v in values if v)
    return counted.most_common(1)[0][0] if counted else None


HIGHER_IS_BETTER = ("acc", "f1", "auroc", "r2")


def direction(metric: str, monitor: str, task_mode: str) -> str:
    """The task's mode for its own monitored metric (val or test); otherwise by the metric's name."""
    if metric.replace("test/", "val/", 1) == monitor:
        return task_mode
    return "max" if metric.rsplit("/", 1)[-1].removesuffix("_best") in HIGHER_IS_BETTER else "min"


def rank(runs: list, experiment_name: str, metric: Optional[str] = None, top: Optional[int] = None) -> Ranking:
    if not runs:
        raise CompareError(f"experiment '{experiment_name}' has no finished runs")
    monitor = _most_common(r.data.params.get("task.monitor") for r in runs) or "val/loss"
    mode = _most_common(r.data.params.get("task.mode") for r in runs) or "min"
    metric = metric or monitor.replace("val/", "test/", 1)
    known = sorted({key for r in runs for key in r.data.metrics})
    if metric not in known:
        raise CompareError(f"no run of '{experiment_name}' has the metric '{metric}'; metrics: {', '.join(known)}")
    mode = direction(metric, monitor, mode)

    def sort_key(run):
        value = run.data.metrics.get(metric)
        if value is None or math.isnan(value):
            return (1, 0.0)
        return (0, value if mode == "min" else -value)

    ordered = sorted(runs, key=sort_key)[:top]
    test_metrics = sorted({k for r in ordered for k in r.data.metrics if k.startswith("test/")})
    if metric not in test_metrics:
        test_metrics.insert(0, metric)
    header = ["rank", "run", "run_id"] + [column for column, _ in KEY_PARAMS] + test_metrics
    rows = []
    for position, run in enumerate(ordered, start=1):
        params = run.data.params
        rows.append([str(position), run.info.run_name or "", run.info.run_id]
                    + [params.get(key, "") for _, key in KEY_PARAMS]
                    + [_number(run.data.metrics.get(name)) for name in test_metrics])
    return Ranking(experiment_name, metric, mode, monitor, header, rows, ordered)


def _number(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"


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
        writer.writerow(ranking.header)
        writer.writerows(ranking.rows)


def plot_curves(client, ranking: Ranking, path: Path, count: int) -> Path:
    from pipeline.plots import overlay_curves

    curves = {}
    for run in ranking.runs[:count]:
        history = client.get_metric_history(run.info.run_id, ranking.monitor)
        curves[f"{run.info.run_name} ({_number(run.data.metrics.get(ranking.metric))})"] = [(m.step, m.value) for m in history]
    return overlay_curves(curves, ranking.monitor, path)


def main(argv: Optional[list[str]] = None) -> int:
    from pipeline.config import PROJECT_ROOT
    from pipeline.tracking.run import open_client, sqlite_path

    args = parse_args(argv)
    database = sqlite_path(args.tracking_uri)
    if database is not None and not database.exists():
        print(f"Error: no MLflow store at {database}; train a run first (pipeline-train)", file=sys.stderr)
        return 2
    try:
        client = open_client(args.tracking_uri)
        experiment = pick_experiment(client, args.experiment)
        ranking = rank(finished_runs(client, experiment), experiment.name, args.metric, args.top)
    except CompareError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    output = args.output or PROJECT_ROOT / "outputs" / "compare" / experiment.name
    output.mkdir(parents=True, exist_ok=True)
    direction = "lower" if ranking.mode == "min" else "higher"
    print(f"Experiment '{ranking.experiment}': {len(ranking.rows)} finished runs by {ranking.metric} ({direction} is better)\n")
    print(as_text(ranking))
    (output / "compare.md").write_text(as_markdown(ranking))
    write_csv(ranking, output / "compare.csv")
    written = [output / "compare.md", output / "compare.csv"]
    if args.plot:
        written.append(plot_curves(client, ranking, output / "val_curves.png", args.top or DEFAULT_PLOTTED_RUNS))
    print("\nWritten: " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
