"""Promotion policy: which stored version each instrument trades.

Here: the newest version whose recorded gates all passed, provided it is newer than every
version that was ever in production. So a version someone rolled back is never promoted
again by the pipeline (only by hand), while a newly trained one still is. (Full validation
gates and paper trading come with the next phases; they extend this policy.)
"""

from __future__ import annotations

from rooney_core.model.store import ModelStore


def gates_passed(metadata: dict) -> bool:
    gates = (metadata.get("metrics") or {}).get("gates") or {}
    return bool(gates) and all(g.get("passed") for g in gates.values())


def _number(version: str) -> int:
    return int(version.rsplit("_v", 1)[1])


def highest_ever_in_production(store: ModelStore, symbol: str) -> int:
    """The highest version number the audit log shows in production for ``symbol`` (0 if none)."""
    numbers = [_number(r["version"]) for r in store.audit_log()
               if r.get("symbol") == symbol and r["status"] == "done"]
    current = store.production(symbol)
    return max([*numbers, _number(current) if current else 0])


def promote_newest_passing(store: ModelStore, symbols: list[str], by: str) -> list[dict]:
    """Promote, per symbol, the newest version whose gates passed if it is newer than any
    version ever in production. Returns one row per symbol saying what happened."""
    rows = []
    for symbol in symbols:
        versions = store.list_versions(symbol)
        passing = [v for v in versions if gates_passed(v) and "damaged" not in v]
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
        store.promote(newest, by=by, reason="newest version whose gates passed")
        rows.append({"instrument": symbol, "action": f"promoted (was {current or 'none'})", "production": newest,
                     "versions": len(versions)})
    return rows
