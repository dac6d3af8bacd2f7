"""The data gate under random corruption (issue 7, R1): whatever happens to the bytes of a small
valid raw file, reading it either raises DataValidationError or returns exactly what the bytes
say, as read by a plain-Python reference parser written here from the format in STRATEGY.md.
The gate never silently changes, drops or invents a bar, never fails any other way, and its
fast path and its diagnostic path decide alike."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from builders import GLOBEX
from hypothesis import event, given, settings
from hypothesis import strategies as st

import rooney_core.data.raw as raw_mod
from rooney_core.config import Repairs
from rooney_core.data.raw import MAX_YEAR, MIN_YEAR, RawBars, read_raw_bars
from rooney_core.errors import DataValidationError

ROWS = [
    "2024-12-02 09:00:00,6049.25,6051.50,6048.75,6050.00,1873",
    "2024-12-02 09:01:00,6050.00,6050.25,6049.00,6049.50,642",
    "2024-12-02 09:02:00,6049.50,6050.00,6049.00,6049.75,0",
    "2024-12-02 09:03:00,6049.75,6052,6049.5,6051.00,900",
    "2024-12-02 09:04:00,6051.00,6051.00,6050.25,6050.5,17",
]
HEADER = "datetime,Open,High,Low,Close,volume"
VALID = [
    ("\n".join([HEADER, *ROWS]) + "\n").encode(),
    ("\r\n".join([HEADER + ",openinterest", *(f"{r},{1000 + i}" for i, r in enumerate(ROWS))]) + "\r\n").encode(),
]
# Every repair off: anything unusual is an error, so an accepted file must be read verbatim.
STRICT = Repairs(bom="error", blank_lines="error", stray_headers="error", unsorted="error",
                 duplicates="error", out_of_session="error", zero_volume="keep")
LENIENT = Repairs(bom="strip", blank_lines="skip", stray_headers="drop", unsorted="sort",
                  duplicates="drop_exact", out_of_session="drop", zero_volume="drop")


# --- the reference: what the bytes say, in plain Python ----------------------------------------

_REF_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}", re.ASCII)
_REF_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def reference(data: bytes) -> list[tuple] | None:
    """(epoch seconds, open, high, low, close, volume) per line, or None if the file is not
    strictly valid text of the format. Deliberately independent of the gate: no Arrow, no
    numpy; fields are split on commas (the format has no quoting, and the csv module refuses
    NUL bytes even in the ignored openinterest column)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return None
    lines = data.splitlines()  # a line ends at \n, \r\n or \r
    if len(lines) < 2:
        return None
    try:
        names = [n.strip(" \t").lower() for n in lines[0].decode("utf-8").split(",")]
    except UnicodeDecodeError:
        return None
    columns = [c.lower() for c in HEADER.split(",")]
    if names not in (columns, [*columns, "openinterest"]):
        return None
    rows = []
    for line in lines[1:]:
        fields = line.split(b",")
        if len(fields) != len(names):
            return None
        row = _reference_row(fields[:6])
        if row is None:
            return None
        rows.append(row)
    return rows


def _reference_row(fields: list[bytes]) -> tuple | None:
    try:
        text = [f.decode("ascii") for f in fields]
    except UnicodeDecodeError:
        return None
    if not _REF_TS.fullmatch(text[0]):
        return None
    try:
        when = datetime.strptime(text[0], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        return None
    numbers = []
    for t in text[1:]:
        t = t.strip(" \t")  # spaces or tabs around a number are allowed, nothing else
        if not _REF_NUMBER.fullmatch(t):
            return None
        x = float(t)
        if x != x or x in (float("inf"), float("-inf")):
            return None
        numbers.append(x)
    seconds = int((when - datetime(1970, 1, 1)).total_seconds())
    return (seconds, *numbers)


def rows_of(bars: RawBars) -> list[tuple]:
    ts = bars.table.column("timestamp").to_numpy().astype("datetime64[s]").astype(np.int64)
    cols = [bars.table.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume")]
    return [(int(t), *(float(c[i]) for c in cols)) for i, t in enumerate(ts)]


# --- corruption --------------------------------------------------------------------------------

_BYTE = st.one_of(st.sampled_from(list(b"0123456789,.-+: \t\n\r\x00eEnaifT\"\xff\xc3\xa9\x80")),
                  st.integers(0, 255))
_OPS = ["flip", "replace", "insert", "delete", "truncate", "nul", "non-utf8", "digit", "digit", "digit"]


@st.composite
def corrupted(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(_OPS))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "replace" and data:
            data[i] = draw(_BYTE)
        elif op == "insert":
            data[i:i] = bytes(draw(st.lists(_BYTE, min_size=1, max_size=3)))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[i:]
        elif op == "nul":
            data[i:i] = b"\x00"
        elif op == "non-utf8":
            data[i:i] = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"]))
        elif op == "digit":  # another digit: most often a still-valid file that says something else
            digits = [j for j, b in enumerate(data) if 48 <= b <= 57]
            if digits:
                data[draw(st.sampled_from(digits))] = draw(st.integers(48, 57))
    return bytes(data)


# --- the gate ----------------------------------------------------------------------------------

@contextmanager
def diagnostic_path_only() -> Iterator[None]:
    """Make the fast parse of the file fail, so every line goes through the line checks."""
    real = raw_mod._parse_fast

    def parse(source, names):
        if isinstance(source, str):
            raise pa.ArrowInvalid("forced onto the diagnostic path")
        return real(source, names)

    with mock.patch.object(raw_mod, "_parse_fast", parse):
        yield


def gate(path: Path, repairs: Repairs) -> RawBars | DataValidationError:
    """The gate's answer; any exception other than DataValidationError fails the test."""
    try:
        return read_raw_bars(path, GLOBEX, repairs)
    except DataValidationError as err:
        for p in err.problems:
            assert p.rule != "unparseable", f"the line checks and the parser disagree: {p}"
            assert len(str(p)) < 400 and str(p).isprintable(), repr(str(p))
        return err


def outcome(result: RawBars | DataValidationError) -> tuple:
    if isinstance(result, DataValidationError):
        return "error", sorted({(p.rule, p.line or 0) for p in result.problems})
    return "ok", rows_of(result), result.interval_minutes, result.repairs


def check_paths_agree(path: Path, repairs: Repairs) -> RawBars | DataValidationError:
    result = gate(path, repairs)
    with diagnostic_path_only():
        assert outcome(gate(path, repairs)) == outcome(result), "fast and diagnostic paths differ"
    return result


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corruption") / "ES_bt.csv"


def test_the_valid_files_read_as_the_reference_says(scratch):
    for data in VALID:
        scratch.write_bytes(data)
        bars = check_paths_agree(scratch, STRICT)
        assert isinstance(bars, RawBars) and rows_of(bars) == reference(data) and len(bars) == 5


@settings(max_examples=400, deadline=timedelta(seconds=2))
@given(data=corrupted())
def test_corruption_is_an_error_or_exactly_what_the_bytes_say(scratch, data):
    scratch.write_bytes(data)
    result = check_paths_agree(scratch, STRICT)
    if isinstance(result, DataValidationError):
        event("rejected")
        return
    expected = reference(data)
    assert expected is not None, f"the gate accepted a file that is not the format: {data!r}"
    assert rows_of(result) == expected, f"the gate read other values than the bytes say: {data!r}"
    event("accepted, same bars" if data in VALID else "accepted, other values")


@settings(max_examples=200, deadline=timedelta(seconds=2))
@given(data=corrupted())
def test_corruption_with_every_repair_on_never_crashes(scratch, data):
    scratch.write_bytes(data)
    result = check_paths_agree(scratch, LENIENT)
    if isinstance(result, DataValidationError):
        return
    ts = result.table.column("timestamp").to_numpy().astype("datetime64[s]").astype(np.int64)
    assert len(ts) and (np.diff(ts) > 0).all() and (ts % 60 == 0).all()
    values = np.column_stack([result.table.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume")])
    assert np.isfinite(values).all() and (values[:, :4] > 0).all() and (values[:, 4] >= 0).all()
    lines = {r[0]: r for r in (reference_line(line) for line in data.splitlines()) if r is not None}
    for row in rows_of(result):  # every bar kept is one line of the file, read verbatim
        assert lines.get(row[0]) == row


def reference_line(line: bytes) -> tuple | None:
    fields = line.removeprefix(b"\xef\xbb\xbf").split(b",")
    return _reference_row(fields[:6]) if len(fields) in (6, 7) else None


# --- the two paths on single fields ------------------------------------------------------------

_NUMBER_CHARS = "0123456789.eE+-infatyINFATY() \t_x\u0660\u00a0"
_TS_CHARS = "0123456789-: T+Z"


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(text=st.text(_NUMBER_CHARS, min_size=1, max_size=8))
def test_a_number_field_is_read_alike_on_both_paths(scratch, text):
    row = f"2024-12-02 09:00:00,6049.25,6051.50,6048.75,6050.00,{text}"
    scratch.write_bytes(f"{HEADER}\n{row}\n".encode())
    check_paths_agree(scratch, STRICT)


@st.composite
def timestamp_texts(draw) -> str:
    ts = list(draw(st.sampled_from(["2024-12-02 09:00:00", "2024-02-29 09:00:00", "2023-12-31 23:59:00"])))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(ts) - 1))
        op = draw(st.sampled_from(["set", "set", "insert", "delete"]))
        if op == "set":
            ts[i] = draw(st.sampled_from(_TS_CHARS))
        elif op == "insert":
            ts.insert(i, draw(st.sampled_from(_TS_CHARS)))
        elif len(ts) > 1:
            del ts[i]
    return "".join(ts)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(text=timestamp_texts())
def test_a_timestamp_field_is_read_alike_on_both_paths(scratch, text):
    scratch.write_bytes(f"{HEADER}\n{text},6049.25,6051.50,6048.75,6050.00,1\n".encode())
    result = check_paths_agree(scratch, Repairs(out_of_session="drop"))
    if isinstance(result, RawBars) or result.problems[0].rule in ("out-of-session", "empty-file"):
        assert _reference_row(text.encode().split(b",") + [b"1"] * 5) is not None, text
