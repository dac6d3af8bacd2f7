"""The real CME calendar (pandas_market_calendars): holidays and early closes, the session
exit on a shortened session, no entry whose fill or forced exit would leave the session, and
bars, features and daily bars on the same calendar. On the real CME minute bars, no position
crosses a session break (the 2026 Presidents' Day halt at 12:00 included)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import realdata_dir
from test_strategy import bars, low, mid, run

from rooney_core.backtest.runner import run_backtest
from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.sample_market import load_sample_market, write_sample_data

CFG = load_config()
ES, GC, E6 = CFG.instrument("ES"), CFG.instrument("GC"), CFG.instrument("6E")
EXIT_BAR = CFG.strategy.exits.session_exit_bar


def _d(*days: str) -> np.ndarray:
    return np.array(days, dtype="datetime64[D]")


def test_holidays_and_early_closes_come_from_the_exchange_calendar():
    days = _d("2023-11-24", "2023-07-03", "2024-12-24", "2023-12-25", "2024-03-05")
    cal = ES.calendar
    assert cal.exchange == "CME_Equity"
    assert [str(t)[11:] for t in cal.close_at(days)] == ["12:00", "12:00", "12:00", "16:00", "16:00"]
    assert [str(t)[11:] for t in cal.exit_bar_at(days, EXIT_BAR)] == ["10:00", "10:00", "10:00", "14:00", "14:00"]
    assert list(cal.is_holiday(days)) == [False, False, False, True, False]
    assert cal.is_holiday(_d("2024-01-01"))[0]  # New Year's Day: no session
    # Good Friday 2024 (a payrolls day) and Thanksgiving 2023 were short sessions, not holidays
    assert [str(t)[11:] for t in cal.close_at(_d("2024-03-29", "2023-11-23"))] == ["08:15", "12:00"]
    # other products keep other hours: metals close 12:45 after Thanksgiving, FX 12:15 on 24 December
    assert str(GC.calendar.close_at(_d("2023-11-24"))[0])[11:] == "12:45"
    assert str(GC.calendar.exit_bar_at(_d("2023-11-24"), EXIT_BAR)[0])[11:] == "11:00"
    assert str(E6.calendar.close_at(_d("2024-12-24"))[0])[11:] == "12:15"
    assert str(E6.calendar.exit_bar_at(_d("2024-12-24"), EXIT_BAR)[0])[11:] == "11:00"


def _short_session(day: str, low_at: str) -> pd.DataFrame:
    """The hourly bars of a session that closes at 12:00: 17:00 the evening before .. 11:00,
    neutral except one low-IBS bar."""
    prev = str((pd.Timestamp(day) - pd.Timedelta(days=1)).date())
    starts = [f"{prev} {h:02d}:00" for h in range(17, 24)] + [f"{day} {h:02d}:00" for h in range(0, 12)]
    return bars([low(t) if t.endswith(low_at) and t.startswith(day) else mid(t) for t in starts])


@pytest.mark.parametrize("day", ["2023-11-24", "2023-07-03", "2024-12-24"])
def test_a_shortened_session_exits_inside_it_like_a_normal_day(day):
    """Entry filled at 09:00: the session exit is decided at the 10:00 bar's close and fills
    at 11:00, inside the session that closes at 12:00 (on a normal day: 14:00 -> 15:00)."""
    r = run(_short_session(day, "08:00"))
    assert r.open_position is None
    [t] = r.trades.to_dict("records")
    assert t["entry_time"] == pd.Timestamp(f"{day} 09:00")
    assert t["exit_reason"] == "session_exit" and t["exit_signal_time"] == pd.Timestamp(f"{day} 10:00")
    assert t["exit_time"] == pd.Timestamp(f"{day} 11:00") < pd.Timestamp(f"{day} 12:00")


@pytest.mark.parametrize("day", ["2023-11-24", "2023-07-03", "2024-12-24"])
def test_no_entry_whose_fill_or_forced_exit_would_leave_the_session(day):
    # a signal at 09:00 still fits: fill 10:00, exit decided at 10:00, filled 11:00
    r = run(_short_session(day, "09:00"))
    [t] = r.trades.to_dict("records")
    assert t["exit_time"] == pd.Timestamp(f"{day} 11:00")
    # at 10:00 (the exit bar) or 11:00 (the last bar) it would not: no entry at all
    for late in ("10:00", "11:00"):
        r = run(_short_session(day, late))
        assert r.trades.empty and r.open_position is None
        assert not (r.decisions["event"] == "entry_order").any()
    # the same 10:00 signal on a normal day is an entry (windows end at 13:00)
    normal = bars([mid("2024-03-05 09:00"), low("2024-03-05 10:00"), mid("2024-03-05 11:00"),
                   mid("2024-03-05 12:00")])
    assert (run(normal).decisions["event"] == "entry_order").sum() == 1


def test_bars_features_and_daily_bars_use_the_same_calendar(tmp_path):
    """The sample data follows the exchange calendar (no session on holidays, early closes
    end the session); the hourly and daily bars built from it, and the features' daily
    inputs, are on those same sessions."""
    write_sample_data(tmp_path, ["ES", "NQ"], "2023-11-20", "2023-12-29", seed=1, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=15)
    own = load_session_bars(tmp_path, ES)
    td = ES.calendar.trading_date(own.hourly.index.values)
    assert not ES.calendar.is_holiday(td).any()
    assert np.datetime64("2023-12-25") not in set(td)
    thanksgiving = own.hourly[td == np.datetime64("2023-11-23")]
    assert thanksgiving.index.max() == pd.Timestamp("2023-11-23 11:00")  # halted at 12:00
    black_friday = own.hourly[td == np.datetime64("2023-11-24")]
    assert black_friday.index.max() == pd.Timestamp("2023-11-24 11:00")  # the last bar before the 12:00 close
    daily = own.daily
    assert pd.Timestamp("2023-11-24") in daily.index and pd.Timestamp("2023-12-25") not in daily.index
    assert daily.loc["2023-11-24", "close"] == black_friday["close"].iloc[-1]
    pair = load_session_bars(tmp_path, CFG.instrument("NQ")).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, "ES", own.hourly, pair), ["d_ibs"])
    # the day after Black Friday's session, d_ibs is that shortened session's IBS
    d = daily.loc["2023-11-24"]
    monday = feats.loc["2023-11-27 09:00", "d_ibs"]
    assert monday == pytest.approx((d["close"] - d["low"]) / (d["high"] - d["low"]))


TOPSTEPX = realdata_dir() / "topstepx_2026_1min"


@pytest.mark.skipif(not (TOPSTEPX / "ES_bt.csv").is_file(), reason=f"real CME minute bars not in {TOPSTEPX}")
@pytest.mark.parametrize("symbol", ["ES", "NQ", "GC", "SI", "CL", "NG"])
def test_no_position_crosses_a_session_break_on_real_cme_bars(symbol):
    """Veto off (every base trade), on the real files: each trade enters and exits in one
    session. Before the calendar, an ES position entered at 10:00 on Presidents' Day 2026
    (halted at 12:00) was held into the next session."""
    inst = CFG.instrument(symbol)
    own = load_session_bars(TOPSTEPX, inst, **CFG.pipeline.data.gate())
    pair = load_session_bars(TOPSTEPX, CFG.instrument(inst.pair), **CFG.pipeline.data.gate()).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, symbol, own.hourly, pair))
    trades = run_backtest(own.hourly, feats, inst, CFG.strategy, veto_enabled=False).trades
    assert len(trades) > 20
    cal = inst.calendar
    entry_day = cal.trading_date(trades["entry_time"].to_numpy())
    exit_day = cal.trading_date(trades["exit_time"].to_numpy())
    crossing = trades[entry_day != exit_day]
    assert crossing.empty, crossing[["signal_time", "entry_time", "exit_time", "exit_reason"]]
    closes = cal.close_at(exit_day).astype("datetime64[ns]")
    assert (trades["exit_time"].to_numpy() < closes).all()
    if symbol == "ES":  # the halt: trades of that session are out by 11:00
        halt = trades[entry_day == np.datetime64("2026-02-16")]
        assert (halt["exit_time"] <= pd.Timestamp("2026-02-16 11:00")).all()
