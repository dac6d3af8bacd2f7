"""Scenario tests pinning every trading rule on hand-built bar sequences, plus look-ahead
and determinism of the production IbsStrategy in Backtrader."""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd
import pytest
from builders import GLOBEX, make_hourly

from rooney_core.backtest.runner import run_backtest
from rooney_core.config import load_config
from rooney_core.features import REGISTRY, FeatureInputs
from rooney_core.strategy import rules
from rooney_core.training.candidates import extract_candidates

CFG = load_config()
ES = CFG.instrument("ES")  # tick 0.25, point value 50, $2 per side, 1 tick slippage
RULES = CFG.strategy


def bars(spec: list[tuple[str, float, float, float, float]]) -> pd.DataFrame:
    """Hourly bars from (start, open, high, low, close); volume 100."""
    idx = pd.DatetimeIndex([pd.Timestamp(s) for s, *_ in spec], name="timestamp")
    o, h, lo, c = (np.array([row[k] for row in spec], dtype=float) for k in (1, 2, 3, 4))
    return pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": 100.0}, index=idx)


def feats(hourly: pd.DataFrame, names=("ibs", "rsi2")) -> pd.DataFrame:
    return REGISTRY.compute(FeatureInputs(hourly, GLOBEX), list(names))


def run(hourly: pd.DataFrame, model=None, veto=True, **kw):
    return run_backtest(hourly, feats(hourly), ES, RULES, model=model, veto_enabled=veto, **kw)


# Bar helpers: a low-IBS bar (close at the low: IBS 0), a neutral bar (IBS 0.5), a high one.
def low(t, p=5000.0):
    return (t, p, p + 2, p - 2, p - 2)


def mid(t, p=5000.0):
    return (t, p, p + 2, p - 2, p)


def high(t, p=5000.0):
    return (t, p, p + 2, p - 2, p + 2)


MON = "2024-12-02 "  # a Monday; its session opened Sunday 17:00


def test_entry_fills_at_next_open_plus_slippage_and_ibs_exit_pays_commission():
    r = run(bars([mid(MON + "08:00"), low(MON + "09:00"), mid(MON + "10:00", 5001), high(MON + "11:00", 5010),
                  mid(MON + "12:00", 5020), mid(MON + "13:00", 5020)]))
    [t] = r.trades.to_dict("records")
    assert t["signal_time"] == pd.Timestamp(MON + "09:00")
    assert t["entry_time"] == pd.Timestamp(MON + "10:00") and t["entry_price"] == 5001 + 0.25
    assert t["exit_reason"] == "ibs_exit" and t["exit_signal_time"] == pd.Timestamp(MON + "11:00")
    assert t["exit_time"] == pd.Timestamp(MON + "12:00") and t["exit_price"] == 5020 - 0.25
    assert t["pnl_gross"] == pytest.approx((5019.75 - 5001.25) * 50)
    assert t["pnl_net"] == pytest.approx((5019.75 - 5001.25) * 50 - 2 * 2.0)


@pytest.mark.parametrize("ibs_close,expect_trade", [(4999.0, True), (4999.25, False)])
def test_entry_threshold(ibs_close, expect_trade):
    # range 5 points: close 1.0 above the low is IBS 0.2 exactly (entry); one tick more is 0.25
    r = run(bars([mid(MON + "08:00"), (MON + "09:00", 5000, 5003, 4998, ibs_close), mid(MON + "10:00"),
                  mid(MON + "11:00")]))
    assert (len(r.trades) + (r.open_position is not None)) == int(expect_trade)


@pytest.mark.parametrize("hour,allowed", [("00:00", True), ("13:00", True), ("14:00", False), ("15:00", False),
                                          ("17:00", True), ("23:00", True)])
def test_entry_time_windows(hour, allowed):
    day = MON if hour >= "17:00" else "2024-12-03 "  # 17:00-23:00 open Tuesday's session
    t0 = pd.Timestamp(day + hour)
    seq = [mid(str(t0 - pd.Timedelta("1h"))), low(str(t0)), mid(str(t0 + pd.Timedelta("1h")))]
    seq = [s for s in seq if GLOBEX.in_session(np.array([np.datetime64(s[0])]))[0]]
    r = run(bars(seq))
    entered = any(r.decisions["event"] == "entry_order")
    assert entered == allowed
    assert rules.in_entry_window(time(int(hour[:2])), RULES) == allowed


def test_stop_loss_and_take_profit():
    stop = run(bars([low(MON + "08:00"), mid(MON + "09:00", 5000), mid(MON + "10:00", 4949),
                     mid(MON + "11:00", 4949), mid(MON + "12:00", 4949)]))
    [t] = stop.trades.to_dict("records")
    # entry 5000.25; 1% stop = 4950.2475; close 4949 at the 10:00 bar -> out at 11:00 open - 1 tick
    assert t["exit_reason"] == "stop_loss" and t["exit_time"] == pd.Timestamp(MON + "11:00")
    assert t["exit_price"] == 4949 - 0.25
    tp = run(bars([low(MON + "08:00"), mid(MON + "09:00", 5000), mid(MON + "10:00", 5051),
                   mid(MON + "11:00", 5051)]))
    assert tp.trades.iloc[0]["exit_reason"] == "take_profit"


def test_stop_loss_wins_over_ibs_exit_and_time_stop():
    # a bar that both closes below the stop and has IBS 1.0 would be impossible; test order on rules
    pos = rules.Position(entry_price=100.0, contracts=1, bars_held=8)
    assert rules.exit_reason(pos, 98.9, 0.9, RULES, False) == "stop_loss"
    assert rules.exit_reason(pos, 101.1, 0.9, RULES, False) == "take_profit"
    assert rules.exit_reason(pos, 100.0, 0.9, RULES, False) == "ibs_exit"
    assert rules.exit_reason(pos, 100.0, 0.5, RULES, True) == "time_stop"
    pos7 = rules.Position(100.0, 1, 7)
    assert rules.exit_reason(pos7, 100.0, 0.5, RULES, True) == "session_exit"
    assert rules.exit_reason(pos7, 100.0, 0.5, RULES, False) is None
    assert rules.exit_reason(rules.Position(100.0, 1, 0), 90.0, 0.9, RULES, True) is None


def test_time_stop_at_the_close_of_holding_bar_8():
    seq = [low("2024-12-02 18:00")] + [mid(f"2024-12-02 {h}:00") for h in range(19, 24)]
    seq += [mid(f"2024-12-03 0{h}:00") for h in range(0, 6)]
    r = run(bars(seq))
    [t] = r.trades.to_dict("records")
    # filled 19:00 (holding bar 1) ... holding bar 8 is 02:00; the exit fills at 03:00
    assert t["exit_reason"] == "time_stop" and t["bars_held"] == 8
    assert t["exit_signal_time"] == pd.Timestamp("2024-12-03 02:00")
    assert t["exit_time"] == pd.Timestamp("2024-12-03 03:00")


def test_session_exit_fills_at_15_00():
    r = run(bars([low(MON + "12:00"), mid(MON + "13:00"), mid(MON + "14:00"), mid(MON + "15:00"),
                  mid("2024-12-02 17:00")]))
    [t] = r.trades.to_dict("records")
    assert t["exit_reason"] == "session_exit"
    assert t["exit_signal_time"] == pd.Timestamp(MON + "14:00") and t["exit_time"] == pd.Timestamp(MON + "15:00")


def test_no_exit_at_the_close_of_the_signal_bar():
    # max holding 1: the earliest exit is at the close of the fill bar, never the signal bar
    tight = RULES.model_copy(update={"exits": RULES.exits.model_copy(update={"max_holding_bars": 1})})
    hourly = bars([low(MON + "08:00"), mid(MON + "09:00"), mid(MON + "10:00"), mid(MON + "11:00")])
    r = run_backtest(hourly, feats(hourly), ES, tight)
    [t] = r.trades.to_dict("records")
    assert t["exit_signal_time"] == pd.Timestamp(MON + "09:00") and t["exit_time"] == pd.Timestamp(MON + "10:00")
    assert t["bars_held"] == 1


class FixedModel:
    """A veto model returning a constant P(win) (our logic is under test, not a model)."""

    def __init__(self, p: float, names=("ibs", "rsi2"), threshold: float = 0.5):
        self.p, self.feature_names, self.threshold = p, list(names), threshold

    def probability(self, values: np.ndarray) -> float:
        return self.p


def _long_seq():
    seq = [mid(MON + f"0{h}:00") for h in range(0, 8)]
    return seq + [low(MON + "08:00"), mid(MON + "09:00"), high(MON + "10:00"), mid(MON + "11:00")]


def test_vetoed_entry_is_logged_and_not_traded():
    r = run(bars(_long_seq()), model=FixedModel(0.3))
    assert len(r.trades) == 0 and r.open_position is None
    veto = r.decisions[r.decisions["event"] == "veto"].iloc[0]
    assert "P(win) 0.300 < threshold 0.500" in veto["reason"] and r.veto_rate == 1.0
    ok = run(bars(_long_seq()), model=FixedModel(0.7))
    assert len(ok.trades) == 1 and ok.trades.iloc[0]["probability"] == 0.7


def test_missing_feature_vetoes_with_reason():
    r = run(bars([mid(MON + "07:00"), low(MON + "08:00"), mid(MON + "09:00")]), model=FixedModel(0.9))
    veto = r.decisions[r.decisions["event"] == "veto"]
    assert len(veto) == 1 and "missing or warming-up features: rsi2" in veto.iloc[0]["reason"]


def test_no_model_policy():
    seq = bars(_long_seq())
    assert len(run(seq).trades) == 1  # trade_unfiltered (default)
    off = RULES.model_copy(update={"veto": RULES.veto.model_copy(update={"when_no_model": "no_trading"})})
    r = run_backtest(seq, feats(seq), ES, off)
    assert len(r.trades) == 0 and "not trading" in r.decisions.iloc[0]["reason"]


def test_pnl_agrees_with_backtraders_own_accounting():
    hourly = make_hourly(n_sessions=60, seed=21)
    r = run_backtest(hourly, feats(hourly), ES, RULES)
    assert len(r.trades) > 20
    # equity curve and trade list tell the same story (flat at the end of a day => equal)
    final = r.equity.iloc[-1] - 100_000.0
    open_pnl = 0.0
    if r.open_position is not None:
        open_pnl = (hourly["close"].iloc[-1] - r.open_position["entry_price"]) * 50 * r.open_position["contracts"]
    assert final == pytest.approx(r.trades["pnl_net"].sum() + open_pnl)


# --- look-ahead and determinism -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_hourly() -> pd.DataFrame:
    return make_hourly(n_sessions=120, seed=33)


def _full_features(hourly):
    return REGISTRY.compute(FeatureInputs(hourly, GLOBEX))


def test_changing_bars_after_t_changes_no_decision_up_to_t(sample_hourly):
    base = run_backtest(sample_hourly, _full_features(sample_hourly), ES, RULES)
    rng = np.random.default_rng(8)
    for t in rng.integers(200, len(sample_hourly) - 50, size=4):
        changed = sample_hourly.copy()
        scale = 1 + 0.03 * rng.standard_normal(len(changed) - t - 1)
        for col in ("open", "high", "low", "close"):
            changed.iloc[t + 1:, changed.columns.get_loc(col)] *= scale
        changed.iloc[t + 1:, changed.columns.get_loc("volume")] *= 3
        other = run_backtest(changed, _full_features(changed), ES, RULES)
        cut = sample_hourly.index[t]
        a = base.decisions[base.decisions["time"] <= cut].reset_index(drop=True)
        b = other.decisions[other.decisions["time"] <= cut].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        assert not base.decisions.equals(other.decisions)  # the change did matter later on


def test_same_inputs_same_trades_and_metrics(sample_hourly):
    f = _full_features(sample_hourly)
    a = run_backtest(sample_hourly, f, ES, RULES)
    b = run_backtest(sample_hourly, f, ES, RULES)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    assert a.metrics == b.metrics or all(
        (x == y) or (x != x and y != y) for x, y in zip(a.metrics.values(), b.metrics.values(), strict=True))


def test_candidates_carry_features_as_of_the_signal_bar(sample_hourly):
    f = _full_features(sample_hourly)
    c = extract_candidates(sample_hourly, f, ES, RULES)
    assert len(c) > 20 and set(REGISTRY.names()) <= set(c.columns)
    row = c.iloc[len(c) // 2]
    assert row["ibs"] == f.loc[row["signal_time"], "ibs"] <= 0.2
    assert row["entry_time"] > row["signal_time"] and row["exit_time"] > row["entry_time"]
    assert (c["win"] == (c["pnl_net"] > 0)).all()
    assert c["return"].iloc[0] == pytest.approx(c["pnl_net"].iloc[0] / (c["entry_price"].iloc[0] * 50))


def test_ibs_thresholds_tolerate_decimal_tick_grids():
    # e.g. CL 71.23 - 71.03 is 0.20000000000000284 in binary; on paper the IBS is exactly 0.2
    assert rules.entry_signal(0.2 + 1e-12, time(9), RULES)
    assert not rules.entry_signal(0.2 + 1e-6, time(9), RULES)


def test_batched_and_per_row_veto_give_identical_decisions(sample_hourly):
    from types import SimpleNamespace

    from sklearn.ensemble import RandomForestClassifier

    from rooney_core.strategy.models import RowVeto

    f = _full_features(sample_hourly)
    cands = extract_candidates(sample_hourly, f, ES, RULES)
    names = ["ibs", "rsi2", "ret3", "volume_pctl252", "hour"]
    train = cands.dropna(subset=names)
    est = RandomForestClassifier(n_estimators=25, min_samples_leaf=5, random_state=0)
    est.fit(train[names].to_numpy(), train["win"].to_numpy())
    bundle = SimpleNamespace(estimator=est, feature_names=names, threshold=0.5)
    batched = run_backtest(sample_hourly, f, ES, RULES, model=bundle)
    per_row = run_backtest(sample_hourly, f, ES, RULES, model=RowVeto(est, names, 0.5))
    pd.testing.assert_frame_equal(batched.decisions, per_row.decisions)
    pd.testing.assert_frame_equal(batched.trades, per_row.trades)
    assert 0 < batched.veto_rate < 1


def test_max_drawdown_in_dollars_and_percent_can_come_from_different_falls():
    from rooney_core.backtest.metrics import max_drawdown

    usd, pct = max_drawdown(np.array([100.0, 50.0, 1000.0, 800.0]))
    assert usd == 200.0 and pct == 0.5


def test_row_veto_fast_path_is_bit_identical_to_predict_proba():
    """The live engine's single-row forest path gives exactly sklearn's predict_proba."""
    from sklearn.ensemble import RandomForestClassifier

    from rooney_core.strategy.models import RowVeto

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 7)) * [1, 10, 100, 0.01, 1e4, 3, 50]
    y = (x[:, 0] + rng.normal(size=2000) > 0).astype(int)
    for cw, depth in ((None, 5), ("balanced_subsample", None)):
        forest = RandomForestClassifier(n_estimators=60, max_depth=depth, min_samples_leaf=3, class_weight=cw,
                                        max_samples=0.7, random_state=3, n_jobs=1).fit(x, y)
        veto = RowVeto(forest, list("abcdefg"), 0.5)
        rows = rng.normal(size=(500, 7)) * [1, 10, 100, 0.01, 1e4, 3, 50]
        want = forest.predict_proba(rows)[:, 1]
        got = np.array([veto.probability(r) for r in rows])
        assert np.array_equal(got, want)


def test_every_base_signal_is_labelled_on_its_own_including_those_inside_an_open_trade(sample_hourly):
    """The label set is every bar where the entry rule fires; a signal the veto-off strategy
    takes gets exactly the backtest's trade, and signals inside its open trades are there too,
    each simulated alone (flat, same exit rules, fills and costs)."""
    from rooney_core.backtest.runner import possible_entries

    f = _full_features(sample_hourly)
    c = extract_candidates(sample_hourly, f, ES, RULES)
    signals = sample_hourly.index[possible_entries(f, sample_hourly, RULES, ES.calendar)]
    assert list(c["signal_time"]) == list(signals[:len(c)]) and len(signals) - len(c) == c.attrs["unresolved"] <= 2
    base = run_backtest(sample_hourly, f, ES, RULES, veto_enabled=False).trades
    taken = c[~c["overlaps"]].reset_index(drop=True)
    cols = ["signal_time", "entry_time", "entry_price", "exit_time", "exit_price", "exit_reason", "bars_held",
            "pnl_net"]
    pd.testing.assert_frame_equal(taken[cols], base[cols].iloc[:len(taken)].reset_index(drop=True))
    inside = c[c["overlaps"]]
    assert len(inside) > 0.1 * len(c)  # the signals a veto-off training set never had
    # each overlapping signal is a trade of its own: entered at the next bar's open + slippage
    nxt = sample_hourly.index.get_indexer(pd.DatetimeIndex(inside["signal_time"])) + 1
    assert (inside["entry_time"].to_numpy() == sample_hourly.index[nxt].to_numpy()).all()
    np.testing.assert_allclose(inside["entry_price"], sample_hourly["open"].to_numpy()[nxt] + ES.slippage_points)
    # and one started on a bar where the backtest was in a position is indeed inside one of its trades
    t = inside["signal_time"].iloc[0]
    assert ((base["signal_time"] < t) & (base["exit_time"] > t)).any()


def test_a_models_backtest_is_out_of_sample_unless_asked_and_then_labelled():
    from types import SimpleNamespace

    from rooney_core.backtest.runner import model_period
    from rooney_core.errors import RooneyError

    model = SimpleNamespace(metrics={"holdout_start": "2022-12-31 17:00:00"})
    start, label = model_period(model, None, "2015-01-01")
    assert start == "2022-12-31 17:00:00" and label.startswith("out of sample")
    assert model_period(model, "2023-06-01", "2015-01-01")[1].startswith("out of sample")
    with pytest.raises(RooneyError, match="before the model's holdout start.*--in-sample"):
        model_period(model, "2020-01-01", "2015-01-01")
    start, label = model_period(model, "2020-01-01", "2015-01-01", in_sample=True)
    assert start == "2020-01-01" and label.startswith("IN-SAMPLE")
    assert model_period(None, None, "2015-01-01") == ("2015-01-01", "no model")
