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

candidates_job = dg.define_asset_job(
    "candidates_job",
    selection=dg.AssetSelection.assets("candidate_trades"),
    description="Extract every base trade of the production strategy with the veto off (the training set).",
)

backtest_job = dg.define_asset_job(
    "backtest_job",
    selection=dg.AssetSelection.assets("instrument_backtest", "trade_reconciliation"),
    description="Backtest the production strategy with the production model and reconcile with references.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.assets("veto_model"),
    description="Tune and train the instrument's veto model; adds a version to the model store.",
)

promote_job = dg.define_asset_job(
    "promote_job",
    selection=dg.AssetSelection.assets("promoted_manifest"),
    description="Promote each instrument's newest version whose gates passed.",
)

paper_job = dg.define_asset_job(
    "paper_job",
    selection=dg.AssetSelection.assets("paper_trading"),
    description="Paper-trade the recent months with the production model and compare with the backtest.",
)

JOBS = [bars_job, features_job, candidates_job, train_job, promote_job, backtest_job, paper_job]
