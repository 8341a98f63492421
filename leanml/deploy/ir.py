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
from dataclasses import dataclass, field

import numpy as np

from leanml.errors import LeanmlError
from leanml.profile.macs import count_macs
from leanml.quant.integer import IntegerModel
from leanml.quant.integer_ops import (
    QAdd,
    QAvgPool,
    QClamp,
    QConv2d,
    QFlatten,
    QLinear,
    QMaxPool,
    QuantizeInput,
    TensorQ,
)

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
class Conv(Op):
    """Conv with fused bias, per-channel requantization and clamp; ``kind`` picks the kernel."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int8: OHWI, or (kh, kw, C) for depthwise
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int32 (C_out,)
    multiplier: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int32 (C_out,)
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int32 (C_out,)
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    in_zp: int = 0
    out_zp: int = 0
    act_min: int = -128
    act_max: int = 127
    kind = "conv"
    table_kind = "conv"

    def macs(self) -> int:
        return count_macs(self.table_kind, self.out_numel, self.in_shapes[0][2], self.kernel, self.groups)

    def weight_bytes(self) -> int:
        return int(self.weight.size) + 4 * 3 * len(self.bias)


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
class Linear(Op):
    """Fully connected layer; weight columns already in HWC flatten order."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros(0))  # int8 (out, in)
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))
    multiplier: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0))
    in_zp: int = 0
    out_zp: int = 0
    act_min: int = -128
    act_max: int = 127
    kind = "linear"
    table_kind = "linear"

    def macs(self) -> int:
        return count_macs(self.table_kind, self.out_numel, int(self.weight.shape[1]))

    def weight_bytes(self) -> int:
        return int(self.weight.size) + 4 * 3 * len(self.bias)


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


SUPPORTED = ("QuantizeInput", "QConv2d", "QLinear", "QAdd", "QMaxPool", "QAvgPool", "QFlatten", "QClamp")


def _pool_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _i32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


def lower(model: IntegerModel, input_shape: tuple[int, int, int]) -> Graph:
    """Lower an integer model for inputs of shape (C, H, W) into the HWC IR; unsupported ops raise.

    Example:
        >>> lower(object(), (1, 28, 28))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        LeanmlError: ...
    """
    if not isinstance(model, IntegerModel):
        raise LeanmlError(f"deploy needs an integer model, got {type(model).__name__}",
                          "convert it first: `leanml quantize linear CKPT --out MODEL`")  # fmt: skip
    c, h, w = input_shape
    used: set[str] = set()
    names: dict[str, str] = {}  # reference tensor name -> C-safe name

    def tensor(ref: str) -> str:
        if ref not in names:
            names[ref] = c_identifier(ref, used)
        return names[ref]

    shapes: dict[str, Shape] = {}
    chw_order: dict[str, np.ndarray] = {}  # flattened tensors: position in HWC order -> index in CHW order
    ops: list[Op] = []
    for ref_op in model.ops:
        name = c_identifier(f"op{len(ops)}_{ref_op.name}", used)
        if isinstance(ref_op, QuantizeInput):
            out = tensor(ref_op.output)
            shapes[out] = (h, w, c)
            ops.append(Quantize(name, (), out, (), (h, w, c), q=ref_op.q))
        elif isinstance(ref_op, QConv2d):
            src, out = tensor(ref_op.input), tensor(ref_op.output)
            if len(shapes[src]) != 3:
                raise LeanmlError(f"conv {ref_op.name!r} reads a flattened tensor", "the model graph is malformed")
            ih, iw, ic = shapes[src]
            oc, _, kh, kw = ref_op.weight.shape
            oh = _pool_out(ih, kh, ref_op.stride[0], ref_op.padding[0])
            ow = _pool_out(iw, kw, ref_op.stride[1], ref_op.padding[1])
            shapes[out] = (oh, ow, oc)
            common = dict(bias=_i32(ref_op.bias), multiplier=_i32(ref_op.multiplier), shift=_i32(ref_op.shift),
                          kernel=(kh, kw), stride=tuple(ref_op.stride), padding=tuple(ref_op.padding),
                          groups=ref_op.groups, in_zp=ref_op.in_q.zero_point, out_zp=ref_op.out_q.zero_point,
                          act_min=ref_op.act_min, act_max=ref_op.act_max)  # fmt: skip
            if ref_op.groups == ic == oc and ic > 1:
                weight = np.ascontiguousarray(ref_op.weight[:, 0].transpose(1, 2, 0), dtype=np.int8)  # (kh, kw, C)
                ops.append(Depthwise(name, (src,), out, (shapes[src],), shapes[out], weight=weight, **common))  # type: ignore[arg-type]
            else:
                weight = np.ascontiguousarray(ref_op.weight.transpose(0, 2, 3, 1), dtype=np.int8)  # OHWI
                one = (kh, kw) == (1, 1) and tuple(ref_op.stride) == (1, 1) and tuple(ref_op.padding) == (0, 0)
                cls = Conv1x1 if one and ref_op.groups == 1 else Conv
                ops.append(cls(name, (src,), out, (shapes[src],), shapes[out], weight=weight, **common))  # type: ignore[arg-type]
        elif isinstance(ref_op, QLinear):
            src, out = tensor(ref_op.input), tensor(ref_op.output)
            weight = ref_op.weight
            if src in chw_order:
                weight = weight[:, chw_order[src]]  # columns in the HWC order the C tensor has
            if shapes[src] != (weight.shape[1],):
                raise LeanmlError(f"linear {ref_op.name!r} expects {weight.shape[1]} inputs, gets {shapes[src]}")
            shapes[out] = (weight.shape[0],)
            ops.append(Linear(name, (src,), out, (shapes[src],), shapes[out],
                              weight=np.ascontiguousarray(weight, dtype=np.int8), bias=_i32(ref_op.bias),
                              multiplier=_i32(ref_op.multiplier), shift=_i32(ref_op.shift),
                              in_zp=ref_op.in_q.zero_point, out_zp=ref_op.out_q.zero_point,
                              act_min=ref_op.act_min, act_max=ref_op.act_max))  # fmt: skip
        elif isinstance(ref_op, QAdd):
            a, b = (tensor(t) for t in ref_op.inputs)
            out = tensor(ref_op.output)
            if shapes[a] != shapes[b]:
                raise LeanmlError(f"add {ref_op.name!r} has inputs of shapes {shapes[a]} and {shapes[b]}")
            shapes[out] = shapes[a]
            if a in chw_order:
                chw_order[out] = chw_order[a]
            ops.append(Add(name, (a, b), out, (shapes[a], shapes[b]), shapes[out], a_zp=ref_op.a_q.zero_point,
                           b_zp=ref_op.b_q.zero_point, a_multiplier=ref_op.a_multiplier, a_shift=ref_op.a_shift,
                           b_multiplier=ref_op.b_multiplier, b_shift=ref_op.b_shift,
                           out_multiplier=ref_op.out_multiplier, out_shift=ref_op.out_shift,
                           out_zp=ref_op.out_q.zero_point, act_min=ref_op.act_min, act_max=ref_op.act_max))  # fmt: skip
        elif isinstance(ref_op, QMaxPool | QAvgPool):
            src, out = tensor(ref_op.input), tensor(ref_op.output)
            ih, iw, ic = shapes[src]
            if isinstance(ref_op, QAvgPool) and ref_op.kernel is None:
                k, s, p = (ih, iw), (1, 1), (0, 0)
            else:
                assert ref_op.kernel is not None and ref_op.stride is not None
                k, s = (ref_op.kernel[0], ref_op.kernel[1]), (ref_op.stride[0], ref_op.stride[1])
                p = (ref_op.padding[0], ref_op.padding[1]) if isinstance(ref_op, QMaxPool) else (0, 0)
            shapes[out] = (_pool_out(ih, k[0], s[0], p[0]), _pool_out(iw, k[1], s[1], p[1]), ic)
            mode = "max" if isinstance(ref_op, QMaxPool) else "avg"
            ops.append(Pool(name, (src,), out, (shapes[src],), shapes[out], mode=mode, kernel=k, stride=s,
                            padding=p))  # fmt: skip
        elif isinstance(ref_op, QFlatten):
            src, out = tensor(ref_op.input), tensor(ref_op.output)
            if ref_op.start != 1:
                raise LeanmlError(f"flatten {ref_op.name!r} from dim {ref_op.start} is not supported", "flatten(x, 1)")
            shp = shapes[src]
            shapes[out] = (math.prod(shp),)
            if len(shp) == 3 and shp[0] * shp[1] > 1:
                fh, fw, fc = shp
                # HWC position (y, x, c) holds CHW element c*H*W + y*W + x
                chw_order[out] = np.arange(fc * fh * fw).reshape(fc, fh, fw).transpose(1, 2, 0).reshape(-1)
            ops.append(Flatten(name, (src,), out, (shp,), shapes[out]))
        elif isinstance(ref_op, QClamp):
            src, out = tensor(ref_op.input), tensor(ref_op.output)
            shapes[out] = shapes[src]
            if src in chw_order:
                chw_order[out] = chw_order[src]
            ops.append(Clamp(name, (src,), out, (shapes[src],), shapes[out], act_min=ref_op.act_min,
                             act_max=ref_op.act_max))  # fmt: skip
        else:
            raise LeanmlError(f"deploy does not support op {type(ref_op).__name__} ({ref_op.name!r})",
                              f"supported: {', '.join(SUPPORTED)}")  # fmt: skip
    out = tensor(model.output)
    perm = None
    if len(shapes[out]) == 3:
        oh, ow, oc = shapes[out]
        perm = np.arange(oh * ow * oc).reshape(oh, ow, oc).transpose(2, 0, 1).reshape(-1)  # CHW pos -> HWC index
    elif out in chw_order:
        perm = np.argsort(chw_order[out])
    return Graph(ops, tensor(model.ops[0].output), out, (h, w, c), model.input_q, model.output_q, perm)
