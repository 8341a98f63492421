"""Scoped torch thread count: set for a block, restored after (no lasting global change).

Example:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from leanml.errors import LeanmlError


@contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` intra-op threads (``None`` keeps the current count); yields the count."""
    before = torch.get_num_threads()
    if n is None:
        yield before
        return
    if n < 1:
        raise LeanmlError(f"thread count must be >= 1, got {n}", "pass --threads 1 or more")
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
