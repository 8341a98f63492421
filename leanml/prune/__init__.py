"""Pruning: fine-grained magnitude masks, N:M, honest sparse sizes (channel pruning comes next)."""

from leanml.prune.fine_grained import (
    FineGrainedConfig,
    PruneMasks,
    SparsityReport,
    global_threshold_masks,
    magnitude_mask,
    nm_mask,
    prune_fine_grained_,
)
from leanml.prune.sparse_size import SparseSize, sparse_size

__all__ = [
    "FineGrainedConfig", "PruneMasks", "SparseSize", "SparsityReport", "global_threshold_masks", "magnitude_mask",
    "nm_mask", "prune_fine_grained_", "sparse_size",
]  # fmt: skip
