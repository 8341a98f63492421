"""The dequantizing linear of packed group-quantized codes (the reference path).

The codes are packed with :mod:`leanml.quant.code_packing` (one bit layout for every packed artifact, written
down in ``docs/llm_format.md``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.llm.quant.groupquant import GroupQuantized, dequantize, n_groups
from leanml.quant.code_packing import pack_codes, row_bytes, unpack_codes
from leanml.quant.primitives import check_bits


class PackedLinear(nn.Module):
    """A linear layer holding packed ``bits``-bit codes, float16 group scales and uint8 zeros; ``forward``
    dequantizes the weight (float32, exactly ``GroupQuantized.dequantize()``) and runs ``F.linear``.

    Buffers: ``qweight`` (out, row_bytes) uint8, ``scales`` (out, G) float16, ``zeros`` (out, G) uint8,
    optional ``bias`` (out,) float32.

    Example:
        >>> from leanml.llm.quant.groupquant import quantize_linear_weight
        >>> gq = quantize_linear_weight(torch.randn(8, 40), bits=4, group_size=16)
        >>> lin = PackedLinear.from_codes(gq)
        >>> torch.equal(lin.weight(), gq.dequantize())
        True
    """

    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int, bias: bool = False) -> None:
        super().__init__()
        check_bits(bits)
        self.in_features, self.out_features, self.bits, self.group_size = in_features, out_features, bits, group_size
        groups = n_groups(in_features, group_size)
        self.register_buffer("qweight", torch.zeros(out_features, row_bytes(in_features, bits), dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=torch.float16))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.uint8))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_codes(cls, gq: GroupQuantized, bias: torch.Tensor | None = None) -> PackedLinear:
        """Build from a :class:`GroupQuantized` (whose scales are float16 values, so nothing is lost)."""
        out_f, in_f = gq.shape
        lin = cls(in_f, out_f, gq.bits, gq.group_size, bias=bias is not None)
        lin.qweight.copy_(pack_codes(gq.q, gq.bits))
        half = gq.scale.to(torch.float16)
        if not torch.equal(half.float(), gq.scale.float()):
            raise LeanmlError("group scales are not float16 values", "quantize with leanml.llm.quant.groupquant")
        lin.scales.copy_(half)
        lin.zeros.copy_(gq.zero)
        if bias is not None and lin.bias is not None:
            lin.bias.copy_(bias.detach().float())
        return lin

    def codes(self) -> torch.Tensor:
        """The unpacked codes (out, in) uint8."""
        return unpack_codes(self.qweight, self.bits, self.in_features)

    def weight(self) -> torch.Tensor:
        """The dequantized weight (out, in) float32: ``(q - zero) * scale`` per group."""
        return dequantize(self.codes(), self.scales.float(), self.zeros, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) → (..., out), computed in x's dtype."""
        return F.linear(x, self.weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, group_size={self.group_size}"
