"""The host multi-thread mode of the generated C: each layer split into row bands (or feature / element ranges) run
in parallel by the fork-join pool of ``csrc/leanml_pool.h``.

A layer's body here is its kernel call on part ``part`` of ``parts``: convolutions, depthwise convs and pooling
on bands of output rows (the kernel gets the input rows the band reads and the padding above them, the same
call the patch stages make), 1x1 convs on bands of pixel rows, fully connected layers on ranges of output
features, adds and clamps on ranges of elements. Every part computes whole output elements with the same
kernel, so the result is bit-identical to one thread. Layers with no split here (in-place and row-streamed ops,
patch stages, softmax, tiny layers) run whole on the calling thread, between the parallel ones.

Example:
    >>> MIN_PARALLEL_MACS > 0
    True
"""

from __future__ import annotations

from typing import Any

from leanml.deploy.ir import Add, Clamp, Conv, Conv1x1, Depthwise, Linear, Op, Pool

POOL_HEADER = "leanml_pool.h"
MIN_PARALLEL_MACS = 20_000  # below this a layer runs on the caller: the hand-off would cost more than it saves
MIN_PARALLEL_ELEMENTS = 4_096  # the same for adds and clamps


def _rows(op: Op, kh: int, sh: int, ph: int) -> str:
    ih = op.in_shapes[0][0]
    return f"const dk_band_t b = dk_band_rows(part, parts, {op.out_shape[0]}, {sh}, {ph}, {kh}, {ih});\n    " \
           f"if (b.out_rows <= 0) return;\n    "  # fmt: skip


def _conv_band(e: Any, op: Conv) -> str:
    _, iw, ic = op.in_shapes[0]
    _, ow, oc = op.out_shape
    w, bias, tail = e.conv_consts(op)
    src, dst = e.ptr(op.inputs[0]), e.ptr(op.output)
    if isinstance(op, Depthwise):
        kernel = "dk_depthwise_conv2d_s8w4" if op.weight_bits == 4 else "dk_depthwise_conv2d_s8"
        return (_rows(op, op.kernel[0], op.stride[0], op.padding[0])
                + f"{kernel}({src} + (int32_t)b.in_row0 * {iw * ic}, b.in_rows, {iw}, {ic}, {op.in_zp}, {w}, "
                f"{bias}, {op.kernel[0]}, {op.kernel[1]}, {op.stride[0]}, {op.stride[1]}, b.pad_top, "
                f"{op.padding[1]}, {tail}, {dst} + (int32_t)b.out_row0 * {ow * oc}, b.out_rows, {ow});")  # fmt: skip
    if isinstance(op, Conv1x1) and op.weight_bits == 8:
        return (_rows(op, 1, 1, 0)
                + f"dk_conv1x1_s8({src} + (int32_t)b.in_row0 * {iw * ic}, b.out_rows, {iw}, {ic}, {op.in_zp}, {w}, "
                f"{bias}, {oc}, {tail}, {dst} + (int32_t)b.out_row0 * {iw * oc});")  # fmt: skip
    kernel = "dk_conv2d_s8w4" if op.weight_bits == 4 else "dk_conv2d_s8"
    return (_rows(op, op.kernel[0], op.stride[0], op.padding[0])
            + f"{kernel}({src} + (int32_t)b.in_row0 * {iw * ic}, b.in_rows, {iw}, {ic}, {op.in_zp}, {w}, {bias}, "
            f"{oc}, {op.kernel[0]}, {op.kernel[1]}, {op.stride[0]}, {op.stride[1]}, b.pad_top, {op.padding[1]}, "
            f"{op.groups}, {tail}, {dst} + (int32_t)b.out_row0 * {ow * oc}, b.out_rows, {ow});")  # fmt: skip


def _pool_band(e: Any, op: Pool) -> str:
    _, iw, c = op.in_shapes[0]
    _, ow, _ = op.out_shape
    src, dst = e.ptr(op.inputs[0]), e.ptr(op.output)
    band = _rows(op, op.kernel[0], op.stride[0], op.padding[0])
    tail = f"{dst} + (int32_t)b.out_row0 * {ow * c}, b.out_rows, {ow});"
    geo = f"{src} + (int32_t)b.in_row0 * {iw * c}, b.in_rows, {iw}, {c}, {op.kernel[0]}, {op.kernel[1]}"
    if op.mode == "max":
        return band + f"dk_maxpool_s8({geo}, {op.stride[0]}, {op.stride[1]}, b.pad_top, {op.padding[1]}, {tail}"
    return band + f"dk_avgpool_s8({geo}, {op.stride[0]}, {op.stride[1]}, {tail}"


def _linear_band(e: Any, op: Linear) -> str:
    w = e.weights(op)
    bias, m, s = e.requant_args(op)
    out_f, in_f = op.weight.shape
    return (f"int32_t f0, nf;\n    dk_band_items(part, parts, {out_f}, &f0, &nf);\n    if (nf <= 0) return;\n    "
            f"dk_linear_s8({e.ptr(op.inputs[0])}, {in_f}, {op.in_zp}, {w} + f0 * {in_f}, {bias} + f0, (int)nf, "
            f"{m} + f0, {s} + f0, {op.out_zp}, {op.act_min}, {op.act_max}, {e.ptr(op.output)} + f0);")  # fmt: skip


def _elements_band(e: Any, op: Add | Clamp) -> str:
    head = f"int32_t i0, n;\n    dk_band_items(part, parts, {op.out_numel}, &i0, &n);\n    if (n <= 0) return;\n    "
    if isinstance(op, Clamp):
        src, dst = e.ptr(op.inputs[0]), e.ptr(op.output)
        move = "" if src == dst else f"memmove({dst} + i0, {src} + i0, (size_t)n); "
        return head + f"{move}dk_clamp_s8({dst} + i0, (int)n, {op.act_min}, {op.act_max});"
    a, b = (e.ptr(t) for t in op.inputs)
    return head + (f"dk_add_s8({a} + i0, {b} + i0, (int)n, {op.a_zp}, {op.a_multiplier}, {op.a_shift}, {op.b_zp}, "
                   f"{op.b_multiplier}, {op.b_shift}, {op.out_multiplier}, {op.out_shift}, {op.out_zp}, "
                   f"{op.act_min}, {op.act_max}, {e.ptr(op.output)} + i0);")  # fmt: skip


def split_body(e: Any, op: Op) -> str | None:
    """The body of ``op`` computing part ``part`` of ``parts``, or None when it runs whole on the caller.

    ``e`` is the code generator's emitter (constants, pointers, the memory layout).
    """
    layout = e.layout
    if op.name in layout.in_place or op.name in layout.streamed or op.name in layout.blocks:
        return None
    if isinstance(op, Conv):
        if op.macs() < MIN_PARALLEL_MACS or op.out_shape[0] < 2:
            return None
        return _conv_band(e, op)
    if isinstance(op, Pool):
        return _pool_band(e, op) if op.out_shape[0] >= 2 and op.out_numel >= MIN_PARALLEL_ELEMENTS else None
    if isinstance(op, Linear):
        ok = op.weight_bits == 8 and op.macs() >= MIN_PARALLEL_MACS and op.out_shape[0] >= 2
        return _linear_band(e, op) if ok else None  # 4-bit rows may start mid-byte: those run whole
    if isinstance(op, (Add, Clamp)):
        return _elements_band(e, op) if op.out_numel >= MIN_PARALLEL_ELEMENTS else None
    return None
