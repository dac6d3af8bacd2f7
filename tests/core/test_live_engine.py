"""The live engine end to end on sample minute data: a paper replay makes exactly the
backtest's trades; kill -9 at random instants and restarts give the uninterrupted run's
trades with no order twice; bad bars and feed problems are logged and never traded on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rooney_core.backtest.runner import TRADE_COLUMNS, run_backtest
from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.errors import RooneyError
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.live.engine import LiveEngine, history_from_raw, status_of
from rooney_core.live.feeds import replay_feed
from rooney_core.live.predictions import events, predictions
from rooney_core.model import ModelStore
from rooney_core.sample_market import load_sample_market, write_sample_data

CFG = load_config()
START = "2023-01-03"
COMPARE = [c for c in TRADE_COLUMNS if c != "signal_index"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("live_market")
    write_sample_data(out, ["ES", "NQ"], "2021-01-01", "2023-03-31", seed=4, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=5)
    return out


@pytest.fixture(scope="module")
def backtest_trades(market):
    own = load_session_bars(market, CFG.instrument("ES")).hourly
    pair = load_session_bars(market, CFG.instrument("NQ")).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, "ES", own, pair))
    res = run_backtest(own, feats, CFG.instrument("ES"), CFG.strategy, start=START, model=None)
    return res.trades[COMPARE]


def run_engine(market, state_dir, store_root, symbols=("ES",)) -> LiveEngine:
    engine = LiveEngine(CFG, list(symbols), ModelStore(store_root), state_dir, paper=True)
    replay_from = engine.start(history_from_raw(CFG, market), START)
    engine.run(replay_feed(CFG, market, sorted({*symbols, "NQ"})), replay_from, close_at_end=True)
    return engine


def engine_trades(engine, symbol="ES") -> pd.DataFrame:
    got = pd.DataFrame(engine.instruments[symbol].core.trades, columns=TRADE_COLUMNS)[COMPARE]
    for col in ("signal_time", "entry_time", "exit_signal_time", "exit_time"):
        got[col] = pd.to_datetime(got[col])
    return got.astype({"probability": float})


def test_a_paper_replay_makes_the_backtests_trades(market, backtest_trades, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="rooney_core.live"):
        engine = run_engine(market, tmp_path / "state", tmp_path / "store")
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]  # clean data: no gap
    want = backtest_trades.astype({"probability": float}).reset_index(drop=True)
    got = engine_trades(engine)
    # the backtest closes nothing after the data ends; neither does the engine
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=0, atol=0)
    assert len(got) > 20
    written = pd.read_csv(tmp_path / "state" / "trades.csv", parse_dates=["entry_time", "exit_time"])
    assert written["pnl_net"].tolist() == got["pnl_net"].tolist()
    assert (written["exit_time"] == got["exit_time"]).all()
    log = predictions(tmp_path / "state" / "predictions")
    entered = log[log["decision"] == "enter"]
    assert len(entered) == len(got) + (1 if engine.instruments["ES"].core.position is not None else 0)
    assert entered["pnl_net"].dropna().round(2).tolist() == got["pnl_net"].tolist()
    status = status_of(tmp_path / "state")
    assert status["instruments"]["ES"]["trades"] == len(got) and status["paper"] is True


def _live_cmd(market, state_dir, store_root, start="2023-02-15"):
    import sys

    return [sys.executable, "-m", "rooney_pipeline.cli", "live", "--symbols", "ES", "--paper",
            "--feed", f"replay:{market}", "--from", start, "--state-dir", str(state_dir)], \
        {**__import__("os").environ, "ROONEY_MODEL_STORE": str(store_root)}


def _raw_records(log_dir) -> list[str]:
    """Every record of a prediction log's segments as written, read line by line with no
    merging (canonical JSON without ``logged_at``; a line torn by a kill does not parse and
    is not a record): a record written twice is here twice."""
    import json

    out = []
    for seg in sorted(log_dir.glob("*/*.jsonl")):
        for line in seg.read_bytes().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            rec.pop("logged_at")
            out.append(json.dumps(rec, sort_keys=True))
    return out


def _assert_written_once(log_dir) -> pd.DataFrame:
    """No record twice in the raw log: one signal per prediction id, one fill and one outcome
    per signal, one exit order per order id."""
    ev = events(log_dir)
    if ev.empty:
        return ev
    for kind, key in (("signal", "prediction_id"), ("fill", "prediction_id"), ("outcome", "prediction_id"),
                      ("exit_order", "order_id")):
        part = ev[ev["event"] == kind]
        dup = part[part[key].duplicated(keep=False)]
        assert dup.empty, f"{kind} records written twice:\n{dup}"
    return ev


def _progress(state_dir) -> tuple[int, int]:
    """(ES bars decided per the state file, prediction-log records written)."""
    import json

    try:
        bars = json.loads((state_dir / "state.json").read_text())["instruments"]["ES"]["core"]["bars_seen"]
    except (FileNotFoundError, ValueError, KeyError):  # replaced atomically: missing before the first write
        bars = 0
    lines = sum(f.read_bytes().count(b"\n") for f in (state_dir / "predictions").glob("*/*.jsonl"))
    return bars, lines


@pytest.mark.slow
def test_kill_9_at_random_instants_then_restart_gives_the_uninterrupted_trades(market, tmp_path):
    """R7: SIGKILL the engine at random points of a replay and restart it each time; the
    final trades and the prediction log equal an uninterrupted run's: nothing lost, nothing
    twice. The kill points are random amounts of the engine's own progress (bars decided per
    its state file, or records fsynced to its prediction log: the latter lands between a
    decision's log record and the state write), never wall-clock times, so every planned
    kill lands on a machine of any speed."""
    import random
    import signal
    import subprocess
    import time

    cmd, env = _live_cmd(market, tmp_path / "clean", tmp_path / "store")
    clean = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []  # a reader (as a Dagster asset would be) while the engine replays
    while clean.poll() is None:
        if (tmp_path / "clean" / "predictions").is_dir():
            seen.append(len(_assert_written_once(tmp_path / "clean" / "predictions")))
    assert clean.returncode == 0, clean.stderr.read()[-3000:]
    assert seen == sorted(seen) and len(set(seen)) > 2  # it saw the log grow, consistently
    want = (tmp_path / "clean" / "trades.csv").read_text()
    assert want.count("\n") > 5
    total_bars, total_records = _progress(tmp_path / "clean")
    assert total_bars > 300 and total_records > 50

    # four kills, each after a random share of the run (at most a sixth: the run cannot end first)
    rng = random.Random(3)
    plan = [("bars", rng.randint(total_bars // 25, total_bars // 6)) if i % 2 == 0
            else ("records", rng.randint(1, max(1, total_records // 6))) for i in range(4)]
    state = tmp_path / "killed"
    cmd, env = _live_cmd(market, state, tmp_path / "store")
    kills = []
    for what, amount in [*plan, (None, None)]:
        base = _progress(state)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if what is None:  # the last run goes to the end
            _, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-3000:]
            break
        i = 0 if what == "bars" else 1
        deadline = time.monotonic() + 900
        while _progress(state)[i] < base[i] + amount:
            assert proc.poll() is None, f"the engine ended before the planned kill ({what} +{amount}): " \
                                        f"{proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no progress in 15 minutes"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        kills.append((what, amount, _progress(state)))
    assert len(kills) == 4, kills
    bars_at_kill = [k[2][0] for k in kills]
    assert bars_at_kill == sorted(bars_at_kill) and bars_at_kill[-1] < total_bars  # each landed mid-run
    assert (state / "trades.csv").read_text() == want
    _assert_written_once(state / "predictions")  # restarts redo bars; no record is written twice
    assert sorted(_raw_records(state / "predictions")) == sorted(_raw_records(tmp_path / "clean" / "predictions"))


@pytest.fixture(scope="module")
def stored_model(market, tmp_path_factory):
    """A small forest stored as ES_v1 (trained on 2021-2022 veto-off trades)."""
    from sklearn.ensemble import RandomForestClassifier

    from rooney_core.model import VetoBundle

    own = load_session_bars(market, CFG.instrument("ES")).hourly
    pair = load_session_bars(market, CFG.instrument("NQ")).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, "ES", own, pair))
    names = ["ibs", "rsi2", "ret3", "volume_pctl252", "atr5_z252", "d_rsi2", "hour"]
    tr = run_backtest(own, feats, CFG.instrument("ES"), CFG.strategy, veto_enabled=False, end="2022-12-31").trades
    x = feats.loc[pd.DatetimeIndex(tr["signal_time"]), names]
    ok = x.notna().all(axis=1).to_numpy()
    forest = RandomForestClassifier(n_estimators=30, max_depth=4, min_samples_leaf=20, random_state=2, n_jobs=1)
    forest.fit(x[ok].to_numpy(), (tr["pnl_net"] > 0).to_numpy()[ok])
    store = ModelStore(tmp_path_factory.mktemp("store"))
    store.add_version(VetoBundle(symbol="ES", estimator=forest, feature_names=names, threshold=0.5,
                                 registry_version="t", feature_schema_hash="t", data_hash="t"))
    return store


def test_parity_gate_holds_with_a_model_and_names_the_first_divergence(market, stored_model, monkeypatch):
    from rooney_core.live import paper
    from rooney_core.live.parity import parity_check

    report = parity_check(CFG, "ES", market, stored_model, model="ES_v1", months=2)
    assert report.ok, report.summary()
    assert report.trades > 10 and report.features_checked > 20_000
    # a paper broker one tick worse than the backtest's fills is caught, with the bar named
    real = paper.PaperBroker.fill_at_open
    monkeypatch.setattr(paper.PaperBroker, "fill_at_open",
                        lambda self, ts, o: (f := real(self, ts, o)) and paper.PaperFill(f.time, f.side, f.contracts,
                                                                                          f.price + 0.25))
    bad = parity_check(CFG, "ES", market, stored_model, model="ES_v1", months=2)
    assert not bad.ok
    first = bad.divergences[0]
    assert first["field"] in ("decision.price", "trade.entry_price") and first["live"] == first["backtest"] + 0.25
    assert "DIVERGES" in bad.summary() and first["bar"] in bad.summary()


def test_parity_cli_exit_codes(market, stored_model):
    from click.testing import CliRunner

    from rooney_pipeline.cli import cli

    env = {"ROONEY_MODEL_STORE": str(stored_model.root)}
    res = CliRunner().invoke(cli, ["parity", "--symbol", "ES", "--model", "ES_v1", "--months", "1",
                                   "--data-dir", str(market)], env=env, obj={})
    assert res.exit_code == 0 and "identical" in res.output, res.output
    res = CliRunner().invoke(cli, ["parity", "--symbol", "ES", "--model", "ES_v9", "--data-dir", str(market)],
                             env=env, obj={})
    assert res.exit_code == 1 and "unknown model version" in res.output


def _dirty(feed, symbol="ES", every=97):
    """The feed with bad minutes slipped in for ``symbol``: a conflicting duplicate, one out of
    order, a NaN price, High < Low, and an unreadable line; the real minutes are untouched."""
    from rooney_core.live.feeds import FeedProblem, MinuteBar

    prev = None
    for n, bar in enumerate(feed):
        yield bar
        if not isinstance(bar, MinuteBar) or bar.symbol != symbol:
            continue
        k = n % (every * 5)
        if k == 0:
            yield bar._replace(close=bar.close + 5.0)  # duplicate timestamp, other values
        elif k == every and prev is not None:
            yield prev._replace(volume=prev.volume + 1)  # out of order
        elif k == 2 * every:
            yield bar._replace(timestamp=bar.timestamp + 30, close=float("nan"))
        elif k == 3 * every:
            yield bar._replace(timestamp=bar.timestamp + 30, high=bar.low - 1.0)
        elif k == 4 * every:
            yield FeedProblem(symbol, "feed line 12345", "not a minute bar: garbage")
        prev = bar


def test_bad_bars_are_logged_never_traded_on_and_other_instruments_trade_on(market, backtest_trades, tmp_path,
                                                                             caplog):
    import logging

    engine = LiveEngine(CFG, ["ES", "NQ"], ModelStore(tmp_path / "store"), tmp_path / "state", paper=True)
    replay_from = engine.start(history_from_raw(CFG, market), START)
    with caplog.at_level(logging.WARNING):
        engine.run(_dirty(replay_feed(CFG, market, ["ES", "NQ"])), replay_from, close_at_end=True)
    rejected = engine.builders["ES"].rejected
    assert {"duplicate-timestamp", "unsorted", "nan", "high-below-low"} <= set(rejected), rejected
    assert engine.problems >= sum(rejected.values())
    assert "ES" in caplog.text and "bar rejected" in caplog.text and "garbage" in caplog.text
    # the bad minutes never entered a bar: ES trades exactly as on clean data
    pd.testing.assert_frame_equal(engine_trades(engine, "ES"),
                                  backtest_trades.astype({"probability": float}).reset_index(drop=True),
                                  check_dtype=False, rtol=0, atol=0)
    assert len(engine.instruments["NQ"].core.trades) > 20  # NQ traded on throughout
    assert status_of(tmp_path / "state")["instruments"]["ES"]["last_error"]


def test_a_tampered_production_bundle_stops_only_its_instrument(market, stored_model, tmp_path):
    import shutil

    store = ModelStore(tmp_path / "store")
    shutil.copytree(stored_model.root, store.root)
    store.promote("ES_v1", by="test")
    path = store.versions_dir / "ES_v1" / "bundle.skops"
    path.write_bytes(path.read_bytes() + b"x")
    engine = LiveEngine(CFG, ["ES", "NQ"], store, tmp_path / "state", paper=True)
    replay_from = engine.start(history_from_raw(CFG, market), "2023-03-01")
    engine.run(replay_feed(CFG, market, ["ES", "NQ"]), replay_from, close_at_end=True)
    es = status_of(tmp_path / "state")["instruments"]["ES"]
    assert "changed on disk" in es["trading"] and es["trades"] == 0
    assert len(engine.instruments["NQ"].core.trades) > 3


def test_a_failing_webhook_is_retried_alerted_and_never_dropped(market, tmp_path, caplog):
    import logging

    from test_order_router import Receiver

    from rooney_core.live.router import WebhookRouter

    rx = Receiver([500] * 10_000)
    try:
        router = WebhookRouter(rx.url, "secret-xyz", attempts=2, timeout=0.5, backoff=0.0)
        engine = LiveEngine(CFG, ["ES"], ModelStore(tmp_path / "store"), tmp_path / "state", paper=False,
                            router=router)
        replay_from = engine.start(history_from_raw(CFG, market), "2023-03-20")
        with caplog.at_level(logging.ERROR):
            engine.run(replay_feed(CFG, market, ["ES", "NQ"]), replay_from, close_at_end=True)
    finally:
        rx.close()
    failed = [e for e in caplog.records if "ALERT ES" in e.getMessage()]
    orders = [d for d in engine.instruments["ES"].core.decisions if d["event"] in ("entry_order", "exit_order")]
    assert orders and len(failed) == len(orders)  # each undelivered order alerted
    assert len(rx.received) == 2 * len(orders)  # retried, one idempotency key per order
    assert len({k for _, k, _ in rx.received}) == len(orders)
    assert "secret-xyz" not in caplog.text and rx.url not in caplog.text
    log = pd.DataFrame(__import__("rooney_core.live.predictions", fromlist=["events"]).events(
        tmp_path / "state" / "predictions"))
    assert (log["event"] == "order_failed").sum() == len(orders)


def test_live_trades_csv_diffs_clean_against_rooney_backtest(market, tmp_path):
    """`rooney live --paper --feed replay:` and `rooney backtest` over the same period write
    byte-identical trades.csv files: the two compare with one diff."""
    from click.testing import CliRunner

    from rooney_pipeline.cli import cli

    env = {"ROONEY_MODEL_STORE": str(tmp_path / "store")}
    bt = CliRunner().invoke(cli, ["backtest", "--data-dir", str(market), "--symbol", "ES", "--start", "2023-02-01",
                                  "--out", str(tmp_path / "bt")], env=env, obj={})
    assert bt.exit_code == 0, bt.output
    lv = CliRunner().invoke(cli, ["live", "--symbols", "ES", "--paper", "--feed", f"replay:{market}", "--from",
                                  "2023-02-01", "--state-dir", str(tmp_path / "live")], env=env, obj={})
    assert lv.exit_code == 0, lv.output
    assert (tmp_path / "live" / "trades.csv").read_text() == (tmp_path / "bt" / "trades.csv").read_text()
    assert "ES: model none" in (tmp_path / "live" / "engine.log").read_text()  # its log beside its state
    st = CliRunner().invoke(cli, ["live", "--state-dir", str(tmp_path / "live"), "status"], obj={})
    assert st.exit_code == 0 and "ES" in st.output and "heartbeat" in st.output, st.output


def test_the_kill_switch_keeps_every_order_in_the_process(market, tmp_path, monkeypatch, caplog):
    import logging

    from test_order_router import Receiver

    from rooney_core.live.router import WebhookRouter

    monkeypatch.setenv("POLICY_KILLSWITCH", "true")
    rx = Receiver([])
    try:
        engine = LiveEngine(CFG, ["ES"], ModelStore(tmp_path / "store"), tmp_path / "state", paper=False,
                            router=WebhookRouter(rx.url))
        assert engine.paper and engine.kill_switch
        replay_from = engine.start(history_from_raw(CFG, market), "2023-03-20")
        with caplog.at_level(logging.INFO, logger="rooney_core.live"):
            engine.run(replay_feed(CFG, market, ["ES", "NQ"], since=replay_from), replay_from, close_at_end=True)
    finally:
        rx.close()
    orders = [d for d in engine.instruments["ES"].core.decisions if d["event"] in ("entry_order", "exit_order")]
    assert orders and rx.received == []
    assert caplog.text.count("kill switch:") == len(orders) and "not sent (paper)" in caplog.text
    assert status_of(tmp_path / "state")["kill_switch"] is True


def test_the_model_health_kill_switch_holds_its_instrument_on_paper_until_an_audited_restore(market, tmp_path,
                                                                                          caplog):
    """Monitoring tripped ES (health.json in the model store): a live engine sends none of
    ES's orders, says why and shows it in its state; after the audited restore, a new engine
    routes ES's orders again."""
    import logging

    from test_order_router import Receiver

    from rooney_core.live.router import WebhookRouter
    from rooney_core.monitoring.health import HealthState

    store = ModelStore(tmp_path / "store")
    health = HealthState(store.root)
    health.trip("ES", ["feature NaN rate 0.30 > 0.05"], by="monitoring test")

    def run(state):
        rx = Receiver([])
        try:
            engine = LiveEngine(CFG, ["ES"], store, state, paper=False, router=WebhookRouter(rx.url))
            replay_from = engine.start(history_from_raw(CFG, market), "2023-03-20")
            engine.run(replay_feed(CFG, market, ["ES", "NQ"], since=replay_from), replay_from, close_at_end=True)
        finally:
            rx.close()
        return engine, rx.received

    with caplog.at_level(logging.INFO, logger="rooney_core.live"):
        engine, received = run(tmp_path / "tripped")
    orders = [d for d in engine.instruments["ES"].core.decisions if d["event"] in ("entry_order", "exit_order")]
    assert orders and received == []
    assert "model-health kill switch: paper only (feature NaN rate 0.30 > 0.05)" in caplog.text
    assert caplog.text.count("model-health kill switch: buy") + caplog.text.count("model-health kill switch: sell") \
        == len(orders)
    tripped = status_of(tmp_path / "tripped")["instruments"]["ES"]
    assert tripped["health"] == "feature NaN rate 0.30 > 0.05"
    assert tripped["trading"] == "paper only (model-health kill switch: feature NaN rate 0.30 > 0.05)"
    health.restore("ES", by="desk", reason="features fixed")
    engine, received = run(tmp_path / "restored")
    assert engine.instruments["ES"].health is None and len(received) == len(
        [d for d in engine.instruments["ES"].core.decisions if d["event"] in ("entry_order", "exit_order")]) > 0


def test_the_kill_switch_from_the_config_forces_paper_without_the_environment(market, tmp_path, config_dir,
                                                                              monkeypatch):
    """pipeline.yml live.kill_switch: true: `rooney live` without --paper (and with a webhook
    configured) sends nothing and says so; status shows the switch."""
    from click.testing import CliRunner

    from rooney_pipeline.cli import cli

    monkeypatch.delenv("POLICY_KILLSWITCH", raising=False)
    pipe = config_dir / "pipeline.yml"
    pipe.write_text(pipe.read_text().replace("kill_switch: false", "kill_switch: true"))
    env = {"ROONEY_MODEL_STORE": str(tmp_path / "store"), "ROONEY_CONFIG_DIR": str(config_dir),
           "ROONEY_WEBHOOK_URL": "http://127.0.0.1:9/never", "ROONEY_WEBHOOK_SECRET": "s3cret"}
    lv = CliRunner().invoke(cli, ["live", "--symbols", "ES", "--feed", f"replay:{market}", "--from", "2023-03-01",
                                  "--state-dir", str(tmp_path / "live")], env=env, obj={})
    assert lv.exit_code == 0, lv.output
    assert "kill switch on" in lv.output and "LIVE via" not in lv.output
    assert status_of(tmp_path / "live")["kill_switch"] is True and status_of(tmp_path / "live")["paper"] is True


def test_a_version_in_the_paper_stage_trades_on_paper_only_for_its_instrument(market, stored_model, tmp_path, caplog):
    """gates -> paper: the engine runs the staged version of ES in paper mode (kill switch on
    for ES only): its decisions are the backtest's with that version, no ES order reaches the
    webhook, while NQ (no model, trading unfiltered per strategy.yml) routes its orders."""
    import logging
    import shutil

    from test_order_router import Receiver

    from rooney_core.live.router import WebhookRouter

    store = ModelStore(tmp_path / "store")
    shutil.copytree(stored_model.root, store.root)
    store.stage_paper("ES_v1", by="test", reason="gates passed", sessions=10)
    rx = Receiver([])
    try:
        engine = LiveEngine(CFG, ["ES", "NQ"], store, tmp_path / "state", paper=False, router=WebhookRouter(rx.url))
        replay_from = engine.start(history_from_raw(CFG, market), "2023-03-01")
        with caplog.at_level(logging.INFO, logger="rooney_core.live"):
            engine.run(replay_feed(CFG, market, ["ES", "NQ"], since=replay_from), replay_from, close_at_end=True)
    finally:
        rx.close()
    es, nq = engine.instruments["ES"], engine.instruments["NQ"]
    assert es.model.version == "ES_v1" and es.model.stage == "paper"
    es_orders = [d for d in es.core.decisions if d["event"] in ("entry_order", "exit_order")]
    nq_orders = [d for d in nq.core.decisions if d["event"] in ("entry_order", "exit_order")]
    assert es_orders and nq_orders
    keys = [key for _, key, _ in rx.received]  # the idempotency key is the client order id
    assert len(keys) == len(nq_orders) and all(k.startswith("NQ-") for k in keys)
    assert caplog.text.count("paper stage (ES_v1)") == len(es_orders)
    own = load_session_bars(market, CFG.instrument("ES")).hourly
    pair = load_session_bars(market, CFG.instrument("NQ")).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, "ES", own, pair))
    bt = run_backtest(own, feats, CFG.instrument("ES"), CFG.strategy, model=store.load("ES_v1"), start="2023-03-01")
    got = pd.DataFrame(es.core.trades)
    assert len(got) == len(bt.trades) and (got["pnl_net"].to_numpy() == bt.trades["pnl_net"].to_numpy()).all()
    st = status_of(tmp_path / "state")
    assert st["instruments"]["ES"]["stage"] == "paper" and st["instruments"]["NQ"]["stage"] == "production"
    assert st["instruments"]["ES"]["watched"] is False
    # graduated: production from the next session, watched in its first week
    store.promote("ES_v1", by="test", reason="paper passed")
    engine = LiveEngine(CFG, ["ES"], store, tmp_path / "state2", paper=True)
    engine.start(history_from_raw(CFG, market), "2023-06-01")
    assert engine.instruments["ES"].model.stage == "production"
    assert status_of(tmp_path / "state2")["instruments"]["ES"]["watched"] is True


def test_the_state_holds_no_closed_trades_and_a_restart_takes_them_from_the_trades_file(market, tmp_path):
    """The per-bar state stays small (closed trades live in <SYM>_trades.csv); a restart
    reads them back, and a trades file that lost lines is refused, not silently shortened."""
    import json

    engine = LiveEngine(CFG, ["ES"], ModelStore(tmp_path / "store"), tmp_path / "state", paper=True)
    replay_from = engine.start(history_from_raw(CFG, market), "2023-03-01")
    engine.run(replay_feed(CFG, market, ["ES", "NQ"], since=replay_from), replay_from, close_at_end=True)
    n = len(engine.instruments["ES"].core.trades)
    saved = json.loads((tmp_path / "state" / "state.json").read_text())["instruments"]["ES"]["core"]
    assert n > 5 and saved["trades"] == [] and saved["trades_count"] == n
    again = LiveEngine(CFG, ["ES"], ModelStore(tmp_path / "store"), tmp_path / "state", paper=True)
    again.start(history_from_raw(CFG, market), "2023-03-01")
    restored = again.instruments["ES"].core.trades
    assert len(restored) == n and [t["pnl_net"] for t in restored] == [t["pnl_net"] for t in engine.instruments["ES"].core.trades]
    path = tmp_path / "state" / "ES_trades.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(RooneyError, match="holds .* trades, the engine state records"):
        LiveEngine(CFG, ["ES"], ModelStore(tmp_path / "store"), tmp_path / "state", paper=True).start(
            history_from_raw(CFG, market), "2023-03-01")


def test_a_new_version_is_picked_up_at_a_session_boundary_when_flat(market, stored_model, tmp_path):
    import shutil

    from rooney_core.model import VetoBundle

    store = ModelStore(tmp_path / "store")
    shutil.copytree(stored_model.root, store.root)
    store.promote("ES_v1", by="test")
    v1 = store.load("ES_v1")
    v2 = store.add_version(VetoBundle(symbol="ES", estimator=v1.estimator, feature_names=v1.feature_names,
                                      threshold=0.0, registry_version="t", feature_schema_hash="t", data_hash="t"))
    promote_at = pd.Timestamp("2023-03-08 10:30")

    def feed():
        promoted = False
        for item in replay_feed(CFG, market, ["ES", "NQ"], since=replay_from):
            if not promoted and item.timestamp >= promote_at:
                store.promote(v2, by="trader")  # in the middle of a session
                promoted = True
            yield item

    engine = LiveEngine(CFG, ["ES"], store, tmp_path / "state", paper=True)
    replay_from = engine.start(history_from_raw(CFG, market), "2023-03-01")
    engine.run(feed(), replay_from, close_at_end=True)
    log = predictions(tmp_path / "state" / "predictions")
    log["bar_time"] = pd.to_datetime(log["bar_time"])
    first_v2 = log.loc[log["model_version"] == v2, "bar_time"].min()
    assert (log.loc[log["bar_time"] < first_v2, "model_version"] == "ES_v1").all()
    cal = CFG.instrument("ES").calendar
    assert cal.trading_date(np.array([first_v2.to_datetime64()]))[0] > \
        cal.trading_date(np.array([promote_at.to_datetime64()]))[0]
    trades = engine_trades(engine)
    assert not ((trades["entry_time"] < first_v2) & (trades["exit_time"] > first_v2)).any()


@pytest.mark.parametrize("case", ["gap_of_hours", "missing_session", "pair_feed_stops"])
def test_gaps_and_a_stopped_pair_feed_decide_as_the_backtest(market, tmp_path, case, caplog):
    """A gap of hours or a whole session missing in both feeds, or the pair's feed stopping
    while the instrument trades on:
    the live path decides exactly as the backtest on the same files (pair features go missing
    after the staleness limit in both), and the instrument keeps trading. The engine says so:
    a warning naming the instrument and the bar, and the instrument's last error in
    `rooney live status`."""
    import logging

    from rooney_core.live.parity import parity_check

    for sym in ("ES", "NQ"):
        frame = pd.read_csv(market / f"{sym}_bt.csv")
        ts = pd.to_datetime(frame["datetime"])
        if case == "gap_of_hours":
            drop = (ts >= "2023-03-15 08:00") & (ts < "2023-03-15 13:00")
        elif case == "missing_session":  # the session of Wednesday 2023-03-15 (Tuesday 17:00-16:00)
            drop = (ts >= "2023-03-14 17:00") & (ts < "2023-03-15 17:00")
        else:
            drop = (ts >= "2023-03-15 10:00") if sym == "NQ" else ts < ts.min()
        frame[~drop.to_numpy()].to_csv(tmp_path / f"{sym}_bt.csv", index=False)
    report = parity_check(CFG, "ES", tmp_path, ModelStore(tmp_path / "store"), months=1)
    assert report.ok, report.summary()
    assert report.trades > 10

    state = tmp_path / "state"
    engine = LiveEngine(CFG, ["ES"], ModelStore(tmp_path / "store"), state, paper=True, record_rows=True)
    replay_from = engine.start(history_from_raw(CFG, tmp_path), report.start)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rooney_core.live"):
        engine.run(replay_feed(CFG, tmp_path, ["ES", "NQ"], since=replay_from), replay_from, close_at_end=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    es_error = status_of(state)["instruments"]["ES"]["last_error"]
    st = engine.instruments["ES"]
    if case == "gap_of_hours":
        gaps = [m for m in warnings if "gap in the feed" in m]
        # one per feed, at the bar after the gap, naming the missing hours; nothing else is a gap
        assert sorted(m.split(":")[0] for m in gaps) == ["ES 2023-03-15 13", "NQ 2023-03-15 13"], gaps
        es_gap = next(m for m in gaps if m.startswith("ES"))
        assert "5 in-session hour(s) from 2023-03-15 08:00:00 to 2023-03-15 12:00:00" in es_gap
        assert "previous bar 2023-03-15 07:00:00" in es_gap
        assert es_error.startswith("pair NQ 2023-03-15 13:00:00: gap in the feed")  # NQ's, the later report
        assert not any("stale" in m for m in warnings)
    elif case == "missing_session":
        gaps = [m for m in warnings if "gap in the feed" in m]
        assert sorted(m.split(":")[0] for m in gaps) == ["ES 2023-03-15 17", "NQ 2023-03-15 17"], gaps
        assert all("23 in-session hour(s) from 2023-03-14 17:00:00 to 2023-03-15 15:00:00 (1 whole session(s) "
                   "missing) (previous bar 2023-03-14 15:00:00)" in m for m in gaps), gaps
        assert "gap in the feed" in es_error
    else:
        stale = [m for m in warnings if "feed stale" in m]
        # once, at the first bar whose pair bar is older than the limit (2 h after 09:00)
        assert stale == [m for m in warnings if "NQ" in m] and len(stale) == 1, warnings
        assert stale[0].startswith("NQ feed stale at ES 2023-03-15 12:00:00: its last bar is 2023-03-15 09:00:00")
        assert "p_ibs" in stale[0]
        assert es_error == "pair " + stale[0]
        assert not any("gap in the feed" in m for m in warnings)
        pair_col = st.buffer.names.index("p_ibs")
        after = [v for t, v in st.rows if pd.Timestamp(t) >= pd.Timestamp("2023-03-15 12:00")]
        before = [v for t, v in st.rows if pd.Timestamp(t) < pd.Timestamp("2023-03-15 12:00")]
        assert after and all(np.isnan(v[pair_col]) for v in after)  # stale pair: missing, never zero
        assert not np.isnan(before[-1][pair_col])
        assert any(pd.Timestamp(t["entry_time"]) > pd.Timestamp("2023-03-16") for t in st.core.trades)


def test_a_short_warm_up_refuses_entries_until_warm_while_the_other_instrument_trades(market, stored_model,
                                                                                     tmp_path, caplog):
    """ES trades with a model whose features need 252+ hourly bars of history; it is given
    a week of them. It takes no entry (logged, and `rooney live status` says why) until the
    bars it sees make them warm; NQ, with its full history, trades throughout. While refused,
    only real base signals go to the prediction log (with the reason), not every bar."""
    import logging
    import shutil

    from rooney_core.strategy import rules
    from rooney_core.strategy.engine import bar_start_time

    store = ModelStore(tmp_path / "store")
    shutil.copytree(stored_model.root, store.root)
    store.promote("ES_v1", by="test")
    full = history_from_raw(CFG, market)

    def history(sym):
        hourly, daily = full(sym)
        if sym != "ES":
            return hourly, daily
        # hourly bars of the last week only (the daily bars are all there)
        return hourly[hourly.index >= pd.Timestamp("2023-02-21 17:00")], daily

    state = tmp_path / "state"
    engine = LiveEngine(CFG, ["ES", "NQ"], store, state, paper=True)
    with caplog.at_level(logging.INFO, logger="rooney_core.live"):
        replay_from = engine.start(history, "2023-03-01")
        at_start = status_of(state)["instruments"]
        engine.run(replay_feed(CFG, market, ["ES", "NQ"], since=replay_from), replay_from, close_at_end=True)
    short = [r.getMessage() for r in caplog.records if "history too short" in r.getMessage()]
    assert len(short) == 1 and short[0].startswith("ES: ") and "atr5_z252" in short[0] \
        and "volume_pctl252" in short[0], short
    assert at_start["ES"]["trading"].startswith("no new entries: warming up:") and "atr5_z252" in at_start["ES"][
        "trading"]
    assert at_start["NQ"]["trading"] == "yes"
    warm = [r for r in caplog.records if "every feature it decides with is warm" in r.getMessage()]
    assert len(warm) == 1 and warm[0].getMessage().startswith("ES: ")
    warm_at = pd.Timestamp(warm[0].getMessage().split(": ")[1])
    assert pd.Timestamp("2023-03-05") < warm_at < pd.Timestamp("2023-03-25")
    es = engine.instruments["ES"].core
    entries = [pd.Timestamp(d["time"]) for d in es.decisions if d["event"] == "entry_order"]
    assert entries and min(entries) >= warm_at  # none while cold, some once warm
    assert len(engine.instruments["NQ"].core.trades) > 10  # NQ trades throughout
    assert any(pd.Timestamp(t["entry_time"]) < warm_at for t in engine.instruments["NQ"].core.trades)
    assert status_of(state)["instruments"]["ES"]["trading"] == "yes"

    # the prediction log while ES was refused: exactly its base signals, each with the reason
    log = events(state / "predictions")
    refused = log[(log["event"] == "signal") & (log["instrument"] == "ES") & (log["reason"].str.startswith(
        "warming up"))]
    own = load_session_bars(market, CFG.instrument("ES")).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, "ES", own, load_session_bars(market, CFG.instrument("NQ")).hourly))
    cold = feats[(feats.index >= "2023-03-01") & (feats.index < warm_at)]
    base = [t for t, ibs in zip(cold.index, cold["ibs"], strict=True)
            if rules.entry_signal(ibs, bar_start_time(t.to_datetime64()), CFG.strategy)]
    assert 5 < len(base) < len(cold) / 4
    assert sorted(pd.to_datetime(refused["bar_time"])) == base
    assert (refused["decision"] == "skip").all()


def test_the_heartbeat_advances_with_the_feed_not_only_with_decided_bars(market, tmp_path, monkeypatch):
    """Between hourly bars the engine still takes minutes: the heartbeat (written atomically,
    at most every 5 s of the engine's clock) stays fresh. A fake clock advances 1 s per feed
    item (5-minute bars of two feeds: 24 items per hour, so ~24 s between hourly bars)."""
    from datetime import UTC, datetime, timedelta

    from rooney_core.live import engine as engine_mod

    now = [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]
    writes = []
    real_write = engine_mod.write_text_atomic
    monkeypatch.setattr(engine_mod, "write_text_atomic",
                        lambda text, target: writes.append((now[0], Path(target).name)) or real_write(text, target))
    state = tmp_path / "state"
    engine = LiveEngine(CFG, ["ES"], ModelStore(tmp_path / "store"), state, paper=True, clock=lambda: now[0],
                        heartbeat_every=5.0)
    replay_from = engine.start(history_from_raw(CFG, market), "2023-03-27")
    ages, items = [], 0

    def feed():
        nonlocal items
        for item in replay_feed(CFG, market, ["ES", "NQ"], since=replay_from):
            if items:
                ages.append(status_of(state, now=now[0])["heartbeat_age_s"])
            now[0] += timedelta(seconds=1)
            items += 1
            yield item

    engine.run(feed(), replay_from, close_at_end=True)
    assert items > 1000 and len(ages) == items - 1
    assert all(a is not None and a <= 5.0 for a in ages), ages  # never older than the rate limit
    beats = [t for t, name in writes if name == "heartbeat.json"]
    assert items / 5 - 2 <= len(beats) <= items / 5 + 2  # rate-limited: one per 5 s of clock
    assert all((b - a).total_seconds() >= 5 for a, b in zip(beats, beats[1:-1], strict=False))
    assert status_of(state, now=now[0])["heartbeat_age_s"] == 0  # the end of the feed beats too
