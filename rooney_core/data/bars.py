"""Session-aware hourly and daily bars (STRATEGY.md, "Sessions and bars").

Hourly bar: the minutes in [HH:00, HH+1:00), labelled by its start, visible only after it
closes. Daily bar: one trading session (17:00 -> 16:00 for Globex), labelled by the
session's trading date. Daily bars are built from hourly bars, so research and the live
engine (which only ever holds hourly bars) build them with one code path.

Frames: index ``timestamp`` (naive exchange-local datetime64[ns]); columns
``open, high, low, close, volume`` (float64).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rooney_core.data.raw import RawBars
from rooney_core.sessions import SessionCalendar

BAR_COLUMNS = ["open", "high", "low", "close", "volume"]
HOUR_SECONDS = 3600


def hour_key(epoch_seconds):
    """The hourly bar a sub-hourly bar belongs to: its clock hour, as whole hours since the
    epoch (bar start in epoch seconds -> hour number; the bar's label is key * 3600 s).
    Works on ints and int64 arrays alike; the batch build and the live builder both use it."""
    return epoch_seconds // HOUR_SECONDS


def session_key(hour_starts: np.ndarray, calendar: SessionCalendar) -> np.ndarray:
    """The daily bar an hourly bar belongs to: the trading date of the hour's *start*
    (datetime64[D]). The batch build and the live builder both use it."""
    return calendar.trading_date(hour_starts)


def aggregate_bars(
    keys: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """OHLCV of runs of equal, sorted keys (one pass of reduceat, no sort): first open, max
    high, min low, last close, summed volume. The one aggregation rule of batch and live bars."""
    if len(keys) == 0:
        empty = np.empty(0)
        return keys[:0], {k: empty for k in BAR_COLUMNS}
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    ends = np.append(starts[1:], len(keys)) - 1
    return keys[starts], {
        "open": o[starts],
        "high": np.maximum.reduceat(h, starts),
        "low": np.minimum.reduceat(lo, starts),
        "close": c[ends],
        "volume": np.add.reduceat(v, starts).astype(np.float64),
    }


def _frame(index: np.ndarray, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(
        {k: np.asarray(cols[k], dtype=np.float64) for k in BAR_COLUMNS},
        index=pd.DatetimeIndex(index.astype("datetime64[ns]"), name="timestamp"),
    )


def hourly_bars(raw: RawBars) -> pd.DataFrame:
    """Aggregate validated sub-hourly bars (sorted, in session) into hourly bars.

    Works chunk by chunk on the parser's zero-copy arrays; an hour split across two chunks
    yields two partial bars, which a second pass merges (first open, max high, min low,
    last close, summed volume are associative)."""
    parts = [aggregate_bars(hour_key(ts), o, h, lo, c, v) for ts, o, h, lo, c, v in raw.batches()]
    if not parts:
        return _frame(np.empty(0, dtype="datetime64[h]"), aggregate_bars(np.empty(0, dtype=np.int64), *[np.empty(0)] * 5)[1])
    keys = np.concatenate([k for k, _ in parts])
    cols = {name: np.concatenate([c[name] for _, c in parts]) for name in BAR_COLUMNS}
    idx, merged = aggregate_bars(keys, *(cols[n] for n in BAR_COLUMNS))
    return _frame(idx.astype("datetime64[h]"), merged)


def daily_bars(hourly: pd.DataFrame, calendar: SessionCalendar) -> pd.DataFrame:
    """Aggregate hourly bars into one bar per trading session, labelled by trading date."""
    ts = hourly.index.values
    tdate = session_key(ts, calendar).astype("datetime64[ns]")
    idx, cols = aggregate_bars(
        tdate,
        hourly["open"].to_numpy(),
        hourly["high"].to_numpy(),
        hourly["low"].to_numpy(),
        hourly["close"].to_numpy(),
        hourly["volume"].to_numpy(),
    )
    return _frame(idx, cols)


def session_gaps(hourly: pd.DataFrame, calendar: SessionCalendar, min_missing_hours: int = 1) -> pd.DataFrame:
    """Missing hourly bars *inside* sessions (not breaks, weekends or holidays).

    A gap is reported when consecutive hourly bars of the same trading date are more than
    one hour apart. Returns columns ``after, before, missing_hours``.
    """
    ts = hourly.index.values
    if len(ts) < 2:
        return pd.DataFrame(columns=["after", "before", "missing_hours"])
    td = calendar.trading_date(ts)
    hours = (np.diff(ts).astype("timedelta64[h]").astype(np.int64)) - 1
    same = td[1:] == td[:-1]
    where = np.flatnonzero(same & (hours >= min_missing_hours))
    return pd.DataFrame(
        {"after": ts[where], "before": ts[where + 1], "missing_hours": hours[where]}
    )


def bars_summary(hourly: pd.DataFrame, daily: pd.DataFrame, raw: RawBars, calendar: SessionCalendar) -> dict:
    """Numbers worth showing next to a bars table: rows, range, gaps and repairs."""
    gaps = session_gaps(hourly, calendar)
    return {
        "raw_rows_read": raw.rows_read,
        "raw_rows_kept": len(raw),
        "interval_minutes": raw.interval_minutes,
        "hourly_bars": len(hourly),
        "daily_bars": len(daily),
        "first_raw_bar": str(raw.first_timestamp),
        "last_raw_bar": str(raw.last_timestamp),
        "first_bar": str(hourly.index[0]) if len(hourly) else None,
        "last_bar": str(hourly.index[-1]) if len(hourly) else None,
        "intra_session_gaps": int(len(gaps)),
        "missing_hours_in_gaps": int(gaps["missing_hours"].sum()) if len(gaps) else 0,
        "repairs": dict(raw.repairs),
    }
