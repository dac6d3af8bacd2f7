"""Portfolio: every instrument in one time-ordered loop on the decision core, with portfolio
rules (sizes, concurrent positions, correlation filter, loss and drawdown stops, allocation)."""

from rooney_core.portfolio.engine import (
    RULE_ORDER,
    PortfolioResult,
    PortfolioRules,
    daily_pnl,
    portfolio_summary,
    run_portfolio,
)

__all__ = ["RULE_ORDER", "PortfolioResult", "PortfolioRules", "daily_pnl", "portfolio_summary", "run_portfolio"]
