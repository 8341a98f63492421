"""Range observers for calibration: min-max, moving-average min-max, percentile, MSE-optimal, entropy (KL).

An observer sees activation batches (``observe``) and proposes a clipping
range (``range``) that the linear quantizer turns into scale and zero point.
Histogram-style observers keep a bounded, seeded random sample of the values
they saw (plus the exact min and max), so memory stays bounded on any
calibration set and results are reproducible.

Observers are chosen by name through :data:`OBSERVERS`.

Example:
    >>> import torch
    >>> obs = make_observer("minmax")
    >>> obs.observe(torch.tensor([-1.0, 3.0]))
    >>> obs.range()
    (-1.0, 3.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from leanml.errors import LeanmlError

SAMPLE_LIMIT = 1 << 20  # values kept per observer for histogram-based searches


class Observer:
    """Base: tracks the exact min and max of everything observed."""

    def __init__(self, bits: int = 8) -> None:
        self.bits = bits
        self.lo = math.inf
        self.hi = -math.inf

    def observe(self, x: torch.Tensor) -> None:
        """Record one batch of values (any shape)."""
        x = x.detach()
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    def range(self) -> tuple[float, float]:
        """The clipping range (lo, hi) to quantize with."""
        self._check()
        return self.lo, self.hi

    def _check(self) -> None:
        if self.lo > self.hi:
            raise LeanmlError("observer saw no data", "calibrate on at least one batch before converting")


class MinMaxObserver(Observer):
    """The full observed range."""


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of per-batch min and max (``momentum`` weight on the past)."""

    def __init__(self, bits: int = 8, momentum: float = 0.9) -> None:
        super().__init__(bits)
        self.momentum = momentum
        self.avg_lo: float | None = None
        self.avg_hi: float | None = None

    def observe(self, x: torch.Tensor) -> None:
        super().observe(x)
        lo, hi = float(x.min()), float(x.max())
        if self.avg_lo is None or self.avg_hi is None:
            self.avg_lo, self.avg_hi = lo, hi
        else:
            self.avg_lo = self.momentum * self.avg_lo + (1 - self.momentum) * lo
            self.avg_hi = self.momentum * self.avg_hi + (1 - self.momentum) * hi

    def range(self) -> tuple[float, float]:
        self._check()
        assert self.avg_lo is not None and self.avg_hi is not None
        return self.avg_lo, self.avg_hi


class SampleObserver(Observer):
    """Keeps a bounded seeded random sample of observed values for range searches."""

    def __init__(self, bits: int = 8, seed: int = 0) -> None:
        super().__init__(bits)
        self.generator = torch.Generator().manual_seed(seed)
        self.chunks: list[torch.Tensor] = []
        self.kept = 0

    def observe(self, x: torch.Tensor) -> None:
        super().observe(x)
        flat = x.detach().flatten().float()
        if flat.numel() > SAMPLE_LIMIT // 8:  # keep at most 1/8 of the budget per batch
            idx = torch.randint(0, flat.numel(), (SAMPLE_LIMIT // 8,), generator=self.generator)
            flat = flat[idx]
        self.chunks.append(flat)
        self.kept += flat.numel()
        if self.kept > SAMPLE_LIMIT:  # thin everything to half the budget, uniformly
            pool = torch.cat(self.chunks)
            idx = torch.randperm(pool.numel(), generator=self.generator)[: SAMPLE_LIMIT // 2]
            self.chunks, self.kept = [pool[idx]], SAMPLE_LIMIT // 2

    def sample(self) -> torch.Tensor:
        """The kept values, 1-D float32."""
        self._check()
        return torch.cat(self.chunks)


class PercentileObserver(SampleObserver):
    """Clip to the [100-p, p] percentiles of the observed values (p = 99.99 by default)."""

    def __init__(self, bits: int = 8, percentile: float = 99.99, seed: int = 0) -> None:
        super().__init__(bits, seed)
        if not 50.0 < percentile <= 100.0:
            raise LeanmlError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = percentile

    def range(self) -> tuple[float, float]:
        s = self.sample()
        q = torch.tensor([1 - self.percentile / 100, self.percentile / 100], dtype=torch.float32)
        lo, hi = torch.quantile(s, q).tolist()
        return min(lo, 0.0), max(hi, 0.0)


def _affine_mse(sample: torch.Tensor, lo: float, hi: float, bits: int) -> float:
    """Mean squared error of asymmetric ``bits``-bit fake quantization of ``sample`` over [lo, hi]."""
    levels = (1 << bits) - 1
    scale = max(hi - lo, 1e-12) / levels
    q = torch.clamp(torch.round((sample - lo) / scale), 0, levels)
    return float(((q * scale + lo - sample) ** 2).mean())


class MSEObserver(SampleObserver):
    """The clipping range with the least quantization MSE among the min-max range shrunk by 1x..100x."""

    def __init__(self, bits: int = 8, steps: int = 100, seed: int = 0) -> None:
        super().__init__(bits, seed)
        self.steps = steps

    def range(self) -> tuple[float, float]:
        s = self.sample()
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        best = (math.inf, lo, hi)
        for i in range(self.steps):
            alpha = 0.01 ** (i / self.steps)  # geometric grid from the full range down to 1% of it
            err = _affine_mse(s, lo * alpha, hi * alpha, self.bits)
            if err < best[0]:
                best = (err, lo * alpha, hi * alpha)
        return best[1], best[2]


class EntropyObserver(SampleObserver):
    """TensorRT-style entropy calibration, one side of zero at a time.

    For each sign present, P is the histogram of |x| on that side cut at a
    candidate threshold (the clipped tail folded into the last bin); Q merges
    those bins into as many levels as that side gets (256 for a non-negative
    tensor, 128 per side for a signed one) and spreads each level's mass over
    its nonzero bins; the threshold minimizing KL(P || Q) wins. TensorRT uses
    2048 bins over |x|; here each side has 32768 bins and candidates step by
    one level's worth, so a few far outliers cannot force the threshold above
    the bulk of the values, and a signed input (e.g. a normalized image whose
    background is negative) is not folded onto its positive side.
    """

    BINS = 1 << 15

    def range(self) -> tuple[float, float]:
        s = self.sample()
        signed = self.lo < 0 < self.hi
        levels = (1 << self.bits) // (2 if signed else 1)
        hi = self._threshold(s[s > 0], levels) if self.hi > 0 else 0.0
        lo = -self._threshold(-s[s < 0], levels) if self.lo < 0 else 0.0
        return lo, hi

    def _threshold(self, mags: torch.Tensor, levels: int) -> float:
        top = float(mags.max())
        hist = torch.histc(mags, bins=self.BINS, min=0.0, max=top).double()  # (BINS,)
        best_kl, best_i = math.inf, self.BINS
        step = max(levels, self.BINS // 1024)
        for i in range(step, self.BINS + 1, step):
            p = hist[:i].clone()
            p[-1] += hist[i:].sum()  # fold the clipped tail into the last bin
            groups = hist[:i].view(levels, i // levels)  # (levels, bins per level)
            nonzero = (groups > 0).double()
            q = nonzero * (groups.sum(1, keepdim=True) / nonzero.sum(1, keepdim=True).clamp(min=1))
            kl = _kl(p, q.flatten())
            if kl < best_kl:
                best_kl, best_i = kl, i
        return best_i * top / self.BINS


def _kl(p: torch.Tensor, q: torch.Tensor) -> float:
    p = p / p.sum()
    q = q / max(float(q.sum()), 1e-30)
    mask = p > 0
    q = torch.where(q > 0, q, torch.full_like(q, 1e-12))
    return float((p[mask] * (p[mask] / q[mask]).log()).sum())


OBSERVERS: dict[str, Callable[[int], Observer]] = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "entropy": EntropyObserver,
}


def make_observer(name: str, bits: int = 8) -> Observer:
    """A fresh observer by name (see :data:`OBSERVERS`).

    Example:
        >>> type(make_observer("entropy")).__name__
        'EntropyObserver'
    """
    if name not in OBSERVERS:
        raise LeanmlError(f"unknown observer {name!r}", f"choose one of: {', '.join(OBSERVERS)}")
    return OBSERVERS[name](bits)
