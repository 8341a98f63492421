"""MobileNetV2 (28x28 inputs by default): inverted residual blocks, the MCUNet family.

Each block: 1x1 expand-BN-ReLU6 (skipped at expand ratio 1), 3x3 depthwise-
BN-ReLU6, 1x1 project-BN, residual add when stride is 1 and widths match.
``hidden_channels`` optionally sets every block's expanded width (what channel
pruning shrinks). :class:`BlockSpec` is the one description of the block: the
NAS subnet (``nas_mbv2``) is this :class:`MobileNetV2` with per-block kernels
and widths, and the elastic supernet block runs the same stages.

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
from leanml.models.registry import check_size, register_model, scale_channels


@dataclass
class MobileNetV2Config(Config):
    """Stem width, block settings [expand t, out c, repeats n, stride s], head width.

    ``resolution`` documents the input size (H = W); ``width`` multiplies every channel count (rounded, at least 1).
    """

    stem: int = 16
    settings: list[list[int]] = field(
        default_factory=lambda: [[1, 16, 1, 1], [4, 24, 2, 2], [4, 32, 2, 2], [4, 64, 2, 1]]
    )
    head: int = 256
    hidden_channels: list[int] | None = None
    in_channels: int = 1
    num_classes: int = 10
    resolution: int = 28
    width: float = 1.0

    def validate(self) -> None:
        check_size(self.resolution, self.width, "mobilenetv2")
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

    def block_specs(self) -> list[BlockSpec]:
        """One 3x3 :class:`BlockSpec` per block; the hidden width is ``hidden_channels[k]`` or input x expand ratio.

        Every width is scaled by ``width``.
        """
        specs, cin = [], scale_channels(self.stem, self.width)
        for k, (t, c, s) in enumerate(self.block_plan()):
            if self.hidden_channels is not None:
                hidden = scale_channels(self.hidden_channels[k], self.width)
            else:
                hidden = cin * t
            cout = scale_channels(c, self.width)
            specs.append(BlockSpec(3, cin, hidden, cout, s, expand=t != 1))
            cin = cout
        return specs


@dataclass(frozen=True)
class ConvStage:
    """One conv-BN(-ReLU6) of a block: its role (``expand``, ``depthwise``, ``project``), widths and shape."""

    name: str
    cin: int
    cout: int
    kernel: int
    stride: int = 1
    groups: int = 1
    relu: bool = True


@dataclass(frozen=True)
class BlockSpec:
    """One inverted residual block: depthwise kernel, in / hidden / out widths, stride, and whether it expands.

    The one description of the block: the zoo model, the NAS subnet and the
    elastic supernet build their layers from :meth:`stages`, and the NAS
    efficiency model writes down the same ops.

    Example:
        >>> spec = BlockSpec(kernel=5, cin=16, hidden=64, cout=16, stride=1, expand=True)
        >>> [(s.name, s.cin, s.cout, s.kernel) for s in spec.stages()], spec.residual
        ([('expand', 16, 64, 1), ('depthwise', 64, 64, 5), ('project', 64, 16, 1)], True)
    """

    kernel: int
    cin: int
    hidden: int
    cout: int
    stride: int
    expand: bool

    @property
    def residual(self) -> bool:
        """Whether the block adds its input to its output (stride 1, same width)."""
        return self.stride == 1 and self.cin == self.cout

    def stages(self) -> list[ConvStage]:
        """1x1 expand-BN-ReLU6 (if it expands) → kxk depthwise-BN-ReLU6 → 1x1 project-BN (linear)."""
        out = [ConvStage("expand", self.cin, self.hidden, 1)] if self.expand else []
        out.append(ConvStage("depthwise", self.hidden, self.hidden, self.kernel, self.stride, groups=self.hidden))
        out.append(ConvStage("project", self.hidden, self.cout, 1, relu=False))
        return out


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    """conv (no bias, 'same' padding) → BN (→ ReLU6): the layers every MobileNetV2 is made of.

    Example:
        >>> [type(m).__name__ for m in conv_bn(4, 8, 3)]
        ['Conv2d', 'BatchNorm2d', 'ReLU6']
    """
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]  # fmt: skip
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    """The layers of a :class:`BlockSpec` in one ``conv`` sequence, with a residual add when shapes match."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            *(m for s in spec.stages() for m in conv_bn(s.cin, s.cout, s.kernel, s.stride, s.groups, s.relu))
        )
        self.use_residual = spec.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)  # (N, cout, H/s, W/s)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """stem → inverted residual blocks → 1x1 head → global pool → classifier (the zoo model and every NAS subnet)."""

    def __init__(self, in_channels: int, stem: int, blocks: list[BlockSpec], head: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(in_channels, stem, 3))
        self.blocks = nn.Sequential(*(InvertedResidual(b) for b in blocks))
        self.head = nn.Sequential(*conv_bn(blocks[-1].cout, head, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))  # (N, head, H', W')
        return self.classifier(self.pool(x).flatten(1))  # (N, classes)


@register_model(
    "mobilenetv2", MobileNetV2Config, "MobileNetV2: inverted residuals, depthwise 3x3, ReLU6 (MCUNet family)"
)
def mobilenetv2(cfg: MobileNetV2Config) -> MobileNetV2:
    """Build a :class:`MobileNetV2` from its config."""
    stem, head = scale_channels(cfg.stem, cfg.width), scale_channels(cfg.head, cfg.width)
    return MobileNetV2(cfg.in_channels, stem, cfg.block_specs(), head, cfg.num_classes)
