"""What the pipeline logs and alerts after a version's gates decide (model/promotion.py's
``gates_failed`` and ``promote_and_log``), without Dagster."""

from __future__ import annotations

import json

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from rooney_core.model import ModelStore, VetoBundle
from rooney_core.model.gates import GATES
from rooney_core.model.promotion import decisions, gates_failed, promote_and_log


def _version(store: ModelStore, passed: bool) -> str:
    rng = np.random.default_rng(len(store.list_versions("ES")))
    x = rng.normal(size=(60, 2))
    est = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(x, (x[:, 0] > 0).astype(int))
    name = store.add_version(VetoBundle(symbol="ES", estimator=est, feature_names=["ibs", "rsi2"], threshold=0.5,
                                        registry_version="1", feature_schema_hash="s", data_hash="d",
                                        config={"n": len(store.list_versions("ES"))}, metrics={},
                                        library_versions={}, code_version="test"))
    gates = [{"name": g, "passed": passed or g != "importance", "detail": "test"} for g in GATES]
    store.write_gate_report(name, json.dumps({"gates": gates}), passed=passed)
    return name


def test_a_failed_version_is_logged_and_alerted_and_production_stays(tmp_path):
    store = ModelStore(tmp_path / "models")
    v1 = _version(store, passed=True)
    row, rec, alert = promote_and_log(store, "ES", by="test", run_id="r1")
    assert store.production("ES") == v1 and row["action"] == "promoted (was none)"
    assert rec["gates_passed"] is True and alert is None  # by hand: the promotion_alert sensor says it
    v2 = _version(store, passed=False)
    rec, alert = gates_failed(store, "ES", v2, ["importance"], by="test", trigger="drift", run_id="r2",
                              run_url="http://dagster/runs/r2")
    assert rec["production"] == v1 and rec["failed_gates"] == ["importance"] and rec["trigger"] == "drift"
    assert alert.kind == "retrain" and alert.instrument == "ES" and alert.run_url == "http://dagster/runs/r2"
    assert f"{v2} failed its gates (importance): not promoted; production stays {v1}" == alert.summary
    row, rec, alert = promote_and_log(store, "ES", by="test", trigger="drift", run_id="r3")
    assert store.production("ES") == v1 and rec["version"] == v2 and rec["gates_passed"] is None
    assert alert is not None and f"production {v1} (was {v1})" in alert.summary  # the retrain's outcome, said
    assert [(d["version"], d["gates_passed"], d["run_id"]) for d in decisions(store, "ES")] == [
        (v1, True, "r1"), (v2, False, "r2"), (v2, None, "r3")]
