"""Backtests: the runner, metrics and reconciliation with reference trade lists."""
