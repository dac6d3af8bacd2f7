"""The FeatureRegistry: every feature the desk computes, in one place.

``REGISTRY.compute(FeatureInputs(...))`` is the one code path for training, backtests and
live. See ``definitions.py`` for the features and ``registry.py`` for the alignment rules.
"""

from rooney_core.features.definitions import REGISTRY
from rooney_core.features.registry import (
    REGISTRY_VERSION,
    Feature,
    FeatureInputs,
    FeatureRegistry,
    Warmup,
)

__all__ = ["REGISTRY", "REGISTRY_VERSION", "Feature", "FeatureInputs", "FeatureRegistry", "Warmup"]


def selected_features(selection) -> list[str]:
    """Names selected by features.yml ("all" or a list), in registry order."""
    return [f.name for f in REGISTRY.select(selection)]


def instrument_inputs(cfg, symbol: str, hourly, pair_hourly=None) -> FeatureInputs:
    """FeatureInputs for ``symbol`` with its session calendar and the configured staleness."""
    inst = cfg.instrument(symbol)
    return FeatureInputs(hourly, inst.calendar, pair_hourly, cfg.features.pair_max_staleness)


__all__ += ["selected_features", "instrument_inputs"]
