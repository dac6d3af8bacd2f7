"""Alerts: the Discord webhook client against a real HTTP server on 127.0.0.1, the resource,
and the alert sensors with Dagster's sensor test utilities."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from rooney_core.model import ModelStore, VetoBundle
from rooney_core.monitoring.alerts import (
    CONTENT_MAX,
    EMBED_TOTAL_MAX,
    FIELD_VALUE_MAX,
    Alert,
    AlertDeliveryError,
    AlertError,
    AlertSink,
    DiscordWebhook,
    discord_payload,
    recent_alerts,
)
from rooney_core.monitoring.heartbeat import check_heartbeat
from rooney_core.sessions import SessionCalendar
from rooney_pipeline.resources import WEBHOOK_ENV, DiscordResource, RooneyResource, resources
from rooney_pipeline.sensors import (
    HEARTBEAT_MAX_AGE_ENV,
    LIVE_STATE_DIR_ENV,
    promotion_alert,
    run_failure_alert,
    stale_heartbeat_alert,
)

TOKEN = "tOkEn-SeCrEt-4f9a0c"  # the secret part of the webhook URL


# ---- a webhook server on 127.0.0.1 that records what arrives ---------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        srv: HookServer = self.server.hook  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        action = srv.next_action()
        srv.arrivals.append((time.monotonic(), self.path, json.loads(body), action[0]))
        kind = action[0]
        if kind == "hang":
            time.sleep(action[1])
            return
        if kind == "ok":
            self.send_response(204)
            self.end_headers()
            return
        if kind == "429":  # Discord's reply: retry_after (seconds) in the JSON body
            self._reply(429, {"message": "You are being rate limited.", "retry_after": action[1], "global": False})
            return
        if kind == "429-header":  # only the Retry-After header
            self._reply(429, {"message": "slow down"}, {"Retry-After": str(action[1])})
            return
        self._reply(action[1], {"message": "Unknown Webhook", "code": 10015} if action[1] == 404 else
                    {"message": "upstream trouble"})

    def _reply(self, status, data, headers=None):
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


class HookServer:
    """Answers each request by the next planned action ("ok", ("status", 500), ("429", s),
    ("429-header", s), ("hang", s)); "ok" when the plan is empty, or ``always``."""

    def __init__(self):
        self.arrivals: list[tuple[float, str, dict, str]] = []
        self.plan: list[tuple] = []
        self.always: tuple | None = None
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.handle_error = lambda request, client_address: None  # a client that gave up
        self.httpd.hook = self
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/api/webhooks/1234567890/{TOKEN}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def next_action(self) -> tuple:
        with self._lock:
            if self.always is not None:
                return self.always
            return self.plan.pop(0) if self.plan else ("ok",)

    @property
    def payloads(self) -> list[dict]:
        return [a[2] for a in self.arrivals]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def hook():
    srv = HookServer()
    yield srv
    srv.close()


def fast_webhook(url: str, **kw) -> DiscordWebhook:
    return DiscordWebhook(url, **{"timeout_s": 2.0, "backoff_s": 0.01, "max_backoff_s": 0.05, **kw})


def drift_alert(**kw) -> Alert:
    return Alert(**{"kind": "drift", "instrument": "ES", "summary": "ret1 drifted from its training distribution",
                    "metric": "PSI of ret1", "value": 0.3125, "threshold": 0.25,
                    "run_url": "http://127.0.0.1:3000/runs/abc-123", **kw})


def no_secret(text: str, url: str) -> None:
    assert TOKEN not in text and url not in text


# ---- the message --------------------------------------------------------------------------------


def test_message_arrives_with_instrument_threshold_and_link(hook, tmp_path):
    sink = AlertSink(tmp_path / "alerts", fast_webhook(hook.url))
    assert sink.send(drift_alert()) is True
    assert len(hook.arrivals) == 1
    _, path, payload, _ = hook.arrivals[0]
    assert path.endswith(TOKEN)
    content = payload["content"]
    assert "Feature drift: ES" in content and "0.3125" in content and "threshold 0.25" in content
    assert "http://127.0.0.1:3000/runs/abc-123" in content
    embed = payload["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Instrument"] == "ES" and fields["Threshold"] == "0.25" and fields["Value"] == "0.3125"
    assert embed["url"] == "http://127.0.0.1:3000/runs/abc-123" and "runs/abc-123" in fields["Run"]
    assert payload["allowed_mentions"] == {"parse": []}  # an error text quoting @everyone pings no one
    rows = recent_alerts(tmp_path / "alerts")
    assert [(r["kind"], r["instrument"], r["status"], r["threshold"]) for r in rows] == [("drift", "ES", "delivered",
                                                                                           0.25)]
    assert not sink.outbox_path.exists()


def test_payload_stays_within_discord_limits():
    big = Alert(kind="run_failed", instrument="NQ" * 200, summary="x" * 9000, metric="m" * 400,
                details={f"field {i}": "v" * 3000 for i in range(40)}, run_url="https://dagster.example/runs/1")
    p = discord_payload(big, username="u" * 200)
    e = p["embeds"][0]
    assert len(p["content"]) <= CONTENT_MAX and len(p["username"]) <= 80
    assert len(e["title"]) <= 256 and len(e["description"]) <= 4096 and len(e["fields"]) <= 25
    assert all(len(f["name"]) <= 256 and len(f["value"]) <= FIELD_VALUE_MAX for f in e["fields"])
    size = len(e["title"]) + len(e["description"]) + len(e["footer"]["text"]) + sum(
        len(f["name"]) + len(f["value"]) for f in e["fields"])
    assert size <= EMBED_TOTAL_MAX
    with pytest.raises(AlertError, match="unknown alert kind 'drfit'"):
        Alert(kind="drfit", summary="typo")


# ---- delivery: retries, 429, time-outs, rate limit ---------------------------------------------------


def test_retries_server_errors_then_delivers(hook, tmp_path):
    hook.plan = [("status", 500), ("status", 502)]
    assert AlertSink(tmp_path, fast_webhook(hook.url)).send(drift_alert()) is True
    assert [a[3] for a in hook.arrivals] == ["status", "status", "ok"]
    assert recent_alerts(tmp_path)[0]["status"] == "delivered"


@pytest.mark.parametrize("reply", [("429", 0.4), ("429-header", 0.4)], ids=["body retry_after", "Retry-After"])
def test_429_waits_what_discord_asks(hook, tmp_path, reply):
    hook.plan = [reply]
    # back-off alone would retry after ~0.01 s: the gap shows the server's wait was honoured
    assert AlertSink(tmp_path, fast_webhook(hook.url)).send(drift_alert()) is True
    (t0, *_), (t1, *_) = hook.arrivals
    assert len(hook.arrivals) == 2 and t1 - t0 >= 0.38


def test_a_hung_server_times_out_and_is_retried(hook, tmp_path):
    hook.plan = [("hang", 1.5)]
    started = time.monotonic()
    assert AlertSink(tmp_path, fast_webhook(hook.url, timeout_s=0.2)).send(drift_alert()) is True
    assert [a[3] for a in hook.arrivals] == ["hang", "ok"] and time.monotonic() - started < 1.2


def test_client_side_rate_limit_spreads_a_burst(hook, tmp_path):
    sink = AlertSink(tmp_path, fast_webhook(hook.url, rate=(3, 1.0)))  # 3 messages per second
    for i in range(7):
        assert sink.send(drift_alert(summary=f"burst {i}"))
    times = [a[0] for a in hook.arrivals]
    assert [p["embeds"][0]["description"] for p in hook.payloads] == [f"burst {i}" for i in range(7)]
    # a token bucket of 3 refilled at 3/s: 3 at once, then one every 1/3 s
    assert times[2] - times[0] < 0.25
    for j in range(3, 7):
        assert times[j] - times[0] >= (j - 2) / 3 - 0.03, (j, times[j] - times[0])


# ---- undeliverable: the outbox, and the secret stays secret -------------------------------------------


def test_undeliverable_alert_is_kept_in_the_outbox_and_the_log_has_no_url(hook, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    hook.always = ("status", 503)
    sink = AlertSink(tmp_path / "alerts", fast_webhook(hook.url, max_attempts=3))
    assert sink.send(drift_alert()) is False
    assert len(hook.arrivals) == 3
    outbox = [json.loads(line) for line in sink.outbox_path.read_text().splitlines()]
    assert len(outbox) == 1 and outbox[0]["alert"]["instrument"] == "ES" and outbox[0]["status"] == "undelivered"
    assert "503" in outbox[0]["error"] and outbox[0]["attempts"] == 3
    assert "not delivered" in caplog.text and f"127.0.0.1:{hook.httpd.server_port}" in caplog.text
    no_secret(caplog.text, hook.url)
    no_secret(sink.outbox_path.read_text() + sink.journal_path.read_text(), hook.url)
    # the webhook is back: the outbox is delivered and emptied, the dashboard shows it once
    hook.always = None
    assert sink.resend_outbox() == (1, 0)
    assert sink.outbox_path.read_text() == ""
    assert [(r["status"], r["summary"]) for r in recent_alerts(sink.alerts_dir)] == [
        ("delivered", "ret1 drifted from its training distribution")]


def test_the_url_never_shows_in_repr_logs_or_errors(hook, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    hook.always = ("status", 404)
    hookc = fast_webhook(hook.url)
    with pytest.raises(AlertDeliveryError) as err:
        hookc.post({"content": "x"})
    assert err.value.permanent and len(hook.arrivals) == 1  # a deleted webhook is not retried
    assert "Unknown Webhook" in str(err.value) and "ROONEY_DISCORD_WEBHOOK_URL" in str(err.value)
    no_secret(str(err.value) + repr(err.value) + repr(hookc) + str(hookc), hook.url)
    # connection refused (nobody listens), and a URL that is not http(s)
    hook.close()
    with pytest.raises(AlertDeliveryError) as err:
        fast_webhook(hook.url, max_attempts=2).post({"content": "x"})
    no_secret(str(err.value) + repr(err.value), hook.url)
    with pytest.raises(AlertError) as err:
        DiscordWebhook(f"discord.com/api/webhooks/1/{TOKEN}")
    no_secret(str(err.value), hook.url)
    # the resource: before and after Dagster resolves the EnvVar
    monkeypatch.setenv(WEBHOOK_ENV, hook.url)
    res = DiscordResource.from_env(alerts_dir=str(tmp_path), max_attempts=1)
    live = res.process_config_and_initialize()
    assert live.webhook_url == hook.url
    for shown in (repr(res), str(res), repr(live), str(live), repr(live.sink)):
        no_secret(shown, hook.url)
    assert "ROONEY_DISCORD_WEBHOOK_URL" in repr(res) and "***" in repr(live)
    assert live.send(drift_alert()) is False  # refused: the server is gone
    no_secret(caplog.text, hook.url)


def test_the_ui_shows_the_env_var_name_only(hook, tmp_path, monkeypatch):
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    monkeypatch.setenv(WEBHOOK_ENV, hook.url)

    @dg.asset
    def noisy(discord: DiscordResource):
        return 1

    defs = dg.Definitions(assets=[noisy], resources={"discord": DiscordResource.from_env(alerts_dir=str(tmp_path))})
    snap = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))  # what the webserver gets
    assert WEBHOOK_ENV in snap
    no_secret(snap, hook.url)
    result = dg.materialize([noisy], resources={"discord": DiscordResource.from_env(alerts_dir=str(tmp_path))})
    no_secret(json.dumps(result.dagster_run.run_config, default=str), hook.url)


def test_without_a_webhook_alerts_go_to_log_and_outbox_said_once(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    res = DiscordResource.from_env(alerts_dir=str(tmp_path / "quiet"))
    assert res.webhook_url is None
    assert res.send(drift_alert()) is False and res.send(drift_alert(instrument="NQ")) is False
    assert caplog.text.count("no Discord webhook configured") == 1
    assert caplog.text.count("ALERT drift") == 2
    assert [r["instrument"] for r in recent_alerts(res.sink.outbox_path)] == ["NQ", "ES"]
    assert {r["status"] for r in recent_alerts(tmp_path / "quiet")} == {"not_configured"}


def test_recent_alerts_skips_torn_lines_and_filters(tmp_path):
    sink = AlertSink(tmp_path)
    sink.send(drift_alert())
    with open(sink.journal_path, "a") as fh:
        fh.write('{"alert": {"kind": "dri')  # a writer killed mid-line
    sink.send(Alert(kind="kill_switch", instrument="CL", summary="CL switched to paper: NaN rate 0.2 > 0.05"))
    rows = recent_alerts(tmp_path)
    assert [r["kind"] for r in rows] == ["kill_switch", "drift"]
    assert [r["kind"] for r in recent_alerts(tmp_path, kinds=["drift"])] == ["drift"]
    assert len(recent_alerts(tmp_path, limit=1)) == 1 and recent_alerts(tmp_path / "none") == []


# ---- the heartbeat rule ---------------------------------------------------------------------------


def _chicago(s: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(s).replace(tzinfo=ZoneInfo("America/Chicago"))


def test_heartbeat_age_counts_open_market_time_only(globex):
    friday_close = _chicago("2024-06-07 15:58")
    assert not check_heartbeat(friday_close.isoformat(), _chicago("2024-06-08 12:00"), 600, [globex]).stale
    sunday = check_heartbeat(friday_close.isoformat(), _chicago("2024-06-09 17:20"), 600, [globex])
    assert sunday.stale and sunday.open_age_s == (2 + 20) * 60
    # the daily maintenance break (16:00-17:00) does not count either
    assert not check_heartbeat(_chicago("2024-06-04 15:55").isoformat(), _chicago("2024-06-04 17:04"), 600,
                               [globex]).stale
    # without calendars: the wall clock
    assert check_heartbeat("2024-06-08T12:00:00+00:00", datetime(2024, 6, 8, 12, 11, tzinfo=UTC), 600).stale
    # an exchange holiday (Christmas) is closed market
    cme = SessionCalendar(globex.timezone, globex.open, globex.close, "CME_Equity")
    assert not check_heartbeat(_chicago("2024-12-24 11:55").isoformat(), _chicago("2024-12-25 12:00"), 600,
                               [cme]).stale


# ---- the sensors ----------------------------------------------------------------------------------


@pytest.fixture()
def discord(hook, tmp_path) -> DiscordResource:
    return DiscordResource(webhook_url=hook.url, alerts_dir=str(tmp_path / "alerts"),
                           dagster_url="http://dagster.test:3000")


_PARTS = dg.StaticPartitionsDefinition(["ES", "NQ"])


@dg.asset(partitions_def=_PARTS)
def flaky_features(context):
    raise ValueError(f"feature ret1 is missing for {context.partition_key}\nsecond line of detail")


def _failed_run(instance) -> dg.ExecuteInProcessResult:
    return dg.materialize([flaky_features], partition_key="ES", instance=instance, raise_on_error=False)


def test_run_failure_sensor_sends_job_partition_step_error_and_link(hook, discord):
    instance = dg.DagsterInstance.ephemeral()
    result = _failed_run(instance)
    assert not result.success
    ctx = dg.build_run_status_sensor_context(sensor_name="run_failure_alert", dagster_instance=instance,
                                             dagster_run=result.dagster_run,
                                             dagster_event=result.get_run_failure_event(),
                                             resources={"discord": discord}, partition_key="ES").for_run_failure()
    run_failure_alert(ctx)
    assert len(hook.payloads) == 1
    msg = hook.payloads[0]
    fields = {f["name"]: f["value"] for f in msg["embeds"][0]["fields"]}
    run_id = result.dagster_run.run_id
    assert fields["Job"] == "__ephemeral_asset_job__" and fields["Partition"] == "ES" and fields["Instrument"] == "ES"
    assert fields["Step"] == "flaky_features"
    assert fields["Error"] == "ValueError: feature ret1 is missing for ES"
    assert f"http://dagster.test:3000/runs/{run_id}" in msg["content"]
    assert msg["embeds"][0]["url"] == f"http://dagster.test:3000/runs/{run_id}"


def test_run_failure_sensor_cursor_sends_each_failure_once(hook, discord):
    with dg.instance_for_test() as instance:
        def tick(cursor):
            return run_failure_alert.evaluate_tick(
                dg.build_sensor_context(instance=instance, cursor=cursor, resources={"discord": discord}))

        first = tick(None)  # starts the cursor after what is already in the instance
        _failed_run(instance)
        second = tick(first.cursor)
        assert len(hook.payloads) == 1 and "flaky_features" in hook.payloads[0]["content"]
        third = tick(second.cursor)
        assert len(hook.payloads) == 1 and third.cursor == second.cursor


def _write_engine(state: Path, beat: datetime) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "state.json").write_text(json.dumps({"paper": True, "kill_switch": False, "heartbeat": None,
                                                  "instruments": {}}))
    (state / "heartbeat.json").write_text(json.dumps({"heartbeat": beat.isoformat(timespec="seconds")}))


def test_stale_heartbeat_sensor_alerts_once_per_episode(hook, discord, tmp_path, monkeypatch):
    state = tmp_path / "live"
    monkeypatch.setenv(LIVE_STATE_DIR_ENV, str(state))
    monkeypatch.setenv(HEARTBEAT_MAX_AGE_ENV, "120")
    rooney = RooneyResource()
    cursor = None

    def tick():
        nonlocal cursor
        ctx = dg.build_sensor_context(cursor=cursor, resources={"rooney": rooney, "discord": discord})
        stale_heartbeat_alert(ctx)
        cursor = ctx.cursor
        return len(hook.payloads)

    assert tick() == 0  # no engine state: nothing to watch
    now = datetime.now(UTC)
    _write_engine(state, now - timedelta(minutes=10))
    assert tick() == 1 and tick() == 1  # stale: one alert, not one per evaluation
    stale = hook.payloads[0]
    assert "heartbeat stale" in stale["content"] and "threshold 2" in stale["content"]
    _write_engine(state, now)
    assert tick() == 2 and tick() == 2  # recovered: said once
    assert "(resolved)" in hook.payloads[1]["content"]
    _write_engine(state, now - timedelta(minutes=5))
    assert tick() == 3 and tick() == 3  # a new episode


def _bundle(symbol: str, seed: int) -> VetoBundle:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 2))
    est = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=seed).fit(x, (x[:, 0] > 0).astype(int))
    return VetoBundle(symbol=symbol, estimator=est, feature_names=["ibs", "rsi2"], threshold=0.5,
                      registry_version="1", feature_schema_hash="s", data_hash="d", config={"seed": seed},
                      metrics={}, library_versions={}, code_version="test")


def test_promotion_sensor_sends_each_promotion_and_rollback_once(hook, discord, tmp_path):
    store = ModelStore(tmp_path / "models")
    res = resources(model_store=str(store.root), discord=discord)
    p1, p2 = store.add_portfolio({"models": {}}), store.add_portfolio({"models": {"ES": "ES_v1"}})
    store.promote_portfolio(p1, by="desk", reason="first")
    cursor = None

    def tick():
        nonlocal cursor
        with dg.build_sensor_context(cursor=cursor, resources=res) as ctx:  # nested resources
            promotion_alert(ctx)
            cursor = ctx.cursor
        return [p["content"] for p in hook.payloads]

    assert tick() == []  # switched on: what happened before is not news
    v1, v2 = store.add_version(_bundle("ES", 1)), store.add_version(_bundle("ES", 2))
    store.promote(v1, by="pipeline", reason="gates passed")
    store.promote(v2, by="pipeline", reason="gates passed")
    store.rollback("ES", by="trader", reason="live P&L below floor")
    store.promote_portfolio(p2, by="pipeline")
    sent = tick()
    assert len(sent) == 4
    assert "Promotion: ES" in sent[0] and "ES_v1 promoted to production (replacing nothing)" in sent[0]
    assert "ES_v2 promoted to production (replacing ES_v1) by pipeline: gates passed" in sent[1]
    assert "Rollback: ES" in sent[2] and "rolled back to ES_v1 (from ES_v2) by trader: live P&L below floor" in sent[2]
    assert "Promotion: portfolio" in sent[3] and "portfolio_v2" in sent[3]
    assert hook.payloads[2]["embeds"][0]["url"] == "http://dagster.test:3000/assets/promoted_manifest"
    assert tick() == sent  # nothing new: nothing sent


def test_the_outbox_sensor_delivers_what_waited(hook, discord):
    from rooney_pipeline.sensors import alert_outbox_retry

    hook.always = ("status", 503)
    fast = DiscordResource(webhook_url=hook.url, alerts_dir=discord.alerts_dir, max_attempts=1)
    assert fast.send(drift_alert()) is False  # Discord down: kept in the outbox
    hook.always = None
    result = alert_outbox_retry(dg.build_sensor_context(resources={"discord": fast}))
    assert "1 delivered from the outbox, 0 still waiting" in result.skip_message
    assert hook.payloads[-1]["embeds"][0]["title"] == "Feature drift: ES"
    assert [a["status"] for a in recent_alerts(fast.alerts_path)] == ["delivered"]
    none = alert_outbox_retry(dg.build_sensor_context(resources={"discord": DiscordResource(
        alerts_dir=discord.alerts_dir)}))
    assert "no Discord webhook configured" in none.skip_message
