"""Bit packing of sub-byte integer codes, one layout for every packed artifact (LLM linears, integer and k-means
image models).

Codes of ``b`` bits (2..8) are packed per output row as a little-endian bit stream: code ``i`` of a
row occupies bits ``i*b .. i*b + b - 1`` of the row, bit ``k`` of the stream being bit ``k % 8`` of
byte ``k // 8``; each row starts on a byte boundary (``ceil(in * b / 8)`` bytes). So int4 puts code
``2j`` in the low nibble and ``2j + 1`` in the high nibble of byte ``j``; int3 puts 8 codes in 3 bytes.
The layout is written down once, in ``docs/llm_format.md``.

Example:
    >>> q = torch.tensor([[1, 2, 3, 15]], dtype=torch.uint8)
    >>> pack_codes(q, 4).tolist()
    [[33, 243]]
    >>> torch.equal(unpack_codes(pack_codes(q & 7, 3), 3, 4), q & 7)
    True
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.quant.primitives import check_bits


def row_bytes(in_features: int, bits: int) -> int:
    """Bytes of one packed row: ``ceil(in_features * bits / 8)``.

    Example:
        >>> row_bytes(576, 4), row_bytes(576, 3)
        (288, 216)
    """
    return (in_features * bits + 7) // 8


def _bit_weights() -> torch.Tensor:
    return torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.int32)  # (8,)


def pack_codes(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack codes q (out, in) uint8 (each < 2^bits) into (out, row_bytes) uint8, little-endian per row.

    Example:
        >>> pack_codes(torch.tensor([[7, 0, 5]], dtype=torch.uint8), 3).tolist()  # 111 000 101 -> bits 0..8
        [[71, 1]]
    """
    check_bits(bits)
    if q.ndim != 2 or q.dtype != torch.uint8:
        raise LeanmlError(f"codes must be a 2-d uint8 tensor, got {q.dtype} {tuple(q.shape)}")
    if q.numel() and int(q.max()) >= 2**bits:
        raise LeanmlError(f"a code is {int(q.max())}, more than {bits} bits hold", "quantize to the same bit width")
    out_f, in_f = q.shape
    shifts = torch.arange(bits, dtype=torch.int32)  # (b,)
    stream = ((q.to(torch.int32).unsqueeze(-1) >> shifts) & 1).reshape(out_f, in_f * bits)  # (out, in*b) bits
    n_bytes = row_bytes(in_f, bits)
    stream = F.pad(stream, (0, n_bytes * 8 - in_f * bits)).reshape(out_f, n_bytes, 8)  # (out, B, 8)
    return (stream * _bit_weights()).sum(-1).to(torch.uint8)  # (out, B)


def unpack_codes(packed: torch.Tensor, bits: int, in_features: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: (out, row_bytes) uint8 → codes (out, in_features) uint8.

    Example:
        >>> unpack_codes(torch.tensor([[71, 1]], dtype=torch.uint8), 3, 3).tolist()
        [[7, 0, 5]]
    """
    check_bits(bits)
    if packed.ndim != 2 or packed.dtype != torch.uint8 or packed.shape[1] != row_bytes(in_features, bits):
        raise LeanmlError(
            f"packed rows of shape {tuple(packed.shape)} do not hold {in_features} codes of {bits} bits",
            "the file is corrupt or was written for another shape",
        )
    out_f = packed.shape[0]
    stream = ((packed.to(torch.int32).unsqueeze(-1) >> torch.arange(8, dtype=torch.int32)) & 1).reshape(out_f, -1)
    stream = stream[:, : in_features * bits].reshape(out_f, in_features, bits)  # (out, in, b)
    return (stream << torch.arange(bits, dtype=torch.int32)).sum(-1).to(torch.uint8)  # (out, in)
