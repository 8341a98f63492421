"""The one memory model: activation tensors, their lifetimes, and the peak.

``profile`` reports it, NAS uses it as the peak-SRAM figure, and the deploy
planner places the same buffers in its arena. Rules, at batch 1 by default:

- ops run one at a time in graph order; at step *i* the live tensors are those
  produced at or before *i* and still needed at or after *i* (so an op's
  inputs and output are live together);
- the graph input lives from step 0, the graph outputs to the last step;
- which ops may write their output over their input is **the one reuse-rule
  table**, :data:`REUSE_RULES`, keyed by op kind: views and elementwise unary
  ops (BN, ReLU/ReLU6, flatten, dropout: what deployment fuses into the
  producer) reuse their input's buffer when they are its last reader, a
  depthwise conv or a pointwise (1x1, stride 1) conv does so only where the
  engine runs it in place (the deploy planner: a traced graph calls every conv
  ``conv``, so profile and NAS, which describe a layer-by-layer engine, never
  apply it), every other op (conv, linear, pooling, residual add, concat)
  allocates its output;
- tensors sharing a buffer start at its offset; the buffer's footprint at a
  step is its largest tensor live at that step (an in-place op whose output is
  larger than its input grows the buffer from that step on, not before).

Bytes are element counts times bytes per element (4 for fp32, 1 for int8).

Example:
    >>> from torch import nn
    >>> from leanml.profile.graph import trace_ops
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1))
    >>> plan = activation_buffers(trace_ops(net, (1, 8, 8)))
    >>> plan.peak_numel          # conv2 reads 4*8*8 while writing 8*8*8
    768
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from leanml.profile.graph import OpNode
from leanml.profile.traced_ops import op_shape


class Reuse(Enum):
    """Whether an op's output may live in its first input's buffer (when the op is that input's last reader)."""

    NEVER = "never"  # allocates its output
    ALWAYS = "always"  # a view or an elementwise unary op
    IN_PLACE_KERNEL = "in_place_kernel"  # only where the engine has an in-place kernel for it


# The one reuse-rule table, keyed by the op kinds of the one MAC table (leanml.profile.macs); kinds not
# listed allocate their output.
REUSE_RULES: dict[str, Reuse] = {
    "input": Reuse.NEVER,
    "quantize": Reuse.NEVER,
    "conv": Reuse.NEVER,
    "depthwise": Reuse.IN_PLACE_KERNEL,
    "pointwise": Reuse.IN_PLACE_KERNEL,  # 1x1 stride-1 conv (deploy IR's conv1x1); traced convs are all "conv"
    "linear": Reuse.NEVER,
    "matmul": Reuse.NEVER,
    "norm": Reuse.ALWAYS,
    "activation": Reuse.ALWAYS,
    "view": Reuse.ALWAYS,
    "pool": Reuse.NEVER,
    "add": Reuse.NEVER,
    "mul": Reuse.NEVER,
    "concat": Reuse.NEVER,
}


def reuses_input(kind: str, in_place_kernels: bool = False) -> bool:
    """Whether an op of ``kind`` may write its output over its input, by :data:`REUSE_RULES`.

    in_place_kernels: the engine runs in-place kernels (the deploy planner's in-place depthwise).

    Example:
        >>> reuses_input("activation"), reuses_input("conv"), reuses_input("depthwise")
        (True, False, False)
        >>> reuses_input("depthwise", in_place_kernels=True)
        True
    """
    rule = REUSE_RULES.get(kind, Reuse.NEVER)
    return rule is Reuse.ALWAYS or (rule is Reuse.IN_PLACE_KERNEL and in_place_kernels)


@dataclass
class Buffer:
    """One activation buffer: its size (its largest tensor) and the steps it is live (inclusive).

    ``segments``: (numel, first step, last step) of each tensor living here, all from the buffer's start; at a
    step the buffer holds the largest one live then (:meth:`numel_at`).
    """

    index: int
    numel: int
    start: int
    end: int
    tensors: list[str] = field(default_factory=list)  # op ids whose output lives here
    segments: list[tuple[int, int, int]] = field(default_factory=list)

    def numel_at(self, step: int) -> int:
        """Elements this buffer holds at ``step`` (0 when it is not live)."""
        if not self.segments:
            return self.numel if self.start <= step <= self.end else 0
        return max((n for n, a, b in self.segments if a <= step <= b), default=0)


@dataclass
class MemoryPlan:
    """Buffers with lifetimes, the live element count per step, and the op order."""

    buffers: list[Buffer]
    steps: list[str]  # op display names, one per step
    live_numel: list[int]  # live elements at each step
    buffer_of: dict[str, int]  # op id -> buffer index

    @property
    def peak_numel(self) -> int:
        """Largest number of live activation elements at any step."""
        return max(self.live_numel, default=0)

    @property
    def peak_step(self) -> str:
        """The op at which the peak occurs."""
        return self.steps[self.live_numel.index(self.peak_numel)] if self.steps else ""

    def peak_bytes(self, bytes_per_element: int) -> int:
        """Peak activation memory in bytes for the given element size (4 fp32, 1 int8)."""
        return self.peak_numel * bytes_per_element

    def naive_numel(self) -> int:
        """Sum of all buffers, as if nothing were ever freed (the no-planning bound)."""
        return sum(b.numel for b in self.buffers)


@dataclass(frozen=True)
class TensorNode:
    """One tensor-producing op, as the memory model sees it (any graph: traced torch ops or deploy IR ops)."""

    id: str
    name: str  # display name
    inputs: tuple[str, ...]
    numel: int
    reuse_input: bool = False  # may live in its first input's buffer when it is its last reader (reuses_input)
    is_input: bool = False  # a graph input: live from step 0


def tensor_lifetimes(nodes: list[TensorNode], outputs: list[str]) -> MemoryPlan:
    """Assign tensors to buffers and compute lifetimes and the live size per step (the rules above).

    nodes: in execution order, one step each; outputs: ids that must live to the last step.

    Example:
        >>> nodes = [TensorNode("x", "x", (), 10, is_input=True), TensorNode("y", "relu", ("x",), 10, True),
        ...          TensorNode("z", "fc", ("y",), 4)]
        >>> plan = tensor_lifetimes(nodes, ["z"])
        >>> len(plan.buffers), plan.peak_numel
        (2, 14)
    """
    last_step = len(nodes) - 1
    last_use = {n.id: i for i, n in enumerate(nodes)}
    for i, n in enumerate(nodes):
        for src in n.inputs:
            if src in last_use:
                last_use[src] = max(last_use[src], i)
    for out in outputs:
        last_use[out] = last_step
    buffers: list[Buffer] = []
    buffer_of: dict[str, int] = {}
    for i, n in enumerate(nodes):
        first = n.inputs[0] if n.inputs else None
        if first is not None and n.reuse_input and first in buffer_of and last_use[first] == i:
            buf = buffers[buffer_of[first]]  # written over its input: same start, grows if larger
            buf.end = max(buf.end, last_use[n.id])
            buf.numel = max(buf.numel, n.numel)
            buf.tensors.append(n.id)
            buf.segments.append((n.numel, i, last_use[n.id]))
            buffer_of[n.id] = buf.index
            continue
        start = 0 if n.is_input else i
        buffers.append(Buffer(len(buffers), n.numel, start, last_use[n.id], [n.id], [(n.numel, start, last_use[n.id])]))
        buffer_of[n.id] = len(buffers) - 1
    live = [sum(b.numel_at(i) for b in buffers) for i in range(len(nodes))]
    return MemoryPlan(buffers, [n.name for n in nodes], live, buffer_of)


def activation_buffers(nodes: list[OpNode]) -> MemoryPlan:
    """Assign each traced tensor to a buffer and compute lifetimes and the live size per step.

    nodes: as returned by :func:`leanml.profile.graph.trace_ops` (execution order).
    """
    ops: list[OpNode] = [n for n in nodes if n.op not in ("output", "get_attr") and n.shape is not None]
    known = {n.id for n in ops}
    tensors = []
    for n in ops:
        inputs = tuple(i for i in n.inputs if i in known)
        reuse = len(n.inputs) == 1 and reuses_input(op_shape(n).kind)  # written over its single input
        tensors.append(TensorNode(n.id, n.name, inputs, n.numel, reuse, n.op == "placeholder"))
    outputs = [src for n in nodes if n.op == "output" for src in n.inputs]
    return tensor_lifetimes(tensors, outputs)
