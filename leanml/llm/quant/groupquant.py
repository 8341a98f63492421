"""Per-layer weight quantization for LLMs: asymmetric, unsigned, per group of input channels.

One convention for RTN, AWQ and the packed int4/int3 format (``docs/llm_format.md``):
a linear weight ``W`` of shape (out, in) is cut into groups of ``g`` consecutive
input channels (the last group is shorter when ``g`` does not divide ``in``: SmolLM2's 576 = 4 x 128 + 64);
each (row, group) gets a scale (a float16 value, kept in float32) and an integer zero point
from its min/max (range widened to include 0), ``q = clamp(round_half_away(w / s) + z, 0, 2^b - 1)``,
and ``w ≈ (q - z) * s``. The math is :func:`leanml.quant.primitives.quantize_tensor`
(``symmetric=False, signed=False, group_size=g, scale_dtype="float16"``); this module only adapts it to
torch tensors and keeps the result in a small typed container.

Example:
    >>> w = torch.tensor([[0.0, 1.5, -1.0, 0.5]])
    >>> gq = quantize_linear_weight(w, bits=4, group_size=2)
    >>> gq.q.tolist(), gq.zero.tolist()
    ([[0, 15, 0, 15]], [[0, 10]])
    >>> [round(v, 3) for v in gq.dequantize()[0].tolist()]  # scales are float16 values, rounded up
    [0.0, 1.501, -1.0, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.quant.primitives import check_bits, quantize_tensor


@dataclass(frozen=True, eq=False)
class GroupQuantized:
    """A group-quantized linear weight: ``W[o, i] ≈ (q[o, i] - zero[o, i // g]) * scale[o, i // g]``.

    ``q`` (out, in) uint8 in [0, 2^bits - 1]; ``scale`` (out, G) float32 holding float16 values;
    ``zero`` (out, G) uint8 in the same range as ``q``, with ``G = ceil(in / g)`` (a short last group
    when ``g`` does not divide ``in``).
    Unpacked (one code per byte); :mod:`leanml.llm.quant.bit_packing` packs it.
    """

    q: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int

    @property
    def shape(self) -> tuple[int, int]:
        """(out_features, in_features) of the weight."""
        return (int(self.q.shape[0]), int(self.q.shape[1]))

    def dequantize(self) -> torch.Tensor:
        """Float32 weight (out, in): ``(q - zero) * scale``, the exact value :func:`fake_quantize_weight` gives.

        Example:
            >>> quantize_linear_weight(torch.tensor([[3.0, -1.5, 0.0, 1.5]]), 2, 4).dequantize().tolist()
            [[3.0, -1.5, 0.0, 1.5]]
        """
        return dequantize(self.q, self.scale, self.zero, self.group_size)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(q - zero) * scale`` per group, in float32: the integer difference is exact, then one float32 multiply
    (the same arithmetic as :func:`leanml.quant.primitives.dequantize`).

    Example:
        >>> q = torch.tensor([[0, 3, 1, 2]], dtype=torch.uint8)
        >>> dequantize(q, torch.tensor([[0.5, 2.0]]), torch.tensor([[1, 1]], dtype=torch.uint8), 2).tolist()
        [[-0.5, 1.0, 0.0, 2.0]]
    """
    in_f = int(q.shape[1])
    zero_full = expand_groups(zero.to(torch.int32), group_size, in_f)  # (out, in)
    scale_full = expand_groups(scale.to(torch.float32), group_size, in_f)  # (out, in)
    return (q.to(torch.int32) - zero_full).to(torch.float32) * scale_full  # exact difference, one multiply


def n_groups(in_features: int, group_size: int) -> int:
    """Groups per row: ``ceil(in_features / group_size)`` (the last one may be short).

    Example:
        >>> n_groups(576, 128), n_groups(1536, 128)
        (5, 12)
    """
    return -(-in_features // group_size)


def expand_groups(per_group: torch.Tensor, group_size: int, in_features: int) -> torch.Tensor:
    """Repeat a per-group tensor (out, G) along the input axis to (out, in_features), cutting the short last group.

    Example:
        >>> expand_groups(torch.tensor([[1, 2]]), 2, 3).tolist()
        [[1, 1, 2]]
    """
    return per_group.repeat_interleave(group_size, dim=1)[:, :in_features]


def check_group_size(in_features: int, group_size: int, name: str = "weight") -> None:
    """Raise :class:`LeanmlError` unless ``group_size`` is a positive integer and ``in_features`` is at least 1.

    A group size that does not divide ``in_features`` is allowed: the last group is short. This is exact
    for min-max ranges that always hold 0 (padding the row with zeros would change no group's parameters).

    Example:
        >>> check_group_size(576, 128)
        >>> check_group_size(576, 0, "model.layers.0.mlp.up_proj")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: group size must be a positive integer, got 0 (...)
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise LeanmlError(f"group size must be a positive integer, got {group_size!r}", "pass e.g. 32, 64 or 128")
    if in_features < 1:
        raise LeanmlError(f"{name} has no input features", "quantize a linear layer with in_features >= 1")


def quantize_linear_weight(w: torch.Tensor, bits: int, group_size: int, name: str = "weight") -> GroupQuantized:
    """Round-to-nearest group quantization of a linear weight (out, in) → :class:`GroupQuantized`.

    Min-max per (row, group of ``group_size`` input channels), asymmetric unsigned ``bits``-bit codes,
    computed in float32 by :func:`leanml.quant.primitives.quantize_tensor`. ``name`` appears in errors.

    Example:
        >>> gq = quantize_linear_weight(torch.arange(8.0).reshape(1, 8), bits=4, group_size=4)
        >>> gq.q.tolist(), [round(float(s), 4) for s in gq.scale[0]]
        ([[0, 5, 10, 15, 9, 11, 13, 15]], [0.2001, 0.4668])
    """
    check_bits(bits)
    if w.ndim != 2:
        raise LeanmlError(f"{name} must be a 2-d linear weight, got shape {tuple(w.shape)}", "pass an nn.Linear weight")
    in_f = int(w.shape[1])
    check_group_size(in_f, group_size, name)
    pad = n_groups(in_f, group_size) * group_size - in_f
    padded = F.pad(w.detach().float().cpu(), (0, pad))  # (out, G*g): zeros change no range that already holds 0
    qt = quantize_tensor(padded, bits, symmetric=False, signed=False, group_size=group_size, scale_dtype="float16")
    q = torch.from_numpy(qt.q[:, :in_f].astype("uint8"))  # (out, in)
    scale = torch.from_numpy(qt.scale.astype("float32"))  # (out, G)
    zero = torch.from_numpy(qt.zero_point.astype("uint8"))  # (out, G)
    return GroupQuantized(q, scale, zero, bits, group_size)


def fake_quantize_weight(w: torch.Tensor, bits: int, group_size: int, name: str = "weight") -> torch.Tensor:
    """The values ``w`` (out, in) takes on its group grid, in ``w``'s dtype and device (quantize, dequantize).

    This is the inner step AWQ's scale and clip searches call on scaled or clipped weights.

    Example:
        >>> [round(v, 3) for v in fake_quantize_weight(torch.tensor([[0.0, 0.3, 1.0, 0.9]]), 2, 4)[0].tolist()]
        [0.0, 0.333, 1.0, 1.0]
    """
    return quantize_linear_weight(w, bits, group_size, name).dequantize().to(dtype=w.dtype, device=w.device)


def quantization_error(w: torch.Tensor, gq: GroupQuantized) -> float:
    """Mean squared error between a float weight and its group-quantized version.

    Example:
        >>> w = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
        >>> quantization_error(w, quantize_linear_weight(w, 8, 4)) < 1e-4
        True
    """
    return float((w.detach().float().cpu() - gq.dequantize()).pow(2).mean())
