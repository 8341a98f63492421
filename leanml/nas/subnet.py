"""The standalone subnet: a registered leanml model (``nas_mbv2``) that any architecture of the space becomes.

Same skeleton as the reference ``mobilenetv2`` (stem, inverted residual blocks,
1x1 head, pooling, classifier) but each block has its own depthwise kernel
size and hidden width. Its config is plain data, so a subnet saves, loads,
profiles, fine-tunes, quantizes and deploys like every other leanml model;
:func:`net_config` turns an :class:`~leanml.nas.space.Arch` into that config
(the one place that knows how channel counts follow from the choices).

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> from leanml.nas.space import SpaceConfig
    >>> space = SpaceConfig()
    >>> cfg = net_config(space, space.smallest())
    >>> build_model("nas_mbv2", **cfg.to_dict())(torch.zeros(1, 1, 20, 20)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from leanml.config import Config, require
from leanml.models.registry import register_model
from leanml.nas.space import Arch, SpaceConfig

MODEL_NAME = "nas_mbv2"


@dataclass
class NasNetConfig(Config):
    """Stem width, one ``[kernel, hidden, out, stride]`` per block, head width.

    A block whose hidden width equals its input width has no expansion conv (expand ratio 1).
    """

    stem: int = 16
    blocks: list[list[int]] = field(default_factory=lambda: [[3, 16, 16, 1], [5, 64, 24, 2], [3, 96, 24, 1]])
    head: int = 256
    in_channels: int = 1
    num_classes: int = 10

    def validate(self) -> None:
        require(min(self.stem, self.head, self.in_channels, self.num_classes) >= 1, "nas_mbv2 sizes must be >= 1")
        require(bool(self.blocks), "nas_mbv2 needs at least one block")
        for b in self.blocks:
            require(len(b) == 4 and all(isinstance(v, int) and v >= 1 for v in b) and b[0] % 2 == 1 and b[3] in (1, 2),
                    f"nas_mbv2 block {b!r} must be [odd kernel, hidden >= 1, out >= 1, stride 1|2]")  # fmt: skip

    def plan(self) -> list[tuple[int, int, int, int, int]]:
        """One (kernel, in, hidden, out, stride) per block."""
        out, cin = [], self.stem
        for k, hidden, cout, stride in self.blocks:
            out.append((k, cin, hidden, cout, stride))
            cin = cout
        return out


def net_config(space: SpaceConfig, arch: Arch) -> NasNetConfig:
    """The standalone model config of ``arch`` (checked against ``space``).

    Example:
        >>> space = SpaceConfig()
        >>> net_config(space, space.largest()).blocks[1]  # first block of stage 1: 16 -> 96 -> 24, kernel 7
        [7, 96, 24, 2]
    """
    space.check(arch)
    c0 = space.channels(space.stem, arch.width)
    blocks = [[3, c0, c0, 1]]  # the fixed first block: expand ratio 1
    cin = c0
    for (cout_base, _, stride), ks, es in zip(space.stages, arch.kernels, arch.expands, strict=True):
        cout = space.channels(cout_base, arch.width)
        for i, (k, e) in enumerate(zip(ks, es, strict=True)):
            blocks.append([k, space.hidden(cin, e), cout, stride if i == 0 else 1])
            cin = cout
    return NasNetConfig(c0, blocks, space.head, space.in_channels, space.num_classes)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    """conv (no bias, 'same' padding) → BN (→ ReLU6): the layers every subnet is made of.

    Example:
        >>> [type(m).__name__ for m in conv_bn(4, 8, 3)]
        ['Conv2d', 'BatchNorm2d', 'ReLU6']
    """
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]  # fmt: skip
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class NasBlock(nn.Module):
    """1x1 expand (skipped when hidden == in) → kxk depthwise → 1x1 project, residual add when shapes match."""

    def __init__(self, kernel: int, cin: int, hidden: int, cout: int, stride: int) -> None:
        super().__init__()
        layers = conv_bn(cin, hidden, 1) if hidden != cin else []
        layers += conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        layers += conv_bn(hidden, cout, 1, relu=False)
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)  # (N, cout, H/s, W/s)
        return x + out if self.use_residual else out


class NasHead(nn.Module):
    """1x1 conv-BN-ReLU6 → global average pool → linear classifier (how every subnet ends)."""

    def __init__(self, cin: int, head: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Sequential(*conv_bn(cin, head, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)  # (N, head, H, W)
        return self.classifier(self.pool(x).flatten(1))  # (N, classes)


class NasNet(nn.Module):
    """stem → blocks → head → pool → classifier; module names match the reference ``mobilenetv2``."""

    def __init__(self, cfg: NasNetConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(cfg.in_channels, cfg.stem, 3))
        self.blocks = nn.Sequential(*(NasBlock(*p) for p in cfg.plan()))
        cin = cfg.blocks[-1][2]
        self.head = nn.Sequential(*conv_bn(cin, cfg.head, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg.head, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))  # (N, head, H', W')
        return self.classifier(self.pool(x).flatten(1))  # (N, classes)


@register_model(MODEL_NAME, NasNetConfig, "MobileNetV2 subnet from leanml nas: per-block kernel size and width")
def nas_mbv2(cfg: NasNetConfig) -> NasNet:
    """Build a :class:`NasNet` from its config."""
    return NasNet(cfg)
