"""The IBS trading rules as pure functions (STRATEGY.md, "Trading rules").

No Backtrader, no I/O: a feature row, the bar and the position state in, a decision out.
``IbsStrategy`` applies exactly these functions in backtests, candidate extraction, paper
and live, so the rules are pinned by plain unit tests.

Timing: decisions are taken at a bar's close; market orders fill at the next bar's open
plus slippage. ``bars_held`` counts the bars whose close the position has seen, starting
with the bar in which the entry filled (holding bar 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from rooney_core.config import StrategyConfig

STOP_LOSS = "stop_loss"
TAKE_PROFIT = "take_profit"
IBS_EXIT = "ibs_exit"
TIME_STOP = "time_stop"
SESSION_EXIT = "session_exit"
EXIT_REASONS = (STOP_LOSS, TAKE_PROFIT, IBS_EXIT, TIME_STOP, SESSION_EXIT)
# Prices on a decimal tick grid (0.01, 0.005 ...) are not exact in binary, so an IBS that is
# 0.2 on paper can come out as 0.2000000000003; thresholds are compared with this slack.
IBS_EPS = 1e-9


@dataclass(frozen=True)
class Position:
    """An open long position: fill price (slippage included) and holding bars seen."""

    entry_price: float
    contracts: int
    bars_held: int


def in_entry_window(bar_start: time, rules: StrategyConfig) -> bool:
    """True when a bar starting at ``bar_start`` may give an entry signal."""
    return any(lo <= bar_start <= hi for lo, hi in rules.entry.windows)


def entry_signal(ibs: float, bar_start: time, rules: StrategyConfig, room: bool = True) -> bool:
    """Base IBS entry at this bar's close (before any veto). A missing IBS is no signal.
    ``room``: the bar starts before its session's exit bar (``SessionCalendar.exit_bar_at``),
    so the entry's fill and its forced exit both land inside the session; on a normal day
    the entry windows already end before it, on a shortened session it cuts them short."""
    return room and ibs == ibs and ibs <= rules.entry.ibs_max + IBS_EPS and in_entry_window(bar_start, rules)


def exit_reason(position: Position, close: float, ibs: float, rules: StrategyConfig,
                at_session_exit: bool) -> str | None:
    """Why to exit at this bar's close, first match wins; None to hold.

    ``position.bars_held`` must already count this bar (1 at the close of the fill bar).
    ``at_session_exit``: the bar starts at or after its session's exit bar (the
    ``session_exit_bar``, 14:00, on a normal day; earlier on a shortened session, from the
    exchange calendar) and before the session's close, so the exit fills inside the session
    (a missing exit bar is covered: any later bar of the session qualifies).
    """
    if position.bars_held < 1:
        return None  # the signal bar itself: the entry has not filled yet
    ex = rules.exits
    if close <= position.entry_price * (1.0 - ex.stop_loss_pct):
        return STOP_LOSS
    if close >= position.entry_price * (1.0 + ex.take_profit_pct):
        return TAKE_PROFIT
    if ibs == ibs and ibs >= ex.ibs_exit - IBS_EPS:
        return IBS_EXIT
    if position.bars_held >= ex.max_holding_bars:
        return TIME_STOP
    if at_session_exit:
        return SESSION_EXIT
    return None


def position_size(rules: StrategyConfig) -> int:
    """Contracts per entry (the portfolio config will size later)."""
    return rules.sizing.contracts
