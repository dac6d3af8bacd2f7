"""The portfolio assets really run in Dagster (portfolio_config: optimise, store, promote when it
passes; portfolio_backtest: the out-of-sample report and the live engine's parity replay), and
`rooney portfolio show | promote | rollback | history` on the versions they stored."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from rooney_core.config import DEFAULT_CONFIG_DIR, load_config
from rooney_core.model import ModelStore
from rooney_core.portfolio import deploy
from rooney_core.sample_market import load_sample_market, write_sample_data
from rooney_pipeline.assets import ASSETS
from rooney_pipeline.cli import cli
from rooney_pipeline.resources import resources

SYMBOLS = ["ES", "NQ"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Ten months of 5-minute ES and NQ bars through bars, features and candidates into a lake,
    with a config dir of its own (a short holdout, few trials) and an empty model store."""
    cfg = load_config()
    root = tmp_path_factory.mktemp("portfolio_pipeline")
    data = root / "data"
    write_sample_data(data, SYMBOLS, "2023-03-01", "2023-12-31", seed=21, edge=1.0, cfg=cfg,
                      market=load_sample_market(cfg.config_dir), interval_minutes=5)
    cfg_dir = root / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, cfg_dir)
    (cfg_dir / "portfolio_config.yml").unlink(missing_ok=True)
    text = (cfg_dir / "pipeline.yml").read_text().replace("symbols: [ES, NQ, GC, SI, CL, NG]\n",
                                                          "symbols: [ES, NQ]\n", 1)
    (cfg_dir / "pipeline.yml").write_text(text)
    (cfg_dir / "training" / "defaults.yml").write_text(
        (cfg_dir / "training" / "defaults.yml").read_text().replace("holdout_years: 2 ", "holdout_years: 0.25 "))
    res = resources(config_dir=str(cfg_dir), data_dir=str(data), lake_dir=str(root / "lake"),
                         model_store=str(root / "models"))
    inst = dg.DagsterInstance.ephemeral()
    for sym in SYMBOLS:
        r = dg.materialize(ASSETS, selection=["raw_bars", "hourly_bars", "daily_bars"], partition_key=sym,
                           resources=res, instance=inst)
        assert r.success
    for sym in SYMBOLS:
        r = dg.materialize(ASSETS, selection=["features", "candidate_trades"], partition_key=sym,
                           resources=res, instance=inst)
        assert r.success
    return res, inst, cfg_dir, root


def test_portfolio_assets_store_a_version_report_it_and_replay_it_live(pipeline):
    res, inst, cfg_dir, root = pipeline
    assert load_config(cfg_dir).symbols == SYMBOLS
    store = ModelStore(root / "models")
    run_cfg = {"ops": {"portfolio_config": {"config": {"trials": 4, "n_jobs": 2}}}}
    r = dg.materialize(ASSETS, selection=["portfolio_config"], resources=res, instance=inst,
                       run_config=run_cfg)
    assert r.success
    [mat] = [e.materialization for e in r.get_asset_materialization_events()]
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["version"] == "portfolio_v1" and store.portfolio_versions() == ["portfolio_v1"]
    [check] = r.get_asset_check_evaluations()
    config = deploy.load(store, "portfolio_v1")
    problems = deploy.gates(config)
    # promoted exactly when it passes, and the check says the same
    assert check.passed == (not problems)
    assert (store.production_portfolio() == "portfolio_v1") == (not problems)
    assert (cfg_dir / "portfolio_config.yml").is_file() == (not problems)
    for plot in ("equity_plot", "correlation_plot", "skipped_plot"):
        assert md[plot].startswith("![")
    assert (store.portfolio_dir("portfolio_v1") / "report.html").read_text().lstrip().lower().startswith("<!doctype")
    assert config.train.end <= config.holdout.start  # chosen before the holdout

    # the CLI: promote (forced if it failed its gates), show, a second version, rollback, history
    runner = CliRunner(env={"ROONEY_MODEL_STORE": str(root / "models")})
    args = ["--config-dir", str(cfg_dir), "portfolio"]
    if problems:
        bad = runner.invoke(cli, [*args, "promote", "portfolio_v1"], obj={})
        assert bad.exit_code == 1 and "not promoted" in bad.output
        ok = runner.invoke(cli, [*args, "promote", "portfolio_v1", "--force", "--reason", "test"], obj={})
        assert ok.exit_code == 0, ok.output
    assert store.production_portfolio() == "portfolio_v1"
    exported = (cfg_dir / "portfolio_config.yml").read_text()
    assert "portfolio_v1" in exported.splitlines()[0]
    shown = runner.invoke(cli, [*args, "show"], obj={})
    assert shown.exit_code == 0 and "portfolio_v1 (production)" in shown.output and "rules:" in shown.output

    r = dg.materialize(ASSETS, selection=["portfolio_backtest"], resources=res, instance=inst,
                       run_config={"ops": {"portfolio_backtest": {"config": {"parity_months": 1}}}})
    assert r.success
    [parity] = r.get_asset_check_evaluations()
    assert parity.check_name == "portfolio_live_parity" and parity.passed, parity.description
    [mat] = [e.materialization for e in r.get_asset_materialization_events()]
    assert mat.metadata["version"].value == "portfolio_v1"
    assert Path(mat.metadata["report"].value).is_file()

    r = dg.materialize(ASSETS, selection=["portfolio_config"], resources=res, instance=inst,
                       run_config={"ops": {"portfolio_config": {"config": {"trials": 3, "n_jobs": 1,
                                                                           "promote": False}}}})
    assert r.success and store.portfolio_versions() == ["portfolio_v1", "portfolio_v2"]
    assert store.production_portfolio() == "portfolio_v1"  # promote is off
    ok = runner.invoke(cli, [*args, "promote", "portfolio_v2", "--force", "--reason", "second"], obj={})
    assert ok.exit_code == 0, ok.output
    assert "portfolio_v2" in (cfg_dir / "portfolio_config.yml").read_text().splitlines()[0]
    back = runner.invoke(cli, [*args, "rollback", "--reason", "test rollback"], obj={})
    assert back.exit_code == 0 and "portfolio_v1 in production" in back.output
    assert "portfolio_v1" in (cfg_dir / "portfolio_config.yml").read_text().splitlines()[0]
    hist = runner.invoke(cli, [*args, "history"], obj={})
    lines = [ln for ln in hist.output.splitlines() if ln.strip()]
    assert [ln.split()[1] for ln in lines][-2:] == ["promote", "rollback"]
    assert all("(done)" in ln for ln in lines)
