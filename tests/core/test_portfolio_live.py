"""The portfolio case of the parity gate: the live engine with a portfolio config (the same
PortfolioGuard) makes exactly the portfolio backtest's trades, sizes and refusals on replayed
minute bars, and its account state survives a restart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.live.engine import LiveEngine, history_from_raw
from rooney_core.live.feeds import replay_feed
from rooney_core.live.parity import portfolio_parity_check
from rooney_core.model import ModelStore
from rooney_core.portfolio import run_portfolio
from rooney_core.portfolio.config import PortfolioConfig, RulesSpec
from rooney_core.sample_market import load_sample_market, write_sample_data

CFG = load_config()
SYMBOLS = ["CL", "ES", "NG", "NQ"]
START, END = "2023-01-03", "2023-04-01"


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("portfolio_live")
    write_sample_data(out, SYMBOLS, "2022-03-01", "2023-03-31", seed=11, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=5)
    return out


def config(**rules) -> PortfolioConfig:
    return PortfolioConfig(version=None, symbols=SYMBOLS, capital=50_000.0, rules=RulesSpec(**rules),
                           models={s: None for s in SYMBOLS})


BUSY = dict(max_positions=2, corr_rho=0.3, corr_window=60, daily_loss_stop=1500.0, risk_budget=1500.0,
            max_contracts=3, allocation={"energy": 3.0})


def test_the_live_engine_with_a_portfolio_config_reproduces_the_portfolio_backtest(market):
    report = portfolio_parity_check(CFG, market, ModelStore(market / "store"), config(**BUSY), start=START)
    assert report.ok, report.summary() + f"\n{report.divergences[:5]}"
    assert report.trades >= 20 and report.live_trades == report.trades
    assert report.decisions >= 10  # entries the rules refused, compared one by one


def test_the_backtest_under_the_same_config_refuses_by_several_rules_and_sizes_by_the_budget(market):
    hourly = {s: load_session_bars(market, CFG.instrument(s)).hourly for s in SYMBOLS}
    feats = {s: REGISTRY.compute(instrument_inputs(CFG, s, hourly[s], hourly[CFG.instrument(s).pair]))
             for s in SYMBOLS}
    res = run_portfolio(hourly, feats, {s: CFG.instrument(s) for s in SYMBOLS}, CFG.strategy,
                        config(**BUSY).rules.rules(), capital=50_000.0, start=START)
    assert set(res.skipped["rule"]) >= {"max_positions", "correlation"}
    assert res.trades["contracts"].nunique() > 1  # the risk budget sized them


def test_a_parity_divergence_is_named(market, monkeypatch):
    """Break the live side's sizing only: the gate must name the trade and the field."""
    from rooney_core.portfolio import guard as guard_mod

    real = guard_mod.PortfolioRules.size
    calls = {"n": 0}

    def live_only(self, *a, **k):
        import inspect

        caller = inspect.stack()[2].filename
        n = real(self, *a, **k)
        if "live" in caller:
            calls["n"] += 1
            return n + 1
        return n

    monkeypatch.setattr(guard_mod.PortfolioRules, "size", live_only)
    report = portfolio_parity_check(CFG, market, ModelStore(market / "store"), config(risk_budget=400.0),
                                    start=START, end="2023-02-01")
    assert calls["n"] > 0 and not report.ok
    assert any(d["field"] in ("trade.contracts", "trade.pnl_gross", "trade.pnl_net") for d in report.divergences)


def test_a_restart_keeps_the_account_state_of_the_portfolio(market, tmp_path):
    """Stopped mid-way and restarted from its state, the engine ends with the uninterrupted
    run's trades and refusals (the daily loss stop and the drawdown peak come back from the
    state; the correlation window is rebuilt from history)."""
    cfg_ = config(**BUSY)
    store = ModelStore(tmp_path / "store")

    def run(state, until=None):
        engine = LiveEngine(CFG, SYMBOLS, store, state, paper=True, portfolio=cfg_, heartbeat_every=1e9)
        replay_from = engine.start(history_from_raw(CFG, market), START)
        feed = replay_feed(CFG, market, SYMBOLS, since=replay_from)
        if until is not None:
            stop = np.datetime64(until, "s")
            feed = (b for b in feed if getattr(b, "timestamp", None) is None or b.timestamp < stop)
        engine.run(feed, replay_from, close_at_end=until is None)
        return engine

    whole = run(tmp_path / "whole")
    run(tmp_path / "split", until="2023-02-15T10:30")
    resumed = run(tmp_path / "split")

    cols = ["symbol", "signal_time", "entry_time", "entry_price", "exit_time", "exit_price", "exit_reason",
            "contracts", "pnl_net"]

    def trades(engine):
        got = pd.DataFrame([{**t, "symbol": s} for s in SYMBOLS for t in engine.instruments[s].core.trades])[cols]
        for c in ("signal_time", "entry_time", "exit_time"):
            got[c] = pd.to_datetime(got[c])
        return got.sort_values(["signal_time", "symbol"]).reset_index(drop=True)

    a, b = trades(whole), trades(resumed)
    assert len(a) >= 20
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert resumed.guard.snapshot() == whole.guard.snapshot()
