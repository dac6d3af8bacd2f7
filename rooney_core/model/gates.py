"""The six validation gates a model version must pass before it may be promoted.

``validate_model(bundle, data, cfg) -> GateReport`` checks one bundle against the market it
was trained on, with thresholds from ``configs/validation.yml`` (per-instrument overrides
allowed). Each check has a value, a threshold and passed or failed; a check that cannot run
(no minute data for the parity replay, no holdout start in the bundle) fails and says why:
it is never shown as passed.

1. **feature_availability**: every feature of the bundle is in the registry with the schema
   it was trained on (so the live path computes it), and over the last N months of the data
   no feature is missing on more than ``max_nan_rate`` of the hourly bars.
2. **backtest_reproduction**: the veto-on holdout backtest, re-run from the bundle through
   the production strategy, gives exactly the metrics stored in it.
3. **out_of_sample**: that backtest's Sharpe, its probabilistic Sharpe ratio against 0, the
   deflated Sharpe of the cross-validated Sharpe, its trade count and max drawdown.
4. **importance**: no single feature, and not the calendar features together, above a share
   of the forest's impurity importance.
5. **prediction_distribution**: the holdout signals' probabilities are spread out (std,
   distinct values) and the share at or above the threshold is inside bounds.
6. **live_parity**: the replay gate (``rooney_core.live.parity``): the live path decides
   exactly what the backtest decides over the last months of minute bars.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rooney_core.backtest.runner import possible_entries, slice_period
from rooney_core.config import RooneyConfig
from rooney_core.features import REGISTRY, REGISTRY_VERSION
from rooney_core.formats import money, number, ratio
from rooney_core.io import jsonable

GATES: dict[str, str] = {
    "feature_availability": "Every feature is computable on the live path (registry schema unchanged) and its "
                            "missing share over the last months stays under the limit.",
    "backtest_reproduction": "Re-running the bundle's veto-on holdout backtest through the production strategy "
                             "gives exactly the metrics stored in the bundle.",
    "out_of_sample": "Veto-on holdout backtest: Sharpe, probabilistic Sharpe (vs 0), deflated cross-validated "
                     "Sharpe, trades and max drawdown within the limits of configs/validation.yml.",
    "importance": "No single feature, and not the calendar features together, dominate the forest's importance.",
    "prediction_distribution": "Holdout probabilities are spread out and the share selected is inside bounds.",
    "live_parity": "The live path (incremental bars and features, this bundle, the paper broker) decides exactly "
                   "what the backtest decides over the last months: features to 1e-9, probabilities, decisions "
                   "and trades identical.",
}
REPRODUCED_KEYS = ("trades", "net_pnl", "avg_trade", "win_rate", "sharpe", "sortino", "max_drawdown_usd",
                   "max_drawdown_pct", "days")


@dataclass
class GateResult:
    name: str
    passed: bool
    value: Any
    threshold: Any
    detail: str


@dataclass
class GateReport:
    symbol: str
    content_hash: str
    gates: list[GateResult]
    version: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def passed(self) -> bool:
        return len(self.gates) == len(GATES) and all(g.passed for g in self.gates)

    @property
    def failed(self) -> list[str]:
        names = {g.name for g in self.gates}
        return [g.name for g in self.gates if not g.passed] + [n for n in GATES if n not in names]

    def gate(self, name: str) -> GateResult:
        return next(g for g in self.gates if g.name == name)

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "version": self.version, "content_hash": self.content_hash,
                "created_at": self.created_at, "passed": self.passed,
                "gates": [jsonable(asdict(g)) for g in self.gates]}

    @classmethod
    def from_dict(cls, d: dict) -> GateReport:
        return cls(symbol=d["symbol"], content_hash=d["content_hash"], version=d.get("version"),
                   created_at=d.get("created_at", ""), gates=[GateResult(**g) for g in d["gates"]])

    def summary(self) -> str:
        return (f"{self.version or self.symbol}: " + ("every gate passed" if self.passed else
                                                     "FAILED " + ", ".join(self.failed)))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"gate": g.name, "passed": g.passed, "value": _show(g.value),
                              "threshold": _show(g.threshold), "detail": g.detail} for g in self.gates]
                            ).set_index("gate")


@dataclass
class ModelData:
    """What the gates run on: the instrument's market (hourly bars and full-history features,
    instrument, rules) and, for the parity replay, the raw minute files and the store."""

    market: Any  # rooney_core.training.train.Market
    data_dir: Path | None = None
    store: Any = None  # rooney_core.model.ModelStore
    parity_months: int | None = None


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_show(x)}" for k, x in v.items())
    if isinstance(v, float):
        return number(v)
    return str(v)


def _fail(name: str, why: str, threshold: Any = None) -> GateResult:
    return GateResult(name, False, None, threshold, f"not run: {why}")


# --- the six checks --------------------------------------------------------------------------


def feature_availability(bundle, market, months: int, max_nan_rate: float) -> GateResult:
    name = "feature_availability"
    unknown = [n for n in bundle.feature_names if n not in REGISTRY]
    if unknown:
        return GateResult(name, False, unknown, "in the registry", f"not in the feature registry: {unknown}")
    if bundle.registry_version != REGISTRY_VERSION or REGISTRY.schema_hash(bundle.feature_names) != \
            bundle.feature_schema_hash:
        return GateResult(name, False, "schema changed", bundle.feature_schema_hash[:12],
                          "the registry's definitions of these features changed since training (schema hash "
                          f"{REGISTRY.schema_hash(bundle.feature_names)[:12]} vs the bundle's "
                          f"{bundle.feature_schema_hash[:12]}): the live path would compute other values")
    missing = [n for n in bundle.feature_names if n not in market.features.columns]
    if missing:
        return GateResult(name, False, missing, "computed", f"not computed for this instrument: {missing}")
    feats = market.features[bundle.feature_names]
    since = feats.index[-1] - pd.DateOffset(months=months)
    recent = feats[feats.index > since]
    rates = recent.isna().mean()
    worst = rates.idxmax() if len(rates) else None
    value = float(rates.max()) if len(rates) else 1.0
    ok = bool(len(recent) > 0 and value <= max_nan_rate)
    detail = (f"{len(bundle.feature_names)} features over {len(recent)} hourly bars since {since.date()}: "
              f"highest missing share {value:.2%} ({worst}); limit {max_nan_rate:.2%}")
    return GateResult(name, ok, value, max_nan_rate, detail)


def backtest_reproduction(bundle, market) -> tuple[GateResult, Any]:
    """(the gate, the re-run veto-on backtest or None)."""
    from rooney_core.training.train import holdout_backtests

    name = "backtest_reproduction"
    stored = (bundle.metrics or {}).get("selected")
    start = (bundle.metrics or {}).get("holdout_start")
    if not stored or not start:
        return _fail(name, "the bundle holds no holdout backtest metrics (trained before the veto-on holdout "
                           "evaluation; retrain it)"), None
    on, _ = holdout_backtests(market, bundle, pd.Timestamp(start))
    again = jsonable({k: on.metrics[k] for k in REPRODUCED_KEYS})
    differ = {k: (stored.get(k), again[k]) for k in REPRODUCED_KEYS if stored.get(k) != again[k]}
    if differ:
        shown = "; ".join(f"{k}: stored {a!r}, re-run {b!r}" for k, (a, b) in differ.items())
        return GateResult(name, False, len(differ), 0, f"the re-run differs from the stored metrics: {shown}"), on
    return GateResult(name, True, 0, 0, f"re-run from {start}: {again['trades']:,} trades, net "
                                        f"{money(again['net_pnl'])}, Sharpe {ratio(again['sharpe'])}: identical"), on


def out_of_sample(bundle, market, rerun, t) -> GateResult:
    from rooney_core.training.evaluation import backtest_daily_pnl, probabilistic_sharpe

    name = "out_of_sample"
    m = bundle.metrics or {}
    if rerun is None or not m.get("selected"):
        return _fail(name, "no veto-on holdout backtest to judge", threshold=t.model_dump())
    rm = rerun.metrics
    psr = probabilistic_sharpe(backtest_daily_pnl(rerun, market.capital).to_numpy(), 0.0)
    dsr = m.get("deflated_sharpe")
    value = {"sharpe": rm["sharpe"], "psr": psr, "deflated_sharpe": dsr, "trades": rm["trades"],
             "max_drawdown_pct": rm["max_drawdown_pct"]}

    def at_least(v, lo):
        return v is not None and v == v and v >= lo

    checks = {"sharpe": at_least(rm["sharpe"], t.min_sharpe), "psr": at_least(psr, t.min_psr),
              "deflated_sharpe": at_least(dsr, t.min_deflated_sharpe), "trades": rm["trades"] >= t.min_trades,
              "max_drawdown_pct": rm["max_drawdown_pct"] == rm["max_drawdown_pct"] and
              rm["max_drawdown_pct"] <= t.max_drawdown_pct}
    bad = [k for k, ok in checks.items() if not ok]
    limits = {"sharpe": f">= {t.min_sharpe}", "psr": f">= {t.min_psr}", "deflated_sharpe":
              f">= {t.min_deflated_sharpe}", "trades": f">= {t.min_trades}",
              "max_drawdown_pct": f"<= {t.max_drawdown_pct}"}
    detail = "; ".join(f"{k} {_show(value[k])} ({limits[k]}{'' if checks[k] else ': FAIL'})" for k in checks)
    return GateResult(name, not bad, jsonable(value), limits, f"veto-on holdout backtest: {detail}")


def importance(bundle, t) -> GateResult:
    name = "importance"
    imp = getattr(bundle.estimator, "feature_importances_", None)
    if imp is None:
        return _fail(name, "the estimator reports no feature importance")
    share = pd.Series(np.asarray(imp, dtype=float), index=bundle.feature_names)
    share = share / share.sum() if share.sum() > 0 else share
    top = share.idxmax()
    calendar = [n for n in bundle.feature_names if REGISTRY[n].group == "calendar"]
    cal = float(share[calendar].sum()) if calendar else 0.0
    ok = bool(share[top] <= t.max_feature_share and cal <= t.max_calendar_share)
    return GateResult(name, ok, {"top_feature": top, "top_share": float(share[top]), "calendar_share": cal},
                      {"max_feature_share": t.max_feature_share, "max_calendar_share": t.max_calendar_share},
                      f"largest share {share[top]:.1%} ({top}; limit {t.max_feature_share:.0%}); calendar features "
                      f"{', '.join(calendar) or 'none'} together {cal:.1%} (limit {t.max_calendar_share:.0%})")


def holdout_probabilities(bundle, market) -> np.ndarray:
    """P(win) of every base signal of the holdout whose features are all present."""
    start = (bundle.metrics or {}).get("holdout_start")
    bars = slice_period(market.hourly, start, None)
    feats = slice_period(market.features, start, None)
    signals = possible_entries(feats, bars, market.rules, market.instrument.calendar)
    x = feats.loc[signals, bundle.feature_names].to_numpy(dtype=float)
    x = x[~np.isnan(x).any(axis=1)]
    return bundle.estimator.predict_proba(x)[:, 1] if len(x) else np.empty(0)


def prediction_distribution(bundle, market, t) -> GateResult:
    name = "prediction_distribution"
    if not (bundle.metrics or {}).get("holdout_start"):
        return _fail(name, "the bundle names no holdout start")
    p = holdout_probabilities(bundle, market)
    if len(p) == 0:
        return _fail(name, "no holdout signal with every feature present")
    std, distinct = float(np.std(p)), int(len(np.unique(np.round(p, 12))))
    sel = float((p >= bundle.threshold).mean())
    ok = bool(std >= t.min_std and distinct >= t.min_distinct and t.min_selected_share <= sel <= t.max_selected_share)
    return GateResult(name, ok, {"std": std, "distinct": distinct, "selected_share": sel, "signals": len(p)},
                      {"min_std": t.min_std, "min_distinct": t.min_distinct,
                       "selected_share": [t.min_selected_share, t.max_selected_share]},
                      f"{len(p)} holdout signals: std {std:.4f} (min {t.min_std}), {distinct} distinct values "
                      f"(min {t.min_distinct}), {sel:.1%} at or above the threshold {bundle.threshold:.2f} "
                      f"(bounds {t.min_selected_share:.0%}-{t.max_selected_share:.0%})")


def live_parity(bundle, data: ModelData, cfg: RooneyConfig) -> GateResult:
    from rooney_core.live.parity import parity_check

    name = "live_parity"
    if data.data_dir is None or data.store is None:
        return _fail(name, "no minute data given for the replay")
    months = data.parity_months or cfg.pipeline.parity.months
    report = parity_check(cfg, bundle.symbol, data.data_dir, data.store, model=bundle, months=months)
    return GateResult(name, report.ok, len(report.divergences), 0, report.summary())


def validate_model(bundle, data: ModelData, cfg: RooneyConfig, progress=None) -> GateReport:
    """Run the six gates on ``bundle``; thresholds from ``cfg.validation`` for its instrument."""
    say = progress or (lambda _m: None)
    say(f"{bundle.symbol}: running the six gates on the bundle")
    t = cfg.validation.for_symbol(bundle.symbol)
    market = data.market
    results = [feature_availability(bundle, market, t.feature_availability.months,
                                    t.feature_availability.max_nan_rate)]
    repro, rerun = backtest_reproduction(bundle, market)
    results += [repro, out_of_sample(bundle, market, rerun, t.out_of_sample), importance(bundle, t.importance),
                prediction_distribution(bundle, market, t.predictions), live_parity(bundle, data, cfg)]
    report = GateReport(bundle.symbol, bundle.content_hash(), results)
    for g in results:
        say(f"{bundle.symbol} gate {g.name}: {'passed' if g.passed else 'FAILED'}: {g.detail}")
    return report


def report_json(report: GateReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"
