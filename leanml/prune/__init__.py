"""Pruning: fine-grained magnitude masks, N:M, honest sparse sizes, and channel pruning with a dependency graph."""

from leanml.prune.channel import ChannelPruneConfig, prune_channels_
from leanml.prune.depgraph import ChannelGroup, trace_channel_groups
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
    "ChannelGroup",
    "ChannelPruneConfig",
    "FineGrainedConfig",
    "PruneMasks",
    "SparseSize",
    "SparsityReport",
    "global_threshold_masks",
    "magnitude_mask",
    "nm_mask",
    "prune_channels_",
    "prune_fine_grained_",
    "sparse_size",
    "trace_channel_groups",
]  # fmt: skip
