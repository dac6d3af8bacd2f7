"""Feature registry: TA-Lib agreement, no look-ahead, rolling-buffer equality, alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from builders import GLOBEX, make_hourly, make_pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rooney_core.features import REGISTRY, FeatureInputs
from rooney_core.features import indicators as ind

STALENESS = "2h"


def _inputs(hourly: pd.DataFrame, pair: pd.DataFrame | None) -> FeatureInputs:
    return FeatureInputs(hourly, GLOBEX, pair, STALENESS)


# A long series for warm-up tests (daily ATR(14) needs ~420 completed sessions).
@pytest.fixture(scope="module")
def long_bars() -> tuple[pd.DataFrame, pd.DataFrame]:
    own = make_hourly(n_sessions=520, seed=11)
    return own, make_pair(own, seed=12)


@pytest.fixture(scope="module")
def long_features(long_bars) -> pd.DataFrame:
    own, pair = long_bars
    return REGISTRY.compute(_inputs(own, pair))


@pytest.fixture(scope="module")
def short_bars() -> tuple[pd.DataFrame, pd.DataFrame]:
    own = make_hourly(n_sessions=40, seed=3)
    return own, make_pair(own, seed=4)


@pytest.fixture(scope="module")
def short_features(short_bars) -> pd.DataFrame:
    own, pair = short_bars
    return REGISTRY.compute(_inputs(own, pair))


def _assert_same(a: np.ndarray, b: np.ndarray, rtol: float = 0, atol: float = 0, what: str = "") -> None:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: NaN positions differ"
    m = ~np.isnan(a)
    np.testing.assert_allclose(a[m], b[m], rtol=rtol, atol=atol, err_msg=what)


# --- TA-Lib as the oracle ------------------------------------------------------------------


def test_rsi_atr_sma_bbands_match_talib(long_bars):
    own, _ = long_bars
    o, h, lo, c = (own[k].to_numpy() for k in ("open", "high", "low", "close"))
    for n in (2, 14):
        ours, ref = ind.rsi(c, n), talib.RSI(c, timeperiod=n)
        _assert_same(ours[n:], ref[n:], atol=1e-9, what=f"RSI({n})")
    for n in (5, 14):
        ours, ref = ind.atr(h, lo, c, n), talib.ATR(h, lo, c, timeperiod=n)
        _assert_same(ours[n:], ref[n:], atol=1e-9, what=f"ATR({n})")
    for n in (20, 200):
        _assert_same(ind.rolling_mean(c, n), talib.SMA(c, timeperiod=n), rtol=1e-12, what=f"SMA({n})")
    upper, mid, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    std = ind.rolling_std(c, 20)
    _assert_same(ind.rolling_mean(c, 20) + 2 * std, upper, atol=1e-9, what="BBANDS upper")
    _assert_same(ind.rolling_mean(c, 20) - 2 * std, lower, atol=1e-9, what="BBANDS lower")


def test_registered_features_match_talib_after_warmup(long_bars, long_features):
    own, _ = long_bars
    h, lo, c = (own[k].to_numpy() for k in ("high", "low", "close"))
    f = long_features
    w = ind.wilder_warmup(14)
    _assert_same(f["rsi2"].to_numpy()[w:], talib.RSI(c, 2)[w:], atol=1e-9, what="rsi2")
    _assert_same(f["rsi14"].to_numpy()[w:], talib.RSI(c, 14)[w:], atol=1e-9, what="rsi14")
    _assert_same(f["atr14_pct"].to_numpy()[w:], (talib.ATR(h, lo, c, 14) / c)[w:], atol=1e-12, what="atr14")
    upper, mid, lower = talib.BBANDS(c, 20, 2, 2, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        bb = np.where(upper > lower, (c - lower) / (upper - lower), np.nan)
    _assert_same(f["bb_position"].to_numpy()[w:], bb[w:], atol=1e-9, what="bb_position")
    _assert_same(f["close_sma200"].to_numpy()[w:], (c / talib.SMA(c, 200) - 1)[w:], atol=1e-12, what="sma200")
    daily = _inputs(own, None).daily
    d_rsi = talib.RSI(daily["close"].to_numpy(), 2)
    # the last completed session's value: the daily series shifted by one session
    aligned = _inputs(own, None).align_daily(d_rsi)
    _assert_same(f["d_rsi2"].to_numpy()[w:], aligned[w:], atol=1e-9, what="d_rsi2")


# --- no look-ahead: a prefix gives the same values ------------------------------------------


def _prefix_features(own: pd.DataFrame, pair: pd.DataFrame, t: int) -> pd.DataFrame:
    cut = own.index[t]
    return REGISTRY.compute(_inputs(own.iloc[: t + 1], pair.loc[:cut]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(min_value=0.0, max_value=1.0))
def test_every_feature_is_causal(short_bars, short_features, frac):
    own, pair = short_bars
    t = int(frac * (len(own) - 1))
    prefix = _prefix_features(own, pair, t)
    for name in REGISTRY.names():
        # every value up to t, not only t: a prefix must reproduce all of history
        _assert_same(prefix[name].to_numpy(), short_features[name].to_numpy()[: t + 1], what=name)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_changing_future_bars_changes_no_past_value(short_bars, short_features, name):
    own, pair = short_bars
    t = len(own) // 2
    future = own.copy()
    rng = np.random.default_rng(5)
    future.iloc[t + 1 :, :4] *= 1 + 0.05 * rng.standard_normal((len(own) - t - 1, 1))
    future["high"] = future[["open", "high", "low", "close"]].max(axis=1)
    future["low"] = future[["open", "high", "low", "close"]].min(axis=1)
    future.iloc[t + 1 :, 4] = future.iloc[t + 1 :, 4].to_numpy()[::-1]
    pair_future = pair.copy()
    cut = own.index[t]
    pair_future.loc[pair_future.index > cut, "close"] *= 1.1
    pair_future["high"] = pair_future[["open", "high", "close"]].max(axis=1)
    changed = REGISTRY[name].compute(_inputs(future, pair_future))
    _assert_same(changed[: t + 1], short_features[name].to_numpy()[: t + 1], what=name)


# --- the live engine's rolling buffer ---------------------------------------------------------


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(min_value=0.0, max_value=1.0))
def test_every_feature_from_its_warmup_buffer_equals_full_history(long_bars, long_features, frac):
    own, pair = long_bars
    assert GLOBEX.hourly_bars == 23  # 17:00 -> 16:00
    needed = REGISTRY.warmup_bars(GLOBEX.hourly_bars)
    assert needed < len(own), "fixture too short for the declared warm-ups"
    t = needed + int(frac * (len(own) - 1 - needed))
    for feature in REGISTRY:
        w = feature.warmup.bars(bars_per_session=GLOBEX.hourly_bars)
        buf = own.iloc[t - w + 1 : t + 1]
        # the live engine holds the pair over the same time span as the instrument
        pbuf = pair.loc[buf.index[0] - pd.Timedelta(STALENESS) : buf.index[-1]]
        value = feature.compute(_inputs(buf, pbuf))[-1]
        _assert_same([value], [long_features[feature.name].iloc[t]], rtol=1e-9, atol=1e-9, what=feature.name)


def test_warmup_buffer_shorter_than_declared_is_detected(long_bars, long_features):
    """The buffer test can fail: a too-short buffer for a Wilder feature is visibly off."""
    own, _ = long_bars
    t = len(own) - 1
    short = REGISTRY["rsi14"].compute(_inputs(own.iloc[t - 15 : t + 1], None))[-1]
    assert abs(short - long_features["rsi14"].iloc[t]) > 1e-6


# --- alignment rules --------------------------------------------------------------------------


def test_daily_features_use_the_last_completed_session_only(short_bars, short_features):
    own, pair = short_bars
    x = _inputs(own, pair)
    daily = x.daily
    tdates = GLOBEX.trading_date(own.index.values)
    d_ibs = short_features["d_ibs"].to_numpy()
    d_ibs_daily = ind.ibs(daily["high"].to_numpy(), daily["low"].to_numpy(), daily["close"].to_numpy())
    ddates = daily.index.values.astype("datetime64[D]")
    for i in range(0, len(own), 37):
        prior = np.flatnonzero(ddates < tdates[i])
        if len(prior) == 0:
            assert np.isnan(d_ibs[i])
        else:
            assert d_ibs[i] == d_ibs_daily[prior[-1]]
    # the Sunday-evening bar belongs to Monday's session and sees Friday's session
    sunday = own.index[(own.index.day_of_week == 6) & (own.index.hour == 17)][1]
    i = own.index.get_loc(sunday)
    friday = ddates[ddates < tdates[i]][-1]
    assert pd.Timestamp(friday).day_of_week == 4


def test_pair_features_align_as_of_and_treat_stale_bars_as_missing(short_bars):
    own, pair = short_bars
    # remove three consecutive pair hours: the first two stay within 2h staleness
    gap_start = own.index[200]
    holey = pair.drop(pair.index[(pair.index >= gap_start) & (pair.index < gap_start + pd.Timedelta("3h"))])
    f = REGISTRY["p_ibs"].compute(_inputs(own, holey))
    i = own.index.get_loc(gap_start)
    last_before = holey.loc[: gap_start].iloc[-1]
    expected = ind.ibs(np.array([last_before.high]), np.array([last_before.low]), np.array([last_before.close]))[0]
    age = gap_start - holey.loc[:gap_start].index[-1]
    if age <= pd.Timedelta(STALENESS):
        assert f[i] == expected
    stale_i = own.index.get_indexer([gap_start + pd.Timedelta("2h")])[0]
    if stale_i >= 0 and (own.index[stale_i] - holey.loc[: own.index[stale_i]].index[-1]) > pd.Timedelta(STALENESS):
        assert np.isnan(f[stale_i])


def test_instrument_without_pair_gets_missing_pair_features(long_bars):
    own, _ = long_bars
    f = REGISTRY.compute(_inputs(own, None))
    for feature in REGISTRY:
        if feature.needs_pair:
            assert f[feature.name].isna().all(), feature.name
        else:  # after its warm-up every other feature has a value on every bar
            w = feature.warmup.bars(23)
            assert f[feature.name].iloc[w:].notna().all(), feature.name


def test_registry_covers_the_first_feature_set():
    groups = {f.group for f in REGISTRY}
    assert groups == {"IBS", "RSI", "returns", "volatility", "volume", "location", "pair", "calendar"}
    assert len(REGISTRY) == 27
    for f in REGISTRY:
        assert f.warmup.bars(23) >= 1 and f.description


def test_schema_hash_changes_with_selection():
    assert REGISTRY.schema_hash("all") != REGISTRY.schema_hash(["ibs", "rsi2"])
    assert REGISTRY.schema_hash(["ibs"]) == REGISTRY.schema_hash(["ibs"])


def test_percentile_rank_and_zscore_definitions():
    x = np.array([1.0, 2.0, 3.0, 2.0, 5.0])
    r = ind.rolling_percentile_rank(x, 3)
    # window [2,3,2]: below=0 (nothing < 2), equal=2 -> (0 + 1) / 3
    assert r[3] == pytest.approx(1 / 3)
    assert r[4] == pytest.approx((2 + 0.5) / 3)
    z = ind.rolling_zscore(np.array([1.0, 2.0, 3.0]), 3)
    assert z[2] == pytest.approx((3 - 2) / np.std([1, 2, 3]))
    assert np.isnan(ind.rolling_zscore(np.ones(5), 3)[4])
