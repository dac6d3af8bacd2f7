"""The synthetic market: determinism, format, sessions, realism and the planted edge."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rooney_core import sample_market as sample
from rooney_core.config import RooneyConfig
from rooney_core.errors import ConfigError
from rooney_core.sample_market import (
    COLUMNS,
    SampleMarket,
    generate_bars,
    load_sample_market,
    write_sample_data,
)

TS_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@pytest.fixture(scope="module")
def market() -> SampleMarket:
    return load_sample_market()


@pytest.fixture(scope="module")
def es_nq_gc_si(cfg: RooneyConfig, market: SampleMarket) -> dict[str, pd.DataFrame]:
    return generate_bars(["ES", "NQ", "GC", "SI"], "2024-01-01", "2024-03-31", 7, 1.0, cfg, market)


@pytest.fixture(scope="module")
def every_symbol(cfg: RooneyConfig, market: SampleMarket) -> dict[str, pd.DataFrame]:
    symbols = list(cfg.instruments.instruments)
    return generate_bars(symbols, "2023-11-01", "2024-01-31", 3, 1.0, cfg, market, 5)


def hourly(frame: pd.DataFrame) -> pd.DataFrame:
    """Hourly bars labelled by their start (the pipeline's definition)."""
    grouped = frame.groupby(frame["datetime"].dt.floor("h"))
    return grouped.agg(
        open=("Open", "first"), high=("High", "max"), low=("Low", "min"),
        close=("Close", "last"), volume=("volume", "sum"),
    )


def ibs(h: pd.DataFrame) -> np.ndarray:
    span = (h["high"] - h["low"]).to_numpy()
    return np.where(span > 0, (h["close"] - h["low"]).to_numpy() / np.where(span > 0, span, 1), 0.5)


# --- config ------------------------------------------------------------------------------


def test_every_instrument_has_market_parameters(cfg: RooneyConfig, market: SampleMarket) -> None:
    assert set(market.instruments) == set(cfg.instruments.instruments)


def test_unknown_key_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    text = (sample.config_dir_from_env() / "sample_market.yml").read_text()
    (tmp_path / "sample_market.yml").write_text(text.replace("band_half_life_days:", "holidayz:"))
    with pytest.raises(ConfigError, match=r"sample_market\.yml.*holidayz"):
        load_sample_market(tmp_path)


def test_bad_arguments_are_refused(cfg: RooneyConfig, market: SampleMarket) -> None:
    with pytest.raises(ValueError, match="interval"):
        generate_bars(["ES"], "2024-01-02", "2024-01-03", 1, 1.0, cfg, market, 7)
    with pytest.raises(ConfigError, match="ZZ"):
        generate_bars(["ZZ"], "2024-01-02", "2024-01-03", 1, 1.0, cfg, market)


# --- determinism -------------------------------------------------------------------------


def test_same_seed_same_bars_whatever_else_is_requested(
    cfg: RooneyConfig, market: SampleMarket, es_nq_gc_si: dict[str, pd.DataFrame]
) -> None:
    alone = generate_bars(["ES"], "2024-01-01", "2024-03-31", 7, 1.0, cfg, market)["ES"]
    pd.testing.assert_frame_equal(alone, es_nq_gc_si["ES"])
    again = generate_bars(["SI", "GC"], "2024-01-01", "2024-03-31", 7, 1.0, cfg, market)
    pd.testing.assert_frame_equal(again["SI"], es_nq_gc_si["SI"])


def test_different_seed_different_bars(
    cfg: RooneyConfig, market: SampleMarket, es_nq_gc_si: dict[str, pd.DataFrame]
) -> None:
    other = generate_bars(["ES"], "2024-01-01", "2024-03-31", 8, 1.0, cfg, market)["ES"]
    assert (other["Close"].to_numpy() != es_nq_gc_si["ES"]["Close"].to_numpy()).mean() > 0.9


# --- format and sessions -----------------------------------------------------------------


def test_schema(es_nq_gc_si: dict[str, pd.DataFrame]) -> None:
    for frame in es_nq_gc_si.values():
        assert list(frame.columns) == COLUMNS
        assert frame["datetime"].dtype == np.dtype("datetime64[ns]")
        assert all(frame[c].dtype == np.float64 for c in ("Open", "High", "Low", "Close"))
        assert frame["volume"].dtype == np.int64
        assert frame["datetime"].is_monotonic_increasing and frame["datetime"].is_unique
        assert (frame["volume"] >= 0).all()


def test_ohlc_consistent_positive_and_on_the_tick_grid(
    cfg: RooneyConfig, every_symbol: dict[str, pd.DataFrame]
) -> None:
    for sym, f in every_symbol.items():
        o, h, lo, c = (f[k].to_numpy() for k in ("Open", "High", "Low", "Close"))
        assert (lo > 0).all(), sym
        assert (lo <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all(), sym
        ticks = f[["Open", "High", "Low", "Close"]].to_numpy() / cfg.instrument(sym).tick_size
        np.testing.assert_allclose(ticks, np.rint(ticks), rtol=0, atol=1e-6, err_msg=sym)


def test_realistic_price_levels(market: SampleMarket, every_symbol: dict[str, pd.DataFrame]) -> None:
    for sym, f in every_symbol.items():
        lo, hi = market.instruments[sym].price_range
        assert lo * 0.8 < f["Close"].min() and f["Close"].max() < hi * 1.2, sym


def test_bars_only_inside_sessions(
    cfg: RooneyConfig, every_symbol: dict[str, pd.DataFrame]
) -> None:
    for sym, f in every_symbol.items():
        cal = cfg.instrument(sym).calendar
        ts = f["datetime"]
        assert cal.in_session(ts.to_numpy()).all(), sym
        assert not (ts.dt.hour == 16).any(), sym
        weekend = (ts.dt.day_of_week == 5) | ((ts.dt.day_of_week == 6) & (ts.dt.hour < 17))
        weekend |= (ts.dt.day_of_week == 4) & (ts.dt.hour >= 16)
        assert not weekend.any(), sym
        # Holidays have no session; ordinary weekdays have full ones (23 hours).
        dates = pd.Series(cal.trading_date(ts.to_numpy())).value_counts()
        assert np.datetime64("2023-12-25") not in dates.index
        assert np.datetime64("2024-01-01") not in dates.index
        assert dates.loc[np.datetime64("2024-01-02")] == 23 * 12  # 5-minute bars


def test_other_intervals(cfg: RooneyConfig, market: SampleMarket) -> None:
    for interval in (5, 15, 30, 60):
        f = generate_bars(["CL"], "2024-03-04", "2024-03-08", 2, 1.0, cfg, market, interval)["CL"]
        assert len(f) == 5 * 23 * 60 // interval
        assert (f["datetime"].dt.minute % interval == 0).all()
        assert set(f["datetime"].diff().dropna().unique()) <= {
            pd.Timedelta(minutes=interval), pd.Timedelta(hours=1, minutes=interval)
        }


def test_an_empty_range_gives_empty_frames(cfg: RooneyConfig, market: SampleMarket) -> None:
    f = generate_bars(["ES"], "2024-06-01", "2024-06-02", 1, 1.0, cfg, market)["ES"]  # a weekend
    assert f.empty and list(f.columns) == COLUMNS


# --- realism -----------------------------------------------------------------------------


def test_correlated_pairs(es_nq_gc_si: dict[str, pd.DataFrame]) -> None:
    ret = pd.DataFrame({s: np.log(hourly(f)["close"]).diff() for s, f in es_nq_gc_si.items()})
    corr = ret.corr()
    assert corr.loc["ES", "NQ"] > 0.7
    assert corr.loc["GC", "SI"] > 0.6
    assert abs(corr.loc["ES", "GC"]) < 0.15


def test_intraday_volume_u_shape_and_volatility_clustering(
    cfg: RooneyConfig, es_nq_gc_si: dict[str, pd.DataFrame]
) -> None:
    h = hourly(es_nq_gc_si["ES"])
    by_hour = h["volume"].groupby(h.index.hour).mean()
    assert by_hour[9] > 1.3 * by_hour[11]  # the US open is busier than midday ...
    assert by_hour[14] > 1.3 * by_hour[11]  # ... and so is the close
    assert by_hour[11] > 2 * by_hour[20]  # and midday is busier than the night
    f = es_nq_gc_si["ES"]
    session = cfg.instrument("ES").calendar.trading_date(f["datetime"].to_numpy())
    realised_vol = np.sqrt((np.log(f["Close"]).diff() ** 2).groupby(session).sum())
    assert realised_vol.autocorr(1) > 0.3  # calm and busy sessions cluster


# --- the planted edge --------------------------------------------------------------------


def forward_after_low_ibs(frame: pd.DataFrame, hours: int = 4, low: bool = True) -> np.ndarray:
    """Log return from the next hour's open to the open ``hours`` later, after IBS <= 0.2
    (``low=False``: after every bar, the drift it is compared with)."""
    h = hourly(frame)
    signal = np.flatnonzero(ibs(h)[: -hours - 1] <= 0.2) if low else np.arange(len(h) - hours - 1)
    o = np.log(h["open"].to_numpy())
    return o[signal + 1 + hours] - o[signal + 1]


def excess_t(frame: pd.DataFrame) -> float:
    """t statistic of the forward return after low IBS minus that after any bar (the drift)."""
    a, b = forward_after_low_ibs(frame), forward_after_low_ibs(frame, low=False)
    return float((a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def t_stat(x: np.ndarray) -> float:
    return float(x.mean() / x.std(ddof=1) * np.sqrt(len(x)))


def test_edge_follows_low_ibs_and_null_market_has_none(
    cfg: RooneyConfig, market: SampleMarket
) -> None:
    args = (["ES"], "2022-01-01", "2023-12-31", 11)
    edge_frame = generate_bars(*args, 1.0, cfg, market, 5)["ES"]
    null_frame = generate_bars(*args, 0.0, cfg, market, 5)["ES"]
    with_edge, null = forward_after_low_ibs(edge_frame), forward_after_low_ibs(null_frame)
    assert t_stat(with_edge) > 3 and excess_t(edge_frame) > 3
    assert abs(excess_t(null_frame)) < 3  # no more than the drift every bar has
    diff = with_edge.mean() - null.mean()
    se = np.sqrt(with_edge.var() / len(with_edge) + null.var() / len(null))
    assert diff > 2 * se


def test_the_edge_acts_on_the_realised_ibs(cfg: RooneyConfig, market: SampleMarket) -> None:
    for interval in (1, 60):
        bars = dict(sample._generate(["NG"], "2024-01-01", "2024-02-29", 5, 1.0, cfg, market, interval))
        h = hourly(bars["NG"].to_frame())
        assert bars["NG"].signal_ibs is not None
        np.testing.assert_allclose(bars["NG"].signal_ibs, ibs(h), rtol=0, atol=1e-12)


# --- writing -----------------------------------------------------------------------------


def read_back(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={c: np.float64 for c in ("Open", "High", "Low", "Close")})
    frame["datetime"] = pd.to_datetime(frame["datetime"], format="%Y-%m-%d %H:%M:%S").astype(
        "datetime64[ns]"
    )
    return frame


def test_written_csv_parses_back_exactly(
    tmp_path: Path, cfg: RooneyConfig, market: SampleMarket
) -> None:
    symbols = ["6E", "CL", "ES", "6J"]
    paths = write_sample_data(tmp_path, symbols, "2024-02-01", "2024-02-29", 4, 1.0, cfg, market)
    assert paths == [tmp_path / f"{s}_bt.csv" for s in symbols]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files
    frames = generate_bars(symbols, "2024-02-01", "2024-02-29", 4, 1.0, cfg, market)
    for sym, path in zip(symbols, paths, strict=True):
        lines = path.read_text().splitlines()
        assert lines[0] == "datetime,Open,High,Low,Close,volume"
        assert all(TS_FORMAT.fullmatch(line.split(",", 1)[0]) for line in lines[1:200])
        assert not any("e" in line.lower() for line in lines[1:])  # no exponents, no 1e-05
        decimals = cfg.instrument(sym).price_decimals
        assert max(len(x.split(".")[1]) for x in lines[1].split(",")[1:5] if "." in x) <= decimals
        pd.testing.assert_frame_equal(read_back(path), frames[sym])


def test_vendor_noise_is_a_slightly_different_copy_of_the_same_market(
    tmp_path: Path, cfg: RooneyConfig, market: SampleMarket
) -> None:
    args = (["GC"], "2024-01-01", "2024-02-29", 9, 1.0, cfg, market)
    main = read_back(write_sample_data(tmp_path / "a", *args)[0])
    other = read_back(write_sample_data(tmp_path / "b", *args, vendor_noise=0.02)[0])
    assert (main["datetime"] == other["datetime"]).all()
    prices = ["Open", "High", "Low", "Close"]
    diff = (other[prices] - main[prices]).abs().to_numpy()
    changed = (diff > 1e-9).any(axis=1).mean()
    assert 0.005 < changed < 0.05
    assert diff.max() <= 0.1 + 1e-9  # at most one GC tick
    o, h, lo, c = (other[k].to_numpy() for k in prices)
    assert (lo <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all()
    ratio = other["volume"].sum() / main["volume"].sum()
    assert 0.97 < ratio < 1.03 and (other["volume"] != main["volume"]).mean() > 0.5


def test_write_from_keeps_the_same_path(
    tmp_path: Path, cfg: RooneyConfig, market: SampleMarket
) -> None:
    args = (["ES"], "2024-01-01", "2024-02-29", 6, 1.0, cfg, market)
    full = read_back(write_sample_data(tmp_path / "full", *args)[0])
    tail = read_back(write_sample_data(tmp_path / "tail", *args, write_from="2024-02-01")[0])
    expected = full[full["datetime"] >= "2024-01-31 17:00"].reset_index(drop=True)
    pd.testing.assert_frame_equal(tail, expected)
