"""The model-health kill switch: when an instrument's model can no longer be trusted, it
trades on paper until a person puts it back.

``health_decision`` is pure: it takes what monitoring measured for one instrument (the NaN
rate of each model feature over its last signals, their out-of-distribution rate, the
model's age, its live results) and the limits (``configs/monitoring.yml``, ``health:``),
and says whether the switch trips and why. ``assess`` measures those figures from the
prediction log's rows, the bundle and its stored training distribution.

``HealthState`` is the switch's state, ``health.json`` in a directory the live engine and
the pipeline share (the model store's root by default): which instruments are switched to
paper, since when, why, by whom. ``trip`` switches one to paper; ``restore`` is the only way
back, and needs who and why. Every change is appended to ``health.log`` (JSON lines,
fsynced) *before* ``health.json`` is replaced atomically, both under one lock: a writer
killed in between leaves an audit line for a change that did not happen (the next monitoring
run trips again; a person repeats the restore), never a change without its audit line.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pandas as pd

from rooney_core.backtest.metrics import sharpe
from rooney_core.errors import RooneyError
from rooney_core.io import append_jsonl, read_jsonl, write_text_atomic
from rooney_core.monitoring.config import HealthLimits
from rooney_core.monitoring.drift import ood_rate
from rooney_core.monitoring.performance import live_daily_pnl, sharpe_standard_error
from rooney_core.sessions import SessionCalendar

HEALTH_FILE = "health.json"
HEALTH_LOG = "health.log"
PAPER, LIVE = "paper", "live"


class HealthStateError(RooneyError):
    """The kill switch's state cannot be changed as asked (names what and why)."""


@dataclass(frozen=True)
class HealthCheck:
    name: str
    value: float | None
    limit: float
    passed: bool | None  # None: not judged (too little data)
    detail: str


@dataclass
class HealthDecision:
    """Whether ``symbol``'s kill switch trips, with the checks and a reason per failed one."""

    symbol: str
    trip: bool
    reasons: list[str]
    checks: list[HealthCheck] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "trip": self.trip, "reasons": list(self.reasons),
                "checks": [c.__dict__ for c in self.checks]}


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x else float(x)


def health_decision(symbol: str, *, limits: HealthLimits, nan_rates: Mapping[str, float] | None = None,
                    ood_rate: float | None = None, model_age_days: float | None = None,
                    live_sharpe: float | None = None, live_trades: int = 0, live_days: int = 0) -> HealthDecision:
    """Trip when the NaN rate of any model feature passes ``max_nan_rate``, the
    out-of-distribution rate passes ``max_ood_rate``, the model is older than
    ``max_model_age_days``, or, from ``min_live_trades`` exits on, the live Sharpe is below
    ``min_live_sharpe`` with ``live_confidence`` (its upper confidence bound over ``live_days``
    daily returns is below the floor: 60 days of an edge-bearing strategy's Sharpe ratio
    scatter by about 2, so a bare floor would trip on bad luck). A figure that was not
    measured (None) is not judged."""
    checks: list[HealthCheck] = []
    rates = {k: v for k, v in (nan_rates or {}).items() if v == v}
    if rates:
        worst = max(rates, key=rates.get)
        v = rates[worst]
        checks.append(HealthCheck("nan_rate", v, limits.max_nan_rate, v <= limits.max_nan_rate,
                                  f"NaN rate of {worst} {v:.1%} (limit {limits.max_nan_rate:.1%})"))
    else:
        checks.append(HealthCheck("nan_rate", None, limits.max_nan_rate, None, "no live feature rows"))
    o = _finite(ood_rate)
    checks.append(HealthCheck("ood_rate", o, limits.max_ood_rate, None if o is None else o <= limits.max_ood_rate,
                              "no live feature rows or no training distribution" if o is None else
                              f"out-of-distribution rate {o:.1%} (limit {limits.max_ood_rate:.1%})"))
    a = _finite(model_age_days)
    checks.append(HealthCheck("model_age_days", a, limits.max_model_age_days,
                              None if a is None else a <= limits.max_model_age_days,
                              "model age unknown" if a is None else
                              f"model trained {a:.0f} days ago (limit {limits.max_model_age_days})"))
    s = _finite(live_sharpe)
    if live_trades < limits.min_live_trades or s is None:
        checks.append(HealthCheck("live_sharpe", s, limits.min_live_sharpe, None,
                                  f"{live_trades} live exits, fewer than {limits.min_live_trades}: not judged"))
    else:
        bound, how = s, ""
        if limits.live_confidence > 0 and live_days >= 2:
            z = NormalDist().inv_cdf(limits.live_confidence)
            bound = s + z * sharpe_standard_error(s, live_days)
            how = f", {limits.live_confidence:.0%} upper bound {bound:.2f}"
        checks.append(HealthCheck("live_sharpe", s, limits.min_live_sharpe, bound >= limits.min_live_sharpe,
                                  f"live Sharpe {s:.2f} over {live_trades} exits{how} (floor "
                                  f"{limits.min_live_sharpe})"))
    reasons = [c.detail for c in checks if c.passed is False]
    return HealthDecision(symbol, bool(reasons), reasons, checks)


def model_age_days(trained_at: str | None, now: datetime | None = None) -> float | None:
    """Days since ``trained_at`` (a bundle's ISO time, UTC); None if unknown."""
    if not trained_at:
        return None
    t = pd.Timestamp(trained_at)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return (pd.Timestamp(now or datetime.now(UTC)).tz_convert("UTC") - t).total_seconds() / 86_400


def assess(symbol: str, rows: pd.DataFrame, live_features: pd.DataFrame, model_features: list[str],
           trained_at: str | None, limits: HealthLimits, reference: pd.DataFrame | None = None,
           now: datetime | None = None, end: pd.Timestamp | str | None = None,
           calendar: SessionCalendar | None = None) -> HealthDecision:
    """Measure and decide for one instrument: ``rows`` its ``signals.signal_rows`` (in time
    order), ``live_features`` their ``signals.feature_frame`` (same order), the model's
    features and training time (its age at ``now``, UTC), and its training distribution
    (``reference``). The live window ends at ``end`` (exchange-local, like the log's
    times; default the last exit). The live Sharpe's days are ``calendar``'s trading days
    (without one, every weekday: ``performance.live_daily_pnl``)."""
    recent = live_features.iloc[-limits.window_signals:]
    cols = recent.reindex(columns=model_features)
    nan_rates = {f: float(cols[f].isna().mean()) for f in model_features} if len(cols) else {}
    ood = ood_rate(reference, cols, model_features, limits.ood_tail) if reference is not None and len(cols) else None
    exits = rows[rows["resolved"]]
    end_ts = pd.Timestamp(end) if end is not None else (exits["exit_time"].max() if len(exits) else None)
    live, n, days = None, 0, 0
    if end_ts is not None:
        start = end_ts - pd.Timedelta(days=limits.live_window_days)
        trades = exits[(exits["exit_time"] > start) & (exits["exit_time"] <= end_ts)]
        n = len(trades)
        daily = live_daily_pnl(trades, start, end_ts, calendar)
        live, days = (sharpe(daily) if n else None), len(daily)
    return health_decision(symbol, limits=limits, nan_rates=nan_rates, ood_rate=ood,
                           model_age_days=model_age_days(trained_at, now), live_sharpe=live, live_trades=n,
                           live_days=days)


# --- the switch's state --------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class HealthState:
    """``health.json`` and its audit log ``health.log`` in ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / HEALTH_FILE
        self.log_path = self.root / HEALTH_LOG
        self._lock_path = self.root / ".health.lock"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        """``{"instruments": {symbol: {"mode", "since", "by", "reasons", ...}}}``; an
        instrument not listed is live. A damaged file is an error, never "all live"."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"instruments": {}}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HealthStateError(f"{self.path}: unreadable kill-switch state ({exc}); restore the file from "
                                   f"{HEALTH_LOG} or remove it after checking every instrument") from None
        if not isinstance(data, dict) or not isinstance(data.get("instruments"), dict):
            raise HealthStateError(f"{self.path}: no 'instruments' mapping; not a kill-switch state file")
        return data

    def mode(self, symbol: str) -> str:
        entry = self.read()["instruments"].get(symbol)
        return entry.get("mode", LIVE) if isinstance(entry, dict) else LIVE

    def paper_symbols(self) -> list[str]:
        return sorted(s for s, e in self.read()["instruments"].items() if isinstance(e, dict)
                      and e.get("mode") == PAPER)

    def _append(self, record: dict[str, Any]) -> None:
        append_jsonl(self.log_path, record)

    def _write(self, data: dict[str, Any]) -> None:
        write_text_atomic(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", self.path)

    def trip(self, symbol: str, reasons: list[str], by: str = "monitoring",
             details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Switch ``symbol`` to paper (audited). Already in paper: nothing changes, nothing
        is logged again (a sensor evaluating every minute must not flood the log)."""
        if not reasons:
            raise HealthStateError(f"trip {symbol}: say why (reasons)")
        with self._lock():
            data = self.read()
            cur = data["instruments"].get(symbol)
            if isinstance(cur, dict) and cur.get("mode") == PAPER:
                return cur
            entry = {"mode": PAPER, "since": _now(), "by": by, "reasons": list(reasons),
                     **({"details": dict(details)} if details else {})}
            self._append({"event": "trip", "symbol": symbol, "at": entry["since"], "by": by,
                          "reasons": list(reasons), **({"details": dict(details)} if details else {})})
            data["instruments"] = {**data["instruments"], symbol: entry}
            data["updated_at"] = entry["since"]
            self._write(data)
        return entry

    def restore(self, symbol: str, by: str, reason: str) -> dict[str, Any]:
        """Put ``symbol`` back to live: an explicit act by a named person, with a reason,
        audited. HealthStateError if it is not switched to paper."""
        if not by or not by.strip():
            raise HealthStateError(f"restore {symbol}: say who restores it (by=...)")
        if not reason or not reason.strip():
            raise HealthStateError(f"restore {symbol}: say why it may trade live again (reason=...)")
        with self._lock():
            data = self.read()
            cur = data["instruments"].get(symbol)
            if not (isinstance(cur, dict) and cur.get("mode") == PAPER):
                raise HealthStateError(f"restore {symbol}: it is not switched to paper by the kill switch")
            entry = {"mode": LIVE, "since": _now(), "by": by, "reason": reason,
                     "tripped": {k: cur.get(k) for k in ("since", "by", "reasons")}}
            self._append({"event": "restore", "symbol": symbol, "at": entry["since"], "by": by, "reason": reason,
                          "tripped_since": cur.get("since"), "tripped_reasons": cur.get("reasons")})
            data["instruments"] = {**data["instruments"], symbol: entry}
            data["updated_at"] = entry["since"]
            self._write(data)
        return entry

    def audit_log(self) -> list[dict[str, Any]]:
        """Every trip and restore, oldest first (a line torn by a kill is skipped)."""
        return read_jsonl(self.log_path)


def health_root(store_root: str | os.PathLike[str]) -> Path:
    """Where ``health.json`` lives by default: the model store's root, which the pipeline and
    the live engine both read."""
    return Path(store_root)


__all__ = ["HEALTH_FILE", "HEALTH_LOG", "HealthCheck", "HealthDecision", "HealthState", "HealthStateError",
           "LIVE", "PAPER", "assess", "health_decision", "health_root", "model_age_days"]
