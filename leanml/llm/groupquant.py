"""Per-layer weight quantization for LLMs: asymmetric, unsigned, per group of input channels.

One convention for RTN, AWQ and the packed int4/int3 format (``docs/llm_format.md``):
a linear weight ``W`` of shape (out, in) is cut into groups of ``g`` consecutive
input channels; each (row, group) gets a float32 scale and an integer zero point
from its min/max (range widened to include 0), ``q = clamp(round_half_away(w / s) + z, 0, 2^b - 1)``,
and ``w ≈ (q - z) * s``. The math is :func:`leanml.quant.primitives.quantize_tensor`
(``symmetric=False, signed=False, group_size=g``); this module only adapts it to
torch tensors and keeps the result in a small typed container.

Example:
    >>> w = torch.tensor([[0.0, 1.5, -1.0, 0.5]])
    >>> gq = quantize_linear_weight(w, bits=4, group_size=2)
    >>> gq.q.tolist(), gq.zero.tolist()
    ([[0, 15, 0, 15]], [[0, 10]])
    >>> gq.dequantize().tolist()
    [[0.0, 1.5, -1.0, 0.5]]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leanml.errors import LeanmlError
from leanml.quant.primitives import check_bits, quantize_tensor


@dataclass(frozen=True, eq=False)
class GroupQuantized:
    """A group-quantized linear weight: ``W[o, i] ≈ (q[o, i] - zero[o, i // g]) * scale[o, i // g]``.

    ``q`` (out, in) uint8 in [0, 2^bits - 1]; ``scale`` (out, in // g) float32; ``zero`` (out, in // g)
    uint8 in the same range as ``q``. Unpacked (one code per byte); packing is a separate, later step.
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
    out_f, in_f = q.shape
    grouped = q.reshape(out_f, in_f // group_size, group_size).to(torch.int32)  # (out, G, g)
    diff = grouped - zero.to(torch.int32).unsqueeze(-1)  # (out, G, g), exact
    return (diff.to(torch.float32) * scale.to(torch.float32).unsqueeze(-1)).reshape(out_f, in_f)


def check_group_size(in_features: int, group_size: int, name: str = "weight") -> None:
    """Raise :class:`LeanmlError` unless ``group_size`` is a positive divisor of ``in_features``.

    Example:
        >>> check_group_size(576, 64)
        >>> check_group_size(576, 128, "model.layers.0.mlp.up_proj")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: group size 128 does not divide the 576 input features of ... (...: 32, 64; ...)
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise LeanmlError(f"group size must be a positive integer, got {group_size!r}", "pass e.g. 32, 64 or 128")
    if in_features % group_size:
        fits = [g for g in (32, 64, 128, 256) if in_features % g == 0]
        hint = f"divisors that work: {', '.join(map(str, fits))}; or choose another --group-size" if fits else None
        raise LeanmlError(
            f"group size {group_size} does not divide the {in_features} input features of {name}",
            hint or "choose a group size that divides the layer width",
        )


def quantize_linear_weight(w: torch.Tensor, bits: int, group_size: int, name: str = "weight") -> GroupQuantized:
    """Round-to-nearest group quantization of a linear weight (out, in) → :class:`GroupQuantized`.

    Min-max per (row, group of ``group_size`` input channels), asymmetric unsigned ``bits``-bit codes,
    computed in float32 by :func:`leanml.quant.primitives.quantize_tensor`. ``name`` appears in errors.

    Example:
        >>> gq = quantize_linear_weight(torch.arange(8.0).reshape(1, 8), bits=4, group_size=4)
        >>> gq.q.tolist(), [round(float(s), 4) for s in gq.scale[0]]
        ([[0, 5, 10, 15, 9, 11, 13, 15]], [0.2, 0.4667])
    """
    check_bits(bits)
    if w.ndim != 2:
        raise LeanmlError(f"{name} must be a 2-d linear weight, got shape {tuple(w.shape)}", "pass an nn.Linear weight")
    check_group_size(int(w.shape[1]), group_size, name)
    qt = quantize_tensor(w.detach().float().cpu(), bits, symmetric=False, signed=False, group_size=group_size)
    q = torch.from_numpy(qt.q.astype("uint8"))  # (out, in)
    scale = torch.from_numpy(qt.scale.astype("float32"))  # (out, in // g)
    zero = torch.from_numpy(qt.zero_point.astype("uint8"))  # (out, in // g)
    return GroupQuantized(q, scale, zero, bits, group_size)


def fake_quantize_weight(w: torch.Tensor, bits: int, group_size: int, name: str = "weight") -> torch.Tensor:
    """The values ``w`` (out, in) takes on its group grid, in ``w``'s dtype and device (quantize, dequantize).

    This is the inner step AWQ's scale and clip searches call on scaled or clipped weights.

    Example:
        >>> fake_quantize_weight(torch.tensor([[0.0, 0.3, 1.0, 0.9]]), bits=2, group_size=4).tolist()
        [[0.0, 0.3333333432674408, 1.0, 1.0]]
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
