"""Raw CSV -> validated minute bars -> hourly and daily session bars (per instrument)."""


import dagster as dg

from rooney_core.data import csv_path
from rooney_core.data.bars import bars_summary, daily_bars, hourly_bars, session_gaps
from rooney_core.data.quality import bar_problems
from rooney_core.data.raw import raw_bars_from_table, read_raw_bars
from rooney_core.errors import DataValidationError
from rooney_pipeline.metadata import plain, table
from rooney_pipeline.partitions import instrument_partitions
from rooney_pipeline.resources import LakeResource, RooneyResource


def _data_gate_failure(err: DataValidationError) -> dg.Failure:
    import pandas as pd

    problems = pd.DataFrame(
        [{"line": p.line, "timestamp": p.timestamp, "rule": p.rule, "detail": p.detail} for p in err.problems]
    )
    return dg.Failure(
        description=str(err),
        metadata={"file": err.path, "problems": table(problems, max_rows=50)},
    )


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="data",
    kinds={"csv", "parquet"},
    description="The instrument's raw `<SYMBOL>_bt.csv`, validated (the data gate) and stored as parquet.",
)
def raw_bars(context: dg.AssetExecutionContext, rooney: RooneyResource, lake: LakeResource) -> dg.MaterializeResult:
    cfg = rooney.cfg
    symbol = context.partition_key
    inst = cfg.instrument(symbol)
    path = csv_path(rooney.data_path, symbol)
    context.log.info(f"reading and validating {path}")
    try:
        raw = read_raw_bars(path, inst.calendar, **cfg.pipeline.data.gate())
    except DataValidationError as err:
        raise _data_gate_failure(err) from err
    for what, n in raw.repairs.items():
        context.log.warning(f"{path}: repaired {what}: {n}")
    out = lake.get().write_arrow("raw", symbol, raw.table)
    return dg.MaterializeResult(
        metadata={
            "source": dg.MetadataValue.path(str(path)),
            "stored": dg.MetadataValue.path(str(out)),
            "rows_read": raw.rows_read,
            "rows_kept": len(raw),
            "interval_minutes": raw.interval_minutes,
            "first_bar": str(raw.first_timestamp),
            "last_bar": str(raw.last_timestamp),
            "repairs": dg.MetadataValue.json(plain(raw.repairs)),
        }
    )


def _bar_check(df, name: str) -> dg.AssetCheckResult:
    problems = bar_problems(df)
    return dg.AssetCheckResult(
        asset_key=name,
        check_name="bars_are_consistent",
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "rows": len(df)},
        description="; ".join(problems) if problems else "sorted unique index, finite positive OHLC, "
        "low <= open, close <= high, volume >= 0",
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec("hourly_bars", deps=["raw_bars"], group_name="data", kinds={"parquet"},
                     description="Hourly bars [HH:00, HH+1:00) labelled by start, inside Globex sessions."),
        dg.AssetSpec("daily_bars", deps=["raw_bars"], group_name="data", kinds={"parquet"},
                     description="One bar per trading session (17:00 -> 16:00), labelled by trading date. "
                     "For inspection and research: no asset reads it, because features derive their daily "
                     "bars from the hourly bars with the same code the live engine runs (one code path)."),
    ],
    check_specs=[
        dg.AssetCheckSpec("bars_are_consistent", asset=a, blocking=True, partitions_def=instrument_partitions,
                          description="Sorted, unique bars with finite positive prices, Low <= Open, Close <= "
                          "High and volume >= 0 (blocks features).")
        for a in ("hourly_bars", "daily_bars")
    ],
    partitions_def=instrument_partitions,
)
def session_bars(context: dg.AssetExecutionContext, rooney: RooneyResource, lake: LakeResource):
    cfg = rooney.cfg
    symbol = context.partition_key
    inst = cfg.instrument(symbol)
    data_lake = lake.get()
    raw = raw_bars_from_table(data_lake.read_arrow("raw", symbol), path=str(data_lake.path("raw", symbol)))
    hourly = hourly_bars(raw)
    daily = daily_bars(hourly, inst.calendar)
    summary = bars_summary(hourly, daily, raw, inst.calendar)
    gaps = session_gaps(hourly, inst.calendar)
    # checks run before anything is written: a failed gate leaves earlier outputs intact
    checks = [_bar_check(hourly, "hourly_bars"), _bar_check(daily, "daily_bars")]
    if not all(c.passed for c in checks):
        yield from checks
        raise dg.Failure(
            description=f"{symbol}: bars failed the data-quality gate: "
            + "; ".join(str(c.description) for c in checks if not c.passed)
        )
    data_lake.write("hourly", symbol, hourly)
    data_lake.write("daily", symbol, daily)
    yield dg.MaterializeResult(
        asset_key="hourly_bars",
        metadata={
            "rows": len(hourly),
            "first_bar": summary["first_bar"],
            "last_bar": summary["last_bar"],
            "intra_session_gaps": summary["intra_session_gaps"],
            "missing_hours_in_gaps": summary["missing_hours_in_gaps"],
            "largest_gaps": table(gaps.sort_values("missing_hours", ascending=False), max_rows=10),
            "preview": table(hourly.tail(10)),
            "stored": dg.MetadataValue.path(str(data_lake.path("hourly", symbol))),
        },
    )
    yield dg.MaterializeResult(
        asset_key="daily_bars",
        metadata={
            "rows": len(daily),
            "first_session": str(daily.index[0].date()),
            "last_session": str(daily.index[-1].date()),
            "preview": table(daily.tail(10)),
            "stored": dg.MetadataValue.path(str(data_lake.path("daily", symbol))),
        },
    )
    yield from checks
