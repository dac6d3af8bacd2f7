"""The Dagster webserver really starts on our definitions: it serves the asset graph, and its
pages show our key plots in place (headless Chromium)."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def _webserver(home: Path):
    """dagster-webserver on our workspace and ``home``'s instance: yields its port once its
    GraphQL answers (with the asset nodes, for the caller to check)."""
    port = _free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    log = open(home / "webserver.log", "w")  # a file: a pipe nobody reads would fill and stall it
    proc = subprocess.Popen([str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                            cwd=REPO_ROOT, env={**os.environ, "DAGSTER_HOME": str(home)},
                            stdout=log, stderr=subprocess.STDOUT, text=True)
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
                assert proc.poll() is None, (home / "webserver.log").read_text()[-3000:]
                time.sleep(1)
        assert nodes is not None, "webserver did not answer in time"
        yield port, nodes
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


@pytest.mark.slow
def test_webserver_serves_the_asset_graph(tmp_path):
    with _webserver(_home(tmp_path)) as (_, nodes):
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"raw_bars", "hourly_bars", "daily_bars", "features", "feature_validation", "candidate_trades",
                "instrument_backtest", "trade_reconciliation", "veto_model", "promoted_manifest"} <= keys
        groups = {n["groupName"] for n in nodes}
        assert {"data", "features", "labels", "models", "backtests"} <= groups


@pytest.mark.slow
def test_the_key_plot_shows_in_place_on_the_asset_page(tmp_path, chromium):
    """The equity chart of instrument_backtest is drawn on the asset's page as it opens, not
    behind a "[Show Markdown]" button (Dagster expands markdown under 1,000 characters); the
    full figure stays behind its button; the report link opens the dashboard's report page."""
    import dagster as dg
    import numpy as np
    from playwright.sync_api import expect, sync_playwright

    from rooney_core.reports import equity_curve
    from rooney_pipeline.metadata import INLINE_LIMIT, line_chart, png

    home = _home(tmp_path)
    equity = 100_000 + np.cumsum(np.random.default_rng(3).normal(20, 400, size=2_000))
    chart = line_chart("ES equity", {"ES equity": equity}, note="net $12,345, 321 trades", zero=False)
    assert len(chart.value) < INLINE_LIMIT
    import pandas as pd

    full = png(equity_curve("ES backtest", pd.Series(equity, index=pd.date_range("2023-01-02", periods=len(equity),
                                                                                      freq="h")), 100_000),
               title="ES full equity")
    with dg.DagsterInstance.from_config(str(home)) as instance:  # what the asset's run records
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "instrument_backtest", partition="ES",
            metadata={"equity": chart, "report_url": dg.MetadataValue.url("http://127.0.0.1:8501/?report=ES_v1"),
                      "equity_curve": full}))
    with _webserver(home) as (port, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"http://127.0.0.1:{port}/assets/instrument_backtest")
            img = page.get_by_role("img", name="ES equity")
            expect(img.first).to_be_visible(timeout=90_000)
            assert img.first.evaluate("i => i.complete && i.naturalWidth") > 200  # the SVG decoded and drew
            expect(page.get_by_role("link", name="http://127.0.0.1:8501/?report=ES_v1").first).to_be_visible()
            # the full matplotlib figure is over the limit: behind its button, as before
            assert page.get_by_role("img", name="ES full equity").count() == 0
            if page.get_by_role("button", name="Skip").count():  # the first visit's newsletter dialog
                page.get_by_role("button", name="Skip").click()
            page.screenshot(path=str(tmp_path / "asset-page.png"), full_page=True)
        finally:
            browser.close()
    print(f"\nscreenshot: {tmp_path / 'asset-page.png'}")
