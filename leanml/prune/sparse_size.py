"""Honest sizes of a sparse weight: what a real encoding costs, index bits included.

Encodings, for a weight viewed as rows = output channels, cols = the rest:

* ``dense``: numel * value_bits;
* ``bitmask``: one presence bit per element + the nonzero values;
* ``csr``: nonzero values + a column index per nonzero (ceil(log2(cols)) bits)
  + one row pointer per row and one more (ceil(log2(nnz + 1)) bits each);
* ``nm`` (N:M semi-structured, when the weight follows it): nonzero values +
  a ceil(log2(M))-bit position per kept value (as NVIDIA's 2:4 metadata).

``best`` is the smallest of those, never smaller than it really is.

Example:
    >>> import torch
    >>> w = torch.zeros(4, 8)
    >>> w[0, 0] = 1.0
    >>> s = sparse_size(w, value_bits=32)
    >>> s.dense_bits, s.bitmask_bits, s.csr_bits, s.best
    (1024, 64, 40, 'csr')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _bits_for(count: int) -> int:
    """Bits to index ``count`` distinct positions (at least 1)."""
    return max(1, math.ceil(math.log2(max(count, 2))))


@dataclass(frozen=True)
class SparseSize:
    """Size in bits under each encoding."""

    dense_bits: int
    bitmask_bits: int
    csr_bits: int
    nm_bits: int | None

    @property
    def options(self) -> dict[str, int]:
        """Encoding name → bits, for the encodings that apply."""
        opts = {"dense": self.dense_bits, "bitmask": self.bitmask_bits, "csr": self.csr_bits}
        if self.nm_bits is not None:
            opts["nm"] = self.nm_bits
        return opts

    @property
    def best(self) -> str:
        """The cheapest encoding."""
        return min(self.options, key=self.options.__getitem__)

    @property
    def best_bits(self) -> int:
        """Bits under the cheapest encoding."""
        return self.options[self.best]


def sparse_size(weight: torch.Tensor, value_bits: int = 32, nm: int | None = None) -> SparseSize:
    """Sizes of ``weight`` (C_out, ...) under each encoding; ``nm=M`` adds the N:M encoding for that M."""
    rows = weight.detach().reshape(weight.shape[0], -1)  # (C_out, K)
    numel, nnz = rows.numel(), int((rows != 0).sum())
    n_rows, n_cols = rows.shape
    csr = nnz * (value_bits + _bits_for(n_cols)) + (n_rows + 1) * _bits_for(nnz + 1)
    nm_bits = None
    if nm is not None and n_cols % nm == 0:
        per_group = (rows.reshape(n_rows, -1, nm) != 0).sum(-1)  # (C_out, K/M) kept per group
        kept = int(per_group.max())  # N: the format stores N slots per group even if some are zero
        groups = per_group.numel()
        nm_bits = groups * kept * (value_bits + _bits_for(nm))
    return SparseSize(numel * value_bits, numel + nnz * value_bits, csr, nm_bits)
