"""The one timing module: warm-up, repeats, median and spread, threads pinned, batch stated.

Every Python and benchmark path measures through this module, so figures are
comparable: the same warm-up, the same statistics, and the thread count and
batch size travel with the numbers. Two forms share one protocol:

- latency (:func:`measure_latency`): milliseconds per call, median, p10/p90, mean, stdev;
- throughput (:func:`measure_throughput`): items per second (tokens/s, images/s), median with the min-max spread.

C harnesses return raw samples; Python turns them into statistics with :meth:`LatencyStats.from_samples` or
:meth:`Throughput.of`, never in C.

Example:
    >>> stats = measure_latency(lambda: sum(range(1000)), warmup=2, repeats=5, threads=1)
    >>> stats.repeats, stats.threads, stats.median_ms > 0
    (5, 1, True)
    >>> measure_throughput(lambda: sum(range(1000)), items_per_call=1000, warmup=1, repeats=3).runs.__len__()
    3
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.threads import torch_threads


def _check_protocol(warmup: int, repeats: int) -> None:
    if repeats < 1 or warmup < 0:
        raise LeanmlError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


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

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], threads: int, batch_size: int | None = None) -> LatencyStats:
        """Statistics of raw per-call times in milliseconds (e.g. returned by a C harness).

        Example:
            >>> LatencyStats.from_samples([3.0, 1.0, 2.0], threads=1).median_ms
            2.0
        """
        if not samples_ms:
            raise LeanmlError("no timing samples", "time at least one call")
        times = sorted(float(t) for t in samples_ms)
        return cls(
            median_ms=statistics.median(times),
            p10_ms=_quantile(times, 0.1),
            p90_ms=_quantile(times, 0.9),
            mean_ms=statistics.fmean(times),
            stdev_ms=statistics.stdev(times) if len(times) > 1 else 0.0,
            repeats=len(times),
            threads=threads,
            batch_size=batch_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}; {self.threads} thr)"


@dataclass(frozen=True)
class Throughput:
    """Items per second over repeats: median, min and max, and each repeat's figure."""

    median: float
    low: float
    high: float
    runs: list[float]

    @classmethod
    def of(cls, runs: Sequence[float]) -> Throughput:
        """From the per-repeat rates.

        Example:
            >>> Throughput.of([3.0, 1.0, 2.0]).median
            2.0
        """
        if not runs:
            raise LeanmlError("no throughput samples", "time at least one repeat")
        values = [float(r) for r in runs]
        return cls(statistics.median(values), min(values), max(values), values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.median:.1f}/s (min {self.low:.1f}, max {self.high:.1f})"


def time_calls(fn: Callable[[], object], warmup: int = 5, repeats: int = 30, min_seconds: float = 0.0) -> list[float]:
    """Raw samples: ``warmup`` untimed calls, then per-call times in ms of at least ``repeats`` calls (more until
    ``min_seconds`` of timing have passed). Threads are the caller's business (see :func:`measure_latency`).

    Example:
        >>> len(time_calls(lambda: None, warmup=0, repeats=4))
        4
    """
    _check_protocol(warmup, repeats)
    for _ in range(warmup):
        fn()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - began < min_seconds:
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


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

    Example:
        >>> measure_latency(lambda: None, warmup=0, repeats=3, threads=1, batch_size=1).batch_size
        1
    """
    with torch_threads(threads) as n_threads:
        times = time_calls(fn, warmup, repeats, min_seconds)
    return LatencyStats.from_samples(times, n_threads, batch_size)


def measure_throughput(
    fn: Callable[[], object],
    items_per_call: int,
    warmup: int = 1,
    repeats: int = 5,
    threads: int | None = None,
) -> Throughput:
    """Items per second of ``fn()``, which handles ``items_per_call`` items (tokens, images) per call: the same
    protocol as :func:`measure_latency` (untimed warm-up, timed repeats, torch pinned to ``threads``).

    Example:
        >>> measure_throughput(lambda: None, items_per_call=8, warmup=0, repeats=2).low > 0
        True
    """
    if items_per_call < 1:
        raise LeanmlError(f"items_per_call must be >= 1, got {items_per_call}")
    with torch_threads(threads):
        times = time_calls(fn, warmup, repeats)
    return Throughput.of([items_per_call / max(t / 1e3, 1e-12) for t in times])


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
