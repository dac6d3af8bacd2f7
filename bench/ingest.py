"""P1: raw minute CSV -> validated hourly + daily bars, ~7 M rows, against DuckDB and Arrow.

P1 as re-baselined in issue 12: not slower than DuckDB (``read_csv`` plus ``time_bucket`` to
hourly bars) on the same file in the same run, and within 2x of Arrow's CSV parse alone (the
floor: nothing that reads the file can beat it). pandas 3 parses CSV with Arrow too, so the
old ">= 3x pandas" is still printed but no longer the target.

Each measurement runs in a fresh process (so peak RSS is per approach); the approaches
alternate, on the same file, in the same run.

    uv run --frozen python bench/ingest.py [--runs 5] [--range 2005-01-01:2024-12-31]
        [--baseline-python /path/to/other/venv/bin/python]   # e.g. a venv with pandas 2.2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, child_report, measure_in_child, print_table, summarise  # noqa: E402

SYMBOL = "ES"


def ours(path: Path) -> None:
    from rooney_core.config import load_config
    from rooney_core.data.bars import daily_bars, hourly_bars
    from rooney_core.data.raw import read_raw_bars

    cal = load_config().instrument(SYMBOL).calendar

    def run():
        raw = read_raw_bars(path, cal)
        daily_bars(hourly_bars(raw), cal)

    child_report(run)


def pandas_baseline(path: Path) -> None:
    import pandas as pd

    agg = {"Open": "first", "High": "max", "Low": "min", "Close": "last", "volume": "sum"}

    def run():
        df = pd.read_csv(path, parse_dates=["datetime"], index_col="datetime")
        hourly = df.resample("1h").agg(agg).dropna()
        # Globex sessions start 17:00: shift by 7 h so a day bucket is one session
        hourly.resample("1D", offset="-7h").agg(agg).dropna()

    child_report(run)


def duckdb_baseline(path: Path) -> None:
    import duckdb

    def run():
        con = duckdb.connect()
        con.execute("SET threads TO 2")
        con.sql(f"""
            SELECT time_bucket(INTERVAL 1 hour, datetime) AS hour, first(Open ORDER BY datetime) AS open,
                   max(High) AS high, min(Low) AS low, last(Close ORDER BY datetime) AS close,
                   sum(volume) AS volume
            FROM read_csv('{path}', header = true, timestampformat = '%Y-%m-%d %H:%M:%S')
            GROUP BY hour ORDER BY hour""").df()
        con.close()

    child_report(run)


def arrow_parse(path: Path) -> None:
    import pyarrow.csv as pacsv

    child_report(lambda: pacsv.read_csv(path))


def ensure_file(start: str, end: str) -> Path:
    out = OUT / f"ingest_{start}_{end}"
    path = out / f"{SYMBOL}_bt.csv"
    if not path.is_file():
        from rooney_core.config import load_config
        from rooney_core.sample_market import load_sample_market, write_sample_data

        cfg = load_config()
        print(f"generating {path} ...", flush=True)
        write_sample_data(out, [SYMBOL], start, end, seed=1, edge=1.0, cfg=cfg,
                          market=load_sample_market(cfg.config_dir), progress=print)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--range", default="2005-01-01:2024-12-31", help="START:END of the sample file")
    ap.add_argument("--baseline-python", help="also time the pandas baseline under this interpreter "
                    "(a venv with another pandas version)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        {"ours": ours, "pandas": pandas_baseline, "duckdb": duckdb_baseline, "arrow": arrow_parse}[a.one](
            Path(a.path))
        return
    start, end = a.range.split(":")
    path = ensure_file(start, end)
    rows = sum(1 for _ in open(path, "rb")) - 1
    print(f"input: {path} ({rows:,} rows, {path.stat().st_size / 1e6:.0f} MB)")
    import pandas

    runners = {"ours": (None, "ours"), "duckdb": (None, "duckdb"), "arrow": (None, "arrow"),
               "pandas": (None, "pandas")}
    if a.baseline_python:
        runners["pandas-other"] = (a.baseline_python, "pandas")
    results: dict[str, list[dict]] = {k: [] for k in runners}
    for i in range(a.runs):
        for name, (python, approach) in runners.items():
            r = measure_in_child(__file__, approach, str(path), python=python)
            results[name].append(r)
            print(f"  run {i + 1} {name}: {r['seconds']:.3f} s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    import duckdb
    import pyarrow

    table = [summarise("rooney read_raw_bars+bars", results["ours"]),
             summarise(f"duckdb {duckdb.__version__} read_csv+time_bucket", results["duckdb"]),
             summarise(f"arrow {pyarrow.__version__} CSV parse only", results["arrow"]),
             summarise(f"pandas {pandas.__version__} read_csv+resample", results["pandas"])]
    if a.baseline_python:
        version = subprocess.run([a.baseline_python, "-c", "import pandas; print(pandas.__version__)"],
                                 capture_output=True, text=True).stdout.strip()
        table.append(summarise(f"pandas {version} read_csv+resample", results["pandas-other"]))
    print_table(f"P1 ingest: {rows:,} rows -> validated hourly + daily bars", table,
                ours="rooney read_raw_bars+bars",
                target="< 3 s, peak RSS < 1 GB; not slower than DuckDB; within 2x of Arrow's parse alone")
    med = {r["name"].split()[0]: r["median_s"] for r in table}
    print(f"\nours / DuckDB: {med['rooney'] / med['duckdb']:.2f}x (target <= 1.00)   "
          f"ours / Arrow parse: {med['rooney'] / med['arrow']:.2f}x (target <= 2.00)")


if __name__ == "__main__":
    main()
