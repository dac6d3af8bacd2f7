"""Live feeds: replay merges instruments in time order and resumes after a restart point;
tail reads only complete lines and names a bad one without stopping; stdin likewise."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from rooney_core.config import load_config
from rooney_core.data.sample import load_sample_market, write_sample_data
from rooney_core.live.feeds import FeedProblem, MinuteBar, parse_feed_spec, replay_feed, stdin_feed, tail_feed

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
