"""Veto models as the strategy sees them (loading one is the model store's job: rooney_core.model).

The decision core asks ``model.probability(values)`` for a feature row in
``model.feature_names`` order (a row, never a bar index). Two adapters over any estimator with a
scikit-learn ``predict_proba``:

* ``RowVeto`` predicts one row per call: what the live engine does at each bar.
* ``BatchedVeto`` predicts every possible entry bar of a backtest in one call up front
  (a Random Forest costs milliseconds per call but microseconds per row in a batch) and
  then answers each row from that table. Same estimator, same feature rows, so the same numbers; a
  test checks that both adapters agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier


class RowVeto:
    """Predicts one row per call: what the live engine does at each bar.

    A Random Forest's ``predict_proba`` costs ~50 ms for one row (validation and a joblib
    dispatch per tree); the live budget is 50 ms per bar. For a single-output forest the
    same arithmetic is done directly: the row as float32 (what the forest's validation
    makes of it), each tree's leaf proportions added in tree order into a float64
    accumulator, divided by the number of trees: bit for bit what ``predict_proba`` returns
    with one job (a test checks it on many rows), in about a millisecond."""

    def __init__(self, estimator, feature_names: list[str], threshold: float):
        self.estimator = estimator
        self.feature_names = list(feature_names)
        self.threshold = float(threshold)
        forest = isinstance(estimator, RandomForestClassifier) and getattr(estimator, "n_outputs_", 0) == 1
        self._trees = [e.tree_ for e in estimator.estimators_] if forest else None

    def probability(self, values: np.ndarray) -> float:
        if self._trees is None:
            return float(self.estimator.predict_proba(np.asarray(values, dtype=float)[None, :])[0, 1])
        x = np.ascontiguousarray(np.asarray(values, dtype=np.float64)[None, :], dtype=np.float32)
        n_classes = int(self.estimator.n_classes_)
        acc = np.zeros((1, n_classes), dtype=np.float64)
        for tree in self._trees:
            acc += tree.predict(x)[:, :n_classes]
        acc /= len(self._trees)
        return float(acc[0, 1])


class BatchedVeto(RowVeto):
    """Predicts the rows of every possible entry up front and answers a row from that table
    (keyed by the row's exact values, so it takes a feature row like any model and can never
    answer for another bar); a row it has not seen is predicted on its own."""

    def __init__(self, estimator, feature_names: list[str], threshold: float, features: pd.DataFrame,
                 rows: np.ndarray | None = None):
        super().__init__(estimator, feature_names, threshold)
        x = features[self.feature_names].to_numpy(dtype=float)
        wanted = np.ones(len(x), dtype=bool) if rows is None else rows.astype(bool)
        wanted &= ~np.isnan(x).any(axis=1)
        x = np.ascontiguousarray(x[wanted])
        p = estimator.predict_proba(x)[:, 1] if len(x) else np.empty(0)
        self._table = {row.tobytes(): float(pi) for row, pi in zip(x, p, strict=True)}

    def probability(self, values: np.ndarray) -> float:
        key = np.ascontiguousarray(values, dtype=float).tobytes()
        p = self._table.get(key)
        return p if p is not None else super().probability(values)
