"""Row streaming (line buffers): consecutive ops run row by row at the step of the last one, so their inner
tensors are never whole. A conv chain ``last(...(x))`` or a residual block ``add(branch_a(x), branch_b(x))``
becomes a :class:`StreamBlock` with a static schedule the code generator writes; the planner
(:mod:`leanml.deploy.planner`) picks the blocks (:func:`stream_candidates`, :func:`make_block`) around the peak.

Example:
    >>> from leanml.deploy.ir import Graph
    >>> stream_candidates(Graph([], "x", "y", (1, 1, 1), None, None))  # type: ignore[arg-type]
    []
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leanml.deploy.ir import Add, Conv, Graph, Op

Ptr = tuple[str, int]  # ("x" stage input | "o" stage output | "s" stage scratch, byte offset)


@dataclass
class StreamBlock:
    """Consecutive ops run row by row at the step of the last one: a conv chain ``last(...(x))`` or a residual
    block ``add(branch_a(x), branch_b(x))`` (branches: conv chains, one may be the identity).

    Every inner tensor lives in a line buffer of as many rows as its reader's kernel is high; each output row is
    computed once and written into the full output, which lies over ``x`` when ``in_place`` (every ``x`` row it
    overwrites is read for the last time before). ``actions`` is the static schedule the code generator writes.
    """

    last: Op  # the Add or the last conv
    ops: list[Op]  # the other ops (convs), in graph order
    input: str  # x
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # inner tensor -> (scratch offset, rows)
    tmp_offset: int = 0  # one output row (scratch), when in place
    scratch_bytes: int = 0
    in_place: bool = False
    # ("shift", tensor, rows kept) | ("conv", op, in ptr, in rows, top pad, out ptr) | ("add", a ptr, b ptr, out ptr)
    # | ("copy", output row): the row from tmp into the output
    actions: list[tuple] = field(default_factory=list)  # type: ignore[type-arg]

    def macs(self) -> int:
        """MACs executed: the same as layer by layer (each row is computed once)."""
        return sum(op.macs() for op in (*self.ops, self.last))


def _row_bytes(shape: tuple[int, ...]) -> int:
    return shape[1] * shape[2]


def _conv_rows(op: Conv, row: int) -> tuple[int, int, int]:
    """Input rows [a, b) that output row ``row`` of ``op`` reads, and the padding rows above them."""
    top = row * op.stride[0] - op.padding[0]
    return max(top, 0), min(top + op.kernel[0], op.in_shapes[0][0]), max(0, -top)


def _schedule(block: StreamBlock, in_place: bool) -> bool:
    """Fill the block's line buffers and actions; True when the output may overwrite ``x`` (checked row by row)."""
    producer = {op.output: op for op in block.ops}
    consumer = {src: op for op in (*block.ops, block.last) for src in op.inputs}
    shapes = {op.output: op.out_shape for op in block.ops}
    shapes[block.input] = next(
        shape
        for op in (*block.ops, block.last)
        for src, shape in zip(op.inputs, op.in_shapes, strict=True)
        if src == block.input
    )
    offset, windows = 0, {}
    for op in block.ops:
        cons = consumer[op.output]
        rows = cons.kernel[0] if isinstance(cons, Conv) else 1
        windows[op.output] = (offset, rows)
        offset += rows * _row_bytes(op.out_shape)
    block.windows, block.tmp_offset = windows, offset
    out_rb = _row_bytes(block.last.out_shape)
    block.scratch_bytes = offset + (out_rb if in_place else 0)
    lo, done = dict.fromkeys(windows, 0), dict.fromkeys(windows, 0)
    last_read: dict[int, int] = {}  # x row -> index of the last action reading it
    writes: list[int] = []  # output row -> index of the action writing it
    actions: list[tuple] = []  # type: ignore[type-arg]

    def rows_of(t: str, a: int) -> Ptr:
        if t == block.input:
            return ("x", a * _row_bytes(shapes[t]))
        return ("s", windows[t][0] + (a - lo[t]) * _row_bytes(shapes[t]))

    def fetch(src: str, a: int, b: int) -> Ptr:
        """Make rows [a, b) of ``src`` available; their pointer."""
        if src == block.input:
            for y in range(a, b):
                last_read[y] = len(actions)
        else:
            ensure(src, b - 1)
        return rows_of(src, a)

    def ensure(t: str, row: int) -> None:
        op = producer[t]
        assert isinstance(op, Conv)
        while done[t] <= row:
            k = done[t]
            a, b, top = _conv_rows(op, k)
            src = fetch(op.inputs[0], a, b)
            if k - lo[t] == windows[t][1]:  # full: drop the oldest row (never read again: rows come in order)
                lo[t] += 1
                actions.append(("shift", t, windows[t][1] - 1))
                src = rows_of(op.inputs[0], a)
            actions.append(("conv", op, src, b - a, top, rows_of(t, k)))
            done[t] += 1

    for r in range(block.last.out_shape[0]):
        out: Ptr = ("s", block.tmp_offset) if in_place else ("o", r * out_rb)
        if isinstance(block.last, Conv):
            a, b, top = _conv_rows(block.last, r)
            actions.append(("conv", block.last, fetch(block.last.inputs[0], a, b), b - a, top, out))
        else:
            ptrs = [fetch(src, r, r + 1) for src in block.last.inputs]
            actions.append(("add", ptrs[0], ptrs[1], out))
        writes.append(len(actions))
        if in_place:
            actions.append(("copy", r))
    block.actions = actions
    if not in_place:
        return False
    x_rb = _row_bytes(shapes[block.input])  # output row r is copied over x at writes[r]: x rows under it done?
    return all(last_read.get(y, -1) < t for r, t in enumerate(writes)
               for y in range(r * out_rb // x_rb, ((r + 1) * out_rb - 1) // x_rb + 1))  # fmt: skip


def make_block(graph: Graph, steps: list[int]) -> StreamBlock | None:
    """The ops at ``steps`` (consecutive, ending at a conv or a residual add) as a scheduled block, or None when
    they do not form one: convs whose inner tensors have one reader each, all inside, reading one outside ``x``."""
    ops = [graph.ops[i] for i in steps]
    last, inner = ops[-1], ops[:-1]
    if not inner or any(not isinstance(op, Conv) or len(op.out_shape) != 3 for op in inner):
        return None
    if not isinstance(last, (Conv, Add)) or len(last.out_shape) != 3 or len(set(last.inputs)) != len(last.inputs):
        return None
    outputs = {op.output for op in inner}
    outside = {src for op in ops for src in op.inputs if src not in outputs}
    if len(outside) != 1 or graph.output in outputs:
        return None
    x = outside.pop()
    readers = {t: sum(op.inputs.count(t) for op in graph.ops) for t in outputs}
    inside_readers = {t: sum(op.inputs.count(t) for op in ops) for t in outputs}
    if any(readers[t] != 1 or inside_readers[t] != 1 for t in outputs):
        return None
    block = StreamBlock(last, inner, x)
    block.in_place = _schedule(block, True)
    if not block.in_place:
        _schedule(block, False)
    return block


def stream_candidates(graph: Graph, max_ops: int = 4) -> list[list[int]]:
    """Step ranges that may stream: every residual block, and conv chains of 2 to ``max_ops`` ops.

    Example:
        >>> # see tests/deploy/test_fused.py
    """
    producer = {op.output: i for i, op in enumerate(graph.ops)}
    readers: dict[str, int] = {}
    for op in graph.ops:
        for src in op.inputs:
            readers[src] = readers.get(src, 0) + 1
    ranges = []
    for j, op in enumerate(graph.ops):
        if isinstance(op, Add):  # back through its branches' convs to the tensor they share
            steps = {j}
            for src in op.inputs:
                while src in producer and isinstance(graph.ops[producer[src]], Conv) and readers[src] == 1:
                    steps.add(producer[src])
                    src = graph.ops[producer[src]].inputs[0]
            ranges.append(list(range(min(steps), j + 1)))
        elif isinstance(op, Conv):
            ranges += [list(range(j - n + 1, j + 1)) for n in range(2, max_ops + 1) if j - n + 1 >= 1]
    return ranges
