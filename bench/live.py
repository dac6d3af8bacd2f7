"""P7: the live engine, closed bar in -> decision and logged prediction out, six instruments in
one process, a replay at full speed.

Each instrument trades with a production Random Forest veto (300 trees, depth 7, the bundle's
27 features) stored in a temporary model store. The latency of one instrument's closed
hourly bar is the time from the clock step that closed it to its decision being made and its
prediction-log record fsynced: the feature buffer's row, the veto's single-row prediction,
the decision core, the prediction log and the atomic state write. Reported: p50, p99 and max
per instrument-bar, and throughput in minute bars per second.

    uv run --frozen python bench/live.py [--months 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT  # noqa: E402

SYMBOLS = ["ES", "NQ", "GC", "SI", "CL", "NG"]


def sample_dir(start: str, end: str) -> Path:
    from rooney_core.config import load_config
    from rooney_core.data.sample import load_sample_market, write_sample_data

    cfg = load_config()
    out = OUT / f"live_{start}_{end}"
    if not all((out / f"{s}_bt.csv").is_file() for s in SYMBOLS):
        print("generating sample data ...", flush=True)
        write_sample_data(out, SYMBOLS, start, end, seed=2, edge=1.0, cfg=cfg,
                          market=load_sample_market(cfg.config_dir))
    return out


def store_with_models(data: Path, root: Path, decide_from: str):
    """A production forest per instrument, fitted on veto-off trades before ``decide_from``."""
    from sklearn.ensemble import RandomForestClassifier

    from rooney_core.backtest.runner import run_backtest
    from rooney_core.config import load_config
    from rooney_core.data import load_session_bars
    from rooney_core.features import REGISTRY, instrument_inputs
    from rooney_core.model import ModelStore, VetoBundle

    cfg = load_config()
    store = ModelStore(root)
    for s in SYMBOLS:
        inst = cfg.instrument(s)
        own = load_session_bars(data, inst).hourly
        pair = load_session_bars(data, cfg.instrument(inst.pair)).hourly
        feats = REGISTRY.compute(instrument_inputs(cfg, s, own, pair))
        tr = run_backtest(own, feats, inst, cfg.strategy, veto_enabled=False, end=decide_from).trades
        x = feats.loc[tr["signal_time"].to_numpy()]
        ok = x.notna().all(axis=1).to_numpy()
        forest = RandomForestClassifier(n_estimators=300, max_depth=7, min_samples_leaf=25, random_state=1,
                                        n_jobs=2).fit(x[ok].to_numpy(), (tr["pnl_net"] > 0).to_numpy()[ok])
        forest.n_jobs = 1  # live predicts one row on one core
        name = store.add_version(VetoBundle(symbol=s, estimator=forest, feature_names=list(feats.columns),
                                            threshold=0.5, registry_version="bench", feature_schema_hash="bench",
                                            data_hash="bench"))
        store.promote(name, by="bench/live.py")
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--months", type=int, default=3, help="months replayed (after ~2 years of warm-up history)")
    args = ap.parse_args()

    from rooney_core.config import load_config
    from rooney_core.live.engine import LiveEngine, history_from_raw
    from rooney_core.live.feeds import replay_feed

    cfg = load_config()
    end = "2024-06-28"
    decide_from = str(np.datetime64(end) - np.timedelta64(30 * args.months, "D"))
    data = sample_dir("2022-01-01", end)
    with tempfile.TemporaryDirectory(prefix="rooney-bench-live-") as tmp:
        print("training six production forests ...", flush=True)
        store = store_with_models(data, Path(tmp) / "store", decide_from)
        engine = LiveEngine(cfg, SYMBOLS, store, Path(tmp) / "state", paper=True)
        latencies: list[float] = []
        real_decide = engine._decide

        def timed_closed(closed, _real=engine.on_closed):
            # per instrument: the buffer's rows and each decision, timed from the step's start
            t0 = time.perf_counter()
            for st in engine.instruments.values():
                rows = st.buffer.update(closed)
                own = [b for b in closed if b.symbol == st.symbol and b.kind == "hourly"]
                for bar, row in zip(own, rows, strict=True):
                    real_decide(st, bar, row)
                    if np.datetime64(bar.timestamp, "s") >= engine.decide_from:
                        latencies.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
            engine.heartbeat = engine.clock().isoformat(timespec="seconds")

        engine.on_closed = timed_closed
        t_start = time.perf_counter()
        replay_from = engine.start(history_from_raw(cfg, data), decide_from)
        warm = time.perf_counter() - t_start
        minutes = 0

        def counted(feed):
            nonlocal minutes
            for item in feed:
                minutes += 1
                yield item

        t0 = time.perf_counter()
        engine.run(counted(replay_feed(cfg, data, SYMBOLS, since=replay_from)), replay_from, close_at_end=True)
        wall = time.perf_counter() - t0
        trades = sum(len(st.core.trades) for st in engine.instruments.values())
    lat = np.array(latencies) * 1000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nP7 live engine: {len(SYMBOLS)} instruments, {args.months} months decided from {decide_from}, "
          "300-tree forest veto each, paper broker, prediction log fsynced")
    print("target: p99 < 50 ms per instrument (closed bar in -> decision and logged prediction out)")
    print(f"instrument-bars decided: {len(lat)}; trades: {trades}; start-up (models, warm-up): {warm:.1f} s")
    print(f"latency ms: p50 {np.percentile(lat, 50):.2f}  p99 {np.percentile(lat, 99):.2f}  max {lat.max():.2f}")
    print(f"replay: {minutes:,} feed items (minutes) in {wall:.1f} s = {minutes / wall:,.0f} minute bars/s; "
          f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
