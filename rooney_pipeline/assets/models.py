"""Per-instrument veto models (each materialisation adds an immutable version to the store)
and the promoted manifest (the newest version of each instrument whose gates passed)."""

import json
from pathlib import Path

import dagster as dg

from rooney_core.formats import money
from rooney_core.model.gates import GATES, ModelData
from rooney_core.training.config import load_training_config
from rooney_core.training.store_version import train_and_store
from rooney_core.training.train import Market
from rooney_pipeline.metadata import bar_chart, line_chart, png, table, xy_chart
from rooney_pipeline.partitions import instrument_partitions
from rooney_pipeline.resources import DiscordResource, LakeResource, ModelStoreResource, RooneyResource

TRIGGER_TAG = "rooney/trigger"  # why an automated run was requested (schedule, performance, drift, regime, ...)


class TrainConfig(dg.Config):
    profile: str | None = None
    """Extra training config layered on top (configs/training/<profile>.yml), e.g. "demo"."""
    trials: int | None = None
    """Override the number of Optuna trials."""
    parity_months: int | None = None
    """Override pipeline.yml parity.months for the live-parity gate (the demo uses fewer)."""


def _r3(x) -> float:
    return round(float(x), 3) if x is not None else float("nan")


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="models",
    deps=["candidate_trades", "features", "hourly_bars"],
    kinds={"sklearn", "optuna"},
    description="Walk-forward, Optuna-tuned Random Forest veto model; each run stores a new immutable "
    "version `<SYMBOL>_v<N>` with its report in the model store.",
    check_specs=[dg.AssetCheckSpec(g, asset="veto_model", description=d, blocking=True,
                                   partitions_def=instrument_partitions) for g, d in GATES.items()],
)
def veto_model(context: dg.AssetExecutionContext, config: TrainConfig, rooney: RooneyResource,
               lake: LakeResource, model_store: ModelStoreResource,
               discord: DiscordResource):
    cfg = rooney.cfg
    symbol = context.partition_key
    tcfg = load_training_config(cfg.config_dir, symbol, config.profile)
    if config.trials:
        tcfg = tcfg.model_copy(update={"trials": config.trials})
    data_lake = lake.get()
    cands = data_lake.read("candidates", symbol)
    store = model_store.get()
    market = Market(data_lake.read("hourly", symbol), data_lake.read("features", symbol),
                    cfg.instrument(symbol), cfg.strategy)
    data = ModelData(market, data_dir=rooney.data_path, parity_months=config.parity_months)
    stored = train_and_store(cands, symbol, tcfg, data, store, cfg, progress=context.log.info)
    name, result, plots, tables, report = stored.name, stored.result, stored.plots, stored.tables, stored.report
    bundle = stored.bundle
    if stored.duplicate:
        context.log.warning(f"{symbol}: the model is identical to {name} (same data, config and seed): "
                            "not stored again")
    else:
        context.log.info(f"{symbol}: stored {name}")
    if not report.passed and not stored.duplicate:  # the blocking checks below stop promotion; say so once
        _gates_failed(context, discord, store, symbol, name, list(report.failed))
    m = result.metrics
    vdir = store.version_dir(name)
    yield dg.MaterializeResult(
        metadata={
            "version": name,
            "stored": f"identical to {name}: not stored again" if stored.duplicate else "new version",
            "gates": "every gate passed" if report.passed else "FAILED: " + ", ".join(report.failed),
            # the key plots, small enough for the UI to show in place; the full figures further down
            "holdout_equity_chart": line_chart(
                f"{symbol} holdout: veto on vs off", {"veto on": result.curves["selected"].to_numpy(),
                                                      "veto off": result.curves["all"].to_numpy()},
                note=f"net {money(m['selected']['net_pnl'])} vs {money(m['all']['net_pnl'])}"),
            "calibration_chart": calibration_chart(result),
            "importance_chart": bar_chart("impurity importance", tables["feature_importance"]["impurity"]),
            "report_url": dg.MetadataValue.url(rooney.report_url(name)),
            "gate_report": table(report.table()),
            "holdout_start": m["holdout_start"],
            # ratios to 3 decimals (the stored metrics keep full precision)
            "holdout_sharpe_selected": _r3(m["selected"]["sharpe"]),
            "holdout_sharpe_all": _r3(m["all"]["sharpe"]),
            "holdout_net_pnl": money(m["selected"]["net_pnl"]),
            "holdout_trades": m["selected"]["trades"],
            "psr_vs_zero": _r3(m["psr_vs_zero"]),
            "psr_vs_unfiltered": _r3(m["psr_vs_unfiltered"]),
            "deflated_sharpe": _r3(m["deflated_sharpe"]),
            "edge_significant": m["edge_significant"],
            "auc": _r3(m["auc"]),
            "threshold": _r3(result.threshold),
            "holdout_performance": table(tables["holdout_performance"]),
            "scores": table(tables["scores"].astype(str)),
            "feature_importance": table(tables["feature_importance"], max_rows=40),
            "best_params": dg.MetadataValue.json(json.loads(json.dumps(result.best_params, default=str))),
            "holdout_equity": png(plots["holdout_equity"], title="holdout equity"),
            "feature_importance_plot": png(plots["feature_importance"], title="importance"),
            "optimisation": png(plots["optimisation"], title="optimisation"),
            "calibration": png(plots["calibration"], title="calibration"),
            "report": dg.MetadataValue.path(str(vdir / "report.html")),
            "content_hash": bundle.content_hash(),
        }
    )
    for g in report.gates:
        yield dg.AssetCheckResult(check_name=g.name, passed=g.passed, description=g.detail,
                                  metadata={"version": name, "partition": symbol, "value": _meta(g.value),
                                            "threshold": _meta(g.threshold)})


def calibration_chart(result) -> dg.MetadataValue:
    """The holdout's reliability curve with the chosen threshold, small enough to show in place."""
    from rooney_core.training.report import calibration_points

    mean_p, frac = calibration_points(result)
    return xy_chart("calibration on the holdout", mean_p, frac, vline=result.threshold,
                    note=f"predicted P(win) vs observed; threshold {result.threshold:.2f}")


def _gates_failed(context, discord: DiscordResource, store, symbol: str, name: str, failed: list[str]) -> None:
    from rooney_core.model.promotion import gates_failed

    rec, alert = gates_failed(store, symbol, name, failed, by=f"dagster run {context.run.run_id[:8]}",
                              trigger=context.run.tags.get(TRIGGER_TAG), run_id=context.run.run_id,
                              run_url=discord.run_url(context.run.run_id))
    context.log.warning(f"{symbol}: {name} failed gates {', '.join(failed)}; production stays "
                        f"{rec['production'] or 'none'}")
    discord.send(alert)


def _meta(v):
    if isinstance(v, (dict, list)):
        return dg.MetadataValue.json(json.loads(json.dumps(v, default=str)))
    if isinstance(v, bool) or v is None:
        return str(v)
    return v


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="models",
    deps=["veto_model"],
    kinds={"json"},
    description="The instrument's entry in manifest.json: its newest stored version whose six gates all passed "
    "(its gate report) enters the paper stage (or production when validation.yml sets no paper sessions); "
    "the rest are kept. Every change is in the store's audit log, every decision in decisions.log, and an "
    "automated retrain's outcome is alerted.",
)
def promoted_manifest(context: dg.AssetExecutionContext, rooney: RooneyResource, model_store: ModelStoreResource,
                      discord: DiscordResource) -> dg.MaterializeResult:
    from rooney_core.model.promotion import promote_and_log

    store, cfg, symbol = model_store.get(), rooney.cfg, context.partition_key
    row, _, alert = promote_and_log(store, symbol, by=f"dagster run {context.run.run_id[:8]}",
                                    paper_sessions=cfg.validation.for_symbol(symbol).paper.sessions,
                                    trigger=context.run.tags.get(TRIGGER_TAG), run_id=context.run.run_id,
                                    run_url=discord.run_url(context.run.run_id))
    context.log.info(f"{symbol}: {row['action']} ({row['production']})")
    if alert is not None:  # an automated retrain's outcome (a promotion by hand: promotion_alert)
        discord.send(alert)
    paper = store.paper_entry(symbol) or {}
    return dg.MaterializeResult(
        metadata={
            "manifest": dg.MetadataValue.path(str(store.root / "manifest.json")),
            "action": row["action"],
            "production": row["production"],
            "paper_stage": f"{paper['version']} ({paper.get('status')})" if paper else "none",
            "versions": row["versions"],
        }
    )


class PaperStageConfig(dg.Config):
    replay_history: bool = False
    """Judge the paper stage on the last N sessions of the data when none came after staging
    (historical or sample data, as in the demo); the result is labelled as a replay."""


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="models",
    deps=["promoted_manifest"],
    kinds={"python"},
    description="The paper stage of the instrument's staged version: the live engine in paper mode over the "
    "sessions since it was staged, against the backtest of the same sessions. Within the bounds of "
    "configs/validation.yml (paper:) it is promoted to production, with a deployment checklist.",
)
def paper_stage(context: dg.AssetExecutionContext, config: PaperStageConfig,
                rooney: RooneyResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
    from rooney_core.model.promotion import graduate
    from rooney_core.model.staging import evaluate_paper, watched

    store, cfg, symbol = model_store.get(), rooney.cfg, context.partition_key
    entry = store.paper_entry(symbol)
    production = store.production_entry(symbol)
    watch = watched(production, cfg.validation.for_symbol(symbol).paper.watch_days)
    if entry is None or entry.get("status") != "paper":
        return dg.MaterializeResult(metadata={
            "paper_stage": "none" if entry is None else f"{entry['version']} ({entry.get('status')})",
            "production": (production or {}).get("version", "none"), "watched": watch})
    result = evaluate_paper(cfg, store, symbol, rooney.data_path, replay_history=config.replay_history)
    context.log.info(result.summary)
    promoted = graduate(store, result, by=f"dagster run {context.run.run_id[:8]}")
    production = store.production_entry(symbol)
    md = {"version": result.version, "summary": result.summary,
          "status": "promoted" if promoted else ("running" if result.passed is None else "FAILED"),
          "sessions": f"{result.sessions} of {result.sessions_required}", "replayed": result.replayed,
          "tracking_error_usd": result.tracking_error_usd, "trade_mismatches": result.trade_mismatches,
          "production": (production or {}).get("version", "none"),
          "watched": watched(production, cfg.validation.for_symbol(symbol).paper.watch_days)}
    if promoted and promoted.get("checklist"):
        md["checklist"] = dg.MetadataValue.md(Path(promoted["checklist"]).read_text())
        md["checklist_file"] = dg.MetadataValue.path(promoted["checklist"])
    return dg.MaterializeResult(metadata=md)
