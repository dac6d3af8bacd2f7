"""The parity replay gate over the six sample instruments: the last N months of 1-minute
bars through the live path (incremental bars, rolling feature buffer, the bundle predicting
one row at a time, the paper broker) against the backtest of the same period, with
``rooney_core.live.parity.parity_check`` (what `rooney parity` and the Dagster asset check
run). Features must agree to 1e-9, probabilities exactly, decisions and trades exactly.

Each instrument gets a small Random Forest veto (60 trees, depth 4) fitted in seconds on the
labelled base signals (``extract_candidates``) before the parity window, wrapped as a
``VetoBundle`` as the pipeline wraps its models; its threshold is the median P(win) of its
training signals, so about half the signals are vetoed and probabilities and vetoes are
compared too. ``--no-model`` runs the gate with no model (every base signal taken).

The 1-minute sample data (2022-01 .. 2024-06, the six instruments) is bench/live.py's,
generated on first use and cached under bench/out/.

    uv run --frozen python bench/parity.py [--months 6] [--symbols ES,NQ] [--no-model]

Prints per instrument: hourly bars compared, feature values compared, decisions (and how
many were vetoes), trades, divergences and wall time, then the totals; exits 1 if any
instrument diverges.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import sample_dir  # noqa: E402  (bench/live.py: the cached six-instrument sample)


def quick_veto(cfg, symbol: str, data: Path, before: str):
    """A small forest on the labelled base signals before ``before``, as a VetoBundle."""
    from sklearn.ensemble import RandomForestClassifier

    from rooney_core.data import load_session_bars
    from rooney_core.features import REGISTRY, instrument_inputs, selected_features
    from rooney_core.model import VetoBundle
    from rooney_core.training.candidates import extract_candidates

    inst = cfg.instrument(symbol)
    own = load_session_bars(data, inst, **cfg.pipeline.data.gate()).hourly
    pair = load_session_bars(data, cfg.instrument(inst.pair), **cfg.pipeline.data.gate()).hourly if inst.pair else None
    names = selected_features(cfg)
    feats = REGISTRY.compute(instrument_inputs(cfg, symbol, own, pair), names)
    cands = extract_candidates(own, feats, inst, cfg.strategy, end=before)
    x = cands[names]
    ok = x.notna().all(axis=1).to_numpy()
    forest = RandomForestClassifier(n_estimators=60, max_depth=4, min_samples_leaf=20, random_state=1, n_jobs=1)
    forest.fit(x[ok].to_numpy(), cands["win"].to_numpy()[ok])
    threshold = float(np.median(forest.predict_proba(x[ok].to_numpy())[:, 1]))
    bundle = VetoBundle(symbol=symbol, estimator=forest, feature_names=names, threshold=threshold,
                        registry_version="bench", feature_schema_hash="bench", data_hash="bench")
    return bundle, int(ok.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--months", type=int, default=6, help="months replayed at the end of the data")
    ap.add_argument("--symbols", default=None, help="comma-separated (default: pipeline.yml sample_data.symbols)")
    ap.add_argument("--no-model", action="store_true", help="no veto model: every base signal is taken")
    args = ap.parse_args()

    from rooney_core.config import load_config
    from rooney_core.live.parity import parity_check
    from rooney_core.model import ModelStore

    cfg = load_config()
    symbols = args.symbols.split(",") if args.symbols else list(cfg.pipeline.sample_data.symbols)
    data = sample_dir("2022-01-01", "2024-06-28")
    rows, failed = [], []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rooney-bench-parity-") as tmp:
        store = ModelStore(Path(tmp) / "store")  # empty: the models are passed as bundles
        for sym in symbols:
            t0 = time.perf_counter()
            last = pd.read_csv(data / f"{sym}_bt.csv", usecols=["datetime"])["datetime"].iloc[-1]
            start = str((pd.Timestamp(last) - pd.DateOffset(months=args.months)).date())
            model, fit_rows = (None, 0) if args.no_model else quick_veto(cfg, sym, data, before=start)
            t_fit = time.perf_counter() - t0
            t1 = time.perf_counter()
            report = parity_check(cfg, sym, data, store, model=model, months=args.months)
            t_gate = time.perf_counter() - t1
            print(report.summary(), flush=True)
            for d in report.divergences[:5]:
                print(f"  at {d['bar']} in {d['field']}: backtest {d['backtest']!r}, live {d['live']!r}")
            if not report.ok:
                failed.append(sym)
            rows.append({"symbol": sym, "from": report.start, "bars": report.bars,
                         "features": report.features_checked, "decisions": report.decisions,
                         "vetoes": report.vetoes, "trades": report.trades, "divergences": len(report.divergences),
                         "fit_rows": fit_rows, "fit_s": round(t_fit, 1), "parity_s": round(t_gate, 1)})
    wall = time.perf_counter() - t_all
    table = pd.DataFrame(rows)
    load = os.getloadavg()
    print(f"\nparity gate, last {args.months} months of 1-minute bars, "
          f"{'no model' if args.no_model else 'a 60-tree forest veto each (threshold: median P(win))'}; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print(table.to_string(index=False))
    print(f"total: {table['bars'].sum():,} hourly bars, {table['features'].sum():,} feature values, "
          f"{table['decisions'].sum():,} decisions ({table['vetoes'].sum():,} vetoes), {table['trades'].sum():,} trades, "
          f"{table['divergences'].sum()} divergences; parity wall {table['parity_s'].sum():.0f} s, "
          f"all in {wall:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
