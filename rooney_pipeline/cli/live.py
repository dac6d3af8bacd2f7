"""`rooney live` and `rooney live status`: the live engine's command line (added to the
``rooney`` group by rooney_pipeline/cli/__init__.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd


def _history(cfg, kind: str, where: str, history_dir: Path | None):
    from rooney_core.live.engine import history_from_lake, history_from_raw

    if history_dir is not None:
        return history_from_raw(cfg, history_dir)
    if kind in ("replay", "tail"):
        return history_from_raw(cfg, where)
    return history_from_lake(cfg)


def _feed(cfg, kind: str, where: str, speed: float | None, symbols: list[str], since):
    from rooney_core.live import feeds

    if kind == "replay":
        return feeds.replay_feed(cfg, where, symbols, speed=speed, since=since)
    if kind == "tail":
        return feeds.tail_feed(cfg, where, symbols)
    if kind == "stdin":
        return feeds.stdin_feed(sys.stdin, symbols)
    if kind == "databento":
        return feeds.databento_live_feed(cfg, symbols, dataset=where, since=since)
    return feeds.dbn_feed(cfg, [where], symbols)


def _now_exchange(cfg, symbol: str) -> np.datetime64:
    utc = pd.DatetimeIndex([pd.Timestamp.now(tz="UTC")])
    return np.datetime64(cfg.instrument(symbol).calendar.to_exchange_time(utc)[0], "s")


@click.group("live", invoke_without_command=True)
@click.option("--symbols", default=None, help="Comma-separated instruments to trade, e.g. ES,NQ.")
@click.option("--feed", "feed_spec", default=None,
              help="replay:DIR[:SPEED] | tail:DIR | stdin | dbn:PATH (Databento OHLCV-1m file) | "
                   "databento[:DATASET] (Databento live, key from DATABENTO_API_KEY).")
@click.option("--paper", is_flag=True, help="Paper trading: orders are simulated and logged, none is sent.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State, trades.csv and the prediction log (default dagster_home/storage/live).")
@click.option("--from", "decide_from", default=None,
              help="Decide bars from this time (replay default: pipeline.yml backtest.start; else now).")
@click.option("--history", "history_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Raw files to warm up from (default: the feed's directory, else the lake).")
@click.pass_context
def live(ctx, symbols, feed_spec, paper, state_dir, decide_from, history_dir) -> None:
    """Run the live engine: the promoted models (sha256 checked) on a minute feed, paper or
    routed to the webhook in $ROONEY_WEBHOOK_URL. POLICY_KILLSWITCH=true forces paper."""
    if ctx.invoked_subcommand is not None:
        ctx.obj["live_state_dir"] = state_dir
        return
    import logging

    from rooney_core.live.engine import LiveEngine, kill_switch_on
    from rooney_core.live.feeds import parse_feed_spec
    from rooney_core.live.router import WebhookRouter
    from rooney_pipeline.cli import _cfg, _split, _store

    if not symbols or not feed_spec:
        raise click.UsageError("--symbols and --feed are required (or: rooney live status)")
    cfg = _cfg(ctx)
    syms = _split(symbols)
    for s in syms:
        cfg.instrument(s)
    kind, where, speed = parse_feed_spec(feed_spec)
    state = state_dir or cfg.resolve_path("dagster_home/storage/live")
    paper = paper or kill_switch_on(cfg.pipeline.live.kill_switch)
    router = None if paper else WebhookRouter.from_env()
    if decide_from is None:
        decide_from = cfg.pipeline.backtest.start if kind == "replay" else str(_now_exchange(cfg, syms[0]))
    # the engine's own log beside its state (warnings and alerts also reach stderr)
    live_log = logging.getLogger("rooney_core.live")
    live_log.setLevel(logging.INFO)
    Path(state).mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(Path(state) / "engine.log", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    live_log.addHandler(to_file)
    try:
        engine = LiveEngine(cfg, syms, _store(cfg), state, paper=paper, router=router,
                            kill_switch=cfg.pipeline.live.kill_switch)
        replay_from = engine.start(_history(cfg, kind, where, history_dir), decide_from)
        engine.resend_unconfirmed()
        needed = sorted(engine.builders)
        click.echo(f"live: {', '.join(syms)} ({'paper' if engine.paper else 'LIVE via ' + router.name}"
                   f"{', kill switch on' if engine.kill_switch else ''}); feed {kind}; deciding from {decide_from}; "
                   f"state {state}", err=True)
        engine.run(_feed(cfg, kind, where, speed, needed, replay_from), replay_from,
                   close_at_end=kind in ("replay", "dbn"))
    finally:
        live_log.removeHandler(to_file)
        to_file.close()
    st = engine.status()
    for s, row in st["instruments"].items():
        click.echo(f"{s}: last bar {row['last_bar']}, {row['position']}, {row['trades']} trades, "
                   f"model {row['model'] or 'none'}")


@live.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def live_status(ctx, as_json: bool) -> None:
    """Per instrument: last bar, position, model version and stage (paper stage, watched),
    kill switch, last error, heartbeat age."""
    from rooney_core.live.engine import status_of
    from rooney_pipeline.cli import _cfg

    state = ctx.obj.get("live_state_dir") or _cfg(ctx).resolve_path("dagster_home/storage/live")
    st = status_of(state)
    if as_json:
        click.echo(json.dumps(st, indent=2, default=str))
        return
    age = st["heartbeat_age_s"]
    click.echo(f"{'paper' if st['paper'] else 'LIVE'}; kill switch {'on' if st['kill_switch'] else 'off'}; "
               f"heartbeat {st['heartbeat']} ({'-' if age is None else f'{age:.0f} s ago'})")
    for s, row in st["instruments"].items():
        stage = row.get("stage", "production")
        flag = " (PAPER STAGE: no order sent)" if stage == "paper" else (" WATCHED" if row.get("watched") else "")
        click.echo(f"  {s:<4} last bar {row['last_bar']}  {row['position']:<22} model {row['model'] or 'none':<8}"
                   f"{flag} trades {row['trades']:<5} last error: {row['last_error'] or '-'}")



@click.command("parity")
@click.option("--symbol", required=True)
@click.option("--model", default=None, help="A stored version (default: production; none deployed: no model).")
@click.option("--months", type=int, default=6, show_default=True, help="Replay the last N months of the data.")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Raw minute files (default: pipeline.yml data.dir / $ROONEY_DATA_DIR).")
@click.pass_context
def parity(ctx, symbol: str, model: str | None, months: int, data_dir: Path | None) -> None:
    """Replay the last N months through the live path and the backtest; exit 0 if features
    (1e-9), probabilities, decisions and trades are identical, else 1 with the first divergence."""
    from rooney_core.live.parity import parity_check
    from rooney_pipeline.cli import _cfg, _store

    cfg = _cfg(ctx)
    cfg.instrument(symbol)
    report = parity_check(cfg, symbol, data_dir or cfg.data_dir, _store(cfg), model=model, months=months)
    click.echo(report.summary())
    for d in report.divergences[1:10]:
        click.echo(f"  also at {d['bar']} in {d['field']}: backtest {d['backtest']!r}, live {d['live']!r}")
    sys.exit(0 if report.ok else 1)
