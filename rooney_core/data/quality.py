"""Invariants every stored bar frame must hold (used as blocking data-quality checks)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def bar_problems(df: pd.DataFrame) -> list[str]:
    """Human-readable list of broken invariants; empty when the frame is sound."""
    problems: list[str] = []
    if len(df) == 0:
        return ["no bars"]
    idx = df.index
    if not idx.is_monotonic_increasing:
        problems.append("index is not sorted")
    if idx.has_duplicates:
        problems.append(f"{int(idx.duplicated().sum())} duplicated timestamps")
    o, h, lo, c, v = (df[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume"))
    prices = np.stack([o, h, lo, c])
    if not np.isfinite(prices).all() or not np.isfinite(v).all():
        problems.append(f"{int((~np.isfinite(prices)).any(axis=0).sum())} bars with non-finite values")
    if (prices <= 0).any():
        problems.append(f"{int((prices <= 0).any(axis=0).sum())} bars with non-positive prices")
    bad = (lo > np.minimum(o, c)) | (h < np.maximum(o, c))
    if bad.any():
        first = idx[np.flatnonzero(bad)[0]]
        problems.append(f"{int(bad.sum())} bars with low/high outside open/close (first at {first})")
    if (v < 0).any():
        problems.append(f"{int((v < 0).sum())} bars with negative volume")
    return problems
