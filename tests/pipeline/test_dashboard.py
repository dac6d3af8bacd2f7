"""The monitoring dashboard (`rooney dashboard`): each panel's data on a realistic live state,
and the real app in headless Chromium.

The state: eight and a half months of 5-minute ES and NQ sample bars in the lake; a small veto model per
instrument trained on the first six months by ``train_and_store`` (so each version has its
scored holdout and training distribution) and promoted; the NQ kill switch tripped; the live
engine paper-trading both from August to mid-September, the end of the data (its prediction log, trades and
state); alerts in the journal. The app is started before that state exists, as a desk may
start it before the engine: its pages read the files when viewed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.data.lake import Lake
from rooney_core.features import REGISTRY, instrument_inputs, selected_features
from rooney_core.live.engine import LiveEngine, history_from_raw
from rooney_core.live.feeds import replay_feed
from rooney_core.model import ModelStore
from rooney_core.model.gates import ModelData
from rooney_core.monitoring import dashboard as db
from rooney_core.monitoring.alerts import Alert, AlertKind, AlertSink
from rooney_core.monitoring.health import HealthState
from rooney_core.sample_market import load_sample_market, write_sample_data
from rooney_core.training.candidates import extract_candidates
from rooney_core.training.config import SearchSpace, load_training_config
from rooney_core.training.store_version import train_and_store
from rooney_core.training.train import Market

pytestmark = pytest.mark.slow  # every test reads the module's live state (a minute to build)

CFG = load_config()
SYMBOLS = ["ES", "NQ"]
DATA = ("2023-01-02", "2023-09-15")
TRAIN_BEFORE = "2023-07-01"  # the models learn from the signals before this
LIVE_FROM = "2023-08-01"  # the engine decides from here to the end of the data
NQ_TRIP = "out-of-distribution rate 31.0% (limit 20.0%)"
PANELS = ["health", "equity", "accuracy", "drift", "veto", "alerts"]


def tiny_training(symbol: str):
    """The project's training config, made small enough for six months of data."""
    return load_training_config(CFG.config_dir, symbol).model_copy(update=dict(
        trials=2, folds=2, holdout_years=0.2, min_trades_per_fold=5,
        features=["ibs", "ibs_prev", "rsi2", "rsi14", "ret1", "ret3", "atr14_pct", "volume_pctl252", "close_z20",
                  "hour"],
        search_space=SearchSpace.model_validate(dict(
            n_estimators={"low": 20, "high": 40, "step": 20}, max_depth=[3], min_samples_leaf=[10],
            max_features=["sqrt"], max_samples={"low": 0.6, "high": 0.7}, class_weight=[None]))))


# --- the app's process ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DashboardProcess:
    """`rooney dashboard` as the desk starts it, in its own process."""

    def __init__(self, dirs: SimpleNamespace):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = dirs.root / "dashboard.log"
        env = {**os.environ, "ROONEY_MODEL_STORE": str(dirs.models), "ROONEY_LAKE_DIR": str(dirs.lake),
               "ROONEY_ALERTS_DIR": str(dirs.alerts)}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "rooney_pipeline.cli", "dashboard", "--state-dir",
                                          str(dirs.live), "--port", str(self.port)],
                                         env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"`rooney dashboard` exited ({self.proc.returncode}):\n{self.log()}"
            try:
                with urllib.request.urlopen(self.url + "_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"the dashboard did not answer on {self.url} in {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("dashboard")
    return SimpleNamespace(root=root, market=root / "market", lake=root / "lake", models=root / "models",
                           live=root / "live", alerts=root / "alerts")


@pytest.fixture(scope="module")
def dashboard_server(dirs):
    """The app, started first: it loads its modules while the state is built."""
    server = DashboardProcess(dirs)
    yield server
    server.stop()


# --- the live state ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_state(dirs, dashboard_server) -> db.DashboardPaths:
    write_sample_data(dirs.market, SYMBOLS, *DATA, seed=5, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=5)
    lake = Lake(dirs.lake)
    hourly = {}
    for s in SYMBOLS:  # what the bars and features assets write
        bars = load_session_bars(dirs.market, CFG.instrument(s))
        hourly[s] = bars.hourly
        lake.write("hourly", s, bars.hourly)
        lake.write("daily", s, bars.daily)
    names = selected_features(CFG)
    store = ModelStore(dirs.models)
    for s in SYMBOLS:
        feats = REGISTRY.compute(instrument_inputs(CFG, s, hourly[s], hourly.get(CFG.instrument(s).pair)), names)
        lake.write("features", s, feats)
        cands = extract_candidates(hourly[s], feats, CFG.instrument(s), CFG.strategy)
        cands = cands[cands["signal_time"] < pd.Timestamp(TRAIN_BEFORE)]
        # no minute data for the parity replay: that gate fails, saying why (the versions panel shows it)
        data = ModelData(Market(hourly[s], feats, CFG.instrument(s), CFG.strategy))
        stored = train_and_store(cands, s, tiny_training(s), data, store, CFG)
        store.promote(stored.name, by="test", reason="dashboard test", extra={"forced": True})
    HealthState(store.root).trip("NQ", [NQ_TRIP], by="monitoring")
    engine = LiveEngine(CFG, SYMBOLS, store, dirs.live, paper=True)
    replay_from = engine.start(history_from_raw(CFG, dirs.market), LIVE_FROM)
    engine.run(replay_feed(CFG, dirs.market, SYMBOLS), replay_from, close_at_end=True)
    sink = AlertSink(dirs.alerts)  # no webhook: journal and outbox only
    sink.send(Alert(AlertKind.RUN_FAILED, "Run veto_model_job failed at step veto_model",
                    run_url="http://127.0.0.1:3000/runs/0123abcd"))
    sink.send(Alert(AlertKind.ACCURACY_DROP, "ES rolling accuracy 48% against the holdout's 55%", instrument="ES",
                    metric="rolling accuracy, 50 signals", value=0.48, threshold=0.495))
    sink.send(Alert(AlertKind.KILL_SWITCH, f"NQ switched to paper: {NQ_TRIP}", instrument="NQ",
                    metric="out-of-distribution rate", value=0.31, threshold=0.20))
    return db.DashboardPaths(state_dir=dirs.live, model_store=dirs.models, lake_dir=dirs.lake, alerts_dir=dirs.alerts)


@pytest.fixture(scope="module")
def es(live_state) -> db.InstrumentData:
    return db.load_instrument(live_state, CFG, "ES")


@pytest.fixture(scope="module")
def es_backtest(es, live_state) -> pd.DataFrame:
    bundle = ModelStore(live_state.model_store).load(es.version)
    return db.backtest_same_bars(es.hourly, es.features, es.instrument, CFG.strategy, bundle, *es.period, es.version)


# --- the data of each panel --------------------------------------------------------------------


def test_the_instruments_and_what_they_read(live_state, es):
    assert db.instruments(live_state, CFG) == SYMBOLS
    assert es.version == "ES_v1" and not es.problems, es.problems
    assert es.period == (pd.Timestamp(LIVE_FROM), es.period[1]) and es.period[1] >= pd.Timestamp("2023-09-14")
    assert es.rows["taken"].sum() > 20 and es.rows["vetoed"].sum() > 5
    assert set(es.rows["instrument"]) == {"ES"} and len(es.log) == len(es.rows)
    # every untaken signal the model scored has its counterfactual trade (the data goes on long enough)
    assert len(es.counterfactual) == int((~es.rows["taken"] & es.rows["probability"].notna()).sum())
    assert es.counterfactual["pnl_net"].notna().mean() > 0.95


def test_live_equity_is_the_trades_cumulative_pnl_and_matches_the_backtest_of_the_same_bars(es, es_backtest):
    panel = db.equity_panel(es, es_backtest)
    assert panel.empty is None and panel.title == db.TITLES["equity"]
    curve = panel.frames["curve"]
    live, bt = curve[curve["source"] == "live (paper)"], curve[curve["source"] == "backtest"]
    trades = es.trades.sort_values("exit_time")
    assert len(live) == len(trades) > 20
    np.testing.assert_allclose(live["equity"].to_numpy(), trades["pnl_net"].cumsum().to_numpy())
    assert live["equity"].iloc[-1] == pytest.approx(trades["pnl_net"].sum())
    # the same bars, model, rules and costs: the backtest made the live engine's trades
    assert bt["pnl_net"].tolist() == live["pnl_net"].tolist()
    assert "tracking difference $0" in panel.verdict
    summary = panel.frames["summary"].set_index("source")
    assert summary.loc["live (paper)", "trades"] == len(trades)
    lines = panel.figure.axes[0].get_lines()
    assert [ln.get_label() for ln in lines[:2]] == ["live (paper)", "backtest"]
    assert lines[0].get_ydata()[-1] == pytest.approx(trades["pnl_net"].sum())
    assert db.shown(summary.reset_index())["net_pnl"].iloc[0] == db.format_money(trades["pnl_net"].sum())


def test_rolling_accuracy_and_calibration_against_the_holdout(es):
    panel = db.accuracy_panel(es)
    assert panel.empty is None, panel.empty
    rolling = panel.frames["rolling"]
    assert len(rolling) > 20 and rolling["accuracy"].between(0, 1).all() and set(rolling["model_version"]) == {"ES_v1"}
    rel = panel.frames["reliability"]
    # every signal with a known outcome (live exits and vetoed counterfactuals) is in one bin
    known = int(es.rows["resolved"].sum()) + int(es.counterfactual["pnl_net"].notna().sum())
    assert rel["count"].sum() == known > 50
    comparison = panel.frames["comparison"].set_index("figure")
    assert comparison.loc["accuracy", "source"] == "holdout.parquet" and comparison.loc["accuracy", "promised"] > 0
    assert comparison.loc["precision", "source"] == "bundle metrics"
    assert "ES_v1" in panel.verdict and len(panel.figure.axes) == 2


def test_drift_per_feature_with_its_calibrated_thresholds(es, live_state):
    store = ModelStore(live_state.model_store)
    reference, thresholds = db.drift_thresholds(store, es.version, es)
    panel = db.drift_panel(es, reference, thresholds)
    assert panel.empty is None, panel.empty
    table = panel.frames["features"]
    assert table["feature"].tolist() == store.load(es.version).feature_names
    assert (table["psi_threshold"] >= es.limits.drift.min_psi).all()
    assert (table["ks_threshold"] >= es.limits.drift.min_ks).all()
    assert table["psi"].notna().all() and (table["live_rows"] > es.limits.drift.min_rows).all()
    window = db.drift_window(es, table["feature"].tolist())
    assert len(window) == table["live_rows"].max() and window.index.max() == es.rows["bar_time"].max()
    assert panel.verdict.startswith(("drift:", "stable:")) and panel.alarm == panel.verdict.startswith("drift:")


def test_veto_value_by_month(es):
    panel = db.veto_panel(es)
    assert panel.empty is None, panel.empty
    months = panel.frames["months"]
    assert months["period"].tolist() == ["2023-08", "2023-09"]
    assert months["vetoed"].sum() == es.rows["vetoed"].sum() and months["taken"].sum() == es.rows["taken"].sum()
    assert months["taken_pnl"].sum() == pytest.approx(es.rows.loc[es.rows["resolved"], "pnl_net"].sum())
    np.testing.assert_allclose(months["veto_value_usd"], months["avoided_losses"] - months["missed_gains"])
    vetoed_cf = es.counterfactual.merge(es.rows[es.rows["vetoed"]][["prediction_id"]], on="prediction_id")
    assert months["vetoed_pnl"].sum() == pytest.approx(vetoed_cf["pnl_net"].sum())


def test_the_kill_switch_and_model_versions(live_state):
    nq = db.load_instrument(live_state, CFG, "NQ")
    panel = db.health_panel(nq, live_state)
    assert panel.alarm and "PAPER" in panel.verdict and NQ_TRIP in panel.verdict
    switch = panel.frames["kill_switch"].iloc[0]
    assert switch["mode"] == "paper" and switch["by"] == "monitoring" and switch["why"] == NQ_TRIP
    assert panel.frames["audit"]["event"].tolist() == ["trip"]
    assert NQ_TRIP in nq.engine["health"]  # the engine read the switch and held NQ on paper
    versions = panel.frames["versions"].set_index("version")
    assert versions.loc["NQ_v1", "stage"] == "production"
    assert "live_parity" in versions.loc["NQ_v1", "gates"]  # no minute data was given to that gate
    es = db.health_panel(db.load_instrument(live_state, CFG, "ES"), live_state)
    assert not es.alarm and es.frames["kill_switch"]["mode"].iloc[0] == "live"
    overview = db.overview(live_state, SYMBOLS).set_index("instrument")
    assert overview["switch"].to_dict() == {"ES": "live", "NQ": "PAPER"}


def test_recent_alerts_of_the_instrument_and_the_desk(live_state):
    panel = db.alerts_panel(live_state, "ES")
    table = panel.frames["alerts"]
    assert table["kind"].tolist() == ["accuracy_drop", "run_failed"]  # newest first; NQ's is not ES's
    assert table["status"].eq("not_configured").all() and "not delivered" in panel.notes[0]
    assert db.alerts_panel(live_state, "NQ").frames["alerts"]["kind"].tolist() == ["kill_switch", "run_failed"]


def test_a_panel_without_data_says_so(tmp_path):
    paths = db.DashboardPaths(state_dir=tmp_path / "live", model_store=tmp_path / "models", lake_dir=tmp_path / "lake",
                              alerts_dir=tmp_path / "alerts")
    d = db.load_instrument(paths, CFG, "ES")
    assert {"log", "engine", "model", "lake"} <= set(d.problems)
    panels = [db.equity_panel(d, None, db.why_missing(d, "engine")), db.accuracy_panel(d),
              db.drift_panel(d, None, None), db.veto_panel(d), db.alerts_panel(paths, "ES")]
    for panel in panels:
        assert panel.empty and panel.frames == {} and panel.figure is None, panel
    assert "no live engine state" in panels[0].empty and "prediction log" in panels[1].empty
    health = db.health_panel(d, paths)
    assert not health.alarm and "no live engine state" in health.notes[0]


def test_money_is_written_one_way():
    frame = pd.DataFrame({"net_pnl": [12345.4, -6774.0, np.nan], "win_rate": [0.5, 0.123, None],
                          "trades": [3.0, 4.0, 5.0], "at": pd.to_datetime(["2024-01-02 10:00"] * 3, utc=True)})
    out = db.shown(frame)
    assert out["net_pnl"].tolist() == ["$12,345", "-$6,774", "n/a"]
    assert out["win_rate"].tolist() == ["50.0%", "12.3%", "n/a"]
    assert out["trades"].tolist() == ["3", "4", "5"] and out["at"].iloc[0] == "2024-01-02 10:00 UTC"


# --- the real app in headless Chromium ---------------------------------------------------------


def _wait_for_panels(page, symbol: str, timeout_ms: int = 90_000) -> None:
    """Streamlit draws asynchronously: wait for the header, then for every panel's content."""
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name=symbol, exact=True)).to_be_visible(timeout=timeout_ms)
    for key in PANELS:
        panel = page.locator(f".st-key-panel-{key}")
        expect(panel.get_by_role("heading", name=db.TITLES[key])).to_be_visible(timeout=timeout_ms)
        expect(panel.locator('[data-testid="stAlert"], [data-testid="stTable"]').first).to_be_visible(
            timeout=timeout_ms)
        if key not in ("health", "alerts"):
            expect(panel.get_by_role("img", name=f"{db.TITLES[key]} chart")).to_be_visible(timeout=timeout_ms)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)


def _screenshot(page, path: Path) -> None:
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": int(height) + 40})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_the_dashboard_in_headless_chromium(live_state, dashboard_server, chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url = dashboard_server.wait_ready()
    assert url.startswith("http://127.0.0.1:") and "--host" not in " ".join(dashboard_server.proc.args)
    with socket.socket() as other, pytest.raises(ConnectionRefusedError):  # bound to 127.0.0.1 alone by default
        other.connect(("127.0.0.2", dashboard_server.port))
    started = time.monotonic()
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error"
                    else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(url)
            _wait_for_panels(page, "ES")
            main = page.locator('[data-testid="stMain"]')
            for key in PANELS:  # each panel with its data, none saying it has none or could not draw
                text = page.locator(f".st-key-panel-{key}").inner_text()
                assert "No data:" not in text and "Could not draw" not in text, f"{key}: {text[:500]}"
            expect(page.locator(".st-key-panel-equity")).to_contain_text("tracking difference $0")
            expect(page.locator(".st-key-panel-health")).to_contain_text("never tripped")
            expect(page.locator(".st-key-panel-alerts")).to_contain_text("ES rolling accuracy 48%")
            expect(page.locator(".st-key-panel-veto")).to_contain_text("2023-09")
            expect(page.locator(".st-key-panel-drift")).to_contain_text("psi_threshold")
            assert page.locator('[data-testid="stException"]').count() == 0
            _screenshot(page, tmp_path / "dashboard-ES.png")
            es_seconds = time.monotonic() - started

            page.locator('[data-testid="stSelectbox"]').click()
            page.get_by_role("option", name="NQ").click()
            _wait_for_panels(page, "NQ")
            expect(page.locator(".st-key-panel-health")).to_contain_text("held on PAPER")
            expect(page.locator(".st-key-panel-alerts")).to_contain_text("NQ switched to paper")
            assert "No data:" not in main.inner_text() and "Could not draw" not in main.inner_text()
            assert page.locator('[data-testid="stException"]').count() == 0
            _screenshot(page, tmp_path / "dashboard-NQ.png")

            # the Dagster UI's report_url: a version's stored model card, and nothing but a version
            version = ModelStore(live_state.model_store).production("ES")
            page.goto(f"{url}?report={version}")
            card = page.frame_locator("iframe").locator("body")
            expect(card).to_contain_text(f"{version}: ES veto model", timeout=60_000)
            expect(card).to_contain_text("Holdout: veto on vs veto off")
            page.goto(f"{url}?report=../../../etc/passwd")
            expect(page.locator('[data-testid="stMain"]')).to_contain_text("No report for '../../../etc/passwd'",
                                                                          timeout=60_000)
            assert page.locator("iframe").count() == 0
        finally:
            browser.close()
    assert not problems, problems
    assert "Traceback" not in dashboard_server.log(), dashboard_server.log()[-3000:]
    print(f"\nscreenshots: {tmp_path}/dashboard-ES.png, dashboard-NQ.png (ES page in {es_seconds:.1f} s)")
