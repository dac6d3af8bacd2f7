"""The prediction log: every signal the live engine saw, vetoed or not, and what became of it.

Storage is embedded and lock-free for readers. DuckDB allows one writing process per
database file, and Dagster assets must read the log while an engine runs, so the engine
never holds a database open: it appends JSON lines to a segment file of its own
(``<root>/<YYYY-MM-DD>/<writer>.jsonl``, one per UTC day and writer), each line written
whole and fsynced before the engine acts on the decision. Readers query every segment with
DuckDB (``read_json`` over a glob); a line torn by a kill is skipped, never half-read.
``compact_day`` turns a finished day's segments into one Parquet file, atomically.

Records are events keyed by ``prediction_id`` (one per signal):

* ``signal``: bar time, instrument, model version, bundle sha256, feature-schema hash, the
  feature vector, probability, threshold, decision, reason and order id;
* ``fill``: the order's fill (time, side, price);
* ``outcome``: the trade's exit (time, price, reason) and net P&L.

``predictions(root)`` joins them into one row per signal: what monitoring reads;
``events(root)`` gives every record as written (nothing merged or dropped), so a record
written twice shows there.

Several writing processes (engines on several machines) can share one log in PostgreSQL
instead: set ``$ROONEY_PREDICTION_LOG_URL`` (``PostgresPredictionLog``: one row per record,
one committed transaction per append). The embedded default needs no server and suits one
engine process per state directory; PostgreSQL suits several engines that one desk
monitors together, and readers on other machines.

After a restart the engine redoes the bars after its last state write, and so decides
again what it may have logged just before it was killed. :meth:`PredictionLog.remember`
loads the records written since that state write; ``append`` then skips a record identical
to one of them (everything but ``logged_at`` equal), so the log holds each record once. A
record that differs (say, a model promoted in between) is written, and ``predictions``
keeps the last.
"""

from __future__ import annotations

import io
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from rooney_core.io import jsonable, write_bytes_atomic

SEGMENT_SUFFIX = ".jsonl"


class PredictionLog:
    """Append-only writer of one process (a writer id names its segments)."""

    def __init__(self, root: str | os.PathLike[str], writer: str | None = None):
        self.root = Path(root)
        self.writer = writer or f"{socket.gethostname()}-{os.getpid()}"
        self._fd: int | None = None
        self._day: str | None = None
        self._seen: set[str] = set()  # bodies of records written before a restart (see remember)

    def _segment_fd(self) -> int:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        if self._fd is None or day != self._day:
            self.close()
            folder = self.root / day
            folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(folder / f"{self.writer}{SEGMENT_SUFFIX}", os.O_RDWR | os.O_APPEND | os.O_CREAT,
                               0o666)  # the umask applies
            self._day = day
        return self._fd

    def remember(self, since: float | None = None) -> int:
        """Load the records of every JSON segment modified at or after ``since`` (epoch
        seconds, e.g. the engine state's mtime; None: all segments), so that ``append`` skips
        a record already written. Returns how many were loaded."""
        self._seen = set()
        for seg in sorted(self.root.glob(f"*/*{SEGMENT_SUFFIX}")):
            try:
                if since is not None and seg.stat().st_mtime < since:
                    continue
                data = seg.read_bytes()
            except FileNotFoundError:
                continue  # compacted meanwhile: a finished day, nothing to redo there
            for raw in data.splitlines():
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue  # a line torn by a kill: never counted as written
                if isinstance(rec, dict) and "event" in rec:
                    self._seen.add(_body(rec))
        return len(self._seen)

    def append(self, event: str, **fields: Any) -> bool:
        """Write one record durably (the caller acts on the decision only after this).
        Returns False, writing nothing, if an identical record was written before a restart
        (see :meth:`remember`)."""
        rec = _new_record(event, fields, self._seen)
        if rec is None:
            return False
        line = json.dumps(rec, sort_keys=True, allow_nan=False).encode() + b"\n"
        fd = self._segment_fd()
        # a writer killed mid-line leaves a fragment: start on a fresh line so only it is lost
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --- several writers: the log in PostgreSQL ------------------------------------------------

LOG_URL_ENV = "ROONEY_PREDICTION_LOG_URL"
PG_TABLE = "rooney_prediction_log"


def _pg_engine(url: str):
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
    with engine.begin() as conn:
        # two writers starting together would race on CREATE ... IF NOT EXISTS: serialise them
        conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": PG_TABLE})
        conn.execute(sqlalchemy.text(
            f"CREATE TABLE IF NOT EXISTS {PG_TABLE} (id BIGSERIAL PRIMARY KEY, writer TEXT NOT NULL, "
            "logged_at TIMESTAMPTZ NOT NULL, event TEXT NOT NULL, prediction_id TEXT, record TEXT NOT NULL)"))
        conn.execute(sqlalchemy.text(f"CREATE INDEX IF NOT EXISTS {PG_TABLE}_logged_at ON {PG_TABLE} (logged_at)"))
    return engine


class PostgresPredictionLog:
    """The prediction log as rows of one PostgreSQL table, for several writing processes
    (engines on several machines, or one per instrument group) and readers elsewhere. Each
    ``append`` is one committed transaction before the engine acts, as the JSON segment's
    fsync is. Same records, same ``remember`` rule; ``events``/``predictions`` read it when
    given the URL."""

    def __init__(self, url: str, writer: str | None = None):
        self.url = url
        self.writer = writer or f"{socket.gethostname()}-{os.getpid()}"
        self._engine = _pg_engine(url)
        self._seen: set[str] = set()

    def remember(self, since: float | None = None) -> int:
        import sqlalchemy

        query = f"SELECT record FROM {PG_TABLE}"
        params = {}
        if since is not None:
            query += " WHERE logged_at >= :since"
            params["since"] = datetime.fromtimestamp(since, UTC)
        with self._engine.connect() as conn:
            self._seen = {_body(json.loads(r[0])) for r in conn.execute(sqlalchemy.text(query), params)}
        return len(self._seen)

    def append(self, event: str, **fields: Any) -> bool:
        import sqlalchemy

        rec = _new_record(event, fields, self._seen)
        if rec is None:
            return False
        now = datetime.fromisoformat(rec["logged_at"])
        with self._engine.begin() as conn:  # committed (and, with synchronous_commit, durable) on return
            conn.execute(sqlalchemy.text(
                f"INSERT INTO {PG_TABLE} (writer, logged_at, event, prediction_id, record) "
                "VALUES (:w, :t, :e, :p, :r)"),
                {"w": self.writer, "t": now, "e": event, "p": rec.get("prediction_id"),
                 "r": json.dumps(rec, sort_keys=True, allow_nan=False)})
        return True

    def close(self) -> None:
        self._engine.dispose()


def log_location(root: str | os.PathLike[str]) -> str | Path:
    """Where the prediction log is: $ROONEY_PREDICTION_LOG_URL (PostgreSQL) when set, else the
    directory ``root`` (JSON segments and Parquet days, read through DuckDB)."""
    return os.environ.get(LOG_URL_ENV) or Path(root)


def open_log(root: str | os.PathLike[str], writer: str | None = None) -> PredictionLog | PostgresPredictionLog:
    """The writer for ``log_location(root)``."""
    where = log_location(root)
    return PostgresPredictionLog(where, writer) if isinstance(where, str) else PredictionLog(where, writer)


def _is_url(where: Any) -> bool:
    return isinstance(where, str) and "://" in where


def _pg_events(url: str) -> pd.DataFrame:
    import sqlalchemy

    engine = _pg_engine(url)
    try:
        with engine.connect() as conn:
            rows = [json.loads(r[0]) for r in conn.execute(sqlalchemy.text(
                f"SELECT record FROM {PG_TABLE} ORDER BY logged_at, id"))]
    finally:
        engine.dispose()
    if not rows:
        return pd.DataFrame(columns=["event", "logged_at", "prediction_id"])
    frame = pd.DataFrame(rows)
    for col in ("bar_time", "fill_time", "exit_time", "logged_at"):  # as DuckDB reads them from the segments
        if col in frame:
            frame[col] = pd.to_datetime(frame[col], format="ISO8601")
    return frame


def _new_record(event: str, fields: dict[str, Any], seen: set[str]) -> dict | None:
    """The record to write, stamped ``logged_at``; None if an identical one was written before
    a restart (``remember``: ``seen`` holds their bodies, each skipped once)."""
    rec = {"event": event, **{k: jsonable(v) for k, v in fields.items()}}
    if seen:
        body = _body(rec)
        if body in seen:
            seen.discard(body)
            return None
    rec["logged_at"] = datetime.now(UTC).isoformat(timespec="microseconds")
    return rec


def _body(rec: dict) -> str:
    """A record's identity: every field but the time it was logged, canonical JSON."""
    return json.dumps({k: v for k, v in rec.items() if k != "logged_at"}, sort_keys=True, allow_nan=False)


def _read_jsonl(segments: list[Path]) -> pd.DataFrame:
    """The records of JSON-lines segments; a line torn by a kill is skipped."""
    con = duckdb.connect()  # in memory: the log files are only read
    try:
        files = ", ".join(f"'{p}'" for p in segments)
        # a line that does not parse comes back as an all-NULL row: drop it (every record has
        # event and logged_at, and a line cut short by a kill never parses as an object)
        return con.sql(f"SELECT * FROM read_json([{files}], format='newline_delimited', ignore_errors=true, "
                       "union_by_name=true, records=true) WHERE event IS NOT NULL AND logged_at IS NOT NULL").df()
    finally:
        con.close()


def events(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Every record of the log (open segments and compacted days, or the PostgreSQL table when
    ``root`` is its URL) as written, oldest first: nothing merged or dropped but a line torn by
    a kill."""
    if _is_url(root):
        return _pg_events(str(root))
    root = Path(root)
    frames = [pd.read_parquet(p) for p in sorted(root.glob("*.parquet"))]
    segments = sorted(root.glob(f"*/*{SEGMENT_SUFFIX}"))
    if segments:
        frames.append(_read_jsonl(segments))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["event", "logged_at", "prediction_id"])
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return out.sort_values("logged_at", kind="stable").reset_index(drop=True)


def predictions(root: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per signal with its fill and outcome joined (missing until they happen)."""
    ev = events(root)
    if "prediction_id" not in ev or not (ev["event"] == "signal").any():
        return pd.DataFrame()
    # a bar redone after a restart logs its signal again under the same id: one row per signal
    sig = ev[ev["event"] == "signal"].dropna(axis=1, how="all").drop_duplicates("prediction_id", keep="last")
    out = sig
    for kind, cols in (("fill", ["fill_time", "fill_price"]),
                       ("outcome", ["exit_time", "exit_price", "exit_reason", "pnl_net"])):
        part = ev[ev["event"] == kind]
        have = [c for c in cols if c in part]
        if len(part) and have:
            out = out.merge(part[["prediction_id", *have]].drop_duplicates("prediction_id", keep="last"),
                            on="prediction_id", how="left")
    return out.reset_index(drop=True)


def compact_day(root: str | os.PathLike[str], day: str) -> Path | None:
    """Merge a finished day's JSON segments into ``<root>/<day>.parquet`` (atomic), then
    remove them. Only for days no writer still appends to (the caller knows: a past day)."""
    root = Path(root)
    folder = root / day
    segments = sorted(folder.glob(f"*{SEGMENT_SUFFIX}"))
    if not segments:
        return None
    frame = _read_jsonl(segments)
    target = root / f"{day}.parquet"
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    write_bytes_atomic(buf.getvalue(), target)
    for seg in segments:
        seg.unlink()
    folder.rmdir()
    return target
