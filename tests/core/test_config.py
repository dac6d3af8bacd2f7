"""Config is validated before any work: typos and unknown instruments name file and key (R5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rooney_core.config import load_config
from rooney_core.errors import ConfigError


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_shipped_configs_load(cfg):
    es = cfg.instrument("ES")
    assert es.point_value == 50.0 and es.commission_per_side == 2.0 and es.slippage_points == 0.25
    assert cfg.instrument("SI").point_value == pytest.approx(5000.0)
    assert set(cfg.instruments.instruments) >= {"ES", "NQ", "RTY", "YM", "GC", "SI", "CL", "NG", "6A", "6E"}


@pytest.mark.parametrize(
    "file,old,new,expected",
    [
        ("instruments.yml", "tick_size: 0.25,      tick_value: 12.50", "tick_sise: 0.25,      tick_value: 12.50",
         "key 'instruments.ES.tick_sise': Extra inputs are not permitted"),
        ("instruments.yml", "pair: NQ,", "pair: ZZ,", "key 'instruments.ES.pair': unknown instrument 'ZZ'"),
        ("instruments.yml", "tick_value: 12.50, pair: NQ", "tick_value: -1, pair: NQ",
         "key 'instruments.ES.tick_value'"),
        ("strategy.yml", "ibs_max: 0.2", "ibs_maks: 0.2", "key 'entry.ibs_maks'"),
        ("strategy.yml", "when_no_model: trade_unfiltered", "when_no_model: yolo", "key 'veto.when_no_model'"),
        ("pipeline.yml", "symbols: [ES, NQ, GC, SI, CL, NG]\n  # What", "symbols: [ES, XX, GC]\n  # What",
         "key 'data.symbols.1': unknown instrument 'XX'"),
        ("pipeline.yml", "duplicates: error", "duplicates: ignore", "key 'data.repairs.duplicates'"),
        ("features.yml", "selection: all", "selection: [ibs, rsi3]", "key 'selection.1': unknown feature 'rsi3'"),
    ],
)
def test_config_errors_name_file_and_key(config_dir, file, old, new, expected):
    edit(config_dir / file, old, new)
    with pytest.raises(ConfigError) as exc:
        load_config(config_dir)
    message = str(exc.value)
    assert str(config_dir / file) in message
    assert expected in message, message


def test_unknown_instrument_lookup_is_a_config_error(cfg):
    with pytest.raises(ConfigError, match="unknown instrument 'ZC'"):
        cfg.instrument("ZC")


def test_data_dir_resolution(cfg, monkeypatch, tmp_path):
    monkeypatch.delenv("ROONEY_DATA_DIR", raising=False)
    assert cfg.data_dir == cfg.resolve_path(cfg.pipeline.sample_data.out_dir)
    assert cfg.uses_sample_data
    monkeypatch.setenv("ROONEY_DATA_DIR", str(tmp_path))
    assert cfg.data_dir == tmp_path and not cfg.uses_sample_data
