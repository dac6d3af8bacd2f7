"""The one session calendar: trading dates, the maintenance break, weekends, UTC feeds."""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd
from builders import GLOBEX

from rooney_core.sessions import SessionCalendar, hour_label


def ts(*values: str) -> np.ndarray:
    return np.array(values, dtype="datetime64[s]")


def test_trading_date_rolls_at_the_17_00_open():
    t = ts("2024-12-02 16:59:00", "2024-12-02 17:00:00", "2024-12-01 17:00:00", "2024-12-06 15:59:00")
    assert [str(d) for d in GLOBEX.trading_date(t)] == ["2024-12-02", "2024-12-03", "2024-12-02", "2024-12-06"]


def test_in_session_excludes_the_maintenance_break_and_the_weekend():
    inside = ts("2024-12-01 17:00:00", "2024-12-02 00:00:00", "2024-12-02 15:59:00", "2024-12-06 15:00:00")
    outside = ts("2024-12-02 16:00:00", "2024-12-02 16:59:00", "2024-12-06 17:00:00",
                 "2024-12-07 12:00:00", "2024-12-01 16:59:00")
    assert GLOBEX.in_session(inside).all()
    assert not GLOBEX.in_session(outside).any()


def test_units_do_not_matter():
    t = ts("2024-12-01 17:00:00", "2024-12-02 16:30:00")
    for unit in ("s", "ms", "us", "ns", "m"):
        assert list(GLOBEX.in_session(t.astype(f"datetime64[{unit}]"))) == [True, False]


def test_session_open_and_close():
    d = np.array(["2024-12-02"], dtype="datetime64[D]")
    assert str(GLOBEX.session_open(d)[0]) == "2024-12-01T17:00"
    assert str(GLOBEX.session_close(d)[0]) == "2024-12-02T16:00"


def test_hour_label_is_the_bar_start():
    assert str(hour_label(ts("2024-12-02 09:59:00"))[0])[:19] == "2024-12-02T09:00:00"


def test_utc_live_feed_converts_with_dst():
    # 14:00 UTC is 08:00 CST in winter and 09:00 CDT in summer
    local = GLOBEX.to_exchange_time(pd.to_datetime(["2024-01-15 14:00", "2024-07-15 14:00"]))
    assert [t.hour for t in local] == [8, 9]
    assert local.tz is None


def test_hourly_bars_per_session_come_from_the_calendar():
    """Feature warm-ups in sessions convert to hourly bars with this, not a constant 23."""
    assert GLOBEX.hourly_bars == 23  # 17:00 -> 16:00
    assert SessionCalendar("America/Chicago", time(8, 30), time(15, 15)).hourly_bars == 8  # 08 .. 15
    assert SessionCalendar("America/New_York", time(9, 30), time(16, 0)).hourly_bars == 7  # 09 .. 15
    assert SessionCalendar("Europe/London", time(0, 0), time(0, 0)).hourly_bars == 24
