"""The FeatureRegistry: every feature the desk computes, in one place.

``REGISTRY.compute(FeatureInputs(...))`` is the one code path for training, backtests and
live. See ``definitions.py`` for the features and ``registry.py`` for the alignment rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rooney_core.errors import ConfigError
from rooney_core.features.definitions import REGISTRY
from rooney_core.features.registry import (
    REGISTRY_VERSION,
    Feature,
    FeatureInputs,
    FeatureRegistry,
    Warmup,
)

if TYPE_CHECKING:
    from rooney_core.config import RooneyConfig

__all__ = ["REGISTRY", "REGISTRY_VERSION", "Feature", "FeatureInputs", "FeatureRegistry", "Warmup"]


def check_selection(cfg: RooneyConfig) -> RooneyConfig:
    """``cfg`` if every name features.yml selects is a registered feature; else a ConfigError
    naming the file and each unknown name's key. The config loader cannot check this (it sits
    below the registry); every entry point (the Dagster definitions, the CLI, the demo) loads
    its config through ``rooney_pipeline.settings``, which calls this before any work."""
    selection = cfg.features.selection
    if isinstance(selection, list):
        unknown = [f"{cfg.config_dir / 'features.yml'}: key 'selection.{i}': unknown feature {name!r}"
                   for i, name in enumerate(selection) if name not in REGISTRY]
        if unknown:
            raise ConfigError("invalid config\n" + "\n".join(unknown)
                              + f"\n(known features: {', '.join(REGISTRY.names())})")
    return cfg


def selected_features(cfg: RooneyConfig) -> list[str]:
    """Names features.yml selects ("all" or a list), in registry order; a ConfigError naming
    the file and key for a name the registry does not know."""
    return [f.name for f in REGISTRY.select(check_selection(cfg).features.selection)]


def instrument_inputs(cfg, symbol: str, hourly, pair_hourly=None) -> FeatureInputs:
    """FeatureInputs for ``symbol`` with its session calendar and the configured staleness."""
    inst = cfg.instrument(symbol)
    return FeatureInputs(hourly, inst.calendar, pair_hourly, cfg.features.pair_max_staleness)


__all__ += ["check_selection", "selected_features", "instrument_inputs"]
