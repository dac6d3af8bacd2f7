"""The backtest runner: the production IbsStrategy in Backtrader with the one cost table.

Costs come from the instrument (configs/instruments.yml): commission per contract per
side, slippage in ticks per side applied to every fill (entries and exits alike), point
value = tick value / tick size. Market orders placed at a bar's close fill at the next
bar's open plus slippage. Features are computed on the full history beforehand (so they
are warm at the period's start) and sliced to the period with the bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import backtrader as bt
import numpy as np
import pandas as pd

from rooney_core.backtest.metrics import daily_equity, equity_by_bar, performance_metrics
from rooney_core.config import Instrument, StrategyConfig
from rooney_core.errors import RooneyError
from rooney_core.strategy import rules as strategy_rules
from rooney_core.strategy.engine import VetoModel
from rooney_core.strategy.feed import ArrayFeed
from rooney_core.strategy.ibs_strategy import IbsStrategy, PrecomputedFeatures
from rooney_core.strategy.models import BatchedVeto, RowVeto

# trades.csv of `rooney backtest` and of the live engine: the same columns, so one diff compares them
TRADE_CSV_COLUMNS = ["entry_time", "exit_time", "entry_price", "exit_price", "exit_reason", "contracts", "pnl_net",
                     "signal_time", "exit_signal_time", "bars_held", "pnl_gross", "commission", "probability"]
TRADE_COLUMNS = ["signal_time", "entry_time", "entry_price", "exit_signal_time", "exit_time", "exit_price",
                 "exit_reason", "contracts", "bars_held", "pnl_gross", "commission", "pnl_net", "probability",
                 "signal_index"]


@dataclass
class BacktestResult:
    symbol: str
    trades: pd.DataFrame
    decisions: pd.DataFrame
    equity: pd.Series  # daily, indexed by trading date
    metrics: dict
    model_used: str
    open_position: dict | None = None
    bars: int = 0

    @property
    def veto_rate(self) -> float:
        d = self.decisions
        if len(d) == 0:
            return 0.0
        vetoes = int((d["event"] == "veto").sum())
        entries = int((d["event"] == "entry_order").sum())
        return vetoes / (vetoes + entries) if vetoes + entries else 0.0


def model_period(model, start: str | None, default_start: str | None, in_sample: bool = False
                 ) -> tuple[str | None, str]:
    """(start, what the period is) of a backtest with a veto ``model``. A model's backtest is
    out of sample only from its holdout start (a session open; the bundle records it), so
    that is the default; a period starting earlier is refused unless ``in_sample`` is asked
    for, and then labelled in-sample. Without a model: ``start`` or the default."""
    hold = (getattr(model, "metrics", None) or {}).get("holdout_start") if model is not None else None
    if hold is None:
        return start or default_start, "no model" if model is None else "model without a recorded holdout start"
    if start is None:
        return str(hold), f"out of sample (from the model's holdout start {hold})"
    if pd.Timestamp(start) < pd.Timestamp(hold):
        if not in_sample:
            raise RooneyError(f"the backtest would start {start}, before the model's holdout start {hold}: "
                              "those bars trained or selected it, so the result would be in-sample. Start at or "
                              "after the holdout start (the default), or ask for it with --in-sample")
        return start, f"IN-SAMPLE: starts {start}, before the model's holdout start {hold}"
    return start, f"out of sample (from {start}; holdout start {hold})"


def slice_period(frame: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    """Bars whose start lies in [start, end] (dates inclusive)."""
    lo = pd.Timestamp(start) if start else None
    hi = pd.Timestamp(end) + pd.Timedelta(days=1) if end else None
    mask = np.ones(len(frame), dtype=bool)
    if lo is not None:
        mask &= frame.index >= lo
    if hi is not None:
        mask &= frame.index < hi
    return frame[mask]


def possible_entries(features: pd.DataFrame, bars: pd.DataFrame, rules: StrategyConfig,
                     calendar) -> np.ndarray:
    """Bars whose close gives a base entry signal (before position and veto): the rule of
    ``rules.entry_signal``, vectorised. With ``calendar`` (always, for trading), a bar from
    its session's exit bar on gives none (a shortened session cuts the windows short);
    ``calendar=None`` leaves that out (only for tests of the windows alone)."""
    minutes = (bars.index.hour * 60 + bars.index.minute).to_numpy()
    in_window = np.zeros(len(bars), dtype=bool)
    for lo, hi in rules.entry.windows:
        in_window |= (minutes >= lo.hour * 60 + lo.minute) & (minutes <= hi.hour * 60 + hi.minute)
    ibs = features["ibs"].to_numpy(dtype=float)
    out = in_window & (ibs <= rules.entry.ibs_max + strategy_rules.IBS_EPS)
    if calendar is not None:
        ts = bars.index.values.astype("datetime64[m]")
        out &= ts < calendar.exit_bar_at(calendar.trading_date(ts), rules.exits.session_exit_bar)
    return out


def run_backtest(
    hourly: pd.DataFrame,
    features: pd.DataFrame,
    instrument: Instrument,
    rules: StrategyConfig,
    capital: float = 100_000.0,
    model: VetoModel | None = None,
    veto_enabled: bool = True,
    start: str | None = None,
    end: str | None = None,
    model_name: str | None = None,
) -> BacktestResult:
    """Run IbsStrategy over [start, end] and return trades, decisions, equity and metrics."""
    bars = slice_period(hourly, start, end)
    feats = slice_period(features, start, end)
    if len(bars) == 0:
        raise RooneyError(f"{instrument.symbol}: no bars between {start} and {end}")
    if not bars.index.equals(feats.index):
        raise RooneyError(f"{instrument.symbol}: features are not aligned with the bars "
                          f"({len(feats)} feature rows vs {len(bars)} bars); recompute the features")
    source = PrecomputedFeatures(feats)
    if model is not None and hasattr(model, "estimator") and not isinstance(model, RowVeto):
        # a bundle: predict every possible entry bar in one call (same numbers as per row)
        possible = possible_entries(feats, bars, rules, instrument.calendar)
        model = BatchedVeto(model.estimator, model.feature_names, model.threshold, feats, possible)

    cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True, quicknotify=True)
    cerebro.adddata(ArrayFeed(frame=bars), name=instrument.symbol)
    # The broker's cash never limits research trades (a losing stretch must not silence the
    # strategy through margin calls); equity is computed from the trades with `capital`.
    cerebro.broker.setcash(1e12)
    cerebro.broker.setcommission(
        commission=instrument.commission_per_side,
        commtype=bt.CommInfoBase.COMM_FIXED,
        mult=instrument.point_value,
        margin=1.0,  # futures-style accounting; margin is not what we study here
        stocklike=False,
    )
    # always the full slippage, even beyond the bar's range: live cannot do better
    cerebro.broker.set_slippage_fixed(instrument.slippage_points, slip_open=True, slip_limit=True,
                                      slip_match=True, slip_out=True)
    cerebro.addstrategy(IbsStrategy, rules=rules, instrument=instrument, features=source,
                        model=model, veto_enabled=veto_enabled)
    strat = cerebro.run()[0]

    trades = pd.DataFrame(strat.trades, columns=TRADE_COLUMNS)
    for col in ("signal_time", "entry_time", "exit_signal_time", "exit_time"):
        trades[col] = pd.to_datetime(trades[col])
    decisions = pd.DataFrame(strat.decisions, columns=["time", "event", "reason", "price", "probability"])
    open_position = strat.core.open_position()
    ts = bars.index.values
    equity, held = equity_by_bar(ts, bars["close"].to_numpy(), trades, instrument.point_value, capital,
                                 open_position)
    eq_daily = daily_equity(ts, equity, instrument.calendar)
    metrics = performance_metrics(trades, eq_daily, capital, exposure=float((held != 0).mean()))
    used = model_name or ("veto off" if not veto_enabled else
                          ("unfiltered (no model)" if model is None else "model"))
    result = BacktestResult(instrument.symbol, trades, decisions, eq_daily, metrics, used, open_position,
                            bars=len(bars))
    result.metrics["veto_rate"] = result.veto_rate
    failed = decisions[decisions["event"] == "order_failed"]
    if len(failed):
        raise RooneyError(f"{instrument.symbol}: {len(failed)} order(s) failed in the broker "
                          f"(first at {failed['time'].iloc[0]}: {failed['reason'].iloc[0]})")
    return result
