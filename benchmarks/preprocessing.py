"""What reading and preprocessing a real table costs: rows/s of reading, fitting and applying the
preprocessing on UCI Adult (``data=adult``: 32,561 training + 16,281 test rows, 8 string columns with
``?`` for missing), and the share of a whole Adult run's wall time spent on them.

* ``read``: both files parsed, typed and their labels read (``CsvData.load``);
* ``fit``: the preprocessing fitted on the training rows (medians, scales, category lists);
* ``transform``: every split turned into the model's tensor (train, validation and test rows).

Each is repeated ``--repeats`` times in this process and the median is reported. Then one full run of
``experiment=<--experiment>`` (``train(cfg)``, ``logger=none``) gives the share: (read + fit + transform) /
run wall time, measured inside that same run.

    PIPELINE_DATA_DIR=../shared/data .venv/bin/python benchmarks/preprocessing.py
    PIPELINE_DATA_DIR=../shared/data .venv/bin/python benchmarks/preprocessing.py --smoke
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import compose_config, machine, markdown_table, quiet_logs, train_with_clock, write_results


def time_preprocessing(cfg) -> dict[str, float]:
    """One pass of reading, fitting and applying, timed by the data module itself (seconds)."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    rows = {"read": len(datamodule.frame), "fit": len(datamodule.train_split),
            "transform": len(datamodule.train_split) + len(datamodule.val_split) + len(datamodule.test_split)}
    return {"read_s": datamodule.timings["read_s"], "fit_s": datamodule.timings["fit_s"],
            "transform_s": datamodule.timings["transform_s"], **{f"{k}_rows": v for k, v in rows.items()}}


def run_share(cfg) -> dict[str, float]:
    """A whole run, and the seconds its own data module spent reading and preprocessing."""
    import pipeline.data.tabular as tabular

    seen = []
    original = tabular.CsvData.load

    def recording_load(self):
        seen.append(self)
        return original(self)

    tabular.CsvData.load = recording_load
    try:
        started = time.perf_counter()
        clock, metrics = train_with_clock(cfg)
        wall = time.perf_counter() - started
    finally:
        tabular.CsvData.load = original
    timings = seen[0].timings
    spent = timings["read_s"] + timings["fit_s"] + timings["transform_s"]
    return {"wall_s": wall, "preprocessing_s": spent, "share": spent / wall, "epochs": len(clock.pipeline),
            **{k: v for k, v in metrics.items() if k.startswith("test/")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="adult", help="a conf/data option (default: adult)")
    parser.add_argument("--experiment", default="adult_resnet", help="the run whose time share is measured")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="OVERRIDE", help="extra config override")
    parser.add_argument("--smoke", action="store_true", help="2 repeats, a 1-epoch run on 2,000 rows")
    parser.add_argument("--output", default="preprocessing")
    args = parser.parse_args(argv)
    quiet_logs()
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-preprocessing-"))
    try:
        smoke = ["data.limit_rows=2000", "trainer.max_epochs=1"] if args.smoke else []
        cfg = compose_config([f"data={args.data}", "logger=none", *smoke, *args.set], workdir)
        passes = [time_preprocessing(cfg) for _ in range(2 if args.smoke else args.repeats)]
        table, record = [], {"machine": machine(), "data": args.data, "passes": passes}
        for step in ("read", "fit", "transform"):
            seconds = statistics.median(p[f"{step}_s"] for p in passes)
            rows = passes[0][f"{step}_rows"]
            record[step] = {"median_s": seconds, "rows": rows, "rows_per_s": rows / seconds}
            table.append([step, f"{rows:,}", f"{seconds * 1000:.1f} ms", f"{rows / seconds:,.0f}"])
        print(markdown_table(["step", "rows", "median time", "rows/s"], table), flush=True)
        run_cfg = compose_config([f"experiment={args.experiment}", "logger=none", *smoke, *args.set], workdir)
        share = run_share(run_cfg)
        shutil.rmtree(run_cfg.paths.output_dir, ignore_errors=True)
        record["run"] = {"experiment": args.experiment, **share}
        print(f"\nexperiment={args.experiment}: run {share['wall_s']:.1f} s ({share['epochs']} epochs), reading and "
              f"preprocessing {share['preprocessing_s']:.2f} s = {100 * share['share']:.1f} % of the run", flush=True)
        path = write_results(args.output + ("_smoke" if args.smoke else ""), record)
        print(f"results: {path}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
