"""The training set: one labelled row per base signal (STRATEGY.md, "Training set").

Every bar where the entry rule fires (veto off) is one sample, whether or not a position
would be open at that moment: with the veto on, a rejected entry leaves the strategy flat and
it then takes signals a veto-off run never saw, so a veto-off backtest's trades are not the
set the veto faces. Each signal is simulated on its own by the production decision core
(``DecisionCore``, veto off) and the paper broker: fill at the next bar's open plus slippage,
the production exit rules from the fill bar's close on, the exit filled at the following
open, costs from the one cost table. A signal that is flat in the veto-off backtest gets
exactly that backtest's trade (tested).

A row holds the features as of the signal bar's close, entry and exit times and prices, the
exit reason, net P&L in $, return, the label ``win = pnl_net > 0``, and ``overlaps``: True
when the veto-off strategy would have been in a position (or had an order pending) at the
signal, i.e. a signal only a veto-on run can take. Signals whose trade has not exited by the
end of the data have no label and are left out (counted in ``attrs["unresolved"]``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rooney_core.backtest.runner import possible_entries, slice_period
from rooney_core.config import Instrument, StrategyConfig
from rooney_core.errors import RooneyError
from rooney_core.live.paper import PaperBroker
from rooney_core.strategy.engine import DecisionCore

OUTCOME_COLUMNS = ["signal_time", "entry_time", "entry_price", "exit_time", "exit_price", "exit_reason",
                   "contracts", "bars_held", "pnl_gross", "commission", "pnl_net", "return", "win", "overlaps"]


def label_signals(hourly: pd.DataFrame, features: pd.DataFrame, instrument: Instrument, rules: StrategyConfig,
                  start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Outcome columns of every base signal in [start, end], each simulated on its own."""
    bars = slice_period(hourly, start, end)
    feats = slice_period(features, start, end)
    if not bars.index.equals(feats.index):
        raise RooneyError(f"{instrument.symbol}: features are not aligned with the bars "
                          f"({len(feats)} feature rows vs {len(bars)} bars); recompute the features")
    ts = bars.index.values
    opens, closes = bars["open"].to_numpy(dtype=float), bars["close"].to_numpy(dtype=float)
    ibs = feats[["ibs"]].to_numpy(dtype=np.float64)  # all the core reads with the veto off
    signals = np.flatnonzero(possible_entries(feats, bars, rules, instrument.calendar))
    rows: list[dict] = []
    busy_until = -1  # the veto-off strategy's position (or pending order) covers bars <= this
    unresolved = 0
    for i in signals:
        trade = _simulate(ts, opens, closes, ibs, int(i), instrument, rules)
        if trade is None:
            unresolved += 1
            continue
        rows.append({**trade, "overlaps": bool(i <= busy_until)})
        if i > busy_until:
            # the exit fills at bar j's open: from j's close on it is flat again
            busy_until = int(np.searchsorted(ts, np.datetime64(trade["exit_time"], "ns"))) - 1
    out = pd.DataFrame(rows, columns=[c for c in OUTCOME_COLUMNS if c not in ("return", "win")])
    for col in ("signal_time", "entry_time", "exit_time"):
        out[col] = pd.to_datetime(out[col])
    notional = out["entry_price"] * instrument.point_value * out["contracts"]
    out["return"] = out["pnl_net"] / notional
    out["win"] = out["pnl_net"] > 0
    out = out[OUTCOME_COLUMNS]
    out.attrs["unresolved"] = unresolved
    return out


def _simulate(ts: np.ndarray, opens: np.ndarray, closes: np.ndarray, ibs: np.ndarray, i: int,
              instrument: Instrument, rules: StrategyConfig) -> dict | None:
    """The trade of the base signal at bar ``i`` taken alone: a fresh decision core (veto
    off) and paper broker from that bar until the exit fills; None if the data ends first."""
    core = DecisionCore(rules, instrument, ["ibs"], None, veto_enabled=False)
    broker = PaperBroker(instrument)
    intent = core.on_bar(ts[i], closes[i], ibs[i])
    if intent is None:  # possible_entries and the core's rule disagree: never silently
        raise RooneyError(f"{instrument.symbol} {ts[i]}: a base signal the decision core does not take")
    broker.place(intent)
    for j in range(i + 1, len(ts)):
        fill = broker.fill_at_open(ts[j], opens[j])
        if fill is not None:
            core.on_fill(ts[j], fill.price, fill.contracts)
            if core.trades:
                return core.trades[0]
        intent = core.on_bar(ts[j], closes[j], ibs[j])
        if intent is not None:
            broker.place(intent)
    return None


def simulate_signal(bars: pd.DataFrame, ibs: np.ndarray, i: int, instrument: Instrument,
                    rules: StrategyConfig) -> dict | None:
    """The trade a base signal at bar ``i`` of ``bars`` makes on its own (same exits, fills
    and costs as the strategy); None if the data ends before it exits."""
    return _simulate(bars.index.values, bars["open"].to_numpy(dtype=float), bars["close"].to_numpy(dtype=float),
                     np.asarray(ibs, dtype=np.float64).reshape(-1, 1), i, instrument, rules)


def extract_candidates(hourly: pd.DataFrame, features: pd.DataFrame, instrument: Instrument,
                       rules: StrategyConfig, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """One row per base signal: outcome columns, then the feature columns as of its bar."""
    clash = set(OUTCOME_COLUMNS) & set(features.columns)
    if clash:
        raise ValueError(f"feature names clash with outcome columns: {sorted(clash)}")
    labels = label_signals(hourly, features, instrument, rules, start, end)
    # features as of the entry decision: the row of the signal bar (looked up by time)
    feats = features.loc[pd.DatetimeIndex(labels["signal_time"])].reset_index(drop=True)
    out = pd.concat([labels.reset_index(drop=True), feats], axis=1)
    out.attrs["unresolved"] = labels.attrs["unresolved"]
    return out
