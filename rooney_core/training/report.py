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

from rooney_core.formats import count, metric, money, number, ratio
from rooney_core.model.bundle import config_hash
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
    # the parameter names need room of their own: a wider right panel, constrained layout
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained", gridspec_kw={"width_ratios": [3, 2]})
    # only full-forest values compete for the model; the others were scored on small forests
    full = [t for t in trials if t.user_attrs.get("full_forest", True)]
    small = [t for t in trials if not t.user_attrs.get("full_forest", True)]
    axes[0].scatter([t.number for t in full], [t.value for t in full], s=14, label="trial (full forest)")
    if small:
        axes[0].scatter([t.number for t in small], [t.value for t in small], s=10, color="lightgrey",
                        label="trial (small forest, not grown)")
    best = np.maximum.accumulate([t.value for t in full]) if full else []
    axes[0].step([t.number for t in full], best, where="post", color="tab:red", label="best full-forest so far")
    axes[0].set_title("optimisation history (mean fold Sharpe)")
    axes[0].set_xlabel("trial")
    axes[0].legend(fontsize=8)
    if len(params):
        axes[1].barh(params.index[::-1], params.to_numpy()[::-1], color="tab:green")
    axes[1].set_title("parameter importance")
    return _png(fig)


def calibration_points(result: TrainingResult) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted P(win), observed win rate) of the holdout signals in 10 quantile bins."""
    y = result.holdout["win"].to_numpy(dtype=bool)
    p = result.holdout["probability"].to_numpy()
    if len(np.unique(y)) < 2:
        return np.empty(0), np.empty(0)
    frac, mean_p = calibration_curve(y, p, n_bins=10, strategy="quantile")
    return mean_p, frac


def plot_calibration(result: TrainingResult) -> bytes:
    mean_p, frac = calibration_points(result)
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


HOLDOUT_ROWS = (("trades", "trades"), ("net_pnl", "net P&L"), ("avg_trade", "average trade"),
                ("win_rate", "win rate"), ("sharpe", "Sharpe"), ("sortino", "Sortino"),
                ("max_drawdown_usd", "max drawdown"), ("max_drawdown_pct", "max drawdown %"), ("days", "days"))
CSS = ("body{font-family:sans-serif;max-width:1100px;margin:auto;line-height:1.4}"
       "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px}"
       "td.num{text-align:right}.pass{color:#17692b}.fail{color:#b00020;font-weight:bold}img{max-width:100%}")


def _rows(pairs, num: bool = True) -> str:
    cls = " class='num'" if num else ""
    return "".join(f"<tr><th>{html.escape(str(k))}</th><td{cls}>{html.escape(str(v))}</td></tr>" for k, v in pairs)


def build_report(result: TrainingResult, version: str, gates=None, plots: dict[str, bytes] | None = None,
                 bundle=None) -> tuple[dict[str, bytes], dict[str, pd.DataFrame], str]:
    """(plots by name, tables by name, HTML text). The HTML reads as a model card: the
    version, the verdict, the holdout veto-on vs veto-off backtests, the gates (``gates``, a
    GateReport), the plots, the parameters and the data and code lineage (``bundle``).
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
    sig = ("The cross-validated Sharpe beats the best of as many tries of noise" if m["edge_significant"]
           else "NO significant edge after deflating for the number of trials")
    gate_word = ("not validated" if gates is None else
                 "<span class='pass'>every gate passed</span>" if gates.passed else
                 f"<span class='fail'>FAILED: {html.escape(', '.join(gates.failed))}</span>")
    sel, off = m["selected"], m["all"]
    parts = [
        f"<h1>{html.escape(version)}: {html.escape(result.symbol)} veto model</h1>",
        f"<p><b>Verdict:</b> {gate_word}. {sig} (deflated CV Sharpe {ratio(m['deflated_sharpe'], 3)} over "
        f"{count(m['trials_total'])} trials). On the holdout from {html.escape(str(m['holdout_start']))} the veto-on "
        f"backtest through the production strategy has Sharpe {ratio(sel['sharpe'])} on {count(sel['trades'])} "
        f"trades and {money(sel['net_pnl'])}; with the veto off, Sharpe {ratio(off['sharpe'])} on "
        f"{count(off['trades'])} trades and {money(off['net_pnl'])}. PSR against 0 {ratio(m['psr_vs_zero'], 3)}, "
        f"against the unfiltered strategy {ratio(m['psr_vs_unfiltered'], 3)}.</p>",
        "<h2>Holdout: veto on vs veto off</h2><table><tr><th></th><th>veto on (this model)</th>"
        "<th>veto off (unfiltered)</th></tr>"
        + "".join(f"<tr><th>{label}</th><td class='num'>{metric(k, sel.get(k))}</td>"
                  f"<td class='num'>{metric(k, off.get(k))}</td></tr>" for k, label in HOLDOUT_ROWS)
        + "</table>",
    ]
    if gates is not None:
        parts.append("<h2>Gates</h2><table><tr><th>gate</th><th>result</th><th>detail</th></tr>" + "".join(
            f"<tr><th>{html.escape(g.name)}</th><td class='{'pass' if g.passed else 'fail'}'>"
            f"{'passed' if g.passed else 'FAILED'}</td><td>{html.escape(g.detail)}</td></tr>" for g in gates.gates)
            + "</table>")
    titles = {"holdout_equity": "Holdout equity", "calibration": "Calibration on the holdout",
              "feature_importance": "Feature importance", "optimisation": "Optimisation"}
    parts.append("<h2>Plots</h2>")
    for name, png in plots.items():
        b64 = base64.b64encode(png).decode()
        parts.append(f"<h3>{titles.get(name, name.replace('_', ' '))}</h3><img src='data:image/png;base64,{b64}'/>")
    parts.append("<h2>Parameters</h2><table>" + _rows(
        [("threshold", ratio(result.threshold)), *result.best_params.items(),
         ("features", len(result.feature_names)), ("trials (completed / pruned)",
                                                   f"{m['trials_completed']} / {m['trials_pruned']}"),
         ("chosen trial", m.get("chosen_trial", "-")), ("CV objective", ratio(m["cv_objective"], 3)),
         ("training signals", count(m["train_trades"])), ("embargo days", m["embargo_days"])]) + "</table>")
    lineage = [("data hash", result.data_hash), ("feature schema hash", result.schema_hash),
               ("config hash", config_hash(result.config))]
    if bundle is not None:
        lineage += [("content hash", bundle.content_hash()), ("feature registry", bundle.registry_version),
                    ("code version", bundle.code_version), ("trained at", bundle.trained_at),
                    *((f"library {k}", v) for k, v in sorted(bundle.library_versions.items()))]
    parts.append("<h2>Data and code lineage</h2><table>" + _rows(lineage, num=False) + "</table>")
    parts.append("<h2>All scores</h2>" + scores.to_html(float_format=number))
    parts.append("<h2>Features</h2>" + importance.to_html(float_format=number))
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(version)}: "
           f"{html.escape(result.symbol)} veto model</title><style>{CSS}</style></head><body>"
           + "\n".join(parts) + "</body></html>")
    return plots, tables, doc
