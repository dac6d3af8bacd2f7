"""The ``rooney`` command line (the console script): thin wrappers over rooney_core for
people and scripts, on the application side beside the Dagster assets. Sub-groups live beside
it: ``live.py`` (live, parity), ``monitor.py`` (monitor, health), ``portfolio.py``. Only
``rooney demo`` starts Dagster; every other command runs the library directly.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from rooney_core.errors import ConfigError, DataValidationError, RooneyError
from rooney_core.formats import metric


def _split(value: str | None) -> list[str] | None:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --start/--end option: a calendar date, checked before any data is read."""
    from rooney_core.config import parse_date

    try:
        return None if value is None else parse_date(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _cfg(ctx: click.Context):
    from rooney_pipeline import settings

    if "cfg" not in ctx.obj:
        ctx.obj["cfg"] = settings.load(ctx.obj.get("config_dir"))
    return ctx.obj["cfg"]


def _say(msg: str) -> None:
    """A progress line in the format of Dagster's console log lines beside it."""
    click.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S %z')} - rooney - INFO - {msg}", err=True)


class _RooneyGroup(click.Group):
    """Turns our own errors into one clear message and a non-zero exit, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DataValidationError as err:
            click.echo(str(err), err=True)
            sys.exit(1)
        except ConfigError as err:
            click.echo(f"config error: {err}", err=True)
            sys.exit(2)
        except RooneyError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)


@click.group(cls=_RooneyGroup)
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="ROONEY_CONFIG_DIR", help="Directory of YAML configs (default: the repo's configs/).")
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.pass_context
def cli(ctx: click.Context, config_dir: Path | None, verbose: bool) -> None:
    """Rooney Pipeline: the IBS futures desk's research-to-live toolkit."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)
    ctx.obj["config_dir"] = config_dir


@cli.command("sample-data")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write <SYMBOL>_bt.csv files into.")
@click.option("--symbols", default=None, help="Comma-separated symbols (default: sample_data.symbols).")
@click.option("--start", default=None, callback=_date, help="First date, YYYY-MM-DD (default from pipeline.yml).")
@click.option("--end", default=None, callback=_date, help="Last date, YYYY-MM-DD (default from pipeline.yml).")
@click.option("--seed", type=int, default=None, help="Random seed (same seed, same files).")
@click.option("--edge", type=float, default=None, help="Strength of the planted edge; 0 = null market.")
@click.option("--interval", type=click.Choice(["1", "5", "15", "30", "60"]), default="1",
              help="Bar interval in minutes.")
@click.option("--vendor-noise", type=float, default=0.0,
              help="Write a 'second vendor' copy: share of bars off by a tick, volumes jittered.")
@click.pass_context
def sample_data(ctx, out_dir, symbols, start, end, seed, edge, interval, vendor_noise) -> None:
    """Generate synthetic raw minute-bar files with a tunable mean-reversion edge."""
    from rooney_core.sample_market import load_sample_market, write_sample_data

    cfg = _cfg(ctx)
    sd = cfg.pipeline.sample_data
    syms = _split(symbols) or sd.symbols
    for s in syms:
        cfg.instrument(s)  # unknown symbol -> ConfigError before any work
    t0 = time.perf_counter()
    paths = write_sample_data(
        out_dir, syms, start or sd.start, end or sd.end,
        seed=sd.seed if seed is None else seed, edge=sd.edge if edge is None else edge,
        cfg=cfg, market=load_sample_market(cfg.config_dir), interval_minutes=int(interval),
        vendor_noise=vendor_noise, progress=_say,
    )
    for p in paths:
        click.echo(str(p))
    _say(f"wrote {len(paths)} file(s) in {time.perf_counter() - t0:.1f} s")


@cli.command("check-data")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--symbols", default=None, help="Comma-separated symbols (default: every *_bt.csv).")
@click.pass_context
def check_data(ctx, data_dir: Path, symbols: str | None) -> None:
    """Validate raw files: exit 0 if all are valid, else 1 with every problem on stderr."""
    from rooney_core.data import csv_path
    from rooney_core.data.raw import read_raw_bars

    cfg = _cfg(ctx)
    syms = _split(symbols) or sorted(p.name[: -len("_bt.csv")] for p in data_dir.glob("*_bt.csv"))
    if not syms:
        raise RooneyError(f"{data_dir}: no <SYMBOL>_bt.csv files found")
    bad = 0
    for sym in syms:
        inst = cfg.instrument(sym)
        path = csv_path(data_dir, sym)
        try:  # a missing, unreadable or non-regular file is one DataValidationError: go on
            raw = read_raw_bars(path, inst.calendar, **cfg.pipeline.data.gate())
        except DataValidationError as err:
            bad += 1
            for p in err.problems:
                click.echo(str(p), err=True)
            continue
        repairs = ", ".join(f"{k}={v}" for k, v in raw.repairs.items()) or "none"
        click.echo(f"{sym}: ok, {len(raw)} bars of {raw.interval_minutes} min, "
                   f"{raw.first_timestamp} .. {raw.last_timestamp}, repairs: {repairs}")
    if bad:
        click.echo(f"{bad} of {len(syms)} file(s) failed validation", err=True)
        sys.exit(1)


@cli.command("import-databento")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write <SYMBOL>_bt.csv files into.")
@click.option("--definitions", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Databento definition file(s) mapping instrument ids to contracts (repeatable).")
@click.option("--symbols", default=None, help="Comma-separated roots to import (default: every root in the files).")
@click.option("--force", is_flag=True, help="Overwrite existing <SYMBOL>_bt.csv files (no merging).")
@click.pass_context
def import_databento(ctx, paths, out_dir: Path, definitions, symbols: str | None, force: bool) -> None:
    """Convert Databento OHLCV-1m files (DBN, .dbn.zst) to raw <SYMBOL>_bt.csv files.

    One contract per root and session: the one with the most volume in that session (see
    rooney_core/data/databento.py). Each file is checked by the data gate before it is written.
    """
    from rooney_core.data.databento import read_databento, write_raw_csvs

    cfg = _cfg(ctx)
    syms = _split(symbols)
    for s in syms or []:
        cfg.instrument(s)  # unknown symbol -> ConfigError before any work
    t0 = time.perf_counter()
    bars = read_databento(list(paths), cfg, definitions=list(definitions) or None, symbols=syms)
    for reason, n in sorted(bars.skipped.items()):
        _say(f"skipped {n} bar(s): {reason}")
    for path, raw in write_raw_csvs(bars, out_dir, cfg, force=force):
        root = path.name[: -len("_bt.csv")]
        used = bars.sessions[bars.sessions["root"] == root]
        rolled = used[used["passed_over"] != ""]
        _say(f"{root}: {len(bars.frames[root])} bars, {raw.first_timestamp} .. {raw.last_timestamp}, "
             f"contracts {', '.join(dict.fromkeys(used['raw_symbol']))} over {len(used)} session(s)"
             + (f" ({len(rolled)} with other contracts passed over)" if len(rolled) else "")
             + f"; data gate: ok, repairs: {', '.join(f'{k}={v}' for k, v in raw.repairs.items()) or 'none'}")
        click.echo(str(path))
    _say(f"done in {time.perf_counter() - t0:.1f} s")


@cli.command("bars")
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--symbol", required=True)
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def bars(ctx, data_dir: Path, symbol: str, out_dir: Path) -> None:
    """Write <SYMBOL>_hourly.parquet and <SYMBOL>_daily.parquet (index `timestamp`)."""
    from rooney_core.data import load_session_bars
    from rooney_core.data.lake import write_parquet_atomic

    cfg = _cfg(ctx)
    _say(f"{symbol}: reading and validating {data_dir}")
    sb = load_session_bars(data_dir, cfg.instrument(symbol), **cfg.pipeline.data.gate())
    hp = write_parquet_atomic(sb.hourly, out_dir / f"{symbol}_hourly.parquet")
    dp = write_parquet_atomic(sb.daily, out_dir / f"{symbol}_daily.parquet")
    _say(f"{symbol}: {len(sb.hourly)} hourly and {len(sb.daily)} daily bars; repairs: {sb.raw.repairs or 'none'}")
    click.echo(str(hp))
    click.echo(str(dp))


@cli.command("features")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--symbol")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_only", is_flag=True, help="List the registered features and exit.")
@click.pass_context
def features(ctx, data_dir: Path | None, symbol: str | None, out: Path | None, list_only: bool) -> None:
    """Write one row per hourly bar and one column per selected feature (index `timestamp`).

    The pair's file is read from the same directory when present; otherwise pair features
    are missing (NaN) and a warning says so.
    """
    from rooney_core.data.lake import write_parquet_atomic
    from rooney_core.features import REGISTRY

    if list_only:
        click.echo(REGISTRY.describe().to_string(index=False))
        return
    if not (data_dir and symbol and out):
        raise click.UsageError("--data-dir, --symbol and --out are required (or use --list)")
    cfg = _cfg(ctx)
    t0 = time.perf_counter()
    _, frame = _bars_and_features(cfg, data_dir, symbol)
    _say(f"{symbol}: done in {time.perf_counter() - t0:.2f} s")
    click.echo(str(write_parquet_atomic(frame, out)))


def _bars_and_features(cfg, data_dir: Path, symbol: str):
    """Hourly bars of ``symbol`` and its registry features (pair read from the same dir)."""
    from rooney_core.data import csv_path, load_session_bars
    from rooney_core.features import REGISTRY, instrument_inputs, selected_features

    inst = cfg.instrument(symbol)
    _say(f"{symbol}: building bars from {data_dir}")
    own = load_session_bars(data_dir, inst, **cfg.pipeline.data.gate())
    pair_hourly = None
    if inst.pair and csv_path(data_dir, inst.pair).is_file():
        pair_hourly = load_session_bars(data_dir, cfg.instrument(inst.pair), **cfg.pipeline.data.gate()).hourly
    elif inst.pair:
        _say(f"warning: {csv_path(data_dir, inst.pair)} not found: pair features will be missing (NaN)")
    names = selected_features(cfg)
    feats = REGISTRY.compute(instrument_inputs(cfg, symbol, own.hourly, pair_hourly), names)
    _say(f"{symbol}: {len(own.hourly)} hourly bars, {len(names)} features")
    return own.hourly, feats




@cli.command("backtest")
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--symbol", required=True)
@click.option("--start", default=None, callback=_date,
              help="First date YYYY-MM-DD (default: pipeline.yml backtest.start).")
@click.option("--end", default=None, callback=_date, help="Last date YYYY-MM-DD (default: end of data).")
@click.option("--model", "model_ref", default=None,
              help="Veto model: a stored version such as ES_v2 (resolved only inside the model store, "
                   "sha256 verified).")
@click.option("--model-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Research only: a bundle.skops file outside the store. Unverified; needs --trust-file.")
@click.option("--trust-file", is_flag=True, help="Accept --model-file although nothing vouches for it.")
@click.option("--in-sample", is_flag=True,
              help="Allow a --start before the model's holdout start (the result is labelled in-sample).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def backtest(ctx, data_dir: Path, symbol: str, start, end, model_ref, model_file, trust_file, in_sample: bool,
             out_dir: Path) -> None:
    """Run the production IbsStrategy: trades.csv, metrics.json and equity.png in --out. With a
    model, the period starts at its holdout start unless --start (and --in-sample) say otherwise."""
    import json

    cfg = _cfg(ctx)
    cfg.instrument(symbol)  # every argument is checked before the heavy imports and any work
    model, model_name = _backtest_model(cfg, symbol, model_ref, model_file, trust_file)

    from rooney_core.backtest.runner import TRADE_CSV_COLUMNS, model_period, run_backtest
    from rooney_core.io import write_bytes_atomic, write_text_atomic
    from rooney_core.reports import equity_curve

    start, sample = model_period(model, start, cfg.pipeline.backtest.start, in_sample)  # before any work
    hourly, feats = _bars_and_features(cfg, data_dir, symbol)
    capital = cfg.pipeline.backtest.initial_capital
    t0 = time.perf_counter()
    result = run_backtest(hourly, feats, cfg.instrument(symbol), cfg.strategy, capital=capital, model=model,
                          start=start, end=end, model_name=model_name)
    _say(f"{symbol}: {len(result.trades)} trades over {result.bars} bars in {time.perf_counter() - t0:.1f} s "
         f"({result.model_used}; {sample})")
    out_dir.mkdir(parents=True, exist_ok=True)
    trades = result.trades[TRADE_CSV_COLUMNS]
    write_text_atomic(trades.to_csv(index=False), out_dir / "trades.csv")
    metrics = {"symbol": symbol, "start": start, "end": end, "model": result.model_used, "sample": sample,
               **{k: (None if isinstance(v, float) and v != v else v) for k, v in result.metrics.items()}}
    write_text_atomic(json.dumps(metrics, indent=2), out_dir / "metrics.json")
    write_bytes_atomic(equity_curve(f"{symbol} {start} .. {end or 'end'}", result.equity, capital),
                       out_dir / "equity.png")
    for k in ("trades", "net_pnl", "sharpe", "sortino", "max_drawdown_usd", "win_rate", "profit_factor"):
        click.echo(f"{k:>18}: {metric(k, result.metrics[k])}")
    click.echo(str(out_dir / "trades.csv"))


def _backtest_model(cfg, symbol: str, model_ref: str | None, model_file: Path | None, trust_file: bool):
    """(bundle, name for the record) of the model a backtest uses, checked before any work."""
    from rooney_core.model import load_bundle_file

    if model_ref and model_file:
        raise click.UsageError("give --model (a stored version) or --model-file, not both")
    if trust_file and not model_file:
        raise click.UsageError("--trust-file only applies to --model-file")
    if model_file:
        bundle, sha256 = load_bundle_file(model_file, trust_file)
        _say(f"WARNING: {model_file} is not a stored version: nothing verifies where it came from "
             "(research only; the pipeline and the live engine never load such files)")
        name = f"file {model_file} (unverified, sha256 {sha256})"
    elif model_ref:
        store = _store(cfg)
        bundle = store.load(model_ref)
        name = f"{model_ref} (sha256 {store.verify(model_ref)})"
    else:
        return None, None
    if bundle.symbol != symbol:
        raise RooneyError(f"the model is {bundle.symbol}'s ({name}); it cannot veto {symbol}'s trades")
    return bundle, name


@cli.command("candidates")
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--symbol", required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def candidates(ctx, data_dir: Path, symbol: str, out: Path) -> None:
    """Write the training set: every base trade (veto off) with its features and label."""
    from rooney_core.data.lake import write_parquet_atomic
    from rooney_core.training.candidates import extract_candidates

    cfg = _cfg(ctx)
    hourly, feats = _bars_and_features(cfg, data_dir, symbol)
    t0 = time.perf_counter()
    cands = extract_candidates(hourly, feats, cfg.instrument(symbol), cfg.strategy)
    _say(f"{symbol}: {len(cands)} candidate trades (win rate {cands['win'].mean():.1%}) "
         f"in {time.perf_counter() - t0:.1f} s")
    click.echo(str(write_parquet_atomic(cands, out)))


def _store(cfg):
    from rooney_core.model import ModelStore

    return ModelStore(cfg.model_store_dir)


@cli.command("train")
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--symbol", required=True)
@click.option("--trials", type=int, default=None, help="Optuna trials (default: configs/training).")
@click.option("--profile", default=None, help="Extra training config layer, e.g. 'demo' (configs/training/demo.yml).")
@click.option("--promote", is_flag=True,
              help="If its gates pass: the paper stage (validation.yml paper.sessions), or production without one.")
@click.pass_context
def train(ctx, data_dir: Path, symbol: str, trials: int | None, profile: str | None, promote: bool) -> None:
    """Tune and train a veto model; add it to the model store and print its version name."""
    import getpass

    from rooney_core.model.gates import ModelData
    from rooney_core.model.promotion import stage_or_promote
    from rooney_core.training.candidates import extract_candidates
    from rooney_core.training.config import load_training_config
    from rooney_core.training.store_version import train_and_store
    from rooney_core.training.train import Market

    cfg = _cfg(ctx)
    tcfg = load_training_config(cfg.config_dir, symbol, profile)  # validated before any work
    if trials:
        tcfg = tcfg.model_copy(update={"trials": trials})
    hourly, feats = _bars_and_features(cfg, data_dir, symbol)
    cands = extract_candidates(hourly, feats, cfg.instrument(symbol), cfg.strategy)
    _say(f"{symbol}: {len(cands)} candidate trades")
    store = _store(cfg)
    data = ModelData(Market(hourly, feats, cfg.instrument(symbol), cfg.strategy), data_dir=data_dir)
    stored = train_and_store(cands, symbol, tcfg, data, store, cfg, progress=_say)
    name, failed = stored.name, stored.failed_gates
    _say(f"{name}: report {store.version_dir(name) / 'report.html'}; gates "
         + ("passed" if not failed else f"FAILED: {', '.join(failed)}"))
    if promote and not failed:
        sessions = cfg.validation.for_symbol(symbol).paper.sessions
        stage_or_promote(store, name, by=f"{getpass.getuser()} (rooney train)", reason="trained and gates passed",
                         paper_sessions=sessions)
        _say(f"{name} in the paper stage for {sessions} sessions (then production: rooney models paper {symbol})"
             if sessions else f"{name} promoted to production")
    elif promote:
        _say(f"{name} not promoted: gates failed")
    click.echo(name)


@cli.group("models")
def models() -> None:
    """Inspect and manage the versioned model store."""


@models.command("list")
@click.option("--symbol", default=None)
@click.pass_context
def models_list(ctx, symbol: str | None) -> None:
    """Stored versions with their holdout figures; * marks production."""
    store = _store(_cfg(ctx))
    rows = store.list_versions(symbol)
    if not rows:
        click.echo("no stored versions")
        return
    try:
        production = store.production_versions()
        damaged = sorted(s for s, v in production.items() if v is None)
        if damaged:
            click.echo(f"warning: the manifest entry of {', '.join(damaged)} is damaged; "
                       "promote a version by hand to replace it", err=True)
    except RooneyError as err:  # a damaged manifest must not hide the versions
        click.echo(f"warning: {err}", err=True)
        production = {}
    from rooney_core.model.staging import watched

    cfg = _cfg(ctx)
    for sym in sorted({m["symbol"] for m in rows}):
        try:
            paper, entry = store.paper_entry(sym), store.production_entry(sym)
        except RooneyError:
            continue
        if paper:
            click.echo(f"{sym}: {paper['version']} in the paper stage since {paper['since']} "
                       f"({paper.get('status')}; {(paper.get('result') or {}).get('summary', 'no result yet')})")
        if watched(entry, cfg.validation.for_symbol(sym).paper.watch_days):
            click.echo(f"{sym}: {entry['version']} WATCHED (in production since {entry['promoted_at']})")
    click.echo(f"{'version':<10} {'prod':<5} {'trained (UTC)':<20} {'trades':>6} {'Sharpe sel':>10} "
               f"{'Sharpe all':>10} {'AUC':>6} {'DSR':>6}  gates")
    for m in rows:
        prod = "*" if production.get(m["symbol"]) == m["version"] else ""
        if "metrics" not in m:
            click.echo(f"{m['version']:<10} {prod:<5} DAMAGED: {m['damaged']}")
            continue
        met = m["metrics"]
        g = _gates_word(store, m["version"])
        sel = met.get("selected", {})

        def f(x):
            return f"{x:.2f}" if isinstance(x, int | float) else "-"

        click.echo(f"{m['version']:<10} {prod:<5} {str(m.get('trained_at', ''))[:19]:<20} {sel.get('trades', '-'):>6} "
                   f"{f(sel.get('sharpe')):>10} {f(met.get('all', {}).get('sharpe')):>10} {f(met.get('auc')):>6} "
                   f"{f(met.get('deflated_sharpe')):>6}  {g}"
                   + (f"  DAMAGED: {m['damaged']}" if "damaged" in m else ""))


def _gates_word(store, name: str) -> str:
    from rooney_core.model.promotion import gate_status

    try:
        passed, failed = gate_status(store, name)
    except RooneyError:
        return "REFUSED (edited gate report)"
    if store.gate_report(name) is None:
        return "not validated"
    return "passed" if passed else "FAILED " + ",".join(failed)


@models.command("show")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Print the whole metadata as JSON.")
@click.pass_context
def models_show(ctx, version: str, as_json: bool) -> None:
    """Metadata and metrics of one stored version (e.g. ES_v2)."""
    import json

    store = _store(_cfg(ctx))
    meta = store.load_metadata(version)
    try:
        report, report_problem = store.gate_report(version), None
    except RooneyError as err:
        report, report_problem = None, str(err)
    if as_json:
        click.echo(json.dumps({**meta, "gate_report": report, "gate_report_problem": report_problem},
                              indent=2, default=str))
        return
    met = meta.get("metrics", {})
    click.echo(f"{version}: {meta['symbol']} veto model, trained {meta.get('trained_at')}, "
               f"code {meta.get('code_version')}")
    try:
        integrity = f"verified, sha256 {store.verify(version)}"
    except RooneyError as err:
        integrity = f"REFUSED: {err}"
    click.echo(f"  production: {store.production(meta['symbol']) == version}; {integrity}")
    click.echo(f"  features ({len(meta['feature_names'])}): {', '.join(meta['feature_names'])}")
    click.echo(f"  threshold {meta['threshold']:.2f}; params {meta.get('config', {}).get('best_params')}")
    for side in ("selected", "all"):
        s = met.get(side, {})
        click.echo(f"  holdout {side:>8}: trades {metric('trades', s.get('trades'))}, net "
                   f"{metric('net_pnl', s.get('net_pnl'))}, Sharpe {metric('sharpe', s.get('sharpe'))}, "
                   f"Sortino {metric('sortino', s.get('sortino'))}, max DD "
                   f"{metric('max_drawdown_usd', s.get('max_drawdown_usd'))}")
    for k in ("holdout_start", "psr_vs_zero", "psr_vs_unfiltered", "cv_sharpe", "deflated_sharpe", "trials_total",
              "auc", "brier", "precision"):
        click.echo(f"  {k}: {metric(k, met.get(k))}")
    if report_problem:
        click.echo(f"  gates: REFUSED: {report_problem}")
    elif report is None:
        click.echo(f"  gates: not validated (rooney models validate {version} --data-dir DIR)")
    else:
        click.echo(f"  gates ({report.get('created_at')}): {'every gate passed' if report['passed'] else 'FAILED'}")
        for g in report["gates"]:
            click.echo(f"    {g['name']:<24} {'passed' if g['passed'] else 'FAILED':<7} {g['detail']}")


@models.command("promote")
@click.argument("version")
@click.option("--reason", default=None, help="Why (recorded in the audit log); required with --force.")
@click.option("--force", is_flag=True, help="Promote even though gates failed (needs --reason).")
@click.pass_context
def models_promote(ctx, version: str, reason: str | None, force: bool) -> None:
    """Put a stored version into production if every gate passed (recorded in the audit log)."""
    import getpass

    from rooney_core.model.promotion import promote_version

    cfg = _cfg(ctx)
    store = _store(cfg)
    sessions = cfg.validation.for_symbol(version.rsplit("_v", 1)[0]).paper.sessions if "_v" in version else 0
    entry = promote_version(store, version, by=getpass.getuser(), reason=reason or ("" if force else
                            "manual promotion"), force=force, paper_sessions=sessions)
    skipped = [f"failed gates {', '.join(entry['failed_gates'])}"] if entry.get("failed_gates") else []
    skipped += [f"the paper stage ({entry['skipped_paper']})"] if entry.get("skipped_paper") else []
    forced = f"; FORCED past {'; '.join(skipped)}" if entry.get("forced") else ""
    click.echo(f"{version} in production (previous: {entry.get('previous')}){forced}; checklist {entry['checklist']}")


@models.command("paper")
@click.argument("symbol")
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--replay-history", is_flag=True,
              help="With no session after staging in the data (history), judge the last N sessions instead.")
@click.pass_context
def models_paper(ctx, symbol: str, data_dir: Path, replay_history: bool) -> None:
    """Judge SYMBOL's version in the paper stage (paper vs backtest of the same sessions);
    promote it when within the bounds of validation.yml (what the paper_stage sensor does)."""
    import getpass

    from rooney_core.model.promotion import graduate
    from rooney_core.model.staging import evaluate_paper

    cfg = _cfg(ctx)
    store = _store(cfg)
    result = evaluate_paper(cfg, store, symbol, data_dir, replay_history=replay_history)
    entry = graduate(store, result, by=f"{getpass.getuser()} (rooney models paper)")
    click.echo(result.summary)
    if entry:
        click.echo(f"{result.version} in production; checklist {entry['checklist']}")
    elif result.passed is False:
        ctx.exit(1)


@models.command("validate")
@click.argument("version")
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The instrument's raw minute files (and its pair's).")
@click.option("--parity-months", type=int, default=None, help="Override pipeline.yml parity.months.")
@click.pass_context
def models_validate(ctx, version: str, data_dir: Path, parity_months: int | None) -> None:
    """Run the six gates on a stored version and store its gate report (exit 1 if any fails)."""
    from rooney_core.model.gates import ModelData, report_json, validate_model
    from rooney_core.training.train import Market

    cfg = _cfg(ctx)
    store = _store(cfg)
    bundle = store.load(version)  # sha256 checked
    hourly, feats = _bars_and_features(cfg, data_dir, bundle.symbol)
    data = ModelData(Market(hourly, feats, cfg.instrument(bundle.symbol), cfg.strategy), data_dir=data_dir,
                     store=store, parity_months=parity_months)
    report = validate_model(bundle, data, cfg, progress=_say)
    report.version = version
    store.write_gate_report(version, report_json(report), report.passed)
    click.echo(report.table().to_string())
    click.echo(report.summary())
    if not report.passed:
        ctx.exit(1)


@models.command("rollback")
@click.argument("symbol")
@click.option("--reason", default="manual rollback")
@click.pass_context
def models_rollback(ctx, symbol: str, reason: str) -> None:
    """Put the instrument's previous production version back."""
    import getpass

    entry = _store(_cfg(ctx)).rollback(symbol, by=getpass.getuser(), reason=reason)
    click.echo(f"{symbol}: {entry['version']} in production")


@cli.command("dashboard")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The live engine's --state-dir (default $ROONEY_LIVE_STATE_DIR, else dagster_home/storage/live).")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default serves this machine only.")
@click.pass_context
def dashboard(ctx, state_dir: Path | None, port: int, host: str) -> None:
    """The desk's monitoring dashboard (Streamlit): per instrument, live vs backtest equity,
    rolling accuracy and calibration, feature drift, veto value, the kill switch and model
    versions, recent alerts ($ROONEY_ALERTS_DIR, default dagster_home/storage/alerts)."""
    import os

    # the Streamlit script is the shell's (rooney_pipeline, shipped in the same wheel): run by path, never imported
    app = Path(__file__).resolve().parents[1] / "dashboard_app.py"  # rooney_pipeline/dashboard_app.py
    if not app.is_file():
        raise RooneyError(f"{app}: the dashboard's Streamlit script is missing; reinstall rooney-pipeline")
    try:
        from streamlit.web.cli import main as streamlit_main
    except ImportError as exc:
        raise RooneyError(f"the dashboard needs Streamlit ({exc}); install the project's dependencies") from None
    _say(f"starting the dashboard on http://{host}:{port}/ (loading the monitoring library first)")
    # loaded before the server starts, so that the first page does not wait for them
    import skops.io  # noqa: F401 - what loading a bundle for the backtest needs (seconds to import)

    from rooney_core.monitoring.dashboard import DashboardPaths

    cfg = _cfg(ctx)
    paths = DashboardPaths.resolve(cfg, state_dir)
    os.environ.update({**paths.as_env(), "ROONEY_CONFIG_DIR": str(cfg.config_dir)})  # what the app reads
    _say(f"dashboard reads: live engine {paths.state_dir}, models {paths.model_store}, lake {paths.lake_dir}, "
         f"alerts {paths.alerts_dir}")
    # Streamlit's own command line, in this process (one pid to stop, the modules already loaded)
    streamlit_main(["run", str(app), "--server.address", host, "--server.port", str(port),
                    "--server.headless", "true", "--browser.gatherUsageStats", "false",
                    "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"], prog_name="streamlit")


def _add_live_commands() -> None:
    from rooney_pipeline.cli.live import live, parity
    from rooney_pipeline.cli.monitor import health, monitor
    from rooney_pipeline.cli.portfolio import portfolio

    cli.add_command(health)
    cli.add_command(monitor)
    cli.add_command(live)
    cli.add_command(parity)
    cli.add_command(portfolio)


_add_live_commands()


@cli.command("demo")
@click.option("--symbols", default=None, help="Comma-separated subset of the pipeline's instruments.")
@click.option("--regenerate", is_flag=True, help="Regenerate the sample data even if present.")
def demo(symbols: str | None, regenerate: bool) -> None:
    """Run the demo pipeline on generated sample data (or $ROONEY_DATA_DIR) in Dagster."""
    from rooney_pipeline.demo import run_demo

    syms = [s.strip() for s in symbols.split(",")] if symbols else None
    ok = run_demo(syms, regenerate=regenerate, say=_say)
    sys.exit(0 if ok else 1)


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
