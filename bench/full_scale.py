"""P6: full scale. 20 instruments x 15 years of minute bars through the production deployment:
the Dagster webserver and daemon as processes on the PostgreSQL instance
(dagster_home/postgres/dagster.yaml), every run submitted through the webserver's GraphQL API,
queued and started by the daemon within the instance's concurrency limits.

    uv run --frozen --extra dev python bench/full_scale.py [--instruments 20] [--start 2010-01-01]
        [--end 2024-12-31] [--pg postgresql://postgres@127.0.0.1:5432] [--keep]

1. `rooney sample-data` writes the minute bars (cached in bench/out/full_scale/data_*, reused
   while the parameters are the same; its time is reported apart from the pipeline's).
2. A fresh database on the server, a fresh DAGSTER_HOME, lake, model store and a copy of
   configs/ whose pipeline.yml partitions over the instruments and reads the generated files.
3. The stages, one after the other, each a run per instrument (the daemon runs them
   concurrently: max_concurrent_runs, and at most 2 training runs at once):
   validation + bars (bars_job), features (features_job), labels (candidates_job), training
   with the full settings (configs/training/defaults.yml) and the six gates (train_job),
   promotion (promote_job, then paper_stage_job replaying the last sessions of the history,
   as the demo does), the portfolio (portfolio_job: optimisation over every instrument with a
   production model, stored, promoted, and its backtest with the live-engine parity replay).
4. Printed: each stage's wall time (first run started -> last run ended) and its steps' time
   (validation and bars apart, training and gates apart), the total from the first submission
   to the last run's end, the peak RSS of every process (webserver, daemon, code servers, run
   workers; VmHWM sampled every second) and of all of them together, and the disk used.

Target (TARGETS.md P6): < 60 min end to end, peak RSS < 6 GB, on 2 cores. Needs PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "full_scale"
BIN = Path(sys.executable).parent
PAPER_REPLAY = {"ops": {"paper_stage": {"config": {"replay_history": True}}}}
# (stage, job, partitioned, run config)
STAGES = [("validation + bars", "bars_job", True, {}),
          ("features", "features_job", True, {}),
          ("labels", "candidates_job", True, {}),
          ("training + gates", "train_job", True, {}),
          ("promotion", "promote_job", True, {}),
          ("paper stage -> production", "paper_stage_job", True, PAPER_REPLAY),
          ("portfolio", "portfolio_job", False, {})]
# steps reported apart (asset step key -> label)
STEP_LABELS = {"raw_bars": "validation", "hourly_bars": "bars", "daily_bars": "bars", "features": "features",
               "feature_validation": "feature validation", "candidate_trades": "labels", "veto_model": "training",
               "promoted_manifest": "promotion", "paper_stage": "paper stage",
               "portfolio_config": "portfolio optimisation", "portfolio_backtest": "portfolio backtest"}
GATES_MARK = "running the six gates"  # rooney_core.model.gates.validate_model's first log line


def say(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


def generate(symbols: list[str], start: str, end: str, seed: int) -> tuple[Path, float | None]:
    data = OUT / f"data_{len(symbols)}_{start}_{end}_seed{seed}"
    params = {"symbols": symbols, "start": start, "end": end, "seed": seed, "edge": 1.0,
              "market": (ROOT / "configs" / "sample_market.yml").read_text(),
              "instruments": (ROOT / "configs" / "instruments.yml").read_text()}
    stamp = data / ".params.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params and \
            all((data / f"{s}_bt.csv").is_file() for s in symbols):
        say(f"sample data cached in {data}")
        return data, None
    shutil.rmtree(data, ignore_errors=True)
    say(f"generating {len(symbols)} instruments {start}..{end} into {data} (rooney sample-data)")
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "rooney"), "sample-data", "--out", str(data), "--symbols", ",".join(symbols),
                    "--start", start, "--end", end, "--seed", str(seed), "--edge", "1.0"], check=True, cwd=ROOT)
    took = time.perf_counter() - t0
    stamp.write_text(json.dumps(params))
    return data, took


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


class Sampler(threading.Thread):
    """Every second: each process under the webserver and the daemon (VmHWM: its own peak) and
    the sum of their current RSS."""

    def __init__(self, roots: list[int]):
        super().__init__(daemon=True)
        self.roots, self.stop = roots, threading.Event()
        self.procs: dict[int, dict] = {}
        self.peak_total, self.peak_total_at = 0.0, ""
        self.stage = "start-up"  # the stage running when a process is first seen

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            total = 0.0
            for root in self.roots:
                try:
                    tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for p in tree:
                    try:
                        status = Path(f"/proc/{p.pid}/status").read_text()
                        fields = {ln.split(":")[0]: ln.split()[1] for ln in status.splitlines() if ":" in ln
                                  and ln.split(":")[0] in ("VmHWM", "VmRSS")}
                        hwm, rss = int(fields.get("VmHWM", 0)) / 1024, int(fields.get("VmRSS", 0)) / 1024
                        rec = self.procs.setdefault(p.pid, {"cmd": " ".join(p.cmdline())[:300], "peak_mb": 0.0,
                                                            "stage": self.stage})
                    except (OSError, psutil.Error):
                        continue
                    rec["peak_mb"] = max(rec["peak_mb"], hwm)
                    total += rss
            if total > self.peak_total:
                self.peak_total, self.peak_total_at = total, f"{datetime.now():%H:%M:%S}"
            self.stop.wait(1.0)


def kind_of(rec: dict) -> str:
    """What a process is, from its command line, and the stage it was first seen in."""
    cmd = rec["cmd"]
    if "dagster-webserver" in cmd or "dagster_webserver" in cmd:
        return "webserver"
    if "dagster-daemon" in cmd or "dagster_daemon" in cmd:
        return "daemon"
    if "grpc" in cmd or "code-server" in cmd or "code_server" in cmd:
        return "code server"
    if "execute_run" in cmd or "execute-run" in cmd:
        return f"run worker ({rec['stage']})"
    if "spawn_main" in cmd or "forkserver" in cmd or "execute_step" in cmd:
        return f"step process ({rec['stage']})"
    return f"other: {cmd[:60]} ({rec['stage']})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instruments", type=int, default=20)
    ap.add_argument("--start", default="2010-01-01")
    ap.add_argument("--end", default="2024-12-31")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="the server (no database)")
    ap.add_argument("--port", type=int, default=3391)
    ap.add_argument("--stages", default=",".join(s[1] for s in STAGES), help="jobs to run (default: all)")
    ap.add_argument("--generate-only", action="store_true", help="write (or find) the data, then stop")
    ap.add_argument("--keep", action="store_true", help="keep the database and the run directory")
    a = ap.parse_args()

    import psycopg2

    from rooney_core.config import load_config, read_yaml

    cfg = load_config()
    symbols = list(cfg.instruments.instruments)[: a.instruments]
    if len(symbols) < a.instruments:
        raise SystemExit(f"configs/instruments.yml has {len(symbols)} instruments, not {a.instruments}")
    data, gen_s = generate(symbols, a.start, a.end, a.seed)
    if a.generate_only:
        print(f"data in {data}" + (f" ({gen_s:.0f} s)" if gen_s else " (cached)"))
        return 0

    stamp = f"{datetime.now(UTC):%Y%m%d%H%M%S}"
    work = OUT / f"run-{stamp}"
    home, cfg_dir = work / "dagster_home", work / "configs"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster_home" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    shutil.copytree(ROOT / "configs", cfg_dir)
    pipe = read_yaml(cfg_dir / "pipeline.yml")
    pipe["data"]["dir"], pipe["data"]["symbols"] = str(data), symbols
    pipe["lake_dir"], pipe["reports_dir"] = str(work / "lake"), str(work / "reports")
    (cfg_dir / "pipeline.yml").write_text(yaml.safe_dump(pipe, sort_keys=False))

    db = f"rooney_full_{stamp}"
    admin = psycopg2.connect(f"{a.pg}/postgres", connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')
    url = f"{a.pg}/{db}"
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": url, "ROONEY_CONFIG_DIR": str(cfg_dir),
           "ROONEY_MODEL_STORE": str(work / "models"), "ROONEY_ALERTS_DIR": str(work / "alerts"),
           "ROONEY_LIVE_STATE_DIR": str(work / "live")}
    for k in ("ROONEY_DATA_DIR", "ROONEY_LAKE_DIR", "ROONEY_DISCORD_WEBHOOK_URL", "ROONEY_PREDICTION_LOG_URL"):
        env.pop(k, None)
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "DAGSTER_PG_URL", "ROONEY_CONFIG_DIR")})
    say(f"{len(symbols)} instruments ({', '.join(symbols)}); database {db}; run directory {work}")

    logs = {n: open(work / f"{n}.log", "wb") for n in ("webserver", "daemon")}  # noqa: SIM115
    procs = {
        "webserver": subprocess.Popen([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(a.port),
                                       "-w", "workspace.yaml"], cwd=ROOT, env=env, stdout=logs["webserver"],
                                      stderr=subprocess.STDOUT, start_new_session=True),
        "daemon": subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=ROOT, env=env,
                                   stdout=logs["daemon"], stderr=subprocess.STDOUT, start_new_session=True),
    }
    sampler = Sampler([p.pid for p in procs.values()])
    sampler.start()
    failed: list[str] = []
    stage_rows, step_times = [], {}
    runs_by_id: dict[str, str] = {}
    try:
        import dagster as dg
        from dagster_graphql import DagsterGraphQLClient

        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{a.port}/server_info", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or procs["webserver"].poll() is not None:
                    raise RuntimeError((work / "webserver.log").read_text(errors="replace")[-3000:]) from None
                time.sleep(2)
        client = DagsterGraphQLClient("127.0.0.1", port_number=a.port, timeout=600)
        instance = dg.DagsterInstance.get()
        wanted = a.stages.split(",")
        t_start = None
        for stage, job, partitioned, run_config in STAGES:
            if job not in wanted:
                continue
            t0 = time.time()
            t_start = t_start or t0
            ids = []
            for sym in symbols if partitioned else [None]:
                tags = {"dagster/partition": sym} if sym else {}
                ids.append(client.submit_job_execution(job, run_config=run_config, tags={**tags, "rooney/bench": "P6"}))
            runs_by_id.update(dict.fromkeys(ids, stage))
            sampler.stage = stage
            say(f"{stage}: {len(ids)} run(s) of {job} submitted")
            done_before: set[str] = set()
            while True:
                recs = instance.get_run_records(filters=dg.RunsFilter(run_ids=ids))
                finished = [r for r in recs if r.dagster_run.is_finished]
                for r in finished:
                    if r.dagster_run.run_id not in done_before:
                        done_before.add(r.dagster_run.run_id)
                        part = r.dagster_run.tags.get("dagster/partition", "all")
                        took = (r.end_time or time.time()) - (r.start_time or t0)
                        say(f"  {job} [{part}] {r.dagster_run.status.value.lower()} in {took:.0f} s "
                            f"({len(done_before)}/{len(ids)})")
                if len(finished) == len(ids):
                    break
                for n, p in procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"the {n} exited: " + (work / f"{n}.log").read_text(errors="replace")[-3000:])
                time.sleep(2)
            recs = instance.get_run_records(filters=dg.RunsFilter(run_ids=ids))
            bad = [r for r in recs if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
            # a blocking gate that failed is a decision (the model is kept out), not an error
            for r in bad:
                part = r.dagster_run.tags.get("dagster/partition", "all")
                why = _failure(instance, r.dagster_run.run_id)
                failed.append(f"{job} [{part}]: {why}")
            starts = [r.start_time for r in recs if r.start_time]
            ends = [r.end_time for r in recs if r.end_time]
            wall = max(ends) - min(starts) if starts and ends else float("nan")
            stage_rows.append({"stage": stage, "job": job, "runs": len(ids), "wall_s": wall,
                               "queued_to_done_s": max(ends) - t0 if ends else float("nan"),
                               "failed": len(bad)})
            for r in recs:
                for label, secs in _step_times(instance, r.dagster_run.run_id).items():
                    step_times.setdefault(stage, {}).setdefault(label, []).append(secs)
            say(f"{stage}: done, wall {wall:.0f} s" + (f", {len(bad)} run(s) not successful" if bad else ""))
        t_end = max(r.end_time for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=list(runs_by_id)))
                    if r.end_time)
        total = t_end - t_start
    finally:
        sampler.stop.set()
        sampler.join(5)
        for p in procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        for f in logs.values():
            f.close()

    store = __import__("rooney_core.model", fromlist=["ModelStore"]).ModelStore(work / "models")
    production = {s: store.production(s) for s in symbols}
    with admin.cursor() as cur:
        cur.execute("SELECT pg_database_size(%s)", (db,))
        db_bytes = cur.fetchone()[0]
    disk = {"input CSVs": du(data), "lake (parquet)": du(work / "lake"), "model store": du(work / "models"),
            "reports": du(work / "reports"), "dagster home (logs, compute logs)": du(home),
            f"PostgreSQL database {db}": db_bytes}

    print(f"\nP6 full scale: {len(symbols)} instruments x {a.start}..{a.end} minute bars "
          f"({sum(1 for _ in open(data / f'{symbols[0]}_bt.csv', 'rb')) - 1:,} rows in {symbols[0]}_bt.csv), "
          f"through Dagster on PostgreSQL (webserver + daemon, queued runs), {os.cpu_count()} cores")
    print("target: < 60 min end to end, peak RSS < 6 GB")
    if gen_s is not None:
        print(f"data generation (not counted): {gen_s:.0f} s")
    print(f"{'stage':<28}{'runs':>5}{'wall s':>9}{'not ok':>8}   steps (median / max s per run)")
    for row in stage_rows:
        steps = "; ".join(f"{k} {_median(v):.0f}/{max(v):.0f}" for k, v in step_times.get(row["stage"], {}).items())
        print(f"{row['stage']:<28}{row['runs']:>5}{row['wall_s']:>9.0f}{row['failed']:>8}   {steps}")
    print(f"{'total (first submission -> last run end)':<42}{total:>9.0f} s = {total / 60:.1f} min")
    by_kind: dict[str, list[float]] = {}
    for rec in sampler.procs.values():
        if rec["peak_mb"] >= 20:  # shells and tiny helpers are left out
            by_kind.setdefault(kind_of(rec), []).append(rec["peak_mb"])
    print("peak RSS per process (VmHWM, sampled every second):")
    for kind, peaks in sorted(by_kind.items(), key=lambda kv: -max(kv[1])):
        print(f"  {kind:<48}{len(peaks):>4} process(es), max {max(peaks):>7.0f} MB")
    print(f"  all processes together at once: {sampler.peak_total:.0f} MB (at {sampler.peak_total_at})")
    print("disk:")
    for k, v in disk.items():
        print(f"  {k:<48}{v / 1e9:>8.2f} GB")
    print(f"production models: {sum(1 for v in production.values() if v)}/{len(symbols)}: "
          + ", ".join(f"{s}={v or '-'}" for s, v in production.items()))
    print(f"production portfolio: {store.production_portfolio() or 'none'}")
    for f in failed:
        print(f"not successful: {f}")
    summary = {"stages": stage_rows, "steps": step_times, "total_s": total, "generation_s": gen_s,
               "processes": by_kind, "process_list": list(sampler.procs.values()), "peak_total_mb": sampler.peak_total, "disk_bytes": disk,
               "production": production, "not_successful": failed}
    (OUT / f"result-{stamp}.json").write_text(json.dumps(summary, indent=1, default=str))
    if not a.keep:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,))
            cur.execute(f'DROP DATABASE IF EXISTS "{db}"')
        shutil.rmtree(work, ignore_errors=True)
    admin.close()
    errors = [f for f in failed if "gate" not in f]
    return 1 if errors else 0


def _median(v: list[float]) -> float:
    s = sorted(v)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def _step_times(instance, run_id: str) -> dict[str, float]:
    """Seconds per step label in one run (training and gates apart, by the gates' first log line)."""
    import dagster as dg

    starts, out = {}, {}
    for rec in instance.all_logs(run_id):
        ev, key = rec.dagster_event, rec.step_key
        if ev is None:
            if key == "veto_model" and GATES_MARK in (rec.user_message or "") and "veto_model" in starts:
                out["training"] = rec.timestamp - starts["veto_model"]
                starts["gates"] = rec.timestamp
            continue
        if ev.event_type == dg.DagsterEventType.STEP_START:
            starts[key] = rec.timestamp
        elif ev.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE) and key in starts:
            if key == "veto_model" and "gates" in starts:
                out["gates"] = rec.timestamp - starts["gates"]
            else:
                label = STEP_LABELS.get(key, key)
                out[label] = out.get(label, 0.0) + rec.timestamp - starts[key]
    return out


def _failure(instance, run_id: str) -> str:
    import dagster as dg

    msgs = []
    for rec in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_FAILURE,
                                                  dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                                                  dg.DagsterEventType.RUN_FAILURE}):
        ev = rec.dagster_event
        if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = ev.event_specific_data
            if not data.passed:
                msgs.append(f"gate {data.check_name} failed")
        elif ev.event_type == dg.DagsterEventType.STEP_FAILURE:
            err = ev.event_specific_data.error
            msgs.append(f"{rec.step_key}: {(err.message if err else '').strip()[:300]}")
        else:
            msgs.append((ev.message or "run failed")[:300])
    return "; ".join(msgs) or "unknown"


if __name__ == "__main__":
    sys.exit(main())
