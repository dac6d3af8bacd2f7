"""Performance metrics: the one module every backtest, training report and monitor uses.

Units: P&L in $; Sharpe and Sortino annualised from *daily* P&L with sqrt(252); drawdown
in $ and as a fraction of the running equity peak (capital included). Daily P&L itself is
built in ``rooney_core.backtest.daily`` (marked to market, or realised by exit day).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rooney_core.backtest.daily import marked_to_market, session_equity
from rooney_core.sessions import SessionCalendar

TRADING_DAYS = 252


def equity_by_bar(timestamps: np.ndarray, close: np.ndarray, trades: pd.DataFrame,
                  point_value: float, capital: float, open_trade: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mark-to-market equity at each bar's close, and the contracts held over that bar.

    A trade is open from the bar its entry filled in (entry_time) to the bar before its
    exit fill; its net P&L is realised in the exit fill bar. An open position at the end
    of data is marked to the last close.
    """
    n = len(timestamps)
    held = np.zeros(n + 1)      # contracts x point value, difference array
    entry_cost = np.zeros(n + 1)  # sum of contracts x point value x entry price
    realised = np.zeros(n + 1)
    rows = trades if len(trades) else pd.DataFrame(columns=["entry_time", "exit_time", "entry_price",
                                                            "contracts", "pnl_net"])
    a = np.searchsorted(timestamps, rows["entry_time"].to_numpy(dtype="datetime64[ns]"))
    b = np.searchsorted(timestamps, rows["exit_time"].to_numpy(dtype="datetime64[ns]"))
    w = rows["contracts"].to_numpy(dtype=float) * point_value
    np.add.at(held, a, w)
    np.add.at(held, b, -w)
    np.add.at(entry_cost, a, w * rows["entry_price"].to_numpy(dtype=float))
    np.add.at(entry_cost, b, -w * rows["entry_price"].to_numpy(dtype=float))
    np.add.at(realised, b, rows["pnl_net"].to_numpy(dtype=float))
    if open_trade is not None:
        i = int(np.searchsorted(timestamps, np.datetime64(open_trade["entry_time"], "ns")))
        ow = open_trade["contracts"] * point_value
        held[i] += ow
        entry_cost[i] += ow * open_trade["entry_price"]
    held_c = np.cumsum(held[:n])
    unrealised = held_c * close - np.cumsum(entry_cost[:n])
    equity = capital + np.cumsum(realised[:n]) + unrealised
    return equity, held_c / point_value


def daily_equity(timestamps: np.ndarray, equity: np.ndarray, calendar: SessionCalendar) -> pd.Series:
    """Equity at the last bar of each trading session, indexed by trading date
    (``daily.session_equity`` of the per-bar equity)."""
    return session_equity(pd.Series(equity, index=pd.DatetimeIndex(timestamps)), calendar)


def sharpe(daily_pnl: pd.Series | np.ndarray) -> float:
    x = np.asarray(daily_pnl, dtype=float)
    if len(x) < 2 or np.std(x, ddof=1) == 0:
        return float("nan")
    return float(np.mean(x) / np.std(x, ddof=1) * math.sqrt(TRADING_DAYS))


def sortino(daily_pnl: pd.Series | np.ndarray) -> float:
    x = np.asarray(daily_pnl, dtype=float)
    if len(x) < 2:
        return float("nan")
    downside = math.sqrt(np.mean(np.minimum(x, 0.0) ** 2))
    if downside == 0:
        return float("nan")
    return float(np.mean(x) / downside * math.sqrt(TRADING_DAYS))


def max_drawdown(equity: pd.Series | np.ndarray) -> tuple[float, float]:
    """Largest peak-to-trough fall in $, and largest as a fraction of its peak."""
    e = np.asarray(equity, dtype=float)
    if len(e) == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(e)
    dd = peak - e
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(peak > 0, dd / peak, np.nan)
    # the largest fall in $ and the largest fall in % can happen at different times
    return float(dd.max()), float(np.nanmax(frac)) if np.isfinite(frac).any() else float("nan")


def trade_stats(trades: pd.DataFrame) -> dict:
    """Counts and per-trade figures of a trade list (column pnl_net, $)."""
    pnl = trades["pnl_net"].to_numpy(dtype=float) if len(trades) else np.empty(0)
    wins, losses = pnl[pnl > 0], pnl[pnl <= 0]
    gross_loss = -losses.sum()
    return {
        "trades": int(len(pnl)),
        "net_pnl": float(pnl.sum()),
        "win_rate": float(len(wins) / len(pnl)) if len(pnl) else float("nan"),
        "profit_factor": float(wins.sum() / gross_loss) if gross_loss > 0 else float("nan"),
        "avg_trade": float(pnl.mean()) if len(pnl) else float("nan"),
    }


def performance_metrics(trades: pd.DataFrame, equity_daily: pd.Series, capital: float,
                        exposure: float) -> dict:
    """The metrics table of a backtest; ``equity_daily``: the equity at each session's last
    bar (``daily_equity``), daily P&L from it (``daily.marked_to_market``)."""
    daily = marked_to_market(equity_daily, capital)
    dd_usd, dd_pct = max_drawdown(np.r_[capital, equity_daily.to_numpy()])
    stats = trade_stats(trades)
    return {
        **stats,
        "sharpe": sharpe(daily),
        "sortino": sortino(daily),
        "max_drawdown_usd": dd_usd,
        "max_drawdown_pct": dd_pct,
        "exposure": float(exposure),
        "days": int(len(daily)),
        "return_pct": float(stats["net_pnl"] / capital),
    }
