"""The small charts the Dagster UI draws in place: always under its 1,000-character limit,
and drawing what they were given."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from rooney_pipeline.metadata import INLINE_LIMIT, bar_chart, line_chart, xy_chart


def _svg(md: str) -> str:
    m = re.fullmatch(r"!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", md)
    assert m, md[:120]
    return base64.b64decode(m.group(1)).decode()


@pytest.mark.parametrize("n", [1, 2, 50, 5_000, 200_000])
def test_a_line_chart_of_any_length_fits_in_place(n):
    rng = np.random.default_rng(n)
    on, off = np.cumsum(rng.normal(size=n)) * 1e4, np.cumsum(rng.normal(size=n)) * 1e4
    md = line_chart("ES holdout: veto on vs off", {"veto on": on, "veto off": off}, note="net -$1,234,567")
    assert len(md.value) < INLINE_LIMIT
    svg = _svg(md.value)
    assert svg.count("<path stroke=") == 2 and "veto on" in svg and "net -$1,234,567" in svg


def test_a_line_chart_draws_its_shape():
    """A rising line ends higher on the page (smaller y) than it starts; the zero line is drawn
    when the values cross zero."""
    svg = _svg(line_chart("up", {"equity": np.linspace(-5, 10, 30)}).value)
    d = re.search(r"<path stroke='[^']+' d='M(\d+) (\d+)l([^']*)'", svg)
    steps = np.array(d.group(3).split(), dtype=int).reshape(-1, 2)
    assert int(d.group(2)) + steps[:, 1].sum() < int(d.group(2)) and (steps[:, 0] >= 0).all()
    assert "stroke='#000'" in svg  # zero line


def test_nothing_to_draw_is_said():
    assert line_chart("empty", {"a": []}).value == "empty: nothing to draw"
    assert line_chart("nan", {"a": [np.nan, np.nan]}).value == "nan: nothing to draw"
    assert bar_chart("none", {}).value == "none: nothing to draw"
    assert xy_chart("none", [], []).value == "none: nothing to draw"


def test_a_bar_chart_shows_the_largest_first_and_fits():
    values = {f"a_rather_long_feature_name_{i}": float(i) for i in range(40)}
    svg = _svg(bar_chart("importance", values, top=6).value)
    names = re.findall(r"<text x='88' y='\d+'>([^<]+)</text>", svg)
    assert names and names[0] == "a_rather_long_fe" and len(bar_chart("importance", values).value) < INLINE_LIMIT
    shown = [float(v) for v in re.findall(r">([\d.]+)</text>", svg)]
    assert shown == sorted(shown, reverse=True) and shown[0] == 39  # the largest first


def test_a_calibration_chart_has_the_diagonal_and_the_threshold():
    md = xy_chart("calibration", np.linspace(0.3, 0.7, 10), np.linspace(0.32, 0.68, 10), vline=0.55,
                  note="threshold 0.55")
    svg = _svg(md.value)
    assert len(md.value) < INLINE_LIMIT and "stroke-dasharray" in svg and "#d62728" in svg
    assert "axes 0.28 to 0.72" in svg
