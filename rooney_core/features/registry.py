"""The FeatureRegistry: named, causal, vectorised features with declared warm-ups.

A feature is one function ``f(x: FeatureInputs) -> np.ndarray`` returning one value per
hourly bar of the instrument, as of that bar's close. Training, backtests and the live
engine all call the same function; the live engine calls it on a rolling buffer at least
``warmup_bars()`` long, and a test proves that the value is then the full-history value.

Time alignment (parity rule 1):
* H: the instrument's hourly bars; the value at bar t uses bars <= t.
* D: daily bars of the last *completed* session: sessions whose trading date is before
  bar t's trading date (a bar never sees its own, unfinished session).
* P: the paired instrument's hourly bars, as of time: the last pair bar whose start is
  <= bar t's start and no older than ``pair_max_staleness``; older counts as missing (NaN).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from rooney_core.data.bars import daily_bars
from rooney_core.errors import FeatureError
from rooney_core.sessions import SessionCalendar

REGISTRY_VERSION = "1"


@dataclass(frozen=True)
class Warmup:
    """History a feature needs: hourly bars of its own (or the pair's) series and
    completed daily sessions. The live buffer length follows from both."""

    hourly: int = 0
    daily: int = 0

    def bars(self, bars_per_session: int) -> int:
        """Hourly bars that always cover ``hourly`` bars and ``daily`` completed sessions
        (one extra session for the current, unfinished one and one for a partial oldest)."""
        daily_bars_needed = (self.daily + 2) * bars_per_session if self.daily else 0
        return max(self.hourly, daily_bars_needed, 1)


class FeatureInputs:
    """Bars a feature may look at, with the alignment helpers every feature shares."""

    def __init__(
        self,
        hourly: pd.DataFrame,
        calendar: SessionCalendar,
        pair_hourly: pd.DataFrame | None = None,
        pair_max_staleness: str | pd.Timedelta = "2h",
    ):
        self.hourly = hourly
        self.calendar = calendar
        self.pair_hourly = pair_hourly
        self.pair_max_staleness = pd.Timedelta(pair_max_staleness)

    def __len__(self) -> int:
        return len(self.hourly)

    # -- own hourly ------------------------------------------------------------------------
    def h(self, column: str) -> np.ndarray:
        return self.hourly[column].to_numpy(dtype=np.float64)

    @cached_property
    def timestamps(self) -> np.ndarray:
        return self.hourly.index.values

    @cached_property
    def trading_dates(self) -> np.ndarray:
        return self.calendar.trading_date(self.timestamps)

    # -- daily, last completed session -----------------------------------------------------
    @cached_property
    def daily(self) -> pd.DataFrame:
        return daily_bars(self.hourly, self.calendar)

    def d(self, column: str) -> np.ndarray:
        return self.daily[column].to_numpy(dtype=np.float64)

    @cached_property
    def _daily_pos(self) -> np.ndarray:
        """Index into ``daily`` of the last session completed before each hourly bar."""
        dates = self.daily.index.values.astype("datetime64[D]")
        return np.searchsorted(dates, self.trading_dates, side="left") - 1

    def align_daily(self, values: np.ndarray) -> np.ndarray:
        pos = self._daily_pos
        out = np.full(len(pos), np.nan)
        ok = pos >= 0
        out[ok] = values[pos[ok]]
        return out

    # -- pair, as of time --------------------------------------------------------------------
    @property
    def has_pair(self) -> bool:
        return self.pair_hourly is not None and len(self.pair_hourly) > 0

    def p(self, column: str) -> np.ndarray:
        if not self.has_pair:
            return np.full(0, np.nan)
        return self.pair_hourly[column].to_numpy(dtype=np.float64)

    @cached_property
    def _pair_pos(self) -> np.ndarray:
        if not self.has_pair:
            return np.full(len(self), -1)
        pts = self.pair_hourly.index.values
        pos = np.searchsorted(pts, self.timestamps, side="right") - 1
        stale = np.ones(len(pos), dtype=bool)
        ok = pos >= 0
        stale[ok] = (self.timestamps[ok] - pts[pos[ok]]) > self.pair_max_staleness.to_timedelta64()
        pos[stale] = -1
        return pos

    def align_pair(self, values: np.ndarray) -> np.ndarray:
        """Pair values (one per pair bar) as of each own bar; NaN when missing or stale."""
        pos = self._pair_pos
        out = np.full(len(pos), np.nan)
        ok = pos >= 0
        if ok.any():
            out[ok] = values[pos[ok]]
        return out


FeatureFn = Callable[[FeatureInputs], np.ndarray]


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    timeframe: str  # "H", "D", "P" or "calendar"
    fn: FeatureFn
    warmup: Warmup
    description: str
    needs_pair: bool = False

    def compute(self, x: FeatureInputs) -> np.ndarray:
        if self.needs_pair and not x.has_pair:
            return np.full(len(x), np.nan)
        out = np.asarray(self.fn(x), dtype=np.float64)
        if out.shape != (len(x),):
            raise FeatureError(f"feature {self.name!r} returned shape {out.shape}, expected ({len(x)},)")
        return out


class FeatureRegistry:
    """Name -> Feature. ``register`` is used as a decorator in ``definitions.py``."""

    def __init__(self) -> None:
        self._features: dict[str, Feature] = {}

    def register(
        self,
        name: str,
        *,
        group: str,
        timeframe: str,
        warmup: Warmup,
        description: str,
        needs_pair: bool = False,
    ) -> Callable[[FeatureFn], FeatureFn]:
        def deco(fn: FeatureFn) -> FeatureFn:
            if name in self._features:
                raise FeatureError(f"feature {name!r} registered twice")
            self._features[name] = Feature(name, group, timeframe, fn, warmup, description, needs_pair)
            return fn

        return deco

    def __contains__(self, name: object) -> bool:
        return name in self._features

    def __getitem__(self, name: str) -> Feature:
        try:
            return self._features[name]
        except KeyError:
            raise FeatureError(f"unknown feature {name!r}; known: {', '.join(self.names())}") from None

    def __iter__(self):
        return iter(self._features.values())

    def __len__(self) -> int:
        return len(self._features)

    def names(self) -> list[str]:
        return list(self._features)

    def select(self, selection: str | Iterable[str] = "all") -> list[Feature]:
        if selection == "all":
            return list(self._features.values())
        return [self[n] for n in selection]

    def warmup_bars(self, bars_per_session: int, names: Iterable[str] | str = "all") -> int:
        """Hourly bars of history these features need (``SessionCalendar.hourly_bars`` per session)."""
        return max(f.warmup.bars(bars_per_session) for f in self.select(names))

    def compute(self, x: FeatureInputs, names: Iterable[str] | str = "all") -> pd.DataFrame:
        """One row per hourly bar of ``x``, one column per feature (in registry order)."""
        feats = self.select(names)
        data = {f.name: f.compute(x) for f in feats}
        return pd.DataFrame(data, index=x.hourly.index)

    def schema_hash(self, names: Iterable[str] | str = "all") -> str:
        """Hash of the selected features' names, warm-ups and source code: a model trained
        on one schema refuses another."""
        h = hashlib.sha256(REGISTRY_VERSION.encode())
        for f in self.select(names):
            h.update(f"{f.name}|{f.warmup}|{f.needs_pair}|".encode())
            h.update(inspect.getsource(f.fn).encode())
        return h.hexdigest()

    def describe(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "name": f.name,
                    "group": f.group,
                    "timeframe": f.timeframe,
                    "warmup_hourly": f.warmup.hourly,
                    "warmup_daily": f.warmup.daily,
                    "needs_pair": f.needs_pair,
                    "description": f.description,
                }
                for f in self
            ]
        )
