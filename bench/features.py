"""P2: every registry feature for one instrument and its pair, 15 years of hourly bars.

    uv run --frozen python bench/features.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import sample_bars_and_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--symbol", default="ES")
    ap.add_argument("--range", default="2010-01-01:2024-12-31")
    a = ap.parse_args()
    from rooney_core.features import REGISTRY, instrument_inputs

    cfg, inst, own, pair, _ = sample_bars_and_features(a.symbol, a.range)
    print(f"input: {a.symbol} {len(own):,} hourly bars + {inst.pair} {len(pair):,}; "
          f"{len(REGISTRY)} features")
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        frame = REGISTRY.compute(instrument_inputs(cfg, a.symbol, own, pair))
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    REGISTRY.compute(instrument_inputs(cfg, a.symbol, own, pair))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per = []
    for f in REGISTRY:
        t0 = time.perf_counter()
        f.compute(instrument_inputs(cfg, a.symbol, own, pair))
        per.append((time.perf_counter() - t0, f.name))
    print(f"\nP2 features: {frame.shape[0]:,} rows x {frame.shape[1]} features")
    print("target: < 1 s")
    print(f"median {statistics.median(times):.3f} s, min-max {min(times):.3f}-{max(times):.3f} s "
          f"over {a.runs} runs; peak traced allocation {peak / 1e6:.0f} MB")
    print("slowest features (cold, each alone):",
          ", ".join(f"{n} {t * 1000:.0f} ms" for t, n in sorted(per, reverse=True)[:5]))


if __name__ == "__main__":
    main()
