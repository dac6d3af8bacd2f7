"""Training: candidate trades and labels, walk-forward splits, tuning, the report."""
