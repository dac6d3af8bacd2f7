"""Daily P&L in one place (``rooney_core.backtest.daily``): the day grid is the session
calendar's (exchange holidays are not zero-P&L days), marked-to-market daily P&L is the formula
the backtest and the portfolio always used, and the backtest metrics, the portfolio summary and
the tuning objective agree on the same trades."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from builders import GLOBEX

from rooney_core.backtest import daily
from rooney_core.backtest.metrics import daily_equity, equity_by_bar, performance_metrics, sharpe
from rooney_core.config import load_config
from rooney_core.monitoring import health, performance, signals
from rooney_core.monitoring.config import HealthLimits
from rooney_core.portfolio import PortfolioResult, daily_pnl, portfolio_summary
from rooney_core.training.config import load_training_config
from rooney_core.training.evaluation import backtest_daily_pnl
from rooney_core.training.splits import Fold
from rooney_core.training.tuning import TradeSet, fold_fit, selected_sharpe

CFG = load_config()
CME = CFG.instrument("ES").calendar  # CME_Equity: no session on 2024-12-25 nor 2025-01-01
CHRISTMAS, NEW_YEAR = np.datetime64("2024-12-25"), np.datetime64("2025-01-01")
CAPITAL = 100_000.0


def session_hours(days: np.ndarray) -> np.ndarray:
    """Hourly bar starts of the Globex sessions of ``days`` (17:00 the evening before .. 15:00)."""
    offsets = np.r_[np.arange(-7, 0), np.arange(0, 16)].astype("timedelta64[h]")
    return (days.astype("datetime64[h]")[:, None] + offsets[None, :]).ravel().astype("datetime64[ns]")


def intraday_trades(days: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """One trade on most days (always the first and the last), 10:00 signal, 11:00 entry,
    14:00 exit, flat at every session's end."""
    rng = np.random.default_rng(seed)
    keep = rng.random(len(days)) < 0.7
    keep[0] = keep[-1] = True
    d = pd.DatetimeIndex(days[keep].astype("datetime64[ns]"))
    n = len(d)
    return pd.DataFrame({
        "signal_time": d + pd.Timedelta(hours=10), "entry_time": d + pd.Timedelta(hours=11),
        "exit_time": d + pd.Timedelta(hours=14), "entry_price": 5000.0 + rng.normal(0, 5, n),
        "contracts": 1, "pnl_net": rng.normal(40, 400, n).round(2),
        "f": rng.random(n), "win": rng.random(n) < 0.5})


# -- the day grid --------------------------------------------------------------------------------


def test_the_day_grid_is_the_session_calendars_without_its_holidays():
    grid = CME.trading_days("2024-12-20", "2025-01-03")
    assert CHRISTMAS not in grid and NEW_YEAR not in grid
    assert np.datetime64("2024-12-24") in grid and np.datetime64("2024-12-31") in grid  # early closes trade
    weekdays = pd.bdate_range("2024-12-20", "2025-01-03").values.astype("datetime64[D]")
    assert list(grid) == [d for d in weekdays if d not in (CHRISTMAS, NEW_YEAR)]
    # a time of day is dropped: both ends are dates, both included
    assert list(CME.trading_days("2024-12-23 17:00", "2024-12-27 09:00")) == list(
        np.array(["2024-12-23", "2024-12-24", "2024-12-26", "2024-12-27"], dtype="datetime64[D]"))
    # a calendar without an exchange has no holidays: every weekday
    assert list(GLOBEX.trading_days("2024-12-20", "2025-01-03")) == list(weekdays)
    assert daily.exit_days_grid(np.array([], dtype="datetime64[D]"), CME).size == 0


def test_no_calendar_falls_back_to_weekdays_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="rooney_core.backtest.daily"):
        grid = daily.trading_days("2024-12-20", "2025-01-03", None)
    assert CHRISTMAS in grid and NEW_YEAR in grid
    assert "no session calendar" in caplog.text


def test_realised_by_day_fills_zeros_and_keeps_an_exit_off_the_grid():
    days = CME.trading_days("2024-12-23", "2024-12-27")
    exit_day = np.array(["2024-12-23", "2024-12-23", "2024-12-25", "2024-12-27"], dtype="datetime64[D]")
    out = daily.realised_by_day(np.array([100.0, -30.0, 5.0, 20.0]), exit_day, days)
    assert list(out.index.strftime("%m-%d")) == ["12-23", "12-24", "12-25", "12-26", "12-27"]
    assert out.tolist() == [70.0, 0.0, 5.0, 0.0, 20.0]  # a holiday exit (if one ever happens) counts
    none = daily.realised_by_day(np.empty(0), np.empty(0, dtype="datetime64[D]"), days)
    assert none.tolist() == [0.0] * 4 and none.dtype == float


# -- marked to market ----------------------------------------------------------------------------


def test_marked_to_market_is_the_old_formula():
    rng = np.random.default_rng(1)
    days = CME.trading_days("2024-11-01", "2025-02-28")
    ts = session_hours(days)
    equity = pd.Series(CAPITAL + np.cumsum(rng.normal(0, 50, len(ts))), index=pd.DatetimeIndex(ts), name="equity")
    # the backtest: the last bar of each session, then the difference (first day: minus capital)
    td = CME.trading_date(ts)
    last = np.r_[td[1:] != td[:-1], True]
    old_daily_equity = pd.Series(equity.to_numpy()[last],
                                 index=pd.DatetimeIndex(td[last].astype("datetime64[ns]"), name="date"))
    pd.testing.assert_series_equal(daily_equity(ts, equity.to_numpy(), CME), old_daily_equity)
    old_backtest = old_daily_equity.diff().fillna(old_daily_equity.iloc[0] - CAPITAL)
    pd.testing.assert_series_equal(daily.marked_to_market(old_daily_equity, CAPITAL), old_backtest)

    class Result:
        equity = old_daily_equity

    pd.testing.assert_series_equal(backtest_daily_pnl(Result, CAPITAL), old_backtest)
    # the portfolio: per bar equity grouped by trading date, then the same difference
    g = equity.groupby(td.astype("datetime64[ns]")).last()
    old_portfolio = g.diff().fillna(g.iloc[0] - CAPITAL)
    new = daily_pnl(equity, CME, CAPITAL)
    np.testing.assert_array_equal(new.to_numpy(), old_portfolio.to_numpy())
    assert (new.index == old_portfolio.index).all()
    assert new.sum() == pytest.approx(equity.iloc[-1] - CAPITAL)
    assert len(daily.marked_to_market(equity.iloc[:0], CAPITAL, CME)) == 0
    with pytest.raises(ValueError, match="time order"):
        daily.marked_to_market(equity.iloc[::-1], CAPITAL, CME)


# -- the three users agree ----------------------------------------------------------------------


def test_backtest_portfolio_and_tuning_agree_on_the_same_trades():
    """Intraday trades over a window holding Christmas and New Year: the backtest's metrics,
    the portfolio summary and the tuning objective read the same daily P&L. The old tuning
    grid (pd.bdate_range) counted the holidays as zero days: a different Sharpe."""
    days = CME.trading_days("2024-12-02", "2025-01-17")
    ts = session_hours(days)
    trades = intraday_trades(days)
    close = 5000.0 + np.cumsum(np.random.default_rng(2).normal(0, 3, len(ts)))
    equity, _ = equity_by_bar(ts, close, trades, 50.0, CAPITAL)

    backtest = performance_metrics(trades, daily_equity(ts, equity, CME), CAPITAL, exposure=0.0)
    result = PortfolioResult(trades.assign(symbol="ES"), pd.Series(equity, index=pd.DatetimeIndex(ts), name="equity"),
                             pd.DataFrame(columns=["signal_time", "symbol", "rule", "reason", "counterfactual_pnl"]),
                             1)
    portfolio = portfolio_summary(result, CME, CAPITAL)
    data = TradeSet.from_frame(trades, ["f"], CME)
    everything = np.ones(len(trades), dtype=bool)
    tuning = selected_sharpe(data.pnl, data.exit_day, everything, data.days())

    mtm = daily_pnl(result.equity, CME, CAPITAL)
    realised = data.daily_pnl(everything)
    np.testing.assert_allclose(realised.to_numpy(), mtm.to_numpy(), atol=1e-6)
    assert (realised.index == mtm.index).all() and len(realised) == len(days)
    assert backtest["days"] == portfolio["days"] == len(realised)
    assert backtest["sharpe"] == pytest.approx(portfolio["sharpe"], rel=1e-9)
    assert tuning == pytest.approx(backtest["sharpe"], rel=1e-9)
    weekdays = pd.bdate_range(days[0], days[-1])
    old_tuning = sharpe(realised.reindex(weekdays, fill_value=0.0))
    # Christmas, New Year and 9 January 2025 (the national day of mourning: CME closed)
    assert len(weekdays) == len(days) + 3 and old_tuning != pytest.approx(tuning, rel=1e-6)


def test_a_tuning_fold_is_scored_over_the_instruments_trading_days():
    days = CME.trading_days("2024-06-03", "2025-01-31")
    rng = np.random.default_rng(3)
    d = pd.DatetimeIndex(np.repeat(days, 2).astype("datetime64[ns]"))
    f = rng.random(len(d))
    pnl = np.where(f > 0.5, 150.0, -100.0) + rng.normal(0, 50, len(d))
    frame = pd.DataFrame({"signal_time": d + pd.Timedelta(hours=9), "exit_time": d + pd.Timedelta(hours=13),
                          "pnl_net": pnl, "win": pnl > 0, "f": f})
    test = np.flatnonzero(d >= pd.Timestamp("2024-11-01"))
    train = np.flatnonzero(d < pd.Timestamp("2024-10-25"))
    fold = Fold(0, train, test, pd.Timestamp("2024-11-01"), pd.Timestamp("2025-02-01"), pd.Timestamp("2024-10-25"), 0)
    tcfg = load_training_config(CFG.config_dir, "ES", "demo").model_copy(update={"min_trades_per_fold": 5})
    params = {"n_estimators": 5, "max_depth": 3, "min_samples_leaf": 5, "max_features": "sqrt",
              "max_samples": 0.7, "class_weight": None}
    score, thr, by_day, _ = fold_fit(params, TradeSet.from_frame(frame, ["f"], CME), fold, tcfg)
    assert CHRISTMAS not in by_day.index.values.astype("datetime64[D]")
    assert list(by_day.index.values.astype("datetime64[D]")) == list(CME.trading_days("2024-11-01", "2025-01-31"))
    assert score == pytest.approx(sharpe(by_day)) and by_day.sum() != 0


# -- live monitoring ----------------------------------------------------------------------------


def live_rows(days: pd.DatetimeIndex, pnls: list[float]) -> pd.DataFrame:
    """Scored rows (``performance.outcomes``) of one taken signal a day, 10:00, exiting 13:00."""
    raw = pd.DataFrame({"prediction_id": [f"ES-{i}" for i in range(len(days))], "instrument": "ES",
                        "model_version": "ES_v1", "threshold": 0.5, "reason": "", "probability": 0.7,
                        "decision": "enter", "bar_time": days + pd.Timedelta(hours=10),
                        "exit_time": days + pd.Timedelta(hours=13), "pnl_net": pnls})
    return performance.outcomes(signals.signal_rows(raw))


def test_live_daily_pnl_counts_the_instruments_trading_days():
    exits = pd.DataFrame({"exit_time": pd.to_datetime(["2024-12-23 13:00", "2024-12-23 17:30", "2024-12-26 13:00"]),
                          "pnl_net": [100.0, 50.0, -40.0]})
    start, end = pd.Timestamp("2024-12-20 12:00"), pd.Timestamp("2024-12-27 15:00")
    on_calendar = performance.live_daily_pnl(exits, start, end, CME)
    # 17:30 belongs to the next session: the exit counts on its trading date, 24 December
    assert on_calendar.to_dict() == {pd.Timestamp("2024-12-23"): 100.0, pd.Timestamp("2024-12-24"): 50.0,
                                     pd.Timestamp("2024-12-26"): -40.0, pd.Timestamp("2024-12-27"): 0.0}
    weekdays = performance.live_daily_pnl(exits, start, end)  # no calendar: weekdays, calendar dates
    assert pd.Timestamp("2024-12-25") in weekdays.index and weekdays[pd.Timestamp("2024-12-23")] == 150.0
    empty = performance.live_daily_pnl(exits.iloc[:0], start, end, CME)
    assert len(empty) == 4 and (empty == 0).all()


def test_the_retrain_trigger_and_the_kill_switch_take_the_calendar():
    days = pd.DatetimeIndex(CME.trading_days("2024-12-02", "2025-01-17").astype("datetime64[ns]"))
    pnls = list(np.random.default_rng(4).normal(50, 200, len(days)).round(2))
    rows = live_rows(days, pnls)
    metrics = {"selected": {"sharpe": 2.0, "avg_trade": 100.0, "win_rate": 0.5}}
    on = performance.performance_drop(rows, metrics, 90, calendar=CME).figures.set_index("figure")
    off = performance.performance_drop(rows, metrics, 90).figures.set_index("figure")
    end = days[-1] + pd.Timedelta(hours=13)  # the last exit

    def expected(window_days: int) -> float:  # the window's trading days after its start's date
        grid = CME.trading_days(end.normalize() - pd.Timedelta(days=window_days - 1), end)
        return sharpe(pd.Series(pnls, index=days).reindex(grid.astype("datetime64[ns]"), fill_value=0.0))

    assert on.loc["sharpe", "live"] == pytest.approx(expected(90))
    assert off.loc["sharpe", "live"] != pytest.approx(on.loc["sharpe", "live"])  # + the holidays as zeros
    lim = HealthLimits(min_live_trades=5)
    d = health.assess("ES", rows, pd.DataFrame({"a": [0.5] * len(rows)}), ["a"], None, lim, calendar=CME)
    assert {c.name: c for c in d.checks}["live_sharpe"].value == pytest.approx(expected(lim.live_window_days))
