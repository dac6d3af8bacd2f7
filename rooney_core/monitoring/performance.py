"""Live results against what the model's holdout promised: accuracy, calibration, P&L.

Outcomes come from the prediction log (``signals.signal_rows``): a taken signal's outcome is
its live trade (``pnl_net`` once it exits). A signal the model vetoed has no live trade, so
its outcome is the counterfactual one (``veto_value.counterfactual_trades``: the signal
taken alone with the same rules and costs, the way training labelled it); without those,
only taken signals are scored, and accuracy is then their win rate (stated in the output).

What the bundle promised comes from ``VetoBundle.metrics`` (``training/evaluation.py``):
``precision``, ``brier``, ``auc``, ``base_rate``, ``selection_rate`` of the labelled holdout
signals, and the veto-on holdout backtest's ``selected`` figures (``sharpe``, ``avg_trade``,
``win_rate``, ...). Accuracy and the holdout's reliability bins are not recorded there; they
are computed from the version's stored ``holdout.parquet`` when it is given, and otherwise
reported as "not recorded", never made up.

``performance_drop`` is the retrain trigger: the live Sharpe, P&L per trade and win rate (and
accuracy when outcomes allow) over a window against the backtest's, down by at least
``max_drop`` (10 %) of the expectation, judged only from ``min_trades`` exits on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from rooney_core.backtest.daily import realised_by_day, trading_days
from rooney_core.backtest.metrics import TRADING_DAYS, sharpe
from rooney_core.monitoring.config import PerformanceLimits
from rooney_core.sessions import SessionCalendar

NOT_RECORDED = "not recorded in the bundle's metrics"

# figure -> path in VetoBundle.metrics of the holdout figure it is compared with
METRIC_PATHS: dict[str, tuple[str, ...] | None] = {
    "accuracy": None,  # never recorded by training: from holdout.parquet, or "not recorded"
    "precision": ("precision",),
    "brier": ("brier",),
    "auc": ("auc",),
    "base_rate": ("base_rate",),
    "selection_rate": ("selection_rate",),
}
LOWER_IS_BETTER = frozenset({"brier"})


def _num(v: object) -> float:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return x if math.isfinite(x) else float("nan")


def metric(metrics: Mapping, path: tuple[str, ...]) -> float | None:
    """The value at ``path`` in a bundle's metrics; None if it is not recorded (or null)."""
    node: object = metrics
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    x = _num(node)
    return None if x != x else x


# --- outcomes ------------------------------------------------------------------------------


def outcomes(rows: pd.DataFrame, counterfactual: pd.DataFrame | None = None) -> pd.DataFrame:
    """Signal rows with ``win`` (1.0, 0.0 or NaN while unknown) and where it comes from
    (``win_source``: "live" for a taken trade that exited, "counterfactual" for a signal
    not taken, scored by its counterfactual trade; None while unknown).

    ``counterfactual`` holds ``instrument`` (optional for one instrument), ``signal_time``
    and ``pnl_net`` per signal (``veto_value.counterfactual_trades``)."""
    out = rows.copy()
    live = out["resolved"].to_numpy(dtype=bool)
    win = np.where(live, (out["pnl_net"] > 0).astype(float), np.nan)
    source = np.where(live, "live", None).astype(object)
    cf_pnl = np.full(len(out), np.nan)
    if counterfactual is not None and len(counterfactual) and len(out):
        cf = counterfactual.dropna(subset=["pnl_net"])
        keys = ["instrument", "signal_time"] if "instrument" in cf else ["signal_time"]
        cf = cf.drop_duplicates(keys, keep="last").rename(columns={"signal_time": "bar_time",
                                                                   "pnl_net": "cf_pnl"})
        cf["bar_time"] = pd.to_datetime(cf["bar_time"]).astype("datetime64[ns]")
        on = ["instrument", "bar_time"] if "instrument" in cf else ["bar_time"]
        cf_pnl = out[on].merge(cf[[*on, "cf_pnl"]], on=on, how="left")["cf_pnl"].to_numpy(dtype=float)
        use = ~live & ~out["taken"].to_numpy(dtype=bool) & ~np.isnan(cf_pnl)
        win = np.where(use, (cf_pnl > 0).astype(float), win)
        source = np.where(use, "counterfactual", source)
    out["counterfactual_pnl"] = cf_pnl
    out["win"] = win
    out["win_source"] = pd.Series(source, index=out.index, dtype=object)  # None, not NaN, while unknown
    return out


# --- classification figures and calibration ------------------------------------------------


def classification(p: np.ndarray, win: np.ndarray, threshold: np.ndarray | float) -> dict[str, float]:
    """Accuracy (selected == win), precision (win rate of the selected), Brier score, AUC,
    base rate and selection rate of probabilities ``p`` against outcomes ``win`` (0/1);
    rows where either is NaN are left out. NaN where a figure is undefined."""
    p, win = np.asarray(p, dtype=float), np.asarray(win, dtype=float)
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), p.shape)
    ok = ~np.isnan(p) & ~np.isnan(win) & ~np.isnan(thr)
    p, win, thr = p[ok], win[ok].astype(bool), thr[ok]
    n = len(p)
    if n == 0:
        return {"n": 0, "accuracy": float("nan"), "precision": float("nan"), "brier": float("nan"),
                "auc": float("nan"), "base_rate": float("nan"), "selection_rate": float("nan")}
    sel = p >= thr
    return {
        "n": int(n),
        "accuracy": float(np.mean(sel == win)),
        "precision": float(win[sel].mean()) if sel.any() else float("nan"),
        "brier": float(np.mean((p - win) ** 2)),
        "auc": float(roc_auc_score(win, p)) if 0 < win.sum() < n else float("nan"),
        "base_rate": float(win.mean()),
        "selection_rate": float(sel.mean()),
    }


def reliability(p: np.ndarray, win: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability bins: equal-width probability bins on [0, 1] with the mean predicted
    probability, the observed win rate and the count of each (empty bins: count 0, NaN)."""
    p, win = np.asarray(p, dtype=float), np.asarray(win, dtype=float)
    ok = ~np.isnan(p) & ~np.isnan(win)
    p, win = p[ok], win[ok]
    idx = np.clip((p * bins).astype(int), 0, bins - 1)  # p == 1.0 goes in the last bin
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=bins) / count
        observed = np.bincount(idx, weights=win, minlength=bins) / count
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count.astype(int),
                         "mean_predicted": mean_p, "observed_win_rate": observed})


def calibration_error(table: pd.DataFrame) -> float:
    """Expected calibration error of a reliability table: the count-weighted mean gap
    between predicted and observed (NaN without rows)."""
    n = table["count"].sum()
    if n == 0:
        return float("nan")
    gap = (table["mean_predicted"] - table["observed_win_rate"]).abs().fillna(0.0)
    return float((gap * table["count"]).sum() / n)


def rolling_figures(scored: pd.DataFrame, window: int) -> pd.DataFrame:
    """Rolling accuracy, precision and Brier score over the last ``window`` resolved signals
    (``outcomes`` rows with a probability and a known ``win``), per instrument and model
    version, at each signal's bar time. Starts once half a window is there."""
    cols = ["instrument", "model_version", "bar_time", "n", "accuracy", "precision", "brier"]
    ok = scored[scored["probability"].notna() & scored["win"].notna() & scored["threshold"].notna()]
    parts = []
    for (sym, ver), g in ok.groupby(["instrument", "model_version"], sort=True, dropna=False):
        g = g.sort_values("bar_time", kind="stable")
        p, w = g["probability"].to_numpy(float), g["win"].to_numpy(float)
        sel = (p >= g["threshold"].to_numpy(float)).astype(float)
        frame = pd.DataFrame({"hit": (sel == w).astype(float), "sel": sel, "sel_win": sel * w,
                              "sq": (p - w) ** 2})
        r = frame.rolling(window, min_periods=max(1, window // 2)).sum()
        n = frame["hit"].rolling(window, min_periods=max(1, window // 2)).count()
        with np.errstate(invalid="ignore", divide="ignore"):
            parts.append(pd.DataFrame({
                "instrument": sym, "model_version": ver, "bar_time": g["bar_time"].to_numpy(), "n": n.to_numpy(),
                "accuracy": (r["hit"] / n).to_numpy(), "precision": (r["sel_win"] / r["sel"]).to_numpy(),
                "brier": (r["sq"] / n).to_numpy()}))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True).dropna(subset=["n"])[cols].reset_index(drop=True)


# --- the holdout's promise -----------------------------------------------------------------


def promised_figures(metrics: Mapping, holdout: pd.DataFrame | None = None,
                     threshold: float | None = None) -> dict[str, tuple[float | None, str]]:
    """figure -> (holdout value, where it comes from). From the bundle's metrics when they
    record it; accuracy from ``holdout`` (the version's holdout.parquet: probability, win)
    when given; otherwise (None, "not recorded ...")."""
    out: dict[str, tuple[float | None, str]] = {}
    for name, path in METRIC_PATHS.items():
        v = metric(metrics, path) if path else None
        out[name] = (v, "bundle metrics") if v is not None else (None, NOT_RECORDED)
    thr = threshold if threshold is not None else metric(metrics, ("threshold",))
    if holdout is not None and len(holdout) and thr is not None and {"probability", "win"} <= set(holdout):
        fig = classification(holdout["probability"].to_numpy(float), holdout["win"].to_numpy(float), thr)
        for name, (v, _) in list(out.items()):
            if v is None and fig[name] == fig[name]:
                out[name] = (fig[name], "holdout.parquet")
    return out


def compare(live: Mapping[str, float], promised: Mapping[str, tuple[float | None, str]]) -> pd.DataFrame:
    """One row per figure: live, promised, its source, the relative change (live against
    promised, signed so that negative is worse) and a note when there is nothing to compare."""
    rows = []
    for name, (want, source) in promised.items():
        got = _num(live.get(name))
        change, note = float("nan"), ""
        if want is None:
            note = source
        elif got != got:
            note = "no live value yet"
        elif want == 0:
            note = "promised 0: no relative change"
        else:
            change = (got - want) / abs(want)
            if name in LOWER_IS_BETTER:
                change = -change
        rows.append({"figure": name, "live": got, "promised": want, "source": source, "change": change,
                     "note": note})
    return pd.DataFrame(rows, columns=["figure", "live", "promised", "source", "change", "note"])


@dataclass
class ModelPerformance:
    """One instrument and model version's live classification figures against its holdout."""

    instrument: str
    model_version: str | None
    signals: int  # logged signals the model scored
    scored: int  # with a known outcome (live or counterfactual)
    live: dict[str, float]
    comparison: pd.DataFrame
    reliability: pd.DataFrame
    holdout_reliability: pd.DataFrame | None
    calibration_error: float
    rolling: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def model_performance(scored: pd.DataFrame, metrics: Mapping[str, Mapping],
                      holdouts: Mapping[str, pd.DataFrame] | None = None,
                      limits: PerformanceLimits | None = None) -> list[ModelPerformance]:
    """Per instrument and model version of ``outcomes`` rows: live accuracy, precision,
    Brier, AUC, calibration and rolling figures, compared with the version's holdout.
    ``metrics``: version -> its bundle's metrics; ``holdouts``: version -> holdout.parquet."""
    lim = limits or PerformanceLimits()
    out = []
    with_p = scored[scored["probability"].notna()]
    for (sym, ver), g in with_p.groupby(["instrument", "model_version"], sort=True, dropna=False):
        ver = None if ver != ver else ver
        notes = []
        m = metrics.get(ver) if ver is not None else None
        if m is None:
            notes.append(f"no bundle metrics for {ver}: nothing to compare with")
            m = {}
        hold = (holdouts or {}).get(ver) if ver is not None else None
        live = classification(g["probability"].to_numpy(float), g["win"].to_numpy(float),
                              g["threshold"].to_numpy(float))
        sources = set(g["win_source"].dropna())
        if "counterfactual" not in sources:
            notes.append("outcomes of taken signals only (no counterfactual outcomes given): accuracy is their "
                         "win rate, base and selection rates are those of taken trades")
        table = reliability(g["probability"].to_numpy(float), g["win"].to_numpy(float), lim.calibration_bins)
        hold_table = None
        if hold is not None and {"probability", "win"} <= set(hold):
            hold_table = reliability(hold["probability"].to_numpy(float), hold["win"].to_numpy(float),
                                     lim.calibration_bins)
        else:
            notes.append("holdout reliability bins: " + NOT_RECORDED + " (holdout.parquet not given)")
        thr = _num(g["threshold"].iloc[-1])
        out.append(ModelPerformance(
            instrument=sym, model_version=ver, signals=len(g), scored=int(g["win"].notna().sum()), live=live,
            comparison=compare(live, promised_figures(m, hold, thr if thr == thr else None)),
            reliability=table, holdout_reliability=hold_table, calibration_error=calibration_error(table),
            rolling=rolling_figures(g, lim.rolling_signals), notes=notes))
    return out


# --- the retrain trigger -------------------------------------------------------------------


@dataclass
class PerformanceDrop:
    """Live figures over a window against the backtest's expectation (``figures``: figure,
    live, expected, change, down) and whether any is down by ``max_drop`` or more."""

    window_start: pd.Timestamp
    window_end: pd.Timestamp
    trades: int
    figures: pd.DataFrame
    triggered: bool
    reasons: list[str]
    verdict: str


def _window(window: int | str | pd.Timedelta) -> pd.Timedelta:
    return pd.Timedelta(days=window) if isinstance(window, int | np.integer) else pd.Timedelta(window)


def live_daily_pnl(trades: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                   calendar: SessionCalendar | None = None) -> pd.Series:
    """Net P&L per trading day of the exit (zero on trading days without one), the days
    after ``start``'s date up to ``end``'s (``daily.realised_by_day``). Not marked to market,
    unlike the backtest's Sharpe: trades last hours, within a session.

    With the instrument's ``calendar``, the days are its trading days (exchange holidays
    excluded) and an exit counts on its trading date. Without one (a caller with no
    instrument at hand), every weekday counts as a trading day and an exit counts on its
    calendar date: the fallback, logged by ``daily.trading_days``."""
    days = trading_days(start.normalize() + pd.Timedelta(days=1), end.normalize(), calendar)
    exits = pd.to_datetime(trades["exit_time"]).to_numpy(dtype="datetime64[ns]") if len(trades) else \
        np.empty(0, dtype="datetime64[ns]")
    exit_day = calendar.trading_date(exits) if calendar is not None else exits.astype("datetime64[D]")
    pnl = trades["pnl_net"].to_numpy(dtype=float) if len(trades) else np.empty(0)
    return realised_by_day(pnl, exit_day, days)


def sharpe_standard_error(sr_annual: float, days: int) -> float:
    """Standard error of an annualised Sharpe ratio measured over ``days`` daily returns
    (Lo 2002: sqrt((1 + SR_d^2 / 2) / n) per day)."""
    if days < 2 or sr_annual != sr_annual:
        return float("nan")
    sr_d = sr_annual / math.sqrt(TRADING_DAYS)
    return math.sqrt((1 + sr_d * sr_d / 2) / days) * math.sqrt(TRADING_DAYS)


def _rate_se(p: float | None, n: int | None) -> float:
    if p is None or p != p or not n:
        return float("nan")
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def standard_errors(live: Mapping[str, float], expected: Mapping[str, float | None], daily: pd.Series,
                    pnl: np.ndarray, accuracy_n: int, metrics: Mapping,
                    holdout: pd.DataFrame | None) -> dict[str, tuple[float, float]]:
    """Per figure, (standard error of the live figure, of the expectation). The holdout's
    sample sizes come from the bundle's metrics (``selected.days`` and ``selected.trades``)
    and holdout.parquet; an expectation whose sample size is not recorded counts as exact
    (0). The holdout's trade-P&L spread is not recorded: the live trades' stands in."""
    days = metric(metrics, ("selected", "days"))
    trades = metric(metrics, ("selected", "trades"))
    sd = float(pnl.std(ddof=1)) if len(pnl) >= 2 else float("nan")
    n_hold = int(holdout["probability"].notna().sum()) if holdout is not None and "probability" in holdout else None
    out = {
        "sharpe": (sharpe_standard_error(live["sharpe"], len(daily)), sharpe_standard_error(expected.get("sharpe") or float("nan"),
                                                                      int(days or 0))),
        "pnl_per_trade": (sd / math.sqrt(len(pnl)) if len(pnl) >= 2 else float("nan"),
                          sd / math.sqrt(trades) if trades else 0.0),
        "win_rate": (_rate_se(live["win_rate"], len(pnl)), _rate_se(expected.get("win_rate"), int(trades or 0))),
    }
    if "accuracy" in live:
        out["accuracy"] = (_rate_se(live["accuracy"], accuracy_n), _rate_se(expected.get("accuracy"), n_hold))
    return {k: (a, 0.0 if b != b else b) for k, (a, b) in out.items()}


def performance_drop(scored: pd.DataFrame, metrics: Mapping, window: int | str | pd.Timedelta = 90, *,
                     end: pd.Timestamp | str | None = None, max_drop: float = 0.10, min_trades: int = 20,
                     holdout: pd.DataFrame | None = None, confidence: float = 0.99,
                     calendar: SessionCalendar | None = None) -> PerformanceDrop:
    """The retrain trigger for one instrument's model: over the ``window`` (days, or a
    pandas offset such as "90D") ending at ``end`` (default: the last exit), the live Sharpe,
    P&L per trade and win rate of the taken trades against the veto-on holdout backtest
    (``metrics["selected"]``), and accuracy against the holdout's (when outcomes and a
    holdout are there). Triggered when, with at least ``min_trades`` exits, any of them is
    down by ``max_drop`` of the expectation or more, and, with ``confidence`` > 0, significantly
    so: live - (1 - max_drop) * expected is below zero at that one-sided confidence, counting
    the standard errors of both (``standard_errors``). A window of a market that has not
    changed is then not read as a drop: 90 days of trades give a Sharpe ratio with a standard
    error near 2, and a half-year holdout's Sharpe is itself uncertain by about 1.4.
    ``scored``: ``outcomes`` rows; ``calendar``: the instrument's session calendar, whose
    trading days the live Sharpe is taken over (without it every weekday counts, holidays
    included: ``live_daily_pnl``)."""
    exits = scored[scored["resolved"]].copy()
    end_ts = pd.Timestamp(end) if end is not None else (exits["exit_time"].max() if len(exits)
                                                         else scored["bar_time"].max())
    if end_ts is None or end_ts != end_ts:
        end_ts = pd.Timestamp.now().floor("s")
    start_ts = end_ts - _window(window)
    trades = exits[(exits["exit_time"] > start_ts) & (exits["exit_time"] <= end_ts)]
    pnl = trades["pnl_net"].to_numpy(float)
    daily = live_daily_pnl(trades, start_ts, end_ts, calendar)
    live = {"sharpe": sharpe(daily) if len(trades) else float("nan"),
            "pnl_per_trade": float(pnl.mean()) if len(pnl) else float("nan"),
            "win_rate": float((pnl > 0).mean()) if len(pnl) else float("nan")}
    expected = {"sharpe": (metric(metrics, ("selected", "sharpe")), "holdout backtest (selected.sharpe)"),
                "pnl_per_trade": (metric(metrics, ("selected", "avg_trade")), "holdout backtest (selected.avg_trade)"),
                "win_rate": (metric(metrics, ("selected", "win_rate")), "holdout backtest (selected.win_rate)")}
    in_window = scored[(scored["bar_time"] > start_ts) & (scored["bar_time"] <= end_ts)]
    acc_n = 0
    if in_window["win_source"].eq("counterfactual").any():
        live["accuracy"] = classification(in_window["probability"].to_numpy(float),
                                          in_window["win"].to_numpy(float),
                                          in_window["threshold"].to_numpy(float))["accuracy"]
        expected["accuracy"] = promised_figures(metrics, holdout)["accuracy"]
        acc_n = int((in_window["win"].notna() & in_window["probability"].notna()).sum())
    z = NormalDist().inv_cdf(confidence) if confidence > 0 else 0.0
    ses = standard_errors(live, {k: v[0] for k, v in expected.items()}, daily, pnl, acc_n, metrics, holdout)
    rows, reasons = [], []
    for name, (want, source) in expected.items():
        got = live[name]
        se_live, se_exp = ses.get(name, (float("nan"), 0.0))
        # the live figure's upper bound, widened by the expectation's own uncertainty
        bound = got + z * math.sqrt(se_live**2 + ((1 - max_drop) * se_exp) ** 2) if confidence > 0 else float("nan")
        change, note = float("nan"), ""
        if want is None:
            note = source if source == NOT_RECORDED else f"{source}: {NOT_RECORDED}"
        elif want <= 0:
            note = f"expectation {want:.4g} is not positive: no relative drop"
        elif got == got:
            change = (got - want) / want
        down = bool(change == change and change <= -max_drop)
        if down and confidence > 0 and want is not None and not (bound == bound and bound < (1 - max_drop) * want):
            down = False
            note = (f"down {-change:.0%} but within noise: the {confidence:.0%} upper bound {bound:.4g} is not below "
                    f"{(1 - max_drop) * want:.4g}")
        rows.append({"figure": name, "live": got, "upper_bound": bound, "expected": want, "source": source,
                     "change": change, "down": down, "note": note})
        if down:
            reasons.append(f"{name} {got:.4g} vs expected {want:.4g} ({change:+.0%}, limit -{max_drop:.0%}"
                           + (f"; {confidence:.0%} upper bound {bound:.4g})" if confidence > 0 else ")"))
    figures = pd.DataFrame(rows, columns=["figure", "live", "upper_bound", "expected", "source", "change", "down",
                                          "note"])
    enough = len(trades) >= min_trades
    triggered = enough and bool(reasons)
    if not enough:
        verdict = f"no verdict: {len(trades)} exits in the window, fewer than {min_trades}"
    elif triggered:
        verdict = "retrain: " + "; ".join(reasons)
    else:
        verdict = f"holding up: no figure down {max_drop:.0%} or more over {len(trades)} exits"
    return PerformanceDrop(start_ts, end_ts, int(len(trades)), figures, triggered, reasons if enough else [],
                           verdict)
