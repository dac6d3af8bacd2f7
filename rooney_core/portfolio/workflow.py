"""The portfolio steps the CLI and the Dagster assets run: gather the market (bars, features,
labelled signals, each instrument's model), optimise and store a version with its report,
and backtest a stored version out of sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rooney_core.config import RooneyConfig
from rooney_core.errors import RooneyError
from rooney_core.model.store import ModelStore, ModelStoreError
from rooney_core.portfolio import deploy
from rooney_core.portfolio.config import PortfolioConfig, PortfolioSearch
from rooney_core.portfolio.engine import PortfolioResult, portfolio_summary, run_portfolio
from rooney_core.portfolio.optimise import Optimisation, PortfolioMarket, headline, optimise


def chosen_models(store: ModelStore, symbols: list[str], versions: dict[str, str | None] | None = None
                  ) -> tuple[dict, dict, dict]:
    """(bundles, version names, sha256) per instrument: ``versions`` when given, else the
    production version, else the newest version whose gates passed, else no model."""
    from rooney_core.model.promotion import _passes

    models, names, shas = {}, {}, {}
    for s in symbols:
        name = (versions or {}).get(s) if versions is not None else store.production(s)
        if name is None and versions is None:
            passing = [v["version"] for v in store.list_versions(s) if "damaged" not in v and _passes(store, v["version"])]
            name = passing[-1] if passing else None
        names[s] = name
        models[s] = store.load(name) if name else None
        shas[s] = store.verify(name) if name else None
    return models, names, shas


def market_from_lake(cfg: RooneyConfig, lake, store: ModelStore, symbols: list[str] | None = None,
                     versions: dict[str, str | None] | None = None) -> PortfolioMarket:
    """The pipeline's bars, features and labelled signals (the lake) and the models."""
    from rooney_core.training.config import load_training_config

    symbols = sorted(symbols or cfg.symbols)
    missing = [f"{s} {d}" for s in symbols for d in ("hourly", "features", "candidates") if not lake.exists(d, s)]
    if missing:
        raise RooneyError(f"portfolio: the lake has no {', '.join(missing)}; run the pipeline (rooney demo, or "
                          "the bars, features and candidates jobs) first, or give --data-dir")
    models, names, shas = chosen_models(store, symbols, versions)
    return PortfolioMarket(
        hourly={s: lake.read("hourly", s) for s in symbols}, features={s: lake.read("features", s) for s in symbols},
        instruments={s: cfg.instrument(s) for s in symbols}, rules_cfg=cfg.strategy, models=models, versions=names,
        sha256=shas, labels={s: lake.read("candidates", s) for s in symbols},
        holdout_years=load_training_config(cfg.config_dir, symbols[0]).holdout_years)


def market_from_dir(cfg: RooneyConfig, data_dir: str | Path, store: ModelStore, symbols: list[str],
                    versions: dict[str, str | None] | None = None) -> PortfolioMarket:
    """The same from raw ``<SYMBOL>_bt.csv`` files (bars, features and labels computed here)."""
    from rooney_core.data import load_session_bars
    from rooney_core.features import REGISTRY, instrument_inputs, selected_features
    from rooney_core.training.candidates import extract_candidates
    from rooney_core.training.config import load_training_config

    symbols = sorted(symbols)
    need = sorted({*symbols, *(cfg.instrument(s).pair for s in symbols if cfg.instrument(s).pair)})
    hourly_all = {s: load_session_bars(data_dir, cfg.instrument(s), **cfg.pipeline.data.gate()).hourly for s in need}
    feats = {s: REGISTRY.compute(instrument_inputs(cfg, s, hourly_all[s], hourly_all.get(cfg.instrument(s).pair)),
                                 selected_features(cfg)) for s in symbols}
    models, names, shas = chosen_models(store, symbols, versions)
    labels = {s: extract_candidates(hourly_all[s], feats[s], cfg.instrument(s), cfg.strategy) for s in symbols}
    return PortfolioMarket(
        hourly={s: hourly_all[s] for s in symbols}, features=feats, instruments={s: cfg.instrument(s) for s in symbols},
        rules_cfg=cfg.strategy, models=models, versions=names, sha256=shas, labels=labels,
        holdout_years=load_training_config(cfg.config_dir, symbols[0]).holdout_years)


@dataclass
class PortfolioRun:
    """A portfolio config run over its holdout, with what the report shows."""

    config: PortfolioConfig
    result: PortfolioResult
    summary: dict
    benchmarks: dict
    figures: dict[str, bytes]
    html: str


def report_run(market: PortfolioMarket, config: PortfolioConfig, result: PortfolioResult | None = None,
               title: str | None = None) -> PortfolioRun:
    """Run ``config``'s rules over its holdout (unless ``result`` is given) with the benchmarks
    (equal weight, each instrument alone) and build the figures and the HTML report."""
    from rooney_core.portfolio import report

    start = config.holdout.start if config.holdout else None
    rules = config.rules.rules()
    if result is None:
        result = run_portfolio(market.hourly, market.features, market.instruments, market.rules_cfg, rules,
                               models=market.models, capital=config.capital, start=start,
                               labels=market.labels or None)
    calendar = market.instruments[market.symbols[0]].calendar
    summary = portfolio_summary(result, calendar, config.capital)
    bench = report.benchmarks(market.hourly, market.features, market.instruments, market.rules_cfg, rules,
                              models=market.models, capital=config.capital, start=start, labels=market.labels or None)
    figs = report.figures(summary, result, bench)
    html = report.portfolio_report_html(summary, result, bench, config.model_dump(mode="json"),
                                        title or f"{config.version or 'portfolio (not stored)'}: out of sample")
    return PortfolioRun(config, result, summary, bench, figs, html)


@dataclass
class StoredPortfolio:
    name: str
    optimisation: Optimisation
    run: PortfolioRun


def optimise_and_store(market: PortfolioMarket, store: ModelStore, search: PortfolioSearch,
                       progress: Callable[[str], None] | None = None) -> StoredPortfolio:
    """Optimise on the training period, report the holdout, store ``portfolio_v<N>`` with its
    report (report.html and the plots) in the model store."""
    opt = optimise(market, search, progress=progress)
    run = report_run(market, opt.config, result=opt.holdout, title="portfolio (being stored): out of sample")
    files = {"report.html": run.html.encode(), **{f"{k}.png": v for k, v in run.figures.items()}}
    name = deploy.save(store, opt.config, files)
    # the stored report carries its version name: rewrite the title only (the figures are the same)
    config = deploy.load(store, name)
    return StoredPortfolio(name, opt, PortfolioRun(config, run.result, run.summary, run.benchmarks, run.figures,
                                                   run.html.replace("portfolio (being stored)", name)))


def backtest_version(cfg: RooneyConfig, market: PortfolioMarket, config: PortfolioConfig) -> PortfolioRun:
    """A stored portfolio version over its holdout, with the models it names."""
    if sorted(config.symbols) != market.symbols:
        raise RooneyError(f"{config.version}: its instruments {config.symbols} are not the market's {market.symbols}")
    return report_run(market, config, title=f"{config.version}: out of sample")


def describe(store: ModelStore, name: str | None = None) -> dict:
    """What `rooney portfolio show` prints: the version, its rules, models, figures and flags."""
    name = name or store.production_portfolio()
    if name is None:
        raise ModelStoreError("no portfolio in production yet (rooney portfolio optimise, then promote)")
    config = deploy.load(store, name)
    return {"version": name, "production": store.production_portfolio() == name,
            "config": config, "flags": deploy.flags(store, config),
            "report": str(store.portfolio_dir(name) / "report.html")}


__all__ = ["PortfolioRun", "StoredPortfolio", "backtest_version", "chosen_models", "describe", "headline",
           "market_from_dir", "market_from_lake", "optimise_and_store", "report_run"]
