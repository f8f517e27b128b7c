"""torch's threads beside another busy process: the training step of a small MLP and of a small CNN with torch's
default thread count and with one thread, on a quiet machine and with a busy process beside (a Python loop
spinning, as the store-writer process was while it imported MLflow and torch.export's tracer in the first seconds
of a tracked run, BENCHMARKS.md section 10). Also whether the two thread counts give bitwise the same weights after the same steps (the
reason the pipeline does not change the count while a run trains).

Each measurement is a fresh process (``--child``) with the thread count set before any work; the conditions
alternate; medians of ``--repeats``.

    .venv/bin/python benchmarks/thread_contention.py
    .venv/bin/python benchmarks/thread_contention.py --env OMP_WAIT_POLICY=PASSIVE   # OpenMP's threads sleep at once
    .venv/bin/python benchmarks/thread_contention.py --smoke      # the MLP alone: four processes
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


MODELS = {  # name -> what it is
    "mlp": "the default MLP (30 → 64 → 64 → 1, ReLU), batch 64, Adam",
    "cnn": "two 3x3 convolutions (32, 64 channels) and max-pooling on 28x28 images, batch 128, Adam",
}


def child(model_name: str, threads: int, steps: int) -> dict:
    """Time ``steps`` training steps (after a warm-up) with ``threads`` torch threads; the weights' checksum."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if model_name == "mlp":
        model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
        x, y = torch.randn(64, 30), torch.rand(64, 1)
        loss_of = nn.functional.binary_cross_entropy_with_logits
    else:
        model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(64 * 7 * 7, 10))
        x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
        loss_of = nn.functional.cross_entropy
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = loss_of(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    warmup = max(2, steps // 10)
    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {"step_ms": seconds * 1000, "weights": hashlib.sha256(weights.numpy().tobytes()).hexdigest()[:16]}


def measure(model_name: str, threads: int, steps: int, busy: bool, env: dict) -> dict:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if spinner is not None:
            time.sleep(0.3)  # the spinner is running
        result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", model_name, str(threads),
                                 str(steps)], capture_output=True, text=True, check=True, env=env)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=0, help="timed steps per process (default: mlp 300, cnn 15)")
    parser.add_argument("--smoke", action="store_true", help="the MLP alone, a few steps, 1 repeat")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable of the measured processes, e.g. OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument("--output", default="thread_contention")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "THREADS", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return 0
    # here, not at the top: common imports Lightning, which each measured process (--child) has no use for
    from common import machine, markdown_table, write_results

    if args.smoke:
        args.repeats, args.output = 1, args.output + "_smoke"
    default_threads = os.cpu_count() or 1
    thread_counts = sorted({default_threads, 1}, reverse=True)
    results, table = {}, []
    env = dict(os.environ)
    for item in args.env:
        key, equals, value = item.partition("=")
        if not key or not equals:
            parser.error(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    for model_name in (["mlp"] if args.smoke else args.models):
        steps = args.steps or (3 if args.smoke else {"mlp": 300, "cnn": 15}[model_name])
        times: dict[str, list[float]] = {}
        weights: dict[int, set] = {t: set() for t in thread_counts}
        for _ in range(args.repeats):
            for busy in (False, True):
                for threads in thread_counts:
                    answer = measure(model_name, threads, steps, busy, env)
                    times.setdefault(f"{'busy' if busy else 'quiet'}/{threads}", []).append(answer["step_ms"])
                    weights[threads].add(answer["weights"])
        medians = {key: statistics.median(values) for key, values in times.items()}
        same = len(set().union(*weights.values())) == 1
        results[model_name] = {"what": MODELS[model_name], "steps": steps, "step_ms": times, "median_ms": medians,
                               "same_weights_across_thread_counts": same,
                               "reproducible_per_thread_count": all(len(w) == 1 for w in weights.values())}
        for busy in ("quiet", "busy"):
            table.append([model_name, busy] + [f"{medians[f'{busy}/{t}']:.2f}" for t in thread_counts]
                         + ["yes" if same else "no"])
    print(f"training step (ms), medians of {args.repeats}; {default_threads} cores; 'busy': a spinning process beside"
          + (f"; {' '.join(args.env)}" if args.env else ""))
    print(markdown_table(["model", "machine", *(f"{t} thread{'s' if t > 1 else ''}" for t in thread_counts),
                          "same weights"], table))
    write_results(args.output, {"command": " ".join(sys.argv), "repeats": args.repeats, "threads": thread_counts,
                                "env": args.env,
                                "machine": machine(), "models": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
