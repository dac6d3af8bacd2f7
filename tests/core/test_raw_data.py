"""Raw CSV validation: each malformed-input class of R1 gets a specific error naming the
file, the line or timestamp, and the rule; allowed repairs are counted, never silent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders import GLOBEX
from raw_cases import CASES, GOOD_ROWS, HEADER

from rooney_core.config import Repairs
from rooney_core.data.bars import daily_bars, hourly_bars, session_gaps
from rooney_core.data.raw import read_raw_bars
from rooney_core.errors import DataValidationError


def write(tmp_path: Path, lines: list[str], name: str = "ES_bt.csv", raw: bytes | None = None) -> Path:
    p = tmp_path / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text("\n".join(lines) + "\n")
    return p


def errors_of(path: Path, repairs: Repairs | None = None) -> DataValidationError:
    with pytest.raises(DataValidationError) as exc:
        read_raw_bars(path, GLOBEX, repairs)
    return exc.value


def test_clean_file_reads(tmp_path):
    raw = read_raw_bars(write(tmp_path, [HEADER, *GOOD_ROWS]), GLOBEX)
    assert len(raw) == 4 and raw.interval_minutes == 1 and raw.repairs == {}
    assert raw.column("open")[0] == 6049.25 and raw.column("volume").sum() == 1873 + 642 + 300 + 900


@pytest.mark.parametrize("name,lines,rule,line,text", CASES, ids=[c[0] for c in CASES])
def test_each_malformed_input_class_names_file_line_and_rule(tmp_path, name, lines, rule, line, text):
    path = write(tmp_path, lines) if lines else write(tmp_path, [], raw=b"")
    err = errors_of(path)
    message = str(err)
    assert str(path) in message
    assert f"[{rule}]" in message, message
    assert f"line {line}" in message, message
    assert text in message, message
    assert any(p.rule == rule and p.line == line for p in err.problems)


def test_bom_is_an_error_by_default_and_a_counted_repair_if_configured(tmp_path):
    body = ("\n".join([HEADER, *GOOD_ROWS]) + "\n").encode()
    path = write(tmp_path, [], raw=b"\xef\xbb\xbf" + body)
    err = errors_of(path)
    assert "[bom]" in str(err) and "line 1" in str(err)
    raw = read_raw_bars(path, GLOBEX, Repairs(bom="strip"))
    assert len(raw) == 4 and raw.repairs == {"bom_stripped": 1}


def test_every_problem_is_reported_not_only_the_first(tmp_path):
    lines = [HEADER, GOOD_ROWS[0],
             "2024-12-02 09:01:00,6050.00,abc,6049.00,6049.50,642",
             "2024-12-02 09:02:00,6050.00,6050.25,6049.00,6049.50",
             "2024-12-02 09:03:00Z,6050.00,6050.25,6049.00,6049.50,1"]
    err = errors_of(write(tmp_path, lines))
    assert {p.rule for p in err.problems} == {"bad-number", "field-count", "timestamp-zone"}
    assert {p.line for p in err.problems} == {3, 4, 5}


def test_blank_lines_and_stray_headers_are_counted_repairs_with_true_line_numbers(tmp_path):
    lines = [HEADER, GOOD_ROWS[0], "", HEADER, GOOD_ROWS[1],
             "2024-12-02 09:02:00,6049.50,6048.00,6049.00,6049.75,300"]  # line 6: High < Low
    err = errors_of(write(tmp_path, lines))
    assert [(p.rule, p.line) for p in err.problems] == [("high-below-low", 6)]
    raw = read_raw_bars(write(tmp_path, lines[:5]), GLOBEX)
    assert raw.repairs == {"blank_lines_skipped": 1, "stray_headers_dropped": 1}
    strict = Repairs(blank_lines="error", stray_headers="error")
    err = errors_of(write(tmp_path, lines[:5]), strict)
    assert [(p.rule, p.line) for p in err.problems] == [("blank-line", 3), ("stray-header", 4)]


def test_exact_duplicates_and_order_are_repairable_by_config(tmp_path):
    lines = [HEADER, GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[1], GOOD_ROWS[1], GOOD_ROWS[3]]
    raw = read_raw_bars(write(tmp_path, lines), GLOBEX, Repairs(unsorted="sort", duplicates="drop_exact"))
    assert len(raw) == 4
    assert raw.repairs == {"rows_reordered": 1, "exact_duplicates_dropped": 1}
    assert np.all(np.diff(raw.timestamp.astype(np.int64)) > 0)


def test_out_of_session_bars_are_dropped_and_counted_or_rejected(tmp_path):
    lines = [HEADER, GOOD_ROWS[0],
             "2024-12-02 16:30:00,6050.00,6050.25,6049.00,6049.50,642",  # maintenance break
             "2024-12-07 10:00:00,6050.00,6050.25,6049.00,6049.50,642"]  # Saturday
    raw = read_raw_bars(write(tmp_path, lines), GLOBEX)
    assert len(raw) == 1 and raw.repairs == {"out_of_session_dropped": 2}
    err = errors_of(write(tmp_path, lines), Repairs(out_of_session="error"))
    assert [(p.rule, p.line) for p in err.problems] == [("out-of-session", 3), ("out-of-session", 4)]


def test_interval_must_divide_an_hour(tmp_path):
    ts = np.datetime64("2024-12-02T09:00") + np.arange(0, 7 * 7, 7).astype("timedelta64[m]")
    rows = [f"{str(t).replace('T', ' ')}:00,10,11,9,10,1" for t in ts]
    err = errors_of(write(tmp_path, [HEADER, *rows]))
    assert "[interval]" in str(err) and "does not divide an hour" in str(err)


def test_five_minute_bars_and_openinterest_column(tmp_path):
    ts = np.datetime64("2024-12-02T09:00") + np.arange(0, 120, 5).astype("timedelta64[m]")
    rows = [f"{str(t).replace('T', ' ')}:00,10,11,9,10,1,777" for t in ts]
    raw = read_raw_bars(write(tmp_path, [HEADER + ",openinterest", *rows]), GLOBEX)
    assert raw.interval_minutes == 5
    hourly = hourly_bars(raw)
    assert list(hourly.index.hour) == [9, 10] and list(hourly["volume"]) == [12.0, 12.0]


def test_hourly_and_daily_bars_follow_the_globex_session(tmp_path):
    # Sunday 17:00 .. Monday 15:59 is Monday's session; Monday 17:00 starts Tuesday's.
    minutes = np.r_[
        np.datetime64("2024-12-01T17:00") + np.arange(0, 23 * 60).astype("timedelta64[m]"),
        np.datetime64("2024-12-02T17:00") + np.arange(0, 90).astype("timedelta64[m]"),
    ]
    rng = np.random.default_rng(0)
    close = 6000 + np.cumsum(rng.integers(-2, 3, len(minutes))) * 0.25
    open_ = np.r_[6000.0, close[:-1]]
    hi = np.maximum(open_, close) + 0.25
    lo = np.minimum(open_, close) - 0.25
    rows = [f"{str(t).replace('T', ' ')}:00,{o},{h},{lw},{c},{i % 7}"
            for i, (t, o, h, lw, c) in enumerate(zip(minutes, open_, hi, lo, close, strict=True))]
    raw = read_raw_bars(write(tmp_path, [HEADER, *rows]), GLOBEX)
    hourly = hourly_bars(raw)
    assert len(hourly) == 23 + 2
    first = hourly.iloc[0]
    assert hourly.index[0] == np.datetime64("2024-12-01T17:00")
    assert first["open"] == open_[0] and first["close"] == close[59]
    assert first["high"] == hi[:60].max() and first["low"] == lo[:60].min()
    daily = daily_bars(hourly, GLOBEX)
    assert [str(d.date()) for d in daily.index] == ["2024-12-02", "2024-12-03"]
    monday = daily.iloc[0]
    n = 23 * 60
    assert monday["open"] == open_[0] and monday["close"] == close[n - 1]
    assert monday["high"] == hi[:n].max() and monday["volume"] == sum(i % 7 for i in range(n))
    assert session_gaps(hourly, GLOBEX).empty


def test_session_gaps_are_reported(tmp_path):
    rows = [f"2024-12-02 0{h}:00:00,10,11,9,10,1" for h in (1, 2, 5)]
    hourly = hourly_bars(read_raw_bars(write(tmp_path, [HEADER, *rows]), GLOBEX))
    gaps = session_gaps(hourly, GLOBEX)
    assert list(gaps["missing_hours"]) == [2]


def test_chunked_fast_path_equals_whole_array_path(tmp_path, monkeypatch):
    """Hours split across parser chunks are merged; the result equals one-chunk parsing."""
    import rooney_core.data.raw as raw_mod

    minutes = np.datetime64("2024-12-02T00:00") + np.arange(0, 15 * 60).astype("timedelta64[m]")
    rng = np.random.default_rng(1)
    close = 6000 + np.cumsum(rng.integers(-3, 4, len(minutes))) * 0.25
    open_ = np.r_[6000.0, close[:-1]]
    rows = [f"{str(t).replace('T', ' ')}:00,{o},{max(o, c) + 0.5},{min(o, c) - 0.25},{c},{i % 11}"
            for i, (t, o, c) in enumerate(zip(minutes, open_, close, strict=True))]
    path = write(tmp_path, [HEADER, *rows])
    whole = read_raw_bars(path, GLOBEX)
    monkeypatch.setattr(raw_mod, "_BLOCK", 4096)  # many small chunks
    chunked = read_raw_bars(path, GLOBEX)
    assert chunked.table.column(0).num_chunks > 5
    assert chunked.table.equals(whole.table.combine_chunks()) or chunked.table.to_pandas().equals(
        whole.table.to_pandas())
    pd_h = hourly_bars(chunked)
    assert pd_h.equals(hourly_bars(whole)) and len(pd_h) == 15
    assert list(pd_h["volume"]) == [sum(i % 11 for i in range(h * 60, h * 60 + 60)) for h in range(15)]


@pytest.mark.parametrize("stamp", ["2024-12-02", "2024-12-02T09:01:00", "2024-12-02 09:01"])
def test_timestamp_format_is_strict_on_the_fast_path_too(tmp_path, stamp):
    """A truncated timestamp is an error whether or not anything else in the file is dirty."""
    lines = [HEADER, GOOD_ROWS[0], f"{stamp},6050.00,6050.25,6049.00,6049.50,642"]
    err = errors_of(write(tmp_path, lines))
    assert [(p.rule, p.line) for p in err.problems] == [("timestamp-format", 3)]


def test_interval_of_a_tiny_clean_file(tmp_path):
    rows = ["2024-12-02 09:00:00,10,11,9,10,1", "2024-12-02 09:30:00,10,11,9,10,1"]
    assert read_raw_bars(write(tmp_path, [HEADER, *rows]), GLOBEX).interval_minutes == 30
