"""Daily P&L, computed in one place: every daily Sharpe in the project reads a series built here.

Two kinds of daily P&L, both indexed by trading date (the session calendar's
``trading_date``: a Globex session opening 17:00 on Sunday is Monday's):

* ``marked_to_market``: from an equity curve marked to market (a backtest, the portfolio):
  the last equity of each trading date minus the previous trading date's, the first minus
  the starting capital. Only dates the curve has bars on appear.
* ``realised_by_day``: from closed trades alone (tuning's selected trades, the live trades
  monitoring reads): each trade's net P&L on the trading date of its exit, over a grid of
  trading days (``trading_days``: the session calendar's, holidays excluded), 0 on a trading
  day without an exit. An exit on a day outside the grid (a holiday session, if one ever
  trades) still counts: the grid is extended by the exit days, never truncated to them.

``trading_days`` falls back to every weekday only when it is given no calendar, and says so
in the log; the callers that can pass one do.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from rooney_core.sessions import SessionCalendar

log = logging.getLogger(__name__)


def session_equity(equity: pd.Series, calendar: SessionCalendar) -> pd.Series:
    """Equity at the last bar of each trading session, indexed by trading date ("date").
    ``equity``: marked to market at each bar, indexed by bar time in time order."""
    ts = equity.index.values
    if len(ts) > 1 and not (ts[1:] >= ts[:-1]).all():
        raise ValueError("equity must be in time order to take each session's last value")
    td = calendar.trading_date(ts)
    last = np.r_[td[1:] != td[:-1], True] if len(td) else np.empty(0, dtype=bool)
    return pd.Series(equity.to_numpy()[last], index=pd.DatetimeIndex(td[last].astype("datetime64[ns]"), name="date"),
                     name=equity.name)


def marked_to_market(equity: pd.Series, capital: float, calendar: SessionCalendar | None = None) -> pd.Series:
    """Daily P&L of a marked-to-market equity curve: one value per trading date, the last
    equity of that date minus the previous date's (the first date: minus ``capital``).

    With ``calendar``, ``equity`` is per bar (any bar times, in time order) and is first
    reduced to each session's last value (``session_equity``). Without it, ``equity`` must
    already hold one value per trading date (a backtest's ``BacktestResult.equity``)."""
    daily = session_equity(equity, calendar) if calendar is not None else equity
    if not len(daily):
        return daily.astype(float)
    return daily.diff().fillna(daily.iloc[0] - capital)


def trading_days(start, end, calendar: SessionCalendar | None) -> np.ndarray:
    """Trading dates (datetime64[D]) from ``start`` to ``end``, both included (dates; a time
    of day is dropped): the calendar's sessions, its exchange holidays excluded. Without a
    calendar every weekday counts (holidays included), logged as such: the fallback for a
    caller that has no instrument to take one from."""
    if calendar is not None:
        return calendar.trading_days(start, end)
    log.info("no session calendar given: counting every weekday from %s to %s as a trading day "
             "(exchange holidays included)", start, end)
    lo, hi = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    return pd.bdate_range(lo, hi).values.astype("datetime64[D]")


def exit_days_grid(exit_day: np.ndarray, calendar: SessionCalendar | None) -> np.ndarray:
    """The trading days from the first to the last of ``exit_day`` (the window of a set of
    trades): the denominator of their daily Sharpe."""
    if len(exit_day) == 0:
        return np.empty(0, dtype="datetime64[D]")
    return trading_days(exit_day.min(), exit_day.max(), calendar)


def realised_by_day(pnl: np.ndarray, exit_day: np.ndarray, days: np.ndarray) -> pd.Series:
    """Realised P&L per trading day: the sum of ``pnl`` over trades exiting on each day,
    0 on a day of ``days`` without an exit. Indexed by the union of ``days`` and the exit
    days (sorted), so an exit off the grid is never dropped."""
    pnl = np.asarray(pnl, dtype=float)
    exit_ns = np.asarray(exit_day).astype("datetime64[D]").astype("datetime64[ns]")
    by_day = pd.Series(pnl).groupby(exit_ns).sum()
    by_day.index = pd.DatetimeIndex(by_day.index)
    grid = pd.DatetimeIndex(np.asarray(days).astype("datetime64[D]").astype("datetime64[ns]"))
    return by_day.reindex(grid.union(by_day.index), fill_value=0.0).astype(float)
