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
        ("features.yml", "selection: all", "selection: [ibs, rsi2, ibs]", "'ibs' is listed twice"),
    ],
)
def test_config_errors_name_file_and_key(config_dir, file, old, new, expected):
    """Every entry point loads through rooney_pipeline.settings: the config, then the features
    it selects against the registry."""
    from rooney_pipeline import settings

    edit(config_dir / file, old, new)
    with pytest.raises(ConfigError) as exc:
        settings.load(config_dir)
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


def test_the_config_layer_does_not_know_the_feature_registry(config_dir):
    """config -> features -> data -> config was an import cycle: the loader checks no feature
    name (the registry does, in check_selection), and importing it loads no higher layer."""
    import subprocess
    import sys

    from rooney_core.features import check_selection, selected_features

    edit(config_dir / "features.yml", "selection: all", "selection: [ibs, rsi3]")
    cfg = load_config(config_dir)  # the names are the registry's to check
    for check in (check_selection, selected_features):
        with pytest.raises(ConfigError, match=r"features.yml: key 'selection.1': unknown feature 'rsi3'"):
            check(cfg)
    code = ("import sys; from rooney_core.config import load_config; load_config()\n"
            "above = sorted(m for m in sys.modules if m.startswith('rooney_core.') and m.split('.')[1] "
            "not in ('config', 'errors', 'sessions'))\n"
            "assert not above, above\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_foundation_packages_import_without_cycles():
    """config, sessions, data and features import one another in one direction only (read
    from the source, lazy imports inside functions included)."""
    import ast
    from graphlib import CycleError, TopologicalSorter

    from rooney_core.config import REPO_ROOT

    foundation = {"config", "errors", "sessions", "io", "formats", "data", "features"}
    graph: dict[str, set[str]] = {}
    for path in (REPO_ROOT / "rooney_core").rglob("*.py"):
        parts = path.relative_to(REPO_ROOT / "rooney_core").with_suffix("").parts
        unit = parts[0]
        if unit not in foundation:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for m in mods:
                bits = m.split(".")
                if bits[0] == "rooney_core" and len(bits) > 1 and bits[1] != unit:
                    graph.setdefault(unit, set()).add(bits[1])
    assert "features" not in graph.get("config", set()) and "data" not in graph.get("config", set())
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle among rooney_core packages: {' -> '.join(exc.args[1])}")
