"""Measure a model beside its baseline: params, MACs, accuracy and *measured* latency, in one table.

Pruning results are reported this way (by the CLI and the benchmarks), so a
smaller MAC count is never quoted as a speedup: the latency column is timed
with the one latency helper at each batch size.

Example:
    >>> from leanml.models import build_model
    >>> m = measure_model(build_model("vgg"), batch_sizes=(1,), repeats=2)
    >>> m.macs, m.latency[1].batch_size
    (29128448, 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from leanml.data import ImageSet
from leanml.profile.summary import profile_model
from leanml.profile.timing import LatencyStats, model_latency
from leanml.train.loop import evaluate


@dataclass
class ModelMeasure:
    """What a user compares between a model and its pruned version."""

    params: int
    macs: int
    test_acc: float | None
    latency: dict[int, LatencyStats] = field(default_factory=dict)  # batch size -> stats

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return {"params": self.params, "macs": self.macs, "test_acc": self.test_acc,
                "latency": {str(b): s.to_dict() for b, s in self.latency.items()}}  # fmt: skip


def measure_model(
    model: nn.Module,
    test: ImageSet | None = None,
    batch_sizes: tuple[int, ...] = (1, 32),
    threads: int | None = None,
    repeats: int = 30,
    input_shape: tuple[int, ...] = (1, 28, 28),
) -> ModelMeasure:
    """Params and MACs (profiler), test accuracy (when ``test`` is given), latency per batch size."""
    prof = profile_model(model, input_shape, measure=False)
    acc = evaluate(model, test)[1] if test is not None else None
    lat = {b: model_latency(model, input_shape, b, threads, repeats=repeats) for b in batch_sizes}
    return ModelMeasure(prof.params, prof.macs, acc, lat)


def comparison_table(base: ModelMeasure, other: ModelMeasure) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: each quantity for the baseline, the other model, and their ratio.

    Example:
        >>> a = ModelMeasure(100, 1000, 0.9)
        >>> comparison_table(a, ModelMeasure(50, 400, 0.89))[1][1]
        ['MACs', '1,000', '400', '0.40x']
    """
    rows = [
        ["params", f"{base.params:,}", f"{other.params:,}", f"{other.params / base.params:.2f}x"],
        ["MACs", f"{base.macs:,}", f"{other.macs:,}", f"{other.macs / base.macs:.2f}x"],
    ]
    if base.test_acc is not None and other.test_acc is not None:
        rows.append(["test accuracy", f"{base.test_acc:.2%}", f"{other.test_acc:.2%}",
                     f"{(other.test_acc - base.test_acc) * 100:+.2f} pt"])  # fmt: skip
    for b, s in base.latency.items():
        if b in other.latency:
            o = other.latency[b]
            rows.append([f"latency b={b} ({s.threads} thr)", spread(s), spread(o), speedup(s, o)])
    return ["", "baseline", "pruned", "ratio"], rows


def spread(stats: LatencyStats) -> str:
    """Median latency with its p10–p90 range.

    Example:
        >>> spread(LatencyStats(2.0, 1.5, 2.5, 2.0, 0.3, 30, 1))
        '2.000 ms (p10–p90 1.500–2.500)'
    """
    return f"{stats.median_ms:.3f} ms (p10–p90 {stats.p10_ms:.3f}–{stats.p90_ms:.3f})"


def speedup(base: LatencyStats, other: LatencyStats) -> str:
    """The median ratio base/other with its range (p10/p90 .. p90/p10); "within noise" when the two p10–p90 ranges
    overlap, so a busy machine's jitter is never quoted as a speedup.

    Example:
        >>> speedup(LatencyStats(2.0, 1.9, 2.1, 2.0, 0.1, 30, 1), LatencyStats(1.0, 0.9, 1.1, 1.0, 0.1, 30, 1))
        '2.00x faster (1.73–2.33x)'
        >>> speedup(LatencyStats(2.0, 1.0, 3.0, 2.0, 1.0, 30, 1), LatencyStats(1.9, 1.0, 3.0, 1.9, 1.0, 30, 1))
        'within noise: 1.05x (0.33–3.00x)'
    """
    ratio = base.median_ms / other.median_ms
    lo, hi = base.p10_ms / other.p90_ms, base.p90_ms / other.p10_ms
    if base.p10_ms <= other.p90_ms and other.p10_ms <= base.p90_ms:
        return f"within noise: {ratio:.2f}x ({lo:.2f}–{hi:.2f}x)"
    return f"{ratio:.2f}x {'faster' if ratio >= 1 else 'slower'} ({lo:.2f}–{hi:.2f}x)"
