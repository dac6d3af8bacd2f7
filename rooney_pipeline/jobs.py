"""Jobs: named selections of the asset graph, run per instrument partition."""

from __future__ import annotations

import dagster as dg

bars_job = dg.define_asset_job(
    "bars_job",
    selection=dg.AssetSelection.assets("raw_bars", "hourly_bars", "daily_bars"),
    description="Validate raw CSVs and build hourly and daily session bars.",
)

features_job = dg.define_asset_job(
    "features_job",
    selection=dg.AssetSelection.assets("features", "feature_validation"),
    description="Compute features and validate them (needs bars of the instrument and its pair).",
)

trades_job = dg.define_asset_job(
    "trades_job",
    selection=dg.AssetSelection.assets("candidate_trades", "instrument_backtest", "trade_reconciliation"),
    description="Extract candidate trades, backtest the production strategy and reconcile with references.",
)

JOBS = [bars_job, features_job, trades_job]
