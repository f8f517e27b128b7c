"""Benchmarks of the Optuna sweeper, through the real CLI (``pipeline-train -m hparams_search=...``).

1. Pruning: the same sweep with hyperband vs no pruner, several seeds: epochs trained and best value.
2. Parallel: trials per minute with 1 vs 2 workers (n_jobs), from the trials' own start/end times.
3. Overhead per trial: a trial's wall time minus the time spent in ``train(cfg)`` (composing the
   config, Hydra's job set-up, sampling, storage writes), plus the gap between two trials of one worker.

    python benchmarks/sweep.py            # full run (minutes; run it on a quiet machine)
    python benchmarks/sweep.py --smoke    # a few tiny sweeps: checks that the script works (CI)

Prints a Markdown report (and writes it to --out).
"""
from __future__ import annotations

import argparse
import os
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
    args = parser.parse_args()
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
