"""Promotion policy: which stored version each instrument trades.

Only a version whose latest gate report (``rooney_core.model.gates``, stored beside it) says
every gate passed may be promoted, from the pipeline or the CLI. ``force`` overrides that,
and only with a reason: the override, the failed gates and the reason are in the manifest
entry and the audit log. Rollback is not gated (it restores what was in production).

The pipeline promotes the newest passing version, provided it is newer than every version
that was ever in production: a version someone rolled back is never promoted again by the
pipeline (only by hand), while a newly trained one still is.
"""

from __future__ import annotations

from rooney_core.model.gates import GATES
from rooney_core.model.store import ModelStore, ModelStoreError


class PromotionRefused(ModelStoreError):
    pass


def gate_status(store: ModelStore, name: str) -> tuple[bool, list[str]]:
    """(every gate passed, the gates that did not) from the version's verified gate report.
    A version never validated has passed nothing."""
    report = store.gate_report(name)
    if report is None:
        return False, ["not validated (no gate report: run `rooney models validate`)"]
    ran = {g["name"]: bool(g["passed"]) for g in report.get("gates", [])}
    failed = [g for g in GATES if not ran.get(g, False)]
    return not failed, failed


def promote_version(store: ModelStore, name: str, by: str, reason: str = "", force: bool = False) -> dict:
    """Promote ``name`` if every gate passed; with ``force`` (and a reason) whatever they say."""
    passed, failed = gate_status(store, name)
    if force and not (reason or "").strip():
        raise PromotionRefused(f"promote {name} --force: say why (--reason \"...\"); a forced promotion is "
                               "recorded with its reason in the audit log")
    if not passed and not force:
        raise PromotionRefused(f"promote {name}: refused: gates not passed: {', '.join(failed)}. Fix the model, "
                               "or override with --force --reason \"...\"")
    extra = {"gates": "passed"} if passed else {"forced": True, "failed_gates": failed, "gates": "overridden"}
    return store.promote(name, by=by, reason=reason, extra=extra)


def _number(version: str) -> int:
    return int(version.rsplit("_v", 1)[1])


def highest_ever_in_production(store: ModelStore, symbol: str) -> int:
    """The highest version number the audit log shows in production for ``symbol`` (0 if none)."""
    numbers = [_number(r["version"]) for r in store.audit_log()
               if r.get("symbol") == symbol and r["status"] == "done"]
    current = store.production(symbol)
    return max([*numbers, _number(current) if current else 0])


def _passes(store: ModelStore, name: str) -> bool:
    try:
        return gate_status(store, name)[0]
    except ModelStoreError:
        return False  # an edited or missing report passes nothing


def promote_newest_passing(store: ModelStore, symbols: list[str], by: str) -> list[dict]:
    """Promote, per symbol, the newest version whose gates passed if it is newer than any
    version ever in production. Returns one row per symbol saying what happened."""
    rows = []
    for symbol in symbols:
        versions = store.list_versions(symbol)
        passing = [v for v in versions if "damaged" not in v and _passes(store, v["version"])]
        current = store.production(symbol)
        if not passing:
            rows.append({"instrument": symbol, "action": "kept (no version passed its gates)",
                         "production": current or "none", "versions": len(versions)})
            continue
        newest = passing[-1]["version"]
        if newest == current:
            rows.append({"instrument": symbol, "action": "unchanged", "production": current,
                         "versions": len(versions)})
            continue
        if _number(newest) <= highest_ever_in_production(store, symbol):
            rows.append({"instrument": symbol, "production": current or "none", "versions": len(versions),
                         "action": f"kept: {newest} was already in production once (rolled back?); "
                                   "promote it by hand to restore it"})
            continue
        promote_version(store, newest, by=by, reason="newest version whose gates passed")
        rows.append({"instrument": symbol, "action": f"promoted (was {current or 'none'})", "production": newest,
                     "versions": len(versions)})
    return rows
