"""The per-opcode lowerings of the ``.tflite`` importer: TFLite Micro's int8 rules into leanml's IR ops.

:class:`Importer` holds what an import has built; :data:`TFLITE_LOWERINGS` maps each supported builtin opcode to
its lowering (add one with :func:`register_tflite`). The graph-level passes (execution order, PAD folding, the
model's ends) and :func:`~leanml.deploy.tflite.load_tflite` are in :mod:`leanml.deploy.tflite`; the rules are
listed in its docstring.

Example:
    >>> sorted(TFLITE_LOWERINGS)[:3]
    ['ADD', 'AVERAGE_POOL_2D', 'CONV_2D']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from leanml.deploy.ir import (
    Add,
    Clamp,
    Conv,
    Conv1x1,
    Depthwise,
    Flatten,
    Linear,
    Mean,
    Op,
    Pool,
    Shape,
    Softmax,
    c_identifier,
)  # fmt: skip
from leanml.deploy.tflite_read import TfModel, TfOp, TfTensor
from leanml.errors import LeanmlError
from leanml.quant.integer_ops import TensorQ
from leanml.quant.primitives import quantize_multiplier

SAME, VALID = 0, 1  # tflite.Padding
ADD_LEFT_SHIFT = 20  # TFLite's int8 add
SOFTMAX_DIFF_INT_BITS = 5  # kScaledDiffIntegerBits: Q5.26 differences
# fused activation (tflite.ActivationFunctionType) -> (low, high) in real units; None = unbounded
ACTIVATIONS: dict[int, tuple[float | None, float | None]] = {0: (None, None), 1: (0.0, None), 2: (-1.0, 1.0),
                                                              3: (0.0, 6.0)}  # fmt: skip
# opcode -> (inputs it needs, how many of them lead and are computed activations); the rest are constants
INPUTS: dict[str, tuple[int, int]] = {"CONV_2D": (2, 1), "DEPTHWISE_CONV_2D": (2, 1), "FULLY_CONNECTED": (2, 1),
                                      "ADD": (2, 2), "MEAN": (2, 1)}  # fmt: skip


@dataclass
class Importer:
    """What the import has built: C-safe tensor names, HWC shapes, quantization per tensor, the IR ops."""

    model: TfModel
    used: set[str] = field(default_factory=set)
    names: dict[int, str] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    pads: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # folded PAD: out -> (source, top, left)

    def tensor(self, index: int) -> TfTensor:
        return self.model.tensors[index]

    def name(self, index: int) -> str:
        """The C-safe name of tensor ``index``."""
        if index not in self.names:
            self.names[index] = c_identifier(f"t{index}", self.used)
        return self.names[index]

    def error(self, op: TfOp, what: str, hint: str) -> LeanmlError:
        return LeanmlError(f"{self.model.path}: operator {op.index} ({op.opcode}) {what}", hint)

    def act_q(self, op: TfOp, index: int) -> TensorQ:
        """Per-tensor int8 quantization of activation ``index``; anything else is refused."""
        t = self.tensor(index)
        if t.dtype != "int8":
            raise self.error(op, f"has a {t.dtype} activation {t.name!r}",
                             "leanml deploys int8 activations: quantize the model fully to int8")  # fmt: skip
        if len(t.scales) != 1:
            raise self.error(op, f"activation {t.name!r} has {len(t.scales)} scales",
                             "activations need one scale (per-tensor quantization)")  # fmt: skip
        zp = int(t.zero_points[0])
        if not -128 <= zp <= 127:
            raise self.error(op, f"activation {t.name!r} has zero point {zp}", "int8 zero points lie in [-128, 127]")
        return TensorQ(float(t.scales[0]), zp)

    def const(self, op: TfOp, position: int, dtype: str) -> TfTensor:
        """The constant input at ``position`` of ``op`` with its data, of ``dtype``."""
        if position >= len(op.inputs) or op.inputs[position] < 0:
            raise self.error(op, f"has no input {position}", "the .tflite file is malformed")
        t = self.tensor(op.inputs[position])
        if t.data is None or t.dtype != dtype:
            raise self.error(op, f"input {t.name!r} must be a constant {dtype} tensor (got {t.dtype}, "
                                 f"{'constant' if t.data is not None else 'computed'})",
                             "leanml deploys int8 weights and int32 biases stored in the file")  # fmt: skip
        return t

    def hwc(self, op: TfOp, index: int) -> Shape:
        """The IR shape of activation ``index``: (H, W, C) for [1, H, W, C], (1, T, C) for [1, T, C] (rows of a
        sequence: the same bytes), (F,) for [1, F] or [F]."""
        shape = self.tensor(index).shape
        if len(shape) in (3, 4) and shape[0] == 1:
            return (1, *shape[1:]) if len(shape) == 3 else (shape[1], shape[2], shape[3])
        if (len(shape) == 2 and shape[0] == 1) or len(shape) == 1:
            return (shape[-1],)
        raise self.error(op, f"has a tensor of shape {list(shape)}",
                         "leanml deploys batch-1 tensors: [1, H, W, C], [1, T, C], [1, F] or [F]")  # fmt: skip

    def where(self, op: TfOp) -> str:
        return f"{self.model.path}: operator {op.index} ({op.opcode})"

    def bounds(self, op: TfOp, q: TensorQ) -> tuple[int, int]:
        """The clamp bounds of ``op``'s fused activation on output quantization ``q``."""
        return activation_bounds(int(op.options.get("FusedActivationFunction", 0)), q, self.where(op))

    def multiplier(self, op: TfOp, real: float) -> tuple[int, int]:
        """TFLite's QuantizeMultiplier of ``real``; one that does not fit is refused naming ``op``."""
        if not (math.isfinite(real) and 0.0 <= real < 2.0**30):
            raise self.error(op, f"needs a requantization multiplier of {real!r}",
                             "its scales are out of range: re-quantize the model")  # fmt: skip
        return quantize_multiplier(real)

    def geometry(self, op: TfOp, kernel: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """(stride, padding before) of a windowed op, its output (H, W) checked against the declared one."""
        sh, sw = int(op.options.get("StrideH", 0)), int(op.options.get("StrideW", 0))
        padding = int(op.options.get("Padding", -1))
        if sh < 1 or sw < 1 or padding not in (SAME, VALID):
            raise self.error(op, f"has strides {(sh, sw)} and padding {padding}",
                             "strides must be >= 1 and padding SAME or VALID: re-export the model")  # fmt: skip
        ih, iw, _ = self.hwc(op, op.inputs[0])
        oh, ph = _same_padding(ih, kernel[0], sh, padding)
        ow, pw = _same_padding(iw, kernel[1], sw, padding)
        if self.hwc(op, op.outputs[0])[:2] != (oh, ow):
            raise self.error(op, f"declares output {list(self.tensor(op.outputs[0]).shape)}, its geometry gives "
                                 f"{oh} x {ow}", "the .tflite file is inconsistent: re-export it")  # fmt: skip
        return (sh, sw), (ph, pw)

    def emit(self, op: Op) -> None:
        self.shapes[op.output] = op.out_shape
        self.ops.append(op)

    def op_name(self, op: TfOp) -> str:
        return c_identifier(f"op{len(self.ops)}_{op.opcode.lower()}", self.used)


def activation_bounds(kind: int, q: TensorQ, what: str) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for int8: the fused activation's bounds in output codes.

    Example:
        >>> activation_bounds(3, TensorQ(0.05, -128), "op")  # RELU6
        (-128, -8)
    """
    if kind not in ACTIVATIONS:
        raise LeanmlError(f"{what} has fused activation {kind}", "leanml supports NONE, RELU, RELU_N1_TO_1, RELU6")
    lo_real, hi_real = ACTIVATIONS[kind]

    def quantize(v: float) -> int:  # zero_point + round(v / scale), the division in float32
        r = float(np.float32(v) / np.float32(q.scale))
        return q.zero_point + int(math.copysign(math.floor(abs(r) + 0.5), r))

    lo = -128 if lo_real is None else max(-128, quantize(lo_real))
    hi = 127 if hi_real is None else min(127, quantize(hi_real))
    return lo, hi


def conv_multipliers(in_scale: float, w_scales: np.ndarray, out_scale: float, n: int) -> tuple[np.ndarray, ...]:
    """Per-output-channel (multiplier, shift) as TFLM's PopulateConvolutionQuantizationParams (double precision).

    Example:
        >>> m, s = conv_multipliers(0.5, np.array([0.25], np.float32), 1.0, 2)
        >>> m.tolist(), s.tolist()
        ([1073741824, 1073741824], [-2, -2])
    """
    scales = np.broadcast_to(np.asarray(w_scales, np.float32), (n,)) if len(w_scales) == 1 else w_scales
    pairs = [quantize_multiplier(float(in_scale) * float(s) / float(out_scale)) for s in scales]
    return (np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32))


def _same_padding(size: int, k: int, s: int, padding: int) -> tuple[int, int]:
    """(output size, padding before) as TFLite's ComputePaddingHeightWidth (dilation 1; ``padding`` SAME or VALID).

    Example:
        >>> _same_padding(8, 3, 2, SAME), _same_padding(7, 3, 2, SAME), _same_padding(7, 3, 2, VALID)
        ((4, 0), (4, 1), (3, 0))
    """
    out = (size + s - 1) // s if padding == SAME else (size - k + s) // s
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2


def _multipliers(imp: Importer, op: TfOp, in_scale: float, w_scales: np.ndarray, out_scale: float,
                 n: int) -> tuple[np.ndarray, ...]:  # fmt: skip
    reals = [float(in_scale) * float(s) / float(out_scale) for s in w_scales]
    for real in reals:
        imp.multiplier(op, real)  # refuses a multiplier that does not fit, naming the op
    return conv_multipliers(in_scale, w_scales, out_scale, n)


def _bias(imp: Importer, op: TfOp, n: int) -> np.ndarray:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return np.zeros(n, np.int32)
    b = imp.const(op, 2, "int32").data
    assert b is not None
    if b.shape != (n,):
        raise imp.error(op, f"has a bias of shape {list(b.shape)} for {n} output channels", "re-export the model")
    return np.ascontiguousarray(b, np.int32)


def _weight_q(imp: Importer, op: TfOp, w: TfTensor, n: int) -> np.ndarray:
    if not w.quantized or np.any(w.zero_points != 0) or len(w.scales) not in (1, n):
        raise imp.error(op, f"has weights {w.name!r} that are not symmetric int8 (per tensor or per channel)",
                        "quantize weights symmetrically: zero point 0, one scale or one per channel")  # fmt: skip
    return w.scales


def _check_dilation(imp: Importer, op: TfOp) -> None:
    if op.options.get("DilationHFactor", 1) != 1 or op.options.get("DilationWFactor", 1) != 1:
        raise imp.error(op, "is dilated", "leanml's kernels support dilation 1")


Lowering = Callable[[Importer, TfOp], None]
TFLITE_LOWERINGS: dict[str, Lowering] = {}


def register_tflite(opcode: str) -> Callable[[Lowering], Lowering]:
    """Register the lowering of a builtin opcode (its schema name, e.g. ``"CONV_2D"``)."""

    def deco(fn: Lowering) -> Lowering:
        TFLITE_LOWERINGS[opcode] = fn
        return fn

    return deco


def _conv_common(imp: Importer, op: TfOp, weight_ohwi: np.ndarray, w_scales: np.ndarray, groups: int) -> None:
    src, out = op.inputs[0], op.outputs[0]
    in_q, out_q = imp.act_q(op, src), imp.act_q(op, out)
    oc, kh, kw, _ = weight_ohwi.shape
    (sh, sw), (ph, pw) = imp.geometry(op, (kh, kw))  # on the (maybe padded) input the file declares
    if src in imp.pads:  # a folded PAD: read its source, its top/left rows of zero points join the conv's own
        src, top, left = imp.pads[src]
        ph, pw = ph + top, pw + left
    ih, iw, ic = imp.hwc(op, src)
    oh, ow, out_c = imp.hwc(op, out)
    if out_c != oc:
        raise imp.error(op, f"declares {out_c} output channels for {oc} filters", "re-export the model")
    mult, shift = _multipliers(imp, op, in_q.scale, w_scales, out_q.scale, oc)
    lo, hi = imp.bounds(op, out_q)
    common = dict(bias=_bias(imp, op, oc), multiplier=mult, shift=shift, kernel=(kh, kw), stride=(sh, sw),
                  padding=(ph, pw), groups=groups, in_zp=in_q.zero_point, out_zp=out_q.zero_point, act_min=lo,
                  act_max=hi)  # fmt: skip
    name, a, o = imp.op_name(op), imp.name(src), imp.name(out)
    if groups == ic == oc and ic > 1:
        dw = np.ascontiguousarray(weight_ohwi[:, :, :, 0].transpose(1, 2, 0), np.int8)  # (kh, kw, C)
        imp.emit(Depthwise(name, (a,), o, ((ih, iw, ic),), (oh, ow, oc), weight=dw, **common))  # type: ignore[arg-type]
        return
    one = (kh, kw) == (1, 1) and (sh, sw) == (1, 1) and (ph, pw) == (0, 0) and (oh, ow) == (ih, iw)
    cls = Conv1x1 if one and groups == 1 else Conv
    w = np.ascontiguousarray(weight_ohwi, np.int8)
    imp.emit(cls(name, (a,), o, ((ih, iw, ic),), (oh, ow, oc), weight=w, **common))  # type: ignore[arg-type]


@register_tflite("CONV_2D")
def _conv2d(imp: Importer, op: TfOp) -> None:
    _check_dilation(imp, op)
    w = imp.const(op, 1, "int8")
    assert w.data is not None
    if w.data.ndim != 4:
        raise imp.error(op, f"has weights of shape {list(w.data.shape)}", "CONV_2D weights are [O, H, W, I]")
    ic = imp.hwc(op, op.inputs[0])[-1]
    if w.data.shape[3] != ic:
        raise imp.error(op, f"has {w.data.shape[3]} weight input channels for {ic} input channels",
                        "grouped CONV_2D is not supported")  # fmt: skip
    _conv_common(imp, op, w.data, _weight_q(imp, op, w, w.data.shape[0]), 1)


@register_tflite("DEPTHWISE_CONV_2D")
def _depthwise(imp: Importer, op: TfOp) -> None:
    _check_dilation(imp, op)
    w = imp.const(op, 1, "int8")
    assert w.data is not None
    ic = imp.hwc(op, op.inputs[0])[-1]
    mult = int(op.options.get("DepthMultiplier", 1)) or 1
    if w.data.ndim != 4 or w.data.shape[0] != 1 or w.data.shape[3] != ic * mult:
        raise imp.error(op, f"has weights of shape {list(w.data.shape)} for {ic} channels x multiplier {mult}",
                        "DEPTHWISE_CONV_2D weights are [1, H, W, C * multiplier]")  # fmt: skip
    oc = ic * mult
    # output channel c * mult + m reads input channel c: a grouped conv (groups = C) in OHWI, one input per group
    ohwi = w.data[0].transpose(2, 0, 1)[..., None]  # (oc, kh, kw, 1)
    _conv_common(imp, op, ohwi, _weight_q(imp, op, w, oc), ic)


@register_tflite("FULLY_CONNECTED")
def _fully_connected(imp: Importer, op: TfOp) -> None:
    if int(op.options.get("WeightsFormat", 0)) != 0:
        raise imp.error(op, "uses shuffled weights", "export with the default weights format")
    src, out = op.inputs[0], op.outputs[0]
    in_q, out_q = imp.act_q(op, src), imp.act_q(op, out)
    w = imp.const(op, 1, "int8")
    assert w.data is not None
    n_out, n_in = w.data.shape if w.data.ndim == 2 else (0, 0)
    in_numel = math.prod(imp.tensor(src).shape)
    if n_in == 0 or in_numel != n_in:
        raise imp.error(op, f"has weights {list(w.data.shape)} for an input of {in_numel} values",
                        "leanml deploys batch-1 fully connected layers")  # fmt: skip
    if math.prod(imp.tensor(out).shape) != n_out:
        raise imp.error(op, f"declares output {list(imp.tensor(out).shape)} for {n_out} features", "re-export it")
    mult, shift = _multipliers(imp, op, in_q.scale, _weight_q(imp, op, w, n_out), out_q.scale, n_out)
    lo, hi = imp.bounds(op, out_q)
    a = imp.name(src)
    if len(imp.shapes.get(a, (n_in,))) != 1:  # a map feeds the layer: flatten (NHWC order = the C layout)
        flat = c_identifier(f"t{src}_flat", imp.used)
        imp.emit(Flatten(imp.op_name(op) + "_flatten", (a,), flat, (imp.shapes[a],), (n_in,)))
        a = flat
    imp.emit(Linear(imp.op_name(op), (a,), imp.name(out), ((n_in,),), (n_out,), weight=np.ascontiguousarray(w.data),
                    bias=_bias(imp, op, n_out), multiplier=mult, shift=shift, in_zp=in_q.zero_point,
                    out_zp=out_q.zero_point, act_min=lo, act_max=hi))  # fmt: skip


@register_tflite("ADD")
def _add(imp: Importer, op: TfOp) -> None:
    a, b, out = op.inputs[0], op.inputs[1], op.outputs[0]
    qa, qb, qo = imp.act_q(op, a), imp.act_q(op, b), imp.act_q(op, out)
    if imp.tensor(a).shape != imp.tensor(b).shape or imp.tensor(a).shape != imp.tensor(out).shape:
        raise imp.error(op, f"broadcasts {list(imp.tensor(a).shape)} with {list(imp.tensor(b).shape)}",
                        "leanml's add needs inputs of the same shape")  # fmt: skip
    if imp.tensor(a).data is not None or imp.tensor(b).data is not None:
        raise imp.error(op, "adds a constant tensor", "leanml's add takes two computed tensors")
    twice_max = 2 * max(float(qa.scale), float(qb.scale))
    am, ash = imp.multiplier(op, float(qa.scale) / twice_max)
    bm, bsh = imp.multiplier(op, float(qb.scale) / twice_max)
    om, osh = imp.multiplier(op, twice_max / ((1 << ADD_LEFT_SHIFT) * float(qo.scale)))
    lo, hi = imp.bounds(op, qo)
    shape = imp.hwc(op, out)
    imp.emit(Add(imp.op_name(op), (imp.name(a), imp.name(b)), imp.name(out), (shape, shape), shape, a_zp=qa.zero_point,
                 b_zp=qb.zero_point, a_multiplier=am, a_shift=ash, b_multiplier=bm, b_shift=bsh, out_multiplier=om,
                 out_shift=osh, out_zp=qo.zero_point, act_min=lo, act_max=hi))  # fmt: skip


def _pool(imp: Importer, op: TfOp, mode: str) -> None:
    src, out = op.inputs[0], op.outputs[0]
    in_q, out_q = imp.act_q(op, src), imp.act_q(op, out)
    if mode == "avg" and (in_q.scale != out_q.scale or in_q.zero_point != out_q.zero_point):
        raise imp.error(op, "changes the quantization", "TFLite's int8 pooling keeps the input scale and zero point")
    ih, iw, c = imp.hwc(op, src)
    kh, kw = int(op.options.get("FilterHeight", 0)), int(op.options.get("FilterWidth", 0))
    if kh < 1 or kw < 1:
        raise imp.error(op, f"has a {kh} x {kw} window", "pooling windows are at least 1 x 1: re-export the model")
    (sh, sw), (ph, pw) = imp.geometry(op, (kh, kw))
    oh, ow, out_c = imp.hwc(op, out)
    if out_c != c:
        raise imp.error(op, f"declares {out_c} output channels for {c} input channels", "re-export the model")
    if mode == "avg" and ((oh - 1) * sh + kh > ih or (ow - 1) * sw + kw > iw):
        raise imp.error(op, "pads its windows", "leanml's average pooling supports windows inside the input (VALID)")
    lo, hi = imp.bounds(op, out_q)
    name, o = imp.op_name(op), imp.name(out)
    pooled = o if (lo, hi) == (-128, 127) else c_identifier(f"t{out}_pooled", imp.used)
    imp.emit(Pool(name, (imp.name(src),), pooled, ((ih, iw, c),), (oh, ow, c), mode=mode, kernel=(kh, kw),
                  stride=(sh, sw), padding=(ph, pw)))  # fmt: skip
    if pooled != o:
        imp.emit(Clamp(name + "_act", (pooled,), o, ((oh, ow, c),), (oh, ow, c), act_min=lo, act_max=hi))


@register_tflite("AVERAGE_POOL_2D")
def _avg_pool(imp: Importer, op: TfOp) -> None:
    _pool(imp, op, "avg")


@register_tflite("MAX_POOL_2D")
def _max_pool(imp: Importer, op: TfOp) -> None:
    _pool(imp, op, "max")


@register_tflite("QUANTIZE")
def _requantize(imp: Importer, op: TfOp) -> None:
    """int8 -> int8 QUANTIZE inside the model: TFLite's Requantize, clamp(MBQM(x - in_zp, M, s) + out_zp), is a
    1x1 depthwise (or 1x1 conv on one channel) with unit weights and no bias: the same arithmetic, no new kernel."""
    src, out = op.inputs[0], op.outputs[0]
    qi, qo = imp.act_q(op, src), imp.act_q(op, out)
    if imp.tensor(src).shape != imp.tensor(out).shape:
        raise imp.error(op, f"maps {list(imp.tensor(src).shape)} to {list(imp.tensor(out).shape)}", "re-export it")
    mult, shift = imp.multiplier(op, float(qi.scale) / float(qo.scale))
    shape = imp.shapes[imp.name(src)]
    h, w, c = shape if len(shape) == 3 else (1, 1, math.prod(shape))
    n = np.ones(c, np.int32)
    common = dict(bias=0 * n, multiplier=mult * n, shift=shift * n, in_zp=qi.zero_point, out_zp=qo.zero_point)
    args = (imp.op_name(op), (imp.name(src),), imp.name(out), ((h, w, c),), (h, w, c))
    if c > 1:
        imp.emit(Depthwise(*args, weight=np.ones((1, 1, c), np.int8), groups=c, **common))  # type: ignore[arg-type]
    else:
        imp.emit(Conv1x1(*args, weight=np.ones((1, 1, 1, 1), np.int8), **common))  # type: ignore[arg-type]


@register_tflite("RESHAPE")
def _reshape(imp: Importer, op: TfOp) -> None:
    src, out = op.inputs[0], op.outputs[0]
    qi, qo = imp.act_q(op, src), imp.act_q(op, out)
    if (qi.scale, qi.zero_point) != (qo.scale, qo.zero_point):
        raise imp.error(op, "changes the quantization", "a reshape keeps scale and zero point")
    if math.prod(imp.tensor(src).shape) != math.prod(imp.tensor(out).shape):
        raise imp.error(op, "changes the element count", "the .tflite file is inconsistent: re-export it")
    shape = imp.hwc(op, out)
    # NHWC element order is the C layout: any reshape between batch-1 tensors is a view
    imp.emit(Flatten(imp.op_name(op), (imp.name(src),), imp.name(out), (imp.shapes[imp.name(src)],), shape))


@register_tflite("SOFTMAX")
def _softmax(imp: Importer, op: TfOp) -> None:
    src, out = op.inputs[0], op.outputs[0]
    qi, qo = imp.act_q(op, src), imp.act_q(op, out)
    if imp.tensor(src).shape != imp.tensor(out).shape:
        raise imp.error(op, f"maps {list(imp.tensor(src).shape)} to {list(imp.tensor(out).shape)}",
                        "a softmax keeps its input's shape: the .tflite file is inconsistent")  # fmt: skip
    if qo.zero_point != -128 or abs(float(qo.scale) - 1.0 / 256) > 0.001 / 256:  # TFLM's TF_LITE_ENSURE_NEAR
        raise imp.error(op, f"has output scale {qo.scale} and zero point {qo.zero_point}",
                        "TFLite's int8 softmax writes scale 1/256, zero point -128")  # fmt: skip
    beta = float(np.float32(op.options.get("Beta", 1.0)))
    real = beta * float(qi.scale) * (1 << (31 - SOFTMAX_DIFF_INT_BITS))
    if not (math.isfinite(real) and 1.0 < real < 2.0**30):
        raise imp.error(op, f"has beta {beta} and input scale {qi.scale}",
                        "TFLite's int8 softmax needs 1 < beta * input scale * 2^26 < 2^30")  # fmt: skip
    mult, left_shift = quantize_multiplier(real)
    max_rescaled = 1.0 * ((1 << SOFTMAX_DIFF_INT_BITS) - 1) * (1 << (31 - SOFTMAX_DIFF_INT_BITS)) / (1 << left_shift)
    shape = imp.hwc(op, out)
    imp.emit(Softmax(imp.op_name(op), (imp.name(src),), imp.name(out), (shape,), shape, input_multiplier=mult,
                     input_left_shift=left_shift, diff_min=-math.floor(max_rescaled)))  # fmt: skip


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """TFLite's QuantizedMeanOrSum rescaling: QuantizeMultiplier(in_scale / out_scale) with 1 / count folded in.

    Example:
        >>> mean_multiplier(1.0, 1.0, 9)
        (954437176, -2)
    """
    mult, shift = quantize_multiplier(float(in_scale) / float(out_scale))
    fold = min(count.bit_length() - 1, 32, 31 + shift)  # 63 - clz64(count), clamped as TFLite does
    return (mult << fold) // count, shift - fold


@register_tflite("MEAN")
def _mean(imp: Importer, op: TfOp) -> None:
    """MEAN over the spatial axes, as the pip TFLM computes int8 means with or without keep_dims (its
    QuantizedMeanOrSum; older TFLM releases took reference_integer_ops::Mean for keep_dims, with other rounding)."""
    src, out = op.inputs[0], op.outputs[0]
    qi, qo = imp.act_q(op, src), imp.act_q(op, out)
    axes = imp.const(op, 1, "int32").data
    assert axes is not None
    shape = imp.tensor(src).shape
    if len(shape) != 4 or sorted(int(a) % 4 for a in axes.reshape(-1)) != [1, 2]:
        raise imp.error(op, f"averages axes {axes.reshape(-1).tolist()} of a {list(shape)} tensor",
                        "leanml supports MEAN over the spatial axes (1, 2) of an NHWC map")  # fmt: skip
    h, w, c = imp.hwc(op, src)
    out_shape = imp.hwc(op, out)
    if math.prod(out_shape) != c:
        raise imp.error(op, f"declares output {list(imp.tensor(out).shape)} for {c} channels", "re-export the model")
    mult, shift = mean_multiplier(qi.scale, qo.scale, h * w)
    imp.emit(Mean(imp.op_name(op), (imp.name(src),), imp.name(out), ((h, w, c),), out_shape, in_zp=qi.zero_point,
                  out_zp=qo.zero_point, multiplier=mult, shift=shift))  # fmt: skip
