"""``IbsStrategy``: the one Backtrader strategy for backtests, candidate extraction, paper
and live. Only the feature source (precomputed arrays here, a rolling buffer live) and the
broker differ between them.

At each bar's close it reads the features as of that close, applies the pure rules of
``rules.py`` and places market orders; Backtrader fills them at the next bar's open plus
the configured slippage (never at the signal bar's close). Every signal, veto, order and
fill is kept in ``decisions`` with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import time
from typing import Protocol

import backtrader as bt
import numpy as np
import pandas as pd

from rooney_core.config import Instrument, StrategyConfig
from rooney_core.strategy import rules

log = logging.getLogger(__name__)


class FeatureSource(Protocol):
    """Features as of each bar's close. ``values(i)`` is the row for feed bar ``i``."""

    names: list[str]

    def values(self, i: int) -> np.ndarray: ...

    def timestamp(self, i: int) -> np.datetime64: ...


class PrecomputedFeatures:
    """Research source: a feature frame computed once by the registry, one row per bar."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.names = list(frame.columns)
        self._values = frame.to_numpy(dtype=np.float64)
        self._index = frame.index.values

    def values(self, i: int) -> np.ndarray:
        return self._values[i]

    def timestamp(self, i: int) -> np.datetime64:
        return self._index[i]

    def column(self, name: str) -> np.ndarray:
        return self._values[:, self.names.index(name)]


class VetoModel(Protocol):
    """What the strategy needs from a veto model (see ``models.py`` for the adapters)."""

    feature_names: list[str]
    threshold: float

    def probability(self, i: int, values: np.ndarray) -> float: ...


@dataclass(frozen=True)
class VetoDecision:
    allowed: bool
    probability: float | None
    reason: str


def veto_decision(model: VetoModel | None, source_names: list[str], row: np.ndarray,
                  veto_enabled: bool, when_no_model: str, i: int = -1) -> VetoDecision:
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
    p = float(model.probability(i, values))
    if p >= model.threshold:
        return VetoDecision(True, p, f"P(win) {p:.3f} >= threshold {model.threshold:.3f}")
    return VetoDecision(False, p, f"P(win) {p:.3f} < threshold {model.threshold:.3f}")


class IbsStrategy(bt.Strategy):
    """Long-only IBS mean reversion on one instrument, one position at a time."""

    params = (
        ("rules", None),  # StrategyConfig
        ("instrument", None),  # Instrument (session close, point value, commission)
        ("features", None),  # FeatureSource aligned with the feed's bars
        ("model", None),  # VetoModel or None
        ("veto_enabled", True),  # False: candidate extraction (every base trade)
    )

    def __init__(self):
        cfg: StrategyConfig = self.p.rules
        inst: Instrument = self.p.instrument
        src: FeatureSource = self.p.features
        self.cfg, self.inst, self.src = cfg, inst, src
        self._ibs_col = src.names.index("ibs")
        self.order = None
        self.position_state: rules.Position | None = None
        self.pending_exit_reason: str | None = None
        self.entry: dict | None = None
        self.trades: list[dict] = []
        self.decisions: list[dict] = []

    # -- helpers ---------------------------------------------------------------------------
    def _i(self) -> int:
        return len(self.data) - 1

    def _bar_start(self, i: int) -> time:
        minute = int(np.datetime64(self.src.timestamp(i), "m").astype(np.int64)) % 1440
        return time(minute // 60, minute % 60)

    def _log(self, i: int, event: str, reason: str, **extra) -> None:
        rec = {"time": self.src.timestamp(i), "event": event, "reason": reason, **extra}
        self.decisions.append(rec)
        log.debug("%s %s %s: %s", self.inst.symbol, rec["time"], event, reason)

    # -- Backtrader callbacks ------------------------------------------------------------------
    def notify_order(self, order):
        if order.status in (order.Submitted, order.Accepted):
            return
        i = self._i()
        if order.status == order.Completed:
            # fills happen on the tick grid; Backtrader's open + slippage is float arithmetic
            price = round(order.executed.price, self.inst.price_decimals)
            if order.isbuy():
                self.position_state = rules.Position(price, int(order.executed.size), bars_held=0)
                self.entry.update(entry_time=self.src.timestamp(i), entry_price=price)
                self._log(i, "entry_fill", "filled at open + slippage", price=price)
            else:
                self._close_trade(i, price)
        else:
            self._log(i, "order_failed", order.getstatusname())
            if order.isbuy():
                self.entry = None
        self.order = None

    def _close_trade(self, i: int, price: float) -> None:
        e = self.entry
        contracts = self.position_state.contracts
        gross = round((price - e["entry_price"]) * contracts * self.inst.point_value, 2)  # $ to the cent
        commission = round(2.0 * self.inst.commission_per_side * contracts, 2)
        self.trades.append({
            **e,
            "exit_time": self.src.timestamp(i),
            "exit_price": price,
            "exit_reason": self.pending_exit_reason,
            "contracts": contracts,
            "bars_held": self.position_state.bars_held,
            "pnl_gross": gross,
            "commission": commission,
            "pnl_net": round(gross - commission, 2),
        })
        self._log(i, "exit_fill", self.pending_exit_reason, price=price)
        self.position_state = None
        self.pending_exit_reason = None
        self.entry = None

    def next(self):
        if self.order is not None:
            return
        i = self._i()
        row = self.src.values(i)
        ibs = row[self._ibs_col]
        bar_start = self._bar_start(i)
        if self.position_state is not None:
            ps = self.position_state
            self.position_state = ps = rules.Position(ps.entry_price, ps.contracts, ps.bars_held + 1)
            reason = rules.exit_reason(ps, self.data.close[0], ibs, bar_start, self.cfg, self.inst.calendar.close)
            if reason is not None:
                self.pending_exit_reason = reason
                self.entry["exit_signal_time"] = self.src.timestamp(i)
                self._log(i, "exit_order", reason)
                self.order = self.close()
            return
        if not rules.entry_signal(ibs, bar_start, self.cfg):
            return
        decision = veto_decision(self.p.model, self.src.names, row, self.p.veto_enabled,
                                 self.cfg.veto.when_no_model, i)
        if not decision.allowed:
            self._log(i, "veto", decision.reason, probability=decision.probability)
            return
        size = rules.position_size(self.cfg)
        self._log(i, "entry_order", f"IBS {ibs:.3f} <= {self.cfg.entry.ibs_max}; {decision.reason}",
                  probability=decision.probability)
        self.entry = {"signal_time": self.src.timestamp(i), "signal_index": i,
                      "probability": decision.probability}
        self.order = self.buy(size=size)
