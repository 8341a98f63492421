"""The run report of ``leanml compress``: one self-contained HTML file, every stage beside the baseline.

The report is rendered from a plain-data *run record* (JSON-safe dicts and lists; numbers may be ``None`` where a
stage measured nothing), so it can be re-rendered from the record a run saved, without torch. The record holds
``name``, ``created``, ``machine``, ``load_average``, ``recipe``, ``input``, ``stages`` (rows with ``stage``,
``label``, ``accuracy`` 0..1, ``params``, ``macs``, ``flash_bytes``, ``sram_bytes``, ``latency_ms``, ``seconds``,
``note``, ``cached``), ``int8_baseline`` (a row or ``None``), ``targets``, ``verdicts``, ``search``, ``layers``,
``sensitivity``, ``memory``, ``verify`` and ``notes``; only ``name`` and ``stages`` are required.

Sections: header and verdict box; the stage table (with the int8 baseline and ratios against it); accuracy vs flash
and vs latency; the search (when it has points); sensitivity curves; the arena plan as a memory timeline; the final
model's layers; the verify result; notes and the recipe. Sections whose data is missing are left out.

Example:
    >>> record = {"name": "demo", "stages": [
    ...     {"stage": "baseline", "label": "float", "accuracy": 0.9, "flash_bytes": 40960, "latency_ms": 2.0},
    ...     {"stage": "quantize", "label": "int8", "accuracy": 0.89, "flash_bytes": 10240, "latency_ms": 0.8}]}
    >>> page = render_run_report(record)
    >>> 'data-chart="accuracy-vs-flash"' in page and "-1.00 pp" in page
    True
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from leanml.artifact import atomic_write
from leanml.config import require
from leanml.report import Guide, Report, line_chart_svg, memory_timeline_svg, scatter_chart_svg
from leanml.report.svg import chart_slug

__all__ = ["render_run_report", "write_run_report"]

KIB = 1024.0
DASH = "—"
# Unit of each verdict's goal and reached figures, by target name (recipe key or display name); both are shown as is.
TARGET_UNITS: dict[str, str] = {
    "flash_kib": "KiB",
    "flash": "KiB",
    "sram_kib": "KiB",
    "peak SRAM": "KiB",
    "latency_ms": "ms",
    "latency (C, batch 1)": "ms",
    "max_accuracy_drop": "pp",
    "accuracy drop (points)": "pp",
}

Row = Mapping[str, Any]


def _num(row: Row | None, key: str) -> float | None:
    """``row[key]`` as a float, or ``None`` when the row or the value is missing (or NaN: not a measurement)."""
    if row is None or row.get(key) is None:
        return None
    value = float(row[key])
    return None if math.isnan(value) else value


def _fmt(value: float | None, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    return DASH if value is None else f"{value / scale:{spec}}{suffix}"


def _count(value: float | None) -> str:
    """12345 -> '12.3 k', 4.2e6 -> '4.20 M'."""
    if value is None:
        return DASH
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}" if value / scale < 100 else f"{value / scale:.0f}{unit}"
    return f"{value:.0f}"


def _label(row: Row) -> str:
    return str(row.get("label") or row.get("stage") or "?")


def _check(record: Mapping[str, Any]) -> list[Row]:
    """The stage rows, after checking the record's shape."""
    require(isinstance(record, Mapping), "a run record must be a mapping", "pass the dict a compress run saved")
    require(isinstance(record.get("name"), str), "the run record has no 'name'", "give the run a name")
    stages: Any = record.get("stages")
    require(isinstance(stages, list), "the run record has no 'stages' list", "record at least the baseline stage")
    for i, row in enumerate(stages):
        require(isinstance(row, Mapping) and "stage" in row, f"stage {i} of the run record has no 'stage' field",
                "each stage row needs stage, label and its measurements (None where not measured)")  # fmt: skip
    return list(stages)


def _baseline(stages: Sequence[Row]) -> Row | None:
    """The float baseline row: the ``baseline`` stage, else a leading ``train`` stage."""
    found = next((s for s in stages if s.get("stage") == "baseline"), None)
    return found or (stages[0] if stages and stages[0].get("stage") == "train" else None)


def _header(report: Report, record: Mapping[str, Any]) -> None:
    inp = record.get("input") or {}
    shape = "×".join(str(d) for d in inp.get("shape") or []) or DASH
    classes = inp.get("classes") or []
    facts = [
        ("data", f"{inp.get('dataset') or DASH}, input {shape}" + (f", {len(classes)} classes" if classes else "")),
        ("machine", str(record.get("machine") or DASH)),
        ("load average", _fmt(_num(record, "load_average"), ".2f")),
        ("created", str(record.get("created") or DASH)),
    ]
    items = " · ".join(f"<b>{html.escape(k)}</b> {html.escape(v)}" for k, v in facts)
    report.add_html(f'<p class="meta">{items}</p>')


def _verdict_line(v: Row) -> str:
    name = str(v.get("target", "?"))
    unit = f" {TARGET_UNITS[name]}" if name in TARGET_UNITS else ""
    goal, reached = _num(v, "goal"), _num(v, "reached")
    met = bool(v.get("met"))
    status = f'<span class="{"met" if met else "missed"}">{"met" if met else "missed"}</span>'
    text = f"goal ≤ {_fmt(goal, '.4g')}{unit}, reached {_fmt(reached, '.4g')}{unit}"
    if v.get("note"):
        text += f" — {v['note']}"
    elif goal is not None and reached is not None:  # no note saying by how much: say it here
        diff = reached - goal
        rel = f", {abs(diff) / abs(goal):.1%}" if goal else ""
        text += f" ({abs(diff):.3g}{unit} {'over' if diff > 0 else 'under'}{rel})"
    return f"<li>{status} <b>{html.escape(name)}</b>: {html.escape(text)}</li>"


def _verdicts(report: Report, record: Mapping[str, Any]) -> None:
    verdicts = record.get("verdicts") or []
    if not verdicts:
        report.add_html('<div class="box info">No targets were set: the report shows what each stage reached.</div>')
        return
    met = sum(bool(v.get("met")) for v in verdicts)
    cls = "ok" if met == len(verdicts) else "bad"
    head = f"{met} of {len(verdicts)} targets met" if met < len(verdicts) else f"all {met} targets met"
    lines = "".join(_verdict_line(v) for v in verdicts)
    report.add_html(f'<div class="box {cls}"><b>{html.escape(head)}</b><ul>{lines}</ul></div>')


def _ratio(value: float | None, ref: float | None) -> str:
    return DASH if value is None or not ref else f"{value / ref:.2f}×"


def _stage_cells(row: Row, base_acc: float | None, int8: Row | None) -> list[str]:
    acc, flash, sram = _num(row, "accuracy"), _num(row, "flash_bytes"), _num(row, "sram_bytes")
    delta = DASH if acc is None or base_acc is None else f"{(acc - base_acc) * 100:+.2f} pp"
    return [
        str(row.get("stage", "")),
        _label(row),
        _fmt(acc, ".2%"),
        delta,
        _count(_num(row, "params")),
        _count(_num(row, "macs")),
        _fmt(flash, ".1f", KIB),
        _ratio(flash, _num(int8, "flash_bytes")),
        _fmt(sram, ".1f", KIB),
        _ratio(sram, _num(int8, "sram_bytes")),
        _fmt(_num(row, "latency_ms"), ".3f"),
        _fmt(_num(row, "seconds"), ".1f"),
        "yes" if row.get("cached") else "",
    ]


def _stage_table(report: Report, stages: Sequence[Row], int8: Row | None) -> None:
    report.add_heading("Stages")
    base_acc = _num(_baseline(stages), "accuracy")
    headers = ["stage", "label", "accuracy", "Δ vs baseline", "params", "MACs", "flash KiB", "flash ÷ int8",
               "peak SRAM KiB", "SRAM ÷ int8", "latency ms (b=1)", "time s", "cached"]  # fmt: skip
    rows = [_stage_cells(s, base_acc, int8) for s in stages]
    classes = [""] * len(rows)
    if int8 is not None:
        ref = _stage_cells(int8, base_acc, int8)
        ref[0], ref[1] = "int8 baseline", _label(int8) if int8.get("label") else "unpruned, int8"
        rows.append(ref)
        classes.append("ref")
    seconds = [t for s in stages if (t := _num(s, "seconds")) is not None]
    cached = sum(bool(s.get("cached")) for s in stages)
    caption = ("Δ in percentage points against the float baseline; ratios against the unpruned model quantized to "
               "int8 (the comparison point for the flash and SRAM goals); latency on the host, batch 1. "
               f"Total time {sum(seconds):.1f} s; {cached} of {len(stages)} stages reused a cached artifact."
               )  # fmt: skip
    report.add_table(headers, rows, align="ll", row_classes=classes, caption=caption)


def _guides(record: Mapping[str, Any], stages: Sequence[Row]) -> dict[str, Guide]:
    """Target lines, by metric: flash and SRAM in KiB, latency in ms, the accuracy floor in %."""
    targets, budget, int8 = record.get("targets") or {}, record.get("budget") or {}, record.get("int8_baseline")
    guides: dict[str, Guide] = {}
    for metric, absolute, scale, kib, fraction, int8_key in (
        ("flash", "flash_bytes", KIB, "flash_kib", "flash_fraction", "flash_bytes"),
        ("sram", "sram_bytes", KIB, "sram_kib", "sram_fraction", "sram_bytes"),
        ("latency", "latency_ms", 1.0, "latency_ms", "latency_fraction", "latency_ms"),
    ):
        # the resolved budget when the record has it, else the target (absolute, or a fraction of the int8 model's)
        value = _num(budget, absolute)
        value = value / scale if value is not None else _num(targets, kib)
        frac, ref = _num(targets, fraction), _num(int8, int8_key)
        if value is None and frac is not None and ref is not None:
            value = frac * ref / scale
        if value is not None:
            guides[metric] = Guide("y", value, f"{'SRAM' if metric == 'sram' else metric} target")
    drop, base = _num(targets, "max_accuracy_drop"), _num(_baseline(stages), "accuracy")
    if drop is not None and base is not None:  # the drop is in points (0-100), accuracy a fraction
        guides["accuracy"] = Guide("y", base * 100 - drop, "accuracy floor")
    return guides


def _tradeoff_charts(report: Report, record: Mapping[str, Any], stages: Sequence[Row]) -> None:
    guides = _guides(record, stages)
    int8 = record.get("int8_baseline")
    charts = []
    for key, scale, metric, title, x_label in (
        ("flash_bytes", KIB, "flash", "accuracy vs flash", "flash (KiB)"),
        ("latency_ms", 1.0, "latency", "accuracy vs latency", "latency (ms, host, batch 1)"),
    ):

        def point(row: Row, key: str = key, scale: float = scale) -> tuple[float, float, str] | None:
            x, acc = _num(row, key), _num(row, "accuracy")
            return None if x is None or acc is None else (x / scale, acc * 100, _label(row))

        series: dict[str, list[tuple[float, float, str]]] = {"stages": [p for s in stages if (p := point(s))]}
        if int8 is not None and (p := point(int8)):
            series["int8 baseline"] = [(p[0], p[1], "")]
        if not series["stages"]:
            continue
        lines = [Guide("x", g.value, g.label)] if (g := guides.get(metric)) else []  # the target is on the x axis
        lines += [floor] if (floor := guides.get("accuracy")) else []
        charts.append(scatter_chart_svg(series, title, x_label, "accuracy (%)", guides=lines, width=580))
    if charts:
        report.add_heading("Accuracy against size and speed")
        report.add_charts(charts)


SEARCH_METRICS = (  # record key, scale, chart metric (for target lines), axis label
    ("flash_bytes", KIB, "flash", "flash (KiB)"),
    ("sram_bytes", KIB, "sram", "peak SRAM (KiB)"),
    ("latency_ms", 1.0, "latency", "latency (ms)"),
    ("accuracy", 0.01, "accuracy", "accuracy (%)"),
)


def _search(report: Report, record: Mapping[str, Any], stages: Sequence[Row]) -> None:
    points = [p for p in record.get("search") or [] if _num(p, "value") is not None]
    if not points:
        return
    report.add_heading("Search")
    guides = _guides(record, stages)
    for knob in dict.fromkeys(str(p.get("knob", "knob")) for p in points):
        group = sorted((p for p in points if str(p.get("knob", "knob")) == knob), key=lambda p: float(p["value"]))
        charts = []
        for key, scale, metric, label in SEARCH_METRICS:
            pts = [(float(p["value"]), v / scale, "") for p in group if (v := _num(p, key)) is not None]
            if not pts:
                continue
            chosen = [
                (float(p["value"]), v / scale) for p in group if p.get("chosen") and (v := _num(p, key)) is not None
            ]
            lines = [g] if (g := guides.get(metric)) else []
            title = f"{label.split(' (')[0]} vs {knob}"
            chart_id = chart_slug(f"search-{metric}-{knob}")
            charts.append(scatter_chart_svg({label: pts}, title, knob, label, chart_id=chart_id, highlight=chosen,
                                            guides=lines, width=380, height=280, legend=False))  # fmt: skip
        report.add_charts(charts)
        rows = [[f"{float(p['value']):.4g}", _count(_num(p, "macs")), _fmt(_num(p, "flash_bytes"), ".1f", KIB),
                 _fmt(_num(p, "sram_bytes"), ".1f", KIB), _fmt(_num(p, "latency_ms"), ".3f"),
                 _fmt(_num(p, "accuracy"), ".2%"), "✓" if p.get("chosen") else ""] for p in group]  # fmt: skip
        report.add_table([knob, "MACs", "flash KiB", "peak SRAM KiB", "latency ms", "accuracy", "chosen"], rows,
                         row_classes=["ref" if p.get("chosen") else "" for p in group])  # fmt: skip


def _sensitivity(report: Report, record: Mapping[str, Any]) -> None:
    sens = record.get("sensitivity")
    if not sens or not sens.get("curves"):
        return
    series = {str(layer): [(float(x), float(a) * 100) for x, a in pts] for layer, pts in sens["curves"].items()}
    if not any(series.values()):
        return
    report.add_heading("Sensitivity")
    x_label = str(sens.get("x_label") or "x")
    report.add_charts([line_chart_svg(series, f"accuracy vs {x_label} per layer", x_label, "accuracy (%)",
                                      width=760, chart_id="sensitivity")])  # fmt: skip


def _memory(report: Report, record: Mapping[str, Any]) -> None:
    memory = record.get("memory")
    if not memory or not memory.get("buffers"):
        return
    report.add_heading("Memory: the arena plan")
    arena, buffers, ops = int(memory.get("arena_bytes") or 0), memory["buffers"], memory.get("ops") or []
    total = sum(int(b["size"]) for b in buffers)
    report.add_text(f"Arena {arena / KIB:.1f} KiB for {len(buffers)} activation buffers over {len(ops)} ops "
                    f"(their sizes add up to {total / KIB:.1f} KiB; reuse saves the difference). "
                    "Hover a buffer for its tensor and size.")  # fmt: skip
    report.add_charts([memory_timeline_svg(memory, width=1160)])


def _layers(report: Report, record: Mapping[str, Any]) -> None:
    layers = record.get("layers") or []
    if not layers:
        return
    report.add_heading("Layers of the final model")
    on_mcu = any("instruction_share" in r for r in layers)
    share = "instruction_share" if on_mcu else "latency_share"
    rows = [[str(r.get("name", "?")), str(r.get("kind", "")), _count(_num(r, "macs")),
             _fmt(_num(r, "weight_bytes"), ",.0f"), _fmt(_num(r, "sram_bytes"), ",.0f"),
             _fmt(_num(r, share), ".1%")] for r in layers]  # fmt: skip
    last = "share of the Cortex-M instructions" if on_mcu else "share of latency"
    report.add_table(["layer", "kind", "MACs", "weight bytes", "SRAM bytes", last], rows, align="ll")


def _mcu(report: Report, record: Mapping[str, Any]) -> None:
    mcu = record.get("mcu") or {}
    if not mcu:
        return
    report.add_heading("On the microcontroller (emulated)")
    if "mcu_skipped" in mcu:
        report.add_text(str(mcu["mcu_skipped"]))
        return
    counts = [int(c) for c in mcu.get("mcu_instructions", [])]
    exact = mcu.get("mcu_bit_exact")
    size = {k: int(mcu.get(f"mcu_{k}_bytes") or 0) for k in ("flash", "model_flash", "peak_sram", "stack")}
    text = (f"{mcu.get('mcu_board', '?')} under QEMU (-icount shift=0; {mcu.get('mcu_flags', '')}): "
            f"{max(counts, default=0):,} instructions per inference ({len(counts)} test images; run_q only), "
            f"flash {size['flash']:,} B with the harness (the model {size['model_flash']:,} B), peak SRAM "
            f"{size['peak_sram']:,} B (arena + measured stack {size['stack']:,} B); output "
            f"{'equals the host build bit for bit' if exact else 'differs from the host build'}.")  # fmt: skip
    report.add_html(f'<div class="box {"ok" if exact else "bad"}">{html.escape(text)}</div>')


def _verify(report: Report, record: Mapping[str, Any]) -> None:
    verify = record.get("verify")
    if not verify:
        return
    report.add_heading("Verify: C output against the integer reference")
    images, elements, bad = (int(verify.get(k) or 0) for k in ("images", "elements", "mismatched"))
    if bad == 0:
        text = f"Bit-exact: {elements:,} output values over {images:,} images match the integer reference."
    else:
        text = (
            f"{bad:,} mismatches of {elements:,} output values ({bad / max(elements, 1):.2%}) over {images:,} images."
        )
    report.add_html(f'<div class="box {"ok" if bad == 0 else "bad"}">{html.escape(text)}</div>')


def _notes(report: Report, record: Mapping[str, Any], stages: Sequence[Row]) -> None:
    given = [str(n) for n in record.get("notes") or []]
    notes = [html.escape(n) for n in given]
    notes += [f"<b>{html.escape(_label(s))}</b>: {html.escape(str(s['note']))}" for s in stages
              if s.get("note") and not any(str(s["note"]) in n for n in given)]  # fmt: skip
    inp = record.get("input") or {}
    recipe = record.get("recipe")
    if not notes and not recipe and not inp:
        return
    report.add_heading("Notes and recipe")
    if notes:
        report.add_html("<ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>")
    if inp.get("mean") is not None or inp.get("classes"):
        norm = f"normalization mean {inp.get('mean')} std {inp.get('std')}"
        report.add_text(f"{norm}; classes: {', '.join(str(c) for c in inp.get('classes') or []) or DASH}")
    if recipe:
        text = json.dumps(recipe, indent=2, sort_keys=True, default=str)
        report.add_html(f"<pre>{html.escape(text)}</pre>")


def render_run_report(record: Mapping[str, Any]) -> str:
    """The run report as one self-contained HTML document (inline CSS and SVG, no external references).

    Example:
        >>> page = render_run_report({"name": "<run>", "stages": []})
        >>> page.startswith("<!doctype html>") and "&lt;run&gt;" in page and "<script" not in page
        True
    """
    stages = _check(record)
    report = Report(f"leanml compress: {record['name']}")
    _header(report, record)
    _verdicts(report, record)
    _stage_table(report, stages, record.get("int8_baseline"))
    _tradeoff_charts(report, record, stages)
    _search(report, record, stages)
    _sensitivity(report, record)
    _memory(report, record)
    _layers(report, record)
    _mcu(report, record)
    _verify(report, record)
    _notes(report, record, stages)
    return report.html()


def write_run_report(record: Mapping[str, Any], path: str | Path) -> Path:
    """Render the run report and write it atomically to ``path``; returns the path.

    Example:
        >>> import tempfile
        >>> out = write_run_report({"name": "demo", "stages": []}, tempfile.mkdtemp() + "/report.html")
        >>> out.read_text().startswith("<!doctype html>")
        True
    """
    text = render_run_report(record)
    target = Path(path)
    atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return target
