"""``IbsStrategy``: the one Backtrader strategy, for backtests and candidate extraction: a
thin adapter over the decision core (``engine.py``), which the live and portfolio engines
run too. Only the feature source (precomputed arrays here, a rolling buffer live) and the
broker differ between them.

At each bar's close it gives the core the bar and its features as of that close and places
the market order the core returns; Backtrader fills it at the next bar's open plus the
configured slippage (never at the signal bar's close), and the fill goes back to the core.
"""

from __future__ import annotations

import logging
from typing import Protocol

import backtrader as bt
import numpy as np
import pandas as pd

from rooney_core.strategy.engine import BUY, DecisionCore

log = logging.getLogger(__name__)


class FeatureSource(Protocol):
    """Features as of each bar's close. ``values(i)`` is the row for feed bar ``i``."""

    names: list[str]

    def values(self, i: int) -> np.ndarray: ...

    def timestamp(self, i: int) -> np.datetime64: ...


class PrecomputedFeatures:
    """Research source: a feature frame computed once by the registry, one row per bar."""

    def __init__(self, frame: pd.DataFrame):
        self.names = list(frame.columns)
        self._values = frame.to_numpy(dtype=np.float64)
        self._index = frame.index.values

    def values(self, i: int) -> np.ndarray:
        return self._values[i]

    def timestamp(self, i: int) -> np.datetime64:
        return self._index[i]


class IbsStrategy(bt.Strategy):
    """Backtrader adapter over the decision core: bars and features in, the core's orders out
    to Backtrader's broker, its fills back to the core. Nothing here decides."""

    params = (
        ("rules", None),  # StrategyConfig
        ("instrument", None),  # Instrument (session close, point value, commission)
        ("features", None),  # FeatureSource aligned with the feed's bars
        ("model", None),  # VetoModel or None
        ("veto_enabled", True),  # False: candidate extraction (every base trade)
    )

    def __init__(self):
        src: FeatureSource = self.p.features
        self.src = src
        self.core = DecisionCore(self.p.rules, self.p.instrument, src.names, self.p.model, self.p.veto_enabled)

    @property
    def trades(self) -> list[dict]:
        return self.core.trades

    @property
    def decisions(self) -> list[dict]:
        return self.core.decisions

    def _now(self) -> np.datetime64:
        return self.src.timestamp(len(self.data) - 1)

    def notify_order(self, order):
        if order.status in (order.Submitted, order.Accepted):
            return
        if order.status == order.Completed:
            self.core.on_fill(self._now(), order.executed.price, int(abs(order.executed.size)))
        else:
            self.core.on_order_failed(self._now(), order.getstatusname())

    def next(self):
        i = len(self.data) - 1
        intent = self.core.on_bar(self.src.timestamp(i), self.data.close[0], self.src.values(i))
        if intent is None:
            return
        log.debug("%s %s %s: %s", self.p.instrument.symbol, intent.signal_time, intent.side, intent.reason)
        if intent.side == BUY:
            self.buy(size=intent.contracts)
        else:
            self.close()
