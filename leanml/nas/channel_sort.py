"""Channel sorting by importance, so that narrow widths keep the most important channels (OFA's elastic width).

The supernet's coupled channels are :class:`~leanml.prune.depgraph.ChannelGroup` objects,
the type channel pruning removes channels by: a block's hidden channels (expand
conv rows, their BN, the depthwise filters and BN, the project conv columns),
or the channels of one width (stem and first block, or one stage's output,
shared through the residual adds, with the input columns of every layer that
reads them). The supernet's elastic forward cannot be traced, so
:func:`channel_groups` writes its groups down. A channel's importance is the
``l1_input`` criterion of :mod:`leanml.prune.importance`: the L1 norm of the
weights that read it (OFA: the project conv's input columns); sorting puts the
important ones first, where the elastic layers' slices look.

Example:
    >>> from leanml.nas.space import SpaceConfig
    >>> from leanml.nas.supernet import Supernet
    >>> net = Supernet(SpaceConfig(stages=[[8, 1, 2]], stem=8, head=16, resolutions=[12]))
    >>> sort_channels_(net)
    >>> modules = dict(net.named_modules())
    >>> scores = [channel_scores(SORT_IMPORTANCE, g, modules, None) for g in channel_groups(net)]
    >>> all(bool((s[:-1] >= s[1:]).all()) for s in scores)
    True
"""

from __future__ import annotations

import torch
from torch import nn

from leanml.nas.supernet import ElasticBlock, Supernet
from leanml.prune.depgraph import ChannelGroup, permute_channels_
from leanml.prune.importance import channel_scores

SORT_IMPORTANCE = "l1_input"


def _stage_blocks(net: Supernet) -> list[list[ElasticBlock]]:
    stages = []
    for blocks in net.stages:
        assert isinstance(blocks, nn.ModuleList)
        stages.append([b for b in blocks if isinstance(b, ElasticBlock)])
    return stages


def channel_groups(net: Supernet) -> list[ChannelGroup]:
    """Every group of the supernet, by module name: each block's hidden channels, then each width.

    Widths: the stem with the first block (joined by its residual add), then each stage's output.

    Example:
        >>> from leanml.nas.space import SpaceConfig
        >>> groups = channel_groups(Supernet(SpaceConfig(stages=[[8, 2, 2]], stem=8, head=16, resolutions=[12])))
        >>> [g.producers for g in groups][-3:-1]
        [['stages.0.3.expand'], ['stem', 'first.project']]
    """
    groups: list[ChannelGroup] = []
    stages = _stage_blocks(net)
    for s, blocks in enumerate(stages):
        for i, b in enumerate(blocks):
            assert b.expand is not None
            p = f"stages.{s}.{i}"
            groups.append(ChannelGroup(
                len(groups), b.expand.weight.shape[0], producers=[f"{p}.expand"],
                norms=[(f"{p}.expand_bn", 0, 1), (f"{p}.depthwise_bn", 0, 1)], depthwise=[(f"{p}.depthwise", 0, 1)],
                consumers=[(f"{p}.project", 0, 1)],
            ))  # fmt: skip
    width = ChannelGroup(
        len(groups), net.stem.weight.shape[0], producers=["stem", "first.project"],
        norms=[("stem_bn", 0, 1), ("first.depthwise_bn", 0, 1), ("first.project_bn", 0, 1)],
        depthwise=[("first.depthwise", 0, 1)],
        consumers=[("first.project", 0, 1)],
    )  # fmt: skip
    groups.append(width)
    for s, blocks in enumerate(stages):
        names = [f"stages.{s}.{i}" for i in range(len(blocks))]
        # the layer after this width's producer reads it: this stage's first block reads the previous width
        width.consumers.append((f"{names[0]}.expand", 0, 1))
        width = ChannelGroup(
            len(groups), blocks[0].project.weight.shape[0], producers=[f"{n}.project" for n in names],
            norms=[(f"{n}.project_bn", 0, 1) for n in names], consumers=[(f"{n}.expand", 0, 1) for n in names[1:]],
        )  # fmt: skip
        groups.append(width)
    width.consumers.append(("head", 0, 1))
    return groups


def sort_channels_(net: Supernet) -> None:
    """Permute every channel group of ``net`` into decreasing importance; the largest network's output is unchanged.

    Example:
        >>> # see the module docstring
    """
    modules = dict(net.named_modules())
    for group in channel_groups(net):
        order = torch.argsort(channel_scores(SORT_IMPORTANCE, group, modules, None), descending=True, stable=True)
        permute_channels_(group, modules, order)
