"""Peak memory of training on a large text corpus: in memory against streamed from disk.

Writes a generated GLUE-style ``train.tsv`` of N short rows (4-16 words drawn from a 5,000-word
Zipf vocabulary, a sentiment word deciding the label), then trains the default bag of words on it
through the real ``train(cfg)`` in a fresh process per setting, with ``data.in_memory=true`` (every
text encoded once into a (N, 64) tensor), ``false`` with the batches tokenised in the main process,
and ``false`` with 2 DataLoader workers. Training is cut to ``--steps`` steps (the memory a run
needs is reached once the data is indexed, split, the tokenizer trained and the loaders started).
Peak memory: the resident set of the training process (``ru_maxrss``), and the proportional set size
of the process tree (the process and its DataLoader workers, summed, sampled every 50 ms; a page a
forked worker shares with its parent counts once, split between them).

    .venv/bin/python benchmarks/text_streaming.py                       # 1M and 3M rows
    .venv/bin/python benchmarks/text_streaming.py --rows 1000000 --modes stream
    .venv/bin/python benchmarks/text_streaming.py --smoke               # 5,000 rows: checks that it runs
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PROJECT_ROOT, machine, markdown_table, write_results

MODES = {
    "memory": ["data.in_memory=true"],
    "stream": ["data.in_memory=false", "data.num_workers=0"],
    "stream_2_workers": ["data.in_memory=false", "data.num_workers=2"],
}
POSITIVE = ["great", "superb", "moving", "fine", "good"]
NEGATIVE = ["dull", "awful", "boring", "flat", "bad"]


def write_corpus(folder: Path, rows: int, seed: int = 0) -> Path:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(5000)])
    zipf = 1.0 / np.arange(1, 5001)
    zipf /= zipf.sum()
    path = folder / "train.tsv"
    with path.open("w", encoding="utf-8") as out:
        out.write("sentence\tlabel\n")
        for start in range(0, rows, 100_000):
            count = min(100_000, rows - start)
            lengths = generator.integers(4, 17, count)
            drawn = generator.choice(words, size=int(lengths.sum()), p=zipf)
            labels = generator.integers(0, 2, count)
            cuts = np.cumsum(lengths)[:-1]
            for tokens, label in zip(np.split(drawn, cuts), labels):
                sentiment = generator.choice(POSITIVE if label else NEGATIVE)
                out.write(f"{' '.join(tokens[:2])} {sentiment} {' '.join(tokens[2:])}\t{label}\n")
    return path


def child(corpus: Path, mode: str, steps: int, workdir: Path) -> None:
    """One training run (in its own process); prints a JSON line with its timings and memory."""
    import resource

    from common import compose_config, quiet_logs
    from pipeline.train import train

    quiet_logs()
    cfg = compose_config(["task=sentiment", "data=text_tsv", f"data.path={corpus}", "model=bow", "logger=none",
                          "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}",
                          "trainer.limit_val_batches=20", "trainer.limit_test_batches=20", *MODES[mode]], workdir)
    started = time.perf_counter()
    metrics = train(cfg)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps({"wall_s": time.perf_counter() - started, "peak_rss_mib": own,
                                  "largest_worker_peak_rss_mib": children,
                                  "test_acc": metrics.get("test/acc")}), flush=True)


def tree_pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` and all its descendants, in MiB (from /proc): resident memory with
    each page shared by k processes counted 1/k in each, so a forked worker's shared pages count once."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            with open(f"/proc/{current}/task/{current}/children") as children:
                stack += [int(c) for c in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def measure(corpus: Path, mode: str, steps: int, workdir: Path) -> dict:
    command = [sys.executable, __file__, "--child", str(corpus), "--mode", mode, "--steps", str(steps),
               "--workdir", str(workdir)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=PROJECT_ROOT)
    peak_tree = 0.0
    while process.poll() is None:
        peak_tree = max(peak_tree, tree_pss_mib(process.pid))
        time.sleep(0.05)
    stdout, stderr = process.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"{mode} on {corpus} failed ({process.returncode}):\n{stderr[-3000:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "peak_tree_pss_mib": peak_tree}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[1_000_000, 3_000_000])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--smoke", action="store_true", help="5,000 rows, 20 steps, in memory and with workers")
    parser.add_argument("--output", default="text_streaming")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.mode, args.steps, args.workdir)
        return 0
    if args.smoke:  # both ends: everything in memory, and streamed through worker processes
        args.rows, args.steps, args.modes = [5_000], 20, ["memory", "stream_2_workers"]
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-text-streaming-"))
    results = {"machine": machine(), "steps": args.steps, "runs": []}
    table = []
    try:
        for rows in args.rows:
            started = time.perf_counter()
            corpus = write_corpus(workdir / f"corpus-{rows}", rows).parent
            size_mib = (corpus / "train.tsv").stat().st_size / 2**20
            print(f"{rows:,} rows: {size_mib:.0f} MiB written in {time.perf_counter() - started:.0f} s", flush=True)
            for mode in args.modes:
                result = {"rows": rows, "file_mib": size_mib, "mode": mode, **measure(corpus, mode, args.steps, workdir)}
                results["runs"].append(result)
                write_results(args.output, results)
                print(f"  {mode}: peak RSS {result['peak_rss_mib']:,.0f} MiB (process + workers, PSS {result['peak_tree_pss_mib']:,.0f}"
                      f" MiB), {result['wall_s']:.0f} s", flush=True)
                table.append([f"{rows:,}", f"{size_mib:.0f} MiB", mode, f"{result['peak_rss_mib']:,.0f}",
                              f"{result['peak_tree_pss_mib']:,.0f}", f"{result['wall_s']:.0f} s"])
            shutil.rmtree(corpus, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(markdown_table(["rows", "train.tsv", "mode", "peak RSS, training process (MiB)",
                          "peak PSS, process + workers (MiB)", "wall (train(cfg))"], table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
