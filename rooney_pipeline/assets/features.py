"""Features per instrument, from its own hourly bars and its pair's (as of time)."""


import dagster as dg
import numpy as np
import pandas as pd

from rooney_core.features import REGISTRY, REGISTRY_VERSION, instrument_inputs, selected_features
from rooney_core.features.quality import feature_problems
from rooney_pipeline.metadata import plain, table
from rooney_pipeline.partitions import instrument_partitions, pair_mapping
from rooney_pipeline.resources import LakeResource, RooneyResource


def load_pair_hourly(context, rooney: RooneyResource, lake: LakeResource,
                     symbol: str) -> tuple[str | None, pd.DataFrame | None]:
    """The pair's hourly bars from the lake, or None (pair features become missing, loudly)."""
    pair = rooney.cfg.instrument(symbol).pair
    if pair is None:
        context.log.info(f"{symbol} has no pair in instruments.yml: pair features are missing (NaN)")
        return None, None
    data_lake = lake.get()
    if not data_lake.exists("hourly", pair):
        raise dg.Failure(
            description=f"{symbol}'s pair {pair} has no hourly bars in the lake "
            f"({data_lake.path('hourly', pair)}); materialise hourly_bars for {pair} first"
            + ("" if pair in rooney.cfg.symbols else f" (add {pair} to data.symbols in pipeline.yml)")
        )
    return pair, data_lake.read("hourly", pair)


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="features",
    kinds={"parquet"},
    deps=[dg.AssetDep("hourly_bars", partition_mapping=pair_mapping())],
    description="Every selected registry feature, one row per hourly bar, as of its close.",
    check_specs=[dg.AssetCheckSpec("features_are_complete", asset="features", blocking=True,
                                   partitions_def=instrument_partitions,
                                   description="No infinite value anywhere and no missing value after each "
                                   "feature's warm-up (pair features excepted where the pair is stale).")],
)
def features(context: dg.AssetExecutionContext, rooney: RooneyResource, lake: LakeResource):
    cfg = rooney.cfg
    symbol = context.partition_key
    names = selected_features(cfg)
    data_lake = lake.get()
    hourly = data_lake.read("hourly", symbol)
    pair, pair_hourly = load_pair_hourly(context, rooney, lake, symbol)
    inputs = instrument_inputs(cfg, symbol, hourly, pair_hourly)
    frame = REGISTRY.compute(inputs, names)
    problems = feature_problems(frame, REGISTRY, has_pair=pair_hourly is not None,
                                bars_per_session=inputs.calendar.hourly_bars)
    check = dg.AssetCheckResult(
        check_name="features_are_complete",
        passed=not problems,
        description="; ".join(problems) if problems else "no inf; no missing value after each warm-up",
        metadata={"problems": dg.MetadataValue.json(problems)},
    )
    if problems:
        yield check
        raise dg.Failure(description=f"{symbol}: features failed the gate: " + "; ".join(problems))
    out = data_lake.write("features", symbol, frame)
    warm = {f.name: int(frame[f.name].isna().sum()) for f in REGISTRY.select(names)}
    yield dg.MaterializeResult(
        metadata={
            "rows": len(frame),
            "features": len(names),
            "pair": pair or "none",
            "registry_version": REGISTRY_VERSION,
            "schema_hash": REGISTRY.schema_hash(names),
            "missing_values_per_feature": dg.MetadataValue.json(plain(warm)),
            "summary": table(frame.describe().T[["mean", "std", "min", "max"]], max_rows=40),
            "preview": table(frame.tail(5).T.reset_index(names="feature").set_index("feature"), max_rows=40),
            "stored": dg.MetadataValue.path(str(out)),
        }
    )
    yield check
    context.log.info(f"{symbol}: {len(frame)} rows x {len(names)} features; NaNs only in warm-up: "
                     f"{int(np.isnan(frame.to_numpy()).sum())} values")
