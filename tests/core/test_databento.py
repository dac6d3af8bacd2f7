"""Databento OHLCV-1m files (DBN, zstd) -> minute bars, raw CSV files and a time-ordered bar
iterator (rooney_core/data/databento.py, ``rooney import-databento``).

Two kinds of input:

* the vendor's real sample files in ``$ROONEY_REALDATA/databento`` (never copied into the
  repository; read in place): ESU4 + NQU4 on 2024-07-01 23:40-00:10 UTC (CDT) with their
  definition file, ESH6 on 2026-01-09 20:55-21:05 UTC (CST) with no definition of its own;
* small synthetic DBN files written here with databento-dbn's own record and metadata
  encoders, wrapped in a hand-made zstd frame (raw blocks), for what the real files do not
  show: several contracts of one root, DST changes, spreads, unknown roots, missing
  definitions, overlapping files.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from types import SimpleNamespace as NS
from zoneinfo import ZoneInfo

import databento_dbn as dbn
import numpy as np
import pandas as pd
import pytest
from builders import realdata_dir
from click.testing import CliRunner

from rooney_core.data.databento import (
    DatabentoError,
    iter_dbn_minute_bars,
    load_definitions,
    read_databento,
    root_of,
    write_raw_csvs,
)
from rooney_core.data.raw import read_raw_bars
from rooney_core.errors import ConfigError
from rooney_pipeline.cli import cli

DBN_DIR = realdata_dir() / "databento"
OHLCV_2024 = DBN_DIR / "futures_ohlcv-1m_2024-07-01T23-40_2024-07-02T00-10.dbn.zst"
OHLCV_2026 = DBN_DIR / "futures_ohlcv-1m_2026-01-09T20-55_2026-01-09T21-05.dbn.zst"
DEFS_2024 = DBN_DIR / "futures_definition.dbn.zst"
DEFS_ESM3 = DBN_DIR / "definition-glbx-es-fut.dbn.zst"

real = pytest.mark.skipif(
    not all(p.is_file() for p in (OHLCV_2024, OHLCV_2026, DEFS_2024, DEFS_ESM3)),
    reason=f"the real Databento sample files are not in {DBN_DIR} (set ROONEY_REALDATA to the realdata folder)",
)

NS_PER_S = 1_000_000_000


def _vendor_records(path: Path) -> list:
    """The file's records as the vendor's decoder gives them (the independent reference)."""
    dec = dbn.DBNDecoder(compression=dbn.Compression.ZSTD)
    dec.write(path.read_bytes())
    return dec.decode()


# --- synthetic DBN files -------------------------------------------------------------------


def _zstd(data: bytes, block: int = 4096) -> bytes:
    """A valid zstd frame of raw (stored) blocks: what a .dbn.zst is, without a compressor."""
    out = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0x00, 0x38]))  # no checksum; window 128 KiB
    chunks = [data[i:i + block] for i in range(0, len(data), block)] or [b""]
    for k, chunk in enumerate(chunks):
        out += (int(k == len(chunks) - 1) | (len(chunk) << 3)).to_bytes(3, "little") + chunk
    return bytes(out)


def _ns(utc: str) -> int:
    return int(pd.Timestamp(utc, tz="UTC").value)


def _bar(iid: int, utc: str, o: float, h: float, lo: float, c: float, v: int) -> dbn.OHLCVMsg:
    def px(x: float) -> int:
        return round(x * 4) * 250_000_000  # on the 0.25 grid, fixed point 1e-9

    return dbn.OHLCVMsg(dbn.RType.OHLCV_1M, 1, iid, _ns(utc), px(o), px(h), px(lo), px(c), v)


def _definition(iid: int, raw: str, asset: str, expiration: str, cls=dbn.InstrumentClass.FUTURE):
    return dbn.InstrumentDefMsg(1, iid, _ns("2024-01-02"), _ns("2024-01-02"), 250_000_000, 10_000_000, raw, asset,
                                "FUT" if cls == dbn.InstrumentClass.FUTURE else "", cls,
                                dbn.SecurityUpdateAction.ADD, expiration=_ns(expiration))


def _write_dbn(path: Path, records: list, mappings: dict[str, list[tuple[str, str, int]]] | None = None, *,
               schema=dbn.Schema.OHLCV_1M, stype_in=dbn.SType.RAW_SYMBOL, compress: bool = True) -> Path:
    mappings = mappings or {}
    meta = dbn.Metadata(
        dataset="GLBX.MDP3", start=_ns("2024-01-01"), end=_ns("2025-01-01"), stype_in=stype_in,
        stype_out=dbn.SType.INSTRUMENT_ID, schema=schema, symbols=list(mappings),
        mappings=[NS(raw_symbol=sym, intervals=[NS(start_date=dt.date.fromisoformat(a), end_date=dt.date.fromisoformat(b),
                                                   symbol=str(iid)) for a, b, iid in ivs])
                  for sym, ivs in mappings.items()])
    data = meta.encode() + b"".join(bytes(r) for r in records)
    path.write_bytes(_zstd(data) if compress else data)
    return path


def _es_mapping(*pairs: tuple[str, int]) -> dict[str, list[tuple[str, str, int]]]:
    return {sym: [("2024-01-01", "2025-01-01", iid)] for sym, iid in pairs}


# --- the real files --------------------------------------------------------------------------


@real
def test_real_files_map_instrument_ids_to_es_and_nq_through_definitions(cfg):
    bars = read_databento([OHLCV_2024], cfg, definitions=DEFS_2024)
    assert sorted(bars.frames) == ["ES", "NQ"]
    assert set(bars.contracts["ES"]) == {"ESU4"}
    assert set(bars.contracts["NQ"]) == {"NQU4"}
    s = bars.sessions.set_index("root")
    assert s.loc["ES", "instrument_id"] == 118 and s.loc["NQ", "instrument_id"] == 4358
    assert len(bars.frames["ES"]) == len(bars.frames["NQ"]) == 30
    assert list(bars.frames["ES"].columns) == ["datetime", "Open", "High", "Low", "Close", "volume"]
    assert bars.skipped == {}
    defs = load_definitions(DEFS_2024)
    assert {k: (c.raw_symbol, c.root) for k, c in defs.items()} == {118: ("ESU4", "ES"), 4358: ("NQU4", "NQ")}


@real
def test_real_files_map_through_their_own_symbology_without_definitions(cfg):
    """The 2026 ESH6 file has no definition anywhere: its metadata maps 42140878 -> ESH6."""
    with_defs = read_databento([OHLCV_2024], cfg, definitions=DEFS_2024)
    without = read_databento([OHLCV_2024], cfg)
    for root in ("ES", "NQ"):
        pd.testing.assert_frame_equal(with_defs.frames[root], without.frames[root])
    b26 = read_databento([OHLCV_2026], cfg)
    assert list(b26.frames) == ["ES"] and set(b26.contracts["ES"]) == {"ESH6"}
    # an unrelated definitions file (ESM3, id 95414) neither breaks nor changes the mapping
    other = read_databento([OHLCV_2024], cfg, definitions=DEFS_ESM3)
    pd.testing.assert_frame_equal(other.frames["ES"], without.frames["ES"])


@real
def test_real_prices_are_scaled_from_fixed_point_onto_the_tick_grid(cfg):
    bars = read_databento([OHLCV_2024, OHLCV_2026], cfg, definitions=DEFS_2024)
    ref = {}
    for path in (OHLCV_2024, OHLCV_2026):
        for r in _vendor_records(path)[1:]:
            ref[(r.instrument_id, r.ts_event)] = (r.pretty_open, r.pretty_high, r.pretty_low, r.pretty_close, r.volume)
    levels = {"ES": (4000, 8000), "NQ": (15000, 25000)}
    for root, f in bars.frames.items():
        px = f[["Open", "High", "Low", "Close"]].to_numpy()
        lo, hi = levels[root]
        assert ((px > lo) & (px < hi)).all(), f"{root} prices are not at real {root} levels: {px.min()}..{px.max()}"
        ticks = px / cfg.instrument(root).tick_size
        assert np.array_equal(ticks, np.round(ticks)), f"{root}: a price off the 0.25 tick grid"
        assert (f["High"] >= f[["Open", "Close", "Low"]].max(axis=1)).all()
        assert (f["Low"] <= f[["Open", "Close", "High"]].min(axis=1)).all()
        ids = bars.sessions.set_index("raw_symbol")["instrument_id"]
        for i, row in f.iterrows():
            iid = int(ids[bars.contracts[root][i]])
            assert ref[(iid, int(bars.ts_utc[root][i]))] == (row.Open, row.High, row.Low, row.Close, row.volume)
    first = bars.frames["ES"].iloc[0]
    assert (first.Open, first.High, first.Low, first.Close, first.volume) == (5527.25, 5527.5, 5527.0, 5527.5, 180)
    assert bars.frames["NQ"].iloc[0].Open == 20014.25


@real
def test_real_utc_is_converted_to_chicago_time_on_both_sides_of_dst(cfg):
    """2024-07-01 23:40 UTC is 18:40 CDT (UTC-5); 2026-01-09 20:55 UTC is 14:55 CST (UTC-6)."""
    bars = read_databento([OHLCV_2024, OHLCV_2026], cfg, definitions=DEFS_2024)
    es = bars.frames["ES"]
    summer = es[es["datetime"] < "2025-01-01"]
    winter = es[es["datetime"] >= "2025-01-01"]
    assert summer["datetime"].iloc[0] == pd.Timestamp("2024-07-01 18:40:00")
    assert winter["datetime"].iloc[0] == pd.Timestamp("2026-01-09 14:55:00")
    utc = pd.to_datetime(bars.ts_utc["ES"], utc=True)
    offsets = (es["datetime"].to_numpy() - utc.tz_localize(None).to_numpy()) / np.timedelta64(1, "h")
    assert set(offsets[: len(summer)]) == {-5.0} and set(offsets[len(summer):]) == {-6.0}
    chicago = ZoneInfo("America/Chicago")  # independent of rooney's converter
    for ts, local in zip(utc, es["datetime"], strict=True):
        assert ts.to_pydatetime().astimezone(chicago).replace(tzinfo=None) == local.to_pydatetime()
    assert cfg.instrument("ES").calendar.timezone == "America/Chicago"


@real
def test_real_bars_are_labelled_by_their_start(cfg):
    """ts_event is the bar's open time: the first bar of the 23:40-00:10 UTC request is
    labelled 18:40 CT (not 18:41), the last 19:09, one bar per minute."""
    bars = read_databento([OHLCV_2024], cfg)
    for root in ("ES", "NQ"):
        t = bars.frames[root]["datetime"]
        assert t.iloc[0] == pd.Timestamp("2024-07-01 18:40") and t.iloc[-1] == pd.Timestamp("2024-07-01 19:09")
        assert (t.diff().dropna() == pd.Timedelta(minutes=1)).all()
        assert (t.dt.second == 0).all()
    meta = _vendor_records(OHLCV_2024)[0]
    assert bars.ts_utc["ES"][0] == meta.start  # the request's start is the first bar's start


@real
def test_real_files_through_the_cli_pass_the_data_gate(cfg, tmp_path):
    out = tmp_path / "dbn"
    res = CliRunner().invoke(cli, ["import-databento", str(OHLCV_2024), str(OHLCV_2026), "--definitions",
                                   str(DEFS_2024), "--out", str(out)], obj={})
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["ES_bt.csv", "NQ_bt.csv"]
    lines = (out / "ES_bt.csv").read_text().splitlines()
    assert lines[0] == "datetime,Open,High,Low,Close,volume"
    assert lines[1] == "2024-07-01 18:40:00,5527.25,5527.5,5527,5527.5,180"
    gate = CliRunner().invoke(cli, ["check-data", str(out)], obj={})
    assert gate.exit_code == 0, gate.output
    assert "ES: ok, 40 bars of 1 min" in gate.output and "NQ: ok, 30 bars of 1 min" in gate.output
    bars = read_databento([OHLCV_2024, OHLCV_2026], cfg, definitions=DEFS_2024)
    for root in ("ES", "NQ"):
        raw = read_raw_bars(out / f"{root}_bt.csv", cfg.instrument(root).calendar, cfg.pipeline.data.repairs)
        assert raw.repairs == {}
        frame = raw.to_frame()
        f = bars.frames[root]
        assert np.array_equal(frame.index.to_numpy(), f["datetime"].to_numpy())
        for ours, theirs in (("open", "Open"), ("high", "High"), ("low", "Low"), ("close", "Close"),
                             ("volume", "volume")):
            assert np.array_equal(frame[ours].to_numpy(), f[theirs].to_numpy(dtype=float))


@real
def test_real_cli_refuses_to_overwrite_without_force_and_filters_symbols(tmp_path):
    args = ["import-databento", str(OHLCV_2024), "--out", str(tmp_path)]
    assert CliRunner().invoke(cli, [*args, "--symbols", "NQ"], obj={}).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NQ_bt.csv"]
    before = (tmp_path / "NQ_bt.csv").read_bytes()
    res = CliRunner().invoke(cli, args, obj={})
    assert res.exit_code == 1 and "NQ_bt.csv" in res.output and "--force" in res.output
    assert not (tmp_path / "ES_bt.csv").exists(), "nothing is written when one target is refused"
    assert (tmp_path / "NQ_bt.csv").read_bytes() == before
    res = CliRunner().invoke(cli, [*args, "--force"], obj={})
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ES_bt.csv", "NQ_bt.csv"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    res = CliRunner().invoke(cli, [*args, "--force", "--symbols", "GC"], obj={})
    assert res.exit_code == 1 and "no bars of GC" in res.output
    res = CliRunner().invoke(cli, [*args, "--force", "--symbols", "XX"], obj={})
    assert res.exit_code == 2 and "unknown instrument 'XX'" in res.output


@real
def test_real_definitions_file_may_be_given_as_an_input(cfg):
    bars = read_databento([DEFS_2024, OHLCV_2024], cfg)
    assert sorted(bars.frames) == ["ES", "NQ"]
    with pytest.raises(DatabentoError, match="no OHLCV-1m bars"):
        read_databento([DEFS_2024], cfg)
    with pytest.raises(DatabentoError, match=f"{re.escape(str(OHLCV_2024))}: no instrument definition records"):
        read_databento([OHLCV_2024], cfg, definitions=OHLCV_2024)


@real
def test_real_iterator_yields_bars_in_time_order_across_files(cfg):
    got = list(iter_dbn_minute_bars([OHLCV_2026, OHLCV_2024], cfg, definitions=DEFS_2024))
    assert len(got) == 70
    assert got[0] == ("ES", pd.Timestamp("2024-07-01 18:40"), 5527.25, 5527.5, 5527.0, 5527.5, 180.0)
    assert got[1][:2] == ("NQ", pd.Timestamp("2024-07-01 18:40"))
    assert got[-1][:2] == ("ES", pd.Timestamp("2026-01-09 15:04"))
    keys = [(t, s) for s, t, *_ in got]
    assert keys == sorted(keys)
    for _sym, t, o, h, lo, c, v in got:
        assert isinstance(t, pd.Timestamp) and t.tzinfo is None
        assert all(isinstance(x, float) for x in (o, h, lo, c, v))
    bars = read_databento([OHLCV_2024, OHLCV_2026], cfg, definitions=DEFS_2024)
    for sym in ("ES", "NQ"):
        mine = pd.DataFrame([g[1:] for g in got if g[0] == sym], columns=list(bars.frames[sym].columns))
        pd.testing.assert_frame_equal(mine, bars.frames[sym].astype({"volume": float}))
    assert [g[0] for g in iter_dbn_minute_bars([OHLCV_2024], cfg, symbols=["NQ"])] == ["NQ"] * 30


@real
def test_real_overlapping_files_keep_each_bar_once(cfg, tmp_path):
    copy = tmp_path / "again.dbn.zst"
    shutil.copyfile(OHLCV_2024, copy)
    bars = read_databento([OHLCV_2024, copy], cfg)
    assert len(bars.frames["ES"]) == 30 and bars.skipped == {"duplicate bars (identical) dropped": 60}


@real
@pytest.mark.parametrize("damage, match", [
    (lambda b: b[: len(b) - 10], "corrupt DBN file: truncated: the zstd stream ends inside a block"),
    (lambda b: b[: len(b) // 2], "corrupt DBN file: truncated: the zstd stream ends inside a block"),
    (lambda b: b[:6], "corrupt DBN file: truncated: the zstd stream ends inside a frame"),
    (lambda b: b[:3], "not a DBN file"),
    (lambda b: b"", "not a DBN file .*an empty file"),
    (lambda b: b[:500] + bytes([b[500] ^ 0xFF]) + b[501:], "corrupt DBN file: .*checksum"),
    (lambda b: b + b"\x00\x01", "corrupt DBN file: 2 stray byte"),
    (lambda b: b + b"\x00\x01\x02\x03\x04", "corrupt DBN file: not a zstd frame at offset 1118"),
    (lambda b: b"garbage!" * 50, "not a DBN file"),
], ids=["cut-10", "cut-half", "cut-header", "3-bytes", "empty", "flipped-byte", "2-stray-bytes",
        "trailing-garbage", "not-dbn"])
def test_a_corrupt_or_truncated_file_is_our_error_naming_the_file(cfg, tmp_path, damage, match):
    bad = tmp_path / "ES_damaged.dbn.zst"
    bad.write_bytes(damage(OHLCV_2024.read_bytes()))
    with pytest.raises(DatabentoError) as err:
        read_databento([bad], cfg)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: ")
    assert re.search(match, msg[len(str(bad)):]), msg
    res = CliRunner().invoke(cli, ["import-databento", str(bad), "--out", str(tmp_path / "out")], obj={})
    assert res.exit_code == 1 and str(bad) in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_truncated_plain_dbn_file_is_reported(cfg, tmp_path):
    recs = [_bar(1, "2024-03-07 20:00", 5100, 5101, 5099, 5100.5, 10),
            _bar(1, "2024-03-07 20:01", 5100, 5101, 5099, 5100.5, 10)]
    path = _write_dbn(tmp_path / "cut.dbn", recs, _es_mapping(("ESH4", 1)), compress=False)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DatabentoError, match=f"^{re.escape(str(path))}: corrupt DBN file: truncated"):
        read_databento([path], cfg)


# --- synthetic files: contract selection, DST, mapping errors --------------------------------


def _two_contracts(tmp_path: Path) -> tuple[Path, Path]:
    """ESH4 (id 1) around 5100 and ESM4 (id 2) around 5150 on three sessions:
    2024-03-07 ESH4 trades more; 2024-03-14 ESM4 trades more; 2024-03-21 they tie. ESM4
    also has a minute that ESH4 lacks on 03-07, and ESH4 one that ESM4 lacks on 03-14."""
    recs = []
    for day, vol_h, vol_m in (("2024-03-07", 100, 10), ("2024-03-14", 5, 200), ("2024-03-21", 50, 50)):
        for m in range(3):
            recs.append(_bar(1, f"{day} 19:0{m}", 5100, 5101, 5099, 5100.5, vol_h))
            recs.append(_bar(2, f"{day} 19:0{m}", 5150, 5151, 5149, 5150.5, vol_m))
    recs.append(_bar(2, "2024-03-07 19:05", 5150, 5151, 5149, 5150.5, 1))
    recs.append(_bar(1, "2024-03-14 19:05", 5100, 5101, 5099, 5100.5, 1))
    recs.sort(key=lambda r: r.ts_event)
    ohlcv = _write_dbn(tmp_path / "es.dbn.zst", recs, _es_mapping(("ESH4", 1), ("ESM4", 2)))
    defs = _write_dbn(tmp_path / "defs.dbn.zst", [_definition(1, "ESH4", "ES", "2024-03-15 13:30"),
                                                  _definition(2, "ESM4", "ES", "2024-06-21 13:30")],
                      schema=dbn.Schema.DEFINITION)
    return ohlcv, defs


def test_several_contracts_one_per_session_by_volume_never_mixed(cfg, tmp_path):
    ohlcv, defs = _two_contracts(tmp_path)
    bars = read_databento([ohlcv], cfg, definitions=defs)
    es = bars.frames["ES"].assign(contract=bars.contracts["ES"], day=lambda f: f["datetime"].dt.date.astype(str))
    per_day = es.groupby("day")["contract"].agg(lambda s: sorted(set(s)))
    assert per_day.to_dict() == {"2024-03-07": ["ESH4"], "2024-03-14": ["ESM4"], "2024-03-21": ["ESH4"]}
    # every bar's prices are its own contract's: no mixing within a bar
    assert (es.loc[es.contract == "ESH4", ["Open", "High", "Low", "Close"]].to_numpy() < 5125).all()
    assert (es.loc[es.contract == "ESM4", ["Open", "High", "Low", "Close"]].to_numpy() > 5125).all()
    # the passed-over contract's extra minutes are not spliced in
    assert pd.Timestamp("2024-03-07 13:05") not in set(es["datetime"])
    assert pd.Timestamp("2024-03-14 14:05") not in set(es["datetime"])
    assert len(es) == 9
    sess = bars.sessions.set_index(bars.sessions["trading_date"].astype(str))
    assert sess.loc["2024-03-07", "passed_over"] == "ESM4 (31)"
    assert sess.loc["2024-03-14", ["raw_symbol", "volume"]].tolist() == ["ESM4", 600]
    # the same files give the same answer whatever their order
    again = read_databento([defs, ohlcv], cfg)
    pd.testing.assert_frame_equal(again.frames["ES"], bars.frames["ES"])


def test_a_volume_tie_goes_to_the_earlier_expiration_then_the_symbol(cfg, tmp_path):
    """ESZ3 (expires first) against ESH4 (sorts first): with definitions the expiration
    decides; without, the raw symbol."""
    recs = [_bar(7, "2023-12-12 19:00", 4700, 4701, 4699, 4700, 40),
            _bar(8, "2023-12-12 19:00", 4750, 4751, 4749, 4750, 40)]
    ohlcv = _write_dbn(tmp_path / "tie.dbn.zst", recs,
                       {"ESZ3": [("2023-12-01", "2024-01-01", 7)], "ESH4": [("2023-12-01", "2024-01-01", 8)]})
    defs = _write_dbn(tmp_path / "tie_defs.dbn.zst", [_definition(7, "ESZ3", "ES", "2023-12-15 14:30"),
                                                      _definition(8, "ESH4", "ES", "2024-03-15 13:30")],
                      schema=dbn.Schema.DEFINITION)
    assert list(read_databento([ohlcv], cfg, definitions=defs).contracts["ES"]) == ["ESZ3"]
    assert list(read_databento([ohlcv], cfg).contracts["ES"]) == ["ESH4"]


def test_dst_changes_move_the_utc_offset_and_sessions_stay_whole(cfg, tmp_path):
    """The same UTC hour is 14:00 CST before the March change and 15:00 CDT after it; the
    November change moves it back. The repeated hour 01:00-02:00 on 2024-11-03 maps two UTC
    minutes onto one local minute: an error, never a merge."""
    utc = ["2024-03-08 20:00", "2024-03-11 20:00", "2024-11-01 19:00", "2024-11-04 19:00"]
    recs = [_bar(1, t, 5100 + i, 5101 + i, 5099 + i, 5100 + i, 5) for i, t in enumerate(utc)]
    path = _write_dbn(tmp_path / "dst.dbn.zst", recs, _es_mapping(("ESZ4", 1)))
    es = read_databento([path], cfg).frames["ES"]
    assert [str(t) for t in es["datetime"]] == ["2024-03-08 14:00:00", "2024-03-11 15:00:00",
                                               "2024-11-01 14:00:00", "2024-11-04 13:00:00"]
    out = tmp_path / "out"
    written = write_raw_csvs(read_databento([path], cfg), out, cfg)
    assert written[0][1].repairs == {} and len(written[0][1]) == 4
    clash = _write_dbn(tmp_path / "fallback.dbn.zst", [_bar(1, "2024-11-03 06:30", 5000, 5001, 4999, 5000, 1),
                                                       _bar(1, "2024-11-03 07:30", 5000, 5001, 4999, 5000, 1)],
                       _es_mapping(("ESZ4", 1)))
    with pytest.raises(DatabentoError, match=f"^{re.escape(str(clash))}: two ES bars fall on the same exchange-local minute "
                                             "2024-11-03 01:30:00"):
        read_databento([clash], cfg)


def test_an_instrument_without_definition_or_mapping_asks_for_definitions(cfg, tmp_path):
    recs = [_bar(42, "2024-03-07 20:00", 5100, 5101, 5099, 5100.5, 10)]
    path = _write_dbn(tmp_path / "nomap.dbn.zst", recs, {})
    with pytest.raises(DatabentoError, match=f"^{re.escape(str(path))}: instrument 42 .* no definition record and no symbol "
                                             "mapping.*--definitions"):
        read_databento([path], cfg)
    defs = _write_dbn(tmp_path / "d.dbn.zst", [_definition(42, "ESH4", "ES", "2024-03-15 13:30")],
                      schema=dbn.Schema.DEFINITION)
    assert len(read_databento([path], cfg, definitions=defs).frames["ES"]) == 1
    res = CliRunner().invoke(cli, ["import-databento", str(path), "--out", str(tmp_path / "o")], obj={})
    assert res.exit_code == 1 and str(path) in res.output and "--definitions" in res.output


def test_an_unknown_root_is_an_error_unless_left_out(cfg, tmp_path):
    recs = [_bar(1, "2024-03-07 20:00", 5100, 5101, 5099, 5100.5, 10),
            _bar(9, "2024-03-07 20:00", 110, 111, 109, 110, 10)]
    path = _write_dbn(tmp_path / "zw.dbn.zst", recs, _es_mapping(("ESH4", 1), ("ZWH4", 9)))
    with pytest.raises(DatabentoError, match=f"^{re.escape(str(path))}: root 'ZW' of ZWH4 .* not in instruments.yml"):
        read_databento([path], cfg)
    bars = read_databento([path], cfg, symbols=["ES"])
    assert list(bars.frames) == ["ES"] and bars.skipped == {"root ZW not selected": 1}
    with pytest.raises(ConfigError, match="unknown instrument 'ZW'"):
        read_databento([path], cfg, symbols=["ZW"])


def test_spreads_are_skipped_and_parent_requests_need_definitions(cfg, tmp_path):
    recs = [_bar(1, "2024-03-07 20:00", 5100, 5101, 5099, 5100.5, 10),
            dbn.OHLCVMsg(dbn.RType.OHLCV_1M, 1, 3, _ns("2024-03-07 20:00"), -50_000_000_000, -49_750_000_000,
                         -50_250_000_000, -50_000_000_000, 4)]
    # by raw symbol: the spread's own symbol says what it is
    by_raw = _write_dbn(tmp_path / "raw.dbn.zst", recs, _es_mapping(("ESH4", 1), ("ESH4-ESM4", 3)))
    bars = read_databento([by_raw], cfg)
    assert len(bars.frames["ES"]) == 1 and bars.skipped == {"not an outright future": 1}
    # by parent (ES.FUT covers the spread too): only definitions can tell them apart
    parent = _write_dbn(tmp_path / "parent.dbn.zst", recs, {"ES.FUT": [("2024-01-01", "2025-01-01", 1),
                                                                      ("2024-01-01", "2025-01-01", 3)]},
                        stype_in=dbn.SType.PARENT)
    with pytest.raises(DatabentoError, match="parent request ES.FUT, which also covers spreads"):
        read_databento([parent], cfg)
    defs = _write_dbn(tmp_path / "defs.dbn.zst",
                      [_definition(1, "ESH4", "ES", "2024-03-15 13:30"),
                       _definition(3, "ESH4-ESM4", "ES", "2024-03-15 13:30", cls=dbn.InstrumentClass.FUTURE_SPREAD)],
                      schema=dbn.Schema.DEFINITION)
    bars = read_databento([parent], cfg, definitions=defs)
    assert len(bars.frames["ES"]) == 1 and bars.skipped == {"not an outright future": 1}
    assert bars.frames["ES"]["Close"].tolist() == [5100.5]


def test_definitions_that_contradict_the_file_are_refused(cfg, tmp_path):
    path = _write_dbn(tmp_path / "es.dbn.zst", [_bar(1, "2024-03-07 20:00", 5100, 5101, 5099, 5100.5, 10)],
                      _es_mapping(("ESH4", 1)))
    defs = _write_dbn(tmp_path / "wrong.dbn.zst", [_definition(1, "NQH4", "NQ", "2024-03-15 13:30")],
                      schema=dbn.Schema.DEFINITION)
    with pytest.raises(DatabentoError, match=f"^{re.escape(str(path))}: instrument 1 is ESH4 in this file's symbology but NQH4"):
        read_databento([path], cfg, definitions=defs)


def test_overlapping_files_that_disagree_name_both(cfg, tmp_path):
    a = _write_dbn(tmp_path / "a.dbn.zst", [_bar(1, "2024-03-07 20:00", 5100, 5101, 5099, 5100.5, 10)],
                   _es_mapping(("ESH4", 1)))
    b = _write_dbn(tmp_path / "b.dbn.zst", [_bar(1, "2024-03-07 20:00", 5100, 5101, 5099, 5100.75, 10)],
                   _es_mapping(("ESH4", 1)))
    with pytest.raises(DatabentoError, match="ESH4 bar at 2024-03-07 20:00:00\\+00:00 appears with different "
                                             "values") as err:
        read_databento([a, b], cfg)
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_only_one_minute_bars_are_read(cfg, tmp_path):
    hourly = dbn.OHLCVMsg(dbn.RType.OHLCV_1H, 1, 1, _ns("2024-03-07 20:00"), 5_100_000_000_000,
                          5_101_000_000_000, 5_099_000_000_000, 5_100_000_000_000, 10)
    path = _write_dbn(tmp_path / "h.dbn.zst", [hourly], _es_mapping(("ESH4", 1)), schema=dbn.Schema.OHLCV_1H)
    with pytest.raises(DatabentoError, match=f"^{re.escape(str(path))}: 1 OHLCV record.* another interval than 1 minute"):
        read_databento([path], cfg)
    trade = dbn.TradeMsg(1, 1, _ns("2024-03-07 20:00"), 5_100_000_000_000, 1, dbn.Action.TRADE, dbn.Side.BID,
                         0, _ns("2024-03-07 20:00"))
    path = _write_dbn(tmp_path / "t.dbn.zst", [trade], _es_mapping(("ESH4", 1)), schema=dbn.Schema.TRADES)
    with pytest.raises(DatabentoError, match=f"^{re.escape(str(path))}: unsupported record type"):
        read_databento([path], cfg)


def test_root_of_raw_symbols():
    assert root_of("ESU4") == "ES" and root_of("NQZ24") == "NQ" and root_of("6EH5") == "6E"
    assert root_of("MESH6") == "MES" and root_of("NGQ4") == "NG" and root_of("ES.c.0") == "ES"
    for not_outright in ("ESU4-ESZ4", "ESU4 C5000", "ES.FUT", "ES", "ESU"):
        assert root_of(not_outright) is None


def test_cli_output_of_synthetic_contracts_passes_the_data_gate(tmp_path):
    ohlcv, defs = _two_contracts(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["import-databento", str(ohlcv), "--definitions", str(defs), "--out", str(out)],
                             obj={})
    assert res.exit_code == 0, res.output
    assert "contracts ESH4, ESM4 over 3 session(s) (3 with other contracts passed over)" in res.output
    gate = CliRunner().invoke(cli, ["check-data", str(out)], obj={})
    assert gate.exit_code == 0, gate.output


# --- the live client, through a gateway on 127.0.0.1 ------------------------------------------
#
# Databento's live gateway cannot be reached from here. These tests run the vendor's own
# client (``databento.Live``) against a local gateway that speaks its control protocol (greeting,
# CRAM challenge, authentication, subscription, session start) and then streams DBN records:
# the real files' bars, after the symbol mapping records a live session starts with.

import socketserver  # noqa: E402
import threading  # noqa: E402

from rooney_core.data.databento import LiveBarDecoder  # noqa: E402
from rooney_core.errors import RooneyError  # noqa: E402
from rooney_core.live.feeds import FeedProblem, MinuteBar, databento_live_feed, parse_feed_spec  # noqa: E402

API_KEY = "db-TESTKEYabcdefghijklmnopqrsXYZ12"


class _Gateway(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, meta: bytes, records: list, drop_after: int | None):
        self.meta, self.records, self.drop_after = meta, records, drop_after
        self.lines: list[str] = []
        self.sessions = 0
        super().__init__(("127.0.0.1", 0), _GatewaySession)


class _GatewaySession(socketserver.StreamRequestHandler):
    """One live session: the control protocol, then the records (from the subscription's
    ``start`` when it asks for a replay). The first session is cut (a TCP reset) after
    ``drop_after`` records when that is set."""

    def handle(self) -> None:
        import socket
        import struct

        from databento.common.cram import get_challenge_response

        srv: _Gateway = self.server  # type: ignore[assignment]
        srv.sessions += 1
        self.wfile.write(b"lsg_version=0.0.0-rooney-test\ncram=t3stChall3nge\n")
        auth = self.rfile.readline().decode()
        srv.lines.append(auth)
        fields = dict(t.partition("=")[::2] for t in auth.strip().split("|"))
        if fields.get("auth") != get_challenge_response("t3stChall3nge", API_KEY):
            self.wfile.write(b"success=0|error=Authentication failed.\n")
            return
        self.wfile.write(b"success=1|session_id=42\n")
        start = None
        while True:
            line = self.rfile.readline().decode()
            srv.lines.append(line)
            if not line or line.startswith("start_session"):
                break
            sub = dict(t.partition("=")[::2] for t in line.strip().split("|"))
            if sub.get("start"):
                start = int(sub["start"])
        records = [r for r in srv.records
                   if start is None or not isinstance(r, dbn.OHLCVMsg) or r.ts_event >= start]
        if srv.drop_after is not None and srv.sessions == 1:
            self.wfile.write(srv.meta + b"".join(bytes(r) for r in records[:srv.drop_after]))
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # a reset, not a clean end: close every handle on the socket now (the file objects
            # hold it open, and socketserver's own shutdown would otherwise send a FIN first)
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
            return
        self.wfile.write(srv.meta + b"".join(bytes(r) for r in records))
        self.wfile.flush()
        # a real gateway keeps streaming; this one ends the session once the client has had time
        # to read what it sent (closing at once races the client's start of iteration)
        import time

        time.sleep(0.3)


@pytest.fixture
def gateway(monkeypatch):
    servers: list[_Gateway] = []

    def start(records: list, symbols: list[str], drop_after: int | None = None) -> _Gateway:
        meta = dbn.Metadata(dataset="GLBX.MDP3", start=_ns("2024-07-01"), stype_in=dbn.SType.CONTINUOUS,
                            stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.OHLCV_1M, symbols=symbols,
                            partial=[], not_found=[], mappings=[])
        srv = _Gateway(meta.encode(), records, drop_after)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        monkeypatch.setenv("DATABENTO_API_KEY", API_KEY)
        monkeypatch.setenv("DATABENTO_GATEWAY", f"127.0.0.1:{srv.server_address[1]}")
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _mapping(iid: int, asked: str, contract: str, utc: str = "2024-07-01 23:00") -> dbn.SymbolMappingMsg:
    return dbn.SymbolMappingMsg(1, iid, _ns(utc), dbn.SType.CONTINUOUS, asked, dbn.SType.RAW_SYMBOL, contract,
                                _ns(utc), _ns("2024-07-03"))


def _heartbeat(utc: str) -> dbn.SystemMsg:
    return dbn.SystemMsg(_ns(utc), "Heartbeat")


def _as_tuples(items) -> list[tuple]:
    return [(b.symbol, pd.Timestamp(b.timestamp), b.open, b.high, b.low, b.close, b.volume) for b in items]


@real
def test_live_client_streams_the_real_files_bars_exactly_as_the_file_reader(cfg, gateway):
    """The vendor's client, a real TCP session: ES.v.0 -> ESU4 and NQ.v.0 -> NQU4, the real
    file's 60 bars with heartbeats among them; every bar equals the file reader's."""
    body = [r for r in _vendor_records(OHLCV_2024)[1:]]
    records = [_mapping(118, "ES.v.0", "ESU4"), _mapping(4358, "NQ.v.0", "NQU4"), _heartbeat("2024-07-01 23:39")]
    for i, r in enumerate(body):
        records.append(r)
        if i % 20 == 19:
            records.append(_heartbeat(str(pd.Timestamp(r.ts_event, tz="UTC").tz_localize(None))))
    srv = gateway(records, ["ES.v.0", "NQ.v.0"])
    got = list(databento_live_feed(cfg, ["ES", "NQ"]))
    assert not [x for x in got if isinstance(x, FeedProblem)]
    expected = [(s, t, o, h, lo, c, v) for s, t, o, h, lo, c, v in iter_dbn_minute_bars([OHLCV_2024], cfg)]
    assert len(expected) == 60
    assert sorted(_as_tuples(got)) == sorted(expected)
    assert _as_tuples(got[:2]) == [("ES", pd.Timestamp("2024-07-01 18:40"), *expected[0][2:]),
                                   ("NQ", pd.Timestamp("2024-07-01 18:40"), *expected[1][2:])]
    # what the client asked for: OHLCV-1m of the continuous front by volume, on GLBX.MDP3
    sent = "".join(srv.lines)
    assert "dataset=GLBX.MDP3" in sent
    sub = next(line for line in srv.lines if line.startswith("schema="))
    assert "schema=ohlcv-1m" in sub and "stype_in=continuous" in sub and "symbols=ES.v.0,NQ.v.0" in sub
    assert API_KEY not in sent  # CRAM: a hash and the key's last five characters (its bucket id)
    assert srv.sessions == 1


@real
def test_a_dropped_connection_resubscribes_from_the_last_bar_losing_and_repeating_nothing(cfg, gateway):
    """The gateway resets the connection after 25 bars (ES's 23:52 bar came, NQ's did not); the
    feed reconnects, asks for a replay from that minute, and delivers the 60 bars exactly once."""
    body = _vendor_records(OHLCV_2024)[1:]
    records = [_mapping(118, "ES.v.0", "ESU4"), _mapping(4358, "NQ.v.0", "NQU4"), *body]
    srv = gateway(records, ["ES.v.0", "NQ.v.0"], drop_after=27)
    waits: list[float] = []
    got = list(databento_live_feed(cfg, ["ES", "NQ"], sleep=waits.append))
    bars = [x for x in got if isinstance(x, MinuteBar)]
    problems = [x for x in got if isinstance(x, FeedProblem)]
    expected = list(iter_dbn_minute_bars([OHLCV_2024], cfg))
    assert sorted(_as_tuples(bars)) == sorted(expected)  # 60 bars, none twice
    assert srv.sessions == 2 and waits == [1.0]
    assert len(problems) == 1 and "connection lost" in problems[0].reason
    replay = [line for line in srv.lines if line.startswith("schema=")][1]
    assert f"start={_ns('2024-07-01 23:52')}" in replay  # the 25th bar's minute (ES, 23:52 UTC)


@real
def test_live_feed_keeps_only_the_asked_symbols_and_a_roll_never_mixes_contracts(cfg, gateway):
    """NQ is not asked for; ES rolls from ESU4 to ESZ4 mid-stream: a later ESU4 bar is a
    problem, never a bar of ES."""
    body = _vendor_records(OHLCV_2024)[1:]
    es = [r for r in body if r.instrument_id == 118]
    roll_at = es[10].ts_event
    late_old = dbn.OHLCVMsg(dbn.RType.OHLCV_1M, 1, 118, es[12].ts_event, es[12].open, es[12].high, es[12].low,
                            es[12].close, 5)
    new = [dbn.OHLCVMsg(dbn.RType.OHLCV_1M, 1, 999, r.ts_event, r.open + 25_000_000_000, r.high + 25_000_000_000,
                        r.low + 25_000_000_000, r.close + 25_000_000_000, r.volume) for r in es[10:]]
    records = [_mapping(118, "ES.v.0", "ESU4"), _mapping(4358, "NQ.v.0", "NQU4"),
               *[r for r in body if r.ts_event < roll_at],
               _mapping(999, "ES.v.0", "ESZ4", str(pd.Timestamp(roll_at, tz="UTC").tz_localize(None))),
               *new[:2], late_old, *new[2:]]
    gateway(records, ["ES.v.0"])
    got = list(databento_live_feed(cfg, ["ES"]))
    bars = [x for x in got if isinstance(x, MinuteBar)]
    problems = [x for x in got if isinstance(x, FeedProblem)]
    assert {b.symbol for b in bars} == {"ES"} and len(bars) == 30
    assert [b.close for b in bars[10:]] == [(r.close + 25_000_000_000) / 1e9 for r in es[10:]]
    assert len(problems) == 1 and "ESU4 after the subscription moved to ESZ4" in problems[0].reason


def test_live_gateway_error_and_bad_key_are_clear_errors_without_the_key(cfg, gateway, monkeypatch):
    srv = gateway([_mapping(118, "ES.v.0", "ESU4"), dbn.ErrorMsg(_ns("2024-07-01 23:40"), "Subscription limit")],
                  ["ES.v.0"])
    with pytest.raises(RooneyError, match="gateway reports an error: Subscription limit"):
        list(databento_live_feed(cfg, ["ES"]))
    monkeypatch.setenv("DATABENTO_API_KEY", API_KEY[:-1] + "Q")  # the gateway refuses its CRAM response
    with pytest.raises(RooneyError) as err:
        list(databento_live_feed(cfg, ["ES"]))
    assert "cannot subscribe" in str(err.value) and API_KEY[:-1] not in str(err.value)
    monkeypatch.delenv("DATABENTO_API_KEY")
    with pytest.raises(RooneyError, match="DATABENTO_API_KEY"):
        list(databento_live_feed(cfg, ["ES"]))
    assert srv.lines


def test_live_decoder_rules_on_single_records(cfg):
    """The decoder alone: unmapped ids, off-minute bars, undefined prices, other intervals and
    unknown roots are problems naming the instrument; times convert on both sides of DST."""
    d = LiveBarDecoder(cfg, ["ES"])
    assert d.decode(_bar(7, "2024-07-01 23:40", 5500, 5501, 5499, 5500.25, 3)).endswith(
        "a bar of an instrument id no symbol mapping named; skipped")
    assert d.decode(_mapping(7, "ES.v.0", "ESU4")) is None
    assert d.decode(_bar(7, "2024-07-01 23:40", 5500, 5501, 5499, 5500.25, 3)) == (
        "ES", np.datetime64("2024-07-01T18:40:00"), 5500.0, 5501.0, 5499.0, 5500.25, 3.0)
    assert d.decode(_bar(7, "2024-12-02 15:00", 6000, 6001, 5999, 6000.5, 1))[1] == np.datetime64("2024-12-02T09:00")
    off = dbn.OHLCVMsg(dbn.RType.OHLCV_1M, 1, 7, _ns("2024-07-01 23:40:30"), 1, 1, 1, 1, 1)
    assert "whole minute" in d.decode(off)
    undef = dbn.OHLCVMsg(dbn.RType.OHLCV_1M, 1, 7, _ns("2024-07-01 23:41"), 2**63 - 1, 1, 1, 1, 1)
    assert "undefined price" in d.decode(undef)
    hourly = dbn.OHLCVMsg(dbn.RType.OHLCV_1H, 1, 7, _ns("2024-07-01 23:00"), 1, 1, 1, 1, 1)
    assert "another interval" in d.decode(hourly)
    assert "names no instrument" in d.decode(_mapping(8, "ZZ.v.0", "ZZU4"))
    assert d.decode(_heartbeat("2024-07-01 23:42")) is None


def test_feed_spec_databento():
    assert parse_feed_spec("databento") == ("databento", "GLBX.MDP3", None)
    assert parse_feed_spec("databento:XNAS.ITCH") == ("databento", "XNAS.ITCH", None)
