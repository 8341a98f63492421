"""The one latency helper: warm-up, repeats, median and spread, threads pinned, batch stated.

Every benchmark and report measures through :func:`measure_latency`, so
figures are comparable: the same warm-up, the same statistics, and the thread
count and batch size travel with the numbers.

Example:
    >>> stats = measure_latency(lambda: sum(range(1000)), warmup=2, repeats=5, threads=1)
    >>> stats.repeats, stats.threads, stats.median_ms > 0
    (5, 1, True)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.threads import torch_threads


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock latency of one call: median and spread in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    stdev_ms: float
    repeats: int
    threads: int
    batch_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}; {self.threads} thr)"


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def measure_latency(
    fn: Callable[[], object],
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    batch_size: int | None = None,
    min_seconds: float = 0.0,
) -> LatencyStats:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``repeats`` timed calls
    (more until ``min_seconds`` of timing have passed), with torch pinned to ``threads``.
    """
    if repeats < 1 or warmup < 0:
        raise LeanmlError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    with torch_threads(threads) as n_threads:
        for _ in range(warmup):
            fn()
        times: list[float] = []
        began = time.perf_counter()
        while len(times) < repeats or time.perf_counter() - began < min_seconds:
            t0 = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - t0) / 1e6)
    times.sort()
    return LatencyStats(
        median_ms=statistics.median(times),
        p10_ms=_quantile(times, 0.1),
        p90_ms=_quantile(times, 0.9),
        mean_ms=statistics.fmean(times),
        stdev_ms=statistics.stdev(times) if len(times) > 1 else 0.0,
        repeats=len(times),
        threads=n_threads,
        batch_size=batch_size,
    )


def model_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int = 1,
    threads: int | None = None,
    warmup: int = 5,
    repeats: int = 30,
) -> LatencyStats:
    """Latency of ``model`` in eval mode under ``torch.inference_mode`` on a random input.

    Example:
        >>> from leanml.models import build_model
        >>> model_latency(build_model("vgg"), (1, 28, 28), batch_size=1, threads=1, repeats=3).batch_size
        1
    """
    was_training = model.training
    model.eval()
    x = torch.randn((batch_size, *input_shape), generator=torch.Generator().manual_seed(0))
    try:
        with torch.inference_mode():
            return measure_latency(lambda: model(x), warmup, repeats, threads, batch_size)
    finally:
        model.train(was_training)
