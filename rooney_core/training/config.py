"""Training configuration: ``configs/training/defaults.yml`` plus per-instrument overrides.

An override file may set any key of the defaults and nothing else; nested mappings merge
key by key, lists and scalars replace. Each file's keys are checked on its own, then the
merged result is validated as a whole, and each error names the layer (defaults.yml, the
instrument's file or the profile) that set the offending key. The search space is checked
value by value here, so a bad entry fails at load, not after minutes of tuning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, StrictInt, ValidationError, field_validator, model_validator

from rooney_core.config import InstrumentsConfig, Strict, format_validation_error, load_yaml_model, read_yaml
from rooney_core.errors import ConfigError

# A profile is the name of a file in configs/training/, never a path.
PROFILE_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


def _whole(v: Any, at_least: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= at_least


def _max_depth(v: Any) -> int | None:
    if v is None or _whole(v):
        return v
    raise ValueError(f"max_depth values are null (no limit) or a whole number >= 1, got {v!r}")


def _min_samples_leaf(v: Any) -> int:
    if _whole(v):
        return v
    raise ValueError(f"min_samples_leaf values are a whole number >= 1, got {v!r}")


def _max_features(v: Any) -> str | int | float | None:
    # sklearn's reading: an int is a number of features, a float a fraction of them
    if v is None or v in ("sqrt", "log2") or _whole(v):
        return v
    if isinstance(v, float) and 0 < v <= 1:
        return v
    raise ValueError("max_features values are 'sqrt', 'log2', null (all), a fraction in (0, 1] "
                     f"or a whole number of features >= 1, got {v!r}")


def _class_weight(v: Any) -> str | None:
    if v in (None, "balanced", "balanced_subsample"):
        return v
    raise ValueError(f"class_weight values are null, 'balanced' or 'balanced_subsample', got {v!r}")


class IntRange(Strict):
    low: StrictInt
    high: StrictInt
    step: StrictInt = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if (self.high - self.low) % self.step:
            raise ValueError(f"high - low ({self.high - self.low}) is not a multiple of step ({self.step})")
        return self


class FloatRange(Strict):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        return self


class SearchSpace(Strict):
    """What Optuna may try (tuning.suggest_params). Lists are categorical choices."""

    n_estimators: IntRange
    max_depth: list[Annotated[int | None, PlainValidator(_max_depth)]]
    min_samples_leaf: list[Annotated[int, PlainValidator(_min_samples_leaf)]]
    max_features: list[Annotated[str | int | float | None, PlainValidator(_max_features)]]
    max_samples: FloatRange
    class_weight: list[Annotated[str | None, PlainValidator(_class_weight)]]

    @field_validator("n_estimators")
    @classmethod
    def _trees(cls, v: IntRange) -> IntRange:
        if v.low < 1:
            raise ValueError(f"a forest needs at least 1 tree, got low {v.low}")
        return v

    @field_validator("max_samples")
    @classmethod
    def _fraction(cls, v: FloatRange) -> FloatRange:
        if not (0 < v.low and v.high <= 1):
            raise ValueError(f"max_samples is a fraction of the rows in (0, 1], got {v.low} .. {v.high}")
        return v

    @field_validator("max_depth", "min_samples_leaf", "max_features", "class_weight")
    @classmethod
    def _choices(cls, v: list) -> list:
        if not v:
            raise ValueError("list at least one value to try")
        seen = set()
        for x in v:
            if (type(x), x) in seen:  # 1 and 1.0 differ for max_features
                raise ValueError(f"{x!r} is listed twice")
            seen.add((type(x), x))
        return v


class PrunerConfig(Strict):
    kind: Literal["median", "percentile", "successive_halving", "none"] = "median"
    percentile: float = Field(default=50.0, gt=0, lt=100)  # kind percentile: pruned below this percentile
    n_startup_trials: int = Field(default=5, ge=0)
    n_warmup_steps: int = Field(default=1, ge=0)


class TrainingConfig(Strict):
    features: Literal["all"] | list[str] = "all"
    exclude_features: list[str] = []
    holdout_years: float = Field(gt=0)
    folds: int = Field(ge=2)
    embargo_days: int = Field(ge=0)
    min_trades_per_fold: int = Field(ge=1)
    min_trades_penalty: float = -1.0
    threshold_grid: list[float]
    # the latest fraction of each training set (in time) on which the threshold is chosen,
    # purged and embargoed from the rows the forest is fitted on
    threshold_slice: float = Field(default=0.25, gt=0, lt=1)
    min_trades_per_slice: int = Field(default=15, ge=1)
    sample_weight: Literal["none", "abs_pnl"] = "none"
    objective: Literal["sharpe_selected"] = "sharpe_selected"
    trials: int = Field(ge=1)
    seed: int = Field(ge=0, le=2**32 - 1)  # numpy / sklearn random_state range
    n_jobs: int = Field(default=1, ge=1)
    pruner: PrunerConfig = PrunerConfig()
    # While a trial may be pruned it fits this fraction of its n_estimators (the first trees of
    # its full forest: same seed); a trial that is not pruned is grown to its full forest and
    # scored again if it could still be the best (the first `grow_startup` always; later ones
    # when small value + mean gain + `grow_sigmas` x the gain's spread reaches the best full
    # value), and only full-forest values compete for the model (tuning.worth_growing).
    search_trees: float = Field(default=1.0, gt=0, le=1)
    grow_startup: int = Field(default=3, ge=1)
    grow_sigmas: float = Field(default=1.0, ge=0)
    storage: str | None = None
    # A study name several processes work on together (each run otherwise tunes in a study of
    # its own, so its result depends only on data, config and seed: R3 does not hold here).
    shared_study: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    search_space: SearchSpace

    @field_validator("features")
    @classmethod
    def _some(cls, v: Literal["all"] | list[str]) -> Literal["all"] | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError('list at least one feature, or "all"')
        return v

    @field_validator("threshold_grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("list at least one threshold")
        if any(not 0 < x < 1 for x in v):
            raise ValueError("thresholds must be probabilities strictly between 0 and 1")
        return sorted(v)

    def hash(self) -> str:
        """What defines the model: where the study is kept is left out (and a storage URL may
        hold a password)."""
        from rooney_core.model.bundle import config_hash

        return config_hash(self.model_dump(mode="json"))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def _set_keys(data: dict, prefix: tuple = ()) -> list[tuple]:
    """Key paths a layer sets: the leaves of its nested mappings (a list is one leaf; an
    empty mapping sets nothing, as in ``_merge``)."""
    out = []
    for k, v in data.items():
        if isinstance(v, dict):
            out += _set_keys(v, (*prefix, k))
        else:
            out.append((*prefix, k))
    return out


def _record(origin: dict[tuple, Path], data: dict, path: Path) -> None:
    """Note which layer set each key path last, as ``_merge`` does with the values."""
    for key in _set_keys(data):
        for old in [o for o in origin if o[: len(key)] == key or key[: len(o)] == o]:
            del origin[old]  # replaced, or a scalar replaced by a mapping
        origin[key] = path


def _layers_of(loc: tuple, origin: dict[tuple, Path], layers: list[Path]) -> str:
    """The layer(s) that set the value at ``loc`` (defaults.yml if none: a missing key)."""
    keys = tuple(p for p in loc if isinstance(p, str))
    hit = {origin[o] for o in origin if o[: len(keys)] == keys or keys[: len(o)] == o}
    return " and ".join(str(p) for p in layers if p in hit) or str(layers[0])


def _check_keys(path: Path, data: dict, model: type[Strict], prefix: str = "") -> list[str]:
    """Unknown keys of an override file (values are checked after the merge)."""
    errors = []
    for k, v in data.items():
        field = model.model_fields.get(k)
        if field is None:
            errors.append(f"{path}: key '{prefix}{k}': not a training setting "
                          f"(known: {', '.join(model.model_fields)})")
            continue
        sub = field.annotation
        if isinstance(v, dict) and isinstance(sub, type) and issubclass(sub, Strict):
            errors += _check_keys(path, v, sub, f"{prefix}{k}.")
    return errors


def _layer_files(config_dir: Path, symbol: str | None, profile: str | None) -> list[Path]:
    """defaults.yml, the instrument's file if any, the profile's. Names are checked before
    any path is built from them: a symbol must be an instrument, a profile a plain name."""
    tdir = Path(config_dir) / "training"
    if profile is not None and not PROFILE_PATTERN.fullmatch(profile):
        raise ConfigError(f"training profile {profile!r}: a profile is a plain name (letters, digits, _ and -) "
                          f"of a file in {tdir}, not a path")
    if symbol is not None:
        instruments_file = Path(config_dir) / "instruments.yml"
        try:
            load_yaml_model(instruments_file, InstrumentsConfig).get(symbol)
        except ConfigError as exc:
            raise ConfigError(f"{instruments_file}: {exc}") from None
    layers = [tdir / "defaults.yml"]
    if not layers[0].is_file():
        raise ConfigError(f"{layers[0]}: training defaults not found")
    if symbol is not None and (tdir / f"{symbol}.yml").is_file():
        layers.append(tdir / f"{symbol}.yml")
    if profile is not None:
        if not (tdir / f"{profile}.yml").is_file():
            raise ConfigError(f"{tdir / f'{profile}.yml'}: training profile not found")
        layers.append(tdir / f"{profile}.yml")
    return layers


def load_training_config(config_dir: Path, symbol: str | None = None, profile: str | None = None) -> TrainingConfig:
    """defaults.yml, then ``<symbol>.yml`` if present, then ``<profile>.yml`` (e.g. demo).

    Raises ConfigError naming the layer file and the key of every problem."""
    layers = _layer_files(config_dir, symbol, profile)
    merged: dict[str, Any] = {}
    origin: dict[tuple, Path] = {}
    errors: list[str] = []
    for path in layers:
        data = read_yaml(path)
        errors += _check_keys(path, data, TrainingConfig)
        merged = _merge(merged, data)
        _record(origin, data, path)
    if errors:
        raise ConfigError("invalid training config\n" + "\n".join(errors))
    try:
        tcfg = TrainingConfig.model_validate(merged)
    except ValidationError as exc:
        lines = format_validation_error(exc, lambda loc: _layers_of(loc, origin, layers))
        raise ConfigError("invalid training config\n" + "\n".join(lines)) from None
    from rooney_core.features import REGISTRY

    for key in ("features", "exclude_features"):
        names = getattr(tcfg, key)
        for i, name in enumerate(names if isinstance(names, list) else []):
            if name not in REGISTRY:
                errors.append(f"{_layers_of((key,), origin, layers)}: key '{key}.{i}': unknown feature {name!r} "
                              "(see `rooney features --list`)")
    if errors:
        raise ConfigError("invalid training config\n" + "\n".join(errors))
    return tcfg


def training_features(tcfg: TrainingConfig, registry_names: list[str]) -> list[str]:
    names = registry_names if tcfg.features == "all" else list(tcfg.features)
    unknown = [n for n in names + tcfg.exclude_features if n not in registry_names]
    if unknown:
        raise ConfigError(f"training config: unknown feature(s) {unknown}")
    return [n for n in names if n not in set(tcfg.exclude_features)]
