"""The portfolio rules as one stateful object, shared by the portfolio backtest
(``engine.run_portfolio``) and the live engine, so both refuse and size entries by the same
code on the same state.

An adapter drives it, for each bar time ``t`` in order (instruments at one time in symbol
order):

* ``begin(t)`` before any instrument's bar at ``t`` (a new account session starts the daily
  loss stop afresh, at the equity marked to market then);
* per instrument with a bar at ``t``: its fill at the open, then ``trade_closed(pnl)`` if the
  fill closed a trade, ``observe(s, t, close)`` with the bar's close, and, when its decision
  core places an entry, ``entry(s, t, intent, atr_pct)``: the resized order, or the refusal;
* ``mark(t)`` after every instrument's bar at ``t``: the equity, marked to market, and its peak.

Bars before the first decided one only ``observe`` (the correlation filter's window is warm
from the first decision, in the backtest and live alike). The account's sessions are those of
the first instrument's calendar in symbol order.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rooney_core.config import Instrument
from rooney_core.formats import money
from rooney_core.strategy.engine import BUY, DecisionCore, OrderIntent

_NAN = float("nan")
RULE_ORDER = ("max_drawdown_stop", "daily_loss_stop", "max_positions", "correlation", "allocation")


@dataclass(frozen=True)
class PortfolioRules:
    """The portfolio's rules (``None`` switches one off). ``allocation`` caps the notional of
    an instrument, or of its group (``Instrument.group``: equity_index, metals, energy, fx),
    as a multiple of the account's equity (futures: 2.0 = notional up to twice the equity)."""

    contracts: dict[str, int] = field(default_factory=dict)  # per instrument; default: the strategy's size
    max_positions: int | None = None
    corr_rho: float | None = None
    corr_window: int = 120
    daily_loss_stop: float | None = None  # $ per session, marked to market
    max_drawdown_stop: float | None = None  # $ from the equity peak
    allocation: dict[str, float] = field(default_factory=dict)  # instrument or group -> x equity
    risk_budget: float | None = None  # $ of one hourly ATR per position (volatility-targeted size)
    max_contracts: int = 10
    halt_when_broke: bool = True  # no new entry once the equity is gone (off: the rules-off reference)

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
        """Every rule off: each instrument's trades exactly as it trades alone."""
        return cls(halt_when_broke=False)


class PortfolioGuard:
    """The account: closed P&L, equity peak, session, stops, closes and the return window of
    the correlation filter, over the decision cores of the instruments it guards."""

    def __init__(self, rules: PortfolioRules, instruments: dict[str, Instrument], cores: dict[str, DecisionCore],
                 capital: float):
        self.rules, self.capital = rules, float(capital)
        self.symbols = sorted(instruments)
        self.instruments, self.cores = instruments, cores
        self.calendar = instruments[self.symbols[0]].calendar
        self._col = {s: j for j, s in enumerate(self.symbols)}
        self.closed_pnl = 0.0
        self.peak = self.capital
        self.session_day: np.datetime64 | None = None
        self.session_start_equity = self.capital
        self.stopped: dict[Any, str] = {}  # trading date -> why the daily loss stop fired that session
        self.halted: str | None = None  # why the max-drawdown stop fired (for the rest of the run)
        self.last_close: dict[str, float] = {}
        # the correlation filter's window: one row of hourly log returns per bar time (NaN
        # where an instrument has no bar), the current time's row kept apart until it is past
        self._window: deque[np.ndarray] = deque(maxlen=max(1, rules.corr_window))
        self._row_time: Any = None
        self._row: list[float] | None = None
        self._prev_close: dict[str, float] = {}
        self._past: np.ndarray | None = None  # the window as an array (until a row is added)

    # -- the return window -------------------------------------------------------------------------
    def observe(self, s: str, t: Any, close: float) -> None:
        """The close of ``s``'s bar at ``t`` (its return enters the window once ``t`` is past)."""
        if t != self._row_time:
            if self._row is not None:
                self._window.append(self._row)
                self._past = None
            self._row_time, self._row = t, [_NAN] * len(self.symbols)
        prev = self._prev_close.get(s)
        if prev is not None:
            self._row[self._col[s]] = math.log(close) - math.log(prev)
        self._prev_close[s] = close
        self.last_close[s] = close

    def warm(self, closes: dict[str, Any]) -> None:
        """Observe history bars (``{symbol: close series}``) in time order, instruments at one
        time in symbol order: only the last ``corr_window`` times are kept."""
        import pandas as pd

        frame = pd.DataFrame({s: closes[s] for s in self.symbols if s in closes and len(closes[s])})
        if frame.empty:
            return
        frame = frame.iloc[-(self.rules.corr_window + 1):] if self.rules.corr_rho is not None else frame.iloc[-1:]
        # the diff of each instrument over its own bars: take its previous close from before the slice
        for s in frame.columns:
            own = closes[s]
            first = frame[s].first_valid_index()
            earlier = own[own.index < first] if first is not None else own.iloc[:0]
            if len(earlier):
                self._prev_close[s] = float(earlier.iloc[-1])
        cols = list(frame.columns)
        values = frame.to_numpy()
        for k, t in enumerate(frame.index.values):
            for j, s in enumerate(cols):
                if values[k, j] == values[k, j]:
                    self.observe(s, t, float(values[k, j]))

    # -- the account ------------------------------------------------------------------------------
    def open_value(self) -> float:
        v = 0.0
        for s in self.symbols:
            pos = self.cores[s].position
            if pos is not None and s in self.last_close:
                v += (self.last_close[s] - pos.entry_price) * pos.contracts * self.instruments[s].point_value
        return v

    def equity(self) -> float:
        return self.capital + self.closed_pnl + self.open_value()

    def begin(self, t: Any) -> None:
        # the calendar's trading date, in integer minutes (this runs at every bar time)
        minutes = int(np.datetime64(t, "m").astype(np.int64)) + self.calendar._shift_minutes
        day = np.datetime64(minutes // 1440, "D")
        if day != self.session_day:
            self.session_day = day
            self.session_start_equity = self.equity()

    def trade_closed(self, pnl_net: float) -> None:
        self.closed_pnl += float(pnl_net)

    def mark(self, t: Any) -> float:
        eq = self.equity()
        self.peak = max(self.peak, eq)
        return eq

    def busy(self, exclude: str | None = None) -> list[str]:
        """Instruments with a position open or an entry pending."""
        return [o for o in self.symbols if o != exclude and
                (self.cores[o].position is not None or
                 (self.cores[o].pending is not None and self.cores[o].pending.side == BUY))]

    def entry(self, s: str, t: Any, intent: OrderIntent, atr_pct: float) -> tuple[OrderIntent | None, tuple | None]:
        """The entry ``intent`` of ``s`` at ``t`` sized by the rules, or ``(None, (rule,
        reason))`` when a rule refuses it (the first in ``RULE_ORDER``)."""
        rules = self.rules
        size = rules.size(s, intent.contracts, atr_pct, self.last_close[s], self.instruments[s].point_value)
        why = self._refusal(s, size)
        if why is None:
            return replace(intent, contracts=size), None
        if why[0] == "daily_loss_stop":
            self.stopped.setdefault(self.session_day, f"stopped for the session at {_ts(t)}: {why[1]}")
        if why[0] == "max_drawdown_stop" and self.halted is None:
            self.halted = f"stopped for the run at {_ts(t)}: {why[1]}"
        return None, why

    def _refusal(self, s: str, size: int) -> tuple[str, str] | None:
        rules, equity = self.rules, self.equity()
        if self.halted is not None:
            return "max_drawdown_stop", self.halted
        if equity <= 0 and rules.halt_when_broke:  # an account with nothing left opens nothing
            return "max_drawdown_stop", f"account equity {money(equity, cents=True)} <= 0"
        if rules.max_drawdown_stop is not None and self.peak - equity >= rules.max_drawdown_stop:
            return "max_drawdown_stop", (f"drawdown {money(self.peak - equity, cents=True)} >= "
                                         f"{money(rules.max_drawdown_stop, cents=True)}")
        if self.session_day in self.stopped:
            return "daily_loss_stop", self.stopped[self.session_day]
        if rules.daily_loss_stop is not None and equity - self.session_start_equity <= -rules.daily_loss_stop:
            return "daily_loss_stop", (f"session P&L {money(equity - self.session_start_equity, cents=True)} <= "
                                       f"{money(-rules.daily_loss_stop, cents=True)}")
        busy = self.busy(exclude=s)
        if rules.max_positions is not None and len(busy) >= rules.max_positions:
            return "max_positions", f"{len(busy)} positions open (max {rules.max_positions})"
        if rules.corr_rho is not None and busy and self._window:
            if self._past is None:
                self._past = np.array(self._window, dtype=np.float64)  # strictly before this bar time
            past = self._past
            need = max(10, rules.corr_window // 2)
            rhos = _correlations(past[:, self._col[s]], past[:, [self._col[o] for o in busy]], need)
            for o, rho in zip(busy, rhos, strict=True):  # the first open instrument, in symbol order
                if rho == rho and rho > rules.corr_rho:
                    return "correlation", f"correlation {rho:.2f} with open {o} > {rules.corr_rho}"
        inst = self.instruments[s]
        key = s if s in rules.allocation else inst.group
        cap = rules.allocation.get(key) if key is not None else None
        if cap is not None:
            members = [o for o in busy if o == key or self.instruments[o].group == key] if key != s else []
            held = sum(self.last_close.get(o, 0.0) * self.instruments[o].point_value * self._contracts(o)
                       for o in members)
            new = self.last_close[s] * inst.point_value * size
            if held + new > cap * equity:
                return "allocation", (f"{key} notional {held + new:,.0f} $ > {cap:g} x equity {equity:,.0f} $")
        return None

    def _contracts(self, o: str) -> int:
        c = self.cores[o]
        if c.position is not None:
            return c.position.contracts
        return c.pending.contracts if c.pending is not None else 0

    # -- state, for a restart of the live engine --------------------------------------------------
    def snapshot(self) -> dict:
        return {"closed_pnl": self.closed_pnl, "peak": self.peak,
                "session_day": None if self.session_day is None else str(self.session_day),
                "session_start_equity": self.session_start_equity,
                "stopped": {str(k): v for k, v in self.stopped.items()}, "halted": self.halted}

    def restore(self, saved: dict) -> None:
        self.closed_pnl, self.peak = float(saved["closed_pnl"]), float(saved["peak"])
        self.session_day = None if saved["session_day"] is None else np.datetime64(saved["session_day"], "D")
        self.session_start_equity = float(saved["session_start_equity"])
        self.stopped = {np.datetime64(k, "D"): v for k, v in saved.get("stopped", {}).items()}
        self.halted = saved.get("halted")


def _correlations(a: np.ndarray, b: np.ndarray, need: int) -> np.ndarray:
    """Pearson correlation of ``a`` with each column of ``b``, each over the rows where both
    have a return (NaN: fewer than ``need`` such rows, or no variation)."""
    ok = ~np.isnan(b) & ~np.isnan(a)[:, None]
    n = ok.sum(axis=0)
    x = np.where(ok, a[:, None], 0.0)
    y = np.where(ok, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = x.sum(axis=0) / n, y.sum(axis=0) / n
        dx, dy = np.where(ok, x - mx, 0.0), np.where(ok, y - my, 0.0)
        rho = (dx * dy).sum(axis=0) / np.sqrt((dx * dx).sum(axis=0) * (dy * dy).sum(axis=0))
    rho[n < need] = np.nan
    return rho


def _ts(t: Any) -> str:
    return str(np.datetime64(t, "s")).replace("T", " ")
