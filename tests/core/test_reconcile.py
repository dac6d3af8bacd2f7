"""Reconciliation with a reference trade list finds every planted difference (roadmap: production
code reproduces the research notebook's backtests)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rooney_core.backtest.reconcile import (
    ReconciliationError,
    read_reference_trades,
    reconcile,
)
from rooney_core.config import ReconciliationSection

TICK, POINT = 0.25, 50.0  # ES
TOL = ReconciliationSection(time_tolerance="0min", price_tolerance_ticks=0.5, return_tolerance=0.01)


def our_trades() -> pd.DataFrame:
    """Four hand-built ES long trades, P&L net of $4 commission per round trip per contract."""
    t = pd.to_datetime
    df = pd.DataFrame({
        "entry_time": t(["2023-03-01 10:00", "2023-03-02 10:00", "2023-05-04 03:00", "2023-06-07 20:00"]),
        "exit_time": t(["2023-03-01 15:00", "2023-03-02 13:00", "2023-05-04 09:00", "2023-06-08 02:00"]),
        "entry_price": [4000.00, 3990.25, 4100.50, 4250.00],
        "exit_price": [4010.00, 3985.00, 4120.75, 4260.25],
        "contracts": [1, 1, 2, 1],
        "exit_reason": ["session", "stop", "ibs", "time"],
    })
    return with_pnl(df)


def with_pnl(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["pnl_net"] = (df["exit_price"] - df["entry_price"]) * POINT * df["contracts"] - 4.0 * df["contracts"]
    return df


def as_reference(ours: pd.DataFrame, tmp_path: Path, pnl: bool = True, name: str = "ref.csv") -> Path:
    cols = ["entry_time", "exit_time", "entry_price", "exit_price", "contracts"] + (["pnl_net"] if pnl else [])
    path = tmp_path / name
    ours[cols].rename(columns={"pnl_net": "pnl"}).to_csv(path, index=False)
    return path


def run(ours: pd.DataFrame, ref: pd.DataFrame, tol: ReconciliationSection = TOL):
    return reconcile(ours, ref, tick_size=TICK, point_value=POINT, tolerance=tol, symbol="ES")


def test_faithful_reference_passes(tmp_path):
    ours = our_trades()
    ref = read_reference_trades(as_reference(ours, tmp_path))
    assert list(ref.columns) == ["entry_time", "exit_time", "entry_price", "exit_price", "pnl", "contracts"]
    report = run(ours, ref)
    s = report.summary
    assert (s["matched"], s["only_ours"], s["only_reference"], s["matched_but_different"]) == (4, 0, 0, 0)
    assert report.matched["identical"].all() and report.passed
    assert s["pnl_ours"] == pytest.approx(s["pnl_reference"]) and s["return_difference"] == pytest.approx(0)
    assert report.describe().startswith("ES: PASSED")


def test_missing_reference_trade_is_only_ours(tmp_path):
    ours = our_trades()
    ref = read_reference_trades(as_reference(ours.drop(index=1), tmp_path))
    report = run(ours, ref)
    assert report.summary["only_ours"] == 1 and report.summary["only_reference"] == 0
    assert report.only_ours["entry_time"].iloc[0] == pd.Timestamp("2023-03-02 10:00")
    assert not report.passed
    assert "1 trade(s) only in ours (first entries: 2023-03-02 10:00)" in report.describe()


def test_extra_reference_trade_is_only_reference(tmp_path):
    ours = our_trades()
    extra = ours.iloc[[0]].assign(entry_time=pd.Timestamp("2023-07-03 11:00"),
                                  exit_time=pd.Timestamp("2023-07-03 15:00"))
    ref = read_reference_trades(as_reference(pd.concat([ours, extra]), tmp_path))
    report = run(ours, ref)
    assert report.summary["only_reference"] == 1 and report.summary["only_ours"] == 0
    assert report.summary["matched_but_different"] == 0 and not report.passed
    assert "only in reference (first entries: 2023-07-03 11:00)" in report.describe()


def test_shifted_exit_is_matched_but_different(tmp_path):
    ours = our_trades()
    ref = read_reference_trades(as_reference(ours, tmp_path))
    ours.loc[2, "exit_time"] += pd.Timedelta("1h")  # ours exits an hour later, same price
    report = run(ours, ref)
    m = report.matched
    assert report.summary["matched"] == 4 and report.summary["matched_but_different"] == 1
    assert m.loc[~m["identical"], "exit_shift"].tolist() == [pd.Timedelta("1h")]
    assert not report.passed
    assert "1 exit(s) shifted: 2023-05-04 09:00 -> 2023-05-04 10:00 (+1h)" in report.describe()


def test_price_off_by_one_tick(tmp_path):
    ours = our_trades()
    ref = read_reference_trades(as_reference(ours, tmp_path))
    ours.loc[1, "entry_price"] += TICK
    report = run(with_pnl(ours), ref)
    row = report.matched.set_index("ours_index").loc[1]
    assert row["entry_diff_ticks"] == 1.0 and row["exit_diff_ticks"] == 0.0 and not row["identical"]
    assert row["pnl_diff"] == pytest.approx(-TICK * POINT)
    assert report.summary["max_abs_entry_diff_ticks"] == 1.0 and not report.passed
    assert "1 entry price(s) off: 2023-03-02 10:00 +1.0 tick" in report.describe()


@pytest.mark.parametrize("tolerance,matched", [("5min", 4), ("0min", 3)])
def test_time_tolerance_decides_a_one_minute_entry_shift(tmp_path, tolerance, matched):
    ours = our_trades()
    ref = read_reference_trades(as_reference(ours, tmp_path))
    ours.loc[3, "entry_time"] += pd.Timedelta("1min")
    tol = ReconciliationSection(time_tolerance=tolerance, price_tolerance_ticks=0.5, return_tolerance=0.01)
    report = run(ours, ref, tol)
    assert report.summary["matched"] == matched
    assert report.passed is (matched == 4)
    if matched == 3:
        assert report.summary["only_ours"] == 1 and report.summary["only_reference"] == 1


def test_each_trade_is_matched_at_most_once():
    # Two of ours near one reference entry: only the nearest pairs with it.
    ours = with_pnl(our_trades().iloc[[0, 0]].assign(
        entry_time=pd.to_datetime(["2023-03-01 09:58", "2023-03-01 10:01"])))
    ref = our_trades().iloc[[0]].rename(columns={"pnl_net": "pnl"})
    report = run(ours, ref, ReconciliationSection(time_tolerance="5min"))
    assert report.summary["matched"] == 1 and report.summary["only_ours"] == 1
    assert report.matched["our_entry_time"].iloc[0] == pd.Timestamp("2023-03-01 10:01")


def test_aliases_and_case_are_accepted(tmp_path):
    path = tmp_path / "tv.csv"
    path.write_text("ENTRY DATE,Exit Time,Entry Price,exit_PRICE,P&L,Qty\n"
                    "2023-03-02 10:00,2023-03-02 13:00,3990.25,3985.00,-266.5,1\n"
                    "2023-03-01 10:00:00,2023-03-01 15:00:00,4000,4010,496,1\n")
    ref = read_reference_trades(path)
    assert ref["entry_time"].tolist() == [pd.Timestamp("2023-03-01 10:00"), pd.Timestamp("2023-03-02 10:00")]
    assert ref["pnl"].tolist() == [496.0, -266.5] and ref["contracts"].tolist() == [1, 1]
    report = run(our_trades().iloc[:2], ref)
    assert report.passed, report.describe()


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("entry_time,exit_time,entry_price,pnl\n2023-03-01 10:00,2023-03-01 15:00,4000,496\n")
    with pytest.raises(ReconciliationError, match=r"broken\.csv: missing column 'exit_price'"):
        read_reference_trades(path)


def test_timezone_aware_times_are_refused_or_converted(tmp_path):
    path = tmp_path / "utc.csv"
    path.write_text("entry_time,exit_time,entry_price,exit_price\n"
                    "2023-03-01 16:00+00:00,2023-03-01 21:00+00:00,4000,4010\n"
                    "2023-07-03 16:00+00:00,2023-07-03 20:00+00:00,4000,4010\n")
    with pytest.raises(ReconciliationError, match="naive exchange-local"):
        read_reference_trades(path)
    ref = read_reference_trades(path, timezone="America/Chicago")
    assert ref["entry_time"].tolist() == [pd.Timestamp("2023-03-01 10:00"), pd.Timestamp("2023-07-03 11:00")]


def test_reference_without_pnl_uses_gross_pnl_from_prices(tmp_path):
    ours = our_trades()
    ref = read_reference_trades(as_reference(ours, tmp_path, pnl=False))
    assert ref["pnl"].isna().all()
    report = run(ours, ref)
    gross = ((ours["exit_price"] - ours["entry_price"]) * POINT * ours["contracts"]).sum()
    assert report.summary["pnl_reference"] == pytest.approx(gross)
    assert report.summary["reference_pnl_gross"] and "gross" in report.describe()
    assert report.matched["identical"].all()
    # ours is net of $4 per contract round trip: the difference is exactly the commission.
    assert report.summary["pnl_ours"] == pytest.approx(gross - 4.0 * ours["contracts"].sum())
