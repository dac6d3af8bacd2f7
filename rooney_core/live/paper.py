"""The paper broker: fills the decision core's market orders the way a backtest does.

A market order placed at bar t's close fills at bar t+1's open plus slippage (a buy pays it,
a sell gives it up), from the one cost table in ``configs/instruments.yml``; the core rounds
the price to the tick grid. This is what live can do, and what Backtrader does in research,
so a paper replay must make exactly the backtest's trades (tested against ``run_backtest``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rooney_core.config import Instrument, StrategyConfig
from rooney_core.strategy.engine import BUY, DecisionCore, OrderIntent, VetoModel


@dataclass
class PaperFill:
    time: Any
    side: str
    contracts: int
    price: float


class PaperBroker:
    """Holds at most one order per instrument until the next bar's open."""

    def __init__(self, instrument: Instrument):
        self.inst = instrument
        self.order: OrderIntent | None = None

    def place(self, intent: OrderIntent) -> None:
        if self.order is not None:
            raise RuntimeError(f"{self.inst.symbol}: an order is already pending ({self.order})")
        self.order = intent

    def fill_at_open(self, ts: Any, open_price: float) -> PaperFill | None:
        """Fill the pending order at this bar's open plus slippage; None if there is none."""
        order, self.order = self.order, None
        if order is None:
            return None
        slip = self.inst.slippage_points
        price = open_price + slip if order.side == BUY else open_price - slip
        return PaperFill(ts, order.side, order.contracts, price)


def paper_replay(core: DecisionCore, broker: PaperBroker, bars: pd.DataFrame,
                 features: pd.DataFrame) -> Iterator[tuple[Any, OrderIntent | None]]:
    """Drive ``core`` over closed hourly ``bars`` with their feature rows, bar by bar, as the
    live engine does: first the pending order's fill at this bar's open, then the decision at
    its close. Yields (bar time, order placed at its close)."""
    if not bars.index.equals(features.index):
        raise ValueError("features must be aligned with the bars")
    x = features[core.feature_names].to_numpy(dtype=np.float64)
    opens, closes = bars["open"].to_numpy(), bars["close"].to_numpy()
    for i, ts in enumerate(bars.index.values):
        fill = broker.fill_at_open(ts, float(opens[i]))
        if fill is not None:
            core.on_fill(ts, fill.price, fill.contracts)
        intent = core.on_bar(ts, float(closes[i]), x[i])
        if intent is not None:
            broker.place(intent)
        yield ts, intent


def paper_trades(bars: pd.DataFrame, features: pd.DataFrame, instrument: Instrument, rules: StrategyConfig,
                 model: VetoModel | None = None, veto_enabled: bool = True) -> DecisionCore:
    """Run a whole frame through the paper path; the core holds the trades and decisions."""
    core = DecisionCore(rules, instrument, list(features.columns), model, veto_enabled)
    for _ in paper_replay(core, PaperBroker(instrument), bars, features):
        pass
    return core
