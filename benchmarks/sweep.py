"""Benchmarks of the Optuna sweeper, through the real CLI (``pipeline-train -m hparams_search=...``).

1. Pruning: the same sweep with hyperband vs no pruner, several seeds: epochs trained and best value.
2. Parallel: trials per minute with 1 vs 2 workers (n_jobs), from the trials' own start/end times.
3. Overhead per trial: a trial's wall time minus the time spent in ``train(cfg)`` (composing the
   config, Hydra's job set-up, sampling, storage writes), plus the gap between two trials of one worker.
4. ``--vs-plain``: the whole sweep against a hand-written Optuna + PyTorch script
   (``benchmarks/plain_sweep.py``: the same search space, MLP, epochs, TPE and Hyperband settings and torch
   threads), each side a fresh process timed from start to exit, alternating which goes first, for each
   number of trials. The pipeline runs with its default MLflow logging into a store that exists (created
   once before the first pair, as after a researcher's first run).

    python benchmarks/sweep.py            # sections 1-3 (minutes; run it on a quiet machine)
    python benchmarks/sweep.py --vs-plain --trials 20 100 --pairs 3 [--data adult]
    python benchmarks/sweep.py --smoke    # a few tiny sweeps: checks that the script works (CI)

Prints a Markdown report (and writes it to --out).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

PROJECT_ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_sweep(workdir: Path, name: str, overrides: list[str]) -> tuple[list, float]:
    """One sweep in a fresh process; returns its trials and the command's wall time."""
    storage = f"sqlite:///{workdir}/{name}.db"
    command = [sys.executable, "-m", "pipeline.cli.train", "-m", *overrides, "logger=none",
               f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={name}",
               f"hydra.sweep.dir={workdir / name}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sweep {name} failed:\n{result.stderr[-3000:]}")
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False), wall


def epochs_trained(trial) -> int:
    return len(trial.intermediate_values)


def best_value(trials) -> float:
    return min(t.value for t in trials if t.state == TrialState.COMPLETE)


def trials_per_minute(trials) -> float:
    """Throughput of the trial phase: trials / (last end - first start); process start-up excluded."""
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    return len(trials) / ((end - start).total_seconds() / 60)


def steady_trials_per_minute(trials) -> float:
    """Trials per minute once every worker runs: from the moment the last worker started its first
    trial (a spawned worker first imports torch/Lightning for a few seconds) to the last trial's end."""
    first_start_by_worker: dict[str, object] = {}
    for trial in trials:
        worker = trial.user_attrs["worker"]
        first_start_by_worker[worker] = min(first_start_by_worker.get(worker, trial.datetime_start), trial.datetime_start)
    window_start = max(first_start_by_worker.values())
    inside = [t for t in trials if t.datetime_start >= window_start]
    end = max(t.datetime_complete for t in inside)
    return len(inside) / ((end - window_start).total_seconds() / 60)


def pruning(workdir: Path, seeds: list[int], n_trials: int, epochs: int, base: list[str]) -> list[str]:
    lines = ["| seed | pruner | trials (pruned) | epochs trained | best objective | sweep wall (s) |",
             "|---|---|---|---|---|---|"]
    totals = {"hyperband": [], "none": []}
    bests = {"hyperband": [], "none": []}
    for seed in seeds:
        for pruner in ("none", "hyperband"):
            trials, wall = run_sweep(workdir, f"prune_{pruner}_{seed}", [
                *base, f"trainer.max_epochs={epochs}", f"hydra.sweeper.n_trials={n_trials}",
                f"hydra.sweeper.pruner={pruner}", f"hydra.sweeper.seed={seed}"])
            epochs_sum = sum(epochs_trained(t) for t in trials)
            pruned = sum(t.state == TrialState.PRUNED for t in trials)
            totals[pruner].append(epochs_sum)
            bests[pruner].append(best_value(trials))
            lines.append(f"| {seed} | {pruner} | {len(trials)} ({pruned}) | {epochs_sum} | {best_value(trials):.3f} | {wall:.0f} |")
    saved = 1 - sum(totals["hyperband"]) / sum(totals["none"])
    lines.append("")
    lines.append(f"Hyperband trained **{saved:.0%} fewer epochs** than no pruning; mean best objective "
                 f"{statistics.mean(bests['hyperband']):.3f} (hyperband) vs {statistics.mean(bests['none']):.3f} "
                 f"(none), spread across seeds {spread(bests['none']):.3f} (none).")
    return lines


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def parallel(workdir: Path, n_trials: int, epochs: int, base: list[str]) -> list[str]:
    lines = ["| workers | trials | first trial start to last trial end (s) | trials/min | trials/min once all workers run | command wall (s) |",
             "|---|---|---|---|---|---|"]
    rates, steady = {}, {}
    for jobs in (1, 2):
        trials, wall = run_sweep(workdir, f"parallel_{jobs}", [
            *base, f"trainer.max_epochs={epochs}", f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.pruner=none",
            f"hydra.sweeper.n_jobs={jobs}"])
        rates[jobs], steady[jobs] = trials_per_minute(trials), steady_trials_per_minute(trials)
        workers = len({t.user_attrs["worker"] for t in trials})
        span = len(trials) / rates[jobs] * 60
        lines.append(f"| {jobs} ({workers} ran trials) | {len(trials)} | {span:.1f} | {rates[jobs]:.1f} | "
                     f"{steady[jobs]:.1f} | {wall:.0f} |")
    lines.append("")
    lines.append(f"2 workers: **{steady[2] / steady[1]:.2f}x** the trials per minute of 1 worker once both run "
                 f"({rates[2] / rates[1]:.2f}x counting the second worker's start-up).")
    return lines


def overhead(workdir: Path, n_trials: int, base: list[str]) -> list[str]:
    trials, _ = run_sweep(workdir, "overhead", [*base, "trainer.max_epochs=1", f"hydra.sweeper.n_trials={n_trials}",
                                               "hydra.sweeper.pruner=none"])
    trials = sorted(trials, key=lambda t: t.number)
    later = trials[1:]  # the first trial also pays for importing torch/Lightning in the worker
    inside = [t.user_attrs["trial_seconds"] - t.user_attrs["train_seconds"] for t in later]
    gaps = [(b.datetime_start - a.datetime_complete).total_seconds() for a, b in zip(trials, trials[1:])]
    train = [t.user_attrs["train_seconds"] for t in later]
    return [
        "| per trial (trials 1..n) | mean (s) | max (s) |", "|---|---|---|",
        f"| sweep work inside the trial (compose, Hydra job set-up, sampling, storage) | {statistics.mean(inside):.3f} | {max(inside):.3f} |",
        f"| between two trials (tell, stale check, claim) | {statistics.mean(gaps):.3f} | {max(gaps):.3f} |",
        f"| **overhead total** | **{statistics.mean(inside) + statistics.mean(gaps):.3f}** | |",
        f"| training itself: `train(cfg)`, 1 epoch | {statistics.mean(train):.3f} | {max(train):.3f} |",
    ]


# ----- the whole sweep against a hand-written script --------------------------------------------------------
def timed(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{result.stderr[-3000:]}")
    return wall, result


def vs_plain(workdir: Path, trials: list[int], pairs: int, data: str, epochs: int, threads: int,
             extra: list[str]) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    mlruns = workdir / "mlruns"
    # the stores exist, as they do after a researcher's first sweep (creating MLflow's and Optuna's tables takes
    # seconds): the MLflow store and the default Optuna storage, <paths.mlruns_dir>/optuna/optuna.db
    subprocess.run([sys.executable, "-c", "import sys; from pipeline.tracking.run import open_client, "
                    "prepare_local_store; from pipeline.sweep.study import open_storage; "
                    "prepare_local_store(sys.argv[1]); open_client(sys.argv[1]); open_storage(sys.argv[2])",
                    f"sqlite:///{mlruns}/mlflow.db", f"sqlite:///{mlruns}/optuna/optuna.db"],
                   cwd=PROJECT_ROOT, check=True, env=env)
    plain = [sys.executable, "benchmarks/plain_sweep.py", "--data", data, "--epochs", str(epochs)]
    rows, measured = [], {"data": data, "epochs": epochs, "threads": threads, "by_trials": {}}
    for n_trials in trials:
        runs = []
        for pair in range(pairs):
            name = f"vs_plain_{n_trials}_{pair}"
            pipeline = [sys.executable, "-m", "pipeline.cli.train", "hparams_search=classification_optuna",
                        f"data={data}", f"trainer.max_epochs={epochs}", f"hydra.sweeper.n_trials={n_trials}",
                        f"paths.mlruns_dir={mlruns}", f"hydra.sweep.dir={workdir / name}",
                        f"hydra.sweeper.study_name={name}", *extra]
            order = ["pipeline", "plain"] if pair % 2 == 0 else ["plain", "pipeline"]
            walls, load = {}, os.getloadavg()[0]
            for side in order:
                walls[side], result = timed(pipeline if side == "pipeline" else [*plain, "--trials", str(n_trials)], env)
                if side == "pipeline":
                    finished = re.search(r"(\d+) of (\d+) trials finished \((\d+) complete, (\d+) pruned", result.stdout)
                    walls["pipeline_trials"] = finished.group(0) if finished else "?"
            runs.append({**walls, "first": order[0], "load_1min": load})
            ratio = walls["pipeline"] / walls["plain"]
            rows.append(f"| {n_trials} | {pair + 1} | {order[0]} | {walls['pipeline']:.1f} | {walls['plain']:.1f} | "
                        f"{ratio:.2f} | {load:.1f} |")
            print(rows[-1], flush=True)
        ratios = [r["pipeline"] / r["plain"] for r in runs]
        measured["by_trials"][n_trials] = {
            "runs": runs, "median_pipeline_s": statistics.median(r["pipeline"] for r in runs),
            "median_plain_s": statistics.median(r["plain"] for r in runs), "median_ratio": statistics.median(ratios)}
    lines = ["| trials | pair | first | pipeline wall (s) | plain wall (s) | ratio | load (1 min) |",
             "|---|---|---|---|---|---|---|", *rows, "",
             "| trials | median pipeline (s) | median plain (s) | median ratio |", "|---|---|---|---|"]
    for n_trials, summary in measured["by_trials"].items():
        lines.append(f"| {n_trials} | {summary['median_pipeline_s']:.1f} | {summary['median_plain_s']:.1f} | "
                     f"**{summary['median_ratio']:.2f}** |")
    return lines, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sweeps that only check the script runs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    parser.add_argument("--search", default="regression_optuna", help="the hparams_search config to sweep")
    parser.add_argument("--set", action="append", default=[], metavar="OVERRIDE",
                        help="an extra override for every sweep, e.g. hydra.sweeper.pruner_options.min_resource=2")
    parser.add_argument("--only", default="pruning,parallel,overhead",
                        help="comma-separated sections to run (the timing ones need a quiet machine)")
    parser.add_argument("--vs-plain", action="store_true",
                        help="only the whole sweep against benchmarks/plain_sweep.py (section 4)")
    parser.add_argument("--trials", type=int, nargs="+", default=[20, 100], help="--vs-plain: sweep sizes")
    parser.add_argument("--pairs", type=int, default=3, help="--vs-plain: alternating pairs per size")
    parser.add_argument("--data", default="breast_cancer", help="--vs-plain: breast_cancer or adult")
    parser.add_argument("--epochs", type=int, default=20, help="--vs-plain: epochs per trial")
    parser.add_argument("--threads", type=int, default=1, help="--vs-plain: torch threads of both sides")
    args = parser.parse_args()
    if args.vs_plain:
        if args.smoke:
            args.trials, args.pairs, args.epochs = [2], 1, 2
        with tempfile.TemporaryDirectory(prefix="sweep-vs-plain-") as tmp:
            lines, measured = vs_plain(Path(tmp), args.trials, args.pairs, args.data, args.epochs, args.threads,
                                       args.set)
        header = [f"### The whole sweep against a hand-written script{' (smoke run: numbers mean nothing)' if args.smoke else ''}",
                  "", f"`python benchmarks/sweep.py --vs-plain --trials {' '.join(map(str, args.trials))} --pairs "
                  f"{args.pairs} --data {args.data}` on {os.cpu_count()} cores; {args.epochs} epochs per trial, "
                  f"{args.threads} torch thread(s) on both sides.", ""]
        text = "\n".join(header + lines)
        print(text)
        results = Path(os.environ.get("BENCHMARK_RESULTS_DIR") or PROJECT_ROOT / "benchmarks" / "results")
        results.mkdir(parents=True, exist_ok=True)
        (results / f"sweep_vs_plain_{args.data}{'_smoke' if args.smoke else ''}.json").write_text(
            json.dumps({**measured, "command": " ".join(sys.argv)}, indent=2) + "\n")
        if args.out:
            args.out.write_text(text + "\n")
        return
    base = [f"hparams_search={args.search}", *args.set]
    if args.smoke:
        base += ["data.limit_rows=200"]
        seeds, prune_trials, prune_epochs, parallel_trials, parallel_epochs, overhead_trials = [0], 4, 3, 4, 2, 3
    else:
        seeds, prune_trials, prune_epochs, parallel_trials, parallel_epochs, overhead_trials = (
            list(range(args.seeds)), 30, 20, 40, 20, 12)
    load = os.getloadavg()[0]
    report = [f"### Sweep benchmarks{' (smoke run: numbers mean nothing)' if args.smoke else ''}", "",
              f"`python benchmarks/sweep.py{' --smoke' if args.smoke else ''}` on {os.cpu_count()} cores, "
              f"load average {load:.1f} at the start; search {args.search} (TPE){' ' + ' '.join(args.set) if args.set else ''}, "
              f"logger=none.", ""]
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        workdir = Path(tmp)
        sections = set(args.only.split(","))
        if "pruning" in sections:
            report += ["#### Pruning: hyperband vs none", "",
                       f"{prune_trials} trials of up to {prune_epochs} epochs per sweep.", ""]
            report += pruning(workdir, seeds, prune_trials, prune_epochs, base) + [""]
        if "parallel" in sections:
            report += ["#### Parallel workers", "", f"{parallel_trials} trials of {parallel_epochs} epochs, no pruning.", ""]
            report += parallel(workdir, parallel_trials, parallel_epochs, base) + [""]
        if "overhead" in sections:
            report += ["#### Sweep overhead per trial", ""]
            report += overhead(workdir, overhead_trials, base) + [""]
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
