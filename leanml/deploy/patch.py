"""Patch-based inference (MCUNetV2): run the first, high-resolution layers patch by patch to cut peak SRAM.

The first ops of a network hold the largest activations. A *patch stage*
computes its output tensor in a grid of ``n x n`` spatial patches; for each
patch, every tensor inside the stage is computed only over the region its
consumers need (receptive fields with halos, clipped to the tensor), so only
one patch's regions are ever live. Halos overlap between patches: the extra
MACs are reported. Convolutions see real data inside the image and padding
(the zero point) only at the true borders, so the result is bit-identical to
the layer-by-layer run.

The stage becomes one IR op (:class:`PatchStage`) whose scratch is its own
small arena (planned with the same placement code); the global planner
places the full stage output and that scratch like any other op.

Row streaming (:class:`StreamBlock`, :func:`make_block`) is the other way to
never hold whole high-resolution tensors: a conv chain or a residual block runs
row by row with line buffers, each row computed once (no halo overhead); the
planner picks blocks (:func:`stream_candidates`) and :func:`auto_patch` adds a
patch stage only where it still lowers the arena.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> from leanml.quant import QuantSim, convert
    >>> from leanml.deploy.ir import lower
    >>> sim = QuantSim.from_model(build_model("mobilenetv2").eval())
    >>> sim.calibrate([torch.randn(2, 1, 28, 28)])
    >>> graph = patch_graph(lower(convert(sim), (1, 28, 28)), grid=3)
    >>> graph.ops[1].kind, graph.ops[1].out_shape
    ('patch_stage', (14, 14, 24))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from leanml.deploy.ir import Add, Clamp, Conv, Graph, Op
from leanml.deploy.planner import STREAM_MIN_GAIN, place_buffers, plan_memory
from leanml.errors import LeanmlError

STAGE_KINDS = ("conv", "conv1x1", "depthwise", "add", "clamp")


@dataclass(frozen=True)
class Rect:
    """Half-open rows [y0, y1) and columns [x0, x1) of an (H, W, C) tensor."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    def union(self, other: Rect | None) -> Rect:
        """Bounding box of both."""
        if other is None:
            return self
        return Rect(min(self.y0, other.y0), max(self.y1, other.y1), min(self.x0, other.x0), max(self.x1, other.x1))


@dataclass
class PatchPlan:
    """Per patch: the region of every stage tensor, what each op reads of each input, and its top/left padding."""

    regions: dict[str, Rect]  # tensor -> region held in the patch arena (stage input: what is read of it)
    reads: dict[tuple[str, int], Rect]  # (op name, input index) -> region the op reads
    pads: dict[str, tuple[int, int]]  # op name -> (top, left) padding rows/cols at the true border


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i + 1] > bounds[i]]


def _read_rect(op: Op, out: Rect, in_shape: tuple[int, ...]) -> tuple[Rect, tuple[int, int]]:
    """The input region an op needs for output region ``out``, clipped to the tensor, and the padding it implies."""
    if isinstance(op, Conv):
        (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
        ya, yb = out.y0 * sh - ph, (out.y1 - 1) * sh - ph + kh
        xa, xb = out.x0 * sw - pw, (out.x1 - 1) * sw - pw + kw
        rect = Rect(max(ya, 0), min(yb, in_shape[0]), max(xa, 0), min(xb, in_shape[1]))
        return rect, (max(0, -ya), max(0, -xa))
    return out, (0, 0)


def plan_patches(ops: list[Op], output: str, out_shape: tuple[int, ...], grid: int) -> list[PatchPlan]:
    """Regions per patch for the stage ``ops`` producing ``output`` in a ``grid`` x ``grid`` split."""
    plans = []
    for y0, y1 in _split(out_shape[0], grid):
        for x0, x1 in _split(out_shape[1], grid):
            regions: dict[str, Rect] = {output: Rect(y0, y1, x0, x1)}
            reads: dict[tuple[str, int], Rect] = {}
            pads: dict[str, tuple[int, int]] = {}
            for op in reversed(ops):
                out = regions[op.output]
                for idx, (src, shape) in enumerate(zip(op.inputs, op.in_shapes, strict=True)):
                    rect, pad = _read_rect(op, out, shape)
                    reads[(op.name, idx)] = rect
                    regions[src] = rect.union(regions.get(src))
                    pads[op.name] = pad
            plans.append(PatchPlan(regions, reads, pads))
    return plans


@dataclass
class PatchStage(Op):
    """The first ops of a graph, run patch by patch; its scratch is the patch arena."""

    ops: list[Op] = field(default_factory=list)
    grid: int = 2
    patches: list[PatchPlan] = field(default_factory=list)
    arena_offsets: dict[str, int] = field(default_factory=dict)  # stage tensor or "crop:<op>:<idx>" -> offset
    arena_size: int = 0
    kind = "patch_stage"

    def macs(self) -> int:
        """MACs actually executed: every patch's regions, halos included."""
        total = 0
        for plan in self.patches:
            for op in self.ops:
                r = plan.regions[op.output]
                total += op.macs() * r.h * r.w // (op.out_shape[0] * op.out_shape[1])
        return total

    def layer_macs(self) -> int:
        """MACs of the same ops run layer by layer (no halo overlap)."""
        return sum(op.macs() for op in self.ops)

    def weight_bytes(self) -> int:
        return sum(op.weight_bytes() for op in self.ops)

    def scratch_bytes(self) -> int:
        return self.arena_size


def crop_key(op: Op, idx: int) -> str:
    """Patch-arena key of the buffer an op's input is cropped into when it reads part of a larger region."""
    return f"crop:{op.name}:{idx}"


def needs_crop(stage: PatchStage, plan: PatchPlan, op: Op, idx: int) -> bool:
    """Whether ``op`` reads a strict part of the region held for its input (so a compact copy is made)."""
    src = op.inputs[idx]
    held = plan.regions[src] if src in plan.regions and src != stage.inputs[0] else None
    read = plan.reads[(op.name, idx)]
    return held is None or held != read


def _stage_arena(stage: PatchStage) -> None:
    """Place the stage's region buffers and crop buffers (max size over patches) in one small arena."""
    steps = {op.output: i for i, op in enumerate(stage.ops)}
    last_use: dict[str, int] = {}
    for i, op in enumerate(stage.ops):
        for src in op.inputs:
            last_use[src] = i
    keys: list[str] = []
    bufs: list[tuple[int, int, int]] = []
    for op in stage.ops:
        c = op.out_shape[2]
        size = max(p.regions[op.output].h * p.regions[op.output].w * c for p in stage.patches)
        keys.append(op.output)
        bufs.append((size, steps[op.output], last_use.get(op.output, len(stage.ops))))
    for i, op in enumerate(stage.ops):
        for idx in range(len(op.inputs)):
            sizes = [p.reads[(op.name, idx)].h * p.reads[(op.name, idx)].w * op.in_shapes[idx][2]
                     for p in stage.patches if needs_crop(stage, p, op, idx)]  # fmt: skip
            if sizes:
                keys.append(crop_key(op, idx))
                bufs.append((max(sizes), i, i))
    placement = place_buffers(bufs, "best")
    stage.arena_offsets = dict(zip(keys, placement.offsets, strict=True))
    stage.arena_size = placement.arena_bytes


def _cut_ok(graph: Graph, end: int) -> bool:
    """Ops 1..end form a stage: supported kinds, one external input (the graph input), one tensor leaving it."""
    inside = {op.output for op in graph.ops[1 : end + 1]}
    if not all(op.kind in STAGE_KINDS for op in graph.ops[1 : end + 1]):
        return False
    if len(graph.ops[end].out_shape) != 3:
        return False
    for op in graph.ops[end + 1 :]:
        if any(src in inside and src != graph.ops[end].output for src in op.inputs):
            return False
    return graph.output not in inside or graph.output == graph.ops[end].output


def patch_graph(graph: Graph, grid: int, until: str | None = None) -> Graph:
    """Replace the graph's first ops with a :class:`PatchStage` of ``grid`` x ``grid`` patches.

    ``until``: the tensor that ends the stage; by default the cut point that gives the smallest arena.
    """
    if grid < 1:
        raise LeanmlError(f"patch grid {grid} must be >= 1", "e.g. --patch 3 for 3x3 patches")
    cuts = [i for i in range(1, len(graph.ops)) if _cut_ok(graph, i)]
    if until is not None:
        named = [i for i in cuts if graph.ops[i].output == until]
        if not named:
            valid = ", ".join(graph.ops[i].output for i in cuts) or "none"
            raise LeanmlError(f"tensor {until!r} cannot end a patch stage", f"valid stage ends: {valid}")
        cuts = named
    if not cuts:
        raise LeanmlError("this model has no patchable first stage",
                          f"patch stages hold only {', '.join(STAGE_KINDS)} ops")  # fmt: skip
    best: tuple[int, Graph] | None = None
    for end in cuts:
        candidate = _stage_graph(graph, end, grid)
        size = plan_memory(candidate).arena_bytes
        if best is None or size < best[0]:
            best = (size, candidate)
    assert best is not None
    return best[1]


def _stage_graph(graph: Graph, end: int, grid: int) -> Graph:
    ops = graph.ops[1 : end + 1]
    last = ops[-1]
    stage = PatchStage(f"patch_stage_{last.name}", (graph.ops[0].output,), last.output, (graph.ops[0].out_shape,),
                       last.out_shape, ops=ops, grid=grid)  # fmt: skip
    stage.patches = plan_patches(ops, last.output, last.out_shape, grid)
    _stage_arena(stage)
    rest = graph.ops[end + 1 :]
    return Graph([graph.ops[0], stage, *rest], graph.input, graph.output, graph.input_shape, graph.input_q,
                 graph.output_q, graph.output_perm)  # fmt: skip


def auto_patch(graph: Graph, grids: tuple[int, ...] = (2, 3, 4), max_extra_macs_pct: float = 5.0) -> Graph:
    """The graph with the patch stage (grid and cut) that gives the smallest arena, or the graph itself when no
    patching cuts the arena (in-place ops and row streaming included) by at least 5% within
    ``max_extra_macs_pct`` percent more MACs.

    Example:
        >>> # see tests/deploy/test_fused.py: on the zoo's mobilenetv2 it picks 3x3 patches
    """
    best, best_bytes = graph, plan_memory(graph).arena_bytes
    limit = (1 - STREAM_MIN_GAIN) * best_bytes
    for grid in grids:
        try:
            candidate = patch_graph(graph, grid)
        except LeanmlError:  # no patchable first stage
            return best
        summary = stage_summary(candidate)
        size = plan_memory(candidate).arena_bytes
        if summary and float(summary["patch_extra_macs_pct"]) <= max_extra_macs_pct and size <= limit and \
                size < best_bytes:  # fmt: skip
            best, best_bytes = candidate, size
    return best


def stage_summary(graph: Graph) -> dict[str, int | float | str] | None:
    """Extra MACs and extent of the graph's patch stage, if it has one."""
    stage = next((op for op in graph.ops if isinstance(op, PatchStage)), None)
    if stage is None:
        return None
    extra = stage.macs() - stage.layer_macs()
    return {"patch_grid": stage.grid, "patch_stage_end": stage.output, "patch_stage_ops": len(stage.ops),
            "patch_arena_bytes": stage.arena_size, "patch_extra_macs": extra,
            "patch_extra_macs_pct": math.floor(1000 * extra / max(graph.macs() - extra, 1)) / 10}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Row streaming (line buffers): a conv chain or a residual block, every row of every tensor computed once
# ---------------------------------------------------------------------------------------------------------------

__all__ = [
    "Add",
    "Clamp",
    "PatchPlan",
    "PatchStage",
    "Rect",
    "auto_patch",
    "patch_graph",
    "plan_patches",
    "stage_summary",
]
