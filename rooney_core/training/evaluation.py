"""Out-of-sample evaluation of a veto model on the holdout, and the deflated Sharpe ratio.

Every figure compares the trades the model *selects* with all candidates over the same
holdout trading days. The deflated Sharpe ratio (Bailey & Lopez de Prado, 2014) is the
probability that the selected trades' true Sharpe exceeds the best Sharpe one would expect
from ``n_trials`` tries of pure noise; below 0.95 the report does not claim an edge.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from rooney_core.backtest.metrics import TRADING_DAYS, max_drawdown, sharpe, sortino

EULER_GAMMA = 0.5772156649015329
SIGNIFICANCE = 0.95


def deflated_sharpe(daily_pnl: np.ndarray, trial_sharpes_annual: list[float],
                    n_trials: int | None = None) -> tuple[float, float]:
    """(DSR probability, the noise benchmark SR0 annualised) for a daily P&L series.
    ``trial_sharpes_annual`` give the spread of the trials' Sharpes; ``n_trials`` (default:
    their count) is how many tries were made, pruned ones included."""
    x = np.asarray(daily_pnl, dtype=float)
    t = len(x)
    if t < 3 or np.std(x, ddof=1) == 0:
        return float("nan"), float("nan")
    sr = np.mean(x) / np.std(x, ddof=1)  # per day
    trials = np.asarray([s for s in trial_sharpes_annual if s == s], dtype=float) / math.sqrt(TRADING_DAYS)
    n = max(n_trials or 0, len(trials))
    if len(trials) > 1 and np.var(trials, ddof=1) > 0:
        sd = math.sqrt(np.var(trials, ddof=1))
        sr0 = sd * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n) + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e)))
    else:
        sr0 = 0.0
    skew = stats.skew(x)
    kurt = stats.kurtosis(x, fisher=False)
    denom = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    z = (sr - sr0) * math.sqrt(t - 1) / math.sqrt(max(denom, 1e-12))
    return float(stats.norm.cdf(z)), float(sr0 * math.sqrt(TRADING_DAYS))


def daily_series(pnl: np.ndarray, exit_day: np.ndarray, mask: np.ndarray, days: pd.DatetimeIndex) -> pd.Series:
    s = pd.Series(pnl[mask]).groupby(exit_day[mask].astype("datetime64[ns]")).sum()
    return s.reindex(days, fill_value=0.0)


def _summary(daily: pd.Series, n: int, pnl: np.ndarray) -> dict:
    dd_usd, _ = max_drawdown(np.r_[0.0, daily.cumsum().to_numpy()])  # a first-day loss counts
    return {"trades": int(n), "net_pnl": float(pnl.sum()), "avg_trade": float(pnl.mean()) if n else float("nan"),
            "win_rate": float((pnl > 0).mean()) if n else float("nan"),
            "sharpe": sharpe(daily), "sortino": sortino(daily), "max_drawdown_usd": dd_usd}


def evaluate_holdout(p: np.ndarray, win: np.ndarray, pnl: np.ndarray, exit_day: np.ndarray, threshold: float,
                     trial_sharpes: list[float], n_trials: int | None = None) -> tuple[dict, pd.DataFrame]:
    """Metrics of selected vs all holdout candidates, and their daily P&L side by side."""
    if len(p) == 0:
        raise ValueError("the holdout holds no candidate trades")
    days = pd.bdate_range(exit_day.min(), exit_day.max())
    selected = p >= threshold
    everything = np.ones(len(p), dtype=bool)
    daily_sel = daily_series(pnl, exit_day, selected, days)
    daily_all = daily_series(pnl, exit_day, everything, days)
    dsr, sr0 = deflated_sharpe(daily_sel.to_numpy(), trial_sharpes, n_trials)
    both_classes = len(np.unique(win)) == 2
    metrics = {
        "threshold": float(threshold),
        "selected": _summary(daily_sel, int(selected.sum()), pnl[selected]),
        "all": _summary(daily_all, len(p), pnl),
        "auc": float(roc_auc_score(win, p)) if both_classes else float("nan"),
        "brier": float(brier_score_loss(win, p)),
        "precision": float(win[selected].mean()) if selected.any() else float("nan"),
        "base_rate": float(win.mean()),
        "selection_rate": float(selected.mean()),
        "deflated_sharpe": dsr,
        "sharpe_noise_benchmark": sr0,
        "edge_significant": bool(dsr == dsr and dsr >= SIGNIFICANCE),
        "holdout_days": int(len(days)),
    }
    curves = pd.DataFrame({"selected": daily_sel.cumsum(), "all": daily_all.cumsum()})
    return metrics, curves
