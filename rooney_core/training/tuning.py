"""Walk-forward Optuna tuning of the Random Forest veto model.

Objective (STRATEGY.md): the annualised Sharpe of the daily net P&L of the trades the model
*selects* (by exit trading day over the instrument's trading days, exchange holidays excluded:
``backtest.daily.realised_by_day``), averaged over the folds. Inside each fold the forest is fitted on the earlier
training rows and the threshold chosen on a purged, time-ordered validation slice of the
latest ones (``splits.threshold_split``), so the test fold's labels never touch the
threshold. A fold whose selection holds fewer than ``min_trades_per_fold`` trades scores the
penalty. After each fold the running mean is reported, so the pruner can stop hopeless
trials early.

Each finished trial also records ``cv_sharpe``: the annualised Sharpe of its test folds'
daily P&L put end to end (the statistic the deflated Sharpe ratio deflates), and
``penalised``: whether any fold scored the penalty (such trials are left out of the
variance of that statistic).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from rooney_core.backtest.daily import exit_days_grid, realised_by_day
from rooney_core.backtest.metrics import sharpe
from rooney_core.sessions import SessionCalendar
from rooney_core.training.config import SearchSpace, TrainingConfig
from rooney_core.training.splits import Fold, threshold_split

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def suggest_params(trial: optuna.Trial, space: SearchSpace) -> dict:
    return {
        "n_estimators": trial.suggest_int("n_estimators", space.n_estimators.low, space.n_estimators.high,
                                          step=space.n_estimators.step),
        "max_depth": trial.suggest_categorical("max_depth", space.max_depth),
        "min_samples_leaf": trial.suggest_categorical("min_samples_leaf", space.min_samples_leaf),
        "max_features": trial.suggest_categorical("max_features", space.max_features),
        "max_samples": trial.suggest_float("max_samples", space.max_samples.low, space.max_samples.high),
        "class_weight": trial.suggest_categorical("class_weight", space.class_weight),
    }


def make_forest(params: dict, seed: int, n_jobs: int = 1) -> RandomForestClassifier:
    return RandomForestClassifier(bootstrap=True, random_state=seed, n_jobs=n_jobs, **params)


def fit_forest(params: dict, seed: int, n_jobs: int, x: np.ndarray, y: np.ndarray,
               sample_weight: np.ndarray | None = None) -> RandomForestClassifier:
    """Fit on ``n_jobs`` cores (the trees do not depend on it), then predict on one: threads
    add the trees' probabilities in a racy order, which changes the last bit (R3)."""
    forest = make_forest(params, seed, n_jobs).fit(x, y, sample_weight=sample_weight)
    forest.n_jobs = 1
    return forest


@dataclass(frozen=True)
class TradeSet:
    """Rows of labelled signals as arrays: features, label, net P&L, exit trading day, and
    the signal and exit times (for purging); and the instrument's session calendar, whose
    trading days (holidays excluded) are the days of the daily P&L a Sharpe is taken over."""

    x: np.ndarray
    win: np.ndarray
    pnl: np.ndarray
    exit_day: np.ndarray  # datetime64[D] of the exit fill's trading date
    signal: np.ndarray  # datetime64[ns]
    exit: np.ndarray  # datetime64[ns]
    calendar: SessionCalendar

    @classmethod
    def from_frame(cls, df: pd.DataFrame, features: list[str], calendar) -> TradeSet:
        exits = df["exit_time"].to_numpy(dtype="datetime64[ns]")
        return cls(df[features].to_numpy(dtype=float), df["win"].to_numpy(dtype=bool),
                   df["pnl_net"].to_numpy(dtype=float), calendar.trading_date(exits),
                   df["signal_time"].to_numpy(dtype="datetime64[ns]"), exits, calendar)

    def take(self, idx: np.ndarray) -> TradeSet:
        return TradeSet(self.x[idx], self.win[idx], self.pnl[idx], self.exit_day[idx], self.signal[idx],
                        self.exit[idx], self.calendar)

    def days(self) -> np.ndarray:
        """The trading days (calendar's, datetime64[D]) from the first exit to the last: the
        days of these rows' daily P&L."""
        return exit_days_grid(self.exit_day, self.calendar)

    def daily_pnl(self, selected: np.ndarray) -> pd.Series:
        """Daily net P&L of the ``selected`` rows by exit trading day over ``days()`` (0 on a
        trading day without a selected exit)."""
        return realised_by_day(self.pnl[selected], self.exit_day[selected], self.days())

    def weights(self, kind: str) -> np.ndarray | None:
        """Sample weights for fitting: None, or |P&L| (the objective is dollars, not win rate)."""
        if kind == "abs_pnl":
            w = np.abs(self.pnl)
            return w / w.mean() if w.sum() > 0 else None
        return None


def selected_sharpe(pnl: np.ndarray, exit_day: np.ndarray, selected: np.ndarray, days: np.ndarray) -> float:
    """Annualised Sharpe of the daily P&L of the selected trades over the trading days
    ``days`` of the window (days without a selected exit count as 0)."""
    return sharpe(realised_by_day(pnl[selected], exit_day[selected], days).to_numpy())


def choose_threshold(p: np.ndarray, rows: TradeSet, grid: list[float], min_trades: int) -> tuple[float, float]:
    """The grid threshold whose selection has the best daily Sharpe (with enough trades)."""
    days = rows.days()
    best = (grid[0], -np.inf)
    for thr in grid:
        sel = p >= thr
        if sel.sum() < min_trades:
            continue
        s = selected_sharpe(rows.pnl, rows.exit_day, sel, days)
        if s == s and s > best[1]:
            best = (thr, s)
    return best


def grow_forest(forest: RandomForestClassifier, n_estimators: int, n_jobs: int, x: np.ndarray, y: np.ndarray,
                sample_weight: np.ndarray | None = None) -> RandomForestClassifier:
    """Add trees to a fitted forest until it has ``n_estimators``. scikit-learn draws each
    tree's seed in order from the forest's seed and skips the seeds of the trees already there,
    so the grown forest is the forest a fit of ``n_estimators`` trees gives (tested)."""
    forest.set_params(warm_start=True, n_estimators=n_estimators, n_jobs=n_jobs)
    with warnings.catch_warnings():  # its caution is about new data; these are the same rows
        warnings.filterwarnings("ignore", message="class_weight presets", category=UserWarning)
        forest.fit(x, y, sample_weight=sample_weight)
    forest.set_params(warm_start=False)
    forest.n_jobs = 1  # predict on one core (fit_forest)
    return forest


def fit_with_threshold(params: dict, rows: TradeSet, tcfg: TrainingConfig,
                       grow: RandomForestClassifier | None = None
                       ) -> tuple[RandomForestClassifier, float, float, int]:
    """Fit on the earlier rows of a training set and choose the threshold on its purged
    validation slice: (forest, threshold, the slice's Sharpe at it, slice rows). With ``grow``
    (a smaller forest fitted here before on the same rows), that forest is grown to
    ``params["n_estimators"]`` trees instead of fitted again."""
    fit, val = threshold_split(rows.signal, rows.exit, tcfg.threshold_slice, tcfg.embargo_days)
    if len(fit) == 0 or len(val) == 0 or len(np.unique(rows.win[fit])) < 2:
        fit, val = np.arange(len(rows.win)), np.empty(0, dtype=np.int64)  # too little to split
    sub = rows.take(fit)
    if grow is None:
        forest = fit_forest(params, tcfg.seed, tcfg.n_jobs, sub.x, sub.win, sub.weights(tcfg.sample_weight))
    else:
        forest = grow_forest(grow, params["n_estimators"], tcfg.n_jobs, sub.x, sub.win,
                             sub.weights(tcfg.sample_weight))
    if len(val) == 0:
        return forest, tcfg.threshold_grid[0], float("nan"), 0
    vrows = rows.take(val)
    thr, score = choose_threshold(forest.predict_proba(vrows.x)[:, 1], vrows, tcfg.threshold_grid,
                                  tcfg.min_trades_per_slice)
    return forest, thr, score, len(val)


def fold_fit(params: dict, data: TradeSet, fold: Fold, tcfg: TrainingConfig,
             grow: RandomForestClassifier | None = None) -> tuple[float, float, pd.Series, RandomForestClassifier]:
    """(test-fold Sharpe of the selected trades, the threshold chosen on the fold's validation
    slice, the test fold's daily P&L of the selected trades, the fold's forest)."""
    train, test = data.take(fold.train), data.take(fold.test)
    forest, thr, _, _ = fit_with_threshold(params, train, tcfg, grow)
    sel = forest.predict_proba(test.x)[:, 1] >= thr
    daily = test.daily_pnl(sel)
    if sel.sum() < tcfg.min_trades_per_fold:
        return tcfg.min_trades_penalty, thr, daily, forest
    s = sharpe(daily.to_numpy())
    return (s if s == s else tcfg.min_trades_penalty), thr, daily, forest


def fold_score(params: dict, data: TradeSet, fold: Fold, tcfg: TrainingConfig
               ) -> tuple[float, float, pd.Series]:
    """``fold_fit`` without the forest."""
    return fold_fit(params, data, fold, tcfg)[:3]


def cross_validated(params: dict, data: TradeSet, folds: list[Fold], tcfg: TrainingConfig
                    ) -> tuple[list[float], pd.Series]:
    """Every fold's score and the test folds' daily P&L end to end (folds do not overlap)."""
    scores, series = [], []
    for fold in folds:
        score, _, daily = fold_score(params, data, fold, tcfg)
        scores.append(score)
        series.append(daily)
    return scores, pd.concat(series) if series else pd.Series(dtype=float)


def search_forest(params: dict, fraction: float) -> dict:
    """The forest a trial fits while it may still be pruned: ``fraction`` of its trees (at
    least one). With the same seed these are exactly the first trees of the full forest."""
    return {**params, "n_estimators": max(1, round(params["n_estimators"] * fraction))}


def worth_growing(trial: optuna.Trial, search_value: float, tcfg: TrainingConfig) -> bool:
    """Whether a trial that survived the pruner on small forests could beat the best
    full-forest value so far once grown. The first ``grow_startup`` such trials are always
    grown; they give pairs (small-forest value, full-forest value) of the same trials. A later
    trial is grown when its small value, plus the mean gain from small to full, plus
    ``grow_sigmas`` standard deviations of that gain, reaches the best full value: a trial
    that even a lucky growth would not make the best is not worth the rest of its trees."""
    pairs = [(t.user_attrs["search_value"], t.value)
             for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
             if t.user_attrs.get("full_forest") and "search_value" in t.user_attrs and t.value is not None]
    if len(pairs) < max(1, tcfg.grow_startup):
        return True
    gains = np.array([full - small for small, full in pairs])
    spread = float(gains.std(ddof=1)) if len(gains) > 1 else 0.0
    return search_value + float(gains.mean()) + tcfg.grow_sigmas * spread >= max(full for _, full in pairs)


def make_objective(data: TradeSet, folds: list[Fold], tcfg: TrainingConfig) -> Callable[[optuna.Trial], float]:
    """The trial's objective. Its folds are first scored with ``search_trees`` of its forest,
    and the pruner judges those running means. A trial that is not pruned and could still be
    the best once grown (``worth_growing``) has every fold's forest grown to the full size (the
    same forest as a full fit) and scored again: its value is the full forest's, and only such
    trials can become the model (``select_params``). The others keep their small-forest
    value: they lose to the full ones, and TPE learns from it that their region is worse."""
    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, tcfg.search_space)
        small = search_forest(params, tcfg.search_trees)
        full = small["n_estimators"] == params["n_estimators"]
        scores, series, forests = [], [], []
        for fold in folds:
            score, thr, daily, forest = fold_fit(small, data, fold, tcfg)
            scores.append(score)
            series.append(daily)
            forests.append(forest)
            trial.set_user_attr(f"fold{fold.index}_threshold", thr)
            trial.report(float(np.mean(scores)), fold.index)
            if trial.should_prune():
                raise optuna.TrialPruned()
        search_value = float(np.mean(scores))
        trial.set_user_attr("search_trees", small["n_estimators"])
        trial.set_user_attr("search_value", search_value)
        if not full and worth_growing(trial, search_value, tcfg):
            scores, series = [], []
            for fold, forest in zip(folds, forests, strict=True):
                score, thr, daily, _ = fold_fit(params, data, fold, tcfg, grow=forest)
                scores.append(score)
                series.append(daily)
                trial.set_user_attr(f"fold{fold.index}_threshold", thr)
            full = True
        del forests
        cv = sharpe(pd.concat(series).to_numpy())
        trial.set_user_attr("full_forest", full)
        trial.set_user_attr("fold_scores", scores)
        trial.set_user_attr("cv_sharpe", float(cv) if cv == cv else None)
        trial.set_user_attr("penalised", any(x == tcfg.min_trades_penalty for x in scores))
        return float(np.mean(scores))

    return objective


PARAM_NAMES = ("n_estimators", "max_depth", "min_samples_leaf", "max_features", "max_samples", "class_weight")


@dataclass(frozen=True)
class Selection:
    """The search's outcome: the best trial scored with its full forest, its hyper-parameters,
    that forest's fold scores and its test folds' daily P&L end to end (the deflated Sharpe's
    input)."""

    trial: int
    params: dict
    fold_scores: list[float]
    cv_daily: pd.Series

    @property
    def objective(self) -> float:
        return float(np.mean(self.fold_scores))


def select_params(study: optuna.Study, data: TradeSet, folds: list[Fold], tcfg: TrainingConfig) -> Selection:
    """The best completed trial whose value is its full forest's (ties: the earlier trial),
    cross-validated again for its daily P&L. Deterministic (R3)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
            and t.user_attrs.get("full_forest", True)]
    if not done:
        raise ValueError(f"no trial completed with its full forest in study {study.study_name}")
    best = min(done, key=lambda t: (-t.value, t.number))
    params = {k: best.params[k] for k in PARAM_NAMES}
    scores, daily = cross_validated(params, data, folds, tcfg)
    return Selection(best.number, params, scores, daily)


PG_URL_ENV = "DAGSTER_PG_URL"  # the production instance's database (dagster_home/postgres/dagster.yaml)
OPTUNA_SCHEMA = "optuna"  # Optuna's tables, beside Dagster's: both use alembic_version, so not in one schema


def postgres_study_storage(url: str, schema: str = OPTUNA_SCHEMA) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage in ``schema`` of the PostgreSQL database at ``url`` (created if
    missing), so the studies live in the production instance's database without touching
    Dagster's tables.

    Runs that start at once on a new database would each create Optuna's tables and enum
    types, and the second CREATE TYPE fails (found at full scale: two training runs of 20).
    A session-level advisory lock makes one of them create the schema while the others wait."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as lock:
            lock.execute(sqlalchemy.text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": f"rooney-{schema}"})
            try:
                with engine.begin() as conn:
                    conn.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"connect_args": {"options": f"-csearch_path={schema}"}, "pool_pre_ping": True})
            finally:
                lock.execute(sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": f"rooney-{schema}"})
                lock.commit()
    finally:
        engine.dispose()


def study_storage(tcfg: TrainingConfig, journal_path: Path) -> optuna.storages.BaseStorage | str:
    """An RDB URL from config (a cluster), else the production instance's PostgreSQL
    ($DAGSTER_PG_URL, schema "optuna"), else a journal file several processes can share."""
    if tcfg.storage:
        return tcfg.storage
    if os.environ.get(PG_URL_ENV):
        return postgres_study_storage(os.environ[PG_URL_ENV])
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal_path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(journal_path)))


def create_study(tcfg: TrainingConfig, storage, study_name: str, pruning: bool = True,
                 shared: bool = False) -> optuna.Study:
    """A new study, or with ``shared`` the named study other processes may be working on.

    A run's own study is never resumed: a study left by a killed run holds a trial stuck in
    RUNNING and a sampler history the new run did not make, so resuming it would make the
    result depend on when the kill came (R3)."""
    sampler = optuna.samplers.TPESampler(seed=tcfg.seed, n_startup_trials=min(10, max(2, tcfg.trials // 3)))
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if pruning and tcfg.pruner.kind == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=tcfg.pruner.n_startup_trials,
                                             n_warmup_steps=tcfg.pruner.n_warmup_steps)
    elif pruning and tcfg.pruner.kind == "percentile":  # median is percentile 50
        pruner = optuna.pruners.PercentilePruner(tcfg.pruner.percentile, n_startup_trials=tcfg.pruner.n_startup_trials,
                                                 n_warmup_steps=tcfg.pruner.n_warmup_steps)
    elif pruning and tcfg.pruner.kind == "successive_halving":
        # rungs after n_warmup_steps + 1 folds, then every fold; the better half goes on
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, tcfg.pruner.n_warmup_steps),
                                                        reduction_factor=2)
    return optuna.create_study(storage=storage, study_name=study_name, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=shared)


_COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def instrument_trials(storage, symbol: str, current: optuna.Study, data_tag: str | None = None
                      ) -> tuple[int, list[float]]:
    """(every finished trial run on ``symbol`` in this storage, earlier studies included: the
    N of the deflated Sharpe; and the ``cv_sharpe`` of the completed trials without a
    penalised fold on the same data: the spread of that statistic). A study is the
    instrument's when its name starts with ``<SYMBOL>-`` (run studies: ``SYM-config-data-run``)
    or it is ``current``; its data is the third part of the name (``data_tag``). Trials on
    other data count in N (every try on the instrument is a try) but not in the variance,
    which is the spread of the statistic over one data set."""
    n, values = 0, []
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    for name in sorted(names):
        if not (name.startswith(f"{symbol}-") or name == current.study_name):
            continue
        study = current if name == current.study_name else optuna.load_study(study_name=name, storage=storage)
        parts = name.split("-")
        same_data = name == current.study_name or data_tag is None or (len(parts) >= 4 and parts[2] == data_tag)
        for t in study.get_trials(deepcopy=False, states=_COUNTED):
            n += 1
            cv = t.user_attrs.get("cv_sharpe")
            if (same_data and t.state == optuna.trial.TrialState.COMPLETE and cv is not None
                    and not t.user_attrs.get("penalised")):
                values.append(float(cv))
    return n, values


def run_trials(study: optuna.Study, objective, n_trials: int, progress: Callable[[str], None] | None = None,
               shared: bool = False) -> optuna.Study:
    """Run ``n_trials`` trials, logging each as it ends. In a ``shared`` study, run until it
    holds ``n_trials`` completed or pruned trials among all processes; a trial a killed
    process left RUNNING is not counted (it never finished)."""
    def counted(st: optuna.Study) -> int:
        return len(st.get_trials(deepcopy=False, states=_COUNTED))

    def report(st: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if progress:
            value = f"{trial.value:.3f}" if trial.value is not None else trial.state.name.lower()
            best = f"{st.best_value:.3f}" if any(t.value is not None for t in st.trials) else "-"
            done = counted(st) if shared else trial.number + 1
            progress(f"trial {min(done, n_trials)}/{n_trials}: {value} (best {best})")

    # trials run one after another (a seeded TPE stays reproducible); parallelism is inside
    # each forest (n_jobs cores, same trees) and across processes sharing a study
    if not shared:
        study.optimize(objective, n_trials=n_trials, callbacks=[report])
    elif counted(study) < n_trials:
        stop = optuna.study.MaxTrialsCallback(n_trials, states=_COUNTED)
        study.optimize(objective, n_trials=n_trials, callbacks=[report, stop])
    return study
