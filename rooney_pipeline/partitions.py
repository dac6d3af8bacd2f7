"""Per-instrument partitions, from configs/pipeline.yml (validated at load: R5)."""

from __future__ import annotations

import warnings

import dagster as dg

from rooney_pipeline import settings

CONFIG = settings.load()  # the same object the resources get (rooney_pipeline.settings)
instrument_partitions = dg.StaticPartitionsDefinition(CONFIG.symbols)

# Asset checks carry the instrument partitions, so the UI shows ES's gates for ES, not the last
# instrument's result. Dagster 1.13 calls partitioned checks a preview; the lock file pins the
# version, and tests/pipeline prove the per-partition results and blocking on it.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec",
                        category=dg.PreviewWarning)


def pair_mapping() -> dg.StaticPartitionMapping:
    """Upstream bars of X feed the features of X and of every instrument paired with X."""
    symbols = set(CONFIG.symbols)
    mapping: dict[str, set[str]] = {s: {s} for s in symbols}
    for s in symbols:
        pair = CONFIG.instrument(s).pair
        if pair in symbols:
            mapping[pair].add(s)
    return dg.StaticPartitionMapping({k: sorted(v) for k, v in mapping.items()})
