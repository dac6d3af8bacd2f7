"""Training: purged walk-forward folds, thresholds chosen without test labels, a real edge is
found and a null market is not called one, and the same inputs give the same model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import GLOBEX

from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.data.sample import load_sample_market, write_sample_data
from rooney_core.errors import ConfigError
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.training.candidates import extract_candidates
from rooney_core.training.config import load_training_config
from rooney_core.training.splits import split_holdout, walk_forward_folds
from rooney_core.training.train import Market, train_veto_model
from rooney_core.training.tuning import TradeSet, fold_score

CFG = load_config()


def market_for(tmp_path_factory, edge: float, seed: int) -> tuple[pd.DataFrame, Market]:
    out = tmp_path_factory.mktemp(f"market_edge{edge}")
    write_sample_data(out, ["ES", "NQ"], "2017-01-01", "2024-12-31", seed=seed, edge=edge, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=5)
    own = load_session_bars(out, CFG.instrument("ES")).hourly
    pair = load_session_bars(out, CFG.instrument("NQ")).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, "ES", own, pair))
    return (extract_candidates(own, feats, CFG.instrument("ES"), CFG.strategy),
            Market(own, feats, CFG.instrument("ES"), CFG.strategy))


@pytest.fixture(scope="module")
def edge_market(tmp_path_factory) -> tuple[pd.DataFrame, Market]:
    return market_for(tmp_path_factory, edge=1.0, seed=11)


@pytest.fixture(scope="module")
def null_market(tmp_path_factory) -> tuple[pd.DataFrame, Market]:
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


@pytest.mark.slow
def test_planted_edge_is_found_and_null_market_is_not_called_an_edge(edge_market, null_market, tcfg, tmp_path):
    """Judged on the veto-on holdout backtest through the production strategy."""
    edge = train_veto_model(edge_market[0], "ES", tcfg, edge_market[1], tmp_path / "edge.journal")
    m = edge.metrics
    assert m["selected"]["sharpe"] > m["all"]["sharpe"] + 1.0
    assert m["selected"]["sharpe"] > 1.0 and m["auc"] > 0.55
    assert m["psr_vs_zero"] > 0.95 and m["psr_vs_unfiltered"] > 0.9
    assert m["edge_significant"]
    # the holdout figures are those of a real backtest: its trades, from the holdout start
    assert m["selected"]["trades"] == len(edge.holdout_trades) > 0
    assert (edge.holdout_trades["signal_time"] >= pd.Timestamp(m["holdout_start"])).all()
    null = train_veto_model(null_market[0], "ES", tcfg, null_market[1], tmp_path / "null.journal")
    assert not null.metrics["edge_significant"], null.metrics
    assert null.metrics["deflated_sharpe"] < 0.95


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
    from rooney_core.training.train import make_bundle, model_gates

    small = tcfg.model_copy(update={"trials": 3})
    cands, market = edge_market
    a = train_veto_model(cands, "ES", small, market, tmp_path / "a.journal")
    b = train_veto_model(cands, "ES", small, market, tmp_path / "b.journal")
    ba, bb = make_bundle(a, model_gates(a, 30)), make_bundle(b, model_gates(b, 30))
    assert ba.content_hash() == bb.content_hash()
    assert a.metrics == b.metrics
    other = train_veto_model(cands, "ES", small.model_copy(update={"seed": 7}), market, tmp_path / "c.journal")
    assert make_bundle(other).content_hash() != ba.content_hash()
