"""What reading a column of written numbers or timestamps costs: rows/s of ``to_numbers`` (and ``local_days``, the
dates' parts) on generated columns whose every cell is distinct (a price, a rate or a time per row), read in bulk
(pyarrow's RE2 and pandas' ISO parser, from 64 distinct texts on) against one distinct text at a time (what
the preprocessing did before), beside what a hand-written pandas line does with the same column.

The columns: ``1,234.56`` (thousands separators), ``$1,234.56``, ``12.345%``, ``2021-03-04T05:06:07Z``
(timestamps; also their local parts), ``1.234,56 €`` (``data.decimal=","``). Each reading is repeated
``--repeats`` times, the three readers alternating, and the median is reported.

    .venv/bin/python benchmarks/written_columns.py
    .venv/bin/python benchmarks/written_columns.py --smoke
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import machine, markdown_table, write_results


def columns(rows: int) -> dict[str, tuple]:
    """name -> (the column, its decimal mark, the hand-written pandas line that reads it)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    amounts = rng.uniform(0, 1e6, rows)
    seconds = rng.integers(0, 10**8, rows)
    times = (pd.Timestamp("2020-01-01") + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ")
    continental = str.maketrans({",": ".", ".": ","})

    def numbers(column, pattern):
        return pd.to_numeric(column.str.replace(pattern, "", regex=True)).to_numpy()

    def days(column):
        return (pd.to_datetime(column, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy() / 86400

    return {
        "thousands 1,234.56": (pd.Series([f"{x:,.2f}" for x in amounts]), ".", lambda c: numbers(c, ",")),
        "dollars $1,234.56": (pd.Series([f"${x:,.2f}" for x in amounts]), ".", lambda c: numbers(c, r"[$,]")),
        "percent 12.345%": (pd.Series([f"{x / 1e4:.3f}%" for x in amounts]), ".",
                            lambda c: numbers(c, "%") / 100),
        "timestamps (days)": (pd.Series(times), ".", days),
        "continental 1.234,56 €": (pd.Series([f"{x:,.2f} €".translate(continental) for x in amounts]), ",",
                                   lambda c: pd.to_numeric(c.str.replace(r"[.€ ]", "", regex=True)
                                                           .str.replace(",", ".")).to_numpy()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="20,000 rows, 1 repeat")
    parser.add_argument("--output", default="written_columns")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.repeats, args.output = 20_000, 1, args.output + "_smoke"
    import numpy as np

    from pipeline.data import preprocessing

    def reader(bulk: bool, parts: bool = False):
        def read(column, decimal):
            preprocessing._VECTORISED_FROM = 64 if bulk else sys.maxsize
            try:
                if parts:
                    return preprocessing.local_days(column)
                values, _ = preprocessing.to_numbers(column, decimal=decimal)
                return values
            finally:
                preprocessing._VECTORISED_FROM = 64
        return read

    results, rows = {}, []
    cases = list(columns(args.rows).items())
    time_column, _, time_hand = dict((name, case) for name, case in cases)["timestamps (days)"]
    cases.append(("timestamps (local parts)", (time_column, ".", None)))
    for name, (column, decimal, by_hand) in cases:
        parts = by_hand is None
        readers = {"bulk": reader(True, parts), "one by one": reader(False, parts)}
        if by_hand is not None:
            readers["pandas by hand"] = lambda c, d, f=by_hand: f(c)
        seconds = {label: [] for label in readers}
        answers = {}
        for _ in range(args.repeats):
            for label, read in readers.items():  # alternating
                started = time.perf_counter()
                answers[label] = read(column, decimal)
                seconds[label].append(time.perf_counter() - started)
        np.testing.assert_array_equal(answers["bulk"], answers["one by one"])  # the same values, bit for bit
        if by_hand is not None:  # the hand-written line reads the same numbers (to rounding)
            np.testing.assert_allclose(answers["bulk"], answers["pandas by hand"], rtol=1e-12)
        medians = {label: statistics.median(values) for label, values in seconds.items()}
        results[name] = {"rows": len(column), "seconds": seconds, "median_s": medians}
        rows.append([name, f"{len(column):,}"] + [f"{len(column) / medians[label]:,.0f}" if label in medians else "-"
                                                 for label in ("bulk", "one by one", "pandas by hand")]
                    + [f"{medians['one by one'] / medians['bulk']:.1f}x"])
    print(markdown_table(["column", "rows", "bulk rows/s", "one by one rows/s", "pandas by hand rows/s",
                          "bulk speed-up"], rows))
    write_results(args.output, {"command": " ".join(sys.argv), "repeats": args.repeats, "machine": machine(),
                                "columns": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
