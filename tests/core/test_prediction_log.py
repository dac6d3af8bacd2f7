"""The prediction log: durable appends, readers while a writer runs, torn lines, compaction."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pandas as pd

from rooney_core.live.predictions import PredictionLog, compact_day, events, predictions

FORK = multiprocessing.get_context("fork")


def _signal(log: PredictionLog, n: int, **extra) -> None:
    log.append("signal", prediction_id=f"ES-{n}", instrument="ES", bar_time=pd.Timestamp("2024-01-02 10:00"),
               model_version="ES_v1", bundle_sha256="ab" * 32, feature_schema_hash="s", features=[0.1, float("nan")],
               probability=0.61, threshold=0.55, decision="enter", reason="P(win) 0.610 >= 0.550",
               order_id=f"o-{n}", **extra)


def test_signals_fills_and_outcomes_join_into_one_row(tmp_path):
    log = PredictionLog(tmp_path, writer="w1")
    _signal(log, 1)
    _signal(log, 2)
    log.append("fill", prediction_id="ES-1", fill_time=pd.Timestamp("2024-01-02 11:00"), fill_price=4000.25)
    log.append("outcome", prediction_id="ES-1", exit_time=pd.Timestamp("2024-01-02 15:00"), exit_price=4010.0,
               exit_reason="ibs_exit", pnl_net=470.5)
    log.close()
    rows = predictions(tmp_path).set_index("prediction_id")
    assert list(rows.index) == ["ES-1", "ES-2"]
    assert rows.loc["ES-1", "pnl_net"] == 470.5 and rows.loc["ES-1", "fill_price"] == 4000.25
    assert pd.isna(rows.loc["ES-2", "pnl_net"])  # not exited yet
    segment = (next(tmp_path.glob("*/w1.jsonl"))).read_text()
    assert '"features": [0.1, null]' in segment and "NaN" not in segment  # null, never a number


def _write_forever(root: str, ready) -> None:
    log = PredictionLog(root, writer="engine")
    ready.set()
    for n in range(10**9):
        _signal(log, n)


def test_a_reader_sees_a_consistent_log_while_the_engine_writes_and_after_a_kill(tmp_path):
    ready = FORK.Event()
    proc = FORK.Process(target=_write_forever, args=(str(tmp_path), ready))
    proc.start()
    try:
        assert ready.wait(20)
        seen = []
        deadline = time.time() + 3
        while time.time() < deadline:
            ev = events(tmp_path)
            assert ev["prediction_id"].is_unique  # never a record twice, never a half record
            seen.append(len(ev))
        assert seen == sorted(seen) and seen[-1] > seen[0]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    before = len(events(tmp_path))
    seg = next(tmp_path.glob("*/engine.jsonl"))
    with open(seg, "ab") as fh:
        fh.write(b'{"event": "signal", "prediction_id": "torn')  # killed mid-line
    log = PredictionLog(tmp_path, writer="engine")  # the restarted engine appends to the same segment
    _signal(log, -1)
    log.close()
    ev = events(tmp_path)
    assert len(ev) == before + 1 and ev["prediction_id"].iloc[-1] == "ES--1"


def test_compacting_a_day_keeps_every_record(tmp_path):
    log = PredictionLog(tmp_path, writer="a")
    for n in range(5):
        _signal(log, n)
    log.close()
    PredictionLog(tmp_path, writer="b").append("fill", prediction_id="ES-3", fill_price=1.0)
    before = predictions(tmp_path)
    day = next(p.name for p in tmp_path.iterdir() if p.is_dir())
    target = compact_day(tmp_path, day)
    assert target.is_file() and not (tmp_path / day).exists()
    after = predictions(tmp_path)
    pd.testing.assert_frame_equal(before.drop(columns=["features"]), after.drop(columns=["features"]),
                                  check_dtype=False)
