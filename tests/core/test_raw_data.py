"""Raw CSV validation: each malformed-input class of R1 gets a specific error naming the
file, the line or timestamp, and the rule; allowed repairs are counted, never silent."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import signal
import tempfile
from contextlib import contextmanager
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


def col(raw, name: str) -> np.ndarray:
    return raw.table.column(name).to_numpy()


def errors_of(path: Path, repairs: Repairs | None = None) -> DataValidationError:
    with pytest.raises(DataValidationError) as exc:
        read_raw_bars(path, GLOBEX, repairs)
    return exc.value


def test_clean_file_reads(tmp_path):
    raw = read_raw_bars(write(tmp_path, [HEADER, *GOOD_ROWS]), GLOBEX)
    assert len(raw) == 4 and raw.interval_minutes == 1 and raw.repairs == {}
    assert col(raw, "open")[0] == 6049.25 and col(raw, "volume").sum() == 1873 + 642 + 300 + 900


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


def test_one_pass_names_a_bom_bad_lines_value_rules_and_session_rules_together(tmp_path):
    """check-data promises every problem: a BOM, a malformed timestamp and a bad number do
    not stop the value and session rules from running on the other rows."""
    lines = [HEADER, GOOD_ROWS[0],
             "2024-12-02T09:01:00,6050.00,6050.25,6049.00,6049.50,642",  # line 3: format
             "2024-12-02 09:02:00,6049.50,6048.00,6049.00,6049.75,300",  # line 4: High < Low
             "2024-12-02 09:03:00,6049.75,6052.00,6049.50,x,900",  # line 5: bad number
             "2024-12-02 16:30:00,6050.00,6050.25,6049.00,6049.50,642"]  # line 6: maintenance break
    body = ("\n".join(lines) + "\n").encode()
    strict = Repairs(out_of_session="error")
    err = errors_of(write(tmp_path, [], raw=b"\xef\xbb\xbf" + body), strict)
    assert [(p.rule, p.line) for p in err.problems] == [
        ("bom", 1), ("timestamp-format", 3), ("bad-number", 5), ("high-below-low", 4), ("out-of-session", 6)]
    # the same file without the BOM: the same problems but the first
    err = errors_of(write(tmp_path, lines), strict)
    assert [p.rule for p in err.problems] == ["timestamp-format", "bad-number", "high-below-low", "out-of-session"]


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
    assert np.all(np.diff(col(raw, "timestamp").astype(np.int64)) > 0)


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


# --- issue 7, section 2: dates and numbers are what they say ---------------------------------

FEB_ROWS = ["2021-02-26 09:00:00,10,11,9,10,1", "2021-02-26 09:01:00,10,11,9,10,1"]
BROKEN = "not,a,bar"  # a second, unrelated problem: forces the diagnostic (line-by-line) path


def problems_of(path: Path, **kwargs) -> set[tuple[str, int | None]]:
    with pytest.raises(DataValidationError) as exc:
        read_raw_bars(path, GLOBEX, **kwargs)
    assert all(p.rule != "unparseable" for p in exc.value.problems), str(exc.value)
    return {(p.rule, p.line) for p in exc.value.problems}


@pytest.mark.parametrize("day", ["2021-02-29", "2021-02-30", "2021-02-31", "2021-04-31"])
@pytest.mark.parametrize("path_taken", ["fast", "diagnostic"])
def test_impossible_dates_are_errors_not_moved_into_the_next_month(tmp_path, day, path_taken):
    lines = [HEADER, *FEB_ROWS, f"{day} 10:00:00,10,11,9,10,1"]
    if path_taken == "diagnostic":
        lines.append(BROKEN)
    found = problems_of(write(tmp_path, lines))
    assert ("impossible-timestamp", 4) in found
    assert found == {("impossible-timestamp", 4)} | ({("field-count", 5)} if path_taken == "diagnostic" else set())
    assert "day is out of range for month" in str(errors_of(write(tmp_path, lines)))


@pytest.mark.parametrize("path_taken", ["fast", "diagnostic"])
def test_far_future_year_is_rejected_with_its_line(tmp_path, path_taken):
    """2321 overflowed datetime64[ns] downstream and came back as an hourly bar dated 1736."""
    far = "2321-03-02 10:00:00,6050.00,6050.25,6049.00,6049.50,642"
    # a blank line (skipped by default) sends the file down the diagnostic path
    lines = [HEADER, *GOOD_ROWS, far] if path_taken == "fast" else [HEADER, *GOOD_ROWS, "", far]
    err = errors_of(write(tmp_path, lines))
    assert [(p.rule, p.line) for p in err.problems] == [("timestamp-range", len(lines))]
    assert "timestamp 2321-03-02 10:00:00 is outside the accepted years 1970-2100" in str(err)


def test_timestamp_range_is_configurable(tmp_path):
    path = write(tmp_path, [HEADER, *GOOD_ROWS])
    assert len(read_raw_bars(path, GLOBEX, min_year=2024, max_year=2024)) == 4
    assert problems_of(path, max_year=2023) == {("timestamp-range", n) for n in (2, 3, 4, 5)}
    assert problems_of(path, min_year=2025, max_year=2030) == {("timestamp-range", n) for n in (2, 3, 4, 5)}
    with pytest.raises(ValueError, match="1678"):  # beyond datetime64[ns]: would wrap around downstream
        read_raw_bars(path, GLOBEX, max_year=2300)


ROW_TAIL = ",6050.00,6050.25,6049.00,6049.50,642"
# (what, line 3 of the file, rule expected on line 3)
BAD_TEXT = [
    ("space after the timestamp", "2024-12-02 09:01:00 " + ROW_TAIL, "timestamp-format"),
    ("space before the timestamp", " 2024-12-02 09:01:00" + ROW_TAIL, "timestamp-format"),
    ("single-digit day", "2024-12-2 09:01:00" + ROW_TAIL, "timestamp-format"),
    ("hour 24", "2024-12-02 24:00:00" + ROW_TAIL, "impossible-timestamp"),
    ("minute 60", "2024-12-02 09:60:00" + ROW_TAIL, "impossible-timestamp"),
    ("second 60", "2024-12-02 09:01:60" + ROW_TAIL, "impossible-timestamp"),
    ("underscore in a number", "2024-12-02 09:01:00,6_050.00,6050.25,6049.00,6049.50,642", "bad-number"),
    ("Arabic-Indic digits", "2024-12-02 09:01:00,6050.00,6050.25,6049.00,6049.50,\u0666\u0664\u0662", "bad-number"),
    ("full-width digits", "2024-12-02 09:01:00,\uff16\uff10\uff15\uff10,6050.25,6049.00,6049.50,642", "bad-number"),
    ("no-break space after a number", "2024-12-02 09:01:00,6050.00\u00a0,6050.25,6049.00,6049.50,642", "bad-number"),
    ("quoted number", '2024-12-02 09:01:00,"6050.00",6050.25,6049.00,6049.50,642', "bad-number"),
]


@pytest.mark.parametrize("what,line,rule", BAD_TEXT, ids=[b[0] for b in BAD_TEXT])
@pytest.mark.parametrize("path_taken", ["fast", "diagnostic"])
def test_parse_errors_name_the_line_and_the_rule(tmp_path, what, line, rule, path_taken):
    lines = [HEADER, GOOD_ROWS[0], line, GOOD_ROWS[3]]
    if path_taken == "diagnostic":
        lines.append(BROKEN)
    found = problems_of(write(tmp_path, lines))
    assert found == {(rule, 3)} | ({("field-count", 5)} if path_taken == "diagnostic" else set())


def test_spaces_and_tabs_around_a_number_are_the_number_on_both_paths(tmp_path):
    padded = "2024-12-02 09:01:00, 6050.00,6050.25\t,6049.00 , 6049.50, 642"
    raw = read_raw_bars(write(tmp_path, [HEADER, GOOD_ROWS[0], padded]), GLOBEX)
    assert list(col(raw, "open")) == [6049.25, 6050.0] and col(raw, "volume")[1] == 642
    # the same line on the diagnostic path (a blank line sends the file there) reads the same
    fixed = read_raw_bars(write(tmp_path, [HEADER, GOOD_ROWS[0], "", padded]), GLOBEX)
    assert fixed.repairs == {"blank_lines_skipped": 1} and fixed.table.equals(raw.table)


def test_a_parser_disagreement_still_names_the_line(tmp_path, monkeypatch):
    """If the line checks ever accept what the parser rejects, the error still names the line."""
    import re

    import rooney_core.data.raw as raw_mod

    monkeypatch.setattr(raw_mod, "_NUMBER_RE", re.compile(r".+"))  # a deliberately loose check
    lines = [HEADER, *GOOD_ROWS[:2], "2024-12-02 09:02:00,6049.50,1_0,6049.00,6049.75,300", GOOD_ROWS[3], ""]
    assert problems_of_any(write(tmp_path, lines)) == {("unparseable", 4)}


def problems_of_any(path: Path) -> set[tuple[str, int | None]]:
    return {(p.rule, p.line) for p in errors_of(path).problems}


# --- files that are not plain readable CSV text ----------------------------------------------

def good_bytes() -> bytes:
    return ("\n".join([HEADER, *GOOD_ROWS]) + "\n").encode()


def assert_short_and_printable(err: DataValidationError) -> None:
    for p in err.problems:
        assert len(str(p)) < 400 and str(p).isprintable(), repr(str(p))


def test_gzipped_file_is_named_as_compressed_without_dumping_binary(tmp_path):
    err = errors_of(write(tmp_path, [], raw=gzip.compress(good_bytes() * 200)))
    assert [p.rule for p in err.problems] == ["compressed"] and "gzip" in str(err)
    assert len(str(err)) < 300
    assert_short_and_printable(err)


def test_binary_garbage_never_reaches_a_message(tmp_path):
    garbage = random.Random(7).randbytes(12_000)
    one_line = garbage.replace(b"\n", b"").replace(b"\r", b"")
    for raw in (garbage, one_line, good_bytes() + garbage, HEADER.encode() + b"\n" + one_line):
        assert_short_and_printable(errors_of(write(tmp_path, [], raw=raw)))


def test_directory_is_not_reported_as_missing(tmp_path):
    (tmp_path / "ES_bt.csv").mkdir()
    err = errors_of(tmp_path / "ES_bt.csv")
    assert [p.rule for p in err.problems] == ["not-a-file"] and "directory" in str(err)


def test_fifo_is_named_and_never_opened(tmp_path):
    fifo = tmp_path / "ES_bt.csv"
    os.mkfifo(fifo)
    with no_hang(5):  # opening a FIFO blocks until a writer comes: the type is checked first
        err = errors_of(fifo)
    assert [p.rule for p in err.problems] == ["not-a-file"] and "FIFO" in str(err)


def test_missing_file(tmp_path):
    err = errors_of(tmp_path / "ES_bt.csv")
    assert [p.rule for p in err.problems] == ["missing-file"]


@contextmanager
def no_hang(seconds: int):
    def boom(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def deny(monkeypatch, path: Path) -> None:
    """Make our reader's open() of ``path`` fail as a file without read permission would
    (the tests run as root, for whom permission bits do not stop a read)."""
    import builtins

    import rooney_core.data.raw as raw_mod

    def guarded_open(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(raw_mod, "open", guarded_open, raising=False)


def test_unreadable_file_is_one_error(tmp_path, monkeypatch):
    path = write(tmp_path, [HEADER, *GOOD_ROWS])
    deny(monkeypatch, path)
    err = errors_of(path)
    assert [(p.rule, p.line) for p in err.problems] == [("unreadable", None)]
    assert "Permission denied" in str(err)


def test_read_error_after_the_header_is_one_error(tmp_path, monkeypatch):
    import rooney_core.data.raw as raw_mod

    def failing_read(*_args, **_kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(raw_mod, "_read_csv", failing_read)
    err = errors_of(write(tmp_path, [HEADER, *GOOD_ROWS]))
    assert [p.rule for p in err.problems] == ["unreadable"] and "Input/output error" in str(err)


def test_check_data_gives_one_error_per_bad_file_and_checks_the_others(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rooney_pipeline.cli import cli

    (tmp_path / "ES_bt.csv").write_bytes(good_bytes())
    (tmp_path / "NQ_bt.csv").mkdir()
    os.mkfifo(tmp_path / "RTY_bt.csv")
    (tmp_path / "YM_bt.csv").write_bytes(gzip.compress(good_bytes()))
    (tmp_path / "GC_bt.csv").write_bytes(good_bytes())
    deny(monkeypatch, tmp_path / "GC_bt.csv")
    (tmp_path / "SI_bt.csv").write_bytes(good_bytes().replace(b"2024-12-02 09:03:00", b"2321-03-02 10:00:00"))
    with no_hang(30):
        res = CliRunner().invoke(cli, ["check-data", str(tmp_path)], obj={})
    assert res.exit_code == 1, res.output
    assert "ES: ok" in res.stdout
    err_lines = res.stderr.splitlines()
    for sym, rule in (("NQ", "not-a-file"), ("RTY", "not-a-file"), ("YM", "compressed"), ("GC", "unreadable"),
                      ("SI", "timestamp-range")):
        mine = [ln for ln in err_lines if f"{sym}_bt.csv" in ln]
        assert len(mine) == 1 and f"[{rule}]" in mine[0], res.stderr
    assert "SI_bt.csv: line 5" in res.stderr
    assert "5 of 6 file(s) failed validation" in res.stderr
    assert "Traceback" not in res.output


def test_really_unreadable_file(tmp_path_factory):
    """The same with real permission bits: as root, drop the effective uid for the read."""
    if os.geteuid() == 0 and not hasattr(os, "seteuid"):
        pytest.skip("cannot drop privileges here")
    base = Path(tempfile.mkdtemp(prefix="rooney-unreadable-"))  # traversable by 'nobody'
    try:
        base.chmod(0o755)
        good = base / "ES_bt.csv"
        good.write_bytes(good_bytes())
        bad = base / "NQ_bt.csv"
        bad.write_bytes(good_bytes())
        bad.chmod(0)
        read_raw_bars(good, GLOBEX)  # import everything lazily imported before dropping privileges
        with unprivileged():
            ok = read_raw_bars(good, GLOBEX)
            with pytest.raises(DataValidationError) as exc:
                read_raw_bars(bad, GLOBEX)
        assert len(ok) == 4
        assert [p.rule for p in exc.value.problems] == ["unreadable"] and "Permission denied" in str(exc.value)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def unprivileged():
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_a_header_longer_than_the_first_read_is_read_whole(tmp_path):
    """bench/adversarial.py: a valid file whose header line passed 4 KB was refused with
    'column volume is missing'."""
    path = tmp_path / "ES_bt.csv"
    long_header = "datetime,Open,High,Low,Close," + " " * 5000 + "volume"
    path.write_text(long_header + "\n" + "\n".join(GOOD_ROWS) + "\n")
    assert len(read_raw_bars(path, GLOBEX)) == len(GOOD_ROWS)
