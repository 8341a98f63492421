"""Load-time checks of an integer model's op graph: every field in range, every tensor named, quantized and
shaped as its consumers expect, requantization constants and fused clamps consistent with the scales.

:func:`check_ops` is what :meth:`leanml.quant.integer.IntegerModel.load` runs, so a damaged or hostile file is
refused at load (naming the op and the field) instead of failing, or silently computing something else, when run.

Example:
    >>> act_kind(-128, 127, TensorQ(0.1, 3))
    'none'
"""

from __future__ import annotations

import math

import numpy as np

from leanml.errors import LeanmlError
from leanml.quant.integer_ops import (
    ADD_LEFT_SHIFT,
    IntegerOp,
    QAdd,
    QAvgPool,
    QClamp,
    QConv2d,
    QFlatten,
    QLinear,
    QMaxPool,
    QuantizeInput,
    TensorQ,
    check_accumulator_bound,
)
from leanml.quant.primitives import activation_range, quantize_multiplier

MAX_WINDOW = 1 << 12  # kernel, stride and padding bounds
ACT_KINDS = ("none", "relu", "relu6")
Shape = tuple[int, ...]


def act_kind(act_min: int, act_max: int, q: TensorQ) -> str | None:
    """The fused activation whose clamp on grid ``q`` is ``[act_min, act_max]``, or None when none matches.

    Example:
        >>> act_kind(-128, 127, TensorQ(0.1, 3)), act_kind(3, 127, TensorQ(0.1, 3)), act_kind(0, 1, TensorQ(0.1, 3))
        ('none', 'relu', None)
    """
    for kind in ACT_KINDS:
        if activation_range(kind, q.scale, q.zero_point) == (act_min, act_max):
            return kind
    return None


def requant_constants(in_q: TensorQ, w_scale: np.ndarray, out_q: TensorQ) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) of a conv/linear: ``quantize_multiplier(s_in * s_w[c] / s_out)``.

    Example:
        >>> requant_constants(TensorQ(0.5, 0), np.array([0.5], dtype=np.float32), TensorQ(0.5, 0))
        (array([1073741824]), array([0]))
    """
    pairs = [quantize_multiplier(in_q.scale * float(s) / out_q.scale) for s in w_scale]
    return np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)


def add_constants(a_q: TensorQ, b_q: TensorQ, out_q: TensorQ) -> tuple[int, int, int, int, int, int]:
    """(a_multiplier, a_shift, b_multiplier, b_shift, out_multiplier, out_shift) of a residual add (TFLite's rule).

    Example:
        >>> add_constants(TensorQ(0.5, 0), TensorQ(0.5, 0), TensorQ(1.0, 0))[:2]
        (1073741824, 0)
    """
    twice_max = 2.0 * max(a_q.scale, b_q.scale)
    a_m, a_s = quantize_multiplier(a_q.scale / twice_max)
    b_m, b_s = quantize_multiplier(b_q.scale / twice_max)
    o_m, o_s = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * out_q.scale))
    return a_m, a_s, b_m, b_s, o_m, o_s


def _window(x: int, k: int, s: int, p: int) -> int:
    return (x + 2 * p - k) // s + 1


def infer_shape(op: IntegerOp, shapes: dict[str, Shape]) -> Shape:
    """Output shape (batch excluded) of ``op`` given its inputs' shapes; a mismatch raises ``ValueError`` (the
    caller names the file and the op).

    Example:
        >>> infer_shape(QMaxPool("p", "x", "y", (2, 2), (2, 2)), {"x": (4, 8, 8)})
        (4, 4, 4)
    """
    if isinstance(op, QAdd):
        a, b = shapes[op.inputs[0]], shapes[op.inputs[1]]
        if a != b:
            raise ValueError(f"adds tensors of shapes {a} and {b}")
        return a
    x = shapes[op.input] if not isinstance(op, QuantizeInput) else ()
    if isinstance(op, QFlatten):
        if not 1 <= op.start <= len(x):
            raise ValueError(f"flattens from dim {op.start} a tensor of shape {x}")
        return (*x[: op.start - 1], math.prod(x[op.start - 1 :]))
    if isinstance(op, QClamp):
        return x
    if isinstance(op, QLinear):
        if x != (op.weight.shape[1],):
            raise ValueError(f"has {op.weight.shape[1]} inputs, gets a tensor of shape {x}")
        return (op.weight.shape[0],)
    if len(x) != 3:
        raise ValueError(f"needs a (C, H, W) input, gets {x}")
    c, h, w = x
    if isinstance(op, QConv2d):
        o, i, kh, kw = op.weight.shape
        if c != i * op.groups:
            raise ValueError(f"has {i} x {op.groups} groups input channels, gets {c}")
        out = (o, _window(h, kh, op.stride[0], op.padding[0]), _window(w, kw, op.stride[1], op.padding[1]))
    elif isinstance(op, QMaxPool):
        (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
        out = (c, _window(h, kh, sh, ph), _window(w, kw, sw, pw))
    else:
        assert isinstance(op, QAvgPool)
        if op.kernel is None or op.stride is None:
            return (c, 1, 1)
        out = (c, _window(h, op.kernel[0], op.stride[0], 0), _window(w, op.kernel[1], op.stride[1], 0))
    if min(out) < 1:
        raise ValueError(f"turns an input of shape {x} into {out}")
    return out


def _check_layer(op: QConv2d | QLinear, q_in: TensorQ) -> None:
    o = op.weight.shape[0]
    for field_name in ("bias", "weight_scale", "multiplier", "shift"):
        if getattr(op, field_name).shape != (o,):
            raise ValueError(
                f"field {field_name} has shape {getattr(op, field_name).shape}, the weight has {o} outputs"
            )
    if not (np.isfinite(op.weight_scale).all() and (op.weight_scale > 0).all()):
        raise ValueError("field weight_scale must hold finite numbers > 0")
    if op.in_q != q_in:
        raise ValueError(f"field in_q {op.in_q} differs from its input's quantization {q_in}")
    mult, shift = requant_constants(op.in_q, op.weight_scale, op.out_q)
    if not (np.array_equal(mult, op.multiplier) and np.array_equal(shift, op.shift)):
        raise ValueError("fields multiplier/shift do not match in_q.scale * weight_scale / out_q.scale")
    check_accumulator_bound(op.weight, op.bias, op.name)
    if isinstance(op, QConv2d):
        if not (op.groups >= 1 and o % op.groups == 0):
            raise ValueError(f"field groups {op.groups} does not divide the {o} output channels")
        if not (all(1 <= s <= MAX_WINDOW for s in op.stride) and all(0 <= p <= MAX_WINDOW for p in op.padding)):
            raise ValueError(f"fields stride {op.stride} / padding {op.padding} must be 1.. / 0..{MAX_WINDOW}")


def _check_op(op: IntegerOp, q: dict[str, TensorQ], act: str | None) -> TensorQ:
    """Check one op against the quantization of its inputs; returns its output's quantization."""
    if isinstance(op, QConv2d | QLinear):
        _check_layer(op, q[op.input])
        out, clamp_q = op.out_q, op.out_q
    elif isinstance(op, QAdd):
        if (op.a_q, op.b_q) != (q[op.inputs[0]], q[op.inputs[1]]):
            raise ValueError("fields a_q/b_q differ from its inputs' quantization")
        consts = (op.a_multiplier, op.a_shift, op.b_multiplier, op.b_shift, op.out_multiplier, op.out_shift)
        if consts != add_constants(op.a_q, op.b_q, op.out_q):
            raise ValueError("its multiplier/shift fields do not match a_q, b_q and out_q")
        out, clamp_q = op.out_q, op.out_q
    else:
        source = op.q if isinstance(op, QuantizeInput) else q[op.inputs[0] if isinstance(op, QAdd) else op.input]
        out, clamp_q = source, source
        if isinstance(op, QMaxPool | QAvgPool):
            k, s = op.kernel, op.stride
            if (k is None) != (s is None) or (
                k is not None and s is not None and not all(1 <= v <= MAX_WINDOW for v in (*k, *s))
            ):
                raise ValueError(f"fields kernel {k} / stride {s} must both be 1..{MAX_WINDOW} (or both None)")
            if isinstance(op, QMaxPool) and not all(
                0 <= p <= kk // 2 for p, kk in zip(op.padding, op.kernel, strict=True)
            ):
                raise ValueError(f"field padding {op.padding} must be 0..kernel/2")
    if isinstance(op, QConv2d | QLinear | QAdd | QClamp):
        if not -128 <= op.act_min <= op.act_max <= 127:
            raise ValueError(f"fields act_min/act_max [{op.act_min}, {op.act_max}] must be a range in -128..127")
        if act is not None and activation_range(act, clamp_q.scale, clamp_q.zero_point) != (op.act_min, op.act_max):
            raise ValueError(f"fields act_min/act_max [{op.act_min}, {op.act_max}] are not a {act} clamp")
    return out


def check_ops(
    ops: list[IntegerOp],
    output: str,
    output_q: TensorQ,
    input_shape: Shape | None = None,
    acts: list[str | None] | None = None,
    shapes: list[Shape | None] | None = None,
    where: str = "the integer model",
) -> None:
    """Check an op list before it runs: one input quantization first; every op reads tensors written before it and
    writes a new one; quantization, requantization constants and clamps agree along the graph; with ``input_shape``
    every op's output shape (and ``shapes``, the recorded ones) is inferred; every tensor is used; ``output`` and
    ``output_q`` name the last tensor. Problems are a :class:`LeanmlError` naming ``where`` and the op.

    Example:
        >>> check_ops([QuantizeInput("q", "x", TensorQ(0.1, 0))], "x", TensorQ(0.1, 0), (1, 4, 4))
    """
    hint = "re-create it with `leanml quantize linear CHECKPOINT --out PATH`"
    if not ops or not isinstance(ops[0], QuantizeInput):
        raise LeanmlError(f"{where}: ops[0] must be the input quantization (QuantizeInput)", hint)
    q: dict[str, TensorQ] = {}
    dims: dict[str, Shape] = {}
    used: set[str] = set()
    for i, op in enumerate(ops):
        label = f"{where}: ops[{i}] ({type(op).__name__} {op.name[:60]!r})"
        if i and isinstance(op, QuantizeInput):
            raise LeanmlError(f"{label}: only ops[0] may quantize the input", hint)
        reads = [] if isinstance(op, QuantizeInput) else list(op.inputs if isinstance(op, QAdd) else [op.input])
        for name in reads:
            if name not in q:
                raise LeanmlError(f"{label} reads the unknown tensor {name[:60]!r}", hint)
        if op.output in q:
            raise LeanmlError(f"{label} writes the tensor {op.output[:60]!r} a second time", hint)
        try:
            q[op.output] = _check_op(op, q, acts[i] if acts is not None else None)
            if input_shape is not None:
                dims[op.output] = tuple(input_shape) if isinstance(op, QuantizeInput) else infer_shape(op, dims)
                recorded = shapes[i] if shapes is not None else None
                if recorded is not None and recorded != dims[op.output]:
                    raise ValueError(f"outputs shape {dims[op.output]}, its recorded shape is {recorded}")
        except (ValueError, LeanmlError) as e:
            raise LeanmlError(f"{label}: {e}", hint) from e
        used.update(reads)
    if output not in q:
        raise LeanmlError(f"{where}: field output names the unknown tensor {output[:60]!r}", hint)
    if q[output] != output_q:
        raise LeanmlError(f"{where}: field output_q {output_q} differs from tensor {output[:60]!r}'s {q[output]}", hint)
    dead = [op.output for op in ops if op.output not in used and op.output != output]
    if dead:
        raise LeanmlError(f"{where}: tensor {dead[0][:60]!r} is written but never read", hint)
