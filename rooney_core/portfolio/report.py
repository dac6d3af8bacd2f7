"""The portfolio's out-of-sample report: what a risk manager reads before the portfolio trades.

* ``benchmarks``: equity curves to compare the portfolio with, over the same period, by the
  same engine (``prepare``/``simulate``): every instrument at an equal dollar risk and no
  rule refusing anything (``"equal weight"``), and each instrument alone at one contract
  (``"<SYM> alone"``);
* ``plot_*``: PNG bytes (matplotlib, through ``rooney_core.reports``): the equity of the
  portfolio against its benchmarks, the instruments' daily P&L correlations, the risk
  contributions, the underwater curve and the entries the rules skipped;
* ``figures``: those PNGs by name, for a Dagster asset's metadata;
* ``portfolio_report_html``: one self-contained HTML page (images inline as base64, no
  external CSS or JS, every text escaped) with the headline figures, the comparison with the
  benchmarks, the plots, the skipped entries by rule, the rules in force and the models.

Money is written one way everywhere (``format_money``: ``$12,345``, ``-$6,774``); a missing
value (NaN, None) is written ``n/a``.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import time
from typing import Any

import numpy as np
import pandas as pd

from rooney_core.config import Instrument, StrategyConfig
from rooney_core.portfolio.engine import PortfolioResult, daily_pnl, portfolio_summary, prepare, simulate
from rooney_core.portfolio.guard import RULE_ORDER, PortfolioRules
from rooney_core.reports import _png, plt
from rooney_core.sessions import SessionCalendar
from rooney_core.strategy.engine import VetoModel

__all__ = ["DEFAULT_RISK_BUDGET", "EQUAL_WEIGHT", "FIGURES", "benchmarks", "figures", "format_money", "format_number",
           "format_percent", "plot_correlation", "plot_drawdown", "plot_equity", "plot_risk_contribution",
           "plot_skipped", "portfolio_report_html"]

DEFAULT_RISK_BUDGET = 1000.0  # $ of one hourly ATR per position, for "equal weight" when the rules set none
DEFAULT_CAPITAL = 100_000.0
EQUAL_WEIGHT = "equal weight"
FIGURES = ("equity", "correlation", "risk_contribution", "drawdown", "skipped")
# The sessions of every CME instrument configured (Globex: 17:00 -> 16:00): trading dates of a
# benchmark curve that does not carry its own figures (see ``_curve_figures``).
GLOBEX = SessionCalendar("America/Chicago", time(17, 0), time(16, 0))
_HEADLINE = ("net_pnl", "sharpe", "sortino", "max_drawdown_usd", "max_drawdown_pct", "calmar", "trades", "max_open")


# -- formats ------------------------------------------------------------------------------------
def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def format_money(x: Any, decimals: int = 0) -> str:
    """Dollars, one format everywhere: ``$12,345``, ``-$6,774`` (``n/a`` when missing)."""
    if _missing(x):
        return "n/a"
    v = float(x)
    if math.isinf(v):
        return "$∞" if v > 0 else "-$∞"
    text = f"{abs(v):,.{decimals}f}"
    negative = v < 0 and any(c not in "0.," for c in text)  # never "-$0"
    return f"-${text}" if negative else f"${text}"


def format_number(x: Any, decimals: int = 2) -> str:
    """A number with thousands separators and ``decimals`` places (``n/a`` when missing)."""
    if _missing(x):
        return "n/a"
    v = float(x)
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    text = f"{v:,.{decimals}f}"
    return text[1:] if text.startswith("-") and not any(c not in "-0.," for c in text) else text  # never "-0.00"


def format_percent(x: Any, decimals: int = 1) -> str:
    """A fraction as a percentage: 0.1234 -> ``12.3%`` (``n/a`` when missing)."""
    return "n/a" if _missing(x) else format_number(float(x) * 100.0, decimals) + "%"


# -- benchmarks ---------------------------------------------------------------------------------
def benchmarks(hourly: dict[str, pd.DataFrame], features: dict[str, pd.DataFrame],
               instruments: dict[str, Instrument], rules_cfg: StrategyConfig, rules: PortfolioRules,
               models: dict[str, VetoModel | None] | None = None, capital: float = 100_000.0,
               start: str | None = None, end: str | None = None,
               labels: dict[str, pd.DataFrame] | None = None) -> dict[str, pd.Series]:
    """Equity curves (marked to market at every bar time, like ``PortfolioResult.equity``) to
    compare the portfolio with, over the same period ``[start, end)``, with the same models,
    capital, fills and costs, by the same engine (``prepare`` once per instrument set, then
    ``simulate``):

    * ``"equal weight"``: every instrument's signals with no portfolio rule but one sizing
      rule for all: ``PortfolioRules(risk_budget=rules.risk_budget or DEFAULT_RISK_BUDGET,
      max_contracts=rules.max_contracts, halt_when_broke=False)``, as many contracts as keep one hourly ATR of each
      position within the same $ budget (equal dollar risk per instrument); no stop, cap or
      filter, so nothing is refused. What the rules add (or cost) over plain diversification.
    * ``"<SYM> alone"``, per instrument: that instrument run on its own with every rule off
      (``PortfolioRules.off()``: the strategy's size, one contract), from the same capital.
      What each instrument does without the others.

    Each curve carries, in ``attrs["summary"]``, the headline figures of its run
    (``portfolio_summary``'s net P&L, Sharpe, Sortino, max drawdown $ and %, Calmar, trades,
    most positions open at once), ``attrs["capital"]`` and ``attrs["skipped"]`` (entries
    refused: 0 for every benchmark); the report's comparison table reads them.
    """
    symbols = sorted(hourly)
    out: dict[str, pd.Series] = {}
    models = models or {}

    def run(subset: list[str], sub_rules: PortfolioRules, name: str) -> pd.Series:
        inp = prepare({s: hourly[s] for s in subset}, {s: features[s] for s in subset},
                      {s: instruments[s] for s in subset}, rules_cfg, {s: models.get(s) for s in subset}, start, end,
                      {s: labels[s] for s in subset if s in labels} if labels else None)
        res = simulate(inp, sub_rules, capital, keep_decisions=False)
        summary = portfolio_summary(res, instruments[subset[0]].calendar, capital)
        equity = res.equity.rename(name)
        equity.attrs = {"summary": {k: summary[k] for k in _HEADLINE}, "capital": float(capital),
                        "symbols": list(subset), "skipped": int(len(res.skipped))}
        return equity

    equal = PortfolioRules(risk_budget=rules.risk_budget or DEFAULT_RISK_BUDGET, max_contracts=rules.max_contracts,
                           halt_when_broke=False)
    out[EQUAL_WEIGHT] = run(symbols, equal, EQUAL_WEIGHT)
    for s in symbols:
        out[f"{s} alone"] = run([s], PortfolioRules.off(), f"{s} alone")
    return out


def _curve_figures(equity: pd.Series, capital: float, calendar: SessionCalendar = GLOBEX) -> dict:
    """The headline figures of an equity curve, as ``portfolio_summary`` computes them (daily
    P&L of the marked-to-market equity by trading date); a curve knows neither its trades nor
    its open positions, so its net P&L is the marked-to-market one and those counts are n/a."""
    from rooney_core.backtest.metrics import TRADING_DAYS, max_drawdown, sharpe, sortino

    if not len(equity):
        return dict.fromkeys(_HEADLINE, float("nan"))
    daily = daily_pnl(equity, calendar, capital)
    dd_usd, dd_pct = max_drawdown(np.r_[capital, equity.to_numpy(dtype=float)])
    years = len(daily) / TRADING_DAYS
    annual = float(daily.sum() / years) if years else float("nan")
    return {"net_pnl": float(equity.iloc[-1] - capital), "sharpe": sharpe(daily), "sortino": sortino(daily),
            "max_drawdown_usd": dd_usd, "max_drawdown_pct": dd_pct,
            "calmar": annual / dd_usd if dd_usd > 0 else float("nan"), "trades": float("nan"),
            "max_open": float("nan")}


# -- plots --------------------------------------------------------------------------------------
def money_axis(ax, axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(FuncFormatter(lambda v, _: format_money(v)))


def date_axis(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="grey", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_equity(equity: pd.Series, benchmarks: dict[str, pd.Series] | None = None,
                capital: float | None = None) -> bytes:
    """The portfolio's equity ($, marked to market; thick black) against equal weight
    (dashed) and each instrument alone (thin)."""
    benchmarks = benchmarks or {}
    fig, ax = plt.subplots(figsize=(11, 5), layout="constrained")
    colours = iter(plt.get_cmap("tab10").colors[1:] * 3)
    for name, curve in benchmarks.items():
        if name == EQUAL_WEIGHT:
            ax.plot(curve.index, curve.to_numpy(), lw=1.5, ls="--", color="tab:blue", label=name, zorder=2)
        else:
            ax.plot(curve.index, curve.to_numpy(), lw=0.9, alpha=0.85, color=next(colours), label=name, zorder=1)
    if len(equity):
        ax.plot(equity.index, equity.to_numpy(), lw=2.4, color="black", label="portfolio", zorder=3)
        date_axis(ax)
    if capital is not None:
        ax.axhline(capital, color="grey", lw=0.6, ls=":")
    ax.set_title("equity: portfolio vs equal weight vs each instrument alone ($, marked to market)", fontsize=11,
                 parse_math=False)
    ax.set_ylabel("equity")
    money_axis(ax)
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    if handles:  # portfolio first
        order = sorted(range(len(names)), key=lambda i: (names[i] != "portfolio", names[i] != EQUAL_WEIGHT, i))
        fig.legend([handles[i] for i in order], [names[i] for i in order], loc="outside lower center",
                   ncol=min(5, len(order)), fontsize=9, frameon=False)
    return _png(fig)


def plot_correlation(corr: pd.DataFrame | None) -> bytes:
    """Heat map of the instruments' daily P&L correlations, the value in each cell; a
    diverging colormap fixed to [-1, 1]."""
    n = 0 if corr is None else len(corr)
    side = max(4.0, 0.8 * n + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    if not n:
        _empty(ax, "no trades: no correlation to show")
        return _png(fig)
    values = corr.to_numpy(dtype=float)
    im = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    labels = [str(c) for c in corr.columns]
    ax.set_xticks(range(n), labels, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center", fontsize=10)
    ax.set_yticks(range(n), [str(i) for i in corr.index], fontsize=10)
    size = 10 if n <= 8 else 9 if n <= 12 else 7
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            ax.text(j, i, format_number(v, 2), ha="center", va="center", fontsize=size,
                    color="white" if (v == v and abs(v) > 0.6) else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="correlation")
    ax.set_title("daily P&L correlations between instruments", fontsize=11)
    return _png(fig)


def plot_risk_contribution(series: pd.Series | None) -> bytes:
    """Bars: each instrument's share of the portfolio's daily P&L variance (sums to 100%; a
    negative share diversifies)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * (0 if series is None else len(series)) + 3), 4),
                           layout="constrained")
    values = None if series is None else pd.to_numeric(series, errors="coerce")
    if values is None or not len(values) or values.isna().all():
        _empty(ax, "no risk contributions (no trades, or no variance)")
        return _png(fig)
    v = values.fillna(0.0).to_numpy() * 100.0
    names = [str(i) for i in values.index]
    ax.bar(names, v, color=["tab:blue" if x >= 0 else "tab:green" for x in v])
    for k, (x, raw) in enumerate(zip(v, values.to_numpy(), strict=True)):
        ax.annotate(format_percent(raw, 1), (k, x), xytext=(0, 3 if x >= 0 else -3), textcoords="offset points",
                    ha="center", va="bottom" if x >= 0 else "top", fontsize=9)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("share of portfolio variance (%)")
    ax.set_title("risk contribution by instrument", fontsize=11)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_drawdown(equity: pd.Series, capital: float | None = None) -> bytes:
    """The underwater curve: $ below the running peak of the equity (from ``capital``)."""
    fig, ax = plt.subplots(figsize=(11, 3.5), layout="constrained")
    if not len(equity):
        _empty(ax, "no equity")
        return _png(fig)
    peak = equity.cummax()
    if capital is not None:
        peak = peak.clip(lower=capital)
    under = equity - peak
    ax.fill_between(under.index, under.to_numpy(), 0, color="tab:red", alpha=0.45, lw=0)
    ax.plot(under.index, under.to_numpy(), color="tab:red", lw=0.7)
    worst = under.idxmin()
    title = "drawdown: $ below the running equity peak (underwater)"
    if under.loc[worst] < 0:
        frac = -under.loc[worst] / peak.loc[worst] if peak.loc[worst] > 0 else float("nan")
        ax.plot([worst], [under.loc[worst]], marker="o", color="black", ms=4)
        title += f"; max {format_money(-under.loc[worst])} ({format_percent(frac)}) on {worst:%Y-%m-%d}"
    ax.axhline(0, color="black", lw=0.6)
    date_axis(ax)
    money_axis(ax)
    ax.set_ylabel("below peak")
    ax.set_title(title, fontsize=11, parse_math=False)
    ax.grid(alpha=0.3)
    return _png(fig)


def _rule_order(index) -> list:
    known = [r for r in RULE_ORDER if r in index]
    return known + sorted(r for r in index if r not in RULE_ORDER)


def plot_skipped(skipped_by_rule: pd.DataFrame | None) -> bytes:
    """Per rule (in the order they are checked): entries skipped, and the counterfactual net
    P&L of those entries had each been taken alone (positive: the rule cost that much)."""
    if skipped_by_rule is None or not len(skipped_by_rule):
        fig, ax = plt.subplots(figsize=(6, 2), layout="constrained")
        _empty(ax, "no entry was skipped")
        ax.set_title("entries skipped by the portfolio rules", fontsize=11)
        return _png(fig)
    rows = len(skipped_by_rule)
    fig, axes = plt.subplots(1, 2, figsize=(11, max(2.8, 0.6 * rows + 1.8)), layout="constrained", sharey=True)
    t = skipped_by_rule.loc[_rule_order(skipped_by_rule.index)].iloc[::-1]
    names = [str(r) for r in t.index]
    counts = pd.to_numeric(t["skipped"], errors="coerce").fillna(0).to_numpy()
    pnl = pd.to_numeric(t["counterfactual_pnl"], errors="coerce")
    axes[0].barh(names, counts, color="tab:grey")
    for k, c in enumerate(counts):
        axes[0].annotate(f"{int(c):,}", (c, k), xytext=(3, 0), textcoords="offset points", va="center", fontsize=9)
    axes[0].set_title("entries skipped", fontsize=10)
    axes[0].margins(x=0.2)
    values = pnl.fillna(0.0).to_numpy()
    axes[1].barh(names, values, color=["tab:green" if v > 0 else "tab:red" for v in values])
    for k, (v, raw) in enumerate(zip(values, pnl.to_numpy(), strict=True)):
        axes[1].annotate(format_money(raw), (v, k), xytext=(3 if v >= 0 else -3, 0), textcoords="offset points",
                         va="center", ha="left" if v >= 0 else "right", fontsize=9, parse_math=False)
    axes[1].axvline(0, color="black", lw=0.6)
    axes[1].set_title("counterfactual net P&L of the skipped entries", fontsize=10)
    axes[1].margins(x=0.3)
    from matplotlib.ticker import MaxNLocator

    axes[1].xaxis.set_major_locator(MaxNLocator(nbins=4))
    money_axis(axes[1], "x")
    axes[1].tick_params(axis="x", labelsize=9)
    fig.suptitle("entries skipped by the portfolio rules", fontsize=11)
    return _png(fig)


def figures(summary: dict, result: PortfolioResult, benchmarks: dict[str, pd.Series],
            capital: float | None = None) -> dict[str, bytes]:
    """The report's PNGs by name (``FIGURES``), for a Dagster asset's metadata."""
    capital = _capital(None, benchmarks) if capital is None else capital
    return {"equity": plot_equity(result.equity, benchmarks, capital),
            "correlation": plot_correlation(summary.get("correlation")),
            "risk_contribution": plot_risk_contribution(summary.get("risk_contribution")),
            "drawdown": plot_drawdown(result.equity, capital),
            "skipped": plot_skipped(summary.get("skipped"))}


# -- the HTML page ------------------------------------------------------------------------------
_RULES = {  # what each rule does, for the page (engine.py's docstring, in its order)
    "max_drawdown_stop": ("money", "no new entry for the rest of the run once the drawdown from the peak reaches it"),
    "daily_loss_stop": ("money", "no new entry until the next session once the session's P&L reaches minus it"),
    "max_positions": ("int", "most positions open or pending at once across instruments"),
    "corr_rho": ("number", "no entry while an open instrument's hourly return correlation is above it"),
    "corr_window": ("int", "bar times in the correlation filter's window (only past bars)"),
    "allocation": ("number", "notional cap per instrument or asset group, as a multiple of equity"),
    "risk_budget": ("money", "volatility target: $ of one hourly ATR per position (sizing)"),
    "max_contracts": ("int", "largest size the volatility target may give"),
    "contracts": ("int", "fixed contracts per instrument (without a risk budget)"),
}


def _capital(config: dict | None, benchmarks: dict[str, pd.Series] | None) -> float:
    if config and not _missing(config.get("capital")):
        return float(config["capital"])
    for curve in (benchmarks or {}).values():
        if "capital" in curve.attrs:
            return float(curve.attrs["capital"])
    return DEFAULT_CAPITAL


def _value(v: Any, kind: str = "auto") -> str:
    """Any config value as text (not escaped): money and numbers in the report's formats."""
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_value(x, kind)}" for k, x in v.items()) if v else "none"
    if isinstance(v, list | tuple | set):
        return ", ".join(_value(x, kind) for x in v) if v else "none"
    if v is None:
        return "off"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float | np.integer | np.floating):
        if _missing(v):
            return "n/a"
        if kind == "money":
            return format_money(v)
        if kind == "int" or float(v).is_integer():
            return format_number(v, 0)
        return f"{float(v):,.4g}"
    return str(v)


def _table(header: list[str], rows: list[list[str]], numeric: Any = None) -> str:
    """An HTML table of plain text cells (every cell escaped here); the ``numeric`` columns
    (indices; default: all but the first) are right-aligned."""
    numeric = set(range(1, len(header)) if numeric is None else numeric)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class='{'num' if j in numeric else 'txt'}'>{html.escape(str(c))}</td>" for j, c in enumerate(r))
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _headline_cells(f: dict) -> list[str]:
    return [format_money(f.get("net_pnl")), format_number(f.get("sharpe"), 2), format_number(f.get("sortino"), 2),
            format_money(f.get("max_drawdown_usd")), format_percent(f.get("max_drawdown_pct"), 1),
            format_number(f.get("calmar"), 2),
            "n/a" if _missing(f.get("trades")) else format_number(f.get("trades"), 0),
            "n/a" if _missing(f.get("max_open")) else format_number(f.get("max_open"), 0)]


def _img(png: bytes, alt: str) -> str:
    return (f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


_CSS = ("body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1150px;margin:24px auto;"
        "padding:0 16px;color:#222;line-height:1.4}h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid "
        "#ddd;padding-bottom:4px}.sub{color:#555;margin-top:0}table{border-collapse:collapse;margin:8px 0}"
        "td,th{border:1px solid #ccc;padding:3px 9px}th{background:#f3f3f3;text-align:left}td.num{text-align:right;"
        "font-variant-numeric:tabular-nums;white-space:nowrap}tr.me td{font-weight:bold;background:#fafae8}"
        "figure{margin:8px 0}img{max-width:100%}figcaption{color:#666;font-size:90%}.note{color:#555;"
        "font-size:92%}.verdict{background:#f6f8fa;border-left:4px solid #444;padding:8px 12px}")


def portfolio_report_html(summary: dict, result: PortfolioResult, benchmarks: dict[str, pd.Series], config: dict,
                          title: str, calendar: SessionCalendar | None = None) -> str:
    """One self-contained HTML page (PNG images inline as base64, no external CSS or JS,
    every text escaped): the headline figures (``summary``: ``portfolio_summary``), the
    portfolio against its ``benchmarks`` (``benchmarks()``: figures from each curve's
    ``attrs["summary"]``, or else computed from the curve by ``calendar``, CME Globex by
    default), correlations, risk contributions, equity, drawdown, entries skipped by rule
    with their counterfactual P&L, and the ``config`` it ran with (a dict: ``version``,
    ``rules``, ``models``, ``capital`` and anything else, all optional)."""
    config = dict(config or {})
    capital = _capital(config, benchmarks)
    pngs = figures(summary, result, benchmarks, capital=capital)
    version = config.get("version")
    esc = html.escape
    equity = result.equity
    parts: list[str] = []

    heading = str(title)
    if version is not None and str(version) not in heading:
        heading = f"{heading}: {version}"
    if len(equity):
        first, last = equity.index[0], equity.index[-1]
        period = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"
    else:
        period = "n/a (no bars)"
    days = summary.get("days")
    symbols = sorted({k[:-len(" alone")] for k in benchmarks if k.endswith(" alone")}
                     | (set(result.trades["symbol"]) if len(result.trades) else set()))
    parts.append(f"<h1>{esc(heading)}</h1>")
    parts.append(f"<p class='sub'>Out of sample, {esc(period)}"
                 + (f" ({esc(format_number(days, 0))} trading days)" if not _missing(days) else "")
                 + f"; capital {esc(format_money(capital))}"
                 + (f"; instruments {esc(', '.join(symbols))}" if symbols else "") + ".</p>")

    # the verdict, in words
    marked = float(equity.iloc[-1] - capital) if len(equity) else float("nan")
    skipped = result.skipped
    words = (f"Net P&L {format_money(summary.get('net_pnl'))} on {format_number(summary.get('trades'), 0)} trades, "
             f"Sharpe {format_number(summary.get('sharpe'), 2)}, worst drawdown "
             f"{format_money(summary.get('max_drawdown_usd'))} ({format_percent(summary.get('max_drawdown_pct'))}).")
    eq = benchmarks.get(EQUAL_WEIGHT)
    if eq is not None:
        f = eq.attrs.get("summary") or _curve_figures(eq, capital, calendar or GLOBEX)
        words += (f" Equal weight, with no rule refusing anything: {format_money(f.get('net_pnl'))}, Sharpe "
                  f"{format_number(f.get('sharpe'), 2)}, worst drawdown {format_money(f.get('max_drawdown_usd'))}.")
    if len(skipped):
        cf = float(pd.to_numeric(skipped["counterfactual_pnl"], errors="coerce").sum())
        effect = "the rules cost that much" if cf > 0 else "the rules saved that much" if cf < 0 else "even"
        words += (f" The rules skipped {len(skipped):,} entries ({', '.join(_rule_order(set(skipped['rule'])))}), "
                  f"whose counterfactual net P&L was {format_money(cf)}: {effect}.")
    else:
        words += " No entry was skipped by the rules."
    parts.append(f"<p class='verdict'>{esc(words)}</p>")

    # headline
    labels = ["net P&L", "Sharpe", "Sortino", "max drawdown $", "max drawdown %", "Calmar", "trades",
              "most positions open at once"]
    cells = _headline_cells(summary)
    rows = [[k, v] for k, v in zip(labels, cells, strict=True)]
    if result.open_positions:
        rows.insert(1, [f"open at the end ({', '.join(sorted(result.open_positions))}), marked",
                        format_money(marked - float(summary.get("net_pnl") or 0.0))])
    parts.append("<h2>Headline</h2>" + _table(["figure", "portfolio"], rows)
                 + "<p class='note'>Net P&amp;L of closed trades, after commissions and slippage. Sharpe and "
                   "Sortino annualised (&radic;252) from the daily P&amp;L of the equity marked to market; max "
                   "drawdown from the running peak (capital included); Calmar: annual P&amp;L / max drawdown $.</p>")

    # comparison
    header = ["", *labels]
    comp = [["portfolio", *cells]]
    approximate = False
    for name, curve in benchmarks.items():
        f = curve.attrs.get("summary")
        if f is None:
            f, approximate = _curve_figures(curve, capital, calendar or GLOBEX), True
        comp.append([name, *_headline_cells(f)])
    table = _table(header, comp).replace("<tbody><tr>", "<tbody><tr class='me'>", 1)
    notes = ("<p class='note'><b>equal weight</b>: every instrument's signals with no portfolio rule, each "
             "position sized to the same dollar risk (one hourly ATR within the risk budget); nothing refused. "
             "<b>&lt;SYM&gt; alone</b>: that instrument on its own with every rule off, one contract, same "
             "capital. Same period, models, fills and costs, same engine.")
    if approximate:
        notes += " Rows without their run's figures: from the curve alone (net P&amp;L marked to market)."
    parts.append("<h2>Against the benchmarks</h2>" + table + notes + "</p>")
    parts.append("<h2>Equity</h2>" + _img(pngs["equity"],
                                          "equity: portfolio vs equal weight vs each instrument alone"))
    parts.append("<h2>Drawdown</h2>" + _img(pngs["drawdown"], "underwater: $ below the running peak"))

    # correlation and risk
    parts.append("<h2>Correlations</h2>" + _img(pngs["correlation"],
                                                 "daily P&L correlations between instruments"))
    rc = summary.get("risk_contribution")
    risk = "<h2>Risk contributions</h2>"
    if rc is not None and len(rc):
        risk += _table(["instrument", "share of portfolio variance"],
                       [[str(k), format_percent(v, 1)] for k, v in rc.items()])
        risk += ("<p class='note'>Each instrument's covariance with the portfolio's daily P&amp;L over its "
                 "variance: the shares sum to 100%; a negative share diversifies.</p>")
    parts.append(risk + _img(pngs["risk_contribution"], "risk contribution by instrument"))

    # skipped entries
    sk = summary.get("skipped")
    sec = "<h2>Entries skipped by rule</h2>"
    if sk is None or not len(sk) or not len(skipped):
        sec += "<p><b>No entry was skipped</b>: no portfolio rule refused an entry in this period.</p>"
    else:
        rows = []
        cf = pd.to_numeric(skipped["counterfactual_pnl"], errors="coerce")
        for rule in _rule_order(sk.index):
            mine = skipped["rule"] == rule
            per = skipped.loc[mine, "symbol"].value_counts().sort_index()
            rows.append([str(rule), format_number(sk.loc[rule, "skipped"], 0),
                         format_money(sk.loc[rule, "counterfactual_pnl"]),
                         format_number(int(cf[mine].isna().sum()), 0),
                         ", ".join(f"{s} {n:,}" for s, n in per.items())])
        rows.append(["total", format_number(len(skipped), 0), format_money(cf.sum()),
                     format_number(int(cf.isna().sum()), 0), ""])
        sec += _table(["rule", "entries skipped", "counterfactual net P&L", "without a counterfactual",
                       "by instrument"], rows, numeric=(1, 2, 3))
        sec += ("<p class='note'>Counterfactual: each skipped signal simulated on its own with the same exit "
                "rules, fills and costs. Positive: the rule cost that much; negative: it saved that much. Rules "
                "are checked in the order max_drawdown_stop, daily_loss_stop, max_positions, correlation, "
                "allocation; the first that refuses is counted.</p>")
    parts.append(sec + _img(pngs["skipped"], "entries skipped by rule, counterfactual P&L"))

    # the configuration
    rules = config.get("rules")
    sec = "<h2>Rules in force</h2>"
    if isinstance(rules, dict) and rules:
        rows = []
        for k, v in rules.items():
            kind, what = _RULES.get(str(k), ("auto", ""))
            rows.append([str(k), _value(v, kind), what])
        sec += _table(["rule", "value", "what it does"], rows, numeric=())
    elif rules:
        sec += f"<p>{esc(_value(rules))}</p>"
    else:
        sec += "<p>No rules recorded in the configuration.</p>"
    parts.append(sec)

    models = config.get("models")
    sec = "<h2>Models</h2>"
    if isinstance(models, dict) and models:
        sec += _table(["instrument", "model"], [[str(k), _value(v) if v is not None else "none (veto off)"]
                                                 for k, v in models.items()], numeric=())
    elif models:
        sec += f"<p>{esc(_value(models))}</p>"
    else:
        sec += "<p>No models recorded in the configuration.</p>"
    parts.append(sec)

    other = {k: v for k, v in config.items() if k not in ("rules", "models")}
    if other:
        parts.append("<h2>Configuration</h2>" + _table(
            ["setting", "value"], [[str(k), _value(v, "money" if k == "capital" else "auto")] for k, v in other.items()],
            numeric=()))

    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>" + esc(heading)
            + f"</title><style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>")
