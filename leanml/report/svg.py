"""Inline SVG charts for the HTML report: line, scatter (labelled, connected) and a memory timeline.

Every chart is one ``<svg>`` element carrying ``data-chart="<id>"`` and its points as ``data-points`` JSON, and
every point or buffer has a ``<title>`` tooltip, so a test (or a reader's script) can check what a chart shows.
All text is HTML-escaped: labels may come from user layer names. Charts with no data return a short ``<p>``
instead of an empty frame.

Example:
    >>> svg = scatter_chart_svg({"stages": [(10.0, 0.9, "baseline"), (4.0, 0.88, "prune")]}, "acc", "KiB", "acc")
    >>> 'data-chart="acc"' in svg and svg.count('class="pt"') == 2
    True
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from leanml.errors import LeanmlError

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
Series = dict[str, list[tuple[float, float]]]
LabelledSeries = Mapping[str, Sequence[tuple[float, float, str]]]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


class Guide(NamedTuple):
    """A dashed reference line across a chart: ``axis="y"`` is horizontal at ``value``, ``"x"`` vertical."""

    axis: Literal["x", "y"]
    value: float
    label: str


def chart_slug(title: str) -> str:
    """A chart id from a title: lower case, runs of other characters turned into ``-``.

    Example:
        >>> chart_slug("Accuracy vs flash (KiB)")
        'accuracy-vs-flash-kib'
    """
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "chart"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten) covering ``[lo, hi]``.

    Example:
        >>> nice_ticks(0.0, 9.3)
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = float(min((m * mag for m in (1, 2, 5, 10)), key=lambda s: abs(math.log(s / raw))))
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    t = start
    while t < hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
    return ticks


def data_attrs(chart_id: str, points: Sequence[Mapping[str, Any]]) -> str:
    """The ``data-chart`` and ``data-points`` attributes (escaped JSON) every chart element carries.

    Example:
        >>> data_attrs("c", [{"x": 1}])
        ' data-chart="c" data-points="[{&quot;x&quot;: 1}]"'
    """
    blob = json.dumps(list(points), allow_nan=False)
    return f' data-chart="{html.escape(chart_id)}" data-points="{html.escape(blob)}"'


def _finite(*values: float) -> bool:
    """Whether every value is a finite number (NaN and infinity points are left out of charts)."""
    return all(math.isfinite(v) for v in values)


def _no_data(title: str) -> str:
    return f'<p class="nodata">{html.escape(title)}: no data</p>'


@dataclass(frozen=True)
class _Frame:
    """Plot-area geometry: data ranges mapped onto pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    left: int
    top: int
    pw: int
    ph: int

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.pw

    def sy(self, y: float) -> float:
        return self.top + (1 - (y - self.y0) / (self.y1 - self.y0)) * self.ph


def _span(values: Sequence[float], pad: float = 0.04) -> tuple[float, float]:
    """The values' range with a margin, never crossing zero when all values are on one side of it."""
    lo, hi = min(values), max(values)
    margin = (hi - lo) * pad if hi > lo else abs(lo) * 0.1 or 0.5
    new_lo, new_hi = lo - margin, hi + margin
    return (0.0 if lo >= 0 > new_lo else new_lo), (0.0 if hi <= 0 < new_hi else new_hi)


def _frame(
    xs: Sequence[float], ys: Sequence[float], width: int, height: int, right: int
) -> tuple[_Frame, list[float], list[float]]:
    x_ticks, y_ticks = nice_ticks(*_span(xs)), nice_ticks(*_span(ys))
    x0, x1 = min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs))
    y0, y1 = min(y_ticks[0], min(ys)), max(y_ticks[-1], max(ys))
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, top, bottom = 64, 30, 46
    frame = _Frame(x0, x1, y0, y1, left, top, width - left - right, height - top - bottom)
    return frame, x_ticks, y_ticks


def _axes(
    f: _Frame, title: str, x_label: str, y_label: str, x_ticks: list[float], y_ticks: list[float], height: int
) -> list[str]:
    """Title, plot box, grid, tick labels and axis labels."""
    parts = [
        f'<text x="{f.left + f.pw / 2:.0f}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
        f'<rect x="{f.left}" y="{f.top}" width="{f.pw}" height="{f.ph}" fill="#fff" stroke="#999"/>',
    ]
    for t in x_ticks:
        parts.append(f'<text x="{f.sx(t):.1f}" y="{f.top + f.ph + 15}" text-anchor="middle">{t:.4g}</text>')
        parts.append(f'<line x1="{f.sx(t):.1f}" x2="{f.sx(t):.1f}" y1="{f.top}" y2="{f.top + f.ph}" stroke="#f0f0f0"/>')
    for t in y_ticks:
        parts.append(f'<text x="{f.left - 6}" y="{f.sy(t) + 4:.1f}" text-anchor="end">{t:.4g}</text>')
        parts.append(f'<line x1="{f.left}" x2="{f.left + f.pw}" y1="{f.sy(t):.1f}" y2="{f.sy(t):.1f}" stroke="#eee"/>')
    cx = f.left + f.pw / 2
    parts.append(f'<text x="{cx:.0f}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    mid = f.top + f.ph / 2
    parts.append(f'<text x="14" y="{mid:.0f}" transform="rotate(-90 14 {mid:.0f})" text-anchor="middle">'
                 f"{html.escape(y_label)}</text>")  # fmt: skip
    return parts


def _open(width: int, height: int, chart_id: str, points: Sequence[Mapping[str, Any]], title: str) -> str:
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11"'
            f"{data_attrs(chart_id, points)}>")  # fmt: skip


def _legend_width(names: Sequence[str], legend: bool) -> int:
    """The right margin: room for the legend's longest name (at most 22 characters shown), else a small gap."""
    return 40 + 6 * min(max((len(n) for n in names), default=0), 22) if legend else 20


def _legend(parts: list[str], f: _Frame, i: int, name: str, color: str, marker: bool) -> None:
    lx, ly = f.left + f.pw + 12, f.top + 12 + 16 * i
    short = name if len(name) <= 22 else name[:21] + "…"
    parts.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/>')
    if marker:
        parts.append(f'<circle cx="{lx + 8}" cy="{ly}" r="3.5" fill="{color}"/>')
    parts.append(f'<text x="{lx + 22}" y="{ly + 4}"><title>{html.escape(name)}</title>{html.escape(short)}</text>')


def line_chart_svg(
    series: Series,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 360,
    *,
    chart_id: str | None = None,
    legend: bool = True,
) -> str:
    """An SVG line chart of named (x, y) series (each sorted by x), with axes, ticks and a legend.

    Points that are not finite are left out; with no points left the chart is a "no data" line.

    Example:
        >>> svg = line_chart_svg({"a": [(0, 0), (1, 1)]}, "t", "x", "y")
        >>> svg.startswith("<svg") and "polyline" in svg and 'data-chart="t"' in svg
        True
    """
    series = {name: [p for p in pts if _finite(p[0], p[1])] for name, pts in series.items()}
    points = [p for pts in series.values() for p in pts]
    if not points:
        return _no_data(title)
    right = _legend_width(list(series), legend)
    f, x_ticks, y_ticks = _frame([p[0] for p in points], [p[1] for p in points], width, height, right=right)
    data = [{"series": name, "x": x, "y": y} for name, pts in series.items() for x, y in pts]
    parts = [_open(width, height, chart_id or chart_slug(title), data, title)]
    parts += _axes(f, title, x_label, y_label, x_ticks, y_ticks, height)
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        ordered = sorted(pts)
        coords = " ".join(f"{f.sx(x):.1f},{f.sy(y):.1f}" for x, y in ordered)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for x, y in ordered:
            parts.append(f'<circle class="pt" cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="2" fill="{color}">'
                         f"<title>{html.escape(name)}: ({x:.4g}, {y:.4g})</title></circle>")  # fmt: skip
        if legend:
            _legend(parts, f, i, name, color, marker=False)
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart_svg(
    series: LabelledSeries,
    title: str,
    x_label: str,
    y_label: str,
    *,
    chart_id: str | None = None,
    connect: bool = True,
    highlight: Sequence[tuple[float, float]] = (),
    guides: Sequence[Guide] = (),
    width: int = 640,
    height: int = 360,
    legend: bool = True,
) -> str:
    """An SVG scatter chart of named series of labelled (x, y, label) points.

    ``connect`` joins each series' points in the given order (e.g. stage order), ``highlight`` rings chosen points,
    ``guides`` draw dashed reference lines (targets), and each point's label is written beside it. ``legend=False``
    drops the legend (a single series named by the y label needs none).

    Example:
        >>> pts = {"prune": [(0.2, 120.0, ""), (0.5, 80.0, "")]}
        >>> svg = scatter_chart_svg(pts, "flash vs ratio", "ratio", "KiB", highlight=[(0.5, 80.0)],
        ...                         guides=[Guide("y", 100.0, "flash target")])
        >>> svg.count('class="pt"') == 2 and "flash target" in svg and 'class="chosen"' in svg
        True
    """
    series = {name: [p for p in pts if _finite(p[0], p[1])] for name, pts in series.items()}
    points = [p for pts in series.values() for p in pts]
    if not points:
        return _no_data(title)
    guides = [g for g in guides if _finite(g.value)]
    taken: list[Box] = []  # label boxes already written: guide labels, then point labels
    xs = [p[0] for p in points] + [g.value for g in guides if g.axis == "x"]
    ys = [p[1] for p in points] + [g.value for g in guides if g.axis == "y"]
    f, x_ticks, y_ticks = _frame(xs, ys, width, height, right=_legend_width(list(series), legend))
    data = [{"series": name, "x": x, "y": y, "label": lab} for name, pts in series.items() for x, y, lab in pts]
    parts = [_open(width, height, chart_id or chart_slug(title), data, title)]
    parts += _axes(f, title, x_label, y_label, x_ticks, y_ticks, height)
    for g in guides:
        if g.axis == "y":
            x1, x2, y1, y2 = float(f.left), float(f.left + f.pw), f.sy(g.value), f.sy(g.value)
            tx, ty, anchor = float(f.left + f.pw - 4), f.sy(g.value) - 4, "end"
        else:
            x1, x2, y1, y2 = f.sx(g.value), f.sx(g.value), float(f.top), float(f.top + f.ph)
            tx, ty, anchor = f.sx(g.value) + 4, f.top + 12, "start"
        parts.append(f'<line class="guide" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="#c00" '
                     f'stroke-dasharray="5 4"><title>{html.escape(g.label)}: {g.value:.4g}</title></line>')  # fmt: skip
        label = html.escape(g.label)
        taken.append(_text_box(tx, ty, anchor, 6.2 * len(g.label)))
        parts.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" fill="#c00">{label}</text>')
    for x, y in highlight:
        parts.append(f'<circle class="chosen" cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="8" fill="none" '
                     'stroke="#000" stroke-width="1.5"><title>chosen</title></circle>')  # fmt: skip
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        if connect and len(pts) > 1:
            coords = " ".join(f"{f.sx(x):.1f},{f.sy(y):.1f}" for x, y, _ in pts)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.2" '
                         'stroke-opacity="0.7"/>')  # fmt: skip
        for x, y, label in pts:
            tip = f"{label + ': ' if label else ''}({x:.4g}, {y:.4g})"
            parts.append(f'<circle class="pt" cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="4" fill="{color}">'
                         f"<title>{html.escape(name)} {html.escape(tip)}</title></circle>")  # fmt: skip
        if legend:
            _legend(parts, f, i, name, color, marker=True)
    dots = [(f.sx(x), f.sy(y)) for x, y, _ in points]
    for x, y, label in points:
        if label:
            tx, ty, anchor = _place_label(f, f.sx(x), f.sy(y), label, dots, taken)
            parts.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" fill="#333">'
                         f"{html.escape(label)}</text>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _text_box(tx: float, ty: float, anchor: str, w: float, h: float = 11.0) -> Box:
    """The pixel box of a ``w`` wide text written at (tx, ty) with ``anchor``."""
    x0 = tx if anchor == "start" else tx - w if anchor == "end" else tx - w / 2
    return x0, ty - h + 2, x0 + w, ty + 2


def _place_label(
    f: _Frame, px: float, py: float, text: str, dots: list[tuple[float, float]], taken: list[Box]
) -> tuple[float, float, str]:
    """Where to write a point's label: the first spot around it that overlaps no other label or point and stays in
    the plot (else the least bad one). The spot's box is added to ``taken``."""
    w, h = 6.2 * len(text), 11.0  # about the size of 11px sans-serif text

    def box(tx: float, ty: float, anchor: str) -> Box:
        return _text_box(tx, ty, anchor, w, h)

    def cost(b: Box) -> float:
        x0, y0, x1, y1 = b
        hits = sum(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in taken)
        near = sum(x0 - 7 < dx < x1 + 7 and y0 - 7 < dy < y1 + 7 for dx, dy in dots)  # r=4 dots
        outside = x0 < f.left or x1 > f.left + f.pw or y0 < f.top or y1 > f.top + f.ph
        return 10 * hits + 5 * near + 3 * outside

    spots = [(px + 7, py - 6, "start"), (px + 7, py + 13, "start"), (px - 7, py - 6, "end"), (px - 7, py + 13, "end"),
             (px, py - 9, "middle"), (px, py + 18, "middle")]  # fmt: skip
    best = min(spots, key=lambda s: cost(box(*s)))  # min keeps the first of equal costs
    taken.append(box(*best))
    return best


def _buffer(b: Mapping[str, Any], i: int) -> dict[str, Any]:
    keys = ("tensor", "offset", "size", "first_op", "last_op")
    missing = [k for k in keys if k not in b]
    if missing:
        raise LeanmlError(f"memory buffer {i} lacks {', '.join(missing)}", f"each buffer needs {', '.join(keys)}")
    return {k: b[k] for k in keys}


def memory_timeline_svg(
    memory: Mapping[str, Any],
    title: str = "arena plan: buffers over time",
    *,
    chart_id: str = "memory-timeline",
    width: int = 900,
    height: int = 380,
) -> str:
    """The arena plan as a timeline: x = op index, y = byte offset, one rect per buffer (first_op..last_op, size).

    ``memory`` is ``{"arena_bytes": int, "ops": [str], "buffers": [{"tensor", "offset", "size", "first_op",
    "last_op"}]}``; each rect's tooltip names the tensor and its size, and a dashed line marks the arena size.

    Example:
        >>> plan = {"arena_bytes": 2048, "ops": ["conv", "relu"],
        ...         "buffers": [{"tensor": "x", "offset": 0, "size": 1024, "first_op": 0, "last_op": 1}]}
        >>> svg = memory_timeline_svg(plan)
        >>> svg.count('class="buffer"') == 1 and "arena 2.0 KiB" in svg
        True
    """
    buffers = [_buffer(b, i) for i, b in enumerate(memory.get("buffers") or [])]
    if not buffers:
        return _no_data(title)
    ops = [str(o) for o in memory.get("ops") or []]
    arena = int(memory.get("arena_bytes") or 0)
    n_ops = max(len(ops), max(int(b["last_op"]) for b in buffers) + 1)
    top_bytes = max(arena, max(int(b["offset"]) + int(b["size"]) for b in buffers), 1)
    kib = 1024.0
    y_ticks = nice_ticks(0.0, top_bytes / kib)
    left, top, right, bottom = 64, 30, 20, 46
    f = _Frame(0.0, float(n_ops), 0.0, max(y_ticks[-1], top_bytes / kib), left, top, width - left - right,
               height - top - bottom)  # fmt: skip
    x_ticks = [float(t) for t in nice_ticks(0.0, float(n_ops - 1), count=min(n_ops, 10)) if t <= n_ops - 1]
    parts = [_open(width, height, chart_id, buffers, title)]
    axes = _axes(f, title, "op index", "offset (KiB)", [], y_ticks, height)
    parts += axes
    for t in x_ticks:  # ticks at column centres
        parts.append(f'<text x="{f.sx(t + 0.5):.1f}" y="{f.top + f.ph + 15}" text-anchor="middle">{t:.0f}</text>')
    col = f.pw / n_ops
    for i in range(n_ops):  # hover an op column to see which op runs there
        name = html.escape(ops[i] if i < len(ops) else "?")
        shade = "#fafafa" if i % 2 else "#fff"
        parts.append(f'<rect class="op" x="{f.sx(i):.1f}" y="{f.top}" width="{col:.1f}" height="{f.ph}" '
                     f'fill="{shade}"><title>op {i}: {name}</title></rect>')  # fmt: skip
    for i, b in enumerate(buffers):
        color = PALETTE[i % len(PALETTE)]
        x, w = f.sx(int(b["first_op"])), (int(b["last_op"]) - int(b["first_op"]) + 1) * col
        y_hi, y_lo = f.sy((int(b["offset"]) + int(b["size"])) / kib), f.sy(int(b["offset"]) / kib)
        h = max(y_lo - y_hi, 1.0)
        tip = (f"{b['tensor']}: {int(b['size'])} B at offset {int(b['offset'])}, "
               f"ops {int(b['first_op'])}..{int(b['last_op'])}")  # fmt: skip
        parts.append(f'<rect class="buffer" x="{x + 0.5:.1f}" y="{y_hi:.1f}" width="{max(w - 1, 1):.1f}" '
                     f'height="{h:.1f}" fill="{color}" fill-opacity="0.55" stroke="{color}">'
                     f"<title>{html.escape(tip)}</title></rect>")  # fmt: skip
        name = str(b["tensor"])
        short = name if len(name) <= 16 else name[:15] + "…"
        if h >= 13 and w >= 6 * (len(short) + 9) + 8:  # room for the name and its size
            short += f" ({int(b['size']) / kib:.1f} KiB)"
        if h >= 13 and w >= 6 * len(short) + 8:
            parts.append(f'<text x="{x + 4:.1f}" y="{y_hi + 11:.1f}" font-size="10" pointer-events="none">'
                         f"{html.escape(short)}</text>")  # fmt: skip
    if arena:
        ya = f.sy(arena / kib)
        parts.append(f'<line class="arena" x1="{f.left}" x2="{f.left + f.pw}" y1="{ya:.1f}" y2="{ya:.1f}" '
                     f'stroke="#c00" stroke-dasharray="5 4"><title>arena {arena} B</title></line>')  # fmt: skip
        parts.append(f'<text x="{f.left + f.pw - 4}" y="{ya - 4:.1f}" text-anchor="end" fill="#c00">'
                     f"arena {arena / kib:.1f} KiB</text>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)
