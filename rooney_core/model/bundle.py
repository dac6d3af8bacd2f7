"""The veto model bundle: a fitted classifier plus everything needed to use and trace it.

A ``VetoBundle`` is what the model store saves with joblib and what backtest, paper and live
load. The runner's adapters read exactly ``estimator``, ``feature_names`` and ``threshold``;
the rest says what the model was trained on (registry version, schema and data hashes, the
training config) and with what (library and code versions), so any result can be traced.

``content_hash()`` identifies the *model*, not the run that made it: the same data, config
and seed give the same hash (R3), whatever the clock, machine or checkout said.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import platform
import subprocess
import types
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rooney_core.errors import RooneyError

_LIBRARIES = ("numpy", "pandas", "scikit-learn", "scipy", "optuna", "joblib", "backtrader", "duckdb", "pyarrow")


class BundleError(RooneyError, ValueError):
    """A bundle was built from inconsistent parts (names the part and what is wrong)."""


def library_versions() -> dict[str, str]:
    """Python and the versions of the libraries a bundle's behaviour depends on."""
    out = {"python": platform.python_version()}
    for dist in _LIBRARIES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def code_version(checkout: Path | None = None) -> str:
    """The git commit of this checkout (``-dirty`` if tracked files changed), else the installed
    package version, else ``"unknown"``. Never raises: a missing git must not stop training.

    Read-only: ``git status`` normally refreshes the index (taking ``.git/index.lock``), which
    can collide with a developer's own git command; ``--no-optional-locks`` forbids that."""
    here = checkout or Path(__file__).resolve().parent
    try:
        git = ["git", "--no-optional-locks", "-C", str(here)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
        if commit:
            return commit + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - no git, not a checkout, timeout: fall back below
        pass
    try:
        return importlib.metadata.version("rooney-pipeline")
    except Exception:  # noqa: BLE001
        return "unknown"


def json_default(obj: Any) -> Any:
    """JSON for the few non-JSON types configs and metrics carry. Anything else is an error:
    falling back to ``repr`` could put a memory address into a hash."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, shortest float repr."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=json_default)


def _feed(h: Any, obj: Any, depth: int = 0) -> None:
    """Feed ``obj``'s structure and values into hash ``h``, length-prefixed and tagged by kind.

    Why not hash the pickle: pickle output depends on which objects happen to be *shared*
    (its memo), and that differs between a freshly fitted forest and the same forest loaded
    back, so equal models gave unequal hashes. Why per field for structured arrays: a tree's
    node array has padding bytes that hold whatever the allocator left there."""
    def put(tag: bytes, data: bytes = b"") -> None:
        h.update(tag + len(data).to_bytes(8, "little") + data)

    if depth > 100:
        raise BundleError("estimator is nested too deeply to fingerprint (a reference cycle?)")
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        put(b"S", f"{type(obj).__name__}:{obj!r}".encode())
    elif isinstance(obj, np.ndarray):
        if obj.dtype.names:
            put(b"R", repr(obj.shape).encode())
            for name in obj.dtype.names:
                put(b"F", name.encode())
                _feed(h, obj[name], depth + 1)
        elif obj.dtype.hasobject:
            put(b"O", repr(obj.shape).encode())
            for item in obj.ravel(order="C"):
                _feed(h, item, depth + 1)
        else:
            put(b"A", f"{obj.dtype.str}{obj.shape}".encode())
            put(b"D", np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, np.generic):
        _feed(h, np.asarray(obj), depth + 1)
    elif isinstance(obj, (list, tuple)):
        put(b"L" if isinstance(obj, list) else b"T", str(len(obj)).encode())
        for item in obj:
            _feed(h, item, depth + 1)
    elif isinstance(obj, dict):
        put(b"M", str(len(obj)).encode())
        for key, value in sorted(obj.items(), key=lambda kv: repr(kv[0])):
            _feed(h, key, depth + 1)
            _feed(h, value, depth + 1)
    elif isinstance(obj, (set, frozenset)):
        _feed(h, sorted(obj, key=repr), depth + 1)
    elif isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
        put(b"G", f"{obj.__module__}.{obj.__qualname__}".encode())
    else:  # any other object: what pickle would save (constructor, arguments, state, items)
        reduced = obj.__reduce_ex__(4)
        if isinstance(reduced, str):
            put(b"G", f"{type(obj).__module__}.{reduced}".encode())
            return
        put(b"X", f"{type(obj).__module__}.{type(obj).__qualname__}".encode())
        parts = [list(p) if p is not None and i >= 3 else p for i, p in enumerate(reduced)]
        _feed(h, parts, depth + 1)


def estimator_hash(estimator: Any) -> str:
    """sha256 of a fitted estimator's classes, parameters and fitted arrays, independent of
    object identity and memory padding: equal models give equal hashes."""
    h = hashlib.sha256()
    _feed(h, estimator)
    return h.hexdigest()


# Config keys that say where or how a study ran, not what the model is (kept out of hashes).
UNHASHED_CONFIG_KEYS = ("storage", "shared_study")


def hashed_config(config: dict) -> dict:
    """The part of a training config that defines the model."""
    return {k: v for k, v in config.items() if k not in UNHASHED_CONFIG_KEYS}


def config_hash(config: dict) -> str:
    """The one config hash: 16 hex digits of the model-defining part of a (JSON-dumped)
    training config. Where the study is kept is left out (a storage URL may hold a password)."""
    return hashlib.sha256(json.dumps(hashed_config(config), sort_keys=True).encode()).hexdigest()[:16]


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class VetoBundle:
    """A fitted binary classifier that vetoes base IBS entries, and its provenance.

    ``predict_proba(X)`` takes rows in ``feature_names`` order, shape (n, len(feature_names)),
    and returns P(win) = P(class 1) per row; a row with a missing (NaN) feature gets NaN,
    which never passes a threshold, so a missing feature vetoes (parity rule 6).
    ``fill_values`` (feature -> value) is part of the stored format and always empty today:
    nothing fills a missing feature (no silent zero-filling), it vetoes.
    """

    bundle_format = 2  # 2: bundle.skops (see bundle_file.py); 1 was a joblib pickle

    def __init__(self, *, symbol: str, estimator: Any, feature_names: list[str], threshold: float,
                 registry_version: str, feature_schema_hash: str, data_hash: str,
                 fill_values: dict[str, float] | None = None, config: dict | None = None,
                 metrics: dict | None = None, library_versions: dict[str, str] | None = None,
                 code_version: str | None = None, trained_at: str | None = None) -> None:
        self.symbol = str(symbol)
        self.estimator = estimator
        self.feature_names = [str(n) for n in feature_names]
        self.threshold = float(threshold)
        self.registry_version = str(registry_version)
        self.feature_schema_hash = str(feature_schema_hash)
        self.data_hash = str(data_hash)
        self.fill_values = {str(k): float(v) for k, v in (fill_values or {}).items()}
        self.config = dict(config or {})
        self.metrics = dict(metrics or {})
        self.library_versions = dict(library_versions) if library_versions is not None else _libs()
        self.code_version = code_version if code_version is not None else _code()
        self.trained_at = trained_at or _utc_now()
        self._validate()

    def _validate(self) -> None:
        where = f"veto bundle for {self.symbol!r}"
        if not self.symbol.isalnum() or not self.symbol.isascii():
            raise BundleError(f"{where}: symbol must be letters and digits (it names store versions)")
        names = self.feature_names
        if not names or len(set(names)) != len(names):
            raise BundleError(f"{where}: feature_names must be a non-empty list without duplicates: {names}")
        if not hasattr(self.estimator, "predict_proba"):
            raise BundleError(f"{where}: estimator {type(self.estimator).__name__} has no predict_proba")
        classes = getattr(self.estimator, "classes_", None)
        if classes is None:
            raise BundleError(f"{where}: estimator is not fitted (no classes_)")
        # The adapters read column 1 as P(win); that is only true for classes exactly [0, 1].
        if len(classes) != 2 or not np.array_equal(np.asarray(classes, dtype=float), [0.0, 1.0]):
            raise BundleError(f"{where}: estimator classes must be [0, 1] (loss, win), got {list(classes)}")
        n_in = getattr(self.estimator, "n_features_in_", len(names))
        if n_in != len(names):
            raise BundleError(f"{where}: estimator was fitted on {n_in} features, feature_names has {len(names)}")
        unknown = sorted(set(self.fill_values) - set(names))
        if unknown:
            raise BundleError(f"{where}: fill_values for features the model does not use: {unknown}")
        if not all(math.isfinite(v) for v in self.fill_values.values()):
            raise BundleError(f"{where}: fill_values must be finite numbers: {self.fill_values}")
        if not 0.0 <= self.threshold <= 1.0:
            raise BundleError(f"{where}: threshold {self.threshold} is not a probability in [0, 1]")
        for part in ("config", "metrics"):
            try:
                canonical_json(getattr(self, part))
            except (TypeError, ValueError) as exc:
                raise BundleError(f"{where}: {part} is not JSON serialisable ({exc})") from None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(win) for each row of X, shape (n, len(feature_names)); NaN where a feature is missing."""
        x = np.asarray(X, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise BundleError(f"veto bundle for {self.symbol!r}: X must have shape (n, {len(self.feature_names)}) "
                              f"in feature_names order, got {x.shape}")
        p = np.full(len(x), np.nan)
        ok = ~np.isnan(x).any(axis=1)
        if ok.any():  # never let the forest route a NaN down a default branch
            p[ok] = self.estimator.predict_proba(x[ok])[:, 1]
        return p

    def fields(self) -> dict[str, Any]:
        """The constructor's arguments: what a stored bundle holds."""
        return {"symbol": self.symbol, "estimator": self.estimator, "feature_names": self.feature_names,
                "threshold": self.threshold, "registry_version": self.registry_version,
                "feature_schema_hash": self.feature_schema_hash, "data_hash": self.data_hash,
                "fill_values": self.fill_values, "config": self.config, "metrics": self.metrics,
                "library_versions": self.library_versions, "code_version": self.code_version,
                "trained_at": self.trained_at}

    def content_hash(self) -> str:
        """sha256 of what defines the model; excludes trained_at, code and library versions,
        and where a tuning study was kept (a storage URL is not part of the model)."""
        parts = {
            "symbol": self.symbol, "estimator_sha256": estimator_hash(self.estimator),
            "feature_names": self.feature_names, "fill_values": self.fill_values,
            "threshold": self.threshold, "registry_version": self.registry_version,
            "feature_schema_hash": self.feature_schema_hash, "data_hash": self.data_hash,
            "config": hashed_config(self.config),
        }
        return hashlib.sha256(canonical_json(parts).encode()).hexdigest()

    def metadata(self) -> dict[str, Any]:
        """Everything but the fitted estimator, JSON-ready (what metadata.json holds)."""
        est = self.estimator
        params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
        plain = (str, int, float, bool, type(None))
        return {
            "bundle_format": self.bundle_format, "symbol": self.symbol,
            "estimator": {"class": f"{type(est).__module__}.{type(est).__qualname__}",
                          "params": {k: v if isinstance(v, plain) else repr(v) for k, v in params.items()}},
            "feature_names": self.feature_names, "fill_values": self.fill_values, "threshold": self.threshold,
            "registry_version": self.registry_version, "feature_schema_hash": self.feature_schema_hash,
            "data_hash": self.data_hash, "config": self.config, "metrics": self.metrics,
            "library_versions": self.library_versions, "code_version": self.code_version,
            "trained_at": self.trained_at,
        }

    def __repr__(self) -> str:
        return (f"VetoBundle({self.symbol}, {type(self.estimator).__name__}, {len(self.feature_names)} features, "
                f"threshold {self.threshold:.3f}, trained {self.trained_at})")


# The constructor's keyword arguments shadow the module helpers of the same name.
_libs = library_versions
_code = code_version
