"""Shared fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from builders import GLOBEX

from rooney_core.config import DEFAULT_CONFIG_DIR, RooneyConfig, load_config
from rooney_core.sessions import SessionCalendar

# Tests never touch the repo's model store (dagster_home/storage/models) or a developer's.
os.environ["ROONEY_MODEL_STORE"] = tempfile.mkdtemp(prefix="rooney-test-models-")
# ... nor its alert journal, nor a developer's Discord channel or live engine
os.environ["ROONEY_ALERTS_DIR"] = tempfile.mkdtemp(prefix="rooney-test-alerts-")
os.environ["ROONEY_LIVE_STATE_DIR"] = tempfile.mkdtemp(prefix="rooney-test-live-")
for var in ("ROONEY_DATA_DIR", "ROONEY_LAKE_DIR", "ROONEY_EXECUTOR", "ROONEY_CONFIG_DIR", "ROONEY_DISCORD_WEBHOOK_URL",
            "DAGSTER_PG_URL", "ROONEY_PREDICTION_LOG_URL"):
    os.environ.pop(var, None)


@pytest.fixture(scope="session")
def cfg() -> RooneyConfig:
    return load_config()


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    """A copy of configs/ to edit (config error tests)."""
    d = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, d)
    return d


@pytest.fixture(scope="session")
def globex() -> SessionCalendar:
    return GLOBEX


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and this process may (root)."""
    path = shutil.which("chromium")
    if path:
        return path
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("headless Chromium is needed: `apt-get install chromium` (Debian); this process cannot "
                    "install it (not root, or no apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    res = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=600)
        res = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    path = shutil.which("chromium")
    if res.returncode != 0 or not path:
        pytest.skip(f"`apt-get install chromium` failed ({res.returncode}): {(res.stderr or res.stdout)[-800:]}")
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On CI (CI=true, as .ci/run runs) a skipped test is a failure: a check that needs a
    service (PostgreSQL, a browser, ...) must really run there, never show as passed."""
    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        reporter.ensure_newline()
        for rep in skipped:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            reporter.write_line(f"CI: skipped is a failure here: {rep.nodeid}: {reason}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
