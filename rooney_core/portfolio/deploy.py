"""Portfolio versions in the model store: store an optimisation, show, promote and roll back
(through the store's audit log), export the production one to ``configs/portfolio_config.yml``
and flag a config whose models are no longer the ones in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rooney_core.errors import RooneyError
from rooney_core.model.store import ModelStore, ModelStoreError
from rooney_core.portfolio.config import PortfolioConfig, export, parse_portfolio


class PortfolioRefused(ModelStoreError):
    """A promotion the policy refuses (say why; ``force`` with a reason overrides it)."""


def load(store: ModelStore, name: str) -> PortfolioConfig:
    """A stored portfolio version, checked (sha256) and validated."""
    return parse_portfolio(store.load_portfolio(name), f"{store.portfolio_dir(name)}/portfolio.json")


def production(store: ModelStore) -> PortfolioConfig | None:
    name = store.production_portfolio()
    return None if name is None else load(store, name)


def save(store: ModelStore, config: PortfolioConfig, files: dict[str, bytes] | None = None) -> str:
    """Store ``config`` (and its report files) as a new immutable ``portfolio_v<N>``."""
    return store.add_portfolio(config.model_dump(mode="json", exclude={"version"}), files)


def flags(store: ModelStore, config: PortfolioConfig) -> list[str]:
    """Why ``config`` may not match what trades: each model version it was optimised on that
    is no longer its instrument's production version."""
    out = []
    for s in config.symbols:
        want = config.models.get(s)
        try:
            now = store.production(s)
        except RooneyError as err:
            out.append(f"{s}: cannot read its production version ({err})")
            continue
        if want != now:
            out.append(f"{s}: optimised on {want or 'no model'}, production is now {now or 'no model'}")
    return out


def gates(config: PortfolioConfig) -> list[str]:
    """Why ``config`` should not trade, from its own record (empty: none): its optimisation
    found no trial within the risk limits, or out of sample (the holdout, never seen by the
    choice) it lost money or broke the drawdown limit it was chosen under."""
    out = []
    if not config.objective.get("feasible", True):
        out.append("no trial of its optimisation met every risk limit")
    fig = config.holdout_figures or {}
    sharpe = fig.get("sharpe")
    if fig and (sharpe is None or not sharpe > 0):
        out.append(f"out of sample its Sharpe is {sharpe if sharpe is None else round(sharpe, 2)} (needs > 0)")
    limit = (config.objective.get("limits") or {}).get("max_drawdown_pct")
    dd = fig.get("max_drawdown_pct")
    if limit is not None and dd is not None and dd > limit:
        out.append(f"out of sample its max drawdown is {dd:.1%}, beyond the {limit:.0%} limit")
    return out


def promote(store: ModelStore, name: str, by: str, reason: str = "", force: bool = False,
            config_dir: str | Path | None = None) -> dict[str, Any]:
    """Make ``name`` the production portfolio and export it. Refused when it was optimised on
    models that are no longer in production, or fails ``gates``, unless ``force`` with a
    reason (recorded in the audit log with what it overrode)."""
    config = load(store, name)
    problems = flags(store, config) + gates(config)
    extra: dict[str, Any] = {}
    if problems:
        if not force:
            raise PortfolioRefused(f"{name} not promoted: " + "; ".join(problems)
                                   + ". Re-optimise on the production models, or force it with a reason")
        if not reason.strip():
            raise PortfolioRefused(f"{name}: a forced promotion needs a reason")
        extra = {"forced": True, "flags": problems}
    entry = store.promote_portfolio(name, by, reason, extra)
    if config_dir is not None:
        export(config.model_copy(update={"version": name}), config_dir,
               note=("FORCED: " + "; ".join(problems)) if problems else "")
    return entry


def promote_if_passes(store: ModelStore, name: str, by: str, config_dir: str | Path | None = None,
                      enabled: bool = True) -> tuple[bool, list[str]]:
    """The pipeline's policy: promote ``name`` (and export it) when nothing flags it and it
    passes ``gates``; (promoted, the problems that kept it back)."""
    config = load(store, name)
    problems = flags(store, config) + gates(config)
    if enabled and not problems:
        promote(store, name, by=by, reason="optimised and passed", config_dir=config_dir)
    return enabled and not problems, problems


def rollback(store: ModelStore, by: str, reason: str = "", config_dir: str | Path | None = None) -> dict[str, Any]:
    entry = store.rollback_portfolio(by, reason)
    if config_dir is not None:
        export(load(store, entry["version"]).model_copy(update={"version": entry["version"]}), config_dir,
               note=f"rolled back from {entry['rolled_back_from']}")
    return entry


def history(store: ModelStore) -> list[dict[str, Any]]:
    """The audit log's portfolio promotions and rollbacks, oldest first."""
    return [r for r in store.audit_log() if r.get("symbol") == "portfolio"]
