"""The veto bundle and the versioned model store: round trips, immutability, the content hash
(R3), tamper refusal (R6), promotion/rollback with the audit log, SIGKILL at random moments
(R2) and concurrent writers."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from rooney_core.model import (
    BundleError,
    ModelIntegrityError,
    ModelStore,
    ModelStoreError,
    VetoBundle,
    code_version,
)
from rooney_core.model.bundle import estimator_hash

FEATURES = ["ibs", "rsi2", "ret1", "atr14_close"]
# fork: the children start in milliseconds with sklearn already imported (spawn costs ~1 s each).
FORK = multiprocessing.get_context("fork")


def make_forest(seed: int = 7, n_estimators: int = 8) -> RandomForestClassifier:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(FEATURES)))
    y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    return RandomForestClassifier(n_estimators=n_estimators, max_depth=4, random_state=seed, n_jobs=1).fit(x, y)


def make_bundle(symbol: str = "ES", seed: int = 7, estimator=None, **overrides) -> VetoBundle:
    kw = dict(symbol=symbol, estimator=estimator if estimator is not None else make_forest(seed),
              feature_names=FEATURES, threshold=0.55, registry_version="1", feature_schema_hash="schema-abc",
              data_hash="data-123", config={"seed": seed, "trials": 5, "grid": [0.4, 0.75]},
              metrics={"auc": 0.61}, library_versions={}, code_version="test")
    kw.update(overrides)
    return VetoBundle(**kw)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


# ---- bundle ---------------------------------------------------------------------------------


def test_bundle_predicts_p_win_and_vetoes_missing_features():
    b = make_bundle(fill_values={"rsi2": 50.0})
    x = np.array([[0.1, 20.0, 0.0, 0.01], [0.1, np.nan, 0.0, 0.01]])
    p = b.predict_proba(x)
    assert p.shape == (2,) and 0.0 <= p[0] <= 1.0 and np.isnan(p[1])
    assert p[0] == b.estimator.predict_proba(x[:1])[0, 1]
    with pytest.raises(BundleError, match="shape"):
        b.predict_proba(x[:, :3])


@pytest.mark.parametrize("bad, match", [
    (dict(feature_names=FEATURES[:3]), "fitted on 4 features"),
    (dict(feature_names=["a", "a", "b", "c"]), "duplicates"),
    (dict(threshold=1.5), "threshold"),
    (dict(fill_values={"volume": 1.0}), "does not use"),
    (dict(symbol="ES_1"), "letters and digits"),
    (dict(config={"when": object()}), "not JSON serialisable"),
])
def test_bundle_is_validated_at_the_door(bad, match):
    with pytest.raises(BundleError, match=match):
        make_bundle(**bad)


def test_bundle_requires_classes_zero_one():
    rng = np.random.default_rng(1)
    rf = RandomForestClassifier(n_estimators=2, random_state=0).fit(rng.normal(size=(20, 4)), [1, 2] * 10)
    with pytest.raises(BundleError, match=r"classes must be \[0, 1\]"):
        make_bundle(estimator=rf)


def test_code_version_never_fails(monkeypatch):
    assert code_version()
    monkeypatch.setenv("PATH", "")  # no git at all
    assert code_version()


# ---- content hash (R3) ------------------------------------------------------------------------


def test_content_hash_depends_on_the_model_only():
    a = make_bundle(seed=7, trained_at="2024-01-01T00:00:00+00:00")
    b = make_bundle(seed=7, trained_at="2025-06-30T12:00:00+00:00", code_version="other",
                    library_versions={"numpy": "0"})
    assert a.content_hash() == b.content_hash()
    assert make_bundle(seed=8).content_hash() != a.content_hash()
    assert make_bundle(threshold=0.6).content_hash() != a.content_hash()
    assert make_bundle(config={"seed": 7, "trials": 6, "grid": [0.4, 0.75]}).content_hash() != a.content_hash()


def test_content_hash_ignores_tree_node_padding_bytes():
    # The node array of a tree has padding bytes; plain pickle copies whatever is in them.
    rf = make_forest()
    garbled = copy.deepcopy(rf)
    for est in garbled.estimators_:
        state = est.tree_.__getstate__()
        nodes = state["nodes"].copy()
        nodes.view(np.uint8).reshape(len(nodes), -1)[:, 57:] = 0xAB
        state["nodes"] = nodes
        est.tree_.__setstate__(state)
    assert estimator_hash(garbled) == estimator_hash(rf)


def test_content_hash_is_the_same_in_another_process():
    here = Path(__file__).resolve().parent
    code = (f"import sys; sys.path.insert(0, {str(here)!r}); "
            "from test_model_store import make_bundle; print(make_bundle(seed=7).content_hash())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different str-hash seed than ours
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == make_bundle(seed=7).content_hash()


# ---- versions -----------------------------------------------------------------------------


def test_add_list_load_round_trip_and_names(tmp_path):
    store = ModelStore(tmp_path)
    b = make_bundle()
    assert store.add_version(b, extra_files={"report.html": b"<html></html>"}) == "ES_v1"
    assert store.add_version(make_bundle(seed=8)) == "ES_v2"
    assert store.add_version(make_bundle("NQ")) == "NQ_v1"
    assert [m["version"] for m in store.list_versions()] == ["ES_v1", "ES_v2", "NQ_v1"]
    assert [m["version"] for m in store.list_versions("NQ")] == ["NQ_v1"]

    meta = store.load_metadata("ES_v1")
    vdir = tmp_path / "versions" / "ES_v1"
    assert (vdir / "report.html").read_bytes() == b"<html></html>"
    assert meta["content_hash"] == b.content_hash() and meta["threshold"] == 0.55
    assert meta["feature_names"] == FEATURES and meta["symbol"] == "ES" and "estimator" in meta
    loaded = store.load("ES_v1")
    assert isinstance(loaded, VetoBundle) and loaded.content_hash() == meta["content_hash"]
    x = np.random.default_rng(3).normal(size=(5, 4))
    np.testing.assert_array_equal(loaded.predict_proba(x), b.predict_proba(x))

    with pytest.raises(ModelStoreError, match="known ES versions: ES_v1, ES_v2"):
        store.load("ES_v9")
    with pytest.raises(ModelStoreError, match="extra file name"):
        store.add_version(b, extra_files={"../evil": b""})


def test_versions_are_immutable(tmp_path):
    store = ModelStore(tmp_path)
    store.add_version(make_bundle(), extra_files={"report.html": b"one"})
    before = snapshot(tmp_path / "versions" / "ES_v1")
    assert store.add_version(make_bundle(threshold=0.6), extra_files={"report.html": b"two"}) == "ES_v2"
    store.add_version(make_bundle(seed=9))
    assert snapshot(tmp_path / "versions" / "ES_v1") == before


def test_an_identical_model_is_not_stored_again(tmp_path, caplog):
    """Retraining on the same data, config and seed gives the same content hash: the store
    says so and keeps the existing version, whatever the extra files or training time."""
    store = ModelStore(tmp_path)
    assert store.add_version(make_bundle(), extra_files={"report.html": b"one"}) == "ES_v1"
    before = snapshot(tmp_path / "versions" / "ES_v1")
    again = make_bundle(trained_at="2031-01-01T00:00:00+00:00")
    assert store.version_with_content("ES", again.content_hash()) == "ES_v1"
    assert store.add_version(again, extra_files={"report.html": b"two"}) == "ES_v1"
    assert "identical to ES_v1" in caplog.text
    assert [m["version"] for m in store.list_versions("ES")] == ["ES_v1"]
    assert snapshot(tmp_path / "versions" / "ES_v1") == before and len(store.records()) == 1
    assert store.version_with_content("NQ", again.content_hash()) is None
    # extra files made from the version's name, once it is fixed
    name = store.add_version(make_bundle(threshold=0.6), extra_files=lambda n: {"report.html": n.encode()})
    assert name == "ES_v2" and (tmp_path / "versions" / "ES_v2" / "report.html").read_bytes() == b"ES_v2"


# ---- integrity (R6) -------------------------------------------------------------------------


def test_tampered_bundle_is_refused(tmp_path):
    store = ModelStore(tmp_path)
    name = store.add_version(make_bundle())
    store.promote(name, by="alice")
    path = tmp_path / "versions" / name / "bundle.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="changed on disk after it was stored") as err:
        store.load(name)
    assert str(path) in str(err.value)
    with pytest.raises(ModelIntegrityError, match=str(path)):
        store.load_production("ES")
    store.promote(store.add_version(make_bundle(seed=8)), by="bob")
    with pytest.raises(ModelIntegrityError):  # nor can it be promoted back
        store.promote(name, by="bob")


@pytest.mark.parametrize("promoted", [True, False])
def test_metadata_rewritten_to_match_is_still_refused(tmp_path, promoted):
    """Issue 7 reproduction: swap bundle.skops for another real bundle and rewrite sha256 in
    metadata.json to match. The manifest (production) or versions.log (any other version)
    decides, never metadata.json."""
    store = ModelStore(tmp_path)
    name = store.add_version(make_bundle())
    if promoted:
        store.promote(name, by="alice")
    vdir = tmp_path / "versions" / name
    other = ModelStore(tmp_path / "other")
    swapped = other.add_version(make_bundle(seed=99))
    (vdir / "bundle.skops").write_bytes((tmp_path / "other" / "versions" / swapped / "bundle.skops").read_bytes())
    meta = json.loads((vdir / "metadata.json").read_text())
    meta["sha256"] = other.load_metadata(swapped)["sha256"]
    (vdir / "metadata.json").write_text(json.dumps(meta))
    source = "the manifest" if promoted else "versions.log"
    with pytest.raises(ModelIntegrityError, match=f"from {source}"):
        store.load(name)
    with pytest.raises(ModelIntegrityError, match=f"from {source}"):
        store.verify(name)
    if promoted:
        with pytest.raises(ModelIntegrityError, match="from the manifest"):
            store.load_production("ES")
    else:
        with pytest.raises(ModelIntegrityError):
            store.promote(name, by="mallory")
    assert "damaged" in store.list_versions("ES")[0]


# ---- manifest -----------------------------------------------------------------------------


def test_promote_production_rollback_and_audit(tmp_path):
    store = ModelStore(tmp_path)
    assert store.manifest() == {"instruments": {}, "updated_at": None}
    assert store.production("ES") is None and store.load_production("ES") is None
    v1, v2, v3 = (store.add_version(make_bundle(seed=s)) for s in (1, 2, 3))
    store.promote(v1, by="alice", reason="first")
    store.promote(v2, by="bob")
    entry = store.promote(v3, by="carol", reason="retrain")
    assert store.promote(v3, by="carol") == entry  # already production: nothing changes
    assert store.production("ES") == v3
    man = store.manifest()["instruments"]["ES"]
    assert man["previous"] == v2 and man["promoted_by"] == "carol" and man["reason"] == "retrain"
    assert man["sha256"] == store.load_metadata(v3)["sha256"]
    assert store.load_production("ES")[0] == v3

    back = store.rollback("ES", by="dave", reason="bad fills")
    assert (back["version"], back["previous"], back["rolled_back_from"]) == (v2, v1, v3)
    assert store.rollback("ES", by="dave")["version"] == v1
    assert store.production("ES") == v1
    with pytest.raises(ModelStoreError, match="no earlier production version"):
        store.rollback("ES", by="dave")
    with pytest.raises(ModelStoreError, match="no earlier production version"):
        store.rollback("NQ", by="dave")

    log = store.audit_log()
    assert [(r["action"], r["version"], r["replaced"], r["by"]) for r in log] == [
        ("promote", v1, None, "alice"), ("promote", v2, v1, "bob"), ("promote", v3, v2, "carol"),
        ("rollback", v2, v3, "dave"), ("rollback", v1, v2, "dave")]
    assert {r["status"] for r in log} == {"done"}
    assert len((tmp_path / "audit.log").read_text().splitlines()) == 10  # an intent and an outcome each


def test_audit_line_torn_by_a_kill_does_not_swallow_the_next(tmp_path):
    store = ModelStore(tmp_path)
    v1, v2 = store.add_version(make_bundle(seed=1)), store.add_version(make_bundle(seed=2))
    store.promote(v1, by="alice")
    with open(store.audit_path, "ab") as fh:
        fh.write(b'{"action": "promote", "by": "kil')  # a writer died mid-line
    store.promote(v2, by="bob")
    assert [r["by"] for r in store.audit_log()] == ["alice", "bob"]


# ---- crashes and concurrency (R2, R4) ----------------------------------------------------------


def _write_and_promote_forever(root: str, ready, tag: int) -> None:
    store = ModelStore(root)
    forest = make_forest(n_estimators=30)
    ready.set()
    for i in range(10**9):
        name = store.add_version(make_bundle(estimator=forest, threshold=0.4 + (i % 30) / 100),
                                 extra_files={"report.html": os.urandom(50_000)})
        store.promote(name, by=f"writer-{tag}", reason=str(i))


def _assert_store_reads(store: ModelStore, before: str, known_good: set[str]) -> None:
    man = json.loads(store.manifest_path.read_text())  # parses as JSON, whatever the kill hit
    assert man == store.manifest()
    prod = store.production("ES")
    names = {m["version"] for m in store.list_versions()}
    assert prod == before or prod in names
    name, bundle = store.load_production("ES")  # the full sha256 check against the manifest
    assert name == prod and bundle.symbol == "ES"
    assert set(man["instruments"]["ES"]["history"]) <= names
    for new in sorted(names - known_good):  # every listed version is complete and verifies
        store.verify(new)


def test_sigkill_at_random_moments_leaves_a_readable_store(tmp_path):
    store = ModelStore(tmp_path)
    store.promote(store.add_version(make_bundle()), by="setup")
    rng = random.Random(20240601)
    known_good = {m["version"] for m in store.list_versions()}
    leftovers = 0
    for round_ in range(10):
        before = store.production("ES")
        ready = FORK.Event()
        proc = FORK.Process(target=_write_and_promote_forever, args=(str(tmp_path), ready, round_))
        proc.start()
        assert ready.wait(20)
        # kill at a random moment after the writer has made progress (a promotion begun), so
        # every round tests a kill mid-work however slow the machine is
        size = store.audit_path.stat().st_size
        deadline = time.monotonic() + 60
        while store.audit_path.stat().st_size == size and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        _assert_store_reads(store, before, known_good)
        known_good = {m["version"] for m in store.list_versions()}
        leftovers += len(store.cleanup_temp())
        assert not [p for p in (tmp_path / "versions").iterdir() if p.name.startswith(".")]
        assert not list(tmp_path.glob(".manifest.json.*"))
    assert len(store.audit_log()) >= 10
    print(f"{len(known_good)} versions written; {leftovers} half-written leftovers cleaned")


def _die_at(root: str, step: str, name: str) -> None:
    """Die (no cleanup, like SIGKILL) at the instant a version or the manifest would be published."""
    store = ModelStore(root)
    if step == "version":
        os.rename = lambda *_a, **_k: os._exit(3)
        store.add_version(make_bundle(seed=5))
    else:
        os.replace = lambda *_a, **_k: os._exit(3)
        store.promote(name, by="doomed")


def test_death_just_before_publishing_changes_nothing_visible(tmp_path):
    store = ModelStore(tmp_path)
    v1, v2 = store.add_version(make_bundle(seed=1)), store.add_version(make_bundle(seed=2))
    store.promote(v1, by="alice")
    manifest_before = store.manifest_path.read_bytes()
    for step in ("version", "manifest"):
        proc = FORK.Process(target=_die_at, args=(str(tmp_path), step, v2))
        proc.start()
        proc.join(30)
        assert proc.exitcode == 3
    assert [m["version"] for m in store.list_versions()] == [v1, v2]
    assert store.manifest_path.read_bytes() == manifest_before and store.load_production("ES")[0] == v1
    # The intent is on record, but the log does not claim it took effect...
    assert [(r["by"], r["status"]) for r in store.audit_log()] == [("alice", "done"), ("doomed", "pending")]
    removed = store.cleanup_temp()  # the dead writer's version dir and manifest temp file
    assert sorted(p.parent.name for p in removed) == sorted([tmp_path.name, "versions"])
    assert not [p for p in (tmp_path / "versions").iterdir() if p.name.startswith(".")]
    assert not list(tmp_path.glob(".manifest.json.*"))
    # ...and the next write settles it as aborted.
    assert [(r["by"], r["status"]) for r in store.audit_log()] == [("alice", "done"), ("doomed", "aborted")]
    # The dead writer had recorded ES_v3 before its rename: the number is never reused.
    assert store.add_version(make_bundle(seed=3)) == "ES_v4"


def _promote_many(root: str, names: list[str], start, tag: str, count: int) -> None:
    store = ModelStore(root)
    start.wait()
    for i in range(count):
        store.promote(names[i % 2], by=tag, reason=str(i))


def test_concurrent_promotions_lose_no_update(tmp_path):
    store = ModelStore(tmp_path)
    names = [store.add_version(make_bundle(seed=s)) for s in range(4)]
    start, count = FORK.Event(), 30
    procs = [FORK.Process(target=_promote_many, args=(str(tmp_path), names[k:k + 2], start, f"p{k}", count))
             for k in (0, 2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    entry = store.manifest()["instruments"]["ES"]
    # Each process alternates its own two versions, so every promotion switches production and
    # appends the replaced version to the history: a lost update would shorten it.
    assert len(entry["history"]) == 2 * count - 1
    assert len(store.audit_log()) == 2 * count
    assert store.load_production("ES")[0] in names


def _add_many(root: str, start, count: int, writer: int) -> None:
    store = ModelStore(root)
    forest = make_forest()
    start.wait()
    for i in range(count):  # distinct models (an identical one would not be stored again)
        store.add_version(make_bundle(estimator=forest, threshold=0.5 + (writer * count + i) / 1000))


def test_concurrent_writers_get_distinct_versions(tmp_path):
    start, count = FORK.Event(), 8
    procs = [FORK.Process(target=_add_many, args=(str(tmp_path), start, count, k)) for k in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = [m["version"] for m in ModelStore(tmp_path).list_versions("ES")]
    assert names == [f"ES_v{n}" for n in range(1, 2 * count + 1)]


def test_pipeline_promotion_never_undoes_a_rollback(tmp_path):
    """A version rolled back by hand is not promoted again by the pipeline; a newer one is."""
    from builders import write_gate_report

    from rooney_core.model.promotion import promote_newest_passing

    store = ModelStore(tmp_path / "store")
    names = []
    for seed in (1, 2):
        names.append(store.add_version(make_bundle(seed=seed)))
        write_gate_report(store, names[-1])
    promote_newest_passing(store, ["ES"], by="pipeline")
    assert store.production("ES") == names[1]
    store.promote(names[0], by="test")  # pretend v1 was production before
    store.promote(names[1], by="test")
    store.rollback("ES", by="trader", reason="v2 misbehaves")
    assert store.production("ES") == names[0]
    rows = promote_newest_passing(store, ["ES"], by="pipeline")
    assert store.production("ES") == names[0] and "already in production once" in rows[0]["action"]
    v3 = store.add_version(make_bundle(seed=3))
    write_gate_report(store, v3)
    promote_newest_passing(store, ["ES"], by="pipeline")
    assert store.production("ES") == v3
