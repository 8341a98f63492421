"""Chart primitives and the Report: every chart carries its points, text is escaped, empty data draws no chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from leanml.errors import LeanmlError
from leanml.report import Guide, Report, line_chart_svg, memory_timeline_svg, scatter_chart_svg
from leanml.report.svg import nice_ticks
from tests.report.htmlcheck import parse

PLAN = {
    "arena_bytes": 3000,
    "ops": ["conv", "relu", "fc"],
    "buffers": [
        {"tensor": "a", "offset": 0, "size": 1000, "first_op": 0, "last_op": 1},
        {"tensor": "b", "offset": 1000, "size": 2000, "first_op": 1, "last_op": 2},
    ],
}


def test_scatter_points_tooltips_and_highlight() -> None:
    series = {"stages": [(4.0, 90.0, "float"), (1.0, 89.0, "int8")], "ref": [(2.0, 88.0, "")]}
    svg = scatter_chart_svg(series, "acc vs flash", "KiB", "%", chart_id="c1", highlight=[(1.0, 89.0)])
    doc = parse(svg)
    assert doc.charts["c1"] == [
        {"series": "stages", "x": 4.0, "y": 90.0, "label": "float"},
        {"series": "stages", "x": 1.0, "y": 89.0, "label": "int8"},
        {"series": "ref", "x": 2.0, "y": 88.0, "label": ""},
    ]
    assert svg.count('class="pt"') == 3 and svg.count('class="chosen"') == 1
    assert "stages float: (4, 90)" in doc.titles and svg.count("<polyline") == 1  # one series has one point


def test_guides_are_drawn_inside_the_range() -> None:
    svg = scatter_chart_svg({"s": [(1.0, 1.0, "")]}, "t", "x", "y", guides=[Guide("y", 10.0, "target")])
    assert 'class="guide"' in svg and ">10<" in svg  # the axis reaches the target


def test_hostile_text_is_escaped() -> None:
    evil = "<script>alert('x')</script>"
    svgs = [
        scatter_chart_svg({evil: [(0.0, 1.0, evil)]}, evil, evil, evil),
        line_chart_svg({evil: [(0.0, 1.0), (1.0, 2.0)]}, evil, evil, evil),
        memory_timeline_svg({"arena_bytes": 10, "ops": [evil], "buffers": [dict(PLAN["buffers"][0], tensor=evil)]}),
    ]
    for svg in svgs:
        doc = parse(svg)
        assert "script" not in doc.tags and any(evil in t for t in doc.text)


def test_empty_data_draws_no_chart() -> None:
    for out in (
        scatter_chart_svg({"s": []}, "t", "x", "y"),
        line_chart_svg({}, "t", "x", "y"),
        memory_timeline_svg({"arena_bytes": 0, "ops": [], "buffers": []}),
    ):
        assert "<svg" not in out and "no data" in out


def test_memory_timeline_one_rect_per_buffer() -> None:
    svg = memory_timeline_svg(PLAN, chart_id="mem")
    doc = parse(svg)
    assert [b["tensor"] for b in doc.charts["mem"]] == ["a", "b"]
    assert svg.count('class="buffer"') == 2 and svg.count('class="op"') == 3 and 'class="arena"' in svg
    assert "b: 2000 B at offset 1000, ops 1..2" in doc.titles and "op 2: fc" in doc.titles


def test_memory_timeline_names_a_missing_field() -> None:
    with pytest.raises(LeanmlError, match="buffer 0 lacks size"):
        memory_timeline_svg({"arena_bytes": 1, "ops": [], "buffers": [{"tensor": "a", "offset": 0, "first_op": 0,
                                                                        "last_op": 0}]})  # fmt: skip


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (0.83, 0.91), (-3.0, 250.0), (1e-4, 3e-4), (5.0, 5.0)])
def test_nice_ticks_cover_the_range(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and len(ticks) <= 8
    assert ticks == sorted(ticks)


def test_report_tables_classes_and_no_urls(tmp_path: Path) -> None:
    report = Report("<t>")
    report.add_table(["name", "n"], [["<b>", "1"], ["c", "2"]], align="l", row_classes=["", "ref"], caption="c&d")
    report.add_charts([line_chart_svg({"a": [(0.0, 1.0), (1.0, 0.0)]}, "t", "x", "y")])
    report.save(tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    doc = parse(page)
    assert doc.tables[0].rows == [["<b>", "1"], ["c", "2"]] and doc.tables[0].classes == ["", "ref"]
    assert "b" not in doc.tags and "http" not in page and set(doc.charts) == {"t"}
