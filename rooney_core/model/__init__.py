"""The veto model bundle and the versioned model store with its production manifest.

This package is the only place that turns stored bytes back into a model (``bundle_file``),
and it does so only for bytes whose sha256 the store has checked (``store``)."""

from rooney_core.model.bundle import BundleError, VetoBundle, code_version, library_versions
from rooney_core.model.bundle_file import UnsafeBundleError, load_bundle_file
from rooney_core.model.store import ModelIntegrityError, ModelStore, ModelStoreError

__all__ = [
    "BundleError",
    "ModelIntegrityError",
    "ModelStore",
    "ModelStoreError",
    "UnsafeBundleError",
    "VetoBundle",
    "code_version",
    "library_versions",
    "load_bundle_file",
]
