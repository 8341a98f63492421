"""``profile_model``: per-layer table and totals (params, MACs, sizes, peak memory, latency).

Example:
    >>> from leanml.models import build_model
    >>> prof = profile_model(build_model("vgg"), measure=False)
    >>> prof.params == sum(p.numel() for p in build_model("vgg").parameters())
    True
    >>> prof.size_bytes(4) * 8 == prof.params * 4
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from torch import nn

from leanml.profile.graph import trace_ops
from leanml.profile.memory import MemoryPlan, activation_buffers
from leanml.profile.tables import layer_table, totals_table
from leanml.profile.timing import LatencyStats, model_latency
from leanml.profile.traced_ops import op_macs

SIZE_BITS = (32, 16, 8, 4, 2)


@dataclass
class LayerProfile:
    """One row of the per-layer table (batch 1)."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activation_numel: int

    def activation_bytes(self, bytes_per_element: int = 4) -> int:
        """Output tensor size in bytes."""
        return self.activation_numel * bytes_per_element


@dataclass
class ModelProfile:
    """Totals and per-layer rows of one model at batch 1, plus measured latency per batch size."""

    input_shape: tuple[int, ...]
    layers: list[LayerProfile]
    params: int
    macs: int
    memory: MemoryPlan
    latency: dict[int, LatencyStats] = field(default_factory=dict)

    def size_bytes(self, bits: int) -> int:
        """Model size if every parameter is stored at ``bits`` bits (rounded up to bytes)."""
        return (self.params * bits + 7) // 8

    def peak_activation_bytes(self, bytes_per_element: int) -> int:
        """Peak activation memory from the one memory model (4 = fp32, 1 = int8)."""
        return self.memory.peak_bytes(bytes_per_element)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what ``leanml profile --json`` prints)."""
        return {
            "input_shape": list(self.input_shape),
            "params": self.params,
            "macs": self.macs,
            "size_bytes": {str(b): self.size_bytes(b) for b in SIZE_BITS},
            "peak_activation_bytes": {"fp32": self.peak_activation_bytes(4), "int8": self.peak_activation_bytes(1)},
            "peak_at": self.memory.peak_step,
            "layers": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "output_shape": list(r.output_shape),
                    "params": r.params,
                    "macs": r.macs,
                    "activation_bytes_fp32": r.activation_bytes(4),
                }
                for r in self.layers
            ],
            "latency": {str(b): s.to_dict() for b, s in self.latency.items()},
        }

    def layer_table(self) -> Table:
        """The per-layer table as a rich :class:`Table`."""
        rows = [[r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}",
                 f"{r.activation_bytes(4):,}"] for r in self.layers]  # fmt: skip
        columns = ("layer", "type", "output", "params", "MACs", "act. bytes (fp32)")
        return layer_table(f"layers (input 1x{'x'.join(map(str, self.input_shape))})", columns, 3, rows)

    def totals_table(self) -> Table:
        """Totals (params, MACs, sizes, peak memory, latency) as a rich :class:`Table`."""
        rows = [("params", f"{self.params:,}"), ("MACs (batch 1)", f"{self.macs:,}")]
        rows += [(f"model size @ {b}-bit", _kib(self.size_bytes(b))) for b in SIZE_BITS]
        rows += [
            ("peak activation fp32", f"{_kib(self.peak_activation_bytes(4))} (at {self.memory.peak_step})"),
            ("peak activation int8", _kib(self.peak_activation_bytes(1))),
        ]
        rows += [(f"latency batch {b}", str(s)) for b, s in sorted(self.latency.items())]
        return totals_table("totals", rows)


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def _direct_params(module: nn.Module | None) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters(recurse=False))


def profile_model(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 28, 28),
    batch_sizes: tuple[int, ...] = (1, 32),
    threads: int | None = None,
    measure: bool = True,
    repeats: int = 30,
) -> ModelProfile:
    """Profile ``model`` on inputs of shape (batch, *input_shape).

    Counts and memory are at batch 1; latency (if ``measure``) at each of
    ``batch_sizes`` through the one latency helper with ``threads`` threads.
    """
    nodes = trace_ops(model, input_shape)
    layers = [
        LayerProfile(n.name, n.kind, n.shape, _direct_params(n.module), op_macs(n), n.numel)
        for n in nodes
        if n.op not in ("placeholder", "output", "get_attr") and n.shape is not None
    ]
    prof = ModelProfile(
        input_shape=tuple(input_shape),
        layers=layers,
        params=sum(p.numel() for p in model.parameters()),
        macs=sum(r.macs for r in layers),
        memory=activation_buffers(nodes),
    )
    if measure:
        for b in batch_sizes:
            prof.latency[b] = model_latency(model, input_shape, b, threads, repeats=repeats)
    return prof
