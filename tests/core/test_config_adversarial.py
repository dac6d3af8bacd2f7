"""Hostile configs (issue 7, section 3; R5): every one is a ConfigError naming the file and the
key (and the line, for YAML-level errors), raised when the config loads, before any work.

Each case copies ``configs/`` to a temporary directory, applies one edit and loads it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from rooney_core.config import DEFAULT_CONFIG_DIR, load_config, read_yaml
from rooney_core.errors import ConfigError
from rooney_core.sample_market import load_sample_market
from rooney_core.training.config import load_training_config
from rooney_pipeline.cli import cli


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not exactly once in {path}"
    path.write_text(text.replace(old, new))


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def assert_names(message: str, path: Path, key: str, fragment: str = "") -> None:
    """One line of the message names the file and the key (and says ``fragment``)."""
    for line in message.splitlines():
        if str(path) in line and f"key '{key}'" in line and fragment in line:
            return
    raise AssertionError(f"no line names {path} and key {key!r} with {fragment!r}:\n{message}")


# --- configs/*.yml: one table of edits -----------------------------------------------------

ES_ROW = "ES:  {name: E-mini S&P 500,         tick_size: 0.25,      tick_value: 12.50, pair: NQ,  session: cme_equity}"
SYMBOLS_ROW = "symbols: [ES, NQ, GC, SI, CL, NG]\n  # What"

CONFIG_EDITS = [
    # duplicate keys: PyYAML keeps the last, so ES's point value silently became 0.5
    ("dup-flow-key", "instruments.yml", "session: cme_equity}\n  NQ:", "session: cme_equity, tick_size: 25}\n  NQ:",
     "instruments.ES.tick_size", "duplicate key"),
    ("dup-top-key", "pipeline.yml", "reports_dir: dagster_home/storage/reports",
     "reports_dir: dagster_home/storage/reports\nlake_dir: /tmp/elsewhere", "lake_dir", "duplicate key"),
    ("dup-nested-key", "strategy.yml", "  ibs_exit: 0.8 ", "  stop_loss_pct: 0.5\n  ibs_exit: 0.8 ",
     "exits.stop_loss_pct", "duplicate key"),
    ("dup-instrument", "instruments.yml", "  NQ:  {", "  ES:  {", "instruments.ES", "duplicate key"),
    ("dup-features-key", "features.yml", "selection: all", "selection: all\nselection: [ibs]", "selection",
     "duplicate key"),
    # infinities and NaN in any float field
    ("inf-tick-size", "instruments.yml", "tick_size: 0.25,      tick_value: 12.50", "tick_size: .inf, tick_value: 12.50",
     "instruments.ES.tick_size", "finite"),
    ("nan-tick-value", "instruments.yml", "tick_value: 12.50, pair: NQ", "tick_value: .nan, pair: NQ",
     "instruments.ES.tick_value", "finite"),
    ("inf-commission", "instruments.yml", "commission_per_side: 2.00", "commission_per_side: .inf",
     "costs.commission_per_side", "finite"),
    ("inf-capital", "pipeline.yml", "initial_capital: 100000", "initial_capital: .inf",
     "backtest.initial_capital", "finite"),
    ("inf-take-profit", "strategy.yml", "take_profit_pct: 0.01", "take_profit_pct: .inf",
     "exits.take_profit_pct", "finite"),
    ("nan-ibs-max", "strategy.yml", "ibs_max: 0.2 ", "ibs_max: .nan ", "entry.ibs_max", "finite"),
    ("inf-edge", "pipeline.yml", "edge: 1.0", "edge: .inf", "sample_data.edge", "finite"),
    ("inf-tolerance", "pipeline.yml", "tolerance: 0.05", "tolerance: .inf", "feature_validation.tolerance", "finite"),
    ("nan-price-tol", "pipeline.yml", "price_tolerance_ticks: 0.5", "price_tolerance_ticks: .nan",
     "reconciliation.price_tolerance_ticks", "finite"),
    ("inf-return-tol", "pipeline.yml", "return_tolerance: 0.01", "return_tolerance: .inf",
     "reconciliation.return_tolerance", "finite"),
    # durations: negative or not-a-time
    ("negative-staleness", "features.yml", 'pair_max_staleness: "2h"', 'pair_max_staleness: "-2h"',
     "pair_max_staleness", "negative"),
    ("nat-staleness", "features.yml", 'pair_max_staleness: "2h"', 'pair_max_staleness: "NaT"',
     "pair_max_staleness", "not a duration"),
    ("negative-time-tol", "pipeline.yml", 'time_tolerance: "0min"', 'time_tolerance: "-5min"',
     "reconciliation.time_tolerance", "negative"),
    # dates are parsed when the config loads
    ("backtest-start-month-13", "pipeline.yml", 'start: "2023-01-01"', 'start: "2023-13-45"', "backtest.start",
     "not a calendar date"),
    ("backtest-end-feb-30", "pipeline.yml", "  end: null\n  initial", '  end: "2023-02-30"\n  initial', "backtest.end",
     "not a calendar date"),
    ("backtest-end-before-start", "pipeline.yml", "  end: null\n  initial", '  end: "2022-06-30"\n  initial',
     "backtest.end", "before start"),
    ("backtest-start-word", "pipeline.yml", 'start: "2023-01-01"', 'start: "yesterday"', "backtest.start",
     "YYYY-MM-DD"),
    ("backtest-start-datetime", "pipeline.yml", 'start: "2023-01-01"', "start: 2023-01-01 10:00:00", "backtest.start",
     "YYYY-MM-DD"),
    ("sample-start-not-leap", "pipeline.yml", 'start: "2015-01-01"', 'start: "2015-02-29"', "sample_data.start",
     "not a calendar date"),
    ("sample-end-compact", "pipeline.yml", 'end: "2024-12-31"', 'end: "20241231"', "sample_data.end", "YYYY-MM-DD"),
    ("sample-end-before-start", "pipeline.yml", 'end: "2024-12-31"', 'end: "2014-12-31"', "sample_data.end",
     "before start"),
    ("validation-month-13", "pipeline.yml", "  month: null", '  month: "2023-13"', "feature_validation.month",
     "not a calendar month"),
    # duplicate or missing instruments in pipeline.yml (Dagster's internal error before)
    ("dup-data-symbol", "pipeline.yml", SYMBOLS_ROW, "symbols: [ES, NQ, ES]\n  # What", "data.symbols.2",
     "listed twice"),
    ("dup-sample-symbol", "pipeline.yml", "  symbols: [ES, NQ, GC, SI, CL, NG]\n  start",
     "  symbols: [GC, GC]\n  start", "sample_data.symbols.1", "listed twice"),
    ("no-data-symbols", "pipeline.yml", SYMBOLS_ROW, "symbols: []\n  # What", "data.symbols", "at least 1"),
    ("dup-feature", "features.yml", "selection: all", "selection: [ibs, rsi2, ibs]", "selection.2", "listed twice"),
    ("no-features", "features.yml", "selection: all", "selection: []", "selection", "at least one"),
    # odd values that used to escape as tracebacks or odd behaviour
    ("symbol-not-a-symbol", "instruments.yml", "  6S:  {", "  ../6S:  {", "instruments.../6S", "capital letters"),
    ("negative-seed", "pipeline.yml", "seed: 7", "seed: -7", "sample_data.seed", "greater than or equal to 0"),
    ("windows-not-a-list", "strategy.yml", '    - ["17:00", "23:00"]\n    - ["00:00", "13:00"]', "    5",
     "entry.windows", "list of"),
    ("open-bool", "instruments.yml", 'cme_equity: {timezone: America/Chicago, open: "17:00"',
     "cme_equity: {timezone: America/Chicago, open: yes", "sessions.cme_equity.open", "HH:MM"),
    ("unknown-calendar", "instruments.yml", "calendar: CMEGlobex_FX,", "calendar: CME_Forex,",
     "sessions.cme_fx.calendar", "unknown exchange calendar"),
]


@pytest.mark.parametrize("file,old,new,key,fragment", [c[1:] for c in CONFIG_EDITS], ids=[c[0] for c in CONFIG_EDITS])
def test_config_edit_is_an_error_naming_file_and_key(config_dir, file, old, new, key, fragment):
    edit(config_dir / file, old, new)
    with pytest.raises(ConfigError) as exc:
        load_config(config_dir)
    assert_names(str(exc.value), config_dir / file, key, fragment)


def test_duplicate_key_names_both_lines(config_dir):
    path = config_dir / "instruments.yml"
    edit(path, ES_ROW, ES_ROW.replace("session: cme_equity}", "session: cme_equity, tick_size: 25}"))
    with pytest.raises(ConfigError) as exc:
        load_config(config_dir)
    line = line_of(path, "ES:  {")
    assert f"{path}: line {line}: key 'instruments.ES.tick_size': duplicate key" in str(exc.value)
    assert f"first set on line {line}" in str(exc.value)


def test_duplicate_key_in_sample_market_uses_the_same_loader(config_dir):
    path = config_dir / "sample_market.yml"
    edit(path, "  fast_sd: 0.30", "  fast_sd: 0.30\n  fast_sd: 3.0")
    with pytest.raises(ConfigError) as exc:
        load_sample_market(config_dir)
    assert_names(str(exc.value), path, "vol_regime.fast_sd", "duplicate key")
    assert f"line {line_of(path, 'fast_sd: 3.0')}" in str(exc.value)


def test_inf_in_sample_market_is_refused(config_dir):
    path = config_dir / "sample_market.yml"
    edit(path, "  fast_sd: 0.30", "  fast_sd: .inf")
    with pytest.raises(ConfigError) as exc:
        load_sample_market(config_dir)
    assert_names(str(exc.value), path, "vol_regime.fast_sd", "finite")


def test_year_range_is_validated_and_reaches_the_data_gate(config_dir):
    path = config_dir / "pipeline.yml"
    edit(path, "  min_year: 1970", "  min_year: 2200")
    with pytest.raises(ConfigError) as exc:
        load_config(config_dir)
    assert_names(str(exc.value), path, "data", "min_year 2200 is after max_year 2100")
    edit(path, "  min_year: 2200", "  min_year: 1970")
    edit(path, "  max_year: 2100", "  max_year: 2300")
    with pytest.raises(ConfigError):
        load_config(config_dir)  # beyond datetime64[ns]
    edit(path, "  max_year: 2300", "  max_year: 2030")
    assert load_config(config_dir).pipeline.data.gate()["max_year"] == 2030


def test_impossible_reference_date_in_sample_market_is_refused(config_dir):
    path = config_dir / "sample_market.yml"
    text = path.read_text()
    import re

    path.write_text(re.sub(r"reference_date: .*", 'reference_date: "2015-13-45"', text, count=1))
    with pytest.raises(ConfigError) as exc:
        load_sample_market(config_dir)
    assert_names(str(exc.value), path, "reference_date", "not a calendar date")


def test_dagster_backtest_run_config_dates_are_parsed():
    from pydantic import ValidationError

    from rooney_pipeline.assets.trades import BacktestConfig

    assert BacktestConfig(start="2023-01-02").start == "2023-01-02"
    with pytest.raises(ValidationError, match="not a calendar date"):
        BacktestConfig(start="2023-13-45")


@pytest.mark.parametrize(
    "text,fragment",
    [("a: 1\nb: {c: 2, c: 3}\n", "key 'b.c': duplicate key"),
     ("a:\n  - {x: 1}\n  - {x: 1, y: 2, x: 3}\n", "key 'a.1.x': duplicate key"),
     ("a: 1\n'a': 2\n", "key 'a': duplicate key"),
     ("base: &b {x: 1}\nd:\n  <<: *b\n  x: 2\n", None),  # an explicit key may override a merged one
     ("a: [1, 2\n", "not valid YAML"),
     ("- 1\n- 2\n", "expected a mapping")],
)
def test_yaml_reader(tmp_path, text, fragment):
    path = tmp_path / "x.yml"
    path.write_text(text)
    if fragment is None:
        assert read_yaml(path)["d"] == {"x": 2}
        return
    with pytest.raises(ConfigError) as exc:
        read_yaml(path)
    assert str(path) in str(exc.value) and fragment in str(exc.value), str(exc.value)


def test_every_config_is_read_by_the_one_yaml_reader():
    """No second YAML loader that would let duplicate keys through again."""
    root = DEFAULT_CONFIG_DIR.parent
    offenders = [
        f"{path.relative_to(root)}:{i}"
        for pkg in ("rooney_core", "rooney_pipeline", "bench")
        for path in sorted((root / pkg).rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"yaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all)\(", line)
    ]
    assert not offenders, f"use rooney_core.config.read_yaml: {offenders}"


def test_empty_override_mapping_changes_nothing(config_dir):
    (config_dir / "training" / "ES.yml").write_text("search_space: {}\n")
    edit(config_dir / "training" / "defaults.yml", "min_samples_leaf: [25, 50, 100, 200]", "min_samples_leaf: []")
    with pytest.raises(ConfigError) as exc:
        load_training_config(config_dir, "ES")
    line = next(x for x in str(exc.value).splitlines() if "min_samples_leaf" in x)
    assert "defaults.yml" in line and "ES.yml" not in line, line


def test_yaml_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "x.yml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_yaml(path)


def test_unquoted_dates_load_as_iso_strings(config_dir):
    edit(config_dir / "pipeline.yml", 'start: "2023-01-01"', "start: 2023-01-02")
    assert load_config(config_dir).pipeline.backtest.start == "2023-01-02"


def test_shipped_configs_still_load_unchanged(cfg):
    assert cfg.instrument("ES").point_value == 50.0
    assert cfg.pipeline.backtest.start == "2023-01-01" and cfg.pipeline.sample_data.end == "2024-12-31"
    assert load_training_config(DEFAULT_CONFIG_DIR, "ES").search_space.max_features == ["sqrt", "log2", 0.3, 0.5]


@pytest.mark.parametrize("symbol", ["../pipeline", "", "es", "E S", None, "ES/../NQ"])
def test_instrument_lookup_refuses_names_that_are_not_instruments(cfg, symbol):
    with pytest.raises(ConfigError, match="unknown instrument"):
        cfg.instrument(symbol)


# --- configs/training: defaults, the instrument's file, the profile -----------------------

SPACE = "search_space:\n"
TRAINING_EDITS = [
    # (id, layer, old (None: write the layer file with `new`), new, key, fragment)
    ("empty-leaf-list", "defaults.yml", "min_samples_leaf: [25, 50, 100, 200]", "min_samples_leaf: []",
     "search_space.min_samples_leaf", "at least one value"),
    ("empty-leaf-list-in-symbol", "ES.yml", None, SPACE + "  min_samples_leaf: []\n",
     "search_space.min_samples_leaf", "at least one value"),
    ("empty-leaf-list-in-profile", "demo.yml", "min_samples_leaf: [50, 100, 200]", "min_samples_leaf: []",
     "search_space.min_samples_leaf", "at least one value"),
    ("leaf-zero", "defaults.yml", "min_samples_leaf: [25, 50", "min_samples_leaf: [0, 50",
     "search_space.min_samples_leaf.0", "whole number >= 1"),
    ("leaf-fraction", "defaults.yml", "min_samples_leaf: [25, 50", "min_samples_leaf: [2.5, 50",
     "search_space.min_samples_leaf.0", "whole number >= 1"),
    ("leaf-duplicate", "defaults.yml", "min_samples_leaf: [25, 50", "min_samples_leaf: [50, 50",
     "search_space.min_samples_leaf", "listed twice"),
    ("trees-low-above-high", "defaults.yml", "{low: 200, high: 1200, step: 100}", "{low: 1200, high: 200, step: 100}",
     "search_space.n_estimators", "low (1200) is above high (200)"),
    ("trees-low-above-high-in-profile", "demo.yml", "{low: 100, high: 300, step: 100}",
     "{low: 300, high: 100, step: 100}", "search_space.n_estimators", "above high"),
    ("trees-zero", "defaults.yml", "{low: 200, high: 1200, step: 100}", "{low: 0, high: 1200, step: 100}",
     "search_space.n_estimators", "at least 1 tree"),
    ("trees-step-zero", "defaults.yml", "{low: 200, high: 1200, step: 100}", "{low: 200, high: 1200, step: 0}",
     "search_space.n_estimators.step", "greater than or equal to 1"),
    ("trees-step-misfit", "defaults.yml", "{low: 200, high: 1200, step: 100}", "{low: 200, high: 1250, step: 100}",
     "search_space.n_estimators", "multiple of step"),
    ("trees-float", "defaults.yml", "{low: 200, high: 1200, step: 100}", "{low: 200.5, high: 1200, step: 100}",
     "search_space.n_estimators.low", "valid integer"),
    ("samples-low-above-high", "defaults.yml", "{low: 0.5, high: 0.95}", "{low: 0.95, high: 0.5}",
     "search_space.max_samples", "above high"),
    ("samples-above-one", "defaults.yml", "{low: 0.5, high: 0.95}", "{low: 0.5, high: 1.5}",
     "search_space.max_samples", "(0, 1]"),
    ("samples-zero", "defaults.yml", "{low: 0.5, high: 0.95}", "{low: 0, high: 0.95}",
     "search_space.max_samples", "(0, 1]"),
    ("samples-merged-across-layers", "ES.yml", None, SPACE + "  max_samples: {high: 0.4}\n",
     "search_space.max_samples", "above high"),
    ("samples-inf", "defaults.yml", "{low: 0.5, high: 0.95}", "{low: 0.5, high: .inf}",
     "search_space.max_samples.high", "finite"),
    ("features-sqrt3", "defaults.yml", "max_features: [sqrt, log2, 0.3, 0.5]", "max_features: [sqrt3]",
     "search_space.max_features.0", "'sqrt3'"),
    ("features-sqrt3-in-profile", "demo.yml", "max_features: [sqrt, 0.3]", "max_features: [sqrt, sqrt3]",
     "search_space.max_features.1", "'sqrt3'"),
    ("features-zero-fraction", "defaults.yml", "max_features: [sqrt, log2, 0.3, 0.5]", "max_features: [0.0]",
     "search_space.max_features.0", "fraction in (0, 1]"),
    ("features-fraction-above-one", "defaults.yml", "max_features: [sqrt, log2, 0.3, 0.5]", "max_features: [1.5]",
     "search_space.max_features.0", "fraction in (0, 1]"),
    ("features-negative-count", "defaults.yml", "max_features: [sqrt, log2, 0.3, 0.5]", "max_features: [-3]",
     "search_space.max_features.0", "whole number of features >= 1"),
    ("features-bool", "defaults.yml", "max_features: [sqrt, log2, 0.3, 0.5]", "max_features: [true]",
     "search_space.max_features.0", "True"),
    ("features-empty", "defaults.yml", "max_features: [sqrt, log2, 0.3, 0.5]", "max_features: []",
     "search_space.max_features", "at least one value"),
    ("features-duplicate", "defaults.yml", "max_features: [sqrt, log2, 0.3, 0.5]", "max_features: [sqrt, sqrt]",
     "search_space.max_features", "listed twice"),
    ("depth-zero", "defaults.yml", "max_depth: [3, 5, 7, null]", "max_depth: [0, 5]",
     "search_space.max_depth.0", "null (no limit) or a whole number >= 1"),
    ("depth-fraction", "defaults.yml", "max_depth: [3, 5, 7, null]", "max_depth: [3.5]",
     "search_space.max_depth.0", "whole number >= 1"),
    ("depth-empty", "ES.yml", None, SPACE + "  max_depth: []\n", "search_space.max_depth", "at least one value"),
    ("class-weight-typo", "defaults.yml", "class_weight: [null, balanced_subsample]", "class_weight: [balancd]",
     "search_space.class_weight.0", "balanced_subsample"),
    ("class-weight-empty", "defaults.yml", "class_weight: [null, balanced_subsample]", "class_weight: []",
     "search_space.class_weight", "at least one value"),
    ("space-null", "ES.yml", None, "search_space: null\n", "search_space", "valid dictionary"),
    ("grid-empty", "defaults.yml", "threshold_grid: [0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75]",
     "threshold_grid: []", "threshold_grid", "at least one"),
    ("grid-above-one", "ES.yml", None, "threshold_grid: [0.5, 1.5]\n", "threshold_grid", "between 0 and 1"),
    ("grid-nan", "ES.yml", None, "threshold_grid: [.nan]\n", "threshold_grid.0", "finite"),
    ("holdout-inf", "ES.yml", None, "holdout_years: .inf\n", "holdout_years", "finite"),
    ("penalty-minus-inf", "defaults.yml", "min_trades_penalty: -1.0", "min_trades_penalty: -.inf",
     "min_trades_penalty", "finite"),
    ("seed-negative", "ES.yml", None, "seed: -1\n", "seed", "greater than or equal to 0"),
    ("unknown-feature", "ES.yml", None, "features: [ibs, ibz]\n", "features.1", "unknown feature 'ibz'"),
    ("unknown-excluded-feature", "ES.yml", None, "exclude_features: [rsi22]\n", "exclude_features.0",
     "unknown feature 'rsi22'"),
    ("no-features", "ES.yml", None, "features: []\n", "features", "at least one"),
    ("dup-key-in-symbol", "ES.yml", None, "trials: 10\ntrials: 20\n", "trials", "line 2"),
    ("dup-key-in-defaults", "defaults.yml", "  max_depth: [3, 5, 7, null]", "  max_depth: [3, 5, 7, null]\n  max_depth: [3]",
     "search_space.max_depth", "duplicate key"),
    ("dup-key-in-profile", "demo.yml", "trials: 8", "trials: 8\ntrials: 800", "trials", "duplicate key"),
]


@pytest.mark.parametrize("layer,old,new,key,fragment", [c[1:] for c in TRAINING_EDITS],
                         ids=[c[0] for c in TRAINING_EDITS])
def test_training_edit_is_an_error_naming_layer_and_key(config_dir, layer, old, new, key, fragment):
    path = config_dir / "training" / layer
    if old is None:
        path.write_text(new)
    else:
        edit(path, old, new)
    profile = "demo" if layer == "demo.yml" else None
    with pytest.raises(ConfigError) as exc:
        load_training_config(config_dir, "ES", profile)
    assert_names(str(exc.value), path, key, fragment)


def test_training_error_names_only_the_layer_that_set_the_key(config_dir):
    edit(config_dir / "training" / "demo.yml", "max_features: [sqrt, 0.3]", "max_features: [sqrt3]")
    with pytest.raises(ConfigError) as exc:
        load_training_config(config_dir, "ES", "demo")
    line = next(x for x in str(exc.value).splitlines() if "max_features" in x)
    assert "demo.yml" in line and "defaults.yml" not in line, line


@pytest.mark.parametrize("profile", ["../../somewhere", "../pipeline", "/tmp/somewhere", "demo/../demo", "", ".."])
def test_profile_is_a_plain_name_inside_configs_training(config_dir, tmp_path, profile):
    (tmp_path / "somewhere.yml").write_text("trials: 3\n")  # a valid layer: today it would be read
    with pytest.raises(ConfigError, match="plain name"):
        load_training_config(config_dir, "ES", profile)


@pytest.mark.parametrize("symbol", ["../pipeline", "../training/demo", "XX", "es", "ES/../PL", ""])
def test_training_symbol_must_be_an_instrument(config_dir, symbol):
    with pytest.raises(ConfigError) as exc:
        load_training_config(config_dir, symbol)
    assert "unknown instrument" in str(exc.value) and str(config_dir / "instruments.yml") in str(exc.value)


def test_training_file_of_a_symbol_that_is_not_an_instrument_is_not_read(config_dir):
    (config_dir / "training" / "XX.yml").write_text("trials: 3\n")
    with pytest.raises(ConfigError, match="unknown instrument 'XX'"):
        load_training_config(config_dir, "XX")


def test_missing_profile_names_the_file(config_dir):
    with pytest.raises(ConfigError, match="training profile not found"):
        load_training_config(config_dir, "ES", "nosuchprofile")


def test_shipped_training_layers_load(config_dir):
    demo = load_training_config(config_dir, "ES", "demo")
    pl = load_training_config(config_dir, "PL")
    assert demo.trials == 8 and demo.search_space.max_features == ["sqrt", 0.3]
    assert demo.search_space.max_depth == [3, 5, 7] and pl.search_space.class_weight == [None, "balanced_subsample"]


def test_max_features_keeps_int_and_float_apart(config_dir):
    """1 means one feature, 1.0 means all of them: sklearn's reading, kept as written."""
    (config_dir / "training" / "ES.yml").write_text(SPACE + "  max_features: [1, 1.0, null, log2]\n")
    values = load_training_config(config_dir, "ES").search_space.max_features
    assert values == [1, 1.0, None, "log2"] and [type(v) for v in values] == [int, float, type(None), str]


# --- the CLI: the error arrives before any data is read ----------------------------------


def run(config_dir: Path, *args: str):
    return CliRunner().invoke(cli, ["--config-dir", str(config_dir), *args], obj={})


@pytest.fixture()
def empty_data_dir(tmp_path: Path) -> Path:
    """No raw files: a command that got as far as reading data would fail differently."""
    d = tmp_path / "no_data"
    d.mkdir()
    return d


@pytest.mark.parametrize(
    "args,fragment",
    [(["--symbol", "../pipeline"], "unknown instrument '../pipeline'"),
     (["--symbol", "../training/demo"], "unknown instrument '../training/demo'"),
     (["--symbol", "ES", "--profile", "../../somewhere"], "plain name"),
     (["--symbol", "ES", "--profile", "../pipeline"], "plain name")],
)
def test_cli_train_refuses_paths_outside_configs(config_dir, empty_data_dir, tmp_path, args, fragment):
    (tmp_path / "somewhere.yml").write_text("trials: 3\n")
    res = run(config_dir, "train", "--data-dir", str(empty_data_dir), *args)
    assert res.exit_code == 2, res.output
    assert "config error" in res.stderr and fragment in res.stderr, res.stderr
    assert "_bt.csv" not in res.stderr


def test_cli_train_bad_search_space_fails_before_data(config_dir, empty_data_dir):
    edit(config_dir / "training" / "demo.yml", "min_samples_leaf: [50, 100, 200]", "min_samples_leaf: []")
    res = run(config_dir, "train", "--data-dir", str(empty_data_dir), "--symbol", "ES", "--profile", "demo")
    assert res.exit_code == 2, res.output
    assert_names(res.stderr, config_dir / "training" / "demo.yml", "search_space.min_samples_leaf")
    assert "_bt.csv" not in res.stderr


@pytest.mark.parametrize("command", [["backtest", "--out", "OUT"], ["candidates", "--out", "OUT/c.parquet"],
                                     ["features", "--out", "OUT/f.parquet"]])
def test_cli_bad_backtest_date_fails_at_load(config_dir, empty_data_dir, tmp_path, command):
    edit(config_dir / "pipeline.yml", 'start: "2023-01-01"', 'start: "2023-13-45"')
    command = [c.replace("OUT", str(tmp_path / "out")) for c in command]
    res = run(config_dir, *command[:1], "--data-dir", str(empty_data_dir), "--symbol", "ES", *command[1:])
    assert res.exit_code == 2, res.output
    assert_names(res.stderr, config_dir / "pipeline.yml", "backtest.start", "2023-13-45")
    assert "_bt.csv" not in res.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--start", "--end"])
def test_cli_backtest_date_options_are_parsed_first(config_dir, empty_data_dir, tmp_path, option):
    res = run(config_dir, "backtest", "--data-dir", str(empty_data_dir), "--symbol", "ES",
              "--out", str(tmp_path / "out"), option, "2023-13-45")
    assert res.exit_code == 2, res.output
    assert option in res.stderr and "2023-13-45" in res.stderr and "_bt.csv" not in res.stderr


def test_cli_duplicate_key_fails_at_load(config_dir, empty_data_dir):
    path = config_dir / "instruments.yml"
    edit(path, ES_ROW, ES_ROW.replace("session: cme_equity}", "session: cme_equity, tick_size: 25}"))
    res = run(config_dir, "check-data", str(empty_data_dir), "--symbols", "ES")
    assert res.exit_code == 2, res.output
    assert f"{path}: line {line_of(path, 'ES:  {')}: key 'instruments.ES.tick_size': duplicate key" in res.stderr
