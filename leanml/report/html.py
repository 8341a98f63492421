"""A self-contained HTML report: headings, tables, boxes and inline SVG charts (no plotting dependency).

The file has no external references (inline CSS and SVG), reads in any browser and prints cleanly.

Example:
    >>> report = Report("demo")
    >>> report.add_chart("accuracy vs sparsity", {"conv1": [(0.5, 0.9), (0.9, 0.7)]}, "sparsity", "accuracy")
    >>> report.add_table(["layer", "acc"], [["conv1", "90%"]])
    >>> "<svg" in report.html() and "<table>" in report.html()
    True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from leanml.artifact import atomic_write
from leanml.report.svg import PALETTE, Series, line_chart_svg

__all__ = ["PALETTE", "Report", "Series", "line_chart_svg"]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;
 color:#222;font-size:14px;line-height:1.4}
h1{font-size:1.6em;margin:.2em 0}
h2{font-size:1.25em;margin:1.4em 0 .5em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#555;margin:.2em 0 1em}.meta b{color:#222}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:13px;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;vertical-align:bottom;white-space:normal}
td.l,th.l{text-align:left}
caption{caption-side:bottom;text-align:left;color:#666;font-size:12px;padding-top:4px}
tr.ref td{background:#f7f7fb;font-style:italic}
.box{border-radius:6px;padding:.6em 1em;margin:.8em 0;border:1px solid}
.box.ok{background:#eaf7ea;border-color:#6bb26b}.box.bad{background:#fdecea;border-color:#d9776c}
.box.info{background:#f4f6fa;border-color:#b8c2d6}
.box ul{margin:.3em 0;padding-left:1.3em}
.met{color:#1d7a1d;font-weight:600}.missed{color:#b3261e;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{max-width:100%;height:auto;border:1px solid #eee;background:#fff}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}
.nodata{color:#888}
@media print{body{max-width:none;margin:0;font-size:11px}.scroll{overflow:visible}
 table{font-size:9px}td,th{padding:2px 4px}td.l{white-space:normal}
 h2,svg.chart,table,.box{break-inside:avoid}h2{break-after:avoid}}
"""


def _cell(value: object, align: str) -> str:
    cls = ' class="l"' if align == "l" else ""
    return f"<td{cls}>{html.escape(str(value))}</td>"


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

    def add_html(self, fragment: str) -> None:
        """A trusted HTML fragment, added as is: the caller escapes any user text in it (``html.escape``).

        Example:
            >>> r = Report("x")
            >>> r.add_html('<div class="box info">ok</div>')
            >>> 'class="box info"' in r.html()
            True
        """
        self.parts.append(fragment)

    def add_table(
        self,
        headers: list[str],
        rows: list[list[str]],
        *,
        align: str = "",
        row_classes: Sequence[str] = (),
        caption: str = "",
    ) -> None:
        """A table of already formatted cells (escaped here).

        ``align`` holds one letter per column, ``l`` left and anything else right (the default); ``row_classes``
        gives CSS classes per row (``ref`` marks a reference row); ``caption`` is a note under the table.

        Example:
            >>> r = Report("x")
            >>> r.add_table(["layer", "MACs"], [["<conv>", "10"]], align="lr", caption="final model")
            >>> "&lt;conv&gt;" in r.html() and '<td class="l">' in r.html()
            True
        """
        aligns = [align[i] if i < len(align) else "r" for i in range(len(headers))]
        left = ' class="l"'
        head = "".join(
            f"<th{left if a == 'l' else ''}>{html.escape(h)}</th>" for h, a in zip(headers, aligns, strict=True)
        )
        body = []
        for i, r in enumerate(rows):
            cls = f' class="{html.escape(row_classes[i])}"' if i < len(row_classes) and row_classes[i] else ""
            cells = "".join(_cell(c, aligns[j] if j < len(aligns) else "r") for j, c in enumerate(r))
            body.append(f"<tr{cls}>{cells}</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f'<div class="scroll"><table>{cap}<tr>{head}</tr>{"".join(body)}</table></div>')

    def add_chart(self, title: str, series: Series, x_label: str, y_label: str) -> None:
        """An inline SVG line chart."""
        self.parts.append(line_chart_svg(series, title, x_label, y_label))

    def add_charts(self, svgs: Sequence[str]) -> None:
        """Charts (SVG strings from :mod:`leanml.report.svg`) side by side, wrapping on narrow pages.

        Example:
            >>> r = Report("x")
            >>> r.add_charts([line_chart_svg({"a": [(0, 1), (1, 2)]}, "t", "x", "y")])
            >>> '<div class="charts">' in r.html()
            True
        """
        if svgs:
            self.parts.append(f'<div class="charts">{"".join(svgs)}</div>')

    def html(self) -> str:
        """The whole document."""
        return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>")  # fmt: skip

    def save(self, path: str | Path) -> None:
        """Write the report atomically."""
        text = self.html().encode()
        atomic_write(path, lambda tmp: tmp.write_bytes(text))
