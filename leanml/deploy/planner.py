"""Static memory plan: every activation byte placed in one arena before the model runs.

Lifetimes come from **the one memory model** (:func:`leanml.profile.memory.tensor_lifetimes`):
the IR's tensors become :class:`~leanml.profile.memory.TensorNode` s and
**the one reuse-rule table** (:func:`~leanml.profile.memory.reuses_input`)
decides which reuse their input's buffer when they are its last reader: views
(flatten), clamps, and depthwise convs when ``in_place``. Scratch (the
one-channel temp buffer of an in-place depthwise conv, a patch stage's own
small arena) is a buffer live for its op's step only. Buffers are then placed at arena offsets by a greedy
strategy: ``greedy_by_size`` (what TensorFlow Lite Micro's planner does:
largest first, lowest offset that does not collide with a time-overlapping
buffer) or ``greedy_by_start``; ``best`` keeps the smaller arena.

The figures reported beside each other: the arena (this plan), a
TFLite-Micro-style plan (no in-place ops, greedy by size), the naive sum of all
tensors, and the lower bound (most bytes ever live at once).

Example:
    >>> plan = place_buffers([(100, 0, 1), (50, 1, 2), (100, 2, 3)], "greedy_by_size")
    >>> plan.arena_bytes  # sizes rounded up to 16-byte alignment: 112 + 64, the third reuses the first's bytes
    176
"""

from __future__ import annotations

from dataclasses import dataclass

from leanml.deploy.ir import Depthwise, Graph, Op
from leanml.errors import LeanmlError
from leanml.profile.memory import MemoryPlan, TensorNode, reuses_input, tensor_lifetimes

ALIGN = 16
STRATEGIES = ("greedy_by_size", "greedy_by_start", "best")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Placement:
    """Offsets of buffers (index -> byte offset) in an arena of ``arena_bytes``."""

    offsets: list[int]
    sizes: list[int]
    lifetimes: list[tuple[int, int]]  # inclusive (first step, last step)
    arena_bytes: int
    strategy: str


def place_buffers(buffers: list[tuple[int, int, int]], strategy: str = "best") -> Placement:
    """Place (bytes, first step, last step) buffers; two buffers live at a common step never overlap.

    Example:
        >>> place_buffers([(10, 0, 0), (10, 1, 1)]).arena_bytes  # disjoint lifetimes share the bytes
        16
    """
    if strategy not in STRATEGIES:
        raise LeanmlError(f"unknown placement strategy {strategy!r}", f"choose one of: {', '.join(STRATEGIES)}")
    if strategy == "best":
        plans = [place_buffers(buffers, s) for s in STRATEGIES[:-1]]
        return min(plans, key=lambda p: p.arena_bytes)
    idx = list(range(len(buffers)))
    if strategy == "greedy_by_size":
        idx.sort(key=lambda i: (-buffers[i][0], buffers[i][1], i))
    else:
        idx.sort(key=lambda i: (buffers[i][1], -buffers[i][0], i))
    offsets = [0] * len(buffers)
    placed: list[int] = []
    for i in idx:
        size, start, end = buffers[i]
        size = _align(size)
        busy = sorted((offsets[j], offsets[j] + _align(buffers[j][0])) for j in placed
                      if buffers[j][1] <= end and start <= buffers[j][2])  # fmt: skip
        offset = 0
        for lo, hi in busy:  # first gap large enough
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        offsets[i] = offset
        placed.append(i)
    total = max((offsets[i] + _align(buffers[i][0]) for i in range(len(buffers))), default=0)
    return Placement(offsets, [b[0] for b in buffers], [(b[1], b[2]) for b in buffers], total, strategy)


def tensor_nodes(graph: Graph, in_place: bool) -> list[TensorNode]:
    """The graph's tensors for the one memory model (int8: one byte per element), reuse by its rule table."""
    nodes = []
    for op in graph.ops:
        reuse = reuses_input(op.table_kind, in_place_kernels=in_place)
        nodes.append(TensorNode(op.output, op.name, op.inputs, op.out_numel, reuse, op.kind == "quantize"))
    return nodes


@dataclass
class MemoryLayout:
    """Where every tensor lives: the lifetimes, the placement, and each op's scratch offset."""

    lifetimes: MemoryPlan
    placement: Placement
    tensor_offset: dict[str, int]  # tensor -> arena offset
    scratch_offset: dict[str, int]  # op name -> arena offset of its scratch
    in_place: set[str]  # ops (depthwise) that run in place

    @property
    def arena_bytes(self) -> int:
        """Bytes of the static arena (activations + scratch)."""
        return self.placement.arena_bytes

    @property
    def peak_live_bytes(self) -> int:
        """Lower bound: the most activation + scratch bytes live at one step."""
        steps = max((end for _, end in self.placement.lifetimes), default=-1) + 1
        return max((sum(s for s, (a, b) in zip(self.placement.sizes, self.placement.lifetimes, strict=True)
                        if a <= t <= b) for t in range(steps)), default=0)  # fmt: skip


def _scratch_bytes(op: Op, in_place: set[str]) -> int:
    if op.name in in_place:  # in-place depthwise: one input channel plane
        h, w, _ = op.in_shapes[0]
        return h * w
    return op.scratch_bytes()


def plan_memory(graph: Graph, in_place: bool = True, strategy: str = "best") -> MemoryLayout:
    """Lifetimes from the one memory model, in-place depthwise where the input dies there, arena offsets."""
    lifetimes = tensor_lifetimes(tensor_nodes(graph, in_place), [graph.output])
    in_place_ops = {op.name for op in graph.ops if isinstance(op, Depthwise)
                    and lifetimes.buffer_of[op.output] == lifetimes.buffer_of[op.inputs[0]]}  # fmt: skip
    sizes = [(b.numel, b.start, b.end) for b in lifetimes.buffers]
    scratch_of: dict[str, int] = {}
    for step, op in enumerate(graph.ops):
        if _scratch_bytes(op, in_place_ops):
            scratch_of[op.name] = len(sizes)
            sizes.append((_scratch_bytes(op, in_place_ops), step, step))
    placement = place_buffers(sizes, strategy)
    tensor_offset = {t: placement.offsets[b] for t, b in lifetimes.buffer_of.items()}
    scratch_offset = {name: placement.offsets[i] for name, i in scratch_of.items()}
    return MemoryLayout(lifetimes, placement, tensor_offset, scratch_offset, in_place_ops)


@dataclass
class MemoryReport:
    """Peak SRAM of this plan beside a TFLite-Micro-style plan and the naive sum."""

    arena_bytes: int
    lower_bound_bytes: int
    tflm_bytes: int
    naive_bytes: int

    def to_dict(self) -> dict[str, int]:
        """Plain-data form for JSON output."""
        return dict(self.__dict__)


def memory_report(graph: Graph, layout: MemoryLayout) -> MemoryReport:
    """Compare ``layout`` with the TFLM-style plan (no in-place, greedy by size) and with no planning at all.

    ``graph`` is the layer-by-layer graph (before any patch stage), as TensorFlow Lite Micro would run it.

    Example:
        >>> # see tests/deploy/test_planner.py
    """
    tflm = plan_memory(graph, in_place=False, strategy="greedy_by_size")
    naive = sum(op.out_numel for op in graph.ops if not op.is_view)
    return MemoryReport(layout.arena_bytes, layout.peak_live_bytes, tflm.arena_bytes, naive)
