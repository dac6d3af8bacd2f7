"""Promotion policy: which stored version each instrument trades (gates -> paper -> production).

Only a version whose latest gate report (``rooney_core.model.gates``, stored beside it) says
every gate passed may be promoted, from the pipeline or the CLI. With a paper stage
(``paper.sessions`` > 0 in ``configs/validation.yml``) it first trades on paper, and goes to
production only when its paper stage passed (``rooney_core.model.staging``). ``force``
overrides either, and only with a reason: the override, what it skipped and the reason are
in the manifest entry and the audit log. Rollback is not gated (it restores what was in
production). Each promotion writes a deployment checklist (Markdown) linked from the entry.

The pipeline stages the newest passing version, provided it is newer than every version
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


def paper_status(store: ModelStore, name: str, paper_sessions: int) -> tuple[bool, str]:
    """(the version may go to production as far as the paper stage goes, why)."""
    if paper_sessions <= 0:
        return True, "no paper stage configured"
    symbol = name.rsplit("_v", 1)[0]
    entry = store.paper_entry(symbol)
    if entry is None or entry.get("version") != name:
        return False, f"{name} has not been through the paper stage ({paper_sessions} sessions)"
    result = entry.get("result") or {}
    if entry.get("status") == "passed" and result.get("passed"):
        return True, result.get("summary", "paper stage passed")
    return False, f"{name} is in the paper stage: {result.get('summary') or 'no result yet'}"


def promote_version(store: ModelStore, name: str, by: str, reason: str = "", force: bool = False,
                    paper_sessions: int = 0) -> dict:
    """Promote ``name`` if every gate passed (and, with a paper stage, its paper stage
    passed); with ``force`` (and a reason) whatever they say, recording what was skipped."""
    passed, failed = gate_status(store, name)
    paper_ok, paper_why = paper_status(store, name, paper_sessions)
    if force and not (reason or "").strip():
        raise PromotionRefused(f"promote {name} --force: say why (--reason \"...\"); a forced promotion is "
                               "recorded with its reason in the audit log")
    if not passed and not force:
        raise PromotionRefused(f"promote {name}: refused: gates not passed: {', '.join(failed)}. Fix the model, "
                               "or override with --force --reason \"...\"")
    if not paper_ok and not force:
        raise PromotionRefused(f"promote {name}: refused: {paper_why}. Wait for it, or skip it with --force "
                               "--reason \"...\"")
    extra: dict = {"gates": "passed"} if passed else {"forced": True, "failed_gates": failed, "gates": "overridden"}
    extra["paper"] = paper_why
    if not paper_ok:
        extra.update(forced=True, skipped_paper=paper_why)
    return store.promote(name, by=by, reason=reason, extra=extra,
                         checklist=lambda cur, new: deployment_checklist(store, name, cur, new))


def stage_or_promote(store: ModelStore, name: str, by: str, reason: str, paper_sessions: int) -> dict:
    """The pipeline's step for a passing version: the paper stage, or production without one."""
    if paper_sessions > 0:
        return store.stage_paper(name, by=by, reason=reason, sessions=paper_sessions)
    return promote_version(store, name, by=by, reason=reason)


def graduate(store: ModelStore, result, by: str) -> dict | None:
    """Record a paper-stage result; promote the version when it passed (None otherwise)."""
    if result.passed is None:
        store.update_paper(result.symbol, by=by, status="paper", result=result.to_dict())
        return None
    store.update_paper(result.symbol, by=by, status="passed" if result.passed else "failed", result=result.to_dict())
    if not result.passed:
        return None
    return promote_version(store, result.version, by=by, reason="paper stage passed: " + result.summary,
                           paper_sessions=result.sessions_required)


def deployment_checklist(store: ModelStore, name: str, current: dict | None, entry: dict) -> str:
    """Markdown: the gates, what changed from the version it replaces (features, parameters,
    holdout metrics), the paper stage, who and when."""
    meta = store.load_metadata(name)
    old = store.load_metadata(current["version"]) if current else None
    report = store.gate_report(name) or {"gates": []}
    lines = [f"# Deployment checklist: {name}", "",
             f"- Promoted by **{entry['promoted_by']}** at {entry['promoted_at']} (UTC)",
             f"- Reason: {entry.get('reason') or '-'}",
             f"- Replaces: {current['version'] if current else 'nothing (first production version)'}",
             f"- Bundle sha256 `{entry['sha256']}`, content hash `{entry.get('content_hash')}`",
             f"- Paper stage: {entry.get('paper', '-')}"]
    if entry.get("forced"):
        lines.append(f"- **FORCED**: failed gates {entry.get('failed_gates', [])}; skipped paper: "
                     f"{entry.get('skipped_paper', 'no')}")
    lines += ["", "## Gates", "", "| gate | passed | detail |", "|---|---|---|"]
    lines += [f"| {g['name']} | {'yes' if g['passed'] else '**NO**'} | {g['detail']} |" for g in report["gates"]]
    lines += ["", "## Changes from the version it replaces", ""]
    if old is None:
        lines.append("None: no earlier production version.")
    else:
        new_f, old_f = meta["feature_names"], old["feature_names"]
        added, removed = [f for f in new_f if f not in old_f], [f for f in old_f if f not in new_f]
        lines.append(f"- Features: {len(old_f)} -> {len(new_f)}; added {added or 'none'}; removed {removed or 'none'}")
        p_new = (meta.get("config") or {}).get("best_params", {})
        p_old = (old.get("config") or {}).get("best_params", {})
        changed = {k: (p_old.get(k), v) for k, v in p_new.items() if p_old.get(k) != v}
        lines.append(f"- Threshold: {old['threshold']} -> {meta['threshold']}")
        lines.append("- Parameters changed: " + (", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
                                                 or "none"))
        lines += ["", "| holdout metric | " + current["version"] + " | " + name + " |", "|---|---|---|"]
        m_new, m_old = meta.get("metrics", {}), old.get("metrics", {})
        for key in ("trades", "net_pnl", "sharpe", "sortino", "max_drawdown_usd"):
            lines.append(f"| veto-on {key} | {(m_old.get('selected') or {}).get(key)} | "
                         f"{(m_new.get('selected') or {}).get(key)} |")
        for key in ("psr_vs_zero", "deflated_sharpe", "auc", "holdout_start"):
            lines.append(f"| {key} | {m_old.get(key)} | {m_new.get(key)} |")
    return "\n".join(lines) + "\n"


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


def promote_newest_passing(store: ModelStore, symbols: list[str], by: str, paper_sessions: int = 0) -> list[dict]:
    """Per symbol, stage the newest version whose gates passed in the paper stage (or, with
    ``paper_sessions`` 0, promote it) if it is newer than any version ever in production.
    Returns one row per symbol saying what happened."""
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
        paper = store.paper_entry(symbol)
        if paper_sessions > 0 and paper is not None and paper["version"] == newest:
            rows.append({"instrument": symbol, "action": f"{newest} in the paper stage ({paper.get('status')})",
                         "production": current or "none", "versions": len(versions)})
            continue
        stage_or_promote(store, newest, by=by, reason="newest version whose gates passed",
                         paper_sessions=paper_sessions)
        action = (f"{newest} staged on paper for {paper_sessions} sessions" if paper_sessions > 0
                  else f"promoted (was {current or 'none'})")
        rows.append({"instrument": symbol, "action": action, "production": store.production(symbol) or "none",
                     "versions": len(versions)})
    return rows


DECISIONS_FILE = "decisions.log"


def record_decision(store: ModelStore, symbol: str, version: str | None, decision: str, *,
                    passed: bool | None = None, failed_gates: list[str] | None = None, by: str = "?",
                    trigger: str | None = None, run_id: str | None = None) -> dict:
    """Log what the gates decided for a trained version (``decisions.log`` in the store's
    root, one JSON line each): promoted, staged, or kept out with the gates it failed, and
    what production is after it. Returns the record."""
    from datetime import UTC, datetime

    from rooney_core.io import append_jsonl

    rec = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "symbol": symbol, "version": version,
           "decision": decision, "gates_passed": passed, "failed_gates": list(failed_gates or []),
           "production": store.production(symbol), "by": by, "trigger": trigger, "run_id": run_id}
    append_jsonl(store.root / DECISIONS_FILE, rec)
    return rec


def decisions(store: ModelStore, symbol: str | None = None) -> list[dict]:
    """Every logged gate decision (of ``symbol``), oldest first."""
    from rooney_core.io import read_jsonl

    return [r for r in read_jsonl(store.root / DECISIONS_FILE) if symbol is None or r.get("symbol") == symbol]


def gates_failed(store: ModelStore, symbol: str, version: str, failed: list[str], *, by: str,
                 trigger: str | None = None, run_id: str | None = None, run_url: str | None = None):
    """A stored version failed its gates: log the decision and return (record, alert); the
    version stays out and production is what it was."""
    from rooney_core.monitoring.alerts import Alert, AlertKind

    rec = record_decision(store, symbol, version, "kept out: failed its gates", passed=False, failed_gates=failed,
                          by=by, trigger=trigger, run_id=run_id)
    alert = Alert(AlertKind.RETRAIN, f"{version} failed its gates ({', '.join(failed)}): not promoted; production "
                  f"stays {rec['production'] or 'none'}", instrument=symbol, run_url=run_url,
                  details={"trigger": trigger or "manual", "version": version, "failed gates": ", ".join(failed)})
    return rec, alert


def promote_and_log(store: ModelStore, symbol: str, *, by: str, paper_sessions: int = 0,
                    trigger: str | None = None, run_id: str | None = None, run_url: str | None = None):
    """``promote_newest_passing`` for one instrument, its decision logged. Returns (row,
    record, alert): the alert only for an automated retrain (``trigger``), since a promotion by
    hand is announced from the audit log (the promotion_alert sensor)."""
    from rooney_core.monitoring.alerts import Alert, AlertKind

    before = store.production(symbol)
    [row] = promote_newest_passing(store, [symbol], by=by, paper_sessions=paper_sessions)
    versions = store.list_versions(symbol)
    newest = versions[-1]["version"] if versions else None
    changed = bool(newest) and row["action"].startswith(("promoted", f"{newest} staged"))
    rec = record_decision(store, symbol, newest, row["action"], passed=True if changed else None, by=by,
                          trigger=trigger, run_id=run_id)
    alert = None
    if trigger:
        alert = Alert(AlertKind.RETRAIN, f"{row['action']}; production {row['production']} (was {before or 'none'})",
                      instrument=symbol, run_url=run_url, details={"trigger": trigger, "newest version": newest})
    return row, rec, alert
