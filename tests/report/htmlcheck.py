"""Parse a report with html.parser: its charts (data-chart + data-points), tables (rows of cells) and text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any


@dataclass
class Table:
    """One table: its header cells and its body rows (lists of cell texts) with their classes."""

    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


class ReportParser(HTMLParser):
    """Collects every chart, table, tag name, attribute value and text node of a document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.charts: dict[str, list[dict[str, Any]]] = {}
        self.svg_count = 0
        self.tables: list[Table] = []
        self.tags: list[str] = []
        self.attr_values: list[str] = []
        self.text: list[str] = []
        self.titles: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        self.attr_values += [v for v in a.values() if v]
        if tag == "svg":
            self.svg_count += 1
            assert "data-chart" in a and "data-points" in a, f"svg without data-chart/data-points: {a}"
            assert a["data-chart"] not in self.charts, f"duplicate chart id {a['data-chart']}"
            self.charts[str(a["data-chart"])] = json.loads(str(a["data-points"]))
        elif tag == "table":
            self.tables.append(Table())
        elif tag == "tr":
            self._row = []
            self.tables[-1].classes.append(a.get("class") or "")
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[-1]
            if not table.headers and not table.rows:
                table.headers = self._row
                table.classes.pop()
            else:
                table.rows.append(self._row)
            self._row = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.titles.append(data)


def parse(page: str) -> ReportParser:
    """The parsed document."""
    parser = ReportParser()
    parser.feed(page)
    parser.close()
    return parser


def table_with(parser: ReportParser, header: str) -> Table:
    """The first table whose header row holds ``header``."""
    return next(t for t in parser.tables if header in t.headers)
