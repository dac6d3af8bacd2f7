"""The staged deployment after the gates: paper -> production -> watched (seed Phase 6).

A version whose six gates passed first enters the instrument's ``paper`` stage in the
manifest (``ModelStore.stage_paper``). It moves to production only when its paper results
track the backtest of the same sessions within the bounds of ``configs/validation.yml``
(``paper:``): at least ``sessions`` complete sessions since it was staged, at most
``max_trade_mismatches`` trades in one and not the other, and at most
``max_tracking_error_usd`` between the two net P&Ls. ``evaluate_paper`` measures that by
running the live engine in paper mode over those sessions (incremental bars and features,
the staged bundle, the paper broker) beside the backtest (``rooney_core.live.parity``).

When the data holds no session after the staging time (historical or sample data, as in the
demo), ``replay_history`` evaluates the last N sessions of the data instead, and the result
says so (``replayed``): a replay of history, not sessions traded after staging.

The first ``watch_days`` in production are flagged as watched (``watched``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from rooney_core.config import RooneyConfig
from rooney_core.data import load_session_bars
from rooney_core.formats import money
from rooney_core.model.store import ModelStore


@dataclass
class PaperResult:
    symbol: str
    version: str
    sessions_required: int
    sessions: int
    first_session: str | None
    last_session: str | None
    replayed: bool
    paper_trades: int = 0
    backtest_trades: int = 0
    trade_mismatches: int = 0
    paper_pnl: float = 0.0
    backtest_pnl: float = 0.0
    tracking_error_usd: float = 0.0
    divergences: int = 0
    passed: bool | None = None  # None: still running (too few sessions yet)
    summary: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _staged_date(entry: dict, cfg: RooneyConfig, symbol: str) -> np.datetime64:
    """Trading date of the first session that starts after the version was staged."""
    cal = cfg.instrument(symbol).calendar
    since = pd.Timestamp(entry["since"])
    since = since.tz_localize("UTC") if since.tzinfo is None else since
    local = cal.to_exchange_time(pd.DatetimeIndex([since]))[0].to_datetime64()
    day = cal.trading_date(np.array([local]))[0]
    opened = cal.session_open(np.array([day]))[0]
    return day if np.datetime64(local, "m") <= opened else day + np.timedelta64(1, "D")


def evaluate_paper(cfg: RooneyConfig, store: ModelStore, symbol: str, data_dir: str | Path,
                   replay_history: bool = False) -> PaperResult:
    """The paper stage of ``symbol``'s staged version: run, compare, judge."""
    from rooney_core.live.parity import parity_check

    entry = store.paper_entry(symbol)
    if entry is None:
        raise ValueError(f"{symbol}: no version in the paper stage")
    name, need = entry["version"], int(entry.get("sessions_required", 0))
    bounds = cfg.validation.for_symbol(symbol).paper
    inst = cfg.instrument(symbol)
    hourly = load_session_bars(data_dir, inst, **cfg.pipeline.data.gate()).hourly
    days = np.unique(inst.calendar.trading_date(hourly.index.values))
    complete = days[:-1] if len(days) else days  # the last session of the data may still be running
    after = complete[complete >= _staged_date(entry, cfg, symbol)]
    replayed = False
    if len(after) < need and replay_history:
        after, replayed = complete[-need:] if need else complete[:0], True
    result = PaperResult(symbol, name, need, int(len(after)), str(after[0]) if len(after) else None,
                         str(after[-1]) if len(after) else None, replayed)
    if len(after) < need or len(after) == 0:
        result.summary = f"{name}: {len(after)} of {need} sessions on paper so far"
        return result
    start = str(pd.Timestamp(inst.calendar.session_open(after[:1])[0]))
    end_day = str(after[-1])
    rep = parity_check(cfg, symbol, data_dir, store, model=name, start=start)
    # only the sessions counted: trades of later (incomplete) bars are left to the next check
    result.paper_trades, result.backtest_trades = rep.live_trades, rep.trades
    result.paper_pnl, result.backtest_pnl = rep.live_pnl, rep.backtest_pnl
    result.tracking_error_usd = round(abs(rep.live_pnl - rep.backtest_pnl), 2)
    result.divergences = len(rep.divergences)
    trade_diffs = [d for d in rep.divergences if str(d.get("field", "")).startswith("trade")]
    result.trade_mismatches = abs(rep.live_trades - rep.trades) + len({d["bar"] for d in trade_diffs})
    result.passed = bool(result.trade_mismatches <= bounds.max_trade_mismatches
                         and result.tracking_error_usd <= bounds.max_tracking_error_usd
                         and (rep.ok or bounds.max_trade_mismatches > 0 or bounds.max_tracking_error_usd > 0))
    what = "replayed (history: no session after staging)" if replayed else "traded on paper since staging"
    result.summary = (f"{name}: {len(after)} sessions {result.first_session} .. {end_day} {what}: "
                      f"{result.paper_trades} paper vs {result.backtest_trades} backtest trades "
                      f"({result.trade_mismatches} mismatched, limit {bounds.max_trade_mismatches}), net "
                      f"{money(result.paper_pnl, cents=True)} vs {money(result.backtest_pnl, cents=True)} (tracking "
                      f"error {money(result.tracking_error_usd, cents=True)}, limit "
                      f"{money(bounds.max_tracking_error_usd, cents=True)}): "
                      + ("within bounds" if result.passed else "OUT OF BOUNDS"))
    return result


def watched(entry: dict | None, watch_days: int, now: datetime | None = None) -> bool:
    """True in a production entry's first ``watch_days`` days."""
    if not entry or not entry.get("promoted_at") or entry.get("action") == "rollback":
        return False
    at = pd.Timestamp(entry["promoted_at"])
    at = at.tz_localize("UTC") if at.tzinfo is None else at
    return (pd.Timestamp(now or datetime.now(UTC)) - at) < pd.Timedelta(days=watch_days)
