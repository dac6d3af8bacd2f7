"""The one session calendar: trading dates, in-session tests, bar labels, holidays and early
closes.

Used to build bars in research and in the live feed alike, and by the trading rules (parity
rule 3). A CME Globex trading day opens 17:00 exchange time on the previous calendar day and
closes 16:00; the hour 16:00-17:00 is the maintenance break and Friday 16:00 - Sunday 17:00
is the weekend. Timestamps are naive exchange-local times; `to_exchange_time` converts a UTC
live feed.

Holidays and early closes come from ``pandas_market_calendars`` (the CME product calendars:
``CME_Equity``, ``CMEGlobex_Metals``, ``CMEGlobex_Energy``, ``CMEGlobex_FX`` ...), named per
session in ``configs/instruments.yml``; nothing here is a hand-written holiday list. A
session whose close is earlier than usual (the Friday after Thanksgiving, 3 July, 24
December, the equity halts on US holidays) moves the session exit with it: the exit is
decided one bar before the session's last bar, as on a normal day (14:00 close -> 15:00 fill
before the 16:00 close), and no entry is taken from that bar on.
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
    exchange: str | None = None  # a pandas_market_calendars name; None: no holidays, no early closes

    @property
    def overnight(self) -> bool:
        return _minutes(self.open) > _minutes(self.close)

    @property
    def hourly_bars(self) -> int:
        """Hourly bars in a regular session: the clock hours its minutes touch (Globex
        17:00 -> 16:00: 23). Feature warm-ups in sessions convert to hourly bars with it."""
        start = _minutes(self.open)
        length = (_minutes(self.close) - start) % _MIN_PER_DAY or _MIN_PER_DAY
        return len({(start + m) // 60 for m in range(length)})

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

    # -- holidays and early closes (from the exchange calendar) ----------------------------------

    def _special(self) -> _SpecialDays:
        return _special_days(self.exchange, self.timezone, _minutes(self.close)) if self.exchange else _NO_SPECIAL

    def is_holiday(self, trading_dates: np.ndarray) -> np.ndarray:
        """True for weekday trading dates the exchange calendar has no session on."""
        d = np.asarray(trading_dates).astype("datetime64[D]")
        return np.isin(d, self._special().holidays)

    def trading_days(self, start, end) -> np.ndarray:
        """Trading dates (datetime64[D]) from ``start`` to ``end``, both included (their dates;
        a time of day is dropped): the weekdays the exchange calendar has a session on (every
        weekday without an exchange)."""
        lo, hi = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
        d = pd.bdate_range(lo, hi).values.astype("datetime64[D]")
        return d[~self.is_holiday(d)]

    def close_at(self, trading_dates: np.ndarray) -> np.ndarray:
        """Exchange-local close (datetime64[m]) of each trading date's session: the usual
        close, or the exchange calendar's early close."""
        d = np.asarray(trading_dates).astype("datetime64[D]")
        out = self.session_close(d)
        sp = self._special()
        if len(sp.early_dates):
            i = np.searchsorted(sp.early_dates, d)
            i = np.clip(i, 0, len(sp.early_dates) - 1)
            hit = sp.early_dates[i] == d
            out = np.where(hit, d.astype("datetime64[m]") + sp.early_minutes[i].astype("timedelta64[m]"), out)
        return out

    def exit_bar_at(self, trading_dates: np.ndarray, exit_bar: time) -> np.ndarray:
        """Start (datetime64[m]) of the bar at whose close a position still open is exited
        in each trading date's session: ``exit_bar`` on a normal day; on a shortened session
        the same number of bars before its last bar (so the exit fills inside the session).
        Entries are taken only from bars that start before it."""
        d = np.asarray(trading_dates).astype("datetime64[D]")
        normal_last = _last_bar_start(_minutes(self.close))
        offset = normal_last - _minutes(exit_bar)
        close = self.close_at(d)
        close_min = (close - d.astype("datetime64[m]")).astype(np.int64)
        last = np.floor_divide(close_min - 1, 60) * 60  # start of the clock hour holding the last minute
        return d.astype("datetime64[m]") + (last - offset).astype("timedelta64[m]")

    def exit_window(self, ts: np.datetime64, exit_bar: time) -> tuple[np.datetime64, np.datetime64]:
        """(exit bar start, session close) of the session of the bar starting at ``ts``."""
        d = self.trading_date(np.array([ts]))
        return self.exit_bar_at(d, exit_bar)[0], self.close_at(d)[0]

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


def _last_bar_start(close_minute: int) -> int:
    """Minute of day of the hourly bar holding a session's last minute (15:00 for 16:00)."""
    return (close_minute - 1) // 60 * 60


@dataclass(frozen=True)
class _SpecialDays:
    holidays: np.ndarray  # datetime64[D], weekdays without a session
    early_dates: np.ndarray  # datetime64[D], sorted
    early_minutes: np.ndarray  # int64 minute of day of each early close


_NO_SPECIAL = _SpecialDays(np.empty(0, "datetime64[D]"), np.empty(0, "datetime64[D]"), np.empty(0, np.int64))
_SPECIAL_CACHE: dict[tuple, _SpecialDays] = {}
CALENDAR_YEARS = ("1990-01-01", "2045-12-31")


def _special_days(exchange: str, timezone: str, normal_close: int) -> _SpecialDays:
    """Holidays and early closes of ``exchange`` from pandas_market_calendars, in exchange time."""
    key = (exchange, timezone, normal_close)
    if key not in _SPECIAL_CACHE:
        import pandas_market_calendars as mcal

        sched = mcal.get_calendar(exchange).schedule(*CALENDAR_YEARS)
        days = sched.index.values.astype("datetime64[D]")
        close = sched["market_close"].dt.tz_convert(timezone).dt.tz_localize(None).values.astype("datetime64[m]")
        close_min = (close - days.astype("datetime64[m]")).astype(np.int64)
        weekdays = pd.bdate_range(*CALENDAR_YEARS).values.astype("datetime64[D]")
        early = close_min < normal_close
        _SPECIAL_CACHE[key] = _SpecialDays(np.setdiff1d(weekdays, days), days[early], close_min[early])
    return _SPECIAL_CACHE[key]


def calendar_names() -> list[str]:
    import pandas_market_calendars as mcal

    return list(mcal.get_calendar_names())


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
