"""The portfolio optimiser (rooney_core/portfolio/optimise.py): the same seed gives the same
study whatever the number of trial processes, the choice reads the training period only,
infeasible studies are marked and refused, the periods come from the models' holdouts, and
suggest() draws what the search space allows. Sample data: ES, NQ, GC (SI for GC's pair
features), four years of hourly bars."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest

from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.errors import RooneyError
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.model import ModelStore
from rooney_core.portfolio import deploy
from rooney_core.portfolio.config import SearchSpace, load_search
from rooney_core.portfolio.engine import PortfolioResult
from rooney_core.portfolio.optimise import INFEASIBLE, PortfolioMarket, optimise, periods, score, suggest
from rooney_core.sample_market import load_sample_market, write_sample_data
from rooney_core.training.candidates import label_signals

CFG = load_config()
SYMBOLS = ["ES", "GC", "NQ"]
TRIALS = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("portfolio_optimise")
    write_sample_data(out, [*SYMBOLS, "SI"], "2020-01-01", "2023-12-31", seed=4, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=60)
    hourly = {s: load_session_bars(out, CFG.instrument(s)).hourly for s in [*SYMBOLS, "SI"]}
    feats = {s: REGISTRY.compute(instrument_inputs(CFG, s, hourly[s], hourly[CFG.instrument(s).pair]))
             for s in SYMBOLS}
    labels = {s: label_signals(hourly[s], feats[s], CFG.instrument(s), CFG.strategy) for s in SYMBOLS}
    return hourly, feats, labels


def make_market(hourly, feats, labels) -> PortfolioMarket:
    return PortfolioMarket(hourly={s: hourly[s] for s in SYMBOLS}, features=feats,
                           instruments={s: CFG.instrument(s) for s in SYMBOLS}, rules_cfg=CFG.strategy,
                           models={s: None for s in SYMBOLS}, versions={s: None for s in SYMBOLS}, labels=labels,
                           holdout_years=2.5)


def search(**over):
    return load_search(CFG.config_dir, {"trials": TRIALS, "n_jobs": 2, "seed": 7, **over})


@pytest.fixture(scope="module")
def base(data):
    market = make_market(*data)
    return market, optimise(market, search(), progress=lambda _m: None)


def trials(study: optuna.Study) -> list[tuple]:
    return [(t.number, t.params, t.value, t.user_attrs) for t in study.trials]


def test_the_same_seed_gives_the_same_study_with_one_or_two_processes(base):
    market, two = base
    one = optimise(market, search(n_jobs=1), progress=lambda _m: None)
    # the first trials are the sampler's seeded start-up draws, so with one process or two the
    # same rules are tried; each result must be told to the trial that ran it
    assert len(two.study.trials) == TRIALS
    assert trials(one.study) == trials(two.study)
    assert len({str(t.params) for t in two.study.trials}) > 1 and len({t.value for t in two.study.trials}) > 1
    assert one.config.rules == two.config.rules
    assert one.config.objective["value"] == two.config.objective["value"] == two.study.best_value
    assert two.config.objective["trial"] == two.study.best_trial.number + 1
    assert two.config.rules.model_dump(mode="json") == two.study.best_trial.user_attrs["rules"]
    assert one.holdout.net_pnl == two.holdout.net_pnl and one.config.holdout_figures == two.config.holdout_figures
    pd.testing.assert_series_equal(one.train.equity, two.train.equity)


def _scrambled_after(data, cut: pd.Timestamp):
    """The bars after ``cut`` moved by a random walk (features and labels recomputed from them);
    everything before ``cut`` as it was."""
    hourly, feats, labels = data
    rng = np.random.default_rng(99)
    h2 = {}
    for s in [*SYMBOLS, "SI"]:
        h = hourly[s].copy()
        after = h.index >= cut
        walk = np.exp(np.cumsum(rng.normal(0, 0.01, after.sum())))
        for c in ("open", "high", "low", "close"):
            h.loc[after, c] = h.loc[after, c] * walk
        h2[s] = h
    f2, l2 = {}, {}
    for s in SYMBOLS:
        new = REGISTRY.compute(instrument_inputs(CFG, s, h2[s], h2[CFG.instrument(s).pair]))
        f2[s] = pd.concat([feats[s][feats[s].index < cut], new[new.index >= cut]])
        assert f2[s].index.equals(h2[s].index)
        fresh = label_signals(h2[s], f2[s], CFG.instrument(s), CFG.strategy, start=str(cut))
        l2[s] = pd.concat([labels[s][pd.DatetimeIndex(labels[s]["signal_time"]) < cut],
                           fresh[pd.DatetimeIndex(fresh["signal_time"]) >= cut]], ignore_index=True)
    return h2, f2, l2


def test_the_choice_reads_the_training_period_only(data, base):
    market, opt = base
    train_end, hold_start, end = periods(market)
    assert (opt.config.train.end, opt.config.holdout.start, opt.config.holdout.end) == (
        str(train_end), str(hold_start), str(end))
    assert (pd.DatetimeIndex(opt.train.trades["signal_time"]) < train_end).all()
    assert opt.train.equity.index.max() < train_end
    assert (pd.DatetimeIndex(opt.holdout.trades["signal_time"]) >= hold_start).all() and len(opt.holdout.trades)

    h2, f2, l2 = _scrambled_after(data, train_end)
    other_market = make_market(h2, f2, l2)
    assert periods(other_market) == (train_end, hold_start, end)
    other = optimise(other_market, search(), progress=lambda _m: None)
    assert trials(other.study) == trials(opt.study)  # every trial's rules, value, Sharpe, trades ...
    assert other.config.rules == opt.config.rules
    assert other.config.objective == opt.config.objective
    pd.testing.assert_series_equal(other.train.equity, opt.train.equity)
    # ... while what came after the training end did change
    assert other.holdout.net_pnl != opt.holdout.net_pnl
    assert other.config.holdout_figures != opt.config.holdout_figures
    assert other.config.data != opt.config.data  # the data hash covers the whole history


def test_when_no_trial_meets_the_limits_the_config_is_infeasible_and_not_promoted(base, tmp_path):
    market, _ = base
    opt = optimise(market, search(trials=3, n_jobs=1, limits={"max_drawdown_pct": 1e-6}), progress=lambda _m: None)
    values = [t.value for t in opt.study.trials]
    assert len(values) == 3 and all(v <= INFEASIBLE for v in values)
    for t in opt.study.trials:  # each broke a limit; one that traded broke the drawdown limit: below INFEASIBLE
        assert t.user_attrs["broken"] and (t.value < INFEASIBLE or t.user_attrs["trades"] == 0)
    assert opt.config.objective["feasible"] is False and opt.config.objective["value"] == max(values)

    store = ModelStore(tmp_path)
    name = deploy.save(store, opt.config)
    with pytest.raises(deploy.PortfolioRefused, match="no trial of its optimisation met every risk limit"):
        deploy.promote(store, name, by="alice", config_dir=tmp_path / "configs")
    assert store.production_portfolio() is None and not (tmp_path / "configs").exists()
    entry = deploy.promote(store, name, by="alice", reason="paper trading only", force=True)
    assert entry["forced"] and store.production_portfolio() == name


def _result(daily: np.ndarray, trades: int = 60) -> PortfolioResult:
    """A run whose equity moves by ``daily`` once per weekday (15:00, inside the session)."""
    times = pd.bdate_range("2021-01-04", periods=len(daily)) + pd.Timedelta(hours=15)
    equity = pd.Series(100_000.0 + np.cumsum(daily), index=times)
    return PortfolioResult(trades=pd.DataFrame({"pnl_net": np.zeros(trades)}), equity=equity,
                           skipped=pd.DataFrame(), max_open=1)


def test_score_ranks_every_feasible_run_above_every_infeasible_one():
    cal = CFG.instrument("ES").calendar
    s = search()  # limits: 30% drawdown, 50 trades
    rng = np.random.default_rng(3)
    good = score(_result(rng.normal(30, 300, 300)), cal, 100_000.0, s)
    assert good["broken"] == [] and good["value"] == good["sharpe"]  # a feasible run scores its Sharpe
    # a steady loser within the limits: a Sharpe far below INFEASIBLE, but feasible
    steady = score(_result(-40 + rng.normal(0, 4, 400)), cal, 100_000.0, s)
    assert steady["broken"] == [] and steady["sharpe"] < INFEASIBLE and steady["drawdown_pct"] < 0.3
    deep = score(_result(np.full(400, -80.0) + rng.normal(0, 4, 400)), cal, 100_000.0, s)
    assert deep["broken"] and deep["drawdown_pct"] > 0.3 and deep["value"] < INFEASIBLE
    few = score(_result(rng.normal(30, 300, 300), trades=49), cal, 100_000.0, s)
    assert few["broken"] == ["49 trades < 50"] and few["value"] <= INFEASIBLE
    assert steady["value"] > max(deep["value"], few["value"])
    assert good["value"] > steady["value"] > INFEASIBLE
    worse = score(_result(-40 + rng.normal(0, 2, 400)), cal, 100_000.0, s)  # steadier, so a lower Sharpe
    assert worse["sharpe"] < steady["sharpe"] and INFEASIBLE < worse["value"] < steady["value"]


# ---- periods ----------------------------------------------------------------------------------


def _stub_market(ends: dict[str, str], models: dict, holdout_years: float = 2.0, start: str = "2019-01-01"):
    hourly = {s: pd.DataFrame({"close": 1.0}, index=pd.date_range(start, e, freq="h")) for s, e in ends.items()}
    return PortfolioMarket(hourly=hourly, features={}, instruments={}, rules_cfg=None, models=models,
                           versions={s: None for s in ends}, holdout_years=holdout_years)


def test_training_ends_at_the_earliest_holdout_start_and_the_holdout_starts_at_the_latest():
    ends = {"ES": "2023-12-29 15:00", "NQ": "2023-12-28 15:00", "GC": "2023-12-20 15:00"}
    stand_in = SimpleNamespace  # a model's metrics, no estimator
    market = _stub_market(ends, {"ES": stand_in(metrics={"holdout_start": "2022-03-01"}),
                                 "NQ": stand_in(metrics={"holdout_start": pd.Timestamp("2022-07-04 17:00")}),
                                 "GC": stand_in(metrics={"holdout_start": "2022-05-02"})})
    assert periods(market) == (pd.Timestamp("2022-03-01"), pd.Timestamp("2022-07-04 17:00"),
                               pd.Timestamp("2023-12-29 15:00"))
    # no model (or none that says): holdout_years before its own last bar, at midnight
    market = _stub_market(ends, {"ES": stand_in(metrics={"holdout_start": "2022-03-01"}), "NQ": None,
                                 "GC": stand_in(metrics={})}, holdout_years=1.0)
    assert periods(market) == (pd.Timestamp("2022-03-01"), pd.Timestamp("2022-12-28"),
                               pd.Timestamp("2023-12-29 15:00"))
    market = _stub_market(ends, {s: None for s in ends}, holdout_years=2.0)
    assert periods(market) == (pd.Timestamp("2021-12-20"), pd.Timestamp("2021-12-29"),
                               pd.Timestamp("2023-12-29 15:00"))
    market = _stub_market(ends, {"ES": stand_in(metrics=None)}, holdout_years=0.5)
    assert periods(market)[:2] == (pd.Timestamp("2023-06-20"), pd.Timestamp("2023-06-29"))  # less 183 days


def test_no_training_period_or_no_instrument_is_refused():
    ends = {"ES": "2023-12-29 15:00", "NQ": "2023-12-29 15:00"}
    market = _stub_market(ends, {"ES": SimpleNamespace(metrics={"holdout_start": "2020-06-01"}), "NQ": None},
                          start="2020-06-01")
    with pytest.raises(RooneyError, match="no training period before the earliest holdout start 2020-06-01"):
        optimise(market, search())
    with pytest.raises(RooneyError, match="no instruments"):
        optimise(_stub_market({}, {}), search())


# ---- suggest ----------------------------------------------------------------------------------


def _study() -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def test_a_one_element_list_is_fixed_and_group_allocation_caps_each_group_present():
    groups = {s: CFG.instrument(s).group for s in [*SYMBOLS, "CL"]}
    assert groups == {"ES": "equity_index", "GC": "metals", "NQ": "equity_index", "CL": "energy"}
    space = SearchSpace(sizing=["fixed"], contracts=[2], max_positions=[3], corr_rho=[0.5], corr_window=[60],
                        daily_loss_stop=[1500.0], max_drawdown_stop=[None], group_allocation=[4.0])
    study = _study()
    trial = study.ask()
    rules = suggest(trial, space, [*SYMBOLS, "CL"], groups)
    assert trial.params == {}  # nothing was left to choose
    assert rules.contracts == {"ES": 2, "GC": 2, "NQ": 2, "CL": 2} and rules.risk_budget is None
    assert (rules.max_positions, rules.corr_rho, rules.corr_window, rules.daily_loss_stop,
            rules.max_drawdown_stop) == (3, 0.5, 60, 1500.0, None)
    assert rules.allocation == {"energy": 4.0, "equity_index": 4.0, "metals": 4.0}
    # only the groups present, and an instrument without a group gets no cap
    rules = suggest(study.ask(), space, ["ES", "NQ"], {"ES": "equity_index", "NQ": None})
    assert rules.allocation == {"equity_index": 4.0}


def test_choices_and_ranges_are_suggested_and_conditional_ones_only_when_used():
    space = SearchSpace(sizing=["fixed", "risk_budget"], contracts={"low": 1, "high": 3},
                        risk_budget={"low": 500, "high": 2000, "step": 500}, max_contracts=[5, 10],
                        max_positions=[None, 2], corr_rho=[None, 0.6], corr_window=[60, 120],
                        group_allocation=[None, 2.0])
    groups = {s: CFG.instrument(s).group for s in SYMBOLS}
    study, seen = _study(), set()
    for _ in range(40):
        trial = study.ask()
        rules = suggest(trial, space, SYMBOLS, groups)
        p = trial.params
        assert {"sizing", "max_positions", "corr_rho", "group_allocation"} <= set(p)
        if p["sizing"] == "fixed":
            assert set(p) & {"risk_budget", "max_contracts"} == set() and 1 <= p["contracts"] <= 3
            assert rules.contracts == {s: p["contracts"] for s in SYMBOLS} and rules.risk_budget is None
        else:
            assert "contracts" not in p and rules.contracts == {}
            assert p["risk_budget"] in (500.0, 1000.0, 1500.0, 2000.0) and rules.risk_budget == p["risk_budget"]
            assert rules.max_contracts == p["max_contracts"]
        assert ("corr_window" in p) == (p["corr_rho"] is not None)  # the window only with the filter on
        assert rules.corr_rho == p["corr_rho"] and rules.max_positions == p["max_positions"]
        want = {} if p["group_allocation"] is None else {"equity_index": 2.0, "metals": 2.0}
        assert rules.allocation == want
        seen.add((p["sizing"], p["corr_rho"], p["group_allocation"]))
    assert len(seen) >= 6  # the draws cover the space
