"""Turning rooney_core results into Dagster metadata (tables, plots, previews).

Two kinds of plot: ``png`` embeds a full matplotlib figure, which the UI puts behind a
"[Show Markdown]" button; ``line_chart``, ``bar_chart`` and ``xy_chart`` draw a small SVG of
the asset's key figure, short enough (``INLINE_LIMIT``) for the UI to show in place on the
asset's page.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd


def table(df: pd.DataFrame, max_rows: int = 20) -> dg.MetadataValue:
    """A Dagster table of the first rows of ``df`` (index included)."""
    df = df.head(max_rows).reset_index()
    cols = []
    for name, dtype in df.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            t = "bool"
        elif pd.api.types.is_integer_dtype(dtype):
            t = "int"
        elif pd.api.types.is_float_dtype(dtype):
            t = "float"
        else:
            t = "string"
        cols.append(dg.TableColumn(str(name), t))
    records = []
    for row in df.itertuples(index=False):
        rec = {}
        for col, v in zip(df.columns, row, strict=True):
            if isinstance(v, float | np.floating):
                rec[str(col)] = None if np.isnan(v) else float(round(float(v), 8))
            elif isinstance(v, bool | np.bool_):
                rec[str(col)] = bool(v)
            elif isinstance(v, int | np.integer):
                rec[str(col)] = int(v)
            else:
                rec[str(col)] = str(v)
        records.append(dg.TableRecord(rec))
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=cols))


def png(data: bytes, save_to: Path | None = None, title: str = "plot") -> dg.MetadataValue:
    """Embed a PNG in markdown (shown inline in the UI); optionally also save it."""
    if save_to is not None:
        from rooney_core.io import write_bytes_atomic

        write_bytes_atomic(data, save_to)
    b64 = base64.b64encode(data).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{b64})")


def plain(value):
    """Make numpy scalars and containers JSON-friendly for metadata."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    return value


# Dagster's UI shows a markdown value in place when it is shorter than 1,000 characters
# (MetadataEntry.tsx: ``expandSmallValues && mdStr.length < 1000``), else behind a button.
INLINE_LIMIT = 1000
_W, _H, _PAD = 300, 80, 2
_COLOURS = ("#1f77b4", "#9e9e9e", "#d62728", "#2ca02c")


def _svg_md(title: str, body: str, width: int = _W, height: int = _H) -> str:
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"font-family='sans-serif' font-size='9'>{body}</svg>")
    return f"![{title}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def _scale(values: np.ndarray, lo: float, hi: float, out_lo: float, out_hi: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return out_lo + (values - lo) / span * (out_hi - out_lo)


def _thin(values: np.ndarray, n: int) -> np.ndarray:
    """``n`` points of ``values`` (first and last kept), for a chart a few hundred pixels wide."""
    if len(values) <= n:
        return values
    return values[np.linspace(0, len(values) - 1, n).round().astype(int)]


def _path(xs: np.ndarray, ys: np.ndarray) -> str:
    """An SVG path through the points in relative moves (shorter than absolute points)."""
    ok = np.isfinite(xs) & np.isfinite(ys)
    px, py = np.round(xs[ok]).astype(int), np.round(ys[ok]).astype(int)
    if not len(px):
        return ""
    steps = " ".join(f"{dx} {dy}" for dx, dy in zip(np.diff(px), np.diff(py), strict=True))
    return f"M{px[0]} {py[0]}l{steps}" if steps else f"M{px[0]} {py[0]}"


def line_chart(title: str, series: Mapping[str, Sequence[float]], note: str = "",
               zero: bool = True) -> dg.MetadataValue:
    """A small SVG of one or more lines over the same span (e.g. equity, veto on vs off),
    with a zero line and a coloured legend; thinned until it fits ``INLINE_LIMIT``."""
    named = {k: np.asarray(v, dtype=float) for k, v in series.items() if len(v)}
    finite = [v[np.isfinite(v)] for v in named.values()]
    if not any(len(v) for v in finite):
        return dg.MetadataValue.md(f"{title}: nothing to draw")
    lo = min([float(v.min()) for v in finite if len(v)] + ([0.0] if zero else []))
    hi = max([float(v.max()) for v in finite if len(v)] + ([0.0] if zero else []))
    legend = "".join(f"<tspan fill='{c}'>{html.escape(k)} </tspan>" for c, k in zip(_COLOURS, named, strict=False))
    head = (f"<text x='{_PAD}' y='9'>{legend}</text>"
            f"<text x='{_W - _PAD}' y='9' text-anchor='end'>{html.escape(note)}</text>")
    if zero and lo < 0 < hi:
        y0 = round(float(_scale(np.array([0.0]), lo, hi, _H - _PAD, 14)[0]))
        head += f"<path d='M0 {y0}H{_W}' stroke='#000' stroke-width='.4'/>"
    for n in (90, 70, 55, 44, 34, 26, 20, 14, 10):
        body = [head, "<g fill='none' stroke-width='1.3'>"]
        for colour, values in zip(_COLOURS, named.values(), strict=False):
            v = _thin(values, n)
            xs = _scale(np.arange(len(v), dtype=float), 0, max(len(v) - 1, 1), _PAD, _W - _PAD)
            body.append(f"<path stroke='{colour}' d='{_path(xs, _scale(v, lo, hi, _H - _PAD, 14))}'/>")
        md = _svg_md(title, "".join(body) + "</g>")
        if len(md) < INLINE_LIMIT:
            break
    return dg.MetadataValue.md(md)  # at the fewest points and still too long: behind the button


def bar_chart(title: str, values: Mapping[str, float], top: int = 6) -> dg.MetadataValue:
    """A small SVG of the ``top`` largest values as labelled horizontal bars (importance)."""
    items = sorted(((str(k), float(v)) for k, v in values.items() if v == v), key=lambda kv: -kv[1])
    if not items:
        return dg.MetadataValue.md(f"{title}: nothing to draw")
    for n in range(min(top, len(items)), 0, -1):
        shown = items[:n]
        peak = max(v for _, v in shown) or 1.0
        row = (_H - 2) / n
        names, bars, labels = [], [], []
        for i, (name, v) in enumerate(shown):
            y, w = 1 + i * row, max(1.0, v / peak * (_W - 150))
            names.append(f"<text x='88' y='{y + row * .7:.0f}'>{html.escape(name[:16])}</text>")
            bars.append(f"<rect x='92' y='{y + 1:.0f}' width='{w:.0f}' height='{row * .72:.0f}'/>")
            labels.append(f"<text x='{96 + w:.0f}' y='{y + row * .7:.0f}'>{v:.3g}</text>")
        md = _svg_md(title, f"<g text-anchor='end'>{''.join(names)}</g><g fill='#1f77b4'>{''.join(bars)}</g>"
                            + "".join(labels))
        if len(md) < INLINE_LIMIT:
            break
    return dg.MetadataValue.md(md)


def xy_chart(title: str, x: Sequence[float], y: Sequence[float], note: str = "",
             vline: float | None = None) -> dg.MetadataValue:
    """A small square SVG of points joined by a line with the diagonal y = x, zoomed to the
    points' range (calibration: predicted probability against the observed rate), and an
    optional vertical marker (the threshold)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    both = np.r_[x, y, [] if vline is None else [vline]]
    both = both[np.isfinite(both)]
    if not len(both):
        return dg.MetadataValue.md(f"{title}: nothing to draw")
    lo, hi = float(both.min()) - 0.02, float(both.max()) + 0.02
    size = _H + 10
    sx, sy = _scale(x, lo, hi, _PAD, size - _PAD), _scale(y, lo, hi, size - _PAD, _PAD)
    body = [f"<rect width='{size}' height='{size}' fill='none' stroke='#ccc'/>",
            f"<path d='M{_PAD} {size - _PAD}L{size - _PAD} {_PAD}' stroke='#999' stroke-dasharray='3'/>",
            f"<path d='{_path(sx, sy)}' fill='none' stroke='#1f77b4' stroke-width='1.3'/>"]
    if vline is not None and vline == vline:
        vx = float(_scale(np.array([vline]), lo, hi, _PAD, size - _PAD)[0])
        body.append(f"<path d='M{vx:.0f} 0V{size}' stroke='#d62728' stroke-width='.8'/>")
    body.append(f"<text x='{size + 6}' y='12'>{html.escape(note)}</text>"
                f"<text x='{size + 6}' y='26' fill='#666'>axes {lo:.2f} to {hi:.2f}; dashed: perfect</text>")
    return dg.MetadataValue.md(_svg_md(title, "".join(body), width=size + 190, height=size))
