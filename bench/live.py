"""P7: the live engine, closed bar in -> decision and logged prediction out, six instruments in
one process, a replay at full speed.

Each instrument trades with a production Random Forest veto (300 trees, depth 7, the bundle's
27 features) stored in a temporary model store. The engine runs unchanged: the bench only
wraps its own ``on_closed`` (one clock step: every instrument's closed bars) and ``_decide``
(one instrument's bar) and each feature buffer's ``update`` with timers. Three latencies per
instrument-bar decided:

* own: this instrument's work alone: its feature buffer taking the step's bars and giving
  the row, the single-row veto, the decision core, the prediction log record fsynced;
* decided: from the start of the clock step that closed the bar to its decision made and
  logged, i.e. also the work of the instruments decided before it in the same step (one
  process decides them one after the other);
* durable: the whole step, i.e. also the instruments after it and the atomic state write
  (fsynced temp file, rename, directory fsync) that makes the decision survive a kill;
  this is everything the engine does per closed bar before it reads the next minute.

Reported: p50, p99 and max of both, the state write alone, and throughput in minute bars
per second.

    uv run --frozen python bench/live.py [--months 3]
"""

from __future__ import annotations

import argparse
import os
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
    from rooney_core.sample_market import load_sample_market, write_sample_data

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
        own_ms: list[float] = []  # this instrument's buffer update + decision
        decided_ms: list[float] = []  # step start -> this bar's decision logged
        durable_ms: list[float] = []  # step start -> step done, state written (once per bar)
        state_ms: list[float] = []  # the atomic state write alone
        step_t0 = [0.0]
        real_closed, real_decide, real_write = engine.on_closed, engine._decide, engine._write_state

        update_s: dict[str, float] = {}  # the buffer update of this step, per instrument

        def timed_update(sym, real):
            def update(closed):
                t = time.perf_counter()
                rows = real(closed)
                update_s[sym] = time.perf_counter() - t
                return rows
            return update

        def timed_decide(st, bar, row):
            t = time.perf_counter()
            done = real_decide(st, bar, row)
            if done:
                end = time.perf_counter()
                decided_ms.append((end - step_t0[0]) * 1000)
                own_ms.append((end - t + update_s.pop(st.symbol, 0.0)) * 1000)
            return done

        def timed_write():
            t = time.perf_counter()
            real_write()
            state_ms.append((time.perf_counter() - t) * 1000)

        def timed_closed(closed):
            step_t0[0] = time.perf_counter()
            before = len(decided_ms)
            real_closed(closed)  # the engine's own step: buffers, decisions, log, state write
            step = (time.perf_counter() - step_t0[0]) * 1000
            durable_ms.extend([step] * (len(decided_ms) - before))

        engine._decide, engine._write_state, engine.on_closed = timed_decide, timed_write, timed_closed
        t_start = time.perf_counter()
        replay_from = engine.start(history_from_raw(cfg, data), decide_from)
        warm = time.perf_counter() - t_start
        for st in engine.instruments.values():  # the buffers exist once started
            st.buffer.update = timed_update(st.symbol, st.buffer.update)
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
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()

    def pct(xs: list[float]) -> str:
        a = np.array(xs)
        return f"p50 {np.percentile(a, 50):.2f}  p99 {np.percentile(a, 99):.2f}  max {a.max():.2f}"

    print(f"\nP7 live engine: {len(SYMBOLS)} instruments, {args.months} months decided from {decide_from}, "
          "300-tree forest veto each, paper broker, prediction log fsynced, state written atomically per step")
    print("target: p99 < 50 ms per instrument (closed bar in -> decision and logged prediction out)")
    print(f"instrument-bars decided: {len(decided_ms)}; trades: {trades}; start-up (models, warm-up): {warm:.1f} s; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print(f"latency ms, own (its buffer row, veto, core, log fsynced): {pct(own_ms)}")
    print(f"latency ms, decided (from the step's start):               {pct(decided_ms)}")
    print(f"latency ms, durable (whole step, state write included):    {pct(durable_ms)}")
    print(f"state write alone ms ({len(state_ms)} writes):                  {pct(state_ms)}")
    print(f"replay: {minutes:,} feed items (minutes) in {wall:.1f} s = {minutes / wall:,.0f} minute bars/s; "
          f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
