"""Incremental session bars: minute (or n-minute) bars in one at a time, closed hourly and
daily session bars out, identical to the batch build (``rooney_core/data/bars.py``).

One code path with the batch build (parity rule 3): a minute's hour is
:func:`~rooney_core.data.bars.hour_key`, an hour's session is
:func:`~rooney_core.data.bars.session_key` (the calendar's trading date of the hour's start),
in/out of session is :meth:`SessionCalendar.in_session`, and OHLCV are merged by
:func:`~rooney_core.data.bars.aggregate_bars` (the minutes of an hour, then the hours of a
session). Only *when* a bar is emitted is live-specific:

* an hourly bar [H, H+1h) is closed when a minute at or after H+1h arrives (replay: the next
  bar) or when :meth:`SessionBarBuilder.close_until` is called with a clock time >= H+1h (live:
  the clock); a partial hour is never emitted;
* a daily bar is closed once every hour that can belong to its session has closed (for Globex
  the 15:00 hour, so at 16:00; see :func:`daily_bar_final_at`), by a later minute or the clock.

Minutes are checked one by one with the raw-file rules (``rooney_core/data/raw.py``): a bad
minute (NaN or non-positive price, High < Low, High/Low not bounding Open/Close, negative
volume, off the minute grid, out of order, a conflicting duplicate, late for an hour already
closed) raises :class:`BadBarError` naming instrument, bar time and rule, never enters a bar
and leaves the builder usable. The repairs config is applied as the batch reader applies it:
``out_of_session: drop`` and ``zero_volume: drop`` drop (and count) such minutes,
``duplicates: drop_exact`` drops an identical repeat; where the batch reader would refuse the
whole file (``error``) the minute is rejected. A live feed cannot be sorted, so a minute out
of order is always rejected, whatever ``unsorted`` says.

Timestamps are naive exchange-local bar starts, as in the raw files (a UTC feed converts with
``SessionCalendar.to_exchange_time`` first).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from rooney_core.config import Repairs
from rooney_core.data.bars import BAR_COLUMNS, HOUR_SECONDS, aggregate_bars, hour_key, session_key
from rooney_core.errors import RooneyError
from rooney_core.sessions import SessionCalendar

log = logging.getLogger(__name__)

HOURLY, DAILY = "hourly", "daily"
_INF = math.inf
_NONE: list = []  # returned (never mutated) when nothing closed
_MINUTES_OF_HOUR = np.arange(60).astype("timedelta64[m]")


class BadBarError(RooneyError, ValueError):
    """A minute bar refused by the live builder: it never enters a bar. Names the instrument,
    the bar's time and the rule (the raw-file rule names where one exists)."""

    def __init__(self, symbol: str, timestamp: str, rule: str, detail: str):
        self.symbol = symbol
        self.timestamp = timestamp
        self.rule = rule
        self.detail = detail
        super().__init__(f"{symbol} {timestamp}: [{rule}] {detail}; bar rejected")


@dataclass(frozen=True, slots=True)
class ClosedBar:
    """A closed hourly bar (labelled by its start) or daily bar (labelled by its trading
    date, at midnight), as one row of the batch frames."""

    symbol: str
    kind: str  # HOURLY or DAILY
    timestamp: np.datetime64  # datetime64[ns], the batch frames' index value
    open: float
    high: float
    low: float
    close: float
    volume: float

    def values(self) -> tuple[float, float, float, float, float]:
        return (self.open, self.high, self.low, self.close, self.volume)


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """What one minute did: the bars it closed (hourly before daily, oldest first) and, if a
    repair dropped it, which (``out_of_session_dropped`` ...), as in the batch repairs."""

    closed: tuple[ClosedBar, ...] = ()
    dropped: str | None = None


def _ts_text(epoch_s: int) -> str:
    return str(np.datetime64(int(epoch_s), "s")).replace("T", " ")


def epoch_seconds(ts) -> int:
    """A naive exchange-local timestamp (numpy, pandas, datetime or ISO text) as epoch seconds.

    Raises ValueError for a timezone-aware timestamp or one that is not a whole second."""
    if isinstance(ts, np.datetime64):
        ns = int(ts.astype("datetime64[ns]").astype(np.int64))
    else:
        if isinstance(ts, datetime | pd.Timestamp) and ts.tzinfo is not None:
            raise ValueError(f"timestamp {ts} carries a time zone; bars are naive exchange-local time")
        t = pd.Timestamp(ts)
        if t.tzinfo is not None:
            raise ValueError(f"timestamp {ts} carries a time zone; bars are naive exchange-local time")
        ns = int(t.as_unit("ns").value)
    if ns % 1_000_000_000:
        raise ValueError(f"timestamp {ts} is not a whole second")
    return ns // 1_000_000_000


def daily_bar_final_at(trading_date: np.datetime64, calendar: SessionCalendar) -> int:
    """Epoch second from which the daily bar of ``trading_date`` can gain no more hours.

    That is the end of the last hour whose :func:`session_key` is this date and which can hold
    an in-session minute: the hour holding the session's last minute (the close rounded up to
    the hour: 16:00 for Globex, 17:00 for a 16:15 close), or, when the next session opens
    off the hour (17:30), the hour that opening minute falls in if it still carries this date.
    """
    d = np.array([trading_date], dtype="datetime64[D]")
    close_s = int(calendar.session_close(d)[0].astype("datetime64[s]").astype(np.int64))
    final = -(-close_s // HOUR_SECONDS) * HOUR_SECONDS
    next_open = int(calendar.session_open(d + np.timedelta64(1, "D"))[0].astype("datetime64[s]").astype(np.int64))
    hour = hour_key(next_open) * HOUR_SECONDS
    if hour < next_open and session_key(np.array([hour], dtype="datetime64[s]"), calendar)[0] == d[0]:
        final = max(final, hour + HOUR_SECONDS)
    return final


def missing_session_hours(calendar: SessionCalendar, after, before) -> np.ndarray:
    """Starts (datetime64[ns]) of the hours strictly between the hourly bars ``after`` and
    ``before`` that hold an in-session minute: hours a feed with no gap has a bar for.
    Weekends and the daily break are not in session; holidays and early closes are left out
    where the calendar knows them (``is_holiday``, ``close_at``)."""
    a = np.datetime64(after, "ns").astype("datetime64[h]")
    b = np.datetime64(before, "ns").astype("datetime64[h]")
    hours = np.arange(a + np.timedelta64(1, "h"), b, np.timedelta64(1, "h")).astype("datetime64[ns]")
    if not len(hours):
        return hours
    minutes = (hours[:, None] + _MINUTES_OF_HOUR.astype("timedelta64[ns]")).ravel()
    live = calendar.in_session(minutes)
    days = calendar.trading_date(minutes)
    if hasattr(calendar, "is_holiday"):
        live &= ~calendar.is_holiday(days)
    if hasattr(calendar, "close_at"):
        live &= minutes < calendar.close_at(days).astype("datetime64[ns]")
    return hours[live.reshape(len(hours), 60).any(axis=1)]


@dataclass
class _Hour:
    key: int  # hour_key of its minutes
    rows: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # OHLCV


@dataclass
class _Session:
    date: np.datetime64  # datetime64[D]
    final_at: int  # epoch seconds, daily_bar_final_at
    hours: list[ClosedBar] = field(default_factory=list)


class SessionBarBuilder:
    """One instrument's incremental hourly and daily session bars.

    ``add(ts, open, high, low, close, volume)`` takes one minute (any interval dividing an
    hour; ``interval_minutes`` additionally checks the grid), ``close_until(now)`` advances
    the clock. Both return the bars they closed. ``repairs`` counts dropped minutes under the
    batch reader's names, ``rejected`` counts refused minutes by rule.
    """

    def __init__(
        self,
        symbol: str,
        calendar: SessionCalendar,
        repairs: Repairs | None = None,
        *,
        interval_minutes: int | None = None,
    ):
        if interval_minutes is not None and (interval_minutes < 1 or 60 % interval_minutes):
            raise ValueError(f"{symbol}: interval_minutes must divide 60, got {interval_minutes}")
        self.symbol = symbol
        self.calendar = calendar
        self.rules = repairs or Repairs()
        self.interval_minutes = interval_minutes
        self.repairs: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self._hour: _Hour | None = None
        self._session: _Session | None = None
        self._last_ts: int | None = None  # last well-formed minute (also if dropped by a repair)
        self._last_values: tuple[float, ...] | None = None
        self._closed_through = -(2**62)  # minutes before this hour boundary belong to closed hours
        self._clock: int | None = None
        self._next_close = 2**62  # epoch s at which the open hour or session closes
        self._session_hour: int | None = None
        self._session_minutes: list[bool] = []

    # -- state -----------------------------------------------------------------------------
    @property
    def last_minute(self) -> np.datetime64 | None:
        """Start of the last well-formed minute taken (None before the first)."""
        return None if self._last_ts is None else np.datetime64(self._last_ts, "s")

    @property
    def clock(self) -> np.datetime64 | None:
        """Latest time the builder knows has passed (a minute's start or ``close_until``)."""
        return None if self._clock is None else np.datetime64(self._clock, "s")

    @property
    def open_hour(self) -> np.datetime64 | None:
        """Start of the hour being built (not closed, never emitted as it is)."""
        return None if self._hour is None else np.datetime64(self._hour.key, "h").astype("datetime64[ns]")

    # -- input -----------------------------------------------------------------------------
    def add(self, ts, open: float, high: float, low: float, close: float, volume: float) -> BarUpdate:  # noqa: A002
        """Take one minute bar labelled by its start ``ts`` (naive exchange-local)."""
        try:
            s = epoch_seconds(ts)
        except (ValueError, TypeError) as exc:
            raise self._bad(str(ts), "timestamp-format", str(exc)) from None
        return self.add_epoch(s, open, high, low, close, volume)

    def add_epoch(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> BarUpdate:  # noqa: A002, C901
        """:meth:`add` with the bar start as integer epoch seconds (exchange-local wall time)."""
        ts = int(ts)
        try:
            o, h, lo, c, v = float(open), float(high), float(low), float(close), float(volume)
        except (TypeError, ValueError) as exc:
            raise self._bad(_ts_text(ts), "bad-number", f"a price or the volume is not a number ({exc})") from None
        values = (o, h, lo, c, v)
        # the raw-file rules, in the batch reader's order: values, then order, then repairs.
        # One chained comparison passes every good bar (NaN fails any comparison).
        if not (0.0 < lo <= o <= h < _INF and lo <= c <= h and 0.0 <= v < _INF) or ts % 60:
            raise self._value_problem(ts, values)
        if self.interval_minutes is not None and (ts // 60) % self.interval_minutes:
            raise self._bad(_ts_text(ts), "interval", f"timestamp is not on the {self.interval_minutes}-minute grid")
        last = self._last_ts
        if last is not None and ts < last:
            raise self._bad(_ts_text(ts), "unsorted",
                         f"earlier than the previous bar {_ts_text(last)}; a live feed cannot be re-sorted")
        if last is not None and ts == last:
            if self.rules.duplicates == "drop_exact" and values == self._last_values:
                return self._drop(ts, "exact_duplicates_dropped")
            raise self._bad(_ts_text(ts), "duplicate-timestamp",
                         "the same timestamp as the previous bar"
                         + ("" if self.rules.duplicates == "error" else " with different values"))
        if ts < self._closed_through:
            raise self._bad(_ts_text(ts), "late",
                         f"its hour was closed at {_ts_text(self._closed_through)} (the clock passed it)")
        in_session = self._in_session(ts)
        if not in_session and self.rules.out_of_session == "error":
            raise self._bad(_ts_text(ts), "out-of-session",
                            f"bar lies outside the {self.calendar.open:%H:%M}-{self.calendar.close:%H:%M} "
                            f"{self.calendar.timezone} session (maintenance break or weekend)")
        # well-formed and in order: time has passed up to this bar's start
        self._last_ts, self._last_values = ts, values
        closed = self._advance(ts)
        if not in_session:
            return self._drop(ts, "out_of_session_dropped", closed)
        if v == 0 and self.rules.zero_volume == "drop":
            return self._drop(ts, "zero_volume_dropped", closed)
        hour = self._hour
        if hour is None:
            hour = self._hour = _Hour(hour_key(ts))
            self._update_next_close()
        hour.rows.append(values)
        return BarUpdate(tuple(closed)) if closed else _NOTHING

    def close_until(self, now) -> list[ClosedBar]:
        """Advance the clock to ``now`` (exchange-local): close the hour if ``now`` >= its end
        and the session once every hour it can hold has closed. Minutes of an hour closed
        this way are refused afterwards as ``late``; call with ``now`` minus the feed's
        latency if minutes can arrive after their hour's end."""
        return self.close_until_epoch(epoch_seconds(now))

    def close_until_epoch(self, now: int) -> list[ClosedBar]:
        closed = self._advance(int(now))
        self._closed_through = max(self._closed_through, hour_key(int(now)) * HOUR_SECONDS)
        return closed

    # -- internals -------------------------------------------------------------------------
    def _advance(self, now: int) -> list[ClosedBar]:
        if self._clock is None or now > self._clock:
            self._clock = now
        if now < self._next_close:
            return _NONE
        closed: list[ClosedBar] = []
        hour = self._hour
        if hour is not None and now >= (hour.key + 1) * HOUR_SECONDS:
            self._hour = None
            bar = self._close_hour(hour)
            date = session_key(np.array([bar.timestamp]), self.calendar)[0]
            session = self._session
            if session is not None and session.date != date:  # daily_bar_final_at closed it already; a guard
                self._session = None
                closed.append(self._close_session(session))
                session = None
            closed.append(bar)
            if session is None:
                session = self._session = _Session(date, daily_bar_final_at(date, self.calendar))
            session.hours.append(bar)
        session = self._session
        if session is not None and now >= session.final_at:
            self._session = None
            closed.append(self._close_session(session))
        self._update_next_close()
        return closed

    def _update_next_close(self) -> None:
        hour_end = (self._hour.key + 1) * HOUR_SECONDS if self._hour is not None else 2**62
        self._next_close = min(hour_end, self._session.final_at if self._session is not None else 2**62)

    def _close_hour(self, hour: _Hour) -> ClosedBar:
        rows = np.array(hour.rows, dtype=np.float64)
        keys = np.full(len(rows), hour.key, dtype=np.int64)
        _, cols = aggregate_bars(keys, *rows.T)
        label = np.datetime64(hour.key, "h").astype("datetime64[ns]")
        return ClosedBar(self.symbol, HOURLY, label, *(float(cols[k][0]) for k in BAR_COLUMNS))

    def _close_session(self, session: _Session) -> ClosedBar:
        hours = session.hours
        label = np.datetime64(session.date, "D").astype("datetime64[ns]")
        rows = np.array([b.values() for b in hours], dtype=np.float64)
        _, cols = aggregate_bars(np.full(len(hours), label), *rows.T)
        return ClosedBar(self.symbol, DAILY, label, *(float(cols[k][0]) for k in BAR_COLUMNS))

    def _drop(self, ts: int, what: str, closed: list[ClosedBar] | None = None) -> BarUpdate:
        self.repairs[what] = self.repairs.get(what, 0) + 1
        log.warning("%s %s: repaired: %s", self.symbol, _ts_text(ts), what)
        return BarUpdate(tuple(closed or ()), what)

    def _in_session(self, ts: int) -> bool:
        """The calendar's in_session for this minute; evaluated once per hour for the hour's
        60 minutes (the same call on real timestamps, so holidays or early closes a calendar
        may learn are honoured)."""
        key = hour_key(ts)
        if key != self._session_hour:
            start = np.datetime64(key * HOUR_SECONDS, "s")
            self._session_minutes = self.calendar.in_session(start + _MINUTES_OF_HOUR).tolist()
            self._session_hour = key
        return self._session_minutes[(ts % HOUR_SECONDS) // 60]

    def _value_problem(self, ts: int, values: tuple[float, ...]) -> BadBarError:
        """The first raw-file rule a bar's values or timestamp break (raw.py's order)."""
        o, h, lo, c, v = values
        at = _ts_text(ts)
        for name, x in (("Open", o), ("High", h), ("Low", lo), ("Close", c)):
            if not math.isfinite(x):
                return self._bad(at, "nan", f"{name} is {x}")
        if not math.isfinite(v):
            return self._bad(at, "bad-volume", f"volume is {v}")
        for name, x in (("Open", o), ("High", h), ("Low", lo), ("Close", c)):
            if x <= 0:
                return self._bad(at, "non-positive-price", f"{name} {x:.12g} <= 0")
        if h < lo:
            return self._bad(at, "high-below-low", f"High {h:.12g} < Low {lo:.12g}")
        if h < max(o, c):
            return self._bad(at, "high-below-open-close", f"High {h:.12g} is below Open {o:.12g} or Close {c:.12g}")
        if lo > min(o, c):
            return self._bad(at, "low-above-open-close", f"Low {lo:.12g} is above Open {o:.12g} or Close {c:.12g}")
        if v < 0:
            return self._bad(at, "negative-volume", f"volume {v:.12g} < 0")
        return self._bad(at, "interval", "timestamp is not on a whole minute")

    def _bad(self, ts: str, rule: str, detail: str) -> BadBarError:
        """Count a refused minute; the caller raises the error (no state has changed)."""
        self.rejected[rule] = self.rejected.get(rule, 0) + 1
        return BadBarError(self.symbol, ts, rule, detail)


_NOTHING = BarUpdate()


# --- replay ---------------------------------------------------------------------------------


def minute_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """(epoch seconds int64, open, high, low, close, volume) of a minute-bar frame indexed by
    bar start (``RawBars.to_frame()``; or a raw CSV read as it is, columns renamed)."""
    ts = frame.index.values.astype("datetime64[s]").astype(np.int64)
    return (ts, *(frame[k].to_numpy(dtype=np.float64) for k in BAR_COLUMNS))


def drive(
    builders: Mapping[str, SessionBarBuilder],
    bars: Iterable[tuple],
    *,
    end=None,
    on_reject: Callable[[BadBarError], None] | None = None,
) -> Iterator[tuple[np.datetime64, list[ClosedBar]]]:
    """Run minute bars of several instruments, as a feed delivers them, through their builders
    on one clock.

    ``bars`` are ``(symbol, bar start, open, high, low, close, volume)`` tuples (a feed's
    ``MinuteBar``) in delivery order. When a bar starts later than any before it, every
    builder's clock first advances to that start, so all instruments close the hour ending
    there in the same step (and a pair's hour is closed before the instrument's features are
    computed); then the bar is added. A bar starting earlier than the clock is added as it
    comes and refused by its builder. Yields ``(t, bars closed at clock t)`` for steps that
    closed something; ``end``, if given, is a final clock time. A refused bar goes to
    ``on_reject`` (default: logged) and the run goes on; a symbol without a builder is a
    KeyError.
    """
    report = on_reject or _log_rejected

    def items():
        for sym, ts, o, h, lo, c, v in bars:
            try:
                s = epoch_seconds(ts)
            except (ValueError, TypeError) as exc:
                report(builders[sym]._bad(str(ts), "timestamp-format", str(exc)))
                continue
            yield sym, s, o, h, lo, c, v

    yield from _drive(builders, items(), None if end is None else epoch_seconds(end), report)


def replay(
    builders: Mapping[str, SessionBarBuilder],
    minutes: Mapping[str, pd.DataFrame | tuple[np.ndarray, ...]],
    *,
    end=None,
    on_reject: Callable[[BadBarError], None] | None = None,
) -> Iterator[tuple[np.datetime64, list[ClosedBar]]]:
    """:func:`drive` over minute-bar frames (or :func:`minute_arrays`) per instrument.

    Each instrument's rows come in their own order (a row out of order in a file arrives
    where it stands and is refused, never sorted in), the instruments merged by time.
    ``end`` defaults to one bar interval after the last minute.
    """
    symbols = list(minutes)
    arrays = [minute_arrays(m) if isinstance(m, pd.DataFrame) else m for m in minutes.values()]
    if not any(len(a[0]) for a in arrays):
        return
    ts = np.concatenate([a[0] for a in arrays])
    # a row's delivery time: the latest start so far in its own feed; ties keep file order
    clock = np.concatenate([np.maximum.accumulate(a[0]) for a in arrays if len(a[0])])
    who = np.concatenate([np.full(len(a[0]), i) for i, a in enumerate(arrays)])
    row = np.concatenate([np.arange(len(a[0])) for a in arrays])
    order = np.lexsort((row, who, clock))
    if end is None:
        steps = [d[d > 0] for d in (np.diff(a[0]) for a in arrays if len(a[0]) > 1)]
        interval = min((int(d.min()) for d in steps if len(d)), default=60)
        end_s = int(ts.max()) + min(interval, HOUR_SECONDS)
    else:
        end_s = epoch_seconds(end)
    cols = [[a[k].tolist() for k in range(6)] for a in arrays]
    items = ((symbols[k], c[0][r], c[1][r], c[2][r], c[3][r], c[4][r], c[5][r])
             for k, r, c in ((k, r, cols[k]) for k, r in zip(who[order].tolist(), row[order].tolist(), strict=True)))
    yield from _drive(builders, items, end_s, on_reject)


def _log_rejected(err: BadBarError) -> None:
    log.warning("%s", err)


def _drive(builders, items, end_s: int | None, on_reject) -> Iterator[tuple[np.datetime64, list[ClosedBar]]]:
    report = on_reject or _log_rejected
    todo = list(builders.values())
    clock: int | None = None
    for sym, t, o, h, lo, c, v in items:
        if clock is None or t > clock:
            clock = t
            closed = [bar for b in todo for bar in b.close_until_epoch(t)]
            if closed:
                yield np.datetime64(t, "s"), closed
        try:
            update = builders[sym].add_epoch(t, o, h, lo, c, v)
        except BadBarError as exc:
            report(exc)
            continue
        if update.closed:  # the clock closed them already; kept as a guard
            yield np.datetime64(clock, "s"), list(update.closed)
    if end_s is not None:
        closed = [bar for b in todo for bar in b.close_until_epoch(end_s)]
        if closed:
            yield np.datetime64(end_s, "s"), closed


def bars_frame(bars: Iterable[ClosedBar]) -> pd.DataFrame:
    """Closed bars as a batch-shaped frame (index ``timestamp``, columns open..volume)."""
    bars = list(bars)
    index = pd.DatetimeIndex(np.array([b.timestamp for b in bars], dtype="datetime64[ns]"), name="timestamp")
    return pd.DataFrame(
        {k: np.array([getattr(b, k) for b in bars], dtype=np.float64) for k in BAR_COLUMNS}, index=index
    )
