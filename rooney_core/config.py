"""Validated configuration: one pydantic model per YAML file in ``configs/``, one loader.

Every model forbids extra keys, so a typo is an error naming the file and the key, raised
before any work starts (R5). Cross-file rules (a pair or a pipeline symbol that is not an
instrument, an unknown feature) are checked here too.
"""

from __future__ import annotations

import os
import re
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rooney_core.errors import ConfigError
from rooney_core.sessions import SessionCalendar

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs"

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_hhmm(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int):  # YAML 1.1 reads 17:00 unquoted as sexagesimal 1020
        return time(value // 60, value % 60)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value))
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"expected a time 'HH:MM', got {value!r}")
    return time(int(m.group(1)), int(m.group(2)))


def _check_duration(value: str) -> str:
    import pandas as pd

    try:
        pd.Timedelta(value)
    except ValueError as exc:
        raise ValueError(f"not a duration: {value!r}") from exc
    return value


HHMM = Annotated[time, Field(description="exchange-local time 'HH:MM'")]


# --- instruments.yml ---------------------------------------------------------------------


class SessionSpec(Strict):
    timezone: str
    open: HHMM
    close: HHMM

    _t = field_validator("open", "close", mode="before")(_parse_hhmm)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(v)
        except Exception as exc:  # noqa: BLE001 - zoneinfo raises several types
            raise ValueError(f"unknown timezone {v!r}") from exc
        return v

    def calendar(self) -> SessionCalendar:
        return SessionCalendar(self.timezone, self.open, self.close)


class Costs(Strict):
    commission_per_side: float = Field(ge=0)
    slippage_ticks: float = Field(ge=0)


class InstrumentSpec(Strict):
    name: str
    tick_size: float = Field(gt=0)
    tick_value: float = Field(gt=0)
    pair: str | None = None
    session: str
    commission_per_side: float | None = Field(default=None, ge=0)
    slippage_ticks: float | None = Field(default=None, ge=0)

    @property
    def point_value(self) -> float:
        return self.tick_value / self.tick_size


class Instrument(Strict):
    """An instrument with everything resolved: costs, session calendar, point value."""

    symbol: str
    name: str
    tick_size: float
    tick_value: float
    point_value: float
    pair: str | None
    calendar: SessionCalendar
    commission_per_side: float
    slippage_ticks: float

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @property
    def slippage_points(self) -> float:
        return self.slippage_ticks * self.tick_size

    @property
    def price_decimals(self) -> int:
        """Decimal places needed to write a price on this contract's tick grid."""
        return max(0, -Decimal(repr(self.tick_size)).normalize().as_tuple().exponent)


class InstrumentsConfig(Strict):
    sessions: dict[str, SessionSpec]
    costs: Costs
    instruments: dict[str, InstrumentSpec]

    def get(self, symbol: str) -> Instrument:
        if symbol not in self.instruments:
            raise ConfigError(
                f"unknown instrument {symbol!r}: not in instruments.yml "
                f"(known: {', '.join(sorted(self.instruments))})"
            )
        spec = self.instruments[symbol]
        return Instrument(
            symbol=symbol,
            name=spec.name,
            tick_size=spec.tick_size,
            tick_value=spec.tick_value,
            point_value=spec.point_value,
            pair=spec.pair,
            calendar=self.sessions[spec.session].calendar(),
            commission_per_side=(
                spec.commission_per_side
                if spec.commission_per_side is not None
                else self.costs.commission_per_side
            ),
            slippage_ticks=(
                spec.slippage_ticks if spec.slippage_ticks is not None else self.costs.slippage_ticks
            ),
        )


# --- strategy.yml ------------------------------------------------------------------------


class EntryRules(Strict):
    ibs_max: float = Field(ge=0, le=1)
    windows: list[tuple[HHMM, HHMM]]

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, v: Any) -> Any:
        return [tuple(_parse_hhmm(x) for x in w) for w in v]


class ExitRules(Strict):
    stop_loss_pct: float = Field(gt=0, lt=1)
    take_profit_pct: float = Field(gt=0)
    ibs_exit: float = Field(ge=0, le=1)
    max_holding_bars: int = Field(ge=1)
    session_exit_bar: HHMM

    _t = field_validator("session_exit_bar", mode="before")(_parse_hhmm)


class Sizing(Strict):
    contracts: int = Field(ge=1)


class VetoPolicy(Strict):
    when_no_model: Literal["trade_unfiltered", "no_trading"]


class StrategyConfig(Strict):
    entry: EntryRules
    exits: ExitRules
    sizing: Sizing
    veto: VetoPolicy


# --- features.yml ------------------------------------------------------------------------


class FeaturesConfig(Strict):
    selection: Literal["all"] | list[str]
    pair_max_staleness: str = "2h"

    _td = field_validator("pair_max_staleness")(_check_duration)


# --- pipeline.yml ------------------------------------------------------------------------


class Repairs(Strict):
    bom: Literal["error", "strip"] = "error"
    blank_lines: Literal["skip", "error"] = "skip"
    stray_headers: Literal["drop", "error"] = "drop"
    unsorted: Literal["error", "sort"] = "error"
    duplicates: Literal["error", "drop_exact"] = "error"
    out_of_session: Literal["drop", "error"] = "drop"
    zero_volume: Literal["keep", "drop"] = "keep"


class DataSection(Strict):
    dir: str | None = None
    symbols: list[str]
    repairs: Repairs = Repairs()


class SampleDataSection(Strict):
    out_dir: str
    symbols: list[str]
    start: str
    end: str
    seed: int
    edge: float = Field(ge=0)
    overlap_dir: str | None = None
    overlap_years: int = Field(default=2, ge=1)


class FeatureValidationSection(Strict):
    month: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    overlap_dir: str | None = None
    tolerance: float = Field(default=0.05, gt=0)
    min_agreement: float = Field(default=0.95, gt=0, le=1)
    talib_tolerance: float = Field(default=1e-9, gt=0)


class BacktestSection(Strict):
    start: str = "2023-01-01"                # default period start; end = end of data
    end: str | None = None
    initial_capital: float = Field(default=100_000.0, gt=0)


class ReconciliationSection(Strict):
    reference_dir: str | None = None         # directory of <SYMBOL>_trades.csv from notebooks/TradingView
    time_tolerance: str = "0min"             # entry/exit times within this count as the same
    price_tolerance_ticks: float = Field(default=0.5, ge=0)
    return_tolerance: float = Field(default=0.01, ge=0)   # relative difference of total P&L

    _td = field_validator("time_tolerance")(_check_duration)


class DaskSection(Strict):
    address: str | None = None  # an existing scheduler (tcp://host:8786); null = a LocalCluster
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)


class ExecutionSection(Strict):
    # in_process: one process per run (fast for small runs); multiprocess: a process per step;
    # dask: steps on a Dask cluster (dagster-dask). $ROONEY_EXECUTOR overrides.
    executor: Literal["in_process", "multiprocess", "dask"] = "in_process"
    dask: DaskSection = DaskSection()


class PipelineConfig(Strict):
    execution: ExecutionSection = ExecutionSection()
    data: DataSection
    lake_dir: str
    reports_dir: str
    model_store: str | None = None  # null: $ROONEY_MODEL_STORE, else dagster_home/storage/models
    sample_data: SampleDataSection
    feature_validation: FeatureValidationSection = FeatureValidationSection()
    backtest: BacktestSection = BacktestSection()
    reconciliation: ReconciliationSection = ReconciliationSection()


# --- loading -----------------------------------------------------------------------------


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read one YAML file into ``model``; every failure names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{path}: key '{_format_loc(e['loc'])}': {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden" else "")
            for e in exc.errors()
        ]
        raise ConfigError("invalid config\n" + "\n".join(lines)) from None


class RooneyConfig(Strict):
    """Everything in ``configs/``, validated together."""

    config_dir: Path
    instruments: InstrumentsConfig
    strategy: StrategyConfig
    features: FeaturesConfig
    pipeline: PipelineConfig

    def resolve_path(self, p: str | os.PathLike[str]) -> Path:
        """Resolve a path from config relative to the repository root (configs/..)."""
        path = Path(os.path.expandvars(os.fspath(p))).expanduser()
        return path if path.is_absolute() else (self.config_dir.parent / path).resolve()

    @property
    def data_dir(self) -> Path:
        """Raw CSV directory: $ROONEY_DATA_DIR, else pipeline.yml data.dir, else sample data."""
        env = os.environ.get("ROONEY_DATA_DIR")
        if env:
            return self.resolve_path(env)
        if self.pipeline.data.dir:
            return self.resolve_path(self.pipeline.data.dir)
        return self.resolve_path(self.pipeline.sample_data.out_dir)

    @property
    def uses_sample_data(self) -> bool:
        return self.data_dir == self.resolve_path(self.pipeline.sample_data.out_dir)

    @property
    def lake_dir(self) -> Path:
        return self.resolve_path(os.environ.get("ROONEY_LAKE_DIR") or self.pipeline.lake_dir)

    @property
    def model_store_dir(self) -> Path:
        """$ROONEY_MODEL_STORE, else pipeline.yml model_store, else dagster_home/storage/models."""
        env = os.environ.get("ROONEY_MODEL_STORE")
        if env:
            return self.resolve_path(env)
        if self.pipeline.model_store:
            return self.resolve_path(self.pipeline.model_store)
        return self.resolve_path("dagster_home/storage/models")

    @property
    def reports_dir(self) -> Path:
        return self.resolve_path(self.pipeline.reports_dir)

    @property
    def symbols(self) -> list[str]:
        return list(self.pipeline.data.symbols)

    def instrument(self, symbol: str) -> Instrument:
        return self.instruments.get(symbol)


def config_dir_from_env() -> Path:
    return Path(os.environ.get("ROONEY_CONFIG_DIR") or DEFAULT_CONFIG_DIR).resolve()


def load_config(config_dir: str | os.PathLike[str] | None = None) -> RooneyConfig:
    """Load and cross-validate every config file. Raises ConfigError naming file and key."""
    cdir = Path(config_dir).resolve() if config_dir else config_dir_from_env()
    instruments = load_yaml_model(cdir / "instruments.yml", InstrumentsConfig)
    strategy = load_yaml_model(cdir / "strategy.yml", StrategyConfig)
    features = load_yaml_model(cdir / "features.yml", FeaturesConfig)
    pipeline = load_yaml_model(cdir / "pipeline.yml", PipelineConfig)

    errors: list[str] = []
    inst_file = cdir / "instruments.yml"
    for sym, spec in instruments.instruments.items():
        if spec.pair is not None and spec.pair not in instruments.instruments:
            errors.append(f"{inst_file}: key 'instruments.{sym}.pair': unknown instrument {spec.pair!r}")
        if spec.pair == sym:
            errors.append(f"{inst_file}: key 'instruments.{sym}.pair': an instrument cannot pair with itself")
        if spec.session not in instruments.sessions:
            errors.append(
                f"{inst_file}: key 'instruments.{sym}.session': unknown session {spec.session!r}"
            )
    pipe_file = cdir / "pipeline.yml"
    for key, syms in (("data.symbols", pipeline.data.symbols), ("sample_data.symbols", pipeline.sample_data.symbols)):
        for i, sym in enumerate(syms):
            if sym not in instruments.instruments:
                errors.append(f"{pipe_file}: key '{key}.{i}': unknown instrument {sym!r} (not in instruments.yml)")
    if isinstance(features.selection, list):
        from rooney_core.features import REGISTRY

        for i, name in enumerate(features.selection):
            if name not in REGISTRY:
                errors.append(f"{cdir / 'features.yml'}: key 'selection.{i}': unknown feature {name!r}")
    if errors:
        raise ConfigError("invalid config\n" + "\n".join(errors))
    return RooneyConfig(
        config_dir=cdir,
        instruments=instruments,
        strategy=strategy,
        features=features,
        pipeline=pipeline,
    )
