"""The portfolio engine: every instrument in one time-ordered loop over hourly bars, each on
the production decision core (``DecisionCore``, as in the backtest and the live engine),
with portfolio rules applied at each entry.

At every bar time, instruments with a bar at that time are taken in symbol order: first the
pending order's fill at the bar's open (the paper broker: next open plus slippage, the one
cost table), then the core's decision at its close. An entry order the core places is then
checked against the portfolio rules, **in this fixed order** (the first that refuses wins,
and the entry is skipped: the core is told its order failed, so it stays flat):

1. ``max_drawdown_stop``: the account's marked-to-market drawdown from its peak (in $) has
   reached the limit: no new entry for the rest of the run;
2. ``daily_loss_stop``: the account's P&L since the current session began (marked to market)
   has reached minus the limit: no new entry until the next session (it stays stopped for
   the session even if the P&L recovers);
3. ``max_positions``: positions open or entries pending across instruments;
4. ``correlation``: an open position's instrument has a rolling correlation of hourly returns
   with this one above ``corr_rho`` over the last ``corr_window`` bars *strictly before*
   this bar's close (only past bars: the decision at t never sees t+1);
5. ``allocation``: the instrument's (or its group's) notional at entry would exceed its
   share of the account's equity;
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

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from rooney_core.config import Instrument, StrategyConfig
from rooney_core.live.paper import PaperBroker
from rooney_core.strategy.engine import BUY, DecisionCore, VetoModel

RULE_ORDER = ("max_drawdown_stop", "daily_loss_stop", "max_positions", "correlation", "allocation")


@dataclass(frozen=True)
class PortfolioRules:
    contracts: dict[str, int] = field(default_factory=dict)  # per instrument; default 1
    max_positions: int | None = None
    corr_rho: float | None = None
    corr_window: int = 120
    daily_loss_stop: float | None = None  # $ per session, marked to market
    max_drawdown_stop: float | None = None  # $ from the equity peak
    allocation: dict[str, float] = field(default_factory=dict)  # instrument or group -> share of equity
    groups: dict[str, str] = field(default_factory=dict)  # instrument -> group (for allocation)
    risk_budget: float | None = None  # $ of one hourly ATR per position (volatility-targeted size)
    max_contracts: int = 10

    def size(self, symbol: str, default: int, atr_pct: float, close: float, point_value: float) -> int:
        """Contracts for an entry of ``symbol``: fixed, or volatility-targeted."""
        if self.risk_budget is None:
            return int(self.contracts.get(symbol, default))
        risk = atr_pct * close * point_value  # $ per contract of one hourly ATR
        if not risk > 0:  # missing or zero ATR: the smallest position
            return 1
        return int(min(self.max_contracts, max(1, np.floor(self.risk_budget / risk))))

    @classmethod
    def off(cls) -> PortfolioRules:
        return cls()


@dataclass
class PortfolioResult:
    trades: pd.DataFrame  # every instrument's closed trades, with a symbol column
    equity: pd.Series  # marked to market at every bar time
    skipped: pd.DataFrame  # signal_time, symbol, rule, reason, counterfactual_pnl
    max_open: int  # most positions open (or pending) at once
    open_positions: dict[str, dict] = field(default_factory=dict)

    @property
    def net_pnl(self) -> float:
        return float(self.trades["pnl_net"].sum()) if len(self.trades) else 0.0


def run_portfolio(hourly: dict[str, pd.DataFrame], features: dict[str, pd.DataFrame],
                  instruments: dict[str, Instrument], rules_cfg: StrategyConfig, rules: PortfolioRules,
                  models: dict[str, VetoModel | None] | None = None, capital: float = 100_000.0,
                  start: str | None = None, labels: dict[str, pd.DataFrame] | None = None) -> PortfolioResult:
    """Run the portfolio over the instruments' hourly bars (features aligned with them, on
    the full history so they are warm) from ``start``. ``labels`` (an instrument's labelled
    signals, ``extract_candidates``: the lake's ``candidates``) give skipped entries their
    counterfactual P&L by lookup; without them each is simulated when it is skipped."""
    from rooney_core.strategy.models import RowVeto

    symbols = sorted(hourly)
    lo = pd.Timestamp(start) if start else None
    bars = {s: hourly[s][hourly[s].index >= lo] if lo is not None else hourly[s] for s in symbols}
    feats = {s: features[s].loc[bars[s].index] for s in symbols}
    cores, brokers, x, opens, closes, index = {}, {}, {}, {}, {}, {}
    for s in symbols:
        model = (models or {}).get(s)
        if model is not None and hasattr(model, "estimator") and not isinstance(model, RowVeto):
            model = RowVeto(model.estimator, model.feature_names, model.threshold)
        cores[s] = DecisionCore(rules_cfg, instruments[s], list(feats[s].columns), model)
        brokers[s] = PaperBroker(instruments[s])
        x[s] = feats[s].to_numpy(dtype=np.float64)
        opens[s], closes[s] = bars[s]["open"].to_numpy(), bars[s]["close"].to_numpy()
        index[s] = {t: i for i, t in enumerate(bars[s].index.values)}
    atr_col = {s: list(feats[s].columns).index("atr14_pct") if "atr14_pct" in feats[s].columns else None
               for s in symbols}
    times = np.unique(np.concatenate([bars[s].index.values for s in symbols]))
    # hourly log returns on the common clock, for the correlation filter (NaN where no bar)
    rets = pd.DataFrame({s: np.log(bars[s]["close"]).diff() for s in symbols}).reindex(times)

    closed_pnl = 0.0
    last_close: dict[str, float] = {}
    equity = np.empty(len(times))
    peak = capital
    session_day, session_start_equity = None, capital
    skipped: list[dict] = []
    max_open = 0
    cal = instruments[symbols[0]].calendar
    known = {s: dict(zip(pd.DatetimeIndex(lab["signal_time"]).values, lab["pnl_net"].astype(float), strict=True))
             for s, lab in (labels or {}).items()}

    def counterfactual(s: str, i: int, t) -> float | None:
        if s in known:
            return known[s].get(t)
        return _counterfactual(bars[s], x[s], i, instruments[s], rules_cfg, list(feats[s].columns))

    def open_value() -> float:
        v = 0.0
        for s in symbols:
            pos = cores[s].position
            if pos is not None and s in last_close:
                v += (last_close[s] - pos.entry_price) * pos.contracts * instruments[s].point_value
        return v

    stopped: dict = {}  # trading date -> why the daily loss stop fired that session
    halted: str | None = None  # why the max-drawdown stop fired (for the rest of the run)
    for k, t in enumerate(times):
        day = cal.trading_date(np.array([t]))[0]
        if day != session_day:
            session_day = day
            session_start_equity = capital + closed_pnl + open_value()
        for s in symbols:
            i = index[s].get(t)
            if i is None:
                continue
            core, broker = cores[s], brokers[s]
            fill = broker.fill_at_open(t, float(opens[s][i]))
            if fill is not None:
                n_before = len(core.trades)
                core.on_fill(t, fill.price, fill.contracts)
                if len(core.trades) > n_before:
                    closed_pnl += core.trades[-1]["pnl_net"]
            last_close[s] = float(closes[s][i])
            intent = core.on_bar(t, float(closes[s][i]), x[s][i])
            if intent is None:
                continue
            if intent.side == BUY:
                eq_now = capital + closed_pnl + open_value()
                why = _refusal(s, t, eq_now, peak, session_start_equity, cores, rules, rets, instruments,
                               last_close, intent, stopped.get(day), halted)
                if why is not None and why[0] == "daily_loss_stop":
                    stopped.setdefault(day, f"stopped for the session at {pd.Timestamp(t)}: {why[1]}")
                if why is not None and why[0] == "max_drawdown_stop":
                    halted = halted or f"stopped for the run at {pd.Timestamp(t)}: {why[1]}"
                if why is not None:
                    core.on_order_failed(t, f"portfolio: {why[1]}")
                    skipped.append({"signal_time": pd.Timestamp(t), "symbol": s, "rule": why[0], "reason": why[1],
                                    "counterfactual_pnl": counterfactual(s, i, t)})
                    continue
                atr = x[s][i][atr_col[s]] if atr_col[s] is not None else float("nan")
                size = rules.size(s, intent.contracts, atr, float(closes[s][i]), instruments[s].point_value)
                intent = replace(intent, contracts=size)
                core.pending = intent
            broker.place(intent)
        busy = sum(1 for s in symbols if cores[s].position is not None or
                   (cores[s].pending is not None and cores[s].pending.side == BUY))
        max_open = max(max_open, busy)
        equity[k] = capital + closed_pnl + open_value()
        peak = max(peak, equity[k])

    rows = [{**tr, "symbol": s} for s in symbols for tr in cores[s].trades]
    trades = pd.DataFrame(rows)
    if len(trades):
        trades = trades.sort_values(["exit_time", "symbol"]).reset_index(drop=True)
    opened = {s: c.open_position() for s, c in cores.items() if c.open_position() is not None}
    return PortfolioResult(trades, pd.Series(equity, index=pd.DatetimeIndex(times), name="equity"),
                           pd.DataFrame(skipped, columns=["signal_time", "symbol", "rule", "reason",
                                                          "counterfactual_pnl"]), max_open, opened)


def _refusal(s, t, equity, peak, session_start_equity, cores, rules: PortfolioRules, rets: pd.DataFrame,
             instruments, last_close, intent, stopped_today: str | None, halted: str | None
             ) -> tuple[str, str] | None:
    """(rule, reason) of the first portfolio rule refusing an entry of ``s`` at ``t``, or None."""
    if halted is not None:
        return "max_drawdown_stop", halted
    if rules.max_drawdown_stop is not None and peak - equity >= rules.max_drawdown_stop:
        return "max_drawdown_stop", f"drawdown {peak - equity:,.2f} $ >= {rules.max_drawdown_stop:,.2f}"
    if stopped_today is not None:
        return "daily_loss_stop", stopped_today
    if rules.daily_loss_stop is not None and equity - session_start_equity <= -rules.daily_loss_stop:
        return "daily_loss_stop", (f"session P&L {equity - session_start_equity:,.2f} $ <= "
                                   f"-{rules.daily_loss_stop:,.2f}")
    busy = [o for o, c in cores.items() if o != s and (c.position is not None or
                                                       (c.pending is not None and c.pending.side == BUY))]
    if rules.max_positions is not None and len(busy) >= rules.max_positions:
        return "max_positions", f"{len(busy)} positions open (max {rules.max_positions})"
    if rules.corr_rho is not None and busy:
        past = rets.loc[:t].iloc[:-1].tail(rules.corr_window)  # strictly before this bar's close
        for o in busy:
            pair = past[[s, o]].dropna()
            if len(pair) >= max(10, rules.corr_window // 2):
                rho = float(np.corrcoef(pair[s], pair[o])[0, 1])
                if rho > rules.corr_rho:
                    return "correlation", f"correlation {rho:.2f} with open {o} > {rules.corr_rho}"
    key = rules.groups.get(s, s)
    share = rules.allocation.get(s, rules.allocation.get(key))
    if share is not None:
        members = [o for o in busy if rules.groups.get(o, o) == key or o == s]
        held = sum(last_close.get(o, 0.0) * instruments[o].point_value * cores[o].position.contracts
                   for o in members if cores[o].position is not None)
        new = last_close[s] * instruments[s].point_value * rules.contracts.get(s, intent.contracts)  # fixed size
        if held + new > share * equity:
            return "allocation", f"{key} notional {held + new:,.0f} $ > {share:.0%} of equity {equity:,.0f} $"
    return None


def _counterfactual(bars: pd.DataFrame, x: np.ndarray, i: int, inst: Instrument, rules_cfg: StrategyConfig,
                    names: list[str]) -> float | None:
    """Net P&L of the skipped signal at bar ``i`` had it been taken alone (veto already passed)."""
    from rooney_core.training.candidates import simulate_signal

    trade = simulate_signal(bars, x[:, names.index("ibs")], i, inst, rules_cfg)
    return None if trade is None else float(trade["pnl_net"])


def daily_pnl(equity: pd.Series, calendar, capital: float) -> pd.Series:
    """Daily P&L of a marked-to-market equity series (one value per trading date: the last
    equity of the session minus the previous session's)."""
    days = calendar.trading_date(equity.index.values).astype("datetime64[ns]")
    last = equity.groupby(days).last()
    return last.diff().fillna(last.iloc[0] - capital) if len(last) else last


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
