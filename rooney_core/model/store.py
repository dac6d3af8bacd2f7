"""The versioned model store, its production manifest and the audit log.

Layout under the root::

    versions/<SYMBOL>_v<N>/bundle.joblib     the VetoBundle (joblib)
    versions/<SYMBOL>_v<N>/metadata.json     the bundle minus the estimator, sha256, content_hash
    versions/<SYMBOL>_v<N>/<extra files>     report.html, plots, ...
    manifest.json                            which version of each instrument is in production
    audit.log                                one JSON line per promotion or rollback

Crash safety (R2): a version is written in full into a temporary directory and renamed into
place, so a version directory either exists complete or not at all, and is never rewritten.
The manifest is replaced atomically under an exclusive lock, so production is always either
the old version or the new one, and concurrent promotions cannot lose each other's updates.
Integrity (R6): loading recomputes bundle.joblib's sha256 and refuses a file that changed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from rooney_core.data.lake import write_text_atomic
from rooney_core.errors import RooneyError
from rooney_core.model.bundle import VetoBundle, json_default

BUNDLE_FILE = "bundle.joblib"
METADATA_FILE = "metadata.json"
_NAME = re.compile(r"^(?P<symbol>[A-Za-z0-9]+)_v(?P<n>[1-9][0-9]*)$")
_TMP_DIR = re.compile(r"^\.tmp-[A-Za-z0-9]+-(?P<pid>\d+)-(?P<host>.+)-[^-]+$")


class ModelStoreError(RooneyError):
    """A version or instrument is unknown, or a store operation cannot proceed."""


class ModelIntegrityError(ModelStoreError):
    """A stored bundle no longer matches the sha256 recorded when it was stored or promoted."""


def default_store_root(repo_root: str | os.PathLike[str]) -> Path:
    """``$ROONEY_MODEL_STORE`` (relative to the repository root), else ``<repo>/dagster_home/storage/models``."""
    env = os.environ.get("ROONEY_MODEL_STORE")
    if env:
        path = Path(os.path.expandvars(env)).expanduser()
        return path if path.is_absolute() else (Path(repo_root) / path).resolve()
    return Path(repo_root) / "dagster_home" / "storage" / "models"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class ModelStore:
    """Immutable model versions ``<SYMBOL>_v<N>`` and the manifest naming production ones."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.manifest_path = self.root / "manifest.json"
        self.audit_path = self.root / "audit.log"
        self._lock_path = self.root / ".manifest.lock"

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # ---- versions -------------------------------------------------------------------------

    def add_version(self, bundle: VetoBundle, extra_files: dict[str, bytes] | None = None) -> str:
        """Store ``bundle`` (and extra files) as a new immutable version; returns its name."""
        if not isinstance(bundle, VetoBundle):
            raise ModelStoreError(f"add_version: expected a VetoBundle, got {type(bundle).__name__}")
        extra = dict(extra_files or {})
        for fname, data in extra.items():
            if Path(fname).name != fname or fname.startswith(".") or fname in (BUNDLE_FILE, METADATA_FILE):
                raise ModelStoreError(f"add_version: extra file name {fname!r} must be a plain file name "
                                      f"other than {BUNDLE_FILE} and {METADATA_FILE}")
            if not isinstance(data, (bytes, bytearray)):
                raise ModelStoreError(f"add_version: extra file {fname!r} must be bytes")
        symbol = bundle.symbol
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        # pid and host in the name let cleanup_temp tell a dead writer's leftovers from live work.
        host = socket.gethostname().replace("/", "_") or "host"
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{symbol}-{os.getpid()}-{host}-", dir=self.versions_dir))
        try:
            joblib.dump(bundle, tmp / BUNDLE_FILE)
            _fsync(tmp / BUNDLE_FILE)
            for fname, data in extra.items():
                _write_synced(tmp / fname, bytes(data))
            base = {**bundle.metadata(), "sha256": _sha256(tmp / BUNDLE_FILE),
                    "content_hash": bundle.content_hash(), "created_at": _utc_now(),
                    "extra_files": {f: hashlib.sha256(d).hexdigest() for f, d in sorted(extra.items())}}
            for _ in range(1000):
                n = self._next_number(symbol)
                name = f"{symbol}_v{n}"
                meta = {**base, "version": name, "number": n}
                _write_synced(tmp / METADATA_FILE,
                              json.dumps(meta, indent=2, sort_keys=True, default=json_default).encode())
                _fsync(tmp)
                try:
                    # rename(2) of a directory onto a non-empty one fails: never overwrites a version.
                    os.rename(tmp, self.versions_dir / name)
                except OSError as exc:
                    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        continue  # a concurrent writer took N first; take the next number
                    raise
                _fsync(self.versions_dir)
                return name
            raise ModelStoreError(f"add_version: could not claim a version name for {symbol} in {self.versions_dir}")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _names(self, symbol: str | None = None) -> list[tuple[str, int, str]]:
        """(symbol, N, name) of every complete version, sorted; temporary directories are skipped."""
        if not self.versions_dir.is_dir():
            return []
        out = []
        for entry in os.scandir(self.versions_dir):
            m = _NAME.match(entry.name)
            if m and entry.is_dir() and (symbol is None or m["symbol"] == symbol):
                out.append((m["symbol"], int(m["n"]), entry.name))
        return sorted(out)

    def _next_number(self, symbol: str) -> int:
        return max((n for _, n, _ in self._names(symbol)), default=0) + 1

    def list_versions(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Metadata of every version (of ``symbol``), sorted by symbol then N."""
        return [self.load_metadata(name) for _, _, name in self._names(symbol)]

    def version_dir(self, name: str) -> Path:
        """The directory of version ``name``; ModelStoreError listing known versions if unknown."""
        m = _NAME.match(name)
        path = self.versions_dir / name
        if m is None or not path.is_dir():
            sym = m["symbol"] if m else name.split("_v")[0]
            known = [n for _, _, n in self._names(sym)]
            raise ModelStoreError(f"unknown model version {name!r} in {self.versions_dir}; "
                                  f"known {sym} versions: {', '.join(known) or 'none'}")
        return path

    def load_metadata(self, name: str) -> dict[str, Any]:
        path = self.version_dir(name) / METADATA_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"{path}: unreadable version metadata ({exc})") from None

    def _check(self, path: Path, actual: str, meta: dict, expected_sha256: str | None) -> None:
        for want, source in ((expected_sha256, "the manifest"), (meta.get("sha256"), METADATA_FILE)):
            if want is not None and actual != want:
                raise ModelIntegrityError(
                    f"refused: {path} changed on disk after it was stored (sha256 expected {want} from "
                    f"{source}, actual {actual}); restore the file or promote another version")

    def verify(self, name: str, expected_sha256: str | None = None) -> dict[str, Any]:
        """Check bundle.joblib against its recorded sha256 (and ``expected_sha256``); returns metadata."""
        meta = self.load_metadata(name)
        path = self.version_dir(name) / BUNDLE_FILE
        if not path.is_file():
            raise ModelIntegrityError(f"refused: {path} is missing")
        self._check(path, _sha256(path), meta, expected_sha256)
        return meta

    def load(self, name: str, expected_sha256: str | None = None) -> VetoBundle:
        """Load a version after checking its sha256 (against metadata and ``expected_sha256``)."""
        meta = self.load_metadata(name)
        path = self.version_dir(name) / BUNDLE_FILE
        try:
            data = path.read_bytes()  # hash exactly the bytes we unpickle: no swap in between
        except FileNotFoundError:
            raise ModelIntegrityError(f"refused: {path} is missing") from None
        self._check(path, hashlib.sha256(data).hexdigest(), meta, expected_sha256)
        bundle = joblib.load(io.BytesIO(data))
        if not isinstance(bundle, VetoBundle) or bundle.symbol != meta.get("symbol"):
            raise ModelStoreError(f"{path}: not the VetoBundle for {meta.get('symbol')} its metadata describes")
        return bundle

    def cleanup_temp(self, min_age_seconds: float = 3600.0) -> list[Path]:
        """Remove leftovers of killed writers: version temp dirs whose process is gone (or older
        than ``min_age_seconds``) and stale manifest temp files. Returns what was removed."""
        removed: list[Path] = []
        host = socket.gethostname().replace("/", "_") or "host"
        if self.versions_dir.is_dir():
            for entry in os.scandir(self.versions_dir):
                if not entry.name.startswith(".tmp-"):
                    continue
                m = _TMP_DIR.match(entry.name)
                dead = bool(m) and m["host"] == host and not _pid_alive(int(m["pid"]))
                if dead or time.time() - entry.stat().st_mtime > min_age_seconds:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(Path(entry.path))
        if self.root.is_dir():
            with self._manifest_lock():  # nobody writes the manifest meanwhile: any temp is stale
                for path in self.root.glob(f".{self.manifest_path.name}.*.tmp"):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    # ---- manifest ------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The production manifest (``{"instruments": {}, "updated_at": None}`` if none yet)."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"instruments": {}, "updated_at": None}
        except ValueError as exc:
            raise ModelStoreError(f"{self.manifest_path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("instruments"), dict):
            raise ModelStoreError(f"{self.manifest_path}: no 'instruments' mapping; not a model manifest")
        return data

    def production(self, symbol: str) -> str | None:
        entry = self.manifest()["instruments"].get(symbol)
        return entry["version"] if entry else None

    def load_production(self, symbol: str) -> tuple[str, VetoBundle] | None:
        """The production version of ``symbol`` and its bundle, checked against the manifest's sha256."""
        entry = self.manifest()["instruments"].get(symbol)
        if not entry:
            return None
        return entry["version"], self.load(entry["version"], expected_sha256=entry["sha256"])

    @contextmanager
    def _manifest_lock(self) -> Iterator[None]:
        # flock is released by the kernel if the holder dies, so a kill never leaves it stuck.
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def promote(self, name: str, by: str, reason: str = "") -> dict[str, Any]:
        """Make version ``name`` production for its instrument; returns the manifest entry.
        Promoting the version already in production changes nothing."""
        if not by or not by.strip():
            raise ModelStoreError(f"promote {name}: say who promotes it (by=...)")
        meta = self.verify(name)  # a tampered file never reaches production
        symbol = meta["symbol"]
        with self._manifest_lock():
            man = self.manifest()
            cur = man["instruments"].get(symbol)
            if cur and cur["version"] == name:
                return cur
            history = [*cur.get("history", []), cur["version"]] if cur else []
            entry = {"version": name, "sha256": meta["sha256"], "content_hash": meta["content_hash"],
                     "promoted_at": _utc_now(), "promoted_by": by, "previous": cur["version"] if cur else None,
                     "reason": reason, "action": "promote", "history": history}
            self._commit(man, symbol, entry, replaced=cur["version"] if cur else None)
        return entry

    def rollback(self, symbol: str, by: str, reason: str = "") -> dict[str, Any]:
        """Put back the version production had before the current one; returns the new entry."""
        if not by or not by.strip():
            raise ModelStoreError(f"rollback {symbol}: say who rolls back (by=...)")
        with self._manifest_lock():
            man = self.manifest()
            cur = man["instruments"].get(symbol)
            if not cur or not cur.get("previous"):
                now = cur["version"] if cur else "nothing"
                raise ModelStoreError(f"rollback {symbol}: no earlier production version recorded (current: {now})")
            history = list(cur.get("history", [cur["previous"]]))
            target = history.pop()
            meta = self.verify(target)
            entry = {"version": target, "sha256": meta["sha256"], "content_hash": meta["content_hash"],
                     "promoted_at": _utc_now(), "promoted_by": by, "previous": history[-1] if history else None,
                     "reason": reason, "action": "rollback", "rolled_back_from": cur["version"],
                     "history": history}
            self._commit(man, symbol, entry, replaced=cur["version"])
        return entry

    def _commit(self, man: dict[str, Any], symbol: str, entry: dict[str, Any], replaced: str | None) -> None:
        """Audit line first, then the manifest (caller holds the lock): every production state
        that ever existed has its audit line; a kill in between leaves an extra line only."""
        now = entry["promoted_at"]
        self._append_audit({"at": now, "action": entry["action"], "symbol": symbol, "version": entry["version"],
                            "replaced": replaced, "sha256": entry["sha256"], "by": entry["promoted_by"],
                            "reason": entry["reason"]})
        man = {**man, "instruments": {**man["instruments"], symbol: entry}, "updated_at": now}
        write_text_atomic(json.dumps(man, indent=2, sort_keys=True) + "\n", self.manifest_path)

    def _append_audit(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True).encode() + b"\n"
        fd = os.open(self.audit_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # A writer killed mid-line would glue the next record onto its fragment: start afresh.
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def audit_log(self) -> list[dict[str, Any]]:
        """Every promotion and rollback, oldest first (a line torn by a kill is skipped)."""
        try:
            lines = self.audit_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
