"""Holdout and purged, embargoed, anchored walk-forward folds over candidate trades.

Time is what matters: a trade's label is known only at its exit (parity rule 7). So a
fold's training rows are trades that *exited* before the test fold starts, minus an
embargo of ``embargo_days`` trading days; a trade entered before the test start but exiting
inside it (or inside the embargo) is purged. The holdout (the last ``holdout_years``) is
never part of any fold.
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


def holdout_start(cands: pd.DataFrame, holdout_years: float) -> pd.Timestamp:
    last = pd.Timestamp(cands["signal_time"].max())
    return (last - pd.DateOffset(days=int(round(holdout_years * 365.25)))).normalize()


def split_holdout(cands: pd.DataFrame, holdout_years: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """(training period, holdout, holdout start). Training trades must also *exit* before
    the holdout starts, so no label from the holdout period leaks into selection."""
    start = holdout_start(cands, holdout_years)
    train = cands[(cands["signal_time"] < start) & (cands["exit_time"] < start)]
    hold = cands[cands["signal_time"] >= start]
    return train.reset_index(drop=True), hold.reset_index(drop=True), start


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
