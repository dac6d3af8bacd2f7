"""`dagster dev` (the webserver and the daemon, as the README starts them) shows the retraining
schedules and sensors, switched off; switched on through the UI's API, the daemon evaluates
the new-data sensor and the run it asks for really runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rooney_core.config import REPO_ROOT, load_config
from rooney_core.sample_market import load_sample_market, write_sample_data

CFG = load_config()
REPO = {"repositoryLocationName": "rooney_pipeline.definitions", "repositoryName": "__repository__"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dev:
    """`dagster dev` in its own process group."""

    def __init__(self, home: Path, env: dict[str, str], command: list[str] | None = None):
        self.port = _free_port()
        self.log_path = home / "dev.log"
        cmd = command or ["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / cmd[0]), *cmd[1:], "-p" if cmd[0] == "dagster" else "--port",
                 str(self.port)], cwd=REPO_ROOT, env={**os.environ, **env, "DAGSTER_HOME": str(home)},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def gql(self, query: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/graphql",
                                     data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
        assert "errors" not in body, body
        return body["data"]

    def wait(self, what, timeout: float, every: float = 2.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")[-4000:]
            try:
                last = what()
                if last:
                    return last
            except OSError:
                pass
            time.sleep(every)
        raise AssertionError(f"timed out ({timeout:.0f} s); last: {last}\n"
                             + self.log_path.read_text(errors="replace")[-4000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


AUTOMATION = """{ schedulesOrError(repositorySelector: $repo) { ... on Schedules { results { name cronSchedule
  executionTimezone scheduleState { status } } } }
  sensorsOrError(repositorySelector: $repo) { ... on Sensors { results { name sensorState { status } } } } }"""
START = """mutation($sel: SensorSelector!) { startSensor(sensorSelector: $sel) {
  ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
TICKS = """query($sel: SensorSelector!) { sensorOrError(sensorSelector: $sel) { ... on Sensor { sensorState {
  ticks(limit: 5) { status runIds skipReason error { message } } } } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status jobName tags { key value } } } }"""


@pytest.mark.slow
def test_the_daemon_runs_the_schedules_and_sensors_switched_on_in_the_ui(tmp_path):
    home, data, lake = tmp_path / "home", tmp_path / "data", tmp_path / "lake"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    write_sample_data(data, ["ES"], "2024-01-02", "2024-02-29", seed=3, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=15)
    dev = Dev(home, {"ROONEY_DATA_DIR": str(data), "ROONEY_LAKE_DIR": str(lake),
                     "ROONEY_MODEL_STORE": str(tmp_path / "models"), "ROONEY_ALERTS_DIR": str(tmp_path / "alerts")})
    try:
        query = AUTOMATION.replace("{ schedulesOrError", "query($repo: RepositorySelector!) { schedulesOrError", 1)
        found = dev.wait(lambda: dev.gql(query, {"repo": REPO}), 180)
        schedules = {s["name"]: s for s in found["schedulesOrError"]["results"]}
        sensors = {s["name"]: s["sensorState"]["status"] for s in found["sensorsOrError"]["results"]}
        assert set(schedules) == {"retrain_schedule", "monitoring_schedule"}
        assert schedules["retrain_schedule"]["cronSchedule"] == "0 2 1 1,7 *"  # every 6 months
        assert {s["scheduleState"]["status"] for s in schedules.values()} == {"STOPPED"}
        assert {"performance_retrain_sensor", "drift_retrain_sensor", "new_data_sensor", "run_failure_alert",
                "stale_heartbeat_alert", "promotion_alert", "paper_stage_sensor", "alert_outbox_retry"} <= set(sensors)
        assert set(sensors.values()) == {"STOPPED"}  # nothing runs until the desk switches it on
        sel = {**REPO, "sensorName": "new_data_sensor"}
        started = dev.gql(START, {"sel": sel})["startSensor"]
        assert started.get("sensorState", {}).get("status") == "RUNNING", started

        def ticked():
            ticks = dev.gql(TICKS, {"sel": sel})["sensorOrError"]["sensorState"]["ticks"]
            return next((t for t in ticks if t["runIds"]), None) or (
                ticks if any(t["status"] == "FAILURE" for t in ticks) else None)

        tick = dev.wait(ticked, 240)
        assert isinstance(tick, dict) and tick["status"] == "SUCCESS", tick
        [run_id] = tick["runIds"]  # ES's raw file is newer than any bars: its bars are requested

        def finished():
            run = dev.gql(RUN, {"id": run_id})["runOrError"]
            return run if run.get("status") in ("SUCCESS", "FAILURE", "CANCELED") else None

        run = dev.wait(finished, 300)
        assert run["jobName"] == "bars_job" and run["status"] == "SUCCESS", run
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/partition"] == "ES" and tags["rooney/trigger"] == "new_data"
        assert (lake / "hourly" / "ES.parquet").is_file()
    finally:
        dev.stop()


def test_the_retrain_schedule_asks_for_every_instrument_with_the_configured_training(tmp_path):
    """Evaluated with Dagster's schedule test utilities: one retrain_job run per instrument,
    keyed by the scheduled date (a second evaluation of the same tick asks nothing new)."""
    from datetime import datetime

    import dagster as dg

    from rooney_pipeline.resources import RooneyResource
    from rooney_pipeline.retraining import REASONS_TAG, retrain_schedule

    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2027, 1, 1, 2, 0),
                                    resources={"rooney": RooneyResource()})
    requests = retrain_schedule(ctx)
    assert [r.partition_key for r in requests] == CFG.symbols
    assert {r.run_key for r in requests} == {f"{s}-scheduled-2027-01-01" for s in CFG.symbols}
    assert all(r.tags["rooney/trigger"] == "schedule" and r.tags[REASONS_TAG] for r in requests)
    assert all(r.run_config == {} for r in requests)  # automation.profile and trials: none by default
