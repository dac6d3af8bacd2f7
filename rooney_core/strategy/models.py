"""Veto models as the strategy sees them (loading one is the model store's job: rooney_core.model).

The strategy asks ``model.probability(i, values)`` for bar ``i`` whose feature row (in
``model.feature_names`` order) is ``values``. Two adapters over any estimator with a
scikit-learn ``predict_proba``:

* ``RowVeto`` predicts one row per call: what the live engine does at each bar.
* ``BatchedVeto`` predicts every possible entry bar of a backtest in one call up front
  (a Random Forest costs milliseconds per call but microseconds per row in a batch) and
  then answers by bar index. Same estimator, same feature rows, so the same numbers; a
  test checks that both adapters agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class RowVeto:
    def __init__(self, estimator, feature_names: list[str], threshold: float):
        self.estimator = estimator
        self.feature_names = list(feature_names)
        self.threshold = float(threshold)

    def probability(self, i: int, values: np.ndarray) -> float:
        return float(self.estimator.predict_proba(np.asarray(values, dtype=float)[None, :])[0, 1])


class BatchedVeto(RowVeto):
    def __init__(self, estimator, feature_names: list[str], threshold: float, features: pd.DataFrame,
                 rows: np.ndarray | None = None):
        super().__init__(estimator, feature_names, threshold)
        x = features[self.feature_names].to_numpy(dtype=float)
        wanted = np.ones(len(x), dtype=bool) if rows is None else rows.astype(bool)
        wanted &= ~np.isnan(x).any(axis=1)
        self._p = np.full(len(x), np.nan)
        if wanted.any():
            self._p[wanted] = estimator.predict_proba(x[wanted])[:, 1]

    def probability(self, i: int, values: np.ndarray) -> float:
        p = self._p[i]
        return float(p) if p == p else super().probability(i, values)
