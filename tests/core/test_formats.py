"""One way to show a number to people: no 5.314e+04 beside -6,774, no 16-digit Sharpe."""

from __future__ import annotations

import math

from rooney_core.formats import metric, money, number, pct, ratio


def test_money_ratio_percent_and_plain_numbers():
    assert money(53140.2) == "$53,140" and money(-6774.4) == "-$6,774" and money(12.5, cents=True) == "$12.50"
    assert ratio(2.915857388545387) == "2.92" and pct(0.5871) == "58.7%"
    assert number(53140.0) == "53,140" and number(0.012344) == "0.01234" and number(-6774.0) == "-6,774"
    assert money(math.nan) == ratio(math.inf) == number(None) == "-"


def test_a_metric_is_shown_by_its_kind():
    assert metric("net_pnl", 53140.2) == "$53,140" and metric("max_drawdown_usd", -6774.0) == "-$6,774"
    assert metric("win_rate", 0.587) == "58.7%" and metric("max_drawdown_pct", 0.06) == "6.0%"
    assert metric("sharpe", 2.915857388545387) == "2.92" and metric("trades", 12879) == "12,879"
    assert metric("edge_significant", True) == "True" and metric("holdout_start", "2023-01-01") == "2023-01-01"
