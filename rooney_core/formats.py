"""How numbers are shown to people: the CLI, asset metadata, gate details and reports use
these, so a dollar amount, a Sharpe or a rate reads the same everywhere (JSON files keep full
precision)."""

from __future__ import annotations

import math
from typing import Any


def money(x: float | None, cents: bool = False) -> str:
    """Dollars with thousands separators: ``$82,720``, ``-$6,774``; with ``cents`` where they
    matter (a tracking error, a reconciliation): ``$12.50``."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{'-' if x < 0 else ''}${abs(x):,.{2 if cents else 0}f}"


def ratio(x: float | None, digits: int = 2) -> str:
    """A Sharpe, a PSR, a profit factor: fixed decimals (``2.92``)."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def pct(x: float | None, digits: int = 1) -> str:
    """A share as a percentage (``58.7%``)."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}%}"


def count(x: int | None) -> str:
    return "-" if x is None else f"{int(x):,}"


def number(x: float | None) -> str:
    """A value of unknown kind (a gate's value or limit): thousands separated from 1,000 up,
    else four significant digits, never an exponent for everyday sizes."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


MONEY_KEYS = {"net_pnl", "gross_pnl", "avg_trade", "max_drawdown_usd", "costs", "commission", "slippage",
              "final_equity", "initial_capital", "pnl", "tracking_error_usd"}
PCT_KEYS = {"win_rate", "max_drawdown_pct", "veto_rate", "selection_rate", "base_rate", "exposure"}


def metric(key: str, value: Any) -> str:
    """A named metric in its format: money for dollar keys, percentages for rates, counts for
    integers, two decimals for other floats."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return count(value)
    if isinstance(value, float):
        if key in MONEY_KEYS or key.endswith("_usd"):
            return money(value)
        if key in PCT_KEYS or key.endswith("_pct") or key.endswith("_rate"):
            return pct(value)
        return ratio(value)
    return str(value)
