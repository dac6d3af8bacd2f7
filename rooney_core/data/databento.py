"""Databento OHLCV-1m files (DBN, usually zstd-compressed ``.dbn.zst``) as minute bars.

The desk's market data vendor is Databento. This module reads its files offline with the
``databento-dbn`` package (the vendor's own decoder; no API key, no network) and turns them
into what the rest of Rooney reads: per-root minute bars in naive exchange-local time,
labelled by their start, in the raw ``<SYMBOL>_bt.csv`` format (``write_raw_csvs``, used by
``rooney import-databento``) or bar by bar in time order (``iter_dbn_minute_bars``, for the
live engine's ``--feed dbn:PATH``). Both go through :func:`read_databento`, so a replay of the
files and a backtest of the imported CSVs see the very same bars.

The rules, each explicit:

* **Records.** An input file holds OHLCV-1m records (``ohlcv-1m``; ``ts_event`` is the bar's
  start in UTC nanoseconds) and may also hold instrument definitions and symbol mapping
  records; system messages (heartbeats) are ignored. Any other record type, a bar whose
  ``ts_event`` is not on a whole minute, or an undefined price is an error naming the file.
  A file whose schema is ``definition`` is read as a definitions file.
* **Prices** are fixed point, 1 unit = 1e-9 (``FIXED_PRICE_SCALE``); they are divided by
  1e9 into float64 and written to CSV as the exact decimal of the integer (no rounding).
* **Instrument id -> root.** (1) Definition records (``--definitions FILE``, definition files
  among the inputs, or definition records inside an input) give each id its raw symbol
  (``ESU4``), its root (the record's ``asset``, e.g. ``ES``), its class and its expiration.
  Only outright futures (instrument class ``F``) are kept. (2) Without a definition, the
  file's own symbology is used: the metadata ``mappings`` of a file requested by raw symbol
  (``ESU4`` -> id for a date range) or symbol mapping records; the root is the raw symbol
  less its month code and year (``ESU4`` -> ``ES``, ``6EZ24`` -> ``6E``), and a symbol that
  is not an outright future (a spread ``ESU4-ESZ4``, an option) is skipped. A continuous
  symbol (``ES.c.0``) gives its root; a parent symbol (``ES.FUT``) covers spreads too, so it
  needs definitions. Where a definition and a file's symbology disagree, that is an error.
  An id known to neither is an error asking for ``--definitions``.
* **Roots and symbols.** Only roots in ``symbols`` are read when it is given (bars of others
  are skipped and counted); every root read must be an instrument of
  ``configs/instruments.yml``, else an error names the file, the root and the raw symbol.
* **Time.** ``ts_event`` (bar start, UTC) is converted to naive exchange-local time with the
  instrument's session timezone (``Instrument.calendar.to_exchange_time``, zoneinfo, DST
  included). Two bars of one root that land on the same local minute (only possible in the
  repeated hour when DST ends, when CME is closed) are an error, never a silent merge.
* **Several contracts of one root** (front and next month in one file): per trading session
  of the instrument's calendar, the one contract with the most volume *in that session of
  the inputs* supplies every bar of the session; ties go to the earlier expiration (when a
  definition gives it), then the smaller raw symbol, then the smaller instrument id. Prices
  of two contracts are never mixed within a bar or a session; a roll shows as a price gap
  at a session boundary, as in the desk's unadjusted files. The rule looks at a whole
  session of the files, which is right for files (import and replay agree bar for bar); the
  live stream (:class:`LiveBarDecoder`) cannot see a session's volume before it ends, so it
  follows Databento's continuous front by volume (``ES.v.0``, ranked on the previous session). ``DatabentoBars.sessions`` lists every choice and the contracts passed over.
* **Overlapping files**: a bar present twice with identical values is kept once (counted);
  the same contract and minute with different values is an error naming both files.

Errors are :class:`DatabentoError` (a RooneyError) and start with the file they are about.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rooney_core.config import Instrument, Repairs, RooneyConfig
from rooney_core.errors import DataValidationError, RooneyError

log = logging.getLogger(__name__)

FIXED_PRICE_SCALE = 1_000_000_000  # Databento prices: 1 unit = 1e-9
UNDEF_PRICE = 2**63 - 1
_NS_PER_MIN = 60_000_000_000
_NO_EXPIRATION = np.iinfo(np.int64).max
COLUMNS = ("datetime", "Open", "High", "Low", "Close", "volume")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DBN_MAGIC = b"DBN"
# An outright future's raw symbol: root, month code, 1-2 year digits (ESU4, 6EZ24, MESH6).
_OUTRIGHT_RE = re.compile(r"^(?P<root>[A-Z0-9]{1,5}?)(?P<month>[FGHJKMNQUVXZ])(?P<year>[0-9]{1,2})$")
_CONTINUOUS_RE = re.compile(r"^(?P<root>[A-Z0-9]{1,5})\.[cnv]\.[0-9]+$")
_OHLCV_1M_RTYPE = 33  # RType.OHLCV_1M
_OHLCV_DEPRECATED_RTYPE = 17  # DBN v1: one rtype for every OHLCV schema; the schema says which


class DatabentoError(RooneyError):
    """A Databento file cannot be turned into bars: corrupt, truncated, unsupported, or its
    instruments cannot be mapped to roots of instruments.yml. The message names the file."""


@dataclass(frozen=True)
class Contract:
    """One outright future as its definition (or a file's symbology) names it."""

    instrument_id: int
    raw_symbol: str
    root: str
    expiration: int | None  # UTC ns, from a definition record only
    source: str  # "definition in FILE" or "symbology of FILE"


@dataclass(frozen=True)
class _Name:
    """What a file's symbology calls an instrument id over [start, end) (UTC days, None = open)."""

    start: np.datetime64 | None
    end: np.datetime64 | None
    symbol: str  # a raw symbol (ESU4), a continuous (ES.c.0) or a parent (ES.FUT) request
    parent: bool = False


@dataclass
class _DbnFile:
    path: str
    schema: str | None
    ids: np.ndarray  # int64 instrument ids of the OHLCV-1m bars
    ts: np.ndarray  # int64 ts_event, UTC ns, bar start
    prices: np.ndarray  # int64 (n, 4): open, high, low, close, fixed point 1e-9
    volume: np.ndarray  # int64
    definitions: list[Any]
    symbology: dict[int, list[_Name]]  # from the metadata mappings and symbol mapping records


@dataclass
class DatabentoBars:
    """Per-root minute bars read from Databento files, one contract per session."""

    frames: dict[str, pd.DataFrame]  # root -> datetime, Open, High, Low, Close, volume (time order)
    ts_utc: dict[str, np.ndarray]  # root -> int64 UTC ns bar start of each frame row
    contracts: dict[str, np.ndarray]  # root -> raw symbol of each frame row
    prices_fixed: dict[str, np.ndarray]  # root -> int64 (n, 4) open, high, low, close as the vendor sent them
    sessions: pd.DataFrame  # root, trading_date, raw_symbol, instrument_id, volume, bars, passed_over
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> bars skipped
    files: list[str] = field(default_factory=list)


# --- reading one file ----------------------------------------------------------------------


def _zstd_problem(data: bytes) -> str | None:
    """Walk the zstd frames' block headers: a file cut short (a copy or download that
    stopped) decodes to fewer records without any error from the decompressor, so its
    structure is checked first. Returns what is wrong, or None."""
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < 4:
            return f"{n - pos} stray byte(s) after the last zstd frame (offset {pos}): a damaged file"
        magic = int.from_bytes(data[pos:pos + 4], "little")
        if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame
            if n - pos < 8:
                return f"truncated inside a skippable zstd frame header at offset {pos}"
            pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "little")
            if pos > n:
                return "truncated inside a skippable zstd frame"
            continue
        if data[pos:pos + 4] != _ZSTD_MAGIC:
            return f"not a zstd frame at offset {pos} (trailing garbage or a damaged file)"
        pos += 4
        if pos >= n:
            return "truncated inside a zstd frame header"
        fhd = data[pos]
        pos += 1
        single_segment = (fhd >> 5) & 1
        if (fhd >> 3) & 1:
            return f"corrupt zstd frame header at offset {pos - 1} (reserved bit set)"
        fcs_size = (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
        pos += (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 3] + fcs_size
        while True:
            if pos + 3 > n:
                return f"truncated: the zstd stream ends inside a frame (offset {n} of a block header at {pos})"
            header = int.from_bytes(data[pos:pos + 3], "little")
            pos += 3
            block_type, size = (header >> 1) & 3, header >> 3
            if block_type == 3:
                return f"corrupt zstd block at offset {pos - 3} (reserved block type)"
            pos += 1 if block_type == 1 else size
            if pos > n:
                return f"truncated: the zstd stream ends inside a block ({pos - n} byte(s) missing at least)"
            if header & 1:  # last block of the frame
                break
        pos += 4 if (fhd >> 2) & 1 else 0  # content checksum
        if pos > n:
            return "truncated: the zstd frame's checksum is missing"
    return None


def _decode(path: Path) -> list[Any]:
    """Metadata and records of one DBN file (zstd-compressed or plain)."""
    import databento_dbn as dbn

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatabentoError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if data[:4] == _ZSTD_MAGIC:
        problem = _zstd_problem(data)
        if problem:
            raise DatabentoError(f"{path}: corrupt DBN file: {problem}")
        compression = dbn.Compression.ZSTD
    elif data[:3] == _DBN_MAGIC:
        compression = dbn.Compression.NONE
    else:
        what = "an empty file" if not data else f"starts with {data[:8]!r}"
        raise DatabentoError(f"{path}: not a DBN file (neither zstd-compressed nor plain DBN: {what})")
    decoder = dbn.DBNDecoder(compression=compression)
    try:
        decoder.write(data)
        records = decoder.decode()
        left = len(decoder.buffer())
    except Exception as exc:  # DBNError, and the decompressor's RuntimeError (checksum, frame)
        raise DatabentoError(f"{path}: corrupt DBN file: {exc}") from exc
    if left:
        raise DatabentoError(f"{path}: corrupt DBN file: truncated: {left} byte(s) of an incomplete record at the end")
    if not records or not isinstance(records[0], dbn.Metadata):
        raise DatabentoError(f"{path}: corrupt DBN file: no metadata header")
    return records


def _ohlcv_array(path: Path, bars: list[Any]) -> np.ndarray:
    """OHLCV records as one structured array, through their DBN bytes (the record layout of
    the DBN spec: a 16-byte header, then open, high, low, close, volume; an optional ts_out
    after), which is several times faster than reading each field of each Python object."""
    if not bars:
        return np.zeros(0, dtype=_ohlcv_dtype(56))
    blob = b"".join(bytes(r) for r in bars)
    size = len(blob) // len(bars)
    if size * len(bars) != len(blob) or size < 56:
        raise DatabentoError(f"{path}: unexpected OHLCV record size ({len(blob)} bytes for {len(bars)} records)")
    arr = np.frombuffer(blob, dtype=_ohlcv_dtype(size))
    first = bars[0]
    if (int(arr["instrument_id"][0]), int(arr["ts_event"][0]), int(arr["close"][0])) != (
            first.instrument_id, first.ts_event, first.close):
        raise DatabentoError(f"{path}: OHLCV record layout differs from the DBN spec this reader knows")
    return arr


def _ohlcv_dtype(itemsize: int) -> np.dtype:
    return np.dtype({"names": ["rtype", "instrument_id", "ts_event", "open", "high", "low", "close", "volume"],
                     "formats": ["u1", "<u4", "<u8", "<i8", "<i8", "<i8", "<i8", "<u8"],
                     "offsets": [1, 4, 8, 16, 24, 32, 40, 48], "itemsize": itemsize})


def _day(value: Any) -> np.datetime64 | None:
    return None if value is None else np.datetime64(str(value), "D")


def _read_file(path: Path) -> _DbnFile:
    import databento_dbn as dbn

    records = _decode(path)
    meta, body = records[0], records[1:]
    schema = str(meta.schema) if meta.schema is not None else None
    bars: list[Any] = []
    definitions: list[Any] = []
    symbology: dict[int, list[_Name]] = {}
    stype_in = str(meta.stype_in) if meta.stype_in is not None else None
    # mappings: requested symbol -> [{start_date, end_date (exclusive), symbol: instrument id}]
    if str(meta.stype_out) == "instrument_id" and stype_in in ("raw_symbol", "continuous", "parent"):
        for symbol, intervals in (meta.mappings or {}).items():
            for iv in intervals:
                try:
                    iid = int(iv["symbol"])
                except (TypeError, ValueError):
                    continue
                symbology.setdefault(iid, []).append(
                    _Name(_day(iv["start_date"]), _day(iv["end_date"]), symbol, parent=stype_in == "parent"))
    ohlcv_type = dbn.OHLCVMsg
    for rec in body:
        if type(rec) is ohlcv_type:  # checked by rtype below (OHLCV-1s/1h/1d share the class)
            bars.append(rec)
            continue
        kind = type(rec).__name__
        if kind.startswith("InstrumentDefMsg"):
            definitions.append(rec)
        elif kind.startswith("SymbolMappingMsg"):  # live streams: stype_out_symbol is the raw symbol
            symbology.setdefault(int(rec.instrument_id), []).append(_Name(None, None, str(rec.stype_out_symbol)))
        elif kind.startswith("SystemMsg"):  # heartbeats
            continue
        elif kind.startswith("ErrorMsg"):
            raise DatabentoError(f"{path}: the file records a gateway error: {getattr(rec, 'err', rec)}")
        else:
            raise DatabentoError(f"{path}: unsupported record type {kind} (schema {schema}): only OHLCV-1m bars, "
                                 "definitions and symbol mappings are read")
    n = len(bars)
    arr = _ohlcv_array(path, bars)
    rtypes = arr["rtype"]
    other = np.flatnonzero((rtypes != _OHLCV_1M_RTYPE) & ~((rtypes == _OHLCV_DEPRECATED_RTYPE) & (schema == "ohlcv-1m")))
    if len(other):
        raise DatabentoError(f"{path}: {len(other)} OHLCV record(s) of another interval than 1 minute (rtype "
                             f"{int(rtypes[other[0]])}, schema {schema}): only OHLCV-1m files are read")
    ids = arr["instrument_id"].astype(np.int64)
    ts = arr["ts_event"].astype(np.int64)
    prices = np.stack([arr[k] for k in ("open", "high", "low", "close")], axis=1).astype(np.int64)
    volume = arr["volume"].astype(np.int64)
    if n:
        off = np.flatnonzero(ts % _NS_PER_MIN)
        if len(off):
            i = off[0]
            raise DatabentoError(f"{path}: {len(off)} bar(s) do not start on a whole minute (first: instrument "
                                 f"{ids[i]}, ts_event {pd.Timestamp(ts[i], tz='UTC')}): not OHLCV-1m bars")
        undef = np.flatnonzero((prices == UNDEF_PRICE).any(axis=1))
        if len(undef):
            i = undef[0]
            raise DatabentoError(f"{path}: {len(undef)} bar(s) with an undefined price (first: instrument "
                                 f"{ids[i]}, {pd.Timestamp(ts[i], tz='UTC')})")
    return _DbnFile(str(path), schema, ids, ts, prices, volume, definitions, symbology)


# --- instrument id -> contract -------------------------------------------------------------


def root_of(raw_symbol: str) -> str | None:
    """Root of an outright future's raw symbol (``ESU4`` -> ``ES``) or of a continuous
    symbol (``ES.c.0`` -> ``ES``); None for anything else (spreads, options, parents)."""
    m = _OUTRIGHT_RE.match(raw_symbol) or _CONTINUOUS_RE.match(raw_symbol)
    return m.group("root") if m else None


def _contracts_from_definitions(records: Iterable[Any], source: str,
                                into: dict[int, Contract | None]) -> None:
    """Add definition records to ``into`` (None = a defined instrument that is not an outright
    future). The same id defined twice as different contracts is an error."""
    for rec in records:
        iid = int(rec.instrument_id)
        raw = str(rec.raw_symbol)
        if str(rec.instrument_class) != "F":
            new: Contract | None = None
        else:
            root = str(rec.asset) or root_of(raw)
            if not root:
                raise DatabentoError(f"{source}: the definition of instrument {iid} ({raw!r}) names no root (asset)")
            exp = int(rec.expiration)
            new = Contract(iid, raw, root, exp if 0 < exp < 2**63 else None, f"definition in {source}")
        if iid in into:
            old = into[iid]
            same = (old is None and new is None) or (
                old is not None and new is not None and (old.raw_symbol, old.root) == (new.raw_symbol, new.root))
            if not same:
                raise DatabentoError(f"{source}: instrument {iid} is defined as {_show(new)} here and as "
                                     f"{_show(old)} elsewhere; give definitions of one period only")
            continue
        into[iid] = new


def _add_definitions_file(path: Path, into: dict[int, Contract | None]) -> None:
    f = _read_file(path)
    if not f.definitions:
        raise DatabentoError(f"{path}: no instrument definition records in this file (schema {f.schema}); "
                             "a definitions file is a Databento 'definition' download")
    _contracts_from_definitions(f.definitions, str(path), into)


def load_definitions(paths: str | Path | Sequence[str | Path]) -> dict[int, Contract | None]:
    """instrument id -> Contract (None for a defined instrument that is not an outright
    future) from Databento definition files."""
    out: dict[int, Contract | None] = {}
    for p in _as_paths(paths):
        _add_definitions_file(p, out)
    return out


def _show(c: Contract | None) -> str:
    return "not an outright future" if c is None else f"{c.raw_symbol} ({c.source})"


def _assign_contracts(f: _DbnFile, definitions: dict[int, Contract | None]) -> tuple[np.ndarray, list[Contract | None]]:
    """For each bar of ``f``: its index into the returned list of contracts (a None entry is
    an instrument that is not an outright future)."""
    contracts: list[Contract | None] = []
    index: dict[tuple[int, str | None], int] = {}
    codes = np.empty(len(f.ids), dtype=np.int64)
    days = f.ts.astype("datetime64[ns]").astype("datetime64[D]")

    def code(key: tuple[int, str | None], contract: Contract | None) -> int:
        if key not in index:
            index[key] = len(contracts)
            contracts.append(contract)
        return index[key]

    for iid in np.unique(f.ids).tolist():
        rows = np.flatnonzero(f.ids == iid)
        known = f.symbology.get(iid, [])
        which = np.full(len(rows), -1, dtype=np.int64)  # index into `known` of each bar's name
        for k, nm in enumerate(known):
            inside = which < 0
            if nm.start is not None:
                inside &= days[rows] >= nm.start
            if nm.end is not None:
                inside &= days[rows] < nm.end
            which[inside] = k
        used = [known[k] for k in np.unique(which[which >= 0]).tolist()]
        if iid in definitions:  # definitions first; the file's symbology must not contradict them
            c = definitions[iid]
            for nm in used:
                outright = _OUTRIGHT_RE.match(nm.symbol)
                if (outright and (c is None or nm.symbol != c.raw_symbol)) or (
                        c is not None and not nm.parent and root_of(nm.symbol) not in (None, c.root)):
                    raise DatabentoError(f"{f.path}: instrument {iid} is {nm.symbol} in this file's symbology but "
                                         f"{_show(c)}; the definitions do not belong to this data")
            codes[rows] = code((iid, None), c)
            continue
        if (which < 0).any():
            unnamed = np.flatnonzero(which < 0)
            first = pd.Timestamp(int(f.ts[rows[unnamed[0]]]), tz="UTC")
            raise DatabentoError(
                f"{f.path}: instrument {iid} ({len(unnamed)} bar(s), first at {first}) has no definition "
                "record and no symbol mapping in the file: pass the definitions (--definitions FILE, a Databento "
                "'definition' download covering these dates)")
        for k in np.unique(which).tolist():
            nm = known[k]
            if nm.parent:
                raise DatabentoError(
                    f"{f.path}: instrument {iid} is known only as part of the parent request {nm.symbol}, which "
                    "also covers spreads; pass the definitions (--definitions FILE) to tell outright futures apart")
            root = root_of(nm.symbol)
            contract = None if root is None else Contract(iid, nm.symbol, root, None, f"symbology of {f.path}")
            codes[rows[which == k]] = code((iid, nm.symbol), contract)
    return codes, contracts


# --- all files -> per-root bars ------------------------------------------------------------


def _as_paths(paths: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(p) for p in paths]


def read_databento(
    paths: str | Path | Sequence[str | Path],
    cfg: RooneyConfig,
    definitions: str | Path | Sequence[str | Path] | None = None,
    symbols: Sequence[str] | None = None,
) -> DatabentoBars:
    """Read Databento OHLCV-1m files into per-root minute bars (see the module's rules)."""
    files = _as_paths(paths)
    if not files:
        raise DatabentoError("no Databento files given")
    wanted = set(symbols) if symbols else None
    instruments: dict[str, Instrument] = {}
    for s in symbols or []:
        instruments[s] = cfg.instrument(s)  # an unknown --symbols entry is a ConfigError
    defs: dict[int, Contract | None] = {}
    for p in _as_paths(definitions):
        _add_definitions_file(Path(p), defs)
    read = [_read_file(p) for p in files]
    for f in read:  # definitions inside the inputs (a definition file given as a PATH, say)
        if f.definitions:
            _contracts_from_definitions(f.definitions, f.path, defs)
    skipped: dict[str, int] = {}
    parts: dict[str, list[dict[str, np.ndarray]]] = {}
    for f in read:
        if not len(f.ids):
            if not f.definitions:
                log.warning("%s: no OHLCV-1m bars in this file", f.path)
            continue
        codes, contracts = _assign_contracts(f, defs)
        for k, c in enumerate(contracts):
            rows = np.flatnonzero(codes == k)
            if c is None:
                skipped["not an outright future"] = skipped.get("not an outright future", 0) + len(rows)
                continue
            if wanted is not None and c.root not in wanted:
                skipped[f"root {c.root} not selected"] = skipped.get(f"root {c.root} not selected", 0) + len(rows)
                continue
            if c.root not in instruments:
                try:
                    instruments[c.root] = cfg.instrument(c.root)
                except RooneyError:
                    raise DatabentoError(
                        f"{f.path}: root {c.root!r} of {c.raw_symbol} (instrument {c.instrument_id}, {c.source}) is "
                        f"not in instruments.yml; add it there or leave it out with --symbols") from None
            parts.setdefault(c.root, []).append({
                "ts": f.ts[rows], "prices": f.prices[rows], "volume": f.volume[rows],
                "iid": np.full(len(rows), c.instrument_id, dtype=np.int64),
                "sym": np.full(len(rows), c.raw_symbol, dtype=object),
                "exp": np.full(len(rows), _NO_EXPIRATION if c.expiration is None else c.expiration, dtype=np.int64),
                "file": np.full(len(rows), f.path, dtype=object),
            })
    if wanted:
        absent = sorted(wanted - set(parts))
        if absent:
            raise DatabentoError(f"{', '.join(str(p) for p in files)}: no bars of {', '.join(absent)} in these files")
    if not parts:
        raise DatabentoError(f"{', '.join(str(p) for p in files)}: no OHLCV-1m bars of outright futures in these files")
    frames, ts_utc, contract_of_row, fixed, sessions = {}, {}, {}, {}, []
    for root in sorted(parts):
        df, sess, dups = _one_root(root, parts[root], instruments[root])
        if dups:
            skipped["duplicate bars (identical) dropped"] = skipped.get("duplicate bars (identical) dropped", 0) + dups
        ts_utc[root] = df["ts"].to_numpy()
        contract_of_row[root] = df["sym"].to_numpy()
        fixed[root] = df[["o", "h", "l", "c"]].to_numpy(dtype=np.int64)
        frames[root] = df[list(COLUMNS)].reset_index(drop=True)
        sessions.append(sess)
    return DatabentoBars(frames, ts_utc, contract_of_row, fixed, pd.concat(sessions, ignore_index=True), skipped,
                         [str(p) for p in files])


def _one_root(root: str, parts: list[dict[str, np.ndarray]], inst: Instrument) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    px = cat.pop("prices")
    df = pd.DataFrame(cat)
    df["o"], df["h"], df["l"], df["c"] = px[:, 0], px[:, 1], px[:, 2], px[:, 3]
    # overlapping files: identical bars once, different values for one contract and minute: error
    df = df.sort_values(["iid", "ts", "file"], kind="stable")
    key = df.duplicated(["iid", "ts"], keep=False)
    dups = 0
    if key.any():
        same = df[key].duplicated(["iid", "ts", "o", "h", "l", "c", "volume"], keep=False)
        if not same.all():
            bad = df[key][~same].iloc[0]
            others = df[key & (df["iid"] == bad["iid"]) & (df["ts"] == bad["ts"])]["file"].unique()
            raise DatabentoError(f"{bad['file']}: {bad['sym']} bar at {pd.Timestamp(bad['ts'], tz='UTC')} appears "
                                 f"with different values in {', '.join(others)}")
        before = len(df)
        df = df.drop_duplicates(["iid", "ts"], keep="first")
        dups = before - len(df)
    cal = inst.calendar
    local = cal.to_exchange_time(pd.DatetimeIndex(df["ts"].to_numpy().astype("datetime64[ns]")))
    df["datetime"] = local.to_numpy()
    df["trading_date"] = cal.trading_date(df["datetime"].to_numpy())
    # one contract per session: most volume in the session, then earlier expiration, symbol, id
    vol = (df.groupby(["trading_date", "iid"], sort=True)
             .agg(volume=("volume", "sum"), bars=("volume", "size"), sym=("sym", "first"), exp=("exp", "first"))
             .reset_index()
             .sort_values(["trading_date", "volume", "exp", "sym", "iid"],
                          ascending=[True, False, True, True, True], kind="stable"))
    chosen = vol.drop_duplicates("trading_date", keep="first")
    passed = (vol[~vol.index.isin(chosen.index)]
              .assign(desc=lambda v: v["sym"] + " (" + v["volume"].astype(str) + ")")
              .groupby("trading_date")["desc"].agg(", ".join).to_dict())
    sessions = pd.DataFrame({
        "root": root,
        "trading_date": chosen["trading_date"].to_numpy(),
        "raw_symbol": chosen["sym"].to_numpy(),
        "instrument_id": chosen["iid"].to_numpy(),
        "volume": chosen["volume"].to_numpy(),
        "bars": chosen["bars"].to_numpy(),
        "passed_over": [passed.get(d, "") for d in chosen["trading_date"]],
    })
    keep = df.merge(chosen[["trading_date", "iid"]], on=["trading_date", "iid"], how="inner")
    keep = keep.sort_values("ts", kind="stable").reset_index(drop=True)
    clash = keep["datetime"].duplicated(keep=False)
    if clash.any():
        row = keep[clash].iloc[0]
        raise DatabentoError(f"{row['file']}: two {root} bars fall on the same exchange-local minute "
                             f"{row['datetime']} ({cal.timezone}; the repeated hour when daylight saving time ends)")
    for src, col in (("o", "Open"), ("h", "High"), ("l", "Low"), ("c", "Close")):
        keep[col] = keep[src].to_numpy() / FIXED_PRICE_SCALE
    return keep, sessions, dups


# --- outputs: raw CSV files and a bar iterator ---------------------------------------------


def _fixed_to_text(values: np.ndarray) -> list[str]:
    """The exact decimal of fixed-point (1e-9) integers: 5527250000000 -> '5527.25'."""
    out = []
    for v in values.tolist():
        sign = "-" if v < 0 else ""
        whole, frac = divmod(abs(v), FIXED_PRICE_SCALE)
        out.append(f"{sign}{whole}.{frac:09d}".rstrip("0").rstrip(".") if frac else f"{sign}{whole}")
    return out


def raw_csv_text(bars: DatabentoBars, root: str) -> str:
    """One root's bars as the text of a raw ``<SYMBOL>_bt.csv`` file."""
    f = bars.frames[root]
    cols = [f["datetime"].dt.strftime("%Y-%m-%d %H:%M:%S").tolist()]
    cols += [_fixed_to_text(bars.prices_fixed[root][:, k]) for k in range(4)]  # exact decimals
    cols.append([str(v) for v in f["volume"].tolist()])
    lines = [",".join(COLUMNS)] + [",".join(row) for row in zip(*cols, strict=True)]
    return "\n".join(lines) + "\n"


def write_raw_csvs(
    bars: DatabentoBars,
    out_dir: str | Path,
    cfg: RooneyConfig,
    *,
    force: bool = False,
    repairs: Repairs | None = None,
) -> list[tuple[Path, Any]]:
    """Write ``<ROOT>_bt.csv`` per root, atomically, each checked by the data gate
    (``read_raw_bars``) before it replaces anything: a file that fails is not written.
    An existing file is refused unless ``force`` (no merging). Returns (path, RawBars)."""
    from rooney_core.data import csv_path
    from rooney_core.data.raw import read_raw_bars
    from rooney_core.io import atomic_path

    out_dir = Path(out_dir)
    gate = cfg.pipeline.data.gate()  # the very settings of `rooney check-data`
    if repairs is not None:
        gate["repairs"] = repairs
    targets = {root: csv_path(out_dir, root) for root in bars.frames}
    if not force:
        existing = [str(p) for p in targets.values() if p.exists()]
        if existing:
            raise DatabentoError(f"{', '.join(existing)}: already exists; pass --force to overwrite it "
                                 "(the import does not merge with an existing file)")
    written = []
    for root, target in targets.items():
        with atomic_path(target) as tmp:
            tmp.write_text(raw_csv_text(bars, root), encoding="utf-8")
            try:
                raw = read_raw_bars(tmp, cfg.instrument(root).calendar, **gate)
            except DataValidationError as err:
                shown = "\n".join(f"  - {str(p).replace(str(tmp), str(target))}" for p in err.problems[:20])
                raise DatabentoError(f"{target}: not written: the converted bars fail the data gate\n{shown}") from None
        written.append((target, raw))
    return written


def iter_dbn_minute_bars(
    paths: str | Path | Sequence[str | Path],
    cfg: RooneyConfig,
    definitions: str | Path | Sequence[str | Path] | None = None,
    symbols: Sequence[str] | None = None,
) -> Iterator[tuple[str, pd.Timestamp, float, float, float, float, float]]:
    """Yield ``(symbol, bar start (naive exchange-local pd.Timestamp), open, high, low, close,
    volume)`` for every bar of the files, in time order across files and roots (UTC bar
    start, then symbol). The bars are exactly those :func:`read_databento` (and so
    ``rooney import-databento``) produces; the files are read whole before the first bar."""
    bars = read_databento(paths, cfg, definitions=definitions, symbols=symbols)
    roots = sorted(bars.frames)
    if not roots:
        return
    ts = np.concatenate([bars.ts_utc[r] for r in roots])
    which = np.concatenate([np.full(len(bars.frames[r]), i, dtype=np.int64) for i, r in enumerate(roots)])
    row = np.concatenate([np.arange(len(bars.frames[r])) for r in roots])
    order = np.lexsort((which, ts))  # by time, then symbol (roots are sorted)
    cols = {r: (bars.frames[r]["datetime"].to_numpy(),
                *(bars.frames[r][c].to_numpy(dtype=np.float64) for c in ("Open", "High", "Low", "Close", "volume")))
            for r in roots}
    for k in order:
        r = roots[which[k]]
        i = row[k]
        t, o, h, lo, c, v = cols[r]
        yield r, pd.Timestamp(t[i]), float(o[i]), float(h[i]), float(lo[i]), float(c[i]), float(v[i])


# --- a live stream, one record at a time ---------------------------------------------------


def continuous_symbol(root: str) -> str:
    """The live subscription's symbol for a root: Databento's continuous front contract by
    volume (``ES.v.0``). Its contract is ranked by the previous session's volume, so the
    choice is known before the session opens: causal, unlike the import's whole-session rule."""
    return f"{root}.v.0"


class LiveBarDecoder:
    """Minute bars from a live Databento stream (the ``databento.Live`` client, or any
    iterable of DBN records), one record at a time, by the file reader's rules: OHLCV-1m
    records only, fixed-point prices scaled by 1e-9, ``ts_event`` (bar start, UTC) converted
    to naive exchange-local time with the instrument's calendar.

    Instrument ids map to roots through the stream's symbol mapping records
    (``stype_in_symbol`` ``ES.v.0`` -> root ``ES``; ``stype_out_symbol`` the contract). The
    latest mapping of a root is its current contract; when the gateway remaps the continuous
    symbol (a roll), bars of the old contract are passed over as problems, never mixed in.
    ``decode(record)`` returns ``(root, timestamp, open, high, low, close, volume)``, a problem
    text, or None for records that carry no bar (metadata, mappings, heartbeats). A gateway
    error record is a :class:`DatabentoError`."""

    def __init__(self, cfg: RooneyConfig, symbols: Iterable[str], source: str = "the Databento live stream"):
        self.cfg = cfg
        self.wanted = set(symbols)
        self.source = source
        self.names: dict[int, tuple[str, str]] = {}  # instrument id -> (root, contract)
        self.current: dict[str, int] = {}  # root -> the instrument id its subscription points at now
        self.rolls: list[tuple[str, str, str]] = []  # (root, from contract, to contract)

    def decode(self, rec: Any) -> tuple[str, np.datetime64, float, float, float, float, float] | str | None:
        import databento_dbn as dbn

        if isinstance(rec, dbn.OHLCVMsg):
            return self._bar(rec)
        if isinstance(rec, dbn.SymbolMappingMsg):
            return self._mapping(rec)
        if isinstance(rec, dbn.ErrorMsg):
            raise DatabentoError(f"{self.source}: the gateway reports an error: {rec.err}")
        if isinstance(rec, (dbn.Metadata, dbn.SystemMsg)) or type(rec).__name__.startswith("InstrumentDefMsg"):
            return None
        return f"{self.source}: unsupported record type {type(rec).__name__}: only OHLCV-1m bars are read"

    def _mapping(self, rec: Any) -> str | None:
        asked, contract = str(rec.stype_in_symbol), str(rec.stype_out_symbol)
        root = root_of(asked) or root_of(contract)
        if root is None or root not in self.cfg.instruments.instruments:
            return (f"{self.source}: symbol mapping {asked!r} -> {contract!r} (instrument {rec.instrument_id}) names "
                    "no instrument of instruments.yml; its bars are skipped")
        iid = int(rec.instrument_id)
        before = self.current.get(root)
        if before is not None and before != iid:
            old = self.names[before][1]
            self.rolls.append((root, old, contract))
            log.info("%s: %s moves from %s to %s", root, asked, old, contract)
        self.names[iid] = (root, contract)
        self.current[root] = iid
        return None

    def _bar(self, rec: Any) -> tuple[str, np.datetime64, float, float, float, float, float] | str | None:
        import databento_dbn as dbn

        iid, ts = int(rec.instrument_id), int(rec.ts_event)
        when = f"instrument {iid} at {pd.Timestamp(ts, tz='UTC')}"
        if rec.rtype != dbn.RType.OHLCV_1M:
            return f"{self.source}: {when}: an OHLCV record of another interval than 1 minute ({rec.rtype})"
        if iid not in self.names:
            return f"{self.source}: {when}: a bar of an instrument id no symbol mapping named; skipped"
        root, contract = self.names[iid]
        if root not in self.wanted:
            return None
        if self.current[root] != iid:
            now = self.names[self.current[root]][1]
            return f"{self.source}: {root} {when}: a bar of {contract} after the subscription moved to {now}; skipped"
        if ts % _NS_PER_MIN:
            return f"{self.source}: {root} {when}: the bar does not start on a whole minute"
        fixed = (rec.open, rec.high, rec.low, rec.close)
        if UNDEF_PRICE in fixed:
            return f"{self.source}: {root} {when}: an undefined price"
        local = self.cfg.instrument(root).calendar.to_exchange_time(pd.DatetimeIndex([pd.Timestamp(ts, tz="UTC")]))
        o, h, lo, c = (p / FIXED_PRICE_SCALE for p in fixed)
        return root, np.datetime64(local[0].to_datetime64(), "s"), o, h, lo, c, float(rec.volume)
