"""Synthetic CME futures minute bars: the default data for demos and tests.

The market (parameters in ``configs/sample_market.yml``) is built to exercise the whole
pipeline:

* **Calendar.** Bars exist only inside each instrument's session calendar (Globex: 17:00
  the previous day -> 16:00, no bars in the 16:00 maintenance break or from Friday 16:00 to
  Sunday 17:00); the exchange calendar's holidays have no session and its early closes end
  the session early (the same ``SessionCalendar`` the bars and the rules use). A request
  ``start .. end`` covers the sessions whose *trading dates* lie in that range.
* **Prices.** Log prices, so no price can go negative. Each instrument starts at its
  ``start_price`` (moved by its drift from ``reference_date`` to ``start``) and drifts; when
  it leaves ``price_range`` each session opens with a pull back (half-life
  ``band_half_life_days``), so levels stay realistic for any seed. Each session opens with a
  small gap; within a session a bar opens at the previous bar's close. Prices are on the
  contract's tick grid.
* **Bars.** Each bar's open-to-close log return is Gaussian; its high and low are drawn
  exactly from the law of a Brownian bridge's maximum and minimum given the return, so
  ``Low <= min(Open, Close) <= max(Open, Close) <= High`` by construction (rounding to
  ticks is monotone, so it survives the tick grid).
* **Volatility clustering.** Log-volatility is a fast plus a slow hourly AR(1); a share of
  it is common to the instrument's correlation group. Volatility and volume follow an
  intraday U over the US day session and are thin overnight.
* **Correlation.** Each group has a common factor; a member's shock is
  ``loading * common + sqrt(1 - loading**2) * own`` (ES/NQ ~0.9, RTY/YM ~0.8, GC/SI ~0.8,
  HG/SI ~0.5, CL/NG ~0.4, 6A/6E/6B ~0.6).
* **Determinism.** Every random stream comes from ``numpy.random.SeedSequence`` keyed by the
  seed and a stable hash (blake2b) of the group or symbol name, and a group's common factor
  is drawn on the timeline of *all* its configured members. So a symbol's series depends on
  (seed, start, end, interval) only, never on which other symbols were requested.

**The planted edge** (scaled by ``edge``; ``edge = 0`` adds nothing, leaving a market
whose returns are independent of the past apart from volatility clustering and the price
band). After a clock hour whose realised IBS = (Close-Low)/(High-Low) (0.5 for a flat
bar) is ``<= edge.ibs_max``, the market owes a positive log drift of::

    edge * (cost_multiple * round_trip_cost / price + strength * sigma_h * score)

where ``sigma_h`` is the recent hourly Parkinson volatility and ``score`` is a weighted sum
of three terms in [-1, 1], all known at the signal bar's close: the hour's volume
percentile over the last 252 hours (high is good), the z-score over 252 hours of the
5-hour mean range (high volatility is good) and the daily RSI(2) of the last *completed*
session (low is good). The drift is paid over hours 2 .. ``edge.hours`` + 1 after the
signal (weights decaying with ``decay_hours``; hour 1 is skipped because an order placed
at the signal bar's close fills at its open). So trading every signal is roughly
break-even after costs, the favourable ones pay and the unfavourable ones lose: something
real for the veto model to find. The mirror image (a negative drift after IBS >=
1 - ``ibs_max``, stronger when RSI is high) keeps the edge from trending the market, and a
slow average of the edge's own net drift (half-life ``neutral_half_life_hours``) is taken
back out so that the edge does not eat the market's trend either.

``edge_until`` (a generator option) stops the edge after a date, optionally fading it out,
so that a model trained before that date loses its edge after it: a market that changes
under the model, for monitoring's end-to-end test.

The edge acts on the IBS of the bars as written, exactly. Sessions are built one at a time
(each starts from the last one's close): its bars are rounded to ticks, then hour by
hour the drift owed is added, as whole ticks (fractions carry over), to the close of the
hour's first bar and to every later bar; the hour's IBS is computed from exactly those
prices and decides what later hours are owed. The edge is causal: what an hour is owed
depends only on bars up to the close of the hour two before it.

``write_sample_data`` writes ``<SYMBOL>_bt.csv`` files in the raw format, atomically, and
can emulate a second vendor (``vendor_noise``): the same path with occasional one-tick
disagreements and slightly different volumes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import BeforeValidator, Field, field_validator, model_validator
from scipy.signal import lfilter

from rooney_core.config import (
    Instrument,
    RooneyConfig,
    Strict,
    _parse_hhmm,
    config_dir_from_env,
    load_yaml_model,
    parse_date,
)
from rooney_core.errors import ConfigError
from rooney_core.io import atomic_path
from rooney_core.sessions import SessionCalendar

SAMPLE_MARKET_FILE = "sample_market.yml"
COLUMNS = ["datetime", "Open", "High", "Low", "Close", "volume"]
_PRICE_COLS = ("Open", "High", "Low", "Close")
_TRADING_MINUTES_PER_YEAR = 252 * 23 * 60
_WRITE_CHUNK_ROWS = 1 << 19


# --- config: configs/sample_market.yml ---------------------------------------------------


class IntradaySpec(Strict):
    europe_open: time
    day_open: time
    day_close: time
    post_close_end: time
    overnight_level: float = Field(gt=0)
    europe_level: float = Field(gt=0)
    post_close_level: float = Field(gt=0)
    open_boost: float = Field(ge=0)
    close_boost: float = Field(ge=0)
    boost_minutes: float = Field(gt=0)
    volume_exponent: float = Field(gt=0)

    _t = field_validator("europe_open", "day_open", "day_close", "post_close_end", mode="before")(
        _parse_hhmm
    )


class VolRegimeSpec(Strict):
    fast_half_life_hours: float = Field(gt=0)
    fast_sd: float = Field(ge=0)
    slow_half_life_hours: float = Field(gt=0)
    slow_sd: float = Field(ge=0)
    group_share: float = Field(ge=0, le=1)

    @property
    def variance(self) -> float:
        return self.fast_sd**2 + self.slow_sd**2


class VolumeSpec(Strict):
    bar_noise_sd: float = Field(ge=0)
    hour_noise_sd: float = Field(ge=0)
    vol_beta: float


class EdgeWeights(Strict):
    volume: float
    volatility: float
    rsi: float


class EdgeSpec(Strict):
    ibs_max: float = Field(ge=0, le=1)
    hours: int = Field(ge=1)
    decay_hours: float = Field(gt=0)
    cost_multiple: float
    strength: float = Field(ge=0)
    weights: EdgeWeights
    volume_window: int = Field(ge=2)
    atr_window: int = Field(ge=1)
    zscore_window: int = Field(ge=2)
    sigma_window: int = Field(ge=1)
    neutral_half_life_hours: float = Field(gt=0)


class MarketInstrument(Strict):
    start_price: float = Field(gt=0)
    drift: float
    volatility: float = Field(gt=0)
    price_range: tuple[float, float]
    volume: float = Field(gt=0)
    group: str
    loading: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _range(self) -> MarketInstrument:
        lo, hi = self.price_range
        if not 0 < lo < hi:
            raise ValueError(f"price_range must be 0 < low < high, got {self.price_range}")
        return self


class SampleMarket(Strict):
    reference_date: Annotated[str, BeforeValidator(parse_date)]
    band_half_life_days: float = Field(gt=0)
    session_gap_hours: float = Field(ge=0)
    intraday: IntradaySpec
    vol_regime: VolRegimeSpec
    volume: VolumeSpec
    edge: EdgeSpec
    instruments: dict[str, MarketInstrument]

    def spec(self, symbol: str) -> MarketInstrument:
        if symbol not in self.instruments:
            raise ConfigError(
                f"{SAMPLE_MARKET_FILE}: key 'instruments': no entry for instrument {symbol!r}"
            )
        return self.instruments[symbol]

    def members(self, group: str) -> list[str]:
        return sorted(s for s, m in self.instruments.items() if m.group == group)


def load_sample_market(config_dir: Path | None = None) -> SampleMarket:
    """Read ``configs/sample_market.yml``; a bad or unknown key is a ConfigError."""
    cdir = Path(config_dir) if config_dir is not None else config_dir_from_env()
    return load_yaml_model(cdir / SAMPLE_MARKET_FILE, SampleMarket)


# --- random streams and the timeline -----------------------------------------------------


def _stable_hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def _rng(seed: int, *names: str) -> np.random.Generator:
    """An independent stream per (seed, names); Python's hash() is salted, so not used."""
    return np.random.default_rng(np.random.SeedSequence([seed, *map(_stable_hash, names)]))


def _timeline(cal: SessionCalendar, start: str, end: str, interval: int) -> np.ndarray:
    """Bar starts (datetime64[s]) of the sessions with trading dates in [start, end]."""
    d0, d1 = np.datetime64(start, "D"), np.datetime64(end, "D")
    if d1 < d0:
        raise ValueError(f"end {end} is before start {start}")
    t0 = cal.session_open(np.array([d0]))[0]
    t1 = cal.session_close(np.array([d1]))[0]
    ts = np.arange(t0, t1, np.timedelta64(interval, "m")).astype("datetime64[s]")
    td = cal.trading_date(ts)
    in_range = (td >= d0) & (td <= d1)
    before_close = ts < cal.close_at(td).astype("datetime64[s]")  # early closes end the session early
    return ts[cal.in_session(ts) & in_range & ~cal.is_holiday(td) & before_close]


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal consecutive keys."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def _intraday_profiles(spec: IntradaySpec, interval: int) -> tuple[np.ndarray, np.ndarray]:
    """Per bar-of-day: volatility multiplier (mean square 1), volume multiplier (mean 1)."""
    m = np.arange(24 * 60, dtype=np.float64)

    def mins(t: time) -> int:
        return t.hour * 60 + t.minute

    eu, op, cl = mins(spec.europe_open), mins(spec.day_open), mins(spec.day_close)
    level = np.full_like(m, spec.overnight_level)
    level[(m >= eu) & (m < op)] = spec.europe_level
    day = (m >= op) & (m < cl)
    level[day] = (
        1.0
        + spec.open_boost * np.exp(-(m[day] - op) / spec.boost_minutes)
        + spec.close_boost * np.exp(-(cl - 1 - m[day]) / spec.boost_minutes)
    )
    level[(m >= cl) & (m < mins(spec.post_close_end))] = spec.post_close_level
    # Average over each bar's minutes, so a 60-minute 08:00 bar still sees the 08:30 open.
    var = (level**2).reshape(-1, interval).mean(axis=1)
    vol = np.sqrt(var / var.mean())
    volume = (level**spec.volume_exponent).reshape(-1, interval).mean(axis=1)
    return vol, volume / volume.mean()


def _ar1(rng: np.random.Generator, n: int, half_life: float, sd: float) -> np.ndarray:
    """Stationary AR(1) with the given half-life (in steps) and standard deviation."""
    if n == 0:
        return np.zeros(0)
    phi = 0.5 ** (1.0 / half_life)
    eps = rng.standard_normal(n) * sd * np.sqrt(1 - phi**2)
    x0 = rng.standard_normal() * sd
    return lfilter([1.0], [1.0, -phi], eps, zi=[phi * x0])[0]


def _log_vol(rng: np.random.Generator, n_hours: int, spec: VolRegimeSpec) -> np.ndarray:
    return _ar1(rng, n_hours, spec.fast_half_life_hours, spec.fast_sd) + _ar1(
        rng, n_hours, spec.slow_half_life_hours, spec.slow_sd
    )


# --- base draws: everything that does not depend on the planted drift --------------------


@dataclass
class _Group:
    """A correlation group's common factor and volatility regime on its members' timeline."""

    ts: np.ndarray  # datetime64[s]
    z: np.ndarray  # common return shock per bar
    hours: np.ndarray  # datetime64[h] of each hour in the timeline
    log_vol: np.ndarray  # common log-volatility per hour
    timelines: dict[SessionCalendar, np.ndarray]  # each member calendar's bar starts


def _draw_group(
    name: str, seed: int, start: str, end: str, interval: int,
    cfg: RooneyConfig, market: SampleMarket,
) -> _Group:
    # The union of all configured members' timelines, so the factor does not depend on
    # which members were requested.
    known = cfg.instruments.instruments
    cals = {cfg.instrument(s).calendar for s in market.members(name) if s in known}
    timelines = {c: _timeline(c, start, end, interval) for c in cals}
    ts = np.sort(np.concatenate(list(timelines.values())), kind="stable")  # merges sorted runs
    ts = ts[_run_starts(ts)]
    hours = ts.astype("datetime64[h]")
    hours = hours[_run_starts(hours)]
    z = _rng(seed, "group", name, "returns").standard_normal(len(ts))
    log_vol = _log_vol(_rng(seed, "group", name, "vol"), len(hours), market.vol_regime)
    return _Group(ts, z, hours, log_vol, timelines)


@dataclass
class _Draws:
    """One symbol's random inputs: everything that does not depend on the price level."""

    ts: np.ndarray  # datetime64[s] bar starts
    hour_starts: np.ndarray  # first bar of each clock hour
    day_starts: np.ndarray  # first bar of each session
    r: np.ndarray  # open-to-close log return per bar, before the planted drift
    gap: np.ndarray  # log gap from the previous close to this open (session opens only)
    hi_var: np.ndarray  # -2 s^2 ln U: Brownian-bridge draws for the high ...
    lo_var: np.ndarray  # ... and the low
    volume: np.ndarray  # int64
    log_p0: float


def _lognormal(rng: np.random.Generator, sd: float, n: int) -> np.ndarray:
    """Mean-one lognormal noise."""
    return np.exp(sd * rng.standard_normal(n) - sd**2 / 2)


def _draw_volume(
    rng: np.random.Generator, mean: np.ndarray, log_vol: np.ndarray, hour_id: np.ndarray,
    interval: int, market: SampleMarket,
) -> np.ndarray:
    """Integer volumes: busier in volatile regimes, with hourly and per-bar noise."""
    v, variance = market.volume, market.vol_regime.variance
    activity = np.exp(v.vol_beta * log_vol - v.vol_beta**2 * variance / 2)  # mean one
    hourly = activity * _lognormal(rng, v.hour_noise_sd, len(log_vol))
    # A longer bar sums more minutes, so its noise averages out.
    bar_noise = _lognormal(rng, v.bar_noise_sd / np.sqrt(interval), len(mean))
    expected = mean * hourly[hour_id] * bar_noise
    return np.floor(expected + rng.random(len(mean))).astype(np.int64)  # unbiased rounding


def _draw_symbol(
    symbol: str, group: _Group, seed: int, start: str, interval: int,
    inst: Instrument, market: SampleMarket, fade: EdgeFade | None = None,
) -> _Draws:
    spec = market.spec(symbol)
    regime = market.vol_regime
    ts = group.timelines[inst.calendar]
    n = len(ts)
    rng = _rng(seed, "symbol", symbol, "bars")

    hour = ts.astype("datetime64[h]")
    hour_starts = _run_starts(hour)
    hour_id = np.cumsum(np.r_[False, hour[1:] != hour[:-1]])
    td = inst.calendar.trading_date(ts)
    day_starts = _run_starts(td)

    # Volatility regime per hour: a group part and the symbol's own part.
    g = group.log_vol[np.searchsorted(group.hours, hour[hour_starts])]
    own = _log_vol(_rng(seed, "symbol", symbol, "vol"), len(hour_starts), regime)
    lv = np.sqrt(regime.group_share) * g + np.sqrt(1 - regime.group_share) * own
    regime_mult = np.exp(lv - regime.variance)[hour_id]  # E[mult^2] = 1
    if fade is not None:  # the market's regime changes with the edge (write_sample_data's vol_after)
        regime_mult = regime_mult * fade.vol_multiple(td)

    vol_shape, volume_shape = _intraday_profiles(market.intraday, interval)
    block = inst.calendar.minute_of_day(ts) // interval
    bars_per_year = _TRADING_MINUTES_PER_YEAR / interval
    sigma = spec.volatility / np.sqrt(bars_per_year) * vol_shape[block] * regime_mult

    shock = spec.loading * group.z[np.searchsorted(group.ts, ts)] + np.sqrt(
        1 - spec.loading**2
    ) * rng.standard_normal(n)
    r = spec.drift / bars_per_year + sigma * shock

    gap = np.zeros(n)
    opens = day_starts[1:]
    hourly_sigma = spec.volatility / np.sqrt(_TRADING_MINUTES_PER_YEAR / 60) * regime_mult[opens]
    gap[opens] = hourly_sigma * np.sqrt(market.session_gap_hours) * rng.standard_normal(len(opens))

    two_s2 = 2 * sigma**2
    hi_var = -two_s2 * np.log1p(-rng.random(n))  # 1 - U in (0, 1]: no log(0)
    lo_var = -two_s2 * np.log1p(-rng.random(n))

    # Volume: contracts per minute x intraday shape x regime x noise; busier bars move more.
    mean = spec.volume * interval * volume_shape[block] * (0.6 + 0.5 * np.abs(shock))
    volume = _draw_volume(rng, mean, lv, hour_id, interval, market)

    years = (np.datetime64(start, "D") - np.datetime64(market.reference_date, "D")).astype(
        np.int64
    ) / 365.25
    lo, hi = spec.price_range
    p0 = float(np.clip(spec.start_price * np.exp(spec.drift * years), lo, hi))
    return _Draws(ts, hour_starts, day_starts, r, gap, hi_var, lo_var, volume, float(np.log(p0)))


# --- the base path ----------------------------------------------------------------------


@dataclass
class _LogBars:
    """Log OHLC of each bar before the level (carry, band pull, edge) is applied."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


def _base_path(d: _Draws) -> _LogBars:
    close = d.log_p0 + np.cumsum(d.r + d.gap)
    open_ = close - d.r
    # Brownian bridge from 0 to r: max = (r + sqrt(r^2 - 2 s^2 ln U)) / 2, min likewise.
    high = open_ + 0.5 * (d.r + np.sqrt(d.r * d.r + d.hi_var))
    low = open_ + 0.5 * (d.r - np.sqrt(d.r * d.r + d.lo_var))
    return _LogBars(open_, high, low, close)


# --- the planted edge -------------------------------------------------------------------


def _ibs(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """IBS = (C-L)/(H-L), 0.5 for a flat bar."""
    span = (high - low).astype(np.float64)
    return np.where(span > 0, (close - low) / np.where(span > 0, span, 1.0), 0.5)


class _WilderRSI:
    """Incremental RSI with Wilder smoothing, seeded with a simple mean (as TA-Lib does)."""

    def __init__(self, n: int):
        self.n, self.count = n, 0
        self.prev: float | None = None
        self.gain = self.loss = 0.0

    def update(self, close: float) -> None:
        if self.prev is not None:
            up, down = max(close - self.prev, 0.0), max(self.prev - close, 0.0)
            self.count += 1
            if self.count <= self.n:  # the seed: a simple mean of the first n changes
                self.gain += up / self.n
                self.loss += down / self.n
            else:
                self.gain = (self.gain * (self.n - 1) + up) / self.n
                self.loss = (self.loss * (self.n - 1) + down) / self.n
        self.prev = close

    @property
    def value(self) -> float:
        if self.count < self.n:
            return float("nan")
        if self.loss == 0:
            return 100.0 if self.gain > 0 else 50.0
        return 100.0 - 100.0 / (1.0 + self.gain / self.loss)


@dataclass
class _EdgeInputs:
    """Per hour, the parts of the edge that do not depend on the price level."""

    sigma: np.ndarray  # recent hourly Parkinson volatility (log units)
    common: np.ndarray  # volume and volatility terms of the score
    weights: np.ndarray  # share of an amplitude due at lags 2, 3, ... hours


def _edge_inputs(base: _LogBars, d: _Draws, spec: EdgeSpec) -> _EdgeInputs:
    hs = d.hour_starts
    # Log ranges do not change with the level, so the base path gives the realised ones
    # (up to tick rounding).
    log_range = pd.Series(np.maximum.reduceat(base.high, hs) - np.minimum.reduceat(base.low, hs))
    sigma = np.sqrt((log_range**2).rolling(spec.sigma_window, min_periods=1).mean() / (4 * np.log(2)))
    atr = log_range.rolling(spec.atr_window).mean()
    atr_z = (atr - atr.rolling(spec.zscore_window).mean()) / atr.rolling(spec.zscore_window).std()
    hour_volume = pd.Series(np.add.reduceat(d.volume, hs).astype(np.float64))
    volume_pct = hour_volume.rolling(spec.volume_window).rank(pct=True)
    w = spec.weights
    common = np.nan_to_num((w.volume * (2 * volume_pct - 1)).to_numpy()) + np.nan_to_num(
        w.volatility * np.clip(atr_z.to_numpy() / 2, -1, 1)
    )  # warming-up features count as neutral
    lags = np.exp(-np.arange(spec.hours) / spec.decay_hours)
    return _EdgeInputs(sigma.to_numpy(), common, lags / lags.sum())


@dataclass(frozen=True)
class EdgeFade:
    """The planted edge in full for signals up to trading date ``until``, then a share
    falling linearly to zero over ``fade_days`` calendar days (at once when 0)."""

    until: np.datetime64  # datetime64[D]
    fade_days: int = 0
    vol_after: float = 1.0  # volatility multiple once the edge is gone (a regime change with it)

    @classmethod
    def of(cls, until: str | None, fade_days: int = 0, vol_after: float = 1.0) -> EdgeFade | None:
        if fade_days < 0:
            raise ValueError(f"edge_fade_days must be >= 0, got {fade_days}")
        if not vol_after > 0:
            raise ValueError(f"vol_after must be > 0, got {vol_after}")
        if until is None:
            if fade_days or vol_after != 1.0:
                raise ValueError("edge_fade_days and vol_after need edge_until (the date the market changes)")
            return None
        return cls(np.datetime64(parse_date(until), "D"), int(fade_days), float(vol_after))

    def vol_multiple(self, trading_dates: np.ndarray) -> np.ndarray:
        """Per trading date: 1 while the edge is whole, ``vol_after`` once it is gone (in
        between along the fade)."""
        return 1.0 + (self.vol_after - 1.0) * (1.0 - self.scale(trading_dates))

    def scale(self, trading_dates: np.ndarray) -> np.ndarray:
        """The share of the edge a signal gets, per trading date (datetime64[D])."""
        after = (trading_dates.astype("datetime64[D]") - self.until).astype(np.int64).astype(np.float64)
        if self.fade_days == 0:
            return np.where(after <= 0, 1.0, 0.0)
        return np.clip(1.0 - after / self.fade_days, 0.0, 1.0)


class _Edge:
    """The planted edge across sessions: drift owed to future hours, the daily RSI."""

    def __init__(self, inputs: _EdgeInputs, spec: EdgeSpec, edge: float, inst: Instrument,
                 n_hours: int, scale: np.ndarray | None = None):
        self.inputs, self.spec, self.edge = inputs, spec, edge
        self.scale = scale  # per hour, the share of the edge a signal in that hour gets (None: all)
        # Round-trip cost in price units; divided by the price it is a log return.
        self.cost = (2 * inst.slippage_points + 2 * inst.commission_per_side / inst.point_value)
        self.tick = inst.tick_size
        self.due = np.zeros(n_hours + spec.hours + 2)  # log drift owed at each hour
        self.carry = 0.0  # owed ticks not yet placed (fractions)
        # Mean reversion this strong would also eat the market's trend (uptrends give more
        # high-IBS hours). A slow average of the edge's own net drift is taken back out, so
        # over weeks the edge only redistributes returns.
        self.net_rate = 0.0
        self.net_alpha = 1 - 0.5 ** (1 / spec.neutral_half_life_hours)
        self.rsi = _WilderRSI(2)
        self.signal_ibs = np.full(n_hours, np.nan)

    def session(self, bars: list[np.ndarray], hs: np.ndarray, h0: int) -> np.ndarray:
        """Whole ticks to add at the close of each hour's first bar, for one session.

        ``bars`` are the session's open/high/low/close in ticks, ``hs`` its hours' first
        bars, ``h0`` the index of its first hour. Sequential over hours: an hour's drift
        depends on the IBS of hours two or more before it, including this session's.
        """
        o, h, lo, c = bars
        ends = np.r_[hs[1:], len(o)] - 1
        rest_high, rest_low = h.copy(), lo.copy()  # the hour without its first bar
        rest_high[hs], rest_low[hs] = -np.inf, np.inf
        rest_high = np.maximum.reduceat(rest_high, hs)
        rest_low = np.minimum.reduceat(rest_low, hs)
        spec, due = self.spec, self.due
        rsi = self.rsi.value
        rsi_term = 0.0 if np.isnan(rsi) else spec.weights.rsi * (50 - rsi) / 50
        weights = self.inputs.weights
        lags = slice(2, 2 + spec.hours)  # lag 1 is priced into the fill at the next open
        extra = np.zeros(len(hs))
        rows = zip(o[hs].tolist(), h[hs].tolist(), lo[hs].tolist(), c[hs].tolist(),
                   rest_high.tolist(), rest_low.tolist(), c[ends].tolist(),
                   self.inputs.sigma[h0 : h0 + len(hs)].tolist(),
                   self.inputs.common[h0 : h0 + len(hs)].tolist(), strict=True)
        for j, (o1, h1, l1, c1, hr, lr, close, sigma, common) in enumerate(rows):
            t = h0 + j
            owed = self.carry + (due[t] - self.net_rate) * o1  # log drift * price in ticks
            k = float(np.floor(owed + 0.5))
            self.carry = owed - k
            extra[j] = k
            # The hour as it will be written: the first bar's close and all later bars move by k.
            high, low, close = max(h1, c1 + k, hr + k), min(l1, c1 + k, lr + k), close + k
            ibs = (close - low) / (high - low) if high > low else 0.5
            self.signal_ibs[t] = ibs
            amp = 0.0
            base = spec.cost_multiple * self.cost / (close * self.tick)
            edge = self.edge if self.scale is None else self.edge * self.scale[t]
            if ibs <= spec.ibs_max:  # oversold favours a bounce
                amp = edge * (base + spec.strength * sigma * (common + rsi_term))
            elif ibs >= 1 - spec.ibs_max:  # the mirror image, so the edge is not a trend
                amp = -edge * (base + spec.strength * sigma * (common - rsi_term))
            if amp:
                due[t + lags.start : t + lags.stop] += amp * weights
            self.net_rate += self.net_alpha * (amp - self.net_rate)
        return extra


def _shift_hours(bars: list[np.ndarray], hs: np.ndarray, extra: np.ndarray) -> None:
    """Add ``extra`` ticks at each hour's first bar close, carried by all later bars."""
    o, h, lo, c = bars
    after = np.cumsum(extra)
    before = after - extra
    shift = np.repeat(after, np.diff(np.r_[hs, len(o)]))
    first_open, first_high, first_low = o[hs] + before, h[hs] + before, lo[hs] + before
    for x in bars:
        x += shift
    first_close = c[hs]
    o[hs] = first_open
    h[hs] = np.maximum(first_high, first_close)
    lo[hs] = np.minimum(first_low, first_close)


def _band_pull(level: float, band: tuple[float, float], rate: float) -> float:
    """Log move back towards the price band, zero inside it."""
    lo, hi = np.log(band[0]), np.log(band[1])
    return -rate * (level - hi) if level > hi else rate * (lo - level) if level < lo else 0.0


# --- assembly --------------------------------------------------------------------------


@dataclass
class _Bars:
    """Final bars of one symbol; prices are integers in units of 10**-decimals."""

    ts: np.ndarray  # datetime64[s]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    decimals: int
    signal_ibs: np.ndarray | None = None  # per clock hour: the IBS the edge acted on

    def price(self, units: np.ndarray) -> np.ndarray:
        # Division by a power of ten gives the float nearest the decimal, i.e. what any
        # CSV parser returns for the written text.
        return units / 10.0**self.decimals

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "datetime": self.ts.astype("datetime64[ns]"),
            "Open": self.price(self.open),
            "High": self.price(self.high),
            "Low": self.price(self.low),
            "Close": self.price(self.close),
            "volume": self.volume,
        })

    def select(self, mask: np.ndarray) -> _Bars:
        return _Bars(self.ts[mask], self.open[mask], self.high[mask], self.low[mask],
                     self.close[mask], self.volume[mask], self.decimals)


def _assemble(
    base: _LogBars, d: _Draws, inst: Instrument, spec: MarketInstrument,
    market: SampleMarket, edge: float, fade: EdgeFade | None = None,
) -> _Bars:
    """Tick prices, one session at a time: each session starts from the last one's close.

    Per session: the level (a log shift ``mu``) carries the previous close plus the band
    pull; prices are rounded to ticks; then, hour by hour, the drift owed is added as whole
    ticks to the hour's first bar close (and so to all later bars), the hour's IBS is taken
    from exactly those prices, and a low/high IBS schedules drift into later hours.
    """
    n, n_hours = len(d.ts), len(d.hour_starts)
    tick, scale = inst.tick_size, 10.0**inst.price_decimals
    unit = round(tick * scale)
    share = None if fade is None else fade.scale(inst.calendar.trading_date(d.ts[d.hour_starts]))
    planted = (
        _Edge(_edge_inputs(base, d, market.edge), market.edge, edge, inst, n_hours, share)
        if edge > 0 else None
    )
    pull_rate = 1 - 0.5 ** (1 / market.band_half_life_days)
    day_bars = np.r_[d.day_starts, n]
    day_hours = np.r_[np.searchsorted(d.hour_starts, d.day_starts), n_hours]
    cols = [np.empty(n, np.int64) for _ in range(4)]
    mu, level = 0.0, d.log_p0
    for i in range(len(d.day_starts)):
        b0, b1, h0, h1 = day_bars[i], day_bars[i + 1], day_hours[i], day_hours[i + 1]
        mu += _band_pull(level, spec.price_range, pull_rate)
        bars = [
            np.maximum(np.rint(np.exp(x[b0:b1] + mu) / tick), 1.0)
            for x in (base.open, base.high, base.low, base.close)
        ]
        if planted is not None:
            hs = d.hour_starts[h0:h1] - b0
            _shift_hours(bars, hs, planted.session(bars, hs, h0))
        for col, x in zip(cols, bars, strict=True):
            col[b0:b1] = np.maximum(x, 1.0).astype(np.int64) * unit
        close_price = cols[3][b1 - 1] / scale
        if planted is not None:
            planted.rsi.update(close_price)
        level = float(np.log(close_price))
        mu = level - base.close[b1 - 1]
    return _Bars(d.ts, *cols, d.volume, inst.price_decimals,
                 planted.signal_ibs if planted is not None else None)


def _symbol_bars(
    symbol: str, group: _Group, seed: int, start: str, edge: float, interval: int,
    cfg: RooneyConfig, market: SampleMarket, fade: EdgeFade | None = None,
) -> _Bars:
    inst = cfg.instrument(symbol)
    if len(group.timelines[inst.calendar]) == 0:  # no session in the range
        empty = np.zeros(0, np.int64)
        ts = np.zeros(0, "datetime64[s]")
        return _Bars(ts, empty, empty, empty, empty, empty, inst.price_decimals)
    d = _draw_symbol(symbol, group, seed, start, interval, inst, market,
                     fade if fade is not None and fade.vol_after != 1.0 else None)
    return _assemble(_base_path(d), d, inst, market.spec(symbol), market, edge, fade)


# --- generation --------------------------------------------------------------------------


def _check_interval(interval: int) -> None:
    if interval < 1 or 60 % interval:
        raise ValueError(f"interval_minutes must divide 60, got {interval}")


def _generate(
    symbols: list[str], start: str, end: str, seed: int, edge: float,
    cfg: RooneyConfig, market: SampleMarket, interval: int, fade: EdgeFade | None = None,
) -> Iterator[tuple[str, _Bars]]:
    """Yield (symbol, bars) in request order, one correlation group at a time."""
    _check_interval(interval)
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"duplicate symbols in {symbols}")
    if edge < 0:
        raise ValueError(f"edge must be >= 0, got {edge}")
    for s in symbols:
        cfg.instrument(s)
        market.spec(s)
    groups: dict[str, list[str]] = {}
    for s in symbols:
        groups.setdefault(market.spec(s).group, []).append(s)
    for name, members in groups.items():
        group = _draw_group(name, seed, start, end, interval, cfg, market)
        for s in members:
            yield s, _symbol_bars(s, group, seed, start, edge, interval, cfg, market, fade)


def generate_bars(
    symbols: list[str], start: str, end: str, seed: int, edge: float,
    cfg: RooneyConfig, market: SampleMarket, interval_minutes: int = 1,
    edge_until: str | None = None, edge_fade_days: int = 0, vol_after: float = 1.0,
) -> dict[str, pd.DataFrame]:
    """Bars per symbol: columns ``datetime, Open, High, Low, Close, volume``.

    ``datetime`` is naive exchange-local datetime64[ns], the bar's start; rows are sorted,
    unique and inside the session calendar; sessions are those with trading dates in
    ``[start, end]``. Correlated symbols share their group's factor. ``edge_until`` and
    ``edge_fade_days``, ``vol_after``: see ``write_sample_data``.
    """
    fade = EdgeFade.of(edge_until, edge_fade_days, vol_after)
    bars = dict(_generate(symbols, start, end, seed, edge, cfg, market, interval_minutes, fade))
    return {s: bars[s].to_frame() for s in symbols}


# --- a second vendor ---------------------------------------------------------------------


def _vendor_copy(bars: _Bars, noise: float, rng: np.random.Generator, tick_units: int) -> _Bars:
    """Same bars with one-tick disagreements on a fraction ``noise`` of them, other volumes."""
    n = len(bars.ts)
    hit = rng.random(n) < noise

    def shifted(units: np.ndarray) -> np.ndarray:
        step = np.where(rng.random(n) < 0.5, -tick_units, tick_units)
        return np.maximum(units + np.where(hit, step, 0), tick_units)

    o, c = shifted(bars.open), shifted(bars.close)
    h = np.maximum.reduce([shifted(bars.high), o, c])
    lo = np.minimum.reduce([shifted(bars.low), o, c])
    volume = np.floor(bars.volume * np.exp(0.1 * rng.standard_normal(n)) + rng.random(n))
    return _Bars(bars.ts, o, h, lo, c, volume.astype(np.int64), bars.decimals)


# --- writing -----------------------------------------------------------------------------


def _arrow_table(bars: _Bars) -> pa.Table:
    cols: dict[str, pa.Array] = {"datetime": pa.array(bars.ts, pa.timestamp("s"))}
    for name, units in zip(_PRICE_COLS, (bars.open, bars.high, bars.low, bars.close), strict=True):
        # Shortest round-trip float text: 71.23 (never 71.23000000000001), 6050 for 6050.00.
        cols[name] = pa.array(bars.price(units))
    cols["volume"] = pa.array(bars.volume)
    return pa.table(cols)


def _write_csv(path: Path, bars: _Bars) -> None:
    """Write one raw CSV atomically (``rooney_core.io.atomic_path``)."""
    table = _arrow_table(bars)
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none")

    def chunk(i: int) -> bytes:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table.slice(i, _WRITE_CHUNK_ROWS), sink, write_options=opts)
        return sink.getvalue().to_pybytes()

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write((",".join(COLUMNS) + "\n").encode())
        # Arrow formats in C without the GIL: format chunks on all cores, write in order.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for data in pool.map(chunk, range(0, len(table), _WRITE_CHUNK_ROWS)):
                f.write(data)


def write_sample_data(
    out_dir: Path,
    symbols: list[str],
    start: str,
    end: str,
    seed: int,
    edge: float,
    cfg: RooneyConfig,
    market: SampleMarket,
    interval_minutes: int = 1,
    vendor_noise: float = 0.0,
    progress: Callable[[str], None] | None = None,
    write_from: str | None = None,
    edge_until: str | None = None,
    edge_fade_days: int = 0,
    vol_after: float = 1.0,
) -> list[Path]:
    """Generate and write ``<SYMBOL>_bt.csv`` per symbol; returns the paths in order.

    ``vendor_noise`` > 0 writes a second vendor's view of the *same* market (same seed and
    path): each bar's OHLC disagrees by a tick with that probability, volumes differ by a
    few percent. ``write_from`` ("YYYY-MM-DD") writes only sessions from that trading date
    on while still generating from ``start``, so an overlap file for the last years matches
    the main files' path.

    ``edge_until`` ("YYYY-MM-DD"): the planted edge stops there, for a market that changes
    under a model: signals in sessions with trading dates up to that date get the full edge,
    later ones none (or, with ``edge_fade_days`` > 0, a share falling linearly to zero over
    that many calendar days). The edge is causal, so every bar up to that date is the bar the
    same call without ``edge_until`` writes (tested); without it nothing changes.
    ``vol_after`` (with ``edge_until``): the market's volatility is multiplied by this once the
    edge is gone (along the fade), so the edge leaves with a regime change, as it often does.
    """
    if not 0 <= vendor_noise <= 1:
        raise ValueError(f"vendor_noise must be in [0, 1], got {vendor_noise}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    fade = EdgeFade.of(edge_until, edge_fade_days, vol_after)
    paths: dict[str, Path] = {}
    for sym, bars in _generate(symbols, start, end, seed, edge, cfg, market, interval_minutes, fade):
        inst = cfg.instrument(sym)
        if vendor_noise > 0:
            tick_units = round(inst.tick_size * 10**inst.price_decimals)
            bars = _vendor_copy(bars, vendor_noise, _rng(seed, "symbol", sym, "vendor"), tick_units)
        if write_from is not None:
            first = np.datetime64(write_from, "D")
            bars = bars.select(inst.calendar.trading_date(bars.ts) >= first)
        path = out_dir / f"{sym}_bt.csv"
        _write_csv(path, bars)
        say(f"{sym}: wrote {len(bars.ts):,} bars to {path}")
        paths[sym] = path
    return [paths[s] for s in symbols]
