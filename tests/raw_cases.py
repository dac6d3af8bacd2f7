"""The malformed-input classes of R1 (TARGETS.md), shared by the core and pipeline tests."""

from __future__ import annotations

from pathlib import Path

HEADER = "datetime,Open,High,Low,Close,volume"
GOOD_ROWS = [
    "2024-12-02 09:00:00,6049.25,6051.50,6048.75,6050.00,1873",
    "2024-12-02 09:01:00,6050.00,6050.25,6049.00,6049.50,642",
    "2024-12-02 09:02:00,6049.50,6050.00,6049.00,6049.75,300",
    "2024-12-02 09:03:00,6049.75,6052.00,6049.50,6051.00,900",
]


# (name, lines or raw bytes, rule, line number expected in the message, text expected)
CASES = [
    ("missing column", ["datetime,Open,High,Close,volume", "2024-12-02 09:00:00,1,2,1.5,3"],
     "missing-column", 1, "'Low'"),
    ("bad number", [HEADER, GOOD_ROWS[0], "2024-12-02 09:01:00,6050.00,abc,6049.00,6049.50,642"],
     "bad-number", 3, "High 'abc'"),
    ("high below low", [HEADER, GOOD_ROWS[0], "2024-12-02 09:01:00,6050.00,6048.00,6049.00,6049.50,642"],
     "high-below-low", 3, "High 6048 < Low 6049"),
    ("nan", [HEADER, GOOD_ROWS[0], "2024-12-02 09:01:00,6050.00,6050.25,6049.00,nan,642"],
     "nan", 3, "Close is"),
    ("duplicate", [HEADER, GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[1].replace(",642", ",643")],
     "duplicate-timestamp", 4, "same timestamp as line 3"),
    ("unsorted", [HEADER, GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[1], GOOD_ROWS[3]],
     "unsorted", 4, "earlier than the previous row"),
    ("empty file", [], "empty-file", 1, "empty"),
    ("header only", [HEADER], "empty-file", 2, "no rows"),
    ("wrong delimiter", [h.replace(",", ";") for h in [HEADER, *GOOD_ROWS]], "delimiter", 1, "semicolon"),
    ("timestamp with zone", [HEADER, GOOD_ROWS[0], "2024-12-02 09:01:00+00:00,6050.00,6050.25,6049.00,6049.50,642"],
     "timestamp-zone", 3, "time zone"),
    ("missing value", [HEADER, GOOD_ROWS[0], "2024-12-02 09:01:00,6050.00,,6049.00,6049.50,642"],
     "missing-value", 3, "High is empty"),
    ("non-positive price", [HEADER, GOOD_ROWS[0], "2024-12-02 09:01:00,0,6050.25,0,6049.50,642"],
     "non-positive-price", 3, "<= 0"),
    ("field count", [HEADER, GOOD_ROWS[0], "2024-12-02 09:01:00,6050.00,6050.25,6049.00"],
     "field-count", 3, "expected 6"),
    ("bad timestamp", [HEADER, GOOD_ROWS[0], "02/12/2024 09:01,6050.00,6050.25,6049.00,6049.50,642"],
     "timestamp-format", 3, "not 'YYYY-MM-DD HH:MM:SS'"),
    # issue 7: values are what they say (these were read as 2021-03-01, as 1736, or named no line)
    ("impossible date", [HEADER, "2021-02-26 09:00:00,10,11,9,10,1", "2021-02-29 10:00:00,10,11,9,10,1"],
     "impossible-timestamp", 3, "day is out of range for month"),
    ("far-future year", [HEADER, *GOOD_ROWS, "2321-03-02 10:00:00,6050.00,6050.25,6049.00,6049.50,642"],
     "timestamp-range", 6, "outside the accepted years"),
    ("hour 24", [HEADER, GOOD_ROWS[0], "2024-12-02 24:00:00,6050.00,6050.25,6049.00,6049.50,642"],
     "impossible-timestamp", 3, "hour must be in 0..23"),
    ("python-only number", [HEADER, GOOD_ROWS[0], "2024-12-02 09:01:00,6_050.00,6050.25,6049.00,6049.50,642"],
     "bad-number", 3, "Open '6_050.00'"),
]


def write_case(path: Path, case) -> Path:
    """Write the file of one case (an empty list of lines means a zero-byte file)."""
    _, lines, *_ = case
    if lines:
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_bytes(b"")
    return path
