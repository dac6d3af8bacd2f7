"""The portfolio engine (rooney_core/portfolio/engine.py): every instrument on the decision core
in one time-ordered loop, with the portfolio rules. Sample data for ES, NQ, GC, SI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rooney_core.backtest.runner import run_backtest
from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.portfolio import PortfolioRules, run_portfolio
from rooney_core.sample_market import load_sample_market, write_sample_data

CFG = load_config()
SYMBOLS = ["ES", "NQ", "GC", "SI"]
START = "2023-01-01"
COLS = ["signal_time", "entry_time", "entry_price", "exit_time", "exit_price", "exit_reason", "pnl_net"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("portfolio_market")
    write_sample_data(out, SYMBOLS, "2021-06-01", "2023-12-31", seed=4, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=60)
    hourly = {s: load_session_bars(out, CFG.instrument(s)).hourly for s in SYMBOLS}
    feats = {s: REGISTRY.compute(instrument_inputs(CFG, s, hourly[s], hourly[CFG.instrument(s).pair]))
             for s in SYMBOLS}
    return hourly, feats


def _run(market, rules: PortfolioRules, start=START):
    hourly, feats = market
    return run_portfolio(hourly, feats, {s: CFG.instrument(s) for s in SYMBOLS}, CFG.strategy, rules, start=start)


def test_with_every_rule_off_it_is_the_sum_of_the_single_instrument_backtests(market):
    hourly, feats = market
    res = _run(market, PortfolioRules.off())
    assert res.skipped.empty and len(res.trades) > 100
    total = 0.0
    for s in SYMBOLS:
        single = run_backtest(hourly[s], feats[s], CFG.instrument(s), CFG.strategy, start=START).trades
        mine = res.trades[res.trades["symbol"] == s].sort_values("signal_time").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine[COLS], single[COLS].reset_index(drop=True), check_dtype=False)
        total += single["pnl_net"].sum()
    assert res.net_pnl == pytest.approx(total, abs=1e-6)


def test_pnl_is_the_sum_of_the_trades_under_the_chosen_sizes_and_booked_only_at_exit(market):
    base = _run(market, PortfolioRules.off())
    sized = _run(market, PortfolioRules(contracts={"ES": 2, "GC": 3}, halt_when_broke=False))
    for s, n in (("ES", 2), ("GC", 3), ("NQ", 1)):
        a = base.trades[base.trades["symbol"] == s]["pnl_net"].to_numpy()
        b = sized.trades[sized.trades["symbol"] == s]["pnl_net"].to_numpy()
        np.testing.assert_allclose(b, n * a, atol=1e-6)
    # equity = capital + closed trades + open positions marked at their last close
    open_value = 0.0
    for s, p in sized.open_positions.items():
        last = market[0][s]["close"].iloc[-1]
        open_value += (last - p["entry_price"]) * p["contracts"] * CFG.instrument(s).point_value
    assert sized.equity.iloc[-1] == pytest.approx(100_000 + sized.net_pnl + open_value, abs=1e-6)
    # marked to market at every bar: it moves between exits too
    exits = set(pd.DatetimeIndex(sized.trades["exit_time"]))
    moves = sized.equity.diff().fillna(0) != 0
    assert moves[~sized.equity.index.isin(exits)].any()


def test_volatility_targeted_sizes_shrink_as_the_atr_grows(market):
    hourly, feats = market
    budget = 1500.0
    res = _run(market, PortfolioRules(risk_budget=budget, max_contracts=8, halt_when_broke=False))
    base = _run(market, PortfolioRules.off())
    assert len(res.trades) == len(base.trades)  # sizing never refuses an entry
    es = res.trades[res.trades["symbol"] == "ES"].reset_index(drop=True)
    one = base.trades[base.trades["symbol"] == "ES"].reset_index(drop=True)
    f, h = feats["ES"], hourly["ES"]
    risk = (f["atr14_pct"] * h["close"] * CFG.instrument("ES").point_value).loc[es["signal_time"]].to_numpy()
    want = np.clip(np.floor(budget / risk), 1, 8)
    np.testing.assert_array_equal(es["contracts"].to_numpy(), want)
    np.testing.assert_allclose(es["pnl_net"], one["pnl_net"] * es["contracts"], atol=1e-6)  # P&L under the sizes
    assert es["contracts"].nunique() > 1


def test_never_more_than_the_maximum_positions_and_skips_carry_their_counterfactual(market):
    from rooney_core.training.candidates import label_signals

    hourly, feats = market
    labels = {s: label_signals(hourly[s], feats[s], CFG.instrument(s), CFG.strategy) for s in SYMBOLS}
    for cap in (1, 2):
        res = _run(market, PortfolioRules(max_positions=cap))
        assert res.max_open <= cap
        skips = res.skipped[res.skipped["rule"] == "max_positions"]
        assert len(skips) > 0 and skips["counterfactual_pnl"].notna().all()
        # simulated on the spot or looked up in the labelled signals: the same P&L
        looked = run_portfolio(hourly, feats, {s: CFG.instrument(s) for s in SYMBOLS}, CFG.strategy,
                               PortfolioRules(max_positions=cap), start=START, labels=labels)
        pd.testing.assert_frame_equal(looked.skipped, res.skipped)


def test_the_correlation_filter_uses_only_past_bars(market):
    hourly, feats = market
    rules = PortfolioRules(corr_rho=0.2, corr_window=60)
    base = _run(market, rules)
    assert (base.skipped["rule"] == "correlation").sum() > 0
    cut = pd.Timestamp("2023-07-03 17:00")
    rng = np.random.default_rng(1)
    changed_h, changed_f = {}, {}
    for s in SYMBOLS:
        h = hourly[s].copy()
        after = h.index > cut
        scale = np.exp(rng.normal(0, 0.02, after.sum()))
        for c in ("open", "high", "low", "close"):
            h.loc[after, c] = h.loc[after, c] * scale
        changed_h[s] = h
    for s in SYMBOLS:
        changed_f[s] = REGISTRY.compute(instrument_inputs(CFG, s, changed_h[s], changed_h[CFG.instrument(s).pair]))
    other = run_portfolio(changed_h, changed_f, {s: CFG.instrument(s) for s in SYMBOLS}, CFG.strategy, rules,
                          start=START)
    before = base.skipped[base.skipped["signal_time"] <= cut].reset_index(drop=True)
    before2 = other.skipped[other.skipped["signal_time"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(before[["signal_time", "symbol", "rule", "reason"]],
                                  before2[["signal_time", "symbol", "rule", "reason"]])
    t1 = base.trades[base.trades["signal_time"] <= cut - pd.Timedelta(days=3)]
    t2 = other.trades[other.trades["signal_time"] <= cut - pd.Timedelta(days=3)]
    assert list(t1["signal_time"]) == list(t2["signal_time"])


def test_a_daily_loss_stop_blocks_entries_until_the_next_session(market):
    limit = 150.0
    res = _run(market, PortfolioRules(daily_loss_stop=limit))
    stops = res.skipped[res.skipped["rule"] == "daily_loss_stop"]
    assert len(stops) > 0
    cal = CFG.instrument("ES").calendar
    stop_day = cal.trading_date(stops["signal_time"].to_numpy())
    entry_day = cal.trading_date(res.trades["signal_time"].to_numpy())
    first = pd.Series(stops["signal_time"].to_numpy(), index=stop_day).groupby(level=0).min()
    for day, t0 in first.items():
        # the first refusal of the session was for a session P&L at or below -limit ...
        shown = stops[stop_day == day]["reason"].iloc[0].split("session P&L ")[1].split(" <=")[0]  # -$450.00
        pnl = float(shown.replace("$", "").replace(",", ""))
        assert pnl <= -limit
        # ... and no instrument entered later in that session
        assert not ((entry_day == day) & (res.trades["signal_time"] > t0).to_numpy()).any()
    # the stop lifts: there are entries in sessions after a stopped one
    assert any((entry_day > d).any() for d in first.index)


def test_a_max_drawdown_stop_ends_new_entries(market):
    res = _run(market, PortfolioRules(max_drawdown_stop=500.0))
    stops = res.skipped[res.skipped["rule"] == "max_drawdown_stop"]
    assert len(stops) > 0
    first = stops["signal_time"].min()
    assert (res.trades["signal_time"] < first).all()  # nothing entered after it, for the rest of the run
    assert (res.equity.cummax() - res.equity).loc[:first].max() >= 500.0


def test_an_account_with_no_equity_left_opens_nothing_unless_every_rule_is_off(market):
    hourly, feats = market
    inst = {s: CFG.instrument(s) for s in SYMBOLS}
    off = run_portfolio(hourly, feats, inst, CFG.strategy, PortfolioRules.off(), start=START, capital=2_000.0)
    assert off.skipped.empty and off.equity.min() < 0  # rules off: trades on as each would alone
    res = run_portfolio(hourly, feats, inst, CFG.strategy, PortfolioRules(), start=START, capital=2_000.0)
    broke = res.skipped[res.skipped["reason"].str.contains("equity")]
    assert len(broke) > 0 and set(broke["rule"]) == {"max_drawdown_stop"}
    first = broke["signal_time"].min()
    assert res.equity.loc[:first].iloc[-2] <= 0 or res.equity.loc[:first].min() <= 0
    assert (res.trades["signal_time"] < first).all()


def test_the_optimisers_shortcuts_change_no_score(market):
    """skip_dead_tail: once halted and flat the equity is the full run's, to the end;
    abandon_drawdown_pct: the run ends just after the drawdown passes the share."""
    from rooney_core.portfolio.engine import prepare, simulate

    hourly, feats = market
    inp = prepare(hourly, feats, {s: CFG.instrument(s) for s in SYMBOLS}, CFG.strategy, start=START)
    rules = PortfolioRules(max_drawdown_stop=800.0)
    full = simulate(inp, rules)
    fast = simulate(inp, rules, skip_dead_tail=True)
    assert fast.stopped_early and full.stopped_early is None and len(fast.skipped) < len(full.skipped)
    pd.testing.assert_series_equal(fast.equity, full.equity)
    pd.testing.assert_frame_equal(fast.trades, full.trades)
    off = simulate(inp, PortfolioRules.off())
    dd = (off.equity.cummax().clip(lower=100_000.0) - off.equity) / off.equity.cummax().clip(lower=100_000.0)
    assert dd.max() > 0.05
    cut = simulate(inp, PortfolioRules.off(), abandon_drawdown_pct=0.05)
    assert cut.stopped_early and len(cut.equity) < len(off.equity)
    pd.testing.assert_series_equal(cut.equity, off.equity.iloc[:len(cut.equity)])
    assert dd.iloc[len(cut.equity) - 1] > 0.05 and dd.iloc[:len(cut.equity) - 1].max() <= 0.05


def test_same_inputs_same_portfolio(market):
    rules = PortfolioRules(max_positions=2, corr_rho=0.5, daily_loss_stop=400.0, contracts={"NQ": 2})
    a, b = _run(market, rules), _run(market, rules)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_series_equal(a.equity, b.equity)
    pd.testing.assert_frame_equal(a.skipped, b.skipped)


def test_the_summary_risk_manager_figures(market):
    from rooney_core.backtest.metrics import sharpe
    from rooney_core.portfolio.engine import daily_pnl, portfolio_summary

    res = _run(market, PortfolioRules(max_positions=2, corr_rho=0.5))
    cal = CFG.instrument("ES").calendar
    out = portfolio_summary(res, cal)
    daily = daily_pnl(res.equity, cal, 100_000)
    assert daily.sum() == pytest.approx(res.equity.iloc[-1] - 100_000, abs=1e-6)
    assert out["sharpe"] == pytest.approx(sharpe(daily))
    assert out["max_drawdown_usd"] >= 0 and out["calmar"] == out["calmar"]
    rc = out["risk_contribution"]
    assert set(rc.index) <= set(SYMBOLS) and rc.sum() == pytest.approx(1.0)  # shares of the variance
    corr = out["correlation"]
    assert np.allclose(np.diag(corr.to_numpy()), 1.0) and np.allclose(corr, corr.T)
    sk = out["skipped"]
    assert set(sk.index) == set(res.skipped["rule"]) and sk["skipped"].sum() == len(res.skipped)
    assert sk["counterfactual_pnl"].sum() == pytest.approx(res.skipped["counterfactual_pnl"].sum())
