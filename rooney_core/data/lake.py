"""The data lake: one parquet file per (dataset, instrument), written atomically.

One file per partition means parallel partitions never share a file, so there are no locks
(R4); each write goes to a temporary file in the same directory and is renamed into place,
so a reader sees either the old file or the new one, never half of either (R2);
the mechanism is ``rooney_core.io``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from rooney_core.io import atomic_path


def write_parquet_atomic(df: pd.DataFrame, target: Path) -> Path:
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, engine="pyarrow", compression="zstd", index=True)
    return Path(target)


def write_arrow_atomic(table, target: Path) -> Path:
    import pyarrow.parquet as pq

    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(target)


class Lake:
    """Paths of the datasets the pipeline stores, by instrument."""

    DATASETS = ("raw", "hourly", "daily", "features", "candidates", "backtest_trades", "backtest_equity")

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, dataset: str, symbol: str) -> Path:
        if dataset not in self.DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; known: {self.DATASETS}")
        return self.root / dataset / f"{symbol}.parquet"

    def write(self, dataset: str, symbol: str, df: pd.DataFrame) -> Path:
        return write_parquet_atomic(df, self.path(dataset, symbol))

    def write_arrow(self, dataset: str, symbol: str, table) -> Path:
        return write_arrow_atomic(table, self.path(dataset, symbol))

    def read_arrow(self, dataset: str, symbol: str):
        import pyarrow.parquet as pq

        p = self.path(dataset, symbol)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no {dataset} data for {symbol}; materialise the upstream asset first")
        return pq.read_table(p)

    def read(self, dataset: str, symbol: str) -> pd.DataFrame:
        p = self.path(dataset, symbol)
        if not p.is_file():
            raise FileNotFoundError(
                f"{p}: no {dataset} data for {symbol}; materialise the upstream asset first"
            )
        return pd.read_parquet(p, engine="pyarrow")

    def exists(self, dataset: str, symbol: str) -> bool:
        return self.path(dataset, symbol).is_file()
