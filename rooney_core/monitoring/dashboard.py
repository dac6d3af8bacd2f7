"""The desk's monitoring dashboard as data: what each panel of `rooney dashboard` shows for
one instrument, computed from the files the live engine, the model store, the lake and the
alert sink write.

No web framework here: every function returns frames, matplotlib figures (``Panel``) or
plain values, so the panels are tested without a browser and ``rooney_core`` imports without
Streamlit. ``rooney_pipeline/dashboard_app.py`` (the Streamlit script `rooney dashboard` runs)
only lays them out and caches them.

Sources (``DashboardPaths``):

* the live engine's state directory (``rooney live --state-dir``): ``state.json`` (through
  ``status_of``), ``<SYM>_trades.csv`` and the prediction log ``predictions/``, read
  through DuckDB (``live.predictions.predictions``);
* the model store: the production and paper-stage versions, each version's metrics, its
  scored holdout and training distribution (sha256-checked), and ``health.json``, the
  model-health kill switch;
* the lake: hourly bars and features, for the backtest of the bars the engine decided and
  for the counterfactual trades of the signals the model vetoed;
* the alert journal (``alerts.jsonl``).

The panels: live vs backtest equity (``equity_panel``), rolling accuracy and calibration
(``accuracy_panel``), drift per feature (``drift_panel``), veto value by month
(``veto_panel``), the kill switch and model versions (``health_panel``) and recent alerts
(``alerts_panel``). A panel whose source is missing or too thin says why in ``Panel.empty``;
none raises for missing data.

Money is written one way everywhere (``portfolio.report.format_money``); bar times are the
exchange's local time, as the prediction log writes them; alert and audit times are UTC.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from rooney_core.config import Instrument, RooneyConfig
from rooney_core.data.lake import Lake
from rooney_core.errors import RooneyError
from rooney_core.live.engine import STATE_FILE, status_of
from rooney_core.live.predictions import log_location, predictions
from rooney_core.model import ModelStore, VetoBundle
from rooney_core.model.store import ModelStoreError
from rooney_core.monitoring.alerts import JOURNAL_FILE, recent_alerts
from rooney_core.monitoring.config import MonitoringLimits, load_monitoring_config
from rooney_core.monitoring.drift import DriftThresholds, calibrate_thresholds, feature_drift, session_labels
from rooney_core.monitoring.health import HEALTH_FILE, PAPER, HealthState, HealthStateError, health_root
from rooney_core.monitoring.performance import model_performance, outcomes
from rooney_core.monitoring.reference import load_holdout, load_reference_features
from rooney_core.monitoring.signals import feature_frame, signal_rows
from rooney_core.monitoring.veto_value import CF_COLUMNS, counterfactual_trades, veto_value
from rooney_core.portfolio.report import date_axis, format_money, format_number, format_percent, money_axis

# The same variables (and defaults) as the pipeline's sensors and alert resource read.
LIVE_STATE_DIR_ENV = "ROONEY_LIVE_STATE_DIR"
ALERTS_DIR_ENV = "ROONEY_ALERTS_DIR"
DEFAULT_LIVE_STATE_DIR = "dagster_home/storage/live"
DEFAULT_ALERTS_DIR = "dagster_home/storage/alerts"

TITLES = {
    "equity": "Live (paper) vs backtest equity",
    "accuracy": "Rolling accuracy and calibration",
    "drift": "Feature drift",
    "veto": "Veto value by month",
    "health": "Kill switch and model versions",
    "alerts": "Recent alerts",
}


# --- where the dashboard reads -------------------------------------------------------------


@dataclass(frozen=True)
class DashboardPaths:
    """Every directory the dashboard reads."""

    state_dir: Path  # the live engine's --state-dir
    model_store: Path
    lake_dir: Path
    alerts_dir: Path

    @classmethod
    def resolve(cls, cfg: RooneyConfig, state_dir: str | os.PathLike[str] | None = None,
                alerts_dir: str | os.PathLike[str] | None = None) -> DashboardPaths:
        """The given directories, else $ROONEY_LIVE_STATE_DIR / $ROONEY_ALERTS_DIR, else the
        defaults; the model store and the lake as every command finds them."""
        return cls(
            state_dir=cfg.resolve_path(state_dir or os.environ.get(LIVE_STATE_DIR_ENV) or DEFAULT_LIVE_STATE_DIR),
            model_store=cfg.model_store_dir, lake_dir=cfg.lake_dir,
            alerts_dir=cfg.resolve_path(alerts_dir or os.environ.get(ALERTS_DIR_ENV) or DEFAULT_ALERTS_DIR))

    def as_env(self) -> dict[str, str]:
        """The environment under which ``resolve`` (in the app's process) finds these paths."""
        return {LIVE_STATE_DIR_ENV: str(self.state_dir), "ROONEY_MODEL_STORE": str(self.model_store),
                "ROONEY_LAKE_DIR": str(self.lake_dir), ALERTS_DIR_ENV: str(self.alerts_dir)}

    @property
    def predictions_dir(self) -> Path:
        return self.state_dir / "predictions"

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_dir)

    def fingerprint(self, symbol: str | None = None) -> tuple:
        """(path, mtime, size) of every file the panels read (of ``symbol``'s where files are
        per instrument): it changes whenever the panels would. The heartbeat is left out (it
        moves every few seconds without changing a panel)."""
        files = [self.state_dir / STATE_FILE, self.model_store / "manifest.json", self.model_store / "versions.log",
                 health_root(self.model_store) / HEALTH_FILE, self.alerts_dir / JOURNAL_FILE]
        if symbol is not None:
            files += [self.state_dir / f"{symbol}_trades.csv", self.lake.path("hourly", symbol),
                      self.lake.path("features", symbol)]
        if self.predictions_dir.is_dir():
            files += sorted(self.predictions_dir.glob("*.parquet")) + sorted(self.predictions_dir.glob("*/*.jsonl"))
        out = []
        for p in files:
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)


# --- what one instrument's panels read -----------------------------------------------------


def read_log(paths: DashboardPaths) -> pd.DataFrame:
    """The whole prediction log, one row per signal (empty if the engine never logged)."""
    where = log_location(paths.predictions_dir)  # $ROONEY_PREDICTION_LOG_URL when the log is in PostgreSQL
    if isinstance(where, Path) and not where.is_dir():
        return pd.DataFrame()
    return predictions(where)


def engine_state(state_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``status_of`` plus ``decide_from`` (the first bar the engine decided); None if the
    engine never wrote a state there."""
    try:
        status = status_of(state_dir)
        raw = json.loads((Path(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (RooneyError, OSError, ValueError):
        return None
    return {**status, "decide_from": raw.get("decide_from")}


def instruments(paths: DashboardPaths, cfg: RooneyConfig, log: pd.DataFrame | None = None) -> list[str]:
    """The instruments to choose from: those the engine trades and those in the log, else the
    pipeline's instruments."""
    state = engine_state(paths.state_dir)
    found = set((state or {}).get("instruments", {}))
    if log is not None and len(log) and "instrument" in log:
        found |= set(log["instrument"].dropna().astype(str))
    return sorted(found) or list(cfg.symbols)


@dataclass
class InstrumentData:
    """Everything one instrument's panels read, loaded once (``load_instrument``).
    ``problems``: source -> why it is missing (the panels that need it say so)."""

    symbol: str
    instrument: Instrument
    limits: MonitoringLimits
    log: pd.DataFrame  # its prediction-log rows, as logged
    rows: pd.DataFrame  # signals.signal_rows of them
    trades: pd.DataFrame  # <SYM>_trades.csv (the live engine's, paper or routed)
    engine: dict[str, Any] | None  # status_of's row of the instrument, with decide_from
    version: str | None  # the model the engine runs (its state), else production
    metrics: dict[str, dict]  # version -> its bundle's metrics, every version in the log
    holdouts: dict[str, pd.DataFrame]  # version -> its scored holdout.parquet
    hourly: pd.DataFrame | None
    features: pd.DataFrame | None
    counterfactual: pd.DataFrame  # veto_value.CF_COLUMNS, for the signals not taken
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def period(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The bars the engine decided: [decide_from, its last decided bar]."""
        if not self.engine or not self.engine.get("decide_from") or not self.engine.get("last_bar"):
            return None
        return pd.Timestamp(self.engine["decide_from"]), pd.Timestamp(self.engine["last_bar"])


def _live_trades(state_dir: Path, symbol: str) -> pd.DataFrame:
    path = state_dir / f"{symbol}_trades.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["signal_time", "entry_time", "exit_time", "pnl_net"])
    trades = pd.read_csv(path)
    for col in ("signal_time", "entry_time", "exit_time", "exit_signal_time"):
        if col in trades:
            trades[col] = pd.to_datetime(trades[col])
    return trades


def load_instrument(paths: DashboardPaths, cfg: RooneyConfig, symbol: str,
                    log: pd.DataFrame | None = None) -> InstrumentData:
    """Read what ``symbol``'s panels need (``log``: the whole prediction log, if already read)."""
    inst = cfg.instrument(symbol)
    problems: dict[str, str] = {}
    try:
        limits = load_monitoring_config(cfg.config_dir).for_symbol(symbol)
    except (RooneyError, OSError) as err:
        limits = MonitoringLimits()
        problems["monitoring.yml"] = f"{err}; the defaults apply"
    log = read_log(paths) if log is None else log
    own = log[log["instrument"] == symbol].reset_index(drop=True) if len(log) and "instrument" in log else log
    rows = signal_rows(own)
    if not len(rows):
        problems["log"] = f"no signal of {symbol} in the prediction log ({paths.predictions_dir})"
    state = engine_state(paths.state_dir)
    engine = None
    if state is None:
        problems["engine"] = f"no live engine state in {paths.state_dir} (has `rooney live` run with this --state-dir?)"
    elif symbol in state["instruments"]:
        engine = {**state["instruments"][symbol], "decide_from": state.get("decide_from"),
                  "heartbeat": state.get("heartbeat"), "heartbeat_age_s": state.get("heartbeat_age_s"),
                  "paper": state.get("paper")}
    else:
        problems["engine"] = f"the live engine in {paths.state_dir} does not trade {symbol}"

    store = ModelStore(paths.model_store)
    version = (engine or {}).get("model")
    if version is None:
        try:
            version = store.production(symbol)
        except ModelStoreError as err:
            problems["model"] = str(err)
    if version is None:
        problems.setdefault("model", f"no model for {symbol}: none in the engine's state, none in production")
    metrics, holdouts = {}, {}
    for ver in sorted({*rows["model_version"].dropna().astype(str), *([version] if version else [])}):
        try:
            metrics[ver] = store.load_metadata(ver).get("metrics") or {}
        except ModelStoreError as err:
            problems[f"metrics {ver}"] = str(err)
        try:
            holdouts[ver] = load_holdout(store, ver)
        except (ModelStoreError, OSError, ValueError) as err:
            problems[f"holdout {ver}"] = str(err)

    hourly = features = None
    try:
        hourly, features = paths.lake.read("hourly", symbol), paths.lake.read("features", symbol)
        if not hourly.index.equals(features.index):
            problems["lake"] = (f"the lake's features of {symbol} are not aligned with its hourly bars "
                                f"({len(features)} rows vs {len(hourly)} bars): materialise features again")
            hourly = features = None
    except (OSError, ValueError) as err:  # FileNotFoundError says which file and what to materialise
        problems["lake"] = str(err)
        hourly = features = None

    cf = pd.DataFrame(columns=CF_COLUMNS)
    if hourly is not None and len(rows):
        untaken = rows[~rows["taken"] & rows["probability"].notna()]
        cf = counterfactual_trades(untaken, hourly, features["ibs"], inst, cfg.strategy)
    return InstrumentData(symbol, inst, limits, own, rows, _live_trades(paths.state_dir, symbol), engine, version,
                          metrics, holdouts, hourly, features, cf, problems)


def overview(paths: DashboardPaths, symbols: list[str]) -> pd.DataFrame:
    """One row per instrument: its kill switch, the model the engine runs, its position and
    the live net P&L so far (for the page's sidebar)."""
    state = engine_state(paths.state_dir) or {"instruments": {}}
    try:
        switch = HealthState(health_root(paths.model_store)).read()["instruments"]
    except HealthStateError:
        switch = {s: {"mode": "unreadable"} for s in symbols}
    rows = []
    for sym in symbols:
        eng = state["instruments"].get(sym) or {}
        mode = (switch.get(sym) or {}).get("mode", "live")
        trades = _live_trades(paths.state_dir, sym)
        rows.append({"instrument": sym, "switch": "PAPER" if mode == PAPER else mode, "model": eng.get("model"),
                     "position": eng.get("position"), "net_pnl": float(trades["pnl_net"].sum()) if len(trades) else 0.0})
    return pd.DataFrame(rows, columns=["instrument", "switch", "model", "position", "net_pnl"])


# --- panels ----------------------------------------------------------------------------------


@dataclass
class Panel:
    """One panel: its title, its frames (raw numbers), a figure, notes and a verdict; or
    ``empty``, saying plainly why there is nothing to show."""

    key: str
    title: str
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    figure: Figure | None = None
    notes: list[str] = field(default_factory=list)
    verdict: str | None = None
    alarm: bool = False  # the verdict is bad news (a tripped switch, drift past its threshold)
    empty: str | None = None
    tables: list[tuple[str, list[str] | None]] = field(default_factory=list)  # frame, columns to show (None: all)

    @classmethod
    def nothing(cls, key: str, why: str) -> Panel:
        return cls(key, TITLES[key], empty=why)

    def png(self, dpi: int = 100) -> bytes | None:
        """The figure as PNG bytes (None without one)."""
        if self.figure is None:
            return None
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()


def why_missing(d: InstrumentData, *sources: str) -> str:
    """Why the given sources are missing (``InstrumentData.problems``), or "no data"."""
    return "; ".join(d.problems[s] for s in sources if s in d.problems) or "no data"


def _utc(value: Any) -> pd.Timestamp | None:
    """An ISO time the stores write (UTC) as a Timestamp; None if missing or unreadable."""
    try:
        t = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if t is pd.NaT or t != t:
        return None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


# live vs backtest equity


def backtest_same_bars(hourly: pd.DataFrame, features: pd.DataFrame, instrument: Instrument, rules,
                       model: VetoBundle | None, start: pd.Timestamp, end: pd.Timestamp,
                       model_name: str | None = None) -> pd.DataFrame:
    """The backtest's trades (``run_backtest``: the production strategy in Backtrader, the one
    cost table) over the bars the live engine decided, [start, end] by bar time, with the
    model it ran. ``features``: the lake's, computed on the whole history (so warm)."""
    from rooney_core.backtest.runner import run_backtest

    keep = (hourly.index >= start) & (hourly.index <= end)
    if not keep.any():
        raise RooneyError(f"{instrument.symbol}: the lake holds no bar between {start} and {end}")
    return run_backtest(hourly[keep], features[keep], instrument, rules, model=model, model_name=model_name).trades


def equity_curve(trades: pd.DataFrame, source: str) -> pd.DataFrame:
    """Cumulative net P&L at each exit (time, source, pnl_net, equity)."""
    t = trades.dropna(subset=["exit_time"]).sort_values("exit_time", kind="stable")
    return pd.DataFrame({"time": pd.to_datetime(t["exit_time"]).to_numpy(), "source": source,
                         "pnl_net": t["pnl_net"].to_numpy(float), "equity": t["pnl_net"].cumsum().to_numpy(float)})


def equity_panel(d: InstrumentData, backtest: pd.DataFrame | None, backtest_note: str | None = None) -> Panel:
    """The live engine's realised P&L against the backtest of the same bars (``backtest``:
    ``backtest_same_bars``' trades; None with ``backtest_note`` saying why)."""
    if not len(d.trades) and backtest is None:
        return Panel.nothing("equity", f"no live trade of {d.symbol} yet; "
                                       + (backtest_note or why_missing(d, "engine", "lake")))
    live = equity_curve(d.trades, "live (paper)" if (d.engine or {}).get("paper", True) else "live")
    curves = [live]
    notes = []
    period = d.period
    if backtest is not None:
        bt = backtest
        if period is not None:
            bt = bt[pd.to_datetime(bt["exit_time"]) <= period[1] + pd.Timedelta(hours=1)]
        curves.append(equity_curve(bt, "backtest"))
        if period is not None:
            notes.append(f"backtest: the lake's bars {period[0]:%Y-%m-%d %H:%M} to {period[1]:%Y-%m-%d %H:%M} "
                         f"(the bars the engine decided) with {d.version or 'no model'}, the same rules and costs")
            if d.hourly is not None and len(d.hourly) and d.hourly.index[-1] < period[1]:
                notes.append(f"the lake's bars end {d.hourly.index[-1]:%Y-%m-%d %H:%M}, before the engine's last "
                             "bar: the backtest stops there (materialise the bars and features to catch up)")
    elif backtest_note:
        notes.append(f"no backtest: {backtest_note}")
    curve = pd.concat(curves, ignore_index=True)
    summary = curve.groupby("source", sort=False).agg(trades=("pnl_net", "size"), net_pnl=("pnl_net", "sum"),
                                                       win_rate=("pnl_net", lambda x: float((x > 0).mean())),
                                                       last_exit=("time", "max")).reset_index()
    verdict = None
    if backtest is not None:
        gap = summary["net_pnl"].iloc[0] - (summary["net_pnl"].iloc[1] if len(summary) > 1 else 0.0)
        verdict = (f"live {format_money(summary['net_pnl'].iloc[0])} vs backtest "
                   f"{format_money(summary['net_pnl'].iloc[1] if len(summary) > 1 else 0.0)}: "
                   f"tracking difference {format_money(gap)}")
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax = fig.add_subplot()
    styles = {"backtest": dict(color="grey", lw=2.6, alpha=0.6)}
    for source, g in curve.groupby("source", sort=False):
        ax.step(g["time"], g["equity"], where="post", label=source, **styles.get(source, dict(color="tab:blue", lw=1.4)))
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("cumulative net P&L")
    money_axis(ax)
    date_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title(f"{d.symbol}: realised net P&L of closed trades", fontsize=10, loc="left")
    return Panel("equity", TITLES["equity"], {"curve": curve, "summary": summary}, fig, notes, verdict,
                 tables=[("summary", None)])


# rolling accuracy and calibration


def accuracy_panel(d: InstrumentData) -> Panel:
    """Rolling accuracy, precision and Brier score of the resolved signals, and the
    reliability diagram of the current version, against its holdout's promise."""
    if not len(d.rows):
        return Panel.nothing("accuracy", why_missing(d, "log"))
    scored = outcomes(d.rows, d.counterfactual if len(d.counterfactual) else None)
    perf = model_performance(scored, d.metrics, d.holdouts, d.limits.performance)
    perf = [p for p in perf if p.scored]
    if not perf:
        return Panel.nothing("accuracy", f"no signal of {d.symbol} with a known outcome yet (a taken trade that "
                                         "exited, or a vetoed signal whose counterfactual trade exited)")
    current = next((p for p in perf if p.model_version == d.version), perf[-1])
    rolling = pd.concat([p.rolling for p in perf], ignore_index=True)
    if not len(rolling):
        return Panel.nothing("accuracy", f"{current.scored} signals of {d.symbol} with a known outcome: fewer than "
                                         f"half a rolling window ({d.limits.performance.rolling_signals})")
    comparison = current.comparison
    promised = dict(zip(comparison["figure"], comparison["promised"], strict=True))
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax, rel = fig.subplots(1, 2, width_ratios=[2, 1])
    for (ver,), g in rolling.groupby(["model_version"], sort=False, dropna=False):
        ax.plot(g["bar_time"], g["accuracy"], color="tab:blue", lw=1.3, label=f"accuracy ({ver})")
        ax.plot(g["bar_time"], g["precision"], color="tab:green", lw=1.1, label=f"precision ({ver})")
    for name, colour in (("accuracy", "tab:blue"), ("precision", "tab:green")):
        if promised.get(name) is not None and promised[name] == promised[name]:
            ax.axhline(promised[name], color=colour, ls="--", lw=0.9, alpha=0.8, label=f"holdout {name}")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    date_axis(ax)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, ncol=2)
    ax.set_title(f"rolling over {d.limits.performance.rolling_signals} resolved signals", fontsize=10, loc="left")
    rel.plot([0, 1], [0, 1], color="black", lw=0.6, ls=":")
    if current.holdout_reliability is not None:
        h = current.holdout_reliability[current.holdout_reliability["count"] > 0]
        rel.plot(h["mean_predicted"], h["observed_win_rate"], color="grey", marker="o", ms=3, lw=1, label="holdout")
    lv = current.reliability[current.reliability["count"] > 0]
    rel.scatter(lv["mean_predicted"], lv["observed_win_rate"], s=12 + 60 * lv["count"] / lv["count"].max(),
                color="tab:red", zorder=3, label="live")
    rel.set_xlim(-0.02, 1.02)
    rel.set_ylim(-0.02, 1.02)
    rel.set_xlabel("predicted P(win)")
    rel.set_ylabel("observed win rate")
    rel.grid(alpha=0.3)
    rel.legend(loc="upper left", fontsize=8)
    rel.set_title(f"reliability, {current.model_version}", fontsize=10, loc="left")
    notes = list(current.notes)
    verdict = (f"{current.model_version}: {current.scored} of {current.signals} scored signals resolved; accuracy "
               f"{format_percent(current.live['accuracy'])} (holdout {format_percent(promised.get('accuracy'))}), "
               f"Brier {format_number(current.live['brier'], 3)}, calibration error "
               f"{format_number(current.calibration_error, 3)}")
    return Panel("accuracy", TITLES["accuracy"], {"rolling": rolling, "reliability": current.reliability,
                                                   "comparison": comparison}, fig, notes, verdict,
                 tables=[("comparison", None)])


# drift


def drift_window(d: InstrumentData, names: list[str]) -> pd.DataFrame:
    """The logged feature rows of the instrument's last ``window_sessions`` sessions (the
    live window the thresholds are calibrated for)."""
    if not len(d.log):
        return pd.DataFrame(columns=names)
    log = d.log.assign(_t=pd.to_datetime(d.log["bar_time"])).sort_values("_t", kind="stable")
    sessions = session_labels(log["_t"], d.instrument.calendar)
    last = np.unique(sessions)[-d.limits.drift.window_sessions:]
    return feature_frame(log[np.isin(sessions, last)].drop(columns="_t"), names)


def drift_thresholds(store: ModelStore, version: str, d: InstrumentData) -> tuple[pd.DataFrame, DriftThresholds]:
    """The version's training distribution (verified) and the drift thresholds calibrated on
    it (a block bootstrap: seconds, once per version)."""
    reference = load_reference_features(store, version)
    names = [c for c in reference.columns if c != "signal_time"]
    return reference, calibrate_thresholds(reference, d.limits.drift, names, d.instrument.calendar)


def drift_panel(d: InstrumentData, reference: pd.DataFrame | None, thresholds: DriftThresholds | None,
                note: str | None = None) -> Panel:
    """PSI and KS of each model feature over the live window against the bundle's training
    rows, with the calibrated thresholds (``note``: why there is no reference)."""
    if reference is None or thresholds is None:
        return Panel.nothing("drift", note or f"no training distribution for {d.version or 'no model'}")
    names = [c for c in reference.columns if c != "signal_time"]
    current = drift_window(d, names)
    if not len(current):
        return Panel.nothing("drift", why_missing(d, "log"))
    report = feature_drift(reference, current, thresholds, d.limits.drift, names)
    table = report.features
    fig = Figure(figsize=(10, 0.9 + 0.28 * len(table)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(table))
    for ax, stat, title in ((axes[0], "psi", "PSI"), (axes[1], "ks", "KS statistic")):
        colours = np.where(table[stat] > table[f"{stat}_threshold"], "tab:red", "tab:blue")
        ax.barh(y, table[stat].fillna(0.0), color=colours, height=0.6)
        ax.scatter(table[f"{stat}_threshold"], y, marker="|", s=160, color="black", zorder=3, label="threshold")
        ax.set_title(f"{title} vs training", fontsize=10, loc="left")
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(y, table["feature"])
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right", fontsize=8)
    notes = [f"live window: the last {d.limits.drift.window_sessions} sessions ({report.rows} signal rows); "
             f"thresholds calibrated on {thresholds.windows} bootstrap windows of the training rows "
             f"(alert from {thresholds.min_drifted} drifted features)", *report.notes]
    return Panel("drift", TITLES["drift"], {"features": table}, fig, notes, report.verdict, alarm=report.alert,
                 tables=[("features", None)])


# veto value


def _cost_money(month: pd.Series) -> bool:
    keep = month["earned_keep"]
    return keep is not None and keep == keep and not bool(keep)


def veto_panel(d: InstrumentData) -> Panel:
    """Per month: the taken trades' P&L beside the vetoed signals' counterfactual P&L; the
    veto earned its keep when what it refused would have lost money."""
    if not len(d.rows):
        return Panel.nothing("veto", why_missing(d, "log"))
    if d.hourly is None:
        return Panel.nothing("veto", "the vetoed signals' counterfactual trades need the lake's hourly bars: "
                                     + why_missing(d, "lake"))
    table = veto_value(d.rows, d.counterfactual, "M")
    if not len(table):
        return Panel.nothing("veto", f"no signal of {d.symbol} in the log")
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["veto_value_usd"], width=0.4,
           color=np.where(table["veto_value_usd"] >= 0, "tab:green", "tab:red"), label="veto value (avoided losses "
                                                                                      "- missed gains)")
    ax.bar(x + 0.2, table["taken_pnl"], width=0.4, color="tab:blue", alpha=0.55, label="taken trades' net P&L")
    ax.set_xticks(x, table["period"])
    ax.axhline(0, color="black", lw=0.5)
    money_axis(ax)
    ax.grid(alpha=0.3, axis="y")
    fig.legend(loc="outside upper left", fontsize=8, ncol=2)
    last = table.iloc[-1]
    total = float(table["veto_value_usd"].sum())
    verdict = f"{last['period']}: {last['verdict']}; over {len(table)} months the veto's value is {format_money(total)}"
    return Panel("veto", TITLES["veto"], {"months": table}, fig,
                 ["counterfactual: each vetoed signal taken alone on the lake's hourly bars with the production "
                  "rules and costs, as training labels them"], verdict, alarm=_cost_money(last),
                 tables=[("months", [c for c in table.columns if c not in ("instrument", "vetoed_resolved",
                                                                            "verdict")])])


# kill switch and model versions


def _stages(store: ModelStore, symbol: str) -> dict[str, tuple[str, Any]]:
    """version -> (its stage, since when) from the manifest."""
    out: dict[str, tuple[str, Any]] = {}
    prod, paper = store.production_entry(symbol), store.paper_entry(symbol)
    if prod:
        for v in prod.get("history", []):
            out[v] = ("previously in production", None)
        out[prod["version"]] = ("production", prod.get("promoted_at"))
    if paper:
        out[paper["version"]] = (f"paper stage ({paper.get('status')})", paper.get("since"))
    return out


def versions_table(store: ModelStore, symbol: str) -> pd.DataFrame:
    """Every stored version of ``symbol``, newest first: its stage (production, paper stage,
    stored) and since when, when it was trained, its threshold, what its holdout promised
    and its gates."""
    from rooney_core.model.promotion import gate_status

    stages = _stages(store, symbol)
    rows = []
    for meta in reversed(store.list_versions(symbol)):
        v = meta["version"]
        m = meta.get("metrics") or {}
        sel = m.get("selected") or {}
        passed, failed = gate_status(store, v) if "damaged" not in meta else (False, [meta["damaged"]])
        stage, since = stages.get(v, ("stored", None))
        rows.append({"version": v, "stage": stage, "stage_since": _utc(since), "trained_at": _utc(meta.get("trained_at")),
                     "threshold": meta.get("threshold"), "holdout_auc": m.get("auc"),
                     "holdout_sharpe": sel.get("sharpe"), "holdout_trades": sel.get("trades"),
                     "gates": "passed" if passed else "failed: " + ", ".join(failed)})
    return pd.DataFrame(rows, columns=["version", "stage", "stage_since", "trained_at", "threshold", "holdout_auc",
                                       "holdout_sharpe", "holdout_trades", "gates"])


def health_panel(d: InstrumentData, paths: DashboardPaths) -> Panel:
    """The model-health kill switch of the instrument (health.json: mode, since, by, why;
    its audit trail) beside what the engine runs and the stored versions."""
    state = HealthState(health_root(paths.model_store))
    notes = []
    try:
        entry = state.read()["instruments"].get(d.symbol) or {}
    except HealthStateError as err:  # never "all live" on a damaged file
        entry, notes = {"mode": PAPER, "reasons": [str(err)]}, [str(err)]
    tripped = entry.get("mode") == PAPER
    switch = pd.DataFrame([{"mode": entry.get("mode", "live"), "since": _utc(entry.get("since")),
                            "by": entry.get("by"),
                            "why": "; ".join(entry.get("reasons") or []) if tripped else
                            entry.get("reason") or ("restored" if entry else "never tripped")}])
    audit = pd.DataFrame([{"at": _utc(r.get("at")), "event": r.get("event"), "by": r.get("by"),
                           "why": r.get("reason") or "; ".join(r.get("reasons") or [])}
                          for r in state.audit_log() if r.get("symbol") == d.symbol][-10:][::-1],
                         columns=["at", "event", "by", "why"])
    try:
        versions = versions_table(ModelStore(paths.model_store), d.symbol)
    except ModelStoreError as err:
        versions = pd.DataFrame()
        notes.append(str(err))
    eng = d.engine or {}
    engine = pd.DataFrame([{"model": eng.get("model"), "stage": eng.get("stage"), "position": eng.get("position"),
                            "last_bar": pd.Timestamp(eng["last_bar"]) if eng.get("last_bar") else None,
                            "trades": eng.get("trades"), "trading": eng.get("trading"),
                            "heartbeat_age": (format_number(eng["heartbeat_age_s"] / 60, 0) + " min")
                            if eng.get("heartbeat_age_s") is not None else "n/a",
                            "last_error": eng.get("last_error")}]) if eng else pd.DataFrame()
    if not eng:
        notes.append(why_missing(d, "engine"))
    if tripped:
        since = _utc(entry.get("since"))
        verdict = (f"{d.symbol} is held on PAPER by the model-health kill switch since "
                   f"{since:%Y-%m-%d %H:%M} UTC ({entry.get('by')}): " if since is not None else
                   f"{d.symbol} is held on PAPER by the model-health kill switch: ") + "; ".join(entry.get("reasons") or [])
    else:
        verdict = f"{d.symbol}: kill switch not tripped ({switch['mode'].iloc[0]}, {switch['why'].iloc[0]})"
    return Panel("health", TITLES["health"], {"kill_switch": switch, "engine": engine, "versions": versions,
                                               "audit": audit}, None, notes, verdict, alarm=tripped,
                 tables=[("kill_switch", None), ("engine", None), ("versions", None), ("audit", None)])


# recent alerts


def alerts_panel(paths: DashboardPaths, symbol: str, limit: int = 20) -> Panel:
    """The latest alerts about ``symbol`` or about no instrument in particular, newest first."""
    rows = [a for a in recent_alerts(paths.alerts_dir, limit=None) if a.get("instrument") in (symbol, None)][:limit]
    if not rows:
        return Panel.nothing("alerts", f"no alert about {symbol} recorded in {paths.alerts_dir / JOURNAL_FILE}")
    cols = ["at", "kind", "instrument", "summary", "metric", "value", "threshold", "status", "run_url"]
    table = pd.DataFrame(rows).reindex(columns=cols)
    table["at"] = table["at"].map(_utc)
    undelivered = int(table["status"].isin(["undelivered", "not_configured"]).sum())
    notes = [f"{undelivered} not delivered to Discord (kept in the outbox)"] if undelivered else []
    return Panel("alerts", TITLES["alerts"], {"alerts": table}, None, notes,
                 f"{len(table)} latest alerts about {symbol} or the whole desk (newest first)",
                 tables=[("alerts", ["at", "kind", "instrument", "summary", "value", "threshold", "status"])])


# --- showing numbers -----------------------------------------------------------------------

_MONEY = {"pnl_net", "net_pnl", "equity", "taken_pnl", "vetoed_pnl", "missed_gains", "avoided_losses",
          "veto_value_usd", "live_pnl", "backtest_pnl"}
_PERCENT = {"win_rate", "vetoed_win_rate", "accuracy", "precision", "selection_rate", "base_rate", "change",
            "live_nan_rate"}


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as text for a table: money as ``format_money``, rates as percentages,
    other floats with 3 decimals, times to the minute; missing values ``n/a``."""
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        s = frame[col]
        if col in _MONEY:
            out[col] = s.map(format_money)
        elif col in _PERCENT:
            out[col] = s.map(format_percent)
        elif pd.api.types.is_datetime64_any_dtype(s):
            utc = getattr(s.dt, "tz", None) is not None
            out[col] = s.dt.strftime("%Y-%m-%d %H:%M" + (" UTC" if utc else "")).fillna("n/a")
        elif s.map(lambda x: isinstance(x, pd.Timestamp)).any():
            out[col] = s.map(lambda x: x.strftime("%Y-%m-%d %H:%M" + (" UTC" if x.tzinfo else ""))
                             if isinstance(x, pd.Timestamp) else "n/a")
        elif pd.api.types.is_float_dtype(s):
            whole = bool(s.dropna().map(float.is_integer).all()) and col != "threshold"
            out[col] = s.map(lambda x, d=0 if whole else 3: format_number(x, d))
        else:
            out[col] = s.map(lambda x: "n/a" if x is None or (isinstance(x, float) and x != x) else str(x))
    return out


__all__ = ["DashboardPaths", "InstrumentData", "Panel", "TITLES", "accuracy_panel", "alerts_panel",
           "backtest_same_bars", "drift_panel", "drift_thresholds", "drift_window", "engine_state", "equity_curve",
           "equity_panel", "health_panel", "instruments", "load_instrument", "overview", "read_log", "shown",
           "veto_panel",
           "versions_table", "why_missing"]
