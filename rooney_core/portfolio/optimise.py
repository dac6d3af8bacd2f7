"""Optuna chooses the portfolio rules on the training period only, and the choice is reported
out of sample over the holdout.

Periods: the optimisation runs on every bar before the *earliest* holdout start of the
instruments' models (each bundle records its own; without a model, the training config's
``holdout_years`` from the end of the data), so no model's holdout is ever seen by the
choice; the out-of-sample report runs from the *latest* holdout start to the end of the data,
with each instrument's model vetoing its entries, the path that will trade.

Each trial is one portfolio run (``engine.simulate``) on inputs prepared once (bars, feature
rows, the bars that can signal, and for ``train_entries: model`` every signal's veto
probability); the objective is the annualised Sharpe of the daily P&L of the marked-to-market
equity. A trial breaking a limit (drawdown share, too few trades) is infeasible: it scores
``INFEASIBLE`` minus how far it broke the drawdown limit, below every feasible trial. Two
shortcuts keep bad trials cheap without changing any score's verdict: a trial is abandoned as
soon as its drawdown passes the limit (infeasible whatever follows), and once a drawdown stop
has halted it with every position closed its equity stays flat to the end unsimulated.
(A feasible trial's Sharpe below ``INFEASIBLE + 1`` is squeezed, in order, into the band just
above ``INFEASIBLE``, so that holds for any Sharpe.)

``n_jobs`` processes run trials in parallel (forked after the inputs are prepared, so each
holds them without a copy): the parent asks Optuna for ``n_jobs`` trials, waits for all of
them and tells their results in trial order, so the same seed gives the same study.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import optuna
import pandas as pd

from rooney_core.backtest.metrics import max_drawdown, sharpe
from rooney_core.config import Instrument, StrategyConfig
from rooney_core.errors import RooneyError
from rooney_core.portfolio.config import Period, PortfolioConfig, PortfolioSearch, RulesSpec, SearchSpace
from rooney_core.portfolio.engine import (
    PortfolioInputs,
    PortfolioResult,
    daily_pnl,
    portfolio_summary,
    prepare,
    simulate,
)

log = logging.getLogger(__name__)

INFEASIBLE = -10.0


@dataclass
class PortfolioMarket:
    """Everything an optimisation reads: bars and features on the full history, the labelled
    signals (counterfactual P&L of skipped entries), each instrument's model (a bundle or
    None) and where it came from."""

    hourly: dict[str, pd.DataFrame]
    features: dict[str, pd.DataFrame]
    instruments: dict[str, Instrument]
    rules_cfg: StrategyConfig
    models: dict[str, Any]  # symbol -> VetoBundle or None
    versions: dict[str, str | None]  # symbol -> model version name
    sha256: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, pd.DataFrame] = field(default_factory=dict)
    holdout_years: float = 2.0  # for an instrument without a model

    @property
    def symbols(self) -> list[str]:
        return sorted(self.hourly)


@dataclass
class Optimisation:
    config: PortfolioConfig  # not stored yet (version None)
    study: optuna.Study
    train: PortfolioResult  # the chosen rules over the training period
    holdout: PortfolioResult  # ... and out of sample
    summary: dict  # portfolio_summary of the holdout
    train_summary: dict
    seconds: float


def periods(market: PortfolioMarket) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """(training end = earliest holdout start, holdout start = latest one, end of data)."""
    starts = []
    for s in market.symbols:
        model = market.models.get(s)
        hold = (getattr(model, "metrics", None) or {}).get("holdout_start") if model is not None else None
        if hold is None:
            last = market.hourly[s].index[-1]
            hold = (last - pd.DateOffset(days=int(round(market.holdout_years * 365.25)))).normalize()
        starts.append(pd.Timestamp(hold))
    end = max(h.index[-1] for h in market.hourly.values())
    return min(starts), max(starts), end


def data_hashes(market: PortfolioMarket) -> dict[str, str]:
    """sha256 of each instrument's hourly bars (values and times)."""
    out = {}
    for s in market.symbols:
        h = market.hourly[s]
        digest = hashlib.sha256(pd.util.hash_pandas_object(h, index=True).to_numpy().tobytes())
        digest.update(",".join(map(str, h.columns)).encode())
        out[s] = digest.hexdigest()
    return out


def _choose(trial: optuna.Trial, name: str, spec) -> Any:
    if isinstance(spec, list):
        if len(spec) == 1:
            return spec[0]
        # Optuna's categorical choices must be None, bool, int, float or str: they are
        return trial.suggest_categorical(name, spec)
    if hasattr(spec, "step") and isinstance(spec.low, int) and isinstance(spec.high, int) and \
            isinstance(spec.step, int):
        return trial.suggest_int(name, spec.low, spec.high, step=spec.step)
    return trial.suggest_float(name, spec.low, spec.high, step=spec.step)


def suggest(trial: optuna.Trial, space: SearchSpace, symbols: list[str], groups: dict[str, str | None]) -> RulesSpec:
    """The rules of one trial, drawn from ``space``."""
    sizing = _choose(trial, "sizing", space.sizing)
    rules: dict[str, Any] = {}
    if sizing == "fixed":
        n = _choose(trial, "contracts", space.contracts)
        rules["contracts"] = {s: int(n) for s in symbols}
    else:
        rules["risk_budget"] = float(_choose(trial, "risk_budget", space.risk_budget))
        rules["max_contracts"] = int(_choose(trial, "max_contracts", space.max_contracts))
    rules["max_positions"] = _choose(trial, "max_positions", space.max_positions)
    rules["corr_rho"] = _choose(trial, "corr_rho", space.corr_rho)
    if rules["corr_rho"] is not None:
        rules["corr_window"] = int(_choose(trial, "corr_window", space.corr_window))
    rules["daily_loss_stop"] = _choose(trial, "daily_loss_stop", space.daily_loss_stop)
    rules["max_drawdown_stop"] = _choose(trial, "max_drawdown_stop", space.max_drawdown_stop)
    cap = _choose(trial, "group_allocation", space.group_allocation)
    if cap is not None:
        rules["allocation"] = {g: float(cap) for g in sorted({g for g in groups.values() if g})}
    return RulesSpec(**{k: v for k, v in rules.items() if v is not None})


def score(result: PortfolioResult, calendar, capital: float, search: PortfolioSearch) -> dict:
    """The objective of one run: the daily Sharpe if every limit holds, else infeasible."""
    daily = daily_pnl(result.equity, calendar, capital)
    sh = sharpe(daily)
    dd_usd, dd_pct = max_drawdown(np.r_[capital, result.equity.to_numpy()])
    trades = int(len(result.trades))
    broken = []
    if dd_pct > search.limits.max_drawdown_pct:
        broken.append(f"drawdown {dd_pct:.1%} > {search.limits.max_drawdown_pct:.0%}")
    if trades < search.limits.min_trades:
        broken.append(f"{trades} trades < {search.limits.min_trades}")
    if broken:
        value = INFEASIBLE - max(0.0, dd_pct - search.limits.max_drawdown_pct)
    elif sh != sh:
        value = INFEASIBLE
    elif sh >= INFEASIBLE + 1:
        value = sh
    else:
        # a feasible run with an (absurd, but possible: a steady loser) Sharpe below
        # INFEASIBLE + 1 is squeezed into (INFEASIBLE, INFEASIBLE + 1], in order, so it still
        # scores above every infeasible run ("sharpe" keeps the real figure)
        value = INFEASIBLE + 1.0 / (1.0 + (INFEASIBLE + 1 - sh))
    return {"value": float(value), "sharpe": float(sh) if sh == sh else None, "drawdown_pct": float(dd_pct),
            "drawdown_usd": float(dd_usd), "trades": trades, "net_pnl": result.net_pnl, "broken": broken,
            "skipped": int(len(result.skipped))}


# the prepared training inputs of the running optimisation: set before the pool forks
_WORK: dict[str, Any] = {}


def _run_trial(rules: RulesSpec) -> dict:
    inp: PortfolioInputs = _WORK["inputs"]
    search: PortfolioSearch = _WORK["search"]
    res = simulate(inp, rules.rules(), search.capital, keep_decisions=False,
                   abandon_drawdown_pct=search.limits.max_drawdown_pct, skip_dead_tail=True)
    return score(res, inp.instruments[inp.symbols[0]].calendar, search.capital, search)


def optimise(market: PortfolioMarket, search: PortfolioSearch,
             progress: Callable[[str], None] | None = None) -> Optimisation:
    """Choose the rules on the training period, then run them out of sample (see the module
    docstring). ``progress`` gets one line per trial."""
    say = progress or log.info
    t0 = time.perf_counter()
    symbols = market.symbols
    if not symbols:
        raise RooneyError("portfolio optimise: no instruments")
    train_end, hold_start, end = periods(market)
    if train_end <= max(h.index[0] for h in market.hourly.values()):
        raise RooneyError(f"portfolio optimise: no training period before the earliest holdout start {train_end}")
    groups = {s: market.instruments[s].group for s in symbols}
    train_models = market.models if search.train_entries == "model" else {}
    say(f"preparing {len(symbols)} instruments: training period to {train_end} ({search.train_entries} entries), "
        f"holdout from {hold_start} to {end}")
    train_inputs = prepare(market.hourly, market.features, market.instruments, market.rules_cfg,
                           models=train_models, end=str(train_end), labels=market.labels or None)
    calendar = market.instruments[symbols[0]].calendar

    sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=min(10, search.trials))
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                study_name=f"portfolio-{'-'.join(symbols)}")
    _WORK.update(inputs=train_inputs, search=search)
    pool = None
    try:
        if search.n_jobs > 1:
            pool = ProcessPoolExecutor(search.n_jobs, mp_context=mp.get_context("fork"))
        done = 0
        while done < search.trials:
            batch = [study.ask() for _ in range(min(search.n_jobs, search.trials - done))]
            specs = [suggest(t, search.search_space, symbols, groups) for t in batch]
            results = list(pool.map(_run_trial, specs)) if pool is not None else [_run_trial(r) for r in specs]
            for trial, spec, res in zip(batch, specs, results, strict=True):
                for k in ("sharpe", "drawdown_pct", "trades", "net_pnl", "broken", "skipped"):
                    trial.set_user_attr(k, res[k])
                trial.set_user_attr("rules", spec.model_dump(mode="json"))
                study.tell(trial, res["value"])
                done += 1
                best = study.best_trial
                say(f"trial {trial.number + 1}/{search.trials}: "
                    + (f"Sharpe {res['sharpe']:.2f}" if res["sharpe"] is not None else "Sharpe n/a")
                    + f", drawdown {res['drawdown_pct']:.1%}, {res['trades']} trades"
                    + (f" (infeasible: {'; '.join(res['broken'])})" if res["broken"] else "")
                    + f"; best {best.value:.2f} (trial {best.number + 1}); {time.perf_counter() - t0:.0f} s")
    finally:
        _WORK.clear()
        if pool is not None:
            pool.shutdown()
    best = study.best_trial
    if best.user_attrs.get("broken"):
        say(f"no trial met every limit; the least bad is kept and marked infeasible: {best.user_attrs['broken']}")
    chosen = RulesSpec(**best.user_attrs["rules"])

    train = simulate(train_inputs, chosen.rules(), search.capital)
    train_summary = portfolio_summary(train, calendar, search.capital)
    hold_inputs = prepare(market.hourly, market.features, market.instruments, market.rules_cfg,
                          models=market.models, start=str(hold_start), labels=market.labels or None)
    holdout = simulate(hold_inputs, chosen.rules(), search.capital)
    summary = portfolio_summary(holdout, calendar, search.capital)
    first = min(h.index[0] for h in market.hourly.values())
    config = PortfolioConfig(
        symbols=symbols, capital=search.capital, rules=chosen, models=dict(market.versions),
        model_sha256=dict(market.sha256), data=data_hashes(market),
        train=Period(start=str(first), end=str(train_end)), holdout=Period(start=str(hold_start), end=str(end)),
        objective={"name": f"{search.objective} of daily P&L (training period)", "value": float(best.value),
                   "feasible": not best.user_attrs.get("broken"), "trial": best.number + 1,
                   "trials": len(study.trials), "seed": search.seed, "train_entries": search.train_entries,
                   "limits": search.limits.model_dump(mode="json"), "search_digest": search.digest(),
                   "train_trades": int(len(train.trades)), "train_max_drawdown_pct": train_summary["max_drawdown_pct"]},
        holdout_figures=headline(summary),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    return Optimisation(config, study, train, holdout, summary, train_summary, time.perf_counter() - t0)


def headline(summary: dict) -> dict:
    """The JSON-ready headline figures of a ``portfolio_summary``."""
    out = {}
    for k in ("net_pnl", "trades", "days", "sharpe", "sortino", "max_drawdown_usd", "max_drawdown_pct", "calmar",
              "max_open"):
        v = summary.get(k)
        if isinstance(v, float | np.floating):
            v = None if v != v else round(float(v), 6)
        elif isinstance(v, np.integer):
            v = int(v)
        out[k] = v
    return out
