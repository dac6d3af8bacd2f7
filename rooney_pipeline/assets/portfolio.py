"""The portfolio: rules chosen across every instrument on the training period, versioned in
the model store and promoted when it passes (``portfolio_config``), and the production
portfolio run out of sample with its report and the live engine's parity replay
(``portfolio_backtest``)."""

import dagster as dg
import pandas as pd

from rooney_core.formats import money, ratio
from rooney_core.portfolio import deploy
from rooney_core.portfolio.config import load_search
from rooney_core.portfolio.optimise import headline
from rooney_core.portfolio.workflow import backtest_version, market_from_lake, optimise_and_store
from rooney_pipeline.metadata import line_chart, plain, png, table
from rooney_pipeline.resources import LakeResource, ModelStoreResource, RooneyResource


class PortfolioOptimiseConfig(dg.Config):
    trials: int | None = None
    """Override configs/training/portfolio.yml trials (the demo uses fewer)."""
    n_jobs: int | None = None
    """Override the trial processes."""
    promote: bool = True
    """Promote the new version when it passes (no flags, feasible, out-of-sample Sharpe > 0,
    drawdown within the limit) and export it to configs/portfolio_config.yml."""


def _figures_md(run) -> dict:
    return {f"{k}_plot": png(v, title=k) for k, v in run.figures.items()}


def _equity_chart(run) -> dg.MetadataValue:
    """The portfolio's holdout equity, small enough for the UI to show in place."""
    net = run.summary.get("net_pnl", float("nan"))
    return line_chart("portfolio equity (holdout)", {"portfolio equity": run.result.equity.to_numpy()},
                      note=f"net {money(net)}, Sharpe {ratio(run.summary.get('sharpe'))}", zero=False)


@dg.asset(
    group_name="portfolio",
    deps=["promoted_manifest", "paper_stage", "features", "candidate_trades", "hourly_bars"],
    kinds={"optuna", "json"},
    description="Portfolio rules (sizes, max positions, correlation filter, daily loss and drawdown stops, "
    "allocation per asset group) chosen by Optuna on the training period across every instrument's "
    "production model; stored as an immutable portfolio_v(N) in the model store with its out-of-sample "
    "report, and promoted (exported to configs/portfolio_config.yml) when it passes.",
    check_specs=[dg.AssetCheckSpec("portfolio_passes", asset="portfolio_config", blocking=False,
                                   description="The new version is feasible, optimised on the production models, "
                                   "and out of sample has a positive Sharpe and a drawdown within its limit.")],
)
def portfolio_config(context: dg.AssetExecutionContext, config: PortfolioOptimiseConfig,
                     rooney: RooneyResource, lake: LakeResource, model_store: ModelStoreResource):
    cfg = rooney.cfg
    overrides = {k: v for k, v in (("trials", config.trials), ("n_jobs", config.n_jobs)) if v is not None}
    search = load_search(cfg.config_dir, overrides)
    store = model_store.get()
    market = market_from_lake(cfg, lake.get(), store)
    context.log.info("models: " + ", ".join(f"{s} {v or 'none'}" for s, v in market.versions.items()))
    stored = optimise_and_store(market, store, search, progress=context.log.info)
    name, opt, run = stored.name, stored.optimisation, stored.run
    ok, problems = deploy.promote_if_passes(store, name, by=f"dagster run {context.run.run_id[:8]}",
                                            config_dir=cfg.config_dir, enabled=config.promote)
    promoted = name if ok else None
    context.log.info(f"{name}: " + ("promoted" if promoted else "not promoted: " + ("; ".join(problems) or
                                                                                   "promote is off")))
    trials = pd.DataFrame([{"trial": t.number + 1, "value": t.value, **{k: t.user_attrs.get(k) for k in
                                                                        ("sharpe", "drawdown_pct", "trades")}}
                           for t in opt.study.trials]).set_index("trial")
    yield dg.MaterializeResult(metadata={
        "version": name,
        "production": store.production_portfolio() or "none",
        "promoted": promoted or "no: " + ("; ".join(problems) or "promote is off"),
        "equity": _equity_chart(run),
        "report_url": dg.MetadataValue.url(rooney.report_url(name)),
        "rules": dg.MetadataValue.json(run.config.rules.model_dump(mode="json", exclude_defaults=True)),
        "models": dg.MetadataValue.json(plain(run.config.models)),
        "train_period": f"{run.config.train.start} .. {run.config.train.end}",
        "holdout_period": f"{run.config.holdout.start} .. {run.config.holdout.end}",
        "objective_sharpe_train": opt.config.objective["value"],
        "holdout": dg.MetadataValue.json(plain(headline(run.summary))),
        "trials": table(trials, max_rows=60),
        "report": dg.MetadataValue.path(str(store.portfolio_dir(name) / "report.html")),
        **_figures_md(run),
    })
    yield dg.AssetCheckResult(check_name="portfolio_passes", passed=not problems,
                              description="passes" if not problems else "; ".join(problems),
                              metadata={"version": name})


class PortfolioBacktestConfig(dg.Config):
    parity_months: int | None = None
    """Months replayed through the live engine with the config (default pipeline.yml parity.months)."""


@dg.asset(
    group_name="portfolio",
    deps=["portfolio_config"],
    kinds={"python", "html"},
    description="The production portfolio over its holdout with the models it names: Sharpe, Sortino, max "
    "drawdown, Calmar, correlations, risk contributions, equity against equal weight and each instrument "
    "alone, skipped entries with their counterfactual P&L; a self-contained HTML report; and the last months "
    "replayed through the live engine with the same config (the portfolio case of the parity gate).",
    check_specs=[dg.AssetCheckSpec("portfolio_live_parity", asset="portfolio_backtest", blocking=True,
                                   description="The live engine with the production portfolio config makes "
                                   "exactly the portfolio backtest's trades, sizes and refusals.")],
)
def portfolio_backtest(context: dg.AssetExecutionContext, config: PortfolioBacktestConfig,
                       rooney: RooneyResource, lake: LakeResource, model_store: ModelStoreResource):
    from rooney_core.io import write_text_atomic
    from rooney_core.live.parity import portfolio_parity_check

    cfg = rooney.cfg
    store = model_store.get()
    pconf = deploy.production(store)
    if pconf is None:
        names = store.portfolio_versions()
        if not names:
            raise dg.Failure("no portfolio version stored: materialise portfolio_config first")
        pconf = deploy.load(store, names[-1])
        context.log.warning(f"no portfolio in production: reporting the newest version {pconf.version}")
    market = market_from_lake(cfg, lake.get(), store, pconf.symbols, versions=dict(pconf.models))
    run = backtest_version(cfg, market, pconf)
    out = cfg.reports_dir / f"{pconf.version}_backtest.html"
    write_text_atomic(run.html, out)
    months = config.parity_months or cfg.pipeline.parity.months
    end = max(h.index[-1] for h in market.hourly.values())
    start = str((end - pd.DateOffset(months=months)).date())
    report = portfolio_parity_check(cfg, rooney.data_path, store, pconf, start=start)
    context.log.info(report.summary())
    skipped = run.summary["skipped"]
    yield dg.MaterializeResult(metadata={
        "version": pconf.version,
        "flags": "; ".join(deploy.flags(store, pconf)) or "none",
        "equity": _equity_chart(run),
        "report_url": dg.MetadataValue.url(rooney.report_url(pconf.version)),
        "period": f"{pconf.holdout.start} .. {pconf.holdout.end}" if pconf.holdout else "?",
        **{k: v for k, v in plain(headline(run.summary)).items()},
        "correlation": table(run.summary["correlation"]) if "correlation" in run.summary else "no trades",
        "risk_contribution": table(run.summary["risk_contribution"].to_frame("share of variance"))
        if "risk_contribution" in run.summary else "no trades",
        "skipped_by_rule": table(skipped) if len(skipped) else "none",
        "live_parity": report.summary(),
        "report": dg.MetadataValue.path(str(out)),
        **_figures_md(run),
    })
    yield dg.AssetCheckResult(check_name="portfolio_live_parity", passed=report.ok, description=report.summary(),
                              metadata={"since": start, "trades": report.trades,
                                        "tracking_error_usd": report.tracking_error_usd})
