"""Live feeds: replay merges instruments in time order and resumes after a restart point;
tail reads only complete lines and names a bad one without stopping; stdin likewise. And
`rooney live` through the Databento file feed (the vendor's real sample) and the stdin feed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from test_databento import real

from rooney_core.config import load_config
from rooney_core.live.engine import status_of
from rooney_core.live.feeds import FeedProblem, MinuteBar, parse_feed_spec, replay_feed, stdin_feed, tail_feed
from rooney_core.live.predictions import events
from rooney_core.sample_market import load_sample_market, write_sample_data

CFG = load_config()
HEADER = "datetime,Open,High,Low,Close,volume\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("feed")
    write_sample_data(out, ["ES", "NQ"], "2024-01-02", "2024-01-05", seed=1, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=1)
    return out


def test_replay_merges_in_time_order_and_resumes(data_dir):
    bars = list(replay_feed(CFG, data_dir, ["ES", "NQ"]))
    assert all(isinstance(b, MinuteBar) for b in bars)
    keys = [(b.timestamp, b.symbol) for b in bars]
    assert keys == sorted(keys) and {b.symbol for b in bars} == {"ES", "NQ"}
    cut = {"ES": bars[500].timestamp, "NQ": bars[100].timestamp}
    rest = list(replay_feed(CFG, data_dir, ["ES", "NQ"], after=cut))
    assert rest == [b for b in bars if b.timestamp > cut[b.symbol]]


def test_replay_speed_sleeps_for_market_time(data_dir):
    slept = []
    feed = replay_feed(CFG, data_dir, ["ES"], speed=60.0, sleep=slept.append)
    for _ in range(5):
        next(feed)
    assert slept and all(0 < s <= 1.0 for s in slept)  # a minute of bars per second at 60x


def test_tail_reads_complete_lines_and_names_bad_ones(tmp_path):
    path = tmp_path / "ES_bt.csv"
    path.write_text(HEADER + "2024-01-02 10:00:00,4000,4001,3999,4000.5,10\n2024-01-02 10:01:00,4000.5,40")
    polls = iter([False, False, True])
    seen = []
    feed = tail_feed(CFG, tmp_path, ["ES"], stop=lambda: next(polls), sleep=lambda s: None)
    seen += [next(feed)]
    with open(path, "a") as fh:  # the writer finishes its line and adds a bad one
        fh.write("02,4000,4000.25,5\n2024-02-30 10:02:00,1,1,1,1,1\n")
    seen += list(feed)
    assert [type(x) for x in seen] == [MinuteBar, MinuteBar, FeedProblem]
    assert seen[1].high == 4002.0 and seen[1].timestamp == np.datetime64("2024-01-02T10:01:00")
    assert "line 4" in seen[2].where and "impossible-timestamp" in seen[2].reason


def test_stdin_json_lines(tmp_path):
    good = {"symbol": "ES", "datetime": "2024-01-02 10:00:00", "open": 1, "high": 2, "low": 0.5, "close": 1.5,
            "volume": 3}
    lines = [json.dumps(good), "{not json", json.dumps({**good, "datetime": "2024-01-02T10:00"}),
             json.dumps({**good, "symbol": "GC"})]
    items = list(stdin_feed(io.StringIO("\n".join(lines)), ["ES"]))
    assert items[0] == MinuteBar("ES", np.datetime64("2024-01-02T10:00:00"), 1.0, 2.0, 0.5, 1.5, 3.0)
    assert [type(x) for x in items] == [MinuteBar, FeedProblem, FeedProblem]  # GC not asked for
    assert "line 3" in items[2].where


@pytest.mark.parametrize("spec, want", [("replay:/d", ("replay", "/d", None)), ("replay:/d:60", ("replay", "/d", 60.0)),
                                        ("tail:/d", ("tail", "/d", None)), ("stdin", ("stdin", "", None)),
                                        ("dbn:/x.dbn.zst", ("dbn", "/x.dbn.zst", None))])
def test_feed_specs(spec, want):
    assert parse_feed_spec(spec) == want
    with pytest.raises(Exception, match="expected replay"):
        parse_feed_spec("kafka:topic")


# --- the feeds through the engine (`rooney live`) ---------------------------------------------


@pytest.fixture(scope="module")
def history_2024(tmp_path_factory):
    """ES and NQ 5-minute sample bars to 2024-07-01 16:00: the engine's warm-up history."""
    out = tmp_path_factory.mktemp("history_2024")
    write_sample_data(out, ["ES", "NQ"], "2024-01-02", "2024-07-01", seed=5, edge=1.0, cfg=CFG,
                      market=load_sample_market(CFG.config_dir), interval_minutes=5)
    return out


def _live(args, tmp_path, **kw):
    from click.testing import CliRunner

    from rooney_pipeline.cli import cli

    return CliRunner().invoke(cli, ["live", *args], env={"ROONEY_MODEL_STORE": str(tmp_path / "store")}, obj={},
                              **kw)


@real
def test_rooney_live_on_the_real_databento_files(history_2024, tmp_path):
    """`rooney live --feed dbn:PATH` on the vendor's real OHLCV-1m sample (ES and NQ,
    2024-07-01 18:40-19:10 CDT): the minutes arrive as the file reader decodes them, the
    18:00 and 19:00 hours close and are decided, and `rooney live status` reports them. The
    warm-up history ends at 16:00: the missing 17:00 hour is reported as a gap."""
    from test_databento import OHLCV_2024

    from rooney_core.data.databento import read_databento

    state = tmp_path / "state"
    res = _live(["--symbols", "ES,NQ", "--paper", "--feed", f"dbn:{OHLCV_2024}", "--from", "2024-07-01 18:00",
                 "--history", str(history_2024), "--state-dir", str(state)], tmp_path)
    assert res.exit_code == 0, res.output
    st = status_of(state)
    for sym in ("ES", "NQ"):
        row = st["instruments"][sym]
        assert row["last_bar"] == "2024-07-01 19:00:00" and row["position"] == "flat", row
        assert "gap in the feed: no bar for 1 in-session hour(s) from 2024-07-01 17:00:00" in row["last_error"]
    beat = json.loads((state / "heartbeat.json").read_text())
    file_bars = read_databento([OHLCV_2024], CFG)
    assert beat["feed_items"] == sum(len(f) for f in file_bars.frames.values()) == 60
    assert beat["last_minute"] == str(file_bars.frames["ES"]["datetime"].max())  # 19:09, exchange time
    assert st["heartbeat_age_s"] is not None and st["heartbeat_age_s"] < 120
    shown = _live(["--state-dir", str(state), "status"], tmp_path)
    assert shown.exit_code == 0 and "ES" in shown.output and "2024-07-01 19:00:00" in shown.output, shown.output
    assert "ES: last bar 2024-07-01 19:00:00" in res.output


def test_rooney_live_on_stdin_decides_as_a_replay_of_the_same_minutes(history_2024, tmp_path):
    """`rooney live --feed stdin`: JSON lines of ES and NQ minutes (and one bad line) after the
    warm-up history's end; the engine decides the closed hours exactly as a replay of the
    same files does (the last hour stays open: no later minute closed it), and names the
    bad line."""
    import pandas as pd

    cut = pd.Timestamp("2024-06-27 17:00")
    hist, lines = tmp_path / "hist", []
    hist.mkdir()
    for sym in ("ES", "NQ"):
        frame = pd.read_csv(history_2024 / f"{sym}_bt.csv", parse_dates=["datetime"])
        frame[frame["datetime"] < cut].to_csv(hist / f"{sym}_bt.csv", index=False)
        live = frame[(frame["datetime"] >= cut) & (frame["datetime"] < "2024-06-28 12:00")]
        lines += [(r.datetime, sym, json.dumps({"symbol": sym, "datetime": str(r.datetime), "open": r.Open,
                                                "high": r.High, "low": r.Low, "close": r.Close,
                                                "volume": r.volume})) for r in live.itertuples()]
    lines.sort()
    text = [x[2] for x in lines]
    text.insert(100, '{"symbol": "ES", "datetime": "2024-06-27 25:00:00"}')
    state = tmp_path / "stdin"
    res = _live(["--symbols", "ES", "--paper", "--feed", "stdin", "--from", str(cut), "--history", str(hist),
                 "--state-dir", str(state)], tmp_path, input="\n".join(text) + "\n")
    assert res.exit_code == 0, res.output
    # the 11:00 hour's minutes all came, but nothing after them: never closed as a partial hour
    assert status_of(state)["instruments"]["ES"]["last_bar"] == "2024-06-28 10:00:00"
    assert "<stdin> line 101" in (state / "engine.log").read_text()
    assert json.loads((state / "heartbeat.json").read_text())["feed_items"] == len(text)

    ref = tmp_path / "replay"
    res = _live(["--symbols", "ES", "--paper", "--feed", f"replay:{history_2024}", "--from", str(cut),
                 "--state-dir", str(ref)], tmp_path)
    assert res.exit_code == 0, res.output

    def signals(where):
        ev = events(where / "predictions")
        ev = ev[(ev["event"] == "signal") & (pd.to_datetime(ev["bar_time"]) <= "2024-06-28 10:00")]
        return ev.drop(columns=["logged_at"]).dropna(axis=1, how="all").astype(str).reset_index(drop=True)

    got, want = signals(state), signals(ref)
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want)
