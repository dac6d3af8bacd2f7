"""Jobs: named selections of the asset graph, run per instrument partition."""

from __future__ import annotations

import dagster as dg

from rooney_pipeline.resources import ModelStoreResource, RooneyResource
from rooney_pipeline.sensors import SENSORS as ALERT_SENSORS

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

# Runs carry this tag so the instance can cap heavy runs (dagster_home/postgres/dagster.yaml:
# tag_concurrency_limits). The job's name is not a run tag: a limit on "dagster/job_name" never
# applied (the full-scale run had four trainings at once).
TRAINING_TAGS = {"rooney/stage": "training"}
# the live engine replaying months of minute bars (paper stage, paper trading): ~1.25 GB each at
# 15 years of data; four at once took the full-scale run past 6 GB
REPLAY_TAGS = {"rooney/stage": "replay"}

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.assets("veto_model"),
    description="Tune and train the instrument's veto model; adds a version to the model store.",
    tags=TRAINING_TAGS,
)

promote_job = dg.define_asset_job(
    "promote_job",
    selection=dg.AssetSelection.assets("promoted_manifest"),
    description="Promote each instrument's newest version whose gates passed.",
)

paper_stage_job = dg.define_asset_job(
    "paper_stage_job",
    selection=dg.AssetSelection.assets("paper_stage"),
    description="Judge the instrument's version in the paper stage; promote it when its paper results track "
    "the backtest within bounds.",
    tags=REPLAY_TAGS,
)

paper_job = dg.define_asset_job(
    "paper_job",
    selection=dg.AssetSelection.assets("paper_trading"),
    description="Paper-trade the recent months with the production model and compare with the backtest.",
    tags=REPLAY_TAGS,
)

portfolio_job = dg.define_asset_job(
    "portfolio_job",
    selection=dg.AssetSelection.assets("portfolio_config", "portfolio_backtest"),
    description="Optimise the portfolio rules across every instrument on the training period, store and "
    "(when it passes) promote `portfolio_v<N>`, and report the production portfolio out of sample with its "
    "live-engine parity replay.",
)

JOBS = [bars_job, features_job, candidates_job, train_job, promote_job, paper_stage_job, backtest_job, paper_job,
        portfolio_job]


@dg.sensor(job=paper_stage_job, minimum_interval_seconds=3600, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Every hour: a paper_stage run for each instrument with a version in the paper stage "
           "(promoted automatically when its paper results track the backtest).")
def paper_stage_sensor(context: dg.SensorEvaluationContext, rooney: RooneyResource, model_store: ModelStoreResource):
    from datetime import UTC, datetime

    hour = f"{datetime.now(UTC):%Y%m%d%H}"
    store = model_store.get()
    for symbol in rooney.cfg.symbols:
        entry = store.paper_entry(symbol)
        if entry is not None and entry.get("status") == "paper":
            # one run per instrument, version and hour (the run key dedupes repeated evaluations)
            yield dg.RunRequest(run_key=f"{symbol}-{entry['version']}-{hour}",
                                partition_key=symbol)


SENSORS = [paper_stage_sensor, *ALERT_SENSORS]
