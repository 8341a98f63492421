"""The run report of `leanml compress`: rendered from a synthetic 5-stage record, parsed back with html.parser."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from leanml.compress.report import render_run_report, write_run_report
from leanml.errors import LeanmlError
from tests.report.htmlcheck import parse, table_with


def stage(stage: str, label: str, acc: float | None, params: int | None, macs: int | None, flash: int | None,
          sram: int | None, latency: float | None, note: str = "", cached: bool = False) -> dict[str, Any]:  # fmt: skip
    return {"stage": stage, "label": label, "accuracy": acc, "params": params, "macs": macs, "flash_bytes": flash,
            "sram_bytes": sram, "latency_ms": latency, "seconds": 1.5, "note": note, "cached": cached}  # fmt: skip


def make_record() -> dict[str, Any]:
    """A run with five stages, an int8 baseline, targets (one missed), a prune search, layers (one hostile name),
    sensitivity curves, an arena plan and a verify result."""
    return {
        "name": "mcu: vgg on fashion-mnist",
        "created": "2026-12-03 12:00:00",
        "machine": "x86_64, 2 threads, gcc 12",
        "load_average": 1.25,
        "recipe": {"name": "mcu", "targets": {"flash_kib": 60}, "prune": {"max_ratio": 0.8}},
        "input": {
            "shape": [1, 28, 28],
            "mean": [0.286],
            "std": [0.353],
            "dataset": "fashion-mnist",
            "classes": ["T-shirt", "Trouser", "Pullover"],
        },
        "stages": [
            stage("baseline", "the model as given", 0.91, 120_000, 9_000_000, 480_000, 50_000, 2.0, cached=True),
            stage("prune", "channel 50%", 0.86, 40_000, 3_000_000, 160_000, 25_000, 0.9, note="ratio from search"),
            stage("finetune", "3 epochs + distill", 0.90, 40_000, 3_000_000, 160_000, 25_000, 0.9),
            stage("quantize", "int8 PTQ", 0.895, 40_000, 3_000_000, 42_000, 7_000, None),
            stage("deploy", "C for host", None, None, 3_000_000, 43_000, 6_500, 0.4),
        ],
        "int8_baseline": stage("int8", "unpruned int8 (PTQ)", 0.905, None, 9_000_000, 122_000, 13_000, 1.1),
        "targets": {"flash_kib": 60.0, "sram_kib": 5.0, "latency_ms": None, "max_accuracy_drop": 1.0},
        "verdicts": [
            {"target": "flash", "goal": 60.0, "reached": 41.99, "met": True, "note": "met with 18.01 KiB to spare"},
            {"target": "peak SRAM", "goal": 5.0, "reached": 6.35, "met": False, "note": ""},
            {"target": "accuracy drop (points)", "goal": 1.0, "reached": 1.5, "met": False, "note": ""},
        ],
        "search": [
            {
                "knob": "prune ratio",
                "value": r,
                "macs": int(9e6 * (1 - r)),
                "flash_bytes": int(122_000 * (1 - r)),
                "sram_bytes": int(13_000 * (1 - r / 2)),
                "latency_ms": 1.1 * (1 - r),
                "accuracy": None,
                "chosen": r == 0.5,
            }
            for r in (0.2, 0.35, 0.5, 0.65)
        ],
        "layers": [
            {
                "name": "features.0",
                "kind": "conv",
                "macs": 1_500_000,
                "weight_bytes": 600,
                "sram_bytes": 6_500,
                "latency_share": 0.5,
            },
            {
                "name": "<script>alert(1)</script>",
                "kind": "conv",
                "macs": 1_400_000,
                "weight_bytes": 40_000,
                "sram_bytes": 3_000,
                "latency_share": None,
            },
            {
                "name": "classifier",
                "kind": "linear",
                "macs": 100_000,
                "weight_bytes": 2_400,
                "sram_bytes": 200,
                "latency_share": 0.1,
            },
        ],
        "sensitivity": {
            "x_label": "sparsity",
            "curves": {"features.0": [[0.3, 0.9], [0.6, 0.85]], "classifier": [[0.3, 0.91], [0.6, 0.9]]},
        },
        "memory": {
            "arena_bytes": 6_500,
            "ops": ["conv", "relu", "pool", "linear"],
            "buffers": [
                {"tensor": "input", "offset": 0, "size": 784, "first_op": 0, "last_op": 0},
                {"tensor": "conv.out", "offset": 784, "size": 5_000, "first_op": 0, "last_op": 2},
                {"tensor": "pool.out", "offset": 0, "size": 700, "first_op": 2, "last_op": 3},
                {"tensor": "logits", "offset": 784, "size": 10, "first_op": 3, "last_op": 3},
            ],
        },
        "verify": {"images": 100, "elements": 1000, "mismatched": 0},
        "notes": ["prune: ratio from search", "the latency target was not set"],
    }


def test_every_chart_has_points_from_the_record() -> None:
    record = make_record()
    doc = parse(render_run_report(record))
    assert doc.svg_count == len(doc.charts) >= 6
    assert all(points for points in doc.charts.values()), "a chart with no data points"
    flash = doc.charts["accuracy-vs-flash"]
    stages = [p for p in flash if p["series"] == "stages"]
    # every stage with both accuracy and flash, in stage order (the connecting line follows it)
    expect = [(s["flash_bytes"] / 1024, 100 * s["accuracy"], s["label"]) for s in record["stages"]
              if s["accuracy"] is not None and s["flash_bytes"] is not None]  # fmt: skip
    assert [p["label"] for p in stages] == [e[2] for e in expect]
    assert [p["x"] for p in stages] == pytest.approx([e[0] for e in expect])
    assert [p["y"] for p in stages] == pytest.approx([e[1] for e in expect])
    assert next(p for p in flash if p["series"] == "int8 baseline")["x"] == pytest.approx(122_000 / 1024)
    latency = doc.charts["accuracy-vs-latency"]
    assert {p["label"] for p in latency} == {"the model as given", "channel 50%", "3 epochs + distill", ""}
    search = doc.charts["search-flash-prune-ratio"]
    assert [p["x"] for p in search] == [0.2, 0.35, 0.5, 0.65]
    assert "search-accuracy-prune-ratio" not in doc.charts  # no accuracy measured in the search: no chart
    assert {p["series"] for p in doc.charts["sensitivity"]} == {"features.0", "classifier"}
    memory = doc.charts["memory-timeline"]
    assert [b["tensor"] for b in memory] == [b["tensor"] for b in record["memory"]["buffers"]]


def test_tables_have_one_row_per_stage_and_layer() -> None:
    record = make_record()
    doc = parse(render_run_report(record))
    stages = table_with(doc, "Δ vs baseline")
    assert len(stages.rows) == len(record["stages"]) + 1  # + the int8 baseline
    assert stages.classes[-1] == "ref" and stages.rows[-1][0] == "int8 baseline"
    col = stages.headers.index
    assert [r[col("label")] for r in stages.rows[:-1]] == [s["label"] for s in record["stages"]]
    assert stages.rows[0][col("accuracy")] == "91.00%" and stages.rows[0][col("Δ vs baseline")] == "+0.00 pp"
    assert stages.rows[1][col("Δ vs baseline")] == "-5.00 pp"
    assert stages.rows[4][col("accuracy")] == "—"  # not measured
    assert stages.rows[3][col("flash ÷ int8")] == f"{42_000 / 122_000:.2f}×"
    assert stages.rows[0][col("cached")] == "yes"
    assert "Total time 7.5 s; 1 of 5 stages reused a cached artifact." in "".join(doc.text)
    layers = table_with(doc, "share of latency")
    assert [r[0] for r in layers.rows] == [layer["name"] for layer in record["layers"]]
    assert [r[-1] for r in layers.rows] == ["50.0%", "—", "10.0%"]
    search = table_with(doc, "prune ratio")
    assert len(search.rows) == 4 and search.classes.count("ref") == 1


def test_verdicts_verify_and_header() -> None:
    page = render_run_report(make_record())
    assert 'class="box bad"' in page and "1 of 3 targets met" in page
    assert "met with 18.01 KiB to spare" in page
    assert "1.35 KiB over, 27.0%" in page  # no note: the report says by how much
    assert "Bit-exact: 1,000 output values over 100 images" in page
    assert "fashion-mnist, input 1×28×28, 3 classes" in page and "load average</b> 1.25" in page


def test_hostile_names_are_escaped_and_no_external_urls() -> None:
    record = make_record()
    record["name"] = '"><img src=x onerror=alert(1)>'
    record["memory"]["buffers"][0]["tensor"] = "<script>x</script>"
    page = render_run_report(record)
    doc = parse(page)
    assert "script" not in doc.tags and "img" not in doc.tags
    assert "<script>alert(1)</script>" in "".join(doc.text)  # shown as text, not run
    assert "http" not in page.lower() and "//" not in " ".join(doc.attr_values)


def test_missing_sections_render_without_empty_charts() -> None:
    record = make_record()
    for key in ("int8_baseline", "sensitivity", "memory", "verify", "recipe", "input", "targets", "load_average"):
        record[key] = None
    for key in ("verdicts", "search", "layers", "notes"):
        record[key] = []
    for row in record["stages"]:
        row["latency_ms"] = None
    doc = parse(render_run_report(record))
    assert set(doc.charts) == {"accuracy-vs-flash"}
    assert "no data" not in "".join(doc.text)
    assert "No targets were set" in "".join(doc.text)
    assert len(table_with(doc, "Δ vs baseline").rows) == 5


def test_a_record_with_only_a_name_and_no_numbers() -> None:
    bare = {"name": "empty", "stages": [{"stage": "baseline", "label": "float"}]}
    doc = parse(render_run_report(bare))
    assert doc.charts == {} and len(doc.tables) == 1
    all_none = copy.deepcopy(make_record())
    for row in all_none["stages"]:
        for key in ("accuracy", "params", "macs", "flash_bytes", "sram_bytes", "latency_ms"):
            row[key] = None
    assert "accuracy-vs-flash" not in parse(render_run_report(all_none)).charts


def test_mismatches_are_reported() -> None:
    record = make_record()
    record["verify"] = {"images": 10, "elements": 100, "mismatched": 3}
    assert "3 mismatches of 100 output values (3.00%) over 10 images" in render_run_report(record)


def test_bad_records_name_the_field() -> None:
    with pytest.raises(LeanmlError, match="'stages'"):
        render_run_report({"name": "x"})
    with pytest.raises(LeanmlError, match="stage 0"):
        render_run_report({"name": "x", "stages": [{"label": "no stage"}]})


def test_write_is_atomic_and_returns_the_path(tmp_path: Path) -> None:
    out = write_run_report(make_record(), tmp_path / "run" / "report.html")
    assert out == tmp_path / "run" / "report.html" and out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_target_lines_from_budget_or_fractions_and_nan_is_not_a_number() -> None:
    record = make_record()
    record["budget"] = {"flash_bytes": 50 * 1024, "sram_bytes": None, "latency_ms": None}
    record["targets"] = {"flash_kib": None, "sram_fraction": 0.5, "max_accuracy_drop": 2.0}
    record["stages"][1]["accuracy"] = float("nan")
    doc = parse(render_run_report(record))
    assert "flash target: 50" in doc.titles  # the resolved budget wins
    assert f"SRAM target: {0.5 * 13_000 / 1024:.4g}" in doc.titles  # half of the int8 model's SRAM
    assert "accuracy floor: 89" in doc.titles  # 91% baseline - 2 points
    stages = table_with(doc, "Δ vs baseline")
    assert stages.rows[1][stages.headers.index("accuracy")] == "—"
    assert "channel 50%" not in {p["label"] for p in doc.charts["accuracy-vs-flash"]}
