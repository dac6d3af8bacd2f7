"""The prediction log as monitoring reads it: one tidy row per signal, and its feature rows.

``rooney_core.live.predictions.predictions(root)`` gives one row per signal with its fill and
outcome joined, as logged (times as written, feature vectors as lists). ``signal_rows``
turns that into typed columns and says what became of each signal:

* ``taken``: the engine entered (decision "enter");
* ``vetoed``: the *model* refused it (a probability below its threshold). A signal skipped
  for another reason (a missing or warming-up feature, no model deployed, the portfolio's
  rules) is neither taken nor vetoed: the model did not decide it;
* ``resolved``: a taken trade that has exited (its ``pnl_net`` is known).

``feature_frame`` unpacks the logged feature vectors by name (NaN where the live engine had
no value), for drift, NaN and out-of-distribution checks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

SIGNAL_COLUMNS = ["prediction_id", "instrument", "model_version", "bar_time", "probability", "threshold",
                  "decision", "reason", "taken", "vetoed", "resolved", "exit_time", "pnl_net"]


def _times(values: pd.Series) -> pd.Series:
    """Naive exchange-local timestamps (the log writes them naive; a reader may add UTC)."""
    t = pd.to_datetime(values)
    if getattr(t.dt, "tz", None) is not None:
        t = t.dt.tz_localize(None)
    return t.astype("datetime64[ns]")


def signal_rows(preds: pd.DataFrame) -> pd.DataFrame:
    """One typed row per logged signal (``SIGNAL_COLUMNS``), in bar-time order."""
    if preds is None or len(preds) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
            ("prediction_id", object), ("instrument", object), ("model_version", object),
            ("bar_time", "datetime64[ns]"), ("probability", float), ("threshold", float), ("decision", object),
            ("reason", object), ("taken", bool), ("vetoed", bool), ("resolved", bool),
            ("exit_time", "datetime64[ns]"), ("pnl_net", float))})
    out = pd.DataFrame({"prediction_id": preds["prediction_id"].astype(object),
                        "instrument": preds["instrument"].astype(object)})
    out["model_version"] = preds["model_version"].astype(object) if "model_version" in preds else None
    out["bar_time"] = _times(preds["bar_time"])
    for col in ("probability", "threshold", "pnl_net"):
        out[col] = pd.to_numeric(preds[col], errors="coerce").astype(float) if col in preds else np.nan
    out["decision"] = preds["decision"].astype(object)
    out["reason"] = preds["reason"].astype(object) if "reason" in preds else None
    out["exit_time"] = _times(preds["exit_time"]) if "exit_time" in preds else pd.NaT
    out["taken"] = out["decision"].eq("enter")
    out["vetoed"] = (out["decision"].eq("skip") & out["probability"].notna() & out["threshold"].notna()
                     & (out["probability"] < out["threshold"]))
    out["resolved"] = out["taken"] & out["pnl_net"].notna()
    return out[SIGNAL_COLUMNS].sort_values(["instrument", "bar_time"], kind="stable").reset_index(drop=True)


def _vector(v: object) -> np.ndarray:
    """A logged feature vector as floats, NaN where the log holds null (lists, arrays or the
    masked arrays DuckDB returns)."""
    if v is None or (isinstance(v, float) and v != v):
        return np.empty(0)
    if isinstance(v, np.ma.MaskedArray):
        return np.ma.filled(v.astype(float), np.nan)
    return np.array([np.nan if x is None else x for x in v], dtype=float)


def feature_frame(preds: pd.DataFrame, names: Iterable[str] | None = None) -> pd.DataFrame:
    """The logged feature rows by name, indexed by bar time (one row per signal, log order).
    ``names`` picks (and orders) columns; a name a row did not log is NaN there."""
    rows = []
    for fnames, values in zip(preds["feature_names"], preds["features"], strict=True):
        vec = _vector(values)
        keys = [] if fnames is None else list(fnames)
        rows.append(dict(zip(keys, vec, strict=False)) if len(keys) == len(vec) else {})
    frame = pd.DataFrame(rows, index=pd.DatetimeIndex(_times(preds["bar_time"]), name="bar_time"))
    if names is not None:
        frame = frame.reindex(columns=list(names))
    return frame.astype(float)
