"""Market data feeds for the live engine, behind one interface: an iterator of minute bars
(and of the problems met on the way) in time order across instruments.

* ``replay_feed``: plays ``<SYM>_bt.csv`` files through the data gate, merged by time, at a
  speed factor (60 = one hour of bars a minute) or as fast as possible;
* ``tail_feed``: follows ``<SYM>_bt.csv`` files that another process appends to, reading
  only complete lines, each by the data gate's rules;
* ``stdin_feed``: JSON lines, one minute bar each
  (``{"symbol": "ES", "datetime": "2024-01-02 10:00:00", "open": .., "high": .., "low": ..,
  "close": .., "volume": ..}``);
* ``dbn_feed``: Databento OHLCV-1m files (``rooney_core.data.databento``);
* ``databento_live_feed``: Databento's live gateway (the vendor's ``databento.Live``
  client), each instrument's continuous front contract by volume, decoded by the same
  rules as the files.

A line or record that cannot be read is yielded as a ``FeedProblem`` naming the instrument
and where, never as a bar: the engine logs it and goes on with the other instruments.
Timestamps are naive exchange-local bar starts, as in the raw files.
"""

from __future__ import annotations

import heapq
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np
import pandas as pd

from rooney_core.config import RooneyConfig
from rooney_core.data import csv_path
from rooney_core.data.raw import RawBars, parse_row, read_raw_bars
from rooney_core.errors import DataValidationError, RooneyError


class MinuteBar(NamedTuple):
    symbol: str
    timestamp: np.datetime64  # bar start, exchange-local, datetime64[s]
    open: float
    high: float
    low: float
    close: float
    volume: float


class FeedProblem(NamedTuple):
    symbol: str | None
    where: str  # file and line, or the record
    reason: str


FeedItem = MinuteBar | FeedProblem


def _gate_bars(cfg: RooneyConfig, data_dir: Path, symbol: str, since: np.datetime64 | None) -> Iterator[MinuteBar]:
    raw = read_raw_bars(csv_path(data_dir, symbol), cfg.instrument(symbol).calendar, **cfg.pipeline.data.gate())
    yield from _raw_minutes(raw, symbol, since)


def _raw_minutes(raw: RawBars, symbol: str, since: np.datetime64 | None) -> Iterator[MinuteBar]:
    """A validated file's minutes from ``since`` on (earlier rows are skipped as arrays)."""
    for ts, o, h, lo, c, v in raw.batches():
        stamps = ts.astype("datetime64[s]")
        first = 0 if since is None else int(np.searchsorted(stamps, since, side="left"))
        for i in range(first, len(stamps)):
            yield MinuteBar(symbol, stamps[i], float(o[i]), float(h[i]), float(lo[i]), float(c[i]), float(v[i]))


def _bars_after(bars: Iterator[MinuteBar], after: np.datetime64 | None) -> Iterator[MinuteBar]:
    return bars if after is None else (b for b in bars if b.timestamp > after)


def replay_feed(cfg: RooneyConfig, data_dir: str | os.PathLike[str], symbols: list[str], speed: float | None = None,
                after: dict[str, np.datetime64] | None = None, sleep: Callable[[float], None] = time.sleep,
                since: Any = None) -> Iterator[FeedItem]:
    """Every minute bar of the instruments' files from ``since`` on and after ``after[symbol]``
    (a restart resumes where it stopped), merged in time order. Files are validated whole
    first, as in research."""
    after = after or {}
    start = None if since is None else np.datetime64(since, "s")
    streams = [_bars_after(_gate_bars(cfg, Path(data_dir), s, start), after.get(s)) for s in symbols]
    yield from _merged(streams, speed, sleep)


def raw_feed(raws: dict[str, RawBars], since: Any = None) -> Iterator[FeedItem]:
    """``replay_feed`` over files already read through the data gate, as fast as possible."""
    start = None if since is None else np.datetime64(since, "s")
    yield from _merged([_raw_minutes(raw, s, start) for s, raw in raws.items()], None, time.sleep)


def _merged(streams: list[Iterator[MinuteBar]], speed: float | None, sleep: Callable[[float], None]
            ) -> Iterator[FeedItem]:
    last_ts, last_wall = None, None
    for bar in heapq.merge(*streams, key=lambda b: (b.timestamp, b.symbol)):
        if speed and last_ts is not None:
            gap = float((bar.timestamp - last_ts) / np.timedelta64(1, "s")) / speed
            wait = gap - (time.monotonic() - last_wall)
            if wait > 0:
                sleep(min(wait, 60.0))
        last_ts, last_wall = bar.timestamp, time.monotonic()
        yield bar


class _Follower:
    """Reads the complete lines appended to one file since the last call."""

    def __init__(self, path: Path, symbol: str, cfg: RooneyConfig):
        self.path, self.symbol, self.cfg = path, symbol, cfg
        self.offset = 0
        self.lineno = 0
        self.partial = b""

    def poll(self) -> list[FeedItem]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            return [FeedProblem(self.symbol, str(self.path), f"unreadable: {exc.strerror}")]
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()  # not yet terminated: wait for the rest of the line
        out: list[FeedItem] = []
        for raw in lines:
            self.lineno += 1
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            if not text.strip() or (self.lineno == 1 and text.startswith("datetime")):
                continue
            try:
                ts, o, h, lo, c, v = parse_row(text, str(self.path), self.lineno,
                                               min_year=self.cfg.pipeline.data.min_year,
                                               max_year=self.cfg.pipeline.data.max_year)
            except DataValidationError as err:
                out.append(FeedProblem(self.symbol, f"{self.path} line {self.lineno}",
                                       "; ".join(f"[{p.rule}] {p.detail}" for p in err.problems)))
                continue
            out.append(MinuteBar(self.symbol, ts, o, h, lo, c, v))
        return out


def tail_feed(cfg: RooneyConfig, data_dir: str | os.PathLike[str], symbols: list[str], poll_seconds: float = 1.0,
              stop: Callable[[], bool] = lambda: False, from_start: bool = True,
              sleep: Callable[[float], None] = time.sleep) -> Iterator[FeedItem]:
    """Follow the instruments' files; yields what each poll found, in time order, until
    ``stop()``. With ``from_start=False`` lines already in the files are skipped."""
    followers = [_Follower(csv_path(Path(data_dir), s), s, cfg) for s in symbols]
    if not from_start:
        for f in followers:
            f.poll()
    while not stop():
        found = [item for f in followers for item in f.poll()]
        yield from sorted((x for x in found if isinstance(x, MinuteBar)), key=lambda b: (b.timestamp, b.symbol))
        yield from (x for x in found if isinstance(x, FeedProblem))
        if not found:
            sleep(poll_seconds)


def stdin_feed(stream: TextIO, symbols: Iterable[str]) -> Iterator[FeedItem]:
    """Minute bars as JSON lines; a record that cannot be read is a FeedProblem."""
    wanted = set(symbols)
    for n, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            sym = str(rec["symbol"])
            ts = parse_row(",".join([str(rec["datetime"]), *(repr(float(rec[k])) for k in
                                                              ("open", "high", "low", "close", "volume"))]),
                           "<stdin>", n)[0]
            values = tuple(float(rec[k]) for k in ("open", "high", "low", "close", "volume"))
        except (ValueError, KeyError, TypeError, DataValidationError) as exc:
            yield FeedProblem(None, f"<stdin> line {n}", f"not a minute bar: {str(exc).splitlines()[-1][:200]}")
            continue
        if sym in wanted:
            yield MinuteBar(sym, ts, *values)


def dbn_feed(cfg: RooneyConfig, paths: list[str], symbols: list[str]) -> Iterator[FeedItem]:
    """Databento OHLCV-1m files, converted to exchange-local minute bars."""
    from rooney_core.data import databento

    wanted = set(symbols)
    for sym, ts, o, h, lo, c, v in databento.iter_dbn_minute_bars(paths, cfg):
        if sym in wanted:
            yield MinuteBar(sym, np.datetime64(ts, "s"), float(o), float(h), float(lo), float(c), float(v))


DATABENTO_LIVE_DATASET = "GLBX.MDP3"  # CME Globex


def databento_live_feed(cfg: RooneyConfig, symbols: list[str], dataset: str = DATABENTO_LIVE_DATASET,
                        since: Any = None, connect: Callable[[], Any] | None = None, retries: int = 8,
                        sleep: Callable[[float], None] = time.sleep) -> Iterator[FeedItem]:
    """Minute bars from Databento's live gateway, until the gateway ends the session.

    Subscribes to OHLCV-1m of ``<ROOT>.v.0`` (the continuous front contract by volume, ranked
    on the previous session's volume, so chosen without hindsight) for every symbol, with the
    vendor's ``databento.Live`` client: the API key from ``DATABENTO_API_KEY``, the gateway
    from ``DATABENTO_GATEWAY`` (``host[:port]``) when set, else Databento's own.

    * ``since`` (exchange-local, the engine's resume point) asks the gateway to replay from
      there when it is inside its 24-hour intraday window, so a restart misses no bar.
    * A dropped connection is reconnected with back-off (1, 2, 4 .. 60 s, ``retries`` times
      in a row), resubscribing from the minute of the last bar received (other instruments' bars of that
      minute may not have come yet); bars delivered already are dropped, so within the
      gateway's window no bar is lost and none is delivered twice. The vendor client's own
      reconnect resubscribes from "now" and would lose the gap, so it is not used.
    * A gateway error record or a refused key is an error, never retried.
    * Records are decoded by :class:`rooney_core.data.databento.LiveBarDecoder`; a roll or an
      unreadable record is a FeedProblem. The key never appears in a log or an error."""
    from rooney_core.data.databento import DatabentoError, LiveBarDecoder, continuous_symbol
    from rooney_core.redact import redact_text

    key = os.environ.get("DATABENTO_API_KEY", "")
    if connect is None:
        if not key.strip():
            raise RooneyError("--feed databento: set DATABENTO_API_KEY to your Databento API key")
        import databento

        kw: dict[str, Any] = {}
        gateway = os.environ.get("DATABENTO_GATEWAY", "").strip()
        if gateway:
            host, _, port = gateway.rpartition(":") if ":" in gateway else (gateway, "", "13000")
            kw = {"gateway": host, "port": int(port)}

        def connect() -> Any:
            return databento.Live(key=key, **kw)

    start: pd.Timestamp | None = None
    if since is not None and symbols:
        utc = cfg.instrument(symbols[0]).calendar.from_exchange_time(pd.DatetimeIndex([pd.Timestamp(since)]))[0]
        if pd.Timestamp.now(tz="UTC") - utc < pd.Timedelta(hours=23):
            start = utc
    decoder = LiveBarDecoder(cfg, symbols, source=f"databento {dataset}")
    last: dict[str, np.datetime64] = {}  # root -> last bar delivered (a replay after a reconnect overlaps)
    last_utc: int | None = None
    failures = 0
    while True:
        client = connect()
        try:
            try:
                client.subscribe(dataset=dataset, schema="ohlcv-1m", stype_in="continuous",
                                 symbols=[continuous_symbol(s) for s in symbols], start=start)
            except Exception as exc:  # the client's BentoError (a refused key), OSError, ValueError
                raise RooneyError(f"--feed databento: cannot subscribe to {dataset}: "
                                  f"{redact_text(str(exc), [key])}") from None
            for rec in _records(client):
                out = decoder.decode(rec)
                if isinstance(out, str):
                    yield FeedProblem(None, f"databento {dataset}", out)
                elif out is not None:
                    if out[0] in last and out[1] <= last[out[0]]:
                        continue  # replayed after a reconnect: delivered already
                    last[out[0]] = out[1]
                    last_utc = int(rec.ts_event)
                    failures = 0
                    yield MinuteBar(*out)
            return  # the gateway ended the session
        except (RooneyError, DatabentoError):
            raise
        except Exception as exc:  # noqa: BLE001 - the connection dropped: BentoError, OSError
            failures += 1
            why = redact_text(str(exc), [key])
            if failures > retries:
                raise RooneyError(f"--feed databento: the connection to {dataset} failed {failures} times in a "
                                  f"row; last: {why}") from None
            wait = min(60.0, 2.0 ** (failures - 1))
            if last_utc is not None:
                start = pd.Timestamp(last_utc, tz="UTC")  # that minute again: other roots' bars of it may be due
            yield FeedProblem(None, f"databento {dataset}", f"connection lost ({why}); reconnecting in {wait:g} s "
                              f"from {start if start is not None else 'now'}")
            sleep(wait)
        finally:
            try:
                client.terminate()
            except Exception:  # noqa: BLE001 - never connected, or closed already
                pass


class _Closed(NamedTuple):
    error: BaseException | None


def _records(client: Any) -> Iterator[Any]:
    """Every record of a started ``databento.Live`` session, until it closes (a dropped
    connection raises the client's error). Records are taken by a callback registered before
    the session starts: the client's own iterator enables its queue only after starting the
    session, so a gateway that answers at once (a nearby one) could have its first records,
    the symbol mappings among them, dropped."""
    import queue
    import threading

    q: queue.Queue = queue.Queue()
    client.add_callback(q.put)
    client.start()

    def wait() -> None:
        try:
            client.block_for_close()
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            q.put(_Closed(exc))
        else:
            q.put(_Closed(None))

    threading.Thread(target=wait, name="databento-close", daemon=True).start()
    while True:
        item = q.get()
        if isinstance(item, _Closed):
            if item.error is not None:
                raise item.error
            return
        yield item


def parse_feed_spec(spec: str) -> tuple[str, str, float | None]:
    """``replay:DIR[:SPEED]``, ``tail:DIR``, ``stdin``, ``dbn:PATH`` or
    ``databento[:DATASET]`` -> (kind, where, speed)."""
    kind, _, rest = spec.partition(":")
    if kind == "stdin" and not rest:
        return kind, "", None
    if kind == "databento":
        return kind, rest or DATABENTO_LIVE_DATASET, None
    if kind in ("tail", "dbn") and rest:
        return kind, rest, None
    if kind == "replay" and rest:
        where, sep, speed = rest.rpartition(":")
        try:
            return (kind, where, float(speed)) if sep and float(speed) > 0 else (kind, rest, None)
        except ValueError:
            return kind, rest, None  # a directory name with a colon in it
    raise RooneyError(f"--feed {spec!r}: expected replay:DIR[:SPEED], tail:DIR, stdin, dbn:PATH "
                      "or databento[:DATASET]")
