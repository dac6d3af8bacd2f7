"""Train one instrument's veto model and store it as a new immutable version, with its gates
and report: the one sequence behind ``rooney train`` and the ``veto_model`` asset."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from rooney_core.model import ModelStore, VetoBundle
from rooney_core.training.config import TrainingConfig
from rooney_core.training.report import build_report
from rooney_core.training.train import Market, TrainingResult, make_bundle, model_gates, train_veto_model


@dataclass
class StoredVersion:
    name: str
    result: TrainingResult
    bundle: VetoBundle
    gates: dict[str, dict]
    plots: dict[str, bytes]
    tables: dict[str, pd.DataFrame]

    @property
    def failed_gates(self) -> list[str]:
        return [g for g, v in self.gates.items() if not v["passed"]]


def train_and_store(cands: pd.DataFrame, symbol: str, tcfg: TrainingConfig, market: Market,
                    store: ModelStore, progress: Callable[[str], None] | None = None,
                    more_gates: Callable[[VetoBundle], dict[str, dict]] | None = None) -> StoredVersion:
    """Tune, train and evaluate; add the bundle with report.html, the plots and the scored
    holdout to the store; return the new version's name and everything shown about it.
    ``more_gates(candidate bundle)`` adds gates that need the bundle itself (the live-path
    parity replay); every gate is stored with the version, which is immutable."""
    result = train_veto_model(cands, symbol, tcfg, market, store.root / "studies" / f"{symbol}.journal",
                              progress=progress)
    gates = model_gates(result, tcfg.min_trades_per_fold)
    bundle = make_bundle(result, gates)
    if more_gates is not None:
        gates = {**gates, **more_gates(bundle)}
        bundle = make_bundle(result, gates, trained_at=bundle.trained_at)  # when it was fitted
    plots, tables, doc = build_report(result, f"{symbol} veto model {bundle.content_hash()[:12]}")
    holdout = io.BytesIO()
    result.holdout.to_parquet(holdout, index=False)
    extra = {"report.html": doc.encode(), **{f"{k}.png": v for k, v in plots.items()},
             "holdout.parquet": holdout.getvalue()}
    name = store.add_version(bundle, extra_files=extra)
    return StoredVersion(name, result, bundle, gates, plots, tables)
