"""Monitoring and retraining automation: the jobs, schedules and sensors that keep the models
honest unattended.

* ``retrain_job`` (per instrument): bars -> features -> labels (candidate trades) -> training
  with its six blocking gate checks -> promotion, which runs only when every gate passed (a
  failed blocking check stops the run before it). Each outcome is logged in the store's
  ``decisions.log`` and alerted (``veto_model`` when the gates fail, ``promoted_manifest``
  when they pass).
* ``retrain_schedule``: every 6 months (``automation.retrain_cron`` in configs/monitoring.yml).
* ``monitoring_schedule``: ``model_monitoring`` of every instrument after each session.
* ``performance_retrain_sensor``: accuracy or P&L down at least 10% against the backtest;
  ``drift_retrain_sensor``: feature drift or a regime change past its threshold. Each keeps a
  cursor per instrument (model version, last bar judged, when it asked) so a model is sent to
  retrain once, and again only after ``cooldown_days`` if it is still the one in production;
  a retrain run of the instrument already made by another trigger within that time covers it.
* ``new_data_sensor``: a raw file newer than the lake's bars materialises that instrument's
  partition downstream: its bars first (``bars_job``), then, once its bars and its pair's are
  current, the features, labels and monitoring of it and of the instruments paired with it
  (``refresh_job``), so a feature never mixes new bars with a pair's stale ones.

Every schedule and sensor starts STOPPED: switch them on in the UI (Automation); the daemon
that ``dagster dev`` starts runs them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from rooney_core.monitoring.alerts import Alert, AlertKind
from rooney_core.monitoring.config import Automation, load_monitoring_config
from rooney_core.monitoring.dashboard import read_log
from rooney_core.monitoring.monitor import Conditions, monitor_instrument
from rooney_pipeline.assets.models import TRIGGER_TAG
from rooney_pipeline.assets.monitoring import monitoring_paths
from rooney_pipeline.jobs import TRAINING_TAGS, bars_job
from rooney_pipeline.partitions import CONFIG
from rooney_pipeline.resources import DiscordResource, LakeResource, ModelStoreResource, RooneyResource

REASONS_TAG = "rooney/reasons"
AUTOMATION = load_monitoring_config(CONFIG.config_dir).automation  # validated at load, like the partitions

CHAIN = ("raw_bars", "hourly_bars", "daily_bars", "features", "feature_validation", "candidate_trades")

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(*CHAIN, "veto_model", "promoted_manifest"),
    description="Retrain one instrument end to end: bars, features, labels, training with the six blocking gates, "
    "and promotion only when every gate passed (to the paper stage when validation.yml asks for one). "
    "Each outcome is logged (decisions.log) and alerted.",
    tags=TRAINING_TAGS,
)

refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.assets(*CHAIN[3:], "model_monitoring"),
    description="After new bars of an instrument or of its pair: its features, labels and monitoring again.",
)

monitoring_job = dg.define_asset_job(
    "monitoring_job",
    selection=dg.AssetSelection.assets("model_monitoring"),
    description="Judge the instrument's production model on its live results; trip its kill switch and alert.",
)


def retrain_run_config(policy: Automation) -> dict[str, Any]:
    """The training settings of an automated retrain (profile and trials from monitoring.yml)."""
    cfg = {k: v for k, v in (("profile", policy.profile), ("trials", policy.trials)) if v is not None}
    return {"ops": {"veto_model": {"config": cfg}}} if cfg else {}


def _symbols(rooney: RooneyResource) -> list[str]:
    return list(rooney.cfg.symbols)


@dg.schedule(
    name="retrain_schedule", job=retrain_job, cron_schedule=AUTOMATION.retrain_cron,
    execution_timezone=AUTOMATION.timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
    description=f"Retrain every instrument on its whole history ({AUTOMATION.retrain_cron}, {AUTOMATION.timezone}; "
    "automation.retrain_cron in configs/monitoring.yml): every 6 months by default.")
def retrain_schedule(context: dg.ScheduleEvaluationContext, rooney: RooneyResource):
    when = context.scheduled_execution_time
    stamp = f"{when:%Y-%m-%d}" if when else datetime.now(UTC).strftime("%Y-%m-%d")
    policy = load_monitoring_config(rooney.cfg.config_dir).automation
    return [dg.RunRequest(run_key=f"{sym}-scheduled-{stamp}", partition_key=sym, run_config=retrain_run_config(policy),
                          tags={TRIGGER_TAG: "schedule", REASONS_TAG: f"scheduled retrain {stamp}"})
            for sym in _symbols(rooney)]


@dg.schedule(
    name="monitoring_schedule", job=monitoring_job, cron_schedule=AUTOMATION.monitor_cron,
    execution_timezone=AUTOMATION.timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
    description=f"model_monitoring of every instrument ({AUTOMATION.monitor_cron}, {AUTOMATION.timezone}; "
    "automation.monitor_cron in configs/monitoring.yml): alerts, kill switch, figures.")
def monitoring_schedule(context: dg.ScheduleEvaluationContext, rooney: RooneyResource):
    when = context.scheduled_execution_time
    stamp = f"{when:%Y-%m-%dT%H%M}" if when else datetime.now(UTC).strftime("%Y-%m-%dT%H%M")
    return [dg.RunRequest(run_key=f"{sym}-monitor-{stamp}", partition_key=sym) for sym in _symbols(rooney)]


# --- the retrain sensors ---------------------------------------------------------------------


def retrain_requests(context: dg.SensorEvaluationContext, rooney: RooneyResource, lake: LakeResource,
                     model_store: ModelStoreResource, discord: DiscordResource, name: str,
                     keys: tuple[str, ...], now: datetime | None = None) -> dg.SensorResult | dg.SkipReason:
    """One retrain request per instrument whose findings ``keys`` are active, remembered in the
    cursor: asked once per model version and condition, again after ``cooldown_days``."""
    policy = load_monitoring_config(rooney.cfg.config_dir).automation
    keys = tuple(k for k in keys if k in policy.triggers)
    if not keys:
        return dg.SkipReason(f"{name}: switched off (automation.triggers in configs/monitoring.yml)")
    now = now or datetime.now(UTC)
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    paths = monitoring_paths(rooney, lake, model_store, discord)
    log = read_log(paths)
    conditions = Conditions(paths.alerts_dir)
    requests, said = [], []
    for sym in _symbols(rooney):
        report = monitor_instrument(paths, rooney.cfg, sym, log=log)
        if report.version is None:
            said.append(f"{sym}: no model")
            continue
        conditions.notify(report, discord.sink, keys=keys)  # the condition's alert, once per episode
        reasons = report.retrain_reasons(keys)
        prev = cursor.get(sym) or {}
        same_model = prev.get("version") == report.version
        if not reasons:
            said.append(f"{sym}: {', '.join(f'{k} {report.findings[k].status}' for k in keys)}")
            if same_model and prev.get("requested_at"):
                cursor[sym] = {**prev, "active": False, "as_of": str(report.as_of)}
            continue
        asked = prev.get("requested_at")
        if same_model and asked and now - datetime.fromisoformat(asked) < timedelta(days=policy.cooldown_days):
            # still firing (or firing again) for the model already sent to retrain: its retrain ran
            # or runs; ask again only after the cooldown
            said.append(f"{sym}: firing, retrain of {report.version} already requested {asked}")
            continue
        text = "; ".join(reasons)
        recent = _recent_retrain(context.instance, sym, now - timedelta(days=policy.cooldown_days))
        if recent is not None:  # another trigger already sent this instrument to retrain
            cursor[sym] = {"version": report.version, "as_of": str(report.as_of), "reasons": text[:500],
                           "requested_at": now.isoformat(timespec="seconds"), "covered_by": recent.run_id}
            said.append(f"{sym}: firing; retrain run {recent.run_id[:8]} "
                        f"({recent.tags.get(TRIGGER_TAG, 'manual')}) already covers it")
            continue
        stamp = str(report.as_of or now.isoformat(timespec="minutes")).replace(" ", "T")
        requests.append(dg.RunRequest(
            run_key=f"{sym}-{report.version}-{name}-{stamp}", partition_key=sym,
            run_config=retrain_run_config(policy), tags={TRIGGER_TAG: name, REASONS_TAG: text[:1000]}))
        discord.send(Alert(AlertKind.RETRAIN, f"retrain of {sym} requested ({name}): {text}", instrument=sym,
                           run_url=discord.ui_url("jobs/retrain_job"),
                           details={"model": report.version, "as of": str(report.as_of)}))
        cursor[sym] = {"version": report.version, "as_of": str(report.as_of), "active": True,
                       "requested_at": now.isoformat(timespec="seconds"), "reasons": text[:500]}
        said.append(f"{sym}: retrain requested")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True),
                           skip_reason=None if requests else "; ".join(said) or "no instrument")


def _recent_retrain(instance: dg.DagsterInstance | None, symbol: str, since: datetime):
    """The latest retrain_job run of ``symbol`` created since ``since`` (any trigger), or None."""
    if instance is None:
        return None
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=retrain_job.name, tags={"dagster/partition": symbol}, created_after=since),
        limit=1)
    return records[0].dagster_run if records else None


@dg.sensor(
    name="performance_retrain_sensor", job=retrain_job, minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests retrain_job for an instrument whose live accuracy or P&L is down at least 10% against "
    "the holdout backtest over the window (configs/monitoring.yml performance:), once per model and condition "
    "(the cursor), and alerts.")
def performance_retrain_sensor(context: dg.SensorEvaluationContext, rooney: RooneyResource, lake: LakeResource,
                               model_store: ModelStoreResource, discord: DiscordResource):
    return retrain_requests(context, rooney, lake, model_store, discord, "performance", ("performance",))


@dg.sensor(
    name="drift_retrain_sensor", job=retrain_job, minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests retrain_job for an instrument whose features drifted from the training distribution or "
    "whose market left the training regime (configs/monitoring.yml drift:, regime:), once per model and "
    "condition (the cursor), and alerts.")
def drift_retrain_sensor(context: dg.SensorEvaluationContext, rooney: RooneyResource, lake: LakeResource,
                         model_store: ModelStoreResource, discord: DiscordResource):
    return retrain_requests(context, rooney, lake, model_store, discord, "drift", ("drift", "regime"))


# --- new raw data ----------------------------------------------------------------------------


def _mtime(path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _bars_current(rooney: RooneyResource, lake: LakeResource, symbol: str) -> bool:
    """The lake's hourly bars of ``symbol`` were built after its raw file last changed."""
    raw, built = _mtime(rooney.data_path / f"{symbol}_bt.csv"), _mtime(lake.get().path("hourly", symbol))
    return raw is None or (built is not None and built >= raw)


@dg.sensor(
    name="new_data_sensor", jobs=[bars_job, refresh_job], minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="A raw `<SYMBOL>_bt.csv` that changed since the lake's bars were built materialises that partition "
    "downstream, in two steps: its bars (bars_job), then, once the bars of the instrument and of its pair are "
    "current, the features, labels and monitoring of the instrument and of every instrument paired with it "
    "(refresh_job). The cursor holds each file's size and time and the instruments waiting for step two.")
def new_data_sensor(context: dg.SensorEvaluationContext, rooney: RooneyResource, lake: LakeResource):
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    files: dict[str, list[int]] = cursor.get("files", {})
    pending: set[str] = set(cursor.get("pending", []))
    symbols = _symbols(rooney)
    requests, said, building = [], [], set()
    for sym in symbols:
        path = rooney.data_path / f"{sym}_bt.csv"
        try:
            st = path.stat()
        except FileNotFoundError:
            said.append(f"{sym}: no {path.name}")
            continue
        seen = [st.st_mtime_ns, st.st_size]
        if files.get(sym) == seen:
            continue
        files[sym] = seen
        if _bars_current(rooney, lake, sym):
            continue
        building.add(sym)
        requests.append(dg.RunRequest(run_key=f"{sym}-bars-{st.st_mtime_ns}-{st.st_size}", partition_key=sym,
                                      job_name=bars_job.name, tags={TRIGGER_TAG: "new_data"}))
        pending |= {sym} | {s for s in symbols if rooney.cfg.instrument(s).pair == sym}
        said.append(f"{sym}: new data, bars requested")
    for sym in sorted(pending):
        pair = rooney.cfg.instrument(sym).pair
        needs = [s for s in (sym, pair) if s is not None and s in symbols]
        if any(s in building or not _bars_current(rooney, lake, s) for s in needs):
            said.append(f"{sym}: waiting for the bars of {', '.join(needs)}")
            continue
        stamp = "-".join(str(_mtime(lake.get().path("hourly", s))) for s in needs)
        requests.append(dg.RunRequest(run_key=f"{sym}-refresh-{stamp}", partition_key=sym, job_name=refresh_job.name,
                                      tags={TRIGGER_TAG: "new_data"}))
        pending.discard(sym)
        said.append(f"{sym}: refresh requested")
    return dg.SensorResult(run_requests=requests,
                           cursor=json.dumps({"files": files, "pending": sorted(pending)}, sort_keys=True),
                           skip_reason=None if requests else "; ".join(said) or "no new raw data")


JOBS = [retrain_job, refresh_job, monitoring_job]
SCHEDULES = [retrain_schedule, monitoring_schedule]
SENSORS = [performance_retrain_sensor, drift_retrain_sensor, new_data_sensor]
