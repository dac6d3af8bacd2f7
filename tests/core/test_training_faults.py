"""Training under faults (issue 7, R3 and R9): a run's result depends only on data, config and
seed, whatever a killed or concurrent run left in the study storage; a database URL's
password is never kept and is not part of the model's hash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.model import ModelStore
from rooney_core.sample_market import load_sample_market, write_sample_data
from rooney_core.training.candidates import extract_candidates
from rooney_core.training.config import load_training_config
from rooney_core.training.store_version import train_and_store
from rooney_core.training.train import make_bundle, train_veto_model

CFG = load_config()
TRIALS = 3
pytestmark = pytest.mark.slow

TRAIN = textwrap.dedent("""
    import sys
    import pandas as pd
    from pathlib import Path
    from rooney_core.config import load_config
    from rooney_core.training.config import load_training_config
    from rooney_core.training.train import Market, make_bundle, train_veto_model
    cfg = load_config()
    tcfg = load_training_config(cfg.config_dir, "ES", "demo").model_copy(update={"trials": int(sys.argv[3])})
    cands = pd.read_parquet(sys.argv[1])
    here = Path(sys.argv[1]).parent
    market = Market(pd.read_parquet(here / "hourly.parquet"), pd.read_parquet(here / "features.parquet"),
                    cfg.instrument("ES"), cfg.strategy)
    say = lambda m: print(m, flush=True)
    result = train_veto_model(cands, "ES", tcfg, market, Path(sys.argv[2]), progress=say)
    print("TRIALS", len(result.study.trials), flush=True)
    print("HASH", make_bundle(result).content_hash(), flush=True)
""")


@pytest.fixture(scope="module")
def candidates(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("market")
    write_sample_data(out, ["ES", "NQ"], "2018-01-01", "2024-12-31", seed=5, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=15)
    own = load_session_bars(out, CFG.instrument("ES")).hourly
    pair = load_session_bars(out, CFG.instrument("NQ")).hourly
    feats = REGISTRY.compute(instrument_inputs(CFG, "ES", own, pair))
    path = out / "ES_candidates.parquet"
    extract_candidates(own, feats, CFG.instrument("ES"), CFG.strategy).to_parquet(path)
    own.to_parquet(out / "hourly.parquet")
    feats.to_parquet(out / "features.parquet")
    return path


def _market(candidates: Path):
    import pandas as pd

    from rooney_core.training.train import Market

    return Market(pd.read_parquet(candidates.parent / "hourly.parquet"),
                  pd.read_parquet(candidates.parent / "features.parquet"), CFG.instrument("ES"), CFG.strategy)


@pytest.fixture(scope="module")
def tcfg():
    return load_training_config(CFG.config_dir, "ES", "demo").model_copy(update={"trials": TRIALS})


@pytest.fixture(scope="module")
def clean_hash(candidates, tcfg, tmp_path_factory) -> str:
    import pandas as pd

    journal = tmp_path_factory.mktemp("clean") / "ES.journal"
    result = train_veto_model(pd.read_parquet(candidates), "ES", tcfg, _market(candidates), journal)
    assert len(result.study.trials) == TRIALS
    return make_bundle(result).content_hash()


def _train(script: Path, cands: Path, journal: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(cands), str(journal), str(TRIALS)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _result(out: str) -> tuple[int, str]:
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith(("TRIALS ", "HASH ")))
    return int(lines["TRIALS"]), lines["HASH"].strip()


def test_a_killed_run_does_not_change_the_next_result(candidates, clean_hash, tmp_path):
    """Reproduction: SIGKILL a training run after its first trial, then train again on the same
    journal. The rerun used to resume the dead study (with a trial stuck in RUNNING counted
    as done, "trial 4/3") and gave another content hash than a clean run."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    journal = tmp_path / "ES.journal"
    proc = _train(script, candidates, journal)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("trial 1/"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-2000:]
    rerun = _train(script, candidates, journal)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out[-3000:]
    trials, content_hash = _result(out)
    assert trials == TRIALS
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("trial ")] == \
        [f"trial {n}/{TRIALS}" for n in range(1, TRIALS + 1)]
    assert content_hash == clean_hash


def test_concurrent_runs_of_one_symbol_each_run_their_own_trials(candidates, clean_hash, tmp_path):
    """Reproduction: two concurrent trains of ES with --trials 3 ran 6 trials in one study."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    journal = tmp_path / "ES.journal"
    procs = [_train(script, candidates, journal) for _ in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
        assert _result(out) == (TRIALS, clean_hash)


def _postgres_reachable() -> bool:
    try:
        import psycopg2

        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no server to test against
        return False


def test_storage_password_is_never_kept_nor_hashed(candidates, clean_hash, tcfg, tmp_path):
    """Reproduction: the training `storage:` URL was copied whole into metadata.json, the bundle
    and `models show --json`, and was part of the content hash. The study runs on the real
    local PostgreSQL (trust auth ignores the password, so the URL works as given)."""
    if not _postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres, database test)")
    import pandas as pd

    secret = "s3cret-Pa55"
    url = f"postgresql+psycopg2://postgres:{secret}@127.0.0.1:5432/test"
    store = ModelStore(tmp_path / "store")
    from rooney_core.model.gates import ModelData

    stored = train_and_store(pd.read_parquet(candidates), "ES", tcfg.model_copy(update={"storage": url}),
                             ModelData(_market(candidates), data_dir=candidates.parent, parity_months=1), store, CFG)
    assert stored.bundle.content_hash() == clean_hash  # where the study ran is not the model
    assert stored.bundle.config["storage"] == "postgresql+psycopg2://postgres:***@127.0.0.1:5432/test"
    for path in (store.root / "versions" / stored.name).iterdir():
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in repr(store.load(stored.name).fields())
    from click.testing import CliRunner

    from rooney_pipeline.cli import cli

    env = {"ROONEY_MODEL_STORE": str(store.root)}
    shown = CliRunner().invoke(cli, ["models", "show", stored.name, "--json"], env=env, obj={})
    assert shown.exit_code == 0, shown.output
    assert secret not in shown.output and "***" in shown.output
