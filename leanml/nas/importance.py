"""Channel sorting by importance, so that narrow widths keep the most important channels (OFA's elastic width).

A :class:`ChannelGroup` is every tensor slice that must be permuted together
for the network to keep computing the same function: a block's hidden
channels (expand conv rows, their BN, the depthwise filters and BN, the
project conv columns), or the channels of one width (stem and first block, or
one stage's output, shared through the residual adds, with the input columns
of every layer that reads them). The importance of a channel is the L1 norm of
the weights that read it (OFA: the project conv's input columns); sorting puts
the important ones first, where the elastic layers' slices look.

Example:
    >>> from leanml.nas.space import SpaceConfig
    >>> from leanml.nas.supernet import Supernet
    >>> net = Supernet(SpaceConfig(stages=[[8, 1, 2]], stem=8, head=16, resolutions=[12]))
    >>> sort_channels_(net)
    >>> all(bool((g.importance()[:-1] >= g.importance()[1:]).all()) for g in channel_groups(net))
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from leanml.nas.elastic import ElasticBatchNorm
from leanml.nas.supernet import ElasticBlock, Supernet

Slice = tuple[torch.Tensor, int]  # (tensor, the dimension that indexes the group's channels)


def importance_l1(readers: list[Slice]) -> torch.Tensor:
    """Per channel, the summed absolute value of every reader's weights along its channel dimension.

    Example:
        >>> importance_l1([(torch.tensor([[1.0, -3.0], [1.0, 0.0]]), 1)]).tolist()
        [2.0, 3.0]
    """
    total = None
    for t, dim in readers:
        score = t.detach().abs().transpose(0, dim).reshape(t.shape[dim], -1).sum(1)  # (C,)
        total = score if total is None else total + score
    assert total is not None, "a channel group needs at least one reader"
    return total


@dataclass
class ChannelGroup:
    """Tensors whose channel dimension is permuted together, and the weights that score the channels."""

    name: str
    members: list[Slice] = field(default_factory=list)
    readers: list[Slice] = field(default_factory=list)

    def importance(self) -> torch.Tensor:
        """(C,) importance of each channel."""
        return importance_l1(self.readers)

    @torch.no_grad()
    def permute_(self, order: torch.Tensor) -> None:
        """Reorder every member's channels to ``order`` (new channel i is old channel ``order[i]``)."""
        for t, dim in self.members:
            t.copy_(t.index_select(dim, order))


def _bn(bn: ElasticBatchNorm | None) -> list[Slice]:
    assert bn is not None and bn.running_mean is not None and bn.running_var is not None
    return [(bn.weight, 0), (bn.bias, 0), (bn.running_mean, 0), (bn.running_var, 0)]


def _stage_blocks(net: Supernet) -> list[list[ElasticBlock]]:
    stages = []
    for blocks in net.stages:
        assert isinstance(blocks, nn.ModuleList)
        stages.append([b for b in blocks if isinstance(b, ElasticBlock)])
    return stages


def channel_groups(net: Supernet) -> list[ChannelGroup]:
    """Every group of the supernet: one per block's hidden channels, one per width (stem + first block, stages).

    Example:
        >>> from leanml.nas.space import SpaceConfig
        >>> groups = channel_groups(Supernet(SpaceConfig(stages=[[8, 2, 2]], stem=8, head=16, resolutions=[12])))
        >>> [g.name for g in groups][-3:]
        ['stage 0 block 3 hidden', 'stem width', 'stage 0 width']
    """
    groups = []
    stages = _stage_blocks(net)
    for s, blocks in enumerate(stages):
        for i, b in enumerate(blocks):
            assert b.expand is not None
            groups.append(ChannelGroup(
                f"stage {s} block {i} hidden",
                [(b.expand.weight, 0), *_bn(b.expand_bn), (b.depthwise.weight, 0), *_bn(b.depthwise_bn),
                 (b.project.weight, 1)],
                [(b.project.weight, 1)],
            ))  # fmt: skip
    first = net.first
    width = ChannelGroup(
        "stem width",
        [(net.stem.weight, 0), *_bn(net.stem_bn), (first.depthwise.weight, 0), *_bn(first.depthwise_bn),
         (first.project.weight, 0), (first.project.weight, 1), *_bn(first.project_bn)],
        [(first.project.weight, 1)],
    )  # fmt: skip
    groups.append(width)
    for s, blocks in enumerate(stages):
        nxt = ChannelGroup(f"stage {s} width")
        for b in blocks:
            nxt.members += [(b.project.weight, 0), *_bn(b.project_bn)]
        for b in blocks[1:]:
            assert b.expand is not None
            nxt.members.append((b.expand.weight, 1))
            nxt.readers.append((b.expand.weight, 1))
        # the layer after this width's producer reads it: this stage's first block reads the previous width
        assert blocks[0].expand is not None
        width.members.append((blocks[0].expand.weight, 1))
        width.readers.append((blocks[0].expand.weight, 1))
        groups.append(nxt)
        width = nxt
    width.members.append((net.head.weight, 1))
    width.readers.append((net.head.weight, 1))
    return groups


def sort_channels_(net: Supernet) -> None:
    """Permute every channel group of ``net`` into decreasing importance; the largest network's output is unchanged.

    Example:
        >>> # see the module docstring
    """
    for group in channel_groups(net):
        order = torch.argsort(group.importance(), descending=True, stable=True)
        group.permute_(order)
