"""Atomic, durable file writes: the one place that writes files that money depends on.

Every write goes to a temporary file in the target's directory, is fsynced, and is renamed
onto the target, so a reader sees the old file or the new one, never half of either (R2).

Permissions follow the process umask, as ``open()`` would: ``mkstemp`` and ``mkdtemp``
create 0600 files and 0700 directories, which would make a model store written by the
pipeline unreadable to a live engine running as another user of the same group.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it (Linux reports it in /proc); falls back
    to the set-and-restore dance elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` would give a new directory."""
    return 0o777 & ~current_umask()


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, empty temporary directory in ``parent`` with the umask's permissions."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, dir_mode())
    return tmp


def write_file_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and fsync it (for files inside a temporary directory that
    is itself renamed into place)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def host_tag() -> str:
    """This host's name as it goes into temporary names (no separators)."""
    return socket.gethostname().replace("/", "_").replace(".", "_") or "host"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_dead_temps(target: Path, max_age_seconds: float = 86_400.0) -> list[Path]:
    """Remove temporary files of ``target`` left by writers that were killed: those of a dead
    process on this host, or older than ``max_age_seconds`` (another host's). A live writer's
    temp file is never touched."""
    removed = []
    host = host_tag()
    prefix = f".{target.name}."
    for entry in os.scandir(target.parent):
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        parts = name[len(prefix):].split(".")
        mine = len(parts) >= 3 and parts[0] == host and parts[1].isdigit()
        try:
            old = time.time() - entry.stat(follow_symlinks=False).st_mtime > max_age_seconds
        except FileNotFoundError:
            continue
        if (mine and not pid_alive(int(parts[1]))) or old:
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.
    Leftovers of killed writers of the same target are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(target)
    # host and pid in the name tell a dead writer's leftover from a live writer's file
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{host_tag()}.{os.getpid()}.", suffix=".tmp",
                               dir=target.parent)
    os.fchmod(fd, file_mode())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, target)
        fsync_path(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(text: str, target: Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes_atomic(data: bytes, target: Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def jsonable(obj):
    """The one JSON-cleaning helper: ``obj`` with numpy scalars and arrays made plain Python,
    non-finite floats made None (JSON has no NaN: never a number) and times ISO strings,
    recursively through dicts, lists and tuples."""
    import datetime as dt
    import math

    import numpy as np
    import pandas as pd

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in (obj.tolist() if obj.dtype.kind not in "mM" else obj)]
    if isinstance(obj, pd.Timestamp | dt.datetime | np.datetime64):
        return pd.Timestamp(obj).isoformat()
    if isinstance(obj, dt.date):
        return obj.isoformat()
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return None if not math.isfinite(obj) else float(obj)
    return obj


def write_line(fd: int, line: bytes) -> None:
    """Append ``line`` to the file open as ``fd`` (O_APPEND) durably. A writer killed mid-line
    would glue the next record onto its fragment, so a line always starts after a newline."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        line = b"\n" + line
    os.write(fd, line)
    os.fsync(fd)


def append_jsonl(path: Path, record: dict, *, fd: int | None = None, ensure_ascii: bool = True) -> None:
    """Append one JSON object as a line, durably (``write_line``); to ``fd`` when the caller
    already holds the file open (e.g. under its lock), else to ``path`` opened for append
    (the umask applies). ``read_jsonl`` skips a line torn by a kill."""
    import json

    line = json.dumps(jsonable(record), sort_keys=True, default=str, ensure_ascii=ensure_ascii).encode("utf-8")
    if fd is not None:
        write_line(fd, line + b"\n")
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    own = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        write_line(own, line + b"\n")
    finally:
        os.close(own)


def read_jsonl(path: Path) -> list[dict]:
    """Every JSON object line of ``path``, oldest first (missing file: none; torn lines skipped)."""
    import json

    try:
        raw = Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in raw.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
