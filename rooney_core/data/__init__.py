"""Raw data: reading and validating ``<SYMBOL>_bt.csv``, session bars, the lake (the sample market
is ``rooney_core.sample_market``, outside the production data package)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rooney_core.config import Instrument, Repairs
from rooney_core.data.bars import bars_summary, daily_bars, hourly_bars
from rooney_core.data.raw import MAX_YEAR, MIN_YEAR, RawBars, read_raw_bars


def csv_path(data_dir: str | Path, symbol: str) -> Path:
    return Path(data_dir) / f"{symbol}_bt.csv"


@dataclass
class SessionBars:
    raw: RawBars
    hourly: pd.DataFrame
    daily: pd.DataFrame
    summary: dict


def load_session_bars(
    data_dir: str | Path,
    instrument: Instrument,
    repairs: Repairs | None = None,
    *,
    min_year: int = MIN_YEAR,
    max_year: int = MAX_YEAR,
) -> SessionBars:
    """Read, validate and aggregate one instrument's raw file into hourly and daily bars.

    A missing, unreadable or non-regular file is a DataValidationError from read_raw_bars."""
    path = csv_path(data_dir, instrument.symbol)
    raw = read_raw_bars(path, instrument.calendar, repairs, min_year=min_year, max_year=max_year)
    hourly = hourly_bars(raw)
    daily = daily_bars(hourly, instrument.calendar)
    return SessionBars(raw, hourly, daily, bars_summary(hourly, daily, raw, instrument.calendar))


__all__ = ["SessionBars", "csv_path", "load_session_bars", "read_raw_bars", "hourly_bars", "daily_bars"]
