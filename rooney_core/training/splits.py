"""Holdout and purged, embargoed, anchored walk-forward folds over candidate trades.

Time is what matters: a trade's label is known only at its exit (parity rule 7). So a
fold's training rows are trades that *exited* before the test fold starts, minus an
embargo of ``embargo_days`` trading days; a trade entered before the test start but exiting
inside it (or inside the embargo) is purged. The holdout (the last ``holdout_years``) is
never part of any fold; it starts at a session open (17:00 Chicago the evening before its
first trading date), and the same embargo separates the training trades' exits from it.

Inside a training set the veto threshold is chosen on a validation slice: the latest
``threshold_slice`` of its rows in time, with the rows it is fitted on purged and embargoed
the same way (out-of-bag probabilities are optimistic for overlapping rows with slow
features, and spread differently from a whole forest's predictions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # row positions into the training-period frame
    test: np.ndarray
    test_start: pd.Timestamp
    test_end: pd.Timestamp  # exclusive
    train_cutoff: pd.Timestamp  # training trades exit strictly before this
    purged: int  # rows dropped by purge + embargo


def holdout_start(cands: pd.DataFrame, holdout_years: float, calendar=None) -> pd.Timestamp:
    """The last ``holdout_years`` of the signals, starting at a session open: the open of the
    session holding the nominal start (17:00 the evening before on CME Globex), so the
    holdout never begins in the middle of a session."""
    last = pd.Timestamp(cands["signal_time"].max())
    nominal = (last - pd.DateOffset(days=int(round(holdout_years * 365.25)))).normalize()
    if calendar is None:
        return nominal
    day = calendar.trading_date(np.array([nominal.to_datetime64()]))
    return pd.Timestamp(calendar.session_open(day)[0])


def embargo_cutoff(start: pd.Timestamp, embargo_days: int) -> pd.Timestamp:
    """Training labels must be known (trades exited) before this: ``embargo_days`` business
    days before ``start``."""
    return pd.Timestamp(start - pd.offsets.BDay(embargo_days)) if embargo_days else pd.Timestamp(start)


def split_holdout(cands: pd.DataFrame, holdout_years: float, embargo_days: int = 0,
                  calendar=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """(training period, holdout, holdout start). Training trades must also *exit* before
    the holdout starts minus the embargo, so no label from the holdout period leaks into
    selection; trades in between belong to neither."""
    start = holdout_start(cands, holdout_years, calendar)
    cutoff = embargo_cutoff(start, embargo_days)
    train = cands[(cands["signal_time"] < start) & (cands["exit_time"] < cutoff)]
    hold = cands[cands["signal_time"] >= start]
    return train.reset_index(drop=True), hold.reset_index(drop=True), start


def threshold_split(signal: np.ndarray, exits: np.ndarray, fraction: float,
                    embargo_days: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit on, rows of the validation slice) among one training set's rows: the
    slice is the latest ``fraction`` of the time span; the fit rows exited before the slice
    starts minus the embargo."""
    sig = pd.DatetimeIndex(signal)
    if len(sig) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    t0, t1 = sig.min(), sig.max() + pd.Timedelta(seconds=1)
    start = t0 + (t1 - t0) * (1 - fraction)
    cutoff = embargo_cutoff(start, embargo_days)
    fit = np.flatnonzero((sig < start) & (pd.DatetimeIndex(exits) < cutoff))
    val = np.flatnonzero(sig >= start)
    return fit, val


def walk_forward_folds(train: pd.DataFrame, n_folds: int, embargo_days: int) -> list[Fold]:
    """Anchored folds: the period is cut into n_folds + 1 equal spans of time; fold k tests
    on span k + 1 and trains on every earlier trade that exited before the test start
    minus the embargo."""
    signal = pd.DatetimeIndex(train["signal_time"])
    exits = pd.DatetimeIndex(train["exit_time"])
    t0, t1 = signal.min(), signal.max() + pd.Timedelta(seconds=1)
    edges = [t0 + (t1 - t0) * k / (n_folds + 1) for k in range(n_folds + 2)]
    folds = []
    for k in range(n_folds):
        test_start, test_end = edges[k + 1], edges[k + 2]
        cutoff = test_start - pd.offsets.BDay(embargo_days) if embargo_days else test_start
        before = signal < test_start
        train_mask = before & (exits < cutoff)
        test_mask = (signal >= test_start) & (signal < test_end)
        folds.append(Fold(k, np.flatnonzero(train_mask), np.flatnonzero(test_mask), test_start, test_end,
                          pd.Timestamp(cutoff), int(before.sum() - train_mask.sum())))
    return folds
