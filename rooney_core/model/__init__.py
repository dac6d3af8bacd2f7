"""The veto model bundle and the versioned model store with its production manifest."""

from rooney_core.model.bundle import BundleError, VetoBundle, code_version, library_versions
from rooney_core.model.store import ModelIntegrityError, ModelStore, ModelStoreError, default_store_root

__all__ = [
    "BundleError",
    "ModelIntegrityError",
    "ModelStore",
    "ModelStoreError",
    "VetoBundle",
    "code_version",
    "default_store_root",
    "library_versions",
]
