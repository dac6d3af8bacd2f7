"""One instrument's monitoring verdict, and acting on it.

``monitor_instrument`` reads what the dashboard reads (``dashboard.load_instrument``: the
prediction log, the live trades, the model store and the lake) and judges the model the
engine runs on five findings:

* ``performance``: live Sharpe, P&L per trade, win rate or accuracy down at least 10% of the
  holdout backtest's expectation over the window (``performance.performance_drop``);
* ``drift``: feature drift of the last sessions' signal rows against the version's training
  rows, with thresholds calibrated on that reference (``drift``); the calibration is cached
  per version in ``cache_dir`` (a version and its reference never change);
* ``regime``: realised-volatility percentile or trend state against the training period
  (``shift.regime``, on the lake's daily bars);
* ``shift``: the live probabilities against the holdout's (``shift.prediction_shift``);
* ``health``: the kill switch's limits (``health.assess``).

Each finding is active (True), clear (False) or without a verdict (None, too little data);
``performance``, ``drift`` and ``regime`` are retrain triggers. ``MonitorReport.panels``
draws the dashboard's panels from the same data, so the Dagster asset shows the same plots.

Acting: ``enforce_kill_switch`` trips the instrument's switch when its health fails (audited
in ``health.log``; restoring is a person's act, ``rooney health restore``), and
``notify`` sends one alert when a finding becomes active and one when it clears, whoever
evaluates (the asset or a sensor): the episodes are kept in ``<alerts dir>/conditions.json``
under a lock, keyed by instrument, finding and model version.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rooney_core.config import RooneyConfig
from rooney_core.errors import RooneyError
from rooney_core.io import write_text_atomic
from rooney_core.model import ModelStore
from rooney_core.model.store import ModelStoreError
from rooney_core.monitoring import dashboard as db
from rooney_core.monitoring.alerts import Alert, AlertKind, AlertSink
from rooney_core.monitoring.drift import DriftReport, DriftThresholds, calibrate_thresholds, feature_drift
from rooney_core.monitoring.health import PAPER, HealthDecision, HealthState, assess, health_root
from rooney_core.monitoring.performance import (
    ModelPerformance,
    PerformanceDrop,
    model_performance,
    outcomes,
    performance_drop,
)
from rooney_core.monitoring.reference import load_reference_features
from rooney_core.monitoring.shift import PredictionShift, RegimeState, prediction_shift, regime
from rooney_core.monitoring.signals import feature_frame
from rooney_core.monitoring.veto_value import veto_value

FINDINGS = ("performance", "drift", "regime", "shift", "health")
RETRAIN_TRIGGERS = ("performance", "drift", "regime")
_KIND = {"performance": AlertKind.ACCURACY_DROP, "drift": AlertKind.DRIFT, "regime": AlertKind.REGIME_CHANGE,
         "shift": AlertKind.DISTRIBUTION_SHIFT, "health": AlertKind.KILL_SWITCH}
CONDITIONS_FILE = "conditions.json"


@dataclass(frozen=True)
class Finding:
    """One judged condition: ``active`` True (crossed), False (clear) or None (no verdict)."""

    key: str
    active: bool | None
    verdict: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None

    @property
    def kind(self) -> AlertKind:
        return _KIND[self.key]

    @property
    def status(self) -> str:
        return {True: "ALERT", False: "ok", None: "no verdict"}[self.active]


@dataclass
class MonitorReport:
    symbol: str
    version: str | None
    as_of: pd.Timestamp | None  # the last bar the engine decided (exchange time)
    findings: dict[str, Finding]
    performance: PerformanceDrop | None = None
    models: list[ModelPerformance] = field(default_factory=list)
    drift: DriftReport | None = None
    thresholds: DriftThresholds | None = None
    shift: PredictionShift | None = None
    regime: RegimeState | None = None
    health: HealthDecision | None = None
    veto: pd.DataFrame = field(default_factory=pd.DataFrame)
    problems: dict[str, str] = field(default_factory=dict)
    data: db.InstrumentData | None = field(default=None, repr=False)
    reference: pd.DataFrame | None = field(default=None, repr=False)
    paths: db.DashboardPaths | None = field(default=None, repr=False)
    rules: Any = field(default=None, repr=False)  # the strategy rules (cfg.strategy), for the equity panel

    def active(self, keys: tuple[str, ...] = FINDINGS) -> list[Finding]:
        return [self.findings[k] for k in keys if k in self.findings and self.findings[k].active]

    def retrain_reasons(self, keys: tuple[str, ...] = RETRAIN_TRIGGERS) -> list[str]:
        return [f"{f.key}: {f.verdict}" for f in self.active(tuple(k for k in keys if k in RETRAIN_TRIGGERS))]

    def table(self) -> pd.DataFrame:
        """One row per finding: status, verdict, measured value and its limit."""
        return pd.DataFrame([{"finding": f.key, "status": f.status, "verdict": f.verdict, "metric": f.metric,
                              "value": f.value, "threshold": f.threshold} for f in self.findings.values()],
                            columns=["finding", "status", "verdict", "metric", "value", "threshold"])

    def panels(self) -> dict[str, db.Panel]:
        """The dashboard's panels of this instrument, from the data already read."""
        if self.data is None:
            return {}
        d = self.data
        out = {"accuracy": db.accuracy_panel(d), "veto": db.veto_panel(d),
               "drift": db.drift_panel(d, self.reference, self.thresholds,
                                       self.problems.get("drift") or self.problems.get("reference"))}
        bt, note = None, None
        if d.period is None or d.hourly is None or self.version is None or self.paths is None:
            note = "no backtest of the same bars: " + db.why_missing(d, "engine", "lake", "model")
        else:
            try:
                bundle = ModelStore(self.paths.model_store).load(self.version)
                bt = db.backtest_same_bars(d.hourly, d.features, d.instrument, self.rules, bundle, *d.period,
                                           self.version)
            except (ModelStoreError, RooneyError) as err:
                note = f"no backtest of the same bars: {err}"
        out["equity"] = db.equity_panel(d, bt, note)
        return out


# --- drift thresholds, calibrated once per version ------------------------------------------


def _limits_key(limits: Any, calendar: Any) -> str:
    raw = json.dumps({"limits": limits.model_dump(mode="json"), "calendar": repr(calendar)}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def cached_thresholds(reference: pd.DataFrame, version: str, limits, calendar, cache_dir: Path | None
                      ) -> DriftThresholds:
    """``calibrate_thresholds`` of a version's reference, read from ``cache_dir`` when the same
    version and limits were calibrated before (seconds saved on every evaluation)."""
    names = [c for c in reference.columns if c != "signal_time"]
    path = cache_dir / f"{version}.drift-{_limits_key(limits, calendar)}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return DriftThresholds(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, TypeError, ValueError):
            pass  # recalibrated below and rewritten
    th = calibrate_thresholds(reference, limits, names, calendar)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(json.dumps(asdict(th), sort_keys=True), path)
        except OSError:
            pass  # a cache, not a record
    return th


# --- the verdict ----------------------------------------------------------------------------


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _perf_finding(p: PerformanceDrop | None, why: str | None) -> Finding:
    if p is None:
        return Finding("performance", None, why or "not measured")
    if not p.triggered:
        return Finding("performance", None if p.verdict.startswith("no verdict") else False, p.verdict)
    worst = p.figures[p.figures["down"]].sort_values("change").iloc[0]
    return Finding("performance", True, p.verdict, f"{worst['figure']} over {p.trades} exits",
                   _f(worst["live"]), _f(worst["expected"]))


def _drift_finding(r: DriftReport | None, why: str | None) -> Finding:
    if r is None:
        return Finding("drift", None, why or "not measured")
    active = None if r.verdict.startswith("no verdict") else r.alert
    return Finding("drift", active, r.verdict, "drifted features", float(len(r.drifted)), float(r.min_drifted))


def _regime_finding(r: RegimeState | None, why: str | None) -> Finding:
    if r is None:
        return Finding("regime", None, why or "not measured")
    active = None if r.verdict.startswith("no verdict") else r.changed
    return Finding("regime", active, r.verdict, "realised-volatility percentile in training", _f(r.vol_percentile))


def _shift_finding(s: PredictionShift | None, why: str | None) -> Finding:
    if s is None:
        return Finding("shift", None, why or "not measured")
    active = None if s.verdict.startswith("no verdict") else s.shifted
    return Finding("shift", active, s.verdict, "share of probabilities at or above the threshold",
                   _f(s.live_share_above), _f(s.holdout_share_above))


def _health_finding(h: HealthDecision | None, why: str | None) -> Finding:
    if h is None:
        return Finding("health", None, why or "not measured")
    failed = [c for c in h.checks if c.passed is False]
    if failed:
        return Finding("health", True, "; ".join(h.reasons), failed[0].name, _f(failed[0].value),
                       _f(failed[0].limit))
    judged = [c for c in h.checks if c.passed is not None]
    return Finding("health", False if judged else None,
                   "within every limit: " + "; ".join(c.detail for c in judged) if judged else
                   "no verdict: " + "; ".join(c.detail for c in h.checks))


def monitor_instrument(paths: db.DashboardPaths, cfg: RooneyConfig, symbol: str, *, now: datetime | None = None,
                       log: pd.DataFrame | None = None, cache_dir: str | os.PathLike[str] | None = None
                       ) -> MonitorReport:
    """Judge ``symbol``'s model as the live engine runs it (see the module's docstring).
    ``log``: the whole prediction log if already read; ``cache_dir``: where drift thresholds
    are cached (default ``<alerts dir>/drift_thresholds``)."""
    d = db.load_instrument(paths, cfg, symbol, log)
    problems = dict(d.problems)
    lim = d.limits
    version = d.version
    if version is None:
        why = problems.get("model", f"no model for {symbol}")
        return MonitorReport(symbol, None, None, {k: Finding(k, None, why) for k in FINDINGS}, problems=problems,
                             data=d, paths=paths, rules=cfg.strategy)
    store = ModelStore(paths.model_store)
    rows_v = d.rows[d.rows["model_version"] == version].reset_index(drop=True)
    as_of = d.period[1] if d.period is not None else (d.rows["bar_time"].max() if len(d.rows) else None)
    as_of = None if as_of is None or as_of != as_of else pd.Timestamp(as_of)
    metrics = d.metrics.get(version, {})
    holdout = d.holdouts.get(version)
    why_log = problems.get("log") or (None if len(rows_v) else f"no signal of {version} in the prediction log")

    perf = None
    if not why_log:
        scored_v = outcomes(rows_v, d.counterfactual)
        perf = performance_drop(scored_v, metrics, lim.performance.window_days, end=as_of,
                                max_drop=lim.performance.max_drop, min_trades=lim.performance.min_trades,
                                holdout=holdout, confidence=lim.performance.confidence,
                                calendar=d.instrument.calendar)  # P&L per trading day, as the backtest
    models = model_performance(outcomes(d.rows, d.counterfactual), d.metrics, d.holdouts, lim.performance) \
        if len(d.rows) else []

    reference = thresholds = drift = None
    try:
        reference = load_reference_features(store, version)
        cache = Path(cache_dir) if cache_dir is not None else paths.alerts_dir / "drift_thresholds"
        thresholds = cached_thresholds(reference, version, lim.drift, d.instrument.calendar, cache)
    except (ModelStoreError, OSError, ValueError, RooneyError) as err:
        problems["reference"] = f"{version}: no training distribution to compare with ({err})"
    if thresholds is not None and not problems.get("log"):
        names = [c for c in reference.columns if c != "signal_time"]
        drift = feature_drift(reference, db.drift_window(d, names), thresholds, lim.drift, names)

    shift = None
    if perf is not None:
        recent = rows_v[rows_v["bar_time"] > perf.window_start]
        logged = rows_v["threshold"].dropna()
        if len(logged):  # the threshold the engine applied (the bundle's)
            shift = prediction_shift(recent["probability"], float(logged.iloc[-1]), metrics, holdout, lim.shift)

    reg, why_regime = None, None
    if as_of is None:
        why_regime = "no verdict: no bar decided live yet (the market is judged as of the engine's last bar)"
    elif metrics.get("holdout_start") is None:
        why_regime = f"{version}: holdout_start not recorded, so the training period is unknown"
    else:
        try:
            reg = regime(paths.lake.read("daily", symbol), metrics["holdout_start"], lim.regime,
                         as_of=as_of.normalize())
        except (OSError, ValueError, KeyError) as err:
            why_regime = f"no daily bars of {symbol} in the lake ({err})"

    health = None
    try:
        meta = store.load_metadata(version)
        log_v = d.log[d.log["model_version"] == version] if len(d.log) and "model_version" in d.log else d.log
        live_feats = feature_frame(log_v, meta.get("feature_names")).sort_index(kind="stable") if len(log_v) \
            else pd.DataFrame(columns=meta.get("feature_names") or [])
        health = assess(symbol, rows_v, live_feats, list(meta.get("feature_names") or []), meta.get("trained_at"),
                        lim.health, reference, now=now, end=as_of, calendar=d.instrument.calendar)
    except ModelStoreError as err:
        problems["health"] = str(err)

    findings = {"performance": _perf_finding(perf, why_log), "drift": _drift_finding(drift, why_log or
                                                                                      problems.get("reference")),
                "regime": _regime_finding(reg, why_regime), "shift": _shift_finding(shift, why_log),
                "health": _health_finding(health, problems.get("health"))}
    veto = veto_value(d.rows, d.counterfactual) if len(d.rows) else pd.DataFrame()
    return MonitorReport(symbol, version, as_of, findings, perf, models, drift, thresholds, shift, reg, health, veto,
                         problems, d, reference, paths, cfg.strategy)


# --- acting on it ---------------------------------------------------------------------------


def enforce_kill_switch(report: MonitorReport, state: HealthState, sink: AlertSink | None = None,
                        by: str = "monitoring", run_url: str | None = None) -> bool:
    """Trip ``report.symbol``'s kill switch when its health fails and it is not already on
    paper; alert once when it trips. True if it tripped now."""
    h = report.health
    if h is None or not h.trip or state.mode(report.symbol) == PAPER:
        return False
    state.trip(report.symbol, h.reasons, by=by, details={"version": report.version,
                                                          "as_of": str(report.as_of) if report.as_of else None})
    if sink is not None:
        f = report.findings["health"]
        sink.send(Alert(AlertKind.KILL_SWITCH, f"{report.symbol} switched to paper: {'; '.join(h.reasons)}. "
                        f"Back to live only by `rooney health restore {report.symbol} --by NAME --reason TEXT`.",
                        instrument=report.symbol, metric=f.metric, value=f.value, threshold=f.threshold,
                        run_url=run_url, details={"model": report.version, "as of": str(report.as_of)}))
    return True


class Conditions:
    """The findings currently alerted, per instrument (``conditions.json``), so that each
    episode is announced once when it starts and once when it clears."""

    def __init__(self, alerts_dir: str | os.PathLike[str]):
        self.root = Path(alerts_dir)
        self.path = self.root / CONDITIONS_FILE

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".conditions.lock", "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                data = self.read()
                yield data
                write_text_atomic(json.dumps(data, indent=1, sort_keys=True) + "\n", self.path)
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # a damaged record only means an episode may be announced again
        return data if isinstance(data, dict) else {}

    def notify(self, report: MonitorReport, sink: AlertSink, run_url: str | None = None,
               keys: tuple[str, ...] = ("performance", "drift", "regime", "shift")) -> list[Alert]:
        """Send an alert for each finding that became active (or active under a new model
        version) and a resolved alert for each that cleared; returns what was sent."""
        sent: list[Alert] = []
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._locked() as data:
            mine = dict(data.get(report.symbol) or {})
            for key in keys:
                f = report.findings.get(key)
                if f is None or f.active is None:
                    continue
                was = mine.get(key)
                details = {"model": report.version, "as of": str(report.as_of) if report.as_of else None}
                if f.active and (was is None or was.get("version") != report.version):
                    alert = Alert(f.kind, f"{report.symbol} {report.version}: {f.verdict}", instrument=report.symbol,
                                  metric=f.metric, value=f.value, threshold=f.threshold, run_url=run_url,
                                  details=details)
                    mine[key] = {"since": now, "version": report.version, "verdict": f.verdict,
                                 "as_of": details["as of"]}
                    sent.append(alert)
                elif not f.active and was is not None:
                    alert = Alert(f.kind, f"{report.symbol} {report.version}: clear again ({f.verdict}); "
                                  f"alerted since {was.get('since')}", instrument=report.symbol, run_url=run_url,
                                  resolved=True, details=details)
                    mine.pop(key)
                    sent.append(alert)
            data[report.symbol] = mine
        for alert in sent:
            sink.send(alert)
        return sent


def health_state_for(paths: db.DashboardPaths) -> HealthState:
    return HealthState(health_root(paths.model_store))


__all__ = ["CONDITIONS_FILE", "Conditions", "FINDINGS", "Finding", "MonitorReport", "RETRAIN_TRIGGERS",
           "cached_thresholds", "enforce_kill_switch", "health_state_for", "monitor_instrument"]
