"""The desk's monitoring dashboard: the Streamlit script `rooney dashboard` runs.

Layout and caching only; every number and figure comes from
``rooney_core.monitoring.dashboard``. It lives in the shell package, not beside that module:
``rooney_core`` is a library any process imports whole (its architecture test imports every
module), and a Streamlit script draws a page when imported; here ``rooney_core`` stays
importable without Streamlit. Nothing imports this file (``streamlit run`` executes it) and it
imports nothing of Dagster.

``?report=ES_v3`` (or a portfolio version) shows that version's stored report instead: the
Dagster UI's ``report_url`` metadata links here, since a browser will not open a local file
from a web page.

Where it reads comes from the environment `rooney dashboard` sets: $ROONEY_LIVE_STATE_DIR,
$ROONEY_MODEL_STORE, $ROONEY_LAKE_DIR, $ROONEY_ALERTS_DIR and $ROONEY_CONFIG_DIR.

Caches are keyed on the files they read (``DashboardPaths.fingerprint``: their mtimes and
sizes), so a rerun (any click, or Reload) shows new bars and alerts and recomputes nothing
else. The backtest of the live period is keyed on the lake's files, the model version and
the period; the drift thresholds (a bootstrap) on the version, whose training rows never
change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from rooney_core.model import ModelStore
from rooney_core.monitoring import dashboard as db
from rooney_pipeline import settings

log = logging.getLogger("rooney_pipeline.dashboard_app")

st.set_page_config(page_title="Rooney monitoring", page_icon=":bar_chart:", layout="wide")


@st.cache_resource(show_spinner=False)
def _cfg():
    return settings.load()


cfg = _cfg()
paths = db.DashboardPaths.resolve(cfg)


@st.cache_data(show_spinner="reading the prediction log", max_entries=4)
def _log(fingerprint: tuple) -> pd.DataFrame:
    return db.read_log(paths)


@st.cache_resource(show_spinner="loading the instrument's log, trades, models and bars", max_entries=8)
def _instrument(symbol: str, fingerprint: tuple) -> db.InstrumentData:
    return db.load_instrument(paths, cfg, symbol, _log(paths.fingerprint()))


@st.cache_data(show_spinner="backtesting the live period's bars", max_entries=16)
def _backtest(symbol: str, version: str | None, start: pd.Timestamp, end: pd.Timestamp,
              lake: tuple) -> pd.DataFrame:
    d = _instrument(symbol, paths.fingerprint(symbol))
    model = ModelStore(paths.model_store).load(version) if version else None  # sha256 checked
    return db.backtest_same_bars(d.hourly, d.features, d.instrument, cfg.strategy, model, start, end, version)


@st.cache_resource(show_spinner="calibrating the drift thresholds", max_entries=16)
def _thresholds(symbol: str, version: str, limits: str):
    d = _instrument(symbol, paths.fingerprint(symbol))
    return db.drift_thresholds(ModelStore(paths.model_store), version, d)


def _equity(d: db.InstrumentData) -> db.Panel:
    bt, note = None, None
    if d.period is None:
        note = db.why_missing(d, "engine")
    elif d.hourly is None:
        note = db.why_missing(d, "lake")
    else:
        lake = tuple(x for x in paths.fingerprint(d.symbol) if "/hourly/" in x[0] or "/features/" in x[0])
        try:
            bt = _backtest(d.symbol, d.version, *d.period, lake)
        except Exception as err:  # noqa: BLE001 - the live curve is still worth showing
            note = f"{type(err).__name__}: {err}"
    return db.equity_panel(d, bt, note)


def _drift(d: db.InstrumentData) -> db.Panel:
    if d.version is None:
        return db.Panel.nothing("drift", db.why_missing(d, "model"))
    try:
        reference, thresholds = _thresholds(d.symbol, d.version, d.limits.drift.model_dump_json())
    except Exception as err:  # noqa: BLE001 - no stored training rows, a refused file, too few rows
        return db.Panel.nothing("drift", f"no drift thresholds for {d.version}: {err}")
    return db.drift_panel(d, reference, thresholds)


BUILDERS: dict[str, Callable[[str], db.Panel]] = {
    "health": lambda sym: db.health_panel(_instrument(sym, paths.fingerprint(sym)), paths),
    "equity": lambda sym: _equity(_instrument(sym, paths.fingerprint(sym))),
    "accuracy": lambda sym: db.accuracy_panel(_instrument(sym, paths.fingerprint(sym))),
    "drift": lambda sym: _drift(_instrument(sym, paths.fingerprint(sym))),
    "veto": lambda sym: db.veto_panel(_instrument(sym, paths.fingerprint(sym))),
    "alerts": lambda sym: db.alerts_panel(paths, sym),
}


@st.cache_resource(show_spinner=False, max_entries=64)
def _built(key: str, symbol: str, fingerprint: tuple) -> tuple[db.Panel, bytes | None]:
    """A panel and its figure's PNG, until a file it reads changes (an error is not cached)."""
    panel = BUILDERS[key](symbol)
    return panel, panel.png()


def _show(panel: db.Panel, png: bytes | None) -> None:
    if panel.empty:
        st.info(f"No data: {panel.empty}")
        return
    if panel.verdict:
        (st.error if panel.alarm else st.success)(panel.verdict)
    if png is not None:
        st.image(png, alt=f"{panel.title} chart", width="stretch")
    for name, columns in panel.tables:
        frame = panel.frames.get(name)
        if frame is None or not len(frame):
            continue
        if len(panel.tables) > 1:
            st.caption(name.replace("_", " "))
        st.table(db.shown(frame if columns is None else frame[columns]), hide_index=True)
    for note in panel.notes:
        st.caption(note)


def _panel(key: str, symbol: str) -> None:
    with st.container(border=True, key=f"panel-{key}"):
        st.subheader(db.TITLES[key])
        try:
            panel, png = _built(key, symbol, paths.fingerprint(symbol))
        except Exception as err:  # noqa: BLE001 - one broken source must not take the page down
            log.exception("dashboard panel %s of %s", key, symbol)
            st.warning(f"Could not draw this panel: {type(err).__name__}: {err}")
            return
        _show(panel, png)


# --- a report: ?report=ES_v3 or ?report=portfolio_v1 (the Dagster UI's "report_url" links) ---


def _report(name: str) -> None:
    """The stored report of a model or portfolio version, as the store holds it (its sha-checked
    directory: only a real version name resolves, never a path)."""
    store = ModelStore(paths.model_store)
    try:
        folder = store.portfolio_dir(name) if name.startswith("portfolio_") else store.version_dir(name)
        text = (folder / "report.html").read_text(encoding="utf-8")
    except Exception as err:  # noqa: BLE001 - an unknown version or a store without reports: say so
        st.error(f"No report for {name!r}: {err}")
        return
    st.caption(f"{folder / 'report.html'} · [back to monitoring](./)")
    components.html(text, height=2600, scrolling=True)


if st.query_params.get("report"):
    _report(st.query_params["report"])
    st.stop()


# --- the page --------------------------------------------------------------------------------

symbols = db.instruments(paths, cfg, _log(paths.fingerprint()))
with st.sidebar:
    st.title("Rooney monitoring")
    symbol = st.selectbox("Instrument", symbols, key="instrument")
    st.button("Reload", help="Read the files again (only what changed is recomputed).")
    st.table(db.shown(db.overview(paths, symbols)), hide_index=True)
    st.caption(f"live engine: {paths.state_dir}")
    st.caption(f"model store: {paths.model_store}")
    st.caption(f"lake: {paths.lake_dir}")
    st.caption(f"alerts: {paths.alerts_dir}")

state = db.engine_state(paths.state_dir)
st.header(symbol)
if state is None:
    st.caption(f"No live engine state in {paths.state_dir}.")
else:
    age = state.get("heartbeat_age_s")
    beat = pd.Timestamp(state["heartbeat"]).tz_convert("UTC") if state.get("heartbeat") else None
    st.caption(f"Live engine {'paper trading' if state.get('paper') else 'routing orders'}; last heartbeat "
               + (f"{beat:%Y-%m-%d %H:%M} UTC ({age / 60:,.0f} min ago)" if beat is not None else "never")
               + ". Bar times are exchange time; alert, audit and model times UTC.")
for key in ("health", "equity", "accuracy", "drift", "veto", "alerts"):
    _panel(key, symbol)
