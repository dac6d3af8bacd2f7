"""Resources: the validated config and the lake, chosen per deployment by config/env; Discord alerts."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import dagster as dg

from rooney_core.config import REPO_ROOT, RooneyConfig
from rooney_core.data.lake import Lake
from rooney_core.model import ModelStore
from rooney_core.monitoring.alerts import Alert, AlertSink, DiscordWebhook
from rooney_core.redact import REDACTED
from rooney_pipeline import settings


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
        return settings.load(self.config_dir)

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


WEBHOOK_ENV = "ROONEY_DISCORD_WEBHOOK_URL"
DAGSTER_URL_ENV = "ROONEY_DAGSTER_URL"
ALERTS_DIR_ENV = "ROONEY_ALERTS_DIR"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"


class DiscordResource(dg.ConfigurableResource):
    """Alerts to the desk's Discord channel (``send(alert) -> bool``), with the log and a local
    journal and outbox (``alerts_dir``) behind them; see ``rooney_core.monitoring.alerts``.

    ``webhook_url`` must come from ``dg.EnvVar("ROONEY_DISCORD_WEBHOOK_URL")`` (``from_env``
    does that): the UI and the run config then show the variable's name only. Without it
    alerts go to the log and the outbox only, and that is said once. ``repr`` never shows the
    URL. ``dagster_url`` (else $ROONEY_DAGSTER_URL, else http://127.0.0.1:3000) is the
    webserver the messages link to.
    """

    webhook_url: str | None = None
    alerts_dir: str | None = None
    dagster_url: str | None = None
    username: str = "Rooney"
    timeout_s: float = 10.0
    max_attempts: int = 4

    @classmethod
    def from_env(cls, **kwargs) -> DiscordResource:
        """The webhook from $ROONEY_DISCORD_WEBHOOK_URL as an EnvVar when it is set, else none
        (an EnvVar naming an unset variable would fail every run and sensor that uses it)."""
        url = dg.EnvVar(WEBHOOK_ENV) if os.environ.get(WEBHOOK_ENV) else None
        return cls(webhook_url=url, **kwargs)

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            if name == "webhook_url" and value is not None:
                value = f"EnvVar({value.env_var_name!r})" if isinstance(value, dg.EnvVar) else REDACTED
            yield name, value

    def _url(self) -> str | None:
        url = self.webhook_url
        if isinstance(url, dg.EnvVar):  # used before Dagster resolved it (called directly)
            url = url.get_value()
        return url or None

    @cached_property
    def sink(self) -> AlertSink:
        url = self._url()
        hook = DiscordWebhook(url, timeout_s=self.timeout_s, max_attempts=self.max_attempts) if url else None
        return AlertSink(self.alerts_path, hook, username=self.username)

    @property
    def alerts_path(self) -> Path:
        """``alerts_dir``, else $ROONEY_ALERTS_DIR, else dagster_home/storage/alerts."""
        raw = self.alerts_dir or os.environ.get(ALERTS_DIR_ENV)
        path = Path(os.path.expandvars(raw)).expanduser() if raw else Path("dagster_home/storage/alerts")
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def base_url(self) -> str:
        return (self.dagster_url or os.environ.get(DAGSTER_URL_ENV) or DEFAULT_DAGSTER_URL).rstrip("/")

    def run_url(self, run_id: str) -> str:
        """The Dagster UI page of run ``run_id``."""
        return f"{self.base_url}/runs/{run_id}"

    def asset_url(self, asset_key: str) -> str:
        """The Dagster UI page of asset ``asset_key`` (a one-part key)."""
        return self.ui_url(f"assets/{asset_key}")

    def ui_url(self, path: str) -> str:
        """``path`` (e.g. "automation") on the Dagster webserver."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def send(self, alert: Alert) -> bool:
        """Send ``alert``: True if Discord took it, False if it waits in the outbox."""
        return self.sink.send(alert)
