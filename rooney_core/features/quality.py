"""Invariants of a computed feature frame (a blocking check before anything trains on it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rooney_core.features.registry import FeatureRegistry


def feature_problems(frame: pd.DataFrame, registry: FeatureRegistry, has_pair: bool,
                     bars_per_session: int) -> list[str]:
    """Problems: infinities anywhere; missing values after a feature's warm-up (pair
    features may be missing where the pair's bar is stale or absent, and entirely when the
    instrument has no pair)."""
    problems: list[str] = []
    for name in frame.columns:
        feature = registry[name]
        values = frame[name].to_numpy(dtype=float)
        if np.isinf(values).any():
            problems.append(f"{name}: {int(np.isinf(values).sum())} infinite values")
        if feature.needs_pair:
            if has_pair and np.isnan(values).all():
                problems.append(f"{name}: pair data present but every value is missing")
            continue
        after = values[feature.warmup.bars(bars_per_session):]
        if np.isnan(after).any():
            problems.append(f"{name}: {int(np.isnan(after).sum())} missing values after warm-up")
    return problems
