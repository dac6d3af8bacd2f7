"""Shared bench plumbing: run one measurement in a fresh process, report medians/ratios."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def measure_in_child(script: str, approach: str, *args: str, python: str | None = None) -> dict:
    """Run ``script --one approach args`` in a new interpreter; it prints JSON."""
    env = dict(os.environ)
    proc = subprocess.run([python or sys.executable, script, "--one", approach, *args],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{approach} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_report(fn: Callable[[], object]) -> None:
    """Time ``fn`` (imports already done) and print seconds and peak RSS as JSON."""
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which starts afresh at exec. (ru_maxrss does not: Linux
    carries it over fork and exec, so a child of a big parent reports the parent's peak.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summarise(name: str, runs: list[dict]) -> dict:
    secs = [r["seconds"] for r in runs]
    return {
        "name": name,
        "runs": len(runs),
        "median_s": statistics.median(secs),
        "min_s": min(secs),
        "max_s": max(secs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def print_table(title: str, rows: list[dict], ours: str, target: str = "") -> None:
    """Rows side by side; 'vs ours' = that row's median / our median (> 1: we are faster)."""
    print(f"\n{title}")
    if target:
        print(f"target: {target}")
    mine = next(r for r in rows if r["name"] == ours)
    print(f"{'approach':<36}{'runs':>5}{'median s':>10}{'min-max s':>16}{'peak RSS MB':>13}{'vs ours':>9}")
    for r in rows:
        print(f"{r['name']:<36}{r['runs']:>5}{r['median_s']:>10.3f}"
              f"{r['min_s']:>8.3f}-{r['max_s']:<7.3f}{r['peak_rss_mb']:>13.0f}"
              f"{r['median_s'] / mine['median_s']:>8.2f}x")


def sample_bars_and_features(symbol: str, date_range: str):
    """(cfg, instrument, hourly bars, features) of ``symbol`` (+ its pair) from cached sample
    data for ``START:END``, generated on first use."""
    from rooney_core.config import load_config
    from rooney_core.data import load_session_bars
    from rooney_core.features import REGISTRY, instrument_inputs
    from rooney_core.sample_market import load_sample_market, write_sample_data

    cfg = load_config()
    inst = cfg.instrument(symbol)
    start, end = date_range.split(":")
    out = OUT / f"features_{start}_{end}"
    if not all((out / f"{s}_bt.csv").is_file() for s in (symbol, inst.pair)):
        print("generating sample data ...", flush=True)
        write_sample_data(out, [symbol, inst.pair], start, end, seed=1, edge=1.0, cfg=cfg,
                          market=load_sample_market(cfg.config_dir), progress=print)
    hourly = load_session_bars(out, inst).hourly
    pair = load_session_bars(out, cfg.instrument(inst.pair)).hourly
    return cfg, inst, hourly, pair, REGISTRY.compute(instrument_inputs(cfg, symbol, hourly, pair))
