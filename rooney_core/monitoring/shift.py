"""Prediction distribution shift and the market regime, against the model's holdout and training.

* **Prediction shift.** The share of live signals at or above the model's threshold and the
  mean probability, against the holdout's: the share from the bundle's metrics
  (``selection_rate``), the mean (and the PSI of the whole distribution) from the version's
  ``holdout.parquet`` when given, else "not recorded". A model whose live probabilities
  cluster elsewhere than on its holdout is seeing a market it was not tested on.
* **Regime.** On daily bars: the realised volatility (annualised standard deviation of daily
  log returns over ``vol_window`` sessions) as a percentile of the training period's own
  rolling values, and the trend state (close against its ``trend_window``-session simple
  moving average: up, down, or flat within ``trend_band``) against how often training saw
  that state. A regime change: the volatility percentile outside [low, high], or a trend
  state training saw less than ``min_state_share`` of the time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rooney_core.backtest.metrics import TRADING_DAYS
from rooney_core.monitoring.config import RegimeLimits, ShiftLimits
from rooney_core.monitoring.drift import psi
from rooney_core.monitoring.performance import NOT_RECORDED, metric


@dataclass
class PredictionShift:
    rows: int
    threshold: float
    live_share_above: float
    live_mean: float
    holdout_share_above: float | None
    holdout_mean: float | None
    share_source: str
    mean_source: str
    psi: float | None  # live probabilities against the holdout's (None without the holdout)
    shifted: bool
    reasons: list[str]
    verdict: str


def prediction_shift(probabilities: np.ndarray | pd.Series, threshold: float, metrics: Mapping,
                     holdout: pd.DataFrame | None = None, limits: ShiftLimits | None = None) -> PredictionShift:
    """The live probabilities of one model version (NaN, from vetoes on missing features,
    left out) against its holdout."""
    lim = limits or ShiftLimits()
    p = np.asarray(probabilities, dtype=float)
    p = p[~np.isnan(p)]
    n = len(p)
    share = float(np.mean(p >= threshold)) if n else float("nan")
    mean = float(p.mean()) if n else float("nan")
    h_share = metric(metrics, ("selection_rate",))
    share_src = "bundle metrics (selection_rate)" if h_share is not None else NOT_RECORDED
    h_mean, mean_src, h_psi = None, f"{NOT_RECORDED} (holdout.parquet not given)", None
    if holdout is not None and "probability" in holdout and holdout["probability"].notna().any():
        hp = holdout["probability"].to_numpy(float)
        h_mean, mean_src = float(np.nanmean(hp)), "holdout.parquet"
        if h_share is None:
            h_share, share_src = float(np.nanmean(hp[~np.isnan(hp)] >= threshold)), "holdout.parquet"
        h_psi = psi(hp, p) if n else None
    reasons = []
    if n >= lim.min_rows:
        if h_share is not None and abs(share - h_share) > lim.max_share_change:
            reasons.append(f"share at or above the threshold {share:.0%} vs {h_share:.0%} on the holdout "
                           f"(limit +/-{lim.max_share_change:.0%})")
        if h_mean is not None and abs(mean - h_mean) > lim.max_mean_change:
            reasons.append(f"mean probability {mean:.3f} vs {h_mean:.3f} on the holdout (limit "
                           f"+/-{lim.max_mean_change:.3f})")
    if n < lim.min_rows:
        verdict = f"no verdict: {n} live probabilities, fewer than {lim.min_rows}"
    elif reasons:
        verdict = "shifted: " + "; ".join(reasons)
    else:
        verdict = "in line with the holdout"
    return PredictionShift(n, float(threshold), share, mean, h_share, h_mean, share_src, mean_src, h_psi,
                           bool(reasons), reasons, verdict)


# --- regime --------------------------------------------------------------------------------


def realised_volatility(close: pd.Series, window: int) -> pd.Series:
    """Annualised standard deviation of daily log returns over ``window`` sessions."""
    r = np.log(close.astype(float)).diff()
    return r.rolling(window, min_periods=window).std() * math.sqrt(TRADING_DAYS)


def trend_state(close: pd.Series, window: int, band: float) -> pd.Series:
    """"up", "down" or "flat" (within ``band`` of the ``window``-session simple moving
    average); None while the average warms up."""
    sma = close.astype(float).rolling(window, min_periods=window).mean()
    gap = close / sma - 1
    state = np.where(gap > band, "up", np.where(gap < -band, "down", "flat")).astype(object)
    state[sma.isna().to_numpy()] = None
    return pd.Series(state, index=close.index, name="trend")


@dataclass
class RegimeState:
    as_of: pd.Timestamp | None
    volatility: float  # annualised, the last vol_window sessions
    vol_percentile: float  # within the training period's rolling volatility
    trend: str | None
    trend_share_in_training: float  # how often training was in this state
    training_trend_shares: dict[str, float]
    changed: bool
    reasons: list[str]
    verdict: str
    history: pd.DataFrame = field(repr=False)  # per session: volatility, percentile, trend


def regime(daily: pd.DataFrame, train_end: str | pd.Timestamp, limits: RegimeLimits | None = None,
           train_start: str | pd.Timestamp | None = None, as_of: str | pd.Timestamp | None = None) -> RegimeState:
    """The market's regime at ``as_of`` (default: the last session) against the training
    period [train_start, train_end) of ``daily`` bars (index: trading date, column close).
    Use the model's ``holdout_start`` as ``train_end``."""
    lim = limits or RegimeLimits()
    close = daily["close"].astype(float).sort_index()
    vol = realised_volatility(close, lim.vol_window)
    trend = trend_state(close, lim.trend_window, lim.trend_band)
    idx = close.index
    in_train = idx < pd.Timestamp(train_end)
    if train_start is not None:
        in_train &= idx >= pd.Timestamp(train_start)
    train_vol = np.sort(vol[in_train].dropna().to_numpy())
    train_trend = trend[in_train].dropna()
    shares = {s: float((train_trend == s).mean()) if len(train_trend) else float("nan")
              for s in ("up", "flat", "down")}
    pct = pd.Series(np.searchsorted(train_vol, vol.to_numpy(), side="right") / max(len(train_vol), 1),
                    index=idx).where(vol.notna() & (len(train_vol) > 0))
    history = pd.DataFrame({"volatility": vol, "vol_percentile": pct, "trend": trend})
    upto = history[idx <= pd.Timestamp(as_of)] if as_of is not None else history
    if len(upto) == 0 or len(train_vol) == 0:
        return RegimeState(None, float("nan"), float("nan"), None, float("nan"), shares, False, [],
                           "no verdict: no training-period volatility or no session to judge", history)
    last = upto.iloc[-1]
    state = last["trend"]
    share = shares.get(state, float("nan")) if state is not None else float("nan")
    reasons = []
    p = float(last["vol_percentile"])
    if p == p and not lim.vol_percentile_low <= p <= lim.vol_percentile_high:
        reasons.append(f"realised volatility {last['volatility']:.1%} is at the {p:.1%} percentile of training "
                       f"(outside {lim.vol_percentile_low:.0%}-{lim.vol_percentile_high:.0%})")
    if len(train_trend) < lim.min_training_sessions:
        reasons_note = (f"trend not judged: training has {len(train_trend)} sessions with a trend state, fewer than "
                        f"{lim.min_training_sessions}")
    else:
        reasons_note = None
    if reasons_note is None and state is not None and share == share and share < lim.min_state_share:
        reasons.append(f"trend {state}: training was {state} only {share:.1%} of the time "
                       f"(limit {lim.min_state_share:.0%})")
    verdict = ("regime change: " + "; ".join(reasons)) if reasons else (
        f"as in training: volatility at the {p:.0%} percentile, trend {state}"
        + (f" ({reasons_note})" if reasons_note else ""))
    return RegimeState(pd.Timestamp(upto.index[-1]), float(last["volatility"]), p, state, share, shares,
                       bool(reasons), reasons, verdict, history)
