"""Is the live engine's heartbeat stale?

The engine's heartbeat advances with every feed item, so it stands still while the market is
closed (weekends, the daily maintenance break, holidays, after an early close). Its age is
therefore counted in *open-market* seconds: the time since the heartbeat during which at
least one of the engine's instruments was in session by the one session calendar. A heartbeat
from Friday's close is not stale on Saturday; it is ten minutes stale at ten past Sunday's open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from rooney_core.sessions import SessionCalendar

# Counting open minutes over more than this span is pointless: any threshold is passed.
_MAX_SPAN = timedelta(days=10)


@dataclass(frozen=True)
class HeartbeatCheck:
    """``stale``: the heartbeat is older than the limit in open-market seconds. ``age_s`` is
    its wall-clock age, ``open_age_s`` the open-market part of it (None without a heartbeat)."""

    stale: bool
    heartbeat: str | None
    age_s: float | None
    open_age_s: float | None
    max_open_age_s: float
    reason: str


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def open_market_seconds(start: datetime, end: datetime, calendars: Sequence[SessionCalendar]) -> float:
    """Seconds in [start, end) (minute resolution) during which any of ``calendars`` is in
    session, holidays and early closes included. No calendars: the wall-clock seconds."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        return 0.0
    if not calendars:
        return (end - start).total_seconds()
    start = max(start, end - _MAX_SPAN)
    minutes = pd.date_range(start.replace(second=0, microsecond=0), end, freq="min", inclusive="left")
    if len(minutes) == 0:
        return 0.0
    open_any = np.zeros(len(minutes), dtype=bool)
    for cal in calendars:
        local = cal.to_exchange_time(minutes).values.astype("datetime64[m]")
        days = cal.trading_date(local)
        open_any |= cal.in_session(local) & ~cal.is_holiday(days) & (local < cal.close_at(days))
    return float(open_any.sum() * 60)


def check_heartbeat(heartbeat: str | datetime | None, now: datetime, max_open_age_s: float,
                    calendars: Sequence[SessionCalendar] = ()) -> HeartbeatCheck:
    """Judge a heartbeat (ISO time, as the engine writes it) at ``now``. No heartbeat at all is
    not stale (the engine has not taken a feed item yet); an unreadable one is."""
    if heartbeat is None:
        return HeartbeatCheck(False, None, None, None, max_open_age_s, "no heartbeat yet")
    try:
        beat = _utc(heartbeat if isinstance(heartbeat, datetime) else datetime.fromisoformat(str(heartbeat)))
    except ValueError:
        return HeartbeatCheck(True, str(heartbeat), None, None, max_open_age_s,
                              f"the heartbeat {heartbeat!r} is not a time")
    now = _utc(now)
    age = (now - beat).total_seconds()
    open_age = open_market_seconds(beat, now, calendars)
    stale = open_age > max_open_age_s
    reason = (f"no heartbeat for {open_age / 60:.0f} open-market minutes (limit {max_open_age_s / 60:g}); "
              f"last {beat.isoformat(timespec='seconds')}, {age / 60:.0f} minutes ago") if stale else \
        f"heartbeat {age:.0f} s ago ({open_age:.0f} s of open market)"
    return HeartbeatCheck(stale, beat.isoformat(timespec="seconds"), age, open_age, max_open_age_s, reason)
