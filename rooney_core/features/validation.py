"""Feature validation, the roadmap's Phase 1.5: are the features computed on history right?

For one month it compares, feature by feature, the values computed from our bars with those
computed from a second source of bars for the same period (another vendor's "overlap"
data) under the desk's +-5% rule, and checks RSI and ATR against TA-Lib.

The +-5% rule, made precise: a bar agrees when |ours - theirs| <= tolerance * scale, where
scale = max(|theirs|, std of theirs over the month). The floor keeps features that cross
zero (returns, z-scores) from failing on differences that are tiny next to their typical
size. A feature passes when at least ``min_agreement`` of the month's bars agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import talib

from rooney_core.features.registry import FeatureRegistry


@dataclass
class FeatureValidationReport:
    symbol: str
    month: str
    bars: int
    comparison: pd.DataFrame  # one row per feature
    talib: pd.DataFrame  # one row per TA-Lib check
    has_second_source: bool
    notes: list[str] = field(default_factory=list)

    @property
    def failing_features(self) -> list[str]:
        bad = self.comparison[self.comparison["status"] == "fail"]["feature"].tolist()
        bad += [f"talib:{r}" for r in self.talib[~self.talib["passed"]]["check"]]
        return bad

    @property
    def passed(self) -> bool:
        return not self.failing_features

    @property
    def code_disagrees(self) -> bool:
        """Our features differ from TA-Lib's on the same bars: our code is wrong (a second
        vendor's disagreement may be the vendor's data)."""
        return not bool(self.talib["passed"].all()) if len(self.talib) else False

    def summary(self) -> str:
        if self.passed:
            src = "second source and TA-Lib" if self.has_second_source else "TA-Lib (no second source)"
            return f"{self.symbol} {self.month}: all features agree with {src}"
        rows = self.comparison.set_index("feature")
        parts = []
        for name in self.failing_features:
            if name.startswith("talib:"):
                r = self.talib.set_index("check").loc[name[6:]]
                parts.append(f"{name} max abs diff {r['max_abs_diff']:.3g}")
            else:
                r = rows.loc[name]
                parts.append(
                    f"{name} agrees on {r['agreement']:.1%} of bars (max rel diff {r['max_rel_diff']:.3g})"
                )
        return f"{self.symbol} {self.month}: {len(parts)} disagreement(s): " + "; ".join(parts)


def last_full_month(hourly: pd.DataFrame, trading_dates: np.ndarray) -> str:
    """The last calendar month whose final business day has a session in the data."""
    last = pd.Timestamp(trading_dates[-1])
    month_end = last + pd.offsets.BMonthEnd(0)
    period = last.to_period("M")
    return str(period if last.normalize() >= month_end.normalize() else period - 1)


def month_mask(trading_dates: np.ndarray, month: str) -> np.ndarray:
    p = pd.Period(month, "M")
    d = trading_dates.astype("datetime64[D]")
    start = np.datetime64(p.start_time.date(), "D")
    end = np.datetime64(p.end_time.date(), "D")
    return (d >= start) & (d <= end)


def compare_features(
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    registry: FeatureRegistry,
    history_bars_theirs: int,
    tolerance: float,
    min_agreement: float,
    bars_per_session: int,
) -> pd.DataFrame:
    """Per-feature agreement of two feature frames over the same bars (the month)."""
    common = ours.index.intersection(theirs.index)
    rows = []
    for name in ours.columns:
        feature = registry[name]
        a = ours.loc[common, name].to_numpy(dtype=float)
        b = theirs.loc[common, name].to_numpy(dtype=float)
        need = feature.warmup.bars(bars_per_session)
        base = {"feature": name, "bars": int(len(common)), "warmup_bars": need}
        if history_bars_theirs < need:
            rows.append({**base, "status": "insufficient-history", "agreement": np.nan,
                         "max_rel_diff": np.nan, "median_rel_diff": np.nan})
            continue
        if np.isnan(a).all() and np.isnan(b).all():
            rows.append({**base, "status": "not-applicable", "agreement": np.nan,
                         "max_rel_diff": np.nan, "median_rel_diff": np.nan})
            continue
        both = ~np.isnan(a) & ~np.isnan(b)
        one_missing = np.isnan(a) ^ np.isnan(b)
        scale = np.maximum(np.abs(b), np.nanstd(b) if both.any() else 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(scale > 0, np.abs(a - b) / scale, np.where(a == b, 0.0, np.inf))
        ok = (both & (rel <= tolerance)) | (np.isnan(a) & np.isnan(b))
        n = len(common)
        agreement = float(ok.sum() / n) if n else np.nan
        rows.append(
            {
                **base,
                "status": "pass" if n and agreement >= min_agreement else "fail",
                "agreement": agreement,
                "max_rel_diff": float(np.max(rel[both])) if both.any() else np.nan,
                "median_rel_diff": float(np.median(rel[both])) if both.any() else np.nan,
                "one_side_missing": int(one_missing.sum()),
            }
        )
    return pd.DataFrame(rows)


def talib_checks(hourly: pd.DataFrame, features: pd.DataFrame, mask: np.ndarray, tol: float) -> pd.DataFrame:
    """Our RSI(2), RSI(14) and ATR(14)/close against TA-Lib on the same bars."""
    h, lo, c = (hourly[k].to_numpy(dtype=float) for k in ("high", "low", "close"))
    refs = {
        "rsi2": talib.RSI(c, 2),
        "rsi14": talib.RSI(c, 14),
        "atr14_pct": talib.ATR(h, lo, c, 14) / c,
    }
    rows = []
    for name, ref in refs.items():
        if name not in features.columns:
            continue
        ours = features[name].to_numpy(dtype=float)[mask]
        diff = np.abs(ours - ref[mask])
        valid = ~np.isnan(diff)
        max_diff = float(diff[valid].max()) if valid.any() else np.nan
        rows.append({"check": name, "bars": int(valid.sum()), "max_abs_diff": max_diff,
                     "passed": bool(valid.any() and max_diff <= tol)})
    return pd.DataFrame(rows, columns=["check", "bars", "max_abs_diff", "passed"])


def validate_month(
    symbol: str,
    registry: FeatureRegistry,
    names: list[str] | str,
    ours_inputs,
    theirs_inputs=None,
    month: str | None = None,
    tolerance: float = 0.05,
    min_agreement: float = 0.95,
    talib_tolerance: float = 1e-9,
) -> tuple[FeatureValidationReport, pd.DataFrame]:
    """Validate one month of ``symbol``'s features. Returns the report and our features
    for the month (for plots). ``*_inputs`` are FeatureInputs of each source."""
    ours_all = registry.compute(ours_inputs, names)
    tdates = ours_inputs.trading_dates
    month = month or last_full_month(ours_inputs.hourly, tdates)
    mask = month_mask(tdates, month)
    notes: list[str] = []
    if not mask.any():
        raise ValueError(f"{symbol}: no bars in month {month} (data covers "
                         f"{ours_inputs.hourly.index[0]} .. {ours_inputs.hourly.index[-1]})")
    ours_month = ours_all[mask]
    if theirs_inputs is not None:
        theirs_all = registry.compute(theirs_inputs, names)
        tmask = month_mask(theirs_inputs.trading_dates, month)
        first_month_bar = np.flatnonzero(tmask)
        history = int(first_month_bar[0]) if len(first_month_bar) else 0
        if not tmask.any():
            notes.append(f"the second source has no bars in {month}")
        comparison = compare_features(
            ours_month, theirs_all[tmask], registry, history, tolerance, min_agreement,
            ours_inputs.calendar.hourly_bars,
        )
    else:
        notes.append("no second source configured: only the TA-Lib comparison ran")
        comparison = pd.DataFrame(
            {"feature": ours_month.columns, "status": "no-second-source", "bars": int(mask.sum())}
        )
    checks = talib_checks(ours_inputs.hourly, ours_all, mask, talib_tolerance)
    report = FeatureValidationReport(
        symbol=symbol,
        month=month,
        bars=int(mask.sum()),
        comparison=comparison,
        talib=checks,
        has_second_source=theirs_inputs is not None,
        notes=notes,
    )
    return report, ours_month
