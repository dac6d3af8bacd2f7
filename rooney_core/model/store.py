"""The versioned model store, its production manifest and the audit log.

Layout under the root::

    versions/<SYMBOL>_v<N>/bundle.skops      the VetoBundle (skops: loading runs no code)
    versions/<SYMBOL>_v<N>/metadata.json     the bundle minus the estimator (for people)
    versions/<SYMBOL>_v<N>/<extra files>     report.html, plots, ...
    versions.log                             append-only: one line per version as stored
    manifest.json                            which version of each instrument is in production
    audit.log                                promotions and rollbacks: intent, then outcome
    gates/<SYMBOL>_v<N>.json                 the version's latest gate report (versions are immutable,
                                             so reports are records beside them)
    gates.log                                append-only: one line per gate report written (sha256)
    portfolios/portfolio_v<N>/portfolio.json a portfolio config (rules, the models and data it was
                                             optimised on), with report.html and plots beside it
    portfolios.log                           append-only: one line per portfolio version (sha256)

The manifest's ``portfolio`` entry names the production portfolio version; its promotions and
rollbacks go through the same audit log (symbol "portfolio").

What is trusted (R6, and no code runs from a file we did not store): a version name resolves
only inside ``versions/``; its bundle's sha256 is checked against the manifest when it is in
production, else against ``versions.log``, the line written when the version was stored.
``metadata.json`` is never trusted: editing its sha256 changes nothing. Only after the
check are the bytes handed to ``bundle_file.load_bundle``, which refuses unknown types.

Crash safety (R2): a version is written in full into a temporary directory, recorded, and
renamed into place under the store lock, so a version directory exists complete or not at
all and is never rewritten. The manifest is replaced atomically under the same lock. The
audit log records the intent before the manifest write and the outcome after it; a writer
killed in between is settled by the next one (outcome "done" if the manifest carries the
intent's transaction id, else "aborted"), so the log never claims what did not take effect.
Leftovers of killed writers are removed by the next write.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rooney_core.errors import RooneyError
from rooney_core.io import (
    append_jsonl,
    fsync_path,
    host_tag,
    make_temp_dir,
    pid_alive,
    read_jsonl,
    write_file_synced,
    write_text_atomic,
)
from rooney_core.model.bundle import VetoBundle, json_default
from rooney_core.model.bundle_file import dump_bundle, load_bundle

BUNDLE_FILE = "bundle.skops"
LEGACY_BUNDLE_FILE = "bundle.joblib"  # format 1: a pickle, never loaded
METADATA_FILE = "metadata.json"
RECORDS_FILE = "versions.log"
_KEEP = object()  # _commit: leave this manifest section's entry as it is
_NAME = re.compile(r"(?P<symbol>[A-Za-z0-9]+)_v(?P<n>[1-9][0-9]*)")  # used with fullmatch only
_SHA256 = re.compile(r"[0-9a-f]{64}")  # fullmatch
_PORTFOLIO = re.compile(r"portfolio_v(?P<n>[1-9][0-9]*)")  # fullmatch
PORTFOLIO_FILE = "portfolio.json"
PORTFOLIO_RECORDS = "portfolios.log"
PORTFOLIO = "portfolio"  # the manifest section and audit-log symbol of portfolio versions
_TMP_DIR = re.compile(r"\.tmp-[A-Za-z0-9]+-(?P<pid>\d+)-(?P<host>.+)-[^-]+")  # fullmatch

log = logging.getLogger(__name__)


class ModelStoreError(RooneyError):
    """A version or instrument is unknown, or a store operation cannot proceed."""


class ModelIntegrityError(ModelStoreError):
    """A stored bundle cannot be shown to be the one that was stored (or promoted)."""


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file (not a directory, FIFO or symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ModelIntegrityError(f"refused: {path} is missing") from None
    except OSError as exc:
        raise ModelIntegrityError(f"refused: {path} cannot be opened ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelIntegrityError(f"refused: {path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


class ModelStore:
    """Immutable model versions ``<SYMBOL>_v<N>`` and the manifest naming production ones."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.records_path = self.root / RECORDS_FILE
        self.manifest_path = self.root / "manifest.json"
        self.audit_path = self.root / "audit.log"
        self._lock_path = self.root / ".store.lock"
        self.gates_dir = self.root / "gates"
        self.gates_log_path = self.root / "gates.log"
        self.portfolios_dir = self.root / "portfolios"
        self.portfolio_records_path = self.root / PORTFOLIO_RECORDS

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    def _make_dirs(self) -> None:
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelStoreError(f"{self.root}: cannot be the model store ({exc.strerror}); point model_store "
                                  "(pipeline.yml) or $ROONEY_MODEL_STORE at a directory") from None

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """The store's one exclusive lock (version numbers, records, manifest). flock is
        released by the kernel if the holder dies, so a kill never leaves it stuck. Not
        re-entrant: a second flock on a new descriptor in the same process would wait."""
        self._make_dirs()
        with open(self._lock_path, "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ---- gate reports -----------------------------------------------------------------------

    def write_gate_report(self, name: str, text: str, passed: bool) -> Path:
        """Store ``text`` (a gate report, JSON) as version ``name``'s latest, atomically, and
        its sha256 in gates.log. Re-validating a version replaces its report; the log keeps
        every one."""
        self.version_dir(name)
        data = text.encode("utf-8")
        with self._lock():
            self.gates_dir.mkdir(exist_ok=True)
            path = self.gates_dir / f"{name}.json"
            write_text_atomic(text, path)
            append_jsonl(self.gates_log_path, {"version": name, "sha256": hashlib.sha256(data).hexdigest(),
                                               "passed": bool(passed), "at": _utc_now()})
        return path

    def gate_report(self, name: str) -> dict[str, Any] | None:
        """Version ``name``'s latest gate report, or None if it was never validated. The file
        must have the sha256 gates.log recorded last for it (an edited report could let a
        failed model through): ModelIntegrityError otherwise."""
        self.version_dir(name)
        lines = [r for r in read_jsonl(self.gates_log_path) if r.get("version") == name]
        path = self.gates_dir / f"{name}.json"
        if not lines:
            return None
        try:
            data = _read_regular_file(path)
        except ModelIntegrityError:
            raise
        except OSError as exc:
            raise ModelIntegrityError(f"{path}: the gate report gates.log records for {name} is missing "
                                      f"({exc})") from None
        if hashlib.sha256(data).hexdigest() != lines[-1].get("sha256"):
            raise ModelIntegrityError(f"{path}: refused: the gate report differs from the one recorded in gates.log "
                                      "(edited after it was written); re-validate the version")
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ModelIntegrityError(f"{path}: unreadable gate report ({exc})") from None

    # ---- versions -------------------------------------------------------------------------

    def version_with_content(self, symbol: str, content_hash: str) -> str | None:
        """The stored version of ``symbol`` whose bundle has ``content_hash`` (what defines the
        model: the same data, config and seed give the same hash), or None."""
        present = {name for _, _, name in self._names(symbol)}
        for name, rec in self.records().items():
            if name in present and rec.get("content_hash") == content_hash and not rec.get("conflicting"):
                return name
        return None

    def add_version(self, bundle: VetoBundle,
                    extra_files: dict[str, bytes] | Callable[[str], dict[str, bytes]] | None = None) -> str:
        """Store ``bundle`` (and extra files) as a new immutable version; returns its name.
        ``extra_files`` may be a function of the version's name (a report titled with it),
        called once the name is fixed. A bundle identical to a stored version (same content
        hash) is not stored again: that version's name is returned, with a warning."""
        if not isinstance(bundle, VetoBundle):
            raise ModelStoreError(f"add_version: expected a VetoBundle, got {type(bundle).__name__}")
        if not callable(extra_files):
            static = self._checked_extra(dict(extra_files or {}))
            extra_files = lambda _name: static  # noqa: E731
        symbol = bundle.symbol
        data = dump_bundle(bundle)
        sha256 = hashlib.sha256(data).hexdigest()
        self._make_dirs()
        self.cleanup_temp()
        # pid and host in the name let cleanup_temp tell a dead writer's leftovers from live work.
        tmp = make_temp_dir(self.versions_dir, f".tmp-{symbol}-{os.getpid()}-{host_tag()}-")
        try:
            write_file_synced(tmp / BUNDLE_FILE, data)
            record = {"symbol": symbol, "sha256": sha256, "content_hash": bundle.content_hash()}
            with self._lock():
                same = self.version_with_content(symbol, record["content_hash"])
                if same is not None:
                    log.warning("%s: identical to %s (content hash %s); not stored again", symbol, same,
                                record["content_hash"][:12])
                    return same
                n = self._next_number(symbol)
                name = f"{symbol}_v{n}"
                extra = self._checked_extra(dict(extra_files(name)))
                for fname, blob in extra.items():
                    write_file_synced(tmp / fname, bytes(blob))
                record = {"version": name, "number": n, **record, "created_at": _utc_now(),
                          "extra_files": {f: hashlib.sha256(d).hexdigest() for f, d in sorted(extra.items())}}
                meta = {**bundle.metadata(), **record}
                write_file_synced(tmp / METADATA_FILE,
                                  json.dumps(meta, indent=2, sort_keys=True, default=json_default).encode())
                fsync_path(tmp)
                # The record comes first: a kill before the rename leaves a number that is
                # never reused and no version; a version directory always has its record.
                append_jsonl(self.records_path, record)
                os.rename(tmp, self.versions_dir / name)
                fsync_path(self.versions_dir)
            return name
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _checked_extra(extra: dict) -> dict:
        reserved = (BUNDLE_FILE, LEGACY_BUNDLE_FILE, METADATA_FILE)
        for fname, data in extra.items():
            if Path(fname).name != fname or fname.startswith(".") or fname in reserved:
                raise ModelStoreError(f"add_version: extra file name {fname!r} must be a plain file name "
                                      f"other than {', '.join(reserved)}")
            if not isinstance(data, (bytes, bytearray)):
                raise ModelStoreError(f"add_version: extra file {fname!r} must be bytes")
        return extra

    def _names(self, symbol: str | None = None) -> list[tuple[str, int, str]]:
        """(symbol, N, name) of every version directory, sorted; temporary directories and
        anything that is not a real directory are skipped."""
        if not self.versions_dir.is_dir():
            return []
        out = []
        for entry in os.scandir(self.versions_dir):
            m = _NAME.fullmatch(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and (symbol is None or m["symbol"] == symbol):
                out.append((m["symbol"], int(m["n"]), entry.name))
        return sorted(out)

    def records(self) -> dict[str, dict[str, Any]]:
        """The first record of each version in versions.log. A later line for the same name
        cannot change it; one with another sha256 marks the record ``conflicting`` (the log
        was edited), and such a version is refused."""
        return _first_records(self.records_path)

    def _next_number(self, symbol: str) -> int:
        recorded = [int(m["n"]) for m in map(_NAME.fullmatch, self.records()) if m and m["symbol"] == symbol]
        return max([n for _, n, _ in self._names(symbol)] + recorded, default=0) + 1

    def version_dir(self, name: str) -> Path:
        """The directory of version ``name``; ModelStoreError listing known versions if unknown.
        Only a name of the form <SYMBOL>_v<N> that is a real directory in the store resolves."""
        m = _NAME.fullmatch(name) if isinstance(name, str) else None
        path = self.versions_dir / name if m else None
        if path is None or path.is_symlink() or not path.is_dir():
            sym = m["symbol"] if m else str(name).split("_v")[0]
            known = [n for _, _, n in self._names(sym)] if sym.isalnum() else []
            raise ModelStoreError(f"unknown model version {name!r} in {self.versions_dir}; "
                                  f"known {sym} versions: {', '.join(known) or 'none'}")
        return path

    def load_metadata(self, name: str) -> dict[str, Any]:
        """metadata.json of a version: for people and listings, never for integrity."""
        path = self.version_dir(name) / METADATA_FILE
        try:
            meta = json.loads(_read_regular_file(path).decode("utf-8"))
        except (ModelIntegrityError, UnicodeDecodeError, ValueError) as exc:
            raise ModelStoreError(f"{path}: unreadable version metadata ({exc})") from None
        if not isinstance(meta, dict) or meta.get("symbol") != _NAME.fullmatch(name)["symbol"]:
            raise ModelStoreError(f"{path}: not the metadata of {name}")
        return meta

    def list_versions(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Metadata of every version (of ``symbol``), sorted by symbol then N. A damaged
        version is listed with a ``damaged`` reason instead of stopping the listing."""
        records = self.records()
        out = []
        for sym, n, name in self._names(symbol):
            try:
                meta = self.load_metadata(name)
            except ModelStoreError as exc:
                out.append({"version": name, "symbol": sym, "number": n, "damaged": str(exc)})
                continue
            rec = records.get(name)
            try:
                regular = stat.S_ISREG(os.lstat(self.versions_dir / name / BUNDLE_FILE).st_mode)
            except OSError:
                regular = False
            if not regular:
                meta["damaged"] = f"{BUNDLE_FILE} is missing or not a regular file"
            elif rec is None:
                meta["damaged"] = f"no record in {RECORDS_FILE}: it cannot be verified and is never loaded"
            elif rec.get("sha256") != meta.get("sha256"):
                meta["damaged"] = f"{METADATA_FILE} disagrees with {RECORDS_FILE} (edited after it was stored)"
            out.append(meta)
        return out

    def _expected_sha256(self, name: str) -> tuple[str, str]:
        """(sha256, where it comes from) that version ``name``'s bundle must have."""
        symbol = _NAME.fullmatch(name)["symbol"]
        rec = self.records().get(name)
        if rec is not None and rec.get("conflicting"):
            raise ModelIntegrityError(f"refused: {RECORDS_FILE} holds conflicting records for {name} "
                                      "(the log was edited)")
        entry = self.production_entry(symbol)
        if entry is not None and entry["version"] == name:
            if rec is not None and rec.get("sha256") != entry["sha256"]:
                raise ModelIntegrityError(f"refused: {name}: the sha256 in {self.manifest_path} ({entry['sha256']}) "
                                          f"differs from the one {self.records_path} recorded when it was stored "
                                          f"({rec.get('sha256')})")
            return entry["sha256"], "the manifest"
        if rec is None or not isinstance(rec.get("sha256"), str):
            raise ModelIntegrityError(f"refused: {name} has no record in {self.records_path} (stored before "
                                      "records were kept, or its write was interrupted), so it cannot be verified")
        return rec["sha256"], RECORDS_FILE

    def _verified_bytes(self, name: str) -> tuple[bytes, str]:
        """The bundle's bytes after checking them against the trusted sha256."""
        vdir = self.version_dir(name)
        want, source = self._expected_sha256(name)
        path = vdir / BUNDLE_FILE
        if not path.exists() and (vdir / LEGACY_BUNDLE_FILE).exists():
            raise ModelIntegrityError(f"refused: {name} is a format-1 bundle ({LEGACY_BUNDLE_FILE}, a pickle that "
                                      "can run code on load); retrain it to store a bundle.skops")
        data = _read_regular_file(path)  # hash exactly the bytes we decode: no swap in between
        actual = hashlib.sha256(data).hexdigest()
        if actual != want:
            raise ModelIntegrityError(
                f"refused: {path} changed on disk after it was stored (sha256 expected {want} from "
                f"{source}, actual {actual}); restore the file or promote another version")
        return data, actual

    def verify(self, name: str) -> str:
        """Check version ``name``'s bundle against its trusted sha256; returns the sha256."""
        return self._verified_bytes(name)[1]

    def load(self, name: str) -> VetoBundle:
        """Load a version after checking its sha256 (manifest for production, else versions.log)."""
        data, _ = self._verified_bytes(name)
        bundle = load_bundle(data, str(self.versions_dir / name / BUNDLE_FILE))
        symbol = _NAME.fullmatch(name)["symbol"]
        if bundle.symbol != symbol:
            raise ModelIntegrityError(f"refused: {self.versions_dir / name / BUNDLE_FILE} holds a bundle for "
                                      f"{bundle.symbol}, not {symbol}")
        return bundle

    def cleanup_temp(self, min_age_seconds: float = 3600.0) -> list[Path]:
        """Remove leftovers of killed writers: version temp dirs whose process is gone (or older
        than ``min_age_seconds``) and stale manifest temp files, and settle their audit
        intents. Every version write does this first. Returns what was removed."""
        removed: list[Path] = []
        host = host_tag()
        if self.versions_dir.is_dir():
            for entry in os.scandir(self.versions_dir):
                if not entry.name.startswith(".tmp-"):
                    continue
                m = _TMP_DIR.fullmatch(entry.name)
                dead = bool(m) and m["host"] == host and not pid_alive(int(m["pid"]))
                try:
                    old = time.time() - entry.stat(follow_symlinks=False).st_mtime > min_age_seconds
                except FileNotFoundError:
                    continue
                if dead or old:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(Path(entry.path))
        if self.root.is_dir():
            with self._lock():
                removed += self._settle()
        return removed

    def _remove_manifest_temps(self) -> list[Path]:
        """Caller holds the lock: nobody writes the manifest meanwhile, so any temp is stale."""
        removed = []
        for path in self.root.glob(f".{self.manifest_path.name}.*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    # ---- manifest ------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The production manifest (``{"instruments": {}, "updated_at": None}`` if none yet).
        ModelStoreError if the file is damaged; a damaged entry is reported only when its
        instrument is asked for (``production_entry``), so it cannot stop the others."""
        try:
            data = json.loads(_read_regular_file(self.manifest_path).decode("utf-8"))
        except ModelIntegrityError:
            if not self.manifest_path.exists() and not self.manifest_path.is_symlink():
                return {"instruments": {}, "updated_at": None}
            raise ModelStoreError(f"{self.manifest_path}: not a regular file") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise ModelStoreError(f"{self.manifest_path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("instruments"), dict):
            raise ModelStoreError(f"{self.manifest_path}: no 'instruments' mapping; not a model manifest")
        return data

    def production_entry(self, symbol: str, man: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The manifest entry of ``symbol`` (None if it has none); ModelStoreError if damaged."""
        entry = (man or self.manifest())["instruments"].get(symbol)
        problem = None if entry is None else _entry_problem(symbol, entry)
        if problem:
            raise ModelStoreError(f"{self.manifest_path}: the entry for {symbol!r} is damaged ({problem}); "
                                  "restore the file or promote a version by hand")
        return entry

    def production_versions(self) -> dict[str, str | None]:
        """Each instrument's production version, None where its entry is damaged (for listings)."""
        out: dict[str, str | None] = {}
        for symbol, entry in self.manifest()["instruments"].items():
            out[symbol] = None if _entry_problem(symbol, entry) else entry["version"]
        return out

    def production(self, symbol: str) -> str | None:
        entry = self.production_entry(symbol)
        return entry["version"] if entry else None

    def load_production(self, symbol: str) -> tuple[str, VetoBundle] | None:
        """The production version of ``symbol`` and its bundle, checked against the manifest's sha256."""
        name = self.production(symbol)
        return None if name is None else (name, self.load(name))

    def promote(self, name: str, by: str, reason: str = "", extra: dict[str, Any] | None = None,
                checklist=None) -> dict[str, Any]:
        """Make version ``name`` production for its instrument; returns the manifest entry.
        Promoting the version already in production changes nothing. ``extra`` fields (e.g.
        a forced promotion's failed gates) go into the manifest entry and the audit log.
        ``checklist(current entry, new entry) -> Markdown`` is written to
        ``checklists/<V>-<time>.md`` and linked from the entry. Promoting the version in the
        paper stage ends that stage. The gate and paper policy is
        ``rooney_core.model.promotion.promote_version``'s: use that."""
        if not by or not by.strip():
            raise ModelStoreError(f"promote {name}: say who promotes it (by=...)")
        self.version_dir(name)
        symbol = _NAME.fullmatch(name)["symbol"]
        with self._lock():
            self._settle()
            man = self.manifest()
            try:
                cur = self.production_entry(symbol, man)
            except ModelStoreError:
                cur = None  # promoting by hand is how a damaged entry is replaced
            if cur and cur["version"] == name:
                return cur
            sha256 = self.verify(name)  # a tampered file never reaches production
            history = [*cur.get("history", []), cur["version"]] if cur else []
            entry = {"version": name, "sha256": sha256, "content_hash": self.records()[name].get("content_hash"),
                     "promoted_at": _utc_now(), "promoted_by": by, "previous": cur["version"] if cur else None,
                     "reason": reason, "action": "promote", "history": history, **(extra or {})}
            paper = self.paper_entry(symbol, man)
            graduated = paper is not None and paper.get("version") == name
            if checklist is not None:
                entry["checklist"] = str(self._write_checklist(name, checklist(cur, entry)))
            self._commit(man, symbol, entry, replaced=cur["version"] if cur else None,
                         paper=None if graduated else _KEEP)
        return entry

    # ---- the paper stage (gates -> paper -> production) ----------------------------------------

    def paper_entry(self, symbol: str, man: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The version of ``symbol`` in the paper stage (None if none)."""
        entry = (man or self.manifest()).get("paper", {}).get(symbol)
        if entry is not None and _entry_problem(symbol, entry):
            raise ModelStoreError(f"{self.manifest_path}: the paper entry for {symbol!r} is damaged "
                                  f"({_entry_problem(symbol, entry)})")
        return entry

    def stage_paper(self, name: str, by: str, reason: str, sessions: int,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Put version ``name`` in its instrument's paper stage (replacing any other version
        there): the live engine trades it on paper for ``sessions`` sessions before it may
        go to production. Audit-logged like a promotion."""
        if not by or not by.strip():
            raise ModelStoreError(f"paper {name}: say who stages it (by=...)")
        self.version_dir(name)
        symbol = _NAME.fullmatch(name)["symbol"]
        with self._lock():
            self._settle()
            man = self.manifest()
            cur = self.paper_entry(symbol, man)
            if cur and cur["version"] == name and cur.get("status") == "paper":
                return cur
            entry = {"version": name, "sha256": self.verify(name),
                     "content_hash": self.records()[name].get("content_hash"), "since": _utc_now(),
                     "promoted_at": _utc_now(), "promoted_by": by, "reason": reason, "action": "paper",
                     "status": "paper", "sessions_required": int(sessions), **(extra or {})}
            self._commit(man, symbol, entry, replaced=cur["version"] if cur else None, production=_KEEP,
                         paper=entry)
        return entry

    def update_paper(self, symbol: str, by: str, status: str, result: dict[str, Any]) -> dict[str, Any]:
        """Record the paper stage's latest result (``status``: "paper" while it runs, "failed"
        when its results left the bounds). Audit-logged."""
        with self._lock():
            self._settle()
            man = self.manifest()
            cur = self.paper_entry(symbol, man)
            if cur is None:
                raise ModelStoreError(f"{symbol}: no version in the paper stage")
            entry = {**{k: v for k, v in cur.items() if k != "txn"}, "status": status, "result": result,
                     "promoted_at": _utc_now(), "promoted_by": by, "action": f"paper {status}",
                     "reason": result.get("summary", "")}
            self._commit(man, symbol, entry, replaced=cur["version"], production=_KEEP, paper=entry)
        return entry

    def _write_checklist(self, name: str, text: str) -> Path:
        path = self.root / "checklists" / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
        path.parent.mkdir(exist_ok=True)
        write_text_atomic(text, path)
        return path

    def rollback(self, symbol: str, by: str, reason: str = "") -> dict[str, Any]:
        """Put back the version production had before the current one; returns the new entry."""
        if not by or not by.strip():
            raise ModelStoreError(f"rollback {symbol}: say who rolls back (by=...)")
        with self._lock():
            self._settle()
            man = self.manifest()
            cur = self.production_entry(symbol, man)
            if not cur or not cur.get("previous"):
                now = cur["version"] if cur else "nothing"
                raise ModelStoreError(f"rollback {symbol}: no earlier production version recorded (current: {now})")
            history = list(cur.get("history", [cur["previous"]]))
            target = history.pop()
            sha256 = self.verify(target)
            entry = {"version": target, "sha256": sha256,
                     "content_hash": self.records().get(target, {}).get("content_hash"),
                     "promoted_at": _utc_now(), "promoted_by": by, "previous": history[-1] if history else None,
                     "reason": reason, "action": "rollback", "rolled_back_from": cur["version"],
                     "history": history}
            self._commit(man, symbol, entry, replaced=cur["version"])
        return entry

    # ---- portfolio configs (portfolio_v<N>) ------------------------------------------------------

    def add_portfolio(self, config: dict[str, Any], extra_files: dict[str, bytes] | None = None) -> str:
        """Store a portfolio config (a JSON-ready mapping; its ``version`` is set here) and
        extra files (report.html, plots) as a new immutable ``portfolio_v<N>``."""
        extra = dict(extra_files or {})
        for fname, blob in extra.items():
            if Path(fname).name != fname or fname.startswith(".") or fname == PORTFOLIO_FILE:
                raise ModelStoreError(f"add_portfolio: extra file name {fname!r} must be a plain file name")
            if not isinstance(blob, (bytes, bytearray)):
                raise ModelStoreError(f"add_portfolio: extra file {fname!r} must be bytes")
        self._make_dirs()
        self.portfolios_dir.mkdir(exist_ok=True)
        tmp = make_temp_dir(self.portfolios_dir, f".tmp-{PORTFOLIO}-{os.getpid()}-{host_tag()}-")
        try:
            for fname, blob in extra.items():
                write_file_synced(tmp / fname, bytes(blob))
            with self._lock():
                numbers = [int(m["n"]) for m in map(_PORTFOLIO.fullmatch, self.portfolio_records()) if m]
                numbers += [int(m["n"]) for m in (_PORTFOLIO.fullmatch(e.name) for e in os.scandir(self.portfolios_dir))
                            if m]
                name = f"{PORTFOLIO}_v{max(numbers, default=0) + 1}"
                data = (json.dumps({**config, "version": name}, indent=2, sort_keys=True, default=json_default)
                        + "\n").encode()
                write_file_synced(tmp / PORTFOLIO_FILE, data)
                fsync_path(tmp)
                append_jsonl(self.portfolio_records_path,
                             {"version": name, "sha256": hashlib.sha256(data).hexdigest(), "created_at": _utc_now(),
                              "models": config.get("models"),
                              "extra_files": {f: hashlib.sha256(d).hexdigest() for f, d in sorted(extra.items())}})
                os.rename(tmp, self.portfolios_dir / name)
                fsync_path(self.portfolios_dir)
            return name
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def portfolio_records(self) -> dict[str, dict[str, Any]]:
        """The first record of each portfolio version (a later conflicting line marks it)."""
        return _first_records(self.portfolio_records_path)

    def portfolio_dir(self, name: str) -> Path:
        path = self.portfolios_dir / name if isinstance(name, str) and _PORTFOLIO.fullmatch(name) else None
        if path is None or path.is_symlink() or not path.is_dir():
            raise ModelStoreError(f"unknown portfolio version {name!r} in {self.portfolios_dir}; known: "
                                  f"{', '.join(self.portfolio_versions()) or 'none'}")
        return path

    def portfolio_versions(self) -> list[str]:
        if not self.portfolios_dir.is_dir():
            return []
        found = [(int(m["n"]), e.name) for e in os.scandir(self.portfolios_dir)
                 if (m := _PORTFOLIO.fullmatch(e.name)) and e.is_dir(follow_symlinks=False)]
        return [name for _, name in sorted(found)]

    def verify_portfolio(self, name: str) -> str:
        return self._portfolio_bytes(name)[1]

    def _portfolio_bytes(self, name: str) -> tuple[bytes, str]:
        path = self.portfolio_dir(name) / PORTFOLIO_FILE
        rec = self.portfolio_records().get(name)
        if rec is None or rec.get("conflicting") or not isinstance(rec.get("sha256"), str):
            raise ModelIntegrityError(f"refused: {name} has no single record in {self.portfolio_records_path}")
        want, source = rec["sha256"], PORTFOLIO_RECORDS
        entry = self.portfolio_entry()
        if entry is not None and entry.get("version") == name:
            if entry.get("sha256") != want:
                raise ModelIntegrityError(f"refused: {name}: the manifest's sha256 differs from {PORTFOLIO_RECORDS}")
            source = "the manifest"
        data = _read_regular_file(path)
        actual = hashlib.sha256(data).hexdigest()
        if actual != want:
            raise ModelIntegrityError(f"refused: {path} changed on disk after it was stored (sha256 expected {want} "
                                      f"from {source}, actual {actual})")
        return data, actual

    def load_portfolio(self, name: str) -> dict[str, Any]:
        """A portfolio version's config, after checking its sha256 (manifest or portfolios.log)."""
        data, _ = self._portfolio_bytes(name)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ModelIntegrityError(f"{name}: unreadable portfolio config ({exc})") from None

    def portfolio_entry(self, man: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The manifest's production portfolio entry (None if none)."""
        entry = (man or self.manifest()).get(PORTFOLIO)
        if entry is None:
            return None
        if not isinstance(entry, dict) or not (isinstance(entry.get("version"), str)
                                               and _PORTFOLIO.fullmatch(entry["version"])):
            raise ModelStoreError(f"{self.manifest_path}: the portfolio entry is damaged; promote a version by hand")
        return entry

    def production_portfolio(self) -> str | None:
        entry = self.portfolio_entry()
        return entry["version"] if entry else None

    def promote_portfolio(self, name: str, by: str, reason: str = "", extra: dict[str, Any] | None = None
                          ) -> dict[str, Any]:
        """Make portfolio version ``name`` production (audit-logged like a model promotion)."""
        if not by or not by.strip():
            raise ModelStoreError(f"promote {name}: say who promotes it (by=...)")
        self.portfolio_dir(name)
        with self._lock():
            self._settle()
            man = self.manifest()
            try:
                cur = self.portfolio_entry(man)
            except ModelStoreError:
                cur = None
            if cur and cur["version"] == name:
                return cur
            sha256 = self._portfolio_bytes(name)[1]  # a tampered file never reaches production
            history = [*cur.get("history", []), cur["version"]] if cur else []
            entry = {"version": name, "sha256": sha256, "promoted_at": _utc_now(), "promoted_by": by,
                     "previous": cur["version"] if cur else None, "reason": reason, "action": "promote",
                     "history": history, **(extra or {})}
            self._commit(man, PORTFOLIO, entry, replaced=cur["version"] if cur else None)
        return entry

    def rollback_portfolio(self, by: str, reason: str = "") -> dict[str, Any]:
        """Put back the portfolio version production had before the current one."""
        if not by or not by.strip():
            raise ModelStoreError("rollback portfolio: say who rolls back (by=...)")
        with self._lock():
            self._settle()
            man = self.manifest()
            cur = self.portfolio_entry(man)
            if not cur or not cur.get("history"):
                raise ModelStoreError("rollback portfolio: no earlier production portfolio recorded (current: "
                                      f"{cur['version'] if cur else 'nothing'})")
            history = list(cur["history"])
            target = history.pop()
            entry = {"version": target, "sha256": self._portfolio_bytes(target)[1], "promoted_at": _utc_now(),
                     "promoted_by": by, "previous": history[-1] if history else None, "reason": reason,
                     "action": "rollback", "rolled_back_from": cur["version"], "history": history}
            self._commit(man, PORTFOLIO, entry, replaced=cur["version"])
        return entry

    def _commit(self, man: dict[str, Any], symbol: str, entry: dict[str, Any], replaced: str | None,
                production: Any = None, paper: Any = _KEEP) -> None:
        """Intent, manifest, outcome (caller holds the lock). ``entry`` is what the audit log
        records; the production entry becomes ``production`` (default: ``entry``; ``_KEEP``:
        unchanged) and the paper entry ``paper`` (None: removed; ``_KEEP``: unchanged). The
        changed entry carries the intent's transaction id, which is how ``_settle`` tells a
        change that took effect from one that did not after a kill."""
        txn = uuid.uuid4().hex
        entry["txn"] = txn
        production = entry if production is None else production
        now = entry["promoted_at"]
        append_jsonl(self.audit_path, {"event": "intent", "txn": txn, "at": now, "action": entry["action"],
                                       "symbol": symbol, "version": entry["version"], "replaced": replaced,
                                       "sha256": entry["sha256"], "by": entry["promoted_by"],
                                       "reason": entry["reason"],
                                       **{k: entry[k] for k in ("forced", "flags", "failed_gates", "gates",
                                                                "skipped_paper", "paper", "status") if k in entry}})
        man = {**man, "updated_at": now}
        if production is not _KEEP and symbol == PORTFOLIO:
            man[PORTFOLIO] = {**production, "txn": txn}
        elif production is not _KEEP:
            man["instruments"] = {**man["instruments"], symbol: {**production, "txn": txn}}
        papers = dict(man.get("paper", {}))
        if paper is None:
            if papers.pop(symbol, None) is not None:
                man["paper"] = papers
        elif paper is not _KEEP:
            man["paper"] = {**papers, symbol: {**paper, "txn": txn}}
        write_text_atomic(json.dumps(man, indent=2, sort_keys=True) + "\n", self.manifest_path)
        append_jsonl(self.audit_path, {"event": "done", "txn": txn, "at": _utc_now()})

    def _settle(self) -> list[Path]:
        """Caller holds the lock. Give every intent a killed writer left without an outcome
        its real one, and remove its manifest temp files (returned)."""
        removed = self._remove_manifest_temps()
        man = None
        for rec in self._audit_entries(resolve=False):
            if rec["status"] != "pending":
                continue
            man = man or self.manifest()
            took = rec["txn"] in _txn(man, rec.get("symbol"))
            append_jsonl(self.audit_path, {"event": "done" if took else "aborted", "txn": rec["txn"],
                                           "at": _utc_now(), "settled": "after an interrupted write"})
        return removed

    def audit_log(self) -> list[dict[str, Any]]:
        """Every promotion and rollback, oldest first, each with its ``status``: "done" (it
        took effect), "aborted" (its writer died before the manifest changed) or "pending"
        (being written now, or left by a killed writer and not yet settled)."""
        return self._audit_entries(resolve=True)

    def _audit_entries(self, resolve: bool) -> list[dict[str, Any]]:
        """Intents with the outcome written for them; with ``resolve``, an intent without one
        counts as done if the manifest carries its transaction (the writer died after the
        switch), which a reader may conclude but only ``_settle`` writes down."""
        records = read_jsonl(self.audit_path)
        outcome = {r["txn"]: r["event"] for r in records if r.get("event") in ("done", "aborted") and "txn" in r}
        manifest = None
        out = []
        for rec in records:
            event = rec.get("event")
            if event is None and "action" in rec:  # written before intents were kept
                out.append({**rec, "status": "done"})
            elif event == "intent" and isinstance(rec.get("txn"), str):
                status = outcome.get(rec["txn"])
                if status is None and not resolve:
                    status = "pending"
                elif status is None:
                    if manifest is None:
                        try:
                            manifest = self.manifest()
                        except ModelStoreError:
                            manifest = {"instruments": {}}
                    took = rec["txn"] in _txn(manifest, rec.get("symbol"))
                    status = "done" if took else "pending"
                out.append({k: v for k, v in rec.items() if k != "event"} | {"status": status})
        return out


def _first_records(path: Path) -> dict[str, dict[str, Any]]:
    """The first line of each version in an append-only records file; a later line with
    another sha256 marks it ``conflicting`` (the log was edited)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in read_jsonl(path):
        name = rec.get("version")
        if not isinstance(name, str):
            continue
        if name not in out:
            out[name] = rec
        elif rec.get("sha256") != out[name].get("sha256"):
            out[name] = {**out[name], "conflicting": True}
    return out


def _txn(man: dict[str, Any], symbol: Any) -> set[str]:
    """The transaction ids of ``symbol``'s production and paper entries (readable ones)."""
    out = set()
    if symbol == PORTFOLIO:
        entry = man.get(PORTFOLIO)
        return {entry["txn"]} if isinstance(entry, dict) and isinstance(entry.get("txn"), str) else out
    for section in ("instruments", "paper"):
        entry = man.get(section, {}).get(symbol) if isinstance(symbol, str) else None
        if isinstance(entry, dict) and isinstance(entry.get("txn"), str):
            out.add(entry["txn"])
    return out


def _entry_problem(symbol: Any, entry: Any) -> str | None:
    """What is wrong with one manifest entry, or None."""
    if not isinstance(entry, dict):
        return f"expected a mapping, got {type(entry).__name__}"
    version = entry.get("version")
    m = _NAME.fullmatch(version) if isinstance(version, str) else None
    if m is None:
        return f"version {version!r} is not a <SYMBOL>_v<N> name"
    if m["symbol"] != symbol:
        return f"version {version} belongs to {m['symbol']}"
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        return "sha256 is not a 64-digit hex string"
    return None
