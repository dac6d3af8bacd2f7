"""Candidate trades: the training set (STRATEGY.md, "Training set").

Run the production IbsStrategy with the veto off; every trade it takes is one sample with
the features as of its entry decision (the signal bar's close), its entry and exit, exit
reason, net P&L after costs, return, and the label ``win = pnl_net > 0``. The same class and
costs as live, so research and live cannot drift apart.
"""

from __future__ import annotations

import pandas as pd

from rooney_core.backtest.runner import run_backtest
from rooney_core.config import Instrument, StrategyConfig

OUTCOME_COLUMNS = ["signal_time", "entry_time", "entry_price", "exit_time", "exit_price", "exit_reason",
                   "contracts", "bars_held", "pnl_gross", "commission", "pnl_net", "return", "win"]


def extract_candidates(hourly: pd.DataFrame, features: pd.DataFrame, instrument: Instrument,
                       rules: StrategyConfig, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """One row per base trade (veto off): outcome columns, then the feature columns."""
    result = run_backtest(hourly, features, instrument, rules, veto_enabled=False, start=start, end=end)
    trades = result.trades
    notional = trades["entry_price"] * instrument.point_value * trades["contracts"]
    trades["return"] = trades["pnl_net"] / notional
    trades["win"] = trades["pnl_net"] > 0
    clash = set(OUTCOME_COLUMNS) & set(features.columns)
    if clash:
        raise ValueError(f"feature names clash with outcome columns: {sorted(clash)}")
    # features as of the entry decision: the row of the signal bar (looked up by time)
    feats = features.loc[pd.DatetimeIndex(trades["signal_time"])].reset_index(drop=True)
    out = pd.concat([trades[OUTCOME_COLUMNS].reset_index(drop=True), feats], axis=1)
    out.attrs["open_position_at_end"] = result.open_position is not None
    return out
