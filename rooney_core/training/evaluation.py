"""Out-of-sample evaluation of a veto model, and the (deflated, probabilistic) Sharpe ratios.

What decides promotion is measured on the path that will trade: a veto-on backtest of the
trained model through the production strategy over the holdout, beside the veto-off
(unfiltered) backtest of the same period. Classification figures (AUC, Brier, precision)
come from the labelled holdout signals.

* The deflated Sharpe ratio (Bailey & Lopez de Prado, 2014) deflates the best trial's
  cross-validated daily P&L Sharpe (its test folds end to end) for the number of trials run
  on the instrument, earlier studies included, with the variance of that same statistic
  across the trials (those with a penalised fold left out): the probability that the true
  Sharpe exceeds the best one expected from that many tries of noise.
* On the holdout, the probabilistic Sharpe ratio of the veto-on daily P&L against 0 and
  against the unfiltered strategy's Sharpe.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from rooney_core.backtest.daily import marked_to_market
from rooney_core.backtest.metrics import TRADING_DAYS, sharpe

EULER_GAMMA = 0.5772156649015329
SIGNIFICANCE = 0.95


def probabilistic_sharpe(daily_pnl: np.ndarray, benchmark_annual: float = 0.0) -> float:
    """P(true Sharpe > benchmark) for a daily P&L series (Bailey & Lopez de Prado, 2012):
    non-normal returns through the series' skew and kurtosis."""
    x = np.asarray(daily_pnl, dtype=float)
    t = len(x)
    if t < 3 or np.std(x, ddof=1) == 0 or benchmark_annual != benchmark_annual:
        return float("nan")
    sr = np.mean(x) / np.std(x, ddof=1)  # per day
    sr_star = benchmark_annual / math.sqrt(TRADING_DAYS)
    skew = stats.skew(x)
    kurt = stats.kurtosis(x, fisher=False)
    denom = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    return float(stats.norm.cdf((sr - sr_star) * math.sqrt(t - 1) / math.sqrt(max(denom, 1e-12))))


def noise_benchmark(trial_sharpes_annual: list[float], n_trials: int) -> float:
    """SR0, annualised: the best Sharpe expected from ``n_trials`` tries of noise whose
    Sharpes spread as ``trial_sharpes_annual`` do (0 without a spread)."""
    trials = np.asarray([s for s in trial_sharpes_annual if s is not None and s == s], dtype=float)
    trials = trials / math.sqrt(TRADING_DAYS)
    n = max(n_trials, len(trials))
    if len(trials) < 2 or np.var(trials, ddof=1) == 0 or n < 2:
        return 0.0
    sd = math.sqrt(np.var(trials, ddof=1))
    sr0 = sd * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n) + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e)))
    return float(sr0 * math.sqrt(TRADING_DAYS))


def deflated_sharpe(daily_pnl: np.ndarray, trial_sharpes_annual: list[float],
                    n_trials: int | None = None) -> tuple[float, float]:
    """(DSR probability, the noise benchmark SR0 annualised) for a daily P&L series.
    ``trial_sharpes_annual`` give the spread of the trials' Sharpes; ``n_trials`` (default:
    their count) is how many tries were made, pruned ones included."""
    x = np.asarray(daily_pnl, dtype=float)
    if len(x) < 3 or np.std(x, ddof=1) == 0:
        return float("nan"), float("nan")
    sr0 = noise_benchmark(trial_sharpes_annual, n_trials or len(trial_sharpes_annual))
    return probabilistic_sharpe(x, sr0), sr0


def backtest_daily_pnl(result, capital: float) -> pd.Series:
    """Daily P&L of a backtest's marked-to-market equity (trading dates; its ``equity`` is
    already one value per session: ``daily.marked_to_market`` without a calendar)."""
    return marked_to_market(result.equity, capital)


def _backtest_summary(result, capital: float) -> dict:
    m = result.metrics
    return {k: m[k] for k in ("trades", "net_pnl", "avg_trade", "win_rate", "sharpe", "sortino",
                              "max_drawdown_usd", "max_drawdown_pct", "days")}


def evaluate_holdout(p: np.ndarray, win: np.ndarray, threshold: float, veto_on, veto_off, capital: float,
                     cv_daily: pd.Series, trial_cv_sharpes: list[float], n_trials: int
                     ) -> tuple[dict, pd.DataFrame]:
    """The holdout figures: the veto-on backtest (``selected``) beside the veto-off one
    (``all``), PSR against 0 and against the unfiltered strategy, the CV deflated Sharpe, and
    classification figures on the labelled holdout signals. Also both equity curves."""
    if len(p) == 0:
        raise ValueError("the holdout holds no labelled signals")
    on_daily, off_daily = backtest_daily_pnl(veto_on, capital), backtest_daily_pnl(veto_off, capital)
    sel, everything = _backtest_summary(veto_on, capital), _backtest_summary(veto_off, capital)
    dsr, sr0 = deflated_sharpe(cv_daily.to_numpy(), trial_cv_sharpes, n_trials)
    selected = p >= threshold
    both_classes = len(np.unique(win)) == 2
    metrics = {
        "threshold": float(threshold),
        "selected": sel,
        "all": everything,
        "psr_vs_zero": probabilistic_sharpe(on_daily.to_numpy(), 0.0),
        "psr_vs_unfiltered": probabilistic_sharpe(on_daily.to_numpy(), everything["sharpe"]),
        "cv_sharpe": sharpe(cv_daily.to_numpy()),
        "cv_days": int(len(cv_daily)),
        "deflated_sharpe": dsr,
        "sharpe_noise_benchmark": sr0,
        "trials_total": int(n_trials),
        "edge_significant": bool(dsr == dsr and dsr >= SIGNIFICANCE),
        "auc": float(roc_auc_score(win, p)) if both_classes else float("nan"),
        "brier": float(brier_score_loss(win, p)),
        "precision": float(win[selected].mean()) if selected.any() else float("nan"),
        "base_rate": float(win.mean()),
        "selection_rate": float(selected.mean()),
        "holdout_signals": int(len(p)),
        "holdout_days": int(len(on_daily)),
        "veto_rate": float(veto_on.veto_rate),
    }
    curves = pd.DataFrame({"selected": on_daily.cumsum(), "all": off_daily.cumsum()})
    return metrics, curves
