"""``configs/monitoring.yml``: what monitoring measures, over which window, and the limits
that raise an alert, trigger a retrain or trip an instrument's kill switch.

Validated like every config (extra keys forbidden, no NaN or infinity): a typo is an error
naming the file and the key. ``instruments:`` overrides any value per instrument, merged
section by section as in ``validation.yml``. The defaults are documented in the YAML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, model_validator

from rooney_core.config import Strict, Symbol, config_dir_from_env, format_validation_error, load_yaml_model
from rooney_core.errors import ConfigError

MONITORING_FILE = "monitoring.yml"


class PerformanceLimits(Strict):
    """Live results against what the bundle's holdout promised."""

    window_days: int = Field(default=90, ge=1)  # calendar days of live results the retrain trigger reads
    min_trades: int = Field(default=20, ge=1)  # fewer exits in the window: no verdict
    max_drop: float = Field(default=0.10, gt=0, le=1)  # down this share of the expectation: retrain
    confidence: float = Field(default=0.99, ge=0, lt=1)  # ... and its upper confidence bound below it too (0: off)
    rolling_signals: int = Field(default=50, ge=2)  # rolling accuracy, precision, Brier over N resolved signals
    calibration_bins: int = Field(default=10, ge=2, le=50)


class DriftLimits(Strict):
    """Feature drift of live signal rows against the training rows stored with the bundle."""

    bins: int = Field(default=10, ge=2, le=100)  # PSI bins: quantiles of the training distribution
    window_sessions: int = Field(default=20, ge=1)  # the live window compared with training
    min_rows: int = Field(default=30, ge=5)  # fewer live rows: no verdict
    quantile: float = Field(default=0.99, gt=0.5, lt=1)  # per feature: this quantile of its null statistic
    min_psi: float = Field(default=0.10, ge=0)  # floors under the calibrated per-feature thresholds
    min_ks: float = Field(default=0.10, ge=0, le=1)
    max_false_alarm_rate: float = Field(default=0.01, gt=0, lt=1)  # the overall alert's rate on a stationary market
    min_features: int = Field(default=1, ge=1)  # the overall alert never needs fewer drifted features
    block_sessions: int = Field(default=20, ge=1)  # the block bootstrap: blocks of consecutive sessions
    periods: int = Field(default=2, ge=1)  # calibration: a window from one period against the others
    draws: int = Field(default=200, ge=20)  # bootstrap windows drawn to calibrate
    seed: int = Field(default=0, ge=0)


class ShiftLimits(Strict):
    """The live probabilities against the holdout's."""

    min_rows: int = Field(default=30, ge=1)
    max_share_change: float = Field(default=0.15, gt=0, le=1)  # share at or above the threshold (absolute)
    max_mean_change: float = Field(default=0.05, gt=0, le=1)  # mean probability (absolute)


class RegimeLimits(Strict):
    """The market's state against the training period (daily bars)."""

    vol_window: int = Field(default=20, ge=2)  # sessions of realised volatility
    vol_percentile_low: float = Field(default=0.01, ge=0, le=1)  # of the training period's realised volatility
    vol_percentile_high: float = Field(default=0.99, ge=0, le=1)
    trend_window: int = Field(default=200, ge=2)  # sessions: close against its simple moving average
    trend_band: float = Field(default=0.02, ge=0)  # within this of the average: flat
    min_state_share: float = Field(default=0.05, ge=0, le=1)  # a trend state rarer than this in training: a change
    min_training_sessions: int = Field(default=250, ge=1)  # fewer training sessions with a trend state: not judged

    @model_validator(mode="after")
    def _ordered(self) -> RegimeLimits:
        if self.vol_percentile_low >= self.vol_percentile_high:
            raise ValueError("vol_percentile_low must be below vol_percentile_high")
        return self


class HealthLimits(Strict):
    """The model-health kill switch: any limit passed switches the instrument to paper."""

    window_signals: int = Field(default=100, ge=1)  # NaN and out-of-distribution rates over the last N signals
    max_nan_rate: float = Field(default=0.05, ge=0, le=1)  # per model feature
    ood_tail: float = Field(default=0.0005, ge=0, lt=0.5)  # a row is out of distribution beyond these quantiles
    max_ood_rate: float = Field(default=0.20, ge=0, le=1)
    max_model_age_days: int = Field(default=240, ge=1)  # since the model was trained
    live_window_days: int = Field(default=60, ge=1)
    min_live_trades: int = Field(default=20, ge=1)  # fewer exits: the live floor is not judged
    min_live_sharpe: float = -1.0  # annualised, daily P&L of the live trades in the window ...
    live_confidence: float = Field(default=0.80, ge=0, lt=1)  # ... below it with this confidence (0: the bare floor)


class MonitoringLimits(Strict):
    performance: PerformanceLimits = PerformanceLimits()
    drift: DriftLimits = DriftLimits()
    shift: ShiftLimits = ShiftLimits()
    regime: RegimeLimits = RegimeLimits()
    health: HealthLimits = HealthLimits()


class Automation(Strict):
    """When the pipeline monitors and retrains (rooney_pipeline/retraining.py: the schedules and
    the retrain sensors)."""

    retrain_cron: str = "0 2 1 1,7 *"  # every 6 months: 02:00 on 1 January and 1 July
    monitor_cron: str = "30 17 * * 1-5"  # model_monitoring of every instrument after each US session
    timezone: str = "America/Chicago"
    profile: str | None = None  # training profile layered on top (configs/training/<profile>.yml)
    trials: int | None = Field(default=None, ge=1)  # override the number of Optuna trials
    cooldown_days: float = Field(default=7, ge=0)  # a trigger still firing asks again only after this
    triggers: list[Literal["performance", "drift", "regime"]] = ["performance", "drift", "regime"]

    @model_validator(mode="after")
    def _cron(self) -> Automation:
        for name in ("retrain_cron", "monitor_cron"):
            value = getattr(self, name)
            fields = value.split()
            if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-]+", f) for f in fields):
                raise ValueError(f"{name} {value!r}: expected five cron fields such as '0 2 1 1,7 *'")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r}: not an IANA time zone") from None
        return self


class MonitoringConfig(Strict):
    defaults: MonitoringLimits = MonitoringLimits()
    automation: Automation = Automation()
    instruments: dict[Symbol, dict[str, Any]] = {}  # per-instrument overrides of ``defaults``

    def for_symbol(self, symbol: str) -> MonitoringLimits:
        over = self.instruments.get(symbol)
        if not over:
            return self.defaults
        merged = self.defaults.model_dump()
        for k, v in over.items():
            merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
        return MonitoringLimits.model_validate(merged)


def load_monitoring_config(config_dir: str | Path | None = None) -> MonitoringConfig:
    """Read ``configs/monitoring.yml`` (every instrument override validated too)."""
    cdir = Path(config_dir) if config_dir is not None else config_dir_from_env()
    path = cdir / MONITORING_FILE
    cfg = load_yaml_model(path, MonitoringConfig)
    errors: list[str] = []
    for sym in cfg.instruments:
        try:
            cfg.for_symbol(sym)
        except ValidationError as exc:
            errors += [f"{path}: " + line.replace("key '", f"key 'instruments.{sym}.", 1)
                       for line in format_validation_error(exc)]
    if errors:
        raise ConfigError("invalid config\n" + "\n".join(errors))
    return cfg
