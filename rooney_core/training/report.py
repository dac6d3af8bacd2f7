"""The training report: out-of-sample performance, feature importance (impurity and
permutation), optimisation history and parameter importance, calibration, and the holdout
equity of selected vs all candidates. Plots are PNG bytes (for Dagster metadata); the
whole report is also one self-contained HTML file saved beside the bundle."""

from __future__ import annotations

import base64
import html

import numpy as np
import optuna
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance

from rooney_core.reports import _png, plt
from rooney_core.training.train import TrainingResult


def importance_table(result: TrainingResult, seed: int = 0) -> pd.DataFrame:
    x = result.holdout[result.feature_names].to_numpy(dtype=float)
    y = result.holdout["win"].to_numpy(dtype=bool)
    perm = permutation_importance(result.estimator, x, y, scoring="roc_auc", n_repeats=5, random_state=seed,
                                  n_jobs=1) if len(np.unique(y)) == 2 else None
    table = pd.DataFrame({"impurity": result.estimator.feature_importances_,
                          "permutation_auc_drop": perm.importances_mean if perm is not None else np.nan},
                         index=pd.Index(result.feature_names, name="feature"))
    return table.sort_values("impurity", ascending=False)


def param_importance(study: optuna.Study) -> pd.Series:
    try:
        return pd.Series(optuna.importance.get_param_importances(study), name="importance")
    except Exception:  # noqa: BLE001 - too few completed trials or constant objective
        return pd.Series(dtype=float, name="importance")


def plot_importance(table: pd.DataFrame) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(11, max(3, 0.28 * len(table))), sharey=True)
    t = table.iloc[::-1]
    axes[0].barh(t.index, t["impurity"], color="tab:blue")
    axes[0].set_title("impurity importance")
    axes[1].barh(t.index, t["permutation_auc_drop"], color="tab:orange")
    axes[1].set_title("permutation importance (holdout AUC drop)")
    return _png(fig)


def plot_history(study: optuna.Study, params: pd.Series) -> bytes:
    trials = [t for t in study.trials if t.value is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    values = [t.value for t in trials]
    axes[0].scatter([t.number for t in trials], values, s=12, label="trial")
    axes[0].plot([t.number for t in trials], np.maximum.accumulate(values) if values else [], color="tab:red",
                 label="best so far")
    axes[0].set_title("optimisation history (mean fold Sharpe)")
    axes[0].set_xlabel("trial")
    axes[0].legend(fontsize=8)
    if len(params):
        axes[1].barh(params.index[::-1], params.to_numpy()[::-1], color="tab:green")
    axes[1].set_title("parameter importance")
    return _png(fig)


def plot_calibration(result: TrainingResult) -> bytes:
    y = result.holdout["win"].to_numpy(dtype=bool)
    p = result.holdout["probability"].to_numpy()
    frac, mean_p = calibration_curve(y, p, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
    ax.plot(mean_p, frac, marker="o")
    ax.axvline(result.threshold, color="tab:red", lw=0.8, label=f"threshold {result.threshold:.2f}")
    ax.set_xlabel("predicted P(win)")
    ax.set_ylabel("observed win rate")
    ax.set_title("calibration on the holdout")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_holdout_equity(result: TrainingResult) -> bytes:
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(result.curves.index, result.curves["selected"], label="veto-on backtest (this model)", color="tab:blue")
    ax.plot(result.curves.index, result.curves["all"], label="veto-off backtest (unfiltered)", color="grey")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title(f"{result.symbol} holdout backtests: cumulative net P&L $ (marked to market)")
    ax.legend(fontsize=8)
    return _png(fig)


def build_report(result: TrainingResult, version: str, gates=None, plots: dict[str, bytes] | None = None
                 ) -> tuple[dict[str, bytes], dict[str, pd.DataFrame], str]:
    """(plots by name, tables by name, HTML text); ``gates`` (a GateReport) adds its table;
    ``plots`` made by an earlier call are reused (they do not depend on the version)."""
    importance = importance_table(result)
    if plots is None:
        plots = {
            "holdout_equity": plot_holdout_equity(result),
            "feature_importance": plot_importance(importance),
            "optimisation": plot_history(result.study, param_importance(result.study)),
            "calibration": plot_calibration(result),
        }
    m = result.metrics
    perf = pd.DataFrame({"veto-on backtest": m["selected"], "veto-off backtest": m["all"]})
    scores = pd.Series({k: m[k] for k in ("holdout_start", "threshold", "psr_vs_zero", "psr_vs_unfiltered",
                                          "cv_sharpe", "deflated_sharpe", "sharpe_noise_benchmark", "trials_total",
                                          "edge_significant", "auc", "brier", "precision", "base_rate",
                                          "selection_rate", "holdout_signals", "veto_rate", "cv_objective",
                                          "trials_completed", "trials_pruned", "train_trades", "embargo_days",
                                          "threshold_slice_sharpe", "sample_weight")}, name="value").to_frame()
    tables = {**({"gates": gates.table()} if gates is not None else {}),
              "holdout_performance": perf, "scores": scores, "feature_importance": importance,
              "best_params": pd.Series(result.best_params, name="value").astype(str).to_frame()}
    verdict = ("the cross-validated Sharpe beats the best of as many tries of noise"
               if m["edge_significant"] else "NO significant edge after deflating for the number of trials")
    parts = [f"<h1>{html.escape(version)}: {html.escape(result.symbol)} veto model</h1>",
             f"<p><b>Verdict:</b> {verdict} (deflated CV Sharpe {m['deflated_sharpe']:.3f} over "
             f"{m['trials_total']} trials). Holdout from {html.escape(str(m['holdout_start']))}: the veto-on "
             f"backtest through the production strategy has Sharpe {m['selected']['sharpe']:.2f} on "
             f"{m['selected']['trades']} trades (veto off: {m['all']['sharpe']:.2f}); PSR against 0 "
             f"{m['psr_vs_zero']:.3f}, against the unfiltered strategy {m['psr_vs_unfiltered']:.3f}.</p>"]
    if gates is not None:
        parts.append(f"<p><b>Gates:</b> {html.escape(gates.summary())}</p>")
    for name, t in tables.items():
        parts.append(f"<h2>{name.replace('_', ' ')}</h2>" + t.to_html(float_format=lambda v: f"{v:.4g}"))
    for name, png in plots.items():
        b64 = base64.b64encode(png).decode()
        parts.append(f"<h2>{name.replace('_', ' ')}</h2><img src='data:image/png;base64,{b64}'/>")
    doc = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(version) +
           "</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
           "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>"
           + "\n".join(parts) + "</body></html>")
    return plots, tables, doc
