"""Resources, one per concern: the config and raw data (``rooney``), the parquet lake
(``lake``), the model store (``model_store``) and the desk's alerts (``discord``).

Each reads the environment through ``dg.EnvVar`` fields (set by ``from_env`` when the variable
is set), not at import; ``resources()`` builds the set the definitions and the tests use.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

import dagster as dg

from rooney_core.config import REPO_ROOT, RooneyConfig
from rooney_core.data.lake import Lake
from rooney_core.model import ModelStore
from rooney_core.monitoring.alerts import Alert, AlertSink, DiscordWebhook
from rooney_core.redact import REDACTED
from rooney_pipeline import settings

DASHBOARD_URL_ENV = "ROONEY_DASHBOARD_URL"
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8501"


def _value(v):
    """A field's value: an EnvVar Dagster has not resolved yet (the resource called directly)
    is read here; unset or empty is None."""
    if isinstance(v, dg.EnvVar):
        v = v.get_value()
    return v or None


def _env_field(name: str):
    """``dg.EnvVar(name)`` when the variable is set, else None: the UI and the run config then
    name the variable and never copy its value, and an unset variable cannot fail a run."""
    return dg.EnvVar(name) if os.environ.get(name) else None


class RooneyResource(dg.ConfigurableResource):
    """The validated config and where the raw CSVs are.

    ``config_dir`` is for tests and tools: the definitions leave it unset, so the resource and
    the instrument partitions hold the same config object (``rooney_pipeline.settings``, from
    $ROONEY_CONFIG_DIR or configs/, loaded once). ``data_dir`` overrides $ROONEY_DATA_DIR and
    pipeline.yml, e.g. from run config to point one run at a user's directory.
    """

    config_dir: str | None = None
    data_dir: str | None = None
    dashboard_url: str | None = None  # else http://127.0.0.1:8501 (`rooney dashboard`)

    @classmethod
    def from_env(cls) -> RooneyResource:
        return cls(data_dir=_env_field("ROONEY_DATA_DIR"), dashboard_url=_env_field(DASHBOARD_URL_ENV))

    def report_url(self, name: str) -> str:
        """Where the UI's "report" link opens ``name``'s report (a model version such as ES_v3,
        or a portfolio version): the page of `rooney dashboard` that shows it."""
        base = (_value(self.dashboard_url) or DEFAULT_DASHBOARD_URL).rstrip("/")
        return f"{base}/?report={quote(name)}"

    @property
    def cfg(self) -> RooneyConfig:
        return settings.load(_value(self.config_dir))

    @property
    def data_path(self) -> Path:
        data_dir = _value(self.data_dir)
        return self.cfg.resolve_path(data_dir) if data_dir else self.cfg.data_dir


class LakeResource(dg.ConfigurableResource):
    """The parquet lake (``get()``): ``lake_dir``, else $ROONEY_LAKE_DIR, else pipeline.yml's
    ``lake_dir``; a relative path is relative to the repository."""

    rooney: RooneyResource
    lake_dir: str | None = None

    @classmethod
    def from_env(cls, rooney: RooneyResource) -> LakeResource:
        return cls(rooney=rooney, lake_dir=_env_field("ROONEY_LAKE_DIR"))

    def get(self) -> Lake:
        lake_dir = _value(self.lake_dir)
        cfg = self.rooney.cfg
        return Lake(cfg.resolve_path(lake_dir) if lake_dir else cfg.lake_dir)


class ModelStoreResource(dg.ConfigurableResource):
    """The versioned model store (``get()``): ``root``, else $ROONEY_MODEL_STORE, else
    pipeline.yml's ``model_store``, else dagster_home/storage/models."""

    rooney: RooneyResource
    root: str | None = None

    @classmethod
    def from_env(cls, rooney: RooneyResource) -> ModelStoreResource:
        return cls(rooney=rooney, root=_env_field("ROONEY_MODEL_STORE"))

    def get(self) -> ModelStore:
        root = _value(self.root)
        cfg = self.rooney.cfg
        return ModelStore(cfg.resolve_path(root) if root else cfg.model_store_dir)


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
        """The webhook from $ROONEY_DISCORD_WEBHOOK_URL, the alerts directory from
        $ROONEY_ALERTS_DIR and the UI's address from $ROONEY_DAGSTER_URL, each as an EnvVar when
        it is set, else none (an EnvVar naming an unset variable would fail every run and
        sensor that uses it); ``kwargs`` given win."""
        kwargs.setdefault("alerts_dir", _env_field(ALERTS_DIR_ENV))
        kwargs.setdefault("dagster_url", _env_field(DAGSTER_URL_ENV))
        return cls(webhook_url=_env_field(WEBHOOK_ENV), **kwargs)

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            if name == "webhook_url" and value is not None:
                value = f"EnvVar({value.env_var_name!r})" if isinstance(value, dg.EnvVar) else REDACTED
            yield name, value

    def _url(self) -> str | None:
        return _value(self.webhook_url)

    @cached_property
    def sink(self) -> AlertSink:
        url = self._url()
        hook = DiscordWebhook(url, timeout_s=self.timeout_s, max_attempts=self.max_attempts) if url else None
        return AlertSink(self.alerts_path, hook, username=self.username)

    @property
    def alerts_path(self) -> Path:
        """``alerts_dir``, else $ROONEY_ALERTS_DIR, else dagster_home/storage/alerts."""
        raw = _value(self.alerts_dir) or os.environ.get(ALERTS_DIR_ENV)
        path = Path(os.path.expandvars(raw)).expanduser() if raw else Path("dagster_home/storage/alerts")
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def base_url(self) -> str:
        return (_value(self.dagster_url) or os.environ.get(DAGSTER_URL_ENV) or DEFAULT_DAGSTER_URL).rstrip("/")

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


def resources(config_dir: str | None = None, data_dir: str | None = None, lake_dir: str | None = None,
              model_store: str | None = None, alerts_dir: str | None = None,
              discord: DiscordResource | None = None) -> dict[str, dg.ConfigurableResource]:
    """Every resource the assets, sensors and schedules use. Without arguments, as deployed:
    each location from its environment variable when set (as ``dg.EnvVar``), else the config."""
    if config_dir is data_dir is lake_dir is model_store is alerts_dir is None:
        rooney = RooneyResource.from_env()
        lake, store = LakeResource.from_env(rooney), ModelStoreResource.from_env(rooney)
        discord = discord or DiscordResource.from_env()
    else:  # given locations (tests, tools): nothing from the environment but the config's own
        rooney = RooneyResource(config_dir=config_dir, data_dir=data_dir)
        lake, store = LakeResource(rooney=rooney, lake_dir=lake_dir), ModelStoreResource(rooney=rooney, root=model_store)
        discord = discord or DiscordResource(alerts_dir=alerts_dir)
    return {"rooney": rooney, "lake": lake, "model_store": store, "discord": discord}
