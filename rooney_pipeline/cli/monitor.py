"""`rooney monitor` (one instrument's verdicts, as the model_monitoring asset computes them)
and `rooney health` (the model-health kill switch: status, trip by hand, the audited restore)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from rooney_core.errors import RooneyError

_STATE_DIR_HELP = "The live engine's --state-dir (default $ROONEY_LIVE_STATE_DIR, else dagster_home/storage/live)."


def _cfg(ctx):
    from rooney_pipeline.cli import _cfg as cfg_of

    return cfg_of(ctx)


def _state(ctx):
    from rooney_core.monitoring.health import HealthState, health_root

    return HealthState(health_root(_cfg(ctx).model_store_dir))


@click.command("monitor")
@click.option("--symbol", required=True)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=_STATE_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="The findings as JSON.")
@click.pass_context
def monitor(ctx, symbol: str, state_dir: Path | None, as_json: bool) -> None:
    """Judge the instrument's model on its live results: accuracy and P&L against the holdout,
    drift, regime, prediction shift and health (configs/monitoring.yml). Reads only; the
    model_monitoring asset is what trips the kill switch and alerts. Exit 1 if a finding is
    active."""
    from rooney_core.monitoring.dashboard import DashboardPaths
    from rooney_core.monitoring.monitor import monitor_instrument

    cfg = _cfg(ctx)
    cfg.instrument(symbol)  # an unknown instrument fails here, before any work
    report = monitor_instrument(DashboardPaths.resolve(cfg, state_dir), cfg, symbol)
    if as_json:
        click.echo(json.dumps({"symbol": symbol, "model": report.version, "as_of": str(report.as_of),
                               "findings": report.table().to_dict(orient="records"),
                               "retrain_reasons": report.retrain_reasons(), "problems": report.problems},
                              default=str, indent=1))
    else:
        click.echo(f"{symbol}: model {report.version or 'none'}, as of {report.as_of or 'no live bar'}")
        for f in report.findings.values():
            click.echo(f"  {f.key:<12} {f.status:<10} {f.verdict}")
        for k, v in report.problems.items():
            click.echo(f"  ({k}: {v})")
    if report.active():
        ctx.exit(1)


@click.group("health")
def health() -> None:
    """The model-health kill switch (health.json in the model store): an instrument switched
    to paper trades on paper only until a named person restores it, audited in health.log."""


@health.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def health_status(ctx, as_json: bool) -> None:
    """Every instrument's switch and the last trips and restores."""
    state = _state(ctx)
    data = state.read()
    if as_json:
        click.echo(json.dumps({**data, "audit": state.audit_log()[-20:]}, default=str, indent=1))
        return
    cfg = _cfg(ctx)
    for sym in sorted({*cfg.symbols, *data["instruments"]}):
        e = data["instruments"].get(sym) or {}
        mode = e.get("mode", "live")
        why = "; ".join(e.get("reasons") or []) if mode == "paper" else (e.get("reason") or "")
        click.echo(f"{sym:<4} {mode.upper():<6} {e.get('since', '')} {e.get('by', '')} {why}".rstrip())


@health.command("trip")
@click.argument("symbol")
@click.option("--reason", required=True, help="Why it must stop trading live.")
@click.pass_context
def health_trip(ctx, symbol: str, reason: str) -> None:
    """Switch an instrument to paper by hand (audited)."""
    _cfg(ctx).instrument(symbol)
    entry = _state(ctx).trip(symbol, [reason], by=getpass.getuser())
    click.echo(f"{symbol}: PAPER since {entry['since']} ({entry['by']})")


@health.command("restore")
@click.argument("symbol")
@click.option("--by", "by", required=True, help="Who restores it (recorded).")
@click.option("--reason", required=True, help="Why it may trade live again (recorded).")
@click.pass_context
def health_restore(ctx, symbol: str, by: str, reason: str) -> None:
    """Put an instrument back to live: an explicit act by a named person, with a reason."""
    try:
        entry = _state(ctx).restore(symbol, by=by, reason=reason)
    except RooneyError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{symbol}: LIVE again since {entry['since']} (restored by {by}: {reason}); a running live engine "
               "reads it at the next session")
