"""The trading rules (pure functions) and the one Backtrader strategy that applies them."""
