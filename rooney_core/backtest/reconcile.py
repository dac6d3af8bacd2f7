"""Reconcile our backtest's trade list with a reference list (the desk's notebooks, TradingView).

Times are naive exchange-local timestamps; prices are in instrument points; differences are
reported as ours minus reference, prices in ticks, times as Timedelta, P&L in dollars.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rooney_core.config import ReconciliationSection
from rooney_core.errors import RooneyError
from rooney_core.formats import money

# Canonical column -> accepted spellings, compared after lower-casing and dropping non-alphanumerics
# ("Entry Time", "entry_time" and "ENTRY-TIME" all become "entrytime").
_ALIASES: dict[str, tuple[str, ...]] = {
    "entry_time": ("entrytime", "entrydate", "entrydatetime", "entry", "opentime", "timein"),
    "exit_time": ("exittime", "exitdate", "exitdatetime", "exit", "closetime", "timeout"),
    "entry_price": ("entryprice", "entrypx", "openprice", "pricein"),
    "exit_price": ("exitprice", "exitpx", "closeprice", "priceout"),
    "pnl": ("pnl", "pl", "pnlnet", "netpnl", "netpl", "profit", "profitusd", "netprofit", "pnlusd"),
    "contracts": ("contracts", "contract", "qty", "quantity", "size"),
}
_REQUIRED = ("entry_time", "exit_time", "entry_price", "exit_price")
_EPS = 1e-9  # float noise when comparing tick differences against the tolerance


class ReconciliationError(RooneyError):
    """A trade list cannot be read or compared (names the file and column)."""


def _key(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _times(s: pd.Series, where: str, col: str, timezone: str | None) -> pd.Series:
    try:  # "mixed": exports mix "10:00" and "10:00:00"; trade lists are small, so per-row parsing is cheap
        t = pd.to_datetime(s, format="mixed")
    except (ValueError, TypeError):
        try:  # offsets that change across DST only parse as UTC
            t = pd.to_datetime(s, format="mixed", utc=True)
        except (ValueError, TypeError) as exc:
            raise ReconciliationError(f"{where}: column {col!r}: unparseable timestamp ({exc})") from exc
    if t.dt.tz is not None:
        if timezone is None:
            raise ReconciliationError(
                f"{where}: column {col!r} has timezone-aware times ({t.dt.tz}); times must be naive "
                "exchange-local, or pass timezone='<exchange tz>' to convert them")
        t = t.dt.tz_convert(timezone).dt.tz_localize(None)
    if t.isna().any():
        raise ReconciliationError(f"{where}: column {col!r}: missing timestamp in row {int(t.isna().argmax())}")
    return t


def read_reference_trades(path: str | os.PathLike[str], timezone: str | None = None) -> pd.DataFrame:
    """Read a reference trade CSV into columns entry_time, exit_time (naive exchange-local),
    entry_price, exit_price (points), pnl ($, NaN when absent), contracts (int, default 1),
    sorted by entry_time. Column names are case-insensitive and common aliases are accepted.
    Timezone-aware times are an error unless `timezone` (the exchange's, e.g. "America/Chicago")
    is given, in which case they are converted to it and made naive."""
    where = str(path)
    try:
        raw = pd.read_csv(path, skipinitialspace=True)
    except FileNotFoundError as exc:
        raise ReconciliationError(f"{where}: reference trade list not found") from exc
    found: dict[str, str] = {}
    for col in raw.columns:
        for canon, aliases in _ALIASES.items():
            if _key(col) in aliases:
                if canon in found:
                    raise ReconciliationError(f"{where}: columns {found[canon]!r} and {col!r} both mean {canon!r}")
                found[canon] = col
    for canon in _REQUIRED:
        if canon not in found:
            raise ReconciliationError(
                f"{where}: missing column {canon!r} (accepted names: {', '.join(_ALIASES[canon])}); "
                f"columns found: {list(raw.columns)}")
    out = pd.DataFrame({c: _times(raw[found[c]], where, found[c], timezone) for c in ("entry_time", "exit_time")})
    for canon in ("entry_price", "exit_price", "pnl", "contracts"):
        if canon not in found:
            continue
        num = pd.to_numeric(raw[found[canon]], errors="coerce")
        bad = num.isna() & raw[found[canon]].notna()
        if bad.any() or (canon in _REQUIRED and num.isna().any()):
            row = int((bad | (num.isna() if canon in _REQUIRED else bad)).argmax())
            raise ReconciliationError(f"{where}: column {found[canon]!r}: not a number in row {row}")
        out[canon] = num.astype(float)
    out["pnl"] = out["pnl"] if "pnl" in out else np.nan
    out["contracts"] = out["contracts"].fillna(1).astype(int) if "contracts" in out else 1
    return out.sort_values("entry_time", kind="stable").reset_index(drop=True)


@dataclass
class ReconciliationReport:
    """Outcome of `reconcile`. `matched` holds one row per pair (ours minus reference);
    `only_ours` / `only_reference` hold the unpaired rows of each input."""

    matched: pd.DataFrame
    only_ours: pd.DataFrame
    only_reference: pd.DataFrame
    summary: dict[str, object]
    tolerance: ReconciliationSection
    symbol: str = ""

    @property
    def passed(self) -> bool:
        """No one-sided trade, every pair identical, total P&L within the relative tolerance."""
        s = self.summary
        return (s["only_ours"] == 0 and s["only_reference"] == 0 and s["matched_but_different"] == 0
                and abs(float(s["return_difference"])) <= self.tolerance.return_tolerance + _EPS)

    def describe(self, examples: int = 2) -> str:
        """A short human summary naming the first `examples` discrepancies of each kind."""
        s, m, tol = self.summary, self.matched, self.tolerance
        ts = lambda t: pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")
        parts = [f"{s['trades_ours']} ours / {s['trades_reference']} reference, {s['matched']} matched"]
        for frame, side in ((self.only_reference, "reference"), (self.only_ours, "ours")):
            if len(frame):
                firsts = ", ".join(ts(t) for t in frame["entry_time"].iloc[:examples])
                parts.append(f"{len(frame)} trade(s) only in {side} (first entries: {firsts})")
        shifted = m[m["exit_shift"].abs() > pd.Timedelta(tol.time_tolerance)]
        if len(shifted):
            ex = ", ".join(f"{ts(r.ref_exit_time)} -> {ts(r.our_exit_time)} ({_td(r.exit_shift)})"
                           for r in shifted.iloc[:examples].itertuples())
            parts.append(f"{len(shifted)} exit(s) shifted: {ex}")
        for leg in ("entry", "exit"):
            off = m[m[f"{leg}_diff_ticks"].abs() > tol.price_tolerance_ticks + _EPS]
            if len(off):
                ex = ", ".join(f"{ts(r.our_entry_time)} {getattr(r, f'{leg}_diff_ticks'):+.1f} tick"
                               for r in off.iloc[:examples].itertuples())
                parts.append(f"{len(off)} {leg} price(s) off: {ex}")
        parts.append(f"total P&L ours {money(s['pnl_ours'], cents=True)} vs reference "
                     f"{money(s['pnl_reference'], cents=True)} "
                     f"({float(s['return_difference']):+.2%})")
        head = f"{self.symbol}: " if self.symbol else ""
        tail = "".join(f" Note: {n}" for n in s["notes"])  # type: ignore[attr-defined]
        return f"{head}{'PASSED' if self.passed else 'FAILED'}: " + "; ".join(parts) + "." + tail


def _td(t: pd.Timedelta) -> str:
    sign, t = ("-" if t < pd.Timedelta(0) else "+"), abs(t)
    h, rem = divmod(int(t.total_seconds()), 3600)
    return sign + (f"{h}h" if h else "") + (f"{rem // 60}min" if rem // 60 or not h else "")


def reconcile(ours: pd.DataFrame, reference: pd.DataFrame, tick_size: float, point_value: float,
              tolerance: ReconciliationSection, symbol: str = "") -> ReconciliationReport:
    """Pair our trades with the reference's and compare them.

    `ours` needs entry_time, exit_time, entry_price, exit_price, contracts, pnl_net ($, after costs);
    `reference` is `read_reference_trades` output (pnl/contracts optional). Pairs are one-to-one by
    entry time within `tolerance.time_tolerance`, nearest first (ties in time order). A pair is
    identical when the exit shift is within the time tolerance, both price differences are within
    `price_tolerance_ticks` ticks and contracts agree. `tick_size` is in points, `point_value` in $/point.
    """
    need = ("entry_time", "exit_time", "entry_price", "exit_price", "contracts", "pnl_net")
    missing = [c for c in need if c not in ours.columns]
    if missing:
        raise ReconciliationError(f"our trades: missing column(s) {missing}")
    for name, f in (("our trades", ours), ("reference trades", reference)):
        for c in ("entry_time", "exit_time"):
            if not pd.api.types.is_datetime64_dtype(f[c]) or isinstance(f[c].dtype, pd.DatetimeTZDtype):
                raise ReconciliationError(f"{name}: column {c!r} must be naive exchange-local datetime64, "
                                          f"got {f[c].dtype}")
    tol = pd.Timedelta(tolerance.time_tolerance)
    a = ours.sort_values("entry_time", kind="stable")
    b = reference.sort_values("entry_time", kind="stable").copy()
    b["contracts"] = b["contracts"].astype(int) if "contracts" in b else 1
    gross = (b["exit_price"] - b["entry_price"]) * point_value * b["contracts"]  # long only, no costs
    ref_pnl = b["pnl"].fillna(gross) if "pnl" in b else gross
    notes: list[str] = []
    if (n_gross := int(b["pnl"].isna().sum()) if "pnl" in b else len(b)):
        notes.append(f"{n_gross} reference trade(s) have no pnl: their P&L is gross, from prices x point value "
                     "x contracts, without costs, while ours is net.")

    # Candidate pairs: every reference entry within the tolerance window of each of our entries.
    ta, tb = a["entry_time"].to_numpy("datetime64[ns]"), b["entry_time"].to_numpy("datetime64[ns]")
    w = tol.to_timedelta64()
    lo, hi = np.searchsorted(tb, ta - w, "left"), np.searchsorted(tb, ta + w, "right")
    ia = np.repeat(np.arange(len(a)), hi - lo)
    ib = np.concatenate([np.arange(x, y) for x, y in zip(lo, hi, strict=True)] or [np.array([], int)])
    gap = np.abs(tb[ib] - ta[ia]) if len(ia) else np.array([], "timedelta64[ns]")
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for k in np.lexsort((ta[ia], gap)):  # nearest first; equal gaps in time order
        i, j = int(ia[k]), int(ib[k])
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    pairs.sort()
    pi, pj = [p[0] for p in pairs], [p[1] for p in pairs]
    A, B = a.iloc[pi].reset_index(drop=True), b.iloc[pj].reset_index(drop=True)
    m = pd.DataFrame({"ours_index": a.index[pi], "reference_index": b.index[pj]})
    for c in ("entry_time", "exit_time", "entry_price", "exit_price", "contracts"):
        m[f"our_{c}"], m[f"ref_{c}"] = A[c].to_numpy(), B[c].to_numpy()
    m["our_pnl"], m["ref_pnl"] = A["pnl_net"].to_numpy(dtype=float), ref_pnl.iloc[pj].to_numpy(dtype=float)
    if "exit_reason" in A:
        m["exit_reason"] = A["exit_reason"].to_numpy()
    m["entry_shift"] = m["our_entry_time"] - m["ref_entry_time"]
    m["exit_shift"] = m["our_exit_time"] - m["ref_exit_time"]
    for leg in ("entry", "exit"):  # rounded: a price over a tick like 6E's 0.00005 carries float noise
        m[f"{leg}_diff_ticks"] = ((m[f"our_{leg}_price"] - m[f"ref_{leg}_price"]) / tick_size).round(6)
    m["pnl_diff"] = m["our_pnl"] - m["ref_pnl"]
    m["identical"] = ((m["exit_shift"].abs() <= tol)
                      & (m["entry_diff_ticks"].abs() <= tolerance.price_tolerance_ticks + _EPS)
                      & (m["exit_diff_ticks"].abs() <= tolerance.price_tolerance_ticks + _EPS)
                      & (m["our_contracts"] == m["ref_contracts"]))

    pnl_a, pnl_b = float(a["pnl_net"].sum()), float(ref_pnl.sum())
    rel = (pnl_a - pnl_b) / abs(pnl_b) if pnl_b else (0.0 if pnl_a == 0 else float("inf"))
    only_a = a.iloc[sorted(set(range(len(a))) - used_a)]
    only_b = b.iloc[sorted(set(range(len(b))) - used_b)]
    summary: dict[str, object] = {
        "trades_ours": len(a), "trades_reference": len(b), "matched": len(m),
        "only_ours": len(only_a), "only_reference": len(only_b),
        "matched_but_different": int((~m["identical"]).sum()),
        "pnl_ours": pnl_a, "pnl_reference": pnl_b, "reference_pnl_gross": bool(notes),
        "return_difference": rel,
        "max_abs_entry_diff_ticks": float(m["entry_diff_ticks"].abs().max()) if len(m) else 0.0,
        "max_abs_exit_diff_ticks": float(m["exit_diff_ticks"].abs().max()) if len(m) else 0.0,
        "notes": notes,
    }
    return ReconciliationReport(m, only_a, only_b, summary, tolerance, symbol)
