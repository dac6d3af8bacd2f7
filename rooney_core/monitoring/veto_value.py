"""Did the veto earn its keep? The vetoed signals' counterfactual P&L against the taken trades.

A signal the model vetoed never traded, so what it would have made is simulated: each logged
signal is taken alone on the instrument's hourly bars by ``training.candidates.simulate_signal``
(the production decision core and paper broker: fill at the next open plus slippage, the
production exits, costs from the one cost table), exactly how training labelled its signals.
The veto earned its keep over a period when the signals it refused would have lost money
net: ``veto_value_usd`` = minus their counterfactual P&L (positive: money saved).

Like the training labels, each signal is simulated on its own: had the veto let a signal
through, the strategy would have been in a position and missed some later signals; that path
is not what this measures (it would need a second live engine), and the per-signal figure is
the one the model was trained to predict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rooney_core.config import Instrument, StrategyConfig
from rooney_core.errors import RooneyError
from rooney_core.training.candidates import simulate_signal

# bars handed to one simulation: a trade never outlives its session (23 hourly bars), so
# this covers any exit; a longer tail is used only if the data really continues
_SLICE_BARS = 48

CF_COLUMNS = ["prediction_id", "instrument", "signal_time", "entry_time", "exit_time", "exit_reason", "pnl_net",
              "win", "note"]


def counterfactual_trades(rows: pd.DataFrame, hourly: pd.DataFrame, ibs: pd.Series | np.ndarray,
                          instrument: Instrument, rules: StrategyConfig) -> pd.DataFrame:
    """The trade each logged signal of ``instrument`` (``signals.signal_rows``) makes taken
    alone on ``hourly`` bars (``ibs``: the ibs feature aligned with them). ``note`` says why
    a signal has none: its bar is not in the bars, the data ends before its exit, or the bars
    give no base signal there (the log and the bars disagree)."""
    own = rows[rows["instrument"] == instrument.symbol]
    ibs_arr = np.asarray(ibs.reindex(hourly.index) if isinstance(ibs, pd.Series) else ibs, dtype=float)
    if len(ibs_arr) != len(hourly):
        raise ValueError(f"{instrument.symbol}: {len(ibs_arr)} ibs values for {len(hourly)} bars")
    pos = hourly.index.get_indexer(pd.DatetimeIndex(own["bar_time"]))
    out = []
    for (pid, t), i in zip(own[["prediction_id", "bar_time"]].itertuples(index=False), pos, strict=True):
        row = {"prediction_id": pid, "instrument": instrument.symbol, "signal_time": t, "entry_time": pd.NaT,
               "exit_time": pd.NaT, "exit_reason": None, "pnl_net": np.nan, "win": np.nan, "note": ""}
        if i < 0:
            row["note"] = "signal bar not in the bars"
            out.append(row)
            continue
        try:
            trade = None
            for stop in (i + _SLICE_BARS, len(hourly)):
                trade = simulate_signal(hourly.iloc[i:stop], ibs_arr[i:stop], 0, instrument, rules)
                if trade is not None or stop >= len(hourly):
                    break
        except RooneyError as err:
            row["note"] = f"not a base signal on these bars ({err})"
            out.append(row)
            continue
        if trade is None:
            row["note"] = "data ends before the exit"
        else:
            row.update(entry_time=trade["entry_time"], exit_time=trade["exit_time"],
                       exit_reason=trade["exit_reason"], pnl_net=float(trade["pnl_net"]),
                       win=float(trade["pnl_net"] > 0))
        out.append(row)
    frame = pd.DataFrame(out, columns=CF_COLUMNS)
    for col in ("signal_time", "entry_time", "exit_time"):
        frame[col] = pd.to_datetime(frame[col]).astype("datetime64[ns]")
    return frame


VALUE_COLUMNS = ["instrument", "period", "taken", "taken_pnl", "vetoed", "vetoed_resolved", "vetoed_pnl",
                 "vetoed_win_rate", "missed_gains", "avoided_losses", "veto_value_usd", "earned_keep", "other_skips",
                 "verdict"]


def veto_value(rows: pd.DataFrame, counterfactual: pd.DataFrame, period: str = "M",
               start: str | pd.Timestamp | None = None, end: str | pd.Timestamp | None = None) -> pd.DataFrame:
    """Per instrument and period (a pandas period code of the signal bar's time: "M" for
    months, "W" weeks) within [start, end): the taken trades (count, live net P&L of those
    that exited) beside the vetoed signals (count, how many have a counterfactual outcome,
    their counterfactual net P&L and win rate, the gains the veto missed and the losses it
    avoided), ``veto_value_usd`` (avoided losses minus missed gains) and whether the veto
    earned its keep. ``other_skips``: signals skipped not by the model (missing features,
    no model, the portfolio's rules)."""
    sel = rows
    if start is not None:
        sel = sel[sel["bar_time"] >= pd.Timestamp(start)]
    if end is not None:
        sel = sel[sel["bar_time"] < pd.Timestamp(end)]
    cf = counterfactual.dropna(subset=["pnl_net"]).drop_duplicates(["instrument", "signal_time"], keep="last")
    pnl_cf = sel[["instrument", "bar_time"]].merge(
        cf.rename(columns={"signal_time": "bar_time"})[["instrument", "bar_time", "pnl_net"]],
        on=["instrument", "bar_time"], how="left")["pnl_net"].to_numpy(float)
    frame = sel.assign(cf_pnl=pnl_cf, period=sel["bar_time"].dt.to_period(period).astype(str))
    out = []
    for (sym, per), g in frame.groupby(["instrument", "period"], sort=True):
        vet = g[g["vetoed"]]
        v_pnl = vet["cf_pnl"].dropna().to_numpy(float)
        taken = g[g["taken"]]
        missed, avoided = float(v_pnl[v_pnl > 0].sum()), float(-v_pnl[v_pnl <= 0].sum())
        value = avoided - missed
        earned = None if len(v_pnl) == 0 else bool(value > 0)
        if earned is None:
            verdict = "nothing vetoed with a known outcome"
        elif earned:
            verdict = (f"earned its keep: the {len(v_pnl)} vetoed signals would have lost ${-v_pnl.sum():,.0f} "
                       f"net")
        else:
            verdict = (f"cost money: the {len(v_pnl)} vetoed signals would have made ${v_pnl.sum():,.0f} net")
        out.append({"instrument": sym, "period": per, "taken": len(taken),
                    "taken_pnl": float(taken["pnl_net"].dropna().sum()), "vetoed": len(vet),
                    "vetoed_resolved": len(v_pnl), "vetoed_pnl": float(v_pnl.sum()),
                    "vetoed_win_rate": float((v_pnl > 0).mean()) if len(v_pnl) else float("nan"),
                    "missed_gains": missed, "avoided_losses": avoided, "veto_value_usd": value,
                    "earned_keep": earned, "other_skips": int((~g["taken"] & ~g["vetoed"]).sum()),
                    "verdict": verdict})
    return pd.DataFrame(out, columns=VALUE_COLUMNS)
