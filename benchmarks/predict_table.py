"""What ``pipeline-predict`` costs on a big table, and the logged model's ``mlflow.pyfunc`` ``predict``: a generated
table shaped like a tester's (12 float columns, 4 string categories of 20 levels, a True/False flag, an integer
column of 5 values, an ISO date, a pos/neg label), a model trained on its first rows (1 epoch), then

* ``pipeline-predict <run id> --input table.csv --output out.csv``, whole command wall time (start-up included),
  ``--repeats`` times, the median reported with rows/s;
* ``mlflow.pyfunc.load_model(...).predict(frame)`` on the first ``--pyfunc-rows`` rows read with ``pd.read_csv``
  (the load not timed).

``--baseline-src DIR`` (e.g. a worktree of an older commit's ``src``) trains and predicts with that code too, in
alternation with this checkout's, and asserts that both wrote the same predictions, byte for byte: a logged model
carries its adapter's and its pyfunc's code, so each side predicts with a model it logged itself (training is
seeded: the same weights).

    .venv/bin/python benchmarks/predict_table.py --rows 200000 --baseline-src /path/to/old/src
    .venv/bin/python benchmarks/predict_table.py --smoke
"""
from __future__ import annotations

import argparse
import filecmp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PROJECT_ROOT, machine, markdown_table, write_results

PYFUNC = """
import sys, time, pandas as pd, mlflow, mlflow.pyfunc
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(f"runs:/{sys.argv[2]}/model")
frame = pd.read_csv(sys.argv[3], nrows=int(sys.argv[4]))
started = time.perf_counter()
answers = model.predict(frame)
print("seconds", time.perf_counter() - started)
answers.to_csv(sys.argv[5], index=False)
"""


def make_table(path: Path, rows: int, seed: int) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.normal(size=rows).round(6) for i in range(12)}
    for j in range(4):
        columns[f"c{j}"] = np.array([f"lvl{j}_{k}" for k in range(20)])[rng.integers(0, 20, rows)]
    columns["flag"] = np.where(rng.random(rows) < 0.5, "True", "False")
    columns["k"] = rng.integers(0, 5, rows)
    columns["date"] = (np.datetime64("2015-01-01") + rng.integers(0, 3000, rows).astype("timedelta64[D]")).astype(str)
    score = columns["x0"] + (columns["c0"] == "lvl0_3") + rng.normal(size=rows) * 0.5
    columns["y"] = np.where(score > 0, "pos", "neg")
    pd.DataFrame(columns).to_csv(path, index=False)


def environment(src: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=src, OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    return env


def train(src: str, work: Path, table: Path, name: str) -> tuple[str, str]:
    """(tracking URI, run id) of a model trained with the code in ``src``."""
    store = work / f"mlruns_{name}"
    result = subprocess.run([sys.executable, "-m", "pipeline.cli.train", "task=classification", "data=csv",
                             f"data.path={table}", "data.target=y", "trainer.max_epochs=1", "data.batch_size=512",
                             f"paths.mlruns_dir={store}", f"hydra.run.dir={work / ('run_' + name)}"],
                            cwd=work, env=environment(src), capture_output=True, text=True, timeout=1800)
    found = re.search(r"MLflow run \S+ \(([0-9a-f]{32})\) in experiment .* at (\S+)", result.stdout + result.stderr)
    assert result.returncode == 0 and found, (result.stdout + result.stderr)[-3000:]
    return found.group(2), found.group(1)


def predict(src: str, work: Path, uri: str, run_id: str, table: Path, output: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pipeline.cli.predict", run_id, "--input", str(table), "--output",
                             str(output), "--tracking-uri", uri, "--no-progress"],
                            cwd=work, env=environment(src), capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return seconds


def pyfunc_predict(src: str, work: Path, uri: str, run_id: str, table: Path, rows: int, output: Path) -> float:
    result = subprocess.run([sys.executable, "-c", PYFUNC, uri, run_id, str(table), str(rows), str(output)],
                            cwd=work, env=environment(src), capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return float(re.search(r"^seconds (\S+)$", result.stdout, re.M).group(1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the table predicted on")
    parser.add_argument("--train-rows", type=int, default=20_000, help="rows of the table trained on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pyfunc-rows", type=int, default=20_000)
    parser.add_argument("--baseline-src", default=None, help="another checkout's src folder to compare with")
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, one repeat")
    parser.add_argument("--output", default="predict_table")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.train_rows, args.repeats, args.pyfunc_rows = 2_000, 1_000, 1, 500
        args.output += "_smoke"
    sources = {"this checkout": str(PROJECT_ROOT / "src")}
    if args.baseline_src:
        sources = {"baseline": str(Path(args.baseline_src).resolve()), **sources}
    with tempfile.TemporaryDirectory(prefix="predict_table_") as folder:
        work = Path(folder)
        table, training = work / "table.csv", work / "train.csv"
        make_table(table, args.rows, seed=0)
        make_table(training, args.train_rows, seed=1)
        models = {label: train(src, work, training, str(i)) for i, (label, src) in enumerate(sources.items())}
        seconds = {label: [] for label in sources}
        for _ in range(args.repeats):
            for i, (label, src) in enumerate(sources.items()):  # alternating: the same machine load for both
                seconds[label].append(predict(src, work, *models[label], table, work / f"out_{i}.csv"))
        pyfunc = {label: pyfunc_predict(src, work, *models[label], table, args.pyfunc_rows, work / f"pyfunc_{i}.csv")
                  for i, (label, src) in enumerate(sources.items())}
        if len(sources) == 2:  # the same predictions, bit for bit
            assert filecmp.cmp(work / "out_0.csv", work / "out_1.csv", shallow=False), "pipeline-predict differs"
            assert filecmp.cmp(work / "pyfunc_0.csv", work / "pyfunc_1.csv", shallow=False), "pyfunc differs"
    results, rows = {}, []
    for label in sources:
        middle = statistics.median(seconds[label])
        results[label] = {"predict_s": seconds[label], "median_s": middle, "pyfunc_s": pyfunc[label]}
        rows.append([label, f"{middle:.2f}", f"{args.rows / middle:,.0f}", f"{pyfunc[label]:.2f}",
                     f"{args.pyfunc_rows / pyfunc[label]:,.0f}"])
    print(markdown_table(["code", f"pipeline-predict {args.rows:,} rows: median s", "rows/s",
                          f"pyfunc predict {args.pyfunc_rows:,} rows: s", "rows/s"], rows))
    if len(sources) == 2:
        before, after = (results[label]["median_s"] for label in sources)
        print(f"pipeline-predict {before / after:.1f}x faster; pyfunc predict "
              f"{pyfunc['baseline'] / pyfunc['this checkout']:.1f}x; the same predictions")
    write_results(args.output, {"command": " ".join(sys.argv), "rows": args.rows, "train_rows": args.train_rows,
                                "pyfunc_rows": args.pyfunc_rows, "machine": machine(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
