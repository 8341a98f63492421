"""Latency lookup table: every distinct block of a space timed once, a subnet's latency is the sum of its blocks.

Entries are measured with the one latency helper (:func:`leanml.profile.measure_latency`:
warm-up, repeats, median, threads pinned) on PyTorch eager, batch 1: the
table says so in ``meta["engine"]`` ("pytorch-eager"); timings from
``leanml.deploy``'s C engine can replace them later under another engine name.
Keys name the layer and its shape, e.g. ``block:k5:c24:h96:o24:s1:r16`` (kernel,
in, hidden, out, stride, input size). :func:`validate_table` compares the sum
with end-to-end measurements of whole subnets.

Example:
    >>> from leanml.nas.space import SpaceConfig
    >>> from leanml.nas.subnet import net_config
    >>> space = SpaceConfig()
    >>> layer_keys(net_config(space, space.smallest()), 20)[:2]
    ['stem:i1:o8:r20', 'block:k3:c8:h8:o8:s1:r20']
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanml.artifact import load_artifact, save_artifact
from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.models.mobilenetv2 import InvertedResidual, conv_bn
from leanml.models.registry import build_model
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.stats import kendall_tau
from leanml.nas.subnet import MODEL_NAME, NasNetConfig, block_spec, net_config
from leanml.profile.machine import machine_summary
from leanml.profile.timing import measure_latency, model_latency
from leanml.progress import track

KIND = "nas_latency"
ENGINE = "pytorch-eager"


@dataclass
class LatencyConfig(Config):
    """How each table entry is timed (batch 1)."""

    threads: int = 1
    warmup: int = 3
    repeats: int = 15

    def validate(self) -> None:
        require(self.threads >= 1 and self.warmup >= 0 and self.repeats >= 1,
                "latency table needs threads >= 1, warmup >= 0, repeats >= 1")  # fmt: skip


def layer_keys(cfg: NasNetConfig, resolution: int) -> list[str]:
    """Table keys of the stem, every block and the head of the ``nas_mbv2`` model of ``cfg``."""
    keys = [f"stem:i{cfg.in_channels}:o{cfg.stem}:r{resolution}"]
    size = resolution
    for b in cfg.plan():
        keys.append(f"block:k{b.kernel}:c{b.cin}:h{b.hidden}:o{b.cout}:s{b.stride}:r{size}")
        size = math.ceil(size / b.stride)
    keys.append(f"head:c{cfg.blocks[-1][2]}:h{cfg.head}:o{cfg.num_classes}:r{size}")
    return keys


class _Head(nn.Module):
    """How every subnet ends, timed as one table entry: 1x1 conv-BN-ReLU6 → global average pool → classifier."""

    def __init__(self, cin: int, head: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Sequential(*conv_bn(cin, head, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)  # (N, head, H, W)
        return self.classifier(self.pool(x).flatten(1))  # (N, classes)


def layer_module(key: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The module a key describes (random weights, eval mode) and its input shape (C, H, W).

    Example:
        >>> layer_module("head:c8:h16:o10:r5")[1]
        (8, 5, 5)
    """
    kind, *fields = key.split(":")
    try:
        v = {f[0]: int(f[1:]) for f in fields}
        if kind == "stem":
            return nn.Sequential(*conv_bn(v["i"], v["o"], 3)).eval(), (v["i"], v["r"], v["r"])
        if kind == "block":
            block = InvertedResidual(block_spec(v["k"], v["c"], v["h"], v["o"], v["s"]))
            return block.eval(), (v["c"], v["r"], v["r"])
        if kind == "head":
            return _Head(v["c"], v["h"], v["o"]).eval(), (v["c"], v["r"], v["r"])
    except (KeyError, ValueError):
        pass
    raise LeanmlError(f"malformed latency table key {key!r}", "rebuild the latency table")


def measure_key(key: str, cfg: LatencyConfig) -> float:
    """Median latency in ms of the layer ``key`` at batch 1.

    Example:
        >>> measure_key("stem:i1:o8:r20", LatencyConfig(warmup=1, repeats=3)) > 0
        True
    """
    module, shape = layer_module(key)
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return measure_latency(lambda: module(x), cfg.warmup, cfg.repeats, cfg.threads, batch_size=1).median_ms


def space_keys(space: SpaceConfig) -> list[str]:
    """Every key any architecture of ``space`` can need (uniform deepest architectures cover every block slot).

    Example:
        >>> len(space_keys(SpaceConfig()))
        648
    """
    keys: dict[str, None] = {}
    for r in space.resolutions:
        for w in space.widths:
            for k in space.kernels:
                for e in space.expands:
                    depths = [space.max_depth(s) for s in range(space.num_stages)]
                    arch = Arch(r, w, tuple((k,) * d for d in depths), tuple((e,) * d for d in depths))
                    keys.update(dict.fromkeys(layer_keys(net_config(space, arch), r)))
    return list(keys)


@dataclass
class LatencyTable:
    """Median latency (ms) per layer key, with how and where it was measured."""

    entries: dict[str, float]
    meta: dict[str, Any]

    def predict(self, cfg: NasNetConfig, resolution: int) -> float:
        """Predicted end-to-end latency (ms) of the ``nas_mbv2`` model of ``cfg``: the sum of its layers."""
        total = 0.0
        for key in layer_keys(cfg, resolution):
            if key not in self.entries:
                raise LeanmlError(f"the latency table has no entry {key!r}",
                                  "build the table for this search space (leanml nas search builds one)")  # fmt: skip
            total += self.entries[key]
        return total

    def save(self, path: str | Path) -> None:
        """Save as an artifact (no tensors; entries and measurement conditions in the sidecar)."""
        save_artifact(path, {}, {"entries": self.entries, "measurement": self.meta}, kind=KIND)

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Load a table saved by :meth:`save`."""
        _, meta = load_artifact(path, kind=KIND)
        return cls(dict(meta["entries"]), dict(meta["measurement"]))


def build_table(space: SpaceConfig, cfg: LatencyConfig | None = None, progress: bool = True) -> LatencyTable:
    """Time every layer key of ``space`` (PyTorch eager, batch 1) into a table.

    Example:
        >>> table = build_table(SpaceConfig())  # doctest: +SKIP
        >>> table.meta["engine"]  # doctest: +SKIP
        'pytorch-eager'
    """
    cfg = cfg or LatencyConfig()
    keys = space_keys(space)
    entries = {key: measure_key(key, cfg) for key in track(keys, len(keys), "latency table", progress)}
    meta = {"engine": ENGINE, "note": "PyTorch eager timings; the leanml.deploy engine can replace them",
            **cfg.to_dict(), "batch_size": 1, "machine": machine_summary(), "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip
    return LatencyTable(entries, meta)


@dataclass
class LatencyCheck:
    """Table prediction vs measured end-to-end latency on sample subnets."""

    predicted_ms: list[float]
    measured_ms: list[float]

    @property
    def mean_abs_rel_error(self) -> float:
        """Mean of |predicted - measured| / measured."""
        pairs = zip(self.predicted_ms, self.measured_ms, strict=True)
        return sum(abs(p - m) / m for p, m in pairs) / max(len(self.measured_ms), 1)

    @property
    def kendall_tau(self) -> float:
        """Rank agreement between predicted and measured."""
        return kendall_tau(self.predicted_ms, self.measured_ms)


def validate_table(
    table: LatencyTable, space: SpaceConfig, archs: list[Arch], cfg: LatencyConfig | None = None, progress: bool = True
) -> LatencyCheck:
    """Measure each architecture's subnet end to end (random weights, batch 1) and compare with the table.

    Example:
        >>> space = SpaceConfig()
        >>> check = validate_table(build_table(space), space, [space.smallest()])  # doctest: +SKIP
        >>> check.mean_abs_rel_error  # doctest: +SKIP
        0.12
    """
    cfg = cfg or LatencyConfig()
    predicted, measured = [], []
    for arch in track(archs, len(archs), "latency check", progress):
        net_cfg = net_config(space, arch)
        model = build_model(MODEL_NAME, **net_cfg.to_dict())
        shape = (space.in_channels, arch.resolution, arch.resolution)
        measured.append(model_latency(model, shape, 1, cfg.threads, cfg.warmup, cfg.repeats).median_ms)
        predicted.append(table.predict(net_cfg, arch.resolution))
    return LatencyCheck(predicted, measured)
