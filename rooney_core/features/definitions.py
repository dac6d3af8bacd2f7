"""The desk's first feature set (STRATEGY.md, "Features"). Adding a feature is one
function plus its ``@register`` line; warm-ups are declared here, never in callers.

Naming: no prefix = the instrument's hourly bars (H), ``d_`` = daily bars of the last
completed session (D), ``p_`` = the paired instrument's hourly bars as of time (P),
``pair_`` = the instrument against its pair.
"""

from __future__ import annotations

import numpy as np

from rooney_core.features import indicators as ind
from rooney_core.features.registry import FeatureInputs, FeatureRegistry, Warmup

REGISTRY = FeatureRegistry()
register = REGISTRY.register

_W2 = ind.wilder_warmup(2)
_W5 = ind.wilder_warmup(5)
_W14 = ind.wilder_warmup(14)


# --- IBS ------------------------------------------------------------------------------------


def _ibs_h(x: FeatureInputs) -> np.ndarray:
    return ind.ibs(x.h("high"), x.h("low"), x.h("close"))


def _ibs_d(x: FeatureInputs) -> np.ndarray:
    return ind.ibs(x.d("high"), x.d("low"), x.d("close"))


@register("ibs", group="IBS", timeframe="H", warmup=Warmup(hourly=1),
          description="hourly IBS = (close-low)/(high-low); 0.5 when high == low")
def ibs(x: FeatureInputs) -> np.ndarray:
    return _ibs_h(x)


@register("ibs_prev", group="IBS", timeframe="H", warmup=Warmup(hourly=2),
          description="hourly IBS of the previous bar")
def ibs_prev(x: FeatureInputs) -> np.ndarray:
    return ind.shift(_ibs_h(x), 1)


@register("d_ibs", group="IBS", timeframe="D", warmup=Warmup(daily=1),
          description="IBS of the last completed session")
def d_ibs(x: FeatureInputs) -> np.ndarray:
    return x.align_daily(_ibs_d(x))


@register("d_ibs_prev", group="IBS", timeframe="D", warmup=Warmup(daily=2),
          description="IBS of the session before the last completed one")
def d_ibs_prev(x: FeatureInputs) -> np.ndarray:
    return x.align_daily(ind.shift(_ibs_d(x), 1))


@register("p_ibs", group="IBS", timeframe="P", warmup=Warmup(hourly=1), needs_pair=True,
          description="hourly IBS of the paired instrument, as of time")
def p_ibs(x: FeatureInputs) -> np.ndarray:
    return x.align_pair(ind.ibs(x.p("high"), x.p("low"), x.p("close")))


# --- RSI (Wilder) ---------------------------------------------------------------------------


@register("rsi2", group="RSI", timeframe="H", warmup=Warmup(hourly=_W2),
          description="hourly RSI(2), Wilder")
def rsi2(x: FeatureInputs) -> np.ndarray:
    return ind.rsi(x.h("close"), 2)


@register("rsi14", group="RSI", timeframe="H", warmup=Warmup(hourly=_W14),
          description="hourly RSI(14), Wilder")
def rsi14(x: FeatureInputs) -> np.ndarray:
    return ind.rsi(x.h("close"), 14)


@register("d_rsi2", group="RSI", timeframe="D", warmup=Warmup(daily=_W2),
          description="daily RSI(2) of the last completed session")
def d_rsi2(x: FeatureInputs) -> np.ndarray:
    return x.align_daily(ind.rsi(x.d("close"), 2))


@register("p_rsi2", group="RSI", timeframe="P", warmup=Warmup(hourly=_W2 + 1), needs_pair=True,
          description="hourly RSI(2) of the paired instrument, as of time")
def p_rsi2(x: FeatureInputs) -> np.ndarray:
    return x.align_pair(ind.rsi(x.p("close"), 2))


# --- returns --------------------------------------------------------------------------------


@register("ret1", group="returns", timeframe="H", warmup=Warmup(hourly=2),
          description="1-bar hourly return close/close[-1]-1")
def ret1(x: FeatureInputs) -> np.ndarray:
    return ind.pct_change(x.h("close"), 1)


@register("ret3", group="returns", timeframe="H", warmup=Warmup(hourly=4),
          description="3-bar hourly return close/close[-3]-1")
def ret3(x: FeatureInputs) -> np.ndarray:
    return ind.pct_change(x.h("close"), 3)


@register("d_ret1", group="returns", timeframe="D", warmup=Warmup(daily=2),
          description="return of the last completed session, close to close")
def d_ret1(x: FeatureInputs) -> np.ndarray:
    return x.align_daily(ind.pct_change(x.d("close"), 1))


@register("p_ret1", group="returns", timeframe="P", warmup=Warmup(hourly=3), needs_pair=True,
          description="1-bar hourly return of the paired instrument, as of time")
def p_ret1(x: FeatureInputs) -> np.ndarray:
    return x.align_pair(ind.pct_change(x.p("close"), 1))


# --- volatility -----------------------------------------------------------------------------


@register("atr14_pct", group="volatility", timeframe="H", warmup=Warmup(hourly=_W14),
          description="hourly ATR(14) / close")
def atr14_pct(x: FeatureInputs) -> np.ndarray:
    return ind.atr(x.h("high"), x.h("low"), x.h("close"), 14) / x.h("close")


@register("atr5_z252", group="volatility", timeframe="H", warmup=Warmup(hourly=_W5 + 252),
          description="z-score of hourly ATR(5) over the last 252 bars")
def atr5_z252(x: FeatureInputs) -> np.ndarray:
    return ind.rolling_zscore(ind.atr(x.h("high"), x.h("low"), x.h("close"), 5), 252)


@register("d_atr14_pct", group="volatility", timeframe="D", warmup=Warmup(daily=_W14),
          description="daily ATR(14) / close of the last completed session")
def d_atr14_pct(x: FeatureInputs) -> np.ndarray:
    return x.align_daily(ind.atr(x.d("high"), x.d("low"), x.d("close"), 14) / x.d("close"))


# --- volume ---------------------------------------------------------------------------------


@register("volume_pctl252", group="volume", timeframe="H", warmup=Warmup(hourly=252),
          description="percentile rank of hourly volume within the last 252 bars (ties half)")
def volume_pctl252(x: FeatureInputs) -> np.ndarray:
    return ind.rolling_percentile_rank(x.h("volume"), 252)


@register("volume5_z252", group="volume", timeframe="H", warmup=Warmup(hourly=5 + 252),
          description="z-score of the 5-bar mean hourly volume over the last 252 bars")
def volume5_z252(x: FeatureInputs) -> np.ndarray:
    return ind.rolling_zscore(ind.rolling_mean(x.h("volume"), 5), 252)


@register("d_volume_pctl252", group="volume", timeframe="D", warmup=Warmup(daily=252),
          description="percentile rank of session volume within the last 252 completed sessions")
def d_volume_pctl252(x: FeatureInputs) -> np.ndarray:
    return x.align_daily(ind.rolling_percentile_rank(x.d("volume"), 252))


# --- location -------------------------------------------------------------------------------


@register("close_z20", group="location", timeframe="H", warmup=Warmup(hourly=20),
          description="(close - SMA20) / std20 (population std)")
def close_z20(x: FeatureInputs) -> np.ndarray:
    return ind.rolling_zscore(x.h("close"), 20)


@register("close_sma200", group="location", timeframe="H", warmup=Warmup(hourly=200),
          description="close / SMA200 - 1, hourly")
def close_sma200(x: FeatureInputs) -> np.ndarray:
    return x.h("close") / ind.rolling_mean(x.h("close"), 200) - 1.0


@register("bb_position", group="location", timeframe="H", warmup=Warmup(hourly=20),
          description="position in Bollinger(20, 2): 0 at the lower band, 1 at the upper")
def bb_position(x: FeatureInputs) -> np.ndarray:
    c = x.h("close")
    mid = ind.rolling_mean(c, 20)
    width = 4.0 * ind.rolling_std(c, 20)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(width > 0, (c - (mid - width / 2)) / width, np.nan)


@register("d_close_sma200", group="location", timeframe="D", warmup=Warmup(daily=200),
          description="daily close / SMA200 - 1 of the last completed session")
def d_close_sma200(x: FeatureInputs) -> np.ndarray:
    c = x.d("close")
    return x.align_daily(c / ind.rolling_mean(c, 200) - 1.0)


# --- pair -----------------------------------------------------------------------------------


@register("pair_spread_z20", group="pair", timeframe="P", warmup=Warmup(hourly=21), needs_pair=True,
          description="z-score over 20 bars of ln(close) - ln(pair close), pair as of time")
def pair_spread_z20(x: FeatureInputs) -> np.ndarray:
    spread = np.log(x.h("close")) - x.align_pair(np.log(x.p("close")))
    return ind.rolling_zscore(spread, 20)


@register("pair_corr60", group="pair", timeframe="P", warmup=Warmup(hourly=62), needs_pair=True,
          description="60-bar correlation of hourly returns with the pair's, as of time")
def pair_corr60(x: FeatureInputs) -> np.ndarray:
    own = ind.pct_change(x.h("close"), 1)
    pair = x.align_pair(ind.pct_change(x.p("close"), 1))
    return ind.rolling_corr(own, pair, 60)


# --- calendar -------------------------------------------------------------------------------


@register("hour", group="calendar", timeframe="calendar", warmup=Warmup(hourly=1),
          description="hour of the bar's start, exchange time (0-23)")
def hour(x: FeatureInputs) -> np.ndarray:
    return x.calendar.minute_of_day(x.timestamps) // 60


@register("weekday", group="calendar", timeframe="calendar", warmup=Warmup(hourly=1),
          description="weekday of the bar's trading date (Monday 0 ... Friday 4)")
def weekday(x: FeatureInputs) -> np.ndarray:
    return (x.trading_dates.astype(np.int64) + 3) % 7
