"""The once-for-all supernet: every architecture of a space shares one set of weights.

:class:`Supernet` holds the largest network of a :class:`~leanml.nas.space.SpaceConfig`
built from elastic layers; :meth:`Supernet.set_active` picks an architecture
(kernels, expand ratios, depths, width) and the forward runs it. Input
resolution is not a weight: callers resize the batch (:func:`leanml.nas.data.resize_batch`).
:func:`get_subnet` copies the active slices into a standalone ``nas_mbv2``
model: in eval mode it computes what the supernet computes with that
architecture active; BN statistics are then recalibrated with
:func:`leanml.nas.data.recalibrate_bn`.

Example:
    >>> import random
    >>> from leanml.nas.space import SpaceConfig
    >>> space = SpaceConfig(stages=[[8, 1, 2]], stem=8, head=16, resolutions=[12, 16])
    >>> net = Supernet(space).eval()
    >>> arch = space.sample(random.Random(0))
    >>> x = torch.randn(2, 1, arch.resolution, arch.resolution)
    >>> torch.allclose(net.set_active(arch)(x), get_subnet(net, arch).eval()(x), atol=1e-5)
    True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from leanml.models.registry import ModelSpec
from leanml.nas.elastic import ElasticBatchNorm, ElasticConv, ElasticDepthwise, ElasticLinear
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.subnet import MODEL_NAME, NasNet, NasNetConfig, net_config


class ElasticBlock(nn.Module):
    """Inverted residual block of elastic layers: 1x1 expand (optional) → kxk depthwise → 1x1 project."""

    def __init__(self, max_in: int, max_hidden: int, max_out: int, kernels: list[int], stride: int,
                 expand: bool) -> None:  # fmt: skip
        super().__init__()
        self.expand = ElasticConv(max_in, max_hidden) if expand else None
        self.expand_bn = ElasticBatchNorm(max_hidden) if expand else None
        self.depthwise = ElasticDepthwise(max_hidden, kernels, stride)
        self.depthwise_bn = ElasticBatchNorm(max_hidden)
        self.project = ElasticConv(max_hidden, max_out)
        self.project_bn = ElasticBatchNorm(max_out)
        self.stride = stride

    def forward(self, x: torch.Tensor, kernel: int, hidden: int, cout: int) -> torch.Tensor:
        cin = x.shape[1]  # x: (N, cin, H, W)
        h = x
        if self.expand is not None and self.expand_bn is not None:
            h = F.relu6(self.expand_bn(self.expand(x, hidden)))  # (N, hidden, H, W)
        h = F.relu6(self.depthwise_bn(self.depthwise(h, kernel)))  # (N, hidden, H/s, W/s)
        out = self.project_bn(self.project(h, cout))  # (N, cout, H/s, W/s)
        return x + out if self.stride == 1 and cin == cout else out


class Supernet(nn.Module):
    """The largest network of ``space`` with weight-shared elastic layers; runs the active architecture."""

    def __init__(self, space: SpaceConfig) -> None:
        super().__init__()
        self.space = space
        top = space.largest()
        c0 = space.channels(space.stem, top.width)
        self.stem = ElasticConv(space.in_channels, c0, 3)
        self.stem_bn = ElasticBatchNorm(c0)
        self.first = ElasticBlock(c0, c0, c0, [3], 1, expand=False)
        self.stages = nn.ModuleList()
        cin = c0
        for s, (c, _, stride) in enumerate(space.stages):
            cout = space.channels(c, top.width)
            blocks = nn.ModuleList()
            for i in range(space.max_depth(s)):
                block_in = cin if i == 0 else cout
                hidden = space.hidden(block_in, space.expands[-1])
                blocks.append(ElasticBlock(block_in, hidden, cout, space.kernels, stride if i == 0 else 1, True))
            self.stages.append(blocks)
            cin = cout
        self.head = ElasticConv(cin, space.head)
        self.head_bn = ElasticBatchNorm(space.head)
        self.classifier = ElasticLinear(space.head, space.num_classes)
        self.arch = top
        self.config = net_config(space, top)

    def set_active(self, arch: Arch) -> Supernet:
        """Make ``arch`` (checked against the space) the architecture the forward runs; returns ``self``."""
        self.config = net_config(self.space, arch)
        self.arch = arch
        return self

    def active_blocks(self) -> list[tuple[ElasticBlock, list[int]]]:
        """(elastic block, its ``[kernel, hidden, out, stride]`` in the active config), first block included."""
        slots: list[ElasticBlock] = [self.first]
        for blocks, d in zip(self.stages, self.arch.depths, strict=True):
            assert isinstance(blocks, nn.ModuleList)
            slots += [b for b in list(blocks)[:d] if isinstance(b, ElasticBlock)]
        return list(zip(slots, self.config.blocks, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C_in, r, r) at the active architecture's resolution
        x = F.relu6(self.stem_bn(self.stem(x, self.config.stem)))  # (N, c0, r, r)
        for block, (k, hidden, cout, _) in self.active_blocks():
            x = block(x, k, hidden, cout)
        x = F.relu6(self.head_bn(self.head(x, self.space.head)))  # (N, head, r', r')
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))  # (N, classes)


def _copy_bn(dst: nn.Module, src: ElasticBatchNorm, channels: int) -> None:
    assert isinstance(dst, nn.BatchNorm2d)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, name).copy_(getattr(src, name)[:channels])
        for name in ("num_batches_tracked",):
            getattr(dst, name).copy_(getattr(src, name))


def _copy_conv(dst: nn.Module, weight: torch.Tensor) -> None:
    assert isinstance(dst, nn.Conv2d) and dst.weight.shape == weight.shape, (dst, weight.shape)
    with torch.no_grad():
        dst.weight.copy_(weight)


@torch.no_grad()
def get_subnet(supernet: Supernet, arch: Arch) -> NasNet:
    """A standalone ``nas_mbv2`` model of ``arch`` with weights (and BN statistics) copied from the supernet.

    The model carries its :class:`~leanml.models.ModelSpec`, so it saves with
    :func:`leanml.train.save_checkpoint` and rebuilds on load like any reference model.

    Example:
        >>> space = SpaceConfig(stages=[[8, 1, 2]], stem=8, head=16, resolutions=[12])
        >>> type(get_subnet(Supernet(space), space.smallest())).__name__
        'NasNet'
    """
    supernet.set_active(arch)
    cfg: NasNetConfig = supernet.config
    net = NasNet(cfg)
    _copy_conv(net.stem[0], supernet.stem.active_weight(cfg.in_channels, cfg.stem))
    _copy_bn(net.stem[1], supernet.stem_bn, cfg.stem)
    cin = cfg.stem
    for sub, (block, (k, hidden, cout, _)) in zip(net.blocks, supernet.active_blocks(), strict=True):
        assert isinstance(sub.conv, nn.Sequential)
        layers = list(sub.conv)
        if block.expand is not None and block.expand_bn is not None:
            _copy_conv(layers[0], block.expand.active_weight(cin, hidden))
            _copy_bn(layers[1], block.expand_bn, hidden)
            layers = layers[3:]
        _copy_conv(layers[0], block.depthwise.active_weight(hidden, k))
        _copy_bn(layers[1], block.depthwise_bn, hidden)
        _copy_conv(layers[3], block.project.active_weight(hidden, cout))
        _copy_bn(layers[4], block.project_bn, cout)
        cin = cout
    _copy_conv(net.head[0], supernet.head.active_weight(cin, cfg.head))
    _copy_bn(net.head[1], supernet.head_bn, cfg.head)
    net.classifier.weight.copy_(supernet.classifier.linear.weight[:, : cfg.head])
    net.classifier.bias.copy_(supernet.classifier.linear.bias)
    net.leanml_spec = ModelSpec(MODEL_NAME, cfg.to_dict())  # type: ignore[assignment]
    return net.train(supernet.training)
