"""MobileNetV2 for 28x28 inputs: inverted residual blocks, the MCUNet family.

Each block: 1x1 expand-BN-ReLU6 (skipped at expand ratio 1), 3x3 depthwise-
BN-ReLU6, 1x1 project-BN, residual add when stride is 1 and widths match.
``hidden_channels`` optionally sets every block's expanded width (what channel
pruning shrinks).

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> build_model("mobilenetv2")(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from leanml.config import Config, require
from leanml.models.registry import register_model


@dataclass
class MobileNetV2Config(Config):
    """Stem width, block settings [expand t, out c, repeats n, stride s], head width."""

    stem: int = 16
    settings: list[list[int]] = field(
        default_factory=lambda: [[1, 16, 1, 1], [4, 24, 2, 2], [4, 32, 2, 2], [4, 64, 2, 1]]
    )
    head: int = 256
    hidden_channels: list[int] | None = None
    in_channels: int = 1
    num_classes: int = 10

    def validate(self) -> None:
        require(bool(self.settings), "mobilenetv2 needs at least one block setting")
        for s in self.settings:
            require(
                len(s) == 4 and all(isinstance(v, int) and v > 0 for v in s) and s[3] in (1, 2),
                f"mobilenetv2 setting {s!r} must be [expand>0, out>0, repeats>0, stride 1|2]",
            )
        require(self.stem > 0 and self.head > 0 and self.in_channels > 0 and self.num_classes > 0,
                "mobilenetv2 sizes must be positive")  # fmt: skip
        n = sum(s[2] for s in self.settings)
        if self.hidden_channels is not None:
            require(
                len(self.hidden_channels) == n and all(h > 0 for h in self.hidden_channels),
                f"mobilenetv2 hidden_channels needs {n} positive ints (one per block)",
            )
            cin = self.stem
            for k, (t, c, _) in enumerate(self.block_plan()):
                require(
                    t != 1 or self.hidden_channels[k] == cin,
                    f"mobilenetv2 block {k} has expand ratio 1, so its hidden width must equal its input ({cin})",
                )
                cin = c

    def block_plan(self) -> list[tuple[int, int, int]]:
        """One (expand ratio, out channels, stride) per block."""
        return [(t, c, s if i == 0 else 1) for t, c, n, s in self.settings for i in range(n)]


class InvertedResidual(nn.Module):
    """1x1 expand → 3x3 depthwise → 1x1 project (linear), with a residual add when shapes match."""

    def __init__(self, cin: int, hidden: int, cout: int, stride: int, expand: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expand:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)  # (N, cout, H/s, W/s)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """stem → inverted residual blocks → 1x1 head → global pool → classifier."""

    def __init__(self, cfg: MobileNetV2Config) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(cfg.stem), nn.ReLU6(inplace=True)
        )
        plan = cfg.block_plan()
        hidden = cfg.hidden_channels
        blocks: list[nn.Module] = []
        cin = cfg.stem
        for k, (t, c, s) in enumerate(plan):
            h = hidden[k] if hidden is not None else cin * t
            blocks.append(InvertedResidual(cin, h, c, s, expand=t != 1))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Conv2d(cin, cfg.head, 1, bias=False), nn.BatchNorm2d(cfg.head), nn.ReLU6(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg.head, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))  # (N, head, H', W')
        return self.classifier(self.pool(x).flatten(1))  # (N, classes)


@register_model(
    "mobilenetv2", MobileNetV2Config, "MobileNetV2: inverted residuals, depthwise 3x3, ReLU6 (MCUNet family)"
)
def mobilenetv2(cfg: MobileNetV2Config) -> MobileNetV2:
    """Build a :class:`MobileNetV2` from its config."""
    return MobileNetV2(cfg)
