"""Read and validate a raw ``<SYMBOL>_bt.csv`` file of minute (or n-minute) bars.

Format (STRATEGY.md): header ``datetime,Open,High,Low,Close,volume`` and an optional
``openinterest`` column (ignored); naive exchange-local timestamps ``YYYY-MM-DD HH:MM:SS``
labelling each bar by its start; any bar interval that divides an hour. A value is what it
says or an error: a timestamp is exactly that text, a real date and time (no 2021-02-30, no
24:00:00) within the accepted years; a number is ASCII digits with an optional sign, point
and exponent (spaces or tabs around it are allowed); fields are never quoted.

Two paths share one set of rules:

* the fast path parses the whole file with Arrow's multi-threaded CSV reader and checks
  the rules on arrays; a file line is the row index + 2;
* the diagnostic path runs only when the fast path cannot parse the file (a blank line, a
  stray header, a bad number, a zoned timestamp ...). It scans the lines in Python to name
  every bad line, applies the repairs the config allows (counted, never silent), and hands
  the clean lines back to the fast parser with their original line numbers. Its line checks
  accept exactly what the fast parser accepts (tests/core/test_raw_corruption.py checks it).

Every broken rule becomes a :class:`DataProblem` naming file, line or timestamp and rule;
any problem raises :class:`DataValidationError` and nothing is returned, so callers write
nothing downstream.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rooney_core.config import Repairs
from rooney_core.errors import DataProblem, DataValidationError
from rooney_core.sessions import SessionCalendar

log = logging.getLogger(__name__)

COLUMNS = ("datetime", "Open", "High", "Low", "Close", "volume")
OPTIONAL_COLUMNS = ("openinterest",)
PRICE_COLUMNS = ("Open", "High", "Low", "Close")
MAX_EXAMPLES_PER_RULE = 10
# Accepted timestamp years by default (read_raw_bars(min_year=, max_year=) changes them). The
# bounds may not leave 1678-2261: bars become datetime64[ns] downstream, which wraps around
# outside it (a row dated 2321 came back as an hourly bar dated 1736).
MIN_YEAR, MAX_YEAR = 1970, 2100
_NS_YEARS = (1678, 2261)
# [0-9], not \d: \d also matches Unicode digits ('٢٠٢٤'), which the parser does not read
_TS_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_TS_ZONE_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?\s*(Z|[+-][0-9]{2}:?[0-9]{2}|[A-Z]{3,4})$"
)
# A number exactly as Arrow's float parser (the fast path) reads it: Python's float() is looser
# ('1_0', Unicode digits and spaces), so using it here let lines through that the parser then
# rejected without a line number. inf and nan parse, and are then named by the 'nan' rule.
_NUMBER_RE = re.compile(
    r"[ \t]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf(?:inity)?|nan(?:\([0-9a-z_]*\))?)[ \t]*",
    re.IGNORECASE | re.ASCII,  # ASCII: else IGNORECASE lets the Kelvin sign match 'k' and so on
)
_BLOCK = 16 << 20
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_TS_LEN = len("YYYY-MM-DD HH:MM:SS")
_TS_SEP_AT = np.array([4, 7, 10, 13, 16])
_TS_SEPS = np.frombuffer(b"-- ::", dtype=np.uint8)
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"BZh", "bzip2"),
               (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))


BAR_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")


@dataclass
class RawBars:
    """Validated bars in time order (sorted, unique, in session), kept as the Arrow table
    the parser produced: chunked, zero-copy, so 7 M rows are never copied whole."""

    path: str
    table: pa.Table  # timestamp (timestamp[s], bar start), open, high, low, close, volume (float64)
    interval_minutes: int
    rows_read: int
    repairs: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def first_timestamp(self) -> np.datetime64:
        return self.table.column("timestamp")[0].as_py()

    @property
    def last_timestamp(self) -> np.datetime64:
        return self.table.column("timestamp")[-1].as_py()

    def batches(self) -> Iterator[tuple[np.ndarray, ...]]:
        """(epoch seconds int64, open, high, low, close, volume) per chunk, zero-copy."""
        for batch in self.table.to_batches():
            if batch.num_rows:
                ts = batch.column(0).to_numpy(zero_copy_only=True).view(np.int64)
                yield (ts, *(batch.column(i).to_numpy(zero_copy_only=True) for i in range(1, 6)))

    def to_frame(self) -> pd.DataFrame:
        df = self.table.to_pandas()
        df["timestamp"] = df["timestamp"].astype("datetime64[ns]")
        return df.set_index("timestamp")


def _table_from_arrays(ts, o, h, lo, c, v) -> pa.Table:
    return pa.table(
        [pa.array(ts.astype("datetime64[s]")), *(pa.array(np.asarray(a, dtype=np.float64)) for a in (o, h, lo, c, v))],
        names=list(BAR_FIELDS),
    )


class _Problems:
    """Collects problems with a cap of examples per rule, counting the rest."""

    def __init__(self, path: str):
        self.path = path
        self.items: list[DataProblem] = []
        self.counts: dict[str, int] = {}

    def add(self, rule: str, detail: str, line: int | None = None, ts: str | None = None) -> None:
        n = self.counts.get(rule, 0)
        self.counts[rule] = n + 1
        if n < MAX_EXAMPLES_PER_RULE:
            self.items.append(DataProblem(self.path, rule, detail, line=line, timestamp=ts))

    def add_many(self, rule: str, idx: np.ndarray, lines: np.ndarray, ts: np.ndarray, fmt) -> None:
        """Add one problem per index in ``idx`` (only the first few are rendered)."""
        if len(idx) == 0:
            return
        for i in idx[:MAX_EXAMPLES_PER_RULE]:
            self.add(rule, fmt(int(i)), line=int(lines[i]), ts=_fmt_ts(ts[i]))
        self.counts[rule] += len(idx) - min(len(idx), MAX_EXAMPLES_PER_RULE)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        problems = list(self.items)
        for rule, n in self.counts.items():
            shown = sum(1 for p in self.items if p.rule == rule)
            if n > shown:
                problems.append(
                    DataProblem(self.path, rule, f"... and {n - shown} more line(s) breaking this rule")
                )
        raise DataValidationError(self.path, problems)


@dataclass(frozen=True)
class _Years:
    """The accepted timestamp range, whole calendar years ``first`` to ``last``."""

    first: int
    last: int

    def __post_init__(self) -> None:
        lo, hi = _NS_YEARS
        if not lo <= self.first <= self.last <= hi:
            raise ValueError(f"accepted timestamp years {self.first}..{self.last} must lie within "
                             f"{lo}..{hi}, the span of datetime64[ns] that bars are kept in")

    @property
    def lo(self) -> int:
        """First accepted second (epoch)."""
        return int(np.datetime64(f"{self.first:04d}-01-01", "s").astype(np.int64))

    @property
    def hi(self) -> int:
        """First second after the range (epoch)."""
        return int(np.datetime64(f"{self.last + 1:04d}-01-01", "s").astype(np.int64))

    def detail(self, ts: str) -> str:
        return f"timestamp {ts} is outside the accepted years {self.first}-{self.last} (a typo in the year?)"


def _n(x: float) -> str:
    return f"{float(x):.12g}"


def _fmt_ts(t: np.datetime64) -> str:
    return str(t.astype("datetime64[s]")).replace("T", " ")


def _excerpt(text: str | bytes, limit: int = 80) -> str:
    """The start of a bad line or field for a message: escaped by repr() and capped, so a
    binary or huge line never lands in a message."""
    shown = repr(text[:limit])
    if len(text) > limit or len(shown) > 2 * limit:
        shown = shown[: 2 * limit] + "..."
    return shown


# --- the file itself ----------------------------------------------------------------------


def _file_problem(path: Path) -> tuple[str, str] | None:
    """(rule, detail) if ``path`` is not a regular file we may read, from os.stat alone:
    open() on a FIFO would block until some writer comes."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing-file", "file not found"
    except OSError as exc:
        return "unreadable", f"cannot read the file ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device")
    return "not-a-file", f"this is {kind}, not a regular file"


# --- header -------------------------------------------------------------------------------


def _check_header(path: Path, repairs: Repairs, problems: _Problems) -> tuple[list[str], int]:
    """Check encoding, delimiter and columns. Returns (column names, bytes to skip)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
        if b"\n" not in head:  # a header longer than that: read its whole line (capped)
            head += fh.readline(1 << 20)
    if not head.strip():
        problems.add("empty-file", "the file is empty (no header, no rows)", line=1)
        return [], 0
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            problems.add("compressed", f"the file is {kind}-compressed, not CSV text; decompress it first")
            return [], 0
    skip = 0
    if head.startswith(b"\xef\xbb\xbf"):
        if repairs.bom == "error":
            problems.add(
                "bom",
                "the file starts with a UTF-8 byte-order mark; save it without BOM "
                "or set data.repairs.bom: strip",
                line=1,
            )  # not fatal: the rest of the file is still checked, so every problem is named
        skip = 3
    # the header ends at \n, \r\n or \r, as for the parser
    line = (head[skip:].splitlines() or [b""])[0]
    try:
        first = line.decode("utf-8")
    except UnicodeDecodeError:
        problems.add("encoding", f"the header is not UTF-8 text: {_excerpt(line)}", line=1)
        return [], skip
    if "," not in first:
        for delim, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if delim in first:
                problems.add(
                    "delimiter",
                    f"the header is separated by {name} ({delim!r}); the format is comma-separated",
                    line=1,
                )
                return [], skip
    names = [c.strip(" \t") for c in first.split(",")]
    if names and _TS_RE.match(names[0] or ""):
        problems.add(
            "missing-header",
            f"the first line is data, not the header {','.join(COLUMNS)!r}",
            line=1,
        )
        return [], skip
    lowered = [n.lower() for n in names]
    for col in COLUMNS:
        if col.lower() not in lowered:
            problems.add("missing-column", f"column {col!r} is missing (header: {_excerpt(first)})", line=1)
    for n in names:
        if n.lower() not in {c.lower() for c in COLUMNS + OPTIONAL_COLUMNS}:
            problems.add("unexpected-column", f"unexpected column {_excerpt(n)} (header: {_excerpt(first)})", line=1)
    required, optional = [c.lower() for c in COLUMNS], [c.lower() for c in OPTIONAL_COLUMNS]
    # exactly the columns in order, openinterest at most once at the end (a repeated column
    # would reach the parser as two columns of one name)
    if (lowered[: len(COLUMNS)] != required or lowered[len(COLUMNS):] not in ([], optional)) and not problems.items:
        problems.add(
            "column-order",
            f"columns must be {','.join(COLUMNS)}, optionally then openinterest (header: {_excerpt(first)})",
            line=1,
        )
    return names, skip


# --- parsing ------------------------------------------------------------------------------


def _arrow_types(names: list[str]) -> dict[str, pa.DataType]:
    # the timestamp is cut as fixed-width text (any other width is a parse error) and decoded
    # by _timestamps: Arrow's strptime parser would roll 2021-02-30 over into March
    types: dict[str, pa.DataType] = {names[0]: pa.binary(_TS_LEN)}
    for n in names[1:]:
        types[n] = pa.float64()
    return types


def _parse_fast(source, names: list[str]) -> pa.Table:
    """Parse with Arrow; ArrowInvalid if any line breaks the format."""
    table = _read_csv(source, names)
    return table.set_column(0, names[0], _timestamps(table.column(0)))


def _read_csv(source, names: list[str]) -> pa.Table:
    return pacsv.read_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=_BLOCK, column_names=names, skip_rows=1),
        # no quoting: a quoted field is not the format, and a quote must not make the parser
        # join lines that the diagnostic path counts separately
        parse_options=pacsv.ParseOptions(ignore_empty_lines=False, quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types=_arrow_types(names),
            include_columns=names[: len(COLUMNS)],
            null_values=[],  # an empty field is a problem to name, not a silent null
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _timestamps(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Exactly 'YYYY-MM-DD HH:MM:SS' -> timestamp[s], chunk by chunk.

    Arrow's ISO-8601 parser checks the digits and rejects impossible dates and times
    (2021-02-30, 24:00:00, 09:00:60); it would also take 'T' as the separator, hence the
    separator check here. ArrowInvalid sends the file to the diagnostic path."""
    return pa.chunked_array([_timestamp_chunk(c) for c in text.chunks], type=pa.timestamp("s"))


def _timestamp_chunk(chunk: pa.FixedSizeBinaryArray) -> pa.Array:
    n = len(chunk)
    if n == 0:
        return pa.array([], type=pa.timestamp("s"))
    data = chunk.buffers()[1].slice(chunk.offset * _TS_LEN, n * _TS_LEN)
    if not (np.frombuffer(data, dtype=np.uint8).reshape(n, _TS_LEN)[:, _TS_SEP_AT] == _TS_SEPS).all():
        raise pa.ArrowInvalid("a timestamp is not 'YYYY-MM-DD HH:MM:SS'")
    offsets = pa.py_buffer(np.arange(0, (n + 1) * _TS_LEN, _TS_LEN, dtype=np.int32))
    return pc.cast(pa.StringArray.from_buffers(n, offsets, data), pa.timestamp("s"))


def _timestamp_problem(ts: str) -> tuple[str, str] | None:
    """(rule, detail) if ``ts`` is not what the fast parser accepts: exactly the format, and a
    real date and time. The accepted years are checked later on the parsed values, on both
    paths alike, so a far-off year gives the same problems whichever path the file took."""
    if not _TS_RE.fullmatch(ts):
        if _TS_ZONE_RE.match(ts):
            return "timestamp-zone", (f"timestamp {_excerpt(ts)} carries a time zone; "
                                      "timestamps must be naive exchange-local time")
        if ts != ts.strip() and _TS_RE.fullmatch(ts.strip()):
            return "timestamp-format", f"timestamp {_excerpt(ts)} has spaces around it"
        return "timestamp-format", f"timestamp {_excerpt(ts)} is not 'YYYY-MM-DD HH:MM:SS'"
    # year 0000 parses (the range rule rejects it); Python's datetime lacks it, and 2000 has
    # the same calendar
    year = int(ts[:4]) or 2000
    try:
        datetime(year, int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]), int(ts[17:19]))
    except ValueError as exc:  # e.g. 'day is out of range for month', 'hour must be in 0..23'
        return "impossible-timestamp", f"timestamp {ts!r} does not exist: {exc}"
    return None


def _check_line(text: str, lineno: int, names: list[str], problems: _Problems) -> bool:
    """True if a data line is as the fast parser reads it; else name each problem."""
    fields = text.split(",")
    if len(fields) != len(names):
        problems.add(
            "field-count",
            f"expected {len(names)} comma-separated fields, found {len(fields)}: {_excerpt(text)}",
            line=lineno,
        )
        return False
    ts = fields[0]
    bad = _timestamp_problem(ts)
    if bad:
        problems.add(*bad, line=lineno)
        return False
    ok = True
    for name, value in zip(names[1 : len(COLUMNS)], fields[1 : len(COLUMNS)], strict=True):
        if not value.strip(" \t"):
            problems.add("missing-value", f"{name} is empty", line=lineno, ts=ts)
            ok = False
        elif not _NUMBER_RE.fullmatch(value):
            problems.add("bad-number", f"{name} {_excerpt(value)} is not a number", line=lineno, ts=ts)
            ok = False
    return ok


def parse_row(text: str, path: str, lineno: int, names: tuple[str, ...] = COLUMNS,
              min_year: int = MIN_YEAR, max_year: int = MAX_YEAR) -> tuple[np.datetime64, float, float, float, float, float]:
    """One data line of a raw file, read by the same rules as a whole file (for a feed that
    follows a file line by line): (bar start, open, high, low, close, volume). Raises
    DataValidationError naming the file, line and rule. Value rules (High < Low, NaN, order)
    are the bar builder's, as they need the bars around it."""
    problems = _Problems(path)
    text = text.rstrip("\r\n")
    if _check_line(text, lineno, list(names), problems):
        ts = text.split(",", 1)[0]
        if not min_year <= int(ts[:4]) <= max_year:
            problems.add("timestamp-range", f"timestamp {ts} is outside the years {min_year}-{max_year}",
                         line=lineno, ts=ts)
    problems.raise_if_any()
    fields = text.split(",")
    o, h, lo, c, v = (float(x) for x in fields[1:len(COLUMNS)])
    return np.datetime64(fields[0].replace(" ", "T"), "s"), o, h, lo, c, v


def _scan_lines(
    path: Path, names: list[str], skip: int, repairs: Repairs, problems: _Problems
) -> tuple[list[bytes], np.ndarray, dict[str, int]]:
    """Diagnostic path: name every bad line.

    Returns the header and the clean lines (bytes, for the parser), the clean lines' numbers
    in the file and the repairs applied.
    """
    # bytes.splitlines() ends lines at \n, \r\n and \r only, as the parser does (str.splitlines()
    # would also split at \x0b, \x1c, \x85, \u2028 ... and shift every later line number)
    lines = path.read_bytes()[skip:].splitlines()
    header_lower = ",".join(names).lower()
    keep: list[bytes] = [lines[0]]
    keep_numbers: list[int] = []
    blank = stray = 0
    for lineno, line in enumerate(lines[1:], start=2):
        text = line.decode("utf-8", errors="replace")
        if not text.strip(" \t"):
            if repairs.blank_lines == "error":
                problems.add("blank-line", "blank line", line=lineno)
            blank += 1
            continue
        if text.replace(" ", "").lower() == header_lower or text.lower().startswith("datetime"):
            if repairs.stray_headers == "error":
                problems.add("stray-header", f"a header line inside the data: {_excerpt(text, 60)}", line=lineno)
            stray += 1
            continue
        if _check_line(text, lineno, names, problems):
            keep.append(line)
            keep_numbers.append(lineno)
    repaired: dict[str, int] = {}
    if blank and repairs.blank_lines == "skip":
        repaired["blank_lines_skipped"] = blank
    if stray and repairs.stray_headers == "drop":
        repaired["stray_headers_dropped"] = stray
    return keep, np.asarray(keep_numbers, dtype=np.int64), repaired


def _csv(lines: list[bytes]) -> io.BytesIO:
    return io.BytesIO(b"\n".join(lines) + b"\n")


def _first_unparseable(kept: list[bytes], names: list[str]) -> int:
    """Index in ``kept`` (header first) of the first line the parser rejects, by bisection."""
    good, bad = 1, len(kept)  # kept[:good] parses (the header alone does); kept[:bad] does not
    while bad - good > 1:
        mid = (good + bad) // 2
        try:
            _parse_fast(_csv(kept[:mid]), names)
            good = mid
        except pa.ArrowInvalid:
            bad = mid
    return bad - 1


def _parse(
    path: Path, names: list[str], skip: int, repairs: Repairs, problems: _Problems
) -> tuple[pa.Table, np.ndarray | None, dict[str, int]]:
    """The whole file on the fast path, or else the lines the diagnostic scan keeps.
    Returns (table, the rows' line numbers or None for row index + 2, repairs applied)."""
    if not skip:  # a byte-order mark always takes the diagnostic path
        try:
            return _parse_fast(str(path), names), None, {}
        except pa.ArrowInvalid:
            log.info("%s: fast parse failed, scanning lines to locate every problem", path)
    kept, lines, repaired = _scan_lines(path, names, skip, repairs, problems)
    # bad lines are named and left out; the value rules then run on the rest (the caller
    # raises with every problem at once)
    try:
        table = _parse_fast(_csv(kept), names)
    except pa.ArrowInvalid as exc:
        # Unreachable while the line checks mirror the parser; should they ever disagree, the
        # error still names the line instead of only the file.
        i = _first_unparseable(kept, names)
        problems.add("unparseable", f"the parser rejects this line: {_excerpt(str(exc), 120)}",
                     line=int(lines[i - 1]) if i else 1)
        problems.raise_if_any()
    if skip and repairs.bom == "strip":
        repaired["bom_stripped"] = 1
    return table, lines, repaired


# --- rules on arrays ------------------------------------------------------------------------


def _infer_interval(ts_min: np.ndarray) -> int | None:
    """The most common step between bars up to an hour (gaps are longer, so ignored)."""
    if len(ts_min) > 1:
        counts = np.bincount(np.clip(np.diff(ts_min), 0, 61), minlength=62)[1:61]
        if counts.any():
            return int(np.argmax(counts)) + 1
    # sparse data (no two bars within an hour): the coarsest grid all bars sit on
    return int(np.gcd.reduce(np.r_[60, ts_min % 60]))


def read_raw_bars(
    path: str | Path,
    calendar: SessionCalendar,
    repairs: Repairs | None = None,
    *,
    min_year: int = MIN_YEAR,
    max_year: int = MAX_YEAR,
) -> RawBars:
    """Read, validate and (where config allows) repair one raw bar file.

    Timestamps must fall in the years ``min_year`` to ``max_year`` (inclusive, within
    1678-2261). Raises DataValidationError listing every problem (file, line or timestamp,
    rule), also for a file that cannot be read at all.
    """
    path = Path(path)
    repairs = repairs or Repairs()
    years = _Years(min_year, max_year)
    problems = _Problems(str(path))
    not_a_file = _file_problem(path)
    if not_a_file:
        problems.add(*not_a_file)
        problems.raise_if_any()
    try:
        return _read(path, calendar, repairs, years, problems)
    except OSError as exc:  # permission denied, an I/O error mid-read ...: one error for this file
        problems.add("unreadable", f"cannot read the file ({exc.strerror or _excerpt(str(exc), 200)})")
        raise DataValidationError(problems.path, problems.items) from exc


def _read(path: Path, calendar: SessionCalendar, repairs: Repairs, years: _Years, problems: _Problems) -> RawBars:
    names, skip = _check_header(path, repairs, problems)
    if not names or any(p.rule != "bom" for p in problems.items):
        problems.raise_if_any()  # no header to read the rows by: nothing more can be checked
    table, lines, repaired = _parse(path, names, skip, repairs, problems)
    n = table.num_rows
    if n == 0:
        if not problems.items:
            problems.add("empty-file", "the file has a header but no rows", line=2)
        problems.raise_if_any()
    table = table.rename_columns(list(BAR_FIELDS))
    if not repaired and not problems.items:
        interval = _quick_check(table, calendar, repairs, years)
        if interval is not None:  # the common case: a clean file, validated chunk by chunk
            return RawBars(str(path), table, interval, rows_read=n)
    # Something is off: find every problem (and apply allowed repairs) on whole arrays.
    if lines is None:
        lines = np.arange(2, n + 2, dtype=np.int64)
    ts, o, h, lo, c, v = (table.column(i).to_numpy() for i in range(len(BAR_FIELDS)))
    return _validate_arrays(path, ts, o, h, lo, c, v, lines, calendar, repairs, years, problems, repaired, n)


def _quick_check(table: pa.Table, calendar: SessionCalendar, repairs: Repairs, years: _Years) -> int | None:
    """Every rule on zero-copy chunks (no whole-array temporaries, which are what costs
    time and memory at 7 M rows). Returns the bar interval if the file is clean and needs
    no repair, else None (the caller then names each problem)."""
    counts = np.zeros(60, dtype=np.int64)
    minute_gcd = 60
    prev = None
    raw = RawBars("", table, 1, table.num_rows)
    for ts, o, h, lo, c, v in raw.batches():
        if not np.isfinite(o + h + lo + c + v).all():
            return None
        if lo.min() <= 0 or v.min() < 0 or (repairs.zero_volume == "drop" and not v.all()):
            return None
        if not ((h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()):
            return None
        step = np.diff(ts) if prev is None else np.diff(ts, prepend=prev)
        if (len(step) and step.min() <= 0) or (ts % 60).any():
            return None
        if ts[0] < years.lo or ts[-1] >= years.hi:  # sorted (just checked): the ends bound the chunk
            return None
        if not calendar.in_session(ts.view("datetime64[s]")).all():
            return None
        minutes = ts // 60
        counts += np.bincount(np.clip(step // 60, 0, 61), minlength=62)[1:61]
        minute_gcd = int(np.gcd.reduce(np.r_[minute_gcd, np.unique(minutes % 60)]))
        prev = ts[-1]
    interval = int(np.argmax(counts)) + 1 if counts.any() else minute_gcd
    if 60 % interval or minute_gcd % interval:
        return None
    return interval


def _validate_arrays(
    path: Path,
    ts: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    lines: np.ndarray,
    calendar: SessionCalendar,
    repairs: Repairs,
    years: _Years,
    problems: _Problems,
    repaired: dict[str, int],
    rows_read: int,
) -> RawBars:
    prices = {"Open": o, "High": h, "Low": lo, "Close": c}
    # One cheap pass decides whether the (costlier) per-rule search is needed at all.
    if not np.isfinite(o + h + lo + c + v).all():
        for name, arr in {**prices, "volume": v}.items():
            problems.add_many(
                "nan" if name != "volume" else "bad-volume",
                np.flatnonzero(~np.isfinite(arr)),
                lines,
                ts,
                lambda i, name=name, arr=arr: f"{name} is {_n(arr[i])}",
            )
    hi_oc = np.maximum(o, c)
    lo_oc = np.minimum(o, c)
    if lo.min(initial=np.inf) <= 0 or o.min(initial=np.inf) <= 0 or c.min(initial=np.inf) <= 0 or h.min(initial=np.inf) <= 0:
        for name, arr in prices.items():
            problems.add_many(
                "non-positive-price",
                np.flatnonzero(arr <= 0),
                lines,
                ts,
                lambda i, name=name, arr=arr: f"{name} {_n(arr[i])} <= 0",
            )
    if not ((h >= hi_oc).all() and (lo <= lo_oc).all()):
        problems.add_many(
            "high-below-low", np.flatnonzero(h < lo), lines, ts, lambda i: f"High {_n(h[i])} < Low {_n(lo[i])}"
        )
        problems.add_many(
            "high-below-open-close",
            np.flatnonzero((h < hi_oc) & (h >= lo)),
            lines,
            ts,
            lambda i: f"High {_n(h[i])} is below Open {_n(o[i])} or Close {_n(c[i])}",
        )
        problems.add_many(
            "low-above-open-close",
            np.flatnonzero((lo > lo_oc) & (h >= lo)),
            lines,
            ts,
            lambda i: f"Low {_n(lo[i])} is above Open {_n(o[i])} or Close {_n(c[i])}",
        )
    if v.min(initial=0) < 0:
        problems.add_many("negative-volume", np.flatnonzero(v < 0), lines, ts, lambda i: f"volume {_n(v[i])} < 0")

    secs = ts.astype("datetime64[s]").view(np.int64)
    problems.add_many(
        "timestamp-range",
        np.flatnonzero((secs < years.lo) | (secs >= years.hi)),
        lines,
        ts,
        lambda i: years.detail(_fmt_ts(ts[i])),
    )
    step = np.diff(secs)
    back = np.flatnonzero(step < 0) + 1
    if len(back):
        if repairs.unsorted == "sort":
            order = np.argsort(secs, kind="stable")
            ts, o, h, lo, c, v, lines, secs = (a[order] for a in (ts, o, h, lo, c, v, lines, secs))
            repaired["rows_reordered"] = int(len(back))
            step = np.diff(secs)
        else:
            problems.add_many(
                "unsorted",
                back,
                lines,
                ts,
                lambda i: f"timestamp is earlier than the previous row's {_fmt_ts(ts[i - 1])} "
                f"(line {lines[i - 1]}); rows must be in time order",
            )
    dup = np.flatnonzero(step == 0) + 1
    if len(dup):
        same = (o[dup] == o[dup - 1]) & (h[dup] == h[dup - 1]) & (lo[dup] == lo[dup - 1])
        same &= (c[dup] == c[dup - 1]) & (v[dup] == v[dup - 1])
        if repairs.duplicates == "drop_exact":
            conflicting = dup[~same]
            drop = dup[same]
        else:
            conflicting, drop = dup, dup[:0]
        problems.add_many(
            "duplicate-timestamp",
            conflicting,
            lines,
            ts,
            lambda i: f"the same timestamp as line {lines[i - 1]}"
            + ("" if repairs.duplicates == "error" else " with different values"),
        )
        if len(drop):
            keep = np.ones(len(ts), dtype=bool)
            keep[drop] = False
            ts, o, h, lo, c, v, lines, secs = (a[keep] for a in (ts, o, h, lo, c, v, lines, secs))
            repaired["exact_duplicates_dropped"] = int(len(drop))

    minutes = secs // 60
    off_grid = np.flatnonzero(secs % 60 != 0)
    problems.add_many(
        "interval", off_grid, lines, ts, lambda i: "timestamp is not on a whole minute"
    )
    interval = _infer_interval(minutes)
    if interval is None or 60 % interval != 0:
        problems.add(
            "interval",
            f"bar interval {interval} min does not divide an hour (allowed: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)",
        )
    else:
        off = np.flatnonzero(minutes % interval != 0)
        problems.add_many(
            "interval", off, lines, ts, lambda i: f"timestamp is not on the {interval}-minute grid"
        )

    out = np.flatnonzero(~calendar.in_session(ts))
    if len(out) and repairs.out_of_session == "error":
        problems.add_many(
            "out-of-session",
            out,
            lines,
            ts,
            lambda i: f"bar lies outside the {calendar.open:%H:%M}-{calendar.close:%H:%M} "
            f"{calendar.timezone} session (maintenance break or weekend)",
        )
    problems.raise_if_any()  # every rule has run: all problems at once
    if len(out):
        keep = np.ones(len(ts), dtype=bool)
        keep[out] = False
        ts, o, h, lo, c, v = (a[keep] for a in (ts, o, h, lo, c, v))
        repaired["out_of_session_dropped"] = int(len(out))
    zero = v == 0
    if zero.any() and repairs.zero_volume == "drop":
        ts, o, h, lo, c, v = (a[~zero] for a in (ts, o, h, lo, c, v))
        repaired["zero_volume_dropped"] = int(zero.sum())
    if len(ts) == 0:
        problems.add("empty-file", "no bars left inside trading sessions")
        problems.raise_if_any()
    for what, count in repaired.items():
        log.warning("%s: repaired: %s = %d", path, what, count)
    return RawBars(
        path=str(path),
        table=_table_from_arrays(ts, o, h, lo, c, v),
        interval_minutes=int(interval),
        rows_read=rows_read,
        repairs=repaired,
    )


def raw_bars_from_table(table: pa.Table, path: str = "<lake>") -> RawBars:
    """RawBars from a table written by the raw_bars asset (already validated)."""
    table = table.select(list(BAR_FIELDS))
    ts = table.column("timestamp").cast(pa.timestamp("s")).to_numpy().view(np.int64)
    interval = _infer_interval(ts // 60) or 1
    return RawBars(path, table.set_column(0, "timestamp", table.column("timestamp").cast(pa.timestamp("s"))),
                   interval, rows_read=table.num_rows)
