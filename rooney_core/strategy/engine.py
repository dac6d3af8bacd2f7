"""The decision core: one instrument's IBS strategy, one closed bar at a time.

No Backtrader, no I/O, no clock. An adapter feeds it, in time order:

* ``on_fill`` / ``on_order_failed`` for the order it placed, when the broker answers (a
  market order placed at bar t's close fills at bar t+1's open plus slippage, so the
  adapter reports the fill *before* giving it bar t+1);
* ``on_bar`` with each closed hourly bar and its feature row (as of that bar's close),
  which returns the order to place at that close, if any.

Three adapters run exactly this and nothing else decides: ``IbsStrategy`` (Backtrader:
backtests and candidate extraction), the live engine (paper or routed orders) and the
portfolio engine. Only the feature source and the broker differ. The rules themselves are
the pure functions of ``rules.py``; every signal, veto, order and fill is kept in
``decisions`` with its reason, and every closed trade in ``trades``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from rooney_core.config import Instrument, StrategyConfig
from rooney_core.strategy import rules

BUY, SELL = "buy", "sell"


class VetoModel(Protocol):
    """What the core needs from a veto model: P(win) of one feature row in
    ``feature_names`` order (see ``models.py`` for the adapters)."""

    feature_names: list[str]
    threshold: float

    def probability(self, values: np.ndarray) -> float: ...


@dataclass(frozen=True)
class VetoDecision:
    allowed: bool
    probability: float | None
    reason: str


def veto_decision(model: VetoModel | None, source_names: list[str], row: np.ndarray,
                  veto_enabled: bool, when_no_model: str) -> VetoDecision:
    """Ask the model (if any) whether to take a base entry. Missing or warming-up features
    veto the entry with the reason, never become zeros (parity rule 6)."""
    if not veto_enabled:
        return VetoDecision(True, None, "veto off")
    if model is None:
        if when_no_model == "trade_unfiltered":
            return VetoDecision(True, None, "no model deployed: trading unfiltered")
        return VetoDecision(False, None, "no model deployed: not trading")
    idx = [source_names.index(n) for n in model.feature_names]
    values = row[idx]
    missing = [n for n, v in zip(model.feature_names, values, strict=True) if v != v]
    if missing:
        return VetoDecision(False, None, f"missing or warming-up features: {', '.join(missing)}")
    p = float(model.probability(values))
    if p >= model.threshold:
        return VetoDecision(True, p, f"P(win) {p:.3f} >= threshold {model.threshold:.3f}")
    return VetoDecision(False, p, f"P(win) {p:.3f} < threshold {model.threshold:.3f}")


@dataclass(frozen=True)
class OrderIntent:
    """A market order to place at the close of ``signal_time``'s bar."""

    side: str  # BUY (an entry) or SELL (an exit)
    contracts: int
    reason: str
    signal_time: Any
    probability: float | None = None


def bar_start_time(ts: Any) -> time:
    """Time of day of a naive exchange-local bar start."""
    minute = int(np.datetime64(ts, "m").astype(np.int64)) % 1440
    return time(minute // 60, minute % 60)


@lru_cache(maxsize=1 << 16)
def _exit_window(calendar, exit_bar: time, day: int) -> tuple[np.datetime64, np.datetime64]:
    """The calendar's exit window of a trading date (days since 1970), shared by every core
    (a portfolio optimisation makes many)."""
    d = np.datetime64(day, "D")
    return calendar.exit_bar_at(np.array([d]), exit_bar)[0], calendar.close_at(np.array([d]))[0]


class DecisionCore:
    """Long-only IBS mean reversion on one instrument, one position at a time."""

    def __init__(self, rules_cfg: StrategyConfig, instrument: Instrument, feature_names: list[str],
                 model: VetoModel | None = None, veto_enabled: bool = True):
        self.cfg, self.inst = rules_cfg, instrument
        self.feature_names = list(feature_names)
        self.model, self.veto_enabled = model, veto_enabled
        self._ibs_col = self.feature_names.index("ibs")
        self.bars_seen = 0  # bars given to on_bar; a bar's index is its count minus one
        self.pending: OrderIntent | None = None  # placed, not yet filled or failed
        self.position: rules.Position | None = None
        self.exit_reason: str | None = None
        self.entry: dict | None = None  # the open trade's record so far
        self.trades: list[dict] = []
        self.decisions: list[dict] = []
        self._windows: dict = {}  # trading date (days since 1970) -> (exit bar start, session close)
        self._shift = instrument.calendar._shift_minutes  # minutes that move a bar onto its trading date

    def _exit_window(self, t: np.datetime64) -> tuple[np.datetime64, np.datetime64]:
        """(exit bar start, close) of the session of the bar starting at ``t`` (minutes;
        exchange calendar: early closes move both), cached per trading date (the calendar's
        own rule, in integer minutes: this runs at every bar)."""
        day = (int(t.astype(np.int64)) + self._shift) // 1440
        win = self._windows.get(day)
        if win is None:
            win = self._windows[day] = _exit_window(self.inst.calendar, self.cfg.exits.session_exit_bar, day)
        return win

    def _log(self, ts: Any, event: str, reason: str, **extra) -> None:
        self.decisions.append({"time": ts, "event": event, "reason": reason, **extra})

    # -- the broker's answers -----------------------------------------------------------------
    def on_fill(self, ts: Any, price: float, contracts: int) -> None:
        """The pending order filled at ``price`` (slippage included) in bar ``ts``."""
        order = self.pending
        if order is None:
            raise RuntimeError(f"{self.inst.symbol} {ts}: a fill without a pending order")
        price = round(price, self.inst.price_decimals)  # the tick grid, not float arithmetic
        self.pending = None
        if order.side == BUY:
            self.position = rules.Position(price, int(contracts), bars_held=0)
            self.entry.update(entry_time=ts, entry_price=price)
            self._log(ts, "entry_fill", "filled at open + slippage", price=price)
        else:
            self._close_trade(ts, price)

    def on_order_failed(self, ts: Any, status: str) -> None:
        order, self.pending = self.pending, None
        self._log(ts, "order_failed", status)
        if order is not None and order.side == BUY:
            self.entry = None

    def _close_trade(self, ts: Any, price: float) -> None:
        e, contracts = self.entry, self.position.contracts
        gross = round((price - e["entry_price"]) * contracts * self.inst.point_value, 2)  # $ to the cent
        commission = round(2.0 * self.inst.commission_per_side * contracts, 2)
        self.trades.append({**e, "exit_time": ts, "exit_price": price, "exit_reason": self.exit_reason,
                            "contracts": contracts, "bars_held": self.position.bars_held,
                            "pnl_gross": gross, "commission": commission, "pnl_net": round(gross - commission, 2)})
        self._log(ts, "exit_fill", self.exit_reason, price=price)
        self.position = self.exit_reason = self.entry = None

    # -- a closed bar ------------------------------------------------------------------------------
    def on_bar(self, ts: Any, close: float, row: np.ndarray) -> OrderIntent | None:
        """Decide at the close of bar ``ts`` (its close price and feature row); returns the
        order to place now, or None."""
        i = self.bars_seen
        self.bars_seen += 1
        if self.pending is not None:
            return None  # one order at a time: wait for the broker's answer
        ibs = row[self._ibs_col]
        t = np.datetime64(ts, "m")
        minute = int(t.astype(np.int64)) % 1440
        bar_start = time(minute // 60, minute % 60)  # bar_start_time(ts)
        exit_bar, session_close = self._exit_window(t)
        if self.position is not None:
            ps = self.position = rules.Position(self.position.entry_price, self.position.contracts,
                                                self.position.bars_held + 1)
            reason = rules.exit_reason(ps, close, ibs, self.cfg, exit_bar <= t < session_close)
            if reason is None:
                return None
            self.exit_reason = reason
            self.entry["exit_signal_time"] = ts
            self._log(ts, "exit_order", reason)
            self.pending = OrderIntent(SELL, ps.contracts, reason, ts)
            return self.pending
        if not rules.entry_signal(ibs, bar_start, self.cfg, room=t < exit_bar):
            return None
        decision = veto_decision(self.model, self.feature_names, row, self.veto_enabled,
                                 self.cfg.veto.when_no_model)
        if not decision.allowed:
            self._log(ts, "veto", decision.reason, probability=decision.probability)
            return None
        size = rules.position_size(self.cfg)
        reason = f"IBS {ibs:.3f} <= {self.cfg.entry.ibs_max}; {decision.reason}"
        self._log(ts, "entry_order", reason, probability=decision.probability)
        self.entry = {"signal_time": ts, "signal_index": i, "probability": decision.probability}
        self.pending = OrderIntent(BUY, size, reason, ts, decision.probability)
        return self.pending

    def entry_signals(self, times: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Whether each bar (start ``times``, feature ``rows``) gives a base entry signal when
        flat: what ``on_bar`` asks first, by the same rule and calendar. An adapter holding
        the whole series may give a flat core's non-signal bars to ``skip_bar`` instead of
        ``on_bar`` (the same outcome: the bar is counted and nothing else happens)."""
        out = np.zeros(len(times), dtype=bool)
        for i, ts in enumerate(times):
            t = np.datetime64(ts, "m")
            minute = int(t.astype(np.int64)) % 1440
            exit_bar, _ = self._exit_window(t)
            out[i] = rules.entry_signal(rows[i, self._ibs_col], time(minute // 60, minute % 60), self.cfg,
                                        room=t < exit_bar)
        return out

    def skip_bar(self) -> None:
        """A bar that cannot change a flat core's state (``entry_signals`` says no signal)."""
        if self.position is not None or self.pending is not None:
            raise RuntimeError(f"{self.inst.symbol}: only a flat core's bar may be skipped")
        self.bars_seen += 1

    # -- state, for a restart at the next bar ----------------------------------------------------
    def snapshot(self, with_trades: bool = True) -> dict:
        """Everything the core needs to go on after a restart, JSON-ready (decisions are not
        state: the live engine writes them to the prediction log as they happen). Without
        ``with_trades`` the closed trades are left out (only their count): the live engine
        keeps them in its trades files, so its per-bar state stays small."""
        def enc(v):
            if isinstance(v, np.datetime64):
                return str(v.astype("datetime64[s]"))
            return v.item() if isinstance(v, np.generic) else v

        def rec(d):
            return None if d is None else {k: enc(v) for k, v in d.items()}

        pending = None if self.pending is None else {**self.pending.__dict__,
                                                     "signal_time": enc(self.pending.signal_time)}
        position = None if self.position is None else self.position.__dict__.copy()
        return {"bars_seen": self.bars_seen, "pending": pending, "position": position,
                "exit_reason": self.exit_reason, "entry": rec(self.entry),
                "trades": [rec(t) for t in self.trades] if with_trades else [], "trades_count": len(self.trades)}

    def restore(self, state: dict, trades: list[dict] | None = None) -> None:
        """Put back what ``snapshot`` saved (``trades``: the closed trades, when the snapshot
        left them out)."""
        def dec(k, v):
            return np.datetime64(v, "ns") if k.endswith("_time") and v is not None else v

        def rec(d):
            return None if d is None else {k: dec(k, v) for k, v in d.items()}

        self.bars_seen = int(state["bars_seen"])
        p = state["pending"]
        self.pending = None if p is None else OrderIntent(**{**p, "signal_time": dec("signal_time", p["signal_time"])})
        self.position = None if state["position"] is None else rules.Position(**state["position"])
        self.exit_reason = state["exit_reason"]
        self.entry = rec(state["entry"])
        self.trades = [rec(t) for t in (state["trades"] if trades is None else trades)]

    def open_position(self) -> dict | None:
        """The filled, still open position's record (for equity at the end of a run)."""
        if self.position is None or self.entry is None or "entry_price" not in self.entry:
            return None
        return {**self.entry, "contracts": self.position.contracts, "bars_held": self.position.bars_held}
