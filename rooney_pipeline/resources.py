"""Resources: the validated config and the lake, chosen per deployment by config/env."""

from __future__ import annotations

from functools import cached_property

import dagster as dg

from rooney_core.config import RooneyConfig, load_config
from rooney_core.data.lake import Lake
from rooney_core.model import ModelStore


class RooneyResource(dg.ConfigurableResource):
    """Gives assets the validated config (configs/ or $ROONEY_CONFIG_DIR) and the lake.

    ``data_dir`` and ``lake_dir`` override pipeline.yml (and $ROONEY_DATA_DIR) when set,
    e.g. from run config to point one run at a user's directory.
    """

    config_dir: str | None = None
    data_dir: str | None = None
    lake_dir: str | None = None
    model_store: str | None = None

    @cached_property
    def cfg(self) -> RooneyConfig:
        return load_config(self.config_dir)

    @property
    def data_path(self):
        return self.cfg.resolve_path(self.data_dir) if self.data_dir else self.cfg.data_dir

    @property
    def store(self) -> ModelStore:
        """The versioned model store: this resource's ``model_store``, else
        $ROONEY_MODEL_STORE, else dagster_home/storage/models."""
        if self.model_store:
            return ModelStore(self.cfg.resolve_path(self.model_store))
        return ModelStore(self.cfg.model_store_dir)

    @property
    def lake(self) -> Lake:
        return Lake(self.cfg.resolve_path(self.lake_dir) if self.lake_dir else self.cfg.lake_dir)
