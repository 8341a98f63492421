"""A self-contained HTML report: headings, tables and inline SVG line charts (no plotting dependency).

Example:
    >>> report = Report("demo")
    >>> report.add_chart("accuracy vs sparsity", {"conv1": [(0.5, 0.9), (0.9, 0.7)]}, "sparsity", "accuracy")
    >>> report.add_table(["layer", "acc"], [["conv1", "90%"]])
    >>> "<svg" in report.html() and "<table>" in report.html()
    True
"""

from __future__ import annotations

import html
from pathlib import Path

from leanml.artifact import atomic_write

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
Series = dict[str, list[tuple[float, float]]]


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


def line_chart_svg(series: Series, title: str, x_label: str, y_label: str, width: int = 640, height: int = 360) -> str:
    """An SVG line chart of named (x, y) series, with axes, ticks and a legend.

    Example:
        >>> svg = line_chart_svg({"a": [(0, 0), (1, 1)]}, "t", "x", "y")
        >>> svg.startswith("<svg") and "polyline" in svg
        True
    """
    points = [p for pts in series.values() for p in pts]
    if not points:
        return f"<p>{html.escape(title)}: no data</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, right, top, bottom = 60, 150, 30, 45
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">',
        f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for t in _ticks(x0, x1):
        parts.append(f'<text x="{sx(t):.1f}" y="{top + ph + 15}" text-anchor="middle">{t:.3g}</text>')
    for t in _ticks(y0, y1):
        parts.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>')
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
    parts.append(f'<text x="{left + pw / 2:.0f}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{top + ph / 2:.0f}" transform="rotate(-90 14 {top + ph / 2:.0f})" '
                 f'text-anchor="middle">{html.escape(y_label)}</text>')  # fmt: skip
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        ly = top + 12 + 14 * i
        lx = left + pw + 10
        parts.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{lx + 20}" y="{ly + 4}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


class Report:
    """Sections of headings, paragraphs, tables and charts, written as one HTML file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def add_heading(self, text: str) -> None:
        """A section heading."""
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def add_text(self, text: str) -> None:
        """A paragraph of plain text."""
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def add_table(self, headers: list[str], rows: list[list[str]]) -> None:
        """A table of already formatted cells."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def add_chart(self, title: str, series: Series, x_label: str, y_label: str) -> None:
        """An inline SVG line chart."""
        self.parts.append(line_chart_svg(series, title, x_label, y_label))

    def html(self) -> str:
        """The whole document."""
        style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}")  # fmt: skip
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}"
                "</body></html>")  # fmt: skip

    def save(self, path: str | Path) -> None:
        """Write the report atomically."""
        text = self.html().encode()
        atomic_write(path, lambda tmp: tmp.write_bytes(text))
