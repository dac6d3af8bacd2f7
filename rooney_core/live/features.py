"""The live feature buffer: one instrument's feature row per closed hourly bar, computed by
the registry's own feature functions over a rolling buffer of the declared warm-up length.

One feature code path (ARCHITECTURE.md, parity rules 1, 2 and 6): every value comes from
``Feature.compute`` on a :class:`~rooney_core.features.FeatureInputs`, exactly as
``REGISTRY.compute`` does in research; the buffer only decides which bars the inputs hold:

* hourly: the last N closed bars, N = the largest declared ``Warmup.hourly`` of the selected
  features;
* daily: the last M *completed* sessions before the latest bar's session, M = the largest
  declared ``Warmup.daily``, then the current, unfinished session aggregated from its closed
  hours (as the batch ``FeatureInputs.daily`` has it: never used for a value, since a bar
  only sees completed sessions); held, not rebuilt from hourly bars, so a 418-session
  warm-up needs 418 daily bars and not 9,700 hourly ones;
* pair: the pair's closed hourly bars from the one aligned to the oldest hourly bar held,
  minus the largest pair warm-up, on. A pair feed that stops simply adds no bars, and the
  registry's as-of alignment turns pair values older than ``pair_max_staleness`` into NaN,
  as in the batch path.

``row()`` says which features are still warming up (less history held than declared): the
engine vetoes entries on them, as on missing (NaN) ones.

Order of updates: the pair's bar for an hour must be in before the instrument's row for that
hour is computed (the batch path aligns pair bars by start time, including the same hour).
:func:`rooney_core.live.bars.replay` closes every instrument's hour on one clock and
:meth:`FeatureBuffer.update` takes the pair's bars of a step before the instrument's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from rooney_core.data.bars import BAR_COLUMNS, aggregate_bars, daily_bars, session_key
from rooney_core.errors import FeatureError
from rooney_core.features import REGISTRY, FeatureInputs, FeatureRegistry, selected_features
from rooney_core.live.bars import DAILY, HOURLY, ClosedBar, daily_bar_final_at, epoch_seconds
from rooney_core.sessions import SessionCalendar

_COLUMNS = pd.Index(BAR_COLUMNS)  # built once: a column list is converted on every frame
_NS = 1_000_000_000
_HOUR_NS = 3600 * _NS


class _Bars:
    """Bars in time order (int64 ns starts, OHLCV) with cheap append and trimming from the
    front. Columns are stored contiguously (one row per OHLCV field, as pandas holds a
    frame's block). A full array is replaced, never written over, so frames and columns
    handed out earlier keep their values."""

    def __init__(self, capacity: int = 64):
        self._ts = np.empty(capacity, dtype=np.int64)
        self._v = np.empty((len(BAR_COLUMNS), capacity), dtype=np.float64)
        self._start = 0
        self._end = 0
        self.appended = 0  # ever, trimmed ones included

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def ts(self) -> np.ndarray:
        return self._ts[self._start : self._end]

    @property
    def values(self) -> np.ndarray:
        """(n, 5) view, rows in time order."""
        return self._v[:, self._start : self._end].T

    def columns(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Read-only contiguous column views of rows [start, stop) (relative)."""
        stop = len(self) if stop is None else stop
        out = {}
        for i, name in enumerate(BAR_COLUMNS):
            col = self._v[i, self._start + start : self._start + stop]
            col.flags.writeable = False
            out[name] = col
        return out

    @property
    def last_ts(self) -> int | None:
        return int(self._ts[self._end - 1]) if self._end > self._start else None

    def extend(self, ts: np.ndarray, values: np.ndarray) -> None:
        n = len(ts)
        if self._end + n > len(self._ts):
            keep = len(self)
            cap = max(64, 2 * (keep + n))
            new_ts = np.empty(cap, dtype=np.int64)
            new_v = np.empty((len(BAR_COLUMNS), cap), dtype=np.float64)
            new_ts[:keep] = self.ts
            new_v[:, :keep] = self._v[:, self._start : self._end]
            self._ts, self._v, self._start, self._end = new_ts, new_v, 0, keep
        self._ts[self._end : self._end + n] = ts
        self._v[:, self._end : self._end + n] = np.asarray(values, dtype=np.float64).T
        self._end += n
        self.appended += n

    def append(self, ts: int, values: tuple[float, ...]) -> None:
        self.extend(np.array([ts], dtype=np.int64), np.array([values], dtype=np.float64))

    def keep_last(self, n: int) -> None:
        self._start = max(self._start, self._end - n)

    def drop_first(self, n: int) -> None:
        self._start = min(self._end, self._start + max(0, n))

    def frame(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """Rows [start, stop) (relative) as a batch-shaped frame viewing the buffer."""
        stop = len(self) if stop is None else stop
        ts = self.ts[start:stop].view("datetime64[ns]")
        values = self.values[start:stop]
        return pd.DataFrame(values, index=pd.DatetimeIndex(ts, name="timestamp"), columns=_COLUMNS, copy=False)


class _BufferInputs(FeatureInputs):
    """The registry's FeatureInputs over the buffer (its alignment rules, staleness included,
    are inherited unchanged). Two things differ in origin, not in value:

    * ``daily``: the held completed sessions plus the current one, instead of
      ``daily_bars(hourly)`` over all history: the same rows for every session a value sees;
    * ``h``/``d``/``p`` read the buffer's contiguous columns, which the frames ``hourly``,
      ``daily`` and ``pair_hourly`` are views of, instead of converting the frame's column
      again for every feature (a third of the row's time otherwise).
    """

    def __init__(self, hourly, calendar, pair_hourly, pair_max_staleness, daily: pd.DataFrame,
                 columns: dict[str, dict[str, np.ndarray]]):
        super().__init__(hourly, calendar, pair_hourly, pair_max_staleness)
        self._held_daily = daily
        self._cols = columns

    @cached_property
    def daily(self) -> pd.DataFrame:
        return self._held_daily

    def h(self, column: str) -> np.ndarray:
        return self._cols["h"][column]

    def d(self, column: str) -> np.ndarray:
        return self._cols["d"][column]

    def p(self, column: str) -> np.ndarray:
        if not self.has_pair:
            return super().p(column)
        return self._cols["p"][column]


@dataclass(frozen=True)
class FeatureRow:
    """The features of one closed hourly bar, as of its close."""

    symbol: str
    timestamp: pd.Timestamp  # the hourly bar's start
    values: dict[str, float]  # selection order
    warming_up: tuple[str, ...]  # features with less history held than declared

    @property
    def ready(self) -> bool:
        """Every feature has its declared history (values may still be NaN: see missing)."""
        return not self.warming_up

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.values.items() if np.isnan(v))

    def series(self) -> pd.Series:
        return pd.Series(self.values, name=self.timestamp, dtype=np.float64)


@dataclass(frozen=True)
class _Window:
    t: int  # latest hourly bar, ns
    dates: np.ndarray  # session of each held hourly bar
    today_ns: int  # the latest bar's session, ns
    daily_done: int  # held daily rows before that session
    daily_first: int  # first of them to use
    pair_upto: int  # held pair rows starting <= t


class FeatureBuffer:
    """Rolling buffer of one instrument's closed bars (and its pair's) -> feature rows.

    Feed it with :meth:`warm_up` (history, e.g. the lake's hourly and daily bars), then closed
    bars from :class:`~rooney_core.live.bars.SessionBarBuilder` via :meth:`update` (or
    :meth:`add_hourly` / :meth:`add_daily` / :meth:`add_pair_hourly` and :meth:`row`).
    """

    def __init__(
        self,
        symbol: str,
        calendar: SessionCalendar,
        *,
        pair: str | None = None,
        names: str | Iterable[str] = "all",
        pair_max_staleness: str | pd.Timedelta = "2h",
        registry: FeatureRegistry = REGISTRY,
    ):
        self.symbol = symbol
        self.calendar = calendar
        self.pair = pair
        self.features = registry.select(names if isinstance(names, str) else list(names))
        if not self.features:
            raise FeatureError(f"{symbol}: no features selected")
        self.pair_max_staleness = pd.Timedelta(pair_max_staleness)
        # the declared warm-ups, nothing else, size the buffer
        self.hourly_window = max(1, *(f.warmup.hourly for f in self.features))
        self.daily_window = max(f.warmup.daily for f in self.features)
        self.pair_window = max((f.warmup.hourly for f in self.features if f.needs_pair), default=0)
        self._hourly = _Bars()
        self._daily = _Bars()
        self._pair = _Bars()

    @classmethod
    def for_instrument(cls, cfg, symbol: str, names: str | Iterable[str] | None = None) -> FeatureBuffer:
        """The buffer for ``symbol`` as the pipeline computes it: its session calendar, its
        pair, the configured staleness and (by default) features.yml's selection."""
        inst = cfg.instrument(symbol)
        chosen = selected_features(cfg) if names is None else names
        return cls(symbol, inst.calendar, pair=inst.pair, names=chosen,
                   pair_max_staleness=cfg.features.pair_max_staleness)

    # -- state -----------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def last_hourly(self) -> pd.Timestamp | None:
        t = self._hourly.last_ts
        return None if t is None else pd.Timestamp(t)

    @property
    def last_daily(self) -> pd.Timestamp | None:
        t = self._daily.last_ts
        return None if t is None else pd.Timestamp(t)

    @property
    def last_pair_hourly(self) -> pd.Timestamp | None:
        t = self._pair.last_ts
        return None if t is None else pd.Timestamp(t)

    def held(self) -> dict[str, int]:
        """Bars held now (hourly, daily, pair hourly)."""
        return {"hourly": len(self._hourly), "daily": len(self._daily), "pair_hourly": len(self._pair)}

    # -- input -----------------------------------------------------------------------------
    def warm_up(
        self,
        hourly: pd.DataFrame,
        daily: pd.DataFrame | None = None,
        pair_hourly: pd.DataFrame | None = None,
        *,
        as_of,
    ) -> None:
        """Load history (batch-shaped frames, e.g. the lake's) into an empty buffer.

        ``as_of`` is the time the history was taken (exchange-local): bars not closed by
        then (an hour not over, a session not finished) are left out, so the live builder
        emits them. ``daily`` defaults to ``daily_bars(hourly)``, the batch rule.
        """
        if len(self._hourly) or len(self._daily) or len(self._pair):
            raise FeatureError(f"{self.symbol}: warm_up() needs an empty buffer")
        cut = epoch_seconds(as_of) * _NS
        if daily is None:
            daily = daily_bars(hourly, self.calendar)
        h_ts = _ns(hourly)
        keep = h_ts + _HOUR_NS <= cut
        self._hourly.extend(h_ts[keep], hourly[BAR_COLUMNS].to_numpy(dtype=np.float64)[keep])
        d_ts = _ns(daily)
        final = np.array([daily_bar_final_at(t, self.calendar) for t in d_ts.view("datetime64[ns]")], dtype=np.int64)
        keep = final * _NS <= cut
        self._daily.extend(d_ts[keep], daily[BAR_COLUMNS].to_numpy(dtype=np.float64)[keep])
        if pair_hourly is not None and len(pair_hourly):
            p_ts = _ns(pair_hourly)
            keep = p_ts + _HOUR_NS <= cut
            self._pair.extend(p_ts[keep], pair_hourly[BAR_COLUMNS].to_numpy(dtype=np.float64)[keep])
        self._trim()

    def warm_up_from_lake(self, lake, *, as_of) -> None:
        """:meth:`warm_up` from the pipeline's lake (a ``rooney_core.data.lake.Lake``): this
        instrument's hourly and daily bars and, if present, its pair's hourly bars."""
        pair = None
        if self.pair is not None and lake.exists("hourly", self.pair):
            pair = lake.read("hourly", self.pair)
        self.warm_up(lake.read("hourly", self.symbol), lake.read("daily", self.symbol), pair, as_of=as_of)

    def add_hourly(self, bar: ClosedBar) -> None:
        self._append(self._hourly, bar, "hourly")
        self._trim()

    def add_daily(self, bar: ClosedBar) -> None:
        self._append(self._daily, bar, "daily")
        self._daily.keep_last(self.daily_window + 1)

    def add_pair_hourly(self, bar: ClosedBar) -> None:
        self._append(self._pair, bar, "pair hourly")
        self._trim_pair()

    def update(self, closed: Iterable[ClosedBar]) -> list[FeatureRow]:
        """Take the bars one clock step closed (any instruments): the pair's hourly bars
        first, then this instrument's daily and hourly bars; a row per hourly bar."""
        closed = list(closed)
        for bar in closed:
            if self.pair is not None and bar.symbol == self.pair and bar.kind == HOURLY:
                self.add_pair_hourly(bar)
        rows = []
        for bar in closed:
            if bar.symbol != self.symbol:
                continue
            if bar.kind == DAILY:
                self.add_daily(bar)
            else:
                self.add_hourly(bar)
                rows.append(self.row())
        return rows

    # -- output ----------------------------------------------------------------------------
    def row(self) -> FeatureRow:
        """The feature row of the latest closed hourly bar."""
        w = self._window()
        dates = w.dates
        own_today = dates == dates[-1]
        # completed sessions before the bar's own, the last daily_window of them, then its own
        # session so far (what batch FeatureInputs.daily holds; a bar never sees it)
        hourly = self._hourly.columns()
        _, partial = aggregate_bars(np.full(int(own_today.sum()), w.today_ns),
                                    *(hourly[k][own_today] for k in BAR_COLUMNS))
        done = self._daily.columns(w.daily_first, w.daily_done)
        block = np.vstack([np.append(done[k], partial[k][0]) for k in BAR_COLUMNS])  # one row per field
        block.flags.writeable = False
        d_cols = dict(zip(BAR_COLUMNS, block, strict=True))
        d_index = np.append(self._daily.ts[w.daily_first : w.daily_done], w.today_ns).view("datetime64[ns]")
        daily = pd.DataFrame(block.T, index=pd.DatetimeIndex(d_index, name="timestamp"), columns=_COLUMNS, copy=False)
        pair = self._pair.frame(0, w.pair_upto) if w.pair_upto else None
        columns = {"h": hourly, "d": d_cols, "p": self._pair.columns(0, w.pair_upto) if w.pair_upto else {}}
        x = _BufferInputs(self._hourly.frame(), self.calendar, pair, self.pair_max_staleness, daily, columns)
        values = {f.name: float(f.compute(x)[-1]) for f in self.features}
        return FeatureRow(self.symbol, pd.Timestamp(w.t), values, self._warming(w))

    def warming_up(self) -> tuple[str, ...]:
        """Features whose declared history is not yet held for the latest hourly bar (all of
        them before the first bar)."""
        if not len(self._hourly):
            return tuple(self.names)
        return self._warming(self._window())

    # -- internals -------------------------------------------------------------------------
    def _window(self) -> _Window:
        if not len(self._hourly):
            raise FeatureError(f"{self.symbol}: no closed hourly bar yet")
        t = int(self._hourly.ts[-1])
        dates = session_key(self._hourly.ts.view("datetime64[ns]"), self.calendar)
        today_ns = int(dates[-1].astype("datetime64[ns]").astype(np.int64))
        done = int(np.searchsorted(self._daily.ts, today_ns, side="left"))
        upto = int(np.searchsorted(self._pair.ts, t, side="right")) if self.pair is not None else 0
        return _Window(t, dates, today_ns, done, max(0, done - self.daily_window), upto)

    def _warming(self, w: _Window) -> tuple[str, ...]:
        hourly_seen = self._hourly.appended
        daily_seen = self._daily.appended - (len(self._daily) - w.daily_done)  # sessions before the bar's
        pair_seen = self._pair.appended - (len(self._pair) - w.pair_upto)  # pair bars up to the bar
        return tuple(
            f.name for f in self.features
            if hourly_seen < f.warmup.hourly
            or daily_seen < f.warmup.daily
            or (f.needs_pair and self.pair is not None and pair_seen < f.warmup.hourly)
        )

    def _append(self, bars: _Bars, bar: ClosedBar, what: str) -> None:
        ts = int(np.datetime64(bar.timestamp, "ns").astype(np.int64))
        last = bars.last_ts
        if last is not None and ts <= last:
            raise FeatureError(f"{self.symbol}: {what} bar {pd.Timestamp(ts)} is not after the last one "
                               f"{pd.Timestamp(last)}; bars must arrive once, in time order")
        bars.append(ts, bar.values())

    def _trim(self) -> None:
        self._hourly.keep_last(self.hourly_window)
        self._daily.keep_last(self.daily_window + 1)
        self._trim_pair()

    def _trim_pair(self) -> None:
        """Keep the pair bars any held hourly bar can align to, and pair_window before them."""
        if not len(self._pair):
            return
        if len(self._hourly):
            oldest = int(self._hourly.ts[0])
            j0 = int(np.searchsorted(self._pair.ts, oldest, side="right")) - 1
        else:
            j0 = len(self._pair) - 1
        self._pair.drop_first(j0 - self.pair_window)


def _ns(frame: pd.DataFrame) -> np.ndarray:
    return frame.index.values.astype("datetime64[ns]").astype(np.int64)
