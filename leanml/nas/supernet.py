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

from leanml.models.mobilenetv2 import BlockSpec, ConvStage, MobileNetV2
from leanml.models.registry import ModelSpec
from leanml.nas.elastic import ElasticBatchNorm, ElasticConv, ElasticDepthwise, ElasticLinear
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.subnet import MODEL_NAME, NasNetConfig, nas_mbv2, net_config

ElasticLayer = ElasticConv | ElasticDepthwise


class ElasticBlock(nn.Module):
    """The inverted residual block of the largest :class:`~leanml.models.mobilenetv2.BlockSpec`, in elastic layers.

    One elastic conv and batch norm per stage of the block (``expand``/``expand_bn`` if it expands,
    ``depthwise``/``depthwise_bn``, ``project``/``project_bn``); a forward runs the stages of the
    active block's spec over the leading slices, exactly as the extracted block does.
    """

    depthwise: ElasticDepthwise
    depthwise_bn: ElasticBatchNorm
    project: ElasticConv
    project_bn: ElasticBatchNorm

    def __init__(self, largest: BlockSpec, kernels: list[int]) -> None:
        super().__init__()
        self.expands = largest.expand
        self.stride = largest.stride
        self.expand: ElasticConv | None = None
        self.expand_bn: ElasticBatchNorm | None = None
        for stage in largest.stages():
            layer = (ElasticDepthwise(stage.cout, kernels, stage.stride) if stage.name == "depthwise"
                     else ElasticConv(stage.cin, stage.cout))  # fmt: skip
            setattr(self, stage.name, layer)
            setattr(self, f"{stage.name}_bn", ElasticBatchNorm(stage.cout))

    def spec(self, kernel: int, cin: int, hidden: int, cout: int) -> BlockSpec:
        """The active block: this block's stride and expansion with the active kernel and widths."""
        return BlockSpec(kernel, cin, hidden, cout, self.stride, self.expands)

    def stage_layers(self, stage: ConvStage) -> tuple[ElasticLayer, ElasticBatchNorm]:
        """The elastic conv and batch norm that run ``stage``."""
        conv, bn = getattr(self, stage.name), getattr(self, f"{stage.name}_bn")
        assert isinstance(conv, ElasticConv | ElasticDepthwise) and isinstance(bn, ElasticBatchNorm)
        return conv, bn

    def forward(self, x: torch.Tensor, kernel: int, hidden: int, cout: int) -> torch.Tensor:
        spec = self.spec(kernel, x.shape[1], hidden, cout)  # x: (N, cin, H, W)
        h = x
        for stage in spec.stages():
            conv, bn = self.stage_layers(stage)
            h = F.conv2d(h, conv.stage_weight(stage), None, stage.stride, stage.kernel // 2, groups=stage.groups)
            h = bn(h)  # (N, stage.cout, H', W')
            if stage.relu:
                h = F.relu6(h)
        return x + h if spec.residual else h


class Supernet(nn.Module):
    """The largest network of ``space`` with weight-shared elastic layers; runs the active architecture."""

    def __init__(self, space: SpaceConfig) -> None:
        super().__init__()
        self.space = space
        top = space.largest()
        c0 = space.channels(space.stem, top.width)
        self.stem = ElasticConv(space.in_channels, c0, 3)
        self.stem_bn = ElasticBatchNorm(c0)
        self.first = ElasticBlock(BlockSpec(3, c0, c0, c0, 1, expand=False), [3])
        self.stages = nn.ModuleList()
        cin = c0
        for s, (c, _, stride) in enumerate(space.stages):
            cout = space.channels(c, top.width)
            blocks = nn.ModuleList()
            for i in range(space.max_depth(s)):
                block_in = cin if i == 0 else cout
                hidden = space.hidden(block_in, space.expands[-1])
                largest = BlockSpec(space.kernels[-1], block_in, hidden, cout, stride if i == 0 else 1, expand=True)
                blocks.append(ElasticBlock(largest, space.kernels))
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
def get_subnet(supernet: Supernet, arch: Arch) -> MobileNetV2:
    """A standalone ``nas_mbv2`` model of ``arch`` with weights (and BN statistics) copied from the supernet.

    The model carries its :class:`~leanml.models.ModelSpec`, so it saves with
    :func:`leanml.train.save_checkpoint` and rebuilds on load like any reference model.

    Example:
        >>> space = SpaceConfig(stages=[[8, 1, 2]], stem=8, head=16, resolutions=[12])
        >>> type(get_subnet(Supernet(space), space.smallest())).__name__
        'MobileNetV2'
    """
    supernet.set_active(arch)
    cfg: NasNetConfig = supernet.config
    net = nas_mbv2(cfg)
    _copy_conv(net.stem[0], supernet.stem.active_weight(cfg.in_channels, cfg.stem))
    _copy_bn(net.stem[1], supernet.stem_bn, cfg.stem)
    for sub, spec, (block, _) in zip(net.blocks, cfg.plan(), supernet.active_blocks(), strict=True):
        convs = [m for m in sub.modules() if isinstance(m, nn.Conv2d)]
        norms = [m for m in sub.modules() if isinstance(m, nn.BatchNorm2d)]
        for stage, conv, norm in zip(spec.stages(), convs, norms, strict=True):
            elastic_conv, elastic_bn = block.stage_layers(stage)
            _copy_conv(conv, elastic_conv.stage_weight(stage))
            _copy_bn(norm, elastic_bn, stage.cout)
    _copy_conv(net.head[0], supernet.head.active_weight(cfg.blocks[-1][2], cfg.head))
    _copy_bn(net.head[1], supernet.head_bn, cfg.head)
    net.classifier.weight.copy_(supernet.classifier.linear.weight[:, : cfg.head])
    net.classifier.bias.copy_(supernet.classifier.linear.bias)
    net.leanml_spec = ModelSpec(MODEL_NAME, cfg.to_dict())  # type: ignore[assignment]
    return net.train(supernet.training)
