"""The standalone subnet: a registered leanml model (``nas_mbv2``) that any architecture of the space becomes.

The reference :class:`~leanml.models.mobilenetv2.MobileNetV2` (stem, inverted
residual blocks, 1x1 head, pooling, classifier) with each block's own depthwise
kernel size and hidden width. Its config is plain data, so a subnet saves, loads,
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

from leanml.config import Config, require
from leanml.models.mobilenetv2 import BlockSpec, MobileNetV2
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

    def plan(self) -> list[BlockSpec]:
        """One :class:`~leanml.models.mobilenetv2.BlockSpec` per block (see :func:`block_spec`)."""
        out, cin = [], self.stem
        for k, hidden, cout, stride in self.blocks:
            out.append(block_spec(k, cin, hidden, cout, stride))
            cin = cout
        return out


def block_spec(kernel: int, cin: int, hidden: int, cout: int, stride: int) -> BlockSpec:
    """A subnet block: it expands exactly when its hidden width differs from its input width.

    Example:
        >>> block_spec(3, 16, 16, 16, 1).expand, block_spec(5, 16, 64, 24, 2).expand
        (False, True)
    """
    return BlockSpec(kernel, cin, hidden, cout, stride, expand=hidden != cin)


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


@register_model(MODEL_NAME, NasNetConfig, "MobileNetV2 subnet from leanml nas: per-block kernel size and width")
def nas_mbv2(cfg: NasNetConfig) -> MobileNetV2:
    """Build the :class:`~leanml.models.mobilenetv2.MobileNetV2` of a subnet config."""
    return MobileNetV2(cfg.in_channels, cfg.stem, cfg.plan(), cfg.head, cfg.num_classes)
