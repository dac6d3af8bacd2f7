"""Train one instrument's veto model end to end: holdout split, purged walk-forward tuning,
final refit on the whole training period, holdout evaluation, the bundle and its report data.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd

from rooney_core.backtest.runner import run_backtest
from rooney_core.config import Instrument, StrategyConfig
from rooney_core.errors import RooneyError
from rooney_core.features import REGISTRY, REGISTRY_VERSION
from rooney_core.io import jsonable
from rooney_core.model import VetoBundle
from rooney_core.model.bundle import config_hash
from rooney_core.redact import redact_url
from rooney_core.sessions import SessionCalendar
from rooney_core.training.config import TrainingConfig, training_features
from rooney_core.training.evaluation import evaluate_holdout
from rooney_core.training.splits import split_holdout, walk_forward_folds
from rooney_core.training.tuning import (
    TradeSet,
    create_study,
    fit_forest,
    fit_with_threshold,
    instrument_trials,
    make_objective,
    run_trials,
    select_params,
    study_storage,
)


class TrainingError(RooneyError):
    pass


@dataclass(frozen=True)
class Market:
    """What the holdout backtests run on: the instrument's hourly bars and full-history
    features (aligned), its instrument and the production rules."""

    hourly: pd.DataFrame
    features: pd.DataFrame
    instrument: Instrument
    rules: StrategyConfig
    capital: float = 100_000.0

    @property
    def calendar(self) -> SessionCalendar:
        return self.instrument.calendar


@dataclass
class TrainingResult:
    symbol: str
    estimator: object
    feature_names: list[str]
    threshold: float
    best_params: dict
    metrics: dict
    study: optuna.Study
    holdout: pd.DataFrame  # labelled holdout signals with the model's probability and selection
    curves: pd.DataFrame  # cumulative daily P&L over the holdout: veto-on vs veto-off backtest
    data_hash: str
    schema_hash: str
    config: dict
    folds: list = field(default_factory=list)
    holdout_trades: pd.DataFrame | None = None  # the veto-on holdout backtest's trades


def data_hash(cands: pd.DataFrame) -> str:
    """sha256 of the candidate rows (values and order): the data a model was trained on."""
    h = hashlib.sha256(pd.util.hash_pandas_object(cands, index=False).to_numpy().tobytes())
    h.update(",".join(cands.columns).encode())
    return h.hexdigest()


def usable_rows(cands: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Candidates with every training feature present (warm-up rows are vetoed live, so
    they are not training samples either: no silent fill)."""
    ok = cands[features].notna().all(axis=1)
    return cands[ok].sort_values("signal_time").reset_index(drop=True)


def holdout_backtests(market: Market, veto, start: pd.Timestamp, end=None):
    """(veto-on, veto-off) backtests of the production strategy from ``start`` (a session
    open). ``veto`` is anything with estimator, feature_names and threshold: a bundle."""
    when = str(pd.Timestamp(start))
    on = run_backtest(market.hourly, market.features, market.instrument, market.rules, market.capital,
                      model=veto, start=when, end=end, model_name="veto on")
    off = run_backtest(market.hourly, market.features, market.instrument, market.rules, market.capital,
                       veto_enabled=False, start=when, end=end)
    return on, off


def train_veto_model(cands: pd.DataFrame, symbol: str, tcfg: TrainingConfig, market: Market,
                     journal_path: Path, progress: Callable[[str], None] | None = None,
                     study_name: str | None = None, pruning: bool = True) -> TrainingResult:
    say = progress or (lambda _m: None)
    calendar = market.calendar
    features = training_features(tcfg, REGISTRY.names())
    rows = usable_rows(cands, features)
    if len(rows) == 0:
        per_session = calendar.hourly_bars
        longest = max(features, key=lambda n: REGISTRY[n].warmup.bars(per_session))
        raise TrainingError(f"{symbol}: none of {len(cands)} candidates has every training feature; the "
                            f"data may be shorter than the warm-up (e.g. {longest}: "
                            f"{REGISTRY[longest].warmup.bars(per_session)} hourly bars)")
    train_df, hold_df, hold_start = split_holdout(rows, tcfg.holdout_years, tcfg.embargo_days, calendar)
    if len(train_df) < tcfg.min_trades_per_fold * (tcfg.folds + 1) or len(hold_df) == 0:
        raise TrainingError(f"{symbol}: too few labelled signals to train ({len(train_df)} in training, "
                            f"{len(hold_df)} in holdout from {hold_start})")
    folds = walk_forward_folds(train_df, tcfg.folds, tcfg.embargo_days)
    data = TradeSet.from_frame(train_df, features, calendar)
    say(f"{symbol}: {len(train_df)} labelled signals before {hold_start} (holdout start, embargo "
        f"{tcfg.embargo_days} days), {len(hold_df)} in the holdout; {len(folds)} folds, {tcfg.trials} trials, "
        f"{len(features)} features")

    dhash = data_hash(rows[["signal_time", "exit_time", "pnl_net", "win", *features]])
    shared = tcfg.shared_study is not None
    # a run's own study: a unique name, so nothing a killed or concurrent run left is resumed
    name = study_name or tcfg.shared_study or f"{symbol}-{tcfg.hash()}-{dhash[:12]}-{_run_tag()}"
    storage = study_storage(tcfg, journal_path)
    study = create_study(tcfg, storage, name, pruning=pruning, shared=shared)
    run_trials(study, make_objective(data, folds, tcfg), tcfg.trials, say, shared=shared)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise TrainingError(f"{symbol}: no trial completed in study {name}")
    # the best trial with a full-forest value, cross-validated again: the deflated Sharpe uses its
    # test folds' daily P&L and every trial on this instrument
    chosen = select_params(study, data, folds, tcfg)
    params, cv_daily = chosen.params, chosen.cv_daily

    # the threshold on the training period's purged validation slice, then the forest refitted
    # on every training row (same hyper-parameters and seed)
    _, threshold, slice_score, slice_rows = fit_with_threshold(params, data, tcfg)
    forest = fit_forest(params, tcfg.seed, tcfg.n_jobs, data.x, data.win, data.weights(tcfg.sample_weight))
    hold = TradeSet.from_frame(hold_df, features, calendar)
    p = forest.predict_proba(hold.x)[:, 1]

    n_trials, cv_sharpes = instrument_trials(storage, symbol, study, dhash[:12])
    veto = SimpleNamespace(estimator=forest, feature_names=features, threshold=float(threshold))
    on, off = holdout_backtests(market, veto, hold_start)
    metrics, curves = evaluate_holdout(p, hold.win, threshold, on, off, market.capital, cv_daily, cv_sharpes,
                                       n_trials)
    metrics.update({
        "cv_objective": chosen.objective, "chosen_trial": chosen.trial + 1,
        "trials_full_forest": sum(bool(t.user_attrs.get("full_forest")) for t in completed),
        "trials_completed": len(completed),
        "trials_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "train_trades": len(train_df), "holdout_start": str(hold_start),
        "embargo_days": tcfg.embargo_days, "threshold_slice_sharpe": float(slice_score),
        "threshold_slice_rows": int(slice_rows), "purged_per_fold": [f.purged for f in folds],
        "sample_weight": tcfg.sample_weight,
    })
    sel = metrics["selected"]
    say(f"{symbol}: holdout veto-on backtest Sharpe {sel['sharpe']:.2f} ({sel['trades']} trades) vs veto-off "
        f"{metrics['all']['sharpe']:.2f}; PSR vs 0 {metrics['psr_vs_zero']:.2f}, AUC {metrics['auc']:.3f}, "
        f"deflated CV Sharpe {metrics['deflated_sharpe']:.2f} over {n_trials} trials")
    holdout = hold_df.assign(probability=p, selected=p >= threshold)
    config = tcfg.model_dump(mode="json")
    config["storage"] = redact_url(config["storage"])  # a password in the URL is never kept
    return TrainingResult(symbol, forest, features, float(threshold), params, metrics, study, holdout, curves,
                          dhash, REGISTRY.schema_hash(features), config, folds, on.trades)


def _run_tag() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def make_bundle(result: TrainingResult, trained_at: str | None = None) -> VetoBundle:
    """The immutable bundle of a training result. Its gate report is a separate record (the
    gates run on the bundle itself, and may be re-run later)."""
    return VetoBundle(symbol=result.symbol, estimator=result.estimator, feature_names=result.feature_names,
                      threshold=result.threshold, registry_version=REGISTRY_VERSION,
                      feature_schema_hash=result.schema_hash, data_hash=result.data_hash,
                      config={**result.config, "config_hash": config_hash(result.config),
                              "best_params": result.best_params}, metrics=jsonable(result.metrics),
                      trained_at=trained_at)
