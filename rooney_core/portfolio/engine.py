"""The portfolio engine: every instrument in one time-ordered loop over hourly bars, each on
the production decision core (``DecisionCore``, as in the backtest and the live engine),
with portfolio rules applied at each entry.

At every bar time, instruments with a bar at that time are taken in symbol order: first the
pending order's fill at the bar's open (the paper broker: next open plus slippage, the one
cost table), then the core's decision at its close. An entry order the core places is then
checked against the portfolio rules, **in this fixed order** (the first that refuses wins,
and the entry is skipped: the core is told its order failed, so it stays flat):

The rules and their state live in ``guard.PortfolioGuard``, which the live engine runs too.

1. ``max_drawdown_stop``: the account's marked-to-market drawdown from its peak (in $) has
   reached the limit, or its equity is gone (<= 0; unless ``halt_when_broke`` is off, as in
   ``PortfolioRules.off()``): no new entry for the rest of the run;
2. ``daily_loss_stop``: the account's P&L since the current session began (marked to market)
   has reached minus the limit: no new entry until the next session (it stays stopped for
   the session even if the P&L recovers);
3. ``max_positions``: positions open or entries pending across instruments;
4. ``correlation``: an open position's instrument has a rolling correlation of hourly returns
   with this one above ``corr_rho`` over the last ``corr_window`` bar times *strictly
   before* this bar (only past bars: the decision at t never sees t+1; bars before the
   run's start warm the window);
5. ``allocation``: the instrument's (or its group's) notional at entry, at the size the
   sizing rule gives, would exceed its cap, a multiple of the account's equity;
6. sizing: ``contracts`` per instrument (default 1), or with ``risk_budget`` a volatility
   target: as many contracts as keep one hourly ATR of the position (``atr14_pct`` x close x
   point value, known at the signal bar's close) within the budget in $, at least 1 and at
   most ``max_contracts``; never refused.

No P&L is booked before a trade exits (the cores book closed trades only); equity is marked
to market at every bar time: capital + closed P&L + open positions at their last close.
A skipped entry is recorded with the rule that refused it and its counterfactual P&L: the
same signal simulated on its own with the same exit rules, fills and costs
(``rooney_core.training.candidates.simulate_signal``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rooney_core.backtest.daily import marked_to_market
from rooney_core.config import Instrument, StrategyConfig
from rooney_core.live.paper import PaperBroker
from rooney_core.portfolio.guard import RULE_ORDER, PortfolioGuard, PortfolioRules
from rooney_core.strategy.engine import BUY, DecisionCore, VetoModel

__all__ = ["RULE_ORDER", "PortfolioInputs", "PortfolioResult", "PortfolioRules", "daily_pnl", "portfolio_summary",
           "prepare", "run_portfolio", "simulate"]


@dataclass
class PortfolioResult:
    trades: pd.DataFrame  # every instrument's closed trades, with a symbol column
    equity: pd.Series  # marked to market at every bar time
    skipped: pd.DataFrame  # signal_time, symbol, rule, reason, counterfactual_pnl
    max_open: int  # most positions open (or pending) at once
    open_positions: dict[str, dict] = field(default_factory=dict)
    decisions: pd.DataFrame | None = None  # every instrument's decisions, with a symbol column
    stopped_early: str | None = None  # simulate's optimiser shortcuts: why the run ended before its end

    @property
    def net_pnl(self) -> float:
        return float(self.trades["pnl_net"].sum()) if len(self.trades) else 0.0


@dataclass
class PortfolioInputs:
    """What a portfolio run needs that no rule changes, prepared once (``prepare``) and run
    many times (``simulate``: the optimiser's trials)."""

    symbols: list[str]
    instruments: dict[str, Instrument]
    rules_cfg: StrategyConfig
    bars: dict[str, pd.DataFrame]
    names: dict[str, list[str]]  # feature columns per instrument
    x: dict[str, np.ndarray]  # feature rows
    signal: dict[str, np.ndarray]  # base entry signal when flat, per bar
    times: np.ndarray  # every bar time, the portfolio's clock
    events: list[tuple[int, str, int, float, float]]  # (clock index, symbol, bar index, open, close) in order
    warm: dict[str, pd.Series]  # closes before the start (the correlation window)
    models: dict[str, VetoModel | None]
    known: dict[str, dict]  # symbol -> {signal time: net P&L} from the labels


def prepare(hourly: dict[str, pd.DataFrame], features: dict[str, pd.DataFrame],
            instruments: dict[str, Instrument], rules_cfg: StrategyConfig,
            models: dict[str, VetoModel | None] | None = None, start: str | None = None, end: str | None = None,
            labels: dict[str, pd.DataFrame] | None = None) -> PortfolioInputs:
    """Slice the bars to ``[start, end)``, align features, find the bars that can give a
    signal, and predict the veto for every one of them once (``BatchedVeto``: bit for bit the
    live engine's one-row prediction)."""
    from rooney_core.strategy.models import BatchedVeto, RowVeto

    symbols = sorted(hourly)
    lo = pd.Timestamp(start) if start else None
    hi = pd.Timestamp(end) if end else None
    bars, names, x, signal, vetoes = {}, {}, {}, {}, {}
    for s in symbols:
        b = hourly[s]
        keep = np.ones(len(b), dtype=bool)
        if lo is not None:
            keep &= b.index >= lo
        if hi is not None:
            keep &= b.index < hi
        bars[s] = b[keep]
        f = features[s].loc[bars[s].index]
        names[s], x[s] = list(f.columns), f.to_numpy(dtype=np.float64)
        probe = DecisionCore(rules_cfg, instruments[s], names[s])
        signal[s] = probe.entry_signals(bars[s].index.values, x[s])  # a flat core's other bars: skip_bar
        model = (models or {}).get(s)
        if model is not None and hasattr(model, "estimator") and not isinstance(model, RowVeto):
            model = BatchedVeto(model.estimator, model.feature_names, model.threshold, f, rows=signal[s])
        vetoes[s] = model
    times = np.unique(np.concatenate([bars[s].index.values for s in symbols]))
    order = []
    for j, s in enumerate(symbols):
        k = np.searchsorted(times, bars[s].index.values)
        order.append(np.stack([k, np.full(len(k), j), np.arange(len(k))], axis=1))
    ev = np.concatenate(order) if order else np.empty((0, 3), dtype=np.int64)
    ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]  # by time, then symbol
    opens = {s: bars[s]["open"].to_numpy(dtype=np.float64) for s in symbols}
    closes = {s: bars[s]["close"].to_numpy(dtype=np.float64) for s in symbols}
    events = [(int(k), symbols[j], int(i), float(opens[symbols[j]][i]), float(closes[symbols[j]][i]))
              for k, j, i in ev.tolist()]
    warm = {s: hourly[s]["close"][hourly[s].index < lo] for s in symbols} if lo is not None else {}
    known = {s: dict(zip(pd.DatetimeIndex(lab["signal_time"]).values, lab["pnl_net"].astype(float), strict=True))
             for s, lab in (labels or {}).items()}
    return PortfolioInputs(symbols, {s: instruments[s] for s in symbols}, rules_cfg, bars, names, x, signal, times,
                           events, warm, vetoes, known)


def run_portfolio(hourly: dict[str, pd.DataFrame], features: dict[str, pd.DataFrame],
                  instruments: dict[str, Instrument], rules_cfg: StrategyConfig, rules: PortfolioRules,
                  models: dict[str, VetoModel | None] | None = None, capital: float = 100_000.0,
                  start: str | None = None, end: str | None = None,
                  labels: dict[str, pd.DataFrame] | None = None) -> PortfolioResult:
    """Run the portfolio over the instruments' hourly bars (features aligned with them, on
    the full history so they are warm) from ``start`` to ``end`` (exclusive); the bars before
    ``start`` warm the correlation filter's window. ``labels`` (an instrument's labelled
    signals, ``extract_candidates``: the lake's ``candidates``) give skipped entries their
    counterfactual P&L by lookup; without them each is simulated when it is skipped."""
    inputs = prepare(hourly, features, instruments, rules_cfg, models, start, end, labels)
    return simulate(inputs, rules, capital)


def simulate(inp: PortfolioInputs, rules: PortfolioRules, capital: float = 100_000.0,
             keep_decisions: bool = True, abandon_drawdown_pct: float | None = None,
             skip_dead_tail: bool = False) -> PortfolioResult:
    """One portfolio run over prepared inputs under ``rules``.

    Two shortcuts for the optimiser, neither changing what it scores: with
    ``abandon_drawdown_pct`` the run stops (``stopped_early`` says so, the equity ends there)
    once the drawdown from the peak passes that share (the trial is infeasible whatever
    follows); with ``skip_dead_tail``, once the drawdown stop has halted the run and every
    position is closed, the equity stays flat to the end without simulating the refusals
    (``skipped`` then lacks them)."""
    symbols, instruments = inp.symbols, inp.instruments
    cores = {s: DecisionCore(inp.rules_cfg, instruments[s], inp.names[s], inp.models.get(s)) for s in symbols}
    brokers = {s: PaperBroker(instruments[s]) for s in symbols}
    atr_col = {s: inp.names[s].index("atr14_pct") if "atr14_pct" in inp.names[s] else None for s in symbols}
    guard = PortfolioGuard(rules, instruments, cores, capital)
    if inp.warm:
        guard.warm(inp.warm)
    times, x, signal = inp.times, inp.x, inp.signal
    equity = np.empty(len(times))
    skipped: list[dict] = []
    max_open = 0

    def counterfactual(s: str, i: int, t) -> float | None:
        if s in inp.known:
            return inp.known[s].get(t)
        return _counterfactual(inp.bars[s], x[s], i, instruments[s], inp.rules_cfg, inp.names[s])

    def close_time(k: int) -> None:
        nonlocal max_open
        max_open = max(max_open, len(guard.busy()))
        equity[k] = guard.mark(times[k])

    current = -1
    stopped_early = None
    for k, s, i, bar_open, bar_close in inp.events:
        if k != current:
            if current >= 0:
                close_time(current)
                if abandon_drawdown_pct is not None and guard.peak > 0 and \
                        (guard.peak - equity[current]) / guard.peak > abandon_drawdown_pct:
                    stopped_early = f"drawdown beyond {abandon_drawdown_pct:.0%} at {times[current]}"
                    equity, times = equity[:current + 1], times[:current + 1]
                    current = -1
                    break
                if skip_dead_tail and guard.halted is not None and not guard.busy():
                    equity[current + 1:] = equity[current]
                    stopped_early = f"halted and flat from {times[current]}"
                    current = -1
                    break
            current = k
            guard.begin(times[k])
        t = times[k]
        core, broker = cores[s], brokers[s]
        if broker.order is not None:
            fill = broker.fill_at_open(t, bar_open)
            if fill is not None:
                n_before = len(core.trades)
                core.on_fill(t, fill.price, fill.contracts)
                if len(core.trades) > n_before:
                    guard.trade_closed(core.trades[-1]["pnl_net"])
        guard.observe(s, t, bar_close)
        if core.position is None and core.pending is None and not signal[s][i]:
            core.skip_bar()
            continue
        intent = core.on_bar(t, bar_close, x[s][i])
        if intent is None:
            continue
        if intent.side == BUY:
            atr = x[s][i][atr_col[s]] if atr_col[s] is not None else float("nan")
            intent, why = guard.entry(s, t, intent, atr)
            if why is not None:
                core.on_order_failed(t, f"portfolio {why[0]}: {why[1]}")
                skipped.append({"signal_time": pd.Timestamp(t), "symbol": s, "rule": why[0], "reason": why[1],
                                "counterfactual_pnl": counterfactual(s, i, t)})
                continue
            core.pending = intent
        broker.place(intent)
    if current >= 0:
        close_time(current)

    rows = [{**tr, "symbol": s} for s in symbols for tr in cores[s].trades]
    trades = pd.DataFrame(rows)
    if len(trades):
        trades = trades.sort_values(["exit_time", "symbol"]).reset_index(drop=True)
    decisions = (pd.DataFrame([{**d, "symbol": s} for s in symbols for d in cores[s].decisions])
                 if keep_decisions else None)
    opened = {s: c.open_position() for s, c in cores.items() if c.open_position() is not None}
    return PortfolioResult(trades, pd.Series(equity, index=pd.DatetimeIndex(times), name="equity"),
                           pd.DataFrame(skipped, columns=["signal_time", "symbol", "rule", "reason",
                                                          "counterfactual_pnl"]), max_open, opened, decisions,
                           stopped_early)


def _counterfactual(bars: pd.DataFrame, x: np.ndarray, i: int, inst: Instrument, rules_cfg: StrategyConfig,
                    names: list[str]) -> float | None:
    """Net P&L of the skipped signal at bar ``i`` had it been taken alone (veto already passed)."""
    from rooney_core.training.candidates import simulate_signal

    trade = simulate_signal(bars, x[:, names.index("ibs")], i, inst, rules_cfg)
    return None if trade is None else float(trade["pnl_net"])


def daily_pnl(equity: pd.Series, calendar, capital: float) -> pd.Series:
    """Daily P&L of a marked-to-market equity series (one value per trading date: the last
    equity of the session minus the previous session's): ``daily.marked_to_market``."""
    return marked_to_market(equity, capital, calendar)


def portfolio_summary(result: PortfolioResult, calendar, capital: float = 100_000.0) -> dict:
    """The out-of-sample figures a risk manager reads: Sharpe, Sortino, max drawdown ($ and
    %), Calmar, the instruments' daily P&L correlations and each one's share of portfolio
    variance (risk contribution), trades skipped by rule with their counterfactual P&L."""
    from rooney_core.backtest.metrics import TRADING_DAYS, max_drawdown, sharpe, sortino

    daily = daily_pnl(result.equity, calendar, capital)
    dd_usd, dd_pct = max_drawdown(np.r_[capital, result.equity.to_numpy()])
    years = len(daily) / TRADING_DAYS if len(daily) else float("nan")
    annual = float(daily.sum() / years) if years and years == years else float("nan")
    out = {"net_pnl": result.net_pnl, "trades": int(len(result.trades)), "days": int(len(daily)),
           "sharpe": sharpe(daily), "sortino": sortino(daily), "max_drawdown_usd": dd_usd,
           "max_drawdown_pct": dd_pct, "calmar": annual / dd_usd if dd_usd > 0 else float("nan"),
           "max_open": result.max_open}
    if len(result.trades):
        per = result.trades.assign(day=calendar.trading_date(result.trades["exit_time"].to_numpy())
                                   .astype("datetime64[ns]"))
        by = per.pivot_table(index="day", columns="symbol", values="pnl_net", aggfunc="sum").reindex(
            daily.index).fillna(0.0)
        cov = by.cov()
        total = float(cov.to_numpy().sum())
        out["correlation"] = by.corr()
        out["risk_contribution"] = (cov.sum(axis=1) / total) if total > 0 else cov.sum(axis=1) * float("nan")
    skipped = result.skipped
    out["skipped"] = (skipped.groupby("rule").agg(skipped=("symbol", "size"),
                                                  counterfactual_pnl=("counterfactual_pnl", "sum"))
                      if len(skipped) else pd.DataFrame(columns=["skipped", "counterfactual_pnl"]))
    return out
