"""Atomic writes: leftovers of a killed writer are removed by the next write of the same file,
a live writer's temporary file is not (found by bench/adversarial.py: SIGKILLed lake writers
left full-size .tmp files behind for good)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time

import pandas as pd

from rooney_core.data.lake import Lake
from rooney_core.io import host_tag, write_text_atomic

FORK = multiprocessing.get_context("fork")


def _write_forever(root: str, ready) -> None:
    lake = Lake(root)
    frame = pd.DataFrame({"x": range(200_000)})
    ready.set()
    while True:
        lake.write("hourly", "ES", frame)


def test_a_killed_lake_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    for _ in range(5):
        ready = FORK.Event()
        proc = FORK.Process(target=_write_forever, args=(str(tmp_path), ready))
        proc.start()
        assert ready.wait(20)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        Lake(tmp_path).write("hourly", "ES", pd.DataFrame({"x": [1]}))
        assert [p.name for p in (tmp_path / "hourly").iterdir()] == ["ES.parquet"]
        assert Lake(tmp_path).read("hourly", "ES")["x"].tolist() == [1]


def test_a_live_writers_temp_file_is_kept(tmp_path):
    target = tmp_path / "manifest.json"
    live = tmp_path / f".manifest.json.{host_tag()}.{os.getpid()}.abc.tmp"
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    dead = tmp_path / f".manifest.json.{host_tag()}.{dead_pid.pid}.def.tmp"
    live.write_text("x")
    dead.write_text("y")
    write_text_atomic("{}", target)
    assert live.exists() and not dead.exists() and target.read_text() == "{}"
