"""Alert sensors: a failed run, a stale live-engine heartbeat, a promotion or rollback, and
the retry of alerts left in the outbox.

Each sends one Discord message per event through the ``discord`` resource and keeps a cursor
so that an event is never sent twice. They start STOPPED; switch them on in the UI (the
daemon that ``dagster dev`` starts evaluates them).

Environment: $ROONEY_DAGSTER_URL (the webserver messages link to), $ROONEY_LIVE_STATE_DIR
(the live engine's --state-dir; default dagster_home/storage/live, as `rooney live`),
$ROONEY_HEARTBEAT_MAX_AGE_S (open-market seconds without a heartbeat before it is stale;
default 600).
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from rooney_core.config import RooneyConfig
from rooney_core.errors import RooneyError
from rooney_core.live.engine import status_of
from rooney_core.model.store import PORTFOLIO
from rooney_core.monitoring.alerts import Alert, AlertKind
from rooney_core.monitoring.heartbeat import check_heartbeat
from rooney_core.redact import redact_url
from rooney_pipeline.resources import DiscordResource, ModelStoreResource, RooneyResource

LIVE_STATE_DIR_ENV = "ROONEY_LIVE_STATE_DIR"
HEARTBEAT_MAX_AGE_ENV = "ROONEY_HEARTBEAT_MAX_AGE_S"
DEFAULT_LIVE_STATE_DIR = "dagster_home/storage/live"  # `rooney live --state-dir` default
DEFAULT_HEARTBEAT_MAX_AGE_S = 600.0
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


# ---- failed runs -------------------------------------------------------------------------------


def _error_line(text: str | None) -> str:
    """The first non-empty line of an error, with credentials in any URL in it hidden."""
    line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "") or "no error message"
    return _URL.sub(lambda m: redact_url(m.group(0)) or "", line)[:500]


def _user_error(err: Any) -> Any:
    """The user's exception inside Dagster's step-execution wrappers."""
    while err is not None and err.cause is not None and err.cls_name and err.cls_name.startswith("Dagster"):
        err = err.cause
    return err


GATES_FAILED = "DagsterAssetCheckFailedError"  # a blocking check (a model's gates) failed: a decision, not a crash


def run_failure_alert_for(context: dg.RunFailureSensorContext, discord: DiscordResource) -> Alert | None:
    """The run_failed alert of a failed run: job, partition, failed steps, the error's first
    line and a link to the run. None when the only failures are blocking gate checks: the
    model's gates decided, and ``veto_model`` alerted that outcome itself."""
    run = context.dagster_run
    partition = context.partition_key or run.tags.get("dagster/partition")
    failures = context.get_step_failure_events()
    if failures and all(getattr(getattr(e.event_specific_data, "error", None), "cls_name", None) == GATES_FAILED
                        for e in failures):
        return None
    steps, error = [], None
    for event in failures:
        steps.append(event.step_key)
        data = event.event_specific_data
        if error is None and getattr(data, "error", None) is not None:
            err = _user_error(data.error)
            error = _error_line(err.message)
    if error is None:  # failed before or outside a step (launch, resources, config)
        error = _error_line(context.failure_event.message)
    where = f" for {partition}" if partition else ""
    at = f" at step {', '.join(steps)}" if steps else ""
    return Alert(kind=AlertKind.RUN_FAILED, instrument=partition, run_url=discord.run_url(run.run_id),
                 summary=f"{run.job_name} failed{where}{at}: {error}",
                 details={"job": run.job_name, "partition": partition, "step": ", ".join(steps) or None,
                          "run id": run.run_id, "error": error})


@dg.run_failure_sensor(
    name="run_failure_alert", default_status=dg.DefaultSensorStatus.STOPPED, minimum_interval_seconds=30,
    description="A Discord alert for every failed run of any job in this code location: job, partition, "
    "failed step, the error's first line and a link to the run. The run-status cursor sends each once.")
def run_failure_alert(context: dg.RunFailureSensorContext, discord: DiscordResource):
    alert = run_failure_alert_for(context, discord)
    if alert is not None:
        discord.send(alert)


# ---- the live engine's heartbeat ------------------------------------------------------------------


def live_state_dir(cfg: RooneyConfig) -> Path:
    """$ROONEY_LIVE_STATE_DIR, else the `rooney live` default (dagster_home/storage/live)."""
    return cfg.resolve_path(os.environ.get(LIVE_STATE_DIR_ENV) or DEFAULT_LIVE_STATE_DIR)


def _max_age_s() -> float:
    raw = os.environ.get(HEARTBEAT_MAX_AGE_ENV)
    try:
        value = float(raw) if raw else DEFAULT_HEARTBEAT_MAX_AGE_S
    except ValueError:
        raise RooneyError(f"{HEARTBEAT_MAX_AGE_ENV}={raw!r}: expected seconds, e.g. 600") from None
    if value <= 0:
        raise RooneyError(f"{HEARTBEAT_MAX_AGE_ENV}={raw!r}: must be > 0")
    return value


def _sensor_url(context: dg.SensorEvaluationContext, discord: DiscordResource) -> str:
    """The sensor's page in the UI when the daemon says where it runs, else the automation list."""
    origin = context.code_location_origin
    if context.repository_name and origin is not None and context.sensor_name:
        return discord.ui_url(f"locations/{context.repository_name}@{origin.location_name}/sensors/"
                              f"{context.sensor_name}")
    return discord.ui_url("automation")


def _calendars(cfg: RooneyConfig, symbols) -> list:
    out = []
    for s in symbols:
        try:
            out.append(cfg.instrument(s).calendar)
        except RooneyError:
            pass  # an instrument no longer configured: judged by the others (or the wall clock)
    return out


@dg.sensor(
    name="stale_heartbeat_alert", default_status=dg.DefaultSensorStatus.STOPPED, minimum_interval_seconds=60,
    description="Alerts once when the live engine's heartbeat (heartbeat.json in $ROONEY_LIVE_STATE_DIR, default "
    "dagster_home/storage/live) has not moved for $ROONEY_HEARTBEAT_MAX_AGE_S (default 600) seconds of open "
    "market, and once when it moves again; the cursor remembers the episode.")
def stale_heartbeat_alert(context: dg.SensorEvaluationContext, rooney: RooneyResource, discord: DiscordResource):
    state_dir = live_state_dir(rooney.cfg)
    try:
        status = status_of(state_dir)
    except (RooneyError, ValueError, KeyError) as exc:
        return dg.SkipReason(f"no live engine to watch: {exc}")
    now = datetime.now(UTC)
    check = check_heartbeat(status.get("heartbeat"), now, _max_age_s(),
                            _calendars(rooney.cfg, status.get("instruments", {})))
    cursor = json.loads(context.cursor) if context.cursor else {}
    was_stale = bool(cursor.get("stale"))
    details = {"state dir": str(state_dir), "last heartbeat": check.heartbeat,
               "instruments": ", ".join(status.get("instruments", {})) or None,
               "paper": status.get("paper"), "kill switch": status.get("kill_switch")}
    sensor_page = _sensor_url(context, discord)
    if check.stale and not was_stale:
        discord.send(Alert(kind=AlertKind.STALE_HEARTBEAT, summary=f"the live engine looks stopped: {check.reason}",
                           metric="open-market minutes without a heartbeat", value=check.open_age_s / 60,
                           threshold=check.max_open_age_s / 60, run_url=sensor_page, details=details))
        context.update_cursor(json.dumps({"stale": True, "heartbeat": check.heartbeat,
                                          "since": now.isoformat(timespec="seconds")}))
        return dg.SkipReason(f"stale: alerted ({check.reason})")
    if not check.stale and was_stale:
        discord.send(Alert(kind=AlertKind.STALE_HEARTBEAT, resolved=True, run_url=sensor_page, details=details,
                           summary=f"the live engine's heartbeat moves again ({check.reason}); stale since "
                           f"{cursor.get('since')}"))
        context.update_cursor(json.dumps({"stale": False, "heartbeat": check.heartbeat}))
        return dg.SkipReason(f"recovered: alerted ({check.reason})")
    return dg.SkipReason(("still stale, already alerted: " if check.stale else "") + check.reason)


# ---- promotions and rollbacks ---------------------------------------------------------------------

_ALERTED_ACTIONS = {"promote": AlertKind.PROMOTION, "rollback": AlertKind.ROLLBACK}


def _resume_at(entries: list[dict[str, Any]], cursor: dict[str, Any]) -> int:
    """Index of the first audit entry not yet looked at. The cursor holds a count and the
    transaction id of the last entry seen; if the log no longer agrees (a store replaced or
    moved), resume after that transaction, or at the end if it is gone."""
    n, txn = int(cursor.get("n", 0)), cursor.get("txn")
    if 0 <= n <= len(entries) and (n == 0 or entries[n - 1].get("txn") == txn):
        return n
    for i in range(len(entries) - 1, -1, -1):
        if txn is not None and entries[i].get("txn") == txn:
            return i + 1
    return len(entries)


def promotion_alert_for(entry: dict[str, Any], discord: DiscordResource) -> Alert | None:
    """The alert of one audit-log entry that took effect, or None (not a promotion or rollback)."""
    kind = _ALERTED_ACTIONS.get(entry.get("action"))
    if kind is None or entry.get("status") != "done":
        return None
    symbol, version, replaced = entry.get("symbol"), entry.get("version"), entry.get("replaced")
    by, reason = entry.get("by") or "?", entry.get("reason") or ""
    if kind is AlertKind.PROMOTION:
        summary = f"{version} promoted to production (replacing {replaced or 'nothing'}) by {by}"
    else:
        summary = f"rolled back to {version} (from {replaced}) by {by}"
    if entry.get("forced"):
        summary += f"; FORCED past failed gates: {', '.join(map(str, entry.get('failed_gates') or [])) or '?'}"
    if reason:
        summary += f": {reason}"
    asset = "portfolio_config" if symbol == PORTFOLIO else "promoted_manifest"
    return Alert(kind=kind, instrument=symbol, summary=summary, run_url=discord.asset_url(asset),
                 at=entry.get("at") or datetime.now(UTC),
                 details={"version": version, "replaced": replaced, "by": by, "sha256": entry.get("sha256"),
                          "forced": bool(entry.get("forced")) or None})


@dg.sensor(
    name="promotion_alert", default_status=dg.DefaultSensorStatus.STOPPED, minimum_interval_seconds=60,
    description="A Discord alert for each promotion or rollback in the model store's audit log (instruments and "
    "the portfolio) that took effect; the cursor sends each once. Switched on, it starts after the entries "
    "already there.")
def promotion_alert(context: dg.SensorEvaluationContext, model_store: ModelStoreResource, discord: DiscordResource):
    entries = model_store.get().audit_log()
    if context.cursor is None:
        last = entries[-1].get("txn") if entries else None
        context.update_cursor(json.dumps({"n": len(entries), "txn": last}))
        return dg.SkipReason(f"started after the {len(entries)} entries already in the audit log")
    start = _resume_at(entries, json.loads(context.cursor))
    n, sent = start, 0
    for entry in entries[start:]:
        if entry.get("status") == "pending":
            break  # being written: look again next time
        alert = promotion_alert_for(entry, discord)
        if alert is not None:
            discord.send(alert)
            sent += 1
        n += 1
    context.update_cursor(json.dumps({"n": n, "txn": entries[n - 1].get("txn") if n else None}))
    return dg.SkipReason(f"{sent} promotion/rollback alert(s) sent; {n - start} new audit entries read")


# ---- alerts that did not get through ------------------------------------------------------------


@dg.sensor(
    name="alert_outbox_retry", default_status=dg.DefaultSensorStatus.STOPPED, minimum_interval_seconds=600,
    description="Every 10 minutes: delivers the alerts waiting in the outbox (Discord was down or refused them), "
    "oldest first; those that still fail stay for the next try.")
def alert_outbox_retry(context: dg.SensorEvaluationContext, discord: DiscordResource):
    if discord.sink.webhook is None:
        return dg.SkipReason("no Discord webhook configured (ROONEY_DISCORD_WEBHOOK_URL): the outbox keeps them")
    sent, left = discord.sink.resend_outbox()
    return dg.SkipReason(f"{sent} delivered from the outbox, {left} still waiting")


SENSORS = [run_failure_alert, stale_heartbeat_alert, promotion_alert, alert_outbox_retry]
