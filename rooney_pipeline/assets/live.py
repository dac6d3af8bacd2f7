"""Paper trading: the live engine in paper mode over the most recent months with the production
model, against the backtest of the same bars (the seed's "compare to backtest expectations")."""

import dagster as dg
import pandas as pd

from rooney_core.live.parity import parity_check
from rooney_pipeline.metadata import table
from rooney_pipeline.partitions import instrument_partitions
from rooney_pipeline.resources import ModelStoreResource, RooneyResource


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="live",
    deps=["promoted_manifest", "instrument_backtest"],
    kinds={"python"},
    description="The live engine in paper mode (incremental bars and features, the production bundle, the "
    "paper broker) over the last parity.months of data, against the backtest of the same bars: tracking "
    "error in trades and dollars, and the first divergence if any.",
    check_specs=[dg.AssetCheckSpec("paper_tracks_backtest", asset="paper_trading", blocking=True,
                                   partitions_def=instrument_partitions,
                                   description="Paper trading makes exactly the backtest's decisions and trades.")],
)
def paper_trading(context: dg.AssetExecutionContext, rooney: RooneyResource, model_store: ModelStoreResource):
    cfg = rooney.cfg
    symbol = context.partition_key
    report = parity_check(cfg, symbol, rooney.data_path, model_store.get(), months=cfg.pipeline.parity.months)
    context.log.info(report.summary())
    rows = pd.DataFrame(
        {"backtest": [report.trades, report.backtest_pnl], "paper": [report.live_trades, report.live_pnl],
         "difference": [report.live_trades - report.trades, report.tracking_error_usd]},
        index=pd.Index(["trades", "net P&L $"], name="since " + report.start))
    first = report.divergences[0] if report.divergences else None
    yield dg.MaterializeResult(metadata={
        "model": report.model or "none (unfiltered per strategy.yml)",
        "since": report.start,
        "tracking": table(rows),
        "tracking_error_usd": report.tracking_error_usd,
        "trades_difference": report.live_trades - report.trades,
        "identical": report.ok,
        "first_divergence": dg.MetadataValue.json(first or {}),
    })
    yield dg.AssetCheckResult(check_name="paper_tracks_backtest", passed=report.ok, description=report.summary())
