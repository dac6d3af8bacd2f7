"""The README's demo: sample data -> bars -> features -> feature validation, per instrument,
run as real Dagster runs recorded in ``dagster_home/`` (browse them with ``dagster dev``)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from rooney_core.config import REPO_ROOT, RooneyConfig
from rooney_pipeline import settings

# (job, partitioned?) in order; the demo trains with configs/training/demo.yml layered on top
STAGES = (("bars_job", True), ("features_job", True), ("candidates_job", True), ("train_job", True),
          ("promote_job", True), ("paper_stage_job", True), ("backtest_job", True), ("portfolio_job", False))
# the demo's parity gate replays 3 months per version (pipeline.yml: 6) to stay within minutes
TRAIN_DEMO = {"ops": {"veto_model": {"config": {"profile": "demo", "parity_months": 3}}}}
# sample data is history: no session comes after staging, so the paper stage replays the last
# sessions of the data (labelled as a replay in its result and the checklist)
PAPER_DEMO = {"ops": {"paper_stage": {"config": {"replay_history": True}}}}
# Dagster's console logger prints every engine event at DEBUG; the demo shows INFO and up
# (every event is still stored in the instance for the UI).
# the demo's portfolio optimisation: fewer trials, the parity replay over 2 months
PORTFOLIO_DEMO = {"ops": {"portfolio_config": {"config": {"trials": 12}},
                          "portfolio_backtest": {"config": {"parity_months": 2}}}}
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def ensure_dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(REPO_ROOT / "dagster_home")
        os.environ["DAGSTER_HOME"] = home
    path = Path(home).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "dagster.yaml").exists():
        (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return path


def ensure_sample_data(cfg: RooneyConfig, say: Callable[[str], None], force: bool = False) -> None:
    """Generate the sample files (and the overlap 'second vendor') unless already there
    with the same parameters."""
    from rooney_core.sample_market import load_sample_market, write_sample_data

    sd = cfg.pipeline.sample_data
    market = load_sample_market(cfg.config_dir)
    out = cfg.resolve_path(sd.out_dir)
    params = {"symbols": sd.symbols, "start": sd.start, "end": sd.end, "seed": sd.seed, "edge": sd.edge,
              "market": market.model_dump(mode="json"), "overlap_years": sd.overlap_years}
    stamp = out / ".params.json"
    files_there = all((out / f"{s}_bt.csv").is_file() for s in sd.symbols)
    if not force and files_there and stamp.is_file() and json.loads(stamp.read_text()) == params:
        say(f"sample data already in {out} (same parameters): reusing it")
        return
    say(f"generating sample data for {', '.join(sd.symbols)} {sd.start}..{sd.end} into {out}")
    write_sample_data(out, sd.symbols, sd.start, sd.end, seed=sd.seed, edge=sd.edge, cfg=cfg,
                      market=market, progress=say)
    if sd.overlap_dir:
        import pandas as pd

        ostart = str((pd.Timestamp(sd.end) - pd.DateOffset(years=sd.overlap_years)).date())
        odir = cfg.resolve_path(sd.overlap_dir)
        say(f"generating a second vendor's overlap data {ostart}..{sd.end} into {odir}")
        # same seed and market from the same start: the same path, seen through another vendor
        write_sample_data(odir, sd.symbols, sd.start, sd.end, seed=sd.seed, edge=sd.edge, cfg=cfg,
                          market=market, vendor_noise=0.01, progress=say, write_from=ostart)
    from rooney_core.io import write_text_atomic

    write_text_atomic(json.dumps(params, indent=1), stamp)


def run_demo(symbols: list[str] | None = None, regenerate: bool = False,
             say: Callable[[str], None] = print) -> bool:
    home = ensure_dagster_home()
    cfg = settings.load()  # validated before any work (R5)
    symbols = symbols or cfg.symbols
    for s in symbols:
        if s not in cfg.symbols:
            raise SystemExit(f"{s} is not a pipeline partition (data.symbols in configs/pipeline.yml)")
    if cfg.uses_sample_data:
        ensure_sample_data(cfg, say, force=regenerate)
    else:
        say(f"using your data in {cfg.data_dir}")

    import dagster as dg

    from rooney_pipeline.definitions import defs

    instance = dg.DagsterInstance.get()
    say(f"Dagster instance: {home} (open the UI with: DAGSTER_HOME={home} uv run --frozen dg dev)")
    ok = True
    results: dict[str, dict[str, object]] = {s: {} for s in symbols}
    for stage, partitioned in STAGES:
        job = defs.resolve_job_def(stage)
        run_config = {**QUIET, **(TRAIN_DEMO if stage == "train_job" else {}),
                      **(PAPER_DEMO if stage == "paper_stage_job" else {}),
                      **(PORTFOLIO_DEMO if stage == "portfolio_job" else {})}
        for sym in symbols if partitioned else ["all"]:
            t0 = time.perf_counter()
            res = job.execute_in_process(partition_key=sym if partitioned else None, instance=instance,
                                         raise_on_error=False, run_config=run_config)
            took = time.perf_counter() - t0
            status = "ok" if res.success else "FAILED"
            say(f"{stage} [{sym}] {status} in {took:.1f} s (run {res.run_id[:8]})")
            ok &= res.success
            for ev in res.get_asset_materialization_events():
                mat = ev.materialization
                results.setdefault(sym, {})[mat.asset_key.to_user_string()] = {
                    k: v.value for k, v in mat.metadata.items()}
            for ev in res.get_asset_check_evaluations():
                results.setdefault(sym, {})[f"check:{ev.check_name}:{ev.asset_key.to_user_string()}"] = ev.passed
            if not res.success:
                for ev in res.get_step_failure_events():
                    say(f"  {ev.step_key}: {ev.event_specific_data.error.message.strip()[:2000]}")
    _print_summary({s: r for s, r in results.items() if s != "all"}, say)
    from rooney_core.model import ModelStore

    store = ModelStore(cfg.model_store_dir)
    manifest = {sym: store.production(sym) for sym in symbols}
    for sym in symbols:
        if not manifest.get(sym):
            ok = False
            say(f"no production model for {sym} in the manifest")
    say(f"manifest: {manifest}")
    port = results.get("all", {}).get("portfolio_config", {})
    if port:
        say(f"portfolio: {port.get('version')} ({port.get('promoted')}); production portfolio "
            f"{store.production_portfolio() or 'none'}; report {port.get('report')}")
    say("the reports (model cards) and monitoring: uv run --frozen rooney dashboard  (then http://127.0.0.1:8501; "
        "the UI's report_url links open there)")
    say(f"browse the runs, lineage and plots: DAGSTER_HOME={home} uv run --frozen dg dev  (then http://127.0.0.1:3000)")
    return ok


def _print_summary(results: dict[str, dict[str, object]], say: Callable[[str], None]) -> None:
    """One row per instrument, within 100 columns (a normal terminal)."""
    cols = (("inst", 5, "<"), ("hourly bars", 11, ">"), ("feat", 4, ">"), ("val", 4, "<"), ("signals", 7, ">"),
            ("win", 6, ">"), ("model", 8, "<"), ("Sharpe on/off", 13, ">"), ("DSR", 5, ">"), ("trades", 7, ">"),
            ("P&L $", 9, ">"))

    def line(values) -> str:
        return "  ".join(f"{str(v)[:w]:{how}{w}}" for v, (_, w, how) in zip(values, cols, strict=True)).rstrip()

    rows = [line(c[0] for c in cols), "-" * len(line(c[0] for c in cols))]
    for sym, r in results.items():
        hb = r.get("hourly_bars", {}) or {}
        fe = r.get("features", {}) or {}
        ca = r.get("candidate_trades", {}) or {}
        bt = r.get("instrument_backtest", {}) or {}
        vm = r.get("veto_model", {}) or {}
        agree = r.get("check:features_agree:feature_validation")
        rows.append(line((
            sym, _fmt(hb.get("rows"), ","), fe.get("features", "-"), "ok" if agree else "FAIL" if agree is False else "-",
            _fmt(ca.get("trades"), ","), _fmt(ca.get("win_rate"), ".1%"), vm.get("version", "-"),
            f"{_fmt(vm.get('holdout_sharpe_selected'), '.2f')} / {_fmt(vm.get('holdout_sharpe_all'), '.2f')}",
            _fmt(vm.get("deflated_sharpe"), ".2f"), _fmt(bt.get("trades"), ","), _fmt(bt.get("net_pnl"), ",.0f"))))
    say("Rooney demo\n" + "\n".join(rows))
    say("val: features agree with the second source over the validation month; DSR: deflated Sharpe")
    say("Sharpe on/off: holdout veto-on / veto-off backtest; trades, P&L: the production model's backtest")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
