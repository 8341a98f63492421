"""Static memory plan: every activation byte placed in one arena before the model runs.

Lifetimes come from **the one memory model** (:func:`leanml.profile.memory.tensor_lifetimes`):
the IR's tensors become :class:`~leanml.profile.memory.TensorNode` s and
**the one reuse-rule table** (:func:`~leanml.profile.memory.reuses_input`)
decides which reuse their input's buffer when they are its last reader: views
(flatten), clamps, and, when ``in_place``, depthwise convs and 1x1 convs (the
table's ``pointwise`` kind; the kernel runs forward when channels shrink,
backward when they grow). Tensors sharing a buffer start at its offset and the
buffer holds, at each step, its largest tensor live then (its *segments*), so a
1x1 conv that grows 8 to 16 channels needs the larger map + a chunk, not both.

Row streaming (deploy only, when ``in_place``): a conv chain or a residual
block (:class:`~leanml.deploy.patch.StreamBlock`) runs row by row at its last
op's step; its inner tensors become line buffers (a few rows, in the block's
scratch; size 0 in the memory model) and its output lies over its input when
every input row is read before an output row covers it. Blocks are chosen
greedily where they lower the arena; each row is computed once (no MAC
overhead). Profile and NAS describe a layer-by-layer engine and apply neither
rule (their traced convs are all ``conv``).

Scratch (the one-channel temp buffer of an in-place depthwise conv, the pixel
chunk of an in-place 1x1 conv, a block's line buffers, a patch stage's own
small arena) is a buffer live for its op's step only. Buffers are then placed
at arena offsets by a greedy strategy: ``greedy_by_size`` (what TensorFlow Lite
Micro's planner does: largest first, lowest offset that does not collide with a
time-overlapping buffer) or ``greedy_by_start``; ``best`` keeps the smaller
arena.

The figures reported beside each other: the arena (this plan), a
TFLite-Micro-style plan (no in-place ops, no streaming, greedy by size), the
naive sum of all tensors, and the lower bound (most bytes ever live at once).

Example:
    >>> plan = place_buffers([(100, 0, 1), (50, 1, 2), (100, 2, 3)], "greedy_by_size")
    >>> plan.arena_bytes  # sizes rounded up to 16-byte alignment: 112 + 64, the third reuses the first's bytes
    176
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leanml.deploy.ir import Conv1x1, Depthwise, Graph, Op
from leanml.deploy.stream import StreamBlock, make_block, stream_candidates
from leanml.errors import LeanmlError
from leanml.profile.memory import MemoryPlan, TensorNode, reuses_input, tensor_lifetimes

ALIGN = 16
STRATEGIES = ("greedy_by_size", "greedy_by_start", "best")
STREAM_MIN_GAIN = 0.05  # row streaming is taken where it cuts the arena by at least this fraction


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Placement:
    """Offsets of buffers (index -> byte offset) in an arena of ``arena_bytes``.

    ``segments``: per buffer, (bytes, first step, last step) of each tensor it holds, all from its offset;
    ``sizes``/``lifetimes`` are their largest size and the union of their steps.
    """

    offsets: list[int]
    sizes: list[int]
    lifetimes: list[tuple[int, int]]  # inclusive (first step, last step)
    arena_bytes: int
    strategy: str
    segments: list[list[tuple[int, int, int]]] = field(default_factory=list)


Segments = list[tuple[int, int, int]]


def place_buffers(buffers: list[tuple[int, int, int]], strategy: str = "best") -> Placement:
    """Place (bytes, first step, last step) buffers; two buffers live at a common step never overlap.

    Example:
        >>> place_buffers([(10, 0, 0), (10, 1, 1)]).arena_bytes  # disjoint lifetimes share the bytes
        16
    """
    return place_segments([[b] for b in buffers], strategy)


def place_segments(buffers: list[Segments], strategy: str = "best") -> Placement:
    """Place buffers given as segments (bytes, first step, last step) sharing one offset each (a buffer whose
    tensors grow or shrink over time); two segments of different buffers live at a common step never overlap.

    Example:
        >>> # 100 bytes at steps 0-1 growing to 300 at step 2, and 150 bytes at steps 0-1: the second lies in
        >>> # the first's future tail (16-byte aligned: 112 + 160 <= 304), not after its 304 bytes
        >>> place_segments([[(100, 0, 1), (300, 2, 2)], [(150, 0, 1)]], "greedy_by_start").arena_bytes
        304
    """
    if strategy not in STRATEGIES:
        raise LeanmlError(f"unknown placement strategy {strategy!r}", f"choose one of: {', '.join(STRATEGIES)}")
    if strategy == "best":
        plans = [place_segments(buffers, s) for s in STRATEGIES[:-1]]
        return min(plans, key=lambda p: p.arena_bytes)
    size = [max((_align(n) for n, _, _ in segs), default=0) for segs in buffers]
    start = [min((a for _, a, _ in segs), default=0) for segs in buffers]
    idx = list(range(len(buffers)))
    if strategy == "greedy_by_size":
        idx.sort(key=lambda i: (-size[i], start[i], i))
    else:
        idx.sort(key=lambda i: (start[i], -size[i], i))
    offsets = [0] * len(buffers)
    placed: list[int] = []
    for i in idx:
        # per own segment, the byte ranges other placed buffers hold while it is live
        needs = []
        for n, a, b in buffers[i]:
            busy = [(offsets[j], offsets[j] + _align(m)) for j in placed for m, c, d in buffers[j] if c <= b and a <= d]
            needs.append((_align(n), busy))
        candidates = sorted({0, *(hi for _, busy in needs for _, hi in busy)})
        offsets[i] = next(o for o in candidates
                          if all(o + n <= lo or hi <= o for n, busy in needs for lo, hi in busy if n))  # fmt: skip
        placed.append(i)
    total = max((offsets[i] + size[i] for i in range(len(buffers))), default=0)
    sizes = [max((n for n, _, _ in segs), default=0) for segs in buffers]
    spans = [(start[i], max((b for _, _, b in segs), default=0)) for i, segs in enumerate(buffers)]
    return Placement(offsets, sizes, spans, total, strategy, [list(s) for s in buffers])


def tensor_nodes(graph: Graph, in_place: bool) -> list[TensorNode]:
    """The graph's tensors for the one memory model (int8: one byte per element), reuse by its rule table.

    A 1x1 conv (the IR's ``conv1x1``, table kind ``conv``) is the table's ``pointwise`` kind.
    """
    nodes = []
    for op in graph.ops:
        kind = "pointwise" if isinstance(op, Conv1x1) else op.table_kind
        reuse = reuses_input(kind, in_place_kernels=in_place)
        nodes.append(TensorNode(op.output, op.name, op.inputs, op.out_numel, reuse, op.kind == "quantize"))
    return nodes


@dataclass
class MemoryLayout:
    """Where every tensor lives: the lifetimes, the placement, and each op's scratch offset and size."""

    lifetimes: MemoryPlan
    placement: Placement
    tensor_offset: dict[str, int]  # tensor -> arena offset
    scratch_offset: dict[str, int]  # op name -> arena offset of its scratch
    in_place: set[str]  # ops (depthwise, 1x1 conv, streamed block) whose output is written over their input
    scratch_bytes: dict[str, int] = field(default_factory=dict)  # op name -> bytes of its scratch
    blocks: dict[str, StreamBlock] = field(default_factory=dict)  # residual add -> its row-streamed block
    streamed: set[str] = field(default_factory=set)  # ops run inside a block (at the block's add)

    @property
    def arena_bytes(self) -> int:
        """Bytes of the static arena (activations + scratch)."""
        return self.placement.arena_bytes

    @property
    def peak_live_bytes(self) -> int:
        """Lower bound: the most activation + scratch bytes live at one step."""
        return max(_step_totals(self), default=0)


POINTWISE_CHUNK_BYTES = 2048  # input bytes an in-place 1x1 conv copies aside at a time (at least one row)


def pointwise_chunk(op: Op) -> int:
    """Pixels an in-place 1x1 conv copies aside at a time: the map in equal chunks of at most
    :data:`POINTWISE_CHUNK_BYTES` (each chunk is one kernel call, which folds the zero point into the bias again:
    fewer, larger chunks cost fewer instructions), or one row when a row is larger.

    Example:
        >>> from leanml.deploy.ir import Conv1x1
        >>> pointwise_chunk(Conv1x1("c", ("x",), "y", ((25, 5, 64),), (25, 5, 64)))  # 8000 bytes: 4 x 32 pixels
        32
    """
    h, w, c = op.in_shapes[0]
    pixels = h * w
    chunks = max(1, -(-pixels * c // POINTWISE_CHUNK_BYTES))
    return max(-(-pixels // chunks), min(w, pixels), 1)


def _scratch_bytes(op: Op, in_place: set[str]) -> int:
    if op.name in in_place and isinstance(op, Depthwise):  # in-place depthwise: one input channel plane
        h, w, _ = op.in_shapes[0]
        return h * w
    if op.name in in_place and isinstance(op, Conv1x1):  # in-place 1x1: a chunk of input pixels
        return pointwise_chunk(op) * op.in_shapes[0][2]
    return op.scratch_bytes()


def plan_memory(graph: Graph, in_place: bool = True, strategy: str = "best",
                stream: list[list[int]] | None = None) -> MemoryLayout:  # fmt: skip
    """Lifetimes from the one memory model, in-place depthwise / 1x1 convs where the input dies there, row-streamed
    blocks where they cut the arena, arena offsets.

    Streaming is chosen greedily: while some candidate block (:func:`~leanml.deploy.patch.stream_candidates`)
    over a step near the peak lowers the arena (or the bytes of the steps near it), the best one is taken; the
    result is kept if it cuts the arena by at least :data:`STREAM_MIN_GAIN`. ``stream``: exactly these step ranges
    (indices into ``graph.ops``) are row-streamed instead.

    Example:
        >>> # see tests/deploy/test_planner.py and tests/deploy/test_fused.py
    """
    if stream is not None:  # exactly these step ranges row-streamed
        blocks = {}
        for steps in stream:
            block = make_block(graph, steps) if in_place else None
            if block is None:
                raise LeanmlError(f"ops {[graph.ops[i].name for i in steps if 0 <= i < len(graph.ops)]} cannot be "
                                  f"row-streamed", "stream consecutive convs (or a residual block ending at its add) "
                                  "whose inner tensors have one reader each; in_place must be on")  # fmt: skip
            blocks[block.last.name] = block
        return _plan(graph, in_place, strategy, blocks)
    plain = _plan(graph, in_place, strategy, {})
    if not in_place:
        return plain
    candidates = stream_candidates(graph)
    made: dict[tuple[int, ...], StreamBlock | None] = {}
    tries = [_greedy(graph, strategy, plain, candidates, made, plateau) for plateau in (False, True)]
    best = min(tries, key=lambda lay: (lay.arena_bytes, len(lay.blocks)))
    return best if best.arena_bytes <= (1 - STREAM_MIN_GAIN) * plain.arena_bytes else plain


def _greedy(graph: Graph, strategy: str, layout: MemoryLayout, candidates: list[list[int]],
            made: dict[tuple[int, ...], StreamBlock | None], plateau: bool) -> MemoryLayout:  # fmt: skip
    """Take the best candidate block near the peak while one lowers the cost (the arena; with ``plateau``, then
    the bytes of the steps near it, so that several equal peaks are worn down one by one)."""
    chosen: dict[str, StreamBlock] = {}
    while True:
        cost = _cost(layout, plateau)
        totals = _step_totals(layout)
        hot = {t for t, v in enumerate(totals) if v >= (1 - STREAM_MIN_GAIN) * max(totals, default=0)}
        best: tuple[tuple[int, ...], MemoryLayout, StreamBlock] | None = None
        for steps in candidates:
            if not hot & set(steps) or {graph.ops[i].name for i in steps} & (layout.streamed | set(chosen)):
                continue
            key = tuple(steps)
            if key not in made:
                made[key] = make_block(graph, steps)
            block = made[key]
            if block is None:
                continue
            trial = _plan(graph, True, strategy, {**chosen, block.last.name: block})
            if _cost(trial, plateau) < (best[0] if best else cost):
                best = (_cost(trial, plateau), trial, block)
        if best is None:
            return layout
        _, layout, block = best
        chosen[block.last.name] = block


def _cost(layout: MemoryLayout, plateau: bool) -> tuple[int, ...]:
    totals = _step_totals(layout)
    near = (1 - STREAM_MIN_GAIN) * max(totals, default=0)
    return (layout.arena_bytes, sum(v for v in totals if v >= near)) if plateau else (layout.arena_bytes,)


def _step_totals(layout: MemoryLayout) -> list[int]:
    segs = layout.placement.segments
    steps = max((b for buf in segs for _, _, b in buf), default=-1) + 1
    return [sum(max((n for n, a, b in buf if a <= t <= b), default=0) for buf in segs) for t in range(steps)]


def _plan(graph: Graph, in_place: bool, strategy: str, blocks: dict[str, StreamBlock]) -> MemoryLayout:
    nodes = tensor_nodes(graph, in_place)
    streamed: set[str] = set()
    for i, op in enumerate(graph.ops):  # a block runs at its add: inner tensors are its line buffers
        block = blocks.get(op.name)
        if block is None:
            continue
        inner = {o.output for o in block.ops}
        streamed |= {o.name for o in block.ops}
        nodes = [TensorNode(n.id, n.name, n.inputs, 0, False) if n.id in inner else n for n in nodes]
        nodes[i] = TensorNode(op.output, op.name, (block.input, *op.inputs), op.out_numel, block.in_place,
                              op.kind == "quantize")  # fmt: skip
    lifetimes = tensor_lifetimes(nodes, [graph.output])
    in_place_ops = set()
    for op in graph.ops:
        src = blocks[op.name].input if op.name in blocks else (op.inputs[0] if op.inputs else None)
        kinds_ok = isinstance(op, (Depthwise, Conv1x1)) or op.name in blocks
        if kinds_ok and src is not None and op.name not in streamed and op.output in lifetimes.buffer_of \
                and lifetimes.buffer_of[op.output] == lifetimes.buffer_of[src]:  # fmt: skip
            in_place_ops.add(op.name)
    segments: list[Segments] = [list(b.segments) or [(b.numel, b.start, b.end)] for b in lifetimes.buffers]
    scratch_of: dict[str, int] = {}
    scratch_bytes: dict[str, int] = {}
    for step, op in enumerate(graph.ops):
        size = blocks[op.name].scratch_bytes if op.name in blocks else _scratch_bytes(op, in_place_ops)
        if size and op.name not in streamed:
            scratch_of[op.name] = len(segments)
            scratch_bytes[op.name] = size
            segments.append([(size, step, step)])
    placement = place_segments(segments, strategy)
    tensor_offset = {t: placement.offsets[b] for t, b in lifetimes.buffer_of.items()}
    scratch_offset = {name: placement.offsets[i] for name, i in scratch_of.items()}
    return MemoryLayout(lifetimes, placement, tensor_offset, scratch_offset, in_place_ops, scratch_bytes, blocks,
                        streamed)  # fmt: skip


def timeline_buffers(graph: Graph, layout: MemoryLayout) -> list[dict[str, int | str]]:
    """Every region of the arena over time, as the plan has it: each tensor (its own steps; tensors of a buffer
    share its offset), each op's scratch (``<op>.scratch``) and each row-streamed tensor's line buffer
    (``<tensor>.rows``, inside its block's scratch); ``first_op``/``last_op`` index ``graph.ops``, inclusive.

    Example:
        >>> # see tests/deploy/test_fused.py
    """
    step_of = {op.name: i for i, op in enumerate(graph.ops)}
    inner = {op.output for block in layout.blocks.values() for op in block.ops}
    out: list[dict[str, int | str]] = []
    for buf in layout.lifetimes.buffers:
        for tensor, (numel, first, last) in zip(buf.tensors, buf.segments, strict=True):
            if tensor not in inner:
                out.append({"tensor": tensor, "offset": layout.tensor_offset[tensor], "size": numel,
                            "first_op": first, "last_op": last})  # fmt: skip
    for name, size in layout.scratch_bytes.items():
        step = step_of[name]
        out.append({"tensor": f"{name}.scratch", "offset": layout.scratch_offset[name], "size": size,
                    "first_op": step, "last_op": step})  # fmt: skip
        block = layout.blocks.get(name)
        for tensor, (offset, rows) in (block.windows if block else {}).items():
            _, w, c = next(op.out_shape for op in block.ops if op.output == tensor)  # type: ignore[union-attr]
            out.append({"tensor": f"{tensor}.rows", "offset": layout.scratch_offset[name] + offset,
                        "size": rows * w * c, "first_op": step, "last_op": step})  # fmt: skip
    return out


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
