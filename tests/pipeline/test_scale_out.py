"""The scale-out path: the training job on a Dask LocalCluster (2 worker processes) through
dagster-dask, and two processes working on one Optuna study through the journal storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import dagster as dg
import optuna
import pytest

from rooney_core.config import REPO_ROOT, load_config
from rooney_core.model import ModelStore
from rooney_core.sample_market import load_sample_market, write_sample_data
from rooney_pipeline.assets import ASSETS
from rooney_pipeline.resources import resources


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """ES and NQ sample data, bars, features and ES candidates in a fresh lake."""
    cfg = load_config()
    root = tmp_path_factory.mktemp("scale")
    data = root / "data"
    write_sample_data(data, ["ES", "NQ"], "2018-01-01", "2024-12-31", seed=5, edge=1.0, cfg=cfg,
                      market=load_sample_market(cfg.config_dir), interval_minutes=5)
    lake = root / "lake"
    res = resources(data_dir=str(data), lake_dir=str(lake))
    inst = dg.DagsterInstance.ephemeral()
    for sym in ("NQ", "ES"):
        r = dg.materialize(ASSETS, selection=["raw_bars", "hourly_bars", "daily_bars"], partition_key=sym,
                           resources=res, instance=inst)
        assert r.success
    r = dg.materialize(ASSETS, selection=["features", "candidate_trades"], partition_key="ES",
                       resources=res, instance=inst)
    assert r.success
    return root, data, lake


@pytest.mark.slow
def test_training_job_runs_on_a_dask_local_cluster(prepared):
    root, data, lake = prepared
    home = root / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    store = root / "models"
    env = {**os.environ, "DAGSTER_HOME": str(home), "ROONEY_DATA_DIR": str(data), "ROONEY_LAKE_DIR": str(lake),
           "ROONEY_MODEL_STORE": str(store), "ROONEY_EXECUTOR": "dask"}
    run_config = {"ops": {"veto_model": {"config": {"profile": "demo", "trials": 3}}}}
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "rooney_pipeline.definitions",
         "--select", "veto_model", "--partition", "ES", "--config-json", json.dumps(run_config)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    versions = ModelStore(store).list_versions("ES")
    assert [v["version"] for v in versions] == ["ES_v1"]
    # the step ran in a Dask worker process, not in the process that launched the run
    instance = dg.DagsterInstance.from_config(str(home))
    [record] = instance.get_run_records()
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    events = instance.all_logs(record.dagster_run.run_id)
    pids = {e.dagster_event.event_type_value: e.dagster_event.pid for e in events if e.dagster_event}
    run_pid, step_pid = pids["PIPELINE_START"], pids["STEP_START"]  # PIPELINE_START is RUN_START
    assert step_pid != run_pid


WORKER = textwrap.dedent("""
    import os, sys
    import pandas as pd
    from rooney_core.config import load_config
    from rooney_core.training.config import load_training_config
    from rooney_core.training.splits import split_holdout, walk_forward_folds
    from rooney_core.training.tuning import TradeSet, create_study, make_objective, run_trials, study_storage
    from pathlib import Path
    cfg = load_config()
    cands = pd.read_parquet(sys.argv[1])
    tcfg = load_training_config(cfg.config_dir, "ES", "demo").model_copy(update={"trials": int(sys.argv[3])})
    feats = ["ibs", "rsi2", "ret3", "volume_pctl252", "atr5_z252", "d_rsi2", "hour"]
    rows = cands.dropna(subset=feats).reset_index(drop=True)
    train, _, _ = split_holdout(rows, tcfg.holdout_years)
    folds = walk_forward_folds(train, tcfg.folds, tcfg.embargo_days)
    inner = make_objective(TradeSet.from_frame(train, feats, cfg.instrument("ES").calendar), folds, tcfg)
    def objective(trial):
        trial.set_user_attr("pid", os.getpid())
        return inner(trial)
    study = create_study(tcfg, study_storage(tcfg, Path(sys.argv[2])), "shared-study", shared=True)
    run_trials(study, objective, tcfg.trials, shared=True)
""")


@pytest.mark.slow
def test_two_processes_share_one_optuna_study(prepared, tmp_path):
    _, _, lake = prepared
    cands = lake / "candidates" / "ES.parquet"
    journal = tmp_path / "study.journal"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(cands), str(journal), "8"], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="shared-study", storage=JournalStorage(JournalFileBackend(str(journal))))
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 8 <= len(finished) <= 9  # the two stop together at 8 (one may finish a last trial in flight)
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # both processes contributed
    assert len({t.number for t in study.trials}) == len(study.trials)  # no trial written twice


# --- a Dask cluster of its own processes ---------------------------------------------------------


class DaskCluster:
    """`dask scheduler` and two `dask worker` processes (each with its nanny), as a desk
    starts them on its machines: with the pipeline's environment (where the data, the lake and
    the model store are), since the steps run there."""

    def __init__(self, root, env: dict[str, str]):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{self.port}"
        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        self.logs = [open(root / f"dask-{i}.log", "wb") for i in range(3)]  # noqa: SIM115 - closed in stop
        self.procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                        "--no-dashboard"], stdout=self.logs[0], stderr=subprocess.STDOUT, env=env,
                                       cwd=REPO_ROOT, start_new_session=True)]
        for i in (1, 2):
            self.procs.append(subprocess.Popen(
                [dask, "worker", self.address, "--nthreads", "1", "--nworkers", "1", "--name", f"w{i}",
                 "--no-dashboard"], stdout=self.logs[i], stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
                start_new_session=True))
        from distributed import Client

        self.client = Client(self.address, timeout=60)
        self.client.wait_for_workers(2, timeout=120)

    def worker_pids(self) -> dict[int, str]:
        """pid -> address of every worker process (asked of the workers themselves)."""
        return {pid: addr for addr, pid in self.client.run(os.getpid).items()}

    def stop(self) -> None:
        import signal

        self.client.close()
        for p in self.procs[::-1]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()


def _materialize(env, select: str, run_config=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "rooney_pipeline.definitions",
         "--select", select, "--partition", "ES", *(["--config-json", json.dumps(run_config)] if run_config else [])],
        env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _step_pids(instance, run_id: str, step: str) -> list[int]:
    return [e.dagster_event.pid for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "STEP_START" and e.step_key == step]


@pytest.mark.slow
def test_training_and_backtest_run_on_separate_dask_workers_and_survive_a_killed_worker(prepared):
    """The steps run in the workers' processes (their pids), not in the run's; a worker killed
    in the middle of training: Dask runs the step again on a worker, the run succeeds, and the
    model store holds one whole, verified version."""
    import signal
    import time

    root, data, lake = prepared
    home = root / "home-cluster"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    store = root / "models-cluster"
    env = {**os.environ, "DAGSTER_HOME": str(home), "ROONEY_DATA_DIR": str(data), "ROONEY_LAKE_DIR": str(lake),
           "ROONEY_MODEL_STORE": str(store), "ROONEY_EXECUTOR": "dask"}
    cluster = DaskCluster(root, env)
    try:
        env["ROONEY_DASK_ADDRESS"] = cluster.address
        instance = dg.DagsterInstance.from_config(str(home))
        workers = cluster.worker_pids()
        assert len(workers) == 2
        proc = _materialize(env, "veto_model", {"ops": {"veto_model": {"config": {"profile": "demo", "trials": 4}}}})
        killed = None
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            runs = instance.get_run_records()
            pids = _step_pids(instance, runs[0].dagster_run.run_id, "veto_model") if runs else []
            if pids:
                time.sleep(4)  # in the middle of tuning
                assert pids[0] in workers, (pids, workers)
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            time.sleep(0.5)
        out = proc.communicate(timeout=900)[0]
        assert killed is not None, out[-3000:]
        assert proc.returncode == 0, out[-4000:]
        [record] = instance.get_run_records()
        run_id = record.dagster_run.run_id
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        pids = _step_pids(instance, run_id, "veto_model")
        assert pids[0] == killed and len(pids) == 2 and pids[1] != killed  # run again, by another process
        assert pids[1] in cluster.worker_pids()  # a worker's (the other one, or the killed one's restart)
        run_pid = next(e.dagster_event.pid for e in instance.all_logs(run_id)
                       if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_START")
        assert run_pid not in pids
        s = ModelStore(store)
        assert [v["version"] for v in s.list_versions("ES")] == ["ES_v1"]
        s.load("ES_v1")  # whole: its files verify against their sha256
        # the backtest step on the cluster too
        proc = _materialize(env, "instrument_backtest")
        out = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, out[-4000:]
        latest = instance.get_run_records(limit=1)[0].dagster_run.run_id
        [bt_pid] = _step_pids(instance, latest, "instrument_backtest")
        assert bt_pid in cluster.worker_pids()
    finally:
        cluster.stop()
