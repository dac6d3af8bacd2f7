"""Adversarial harness: issue 7's attack on a fresh clone, re-run as a repeatable benchmark.

It throws hostile inputs and faults at the data gate (R1), the config loaders (R5), the model
store (R2, R6, no code runs from a file) and at writers killed with SIGKILL (R2), and prints a
table of counts per category: inputs tried or faults injected, refused with our clear error,
accepted correctly, and FAILURES. A FAILURE is any of:

* an exception that is not one of our RooneyError subclasses (a traceback), or a hang;
* an error message that names no file (for data files: no line or timestamp where one applies);
* a hostile file whose code ran (its marker file appeared);
* a bad input silently accepted (an accepted data file must hold exactly the bars a plain-Python
  reference parser reads from its bytes), or a valid data file refused;
* a store left unreadable, a production version that is neither the old one nor a complete
  new one, an audit entry with status "done" that did not take effect, or a leftover temporary
  file after the next write.

Everything runs in a temporary directory (configs/ is copied there; the repository's
dagster_home and configs/ are never touched). Exit code 1 if any FAILURE, 2 if the harness
itself cannot start.

    uv run --frozen --extra dev python bench/adversarial.py            # full run, ~5 min on 2 cores
    uv run --frozen --extra dev python bench/adversarial.py --quick    # ~1 min
    uv run --frozen --extra dev python bench/adversarial.py --seed 3 --kills 500 --only kills
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import functools
import gzip
import hashlib
import io
import json
import logging
import lzma
import multiprocessing
import os
import pickle
import random
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.ensemble import RandomForestClassifier

from rooney_core.config import DEFAULT_CONFIG_DIR, Repairs, load_config, read_yaml
from rooney_core.data.lake import Lake
from rooney_core.data.raw import RawBars, read_raw_bars
from rooney_core.errors import ConfigError, DataValidationError, RooneyError
from rooney_core.model import ModelIntegrityError, ModelStore, ModelStoreError, UnsafeBundleError, VetoBundle
from rooney_core.model.bundle_file import load_bundle_file
from rooney_core.sample_market import load_sample_market, write_sample_data
from rooney_core.sessions import SessionCalendar
from rooney_core.training.config import load_training_config

REPO = Path(__file__).resolve().parents[1]
# fork: children start in milliseconds with everything imported (spawn costs seconds each) and
# share the forest built once in the parent.
FORK = multiprocessing.get_context("fork")
REFUSED, ACCEPTED, FAIL = "refused", "accepted", "FAILURE"
NOBODY = 65534

# Every repair off: an accepted file must be read verbatim. Every repair on: kept bars must
# still be lines of the file, read verbatim, and every dropped line counted.
STRICT = Repairs(bom="error", blank_lines="error", stray_headers="error", unsorted="error",
                 duplicates="error", out_of_session="error", zero_volume="keep")
LENIENT = Repairs(bom="strip", blank_lines="skip", stray_headers="drop", unsorted="sort",
                  duplicates="drop_exact", out_of_session="drop", zero_volume="drop")
DROPPING_REPAIRS = ("blank_lines_skipped", "stray_headers_dropped", "exact_duplicates_dropped",
                    "out_of_session_dropped", "zero_volume_dropped")


class HarnessError(Exception):
    """The harness cannot run as intended (exit code 2): not a finding about the product."""


# ==== tallies ====================================================================================


@dataclass
class Failure:
    category: str
    case: str
    reason: str
    detail: str


@dataclass
class Tally:
    """Counts of one row of the final table."""

    name: str
    verbose: bool = False
    tried: int = 0
    refused: int = 0
    accepted: int = 0
    failures: list[Failure] = field(default_factory=list)

    def record(self, case: str, verdict: str, reason: str = "", detail: str = "") -> None:
        if self.verbose:
            print(f"    {self.name[:3]} {verdict:<9} {case}" + (f": {reason}" if reason else ""), flush=True)
        self.tried += 1
        if verdict == REFUSED:
            self.refused += 1
        elif verdict == ACCEPTED:
            self.accepted += 1
        else:
            self.failures.append(Failure(self.name, case, reason, _short(detail, 600)))


def _short(text: str, limit: int = 300) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def _exc_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_short(str(exc), 400)}"


def _traceback_text(exc: BaseException) -> str:
    return _short("".join(traceback.format_exception(exc)), 1500)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in this process if the body runs longer (a hang is a failure, and
    must not stop the run)."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_forked(fn: Callable[[], dict], timeout: float) -> dict:
    """Run ``fn`` in a forked child and return its JSON answer; ``{"hang": ...}`` if it gives
    none in time (the child is then killed). For inputs that could block this process for good
    (a FIFO) or that need another user id."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the harness
        code = 0
        try:
            os.close(r)
            try:
                out = fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as a crash
                out = {"crash": _exc_text(exc), "traceback": _traceback_text(exc)}
            os.write(w, json.dumps(out, default=str).encode())
        except BaseException:  # noqa: BLE001
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    chunks, end = [], time.monotonic() + timeout
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"hang": f"no answer within {timeout} s"}
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {"crash": "the child's answer was not JSON"}


def drop_privileges() -> None:
    """In a forked child running as root: become 'nobody', for whom mode 000 means unreadable."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def rooney_command() -> list[str]:
    script = Path(sys.executable).parent / "rooney"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from rooney_pipeline.cli import main; main()"]


def cli_env(tmp: Path, config_dir: Path, store: Path | None = None) -> dict[str, str]:
    """Environment for a `rooney` subprocess: every location it could write to is in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROONEY_", "DAGSTER_"))}
    env.update(ROONEY_CONFIG_DIR=str(config_dir), ROONEY_MODEL_STORE=str(store or tmp / "cli-store"),
               ROONEY_LAKE_DIR=str(tmp / "cli-lake"), DAGSTER_HOME=str(tmp / "cli-dagster"))
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> tuple[int | None, str, str]:
    """(exit code or None on timeout, stdout, stderr) of one `rooney` run."""
    try:
        proc = subprocess.run([*rooney_command(), *args], capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return None, str(exc.stdout or ""), str(exc.stderr or "")
    return proc.returncode, proc.stdout, proc.stderr


# ==== 1. malformed data files ====================================================================

HEADER_NAMES = ["datetime", "open", "high", "low", "close", "volume"]
TS, OPEN, HIGH, LOW, CLOSE, VOL = range(6)
_REF_TS = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_REF_NUMBER = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH = datetime(1970, 1, 1)

# Rules whose problems concern the whole file; every other rule must name a line or timestamp.
FILE_RULES = {"missing-file", "unreadable", "not-a-file", "compressed", "empty-file", "interval"}


# The accepted timestamp years: data.min_year / data.max_year of the copied pipeline.yml, passed
# to the gate and used by the reference alike (set by run_data).
YEARS = (1970, 2100)


@functools.lru_cache(maxsize=500_000)
def reference_line(line: bytes, n_fields: int, years: tuple[int, int]) -> tuple | str:
    """(epoch seconds, open, high, low, close, volume) of one data line, or why it is not the
    format. Written from the format in STRATEGY.md / raw.py's docstring, sharing no code with
    the gate: fields split on commas (no quoting), the timestamp exactly 'YYYY-MM-DD HH:MM:SS'
    of a real date in the accepted years, numbers ASCII with optional sign, point and exponent
    and spaces or tabs around them; any further column (openinterest) is ignored."""
    fields = line.split(b",")
    if len(fields) != n_fields:
        return f"{len(fields)} fields, expected {n_fields}"
    if not _REF_TS.fullmatch(fields[0]):
        return f"timestamp {fields[0][:40]!r} is not YYYY-MM-DD HH:MM:SS"
    try:
        when = datetime.strptime(fields[0].decode("ascii"), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return f"timestamp {fields[0]!r} does not exist"
    if not years[0] <= when.year <= years[1]:
        return f"year {when.year} outside {years[0]}-{years[1]}"
    numbers = []
    for raw in fields[1:6]:
        text = raw.strip(b" \t")
        if not _REF_NUMBER.fullmatch(text):
            return f"{raw[:40]!r} is not a number"
        x = float(text)
        if not np.isfinite(x):
            return f"{raw[:40]!r} is not finite"
        numbers.append(x)
    return (int((when - _EPOCH).total_seconds()), *numbers)


def reference(data: bytes, calendar: SessionCalendar) -> tuple[list[tuple] | None, int | None, str]:
    """(rows, bar interval, "") if ``data`` is a valid raw file with every repair off, else
    (None, None, why)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return None, None, "byte-order mark"
    lines = data.splitlines()  # a line ends at \n, \r\n or \r
    if len(lines) < 2:
        return None, None, "no data rows"
    try:
        names = [n.strip(" \t").lower() for n in lines[0].decode("utf-8").split(",")]
    except UnicodeDecodeError:
        return None, None, "header is not UTF-8"
    if names not in (HEADER_NAMES, [*HEADER_NAMES, "openinterest"]):
        return None, None, f"header {lines[0][:80]!r}"
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        row = reference_line(line, len(names), YEARS)
        if isinstance(row, str):
            return None, None, f"line {lineno}: {row}"
        rows.append(row)
    why, interval = reference_rules(rows, calendar)
    return (None, None, why) if why else (rows, interval, "")


def reference_rules(rows: list[tuple], calendar: SessionCalendar) -> tuple[str, int | None]:
    """(why the bars break a rule or "", bar interval): prices positive and consistent, volume
    >= 0, strictly increasing whole-minute timestamps on a grid dividing an hour, in session."""
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    o, h, lo, c, v = (np.array([r[i] for r in rows]) for i in range(1, 6))
    if min(o.min(), h.min(), lo.min(), c.min()) <= 0:
        return "a price <= 0", None
    if (h < np.maximum(o, c)).any() or (lo > np.minimum(o, c)).any():
        return "High/Low inconsistent with Open/Close", None
    if (v < 0).any():
        return "negative volume", None
    if (np.diff(ts) <= 0).any():
        return "timestamps not strictly increasing", None
    if (ts % 60).any():
        return "timestamp not on a whole minute", None
    minutes = ts // 60
    steps = np.diff(minutes)
    steps = steps[(steps >= 1) & (steps <= 60)]
    if len(steps):
        interval = int(np.argmax(np.bincount(steps, minlength=61)[1:])) + 1  # most common, smallest on ties
    else:
        interval = int(np.gcd.reduce(np.r_[60, minutes % 60]))
    if 60 % interval or (minutes % interval).any():
        return f"bars not on a grid dividing an hour (interval {interval})", None
    if not calendar.in_session(ts.astype("datetime64[s]")).all():
        return "a bar outside the session", None
    return "", interval


@dataclass
class GateResult:
    """What read_raw_bars answered, in plain data (it may come from a forked child)."""

    kind: str  # "accepted" | "refused" | "crash" | "hang"
    rows: list[tuple] | None = None
    interval: int | None = None
    repairs: dict[str, int] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)
    error: str = ""


def rows_of(bars: RawBars) -> list[tuple]:
    ts = bars.timestamp.astype("datetime64[s]").astype(np.int64)
    cols = [bars.column(n).tolist() for n in ("open", "high", "low", "close", "volume")]
    return [(int(t), *(col[i] for col in cols)) for i, t in enumerate(ts.tolist())]


def gate(path: Path, repairs: Repairs, calendar: SessionCalendar, timeout: float = 60) -> GateResult:
    """Run the data gate in this process, turning every outcome into a GateResult."""
    try:
        with deadline(timeout):
            bars = read_raw_bars(path, calendar, repairs, min_year=YEARS[0], max_year=YEARS[1])
    except DataValidationError as err:
        probs = [{"rule": p.rule, "line": p.line, "ts": p.timestamp, "text": str(p)} for p in err.problems]
        return GateResult("refused", problems=probs, error=_short(str(err), 2000))
    except TimeoutError as exc:
        return GateResult("hang", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any other exception is what we are looking for
        return GateResult("crash", error=_traceback_text(exc))
    return GateResult("accepted", rows=rows_of(bars), interval=bars.interval_minutes, repairs=dict(bars.repairs))


def gate_forked(path: Path, repairs: Repairs, calendar: SessionCalendar, as_nobody: bool = False) -> GateResult:
    def child() -> dict:
        if as_nobody:
            drop_privileges()
        res = gate(path, repairs, calendar, timeout=20)
        return {**res.__dict__, "rows": None if res.rows is None else len(res.rows)}

    out = run_forked(child, timeout=30)
    if "hang" in out:
        return GateResult("hang", error=out["hang"])
    if "crash" in out:
        return GateResult("crash", error=out.get("traceback", out["crash"]))
    return GateResult(**{**out, "rows": None})  # special files are never expected to give bars


def message_defects(res: GateResult, path: Path) -> list[str]:
    """What makes a refusal unclear: a problem that does not name the file, lacks the line or
    timestamp its rule calls for, or is not a short printable message."""
    out = []
    if not res.problems:
        out.append("DataValidationError without any problem listed")
    for p in res.problems:
        text = p["text"]
        if str(path) not in text:
            out.append(f"does not name the file: {text!r}")
        elif len(text) > 600 or not text.isprintable():
            out.append(f"not a short printable message ({len(text)} chars): {_short(repr(text), 200)}")
        elif p["rule"] == "unparseable":
            out.append(f"the line checks and the parser disagree: {text!r}")
        elif (p["rule"] not in FILE_RULES and p["line"] is None and p["ts"] is None
              and "... and" not in text):
            out.append(f"names no line or timestamp: {text!r}")
    return out


def check_repaired(data: bytes, res: GateResult, calendar: SessionCalendar) -> str:
    """With repairs on: every bar kept is a line of the file read verbatim, the bars obey the
    rules, and the lines dropped are exactly the ones the repairs counted. "" if so."""
    body = data.removeprefix(b"\xef\xbb\xbf") if res.repairs.get("bom_stripped") else data
    lines = body.splitlines()
    n_fields = len(lines[0].split(b","))
    verbatim: dict[int, set] = defaultdict(set)
    for line in lines[1:]:
        row = reference_line(line, n_fields, YEARS)
        if not isinstance(row, str):
            verbatim[row[0]].add(row)
    for row in res.rows:
        if row not in verbatim.get(row[0], ()):
            return f"bar {row} is not any line of the file read verbatim"
    why, _ = reference_rules(res.rows, calendar)
    if why:
        return f"the repaired bars still break a rule: {why}"
    dropped = sum(res.repairs.get(k, 0) for k in DROPPING_REPAIRS)
    if len(res.rows) != len(lines) - 1 - dropped:
        return (f"{len(lines) - 1} data lines, {len(res.rows)} bars kept, but the repairs account for "
                f"{dropped} dropped: {res.repairs}")
    return ""


@dataclass
class DataCase:
    """One malformed (or deliberately valid) input. ``data`` is the file's bytes; a special
    case instead makes the path itself (directory, FIFO, symlink ...)."""

    name: str
    data: bytes | None = None
    expect_lines: set[int] | None = None  # a refusal must name one of these lines
    make: Callable[[Path], None] | None = None
    expect_rules: set[str] | None = None  # for special files: the rule that should be named
    as_nobody: bool = False


def judge_data(mode: str, case: DataCase, res: GateResult, path: Path, calendar: SessionCalendar) -> tuple[str, str, str]:
    """(verdict, reason, detail) for one gate answer under one repair mode."""
    if res.kind == "crash":
        return FAIL, "exception other than DataValidationError escaped the data gate", res.error
    if res.kind == "hang":
        return FAIL, "the data gate hung", res.error
    ref_rows, ref_interval, why = (reference(case.data, calendar) if case.data is not None
                                   else (None, None, "not a regular file"))
    if res.kind == "refused":
        defects = message_defects(res, path)
        if defects:
            return FAIL, "unclear error", defects[0]
        named = {p["line"] for p in res.problems}
        if mode == "strict" and case.expect_lines and not named & case.expect_lines:
            return FAIL, "error does not name the bad line", f"expected line {sorted(case.expect_lines)}: {res.error}"
        rules = {p["rule"] for p in res.problems}
        if case.expect_rules and not rules & case.expect_rules:
            return FAIL, "error names the wrong rule", f"expected {sorted(case.expect_rules)}: {res.error}"
        if mode in ("strict", "pipeline") and ref_rows is not None:
            return FAIL, "valid file refused", res.error
        return REFUSED, "", ""
    if case.data is None:
        return FAIL, "a special file was accepted", case.name
    if not res.repairs:
        if ref_rows is None:
            return FAIL, "bad input silently accepted", why
        if res.rows != ref_rows or res.interval != ref_interval:
            diff = next((f"line {i + 2}: gate {a} vs bytes {b}" for i, (a, b) in enumerate(zip(res.rows, ref_rows, strict=False))
                         if a != b), f"{len(res.rows)} bars vs {len(ref_rows)}, interval {res.interval} vs {ref_interval}")
            return FAIL, "accepted with other bars than the file says", diff
        return ACCEPTED, "", ""
    if mode == "strict":
        return FAIL, "repairs applied although every repair is off", str(res.repairs)
    problem = check_repaired(case.data, res, calendar)
    return (FAIL, "a repair changed, invented or silently dropped bars", problem) if problem else (ACCEPTED, "", "")


# ---- building the cases from a valid file ----------------------------------------------------


def _fields(line: bytes) -> list[bytes]:
    return line.split(b",")


def _ts_of(line: bytes) -> datetime:
    return datetime.strptime(line[:19].decode(), "%Y-%m-%d %H:%M:%S")


def _fmt(t: datetime) -> bytes:
    return t.strftime("%Y-%m-%d %H:%M:%S").encode()


class Builder:
    """Makes DataCases from the lines of a valid file; a seeded RNG picks the line to break."""

    def __init__(self, base: bytes, rng: random.Random):
        self.base = base
        self.lines = base.splitlines()
        self.rng = rng

    def pick(self, cond: Callable[[list[bytes]], bool] = lambda f: True) -> int:
        """Index (0 = header) of a random data line whose fields satisfy ``cond``."""
        candidates = [i for i in range(1, len(self.lines)) if cond(_fields(self.lines[i]))]
        return self.rng.choice(candidates)

    def join(self, lines: list[bytes], eol: bytes = b"\n") -> bytes:
        return eol.join(lines) + eol

    def set_field(self, name: str, col: int, value: bytes | Callable[[list[bytes]], bytes],
                  cond: Callable[[list[bytes]], bool] = lambda f: True, line: int | None = None) -> DataCase:
        lines = list(self.lines)
        i = line if line is not None else self.pick(cond)
        f = _fields(lines[i])
        f[col] = value(f) if callable(value) else value
        lines[i] = b",".join(f)
        return DataCase(name, self.join(lines), {i + 1})

    def replace_lines(self, name: str, fn: Callable[[list[bytes]], tuple[list[bytes], set[int] | None]],
                      eol: bytes = b"\n") -> DataCase:
        lines, expect = fn(list(self.lines))
        return DataCase(name, self.join(lines, eol), expect)

    def raw(self, name: str, data: bytes, expect: set[int] | None = None) -> DataCase:
        return DataCase(name, data, expect)


def structured_cases(b: Builder) -> list[DataCase]:
    """Every class of issue 7 and R1, plus valid variants that must be read exactly."""
    n = len(b.lines)
    last = n - 1
    up = (lambda f: float(f[HIGH]) > float(f[LOW]))  # a line whose High is above its Low
    cases = [
        # -- header and columns
        b.replace_lines("missing column Low", lambda ls: ([b",".join(x for j, x in enumerate(_fields(line)) if j != LOW)
                                                          for line in ls], {1})),
        b.replace_lines("header lacks volume, rows have it", lambda ls: ([b"datetime,Open,High,Low,Close", *ls[1:]], {1})),
        b.replace_lines("unknown extra column", lambda ls: ([ls[0] + b",foo", *(x + b",1" for x in ls[1:])], {1})),
        b.replace_lines("columns reordered", lambda ls: ([b"datetime,Open,Low,High,Close,volume", *ls[1:]], {1})),
        b.replace_lines("column given twice", lambda ls: ([ls[0] + b",volume", *(x + b",1" for x in ls[1:])], {1})),
        b.replace_lines("no header (first line is data)", lambda ls: (ls[1:], {1})),
        b.replace_lines("header not UTF-8", lambda ls: ([b"datetime,Open,High,Low,Close,vol\xfcme", *ls[1:]], {1})),
        # -- numbers
        *(b.set_field(f"bad number {_short(repr(v.decode('utf-8', 'replace')), 30)} in {col}", idx, v) for v, col, idx in [
            (b"abc", "High", HIGH), (b"1.2.3", "Open", OPEN), (b"--5", "Close", CLOSE), (b"0x10", "volume", VOL),
            (b"1e", "Low", LOW), (b"e5", "Close", CLOSE), (b"1_0", "volume", VOL), (b"6_050.25", "Open", OPEN),
            ("٦٠٥٠".encode(), "Close", CLOSE), ("６０５０".encode(), "Low", LOW), (b'"6050.25"', "High", HIGH),
            (b"6050\xc2\xa0", "Close", CLOSE), (b"1,5", "Open", OPEN), (b"\x00", "High", HIGH), (b"60\x0050", "Open", OPEN),
            (b"\xff", "Close", CLOSE), (b"6050\xe9", "Low", LOW), (b"1e400", "Close", CLOSE), (b"9" * 400, "High", HIGH),
            (b"+-1", "volume", VOL), (b"\xe2\x88\x9e", "High", HIGH), (b"0b101", "volume", VOL),
        ]),
        *(b.set_field(f"{v.decode()} in {col}", idx, v) for v, col, idx in [
            (b"nan", "Close", CLOSE), (b"NaN", "High", HIGH), (b"-nan", "Open", OPEN), (b"inf", "Open", OPEN),
            (b"-inf", "Low", LOW), (b"Infinity", "volume", VOL), (b"", "High", HIGH), (b"   ", "Low", LOW),
        ]),
        b.set_field("zero price", OPEN, b"0"),
        b.set_field("negative price", LOW, b"-5"),
        b.set_field("tiny price 1e-400 (reads as 0)", OPEN, b"1e-400"),
        b.set_field("negative volume", VOL, b"-1"),
        b.set_field("High < Low (swapped)", HIGH, lambda f: f[LOW], cond=up),
        b.set_field("High below Open", HIGH, lambda f: repr(max(float(f[OPEN]), float(f[CLOSE])) - 0.25).encode(), cond=up),
        b.set_field("Low above Close", LOW, lambda f: repr(min(float(f[OPEN]), float(f[CLOSE])) + 0.25).encode(), cond=up),
        # -- valid number forms: read exactly as written
        b.set_field("spaces around a number (valid)", HIGH, lambda f: b" " + f[HIGH] + b" "),
        b.set_field("tabs around a number (valid)", VOL, lambda f: b"\t" + f[VOL]),
        b.set_field("scientific notation (valid)", OPEN, lambda f: f"{float(f[OPEN]):e}".encode()),
        b.set_field("leading plus (valid)", CLOSE, lambda f: b"+" + f[CLOSE]),
        b.set_field("trailing point (valid)", VOL, lambda f: f[VOL] + b"."),
        b.set_field("volume 0 (valid)", VOL, b"0"),
        b.set_field("volume -0 (valid)", VOL, b"-0"),
        # -- timestamps
        *(b.set_field(f"timestamp {desc}", TS, fn) for desc, fn in [
            ("with zone +00:00", lambda f: f[TS] + b"+00:00"), ("with zone Z", lambda f: f[TS] + b"Z"),
            ("with zone -05:00", lambda f: f[TS] + b"-05:00"), ("with zone ' UTC'", lambda f: f[TS] + b" UTC"),
            ("with T separator", lambda f: f[TS].replace(b" ", b"T")),
            ("with fractional seconds", lambda f: f[TS] + b".000"),
            ("with a space before", lambda f: b" " + f[TS]), ("with a space after", lambda f: f[TS] + b" "),
            ("quoted", lambda f: b'"' + f[TS] + b'"'), ("as D/M/Y", lambda f: f[TS][8:10] + b"/" + f[TS][5:7]
                                                        + b"/" + f[TS][:4] + f[TS][10:16]),
            ("without seconds", lambda f: f[TS][:16]), ("single-digit hour", lambda f: f[TS][:11] + b"9" + f[TS][13:]),
            ("with Unicode digits", lambda f: "٢٠٢٤".encode() + f[TS][4:]),
            ("with fullwidth digits", lambda f: "２０２４".encode() + f[TS][4:]),
        ]),
        *(b.set_field(f"impossible date {d.decode()}", TS, lambda f, d=d: d + f[TS][10:])
          for d in (b"2021-02-29", b"2021-02-30", b"2021-02-31", b"2023-04-31", b"2024-13-01", b"2024-00-10",
                    b"2024-11-00", b"2024-11-32")),
        *(b.set_field(f"impossible time {t.decode()}", TS, lambda f, t=t: f[TS][:11] + t)
          for t in (b"24:00:00", b"09:60:00", b"09:00:60", b"25:00:00", b"99:99:99")),
        b.set_field("far-future year 2321 on the last row", TS, lambda f: b"2321" + f[TS][4:], line=last),
        b.set_field("year 2101 on the last row", TS, lambda f: b"2101" + f[TS][4:], line=last),
        b.set_field("year 9999 on the last row", TS, lambda f: b"9999" + f[TS][4:], line=last),
        b.set_field("year 1969 on the first row", TS, lambda f: b"1969" + f[TS][4:], line=1),
        b.set_field("year 0000 on the first row", TS, lambda f: b"0000" + f[TS][4:], line=1),
        b.set_field("seconds off the minute", TS, lambda f: f[TS][:17] + b"30"),
        # -- order and duplicates
        b.replace_lines("identical row twice", _dup_row(b, same=True)),
        b.replace_lines("duplicate timestamp, other values", _dup_row(b, same=False)),
        b.replace_lines("two rows swapped", _swap_rows(b)),
        b.replace_lines("a row moved to the end", lambda ls: (
            [*ls[:5], *ls[6:], ls[5]], {len(ls)})),
        b.replace_lines("bar in the maintenance break", _insert_at_time(b, "16:30:00")),
        b.replace_lines("bar on a Saturday", _append_saturday(b)),
        b.replace_lines("bar off the grid (:00:30)", _insert_offgrid(b)),
        b.replace_lines("7-minute bars (grid does not divide an hour)", lambda ls: (
            [ls[0], *(x for x in ls[1:] if (_ts_of(x).minute + 60 * _ts_of(x).hour) % 7 == 0)], None)),
        b.replace_lines("5-minute bars (valid)", lambda ls: ([ls[0], *(x for x in ls[1:] if _ts_of(x).minute % 5 == 0)], None)),
        # -- lines and encodings
        b.raw("empty file", b"", {1}),
        b.raw("header only", b.lines[0] + b"\n", {2}),
        b.raw("whitespace only", b"  \n\t\n\n", {1}),
        b.raw("NUL bytes only", b"\x00" * 4096, {1}),
        *(b.replace_lines(f"delimiter {name}", lambda ls, d=d: ([x.replace(b",", d) for x in ls], {1}))
          for name, d in (("semicolon", b";"), ("tab", b"\t"), ("pipe", b"|"))),
        b.raw("UTF-8 BOM", b"\xef\xbb\xbf" + b.base, {1}),
        b.raw("UTF-16 with BOM", b.base.decode().encode("utf-16"), {1}),
        b.raw("CRLF line ends (valid)", b.join(b.lines, b"\r\n")),
        b.raw("CR-only line ends (valid)", b.join(b.lines, b"\r")),
        b.raw("mixed CRLF and LF (valid)", b"".join(x + (b"\r\n" if i % 2 else b"\n") for i, x in enumerate(b.lines))),
        b.raw("no newline at the end (valid)", b.base.rstrip(b"\n")),
        b.raw("header in capitals (valid)", b.join([b.lines[0].upper(), *b.lines[1:]])),
        b.raw("spaces in the header (valid)", b.join([b.lines[0].replace(b",", b" , "), *b.lines[1:]])),
        b.raw("openinterest column (valid)", b.join([b.lines[0] + b",openinterest",
                                                     *(x + b",%d" % i for i, x in enumerate(b.lines[1:]))])),
        b.raw("openinterest column of junk (ignored, valid)", b.join([b.lines[0] + b",openinterest",
                                                                      *(x + b",n/a \xe9" for x in b.lines[1:])])),
        b.replace_lines("blank line inside", lambda ls: ([*ls[:7], b"", *ls[7:]], {8})),
        b.replace_lines("blank line of spaces inside", lambda ls: ([*ls[:9], b"  \t", *ls[9:]], {10})),
        b.raw("blank lines at the end", b.base + b"\n\n", {n + 1, n + 2}),
        b.replace_lines("header repeated inside", lambda ls: ([*ls[:11], ls[0], *ls[11:]], {12})),
        b.replace_lines("a row with a field missing", lambda ls: ([*ls[:4], b",".join(_fields(ls[4])[:5]), *ls[5:]], {5})),
        b.replace_lines("a row with a trailing comma", lambda ls: ([*ls[:4], ls[4] + b",", *ls[5:]], {5})),
        b.replace_lines("NUL byte inside a timestamp", lambda ls: ([*ls[:3], ls[3][:5] + b"\x00" + ls[3][6:], *ls[4:]], {4})),
        b.replace_lines("a 1 MB line of junk", lambda ls: ([*ls[:6], b"x" * (1 << 20), *ls[7:]], {7})),
        b.replace_lines("a 2 MB number", lambda ls: ([*ls[:6], ls[6] + b"7" * (2 << 20), *ls[7:]], {7})),
        b.raw("one 8 MB line without newline", b"datetime," + b"9" * (8 << 20)),
        b.replace_lines("header padded beyond 4 KB", lambda ls: ([ls[0].replace(b",volume", b"," + b" " * 5000 + b"volume"),
                                                                  *ls[1:]], None)),
        b.replace_lines("header padded beyond 4 KB, openinterest column", lambda ls: (
            [ls[0] + b"," + b" " * 5000 + b"openinterest", *(x + b",1" for x in ls[1:])], None)),
        # -- compressed and truncated
        b.raw("gzipped", gzip.compress(b.base, mtime=0)),
        b.raw("bzip2", bz2.compress(b.base)),
        b.raw("xz", lzma.compress(b.base)),
        b.raw("zip", _zipped(b.base)),
        b.raw("truncated inside the header", b.base[:20]),
        b.raw("truncated inside the last line", b.base[: len(b.base) - 7]),
        b.raw("truncated after the header", b.base[: len(b.lines[0]) + 1]),
        *(b.raw(f"truncated at byte {k}", b.base[:k]) for k in sorted(b.rng.sample(range(40, len(b.base)), 4))),
    ]
    return cases


def _zipped(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ES_bt.csv", data)
    return buf.getvalue()


def _dup_row(b: Builder, same: bool) -> Callable:
    def fn(ls: list[bytes]) -> tuple[list[bytes], set[int]]:
        i = b.pick()
        copy = ls[i] if same else b",".join([*_fields(ls[i])[:5], b"99999"])
        return [*ls[: i + 1], copy, *ls[i + 1:]], {i + 2}
    return fn


def _swap_rows(b: Builder) -> Callable:
    def fn(ls: list[bytes]) -> tuple[list[bytes], set[int]]:
        i = b.rng.randrange(1, len(ls) - 1)
        ls[i], ls[i + 1] = ls[i + 1], ls[i]
        return ls, {i + 1, i + 2}
    return fn


def _insert_at_time(b: Builder, hhmmss: str) -> Callable:
    """A bar at ``hhmmss`` of a Monday-Thursday, inserted in time order."""
    def fn(ls: list[bytes]) -> tuple[list[bytes], set[int]]:
        i = b.rng.choice([j for j in range(1, len(ls) - 1) if _ts_of(ls[j]).strftime("%H:%M") == "15:59"
                          and _ts_of(ls[j]).weekday() < 4])
        when = _ts_of(ls[i]).replace(hour=int(hhmmss[:2]), minute=int(hhmmss[3:5]), second=0)
        return [*ls[: i + 1], _fmt(when) + ls[i][19:], *ls[i + 1:]], {i + 2}
    return fn


def _append_saturday(b: Builder) -> Callable:
    def fn(ls: list[bytes]) -> tuple[list[bytes], set[int]]:
        t = _ts_of(ls[-1])
        sat = (t + timedelta(days=(5 - t.weekday()) % 7 or 7)).replace(hour=10, minute=0, second=0)
        return [*ls, _fmt(sat) + ls[-1][19:]], {len(ls) + 1}
    return fn


def _insert_offgrid(b: Builder) -> Callable:
    def fn(ls: list[bytes]) -> tuple[list[bytes], set[int]]:
        i = b.pick()
        return [*ls[: i + 1], _fmt(_ts_of(ls[i]) + timedelta(seconds=30)) + ls[i][19:], *ls[i + 1:]], {i + 2}
    return fn


def special_cases(base: bytes) -> list[DataCase]:
    """Paths that are not a regular readable file. Each is read in a forked child with a
    timeout: opening a FIFO for reading would block this process until a writer comes."""
    def fifo(p: Path) -> None:
        os.mkfifo(p)

    def directory(p: Path) -> None:
        p.mkdir()
        (p / "ES_bt.csv").write_bytes(base)

    def unreadable(p: Path) -> None:
        p.write_bytes(base)
        p.chmod(0)

    def socket_file(p: Path) -> None:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        s.close()

    def link_to(target: str) -> Callable[[Path], None]:
        return lambda p: p.symlink_to(target)

    def loop(p: Path) -> None:
        p.symlink_to(p.name)  # points at itself

    def under_a_file(p: Path) -> None:  # the path's parent is a regular file
        p.parent.rename(p.parent.with_name(p.parent.name + ".d"))
        p.parent.write_bytes(b"a file, not a directory")

    missing = {"missing-file"}
    return [
        DataCase("directory named like the file", make=directory, expect_rules={"not-a-file"}),
        DataCase("FIFO (named pipe)", make=fifo, expect_rules={"not-a-file"}),
        DataCase("socket", make=socket_file, expect_rules={"not-a-file"}),
        DataCase("symlink to /dev/zero", make=link_to("/dev/zero"), expect_rules={"not-a-file"}),
        DataCase("symlink to /dev/null", make=link_to("/dev/null"), expect_rules={"not-a-file"}),
        DataCase("dangling symlink", make=link_to("nowhere.csv"), expect_rules=missing),
        DataCase("symlink loop", make=loop, expect_rules={"unreadable", "missing-file"}),
        DataCase("file missing", make=lambda p: None, expect_rules=missing),
        DataCase("parent is a file", make=under_a_file, expect_rules=missing),
        DataCase("permission denied", make=unreadable, expect_rules={"unreadable"}, as_nobody=True),
    ]


def random_corruption(rng: random.Random, base: bytes) -> tuple[str, bytes]:
    """1-4 random byte- or line-level edits (flips, inserts, deletes, truncation, NULs,
    non-UTF-8 bytes, another digit, duplicated / dropped / swapped lines, CRLF)."""
    data = bytearray(base)
    ops = []
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["flip", "replace", "insert", "delete", "truncate", "nul", "non-utf8", "digit", "digit",
                         "digit", "dup-line", "drop-line", "swap-lines", "crlf"])
        ops.append(op)
        i = rng.randrange(max(len(data), 1))
        if op == "flip" and data:
            data[i] ^= 1 << rng.randrange(8)
        elif op == "replace" and data:
            data[i] = rng.choice(b"0123456789,.-+: \t\n\r\x00eEnaifT\"\xff\xc3\xa9\x80")
        elif op == "insert":
            data[i:i] = bytes(rng.choice(b"0123456789,.-+: \t\n\r\x00e\xff") for _ in range(rng.randint(1, 3)))
        elif op == "delete":
            del data[i: i + rng.randint(1, 4)]
        elif op == "truncate":
            del data[i:]
        elif op == "nul":
            data[i:i] = b"\x00"
        elif op == "non-utf8":
            data[i:i] = rng.choice([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"])
        elif op == "digit":
            digits = [j for j, x in enumerate(data) if 48 <= x <= 57]
            if digits:
                data[rng.choice(digits)] = rng.randint(48, 57)
        elif op == "crlf":
            data = bytearray(bytes(data).replace(b"\n", b"\r\n"))
        else:
            lines = bytes(data).split(b"\n")
            if len(lines) > 3:
                j = rng.randrange(1, len(lines) - 1)
                if op == "dup-line":
                    lines.insert(j, lines[j])
                elif op == "drop-line":
                    del lines[j]
                else:
                    lines[j], lines[j + 1] = lines[j + 1], lines[j]
                data = bytearray(b"\n".join(lines))
    return "+".join(ops), bytes(data)


def excerpt(rng: random.Random, lines: list[bytes]) -> bytes:
    """A small valid file: the header and 40 consecutive rows, sometimes with openinterest."""
    start = rng.randrange(1, len(lines) - 40)
    rows = lines[start: start + 40]
    if rng.random() < 0.3:
        return b"\n".join([lines[0] + b",openinterest", *(r + b",%d" % k for k, r in enumerate(rows))]) + b"\n"
    return b"\n".join([lines[0], *rows]) + b"\n"


def run_data(args, tmp: Path, cfg, tallies: dict[str, Tally]) -> None:
    global YEARS
    YEARS = (cfg.pipeline.data.min_year, cfg.pipeline.data.max_year)
    rng = random.Random(args.seed * 1000 + 1)
    calendar = cfg.instrument("ES").calendar
    start = datetime(2024, 11, 4)
    end = start + timedelta(days=args.data_days - 1)
    gen = tmp / "sample"
    base_path = write_sample_data(gen, ["ES"], start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d"), seed=args.seed,
                                  edge=1.0, cfg=cfg, market=load_sample_market(cfg.config_dir))[0]
    base = base_path.read_bytes()
    if reference(base, calendar)[0] is None:
        raise HarnessError(f"the generated file is not valid by the reference: {reference(base, calendar)[2]}")
    b = Builder(base, rng)
    cases = [DataCase("the valid file itself", base), *structured_cases(b), *special_cases(base)]
    for k in range(args.random_data):
        name, data = random_corruption(rng, base if rng.random() < 0.2 else excerpt(rng, b.lines))
        cases.append(DataCase(f"random #{k}: {name}", data))
    print(f"  data: {len(cases)} inputs from a {len(b.lines) - 1}-row file ({len(base) / 1e6:.1f} MB), 3 repair modes",
          flush=True)
    modes = {"strict": (STRICT, "1a. data files, every repair off"),
             "pipeline": (cfg.pipeline.data.repairs, "1b. data files, pipeline.yml repairs"),
             "lenient": (LENIENT, "1c. data files, every repair on")}
    for k, case in enumerate(cases):
        folder = tmp / "data" / f"{k:04d}"
        folder.mkdir(parents=True)
        folder.parent.chmod(0o755)
        if case.as_nobody:
            folder.chmod(0o755)  # 'nobody' may enter, not read the file
        path = folder / "ES_bt.csv"
        if case.make:
            case.make(path)
        else:
            path.write_bytes(case.data)
        for mode, (repairs, row) in modes.items():
            res = (gate_forked(path, repairs, calendar, case.as_nobody) if case.make
                   else gate(path, repairs, calendar))
            tallies[row].record(case.name, *judge_data(mode, case, res, path, calendar))
        if case.make is None:
            path.unlink()
    run_check_data_cli(tmp, cfg, base, tallies["1d. `rooney check-data` runs"])


def run_check_data_cli(tmp: Path, cfg, base: bytes, tally: Tally) -> None:
    """A directory of good and bad files through the real CLI: every file is checked and
    reported whatever the others are, with no traceback and no hang."""
    root = tmp / "cli-data"
    root.mkdir()
    root.chmod(0o755)
    cdir = cfg.config_dir
    env = cli_env(tmp, cdir)
    lines = base.splitlines()
    fields = lines[9].split(b",")
    fields[HIGH] = b"abc"
    bad_number = b"\n".join([*lines[:9], b",".join(fields), *lines[10:]]) + b"\n"  # line 10 of the file
    mixed = root / "mixed"
    mixed.mkdir()
    mixed.chmod(0o755)
    (mixed / "ES_bt.csv").write_bytes(base)
    (mixed / "NQ_bt.csv").write_bytes(bad_number)
    os.mkfifo(mixed / "GC_bt.csv")
    (mixed / "SI_bt.csv").mkdir()
    (mixed / "CL_bt.csv").write_bytes(gzip.compress(base, mtime=0))
    (mixed / "NG_bt.csv").write_bytes(base)
    (mixed / "NG_bt.csv").chmod(0)  # unreadable unless we are root
    bad = ["NQ_bt.csv", "GC_bt.csv", "SI_bt.csv", "CL_bt.csv"]
    ng_bad = os.geteuid() != 0
    expected_bad = bad + (["NG_bt.csv"] if ng_bad else [])
    good_dir = root / "good"
    good_dir.mkdir()
    for sym in ("ES", "NQ"):
        (good_dir / f"{sym}_bt.csv").write_bytes(base)
    empty = root / "empty"
    empty.mkdir()

    runs = [
        ("mixed good and bad files", ["check-data", str(mixed)], 1, expected_bad, ["ES: ok"]),
        ("all valid", ["check-data", str(good_dir)], 0, [], ["ES: ok", "NQ: ok"]),
        ("a listed file is missing", ["check-data", str(good_dir), "--symbols", "ES,GC"], 1, ["GC_bt.csv"], ["ES: ok"]),
        ("unknown symbol", ["check-data", str(good_dir), "--symbols", "ES,ZZ"], 2, ["instruments.yml"], []),
        ("no raw files at all", ["check-data", str(empty)], 1, [str(empty)], []),
    ]
    for name, argv, want_code, must_err, must_out in runs:
        code, out, err = run_cli(argv, env, cwd=root, timeout=120)
        tally.record(name, *judge_cli(code, out, err, want_code, must_err, must_out))
    if os.geteuid() == 0:  # as root mode 000 is readable: check the unreadable file as 'nobody'
        tally.record("mixed files, as a user who cannot read NG_bt.csv",
                     *judge_cli(*cli_as_nobody(["check-data", str(mixed)], env, root), 1, bad + ["NG_bt.csv"], ["ES: ok"]))


def cli_as_nobody(argv: list[str], env: dict[str, str], root: Path) -> tuple[int | None, str, str]:
    """Run the CLI's main() in a forked child that dropped root (exec is not possible: the
    interpreter lives under /root)."""
    from rooney_pipeline.cli import main

    out_path, err_path = root / "nobody.out", root / "nobody.err"

    def child() -> dict:
        with open(out_path, "w") as out, open(err_path, "w") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.environ.clear()
            os.environ.update(env)
            drop_privileges()
            sys.argv = ["rooney", *argv]
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
                code = 99
            sys.stdout.flush()
            sys.stderr.flush()
        return {"code": code}

    res = run_forked(child, timeout=60)
    code = res.get("code") if "hang" not in res else None
    return code, out_path.read_text(errors="replace"), err_path.read_text(errors="replace") + res.get("crash", "")


def judge_cli(code, out: str, err: str, want: int, must_err: list[str], must_out: list[str]) -> tuple[str, str, str]:
    if code is None:
        return FAIL, "the CLI hung", err[-500:]
    if "Traceback" in out + err:
        return FAIL, "traceback from the CLI", (out + err)[-1500:]
    if code != want:
        return FAIL, f"exit code {code}, expected {want}", (out + err)[-800:]
    missing = [s for s in must_err if s not in err] + [s for s in must_out if s not in out]
    if missing:
        return FAIL, "a file was not checked or its error names no file", f"missing {missing} in:\n{(out + err)[-1500:]}"
    for line in err.splitlines():
        if "NQ_bt.csv" in line and "abc" in line and "line 10" not in line:
            return FAIL, "error names no line", line
    return (REFUSED if want else ACCEPTED), "", ""


# ==== 2. config edits ==========================================================================

CONFIG_FILES = ["instruments.yml", "strategy.yml", "features.yml", "pipeline.yml", "sample_market.yml",
                "training/defaults.yml", "training/demo.yml", "training/PL.yml"]


def load_for(cdir: Path, file: str) -> Any:
    """Load what ``file`` feeds, as the pipeline would."""
    if file == "sample_market.yml":
        return load_sample_market(cdir)
    if file.startswith("training/"):
        layer = file.removeprefix("training/").removesuffix(".yml")
        if layer == "demo":
            return load_training_config(cdir, "ES", "demo")
        return load_training_config(cdir, "PL" if layer == "PL" else "ES")
    return load_config(cdir)


def write_yaml(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True))


def dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def get_in(data: Any, path: tuple) -> Any:
    for p in path:
        data = data[p]
    return data


def set_in(data: dict, path: tuple, value: Any) -> None:
    get_in(data, path[:-1])[path[-1]] = value


def del_in(data: dict, path: tuple) -> None:
    del get_in(data, path[:-1])[path[-1]]


def with_duplicate(text: str, path: tuple, value: Any) -> str:
    """The block YAML ``text`` with key ``path`` given a second time (before the first), at the
    same indentation; PyYAML alone would silently keep the last value."""
    lines = text.splitlines()
    at = 0
    for depth, key in enumerate(path):
        shown = yaml.safe_dump({key: 0}).split(":")[0]
        prefix = " " * (2 * depth) + shown + ":"
        at = next(i for i in range(at, len(lines)) if lines[i].startswith(prefix))
        if depth < len(path) - 1:
            at += 1
    indent = " " * (2 * (len(path) - 1))
    dup = yaml.safe_dump({path[-1]: value}, default_flow_style=True).strip()[1:-1]  # drop the outer {}
    lines.insert(at, indent + dup)
    return "\n".join(lines) + "\n"


@dataclass
class ConfigCase:
    name: str
    file: str  # relative to configs/
    op: str  # set | del | add | dup | write | arg | benign
    path: tuple = ()
    value: Any = None
    key: str = ""  # the key the error must name ("" = the dotted path)
    fragment: str = ""
    symbol: str | None = None  # op "arg": load_training_config(symbol, profile)
    profile: str | None = None
    check: Callable[[Any], bool] | None = None  # op "benign": the loaded config is right


def _s(*p) -> tuple:
    return p


def handwritten_config_cases() -> list[ConfigCase]:
    """Issue 7's config list, written out: each must be a ConfigError naming file and key."""
    INS, PIP, STR, FEA = "instruments.yml", "pipeline.yml", "strategy.yml", "features.yml"
    TD, TE, TM = "training/defaults.yml", "training/ES.yml", "training/demo.yml"
    es = _s("instruments", "ES")
    ss = _s("search_space")
    c = ConfigCase
    return [
        # instruments.yml
        c("tick_size .inf", INS, "set", es + ("tick_size",), float("inf"), fragment="finite"),
        c("tick_value .nan", INS, "set", es + ("tick_value",), float("nan"), fragment="finite"),
        c("tick_size 0", INS, "set", es + ("tick_size",), 0),
        c("tick_size negative", INS, "set", es + ("tick_size",), -0.25),
        c("tick_size a word", INS, "set", es + ("tick_size",), "quarter"),
        c("tick_size duplicate key", INS, "dup", es + ("tick_size",), 25, fragment="duplicate key"),
        c("instrument listed twice", INS, "dup", es, {"name": "x"}, fragment="duplicate key"),
        c("unknown pair", INS, "set", es + ("pair",), "ZZ", fragment="unknown instrument"),
        c("pair with itself", INS, "set", es + ("pair",), "ES"),
        c("unknown session", INS, "set", es + ("session",), "cme_globx", fragment="unknown session"),
        c("typo in an instrument key", INS, "add", es + ("tick_sise",), 0.25),
        c("required key removed", INS, "del", es + ("tick_value",), key="instruments.ES.tick_value"),
        c("lower-case symbol", INS, "add", _s("instruments", "es"), {"name": "x", "tick_size": 0.25, "tick_value": 12.5,
                                                                   "session": "cme_equity"}),
        c("symbol that is a path", INS, "add", _s("instruments", "../ES"), {"name": "x", "tick_size": 0.25,
                                                                          "tick_value": 12.5, "session": "cme_equity"}),
        c("instrument is a string", INS, "set", es, "ES"),
        c("negative commission", INS, "set", _s("costs", "commission_per_side"), -2),
        c("slippage .inf", INS, "set", _s("costs", "slippage_ticks"), float("inf")),
        c("session opens at 25:00", INS, "set", _s("sessions", "cme_equity", "open"), "25:00"),
        c("unknown time zone", INS, "set", _s("sessions", "cme_equity", "timezone"), "America/Chicagoo"),
        c("session close is a list", INS, "set", _s("sessions", "cme_equity", "close"), [16, 0]),
        c("per-instrument commission .nan", INS, "set", es + ("commission_per_side",), float("nan")),
        # pipeline.yml
        c("duplicate data symbol", PIP, "set", _s("data", "symbols"), ["ES", "NQ", "ES"], key="data.symbols.2",
          fragment="listed twice"),
        c("unknown data symbol", PIP, "set", _s("data", "symbols"), ["ES", "XX"], key="data.symbols.1",
          fragment="unknown instrument"),
        c("no data symbols", PIP, "set", _s("data", "symbols"), []),
        c("data symbols a string", PIP, "set", _s("data", "symbols"), "ES"),
        c("symbol that is a path in data.symbols", PIP, "set", _s("data", "symbols"), ["ES", "../pipeline"],
          key="data.symbols.1"),
        c("unknown repair", PIP, "set", _s("data", "repairs", "bom"), "ignore"),
        c("min_year before datetime64[ns]", PIP, "set", _s("data", "min_year"), 1600),
        c("min_year after max_year", PIP, "set", _s("data", "min_year"), 2200, key="data"),
        c("max_year a float", PIP, "set", _s("data", "max_year"), 2100.5),
        c("typo in repairs", PIP, "add", _s("data", "repairs", "nan_values"), "drop"),
        *(c(f"backtest.start {d}", PIP, "set", _s("backtest", "start"), d) for d in
          ("2021-02-29", "2021-02-30", "2021-02-31", "2023-13-45", "2023-1-1", "yesterday")),
        c("backtest.end impossible", PIP, "set", _s("backtest", "end"), "2024-06-31"),
        c("backtest.end before start", PIP, "set", _s("backtest", "end"), "2022-12-31", fragment="before start"),
        c("initial_capital .inf", PIP, "set", _s("backtest", "initial_capital"), float("inf"), fragment="finite"),
        c("initial_capital negative", PIP, "set", _s("backtest", "initial_capital"), -1),
        c("sample start after end", PIP, "set", _s("sample_data", "start"), "2321-01-01", key="sample_data.end"),
        c("sample seed negative", PIP, "set", _s("sample_data", "seed"), -7),
        c("sample edge .nan", PIP, "set", _s("sample_data", "edge"), float("nan")),
        c("duplicate sample symbol", PIP, "set", _s("sample_data", "symbols"), ["GC", "GC"], key="sample_data.symbols.1"),
        c("negative duration", PIP, "set", _s("reconciliation", "time_tolerance"), "-5min", fragment="negative"),
        c("duration a sentence", PIP, "set", _s("reconciliation", "time_tolerance"), "five minutes"),
        c("month 13", PIP, "set", _s("feature_validation", "month"), "2023-13"),
        c("agreement above 1", PIP, "set", _s("feature_validation", "min_agreement"), 1.5),
        c("unknown executor", PIP, "set", _s("execution", "executor"), "dask2"),
        c("zero dask workers", PIP, "set", _s("execution", "dask", "n_workers"), 0),
        c("typo at the top", PIP, "add", _s("lake_dirr",), "x"),
        c("duplicate top-level key", PIP, "dup", _s("lake_dir",), "/tmp/elsewhere", fragment="duplicate key"),
        c("tolerance .inf", PIP, "set", _s("feature_validation", "tolerance"), float("inf")),
        # strategy.yml, features.yml
        c("ibs_max above 1", STR, "set", _s("entry", "ibs_max"), 1.5),
        c("window to 24:00", STR, "set", _s("entry", "windows"), [["17:00", "24:00"]]),
        c("windows a string", STR, "set", _s("entry", "windows"), "17:00-23:00"),
        c("stop loss 0", STR, "set", _s("exits", "stop_loss_pct"), 0),
        c("holding bars 0", STR, "set", _s("exits", "max_holding_bars"), 0),
        c("holding bars 2.5", STR, "set", _s("exits", "max_holding_bars"), 2.5),
        c("exit bar 14:60", STR, "set", _s("exits", "session_exit_bar"), "14:60"),
        c("unknown veto policy", STR, "set", _s("veto", "when_no_model"), "maybe"),
        c("negative contracts", STR, "set", _s("sizing", "contracts"), -1),
        c("duplicate exit key", STR, "dup", _s("exits", "ibs_exit"), 0.9, fragment="duplicate key"),
        c("negative staleness", FEA, "set", _s("pair_max_staleness",), "-2h", fragment="negative"),
        c("staleness NaT", FEA, "set", _s("pair_max_staleness",), "NaT"),
        c("unknown feature", FEA, "set", _s("selection",), ["ibs", "ibz"], key="selection.1"),
        c("feature listed twice", FEA, "set", _s("selection",), ["ibs", "ibs"], key="selection.1"),
        c("no features", FEA, "set", _s("selection",), []),
        # training layers
        c("empty min_samples_leaf", TE, "write", value={"search_space": {"min_samples_leaf": []}},
          key="search_space.min_samples_leaf"),
        c("n_estimators low above high", TE, "write", value={"search_space": {"n_estimators": {"low": 1200, "high": 200,
                                                                                               "step": 100}}},
          key="search_space.n_estimators"),
        c("max_features sqrt3", TE, "write", value={"search_space": {"max_features": ["sqrt3"]}},
          key="search_space.max_features.0"),
        c("max_samples low above high", TD, "set", ss + ("max_samples",), {"low": 0.95, "high": 0.5}),
        c("threshold .nan", TE, "write", value={"threshold_grid": [float("nan")]}, key="threshold_grid.0"),
        c("trials 0", TE, "write", value={"trials": 0}, key="trials"),
        c("typo in a training key", TE, "write", value={"trails": 10}, key="trails"),
        c("max_depth 0", TE, "write", value={"search_space": {"max_depth": [0]}}, key="search_space.max_depth.0"),
        c("class_weight typo", TE, "write", value={"search_space": {"class_weight": ["balancd"]}},
          key="search_space.class_weight.0"),
        c("duplicate key in the profile", TM, "dup", _s("trials",), 800, fragment="duplicate key"),
        c("holdout_years .inf", TD, "set", _s("holdout_years",), float("inf")),
        c("unknown training feature", TE, "write", value={"features": ["ibs", "ibz"]}, key="features.1"),
        c("search_space null", TE, "write", value={"search_space": None}, key="search_space"),
        c("storage a number", TE, "write", value={"storage": 5}, key="storage"),
        c("unknown pruner", TE, "write", value={"pruner": {"kind": "mean"}}, key="pruner.kind"),
        c("shared_study a path", TE, "write", value={"shared_study": "../x"}, key="shared_study"),
        # names from the command line (--profile, --symbol)
        *(c(f"--profile {p!r}", TD, "arg", profile=p, symbol="ES", fragment="plain name") for p in
          ("../../x", "../pipeline", "/tmp/x", "demo/../demo", "..", "")),
        *(c(f"--symbol {s!r}", TD, "arg", symbol=s, fragment="unknown instrument") for s in
          ("../pipeline", "ES/../NQ", "es", "XX", "")),
        c("--profile that does not exist", TD, "arg", symbol="ES", profile="nosuch", fragment="not found"),
        # benign edits: accepted, with the value they say
        c("unchanged configs", PIP, "benign", check=lambda cfg: cfg.instrument("ES").point_value == 50.0),
        c("backtest.end set", PIP, "benign", _s("backtest", "end"), "2024-06-30",
          check=lambda cfg: cfg.pipeline.backtest.end == "2024-06-30"),
        c("tick_size changed", INS, "benign", es + ("tick_size",), 0.5, check=lambda cfg: cfg.instrument("ES").point_value == 25),
        c("feature subset", FEA, "benign", _s("selection",), ["ibs", "rsi2"],
          check=lambda cfg: list(cfg.features.selection) == ["ibs", "rsi2"]),
    ]


def leaves(data: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Paths of every scalar or list value (and of every mapping, marked by a trailing None)."""
    if isinstance(data, dict):
        yield (*prefix, None)
        for k, v in data.items():
            yield from leaves(v, (*prefix, k))
    else:
        yield prefix


def generated_config_cases(rng: random.Random, count: int, pristine: Path) -> list[ConfigCase]:
    """Random invalid edits of any key of any config file: a value that is never valid (.inf,
    a mapping), an unknown key in any mapping, or any key given twice."""
    pool = []
    for file in CONFIG_FILES:
        for path in leaves(read_yaml(pristine / file)):
            if path[-1] is None:
                pool.append(ConfigCase(f"{file}: unknown key under '{dotted(path[:-1]) or '<top>'}'", file, "add",
                                       (*path[:-1], "zz_bogus_key"), 1))
                continue
            pool.append(ConfigCase(f"{file}: '{dotted(path)}' = .inf", file, "set", path, float("inf")))
            pool.append(ConfigCase(f"{file}: '{dotted(path)}' = a mapping", file, "set", path, {"zz_bogus": 1}))
            pool.append(ConfigCase(f"{file}: '{dotted(path)}' given twice", file, "dup", path, 1,
                                   fragment="duplicate key"))
    return rng.sample(pool, min(count, len(pool)))


def apply_config_case(cdir: Path, case: ConfigCase) -> None:
    path = cdir / case.file
    if case.op == "write":
        write_yaml(path, case.value)
        return
    if case.op == "arg":
        (cdir.parent / "x.yml").write_text("trials: 3\n")  # a valid layer outside configs/training
        (cdir / "training" / "XX.yml").write_text("trials: 3\n")
        return
    data = read_yaml(path)
    if case.op in ("set", "add") or (case.op == "benign" and case.path):
        set_in(data, case.path, case.value)
    elif case.op == "del":
        del_in(data, case.path)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if case.op == "dup":
        text = with_duplicate(text, case.path, case.value)
    path.write_text(text)


def judge_config(cdir: Path, case: ConfigCase) -> tuple[str, str, str]:
    try:
        if case.op == "arg":
            loaded = load_training_config(cdir, case.symbol, case.profile)
        else:
            loaded = load_for(cdir, case.file)
    except ConfigError as exc:
        msg = str(exc)
        if case.op == "benign":
            return FAIL, "valid config refused", msg
        return judge_config_message(cdir, case, msg)
    except Exception as exc:  # noqa: BLE001
        return FAIL, f"{type(exc).__name__} instead of ConfigError", _traceback_text(exc)
    if case.op == "benign":
        return (ACCEPTED, "", "") if case.check(loaded) else (FAIL, "config loaded with other values", case.name)
    return FAIL, "bad config silently accepted", case.name


def judge_config_message(cdir: Path, case: ConfigCase, msg: str) -> tuple[str, str, str]:
    """A line of the message names the file and the key (and says ``fragment``)."""
    if case.op == "arg":
        value = case.profile if case.profile is not None else case.symbol
        needed = [value, str(cdir)]
        ok = all(n in msg for n in needed) and case.fragment in msg
        return (REFUSED, "", "") if ok else (FAIL, "error names no file or no value", msg)
    file = str(cdir / case.file)
    key = case.key or dotted(case.path)
    pattern = re.compile(re.escape(f"key '{key}") + r"['.]")
    for line in msg.splitlines():
        if file in line and pattern.search(line) and case.fragment in line:
            return REFUSED, "", ""
    why = "error names no file" if file not in msg else "error does not name the key"
    return FAIL, why, f"expected {file} and key '{key}' {case.fragment!r} on one line:\n{msg}"


def run_config(args, tmp: Path, tally: Tally) -> None:
    rng = random.Random(args.seed * 1000 + 2)
    pristine = tmp / "configs-pristine"
    shutil.copytree(DEFAULT_CONFIG_DIR, pristine)
    check_roundtrip(tmp, pristine)
    cases = handwritten_config_cases() + generated_config_cases(rng, args.config_mutations, pristine)
    print(f"  config: {len(cases)} edits", flush=True)
    for k, case in enumerate(cases):
        cdir = (tmp / "cfg" / f"{k:04d}" / "configs")
        shutil.copytree(pristine, cdir)
        cdir = cdir.resolve()
        apply_config_case(cdir, case)
        tally.record(f"{case.file}: {case.name}", *judge_config(cdir, case))
        shutil.rmtree(cdir.parent)
    # The CLI stops on a config error before touching data, with exit code 2 and no traceback.
    cdir = tmp / "cfg" / "cli" / "configs"
    shutil.copytree(pristine, cdir)
    apply_config_case(cdir, ConfigCase("", "pipeline.yml", "set", _s("backtest", "start"), "2021-02-30"))
    code, out, err = run_cli(["check-data", str(tmp)], cli_env(tmp, cdir), cwd=tmp)
    ok = code == 2 and "Traceback" not in err and "backtest.start" in err and str(cdir / "pipeline.yml") in err
    tally.record("CLI with an impossible backtest.start", *((REFUSED, "", "") if ok else
                                                            (FAIL, "CLI config error unclear", f"exit {code}: {err[-800:]}")))


def check_roundtrip(tmp: Path, pristine: Path) -> None:
    """The edits rewrite files with yaml.safe_dump: make sure an unedited rewrite loads the same."""
    copy = tmp / "cfg-roundtrip"
    shutil.copytree(pristine, copy)
    for file in CONFIG_FILES:
        write_yaml(copy / file, read_yaml(pristine / file))
    for file in CONFIG_FILES:
        a, b = load_for(pristine, file), load_for(copy, file)
        if a.model_dump(exclude={"config_dir"}) != b.model_dump(exclude={"config_dir"}):
            raise HarnessError(f"rewriting {file} with yaml.safe_dump changes what it loads")
    shutil.rmtree(copy)


# ==== 3. model store cases and file tampers =====================================================

FEATURES = ["ibs", "rsi2", "ret1", "atr14_close"]


def make_forest(seed: int = 7, n_estimators: int = 8) -> RandomForestClassifier:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(FEATURES)))
    y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    return RandomForestClassifier(n_estimators=n_estimators, max_depth=4, random_state=seed, n_jobs=1).fit(x, y)


def make_bundle(symbol: str = "ES", seed: int = 7, estimator=None, threshold: float = 0.55) -> VetoBundle:
    # code_version and library_versions given: no git subprocess per bundle
    return VetoBundle(symbol=symbol, estimator=estimator if estimator is not None else make_forest(seed),
                      feature_names=FEATURES, threshold=threshold, registry_version="1",
                      feature_schema_hash="schema", data_hash="data", config={"seed": seed}, metrics={},
                      library_versions={}, code_version="bench")


class Boom:
    """Unpickling this runs ``touch <marker>``: what a hostile "model" file can do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass
class StoreCtx:
    """One case's private copy of the pristine store: ES_v1, ES_v2 (production, previous
    ES_v1), NQ_v1 (production)."""

    tmp: Path
    store: ModelStore
    marker: Path
    other: ModelStore  # another store, for bundles that are real but not ours
    hashes: dict[str, str]

    @property
    def vdir(self) -> Path:
        return self.store.versions_dir

    @property
    def files(self) -> tuple[str, ...]:
        """An integrity error must name the file to restore: a path in the store, or the name
        of one of the store's files."""
        return (str(self.store.root), "versions.log", "manifest.json", "bundle.skops", "bundle.joblib")

    def bundle_path(self, name: str) -> Path:
        return self.vdir / name / "bundle.skops"

    def other_bundle(self, name: str = "ES_v1") -> bytes:
        return (self.other.versions_dir / name / "bundle.skops").read_bytes()

    def edit_json(self, path: Path, fn: Callable[[Any], Any]) -> None:
        data = json.loads(path.read_text())
        path.write_text(json.dumps(fn(data)))

    def add_recorded(self, name: str, data: bytes) -> None:
        """A new version folder with a record line for its bytes: what an attacker who can
        append to versions.log could plant (the decoder is the last line of defence)."""
        (self.vdir / name).mkdir()
        (self.vdir / name / "bundle.skops").write_bytes(data)
        (self.vdir / name / "metadata.json").write_text(json.dumps({"symbol": name.split("_v")[0], "version": name}))
        with open(self.store.records_path, "a") as fh:
            fh.write(json.dumps({"version": name, "symbol": name.split("_v")[0],
                                 "sha256": hashlib.sha256(data).hexdigest()}) + "\n")


def refuses(fn: Callable[[], Any], *needles: str | tuple[str, ...], types: tuple = (RooneyError,),
            fragment: str = "") -> tuple[str, str, str]:
    """Expect one of our errors of ``types`` whose message contains every needle (a path
    usually; a tuple needle: any one of its strings) and ``fragment``."""
    try:
        with deadline(30):
            got = fn()
    except types as exc:
        msg = str(exc)
        missing = [n for n in needles if not any(x in msg for x in (n if isinstance(n, tuple) else (n,)))]
        if missing:
            return FAIL, "error names no file", f"{type(exc).__name__}: {msg!r} lacks {missing}"
        if fragment and fragment not in msg:
            return FAIL, "error does not say why", f"{msg!r} lacks {fragment!r}"
        return REFUSED, "", ""
    except RooneyError as exc:
        return FAIL, f"{type(exc).__name__} instead of {'/'.join(t.__name__ for t in types)}", str(exc)
    except TimeoutError as exc:
        return FAIL, "hang", str(exc)
    except Exception as exc:  # noqa: BLE001
        return FAIL, f"traceback: {type(exc).__name__}", _traceback_text(exc)
    return FAIL, "accepted", _short(repr(got), 300)


def works(fn: Callable[[], Any], check: Callable[[Any], bool] = lambda _: True, what: str = "") -> tuple[str, str, str]:
    try:
        with deadline(30):
            got = fn()
    except Exception as exc:  # noqa: BLE001
        return FAIL, f"benign case failed: {type(exc).__name__}", _traceback_text(exc)
    return (ACCEPTED, "", "") if check(got) else (FAIL, "wrong result", f"{what}: {_short(repr(got), 300)}")


def all_of(*results: tuple[str, str, str]) -> tuple[str, str, str]:
    """The first failure; else "refused" if any part was refused, else "accepted"."""
    return next((r for r in results if r[0] == FAIL), None) or \
        next((r for r in results if r[0] == REFUSED), results[0])


def store_name_cases() -> list[tuple[str, Callable[[StoreCtx], tuple]]]:
    """Names, arguments and operations: refused by name, or benign and correct."""
    def load(name: str) -> Callable[[StoreCtx], tuple]:
        return lambda c: refuses(lambda: c.store.load(name), str(c.vdir), types=(ModelStoreError,))

    cases: list[tuple[str, Callable[[StoreCtx], tuple]]] = [
        (f"load({n!r})", load(n)) for n in ("../x", "ES_v01", "ES_v1/", "./ES_v1", "ES_v0", "ES_v99", "", "ES_v1\n",
                                             "ES_v1\x00", "es_v1", "ES_v1/../ES_v2", "versions/ES_v1", "..")]
    cases += [
        ("load(absolute path of ES_v1)", lambda c: refuses(lambda: c.store.load(str(c.vdir / "ES_v1")), str(c.vdir))),
        ("load(None)", lambda c: refuses(lambda: c.store.load(None), str(c.vdir))),
        ("verify('../../etc/passwd')", lambda c: refuses(lambda: c.store.verify("../../etc/passwd"), str(c.vdir))),
        ("promote('../x')", lambda c: refuses(lambda: c.store.promote("../x", by="a"), str(c.vdir))),
        ("promote('ES_v99')", lambda c: refuses(lambda: c.store.promote("ES_v99", by="a"), str(c.vdir))),
        ("promote without by=", lambda c: refuses(lambda: c.store.promote("ES_v1", by=" "), "ES_v1")),
        ("rollback with no earlier version", lambda c: refuses(lambda: c.store.rollback("NQ", by="a"), "NQ")),
        ("rollback of an unknown instrument", lambda c: refuses(lambda: c.store.rollback("ZZ", by="a"), "ZZ")),
        ("add_version extra file '../evil'", lambda c: all_of(
            refuses(lambda: c.store.add_version(make_bundle(), {"../evil": b""}), "../evil"),
            (FAIL, "file written outside", "") if (c.store.root / "evil").exists() else (REFUSED, "", ""))),
        ("add_version extra file 'bundle.skops'", lambda c: refuses(
            lambda: c.store.add_version(make_bundle(), {"bundle.skops": b"x"}), "bundle.skops")),
        ("add_version extra file '.hidden'", lambda c: refuses(
            lambda: c.store.add_version(make_bundle(), {".hidden": b"x"}), ".hidden")),
        ("add_version of a non-bundle", lambda c: refuses(lambda: c.store.add_version("model"), "str")),
        ("add_version extra file of str", lambda c: refuses(
            lambda: c.store.add_version(make_bundle(), {"r.html": "text"}), "r.html")),
        ("store root is a regular file", lambda c: refuses(
            lambda: _file_root(c).add_version(make_bundle()), str(c.tmp / "rootfile"))),
        ("load_production of an instrument with none", lambda c: works(lambda: c.store.load_production("ZZ"),
                                                                       lambda r: r is None)),
        ("promote the production version again", lambda c: works(
            lambda: (c.store.promote("ES_v2", by="a"), len(c.store.audit_log())), lambda r: r[1] == 3,
            "audit entries")),
        ("promote then rollback", lambda c: works(
            lambda: (c.store.promote("ES_v1", by="a"), c.store.rollback("ES", by="b"), c.store.load_production("ES")[0]),
            lambda r: r[2] == "ES_v2", "production after rollback")),
        ("add_version numbers per instrument", lambda c: works(lambda: c.store.add_version(make_bundle("NQ", seed=3)),
                                                               lambda r: r == "NQ_v2")),
        ("store that does not exist yet", lambda c: works(
            lambda: (ModelStore(c.tmp / "nothing").list_versions(), ModelStore(c.tmp / "nothing").manifest(),
                     ModelStore(c.tmp / "nothing").load_production("ES")),
            lambda r: r == ([], {"instruments": {}, "updated_at": None}, None))),
        ("a dead writer's temp folder", lambda c: _dead_writer_temp(c)),
        ("a stale manifest temp file", lambda c: works(
            lambda: (_touch(c.store.root / ".manifest.json.abc123.tmp", b"{garbage"), c.store.promote("ES_v1", by="a"),
                     list(c.store.root.glob(".manifest.json.*"))), lambda r: r[2] == [], "temp files after promote")),
        ("a version folder 'ES_v3\\n'", lambda c: _newline_version(c)),
        ("a version folder 'ES_v1.bak'", lambda c: works(
            lambda: (shutil.copytree(c.vdir / "ES_v1", c.vdir / "ES_v1.bak"),
                     [m["version"] for m in c.store.list_versions()]), lambda r: r[1] == ["ES_v1", "ES_v2", "NQ_v1"])),
        ("a regular file named ES_v3", lambda c: all_of(
            works(lambda: (_touch(c.vdir / "ES_v3", b"x"), c.store.list_versions())[1], lambda r: len(r) == 3),
            refuses(lambda: c.store.load("ES_v3"), str(c.vdir)))),
        ("load_bundle_file without trust", lambda c: refuses(
            lambda: load_bundle_file(c.bundle_path("ES_v1"), trust_file=False), str(c.bundle_path("ES_v1")),
            types=(UnsafeBundleError,))),
        ("load_bundle_file of a pickle, trusted", lambda c: refuses(
            lambda: load_bundle_file(_touch(c.tmp / "evil.joblib", pickle.dumps(Boom(c.marker))), trust_file=True),
            str(c.tmp / "evil.joblib"), types=(UnsafeBundleError,), fragment="pickle")),
        ("load_bundle_file of a skops naming os.system, trusted", lambda c: refuses(
            lambda: load_bundle_file(_touch(c.tmp / "h.skops", _hostile_skops()), trust_file=True),
            str(c.tmp / "h.skops"), types=(UnsafeBundleError,), fragment="posix.system")),
        ("load_bundle_file of a directory", lambda c: refuses(
            lambda: load_bundle_file(c.vdir / "ES_v1", trust_file=True), str(c.vdir / "ES_v1"),
            types=(UnsafeBundleError,))),
        ("load_bundle_file of a FIFO", lambda c: _forked_refusal(
            c, lambda: (os.mkfifo(c.tmp / "fifo.skops"), load_bundle_file(c.tmp / "fifo.skops", trust_file=True)),
            str(c.tmp / "fifo.skops"))),
        ("load_bundle_file of a genuine bundle, trusted", lambda c: works(
            lambda: load_bundle_file(c.bundle_path("ES_v1"), trust_file=True)[0].content_hash(),
            lambda h: h == c.hashes["ES_v1"])),
    ]
    cases += cli_store_cases()
    return cases


def _touch(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _hostile_skops() -> bytes:
    import skops.io as sio

    return sio.dumps({"format": 2, "estimator": os.system, "bundle": "{}"})


def _file_root(c: StoreCtx) -> ModelStore:
    (c.tmp / "rootfile").write_bytes(b"not a directory")
    return ModelStore(c.tmp / "rootfile")


def _dead_writer_temp(c: StoreCtx) -> tuple[str, str, str]:
    """A killed writer's .tmp- folder goes on the next write; a live writer's stays."""
    proc = subprocess.Popen(["true"])
    proc.wait()  # a pid that is certainly dead now
    host = socket.gethostname().replace("/", "_") or "host"
    dead = c.vdir / f".tmp-ES-{proc.pid}-{host}-abc123"
    live = c.vdir / f".tmp-ES-{os.getpid()}-{host}-def456"
    for d in (dead, live):
        d.mkdir()
        (d / "bundle.skops").write_bytes(b"half")
    return works(lambda: (c.store.add_version(make_bundle(seed=5)), dead.exists(), live.exists()),
                 lambda r: r[1:] == (False, True), "(name, dead temp left, live temp kept)")


def _newline_version(c: StoreCtx) -> tuple[str, str, str]:
    """A folder whose name ends in a newline matches a `$`-anchored name pattern; it must not
    pass for a verified version."""
    shutil.copytree(c.vdir / "ES_v1", c.vdir / "ES_v3\n")
    return all_of(works(lambda: c.store.list_versions(), lambda r: True),
                  refuses(lambda: c.store.load("ES_v3\n"), str(c.vdir)),
                  refuses(lambda: c.store.promote("ES_v3\n", by="a"), str(c.vdir)))


def _forked_refusal(c: StoreCtx, fn: Callable[[], Any], needle: str) -> tuple[str, str, str]:
    """``refuses`` in a forked child: for a FIFO, which could block a plain open() for good."""
    out = run_forked(lambda: {"r": list(refuses(fn, needle))}, timeout=30)
    if "hang" in out:
        return FAIL, "hang", out["hang"]
    if "crash" in out:
        return FAIL, "crash", out.get("traceback", out["crash"])
    return tuple(out["r"])


def cli_store_cases() -> list[tuple[str, Callable[[StoreCtx], tuple]]]:
    """Issue 7's reproduction through the real CLI: a pickle named ES_v1 in the working
    directory, --model-file with and without --trust-file, another instrument's model, and
    `models list` on a damaged store."""
    def backtest(c: StoreCtx, *extra: str) -> tuple[int | None, str, str]:
        (c.tmp / "ES_v1").write_bytes(pickle.dumps(Boom(c.marker)))
        data = c.tmp / "data"
        data.mkdir(exist_ok=True)
        env = cli_env(c.tmp, DEFAULT_CONFIG_DIR, store=c.tmp / "empty-store")
        return run_cli(["backtest", "--data-dir", str(data), "--symbol", "ES", "--out", str(c.tmp / "out"), *extra],
                       env, cwd=c.tmp)

    def expect(code_out_err, *fragments: str) -> tuple[str, str, str]:
        code, out, err = code_out_err
        text = out + err
        if code is None or "Traceback" in text:
            return FAIL, "CLI hung or gave a traceback", text[-1500:]
        if code == 0 or not all(f in text for f in fragments):
            return FAIL, "CLI did not refuse clearly", f"exit {code}, expected {fragments}: {text[-800:]}"
        return REFUSED, "", ""

    def models_list(c: StoreCtx) -> tuple[str, str, str]:
        (c.bundle_path("ES_v1").parent / "metadata.json").write_bytes(b'{"sym')
        (c.vdir / "ES_v3").mkdir()
        code, out, err = run_cli(["models", "list"], cli_env(c.tmp, DEFAULT_CONFIG_DIR, store=c.store.root), cwd=c.tmp)
        ok = code == 0 and "Traceback" not in out + err and "DAMAGED" in out and "NQ_v1" in out and "ES_v2" in out
        return (ACCEPTED, "", "") if ok else (FAIL, "`models list` broke on a damaged version", f"exit {code}: {out + err}")

    return [
        ("CLI backtest --model ES_v1 (a pickle in cwd)", lambda c: expect(backtest(c, "--model", "ES_v1"),
                                                                         "unknown model version", "empty-store")),
        ("CLI backtest --model ./ES_v1", lambda c: expect(backtest(c, "--model", "./ES_v1"), "unknown model version")),
        ("CLI backtest --model-file ES_v1 without trust", lambda c: expect(
            backtest(c, "--model-file", str(c.tmp / "ES_v1")), "--trust-file")),
        ("CLI backtest --model-file ES_v1 --trust-file (a pickle)", lambda c: expect(
            backtest(c, "--model-file", str(c.tmp / "ES_v1"), "--trust-file"), "pickle", str(c.tmp / "ES_v1"))),
        ("CLI `models list` with a damaged version", models_list),
    ]


def tamper_cases() -> list[tuple[str, bool, Callable[[StoreCtx], tuple]]]:
    """(name, other instruments must still load, case). Files changed on disk after they
    were stored: refused with our error naming the file, or harmless and still correct."""
    def flip(c: StoreCtx, name: str) -> Path:
        p = c.bundle_path(name)
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x10
        p.write_bytes(bytes(data))
        return p

    def integrity(c: StoreCtx, name: str, fragment: str = "") -> tuple[str, str, str]:
        return refuses(lambda: c.store.load(name), name, c.files, types=(ModelIntegrityError,), fragment=fragment)

    def swap(c: StoreCtx, name: str) -> None:
        data = c.other_bundle()
        c.bundle_path(name).write_bytes(data)
        c.edit_json(c.vdir / name / "metadata.json", lambda m: {**m, "sha256": hashlib.sha256(data).hexdigest()})

    def manifest_edit(fn: Callable[[dict], Any]) -> Callable[[StoreCtx], tuple]:
        def case(c: StoreCtx) -> tuple[str, str, str]:
            c.edit_json(c.store.manifest_path, lambda m: (fn(m), m)[1])
            return all_of(refuses(lambda: c.store.load_production("ES"), str(c.store.manifest_path), fragment="ES"),
                          works(lambda: c.store.load_production("NQ")[0], lambda r: r == "NQ_v1"))
        return case

    def manifest_bytes(data: bytes | None, make: Callable[[Path], None] | None = None) -> Callable[[StoreCtx], tuple]:
        def case(c: StoreCtx) -> tuple[str, str, str]:
            c.store.manifest_path.unlink()
            if make:
                make(c.store.manifest_path)
            else:
                c.store.manifest_path.write_bytes(data)
            return all_of(refuses(lambda: c.store.manifest(), str(c.store.manifest_path)),
                          refuses(lambda: c.store.load_production("ES"), str(c.store.manifest_path)),
                          works(lambda: c.store.list_versions(), lambda r: len(r) == 3))
        return case

    def drop_record(c: StoreCtx, name: str) -> None:
        lines = c.store.records_path.read_text().splitlines()
        c.store.records_path.write_text("".join(x + "\n" for x in lines if f'"{name}"' not in x))

    def metadata_damaged(data: bytes | None, make: Callable[[Path], None] | None = None) -> Callable[[StoreCtx], tuple]:
        def case(c: StoreCtx) -> tuple[str, str, str]:
            meta = c.vdir / "ES_v1" / "metadata.json"
            meta.unlink()
            if make:
                make(meta)
            else:
                meta.write_bytes(data)
            return all_of(works(lambda: {m["version"]: "damaged" in m for m in c.store.list_versions()},
                                lambda r: r == {"ES_v1": True, "ES_v2": False, "NQ_v1": False}, "damaged flags"),
                          works(lambda: c.store.load("ES_v1").content_hash(), lambda h: h == c.hashes["ES_v1"]))
        return case

    def link_outside(c: StoreCtx) -> tuple[str, str, str]:
        outside = c.tmp / "outside"
        shutil.copytree(c.other.versions_dir / "ES_v1", outside)
        (c.vdir / "ES_v3").symlink_to(outside)
        return all_of(refuses(lambda: c.store.load("ES_v3"), str(c.vdir)),
                      works(lambda: [m["version"] for m in c.store.list_versions()], lambda r: "ES_v3" not in r))

    def link_bundle(c: StoreCtx) -> tuple[str, str, str]:
        copy = c.tmp / "same-bytes.skops"
        shutil.copy(c.bundle_path("ES_v1"), copy)
        c.bundle_path("ES_v1").unlink()
        c.bundle_path("ES_v1").symlink_to(copy)
        return integrity(c, "ES_v1")

    def special_bundle(make: Callable[[Path], None]) -> Callable[[StoreCtx], tuple]:
        def case(c: StoreCtx) -> tuple[str, str, str]:
            c.bundle_path("ES_v1").unlink()
            make(c.bundle_path("ES_v1"))
            return all_of(_forked_refusal(c, lambda: c.store.load("ES_v1"), str(c.vdir / "ES_v1")),
                          works(lambda: {m["version"]: "damaged" in m for m in c.store.list_versions()},
                                lambda r: r["ES_v1"], "ES_v1 listed as damaged"))
        return case

    def audit_junk(junk: bytes) -> Callable[[StoreCtx], tuple]:
        def case(c: StoreCtx) -> tuple[str, str, str]:
            with open(c.store.audit_path, "ab") as fh:
                fh.write(junk)
            return works(lambda: (c.store.promote("ES_v1", by="x"), [(r["by"], r["status"]) for r in c.store.audit_log()]),
                         lambda r: r[1][-1] == ("x", "done") and len(r[1]) == 4, "audit after a promote")
        return case

    T = ModelIntegrityError
    return [
        ("bit flip in the production bundle", True, lambda c: (flip(c, "ES_v2"), refuses(
            lambda: c.store.load_production("ES"), str(c.bundle_path("ES_v2")), types=(T,), fragment="the manifest"))[1]),
        ("bit flip in a stored bundle", True, lambda c: (flip(c, "ES_v1"), integrity(c, "ES_v1", "versions.log"))[1]),
        ("bundle truncated", True, lambda c: (c.bundle_path("ES_v1").write_bytes(c.bundle_path("ES_v1").read_bytes()[:999]),
                                              integrity(c, "ES_v1"))[1]),
        ("a byte appended to the bundle", True, lambda c: (_append(c.bundle_path("ES_v1"), b"\0"), integrity(c, "ES_v1"))[1]),
        ("bundle emptied", True, lambda c: (c.bundle_path("ES_v1").write_bytes(b""), integrity(c, "ES_v1"))[1]),
        ("bundle removed", True, lambda c: (c.bundle_path("ES_v1").unlink(), integrity(c, "ES_v1"))[1]),
        ("swapped production bundle, metadata sha256 rewritten", True, lambda c: (swap(c, "ES_v2"), refuses(
            lambda: c.store.load_production("ES"), str(c.bundle_path("ES_v2")), types=(T,), fragment="the manifest"))[1]),
        ("swapped stored bundle, metadata sha256 rewritten", True, lambda c: (swap(c, "ES_v1"), all_of(
            integrity(c, "ES_v1", "versions.log"), refuses(lambda: c.store.promote("ES_v1", by="m"), str(c.vdir),
                                                           types=(T,))))[1]),
        ("conflicting record appended to versions.log", True, lambda c: (swap(c, "ES_v1"), _append(
            c.store.records_path, (json.dumps({"version": "ES_v1", "symbol": "ES", "sha256": hashlib.sha256(
                c.other_bundle()).hexdigest()}) + "\n").encode()), integrity(c, "ES_v1", "conflicting"))[2]),
        ("record line removed from versions.log", True, lambda c: (drop_record(c, "ES_v1"),
                                                                   integrity(c, "ES_v1", "no record"))[1]),
        ("versions.log deleted", True, lambda c: (c.store.records_path.unlink(), all_of(
            integrity(c, "ES_v1", "no record"),
            works(lambda: c.store.load_production("ES")[0], lambda r: r == "ES_v2")))[1]),
        ("torn line at the end of versions.log", True, lambda c: (_append(c.store.records_path, b'{"version": "ES_v'),
                                                                  works(lambda: c.store.load(c.store.add_version(
                                                                      make_bundle(seed=4))).content_hash(),
                                                                      lambda h: h == make_bundle(seed=4).content_hash()))[1]),
        ("pickle with a marker as bundle.skops", True, lambda c: (
            c.bundle_path("ES_v1").write_bytes(pickle.dumps(Boom(c.marker))), integrity(c, "ES_v1"))[1]),
        ("pickle as bundle.joblib (format 1)", True, lambda c: (
            c.bundle_path("ES_v1").unlink(), (c.vdir / "ES_v1" / "bundle.joblib").write_bytes(pickle.dumps(Boom(c.marker))),
            integrity(c, "ES_v1", "format-1"))[2]),
        ("pickle named ES_v1 in the working directory", True, lambda c: _pickle_in_cwd(c)),
        ("recorded pickle as a new version", True, lambda c: (c.add_recorded("ES_v3", pickle.dumps(Boom(c.marker))),
                                                              refuses(lambda: c.store.load("ES_v3"), "ES_v3",
                                                                      types=(UnsafeBundleError,), fragment="pickle"))[1]),
        ("recorded skops naming os.system", True, lambda c: (c.add_recorded("ES_v3", _hostile_skops()), refuses(
            lambda: c.store.load("ES_v3"), str(c.vdir / "ES_v3"), types=(UnsafeBundleError,), fragment="posix.system"))[1]),
        ("recorded skops that is not a bundle", True, lambda c: (c.add_recorded("ES_v3", _plain_skops()), refuses(
            lambda: c.store.load("ES_v3"), str(c.vdir / "ES_v3"), types=(UnsafeBundleError,)))[1]),
        ("recorded NQ bundle as an ES version", True, lambda c: (c.add_recorded("ES_v3", c.other_bundle("NQ_v1")), refuses(
            lambda: c.store.load("ES_v3"), "ES_v3", c.files, types=(T,), fragment="NQ"))[1]),
        ("version folder is a symlink outside the store", True, link_outside),
        ("bundle.skops is a symlink (same bytes)", True, link_bundle),
        ("bundle.skops is a directory", True, special_bundle(lambda p: p.mkdir())),
        ("bundle.skops is a FIFO", True, special_bundle(lambda p: os.mkfifo(p))),
        ("metadata.json truncated", True, metadata_damaged(b'{"symbol": "E')),
        ("metadata.json not JSON", True, metadata_damaged(b"\x00\xff garbage")),
        ("metadata.json a directory", True, metadata_damaged(None, lambda p: p.mkdir())),
        ("metadata.json edited (threshold, sha256)", True, lambda c: (
            c.edit_json(c.vdir / "ES_v1" / "metadata.json", lambda m: {**m, "threshold": 0.99, "sha256": "0" * 64}),
            works(lambda: c.store.load("ES_v1").threshold, lambda t: t == 0.55, "threshold"))[1]),
        ("empty version folder", True, lambda c: ((c.vdir / "ES_v3").mkdir(), all_of(
            works(lambda: {m["version"]: "damaged" in m for m in c.store.list_versions()}, lambda r: r.get("ES_v3")),
            refuses(lambda: c.store.load("ES_v3"), "ES_v3", c.files),
            works(lambda: c.store.add_version(make_bundle(seed=4)), lambda n: n == "ES_v4")))[1]),
        ("manifest entry of the wrong type", False, manifest_edit(lambda m: m["instruments"].update(ES="ES_v1"))),
        ("manifest entry naming another instrument's version", False, manifest_edit(
            lambda m: m["instruments"]["ES"].update(version="NQ_v1"))),
        ("manifest entry sha256 edited", False, lambda c: (c.edit_json(c.store.manifest_path, lambda m: (
            m["instruments"]["ES"].update(sha256="ab" * 32), m)[1]), refuses(
            lambda: c.store.load_production("ES"), "ES_v2", c.files, types=(T,)))[1]),
        ("manifest entry sha256 not hex", False, manifest_edit(lambda m: m["instruments"]["ES"].update(sha256="zz"))),
        ("manifest entry version '../../x'", False, manifest_edit(lambda m: m["instruments"]["ES"].update(version="../../x"))),
        ("manifest not JSON", False, manifest_bytes(b"\x00not json")),
        ("manifest truncated", False, lambda c: manifest_bytes(c.store.manifest_path.read_bytes()[:60])(c)),
        ("manifest empty", False, manifest_bytes(b"")),
        ("manifest is a directory", False, manifest_bytes(None, lambda p: p.mkdir())),
        ("manifest 'instruments' is a list", False, manifest_bytes(b'{"instruments": []}')),
        ("manifest is a symlink", False, lambda c: (shutil.copy(c.store.manifest_path, c.tmp / "m.json"),
                                                    manifest_bytes(None, lambda p: p.symlink_to(c.tmp / "m.json"))(c))[1]),
        ("audit.log torn line", True, audit_junk(b'{"event": "intent", "txn": "dead')),
        ("audit.log binary junk", True, audit_junk(b"\xff\x00\x80junk\n")),
        ("audit.log deleted", True, lambda c: (c.store.audit_path.unlink(), works(
            lambda: (c.store.promote("ES_v1", by="x"), c.store.audit_log()[-1]["status"]), lambda r: r[1] == "done"))[1]),
        ("report.html edited", True, lambda c: (_append(c.vdir / "ES_v1" / "report.html", b"<script>"),
                                                works(lambda: c.store.load("ES_v1").content_hash(),
                                                      lambda h: h == c.hashes["ES_v1"]))[1]),
    ]


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _plain_skops() -> bytes:
    import skops.io as sio

    return sio.dumps({"format": 2, "estimator": [1, 2, 3], "bundle": "[]"})


def _pickle_in_cwd(c: StoreCtx) -> tuple[str, str, str]:
    """A pickle named ES_v1 in the working directory: the store's ES_v1 is loaded, not the file."""
    (c.tmp / "ES_v1").write_bytes(pickle.dumps(Boom(c.marker)))
    here = os.getcwd()
    os.chdir(c.tmp)
    try:
        return works(lambda: c.store.load("ES_v1").content_hash(), lambda h: h == c.hashes["ES_v1"])
    finally:
        os.chdir(here)


def pristine_store(tmp: Path) -> tuple[Path, Path, dict[str, str]]:
    root, other = tmp / "pristine-store", tmp / "other-store"
    store = ModelStore(root)
    hashes = {}
    for sym, seed in (("ES", 1), ("ES", 2), ("NQ", 3)):
        b = make_bundle(sym, seed=seed)
        name = store.add_version(b, extra_files={"report.html": b"<html></html>"})
        hashes[name] = b.content_hash()
    for name in ("ES_v1", "ES_v2", "NQ_v1"):
        store.promote(name, by="setup")
    o = ModelStore(other)
    o.add_version(make_bundle("ES", seed=99))
    o.add_version(make_bundle("NQ", seed=98))
    return root, other, hashes


def run_store(args, tmp: Path, cases_tally: Tally, tamper_tally: Tally) -> None:
    root, other, hashes = pristine_store(tmp)
    # each `rooney backtest` start costs ~10 s of imports: --quick runs only the first
    cli_backtests = [n for n, _ in store_name_cases() if n.startswith("CLI backtest")]
    skip = set(cli_backtests[1:]) if args.quick else set()
    plans = [(n, True, fn, cases_tally) for n, fn in store_name_cases() if n not in skip]
    plans += [(n, others, fn, tamper_tally) for n, others, fn in tamper_cases()]
    print(f"  store: {len(plans)} cases", flush=True)
    for k, (name, others_ok, fn, tally) in enumerate(plans):
        case_tmp = tmp / "store" / f"{k:03d}"
        shutil.copytree(root, case_tmp / "store", symlinks=True)
        ctx = StoreCtx(case_tmp, ModelStore(case_tmp / "store"), case_tmp / "MARKER-code-ran", ModelStore(other), hashes)
        t = time.perf_counter()
        try:
            verdict = fn(ctx)
        except Exception as exc:  # noqa: BLE001 - the harness's own setup or an unexpected escape
            verdict = (FAIL, f"exception in the case: {type(exc).__name__}", _traceback_text(exc))
        tally.record(name, *all_of(verdict, *store_invariants(ctx, others_ok)))
        if args.verbose:
            print(f"    ({time.perf_counter() - t:.2f} s)")


def store_invariants(c: StoreCtx, others_ok: bool) -> list[tuple[str, str, str]]:
    """After any case: no hostile code ran, listing never raises, and (unless the manifest
    itself was damaged) the other instrument still loads."""
    out = []
    if c.marker.exists():
        out.append((FAIL, "hostile code ran (marker file created)", str(c.marker)))
    out.append(works(lambda: c.store.list_versions(), what="list_versions"))
    if others_ok:
        out.append(works(lambda: c.store.load_production("NQ")[0], lambda r: r == "NQ_v1", "NQ production"))
    return out or [(ACCEPTED, "", "")]


# ==== 4. SIGKILL at random moments ==============================================================

_FOREST: RandomForestClassifier | None = None  # built once in the parent, inherited by forks


def _store_writer(root: str, ready, done, names: list[str], seed: int) -> None:
    """Loop forever: add a version (with a 50 KB report), promote it, sometimes roll back or
    promote an older version, until killed. Any exception is written down: a writer that dies
    by itself is a failure."""
    try:
        store = ModelStore(root)
        rng = random.Random(seed)
        ready.set()
        i = 0
        while True:
            i += 1
            if rng.random() < 0.6:
                name = store.add_version(make_bundle(estimator=_FOREST, threshold=0.4 + (i % 30) / 100),
                                         extra_files={"report.html": os.urandom(50_000)})
                names.append(name)
                store.promote(name, by=f"writer-{seed}", reason=str(i))
            elif rng.random() < 0.5:
                entry = store.production_entry("ES")
                if entry and entry.get("previous"):
                    store.rollback("ES", by=f"writer-{seed}", reason=str(i))
            else:
                store.promote(rng.choice(list(names)), by=f"writer-{seed}", reason=str(i))
            with done.get_lock():
                done.value += 1
    except BaseException:  # noqa: BLE001
        Path(root, "..", "writer-error.txt").write_text(traceback.format_exc())
        os._exit(3)


def kill_invariants(store: ModelStore, before: str | None, known_good: set[str]) -> list[tuple[str, str]]:
    """What must hold after a writer was SIGKILLed, before and after the next write settles
    its leftovers. Returns the violations as (kind, detail)."""
    bad: list[tuple[str, str]] = []
    try:
        raw = json.loads(store.manifest_path.read_bytes())
        if raw != store.manifest():
            bad.append(("manifest() differs from the file", ""))
        listed = store.list_versions()
        damaged = [m["version"] for m in listed if "damaged" in m]
        if damaged:
            bad.append(("a version damaged by a kill", str(damaged)))
        names = {m["version"] for m in listed}
        prod = store.production("ES")
        name, bundle = store.load_production("ES")  # full sha256 check against the manifest
        if name != prod or bundle.symbol != "ES":
            bad.append(("load_production disagrees with the manifest", f"{name} vs {prod}"))
        if prod != before and prod not in names:
            bad.append(("production neither the old version nor a complete new one", f"{prod}, before {before}"))
        for new in sorted(names - known_good):
            store.verify(new)
        bad += audit_violations(store, prod, settled=False)
        store.cleanup_temp()  # what the next write does first
        left = [p.name for p in store.versions_dir.iterdir() if p.name.startswith(".tmp-")]
        left += [p.name for p in store.root.glob(".manifest.json.*.tmp")]
        if left:
            bad.append(("temp files left after the next write", str(left)))
        bad += audit_violations(store, store.production("ES"), settled=True)
    except Exception as exc:  # noqa: BLE001 - the store did not read
        bad.append(("store unreadable after a kill", _exc_text(exc)))
    return bad


def audit_violations(store: ModelStore, prod: str | None, settled: bool) -> list[tuple[str, str]]:
    """Audit entries with status "done" must chain (each replaced the previous one's version)
    and end at production; after the next write no intent is left unsettled."""
    log = store.audit_log()
    done = [r for r in log if r["status"] == "done"]
    bad = [("audit entry 'done' that did not take effect",
            f"{b['version']} replaced {b['replaced']}, but {a['version']} was production")
           for a, b in zip(done, done[1:], strict=False) if b["replaced"] != a["version"]]
    if done and done[-1]["version"] != prod:
        bad.append(("audit entry 'done' that did not take effect",
                    f"last done entry says {done[-1]['version']}, production is {prod}"))
    if settled:
        pending = [r["txn"] for r in log if r["status"] not in ("done", "aborted")]
        if pending:
            bad.append(("audit intents unsettled after the next write", str(pending)))
    return bad


def fresh_kill_store(root: Path) -> ModelStore:
    store = ModelStore(root)
    store.promote(store.add_version(make_bundle(seed=1)), by="setup")
    store.add_version(make_bundle(seed=2))
    return store


def kill_one_writer(store: ModelStore, k: int, delay: float, ops) -> list[tuple[str, str]]:
    """Start a writer on ``store``, SIGKILL it after ``delay`` seconds, check the store."""
    before = store.production("ES")
    known_good = {m["version"] for m in store.list_versions()}
    ready = FORK.Event()
    proc = FORK.Process(target=_store_writer, args=(str(store.root), ready, ops, sorted(known_good), k))
    proc.start()
    if not ready.wait(30):
        proc.kill()
        proc.join()
        return [("writer did not start", "")]
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    if proc.exitcode != -signal.SIGKILL:
        err = store.root.parent / "writer-error.txt"
        return [("writer died by itself", err.read_text() if err.exists() else str(proc.exitcode))]
    return kill_invariants(store, before, known_good)


def run_store_kills(args, tmp: Path, tally: Tally) -> None:
    global _FOREST
    _FOREST = make_forest(n_estimators=30)
    rng = random.Random(args.seed * 1000 + 4)
    ops = FORK.Value("l", 0)
    t0 = time.perf_counter()
    store, fresh = None, 0
    for k in range(args.kills):
        # a fresh store every 50 kills keeps the checks fast, and after a failure keeps one
        # broken store from failing every later kill
        if store is None or k % 50 == 0:
            fresh += 1
            store = fresh_kill_store(tmp / "kills" / f"store-{fresh}" / "store")
        # half the kills early (around the first add_version), half anywhere in the loop
        delay = rng.uniform(0, 0.02) if rng.random() < 0.5 else rng.uniform(0.02, 0.5)
        bad = kill_one_writer(store, k, delay, ops)
        if bad:
            tally.record(f"kill #{k} ({delay * 1000:.0f} ms)", FAIL, bad[0][0], "; ".join(f"{a}: {b}" for a, b in bad))
            store = None
        else:
            tally.record(f"kill #{k} ({delay * 1000:.0f} ms)", ACCEPTED)
    print(f"  kills: {args.kills} SIGKILLs of store writers, {ops.value} store operations completed in between, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)


def lake_frame(k: int, rows: int = 50_000) -> pd.DataFrame:
    """The k-th version of a lake dataset: every value says k, so a file is one version whole."""
    idx = pd.date_range("2010-01-01", periods=rows, freq="h", name="timestamp")
    base = np.arange(rows, dtype=np.float64)
    return pd.DataFrame({"open": base + k, "high": base + k + 1, "low": base + k - 1, "close": base + k,
                         "volume": np.full(rows, float(k)), "k": np.full(rows, k, dtype=np.int64)}, index=idx)


def _lake_writer(root: str, ready, start: int) -> None:
    lake = Lake(root)
    frames = [lake_frame(k) for k in range(start, start + 3)]
    ready.set()
    k = 0
    while True:
        lake.write("hourly", "ES", frames[k % 3])
        k += 1


def run_lake_kills(args, tmp: Path, tally: Tally) -> None:
    """Kill a process writing a lake parquet file: the file is the old or the new one, whole,
    and the next write leaves no temporary file behind."""
    rng = random.Random(args.seed * 1000 + 5)
    lake = Lake(tmp / "lake")
    lake.write("hourly", "ES", lake_frame(0))
    path = lake.path("hourly", "ES")
    for k in range(args.lake_kills):
        start = 1 + 3 * k
        ready = FORK.Event()
        proc = FORK.Process(target=_lake_writer, args=(str(lake.root), ready, start))
        proc.start()
        if not ready.wait(60):
            proc.kill()
            proc.join()
            tally.record(f"lake kill #{k}", FAIL, "writer did not start", "")
            continue
        time.sleep(rng.uniform(0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        tally.record(f"lake kill #{k}", *judge_lake(lake, path, allowed={0, *range(1, start + 3)}))


def judge_lake(lake: Lake, path: Path, allowed: set[int]) -> tuple[str, str, str]:
    try:
        df = pd.read_parquet(path)
        k = int(df["k"].iloc[0])
        pd.testing.assert_frame_equal(df, lake_frame(k), check_freq=False)
    except Exception as exc:  # noqa: BLE001
        return FAIL, "lake file unreadable or half written", _exc_text(exc)
    if k not in allowed:
        return FAIL, "lake file is neither the old nor the new version", f"k={k}"
    lake.write("hourly", "ES", lake_frame(k))  # the next write
    left = sorted(p.name for p in path.parent.glob(f".{path.name}.*"))
    if left:
        for p in path.parent.glob(f".{path.name}.*"):
            p.unlink()  # so the next kill is judged on its own leftovers
        return FAIL, "leftover temp file after the next lake write", \
            f"the file itself was whole (version {k}), but the killed writer's {left} stays in {path.parent}"
    return ACCEPTED, "", ""


# ==== main =====================================================================================

ROWS = ["1a. data files, every repair off", "1b. data files, pipeline.yml repairs", "1c. data files, every repair on",
        "1d. `rooney check-data` runs", "2. config edits", "3a. model-store cases", "3b. file tampers",
        "4a. SIGKILL: store writers", "4b. SIGKILL: lake writers"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small counts: about a minute")
    p.add_argument("--seed", type=int, default=7, help="seeds every random choice (default 7)")
    p.add_argument("--data-days", type=int, help="days of 1-minute ES bars in the valid file (14; quick 2)")
    p.add_argument("--random-data", type=int, help="randomly corrupted data files (800; quick 30)")
    p.add_argument("--config-mutations", type=int, help="random invalid config edits on top of the written ones (250; quick 30)")
    p.add_argument("--kills", type=int, help="SIGKILLs of model-store writers (400; quick 25)")
    p.add_argument("--lake-kills", type=int, help="SIGKILLs of lake writers (40; quick 5)")
    p.add_argument("--only", default="data,config,store,kills", help="comma-separated subset of data,config,store,kills")
    p.add_argument("--max-details", type=int, default=5, help="failure details printed per kind of failure (default 5)")
    p.add_argument("--json", type=Path, help="also write every failure to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--verbose", action="store_true", help="print every case's verdict")
    a = p.parse_args(argv)
    defaults = dict(data_days=(2, 14), random_data=(30, 800), config_mutations=(30, 250), kills=(25, 400),
                    lake_kills=(5, 40))
    for name, (quick, full) in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, quick if a.quick else full)
    return a


def print_report(tallies: dict[str, Tally], seconds: float, args) -> list[Failure]:
    print(f"\n{'category':<40}{'inputs/faults':>15}{'refused (clear error)':>23}{'accepted correctly':>20}{'FAILURES':>10}")
    total = Tally("total")
    for name in ROWS:
        t = tallies[name]
        if not t.tried:
            continue
        print(f"{name:<40}{t.tried:>15}{t.refused:>23}{t.accepted:>20}{len(t.failures):>10}")
        total.tried += t.tried
        total.refused += t.refused
        total.accepted += t.accepted
        total.failures += t.failures
    print(f"{'total':<40}{total.tried:>15}{total.refused:>23}{total.accepted:>20}{len(total.failures):>10}")
    print(f"\nwall time {seconds:.0f} s, seed {args.seed}, {'quick' if args.quick else 'full'} mode")
    groups: dict[tuple[str, str], list[Failure]] = defaultdict(list)
    for f in total.failures:
        groups[(f.category, f.reason)].append(f)
    if groups:
        print("\nFAILURES")
    for (cat, reason), fs in groups.items():
        print(f"\n[{cat}] {reason}: {len(fs)}")
        for f in fs[: args.max_details]:
            print(f"  - {f.case}\n    {f.detail.replace(chr(10), chr(10) + '    ')}")
        if len(fs) > args.max_details:
            print(f"  ... and {len(fs) - args.max_details} more (see --json)")
    return total.failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = set(args.only.split(","))
    # repairs are logged as warnings; the harness reads them from the result instead
    logging.getLogger("rooney_core").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="rooney-adversarial-")).resolve()
    tmp.chmod(0o755)  # cases run as 'nobody' (permission denied) must be able to enter it
    tallies = {name: Tally(name, verbose=args.verbose) for name in ROWS}
    print(f"adversarial run in {tmp} (seed {args.seed})", flush=True)
    try:
        configs = tmp / "configs"
        shutil.copytree(DEFAULT_CONFIG_DIR, configs)
        cfg = load_config(configs)
        first_row = {"data": ROWS[0], "config": ROWS[4], "store": ROWS[5], "kills": ROWS[7]}
        steps = {"data": lambda: run_data(args, tmp, cfg, tallies),
                 "config": lambda: run_config(args, tmp, tallies["2. config edits"]),
                 "store": lambda: run_store(args, tmp, tallies["3a. model-store cases"], tallies["3b. file tampers"]),
                 "kills": lambda: (run_store_kills(args, tmp, tallies["4a. SIGKILL: store writers"]),
                                   run_lake_kills(args, tmp, tallies["4b. SIGKILL: lake writers"]))}
        for name, step in steps.items():
            if name in only:
                t = time.perf_counter()
                try:
                    step()
                except HarnessError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an escape outside a case: report it, go on
                    tallies[first_row[name]].record(f"{name} (aborted)", FAIL, f"exception outside any case: "
                                                    f"{type(exc).__name__}", _traceback_text(exc))
                print(f"  {name}: done in {time.perf_counter() - t:.0f} s", flush=True)
    except HarnessError as exc:
        print(f"harness error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            _rmtree(tmp)
    failures = print_report(tallies, time.perf_counter() - t0, args)
    if args.json:
        args.json.write_text(json.dumps([f.__dict__ for f in failures], indent=1))
    return 1 if failures else 0


def _rmtree(path: Path) -> None:
    """Remove the run's directory, including files made unreadable on purpose."""
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if not p.is_symlink():
                p.chmod(stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
