"""Train one instrument's veto model, validate it through the six gates and store it as a new
immutable version with its gate report and training report: the one sequence behind
``rooney train`` and the ``veto_model`` asset."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from rooney_core.config import RooneyConfig
from rooney_core.model import ModelStore, VetoBundle
from rooney_core.model.gates import GateReport, ModelData, report_json, validate_model
from rooney_core.monitoring.reference import REFERENCE_FILE, reference_bytes, reference_frame
from rooney_core.training.config import TrainingConfig
from rooney_core.training.report import build_report
from rooney_core.training.splits import split_holdout
from rooney_core.training.train import TrainingResult, make_bundle, train_veto_model, usable_rows


@dataclass
class StoredVersion:
    name: str
    result: TrainingResult
    bundle: VetoBundle
    report: GateReport
    plots: dict[str, bytes]
    tables: dict[str, pd.DataFrame]
    duplicate: bool = False  # the model is identical to the stored version ``name``: not stored again

    @property
    def failed_gates(self) -> list[str]:
        return self.report.failed


def train_and_store(cands: pd.DataFrame, symbol: str, tcfg: TrainingConfig, data: ModelData, store: ModelStore,
                    cfg: RooneyConfig, progress: Callable[[str], None] | None = None) -> StoredVersion:
    """Tune, train and evaluate; run the gates on the bundle; add the bundle with report.html,
    the plots, the scored holdout and the training rows' features (``reference_features.parquet``,
    what monitoring measures drift against) to the store, then its gate report beside it."""
    result = train_veto_model(cands, symbol, tcfg, data.market, store.root / "studies" / f"{symbol}.journal",
                              progress=progress)
    bundle = make_bundle(result)
    same = store.version_with_content(symbol, bundle.content_hash())
    if same is not None:  # same data, config and seed: the same model; say so, store nothing
        say = progress or (lambda _m: None)
        say(f"{symbol}: the trained model is identical to {same} (content hash {bundle.content_hash()[:12]}: "
            "same data, config and seed); not stored again")
        known = store.gate_report(same)
        if known is not None:
            report = GateReport.from_dict(known)
        else:  # stored, but its gates never ran (a run killed in between)
            report = validate_model(bundle, replace(data, store=store), cfg, progress=progress)
            report.version = same
            store.write_gate_report(same, report_json(report), report.passed)
        plots, tables, _ = build_report(result, same, report)
        return StoredVersion(same, result, bundle, report, plots, tables, duplicate=True)
    report = validate_model(bundle, replace(data, store=store), cfg, progress=progress)
    plots, tables, _ = build_report(result, symbol, report)
    holdout = io.BytesIO()
    result.holdout.to_parquet(holdout, index=False)
    trades = io.BytesIO()
    result.holdout_trades.to_parquet(trades, index=False)
    extra = {**{f"{k}.png": v for k, v in plots.items()},
             "holdout.parquet": holdout.getvalue(), "holdout_trades.parquet": trades.getvalue(),
             REFERENCE_FILE: reference_bytes(training_reference(cands, result, tcfg, data))}

    def files(name: str) -> dict[str, bytes]:  # the report is titled with the version's name
        report.version = name
        return {"report.html": build_report(result, name, report, plots, bundle)[2].encode(), **extra}

    name = store.add_version(bundle, extra_files=files)
    report.version = name
    store.write_gate_report(name, report_json(report), report.passed)
    return StoredVersion(name, result, bundle, report, plots, tables)


def training_reference(cands: pd.DataFrame, result: TrainingResult, tcfg: TrainingConfig,
                       data: ModelData) -> pd.DataFrame:
    """The rows the model was fitted on (the same split as training: before the holdout,
    exited before its embargo), their signal times and model features."""
    rows = usable_rows(cands, result.feature_names)
    train, _, _ = split_holdout(rows, tcfg.holdout_years, tcfg.embargo_days, data.market.calendar)
    return reference_frame(train, result.feature_names)
