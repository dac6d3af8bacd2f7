"""Candidate trades (the training set), the instrument backtest and the reconciliation with
the desk's reference trade lists: per instrument, all with the production IbsStrategy."""

import dagster as dg
import pandas as pd
from pydantic import field_validator

from rooney_core.backtest.reconcile import ReconciliationError, read_reference_trades, reconcile
from rooney_core.backtest.runner import model_period, run_backtest
from rooney_core.config import parse_date
from rooney_core.formats import money
from rooney_core.reports import equity_curve
from rooney_core.training.candidates import extract_candidates
from rooney_pipeline.metadata import line_chart, plain, png, table
from rooney_pipeline.partitions import instrument_partitions
from rooney_pipeline.resources import LakeResource, ModelStoreResource, RooneyResource


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="labels",
    deps=["features", "hourly_bars", "feature_validation"],  # trains only on validated features
    kinds={"backtrader", "parquet"},
    description="Every base IBS trade of the production strategy with the veto off: features as of "
    "the entry decision, outcome after costs, label win = pnl_net > 0 (the training set).",
)
def candidate_trades(context: dg.AssetExecutionContext, rooney: RooneyResource, lake: LakeResource) -> dg.MaterializeResult:
    cfg = rooney.cfg
    symbol = context.partition_key
    data_lake = lake.get()
    hourly = data_lake.read("hourly", symbol)
    features = data_lake.read("features", symbol)
    context.log.info(f"{symbol}: running IbsStrategy (veto off) over {len(hourly)} hourly bars")
    cands = extract_candidates(hourly, features, cfg.instrument(symbol), cfg.strategy)
    out = data_lake.write("candidates", symbol, cands)
    by_year = cands.groupby(cands["exit_time"].dt.year).agg(
        trades=("pnl_net", "size"), net_pnl=("pnl_net", "sum"), win_rate=("win", "mean"))
    reasons = cands.groupby("exit_reason").agg(trades=("pnl_net", "size"), avg_pnl=("pnl_net", "mean"))
    return dg.MaterializeResult(
        metadata={
            "trades": len(cands),
            "win_rate": float(cands["win"].mean()) if len(cands) else None,
            "avg_trade_net": float(cands["pnl_net"].mean()) if len(cands) else None,
            "net_pnl": float(cands["pnl_net"].sum()),
            "first_entry": str(cands["entry_time"].min()),
            "last_exit": str(cands["exit_time"].max()),
            "by_year": table(by_year, max_rows=40),
            "exit_reasons": table(reasons),
            "preview": table(cands.tail(5).set_index("signal_time").iloc[:, :12]),
            "stored": dg.MetadataValue.path(str(out)),
        }
    )


class BacktestConfig(dg.Config):
    start: str | None = None
    """First date (YYYY-MM-DD); default pipeline.yml backtest.start."""
    end: str | None = None
    """Last date; default pipeline.yml backtest.end, else the end of the data."""
    in_sample: bool = False
    """Allow a start before the production model's holdout start (labelled in-sample)."""

    @field_validator("start", "end")
    @classmethod
    def _date(cls, v: str | None) -> str | None:
        return None if v is None else parse_date(v)  # a bad date fails before the run starts


def production_model(model_store: ModelStoreResource, symbol: str):
    """The instrument's production veto model (sha256 verified against the manifest), or
    None with a note saying the backtest trades unfiltered."""
    found = model_store.get().load_production(symbol)
    if found is None:
        return None, "unfiltered: no production model"
    name, bundle = found
    return bundle, f"{name} (production)"


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="backtests",
    deps=["features", "hourly_bars", "promoted_manifest"],
    kinds={"backtrader", "parquet"},
    description="The production IbsStrategy (with the instrument's production model when one exists) "
    "over the backtest period: trades, daily equity, metrics.",
)
def instrument_backtest(context: dg.AssetExecutionContext, config: BacktestConfig,
                        rooney: RooneyResource, lake: LakeResource,
                        model_store: ModelStoreResource) -> dg.MaterializeResult:
    cfg = rooney.cfg
    bt_cfg = cfg.pipeline.backtest
    symbol = context.partition_key
    inst = cfg.instrument(symbol)
    model, model_note = production_model(model_store, symbol)
    start, sample = model_period(model, config.start, bt_cfg.start, config.in_sample)
    end = config.end or bt_cfg.end
    data_lake = lake.get()
    result = run_backtest(data_lake.read("hourly", symbol), data_lake.read("features", symbol), inst,
                          cfg.strategy, capital=bt_cfg.initial_capital, model=model, start=start, end=end,
                          model_name=model_note)
    data_lake.write("backtest_trades", symbol, result.trades)
    data_lake.write("backtest_equity", symbol, result.equity.to_frame("equity"))
    plot = equity_curve(f"{symbol} backtest {start} .. {end or 'end of data'} ({model_note})",
                        result.equity, bt_cfg.initial_capital)
    plot_path = cfg.reports_dir / "backtest" / f"{symbol}_equity.png"
    metrics = plain(result.metrics)
    return dg.MaterializeResult(
        metadata={
            "model": model_note,
            "equity": line_chart(f"{symbol} equity", {f"{symbol} equity": result.equity.to_numpy()},
                                 note=f"net {money(metrics['net_pnl'])}, {metrics['trades']} trades", zero=False),
            "period": f"{start} .. {end or 'end of data'}",
            "sample": sample,
            "trades": metrics["trades"],
            "net_pnl": metrics["net_pnl"],
            "sharpe": metrics["sharpe"],
            "max_drawdown_usd": metrics["max_drawdown_usd"],
            "veto_rate": metrics["veto_rate"],
            "metrics": table(pd.DataFrame({"value": metrics}).rename_axis("metric")),
            "equity_curve": png(plot, save_to=plot_path, title=f"{symbol} equity"),
            "open_position_at_end": str(result.open_position is not None),
        }
    )


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="backtests",
    deps=["instrument_backtest"],
    kinds={"pandas"},
    description="Our backtest trades against the desk's reference trade list (notebook / TradingView "
    "export) when one is configured: matched, one-sided, price and timing differences.",
    check_specs=[dg.AssetCheckSpec("matches_reference", asset="trade_reconciliation",
                                   partitions_def=instrument_partitions,
                                   description="Our trades match the reference trade list within the tolerances "
                                   "of pipeline.yml reconciliation; a warning when no reference is configured "
                                   "(the comparison did not run).")],
)
def trade_reconciliation(context: dg.AssetExecutionContext, rooney: RooneyResource, lake: LakeResource):
    cfg = rooney.cfg
    rc = cfg.pipeline.reconciliation
    symbol = context.partition_key
    ref_path = cfg.resolve_path(rc.reference_dir) / f"{symbol}_trades.csv" if rc.reference_dir else None
    if ref_path is None or not ref_path.is_file():
        why = ("no reference_dir configured (pipeline.yml reconciliation)" if ref_path is None
               else f"no reference file {ref_path}")
        yield dg.MaterializeResult(metadata={"status": "not run", "why": why})
        # a comparison that did not run is never shown green: a warning that says why
        yield dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                  description=f"not run: {why}", metadata={"status": "skipped", "why": why})
        return
    inst = cfg.instrument(symbol)
    try:
        reference = read_reference_trades(ref_path)
    except ReconciliationError as err:
        raise dg.Failure(description=str(err)) from err
    ours = lake.get().read("backtest_trades", symbol)
    report = reconcile(ours, reference, inst.tick_size, inst.point_value, rc, symbol=symbol)
    yield dg.MaterializeResult(
        metadata={
            "status": "passed" if report.passed else "differences found",
            "reference": dg.MetadataValue.path(str(ref_path)),
            "summary": dg.MetadataValue.json(plain(report.summary)),
            "describe": report.describe(),
            "matched": table(report.matched, max_rows=20),
            "only_ours": table(report.only_ours, max_rows=20),
            "only_reference": table(report.only_reference, max_rows=20),
        }
    )
    yield dg.AssetCheckResult(passed=report.passed, description=report.describe(),
                              metadata={"summary": dg.MetadataValue.json(plain(report.summary))})
