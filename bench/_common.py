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


def measure_in_child(script: str, approach: str, *args: str) -> dict:
    """Run ``script --one approach args`` in a new interpreter; it prints JSON."""
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, script, "--one", approach, *args],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{approach} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_report(fn: Callable[[], object]) -> None:
    """Time ``fn`` (imports already done) and print seconds and peak RSS as JSON."""
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb}))


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


def print_table(title: str, rows: list[dict], baseline: str | None = None, target: str = "") -> None:
    print(f"\n{title}")
    if target:
        print(f"target: {target}")
    base = next((r for r in rows if r["name"] == baseline), None)
    print(f"{'approach':<34}{'runs':>5}{'median s':>10}{'min-max s':>16}{'peak RSS MB':>13}{'ratio':>8}")
    for r in rows:
        ratio = f"{base['median_s'] / r['median_s']:.2f}x" if base else ""
        print(f"{r['name']:<34}{r['runs']:>5}{r['median_s']:>10.3f}"
              f"{r['min_s']:>8.3f}-{r['max_s']:<7.3f}{r['peak_rss_mb']:>13.0f}{ratio:>8}")
    if base:
        print(f"(ratio = baseline median / approach median; baseline = {baseline})")
