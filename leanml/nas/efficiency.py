"""The efficiency predictor: exact MACs, params and int8 peak SRAM of any subnet, and its table latency.

Search scores tens of thousands of candidates, so nothing is traced or built:
:func:`subnet_layers` writes down the subnet's graph exactly as
:func:`leanml.profile.graph.trace_ops` records the ``nas_mbv2`` model (same
ops, same order, MACs from the one MAC table :func:`leanml.profile.macs.count_macs`,
buffer reuse from the one reuse-rule table :func:`leanml.profile.memory.reuses_input`),
and the peak comes from **the one memory
model** (:func:`leanml.profile.memory.tensor_lifetimes`) at one byte per
element: the number ``leanml profile`` prints as "peak activation int8" for
the exported subnet, and the deploy planner's lifetimes without in-place
depthwise. Tests check all three figures against ``profile_model`` on
extracted subnets. Latency is the sum of per-block entries of a
:class:`~leanml.nas.latency.LatencyTable`.

Example:
    >>> from leanml.nas.space import SpaceConfig
    >>> space = SpaceConfig()
    >>> eff = EfficiencyModel(space)(space.smallest())
    >>> eff.macs, eff.params, eff.peak_sram
    (895060, 27850, 12800)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from leanml.models.mobilenetv2 import ConvStage
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.subnet import NasNetConfig, net_config
from leanml.profile.macs import count_macs
from leanml.profile.memory import TensorNode, reuses_input, tensor_lifetimes

if TYPE_CHECKING:
    from leanml.nas.latency import LatencyTable

RESOURCES = ("macs", "params", "peak_sram", "latency_ms")
UNITS = {"macs": "MACs", "params": "params", "peak_sram": "bytes (int8 activations)", "latency_ms": "ms"}


@dataclass(frozen=True)
class Efficiency:
    """Costs of one subnet at batch 1: MACs, params, peak int8 activation bytes, table latency (if a table is set)."""

    macs: int
    params: int
    peak_sram: int
    latency_ms: float | None = None

    def get(self, resource: str) -> float | None:
        """The value of ``resource`` (one of :data:`RESOURCES`)."""
        value: float | None = getattr(self, resource)
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


@dataclass(frozen=True)
class Layer:
    """One traced op of a subnet: its tensor (for the memory model), MACs and parameters."""

    node: TensorNode
    macs: int = 0
    params: int = 0


def _out_size(size: int, stride: int) -> int:
    return math.ceil(size / stride)  # odd kernel, padding k // 2


def _conv_kind(stage: ConvStage) -> str:
    # the op kind trace_ops gives the stage's conv (leanml.profile.traced_ops)
    return "depthwise" if stage.groups == stage.cin == stage.cout > 1 else "conv"


def subnet_layers(cfg: NasNetConfig, resolution: int) -> list[Layer]:
    """The ops of the ``nas_mbv2`` model of ``cfg`` on a (1, C, r, r) input, in trace order.

    Each conv-BN(-ReLU6) comes from a :class:`~leanml.models.mobilenetv2.ConvStage` (the
    blocks' from their :class:`~leanml.models.mobilenetv2.BlockSpec`); MACs come from the
    one MAC table and buffer reuse from the one reuse-rule table.

    Example:
        >>> cfg = NasNetConfig(stem=4, blocks=[[3, 4, 4, 1]], head=8)
        >>> [layer.node.name for layer in subnet_layers(cfg, 8)][:4]
        ['x', 'stem.0', 'stem.1', 'stem.2']
    """
    layers: list[Layer] = [Layer(TensorNode("x", "x", (), cfg.in_channels * resolution**2, is_input=True))]

    def add(name: str, kind: str, numel: int, macs: int = 0, params: int = 0,
            inputs: tuple[str, ...] | None = None) -> str:  # fmt: skip
        src = inputs if inputs is not None else (layers[-1].node.id,)
        reuse = len(src) == 1 and reuses_input(kind)  # as the memory model treats a traced op
        layers.append(Layer(TensorNode(name, name, src, numel, reuse), macs, params))
        return name

    def conv_bn(prefix: str, index: int, stage: ConvStage, size: int) -> tuple[int, int]:
        """Add the stage's conv, BN (and ReLU6) as modules ``prefix.index`` on; returns (next index, out size)."""
        size = _out_size(size, stage.stride)
        n, kind = stage.cout * size**2, _conv_kind(stage)
        macs = count_macs(kind, n, stage.cin, (stage.kernel, stage.kernel), stage.groups)
        add(f"{prefix}.{index}", kind, n, macs, stage.cout * (stage.cin // stage.groups) * stage.kernel**2)
        add(f"{prefix}.{index + 1}", "norm", n, params=2 * stage.cout)
        if stage.relu:
            add(f"{prefix}.{index + 2}", "activation", n)
        return index + (3 if stage.relu else 2), size

    _, size = conv_bn("stem", 0, ConvStage("stem", cfg.in_channels, cfg.stem, 3), resolution)
    for j, block in enumerate(cfg.plan()):
        block_in, index = layers[-1].node.id, 0
        for stage in block.stages():
            index, size = conv_bn(f"blocks.{j}.conv", index, stage, size)
        if block.residual:
            add(f"blocks.{j}.add", "add", block.cout * size**2, inputs=(block_in, layers[-1].node.id))
    conv_bn("head", 0, ConvStage("head", cfg.blocks[-1][2], cfg.head, 1), size)
    add("pool", "pool", cfg.head)
    add("flatten", "view", cfg.head)
    macs = count_macs("linear", cfg.num_classes, cfg.head)
    add("classifier", "linear", cfg.num_classes, macs, cfg.num_classes * (cfg.head + 1))
    return layers


def subnet_efficiency(cfg: NasNetConfig, resolution: int) -> Efficiency:
    """MACs, params and int8 peak activation bytes of the ``nas_mbv2`` model of ``cfg`` (no latency).

    Example:
        >>> subnet_efficiency(NasNetConfig(stem=4, blocks=[[3, 4, 4, 1]], head=8), 8).peak_sram
        768
    """
    layers = subnet_layers(cfg, resolution)
    plan = tensor_lifetimes([layer.node for layer in layers], [layers[-1].node.id])
    return Efficiency(sum(layer.macs for layer in layers), sum(layer.params for layer in layers), plan.peak_numel)


class EfficiencyModel:
    """Efficiency of architectures of one space (cached per architecture), with latency when a table is given."""

    def __init__(self, space: SpaceConfig, latency: LatencyTable | None = None) -> None:
        self.space = space
        self.latency = latency
        self._cache: dict[Arch, Efficiency] = {}

    def __call__(self, arch: Arch) -> Efficiency:
        """Efficiency of ``arch`` (checked against the space)."""
        if arch not in self._cache:
            cfg = net_config(self.space, arch)
            eff = subnet_efficiency(cfg, arch.resolution)
            if self.latency is not None:
                eff = Efficiency(eff.macs, eff.params, eff.peak_sram, self.latency.predict(cfg, arch.resolution))
            self._cache[arch] = eff
        return self._cache[arch]
