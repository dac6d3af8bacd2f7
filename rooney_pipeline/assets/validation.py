"""Feature validation (roadmap Phase 1.5): one month of features against a second source
of bars and against TA-Lib, with plots of IBS and RSI(2) over price."""


import dagster as dg

from rooney_core.data import csv_path, load_session_bars
from rooney_core.errors import DataValidationError
from rooney_core.features import REGISTRY, instrument_inputs, selected_features
from rooney_core.features.validation import validate_month
from rooney_core.reports import ibs_rsi_over_price
from rooney_pipeline.assets.features import load_pair_hourly
from rooney_pipeline.metadata import png, table
from rooney_pipeline.partitions import instrument_partitions
from rooney_pipeline.resources import LakeResource, RooneyResource


class FeatureValidationConfig(dg.Config):
    month: str | None = None
    """'YYYY-MM'; default from pipeline.yml, else the last full month of data."""
    overlap_dir: str | None = None
    """Directory of `<SYMBOL>_bt.csv` from a second vendor; default from pipeline.yml."""


def _overlap_dir(rooney: RooneyResource, config: FeatureValidationConfig):
    cfg = rooney.cfg
    chosen = config.overlap_dir or cfg.pipeline.feature_validation.overlap_dir
    if chosen:
        return cfg.resolve_path(chosen)
    if cfg.uses_sample_data and not rooney.data_dir and cfg.pipeline.sample_data.overlap_dir:
        return cfg.resolve_path(cfg.pipeline.sample_data.overlap_dir)
    return None


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="features",
    deps=["features"],
    kinds={"pandas"},
    description="One month of features compared with a second vendor's bars (+-5% rule) and TA-Lib.",
    check_specs=[dg.AssetCheckSpec("features_agree", asset="feature_validation", blocking=True,
                                   partitions_def=instrument_partitions,
                                   description="Our features agree with TA-Lib on the same bars (an error that "
                                   "blocks the training set: our code is wrong) and with a second vendor's bars "
                                   "(+-5%; a warning: the vendors' data may differ).")],
)
def feature_validation(context: dg.AssetExecutionContext, config: FeatureValidationConfig,
                       rooney: RooneyResource, lake: LakeResource):
    cfg = rooney.cfg
    fv = cfg.pipeline.feature_validation
    symbol = context.partition_key
    inst = cfg.instrument(symbol)
    names = selected_features(cfg)
    hourly = lake.get().read("hourly", symbol)
    pair, pair_hourly = load_pair_hourly(context, rooney, lake, symbol)
    ours = instrument_inputs(cfg, symbol, hourly, pair_hourly)

    theirs = None
    overlap = _overlap_dir(rooney, config)
    if overlap is not None:
        if not csv_path(overlap, symbol).is_file():
            context.log.warning(f"no {symbol} file in the overlap directory {overlap}")
        else:
            try:
                other = load_session_bars(overlap, inst, **cfg.pipeline.data.gate())
                other_pair = (load_session_bars(overlap, cfg.instrument(pair), **cfg.pipeline.data.gate()).hourly
                              if pair and csv_path(overlap, pair).is_file() else None)
            except DataValidationError as err:
                raise dg.Failure(description=f"the overlap data is malformed: {err}") from err
            theirs = instrument_inputs(cfg, symbol, other.hourly, other_pair)

    report, month_features = validate_month(
        symbol, REGISTRY, names, ours, theirs,
        month=config.month or fv.month,
        tolerance=fv.tolerance, min_agreement=fv.min_agreement, talib_tolerance=fv.talib_tolerance,
    )
    for note in report.notes:
        context.log.warning(f"{symbol}: {note}")
    plot = ibs_rsi_over_price(symbol, report.month, hourly, month_features,
                              ibs_entry=cfg.strategy.entry.ibs_max, ibs_exit=cfg.strategy.exits.ibs_exit)
    plot_path = cfg.reports_dir / "feature_validation" / f"{symbol}_{report.month}.png"
    yield dg.MaterializeResult(
        metadata={
            "month": report.month,
            "bars": report.bars,
            "second_source": str(overlap) if theirs is not None else "none",
            "passed": report.passed,
            "summary": report.summary(),
            "comparison": table(report.comparison.set_index("feature"), max_rows=40),
            "talib": table(report.talib.set_index("check")),
            "ibs_rsi2_over_price": png(plot, save_to=plot_path, title=f"{symbol} {report.month}"),
            "plot_file": dg.MetadataValue.path(str(plot_path)),
        }
    )
    yield dg.AssetCheckResult(
        check_name="features_agree",
        passed=report.passed,
        # blocking: a TA-Lib mismatch stops the training set downstream; a vendor's disagreement warns
        severity=dg.AssetCheckSeverity.ERROR if report.code_disagrees else dg.AssetCheckSeverity.WARN,
        description=report.summary(),
        metadata={"failing_features": dg.MetadataValue.json(report.failing_features),
                  "month": report.month},
    )
