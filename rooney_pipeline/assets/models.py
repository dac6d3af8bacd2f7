"""Per-instrument veto models (each materialisation adds an immutable version to the store)
and the promoted manifest (the newest version of each instrument whose gates passed)."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from rooney_core.model.gates import GATES, ModelData
from rooney_core.training.config import load_training_config
from rooney_core.training.store_version import train_and_store
from rooney_core.training.train import Market
from rooney_pipeline.metadata import png, table
from rooney_pipeline.partitions import instrument_partitions
from rooney_pipeline.resources import RooneyResource


class TrainConfig(dg.Config):
    profile: str | None = None
    """Extra training config layered on top (configs/training/<profile>.yml), e.g. "demo"."""
    trials: int | None = None
    """Override the number of Optuna trials."""
    parity_months: int | None = None
    """Override pipeline.yml parity.months for the live-parity gate (the demo uses fewer)."""


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="models",
    deps=["candidate_trades", "features", "hourly_bars"],
    kinds={"sklearn", "optuna"},
    description="Walk-forward, Optuna-tuned Random Forest veto model; each run stores a new immutable "
    "version <SYMBOL>_v<N> with its report in the model store.",
    check_specs=[dg.AssetCheckSpec(g, asset="veto_model", description=d, blocking=True) for g, d in GATES.items()],
)
def veto_model(context: dg.AssetExecutionContext, config: TrainConfig, rooney: RooneyResource):
    cfg = rooney.cfg
    symbol = context.partition_key
    tcfg = load_training_config(cfg.config_dir, symbol, config.profile)
    if config.trials:
        tcfg = tcfg.model_copy(update={"trials": config.trials})
    cands = rooney.lake.read("candidates", symbol)
    store = rooney.store
    market = Market(rooney.lake.read("hourly", symbol), rooney.lake.read("features", symbol),
                    cfg.instrument(symbol), cfg.strategy)
    data = ModelData(market, data_dir=rooney.data_path, parity_months=config.parity_months)
    stored = train_and_store(cands, symbol, tcfg, data, store, cfg, progress=context.log.info)
    name, result, plots, tables, report = stored.name, stored.result, stored.plots, stored.tables, stored.report
    bundle = stored.bundle
    context.log.info(f"{symbol}: stored {name}")
    m = result.metrics
    vdir = store.version_dir(name)
    yield dg.MaterializeResult(
        metadata={
            "version": name,
            "gates": "every gate passed" if report.passed else "FAILED: " + ", ".join(report.failed),
            "gate_report": table(report.table()),
            "holdout_start": m["holdout_start"],
            "holdout_sharpe_selected": m["selected"]["sharpe"],
            "holdout_sharpe_all": m["all"]["sharpe"],
            "holdout_trades": m["selected"]["trades"],
            "psr_vs_zero": m["psr_vs_zero"],
            "psr_vs_unfiltered": m["psr_vs_unfiltered"],
            "deflated_sharpe": m["deflated_sharpe"],
            "edge_significant": m["edge_significant"],
            "auc": m["auc"],
            "threshold": result.threshold,
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


def _meta(v):
    if isinstance(v, (dict, list)):
        return dg.MetadataValue.json(json.loads(json.dumps(v, default=str)))
    if isinstance(v, bool) or v is None:
        return str(v)
    return v


@dg.asset(
    group_name="models",
    deps=["veto_model"],
    kinds={"json"},
    description="manifest.json: for each instrument, the newest stored version whose six gates all passed "
    "(its gate report) enters the paper stage (or production when validation.yml sets no paper sessions); "
    "the rest are kept. Every change is in the store's audit log.",
)
def promoted_manifest(context: dg.AssetExecutionContext, rooney: RooneyResource) -> dg.MaterializeResult:
    from rooney_core.model.promotion import promote_newest_passing

    store = rooney.store
    cfg = rooney.cfg
    changes = [row for sym in cfg.symbols
               for row in promote_newest_passing(store, [sym], by=f"dagster run {context.run.run_id[:8]}",
                                                 paper_sessions=cfg.validation.for_symbol(sym).paper.sessions)]
    rows = pd.DataFrame(changes).set_index("instrument") if changes else pd.DataFrame()
    for c in changes:
        context.log.info(f"{c['instrument']}: {c['action']} ({c['production']})")
    return dg.MaterializeResult(
        metadata={
            "manifest": dg.MetadataValue.path(str(store.root / "manifest.json")),
            "instruments": table(rows) if len(rows) else "none",
            "production": dg.MetadataValue.json({s: store.production(s) for s in rooney.cfg.symbols}),
            "paper_stage": dg.MetadataValue.json({s: (store.paper_entry(s) or {}).get("version")
                                                  for s in rooney.cfg.symbols}),
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
                rooney: RooneyResource) -> dg.MaterializeResult:
    from rooney_core.model.promotion import graduate
    from rooney_core.model.staging import evaluate_paper, watched

    store, cfg, symbol = rooney.store, rooney.cfg, context.partition_key
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
