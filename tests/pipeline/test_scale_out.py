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
from rooney_core.data.sample import load_sample_market, write_sample_data
from rooney_core.model import ModelStore
from rooney_pipeline.assets import ASSETS
from rooney_pipeline.resources import DiscordResource, RooneyResource


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """ES and NQ sample data, bars, features and ES candidates in a fresh lake."""
    cfg = load_config()
    root = tmp_path_factory.mktemp("scale")
    data = root / "data"
    write_sample_data(data, ["ES", "NQ"], "2018-01-01", "2024-12-31", seed=5, edge=1.0, cfg=cfg,
                      market=load_sample_market(cfg.config_dir), interval_minutes=5)
    lake = root / "lake"
    res = RooneyResource(data_dir=str(data), lake_dir=str(lake))
    inst = dg.DagsterInstance.ephemeral()
    for sym in ("NQ", "ES"):
        r = dg.materialize(ASSETS, selection=["raw_bars", "hourly_bars", "daily_bars"], partition_key=sym,
                           resources={"rooney": res, "discord": DiscordResource()}, instance=inst)
        assert r.success
    r = dg.materialize(ASSETS, selection=["features", "candidate_trades"], partition_key="ES",
                       resources={"rooney": res, "discord": DiscordResource()}, instance=inst)
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
