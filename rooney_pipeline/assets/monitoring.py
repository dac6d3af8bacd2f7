"""model_monitoring: each instrument's production model judged on its live results, with the
dashboard's figures as metadata; it trips the kill switch and sends the alerts."""


import dagster as dg
import pandas as pd

from rooney_core.monitoring.dashboard import DashboardPaths, shown
from rooney_core.monitoring.health import HealthState, health_root
from rooney_core.monitoring.monitor import Conditions, MonitorReport, enforce_kill_switch, monitor_instrument
from rooney_core.monitoring.performance import NOT_RECORDED
from rooney_pipeline.metadata import png, table
from rooney_pipeline.partitions import instrument_partitions
from rooney_pipeline.resources import DiscordResource, LakeResource, ModelStoreResource, RooneyResource
from rooney_pipeline.sensors import live_state_dir


def monitoring_paths(rooney: RooneyResource, lake: LakeResource, model_store: ModelStoreResource,
                     discord: DiscordResource) -> DashboardPaths:
    """Where the live engine, the model store, the lake and the alerts are, as the pipeline
    sees them (the same directories `rooney dashboard` reads)."""
    return DashboardPaths(state_dir=live_state_dir(rooney.cfg), model_store=model_store.get().root,
                          lake_dir=lake.get().root, alerts_dir=discord.alerts_path)


def _figure_png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def report_metadata(report: MonitorReport) -> dict:
    """The verdicts, figures and plots of one instrument's monitoring, as asset metadata."""
    f = report.findings
    md: dict = {"model": report.version or "none", "as_of": str(report.as_of) if report.as_of else "no live bar yet",
                "findings": table(report.table().set_index("finding"))}
    for key, finding in f.items():
        md[f"{key}_status"] = finding.status
    if report.performance is not None:
        md["performance_vs_backtest"] = table(shown(report.performance.figures).set_index("figure"))
    if report.drift is not None:
        md["drift_per_feature"] = table(shown(report.drift.features).set_index("feature"), max_rows=40)
    if report.thresholds is not None:
        md["drift_alert_from_features"] = report.thresholds.min_drifted
    if report.shift is not None:
        md["prediction_shift"] = report.shift.verdict
    if report.regime is not None:
        md["regime"] = report.regime.verdict
    if report.health is not None:
        md["kill_switch_checks"] = table(shown(pd.DataFrame([c.__dict__ for c in report.health.checks]))
                                         .set_index("name"))
    if len(report.veto):
        md["veto_value_by_month"] = table(shown(report.veto.drop(columns=["instrument"])).set_index("period"))
    for key, panel in report.panels().items():
        if panel.figure is not None:
            md[f"{key}_plot"] = png(_figure_png(panel.figure), title=panel.title)
        elif panel.empty:
            md[f"{key}_plot"] = f"not drawn: {panel.empty}"
    if report.problems:
        md["problems"] = dg.MetadataValue.json(report.problems)
    return md


@dg.asset(
    partitions_def=instrument_partitions,
    group_name="monitoring",
    deps=["promoted_manifest", "features", "daily_bars"],
    kinds={"python"},
    description="The instrument's model as the live engine runs it, judged on its live results: accuracy and P&L "
    "against the holdout backtest, feature drift, regime, prediction shift, veto value and health "
    "(configs/monitoring.yml). It trips the kill switch when health fails (back to live only by an audited "
    "`rooney health restore`) and sends one alert per condition that starts or clears. The dashboard's plots "
    "are its metadata.",
)
def model_monitoring(context: dg.AssetExecutionContext, rooney: RooneyResource, lake: LakeResource,
                     model_store: ModelStoreResource, discord: DiscordResource) -> dg.MaterializeResult:
    symbol = context.partition_key
    paths = monitoring_paths(rooney, lake, model_store, discord)
    report = monitor_instrument(paths, rooney.cfg, symbol)
    run_url = discord.run_url(context.run.run_id)
    for finding in report.findings.values():
        context.log.info(f"{symbol} {finding.key}: {finding.status}: {finding.verdict}")
    tripped = enforce_kill_switch(report, HealthState(health_root(paths.model_store)), discord.sink,
                                  by=f"dagster run {context.run.run_id[:8]}", run_url=run_url)
    if tripped:
        context.log.warning(f"{symbol}: kill switch tripped: {'; '.join(report.health.reasons)}")
    sent = Conditions(paths.alerts_dir).notify(report, discord.sink, run_url=run_url)
    md = report_metadata(report)
    md["kill_switch"] = ("TRIPPED now" if tripped else
                         HealthState(health_root(paths.model_store)).mode(symbol).upper())
    md["alerts_sent"] = ", ".join(f"{a.kind}{' (resolved)' if a.resolved else ''}" for a in sent) or "none"
    md["retrain_reasons"] = "; ".join(report.retrain_reasons()) or "none"
    if not report.version:
        md["note"] = f"nothing to judge: {report.findings['performance'].verdict}"
    elif report.performance is not None and NOT_RECORDED in " ".join(report.performance.figures["note"]):
        md["note"] = "some holdout figures were not recorded by this version's training; they are not compared"
    return dg.MaterializeResult(metadata=md)
