"""Turning rooney_core results into Dagster metadata (tables, plots, previews)."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd


def table(df: pd.DataFrame, max_rows: int = 20) -> dg.MetadataValue:
    """A Dagster table of the first rows of ``df`` (index included)."""
    df = df.head(max_rows).reset_index()
    cols = []
    for name, dtype in df.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            t = "bool"
        elif pd.api.types.is_integer_dtype(dtype):
            t = "int"
        elif pd.api.types.is_float_dtype(dtype):
            t = "float"
        else:
            t = "string"
        cols.append(dg.TableColumn(str(name), t))
    records = []
    for row in df.itertuples(index=False):
        rec = {}
        for col, v in zip(df.columns, row, strict=True):
            if isinstance(v, float | np.floating):
                rec[str(col)] = None if np.isnan(v) else float(round(float(v), 8))
            elif isinstance(v, bool | np.bool_):
                rec[str(col)] = bool(v)
            elif isinstance(v, int | np.integer):
                rec[str(col)] = int(v)
            else:
                rec[str(col)] = str(v)
        records.append(dg.TableRecord(rec))
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=cols))


def png(data: bytes, save_to: Path | None = None, title: str = "plot") -> dg.MetadataValue:
    """Embed a PNG in markdown (shown inline in the UI); optionally also save it."""
    if save_to is not None:
        from rooney_core.io import write_bytes_atomic

        write_bytes_atomic(data, save_to)
    b64 = base64.b64encode(data).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{b64})")


def plain(value):
    """Make numpy scalars and containers JSON-friendly for metadata."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    return value
