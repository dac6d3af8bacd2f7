"""The live engine end to end on sample minute data: a paper replay makes exactly the
backtest's trades; kill -9 at random instants and restarts give the uninterrupted run's
trades with no order twice; bad bars and feed problems are logged and never traded on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rooney_core.backtest.runner import TRADE_COLUMNS, run_backtest
from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.data.sample import load_sample_market, write_sample_data
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.live.engine import LiveEngine, history_from_raw, status_of
from rooney_core.live.feeds import replay_feed
from rooney_core.live.predictions import predictions
from rooney_core.model import ModelStore

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


def test_a_paper_replay_makes_the_backtests_trades(market, backtest_trades, tmp_path):
    engine = run_engine(market, tmp_path / "state", tmp_path / "store")
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


@pytest.mark.slow
def test_kill_9_at_random_instants_then_restart_gives_the_uninterrupted_trades(market, tmp_path):
    """R7: SIGKILL the engine at random instants of a replay and restart it each time; the
    final trades (and the prediction log's orders) equal an uninterrupted run's: nothing lost,
    nothing twice."""
    import random
    import signal
    import subprocess

    cmd, env = _live_cmd(market, tmp_path / "clean", tmp_path / "store")
    clean = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []  # a reader (as a Dagster asset would be) while the engine replays
    while clean.poll() is None:
        if (tmp_path / "clean" / "predictions").is_dir():
            log = predictions(tmp_path / "clean" / "predictions")
            assert log.empty or log["prediction_id"].is_unique
            seen.append(len(log))
    assert clean.returncode == 0, clean.stderr.read()[-3000:]
    assert seen == sorted(seen) and len(set(seen)) > 2  # it saw the log grow, consistently
    want = (tmp_path / "clean" / "trades.csv").read_text()
    assert want.count("\n") > 5

    cmd, env = _live_cmd(market, tmp_path / "killed", tmp_path / "store")
    rng = random.Random(3)
    kills = 0
    for _ in range(30):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=rng.uniform(5.0, 14.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read()[-3000:]
        break
    else:
        pytest.fail("the engine never finished")
    assert kills >= 3, "no kill landed: make the run longer or the waits shorter"
    assert (tmp_path / "killed" / "trades.csv").read_text() == want
    entries = predictions(tmp_path / "killed" / "predictions")
    clean = predictions(tmp_path / "clean" / "predictions")
    assert entries["prediction_id"].is_unique  # restarts redo bars, the log still has one row per signal
    assert sorted(entries["prediction_id"]) == sorted(clean["prediction_id"])


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

    from rooney_core.cli import cli

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

    from rooney_core.cli import cli

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


@pytest.mark.parametrize("case", ["gap_of_hours", "pair_feed_stops"])
def test_gaps_and_a_stopped_pair_feed_decide_as_the_backtest(market, tmp_path, case):
    """A gap of hours in both feeds, or the pair's feed stopping while the instrument trades on:
    the live path decides exactly as the backtest on the same files (pair features go missing
    after the staleness limit in both), and the instrument keeps trading."""
    from rooney_core.live.parity import parity_check

    for sym in ("ES", "NQ"):
        frame = pd.read_csv(market / f"{sym}_bt.csv")
        ts = pd.to_datetime(frame["datetime"])
        if case == "gap_of_hours":
            drop = (ts >= "2023-03-15 08:00") & (ts < "2023-03-15 13:00")
        else:
            drop = (ts >= "2023-03-15 10:00") if sym == "NQ" else ts < ts.min()
        frame[~drop.to_numpy()].to_csv(tmp_path / f"{sym}_bt.csv", index=False)
    report = parity_check(CFG, "ES", tmp_path, ModelStore(tmp_path / "store"), months=1)
    assert report.ok, report.summary()
    assert report.trades > 10
    if case == "pair_feed_stops":
        import tempfile

        with tempfile.TemporaryDirectory() as state:
            engine = LiveEngine(CFG, ["ES"], ModelStore(tmp_path / "store"), state, paper=True, record_rows=True,
                                persist=False)
            replay_from = engine.start(history_from_raw(CFG, tmp_path), report.start)
            engine.run(replay_feed(CFG, tmp_path, ["ES", "NQ"], since=replay_from), replay_from, close_at_end=True)
        st = engine.instruments["ES"]
        pair_col = st.buffer.names.index("p_ibs")
        after = [v for t, v in st.rows if pd.Timestamp(t) > pd.Timestamp("2023-03-15 13:00")]
        assert after and all(np.isnan(v[pair_col]) for v in after)  # stale pair: missing, never zero
        assert any(pd.Timestamp(t["entry_time"]) > pd.Timestamp("2023-03-16") for t in st.core.trades)
