"""NAS plots for the HTML report: search progress, Pareto fronts, predictor fit, supernet training.

Line charts come from :mod:`leanml.report`; the predictor fit is a scatter
plot (:func:`scatter_svg`, inline SVG like the rest of the report).

Example:
    >>> svg = scatter_svg({"held-out": [(0.8, 0.81), (0.9, 0.88)]}, "fit", "measured", "predicted")
    >>> svg.startswith("<svg") and svg.count("<circle") == 2
    True
"""

from __future__ import annotations

import html
from typing import Any

from leanml.nas.efficiency import UNITS
from leanml.nas.predictor import AccuracyModel
from leanml.nas.search import SearchResult, format_resource
from leanml.report import Report
from leanml.report.html import PALETTE, Series


def scatter_svg(series: Series, title: str, x_label: str, y_label: str, diagonal: bool = True) -> str:
    """An SVG scatter plot of named (x, y) point sets, with the y = x line when ``diagonal``."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return f"<p>{html.escape(title)}: no data</p>"
    lo = min(min(p) for p in points)
    hi = max(max(p) for p in points)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    width, height, left, top, size = 480, 420, 60, 30, 340

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * size

    def sy(v: float) -> float:
        return top + (1 - (v - lo) / (hi - lo)) * size

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="11">',
             f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#999"/>']  # fmt: skip
    for i in range(5):
        t = lo + (hi - lo) * i / 4
        parts.append(f'<text x="{sx(t):.1f}" y="{top + size + 15}" text-anchor="middle">{t:.3g}</text>')
        parts.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>')
    if diagonal:
        parts.append(f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" stroke="#bbb"/>')
    parts.append(f'<text x="{left + size / 2:.0f}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{top + size / 2:.0f}" transform="rotate(-90 14 {top + size / 2:.0f})" '
                 f'text-anchor="middle">{html.escape(y_label)}</text>')  # fmt: skip
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
        parts.append(f'<text x="{left + size + 8}" y="{top + 12 + 14 * i}" fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def add_search(report: Report, results: dict[str, SearchResult]) -> None:
    """Search progress (best predicted accuracy per round) and the Pareto front per resource, one series per run.

    Example:
        >>> report = Report("search")
        >>> add_search(report, {"evolution": load_search("runs/nas/search")})  # doctest: +SKIP
    """
    report.add_heading("Search")
    progress = {name: [(float(i), 100 * a) for i, a in enumerate(r.history)] for name, r in results.items()}
    report.add_chart("best predicted accuracy per round", progress, "round", "predicted accuracy (%)")
    resources = sorted({res for r in results.values() for res in r.fronts}, key=list(UNITS).index)
    for res in resources:
        scale = 1e6 if res == "macs" else 1024.0 if res == "peak_sram" else 1e3 if res == "params" else 1.0
        unit = {"macs": "M MACs", "peak_sram": "KiB (int8)", "params": "K params", "latency_ms": "ms"}[res]
        series = {name: [((c.efficiency.get(res) or 0.0) / scale, 100 * c.accuracy) for c in r.fronts.get(res, [])]
                  for name, r in results.items()}  # fmt: skip
        report.add_chart(f"Pareto front: predicted accuracy vs {res}", series, unit, "predicted accuracy (%)")
    rows = []
    for name, r in results.items():
        e = r.best.efficiency
        rows.append([name, str(r.best.arch), f"{r.best.accuracy:.2%}", format_resource("macs", e.macs),
                     format_resource("params", e.params), format_resource("peak_sram", e.peak_sram),
                     format_resource("latency_ms", e.latency_ms) if e.latency_ms is not None else "-",
                     str(r.evaluated)])  # fmt: skip
    report.add_table(["run", "best architecture", "predicted acc", "MACs", "params", "peak SRAM (int8)",
                      "latency (table)", "candidates"], rows)  # fmt: skip


def add_predictor(report: Report, model: AccuracyModel) -> None:
    """Held-out predicted vs measured accuracy (scatter) and the fit's metrics.

    Example:
        >>> add_predictor(Report("predictor"), AccuracyModel.load("runs/nas/predictor"))  # doctest: +SKIP
    """
    report.add_heading("Accuracy predictor")
    points = [(100 * m, 100 * p) for m, p in model.holdout]
    report.parts.append(
        scatter_svg({"held-out": points}, "predicted vs measured accuracy (%)", "measured", "predicted")
    )
    report.add_table(["metric", "value"], [[k, f"{v:.4g}"] for k, v in model.metrics.items()])


def add_training(report: Report, history: list[dict[str, Any]]) -> None:
    """Supernet training: validation accuracy of the largest and smallest subnets per epoch.

    Example:
        >>> row = {"phase": "full", "epoch": 1, "train_loss": 1.0, "val_acc_largest": 0.8, "val_acc_smallest": 0.7,
        ...        "seconds": 5.0}
        >>> report = Report("training")
        >>> add_training(report, [row])
        >>> "<svg" in report.html()
        True
    """
    report.add_heading("Supernet training (progressive shrinking)")
    series = {
        "largest subnet": [(float(i + 1), 100 * r["val_acc_largest"]) for i, r in enumerate(history)],
        "smallest subnet": [(float(i + 1), 100 * r["val_acc_smallest"]) for i, r in enumerate(history)],
    }
    report.add_chart("validation accuracy after BN recalibration", series, "epoch", "accuracy (%)")
    report.add_table(["phase", "epoch", "loss", "largest", "smallest", "seconds"],
                     [[r["phase"], str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['val_acc_largest']:.2%}",
                       f"{r['val_acc_smallest']:.2%}", f"{r['seconds']:.0f}"] for r in history])  # fmt: skip
