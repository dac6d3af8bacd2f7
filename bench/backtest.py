"""P3: the production IbsStrategy in Backtrader over 15 years of hourly bars, veto model on,
against a minimal Backtrader RSI(2) strategy on the same bars, in the same run.

    uv run --frozen python bench/backtest.py [--runs 3]

Throughput = bars per second of the whole cerebro.run(). The minimal strategy is what a
quant would write first: the stock PandasData feed and bt.indicators.RSI(period=2), buy
below 10, sell above 90. It is also timed on our ArrayFeed to separate feed and strategy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import sample_bars_and_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--symbol", default="ES")
    ap.add_argument("--range", default="2010-01-01:2024-12-31")
    a = ap.parse_args()

    import backtrader as bt
    from sklearn.ensemble import RandomForestClassifier

    from rooney_core.backtest.runner import run_backtest
    from rooney_core.features import REGISTRY
    from rooney_core.strategy.feed import ArrayFeed
    from rooney_core.training.candidates import extract_candidates

    cfg, inst, hourly, _, feats = sample_bars_and_features(a.symbol, a.range)
    start, end = a.range.split(":")
    n = len(hourly)

    t0 = time.perf_counter()
    cands = extract_candidates(hourly, feats, inst, cfg.strategy)
    extract_s = time.perf_counter() - t0
    names = [c for c in REGISTRY.names() if cands[c].notna().mean() > 0.9]
    train = cands.iloc[: int(len(cands) * 0.7)].dropna(subset=names)
    est = RandomForestClassifier(n_estimators=300, min_samples_leaf=50, max_features="sqrt", n_jobs=1,
                                 random_state=0).fit(train[names].to_numpy(), train["win"].to_numpy())
    model = SimpleNamespace(estimator=est, feature_names=names, threshold=0.5)

    class MinimalRsi2(bt.Strategy):
        def __init__(self):
            self.rsi = bt.indicators.RSI(self.data.close, period=2, safediv=True)

        def next(self):
            if not self.position and self.rsi[0] < 10:
                self.buy()
            elif self.position and self.rsi[0] > 90:
                self.close()

    def minimal(feed_factory):
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(feed_factory())
        cerebro.addstrategy(MinimalRsi2)
        cerebro.run()

    pandas_frame = hourly.rename_axis("datetime")
    runners = {
        "IbsStrategy + RF veto (ArrayFeed)": lambda: run_backtest(hourly, feats, inst, cfg.strategy, model=model),
        "IbsStrategy, veto off (ArrayFeed)": lambda: run_backtest(hourly, feats, inst, cfg.strategy,
                                                                  veto_enabled=False),
        "minimal RSI(2) (PandasData)": lambda: minimal(lambda: bt.feeds.PandasData(dataname=pandas_frame)),
        "minimal RSI(2) (ArrayFeed)": lambda: minimal(lambda: ArrayFeed(frame=hourly)),
    }
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(a.runs):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    vetoed = run_backtest(hourly, feats, inst, cfg.strategy, model=model)
    print(f"\nP3 backtest: {a.symbol} {n:,} hourly bars ({start} .. {end}); RF 300 trees on {len(names)} features; "
          f"veto rate {vetoed.veto_rate:.1%}; {len(cands):,} candidates extracted in {extract_s:.1f} s")
    print("target: < 10 s per instrument with the veto on; throughput >= the minimal RSI(2) strategy")
    ref = statistics.median(times["minimal RSI(2) (PandasData)"])
    print(f"{'run':<38}{'median s':>10}{'min-max s':>16}{'bars/s':>10}{'vs minimal':>12}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<38}{med:>10.2f}{min(ts):>8.2f}-{max(ts):<7.2f}{n / med:>10,.0f}{ref / med:>11.2f}x")


if __name__ == "__main__":
    main()
