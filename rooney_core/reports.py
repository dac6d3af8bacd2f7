"""Plots people would rather look at than read. Each function returns PNG bytes, so the
pipeline can attach them as asset metadata and save them beside reports."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def ibs_rsi_over_price(symbol: str, month: str, hourly: pd.DataFrame, features: pd.DataFrame,
                       ibs_entry: float = 0.2, ibs_exit: float = 0.8) -> bytes:
    """Close price with the hourly IBS and RSI(2) beneath it, for visual inspection."""
    bars = hourly.loc[features.index]
    x = range(len(bars))  # bar number: sessions without gaps for weekends and breaks
    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True,
                             gridspec_kw={"height_ratios": [2, 1, 1]})
    axes[0].plot(x, bars["close"].to_numpy(), lw=0.9, color="black")
    axes[0].set_title(f"{symbol} {month}: hourly close, IBS and RSI(2)")
    axes[0].set_ylabel("close")
    low = features["ibs"].to_numpy() <= ibs_entry
    axes[0].scatter([i for i, v in zip(x, low, strict=True) if v], bars["close"].to_numpy()[low],
                    s=8, color="tab:green", label=f"IBS <= {ibs_entry}")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].plot(x, features["ibs"].to_numpy(), lw=0.7, color="tab:blue")
    for level in (ibs_entry, ibs_exit):
        axes[1].axhline(level, color="grey", lw=0.6, ls="--")
    axes[1].set_ylabel("IBS")
    axes[1].set_ylim(-0.02, 1.02)
    axes[2].plot(x, features["rsi2"].to_numpy(), lw=0.7, color="tab:purple")
    for level in (10, 90):
        axes[2].axhline(level, color="grey", lw=0.6, ls="--")
    axes[2].set_ylabel("RSI(2)")
    axes[2].set_ylim(-2, 102)
    ticks = list(range(0, len(bars), max(1, len(bars) // 8)))
    axes[2].set_xticks(ticks)
    axes[2].set_xticklabels([bars.index[i].strftime("%m-%d %H:%M") for i in ticks], fontsize=8)
    axes[2].set_xlabel("bar start (exchange time)")
    return _png(fig)


def equity_curve(title: str, equity: pd.Series, capital: float, benchmark: pd.Series | None = None,
                 benchmark_label: str = "all candidates") -> bytes:
    """Daily equity (and drawdown beneath it); optionally a second curve to compare."""
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    axes[0].plot(equity.index, equity.to_numpy(), lw=1.0, color="tab:blue", label="strategy")
    if benchmark is not None:
        axes[0].plot(benchmark.index, benchmark.to_numpy(), lw=0.9, color="grey", label=benchmark_label)
        axes[0].legend(loc="upper left", fontsize=8)
    axes[0].axhline(capital, color="black", lw=0.5, ls=":")
    axes[0].set_title(title)
    axes[0].set_ylabel("equity $")
    peak = equity.cummax().clip(lower=capital)
    axes[1].fill_between(equity.index, (equity - peak).to_numpy(), 0, color="tab:red", alpha=0.5)
    axes[1].set_ylabel("drawdown $")
    axes[1].set_xlabel("trading date")
    return _png(fig)
