"""ResNet (28x28 inputs by default): basic blocks with residual adds, strided projection shortcuts.

Stages of basic blocks (conv3x3-BN-ReLU, conv3x3-BN, add, ReLU); the first
block of each later stage halves the resolution and projects its shortcut
with a strided 1x1 conv + BN. ``mid_channels`` optionally sets the inner width
of every block (what channel pruning shrinks); by default it equals the stage
width.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> build_model("resnet")(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from leanml.config import Config, require
from leanml.models.registry import check_size, register_model, scale_channels


@dataclass
class ResNetConfig(Config):
    """Stem width, per-stage widths and block counts, optional per-block inner widths.

    ``resolution`` documents the input size (H = W); ``width`` multiplies every channel count.
    """

    stem: int = 16
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    blocks: list[int] = field(default_factory=lambda: [2, 2, 2])
    mid_channels: list[int] | None = None
    in_channels: int = 1
    num_classes: int = 10
    resolution: int = 28
    width: float = 1.0

    def validate(self) -> None:
        check_size(self.resolution, self.width, "resnet")
        require(len(self.widths) == len(self.blocks) > 0, "resnet widths and blocks need the same, nonzero length")
        require(all(w > 0 for w in self.widths) and all(b > 0 for b in self.blocks), "resnet widths/blocks must be > 0")
        require(self.stem > 0 and self.in_channels > 0 and self.num_classes > 0, "resnet sizes must be positive")
        if self.mid_channels is not None:
            require(
                len(self.mid_channels) == sum(self.blocks) and all(m > 0 for m in self.mid_channels),
                f"resnet mid_channels needs {sum(self.blocks)} positive ints (one per block)",
            )


class BasicBlock(nn.Module):
    """conv3x3(stride)-BN-ReLU → conv3x3-BN, plus identity or 1x1-projection shortcut, then ReLU."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))  # (N, mid, H/s, W/s)
        out = self.bn2(self.conv2(out))  # (N, cout, H/s, W/s)
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """stem conv-BN-ReLU → stages of :class:`BasicBlock` → global pool → fc."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        stem = scale_channels(cfg.stem, cfg.width)
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        mids = iter(cfg.mid_channels or [w for w, b in zip(cfg.widths, cfg.blocks, strict=True) for _ in range(b)])
        blocks: list[nn.Module] = []
        c = stem
        for stage, (stage_width, count) in enumerate(zip(cfg.widths, cfg.blocks, strict=True)):
            width = scale_channels(stage_width, cfg.width)
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c, scale_channels(next(mids), cfg.width), width, stride))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (N, C, H', W')
        return self.fc(self.pool(x).flatten(1))  # (N, classes)


@register_model("resnet", ResNetConfig, "ResNet: 3 stages x 2 basic blocks, residual adds, strided 1x1 projections")
def resnet(cfg: ResNetConfig) -> ResNet:
    """Build a :class:`ResNet` from its config."""
    return ResNet(cfg)
