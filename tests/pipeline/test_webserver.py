"""The Dagster webserver really starts on our definitions and serves the asset graph."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rooney_core.config import REPO_ROOT

QUERY = "{ assetNodes { assetKey { path } groupName } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_webserver_serves_the_asset_graph(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = _free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen([str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                            cwd=REPO_ROOT, env={**os.environ, "DAGSTER_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        nodes = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and nodes is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                             data=json.dumps({"query": QUERY}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    body = json.loads(resp.read())
                nodes = body["data"]["assetNodes"]
            except (OSError, KeyError, TypeError):
                assert proc.poll() is None, proc.stdout.read()[-3000:]
                time.sleep(1)
        assert nodes is not None, "webserver did not answer in time"
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"raw_bars", "hourly_bars", "daily_bars", "features", "feature_validation", "candidate_trades",
                "instrument_backtest", "trade_reconciliation", "veto_model", "promoted_manifest"} <= keys
        groups = {n["groupName"] for n in nodes}
        assert {"data", "features", "labels", "models", "backtests"} <= groups
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
