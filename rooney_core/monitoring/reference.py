"""The training distribution stored with each model version, and reading it back verified.

``train_and_store`` adds ``reference_features.parquet`` to every new version: the training
rows' signal times and the values of the model's features (the rows the forest was fitted
on, before the holdout). Drift, out-of-distribution and NaN checks compare live feature rows
with it; the block bootstrap that calibrates the drift thresholds draws sessions from it,
which is why whole rows with their times are kept rather than a quantile summary. Its size
is small: 11,825 training rows x 27 features (nine years of ES signals on the sample market)
are 1.9 MB of Parquet, so 15 years of a real instrument (10-30 thousand signals) stay a few MB.

A version's extra files are recorded in ``versions.log`` with their sha256 when the version
is stored (``ModelStore.add_version``); ``version_file`` reads one back only if its bytes
still have that sha256 (``metadata.json`` is never trusted for it), so an edited reference
can not quietly change what counts as drift.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pandas as pd

from rooney_core.model.store import RECORDS_FILE, ModelIntegrityError, ModelStore

REFERENCE_FILE = "reference_features.parquet"
HOLDOUT_FILE = "holdout.parquet"


def reference_frame(train_rows: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """``signal_time`` and the model's features of the training rows, in time order."""
    missing = [c for c in ["signal_time", *features] if c not in train_rows]
    if missing:
        raise ValueError(f"training rows lack columns {missing}")
    out = train_rows[["signal_time", *features]].sort_values("signal_time", kind="stable").reset_index(drop=True)
    out["signal_time"] = pd.to_datetime(out["signal_time"]).astype("datetime64[ns]")
    return out.astype({f: "float64" for f in features})


def reference_bytes(frame: pd.DataFrame) -> bytes:
    """The Parquet bytes of a reference frame (zstd: 1.86 MB against snappy's 2.00 MB on the
    sample above)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def version_file(store: ModelStore, version: str, fname: str) -> bytes:
    """The bytes of extra file ``fname`` of ``version``, after checking them against the
    sha256 that versions.log recorded when the version was stored. ModelIntegrityError if
    the file is missing, not a regular file, unrecorded or changed."""
    vdir = store.version_dir(version)
    rec = store.records().get(version)
    if rec is None or rec.get("conflicting"):
        raise ModelIntegrityError(f"refused: {version} has no single record in {store.records_path}")
    want = (rec.get("extra_files") or {}).get(fname)
    if not isinstance(want, str):
        raise ModelIntegrityError(f"{version}: {RECORDS_FILE} records no {fname} for it (stored before "
                                  f"{fname} was kept, or never); retrain to get one")
    path = Path(vdir) / fname
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ModelIntegrityError(f"refused: {path} cannot be opened ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelIntegrityError(f"refused: {path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    finally:
        os.close(fd)
    actual = hashlib.sha256(data).hexdigest()
    if actual != want:
        raise ModelIntegrityError(f"refused: {path} changed after it was stored (sha256 expected {want} from "
                                  f"{RECORDS_FILE}, actual {actual})")
    return data


def load_reference_features(store: ModelStore, version: str) -> pd.DataFrame:
    """The training distribution of ``version`` (``signal_time`` + its features), verified."""
    return pd.read_parquet(io.BytesIO(version_file(store, version, REFERENCE_FILE)))


def load_holdout(store: ModelStore, version: str) -> pd.DataFrame:
    """The scored holdout signals of ``version`` (probability, selected, win, ...), verified."""
    return pd.read_parquet(io.BytesIO(version_file(store, version, HOLDOUT_FILE)))
