"""Training configuration: ``configs/training/defaults.yml`` plus per-instrument overrides.

An override file may set any key of the defaults and nothing else; nested mappings merge
key by key, lists and scalars replace. Each file is checked on its own (so an error names
the file and key that caused it), then the merged result is validated as a whole.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from rooney_core.config import Strict, _format_loc
from rooney_core.errors import ConfigError


class IntRange(Strict):
    low: int
    high: int
    step: int = 1


class FloatRange(Strict):
    low: float
    high: float


class SearchSpace(Strict):
    n_estimators: IntRange
    max_depth: list[int | None]
    min_samples_leaf: list[int]
    max_features: list[str | float]
    max_samples: FloatRange
    class_weight: list[Literal["balanced", "balanced_subsample"] | None]


class PrunerConfig(Strict):
    kind: Literal["median", "none"] = "median"
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
    objective: Literal["sharpe_selected"] = "sharpe_selected"
    trials: int = Field(ge=1)
    seed: int
    n_jobs: int = Field(default=1, ge=1)
    pruner: PrunerConfig = PrunerConfig()
    storage: str | None = None
    search_space: SearchSpace

    @field_validator("threshold_grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < x < 1 for x in v):
            raise ValueError("thresholds must be probabilities strictly between 0 and 1")
        return sorted(v)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


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


def load_training_config(config_dir: Path, symbol: str | None = None, profile: str | None = None) -> TrainingConfig:
    """defaults.yml, then ``<symbol>.yml`` if present, then ``<profile>.yml`` (e.g. demo)."""
    tdir = Path(config_dir) / "training"
    layers = [tdir / "defaults.yml"]
    if not layers[0].is_file():
        raise ConfigError(f"{layers[0]}: training defaults not found")
    for name in (symbol, profile):
        if name and (tdir / f"{name}.yml").is_file():
            layers.append(tdir / f"{name}.yml")
        elif name == profile and name:
            raise ConfigError(f"{tdir / f'{name}.yml'}: training profile not found")
    merged: dict[str, Any] = {}
    errors: list[str] = []
    for path in layers:
        data = _read(path)
        errors += _check_keys(path, data, TrainingConfig)
        merged = _merge(merged, data)
    if errors:
        raise ConfigError("invalid training config\n" + "\n".join(errors))
    try:
        return TrainingConfig.model_validate(merged)
    except ValidationError as exc:
        files = ", ".join(str(p) for p in layers)
        lines = [f"key '{_format_loc(e['loc'])}': {e['msg']} (got {e['input']!r})" for e in exc.errors()]
        raise ConfigError(f"invalid training config (from {files})\n" + "\n".join(lines)) from None


def training_features(tcfg: TrainingConfig, registry_names: list[str]) -> list[str]:
    names = registry_names if tcfg.features == "all" else list(tcfg.features)
    unknown = [n for n in names + tcfg.exclude_features if n not in registry_names]
    if unknown:
        raise ConfigError(f"training config: unknown feature(s) {unknown}")
    return [n for n in names if n not in set(tcfg.exclude_features)]
