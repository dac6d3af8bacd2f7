"""Promotion policy: which stored version each instrument trades.

Here: the newest version whose recorded gates all passed. (Full validation gates, paper
trading and rollback rules come with the next phases; they extend this policy.)
"""

from __future__ import annotations

from rooney_core.model.store import ModelStore


def gates_passed(metadata: dict) -> bool:
    gates = (metadata.get("metrics") or {}).get("gates") or {}
    return bool(gates) and all(g.get("passed") for g in gates.values())


def promote_newest_passing(store: ModelStore, symbols: list[str], by: str) -> list[dict]:
    """Promote, per symbol, the newest version whose gates passed, if it is not already in
    production. Returns one row per symbol saying what happened."""
    rows = []
    for symbol in symbols:
        versions = store.list_versions(symbol)
        passing = [v for v in versions if gates_passed(v)]
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
        store.promote(newest, by=by, reason="newest version whose gates passed")
        rows.append({"instrument": symbol, "action": f"promoted (was {current or 'none'})", "production": newest,
                     "versions": len(versions)})
    return rows
