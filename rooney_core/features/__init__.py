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
