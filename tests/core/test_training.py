"""Training: purged walk-forward folds, thresholds chosen without test labels, a real edge is
found and a null market is not called one, and the same inputs give the same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import GLOBEX

from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.errors import ConfigError
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.model import ModelStore
from rooney_core.model.gates import ModelData, report_json, validate_model
from rooney_core.model.promotion import PromotionRefused, promote_newest_passing, promote_version
from rooney_core.model.store import ModelIntegrityError
from rooney_core.sample_market import load_sample_market, write_sample_data
from rooney_core.training.candidates import extract_candidates
from rooney_core.training.config import load_training_config
from rooney_core.training.splits import split_holdout, walk_forward_folds
from rooney_core.training.store_version import train_and_store
from rooney_core.training.train import Market, train_veto_model
from rooney_core.training.tuning import TradeSet, fold_score

CFG = load_config()


def market_for(tmp_path_factory, edge: float, seed: int) -> tuple[pd.DataFrame, Market, Path]:
    out = tmp_path_factory.mktemp(f"market_edge{edge}")
    write_sample_data(out, ["ES", "NQ"], "2017-01-01", "2024-12-31", seed=seed, edge=edge, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=5)
    own = load_session_bars(out, CFG.instrument("ES")).hourly
    pair = load_session_bars(out, CFG.instrument("NQ")).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, "ES", own, pair))
    return (extract_candidates(own, feats, CFG.instrument("ES"), CFG.strategy),
            Market(own, feats, CFG.instrument("ES"), CFG.strategy), out)


@pytest.fixture(scope="module")
def edge_market(tmp_path_factory) -> tuple[pd.DataFrame, Market, Path]:
    return market_for(tmp_path_factory, edge=1.0, seed=11)


@pytest.fixture(scope="module")
def null_market(tmp_path_factory) -> tuple[pd.DataFrame, Market, Path]:
    return market_for(tmp_path_factory, edge=0.0, seed=11)


@pytest.fixture(scope="module")
def edge_candidates(edge_market) -> pd.DataFrame:
    return edge_market[0]


@pytest.fixture(scope="module")
def tcfg():
    return load_training_config(CFG.config_dir, "ES", "demo").model_copy(update={"trials": 6})


def test_folds_are_purged_and_embargoed(edge_candidates, tcfg):
    train, hold, hold_start = split_holdout(edge_candidates.dropna(), tcfg.holdout_years, 2, GLOBEX)
    # the holdout starts at a session open (17:00 the evening before), after an embargo
    assert hold_start.hour == 17 and hold_start.minute == 0
    assert (train["exit_time"] < hold_start - pd.offsets.BDay(2)).all() and (hold["signal_time"] >= hold_start).all()
    folds = walk_forward_folds(train, 4, embargo_days=2)
    assert sum(f.purged for f in folds) > 0  # some trades straddled a fold start
    for f in folds:
        tr, te = train.iloc[f.train], train.iloc[f.test]
        embargo_start = f.test_start - pd.offsets.BDay(2)
        # no training trade is open at or after the embargo start: no overlap with the test fold
        assert (tr["exit_time"] < embargo_start).all()
        assert (tr["signal_time"] < f.test_start).all()
        assert (te["signal_time"] >= f.test_start).all() and (te["signal_time"] < f.test_end).all()
        assert len(tr) and len(te)
    # anchored: each fold's training set contains the previous one
    assert all(set(a.train) <= set(b.train) for a, b in zip(folds, folds[1:], strict=False))


def test_threshold_does_not_depend_on_test_labels(edge_candidates, tcfg):
    features = [n for n in REGISTRY.names() if edge_candidates[n].notna().mean() > 0.95]
    rows = edge_candidates.dropna(subset=features).reset_index(drop=True)
    train, _, _ = split_holdout(rows, tcfg.holdout_years)
    fold = walk_forward_folds(train, 3, 2)[1]
    params = {"n_estimators": 60, "max_depth": 5, "min_samples_leaf": 50, "max_features": "sqrt",
              "max_samples": 0.7, "class_weight": None}
    data = TradeSet.from_frame(train, features, GLOBEX)
    score, thr, _ = fold_score(params, data, fold, tcfg)
    scrambled = train.copy()
    rng = np.random.default_rng(0)
    test_rows = scrambled.index[fold.test]
    scrambled.loc[test_rows, "pnl_net"] = rng.permutation(scrambled.loc[test_rows, "pnl_net"].to_numpy()) * -1
    scrambled["win"] = scrambled["pnl_net"] > 0
    score2, thr2, _ = fold_score(params, TradeSet.from_frame(scrambled, features, GLOBEX), fold, tcfg)
    assert thr2 == thr  # chosen from training rows only
    assert score2 != score  # while the test score does see the test labels


def test_small_forests_are_the_first_trees_and_survivors_are_grown_to_the_full_forest(edge_candidates, tcfg):
    """P4's lever: a trial that may still be pruned fits a fraction of its forest (exactly the
    full forest's first trees, same seed); a survivor's forests are grown to full size, which is
    the forest a full fit gives, so its value is the full forest's objective."""
    import optuna

    from rooney_core.training.tuning import (
        create_study,
        cross_validated,
        fit_forest,
        grow_forest,
        make_objective,
        run_trials,
        search_forest,
        select_params,
    )

    features = [n for n in REGISTRY.names() if edge_candidates[n].notna().mean() > 0.95]
    rows = edge_candidates.dropna(subset=features).reset_index(drop=True)
    train, _, _ = split_holdout(rows, tcfg.holdout_years)
    data = TradeSet.from_frame(train, features, GLOBEX)
    params = {"n_estimators": 40, "max_depth": 5, "min_samples_leaf": 50, "max_features": "sqrt",
              "max_samples": 0.7, "class_weight": "balanced_subsample"}
    assert search_forest(params, 0.25)["n_estimators"] == 10 and search_forest(params, 0.001)["n_estimators"] == 1
    small = fit_forest(search_forest(params, 0.25), tcfg.seed, 2, data.x, data.win)
    full = fit_forest(params, tcfg.seed, 1, data.x, data.win)
    for a, b in zip(small.estimators_, full.estimators_[:10], strict=False):
        assert np.array_equal(a.tree_.threshold, b.tree_.threshold) and np.array_equal(a.tree_.value, b.tree_.value)
    grown = grow_forest(small, 40, 2, data.x, data.win)
    assert len(grown.estimators_) == 40 and grown.n_jobs == 1 and not grown.warm_start
    assert np.array_equal(grown.predict_proba(data.x), full.predict_proba(data.x))

    folds = walk_forward_folds(train, 3, 2)
    fast = tcfg.model_copy(update={"trials": 6, "search_trees": 0.25, "grow_startup": 3,
                                   "grow_sigmas": 0.0})
    study = create_study(fast, optuna.storages.InMemoryStorage(), "t", pruning=False)
    run_trials(study, make_objective(data, folds, fast), fast.trials)
    trials = study.trials
    assert all(t.user_attrs["search_trees"] == max(1, round(t.params["n_estimators"] * 0.25)) for t in trials)
    grown_trials = [t for t in trials if t.user_attrs["full_forest"]]
    # the first grow_startup are always grown; later ones only if they could beat the best grown
    assert [t.number for t in trials[:3]] == [t.number for t in grown_trials[:3]]
    for t in trials[3:]:
        before = [u for u in grown_trials if u.number < t.number]
        gains = [u.value - u.user_attrs["search_value"] for u in before]
        reach = t.user_attrs["search_value"] + np.mean(gains)  # grow_sigmas 0: the mean gain only
        assert t.user_attrs["full_forest"] == (reach >= max(u.value for u in before))
    assert {t.user_attrs["full_forest"] for t in trials[3:]} == {True, False}  # both branches taken
    for t in grown_trials[:3]:  # a grown trial's value is its full forest's cross-validated objective
        scores, _ = cross_validated({k: t.params[k] for k in params}, data, folds, fast)
        assert t.value == pytest.approx(float(np.mean(scores)), abs=1e-12)
    chosen = select_params(study, data, folds, fast)
    assert chosen.trial == max(grown_trials, key=lambda t: (t.value, -t.number)).number
    assert chosen.objective == pytest.approx(trials[chosen.trial].value, abs=1e-12)
    assert chosen.params["n_estimators"] == trials[chosen.trial].params["n_estimators"]  # the full forest
    assert select_params(study, data, folds, fast).params == chosen.params  # deterministic


def _store_and_validate(store: ModelStore, cands: pd.DataFrame, tcfg, market: Market, data_dir: Path):
    data = ModelData(market, data_dir=data_dir, parity_months=1)
    return train_and_store(cands, "ES", tcfg, data, store, CFG)


@pytest.fixture(scope="module")
def edge_stored(edge_market, tcfg, tmp_path_factory):
    store = ModelStore(tmp_path_factory.mktemp("edge_store"))
    return store, _store_and_validate(store, *edge_market[:1], tcfg, *edge_market[1:])


@pytest.fixture(scope="module")
def null_stored(null_market, tcfg, tmp_path_factory):
    store = ModelStore(tmp_path_factory.mktemp("null_store"))
    return store, _store_and_validate(store, *null_market[:1], tcfg, *null_market[1:])


@pytest.mark.slow
def test_planted_edge_is_promoted_and_the_null_market_gets_nothing(edge_stored, null_stored):
    """Judged on the veto-on holdout backtest of the bundle through the production strategy,
    through the six gates and the pipeline's promotion policy."""
    store, edge = edge_stored
    m = edge.result.metrics
    assert m["selected"]["sharpe"] > m["all"]["sharpe"] + 1.0
    assert m["selected"]["sharpe"] > 1.0 and m["auc"] > 0.55
    assert m["psr_vs_zero"] > 0.95 and m["psr_vs_unfiltered"] > 0.9
    assert m["edge_significant"]
    # the holdout figures are those of a real backtest: its trades, from the holdout start
    trades = edge.result.holdout_trades
    assert m["selected"]["trades"] == len(trades) > 0
    assert (trades["signal_time"] >= pd.Timestamp(m["holdout_start"])).all()
    assert edge.report.passed, edge.report.table()
    assert promote_newest_passing(store, ["ES"], by="test")[0]["production"] == edge.name
    null_store, null = null_stored
    assert not null.result.metrics["edge_significant"], null.result.metrics
    assert null.result.metrics["deflated_sharpe"] < 0.95
    assert "out_of_sample" in null.report.failed
    rows = promote_newest_passing(null_store, ["ES"], by="test")
    assert null_store.production("ES") is None and "no version passed" in rows[0]["action"]


@pytest.mark.slow
def test_a_model_trained_on_shuffled_labels_fails_the_gates(edge_market, tcfg, tmp_path):
    cands, market, data_dir = edge_market
    rng = np.random.default_rng(3)
    order = rng.permutation(len(cands))
    shuffled = cands.copy()
    for col in ("pnl_net", "win"):  # labels and P&L move together, features stay put
        shuffled[col] = cands[col].to_numpy()[order]
    stored = _store_and_validate(ModelStore(tmp_path / "store"), shuffled, tcfg, market, data_dir)
    assert not stored.report.passed
    assert "out_of_sample" in stored.report.failed, stored.report.table()


@pytest.mark.slow
def test_edited_metrics_fail_reproduction_and_a_forced_promotion_needs_a_reason(edge_stored, edge_market):
    store, edge = edge_stored
    bundle = store.load(edge.name)
    bundle.metrics["selected"]["net_pnl"] += 100.0  # a flattering edit
    bundle.config = {**bundle.config, "edited": True}  # (else the same model: not stored again)
    report = validate_model(bundle, ModelData(edge_market[1]), CFG)
    repro = report.gate("backtest_reproduction")
    assert not repro.passed and "net_pnl: stored" in repro.detail
    assert not report.gate("live_parity").passed and "not run" in report.gate("live_parity").detail
    # a stored version whose gates failed: promotion is refused, forcing needs a reason
    name = store.add_version(bundle)
    store.write_gate_report(name, report_json(report), report.passed)
    with pytest.raises(PromotionRefused, match="gates not passed: backtest_reproduction"):
        promote_version(store, name, by="trader")
    with pytest.raises(PromotionRefused, match="--reason"):
        promote_version(store, name, by="trader", force=True)
    from click.testing import CliRunner

    from rooney_pipeline.cli import cli

    env = {"ROONEY_MODEL_STORE": str(store.root)}
    res = CliRunner().invoke(cli, ["models", "promote", name, "--force"], env=env, obj={})
    assert res.exit_code != 0 and "--reason" in res.output
    res = CliRunner().invoke(cli, ["models", "promote", name, "--force", "--reason", "desk override: test"],
                             env=env, obj={})
    assert res.exit_code == 0, res.output
    intent = [r for r in store.audit_log() if r.get("version") == name][-1]
    assert intent["forced"] is True and intent["reason"] == "desk override: test"
    assert "backtest_reproduction" in intent["failed_gates"] and intent["status"] == "done"
    # an edited gate report passes nothing
    path = store.root / "gates" / f"{edge.name}.json"
    assert store.gate_report(edge.name)["passed"] is True
    path.write_text(path.read_text() + " ")
    with pytest.raises(ModelIntegrityError, match="gates.log"):
        promote_version(store, edge.name, by="trader")


def test_training_config_overrides_and_typos(tmp_path):
    import shutil

    cdir = tmp_path / "configs"
    shutil.copytree(CFG.config_dir, cdir)
    es = load_training_config(cdir, "ES")
    pl = load_training_config(cdir, "PL")
    assert es.trials == 50 and "p_ibs" in pl.exclude_features and pl.trials == 50
    (cdir / "training" / "ES.yml").write_text("trails: 10\nsearch_space:\n  n_estimator: {low: 1, high: 2}\n")
    with pytest.raises(ConfigError) as exc:
        load_training_config(cdir, "ES")
    msg = str(exc.value)
    assert f"{cdir / 'training' / 'ES.yml'}: key 'trails'" in msg and "key 'search_space.n_estimator'" in msg
    (cdir / "training" / "ES.yml").write_text("folds: 1\n")
    with pytest.raises(ConfigError, match="key 'folds'"):
        load_training_config(cdir, "ES")


def test_same_data_config_and_seed_give_the_same_bundle_content_hash(edge_market, tcfg, tmp_path):
    from rooney_core.training.train import make_bundle

    small = tcfg.model_copy(update={"trials": 3})
    cands, market, _ = edge_market
    a = train_veto_model(cands, "ES", small, market, tmp_path / "a.journal")
    b = train_veto_model(cands, "ES", small, market, tmp_path / "b.journal")
    ba, bb = make_bundle(a), make_bundle(b)
    assert ba.content_hash() == bb.content_hash()
    assert a.metrics == b.metrics
    other = train_veto_model(cands, "ES", small.model_copy(update={"seed": 7}), market, tmp_path / "c.journal")
    assert make_bundle(other).content_hash() != ba.content_hash()


@pytest.mark.slow
def test_gates_then_paper_then_production_with_a_checklist(edge_market, tcfg, tmp_path):
    """The staged deployment on a version that passed its gates: it enters the paper stage,
    is refused production while there, is judged by the live engine in paper mode against
    the backtest (history replayed: sample data has no session after staging), goes to
    production with a checklist, and is watched in its first week. Skipping the paper stage
    by hand needs --force with a reason; every step is in the audit log."""
    from rooney_core.model.promotion import graduate, stage_or_promote
    from rooney_core.model.staging import evaluate_paper, watched

    cands, market, data_dir = edge_market
    store = ModelStore(tmp_path / "store")
    stored = _store_and_validate(store, cands, tcfg, market, data_dir)
    assert stored.report.passed, stored.report.table()
    name = stored.name
    stage_or_promote(store, name, by="pipeline", reason="gates passed", paper_sessions=3)
    assert store.production("ES") is None and store.paper_entry("ES")["version"] == name
    with pytest.raises(PromotionRefused, match="paper stage"):
        promote_version(store, name, by="trader", paper_sessions=3)
    waiting = evaluate_paper(CFG, store, "ES", data_dir)  # no session after staging in history
    assert waiting.passed is None and waiting.sessions == 0 and "0 of 3 sessions" in waiting.summary
    assert graduate(store, waiting, by="sensor") is None and store.production("ES") is None
    result = evaluate_paper(CFG, store, "ES", data_dir, replay_history=True)
    assert result.replayed and result.sessions == 3 and result.passed, result.summary
    assert result.tracking_error_usd == 0.0 and result.trade_mismatches == 0
    entry = graduate(store, result, by="sensor")
    assert store.production("ES") == name and store.paper_entry("ES") is None
    assert entry["paper"] == result.summary and watched(entry, 7) and not watched(entry, 0)
    checklist = Path(entry["checklist"]).read_text()
    assert f"# Deployment checklist: {name}" in checklist and "| live_parity | yes |" in checklist
    assert "Promoted by **sensor**" in checklist and "replayed" in checklist
    actions = [(r["action"], r["status"]) for r in store.audit_log()]
    assert actions == [("paper", "done"), ("paper paper", "done"), ("paper passed", "done"), ("promote", "done")]
    # a second version skipping the paper stage by hand: only forced, with the reason recorded
    retrained = store.load(name)
    retrained.config = {**retrained.config, "retrained": "by hand"}  # another model (an identical one is not stored)
    second = store.add_version(retrained)
    assert second != name
    store.write_gate_report(second, json.dumps({**store.gate_report(name), "version": second}), True)
    with pytest.raises(PromotionRefused, match="has not been through the paper stage"):
        promote_version(store, second, by="trader", paper_sessions=3)
    forced = promote_version(store, second, by="trader", reason="urgent fix", force=True, paper_sessions=3)
    assert forced["forced"] and "has not been through the paper stage" in forced["skipped_paper"]
    assert "FORCED" in Path(forced["checklist"]).read_text()
    assert store.audit_log()[-1]["skipped_paper"] == forced["skipped_paper"]
