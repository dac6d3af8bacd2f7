"""The ``rooney`` CLI and the ``dagster asset materialize`` path, as users call them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from raw_cases import CASES, write_case

from rooney_core.config import REPO_ROOT
from rooney_core.features import REGISTRY
from rooney_pipeline.cli import cli


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_data")
    res = CliRunner().invoke(cli, ["sample-data", "--out", str(out), "--symbols", "ES,NQ",
                                   "--start", "2024-01-01", "--end", "2024-03-31", "--seed", "5",
                                   "--interval", "5"], obj={})
    assert res.exit_code == 0, res.output
    return out


def test_sample_data_is_deterministic_by_seed(data_dir, tmp_path):
    res = CliRunner().invoke(cli, ["sample-data", "--out", str(tmp_path), "--symbols", "ES",
                                   "--start", "2024-01-01", "--end", "2024-03-31", "--seed", "5",
                                   "--interval", "5"], obj={})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ES_bt.csv").read_bytes() == (data_dir / "ES_bt.csv").read_bytes()


def test_check_data_passes_on_good_files(data_dir):
    res = CliRunner().invoke(cli, ["check-data", str(data_dir)], obj={})
    assert res.exit_code == 0, res.output
    assert "ES: ok" in res.output and "NQ: ok" in res.output


def test_check_data_lists_every_problem_on_stderr(data_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    case = next(c for c in CASES if c[0] == "high below low")
    write_case(bad / "ES_bt.csv", case)
    (bad / "NQ_bt.csv").write_bytes((data_dir / "NQ_bt.csv").read_bytes())
    res = CliRunner().invoke(cli, ["check-data", str(bad)], obj={})
    assert res.exit_code == 1
    assert "ES_bt.csv: line 3" in res.stderr and "[high-below-low]" in res.stderr
    assert "NQ: ok" in res.stdout


def test_unknown_symbol_is_a_config_error(data_dir):
    res = CliRunner().invoke(cli, ["check-data", str(data_dir), "--symbols", "ZZ"], obj={})
    assert res.exit_code == 2 and "unknown instrument 'ZZ'" in res.stderr


def test_bars_and_features_commands(data_dir, tmp_path):
    res = CliRunner().invoke(cli, ["bars", "--data-dir", str(data_dir), "--symbol", "ES",
                                   "--out-dir", str(tmp_path)], obj={})
    assert res.exit_code == 0, res.output
    hourly = pd.read_parquet(tmp_path / "ES_hourly.parquet")
    daily = pd.read_parquet(tmp_path / "ES_daily.parquet")
    for df in (hourly, daily):
        assert list(df.columns) == ["open", "high", "low", "close", "volume"]
        assert df.index.name == "timestamp"
    assert (daily.index.normalize() == daily.index).all()
    out = tmp_path / "ES_features.parquet"
    res = CliRunner().invoke(cli, ["features", "--data-dir", str(data_dir), "--symbol", "ES",
                                   "--out", str(out)], obj={})
    assert res.exit_code == 0, res.output
    feats = pd.read_parquet(out)
    assert list(feats.columns) == REGISTRY.names() and feats.index.equals(hourly.index)


def test_backtest_and_candidates_commands(data_dir, tmp_path):
    import json

    res = CliRunner().invoke(cli, ["backtest", "--data-dir", str(data_dir), "--symbol", "ES", "--start", "2024-02-01",
                                   "--out", str(tmp_path / "bt")], obj={})
    assert res.exit_code == 0, res.output
    trades = pd.read_csv(tmp_path / "bt" / "trades.csv")
    assert list(trades.columns[:7]) == ["entry_time", "exit_time", "entry_price", "exit_price", "exit_reason",
                                        "contracts", "pnl_net"]
    assert len(trades) > 10 and (pd.to_datetime(trades["entry_time"]) >= "2024-02-01").all()
    metrics = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert metrics["trades"] == len(trades) and metrics["net_pnl"] == pytest.approx(trades["pnl_net"].sum())
    assert (tmp_path / "bt" / "equity.png").stat().st_size > 1000
    out = tmp_path / "cands.parquet"
    res = CliRunner().invoke(cli, ["candidates", "--data-dir", str(data_dir), "--symbol", "ES", "--out", str(out)],
                             obj={})
    assert res.exit_code == 0, res.output
    cands = pd.read_parquet(out)
    assert len(cands) > len(trades) and "win" in cands and set(REGISTRY.names()) <= set(cands.columns)


@pytest.mark.slow
def test_dg_launch_and_dagster_cli_materialise_a_partition(data_dir, tmp_path):
    """`dg launch --assets ... --partition ES` (the primary path) and the older `dagster asset
    materialize` against a user's directory: the bars of ES and NQ are materialised by two
    concurrent processes, one of each, sharing one instance and one lake (R4: no lock errors,
    no corrupted files); then the features with dg launch."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "ROONEY_DATA_DIR": str(data_dir),
           "ROONEY_LAKE_DIR": str(tmp_path / "lake")}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "rooney_pipeline.definitions"]
    # a new SQLite instance must be created once before concurrent runs (Dagster's schema
    # creation itself is not concurrency-safe); the demo and `dagster dev` do this.
    subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"], env=env, check=True)
    dg_launch = [str(Path(sys.executable).parent / "dg"), "launch"]
    commands = {"ES": [*dg_launch, "--assets", "raw_bars,hourly_bars,daily_bars", "--partition", "ES"],
                "NQ": [*dagster, "--select", "raw_bars,hourly_bars,daily_bars", "--partition", "NQ"]}
    procs = [subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for cmd in commands.values()]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
        assert "database is locked" not in out
    for sym in ("ES", "NQ"):
        assert len(pd.read_parquet(tmp_path / "lake" / "hourly" / f"{sym}.parquet")) > 1000
    proc = subprocess.run([*dg_launch, "--assets", "features", "--partition", "ES"],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    feats = pd.read_parquet(tmp_path / "lake" / "features" / "ES.parquet")
    assert len(feats) > 1000 and feats["p_rsi2"].notna().any()


@pytest.mark.slow
def test_dg_check_defs_passes():
    proc = subprocess.run([str(Path(sys.executable).parent / "dg"), "check", "defs"], cwd=REPO_ROOT,
                          capture_output=True, text=True, env={**os.environ, "DAGSTER_HOME": ""})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr


def test_health_trip_status_and_the_audited_restore(tmp_path, monkeypatch):
    monkeypatch.setenv("ROONEY_MODEL_STORE", str(tmp_path / "models"))
    run = CliRunner()
    res = run.invoke(cli, ["health", "trip", "ES", "--reason", "feed looks wrong"], obj={})
    assert res.exit_code == 0 and "ES: PAPER since" in res.output, res.output
    res = run.invoke(cli, ["health", "status"], obj={})
    assert "ES   PAPER" in res.output and "feed looks wrong" in res.output and "NQ   LIVE" in res.output
    res = run.invoke(cli, ["health", "restore", "ES", "--reason", "checked"], obj={})
    assert res.exit_code != 0 and "--by" in res.output  # who restores it is required
    res = run.invoke(cli, ["health", "restore", "ES", "--by", "jane", "--reason", "feed checked with the vendor"],
                     obj={})
    assert res.exit_code == 0 and "LIVE again" in res.output, res.output
    res = run.invoke(cli, ["health", "restore", "ES", "--by", "jane", "--reason", "again"], obj={})
    assert res.exit_code == 1 and "not switched to paper" in res.output
    res = run.invoke(cli, ["health", "status", "--json"], obj={})
    import json

    audit = json.loads(res.output)["audit"]
    assert [(a["event"], a["by"]) for a in audit] == [("trip", audit[0]["by"]), ("restore", "jane")]


def test_monitor_says_what_it_could_not_judge(tmp_path, monkeypatch):
    monkeypatch.setenv("ROONEY_MODEL_STORE", str(tmp_path / "models"))
    res = CliRunner().invoke(cli, ["monitor", "--symbol", "ES", "--state-dir", str(tmp_path / "live")], obj={})
    assert res.exit_code == 0, res.output  # nothing active: nothing to judge is not an alarm
    assert "ES: model none" in res.output and "no verdict" not in res.output.split("\n")[0]
    assert res.output.count("no production") + res.output.count("no model") >= 1
    res = CliRunner().invoke(cli, ["monitor", "--symbol", "XX"], obj={})
    assert res.exit_code != 0 and "XX" in res.output
