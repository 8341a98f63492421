"""VGG (28x28 inputs by default), the shape of the course's Lab 1/2 VGG scaled down.

3x3 conv-BN-ReLU blocks, 2x2 max-pool (``"M"``) between stages, global
average pool, one linear classifier.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> build_model("vgg")(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from leanml.config import Config, require
from leanml.models.registry import check_size, register_model, scale_channels


@dataclass
class VGGConfig(Config):
    """Layer list: an int is a conv's output channels, ``"M"`` a 2x2 max-pool.

    ``resolution`` documents the input size (H = W); ``width`` multiplies every channel count.
    """

    layers: list[int | str] = field(default_factory=lambda: [32, 32, "M", 64, 64, "M", 128, 128, "M"])
    in_channels: int = 1
    num_classes: int = 10
    resolution: int = 28
    width: float = 1.0

    def validate(self) -> None:
        require(bool(self.layers), "vgg needs at least one layer")
        for v in self.layers:
            require(v == "M" or (isinstance(v, int) and v > 0), f"vgg layer {v!r} must be a positive int or 'M'")
        require(any(isinstance(v, int) for v in self.layers), "vgg needs at least one conv layer")
        require(self.in_channels > 0 and self.num_classes > 0, "vgg channel and class counts must be positive")
        check_size(self.resolution, self.width, "vgg")
        pools = sum(v == "M" for v in self.layers)
        require(
            self.resolution >= 2**pools,
            f"vgg's {pools} max-pools need inputs of at least {2**pools} pixels, got resolution {self.resolution}",
            "pass a larger --resolution or fewer 'M' layers",
        )


class VGG(nn.Module):
    """features (conv-BN-ReLU / max-pool) → global average pool → classifier."""

    def __init__(self, cfg: VGGConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cfg.in_channels
        for v in cfg.layers:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                assert isinstance(v, int)
                out = scale_channels(v, cfg.width)
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C, H', W')
        x = self.pool(x).flatten(1)  # (N, C)
        return self.classifier(x)  # (N, classes)


@register_model("vgg", VGGConfig, "VGG: 6 conv-BN-ReLU, 3 max-pools, global pool, linear (course Lab 1/2 shape)")
def vgg(cfg: VGGConfig) -> VGG:
    """Build a :class:`VGG` from its config."""
    return VGG(cfg)
