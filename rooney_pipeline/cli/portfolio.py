"""`rooney portfolio optimise | show | backtest | parity | promote | rollback | history` (added to
the ``rooney`` group by rooney_pipeline/cli/__init__.py)."""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path

import click


def _say(msg: str) -> None:
    click.echo(f"[{time.strftime('%H:%M:%S')}] {msg}", err=True)


def _cfg(ctx: click.Context):
    from rooney_pipeline.cli import _cfg as cfg

    return cfg(ctx)


def _store(cfg):
    from rooney_core.model import ModelStore

    return ModelStore(cfg.model_store_dir)


def _market(cfg, store, data_dir: Path | None, symbols: list[str] | None, versions=None):
    from rooney_core.data.lake import Lake
    from rooney_core.portfolio.workflow import market_from_dir, market_from_lake

    if data_dir is not None:
        return market_from_dir(cfg, data_dir, store, symbols or cfg.symbols, versions)
    return market_from_lake(cfg, Lake(cfg.lake_dir), store, symbols, versions)


def _figures_line(fig: dict) -> str:
    from rooney_core.portfolio.report import format_money, format_number, format_percent

    return (f"net {format_money(fig.get('net_pnl'))}, Sharpe {format_number(fig.get('sharpe'))}, "
            f"Sortino {format_number(fig.get('sortino'))}, max drawdown {format_money(fig.get('max_drawdown_usd'))} "
            f"({format_percent(fig.get('max_drawdown_pct'))}), Calmar {format_number(fig.get('calmar'))}, "
            f"{fig.get('trades')} trades")


@click.group()
def portfolio() -> None:
    """Portfolio rules across instruments: optimise on the training period, report out of
    sample, version, promote and roll back (production config: configs/portfolio_config.yml)."""


@portfolio.command("optimise")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Raw <SYMBOL>_bt.csv files (default: the pipeline's lake).")
@click.option("--symbols", default=None, help="Comma-separated instruments (default: pipeline.yml data.symbols).")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Override trials.")
@click.option("--n-jobs", type=click.IntRange(min=1), default=None, help="Override the trial processes.")
@click.option("--promote", "promote_it", is_flag=True, help="Promote the new version (refused if flagged).")
@click.pass_context
def optimise_cmd(ctx, data_dir, symbols, trials, n_jobs, promote_it) -> None:
    """Choose the portfolio rules (configs/training/portfolio.yml) on the training period,
    report the holdout, store portfolio_v<N> with its report."""
    from rooney_core.portfolio import deploy
    from rooney_core.portfolio.config import load_search
    from rooney_core.portfolio.workflow import optimise_and_store
    from rooney_pipeline.cli import _split

    cfg = _cfg(ctx)
    overrides = {k: v for k, v in (("trials", trials), ("n_jobs", n_jobs)) if v is not None}
    search = load_search(cfg.config_dir, overrides)  # validated before any work
    syms = _split(symbols)
    for s in syms or []:
        cfg.instrument(s)
    store = _store(cfg)
    market = _market(cfg, store, data_dir, syms)
    _say("models: " + ", ".join(f"{s} {v or 'none'}" for s, v in market.versions.items()))
    stored = optimise_and_store(market, store, search, progress=_say)
    name = stored.name
    pdir = store.portfolio_dir(name)
    click.echo(f"{name}: chosen on the training period ({stored.optimisation.config.objective['trials']} trials, "
               f"{stored.optimisation.seconds:.0f} s), Sharpe {stored.optimisation.config.objective['value']:.2f}")
    click.echo(f"{name} out of sample: {_figures_line(stored.optimisation.config.holdout_figures)}")
    click.echo(f"report: {pdir / 'report.html'}")
    if promote_it:
        entry = deploy.promote(store, name, by=f"{getpass.getuser()} (rooney portfolio optimise)",
                               reason="optimised", config_dir=cfg.config_dir)
        click.echo(f"{entry['version']} in production; exported to {Path(cfg.config_dir) / 'portfolio_config.yml'}")


@portfolio.command("show")
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="The stored config as JSON.")
@click.pass_context
def show(ctx, version: str | None, as_json: bool) -> None:
    """The production portfolio (or VERSION): rules, models, figures and flags."""
    from rooney_core.portfolio.workflow import describe

    cfg = _cfg(ctx)
    store = _store(cfg)
    d = describe(store, version)
    c = d["config"]
    if as_json:
        click.echo(c.to_json())
        return
    click.echo(f"{d['version']}" + (" (production)" if d["production"] else
                                    f" (production: {store.production_portfolio() or 'none'})"))
    click.echo(f"  instruments: {', '.join(c.symbols)}; capital {c.capital:,.0f} $")
    rules = c.rules.model_dump(exclude_defaults=True)
    click.echo("  rules: " + (", ".join(f"{k}={v}" for k, v in rules.items()) or "none (every rule off)"))
    click.echo("  models: " + ", ".join(f"{s} {v or 'none'}" for s, v in c.models.items()))
    if c.train and c.holdout:
        click.echo(f"  optimised on {c.train.start} .. {c.train.end}; out of sample {c.holdout.start} .. "
                   f"{c.holdout.end}")
    if c.objective:
        click.echo(f"  objective: {c.objective.get('name')} {c.objective.get('value', float('nan')):.2f} "
                   f"(trial {c.objective.get('trial')} of {c.objective.get('trials')}, "
                   f"{'feasible' if c.objective.get('feasible', True) else 'INFEASIBLE'})")
    if c.holdout_figures:
        click.echo(f"  out of sample: {_figures_line(c.holdout_figures)}")
    for f in d["flags"]:
        click.echo(f"  FLAG: {f}")
    click.echo(f"  report: {d['report']}")


@portfolio.command("backtest")
@click.argument("version", required=False)
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the HTML report here.")
@click.pass_context
def backtest(ctx, version: str | None, data_dir: Path | None, report_path: Path | None) -> None:
    """Run the production portfolio (or VERSION) over its holdout with the models it names."""
    from rooney_core.io import write_text_atomic
    from rooney_core.portfolio import deploy
    from rooney_core.portfolio.optimise import headline
    from rooney_core.portfolio.workflow import backtest_version

    cfg = _cfg(ctx)
    store = _store(cfg)
    config = deploy.load(store, version) if version else deploy.production(store)
    if config is None:
        raise click.ClickException("no portfolio in production yet (rooney portfolio optimise, then promote)")
    market = _market(cfg, store, data_dir, config.symbols, versions=dict(config.models))
    run = backtest_version(cfg, market, config)
    click.echo(f"{config.version} out of sample from {config.holdout.start if config.holdout else '?'}: "
               f"{_figures_line(headline(run.summary))}")
    if len(run.summary["skipped"]):
        for rule, row in run.summary["skipped"].iterrows():
            click.echo(f"  skipped by {rule}: {int(row['skipped'])} (counterfactual {row['counterfactual_pnl']:,.0f} $)")
    if report_path is not None:
        write_text_atomic(run.html, report_path)
        click.echo(f"report: {report_path}")


@portfolio.command("parity")
@click.argument("version", required=False)
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Minute files to replay.")
@click.option("--start", default=None, help="From (default: the config's holdout start).")
@click.pass_context
def parity_cmd(ctx, version: str | None, data_dir: Path, start: str | None) -> None:
    """Replay the holdout through the live engine with the portfolio config and compare with
    the portfolio backtest (exit 0 identical, 1 diverges)."""
    from rooney_core.live.parity import portfolio_parity_check
    from rooney_core.portfolio import deploy

    cfg = _cfg(ctx)
    store = _store(cfg)
    config = deploy.load(store, version) if version else deploy.production(store)
    if config is None:
        raise click.ClickException("no portfolio in production yet")
    report = portfolio_parity_check(cfg, data_dir, store, config, start=start)
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@portfolio.command("promote")
@click.argument("version")
@click.option("--reason", default="", help="Why (required with --force).")
@click.option("--force", is_flag=True, help="Promote although flagged (recorded in the audit log).")
@click.pass_context
def promote_cmd(ctx, version: str, reason: str, force: bool) -> None:
    """Make VERSION the production portfolio and export it to configs/portfolio_config.yml."""
    from rooney_core.portfolio import deploy

    cfg = _cfg(ctx)
    entry = deploy.promote(_store(cfg), version, by=getpass.getuser(), reason=reason or "manual promotion",
                           force=force, config_dir=cfg.config_dir)
    forced = f"; FORCED past: {'; '.join(entry['flags'])}" if entry.get("forced") else ""
    click.echo(f"{version} in production (previous: {entry.get('previous')}){forced}; exported to "
               f"{Path(cfg.config_dir) / 'portfolio_config.yml'}")


@portfolio.command("rollback")
@click.option("--reason", default="manual rollback")
@click.pass_context
def rollback_cmd(ctx, reason: str) -> None:
    """Put the previous production portfolio back (and export it)."""
    from rooney_core.portfolio import deploy

    cfg = _cfg(ctx)
    entry = deploy.rollback(_store(cfg), by=getpass.getuser(), reason=reason, config_dir=cfg.config_dir)
    click.echo(f"{entry['version']} in production (rolled back from {entry['rolled_back_from']}); exported to "
               f"{Path(cfg.config_dir) / 'portfolio_config.yml'}")


@portfolio.command("history")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history_cmd(ctx, as_json: bool) -> None:
    """Portfolio promotions and rollbacks from the audit log."""
    from rooney_core.portfolio import deploy

    rows = deploy.history(_store(_cfg(ctx)))
    if as_json:
        click.echo(json.dumps(rows, indent=1, default=str))
        return
    for r in rows:
        click.echo(f"{r.get('at')}  {r.get('action'):<8} {r.get('version'):<14} by {r.get('by')} ({r['status']})"
                   + (f": {r['reason']}" if r.get("reason") else ""))
