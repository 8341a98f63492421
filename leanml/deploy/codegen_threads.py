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
from leanml.deploy.kernel_calls import Region, conv1x1_call, conv_call, depthwise_call, pool_call

POOL_HEADER = "leanml_pool.h"
MIN_PARALLEL_MACS = 20_000  # below this a layer runs on the caller: the hand-off would cost more than it saves
MIN_PARALLEL_ELEMENTS = 4_096  # the same for adds and clamps


def _band(op: Conv | Pool, src: str, dst: str) -> tuple[str, Region]:
    """(the C lines computing this part's row band, the band as a kernel region)."""
    ih, iw, ic = op.in_shapes[0]
    _, ow, oc = op.out_shape
    kh, sh, ph = (1, 1, 0) if isinstance(op, Conv1x1) else (op.kernel[0], op.stride[0], op.padding[0])
    head = (f"const dk_band_t b = dk_band_rows(part, parts, {op.out_shape[0]}, {sh}, {ph}, {kh}, {ih});\n    "
            f"if (b.out_rows <= 0) return;\n    ")  # fmt: skip
    rows = "b.out_rows" if isinstance(op, Conv1x1) else "b.in_rows"  # a 1x1 conv's input band is its output band
    region = Region(f"{src} + (int32_t)b.in_row0 * {iw * ic}", rows, str(iw), "b.pad_top", str(op.padding[1]),
                    f"{dst} + (int32_t)b.out_row0 * {ow * oc}", "b.out_rows", str(ow))  # fmt: skip
    return head, region


def _conv_band(e: Any, op: Conv) -> str:
    head, region = _band(op, e.ptr(op.inputs[0]), e.ptr(op.output))
    if isinstance(op, Depthwise):
        return head + depthwise_call(e.conv_consts(op), op, region)
    if isinstance(op, Conv1x1):
        return head + conv1x1_call(e.conv_consts(op), op, region)
    return head + conv_call(e.conv_consts(op), op, region)


def _pool_band(e: Any, op: Pool) -> str:
    head, region = _band(op, e.ptr(op.inputs[0]), e.ptr(op.output))
    return head + pool_call(op, region)


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
