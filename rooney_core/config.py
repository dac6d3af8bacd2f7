"""Validated configuration: one pydantic model per YAML file in ``configs/``, one loader.

Every model forbids extra keys, so a typo is an error naming the file and the key, raised
before any work starts (R5). The one YAML reader (``read_yaml``) refuses a key given twice;
every float refuses infinity and NaN; dates and durations are parsed at load. Cross-file
rules (a pair or a pipeline symbol that is not an instrument, an instrument listed twice) are
checked here too. Which feature names exist is the feature registry's to say:
``rooney_core.features.check_selection`` checks features.yml against it, so this module, the
bottom layer, imports nothing of the features or data packages (no import cycle).
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rooney_core.errors import ConfigError
from rooney_core.sessions import SessionCalendar

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs"

M = TypeVar("M", bound=BaseModel)


# An instrument symbol becomes part of file names (<SYMBOL>_bt.csv, training/<SYMBOL>.yml):
# capital letters and digits only, so no symbol can point outside its directory.
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{1,16}")


class Strict(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` in any float field is an error, not a silent
    # infinite tick size or capital.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _parse_hhmm(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 17:00 unquoted as sexagesimal 1020
        if 0 <= value < 24 * 60:
            return time(value // 60, value % 60)
        raise ValueError(f"expected a time 'HH:MM', got {value // 60}:{value % 60:02d}")
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value))
    if isinstance(value, bool) or not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"expected a time 'HH:MM', got {value!r}")
    return time(int(m.group(1)), int(m.group(2)))


def _check_duration(value: str) -> str:
    import pandas as pd

    try:
        td = pd.Timedelta(value)
    except ValueError as exc:
        raise ValueError(f"not a duration: {value!r}") from exc
    if pd.isna(td):
        raise ValueError(f"not a duration: {value!r}")
    if td < pd.Timedelta(0):
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return value


def parse_date(value: Any) -> str:
    """A calendar date 'YYYY-MM-DD' (a YAML date unquoted, or a string), as that string."""
    if isinstance(value, datetime):
        raise ValueError(f"expected a date 'YYYY-MM-DD' without a time, got {value}")
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"expected a date 'YYYY-MM-DD', got {value!r}")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"not a calendar date: {value!r} ({exc})") from None
    return value


def _parse_month(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}", value):
        raise ValueError(f"expected a month 'YYYY-MM', got {value!r}")
    if not 1 <= int(value[5:]) <= 12:
        raise ValueError(f"not a calendar month: {value!r}")
    return value


def _not_before_start(end: str | None, info: ValidationInfo) -> str | None:
    start = info.data.get("start")  # absent when start itself was invalid
    if end is not None and start is not None and end < start:  # ISO dates sort as strings
        raise ValueError(f"end {end} is before start {start}")
    return end


def _symbol(value: str) -> str:
    if not SYMBOL_PATTERN.fullmatch(value):
        raise ValueError(f"an instrument symbol is 1-16 capital letters and digits (ES, 6E), got {value!r}")
    return value


def _or_none(parse: Any) -> Any:
    # one validator for "a date or null" (a union would report each branch's error)
    return BeforeValidator(lambda v: None if v is None else parse(v))


HHMM = Annotated[time, Field(description="exchange-local time 'HH:MM'")]
IsoDate = Annotated[str, BeforeValidator(parse_date)]
IsoDateOrNone = Annotated[str | None, _or_none(parse_date)]
IsoMonthOrNone = Annotated[str | None, _or_none(_parse_month)]
Symbol = Annotated[str, AfterValidator(_symbol)]


# --- instruments.yml ---------------------------------------------------------------------


class SessionSpec(Strict):
    timezone: str
    open: HHMM
    close: HHMM
    calendar: str | None = None  # pandas_market_calendars name: holidays and early closes
    group: str | None = None  # the asset class (equity_index, metals, energy, fx): portfolio allocation

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from rooney_core.sessions import calendar_names

        names = calendar_names()
        if v not in names:
            near = [n for n in names if n.lower().startswith(v.lower()[:4])][:8]
            raise ValueError(f"unknown exchange calendar {v!r} (pandas_market_calendars; e.g. "
                             f"{', '.join(near) or 'CME_Equity, CMEGlobex_Metals, CMEGlobex_Energy, CMEGlobex_FX'})")
        return v

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

    def session_calendar(self) -> SessionCalendar:
        return SessionCalendar(self.timezone, self.open, self.close, self.calendar)


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
    group: str | None = None  # asset class, for the portfolio's allocation per group

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
    instruments: dict[Symbol, InstrumentSpec]

    def get(self, symbol: str) -> Instrument:
        if not isinstance(symbol, str) or symbol not in self.instruments:
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
            calendar=self.sessions[spec.session].session_calendar(),
            commission_per_side=(
                spec.commission_per_side
                if spec.commission_per_side is not None
                else self.costs.commission_per_side
            ),
            slippage_ticks=(
                spec.slippage_ticks if spec.slippage_ticks is not None else self.costs.slippage_ticks
            ),
            group=self.sessions[spec.session].group,
        )


# --- strategy.yml ------------------------------------------------------------------------


class EntryRules(Strict):
    ibs_max: float = Field(ge=0, le=1)
    windows: list[tuple[HHMM, HHMM]]

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, v: Any) -> Any:
        if not isinstance(v, list) or not all(isinstance(w, list | tuple) for w in v):
            raise ValueError("expected a list of [start, end] pairs of 'HH:MM' times")
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

    @field_validator("selection")
    @classmethod
    def _some(cls, v: Literal["all"] | list[str]) -> Literal["all"] | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError('list at least one feature, or "all"')
        return v


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
    symbols: list[str] = Field(min_length=1)
    repairs: Repairs = Repairs()
    # Timestamps outside these years are errors (bars are datetime64[ns]: 1678..2261 at most).
    min_year: int = Field(default=1970, ge=1678, le=2261)
    max_year: int = Field(default=2100, ge=1678, le=2261)

    @model_validator(mode="after")
    def _years(self) -> DataSection:
        if self.min_year > self.max_year:
            raise ValueError(f"min_year {self.min_year} is after max_year {self.max_year}")
        return self

    def gate(self) -> dict:
        """The data gate's settings, as keyword arguments of read_raw_bars / load_session_bars."""
        return {"repairs": self.repairs, "min_year": self.min_year, "max_year": self.max_year}


class SampleDataSection(Strict):
    out_dir: str
    symbols: list[str] = Field(min_length=1)
    start: IsoDate
    end: IsoDate
    seed: int = Field(ge=0)
    edge: float = Field(ge=0)
    overlap_dir: str | None = None
    overlap_years: int = Field(default=2, ge=1)

    _end = field_validator("end")(_not_before_start)


class FeatureValidationSection(Strict):
    month: IsoMonthOrNone = None
    overlap_dir: str | None = None
    tolerance: float = Field(default=0.05, gt=0)
    min_agreement: float = Field(default=0.95, gt=0, le=1)
    talib_tolerance: float = Field(default=1e-9, gt=0)


class BacktestSection(Strict):
    start: IsoDate = "2023-01-01"            # default period start; end = end of data
    end: IsoDateOrNone = None
    initial_capital: float = Field(default=100_000.0, gt=0)

    _end = field_validator("end")(_not_before_start)


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


class ParitySection(Strict):
    months: int = Field(default=6, ge=1, le=120)  # the live-path replay gate of every new version


class LiveSection(Strict):
    # true: the live engine trades paper only (as POLICY_KILLSWITCH=true in the environment);
    # no order leaves the process, and the engine says so at start and for every order
    kill_switch: bool = False


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
    parity: ParitySection = ParitySection()
    live: LiveSection = LiveSection()


# --- loading -----------------------------------------------------------------------------


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "[key]") or "<root>"


def format_validation_error(exc: ValidationError, where: Any = None) -> list[str]:
    """One line per error: file, key, what is wrong and the value given.

    ``where(loc)`` names the file(s) of an error; by default none (the caller prefixes)."""
    lines = []
    for e in exc.errors():
        head = f"{where(e['loc'])}: " if where else ""
        msg = e["msg"].removeprefix("Value error, ")
        quiet = e["type"] in ("extra_forbidden", "missing") or repr(e["input"]) in msg
        got = "" if quiet else f" (got {e['input']!r})"
        lines.append(f"{head}key '{_format_loc(e['loc'])}': {msg}{got}")
    return lines


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicate_keys(loader: yaml.SafeLoader, root: yaml.Node, path: Path) -> list[str]:
    """Every key given twice in one mapping (PyYAML would silently keep the last value)."""
    errors: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:  # an alias may point back at a node already walked
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    key = loader.construct_object(key_node)
                    line = key_node.start_mark.line + 1
                    if key in first:
                        where = f"{path}: line {line}: key '{_format_loc((*loc, key))}'"
                        errors.append((line, f"{where}: duplicate key, first set on line {first[key]} "
                                             "(YAML would silently keep only the last value)"))
                    else:
                        first[key] = line
                    stack.append((value_node, (*loc, key)))
                else:
                    stack.append((value_node, loc))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
    return [msg for _, msg in sorted(errors)]


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The one YAML reader for configs: safe, a mapping at the top, no key given twice.
    Every failure is a ConfigError naming the file (and the line and key when known)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    loader = yaml.SafeLoader(text)
    loader.name = str(path)  # marks in YAML errors name the file
    try:
        root = loader.get_single_node()
        if root is None:
            return {}
        dupes = _duplicate_keys(loader, root, path)
        if dupes:
            raise ConfigError("invalid config\n" + "\n".join(dupes))
        raw = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read one YAML file into ``model``; every failure names the file and the key."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("invalid config\n" + "\n".join(format_validation_error(exc, lambda _: path))) from None


# --- validation.yml: the model gates and the staged deployment ------------------------------


class FeatureAvailabilityGate(Strict):
    months: int = Field(default=6, ge=1)  # the last N months of the data
    max_nan_rate: float = Field(default=0.05, ge=0, le=1)  # per feature, over those bars


class OutOfSampleGate(Strict):
    """Minimums on the veto-on holdout backtest of the bundle."""

    min_sharpe: float = 0.5
    min_psr: float = Field(default=0.90, ge=0, le=1)  # probabilistic Sharpe ratio against 0
    min_deflated_sharpe: float = Field(default=0.90, ge=0, le=1)  # of the cross-validated Sharpe
    min_trades: int = Field(default=30, ge=1)
    max_drawdown_pct: float = Field(default=0.25, gt=0)  # of the backtest capital


class ImportanceGate(Strict):
    max_feature_share: float = Field(default=0.5, gt=0, le=1)  # impurity importance of one feature
    max_calendar_share: float = Field(default=0.35, gt=0, le=1)  # all calendar-group features together


class PredictionGate(Strict):
    min_std: float = Field(default=0.01, ge=0)  # of the holdout probabilities
    min_distinct: int = Field(default=10, ge=2)  # distinct holdout probabilities
    min_selected_share: float = Field(default=0.05, ge=0, le=1)  # share of holdout signals >= threshold
    max_selected_share: float = Field(default=0.95, ge=0, le=1)


class PaperStageConfig(Strict):
    """gates -> paper -> production: how long a passing version trades on paper first, and
    how closely its paper results must track the backtest of the same sessions."""

    sessions: int = Field(default=10, ge=0)
    max_trade_mismatches: int = Field(default=0, ge=0)  # trades in one and not the other
    max_tracking_error_usd: float = Field(default=0.0, ge=0)  # |paper net P&L - backtest net P&L|
    watch_days: int = Field(default=7, ge=0)  # the first days in production are flagged as watched


class GateThresholds(Strict):
    feature_availability: FeatureAvailabilityGate = FeatureAvailabilityGate()
    out_of_sample: OutOfSampleGate = OutOfSampleGate()
    importance: ImportanceGate = ImportanceGate()
    predictions: PredictionGate = PredictionGate()
    paper: PaperStageConfig = PaperStageConfig()


class ValidationConfig(Strict):
    defaults: GateThresholds = GateThresholds()
    instruments: dict[Symbol, dict[str, Any]] = {}  # per-instrument overrides of ``defaults``

    def for_symbol(self, symbol: str) -> GateThresholds:
        over = self.instruments.get(symbol)
        if not over:
            return self.defaults
        merged = self.defaults.model_dump()
        for k, v in over.items():
            merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
        return GateThresholds.model_validate(merged)


class RooneyConfig(Strict):
    """Everything in ``configs/``, validated together."""

    config_dir: Path
    instruments: InstrumentsConfig
    strategy: StrategyConfig
    features: FeaturesConfig
    pipeline: PipelineConfig
    validation: ValidationConfig = ValidationConfig()

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


def _listed_twice(path: Path, key: str, names: list[str]) -> list[str]:
    first: dict[str, int] = {}
    errors = []
    for i, name in enumerate(names):
        if name in first:
            errors.append(f"{path}: key '{key}.{i}': {name!r} is listed twice (first at {key}.{first[name]})")
        first.setdefault(name, i)
    return errors


def config_dir_from_env() -> Path:
    return Path(os.environ.get("ROONEY_CONFIG_DIR") or DEFAULT_CONFIG_DIR).resolve()


def load_config(config_dir: str | os.PathLike[str] | None = None) -> RooneyConfig:
    """Load and cross-validate every config file. Raises ConfigError naming file and key."""
    cdir = Path(config_dir).resolve() if config_dir else config_dir_from_env()
    instruments = load_yaml_model(cdir / "instruments.yml", InstrumentsConfig)
    strategy = load_yaml_model(cdir / "strategy.yml", StrategyConfig)
    features = load_yaml_model(cdir / "features.yml", FeaturesConfig)
    pipeline = load_yaml_model(cdir / "pipeline.yml", PipelineConfig)
    validation = load_yaml_model(cdir / "validation.yml", ValidationConfig)

    errors: list[str] = []
    val_file = cdir / "validation.yml"
    for sym in validation.instruments:
        if sym not in instruments.instruments:
            errors.append(f"{val_file}: key 'instruments.{sym}': unknown instrument {sym!r} (not in instruments.yml)")
            continue
        try:
            validation.for_symbol(sym)
        except ValidationError as exc:
            errors += [f"{val_file}: " + line.replace("key '", f"key 'instruments.{sym}.", 1)
                       for line in format_validation_error(exc)]
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
        errors += _listed_twice(pipe_file, key, syms)
    if isinstance(features.selection, list):
        # whether each name is a feature is the registry's to say (rooney_core.features.check_selection):
        # the config layer imports nothing above it
        errors += _listed_twice(cdir / "features.yml", "selection", features.selection)
    if errors:
        raise ConfigError("invalid config\n" + "\n".join(errors))
    return RooneyConfig(
        config_dir=cdir,
        instruments=instruments,
        strategy=strategy,
        features=features,
        pipeline=pipeline,
        validation=validation,
    )
