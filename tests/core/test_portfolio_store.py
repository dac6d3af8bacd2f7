"""Portfolio versions in the model store (``portfolio_v<N>``) and their deployment
(rooney_core/portfolio/deploy.py): immutable sha256-checked versions, promote/rollback
through the audit log, the export to configs/portfolio_config.yml, flags for models no
longer in production, a writer killed mid-promotion, and the two configs' validation."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from test_model_store import make_bundle, snapshot

from rooney_core.errors import ConfigError
from rooney_core.model import ModelIntegrityError, ModelStore, ModelStoreError
from rooney_core.portfolio import deploy
from rooney_core.portfolio.config import (
    EXPORT_FILE,
    PortfolioConfig,
    PortfolioSearch,
    RulesSpec,
    load_exported,
    load_search,
    parse_portfolio,
)

FORK = multiprocessing.get_context("fork")
SYMBOLS = ["ES", "GC", "NQ"]


def make_config(**over) -> PortfolioConfig:
    """A hand-made config with values YAML likes to re-type (digit-only hash, "yes", times)."""
    kw = dict(symbols=SYMBOLS, capital=100_000.0,
              rules=RulesSpec(risk_budget=1250.0, max_contracts=5, max_positions=2, corr_rho=0.6, corr_window=60,
                              daily_loss_stop=2000.0, allocation={"equity_index": 2.0, "metals": 4.0}),
              models={s: None for s in SYMBOLS}, model_sha256={s: None for s in SYMBOLS},
              data={"ES": "0123456789" * 6 + "0123", "GC": "ab" * 32, "NQ": "1e10"},
              train={"start": "2020-01-02 17:00:00", "end": "2021-12-29 00:00:00"},
              holdout={"start": "2021-12-29 00:00:00", "end": "2023-12-29 15:00:00"},
              objective={"name": "sharpe", "value": 0.85, "feasible": True, "seed": 42, "note": "yes",
                         "limits": {"max_drawdown_pct": 0.3, "min_trades": 50}},
              holdout_figures={"sharpe": 0.4, "trades": 120, "calmar": None},
              created_at="2024-05-01T12:00:00+00:00")
    kw.update(over)
    return PortfolioConfig(**kw)


def audit_rows(store: ModelStore) -> list[tuple]:
    return [(r["action"], r["version"], r["replaced"], r["by"], r["reason"], r["status"])
            for r in deploy.history(store)]


# ---- versions -------------------------------------------------------------------------------


def test_versions_are_numbered_immutable_and_carry_their_name(tmp_path):
    store = ModelStore(tmp_path)
    assert store.portfolio_versions() == [] and deploy.production(store) is None
    c1 = make_config(version="portfolio_v7")  # a version given by the caller is never kept
    v1 = deploy.save(store, c1, {"report.html": b"<html>one</html>"})
    assert v1 == "portfolio_v1"
    stored = json.loads((tmp_path / "portfolios" / v1 / "portfolio.json").read_text())
    assert stored["version"] == v1
    before = snapshot(tmp_path / "portfolios" / v1)
    v2 = deploy.save(store, make_config(capital=50_000.0), {"report.html": b"<html>two</html>"})
    v3 = deploy.save(store, c1)
    assert (v2, v3) == ("portfolio_v2", "portfolio_v3")
    assert store.portfolio_versions() == [v1, v2, v3]
    assert snapshot(tmp_path / "portfolios" / v1) == before  # nothing rewrote v1
    assert (tmp_path / "portfolios" / v1 / "report.html").read_bytes() == b"<html>one</html>"

    loaded = deploy.load(store, v1)
    assert loaded.version == v1 and loaded == c1.model_copy(update={"version": v1})
    assert deploy.load(store, v2).capital == 50_000.0
    records = store.portfolio_records()
    assert set(records) == {v1, v2, v3} and records[v1]["models"] == {s: None for s in SYMBOLS}
    assert set(records[v1]["extra_files"]) == {"report.html"}

    with pytest.raises(ModelStoreError, match="unknown portfolio version 'portfolio_v9'.*portfolio_v1, "):
        deploy.load(store, "portfolio_v9")
    for bad in ("../portfolios/portfolio_v1", "portfolio_v01", "ES_v1"):
        with pytest.raises(ModelStoreError, match="unknown portfolio version"):
            store.load_portfolio(bad)
    with pytest.raises(ModelStoreError, match="extra file name"):
        deploy.save(store, c1, {"../evil": b""})
    with pytest.raises(ModelStoreError, match="extra file name"):
        deploy.save(store, c1, {"portfolio.json": b"{}"})
    assert store.portfolio_versions() == [v1, v2, v3]


def test_a_number_recorded_by_a_killed_writer_is_never_reused(tmp_path):
    store = ModelStore(tmp_path)
    deploy.save(store, make_config())
    # a writer that recorded portfolio_v2 and died before its rename: the name stays taken
    with open(store.portfolio_records_path, "a") as fh:
        fh.write(json.dumps({"version": "portfolio_v2", "sha256": "0" * 64}) + "\n")
    assert deploy.save(store, make_config()) == "portfolio_v3"
    assert store.portfolio_versions() == ["portfolio_v1", "portfolio_v3"]


def test_a_file_edited_on_disk_is_refused(tmp_path):
    store = ModelStore(tmp_path)
    v1 = deploy.save(store, make_config())
    v2 = deploy.save(store, make_config())
    path = tmp_path / "portfolios" / v1 / "portfolio.json"
    raw = json.loads(path.read_text())
    raw["rules"]["max_positions"] = 9  # a loosened rule, still a valid config
    path.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ModelIntegrityError, match=r"changed on disk after it was stored.*from portfolios\.log") as err:
        deploy.load(store, v1)
    assert str(path) in str(err.value)
    with pytest.raises(ModelIntegrityError, match="changed on disk"):
        deploy.promote(store, v1, by="mallory")
    assert store.production_portfolio() is None and deploy.history(store) == []

    # the production version is checked against the manifest
    deploy.promote(store, v2, by="alice")
    path2 = tmp_path / "portfolios" / v2 / "portfolio.json"
    path2.write_text(path2.read_text().replace('"max_positions": 2', '"max_positions": 3'))
    with pytest.raises(ModelIntegrityError, match="changed on disk.*from the manifest"):
        deploy.production(store)


def test_a_conflicting_log_line_or_manifest_sha256_is_refused(tmp_path):
    store = ModelStore(tmp_path)
    v1 = deploy.save(store, make_config())
    v2 = deploy.save(store, make_config())
    sha1 = store.portfolio_records()[v1]["sha256"]
    with open(store.portfolio_records_path, "a") as fh:
        fh.write(json.dumps({"version": v1, "sha256": sha1}) + "\n")  # the same record again: harmless
    assert deploy.load(store, v1).version == v1
    with open(store.portfolio_records_path, "a") as fh:
        fh.write(json.dumps({"version": v1, "sha256": "f" * 64}) + "\n")
    assert store.portfolio_records()[v1]["conflicting"]
    with pytest.raises(ModelIntegrityError, match=f"{v1} has no single record"):
        store.load_portfolio(v1)
    with pytest.raises(ModelIntegrityError, match="no single record"):
        deploy.promote(store, v1, by="mallory")
    assert store.production_portfolio() is None

    deploy.promote(store, v2, by="alice")
    man = json.loads(store.manifest_path.read_text())
    man["portfolio"]["sha256"] = "e" * 64
    store.manifest_path.write_text(json.dumps(man))
    with pytest.raises(ModelIntegrityError, match="the manifest's sha256 differs"):
        deploy.load(store, v2)


# ---- promote, rollback, the audit log ---------------------------------------------------------


def test_promote_promote_rollback_manifest_and_audit_log(tmp_path):
    store = ModelStore(tmp_path / "store")
    es1, es2 = store.add_version(make_bundle(seed=1)), store.add_version(make_bundle(seed=2))
    store.promote(es1, by="trader", reason="model")
    models_before = store.manifest()["instruments"]
    models = {"ES": es1, "GC": None, "NQ": None}
    v1 = deploy.save(store, make_config(models=models))
    v2 = deploy.save(store, make_config(models=models, rules=RulesSpec(max_positions=3)))
    sha = {v: store.portfolio_records()[v]["sha256"] for v in (v1, v2)}

    with pytest.raises(ModelStoreError, match="no earlier production portfolio recorded \\(current: nothing\\)"):
        deploy.rollback(store, by="carol")
    with pytest.raises(ModelStoreError, match="say who"):
        deploy.promote(store, v1, by=" ")

    e1 = deploy.promote(store, v1, by="alice", reason="first optimisation")
    assert (e1["version"], e1["previous"], e1["history"], e1["sha256"]) == (v1, None, [], sha[v1])
    assert deploy.promote(store, v1, by="alice") == store.portfolio_entry()  # already production: no-op
    e2 = deploy.promote(store, v2, by="bob", reason="re-optimised")
    assert (e2["version"], e2["previous"], e2["history"]) == (v2, v1, [v1])
    assert deploy.production(store).version == v2
    back = deploy.rollback(store, by="carol", reason="v2 trades too much")
    entry = store.manifest()["portfolio"]
    assert entry == {**back, "txn": entry["txn"]}
    assert (entry["version"], entry["action"], entry["rolled_back_from"], entry["previous"], entry["history"],
            entry["promoted_by"], entry["reason"], entry["sha256"]) == (
        v1, "rollback", v2, None, [], "carol", "v2 trades too much", sha[v1])
    assert store.production_portfolio() == v1 and deploy.production(store).version == v1
    with pytest.raises(ModelStoreError, match=f"no earlier production portfolio recorded \\(current: {v1}\\)"):
        deploy.rollback(store, by="carol")

    assert audit_rows(store) == [
        ("promote", v1, None, "alice", "first optimisation", "done"),
        ("promote", v2, v1, "bob", "re-optimised", "done"),
        ("rollback", v1, v2, "carol", "v2 trades too much", "done")]
    assert {r["symbol"] for r in deploy.history(store)} == {"portfolio"}
    assert [r["sha256"] for r in deploy.history(store)] == [sha[v1], sha[v2], sha[v1]]
    lines = [json.loads(x) for x in store.audit_path.read_text().splitlines()]
    portfolio_txns = {r["txn"] for r in lines if r.get("symbol") == "portfolio"}
    assert len(portfolio_txns) == 3
    events = [r["event"] for r in lines if r["txn"] in portfolio_txns]
    assert events == ["intent", "done"] * 3  # an intent and its outcome, each

    # portfolio promotions never touch the models' entries ...
    assert store.manifest()["instruments"] == models_before
    assert store.production("ES") == es1
    # ... nor model promotions the portfolio's
    portfolio_before = store.manifest()["portfolio"]
    store.promote(es2, by="trader")
    store.rollback("ES", by="trader")
    store.promote(es2, by="trader")
    assert store.manifest()["portfolio"] == portfolio_before
    assert [r["symbol"] for r in store.audit_log()] == ["ES"] + ["portfolio"] * 3 + ["ES"] * 3
    assert len(deploy.history(store)) == 3


# ---- the export --------------------------------------------------------------------------------


def test_export_names_the_version_reads_back_equal_and_follows_a_rollback(tmp_path):
    store, cdir = ModelStore(tmp_path / "store"), tmp_path / "configs"
    assert load_exported(cdir) is None
    v1 = deploy.save(store, make_config())
    v2 = deploy.save(store, make_config(rules=RulesSpec(contracts={"ES": 2, "GC": 1}, corr_rho=-0.2)))
    deploy.promote(store, v1, by="alice", config_dir=cdir)
    path = cdir / EXPORT_FILE
    assert path.read_text().startswith(f"# The production portfolio config: {v1}.")
    assert load_exported(cdir) == deploy.load(store, v1)

    seen = []
    real_replace = os.replace

    def checked_replace(src, dst):  # the file is replaced whole: the old one until the new one is complete
        if Path(dst) == path:
            seen.append((path.read_text(), Path(src).read_text()))
        return real_replace(src, dst)

    os.replace = checked_replace
    try:
        deploy.promote(store, v2, by="bob", config_dir=cdir)
    finally:
        os.replace = real_replace
    assert len(seen) == 1 and f"config: {v1}." in seen[0][0] and f"config: {v2}." in seen[0][1]
    text = path.read_text()
    assert f"# The production portfolio config: {v2}." in text.splitlines()[0]
    exported = load_exported(cdir)
    assert exported == deploy.load(store, v2) and exported.version == v2
    assert exported.data["ES"] == "0123456789" * 6 + "0123" and exported.objective["note"] == "yes"
    assert exported.train.start == "2020-01-02 17:00:00"  # still strings, not re-typed by YAML
    assert [p.name for p in cdir.iterdir()] == [EXPORT_FILE]  # no temp file left

    deploy.rollback(store, by="carol", reason="v2 misbehaves", config_dir=cdir)
    text = path.read_text()
    assert text.splitlines()[0].startswith(f"# The production portfolio config: {v1}.")
    assert f"# rolled back from {v2}" in text
    assert load_exported(cdir) == deploy.load(store, v1)


def test_a_failed_export_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    from rooney_core.portfolio.config import export

    cdir = tmp_path / "configs"
    export(make_config(version="portfolio_v1"), cdir)
    before = (cdir / EXPORT_FILE).read_bytes()

    def fail(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        export(make_config(version="portfolio_v2"), cdir)
    monkeypatch.undo()
    assert (cdir / EXPORT_FILE).read_bytes() == before
    assert [p.name for p in cdir.iterdir()] == [EXPORT_FILE]
    assert load_exported(cdir).version == "portfolio_v1"


def test_an_edited_export_is_validated_on_read(tmp_path):
    from rooney_core.portfolio.config import export

    cdir = tmp_path / "configs"
    path = export(make_config(version="portfolio_v1"), cdir)
    path.write_text(path.read_text().replace("  max_positions: 2", "  max_positons: 2"))
    with pytest.raises(ConfigError, match=f"{path}.*max_positons"):
        load_exported(cdir)


# ---- flags -------------------------------------------------------------------------------------


def test_a_config_on_models_no_longer_in_production_is_flagged_and_refused_unless_forced(tmp_path):
    store, cdir = ModelStore(tmp_path / "store"), tmp_path / "configs"
    es1, es2 = store.add_version(make_bundle(seed=1)), store.add_version(make_bundle(seed=2))
    store.promote(es1, by="trader")
    config = make_config(models={"ES": es1, "GC": None, "NQ": None})
    name = deploy.save(store, config)
    assert deploy.flags(store, config) == []

    store.promote(es2, by="trader", reason="retrained")
    nq1 = store.add_version(make_bundle("NQ"))
    store.promote(nq1, by="trader")
    flags = deploy.flags(store, deploy.load(store, name))
    assert flags == [f"ES: optimised on {es1}, production is now {es2}",
                     f"NQ: optimised on no model, production is now {nq1}"]

    with pytest.raises(deploy.PortfolioRefused, match=f"{name} not promoted: ES: optimised on {es1}, "
                                                       f"production is now {es2}; NQ"):
        deploy.promote(store, name, by="alice", config_dir=cdir)
    for reason in ("", "   "):
        with pytest.raises(deploy.PortfolioRefused, match="a forced promotion needs a reason"):
            deploy.promote(store, name, by="alice", reason=reason, force=True, config_dir=cdir)
    assert store.production_portfolio() is None and deploy.history(store) == []
    assert load_exported(cdir) is None  # a refused promotion exports nothing

    entry = deploy.promote(store, name, by="alice", reason="ES_v2 only recalibrated", force=True, config_dir=cdir)
    assert entry["forced"] is True and entry["flags"] == flags
    man = store.manifest()["portfolio"]
    assert man["forced"] is True and man["flags"] == flags and man["version"] == name
    (intent,) = deploy.history(store)
    assert intent["status"] == "done" and intent["by"] == "alice" and intent["reason"] == "ES_v2 only recalibrated"
    assert intent["forced"] is True and intent["flags"] == flags  # the audit log says what was overridden
    text = (cdir / EXPORT_FILE).read_text()
    assert f"# FORCED: {flags[0]}; {flags[1]}" in text
    assert store.production("ES") == es2  # the portfolio promotion changed no model


def test_an_infeasible_optimisation_is_refused_unless_forced(tmp_path):
    store = ModelStore(tmp_path)
    name = deploy.save(store, make_config(objective={"name": "sharpe", "value": -10.2, "feasible": False}))
    with pytest.raises(deploy.PortfolioRefused, match="no trial of its optimisation met every risk limit"):
        deploy.promote(store, name, by="alice")
    entry = deploy.promote(store, name, by="alice", reason="paper only", force=True)
    assert entry["forced"] and entry["flags"] == ["no trial of its optimisation met every risk limit"]


def test_a_holdout_that_lost_or_broke_its_drawdown_limit_is_refused_unless_forced(tmp_path):
    store = ModelStore(tmp_path)
    fine = deploy.save(store, make_config(holdout_figures={"sharpe": 0.3, "max_drawdown_pct": 0.3}))
    bad = deploy.save(store, make_config(holdout_figures={"sharpe": -0.2, "max_drawdown_pct": 0.45}))
    unknown = deploy.save(store, make_config(holdout_figures={"sharpe": None, "trades": 0}))
    assert deploy.promote(store, fine, by="alice")["version"] == fine  # at the limit is within it
    want = ["out of sample its Sharpe is -0.2 (needs > 0)",
            "out of sample its max drawdown is 45.0%, beyond the 30% limit"]
    with pytest.raises(deploy.PortfolioRefused, match=re.escape("; ".join(want))):
        deploy.promote(store, bad, by="alice")
    with pytest.raises(deploy.PortfolioRefused, match="its Sharpe is None"):
        deploy.promote(store, unknown, by="alice")
    assert store.production_portfolio() == fine
    deploy.promote(store, bad, by="alice", reason="a drill", force=True)
    assert deploy.history(store)[-1]["flags"] == want and deploy.history(store)[-1]["forced"] is True


def test_an_unreadable_production_entry_is_a_flag(tmp_path):
    store = ModelStore(tmp_path)
    store.promote(store.add_version(make_bundle(seed=1)), by="trader")
    man = json.loads(store.manifest_path.read_text())
    man["instruments"]["ES"]["version"] = "NQ_v1"  # damaged
    store.manifest_path.write_text(json.dumps(man))
    (flag,) = deploy.flags(store, make_config(models={"ES": "ES_v1", "GC": None, "NQ": None}))
    assert flag.startswith("ES: cannot read its production version") and "damaged" in flag


# ---- a writer killed mid-promotion ---------------------------------------------------------------


def test_an_intent_without_an_outcome_is_settled_aborted_never_done(tmp_path):
    store = ModelStore(tmp_path)
    v1, v2, v3 = (deploy.save(store, make_config()) for _ in range(3))
    deploy.promote(store, v1, by="alice")
    manifest_before = store.manifest_path.read_bytes()
    dead = "dead" * 8
    with open(store.audit_path, "a") as fh:  # the writer died after its intent, before the manifest
        fh.write(json.dumps({"event": "intent", "txn": dead, "at": "2024-01-01T00:00:00+00:00",
                             "action": "promote", "symbol": "portfolio", "version": v2, "replaced": v1,
                             "sha256": store.portfolio_records()[v2]["sha256"], "by": "doomed", "reason": ""}) + "\n")
    assert [(r["by"], r["status"]) for r in deploy.history(store)] == [("alice", "done"), ("doomed", "pending")]
    assert store.manifest_path.read_bytes() == manifest_before and store.production_portfolio() == v1

    deploy.promote(store, v3, by="bob")  # the next write settles it
    assert [(r["by"], r["version"], r["status"]) for r in deploy.history(store)] == [
        ("alice", v1, "done"), ("doomed", v2, "aborted"), ("bob", v3, "done")]
    outcomes = [json.loads(x) for x in store.audit_path.read_text().splitlines()]
    outcomes = [r["event"] for r in outcomes if r.get("txn") == dead and r["event"] != "intent"]
    assert outcomes == ["aborted"]
    entry = store.manifest()["portfolio"]
    assert entry["version"] == v3 and entry["history"] == [v1]  # v2 never took effect


def _promote_and_die(root: str, name: str) -> None:
    """Die (no cleanup, like SIGKILL) at the instant the manifest would be replaced."""
    os.replace = lambda *_a, **_k: os._exit(3)
    ModelStore(root).promote_portfolio(name, by="doomed")


def test_a_writer_killed_before_the_manifest_switch_is_aborted_and_one_after_it_done(tmp_path):
    store = ModelStore(tmp_path)
    v1, v2, v3 = (deploy.save(store, make_config()) for _ in range(3))
    deploy.promote(store, v1, by="alice")
    manifest_before = store.manifest_path.read_bytes()
    proc = FORK.Process(target=_promote_and_die, args=(str(tmp_path), v2))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 3
    assert store.manifest_path.read_bytes() == manifest_before
    assert [r["status"] for r in deploy.history(store)] == ["done", "pending"]
    removed = store.cleanup_temp()
    assert [p.name.startswith(".manifest.json.") for p in removed] == [True]
    assert [(r["by"], r["status"]) for r in deploy.history(store)] == [("alice", "done"), ("doomed", "aborted")]

    # killed after the switch, before its outcome: the manifest carries the txn, so it is done
    deploy.promote(store, v3, by="bob")
    lines = store.audit_path.read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "done"
    store.audit_path.write_text("\n".join(lines[:-1]) + "\n")
    assert deploy.history(store)[-1]["status"] == "done"  # a reader concludes it from the manifest
    store.cleanup_temp()  # the next writer writes it down
    last = json.loads(store.audit_path.read_text().splitlines()[-1])
    assert last["event"] == "done" and last["settled"] == "after an interrupted write"
    assert [r["status"] for r in deploy.history(store)] == ["done", "aborted", "done"]
    assert store.production_portfolio() == v3


# ---- validation ----------------------------------------------------------------------------------


def test_portfolio_config_validation():
    good = make_config().model_dump(mode="json")
    assert PortfolioConfig.model_validate(good) == make_config()
    with pytest.raises(ValidationError, match="rulez"):
        PortfolioConfig.model_validate({**good, "rulez": {}})
    with pytest.raises(ValidationError, match="max_postions"):
        PortfolioConfig.model_validate({**good, "rules": {**good["rules"], "max_postions": 2}})
    with pytest.raises(ValidationError, match="models names instruments not in symbols: CL"):
        PortfolioConfig.model_validate({**good, "models": {**good["models"], "CL": "CL_v1"}})
    with pytest.raises(ValidationError, match="rules.contracts names instruments not in symbols: SI"):
        PortfolioConfig.model_validate({**good, "rules": {"contracts": {"SI": 2}}})
    with pytest.raises(ValidationError, match="each instrument once"):
        PortfolioConfig.model_validate({**good, "symbols": ["ES", "ES", "GC", "NQ"]})
    for rho in (1.0, -1.0, 1.5, -3):
        with pytest.raises(ValidationError, match="corr_rho"):
            RulesSpec(corr_rho=rho)
    assert RulesSpec(corr_rho=0.99).corr_rho == 0.99 and RulesSpec(corr_rho=-0.5).corr_rho == -0.5
    for bad in ({"contracts": {"ES": 0}}, {"risk_budget": 0}, {"corr_window": 10}, {"max_contracts": 1.5},
                {"allocation": {"metals": -1.0}}):
        with pytest.raises(ValidationError):
            RulesSpec(**bad)
    with pytest.raises(ConfigError, match=r"somewhere\.json: invalid portfolio config\n.*'capital'"):
        parse_portfolio({**good, "capital": -5}, "somewhere.json")


def test_the_search_config_is_validated_and_a_typo_names_the_file(config_dir):
    search = load_search(config_dir)
    assert isinstance(search, PortfolioSearch) and search.trials >= 1
    assert search.search_space.corr_rho[0] is None  # null = the rule off
    assert load_search(config_dir, {"trials": 3, "n_jobs": 1}).trials == 3
    path = config_dir / "training" / "portfolio.yml"
    original = path.read_text()
    for good_line, typo, key in (("\ntrials:", "\ntrails:", "trails"),
                                 ("  max_drawdown_pct:", "  max_drawdown_pc:", "limits.max_drawdown_pc"),
                                 ("  corr_rho:", "  corr_roh:", "search_space.corr_roh")):
        assert good_line in original
        path.write_text(original.replace(good_line, typo, 1))
        for overrides in (None, {"trials": 3}):
            with pytest.raises(ConfigError) as err:
                load_search(config_dir, overrides)
            assert str(path) in str(err.value) and f"key '{key}'" in str(err.value)
    path.write_text(original)
    with pytest.raises(ConfigError, match=f"{path}.*key 'n_job'"):
        load_search(config_dir, {"n_job": 4})
    path.write_text(original.replace("  corr_rho: [null, 0.5", "  corr_rho: [null, 1.5", 1))
    with pytest.raises(ConfigError, match=f"{path}.*corr_rho"):
        load_search(config_dir)
    path.write_text(original.replace("risk_budget: {low: 250, high: 3000", "risk_budget: {low: 3000, high: 250", 1))
    with pytest.raises(ConfigError, match="low 3000.* > high 250"):
        load_search(config_dir)
    shutil.rmtree(config_dir / "training")
    with pytest.raises(ConfigError, match="config file not found"):
        load_search(config_dir)


def test_the_repository_search_config_loads():
    from rooney_core.config import DEFAULT_CONFIG_DIR

    search = load_search(DEFAULT_CONFIG_DIR)
    raw = yaml.safe_load((Path(DEFAULT_CONFIG_DIR) / "training" / "portfolio.yml").read_text())
    assert search.model_dump(mode="json")["search_space"] == {**search.search_space.model_dump(mode="json"),
                                                              **raw["search_space"]}
    assert search.digest() == load_search(DEFAULT_CONFIG_DIR).digest()
    assert search.digest() != load_search(DEFAULT_CONFIG_DIR, {"seed": search.seed + 1}).digest()
