"""The deploy IR: an integer model as a list of typed ops on HWC tensors, batch 1.

:func:`lower` turns a :class:`~leanml.quant.integer.IntegerModel` (NCHW,
Python reference) into IR ops with static shapes. Activations are HWC (NHWC
as TinyEngine), so each op's inner loop runs over contiguous channels.
Weights are re-laid out once here: convs OHWI, depthwise (kh, kw, C), linear
(out, in) with its input columns permuted from the reference's C,H,W flatten
order to H,W,C. Every op knows its MACs, weight bytes and output size; the
code generator (:mod:`leanml.deploy.codegen`) asks each op for its C.

Supported: the integer reference's ops (quantize input, conv standard / 1x1 /
depthwise / grouped, linear, residual add, max and average pooling, flatten,
clamp). Anything else is a clear error naming the supported list.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> from leanml.quant import QuantSim, convert
    >>> sim = QuantSim.from_model(build_model("vgg").eval())
    >>> sim.calibrate([torch.randn(4, 1, 28, 28)])
    >>> graph = lower(convert(sim), (1, 28, 28))
    >>> graph.ops[1].kind, graph.ops[1].out_shape
    ('conv', (28, 28, 32))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leanml.errors import LeanmlError
from leanml.profile.macs import count_macs
from leanml.quant import integer_ops as iq
from leanml.quant.integer import IntegerModel
from leanml.quant.integer_ops import OpRegistry, TensorQ

Shape = tuple[int, ...]  # (H, W, C) for maps, (F,) for vectors


def c_identifier(name: str, used: set[str]) -> str:
    """A unique, safe C identifier for ``name`` (letters, digits, underscores; never a keyword or a clash).

    Example:
        >>> c_identifier("blocks.0/conv-1; DROP", set())
        'blocks_0_conv_1__DROP'
    """
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)[:48] or "t"
    if not re.match(r"[A-Za-z_]", ident):
        ident = "t_" + ident
    base, n = ident, 1
    while ident in used or ident in _C_RESERVED:
        ident, n = f"{base}_{n}", n + 1
    used.add(ident)
    return ident


_C_RESERVED = frozenset({
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while",
    "arena", "input", "output", "main",
})  # fmt: skip


@dataclass
class Op:
    """Fields every IR op has: a C-safe name, input tensor names, output tensor name and shape."""

    name: str
    inputs: tuple[str, ...]
    output: str
    in_shapes: tuple[Shape, ...]
    out_shape: Shape

    kind = "op"  # picks the C kernel
    table_kind = "other"  # the op's kind in the one MAC table and the one reuse-rule table (leanml.profile)

    @property
    def out_numel(self) -> int:
        """Elements (= int8 bytes) of the output."""
        return math.prod(self.out_shape)

    def macs(self) -> int:
        """Multiply-accumulates at batch 1."""
        return 0

    def weight_bytes(self) -> int:
        """Bytes of constant data (weights, biases, requantization constants) this op puts in flash."""
        return 0

    def scratch_bytes(self) -> int:
        """Working memory the op needs while it runs, besides its input and output tensors."""
        return 0

    @property
    def is_view(self) -> bool:
        """True when the output is the input's bytes reinterpreted (no code, no buffer)."""
        return False


@dataclass
class Quantize(Op):
    """float32 HWC input → int8 with the input quantization."""

    q: TensorQ = field(default_factory=lambda: TensorQ(1.0, 0))
    kind = "quantize"
    table_kind = "quantize"


@dataclass
class Requantized(Op):
    """A weighted layer: int8 weights, int32 bias, per-output-channel Q31 requantization, fused clamp."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int8: OHWI, (kh, kw, C) depthwise, (out, in)
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int32 (C_out,)
    multiplier: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int32 (C_out,)
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int32 (C_out,)
    in_zp: int = 0
    out_zp: int = 0
    act_min: int = -128
    act_max: int = 127
    weight_bits: int = 8  # 4: stored two per byte in flash (leanml.deploy.weights), read by the w4 kernels

    def weight_bytes(self) -> int:
        stored = int(self.weight.size) if self.weight_bits == 8 else (int(self.weight.size) + 1) // 2
        return stored + 4 * 3 * len(self.bias)


@dataclass
class Conv(Requantized):
    """Conv with fused bias, per-channel requantization and clamp; ``kind`` picks the kernel."""

    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    kind = "conv"
    table_kind = "conv"

    def macs(self) -> int:
        return count_macs(self.table_kind, self.out_numel, self.in_shapes[0][2], self.kernel, self.groups)


@dataclass
class Conv1x1(Conv):
    """1x1, stride 1, no padding, one group: an int8 GEMM over pixels."""

    kind = "conv1x1"


@dataclass
class Depthwise(Conv):
    """Depthwise conv (groups = C_in = C_out); the planner may run it in place over its input buffer."""

    kind = "depthwise"
    table_kind = "depthwise"


@dataclass
class Linear(Requantized):
    """Fully connected layer; weight (out, in) with its columns already in HWC flatten order."""

    kind = "linear"
    table_kind = "linear"

    def macs(self) -> int:
        return count_macs(self.table_kind, self.out_numel, int(self.weight.shape[1]))


@dataclass
class Add(Op):
    """Residual add by TFLite's rescaling rule."""

    a_zp: int = 0
    b_zp: int = 0
    a_multiplier: int = 0
    a_shift: int = 0
    b_multiplier: int = 0
    b_shift: int = 0
    out_multiplier: int = 0
    out_shift: int = 0
    out_zp: int = 0
    act_min: int = -128
    act_max: int = 127
    kind = "add"
    table_kind = "add"


@dataclass
class Pool(Op):
    """Max or average pooling; ``kernel`` equal to the input map is a global pool."""

    mode: str = "max"  # max | avg
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    kind = "pool"
    table_kind = "pool"


@dataclass
class Flatten(Op):
    """(H, W, C) → (H*W*C,): a view; the consumer's weights were permuted to HWC order."""

    kind = "flatten"
    table_kind = "view"

    @property
    def is_view(self) -> bool:
        return True


@dataclass
class Clamp(Op):
    """Standalone ReLU/ReLU6 on int8 values, in place."""

    act_min: int = -128
    act_max: int = 127
    kind = "clamp"
    table_kind = "activation"


@dataclass
class Softmax(Op):
    """TFLite's int8 softmax over the last axis (output scale 1/256, zero point -128), in place allowed.

    ``input_multiplier``/``input_left_shift`` hold beta * input scale * 2^26 as a Q31 multiplier; differences
    from the row maximum below ``diff_min`` give exp 0. Made by the ``.tflite`` importer.
    """

    input_multiplier: int = 0
    input_left_shift: int = 0
    diff_min: int = 0
    kind = "softmax"
    table_kind = "activation"


@dataclass
class Mean(Op):
    """TFLite's int8 MEAN over the spatial axes of an (H, W, C) map → (C,) (or (1, 1, C)): the sum of x - in_zp
    requantized by ``multiplier``/``shift``, which fold 1 / (H * W) into in_scale / out_scale (TFLite's
    QuantizedMeanOrSum), + out_zp, clamped. Made by the ``.tflite`` importer."""

    in_zp: int = 0
    out_zp: int = 0
    multiplier: int = 0
    shift: int = 0
    kind = "mean"
    table_kind = "pool"


@dataclass
class Graph:
    """IR ops in execution order, the input and output tensors, and their quantization."""

    ops: list[Op]
    input: str
    output: str
    input_shape: Shape  # HWC
    input_q: TensorQ
    output_q: TensorQ
    output_perm: np.ndarray | None = None  # HWC → reference (CHW) order of the output elements, when spatial

    def macs(self) -> int:
        """Total MACs at batch 1."""
        return sum(op.macs() for op in self.ops)

    def weight_bytes(self) -> int:
        """Total constant bytes (flash for weights and quantization constants)."""
        return sum(op.weight_bytes() for op in self.ops)


def _pool_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _i32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


@dataclass
class Lowering:
    """What lowering has built so far: C-safe tensor names, HWC shapes, flatten orders and the IR ops."""

    used: set[str] = field(default_factory=set)  # C identifiers taken
    names: dict[str, str] = field(default_factory=dict)  # reference tensor name -> C-safe name
    shapes: dict[str, Shape] = field(default_factory=dict)
    chw_order: dict[str, np.ndarray] = field(default_factory=dict)  # flattened: HWC position -> CHW index
    ops: list[Op] = field(default_factory=list)

    def tensor(self, ref: str) -> str:
        """The C-safe name of reference tensor ``ref``."""
        if ref not in self.names:
            self.names[ref] = c_identifier(ref, self.used)
        return self.names[ref]

    def unary(self, ref_op: Any) -> tuple[str, str, Shape]:
        """(input, output, input shape) of a one-input op."""
        src = self.tensor(ref_op.input)
        return src, self.tensor(ref_op.output), self.shapes[src]

    def keep_order(self, src: str, out: str) -> None:
        """``out`` has ``src``'s element order (elementwise ops on flattened tensors)."""
        if src in self.chw_order:
            self.chw_order[out] = self.chw_order[src]


# (reference op, C-safe op name, input shape (H, W, C), lowering state) -> the IR op
LOWERINGS = OpRegistry[Callable[[Any, str, Shape, Lowering], Op]]("deploy")
register_lowering = LOWERINGS.register


@register_lowering(iq.QuantizeInput)
def _quantize(ref_op: iq.QuantizeInput, name: str, hwc: Shape, low: Lowering) -> Op:
    return Quantize(name, (), low.tensor(ref_op.output), (), hwc, q=ref_op.q)


@register_lowering(iq.QConv2d)
def _conv(ref_op: iq.QConv2d, name: str, hwc: Shape, low: Lowering) -> Op:
    src, out, shp = low.unary(ref_op)
    if len(shp) != 3:
        raise LeanmlError(f"conv {ref_op.name!r} reads a flattened tensor", "the model graph is malformed")
    ih, iw, ic = shp
    oc, _, kh, kw = ref_op.weight.shape
    oh = _pool_out(ih, kh, ref_op.stride[0], ref_op.padding[0])
    ow = _pool_out(iw, kw, ref_op.stride[1], ref_op.padding[1])
    common: dict[str, Any] = dict(
        bias=_i32(ref_op.bias), multiplier=_i32(ref_op.multiplier), shift=_i32(ref_op.shift), kernel=(kh, kw),
        stride=tuple(ref_op.stride), padding=tuple(ref_op.padding), groups=ref_op.groups,
        in_zp=ref_op.in_q.zero_point, out_zp=ref_op.out_q.zero_point, act_min=ref_op.act_min,
        act_max=ref_op.act_max,
    )  # fmt: skip
    if ref_op.groups == ic == oc and ic > 1:
        weight = np.ascontiguousarray(ref_op.weight[:, 0].transpose(1, 2, 0), dtype=np.int8)  # (kh, kw, C)
        return Depthwise(name, (src,), out, (shp,), (oh, ow, oc), weight=weight, **common)
    weight = np.ascontiguousarray(ref_op.weight.transpose(0, 2, 3, 1), dtype=np.int8)  # OHWI
    one = (kh, kw) == (1, 1) and tuple(ref_op.stride) == (1, 1) and tuple(ref_op.padding) == (0, 0)
    cls = Conv1x1 if one and ref_op.groups == 1 else Conv
    return cls(name, (src,), out, (shp,), (oh, ow, oc), weight=weight, **common)


@register_lowering(iq.QLinear)
def _linear(ref_op: iq.QLinear, name: str, hwc: Shape, low: Lowering) -> Op:
    src, out, shp = low.unary(ref_op)
    weight = ref_op.weight
    if src in low.chw_order:
        weight = weight[:, low.chw_order[src]]  # columns in the HWC order the C tensor has
    if shp != (weight.shape[1],):
        raise LeanmlError(f"linear {ref_op.name!r} expects {weight.shape[1]} inputs, gets {shp}")
    return Linear(name, (src,), out, (shp,), (weight.shape[0],), weight=np.ascontiguousarray(weight, dtype=np.int8),
                  bias=_i32(ref_op.bias), multiplier=_i32(ref_op.multiplier), shift=_i32(ref_op.shift),
                  in_zp=ref_op.in_q.zero_point, out_zp=ref_op.out_q.zero_point, act_min=ref_op.act_min,
                  act_max=ref_op.act_max)  # fmt: skip


@register_lowering(iq.QAdd)
def _add(ref_op: iq.QAdd, name: str, hwc: Shape, low: Lowering) -> Op:
    a, b = (low.tensor(t) for t in ref_op.inputs)
    out = low.tensor(ref_op.output)
    if low.shapes[a] != low.shapes[b]:
        raise LeanmlError(f"add {ref_op.name!r} has inputs of shapes {low.shapes[a]} and {low.shapes[b]}")
    low.keep_order(a, out)
    return Add(name, (a, b), out, (low.shapes[a], low.shapes[b]), low.shapes[a], a_zp=ref_op.a_q.zero_point,
               b_zp=ref_op.b_q.zero_point, a_multiplier=ref_op.a_multiplier, a_shift=ref_op.a_shift,
               b_multiplier=ref_op.b_multiplier, b_shift=ref_op.b_shift, out_multiplier=ref_op.out_multiplier,
               out_shift=ref_op.out_shift, out_zp=ref_op.out_q.zero_point, act_min=ref_op.act_min,
               act_max=ref_op.act_max)  # fmt: skip


def _pool(ref_op: iq.QMaxPool | iq.QAvgPool, name: str, low: Lowering, mode: str, k: Shape, s: Shape,
          p: Shape) -> Op:  # fmt: skip
    src, out, shp = low.unary(ref_op)
    ih, iw, ic = shp
    out_shape = (_pool_out(ih, k[0], s[0], p[0]), _pool_out(iw, k[1], s[1], p[1]), ic)
    return Pool(name, (src,), out, (shp,), out_shape, mode=mode, kernel=(k[0], k[1]), stride=(s[0], s[1]),
                padding=(p[0], p[1]))  # fmt: skip


@register_lowering(iq.QMaxPool)
def _maxpool(ref_op: iq.QMaxPool, name: str, hwc: Shape, low: Lowering) -> Op:
    return _pool(ref_op, name, low, "max", ref_op.kernel, ref_op.stride, ref_op.padding)


@register_lowering(iq.QAvgPool)
def _avgpool(ref_op: iq.QAvgPool, name: str, hwc: Shape, low: Lowering) -> Op:
    if ref_op.kernel is None:  # global: the whole input map
        ih, iw, _ = low.shapes[low.tensor(ref_op.input)]
        return _pool(ref_op, name, low, "avg", (ih, iw), (1, 1), (0, 0))
    assert ref_op.stride is not None
    return _pool(ref_op, name, low, "avg", ref_op.kernel, ref_op.stride, (0, 0))


@register_lowering(iq.QFlatten)
def _flatten(ref_op: iq.QFlatten, name: str, hwc: Shape, low: Lowering) -> Op:
    src, out, shp = low.unary(ref_op)
    if ref_op.start != 1:
        raise LeanmlError(f"flatten {ref_op.name!r} from dim {ref_op.start} is not supported", "flatten(x, 1)")
    if len(shp) == 3 and shp[0] * shp[1] > 1:
        fh, fw, fc = shp
        # HWC position (y, x, c) holds CHW element c*H*W + y*W + x
        low.chw_order[out] = np.arange(fc * fh * fw).reshape(fc, fh, fw).transpose(1, 2, 0).reshape(-1)
    return Flatten(name, (src,), out, (shp,), (math.prod(shp),))


@register_lowering(iq.QClamp)
def _clamp(ref_op: iq.QClamp, name: str, hwc: Shape, low: Lowering) -> Op:
    src, out, shp = low.unary(ref_op)
    low.keep_order(src, out)
    return Clamp(name, (src,), out, (shp,), shp, act_min=ref_op.act_min, act_max=ref_op.act_max)


def lower(model: IntegerModel, input_shape: tuple[int, int, int]) -> Graph:
    """Lower an integer model for inputs of shape (C, H, W) into the HWC IR; unsupported ops raise.

    Each op goes through its function in :data:`LOWERINGS` (add one with :func:`register_lowering`).

    Example:
        >>> lower(object(), (1, 28, 28))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        LeanmlError: ...
    """
    if not isinstance(model, IntegerModel):
        raise LeanmlError(f"deploy needs an integer model, got {type(model).__name__}",
                          "convert it first: `leanml quantize linear CKPT --out MODEL`")  # fmt: skip
    c, h, w = input_shape
    low = Lowering()
    for ref_op in model.ops:
        name = c_identifier(f"op{len(low.ops)}_{ref_op.name}", low.used)
        op = LOWERINGS.handler(ref_op)(ref_op, name, (h, w, c), low)
        low.shapes[op.output] = op.out_shape
        low.ops.append(op)
    out = low.tensor(model.output)
    perm = None
    if len(low.shapes[out]) == 3:
        oh, ow, oc = low.shapes[out]
        perm = np.arange(oh * ow * oc).reshape(oh, ow, oc).transpose(2, 0, 1).reshape(-1)  # CHW pos -> HWC index
    elif out in low.chw_order:
        perm = np.argsort(low.chw_order[out])
    return Graph(low.ops, low.tensor(model.ops[0].output), out, (h, w, c), model.input_q, model.output_q, perm)
