"""The production instance on PostgreSQL (dagster_home/postgres/dagster.yaml with
$DAGSTER_PG_URL): its schema is created from an empty database, several partition runs run
at once under the daemon's queue, the daemon runs a schedule, and the Optuna studies live in
the same database (schema "optuna") beside Dagster's tables.

Each test gets a database of its own on the local server (127.0.0.1:5432, trust auth), dropped
afterwards. Without a server the tests skip with the reason (a failure on CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from rooney_core.config import DEFAULT_CONFIG_DIR, REPO_ROOT, load_config
from rooney_core.sample_market import load_sample_market, write_sample_data

pytestmark = pytest.mark.slow
CFG = load_config()
SERVER = "postgresql://postgres@127.0.0.1:5432"
BIN = Path(sys.executable).parent


def _admin():
    import psycopg2

    conn = psycopg2.connect(f"{SERVER}/postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


@pytest.fixture()
def pg_url():
    try:
        admin = _admin()
    except Exception as exc:  # noqa: BLE001 - any reason the server is not there
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({exc})")
    name = f"rooney_t_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def _tables(url: str, schema: str) -> set[str]:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
        return {r[0] for r in cur.fetchall()}


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    return home


def test_the_daemon_runs_partition_runs_at_once_and_a_schedule_on_postgres(pg_url, tmp_path, monkeypatch):
    import dagster as dg

    assert _tables(pg_url, "public") == set()  # an empty database
    home, data = _home(tmp_path), tmp_path / "data"
    symbols = ["ES", "NQ", "GC"]
    write_sample_data(data, symbols, "2022-01-03", "2024-02-29", seed=3, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=15)
    cfg_dir = tmp_path / "configs"  # the monitoring schedule every minute, so the test sees a tick
    shutil.copytree(DEFAULT_CONFIG_DIR, cfg_dir)
    mon = yaml.safe_load((cfg_dir / "monitoring.yml").read_text())
    mon["automation"]["monitor_cron"] = "* * * * *"
    (cfg_dir / "monitoring.yml").write_text(yaml.safe_dump(mon))
    env = {"DAGSTER_HOME": str(home), "DAGSTER_PG_URL": pg_url, "ROONEY_DATA_DIR": str(data),
           "ROONEY_LAKE_DIR": str(tmp_path / "lake"), "ROONEY_MODEL_STORE": str(tmp_path / "models"),
           "ROONEY_CONFIG_DIR": str(cfg_dir), "ROONEY_ALERTS_DIR": str(tmp_path / "alerts"),
           "ROONEY_LIVE_STATE_DIR": str(tmp_path / "live")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    full_env = {**os.environ, **env}
    instance = dg.DagsterInstance.get()  # creates Dagster's schema in the empty database
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert {"runs", "event_logs", "jobs", "job_ticks"} <= _tables(pg_url, "public")

    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 - closed in finally
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO_ROOT,
                              env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # a backfill of three partitions: the daemon queues their runs together and starts them at once
        # (max_concurrent_runs 4 in dagster_home/postgres/dagster.yaml)
        done = subprocess.run([str(BIN / "dagster"), "job", "backfill", "-w", "workspace.yaml", "-j", "bars_job",
                               "--partitions", ",".join(symbols), "--noprompt"], cwd=REPO_ROOT, env=full_env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        done = subprocess.run([str(BIN / "dagster"), "schedule", "start", "monitoring_schedule", "-w", "workspace.yaml"],
                              cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        def records(**filters):
            return instance.get_run_records(filters=dg.RunsFilter(**filters))

        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            bars = records(job_name="bars_job")
            scheduled = records(job_name="monitoring_job", tags={"dagster/schedule_name": "monitoring_schedule"})
            scheduled_ok = [r for r in scheduled if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
            # the schedule ticks every minute: wait for the first tick's runs, one per instrument
            if all(r.dagster_run.is_finished for r in bars) and len(bars) == 3 and \
                    {r.dagster_run.tags["dagster/partition"] for r in scheduled_ok} >= set(CFG.symbols):
                break
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text(errors="replace")[-4000:]
            time.sleep(3)
        else:
            raise AssertionError(f"runs not done: {[(r.dagster_run.job_name, r.dagster_run.status) for r in records()]}"
                                 + (tmp_path / "daemon.log").read_text(errors="replace")[-4000:])
        assert {r.dagster_run.status for r in bars} == {dg.DagsterRunStatus.SUCCESS}
        assert not [r for r in scheduled if r.dagster_run.status == dg.DagsterRunStatus.FAILURE]
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in bars) == sorted(symbols)
        # at once: the runs' windows overlap (each started before another had finished)
        windows = sorted((r.start_time, r.end_time) for r in bars)
        assert any(b[0] < a[1] for a, b in zip(windows, windows[1:], strict=False)), windows
        assert all((tmp_path / "lake" / "hourly" / f"{s}.parquet").is_file() for s in symbols)
    finally:
        os.killpg(daemon.pid, 15)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, 9)
        log.close()
        instance.dispose()


def test_optuna_studies_live_in_the_same_database_beside_dagster(pg_url, tmp_path, monkeypatch):
    import dagster as dg
    import optuna

    from rooney_core.training.config import load_training_config
    from rooney_core.training.tuning import OPTUNA_SCHEMA, study_storage

    home = _home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", pg_url)
    instance = dg.DagsterInstance.get()
    tcfg = load_training_config(CFG.config_dir, "ES")
    assert tcfg.storage is None  # the default: the instance's database when $DAGSTER_PG_URL is set
    storage = study_storage(tcfg, tmp_path / "unused.journal")
    assert isinstance(storage, optuna.storages.RDBStorage)
    study = optuna.create_study(storage=storage, study_name="ES-test", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(study_name="ES-test", storage=study_storage(tcfg, tmp_path / "unused.journal"))
    assert len(again.trials) == 3 and not (tmp_path / "unused.journal").exists()
    assert {"studies", "trials", "alembic_version"} <= _tables(pg_url, OPTUNA_SCHEMA)
    assert "studies" not in _tables(pg_url, "public") and "runs" in _tables(pg_url, "public")
    assert instance.get_runs() == []  # Dagster's storage still works beside Optuna's (its own alembic_version)
    instance.dispose()


STUDY_STARTER = """
import sys
from rooney_core.training.tuning import postgres_study_storage
import optuna
storage = postgres_study_storage(sys.argv[1])
optuna.create_study(storage=storage, study_name="ES-" + sys.argv[2], direction="maximize")
print("ok")
"""


def test_training_runs_starting_at_once_on_a_new_database_share_one_optuna_schema(pg_url):
    """Four processes (training runs starting together, as at full scale) open the study
    storage on a database that has no Optuna tables yet: one creates the schema, the others
    wait for it (without the lock the second CREATE TYPE studydirection fails)."""
    import subprocess

    from rooney_core.training.tuning import OPTUNA_SCHEMA

    procs = [subprocess.Popen([sys.executable, "-c", STUDY_STARTER, pg_url, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert {"studies", "trials"} <= _tables(pg_url, OPTUNA_SCHEMA)
    import optuna

    from rooney_core.training.tuning import postgres_study_storage

    names = {s.study_name for s in optuna.get_all_study_summaries(postgres_study_storage(pg_url))}
    assert names == {f"ES-{i}" for i in range(4)}


WRITER = """
import sys
from rooney_core.live.predictions import PostgresPredictionLog
log = PostgresPredictionLog(sys.argv[1], writer=sys.argv[2])
for i in range(int(sys.argv[3])):
    pid = f"{sys.argv[2]}-{i}"
    log.append("signal", prediction_id=pid, instrument=sys.argv[2], bar_time=f"2024-01-02T{i % 24:02d}:00:00",
               probability=0.6, threshold=0.5, decision="enter", features=[0.1, float("nan")],
               feature_names=["ibs", "ret1"])
    log.append("outcome", prediction_id=pid, exit_time=f"2024-01-03T{i % 24:02d}:00:00", pnl_net=float(i))
log.close()
"""


def test_several_processes_write_one_prediction_log_in_postgres(pg_url, tmp_path, monkeypatch):
    """Two engine-like processes append at once; readers see every record, one row per signal
    with its outcome, times typed as monitoring reads them; a restart's remembered records are
    not written twice."""
    from rooney_core.live.predictions import (
        PostgresPredictionLog,
        PredictionLog,
        events,
        open_log,
        predictions,
    )

    procs = [subprocess.Popen([sys.executable, "-c", WRITER, pg_url, name, "150"], cwd=REPO_ROOT)
             for name in ("ES", "NQ")]
    assert [p.wait(120) for p in procs] == [0, 0]
    ev = events(pg_url)
    assert len(ev) == 600 and set(ev["event"]) == {"signal", "outcome"}
    pred = predictions(pg_url)
    assert len(pred) == 300 and pred["pnl_net"].notna().all()
    assert sorted(pred.groupby("instrument").size().to_dict().items()) == [("ES", 150), ("NQ", 150)]
    assert pred["features"].map(lambda v: v[1] is None).all()  # NaN stored as null, never a number
    assert str(pred["bar_time"].dtype).startswith("datetime64") and str(pred["exit_time"].dtype).startswith("datetime64")
    # a restarted writer remembers what it wrote: an identical record is skipped, a new one written
    again = PostgresPredictionLog(pg_url, writer="ES")
    assert again.remember(None) == 600
    rec = ev[ev["prediction_id"].eq("ES-0") & ev["event"].eq("outcome")].iloc[0]
    assert again.append("outcome", prediction_id="ES-0", exit_time=rec["exit_time"].isoformat(), pnl_net=0.0) is False
    assert again.append("outcome", prediction_id="ES-0", exit_time=rec["exit_time"].isoformat(), pnl_net=5.0)
    again.close()
    assert predictions(pg_url).set_index("prediction_id").loc["ES-0", "pnl_net"] == 5.0  # the last one counts
    # the engine picks the log from the environment
    monkeypatch.setenv("ROONEY_PREDICTION_LOG_URL", pg_url)
    assert isinstance(open_log(tmp_path / "unused"), PostgresPredictionLog)
    from rooney_core.monitoring import dashboard as db  # and monitoring reads it from there

    paths = db.DashboardPaths(tmp_path / "state", tmp_path / "models", tmp_path / "lake", tmp_path / "alerts")
    assert len(db.read_log(paths)) == 300
    monkeypatch.delenv("ROONEY_PREDICTION_LOG_URL")
    assert len(db.read_log(paths)) == 0  # the state dir has no log of its own
    assert isinstance(open_log(tmp_path / "unused"), PredictionLog)


LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"


def test_dg_dev_serves_the_postgres_instance_and_its_daemon_runs_what_the_ui_launches(pg_url, tmp_path):
    """`dg dev` (the README's primary command) on the production home: the UI's GraphQL launches
    a partition run, it waits in the queue, the daemon dg dev started runs it, and the run is a
    row of the PostgreSQL runs table."""
    import psycopg2
    from test_daemon import Dev

    home, data = _home(tmp_path), tmp_path / "data"
    write_sample_data(data, ["ES", "NQ"], "2023-01-02", "2023-06-30", seed=5, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=15)
    env = {"DAGSTER_PG_URL": pg_url, "ROONEY_DATA_DIR": str(data), "ROONEY_LAKE_DIR": str(tmp_path / "lake"),
           "ROONEY_MODEL_STORE": str(tmp_path / "models")}
    dev = Dev(home, env, command=["dg", "dev", "--host", "127.0.0.1"])
    try:
        names = dev.wait(lambda: [e["name"] for e in dev.gql(LOCATIONS)["workspaceOrError"]["locationEntries"]], 240)
        assert len(names) == 1, names
        params = {"selector": {"repositoryLocationName": names[0], "repositoryName": "__repository__",
                               "jobName": "bars_job"},
                  "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "NQ"}]}}
        out = dev.gql(LAUNCH, {"params": params})["launchRun"]
        assert out["__typename"] == "LaunchRunSuccess", out
        run_id = out["run"]["runId"]
        def finished():
            st = dev.gql(RUN, {"id": run_id})["runOrError"]["status"]
            return st if st in ("SUCCESS", "FAILURE", "CANCELED") else None

        assert dev.wait(finished, 300) == "SUCCESS", dev.log_path.read_text(errors="replace")[-4000:]
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT status, partition FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchone() == ("SUCCESS", "NQ")
            cur.execute("SELECT dagster_event_type FROM event_logs WHERE run_id = %s AND dagster_event_type IS NOT NULL "
                        "ORDER BY id", (run_id,))
            kinds = [r[0] for r in cur.fetchall()]
        # queued (the UI only enqueues), then launched by dg dev's daemon (DagsterEventType's stored names)
        assert kinds.index("PIPELINE_ENQUEUED") < kinds.index("PIPELINE_STARTING") < kinds.index("PIPELINE_SUCCESS")
        assert (tmp_path / "lake" / "hourly" / "NQ.parquet").is_file()
        assert not (home / "history").exists() and not (home / "storage" / "runs").exists()  # no SQLite beside it
    finally:
        dev.stop()


def test_every_run_concurrency_limit_matches_a_tag_that_runs_carry():
    """A tag_concurrency_limits entry keyed on something no run carries never applies (the
    full-scale run had four trainings at once under a limit of two on dagster/job_name): each
    limit of the production instance must match the tags of a job that needs it."""
    import yaml

    from rooney_pipeline.definitions import defs

    conf = yaml.safe_load((REPO_ROOT / "dagster_home" / "postgres" / "dagster.yaml").read_text())
    limits = conf["concurrency"]["runs"]["tag_concurrency_limits"]
    assert limits
    jobs = {j.name: j.tags for j in defs.get_repository_def().get_all_jobs()}
    for limit in limits:
        assert limit["key"] != "dagster/job_name"
        carried = [name for name, tags in jobs.items() if tags.get(limit["key"]) == limit.get("value")]
        assert carried, f"no job's runs carry {limit['key']}={limit.get('value')}"
    # the heavy ones are capped: training, and the live-engine replays (~1.25 GB each at full scale)
    for heavy in ("train_job", "retrain_job", "paper_stage_job", "paper_job"):
        assert any(jobs[heavy].get(x["key"]) == x.get("value") for x in limits), heavy
