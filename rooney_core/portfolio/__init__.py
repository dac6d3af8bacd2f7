"""Portfolio: every instrument in one time-ordered loop on the decision core, with portfolio
rules (sizes, concurrent positions, correlation filter, loss and drawdown stops, allocation)."""

from rooney_core.portfolio.engine import (
    PortfolioInputs,
    PortfolioResult,
    daily_pnl,
    portfolio_summary,
    prepare,
    run_portfolio,
    simulate,
)
from rooney_core.portfolio.guard import RULE_ORDER, PortfolioGuard, PortfolioRules

__all__ = ["RULE_ORDER", "PortfolioGuard", "PortfolioInputs", "PortfolioResult", "PortfolioRules", "daily_pnl",
           "portfolio_summary", "prepare", "run_portfolio", "simulate"]
