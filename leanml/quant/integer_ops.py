"""Integer-only ops and their reference kernels: the Python side of the one integer spec.

Each op is a small dataclass holding int8 weights, int32 biases and the
fixed-point requantization constants. Everything that handles each op
(the reference kernels here, :data:`KERNELS`; the C IR lowering in
:mod:`leanml.deploy.ir`; the ONNX export) is an :class:`OpRegistry` keyed by
op type, filled with its ``register`` decorator (dispatch by type, never by
name). Kernels take and return int8
tensors held as int64 numpy arrays, NCHW, batch first.

Accumulation is exact: convolutions and matrix products run in float64, which
represents every partial sum exactly because |sum| <= K * 255 * 127 + |bias|
stays far below 2^53 (and, as the C engine needs, below 2^31; checked when an
op is built). :func:`conv2d_acc_ref` is the plain int64 twin that tests
compare against. Requantization, rounding and clamping are the functions of
:mod:`leanml.quant.primitives`, bit for bit what the C engine implements.

Example:
    >>> import numpy as np
    >>> op = QMaxPool("pool", "x", "y", kernel=(2, 2), stride=(2, 2))
    >>> run_op(op, {"x": np.arange(16).reshape(1, 1, 4, 4)})["y"].tolist()
    [[[[5, 7], [13, 15]]]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_args

import numpy as np
import torch
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.quant.primitives import (
    multiply_by_quantized_multiplier,
    requantize,
)

INT32_LIMIT = (1 << 31) - 1
ADD_LEFT_SHIFT = 20  # TFLite's int8 residual-add headroom


@dataclass(frozen=True)
class TensorQ:
    """Per-tensor activation quantization: real = scale * (q - zero_point), q in [-128, 127]."""

    scale: float
    zero_point: int


@dataclass
class QuantizeInput:
    """float input → int8 with the input's TensorQ (round half away from zero, float32 division)."""

    name: str
    output: str
    q: TensorQ


@dataclass
class QConv2d:
    """int8 conv (standard, depthwise or grouped) + int32 bias, requantized per output channel, clamped."""

    name: str
    input: str
    output: str
    weight: np.ndarray  # int8 values (C_out, C_in/groups, kh, kw)
    bias: np.ndarray  # int32 values (C_out,) at scale in_scale * weight_scale[c]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    in_q: TensorQ
    out_q: TensorQ
    weight_scale: np.ndarray  # float32 (C_out,)
    multiplier: np.ndarray  # int64 Q31 (C_out,)
    shift: np.ndarray  # int64 (C_out,)
    act_min: int
    act_max: int


@dataclass
class QLinear:
    """int8 fully connected layer: weight (out, in), bias int32 (out,), per-output-channel requantization."""

    name: str
    input: str
    output: str
    weight: np.ndarray  # int8 values (C_out, C_in)
    bias: np.ndarray  # int32 values (C_out,)
    in_q: TensorQ
    out_q: TensorQ
    weight_scale: np.ndarray  # float32 (C_out,)
    multiplier: np.ndarray  # int64 (C_out,)
    shift: np.ndarray  # int64 (C_out,)
    act_min: int
    act_max: int


@dataclass
class QAdd:
    """Residual add by TFLite's rule: both inputs shifted left by 20, rescaled to 2*max(s_a, s_b), summed,
    requantized to the output scale, clamped."""

    name: str
    inputs: tuple[str, str]
    output: str
    a_q: TensorQ
    b_q: TensorQ
    out_q: TensorQ
    a_multiplier: int
    a_shift: int
    b_multiplier: int
    b_shift: int
    out_multiplier: int
    out_shift: int
    act_min: int
    act_max: int


@dataclass
class QMaxPool:
    """Max pooling on int8 values (same quantization in and out)."""

    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)


@dataclass
class QAvgPool:
    """Average pooling without padding: window sum, divided with rounding half away from zero.

    ``kernel=None`` is global average pooling. Same quantization in and out.
    """

    name: str
    input: str
    output: str
    kernel: tuple[int, int] | None
    stride: tuple[int, int] | None


@dataclass
class QFlatten:
    """Reshape (N, ...) → (N, prod) from ``start`` on: no arithmetic."""

    name: str
    input: str
    output: str
    start: int = 1


@dataclass
class QClamp:
    """A standalone ReLU/ReLU6 on int8 values: clamp to [act_min, act_max] (same quantization)."""

    name: str
    input: str
    output: str
    act_min: int
    act_max: int


IntegerOp = QuantizeInput | QConv2d | QLinear | QAdd | QMaxPool | QAvgPool | QFlatten | QClamp
OP_TYPES: dict[str, type] = {t.__name__: t for t in get_args(IntegerOp)}  # the saved form's "type" field
Env = dict[str, np.ndarray]

Handler = TypeVar("Handler", bound=Callable[..., Any])


class OpRegistry(Generic[Handler]):
    """One function per integer op type, for one purpose (a reference kernel, a C IR lowering, an ONNX export).

    Example:
        >>> names = OpRegistry[Callable[[Any], str]]("describe")
        >>> @names.register(QMaxPool, QAvgPool)
        ... def _pool(op):
        ...     return f"pool {op.name}"
        >>> names.handler(QMaxPool("p", "x", "y", (2, 2), (2, 2)))(QMaxPool("p", "x", "y", (2, 2), (2, 2)))
        'pool p'
        >>> names.handler(QFlatten("f", "x", "y"))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        LeanmlError: describe does not support op QFlatten ('f')
    """

    def __init__(self, purpose: str) -> None:
        self.purpose = purpose
        self._handlers: dict[type, Handler] = {}

    def register(self, *op_types: type) -> Callable[[Handler], Handler]:
        """Decorator: ``fn`` handles ops of ``op_types``."""

        def deco(fn: Handler) -> Handler:
            for t in op_types:
                self._handlers[t] = fn
            return fn

        return deco

    def __getitem__(self, op_type: type) -> Handler:
        return self._handlers[op_type]

    @property
    def supported(self) -> tuple[str, ...]:
        """Names of the op types with a handler."""
        return tuple(t.__name__ for t in self._handlers)

    def handler(self, op: object) -> Handler:
        """The function for ``op``'s type; an op type without one raises a :class:`LeanmlError` naming the supported."""
        fn = self._handlers.get(type(op))
        if fn is None:
            raise LeanmlError(f"{self.purpose} does not support op {type(op).__name__} ({getattr(op, 'name', '?')!r})",
                              f"supported: {', '.join(self.supported)}")  # fmt: skip
        return fn


Kernel = Callable[[Any, Env], np.ndarray]
KERNELS = OpRegistry[Kernel]("the integer reference")


def check_accumulator_bound(weight: np.ndarray, bias: np.ndarray, name: str) -> None:
    """Raise unless every int32 accumulator of a layer provably fits in int32 (and so in float64 exactly).

    Example:
        >>> check_accumulator_bound(np.ones((2, 3), dtype=np.int64), np.zeros(2, dtype=np.int64), "fc")
    """
    per_out = np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1) * 255 + np.abs(bias)  # (C_out,)
    if per_out.max(initial=0) > INT32_LIMIT:
        raise LeanmlError(f"layer {name!r} can overflow a 32-bit accumulator", "use fewer input channels per output")


def _exact(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def conv2d_acc(op: QConv2d, x: np.ndarray) -> np.ndarray:
    """int32 accumulators of a conv: sum((x - zp_in) * w) + bias, exact via float64. (N, C_out, H', W')"""
    xs = _exact(x - op.in_q.zero_point)  # zero padding in the offset domain = padding with zp_in
    acc = F.conv2d(xs, _exact(op.weight), _exact(op.bias), op.stride, op.padding, 1, op.groups)
    return acc.numpy().astype(np.int64)


def conv2d_acc_ref(op: QConv2d, x: np.ndarray) -> np.ndarray:
    """Plain int64 twin of :func:`conv2d_acc` (loops over the kernel window; for tests)."""
    n, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = op.weight.shape
    (sh, sw), (ph, pw) = op.stride, op.padding
    xp = np.zeros((n, c_in, h + 2 * ph, w + 2 * pw), dtype=np.int64)
    xp[:, :, ph : ph + h, pw : pw + w] = x.astype(np.int64) - op.in_q.zero_point
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, c_out, oh, ow), dtype=np.int64)
    out_per_group = c_out // op.groups
    for co in range(c_out):
        g = co // out_per_group
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * c_per_group : (g + 1) * c_per_group, i : i + sh * oh : sh, j : j + sw * ow : sw]
                out[:, co] += np.einsum("nchw,c->nhw", patch, op.weight[co, :, i, j].astype(np.int64))
        out[:, co] += int(op.bias[co])
    return out


@KERNELS.register(QuantizeInput)
def _quantize_input(op: QuantizeInput, env: Env) -> np.ndarray:
    raise LeanmlError("QuantizeInput runs through IntegerModel.quantize_input", "call the model, not the op")


@KERNELS.register(QConv2d)
def _conv(op: QConv2d, env: Env) -> np.ndarray:
    acc = conv2d_acc(op, env[op.input])
    return requantize(acc, op.multiplier, op.shift, op.out_q.zero_point, op.act_min, op.act_max, axis=1)


@KERNELS.register(QLinear)
def _linear(op: QLinear, env: Env) -> np.ndarray:
    x = env[op.input]
    acc = F.linear(_exact(x - op.in_q.zero_point), _exact(op.weight), _exact(op.bias)).numpy().astype(np.int64)
    return requantize(acc, op.multiplier, op.shift, op.out_q.zero_point, op.act_min, op.act_max, axis=1)


@KERNELS.register(QAdd)
def _add(op: QAdd, env: Env) -> np.ndarray:
    a = (env[op.inputs[0]].astype(np.int64) - op.a_q.zero_point) << ADD_LEFT_SHIFT
    b = (env[op.inputs[1]].astype(np.int64) - op.b_q.zero_point) << ADD_LEFT_SHIFT
    total = multiply_by_quantized_multiplier(a, op.a_multiplier, op.a_shift) + multiply_by_quantized_multiplier(
        b, op.b_multiplier, op.b_shift
    )
    out = multiply_by_quantized_multiplier(total, op.out_multiplier, op.out_shift) + op.out_q.zero_point
    return np.clip(out, op.act_min, op.act_max)


@KERNELS.register(QMaxPool)
def _maxpool(op: QMaxPool, env: Env) -> np.ndarray:
    x = _exact(env[op.input])
    y = F.max_pool2d(x, op.kernel, op.stride, op.padding)  # pads with -inf: padding never wins
    return y.numpy().astype(np.int64)


@KERNELS.register(QAvgPool)
def _avgpool(op: QAvgPool, env: Env) -> np.ndarray:
    x = env[op.input].astype(np.int64)
    if op.kernel is None:
        total = x.sum(axis=(2, 3), keepdims=True)  # (N, C, 1, 1)
        count = x.shape[2] * x.shape[3]
    else:
        assert op.stride is not None
        total = F.avg_pool2d(_exact(x), op.kernel, op.stride, divisor_override=1).numpy().astype(np.int64)
        count = op.kernel[0] * op.kernel[1]
    # round half away from zero: sign * floor((2|s| + count) / (2 count))
    out = np.sign(total) * ((2 * np.abs(total) + count) // (2 * count))
    return np.clip(out, -128, 127)


@KERNELS.register(QFlatten)
def _flatten(op: QFlatten, env: Env) -> np.ndarray:
    x = env[op.input]
    return x.reshape(*x.shape[: op.start], -1)


@KERNELS.register(QClamp)
def _clamp(op: QClamp, env: Env) -> np.ndarray:
    return np.clip(env[op.input], op.act_min, op.act_max)


def run_op(op: IntegerOp, env: Env) -> Env:
    """Run one op on ``env`` (tensor name → int8 values as int64 arrays); returns ``env`` with its output added."""
    env[op.output] = KERNELS.handler(op)(op, env)
    return env
