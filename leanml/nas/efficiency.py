"""The efficiency predictor: exact MACs, params and int8 peak SRAM of any subnet, and its table latency.

Search scores tens of thousands of candidates, so nothing is traced or built:
:func:`subnet_layers` writes down the subnet's graph exactly as
:func:`leanml.profile.graph.trace_ops` records the ``nas_mbv2`` model (same
ops, same order, same reuse rules), and the peak comes from **the one memory
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

from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.subnet import NasNetConfig, net_config
from leanml.profile.memory import TensorNode, tensor_lifetimes

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


def subnet_layers(cfg: NasNetConfig, resolution: int) -> list[Layer]:
    """The ops of the ``nas_mbv2`` model of ``cfg`` on a (1, C, r, r) input, in trace order.

    Example:
        >>> cfg = NasNetConfig(stem=4, blocks=[[3, 4, 4, 1]], head=8)
        >>> [layer.node.name for layer in subnet_layers(cfg, 8)][:4]
        ['x', 'stem.0', 'stem.1', 'stem.2']
    """
    layers: list[Layer] = [Layer(TensorNode("x", "x", (), cfg.in_channels * resolution**2, is_input=True))]

    def add(name: str, numel: int, macs: int = 0, params: int = 0, reuse: bool = False,
            inputs: tuple[str, ...] | None = None) -> str:  # fmt: skip
        src = inputs if inputs is not None else (layers[-1].node.id,)
        layers.append(Layer(TensorNode(name, name, src, numel, reuse), macs, params))
        return name

    size = resolution
    c0 = cfg.stem
    add("stem.0", c0 * size**2, c0 * size**2 * cfg.in_channels * 9, c0 * cfg.in_channels * 9)
    add("stem.1", c0 * size**2, params=2 * c0, reuse=True)
    add("stem.2", c0 * size**2, reuse=True)
    for j, spec in enumerate(cfg.plan()):
        k, cin, hidden, cout, stride = spec.kernel, spec.cin, spec.hidden, spec.cout, spec.stride
        block_in = layers[-1].node.id
        i = 0
        if hidden != cin:
            n = hidden * size**2
            add(f"blocks.{j}.conv.0", n, n * cin, hidden * cin)
            add(f"blocks.{j}.conv.1", n, params=2 * hidden, reuse=True)
            add(f"blocks.{j}.conv.2", n, reuse=True)
            i = 3
        size = _out_size(size, stride)
        n = hidden * size**2
        add(f"blocks.{j}.conv.{i}", n, n * k * k, hidden * k * k)
        add(f"blocks.{j}.conv.{i + 1}", n, params=2 * hidden, reuse=True)
        add(f"blocks.{j}.conv.{i + 2}", n, reuse=True)
        n = cout * size**2
        add(f"blocks.{j}.conv.{i + 3}", n, n * hidden, cout * hidden)
        out = add(f"blocks.{j}.conv.{i + 4}", n, params=2 * cout, reuse=True)
        if stride == 1 and cin == cout:
            add(f"blocks.{j}.add", n, inputs=(block_in, out))
    cin = cfg.blocks[-1][2]
    n = cfg.head * size**2
    add("head.0", n, n * cin, cfg.head * cin)
    add("head.1", n, params=2 * cfg.head, reuse=True)
    add("head.2", n, reuse=True)
    add("pool", cfg.head)
    add("flatten", cfg.head, reuse=True)
    add("classifier", cfg.num_classes, cfg.num_classes * cfg.head, cfg.num_classes * (cfg.head + 1))
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
