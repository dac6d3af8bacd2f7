"""The portfolio's out-of-sample report (rooney_core/portfolio/report.py): benchmarks by the same
engine, the plots, the self-contained HTML page. Sample data: ES, NQ, GC, 2022-06 .. 2023-12
hourly, out of sample from 2023."""

from __future__ import annotations

import base64
import math
import re

import numpy as np
import pandas as pd
import pytest

from rooney_core.config import load_config
from rooney_core.data import load_session_bars
from rooney_core.features import REGISTRY, instrument_inputs
from rooney_core.portfolio import PortfolioRules, portfolio_summary, run_portfolio
from rooney_core.portfolio.report import (
    DEFAULT_RISK_BUDGET,
    EQUAL_WEIGHT,
    FIGURES,
    _curve_figures,
    benchmarks,
    figures,
    format_money,
    format_number,
    format_percent,
    portfolio_report_html,
)
from rooney_core.sample_market import load_sample_market, write_sample_data
from rooney_core.training.candidates import label_signals

CFG = load_config()
SYMBOLS = ["ES", "GC", "NQ"]
START = "2023-01-01"
PNG = b"\x89PNG\r\n\x1a\n"
RULES = PortfolioRules(max_positions=2, daily_loss_stop=300.0, max_contracts=6)  # no risk budget: the default one
INJECT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("portfolio_report_market")
    write_sample_data(out, SYMBOLS, "2022-06-01", "2023-12-31", seed=4, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=60)
    hourly = {s: load_session_bars(out, CFG.instrument(s)).hourly for s in SYMBOLS}
    feats = {s: REGISTRY.compute(instrument_inputs(CFG, s, hourly[s], hourly.get(CFG.instrument(s).pair)))
             for s in SYMBOLS}
    labels = {s: label_signals(hourly[s], feats[s], CFG.instrument(s), CFG.strategy) for s in SYMBOLS}
    return hourly, feats, labels


def _instruments(symbols=SYMBOLS):
    return {s: CFG.instrument(s) for s in symbols}


@pytest.fixture(scope="module")
def report(market):
    hourly, feats, labels = market
    result = run_portfolio(hourly, feats, _instruments(), CFG.strategy, RULES, start=START, labels=labels)
    bench = benchmarks(hourly, feats, _instruments(), CFG.strategy, RULES, start=START, labels=labels)
    summary = portfolio_summary(result, CFG.instrument("ES").calendar)
    return result, bench, summary


def _text(doc: str) -> str:
    """The page without its inline images (base64 can spell anything)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,", doc)


def test_formats():
    assert format_money(12345.4) == "$12,345" and format_money(-6774.2) == "-$6,774"
    assert format_money(1.5e7) == "$15,000,000" and format_money(-0.3) == "$0" and format_money(0) == "$0"
    assert format_money(float("nan")) == "n/a" and format_money(None) == "n/a" and format_money(np.nan) == "n/a"
    assert format_money(1234.567, 2) == "$1,234.57"
    assert format_number(1.23456, 2) == "1.23" and format_number(-0.001, 2) == "0.00"
    assert format_number(12345.678, 1) == "12,345.7" and format_number(float("nan"), 2) == "n/a"
    assert format_percent(0.1234) == "12.3%" and format_percent(float("nan")) == "n/a"


def test_each_instrument_alone_is_its_one_instrument_portfolio_with_rules_off(market, report):
    hourly, feats, labels = market
    _, bench, _ = report
    assert set(bench) == {EQUAL_WEIGHT, *(f"{s} alone" for s in SYMBOLS)}
    for s in SYMBOLS:
        one = run_portfolio({s: hourly[s]}, {s: feats[s]}, _instruments([s]), CFG.strategy, PortfolioRules.off(),
                            start=START)
        curve = bench[f"{s} alone"]
        pd.testing.assert_series_equal(curve, one.equity, check_names=False)
        assert curve.attrs["summary"]["net_pnl"] == pytest.approx(one.net_pnl)
        assert curve.attrs["summary"]["trades"] == len(one.trades) > 10
        assert (one.trades["contracts"] == 1).all()
    # the same period as the portfolio
    assert bench["ES alone"].index[0] >= pd.Timestamp(START) - pd.Timedelta(hours=7)


def test_equal_weight_refuses_nothing_and_sizes_by_the_same_risk_budget(market, report):
    hourly, feats, labels = market
    result, bench, _ = report
    assert len(result.skipped) > 0  # the portfolio's rules do refuse entries ...
    eq = bench[EQUAL_WEIGHT]
    assert eq.attrs["skipped"] == 0  # ... equal weight refuses none
    same = run_portfolio(hourly, feats, _instruments(), CFG.strategy,
                         PortfolioRules(risk_budget=DEFAULT_RISK_BUDGET, max_contracts=RULES.max_contracts,
                                        halt_when_broke=False),
                         start=START, labels=labels)
    pd.testing.assert_series_equal(eq, same.equity, check_names=False)
    off = run_portfolio(hourly, feats, _instruments(), CFG.strategy, PortfolioRules.off(), start=START)
    assert same.skipped.empty and len(same.trades) == len(off.trades) == eq.attrs["summary"]["trades"]
    for s in SYMBOLS:  # the same dollar risk per position: contracts = budget / (one hourly ATR in $)
        t = same.trades[same.trades["symbol"] == s]
        pv = CFG.instrument(s).point_value
        risk = (feats[s]["atr14_pct"] * hourly[s]["close"] * pv).loc[t["signal_time"]].to_numpy()
        want = np.clip(np.floor(DEFAULT_RISK_BUDGET / risk), 1, RULES.max_contracts)
        np.testing.assert_array_equal(t["contracts"].to_numpy(), want)
    assert same.trades["contracts"].nunique() > 1
    # the portfolio's own risk budget, when it has one
    mine = PortfolioRules(max_positions=1, risk_budget=1500.0, max_contracts=4)
    b2 = benchmarks({s: hourly[s] for s in ("ES", "GC")}, {s: feats[s] for s in ("ES", "GC")},
                    _instruments(["ES", "GC"]), CFG.strategy, mine, start="2023-07-01")
    want = run_portfolio({s: hourly[s] for s in ("ES", "GC")}, {s: feats[s] for s in ("ES", "GC")},
                         _instruments(["ES", "GC"]), CFG.strategy, PortfolioRules(risk_budget=1500.0, max_contracts=4, halt_when_broke=False),
                         start="2023-07-01")
    pd.testing.assert_series_equal(b2[EQUAL_WEIGHT], want.equity, check_names=False)
    assert b2[EQUAL_WEIGHT].attrs["skipped"] == 0


def test_a_curve_without_its_figures_gets_the_same_ones_from_the_curve(report):
    _, bench, _ = report
    for name, curve in bench.items():
        f, g = curve.attrs["summary"], _curve_figures(curve, 100_000.0)
        for k in ("sharpe", "sortino", "max_drawdown_usd", "max_drawdown_pct", "calmar"):
            assert g[k] == pytest.approx(f[k], nan_ok=True), (name, k)


def test_figures_are_pngs_even_without_data(report):
    result, bench, summary = report
    figs = figures(summary, result, bench)
    assert tuple(figs) == FIGURES
    assert all(v.startswith(PNG) and len(v) > 5000 for v in figs.values())
    empty = summary | {"correlation": None, "risk_contribution": None,
                       "skipped": pd.DataFrame(columns=["skipped", "counterfactual_pnl"])}
    flat = type(result)(result.trades.iloc[:0], result.equity.iloc[:0], result.skipped.iloc[:0], 0)
    assert all(v.startswith(PNG) for v in figures(empty, flat, {}).values())


def test_the_html_page_is_self_contained_escaped_and_reads_like_a_risk_report(report):
    result, bench, summary = report
    summary = summary | {"sortino": float("nan")}
    config = {"version": "portfolio_v3", "capital": 100_000.0,
              "rules": {"max_positions": 2, "daily_loss_stop": 300.0, "corr_rho": None, INJECT: 1},
              "models": {"ES": "ES_v7", "GC": {"version": "GC_v2", "threshold": 0.55}, "NQ": INJECT},
              "note": INJECT}
    doc = portfolio_report_html(summary, result, bench, config, f"Out-of-sample report {INJECT}")
    text = _text(doc)
    # self-contained: no external source or link, every image inline PNG
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", doc, re.I)
    assert "<link" not in doc and "<script" not in doc.lower() and "@import" not in doc
    images = re.findall(r"<img[^>]*\ssrc='([^']*)'", doc)
    assert len(images) == len(FIGURES)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    # escaped, not run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc and text.count("&lt;script&gt;") >= 4
    # the version, the period, the headline in one money format
    assert "portfolio_v3" in re.search(r"<h1>(.*?)</h1>", doc).group(1)
    assert re.search(r"<title>[^<]*portfolio_v3", doc)
    assert f"{result.equity.index[0]:%Y-%m-%d}" in text and f"{result.equity.index[-1]:%Y-%m-%d}" in text
    assert f"<td class='txt'>net P&amp;L</td><td class='num'>{format_money(summary['net_pnl'])}</td>" in text
    assert re.search(r"-?\$\d{1,3}(,\d{3})+\b", text)  # $ and thousands separators
    assert "e+0" not in text and "e-0" not in text and not re.search(r"\bnan\b", text, re.I)
    assert "<td class='txt'>Sortino</td><td class='num'>n/a</td>" in text  # a NaN
    sharpe = f"{summary['sharpe']:.2f}"
    assert f"<td class='txt'>Sharpe</td><td class='num'>{sharpe}</td>" in text
    pct = format_percent(summary["max_drawdown_pct"])
    assert re.fullmatch(r"\d+\.\d%", pct) and pct in text
    # the comparison: the portfolio, equal weight and each instrument alone
    for name in ("portfolio", EQUAL_WEIGHT, *(f"{s} alone" for s in SYMBOLS)):
        assert f"<td class='txt'>{name}</td>" in text
    alone = bench["GC alone"].attrs["summary"]
    assert f"<td class='txt'>GC alone</td><td class='num'>{format_money(alone['net_pnl'])}</td>" in text
    # each rule that skipped entries, with its count and counterfactual P&L
    sk = summary["skipped"]
    assert set(sk.index) == set(result.skipped["rule"]) and len(sk) >= 2
    for rule in sk.index:
        row = (f"<td class='txt'>{rule}</td><td class='num'>{format_number(sk.loc[rule, 'skipped'], 0)}</td>"
               f"<td class='num'>{format_money(sk.loc[rule, 'counterfactual_pnl'])}</td>")
        assert row in text
    assert "No entry was skipped" not in text
    # the rules and models it ran with
    assert "<td class='txt'>daily_loss_stop</td><td class='txt'>$300</td>" in text
    assert "<td class='txt'>corr_rho</td><td class='txt'>off</td>" in text
    assert "ES_v7" in text and "GC_v2" in text and "threshold: 0.55" in text


def test_the_page_says_plainly_when_no_entry_was_skipped(market):
    hourly, feats, labels = market
    symbols = ["ES", "NQ"]
    res = run_portfolio({s: hourly[s] for s in symbols}, {s: feats[s] for s in symbols}, _instruments(symbols),
                        CFG.strategy, PortfolioRules.off(), start="2023-09-01")
    summary = portfolio_summary(res, CFG.instrument("ES").calendar)
    plain = {"ES alone": res.equity.rename("ES alone")}  # a curve without its figures: computed from it
    doc = portfolio_report_html(summary, res, plain, {}, "portfolio_v1")
    text = _text(doc)
    assert "No entry was skipped" in text and "No rules recorded" in text and "No models recorded" in text
    assert "<td class='txt'>ES alone</td>" in text and not re.search(r"\bnan\b", text, re.I)
    assert not math.isnan(summary["sharpe"])
