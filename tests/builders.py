"""Builders of tiny deterministic bar series on the real session calendar."""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd

from rooney_core.sessions import SessionCalendar

GLOBEX = SessionCalendar("America/Chicago", time(17, 0), time(16, 0))


def globex_hours(start: str, n_sessions: int) -> np.ndarray:
    """Hourly bar starts of ``n_sessions`` consecutive weekday Globex sessions."""
    days = pd.bdate_range(start, periods=n_sessions).values.astype("datetime64[D]")
    offsets = np.r_[np.arange(-7, 0), np.arange(0, 16)].astype("timedelta64[h]")  # 17:00 prev .. 15:00
    return (days.astype("datetime64[h]")[:, None] + offsets[None, :]).ravel().astype("datetime64[ns]")


def make_hourly(
    n_sessions: int = 60,
    seed: int = 0,
    start: str = "2020-01-06",
    price: float = 4000.0,
    tick: float = 0.25,
    drop_frac: float = 0.02,
    shocks: np.ndarray | None = None,
) -> pd.DataFrame:
    """Hourly OHLCV on the tick grid with a few missing bars (gaps) and a flat bar or two."""
    rng = np.random.default_rng(seed)
    ts = globex_hours(start, n_sessions)
    n = len(ts)
    z = rng.standard_normal(n) if shocks is None else shocks[:n]
    vol = 0.002 * np.exp(0.5 * np.sin(np.arange(n) / 200.0))
    close = price * np.exp(np.cumsum(vol * z))
    open_ = np.r_[price, close[:-1]] * np.exp(0.0003 * rng.standard_normal(n))
    hi = np.maximum(open_, close) * (1 + np.abs(rng.standard_normal(n)) * vol / 2)
    lo = np.minimum(open_, close) * (1 - np.abs(rng.standard_normal(n)) * vol / 2)
    q = lambda x: np.round(x / tick) * tick  # noqa: E731
    df = pd.DataFrame(
        {
            "open": q(open_),
            "high": q(hi),
            "low": q(lo),
            "close": q(close),
            "volume": rng.integers(0, 5000, n).astype(float),
        },
        index=pd.DatetimeIndex(ts, name="timestamp"),
    )
    df["high"] = df[["open", "high", "close"]].max(axis=1)
    df["low"] = df[["open", "low", "close"]].min(axis=1)
    flat = rng.choice(n, size=max(1, n // 500), replace=False)
    for col in ("open", "high", "low"):
        df.iloc[flat, df.columns.get_loc(col)] = df["close"].iloc[flat].to_numpy()
    keep = rng.random(n) >= drop_frac
    keep[0] = True
    return df[keep]


def make_pair(own: pd.DataFrame, seed: int = 1, corr: float = 0.8, drop_frac: float = 0.03) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_sessions = len(np.unique(GLOBEX.trading_date(own.index.values)))
    start = str(GLOBEX.trading_date(own.index.values[:1])[0])
    base = np.log(own["close"]).diff().fillna(0).to_numpy() / 0.002
    shocks = np.full(n_sessions * 23, np.nan)
    full = globex_hours(start, n_sessions)
    pos = np.searchsorted(full, own.index.values)
    shocks[:] = rng.standard_normal(len(full))
    shocks[pos] = corr * base + np.sqrt(1 - corr**2) * shocks[pos]
    return make_hourly(n_sessions, seed=seed + 100, start=start, price=20000.0, shocks=shocks, drop_frac=drop_frac)


def write_gate_report(store, name: str, passed: bool = True, failing: str = "out_of_sample") -> None:
    """Record a gate report for a stored version: every gate passed, or ``failing`` failed
    (for promotion tests that are not about the gates themselves)."""
    import json

    from rooney_core.model.gates import GATES

    gates = [{"name": g, "passed": passed or g != failing, "value": None, "threshold": None, "detail": "test"}
             for g in GATES]
    report = {"symbol": name.split("_v")[0], "version": name, "content_hash": "test", "created_at": "test",
              "passed": passed, "gates": gates}
    store.write_gate_report(name, json.dumps(report), passed)


def realdata_dir():
    """The real-data folder: $ROONEY_REALDATA, else shared/realdata beside the repository (CI's
    copy), else the workplace's /work/shared/realdata. Read in place, never copied."""
    import os
    from pathlib import Path

    env = os.environ.get("ROONEY_REALDATA")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "realdata"
    return beside if beside.is_dir() else Path("/work/shared/realdata")
