"""Issue 7's model-store reproductions: only verified bundles are ever loaded, loading never runs
code from a file, one damaged version does not break the store, the audit log never claims
what did not take effect, leftovers of killed writes are cleaned, outputs respect the umask,
and reading the code version writes nothing into the repository."""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import pickle
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import skops.io as sio
from builders import write_gate_report
from click.testing import CliRunner
from test_model_store import make_bundle, make_forest

from rooney_core.model import (
    ModelIntegrityError,
    ModelStore,
    ModelStoreError,
    UnsafeBundleError,
    code_version,
)
from rooney_core.model.bundle_file import load_bundle, load_bundle_file
from rooney_core.model.promotion import promote_newest_passing
from rooney_pipeline.cli import cli

REPO = Path(__file__).resolve().parents[2]
FORK = multiprocessing.get_context("fork")


class Boom:
    """Unpickling this runs ``touch <marker>``: what a hostile "model" file can do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _backtest(args: list[str], store: Path, cwd: Path, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    res = CliRunner().invoke(cli, ["backtest", "--data-dir", str(cwd), "--symbol", "ES", "--out",
                                   str(cwd / "out"), *args], env={"ROONEY_MODEL_STORE": str(store)}, obj={})
    return res.exit_code, res.output


# ---- 1. only verified bundles are loaded ------------------------------------------------------


def test_a_file_named_like_a_version_is_never_loaded(tmp_path, monkeypatch):
    """Reproduction: a pickle whose __reduce__ creates a marker, named ES_v1 in the working
    directory; `rooney backtest --model ES_v1` unpickled it and the marker appeared."""
    marker = tmp_path / "pwned"
    (tmp_path / "ES_v1").write_bytes(pickle.dumps(Boom(marker)))
    store = tmp_path / "store"
    code, out = _backtest(["--model", "ES_v1"], store, tmp_path, monkeypatch)
    assert code != 0 and "unknown model version 'ES_v1'" in out
    assert not marker.exists()
    # with a real ES_v1 in the store, the store's version is the one used, not the cwd file
    name = ModelStore(store).add_version(make_bundle())
    assert name == "ES_v1"
    assert ModelStore(store).load("ES_v1").content_hash() == make_bundle().content_hash()
    for ref in ("./ES_v1", str(tmp_path / "ES_v1"), "../store/versions/ES_v1", "ES_v1/", "ES_v01"):
        with pytest.raises(ModelStoreError, match="unknown model version"):
            ModelStore(store).load(ref)
    assert not marker.exists()


def test_model_file_needs_trust_and_still_runs_no_code(tmp_path, monkeypatch):
    """`--model /any/path` unpickled without any check. Now an arbitrary file is a separate,
    explicit option, and even a trusted file is decoded by skops: a pickle is refused."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.joblib"
    evil.write_bytes(pickle.dumps(Boom(marker)))
    code, out = _backtest(["--model-file", str(evil)], tmp_path / "store", tmp_path, monkeypatch)
    assert code != 0 and "--trust-file" in out
    code, out = _backtest(["--model-file", str(evil), "--trust-file"], tmp_path / "store", tmp_path, monkeypatch)
    assert code != 0 and "pickle" in out and "never loaded" in out
    code, out = _backtest(["--model", "ES_v1", "--model-file", str(evil)], tmp_path / "store", tmp_path, monkeypatch)
    assert code != 0 and "not both" in out
    assert not marker.exists()
    # a skops file naming a callable (os.system) is refused before anything is built
    hostile = tmp_path / "hostile.skops"
    hostile.write_bytes(sio.dumps({"format": 2, "estimator": os.system, "bundle": "{}"}))
    with pytest.raises(UnsafeBundleError, match="outside the allow-list: posix.system"):
        load_bundle_file(hostile, trust_file=True)
    # a genuine bundle file loads, with a warning, and is named with its sha256 in metrics.json
    good = tmp_path / "ES.skops"
    src = ModelStore(tmp_path / "store").root
    name = ModelStore(src).add_version(make_bundle())
    good.write_bytes((src / "versions" / name / "bundle.skops").read_bytes())
    bundle, sha = load_bundle_file(good, trust_file=True)
    assert bundle.content_hash() == make_bundle().content_hash() and len(sha) == 64


def test_a_model_of_another_instrument_is_refused(tmp_path, monkeypatch):
    store = ModelStore(tmp_path / "store")
    store.add_version(make_bundle("NQ"))
    code, out = _backtest(["--model", "NQ_v1"], store.root, tmp_path, monkeypatch)
    assert code != 0 and "cannot veto ES's trades" in out


def test_the_cli_checks_the_stored_record_not_metadata_json(tmp_path, monkeypatch):
    """Reproduction: replace bundle.joblib, rewrite sha256 in metadata.json to match, and the
    CLI loaded it (it checked metadata.json, not the manifest)."""
    store = ModelStore(tmp_path / "store")
    name = store.add_version(make_bundle(seed=1))
    store.promote(name, by="alice")
    other = store.add_version(make_bundle(seed=2))
    vdir = store.versions_dir / name
    swapped = (store.versions_dir / other / "bundle.skops").read_bytes()
    (vdir / "bundle.skops").write_bytes(swapped)
    meta = json.loads((vdir / "metadata.json").read_text())
    meta["sha256"] = store.load_metadata(other)["sha256"]
    (vdir / "metadata.json").write_text(json.dumps(meta))
    code, out = _backtest(["--model", name], store.root, tmp_path, monkeypatch)
    assert code != 0 and "changed on disk" in out and "from the manifest" in out


def test_versions_log_cannot_be_rewritten_by_appending(tmp_path):
    store = ModelStore(tmp_path)
    name = store.add_version(make_bundle(seed=1))
    path = store.versions_dir / name / "bundle.skops"
    other = ModelStore(tmp_path / "other")
    data = (other.versions_dir / other.add_version(make_bundle(seed=2)) / "bundle.skops").read_bytes()
    path.write_bytes(data)
    import hashlib

    with open(store.records_path, "a") as fh:  # a second record claiming the swapped file
        fh.write(json.dumps({"version": name, "symbol": "ES", "sha256": hashlib.sha256(data).hexdigest()}) + "\n")
    with pytest.raises(ModelIntegrityError, match="conflicting records"):
        store.load(name)


def test_a_legacy_pickle_bundle_is_never_loaded(tmp_path):
    store = ModelStore(tmp_path)
    name = store.add_version(make_bundle())
    vdir = store.versions_dir / name
    marker = tmp_path / "pwned"
    (vdir / "bundle.skops").unlink()
    (vdir / "bundle.joblib").write_bytes(pickle.dumps(Boom(marker)))
    with pytest.raises(ModelIntegrityError, match="format-1 bundle"):
        store.load(name)
    with pytest.raises(UnsafeBundleError, match="pickle"):
        load_bundle(pickle.dumps(Boom(marker)), "x")
    assert not marker.exists()


UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("joblib", "load"),
              ("cloudpickle", "load"), ("cloudpickle", "loads"), ("dill", "load"), ("dill", "loads"),
              ("pd", "read_pickle"), ("pandas", "read_pickle"), ("shelve", "open"), ("torch", "load")}


def test_no_code_path_unpickles_and_only_the_store_decodes_a_bundle():
    """Static proof over rooney_core and rooney_pipeline: no pickle-family loader is called
    anywhere, numpy never loads with allow_pickle, skops is decoded only in
    model/bundle_file.py, and load_bundle is called only by the store (after its sha256 check)
    and by load_bundle_file (the explicit --trust-file path)."""
    offenders, skops_loads, load_bundle_calls = [], [], []
    for path in sorted([*REPO.glob("rooney_core/**/*.py"), *REPO.glob("rooney_pipeline/**/*.py")]):
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "joblib", "cloudpickle", "dill"):
                names = {a.name for a in node.names}
                if names & {"load", "loads", "Unpickler"}:
                    offenders.append(f"{rel}:{node.lineno} from {node.module} import {names}")
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute):
                base = func.value.id if isinstance(func.value, ast.Name) else \
                    func.value.attr if isinstance(func.value, ast.Attribute) else None
                if (base, func.attr) in UNPICKLERS:
                    offenders.append(f"{rel}:{node.lineno} {base}.{func.attr}")
                if func.attr == "load" and base in ("np", "numpy") and any(
                        k.arg == "allow_pickle" for k in node.keywords):
                    offenders.append(f"{rel}:{node.lineno} numpy.load(allow_pickle=...)")
                if func.attr in ("load", "loads") and "skops" in path.read_text() and base in ("sio", "skops", "io") \
                        or (isinstance(func.value, ast.Call) and getattr(func.value.func, "id", "") == "_sio"
                            and func.attr in ("load", "loads")):
                    skops_loads.append(rel)
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name == "load_bundle":
                load_bundle_calls.append(rel)
    assert offenders == []
    assert set(skops_loads) == {"rooney_core/model/bundle_file.py"}
    assert set(load_bundle_calls) == {"rooney_core/model/store.py", "rooney_core/model/bundle_file.py"}


def test_the_store_hands_only_verified_bytes_to_the_decoder(tmp_path, monkeypatch):
    """Behavioural half of the proof: on a tampered, unrecorded or damaged version the
    decoder is never reached."""
    import rooney_core.model.store as store_mod

    calls = []
    real = store_mod.load_bundle
    monkeypatch.setattr(store_mod, "load_bundle", lambda data, where: calls.append(where) or real(data, where))
    store = ModelStore(tmp_path)
    good, tampered, unrecorded = (store.add_version(make_bundle(seed=s)) for s in (1, 2, 3))
    path = store.versions_dir / tampered / "bundle.skops"
    path.write_bytes(path.read_bytes() + b"\0")
    lines = store.records_path.read_text().splitlines()
    store.records_path.write_text("\n".join(line for line in lines if f'"{unrecorded}"' not in line) + "\n")
    store.load(good)
    for name, match in ((tampered, "changed on disk"), (unrecorded, "no record")):
        with pytest.raises(ModelIntegrityError, match=match):
            store.load(name)
    assert calls == [str(store.versions_dir / good / "bundle.skops")]


# ---- 4. one damaged version does not break the store ----------------------------------------


def _cli_list(store: ModelStore) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["models", "list"], env={"ROONEY_MODEL_STORE": str(store.root)}, obj={})
    return res.exit_code, res.output


@pytest.mark.parametrize("damage", ["truncated_metadata", "empty_folder", "bundle_is_a_directory",
                                    "manifest_entry_wrong_type", "manifest_entry_other_symbol"])
def test_one_damaged_version_does_not_break_the_store(tmp_path, damage):
    """Reproductions: a truncated metadata.json or an empty version folder made `models list`
    fail for every version; a manifest entry of the wrong type, or a path that is a
    directory, gave a traceback."""
    store = ModelStore(tmp_path)
    v1, v2 = store.add_version(make_bundle("ES", seed=1)), store.add_version(make_bundle("ES", seed=2))
    nq = store.add_version(make_bundle("NQ"))
    store.promote(v1, by="alice")
    if damage == "truncated_metadata":
        meta = store.versions_dir / v2 / "metadata.json"
        meta.write_bytes(meta.read_bytes()[:100])
    elif damage == "empty_folder":
        (store.versions_dir / "ES_v3").mkdir()
    elif damage == "bundle_is_a_directory":
        (store.versions_dir / v2 / "bundle.skops").unlink()
        (store.versions_dir / v2 / "bundle.skops").mkdir()
    else:
        man = json.loads(store.manifest_path.read_text())
        man["instruments"]["ES"] = "ES_v1" if damage == "manifest_entry_wrong_type" else \
            {**man["instruments"]["ES"], "version": nq}
        store.manifest_path.write_text(json.dumps(man))
    code, out = _cli_list(store)
    assert code == 0, out
    assert "Traceback" not in out and nq in out and v1 in out
    if damage.startswith("manifest"):
        assert "damaged" in out
        with pytest.raises(ModelStoreError, match="entry for 'ES' is damaged"):
            store.load_production("ES")
        assert store.load(nq).symbol == "NQ"  # the other instruments still work
    else:
        damaged = {m["version"]: m.get("damaged") for m in store.list_versions()}
        bad = "ES_v3" if damage == "empty_folder" else v2
        assert damaged[bad] and "DAMAGED" in out
        assert store.load_production("ES")[0] == v1 and store.load(nq).symbol == "NQ"
        if damage == "bundle_is_a_directory":
            with pytest.raises(ModelIntegrityError, match="not a regular file"):
                store.load(v2)


# ---- 4. the audit log never claims what did not take effect ------------------------------------


def _promote_forever(root: str, names: list[str], ready) -> None:
    store = ModelStore(root)
    ready.set()
    for i in range(10**9):
        store.promote(names[i % len(names)], by="writer", reason=str(i))


def test_kills_during_promotion_leave_a_truthful_audit_log(tmp_path):
    """Reproduction: a kill between the audit write and the manifest write left an entry
    claiming a promotion that never happened, and automatic promotion then refused ("already
    in production once"). A 228-kill stress run left 54 false entries and 21 orphaned
    .manifest.json.*.tmp files. Here: SIGKILL a promoting process at random moments; after each,
    the "done" entries must chain exactly to the manifest, with no temp files after the next write."""
    store = ModelStore(tmp_path)
    names = [store.add_version(make_bundle(seed=s)) for s in range(3)]
    rng = random.Random(7)
    kills = 40
    for _ in range(kills):
        ready = FORK.Event()
        proc = FORK.Process(target=_promote_forever, args=(str(tmp_path), names, ready))
        proc.start()
        assert ready.wait(20)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        store.cleanup_temp()  # what every write does first
        assert not list(tmp_path.glob(".manifest.json.*"))
        log = store.audit_log()
        assert all(r["status"] in ("done", "aborted") for r in log)
        done = [r for r in log if r["status"] == "done"]
        for prev, nxt in zip(done, done[1:], strict=False):
            assert nxt["replaced"] == prev["version"]
        if done:
            assert done[-1]["version"] == store.production("ES")
    entry = store.manifest()["instruments"]["ES"]
    assert len(entry["history"]) == len([r for r in store.audit_log() if r["status"] == "done"]) - 1
    # automatic promotion is not blocked by a promotion that never happened
    newest = store.add_version(make_bundle(seed=99))
    write_gate_report(store, newest)
    promote_newest_passing(store, ["ES"], by="pipeline")
    assert store.production("ES") == newest


def test_a_dead_writers_temp_folder_is_cleaned_on_the_next_write(tmp_path):
    """Reproduction: a killed train left a .tmp-ES-... folder and cleanup_temp was never called."""
    store = ModelStore(tmp_path)
    store.add_version(make_bundle(seed=1))
    proc = subprocess.Popen(["true"])
    proc.wait()  # a pid that is certainly dead now
    from rooney_core.io import host_tag

    host = host_tag()
    leftover = store.versions_dir / f".tmp-ES-{proc.pid}-{host}-abc123"
    leftover.mkdir()
    (leftover / "bundle.skops").write_bytes(b"half")
    live = store.versions_dir / f".tmp-ES-{os.getpid()}-{host}-def456"  # a live writer's: kept
    live.mkdir()
    store.add_version(make_bundle(seed=2))
    assert not leftover.exists() and live.exists()


# ---- 5. side effects: permissions and the repository ------------------------------------------


@pytest.mark.parametrize("umask, fmode, dmode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_respect_the_umask(tmp_path, umask, fmode, dmode):
    """Reproduction: outputs were created 0600 and directories 0700, so a live engine running
    as another user could not read the store."""
    from rooney_core.data.lake import Lake

    old = os.umask(umask)
    try:
        store = ModelStore(tmp_path / "store")
        name = store.add_version(make_bundle(), extra_files={"report.html": b"<html/>"})
        store.promote(name, by="alice")
        lake = Lake(tmp_path / "lake")
        import pandas as pd

        lake.write("hourly", "ES", pd.DataFrame({"x": [1.0]}))
    finally:
        os.umask(old)
    vdir = store.versions_dir / name
    for f in (vdir / "bundle.skops", vdir / "metadata.json", vdir / "report.html", store.manifest_path,
              store.audit_path, store.records_path, lake.path("hourly", "ES")):
        assert f.stat().st_mode & 0o777 == fmode, f
    for d in (vdir, store.versions_dir):
        assert d.stat().st_mode & 0o777 == dmode, d


def test_code_version_writes_nothing_into_the_repository(tmp_path):
    """Reproduction: `rooney train` created .git/index.lock through `git status` (an index
    refresh). Reading the code version must leave .git untouched."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("x")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    time.sleep(1.1)
    os.utime(repo / "f.txt")  # stat info changes, content does not: git status would refresh the index
    index = repo / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    version = code_version(repo)
    assert len(version) == 40  # clean: same content
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    (repo / "f.txt").write_text("y")
    assert code_version(repo).endswith("-dirty")
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert not (repo / ".git" / "index.lock").exists()


def test_loaded_bundles_keep_their_hash_and_predictions(tmp_path):
    import numpy as np

    store = ModelStore(tmp_path)
    forest = make_forest(n_estimators=20)
    b = make_bundle(estimator=forest, fill_values={"rsi2": 50.0}, metrics={"auc": 0.6, "none": None})
    loaded = store.load(store.add_version(b))
    assert loaded.content_hash() == b.content_hash() and loaded.fields().keys() == b.fields().keys()
    assert {k: v for k, v in loaded.fields().items() if k != "estimator"} == \
        {k: v for k, v in b.fields().items() if k != "estimator"}
    x = np.random.default_rng(0).normal(size=(50, 4))
    np.testing.assert_array_equal(loaded.predict_proba(x), b.predict_proba(x))


def test_found_by_the_adversarial_harness(tmp_path):
    """bench/adversarial.py's findings: a store root that is a file is our error; a folder
    named 'ES_v3\\n' is not a version; integrity errors name the file."""
    afile = tmp_path / "not_a_dir"
    afile.write_text("x")
    with pytest.raises(ModelStoreError, match="cannot be the model store"):
        ModelStore(afile).add_version(make_bundle())
    store = ModelStore(tmp_path / "store")
    name = store.add_version(make_bundle())
    (store.versions_dir / "ES_v3\n").mkdir()
    assert [m["version"] for m in store.list_versions()] == [name]
    with pytest.raises(ModelStoreError, match="unknown model version"):
        store.load("ES_v3\n")
    store.promote(name, by="alice")
    man = json.loads(store.manifest_path.read_text())
    man["instruments"]["ES"]["sha256"] = "0" * 64
    store.manifest_path.write_text(json.dumps(man))
    with pytest.raises(ModelIntegrityError) as err:
        store.load_production("ES")
    assert str(store.manifest_path) in str(err.value) and str(store.records_path) in str(err.value)
