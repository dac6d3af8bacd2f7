"""The bytes of ``bundle.skops``: the one place that turns a stored model back into objects.

Why skops and not joblib/pickle: unpickling runs whatever code the file names (a
``__reduce__`` that calls ``os.system`` runs on load), so a pickle is only as safe as the
hand that wrote it. skops stores the estimator as a schema of plain arrays and known types;
loading refuses every type not on an allow-list before anything is built. So a bundle is
checked twice before use: its sha256 against the store's record (is it the file we stored?)
and its types against the allow-list (could it do anything but predict?).

Layout: a skops zip holding ``{"format": 2, "estimator": <fitted estimator>, "bundle":
<canonical JSON of every other field>}``. The JSON keeps provenance out of skops' type
system: strings, numbers and lists come back exactly as they went in, so the content hash
of a loaded bundle equals the hash of the bundle that was stored (R3).
"""

from __future__ import annotations

import json
import zipfile
from typing import Any

from rooney_core.model.bundle import BundleError, VetoBundle, canonical_json

FORMAT = 2
SUFFIX = ".skops"

# Types a bundle may hold beyond skops' defaults (scikit-learn estimators, numpy arrays and
# dtypes, builtin containers). A fitted tree's node arrays live in this Cython class; skops
# rebuilds it from arrays through its own loader, never through pickle.
EXTRA_TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)


class UnsafeBundleError(BundleError):
    """A bundle file holds types that are not on the allow-list, or is not a bundle at all."""


def _sio():
    """skops.io, imported when a bundle is read or written (it takes seconds to import, and
    most commands never touch a model)."""
    import skops.io

    return skops.io


def dump_bundle(bundle: VetoBundle) -> bytes:
    """The bytes of ``bundle.skops`` for ``bundle``."""
    sio = _sio()
    fields = {k: v for k, v in bundle.fields().items() if k != "estimator"}
    return sio.dumps({"format": FORMAT, "estimator": bundle.estimator, "bundle": canonical_json(fields)},
                     compression=zipfile.ZIP_DEFLATED)


def untrusted_types(data: bytes) -> list[str]:
    """Types in ``data`` outside skops' defaults and our allow-list (empty = safe to build)."""
    try:
        found = _sio().get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a skops file"
        raise UnsafeBundleError(f"not a skops bundle ({type(exc).__name__}: {exc})") from None
    return sorted(set(found) - set(EXTRA_TRUSTED_TYPES))


def load_bundle(data: bytes, where: str) -> VetoBundle:
    """Build the VetoBundle in ``data`` (the bytes of a bundle.skops). Refuses a file that is
    not a skops zip, names a type off the allow-list, or does not hold a valid bundle.

    The caller must have checked ``data``'s sha256 against the store's record first; this
    function only guarantees that building the objects runs no code of the file's choosing.
    """
    if not data.startswith(b"PK"):
        hint = " (a pickle/joblib file: those can run code on load and are never loaded)" \
            if data[:1] == b"\x80" else ""
        raise UnsafeBundleError(f"{where}: not a skops bundle{hint}")
    bad = untrusted_types(data)
    if bad:
        raise UnsafeBundleError(f"{where}: refused: the file names types outside the allow-list: {', '.join(bad)}")
    try:
        state = _sio().loads(data, trusted=list(EXTRA_TRUSTED_TYPES))
    except Exception as exc:  # noqa: BLE001 - a damaged zip or schema
        raise UnsafeBundleError(f"{where}: unreadable skops bundle ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("bundle"), str):
        raise UnsafeBundleError(f"{where}: not a format-{FORMAT} veto bundle")
    try:
        fields: dict[str, Any] = json.loads(state["bundle"])
    except ValueError as exc:
        raise UnsafeBundleError(f"{where}: bundle fields are not valid JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise UnsafeBundleError(f"{where}: bundle fields are not a mapping")
    try:
        return VetoBundle(estimator=state["estimator"], **fields)
    except TypeError as exc:
        raise UnsafeBundleError(f"{where}: bundle fields do not match a VetoBundle ({exc})") from None


def load_bundle_file(path, trust_file: bool) -> tuple[VetoBundle, str]:
    """Load a bundle from an arbitrary file, outside the store: research use only, never by
    the pipeline or the live engine. Nothing vouches for such a file, so the caller must say
    ``trust_file=True``; the type allow-list still applies (no pickle, no code runs).
    Returns the bundle and the file's sha256, for the record of what was used."""
    import hashlib
    import stat
    from pathlib import Path

    path = Path(path)
    if not trust_file:
        raise UnsafeBundleError(f"{path}: a model file outside the store is unverified; pass --trust-file to load "
                                "it anyway, or use a stored version name such as ES_v2")
    try:
        st = path.stat()
    except OSError as exc:
        raise UnsafeBundleError(f"{path}: cannot read the model file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeBundleError(f"{path}: not a regular file")
    data = path.read_bytes()
    return load_bundle(data, str(path)), hashlib.sha256(data).hexdigest()
