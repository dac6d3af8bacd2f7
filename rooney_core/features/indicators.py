"""Causal, vectorised indicator primitives on 1-d float arrays.

Rolling statistics are computed window by window (sliding views, in blocks to bound
memory), never from running sums, so a value depends only on the bars in its window and is
bit-for-bit the same whether the series starts 10 or 100,000 bars earlier. Wilder's
smoothing (RSI, ATR) is a recursion seeded like TA-Lib (simple mean of the first n
values), so over a full series it matches TA-Lib; its dependence on where the series
starts decays as (1 - 1/n)^k, which is what :func:`wilder_warmup` accounts for.
Output has the input's length; positions without enough history are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

_BLOCK_ROWS = 8192
WILDER_TOLERANCE = 1e-13


def wilder_warmup(n: int, tolerance: float = WILDER_TOLERANCE) -> int:
    """Bars after which a Wilder average forgets its seed to within ``tolerance``."""
    return n + math.ceil(math.log(tolerance) / math.log(1.0 - 1.0 / n))


def shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _rolling(x: np.ndarray, window: int, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``reduce`` (rows of a (m, window) view -> m values) to every full window."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if len(x) < window:
        return out
    view = sliding_window_view(x, window)
    for start in range(0, len(view), _BLOCK_ROWS):
        block = view[start : start + _BLOCK_ROWS]
        out[window - 1 + start : window - 1 + start + len(block)] = reduce(block)
    return out


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    return _rolling(x, window, lambda b: b.mean(axis=1))


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Population standard deviation (ddof=0), as TA-Lib's STDDEV and BBANDS use."""
    return _rolling(x, window, lambda b: b.std(axis=1))


def rolling_zscore(x: np.ndarray, window: int) -> np.ndarray:
    """(x - mean) / std over the trailing window including x; NaN where std is 0."""

    def z(b: np.ndarray) -> np.ndarray:
        m = b.mean(axis=1)
        s = b.std(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(s > 0, (b[:, -1] - m) / s, np.nan)

    return _rolling(x, window, z)


def rolling_percentile_rank(x: np.ndarray, window: int) -> np.ndarray:
    """Share of the trailing window (including x) below x, ties counted half: in (0, 1]."""

    def rank(b: np.ndarray) -> np.ndarray:
        last = b[:, -1:]
        below = (b < last).sum(axis=1)
        equal = (b == last).sum(axis=1)
        return (below + 0.5 * equal) / b.shape[1]

    out = _rolling(x, window, rank)
    # a window holding a NaN has no rank
    if np.isnan(x).any():
        out[rolling_mean(np.isnan(x).astype(float), window) > 0] = np.nan
    return out


def rolling_corr(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Pearson correlation of x and y over the trailing window; NaN if either is flat."""
    both = np.stack([x, y], axis=1).astype(np.float64)
    out = np.full(len(x), np.nan)
    if len(x) < window:
        return out
    view = sliding_window_view(both, window, axis=0)  # (m, 2, window)
    for start in range(0, len(view), _BLOCK_ROWS):
        b = view[start : start + _BLOCK_ROWS]
        dx = b[:, 0, :] - b[:, 0, :].mean(axis=1, keepdims=True)
        dy = b[:, 1, :] - b[:, 1, :].mean(axis=1, keepdims=True)
        num = (dx * dy).sum(axis=1)
        den = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[window - 1 + start : window - 1 + start + len(b)] = np.where(den > 0, num / den, np.nan)
    return out


def wilder_average(x: np.ndarray, n: int, first: int) -> np.ndarray:
    """Wilder's smoothing of x from index ``first``: seed = mean(x[first:first+n]),
    then avg_t = avg_{t-1} + (x_t - avg_{t-1}) / n. Output starts at first + n - 1."""
    out = np.full(len(x), np.nan)
    seed_end = first + n
    if len(x) < seed_end:
        return out
    seed = x[first:seed_end].mean()
    out[seed_end - 1] = seed
    rest = x[seed_end:]
    if len(rest):
        a = 1.0 / n
        y, _ = lfilter([a], [1.0, -(1.0 - a)], rest, zi=[(1.0 - a) * seed])
        out[seed_end:] = y
    return out


def rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Wilder RSI, seeded like TA-Lib (first value at index n)."""
    delta = np.diff(close, prepend=np.nan)
    gain = np.where(delta > 0, delta, 0.0)
    loss = np.where(delta < 0, -delta, 0.0)
    avg_gain = wilder_average(gain, n, first=1)
    avg_loss = wilder_average(loss, n, first=1)
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, 100.0 * avg_gain / total, 0.0)
    out[np.isnan(total)] = np.nan
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    prev = shift(close, 1)
    tr = np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))
    tr[0] = np.nan
    return tr


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """Wilder ATR, seeded like TA-Lib (first value at index n)."""
    return wilder_average(true_range(high, low, close), n, first=1)


def ibs(high: np.ndarray, low: np.ndarray, close: np.ndarray, flat: float = 0.5) -> np.ndarray:
    """Internal bar strength (close - low) / (high - low); ``flat`` when high == low."""
    rng = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rng > 0, (close - low) / rng, flat)


def pct_change(x: np.ndarray, k: int) -> np.ndarray:
    prev = shift(x, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / prev - 1.0
