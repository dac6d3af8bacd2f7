"""Raw data: reading and validating ``<SYMBOL>_bt.csv``, session bars, the lake, sample data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rooney_core.config import Instrument, Repairs
from rooney_core.data.bars import bars_summary, daily_bars, hourly_bars
from rooney_core.data.raw import RawBars, read_raw_bars
from rooney_core.errors import DataProblem, DataValidationError


def csv_path(data_dir: str | Path, symbol: str) -> Path:
    return Path(data_dir) / f"{symbol}_bt.csv"


@dataclass
class SessionBars:
    raw: RawBars
    hourly: pd.DataFrame
    daily: pd.DataFrame
    summary: dict


def load_session_bars(data_dir: str | Path, instrument: Instrument, repairs: Repairs | None = None) -> SessionBars:
    """Read, validate and aggregate one instrument's raw file into hourly and daily bars."""
    path = csv_path(data_dir, instrument.symbol)
    if not path.is_file():
        raise DataValidationError(
            str(path),
            [DataProblem(str(path), "missing-file",
                         f"no raw file for {instrument.symbol} (expected {path.name} in {Path(data_dir)})")],
        )
    raw = read_raw_bars(path, instrument.calendar, repairs)
    hourly = hourly_bars(raw)
    daily = daily_bars(hourly, instrument.calendar)
    return SessionBars(raw, hourly, daily, bars_summary(hourly, daily, raw, instrument.calendar))


__all__ = ["SessionBars", "csv_path", "load_session_bars", "read_raw_bars", "hourly_bars", "daily_bars"]
