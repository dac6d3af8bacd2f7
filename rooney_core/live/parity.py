"""The parity replay gate: does the live path decide exactly what the backtest decided?

The last N months of minute bars go through the live path (incremental bars, the rolling
feature buffer, the real bundle predicting one row at a time, the paper broker), and the
same period through the backtest (batch bars and features, Backtrader, the batched veto).
They must agree: every feature to 1e-9 (missing values in the same places), every
probability exactly, every decision and every trade (times, prices, reasons, P&L). The
report names the first divergence: the bar, the field and both values.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rooney_core.backtest.runner import TRADE_COLUMNS, run_backtest
from rooney_core.config import RooneyConfig
from rooney_core.data import load_session_bars
from rooney_core.features import REGISTRY, instrument_inputs, selected_features
from rooney_core.live.engine import LiveEngine, ModelSlot
from rooney_core.live.feeds import raw_feed
from rooney_core.model import ModelStore, VetoBundle

FEATURE_TOLERANCE = 1e-9
TRADE_FIELDS = [c for c in TRADE_COLUMNS if c != "signal_index"]  # a bar count since each run began
DECISION_FIELDS = ["time", "event", "reason", "price", "probability"]


@dataclass
class ParityReport:
    symbol: str
    model: str | None
    start: str
    bars: int = 0
    features_checked: int = 0
    decisions: int = 0
    vetoes: int = 0  # of the backtest's decisions, signals the model vetoed
    trades: int = 0
    live_trades: int = 0
    backtest_pnl: float = 0.0
    live_pnl: float = 0.0
    divergences: list[dict] = field(default_factory=list)

    @property
    def tracking_error_usd(self) -> float:
        """Paper (live path) net P&L minus the backtest's over the same bars."""
        return round(self.live_pnl - self.backtest_pnl, 2)

    @property
    def ok(self) -> bool:
        return not self.divergences

    def summary(self) -> str:
        head = (f"{self.symbol} parity from {self.start} with {self.model or 'no model'}: {self.bars} bars, "
                f"{self.features_checked} feature values, {self.decisions} decisions, {self.trades} trades")
        if self.ok:
            return head + ": identical"
        d = self.divergences[0]
        return (head + f": DIVERGES ({len(self.divergences)} difference(s)); first at {d['bar']} in {d['field']}: "
                f"backtest {d['backtest']!r}, live {d['live']!r}")


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            fa, fb = float(a), float(b)
        except (TypeError, ValueError):
            return False
        return (np.isnan(fa) and np.isnan(fb)) or fa == fb
    if pd.isna(a) and pd.isna(b):
        return True
    return a == b


def _frame(records: list[dict], columns: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(records, columns=columns)
    for col in columns:
        if col == "time" or col.endswith("_time"):
            out[col] = pd.to_datetime(out[col])
    return out.reset_index(drop=True)


def _compare_rows(report: ParityReport, what: str, bt: pd.DataFrame, live: pd.DataFrame, key: str) -> None:
    for i in range(max(len(bt), len(live))):
        if i >= len(bt) or i >= len(live):
            extra = (live if i >= len(bt) else bt).iloc[i]
            report.divergences.append({"bar": str(extra[key]), "field": f"{what} count",
                                       "backtest": len(bt), "live": len(live)})
            return
        for col in bt.columns:
            a, b = bt.iloc[i][col], live.iloc[i][col]
            if not _same(a, b):
                report.divergences.append({"bar": str(bt.iloc[i][key]), "field": f"{what}.{col}",
                                           "backtest": a, "live": b})


def parity_check(cfg: RooneyConfig, symbol: str, data_dir: str | Path, store: ModelStore,
                 model: str | VetoBundle | None = None, months: int = 6, start: str | None = None) -> ParityReport:
    """Replay the last ``months`` of ``data_dir``'s minute files through the live path and the
    backtest with ``model``: a stored version (default: production; none deployed: no model),
    or a bundle not stored yet (the gate of a version being made)."""
    inst = cfg.instrument(symbol)
    # each file read once: the backtest's bars, the live path's warm-up history and its feed
    loaded = {s: load_session_bars(data_dir, cfg.instrument(s), **cfg.pipeline.data.gate())
              for s in filter(None, (symbol, inst.pair))}
    own = loaded[symbol]
    pair = loaded[inst.pair].hourly if inst.pair else None
    feats = REGISTRY.compute(instrument_inputs(cfg, symbol, own.hourly, pair), selected_features(cfg))
    last = own.hourly.index[-1]
    start = start or str((last - pd.DateOffset(months=months)).date())
    if isinstance(model, VetoBundle):
        name, bundle = f"{symbol} candidate {model.content_hash()[:12]}", model
    else:
        name = model or store.production(symbol)
        bundle = store.load(name) if name else None
    bt = run_backtest(own.hourly, feats, inst, cfg.strategy, model=bundle, start=start, model_name=name)
    report = ParityReport(symbol, name, start)
    with tempfile.TemporaryDirectory(prefix="rooney-parity-") as state:
        slot = ModelSlot(name, None, bundle) if bundle is not None else None  # loaded and checked above
        engine = LiveEngine(cfg, [symbol], store, state, paper=True, models={symbol: slot} if slot else None,
                            record_rows=True, persist=False, portfolio=None)
        replay_from = engine.start(lambda s: (loaded[s].hourly, loaded[s].daily), start)
        engine.run(raw_feed({s: loaded[s].raw for s in sorted(engine.builders)}, since=replay_from), replay_from,
                   close_at_end=True)
        st = engine.instruments[symbol]
    live_ts = pd.DatetimeIndex([t for t, _ in st.rows])
    live_rows = pd.DataFrame(np.array([v for _, v in st.rows]), index=live_ts, columns=st.buffer.names)
    batch = feats.loc[feats.index >= pd.Timestamp(start), st.buffer.names]
    report.bars = len(batch)
    if not live_rows.index.equals(batch.index):
        missing = batch.index.difference(live_rows.index)
        extra = live_rows.index.difference(batch.index)
        report.divergences.append({"bar": str((missing.append(extra)).min()), "field": "bars",
                                   "backtest": f"{len(batch)} bars", "live": f"{len(live_rows)} bars"})
        return report
    a, b = batch.to_numpy(), live_rows.to_numpy()
    report.features_checked = a.size
    bad = ~((np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= FEATURE_TOLERANCE))
    for i, j in zip(*np.nonzero(bad), strict=True):
        report.divergences.append({"bar": str(batch.index[i]), "field": f"feature {batch.columns[j]}",
                                   "backtest": float(a[i, j]), "live": float(b[i, j])})
    live_dec = _frame([d for d in st.core.decisions if d["event"] != "not_trading"], DECISION_FIELDS)
    bt_dec = _frame(bt.decisions.to_dict("records"), DECISION_FIELDS)
    report.decisions = len(bt_dec)
    report.vetoes = int((bt_dec["event"] == "veto").sum())
    _compare_rows(report, "decision", bt_dec, live_dec, "time")
    live_tr = _frame(st.core.trades, TRADE_FIELDS)
    bt_tr = _frame(bt.trades.to_dict("records"), TRADE_FIELDS)
    report.trades, report.live_trades = len(bt_tr), len(live_tr)
    report.backtest_pnl = round(float(bt_tr["pnl_net"].sum()), 2)
    report.live_pnl = round(float(live_tr["pnl_net"].sum()), 2)
    _compare_rows(report, "trade", bt_tr, live_tr, "signal_time")
    return report



def portfolio_parity_check(cfg: RooneyConfig, data_dir: str | Path, store: ModelStore, config,
                           start: str | None = None, end: str | None = None) -> ParityReport:
    """The portfolio case of the parity gate: ``config`` (a ``PortfolioConfig``) over its
    holdout (or from ``start``), through the portfolio backtest (batch bars and features, the
    batched veto, ``run_portfolio``) and through the live engine with that config (minute
    files replayed: incremental bars and features, one-row predictions, the paper broker and
    the same ``PortfolioGuard``). Every trade (sizes included) and every entry the portfolio's
    rules refused must agree. ``end`` (exclusive) shortens the replay for tests."""
    from rooney_core.portfolio.engine import run_portfolio

    symbols = sorted(config.symbols)
    need = sorted({*symbols, *(cfg.instrument(s).pair for s in symbols if cfg.instrument(s).pair)})
    loaded = {s: load_session_bars(data_dir, cfg.instrument(s), **cfg.pipeline.data.gate()) for s in need}
    start = start or (config.holdout.start if config.holdout else None)
    if start is None:
        raise ValueError("portfolio parity: give a start (the config has no holdout period)")
    feats = {s: REGISTRY.compute(instrument_inputs(cfg, s, loaded[s].hourly,
                                                   loaded[cfg.instrument(s).pair].hourly if cfg.instrument(s).pair
                                                   else None), selected_features(cfg))
             for s in symbols}
    bundles = {s: store.load(v) if v else None for s, v in config.models.items()}
    bt = run_portfolio({s: loaded[s].hourly for s in symbols}, feats, {s: cfg.instrument(s) for s in symbols},
                       cfg.strategy, config.rules.rules(), models=bundles, capital=config.capital, start=start,
                       end=end)
    report = ParityReport("portfolio " + ",".join(symbols), config.version, str(start))
    with tempfile.TemporaryDirectory(prefix="rooney-parity-") as state:
        slots = {s: ModelSlot(v, None, bundles[s]) for s, v in config.models.items() if v}
        engine = LiveEngine(cfg, symbols, store, state, paper=True, models=slots or None, persist=False,
                            portfolio=config)
        replay_from = engine.start(lambda s: (loaded[s].hourly, loaded[s].daily), start)
        feed = raw_feed({s: loaded[s].raw for s in sorted(engine.builders)}, since=replay_from)
        if end is not None:  # minutes before ``end`` (an hour boundary): the backtest's bars before it
            stop = np.datetime64(pd.Timestamp(end), "s")
            feed = (item for item in feed if getattr(item, "timestamp", None) is None or item.timestamp < stop)
        engine.run(feed, replay_from, close_at_end=True)
        live_trades = [{**t, "symbol": s} for s in symbols for t in engine.instruments[s].core.trades]
        live_skips = [{"signal_time": d["time"], "symbol": s, "reason": d["reason"]}
                      for s in symbols for d in engine.instruments[s].core.decisions
                      if d["event"] == "order_failed" and str(d["reason"]).startswith("portfolio ")]
    fields = ["symbol", *TRADE_FIELDS]
    bt_tr = _frame(bt.trades.to_dict("records"), fields).sort_values(["signal_time", "symbol"]).reset_index(drop=True)
    live_tr = _frame(live_trades, fields).sort_values(["signal_time", "symbol"]).reset_index(drop=True)
    report.trades, report.live_trades = len(bt_tr), len(live_tr)
    report.backtest_pnl = round(float(bt_tr["pnl_net"].sum()), 2) if len(bt_tr) else 0.0
    report.live_pnl = round(float(live_tr["pnl_net"].sum()), 2) if len(live_tr) else 0.0
    bt_tr["key"] = bt_tr["symbol"] + " " + bt_tr["signal_time"].astype(str)
    live_tr["key"] = live_tr["symbol"] + " " + live_tr["signal_time"].astype(str)
    _compare_rows(report, "trade", bt_tr, live_tr, "key")
    bt_sk = bt.skipped.assign(reason="portfolio " + bt.skipped["rule"] + ": " + bt.skipped["reason"])
    bt_sk = _frame(bt_sk.to_dict("records"), ["signal_time", "symbol", "reason"])
    live_sk = _frame(live_skips, ["signal_time", "symbol", "reason"])
    bt_sk, live_sk = (f.sort_values(["signal_time", "symbol"]).reset_index(drop=True) for f in (bt_sk, live_sk))
    for f in (bt_sk, live_sk):
        f["key"] = f["symbol"] + " " + pd.to_datetime(f["signal_time"]).astype(str)
    report.decisions = len(bt_sk)
    _compare_rows(report, "skipped entry", bt_sk, live_sk, "key")
    return report


def parity_gate(report: ParityReport) -> dict:
    """The gate record of a parity report (stored with the version, read by promotion)."""
    return {"passed": report.ok, "detail": report.summary()}
