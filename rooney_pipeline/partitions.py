"""Per-instrument partitions, from configs/pipeline.yml (validated at load: R5)."""

from __future__ import annotations

import dagster as dg

from rooney_core.config import load_config

CONFIG = load_config()
instrument_partitions = dg.StaticPartitionsDefinition(CONFIG.symbols)


def pair_mapping() -> dg.StaticPartitionMapping:
    """Upstream bars of X feed the features of X and of every instrument paired with X."""
    symbols = set(CONFIG.symbols)
    mapping: dict[str, set[str]] = {s: {s} for s in symbols}
    for s in symbols:
        pair = CONFIG.instrument(s).pair
        if pair in symbols:
            mapping[pair].add(s)
    return dg.StaticPartitionMapping({k: sorted(v) for k, v in mapping.items()})
