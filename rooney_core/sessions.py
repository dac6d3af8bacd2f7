"""The one session calendar: trading dates, in-session tests and bar labels.

Used to build bars in research and in the live feed alike (parity rule 3). A CME Globex
trading day opens 17:00 exchange time on the previous calendar day and closes 16:00; the
hour 16:00-17:00 is the maintenance break and Friday 16:00 - Sunday 17:00 is the weekend.
Timestamps are naive exchange-local times; `to_exchange_time` converts a UTC live feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

_MIN_PER_DAY = 24 * 60


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


@dataclass(frozen=True)
class SessionCalendar:
    """A daily session [open, close) in exchange-local time.

    When ``open > close`` (Globex: 17:00 -> 16:00) the session starts on the previous
    calendar day and is labelled by the calendar date on which it closes.
    """

    timezone: str
    open: time
    close: time

    @property
    def overnight(self) -> bool:
        return _minutes(self.open) > _minutes(self.close)

    @property
    def _shift_minutes(self) -> int:
        # Adding this many minutes to a timestamp moves it onto its trading date.
        return (_MIN_PER_DAY - _minutes(self.open)) if self.overnight else 0

    def minute_of_day(self, ts: np.ndarray) -> np.ndarray:
        """Minutes since local midnight for datetime64 timestamps."""
        return _epoch_minutes(ts) % _MIN_PER_DAY

    def trading_date(self, ts: np.ndarray) -> np.ndarray:
        """Trading date (datetime64[D]) of each timestamp (bar start)."""
        days = (_epoch_minutes(ts) + self._shift_minutes) // _MIN_PER_DAY
        return days.astype("datetime64[D]")

    def in_session(self, ts: np.ndarray) -> np.ndarray:
        """True where a bar starting at ts lies inside a weekday session."""
        minutes = _epoch_minutes(ts)
        mod = minutes % _MIN_PER_DAY
        o, c = _minutes(self.open), _minutes(self.close)
        if self.overnight:
            in_hours = (mod >= o) | (mod < c)
        else:
            in_hours = (mod >= o) & (mod < c)
        # weekday of the trading date; 1970-01-01 was a Thursday (3 with Monday=0)
        weekday = ((minutes + self._shift_minutes) // _MIN_PER_DAY + 3) % 7
        return in_hours & (weekday < 5)

    def session_close(self, trading_dates: np.ndarray) -> np.ndarray:
        """Exchange-local close timestamp of each trading date's session."""
        d = trading_dates.astype("datetime64[D]").astype("datetime64[m]")
        return d + np.timedelta64(_minutes(self.close), "m")

    def session_open(self, trading_dates: np.ndarray) -> np.ndarray:
        d = trading_dates.astype("datetime64[D]").astype("datetime64[m]")
        open_on_day = d + np.timedelta64(_minutes(self.open), "m")
        return open_on_day - np.timedelta64(1, "D") if self.overnight else open_on_day

    def to_exchange_time(self, utc: pd.DatetimeIndex | pd.Series) -> pd.DatetimeIndex:
        """Convert UTC timestamps (aware or naive-as-UTC) to naive exchange-local time."""
        idx = pd.DatetimeIndex(utc)
        if idx.tz is None:
            idx = idx.tz_localize("UTC")
        return idx.tz_convert(ZoneInfo(self.timezone)).tz_localize(None)

    def from_exchange_time(self, local: pd.DatetimeIndex | pd.Series) -> pd.DatetimeIndex:
        """Naive exchange-local timestamps to aware UTC. A time repeated when DST ends is
        taken as the earlier instant, one skipped when it starts is moved forward."""
        idx = pd.DatetimeIndex(local)
        return idx.tz_localize(ZoneInfo(self.timezone), ambiguous=np.ones(len(idx), dtype=bool),
                               nonexistent="shift_forward").tz_convert("UTC")


def _epoch_minutes(ts: np.ndarray) -> np.ndarray:
    """Whole minutes since the epoch (floor) as int64, for datetime64 of any unit."""
    ts = np.asarray(ts)
    if ts.dtype == np.dtype("datetime64[m]"):
        return ts.view(np.int64)
    unit, _ = np.datetime_data(ts.dtype)
    per_min = {"s": 60, "ms": 60_000, "us": 60_000_000, "ns": 60_000_000_000}.get(unit)
    if per_min is None:
        return ts.astype("datetime64[m]").view(np.int64)
    return ts.view(np.int64) // per_min


def hour_label(ts: np.ndarray) -> np.ndarray:
    """Start of the clock hour containing each timestamp: the hourly bar's label."""
    return ts.astype("datetime64[h]").astype("datetime64[ns]")
