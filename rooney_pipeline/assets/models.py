"""Per-instrument veto models (each materialisation adds an immutable version to the store)
and the promoted manifest (the newest version of each instrument whose gates passed)."""

import json

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
    "(its gate report) is promoted to production; the rest are kept. Every change is in the store's audit log.",
)
def promoted_manifest(context: dg.AssetExecutionContext, rooney: RooneyResource) -> dg.MaterializeResult:
    from rooney_core.model.promotion import promote_newest_passing

    store = rooney.store
    changes = promote_newest_passing(store, rooney.cfg.symbols, by=f"dagster run {context.run.run_id[:8]}")
    rows = pd.DataFrame(changes).set_index("instrument") if changes else pd.DataFrame()
    for c in changes:
        context.log.info(f"{c['instrument']}: {c['action']} ({c['production']})")
    return dg.MaterializeResult(
        metadata={
            "manifest": dg.MetadataValue.path(str(store.root / "manifest.json")),
            "instruments": table(rows) if len(rows) else "none",
            "production": dg.MetadataValue.json({s: store.production(s) for s in rooney.cfg.symbols}),
        }
    )
