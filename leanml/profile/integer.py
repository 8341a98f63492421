"""Profile of an integer model (``leanml quantize`` output): per-op MACs, flash and int8 activations, from its deploy
lowering and memory plan (the figures ``leanml deploy`` reports, without generating or compiling C).

Example:
    >>> from leanml.quant.integer import IntegerModel
    >>> prof = profile_integer(IntegerModel.load("runs/vgg-int8"))  # doctest: +SKIP
    >>> prof.macs, prof.arena_bytes  # doctest: +SKIP
    (29128448, 12288)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

from leanml.errors import LeanmlError
from leanml.profile.tables import layer_table, totals_table

if TYPE_CHECKING:
    from leanml.quant.integer import IntegerModel


@dataclass(frozen=True)
class IntegerOpRow:
    """One op of the lowered graph: MACs at batch 1, flash bytes of its constants, int8 output bytes."""

    name: str
    kind: str
    output_shape: list[int]
    macs: int
    weight_bytes: int
    output_bytes: int


@dataclass(frozen=True)
class IntegerProfile:
    """Totals and per-op rows of an integer model for one input shape (C, H, W)."""

    input_shape: tuple[int, int, int]
    params: int  # int8 weights + int32 biases, as stored
    weight_bytes: int  # flash: weights + biases + requantization constants
    macs: int
    arena_bytes: int  # peak activation SRAM under the deploy memory plan (int8)
    tflm_bytes: int  # a TFLite-Micro-style plan of the same graph
    lower_bound_bytes: int
    ops: list[IntegerOpRow]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON output."""
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["kind"] = "integer-model"
        return out

    def layer_table(self) -> Table:
        """The per-op table as a rich :class:`Table`."""
        rows = [[r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.macs:,}", f"{r.weight_bytes:,}",
                 f"{r.output_bytes:,}"] for r in self.ops]  # fmt: skip
        columns = ("op", "kind", "output", "MACs", "flash bytes", "act. bytes (int8)")
        return layer_table(f"integer ops (input 1x{'x'.join(map(str, self.input_shape))}, int8)", columns, 3, rows)

    def totals_table(self) -> Table:
        """Totals (params, flash, MACs, peak activation) as a rich :class:`Table`."""
        return totals_table("totals (integer model)", [
            ("params", f"{self.params:,}"),
            ("MACs (batch 1)", f"{self.macs:,}"),
            ("flash: weights + quantization constants", f"{self.weight_bytes / 1024:,.1f} KiB"),
            ("peak activation int8 (deploy plan)", f"{self.arena_bytes / 1024:,.1f} KiB"),
            ("peak activation int8 (TFLite-Micro-style plan)", f"{self.tflm_bytes / 1024:,.1f} KiB"),
            ("latency", "see `leanml deploy` (the C engine)"),
        ])  # fmt: skip


def integer_params(model: IntegerModel) -> int:
    """Stored weight and bias values of ``model``'s ops (their ``weight`` and ``bias`` arrays).

    Example:
        >>> integer_params(IntegerModel.load("runs/vgg-int8"))  # doctest: +SKIP
        288170
    """
    total = 0
    for op in model.ops:
        for name in ("weight", "bias"):
            value = getattr(op, name, None)
            if isinstance(value, np.ndarray):
                total += int(value.size)
    return total


def profile_integer(model: IntegerModel, input_shape: tuple[int, int, int] | None = None) -> IntegerProfile:
    """Profile ``model`` for inputs (C, H, W): ``input_shape`` or the model's stored shape (a mismatch is refused).

    Example:
        >>> profile_integer(IntegerModel.load("runs/vgg-int8")).params  # doctest: +SKIP
        288170
    """
    from leanml.deploy.ir import lower
    from leanml.deploy.planner import memory_report, plan_memory

    stored = model.input_shape
    shape = input_shape or stored
    if shape is None:
        raise LeanmlError("the integer model stores no input shape and none was given", "pass --input-shape C,H,W")
    if stored is not None and tuple(shape) != tuple(stored):
        raise LeanmlError(f"input shape {list(shape)} given, the integer model takes {list(stored)}",
                          "drop --input-shape (the model's own shape is used) or pass the stored one")  # fmt: skip
    graph = lower(model, shape)
    layout = plan_memory(graph)
    report = memory_report(graph, layout)
    rows = [IntegerOpRow(op.name, op.kind, list(op.out_shape), int(op.macs()), int(op.weight_bytes()),
                         0 if op.is_view else int(op.out_numel)) for op in graph.ops]  # fmt: skip
    return IntegerProfile(shape, integer_params(model), int(graph.weight_bytes()), int(graph.macs()),
                          int(report.arena_bytes), int(report.tflm_bytes), int(report.lower_bound_bytes),
                          rows)  # fmt: skip
