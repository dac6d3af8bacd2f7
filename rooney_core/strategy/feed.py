"""A Backtrader data feed that loads whole numpy arrays at once.

The stock ``PandasData`` feed builds every bar through Python row access and dominates
Backtrader's run time. ``ArrayFeed`` fills each line's buffer in one ``array.extend`` and
leaves Backtrader in its normal preloaded state, so strategies, brokers and analyzers work
unchanged. Bars are hourly bars labelled by their start; Backtrader sees that timestamp.
"""

from __future__ import annotations

from array import array

import backtrader as bt
import numpy as np
import pandas as pd

_BT_EPOCH = np.datetime64("0001-01-01T00:00:00", "s")


def bt_datenum(ts: np.ndarray) -> np.ndarray:
    """numpy datetime64 -> Backtrader's float day numbers (bt.date2num), vectorised."""
    seconds = (ts.astype("datetime64[s]") - _BT_EPOCH).astype(np.int64)
    return seconds / 86400.0 + 1.0


class ArrayFeed(bt.feed.DataBase):
    """Preloaded OHLCV feed built from an hourly bar frame (columns open..volume)."""

    params = (("frame", None),)

    def start(self):
        super().start()
        frame: pd.DataFrame = self.p.frame
        self._arrays = {
            "datetime": bt_datenum(frame.index.values),
            "open": frame["open"].to_numpy(np.float64),
            "high": frame["high"].to_numpy(np.float64),
            "low": frame["low"].to_numpy(np.float64),
            "close": frame["close"].to_numpy(np.float64),
            "volume": frame["volume"].to_numpy(np.float64),
            "openinterest": np.zeros(len(frame)),
        }
        self._i = -1

    def preload(self):
        for name, values in self._arrays.items():
            line = getattr(self.lines, name)
            line.array = array("d", values.tobytes())
        self._last()
        self.home()

    def _load(self):  # the bar-by-bar path, used only when a run sets preload=False
        self._i += 1
        if self._i >= len(self._arrays["close"]):
            return False
        for name, values in self._arrays.items():
            getattr(self.lines, name)[0] = values[self._i]
        return True
