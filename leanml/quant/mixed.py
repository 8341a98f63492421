"""Mixed-precision weights (HAQ-like): per-layer bit widths chosen under a size budget from measured sensitivity.

1. **Sensitivity**: for every conv/linear layer and every candidate width, the
   validation accuracy with only that layer's weights fake-quantized (per
   output channel, symmetric) and everything else in float.
2. **Allocation** (greedy): start with every layer at the widest candidate; while
   the weights exceed the budget, lower the layer whose next narrower width costs
   the least measured accuracy per byte saved.
3. The chosen widths feed :class:`~leanml.quant.sim.QuantSim` (``weight_bits``
   as a dict), so PTQ/QAT and the integer model follow them.

Weight size counts each conv/linear weight at its width plus one fp32 scale
per output channel; everything else (biases, BN folded in) is counted once at
32 bits and is the same for every allocation.

Example:
    >>> sens = {"a": {8: 0.90, 4: 0.89, 2: 0.50}, "b": {8: 0.90, 4: 0.60, 2: 0.10}}
    >>> sizes = {"a": 1000, "b": 1000}
    >>> allocate_bits(sens, sizes, budget_bits=1000 * 4 + 1000 * 8)
    {'a': 4, 'b': 8}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from leanml.config import Config, require
from leanml.data import ImageSet
from leanml.errors import LeanmlError
from leanml.progress import track
from leanml.quant.fake_quant import weight_fake_quantize
from leanml.quant.primitives import MAX_BITS, MIN_BITS
from leanml.train.loop import evaluate


@dataclass
class MixedPrecisionConfig(Config):
    """Candidate widths, the budget (bytes of weights, or the size of a uniform width), validation images.

    Example:
        >>> MixedPrecisionConfig(like_uniform_bits=9)
        Traceback (most recent call last):
        leanml.errors.LeanmlError: like_uniform_bits 9 is outside 2..8 (use an int from 2 to 8)
    """

    candidate_bits: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    budget_bytes: int | None = None
    like_uniform_bits: int | None = 4  # used when budget_bytes is None: the size of uniform N-bit weights
    val_images: int = 2000

    def validate(self) -> None:
        require(bool(self.candidate_bits), "candidate_bits is empty")
        for b in self.candidate_bits:
            require(MIN_BITS <= b <= MAX_BITS, f"candidate bit width {b} is outside {MIN_BITS}..{MAX_BITS}")
        require(
            (self.budget_bytes is None) != (self.like_uniform_bits is None),
            "give exactly one of budget_bytes and like_uniform_bits",
        )
        like = self.like_uniform_bits
        require(
            like is None or (isinstance(like, int) and not isinstance(like, bool) and MIN_BITS <= like <= MAX_BITS),
            f"like_uniform_bits {like!r} is outside {MIN_BITS}..{MAX_BITS}",
            f"use an int from {MIN_BITS} to {MAX_BITS}",
        )
        require(self.budget_bytes is None or self.budget_bytes > 0, "budget_bytes must be > 0")
        require(self.val_images >= 1, "val_images must be >= 1")


@dataclass
class MixedPrecisionResult:
    """Chosen widths per layer, the sensitivity table, and sizes in bits."""

    bits: dict[str, int]
    sensitivity: dict[str, dict[int, float]]
    float_accuracy: float
    weight_bits_total: int
    budget_bits: int

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form for reports."""
        return {
            "bits": self.bits,
            "sensitivity": {k: {str(b): a for b, a in v.items()} for k, v in self.sensitivity.items()},
            "float_accuracy": self.float_accuracy,
            "weight_bytes": self.weight_bits_total / 8,
            "budget_bytes": self.budget_bits / 8,
        }


def quantizable_layers(model: nn.Module) -> dict[str, nn.Conv2d | nn.Linear]:
    """conv/linear layers by module name (the names QuantSim's plan uses)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def weight_size_bits(model: nn.Module, bits: dict[str, int]) -> int:
    """Weights of the named layers at their widths plus one fp32 scale per output channel.

    Example:
        >>> weight_size_bits(nn.Sequential(nn.Linear(4, 2)), {"0": 4})
        96
    """
    layers = quantizable_layers(model)
    return sum(layers[n].weight.numel() * b + layers[n].weight.shape[0] * 32 for n, b in bits.items())


def measure_sensitivity(
    model: nn.Module, data: ImageSet, candidate_bits: list[int], progress: bool = True
) -> tuple[float, dict[str, dict[int, float]]]:
    """(float accuracy, {layer: {bits: accuracy with only that layer at that width}}): one evaluation of ``data`` per
    layer and width, plus one in float. With ``progress``, a bar (plain lines in logs and pipes) over layers x widths.

    Example:
        >>> from leanml.models import build_model
        >>> val = ImageSet(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
        >>> base, table = measure_sensitivity(build_model("vgg", layers=[4, "M"]), val, [4, 8], progress=False)
        >>> sorted(table), sorted(table["classifier"])
        (['classifier', 'features.0'], [4, 8])
    """
    _, base = evaluate(model, data)
    layers = list(quantizable_layers(model))
    table: dict[str, dict[int, float]] = {}
    jobs = [(name, b) for name in layers for b in candidate_bits]
    what = f"sensitivity scan ({len(layers)} layers x {len(candidate_bits)} widths, {len(data)} images)"
    for name, b in track(jobs, len(jobs), what, progress):
        probe = copy.deepcopy(model)
        layer = quantizable_layers(probe)[name]
        with torch.no_grad():
            layer.weight.copy_(weight_fake_quantize(layer.weight, b))
        table.setdefault(name, {})[b] = evaluate(probe, data)[1]
    return base, table


def allocate_bits(sensitivity: dict[str, dict[int, float]], numel: dict[str, int], budget_bits: int) -> dict[str, int]:
    """Greedy width allocation: cheapest accuracy loss per bit saved first, until the weights fit ``budget_bits``.

    ``numel`` gives each layer's weight count; sizes here count weights only
    (the per-channel scales do not depend on the widths). Raises if even the
    narrowest widths do not fit, naming the smallest achievable size.
    """
    widths = {name: sorted(table) for name, table in sensitivity.items()}
    bits = {name: w[-1] for name, w in widths.items()}
    floor = sum(numel[n] * w[0] for n, w in widths.items())
    if floor > budget_bits:
        raise LeanmlError(
            f"no allocation fits {budget_bits / 8:.0f} bytes of weights",
            f"the smallest achievable is {floor / 8:.0f} bytes with {min(min(w) for w in widths.values())}-bit weights",
        )

    def size() -> int:
        return sum(numel[n] * b for n, b in bits.items())

    while size() > budget_bits:
        best: tuple[float, int, str, int] | None = None
        for name, b in bits.items():
            lower = [w for w in widths[name] if w < b]
            if not lower:
                continue
            nb = lower[-1]
            cost = max(sensitivity[name][b] - sensitivity[name][nb], 0.0)
            saved = numel[name] * (b - nb)
            key = (cost / saved, -saved, name, nb)
            if best is None or key < best:
                best = key
        assert best is not None  # the floor check guarantees a move exists
        bits[best[2]] = best[3]
    return bits


def mixed_precision(
    model: nn.Module,
    cfg: MixedPrecisionConfig,
    val: ImageSet,
    progress: bool = True,
) -> MixedPrecisionResult:
    """Measure sensitivity on ``val`` (a seeded sample of ``cfg.val_images``) and choose widths under the budget.

    ``val`` is the validation split (never the test split: the widths are chosen on it).

    Example:
        >>> from leanml.models import build_model
        >>> val = ImageSet(torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
        >>> cfg = MixedPrecisionConfig(candidate_bits=[4, 8], val_images=8)
        >>> sorted(mixed_precision(build_model("vgg", layers=[4, "M"]).eval(), cfg, val, progress=False).bits)
        ['classifier', 'features.0']
    """
    layers = quantizable_layers(model)
    if not layers:
        raise LeanmlError(f"{type(model).__name__} has no conv or linear layers to quantize")
    if len(val) == 0:
        raise LeanmlError("mixed precision got an empty validation set", "pass the validation split's images")
    val = val.sample(cfg.val_images)
    base, sens = measure_sensitivity(model, val, sorted(set(cfg.candidate_bits)), progress)
    numel = {n: m.weight.numel() for n, m in layers.items()}
    scales_bits = sum(m.weight.shape[0] * 32 for m in layers.values())
    if cfg.budget_bytes is not None:
        budget = cfg.budget_bytes * 8 - scales_bits
    else:
        assert cfg.like_uniform_bits is not None
        budget = sum(numel.values()) * cfg.like_uniform_bits
    bits = allocate_bits(sens, numel, budget)
    return MixedPrecisionResult(bits, sens, base, weight_size_bits(model, bits), budget + scales_bits)
