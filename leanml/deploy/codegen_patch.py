"""C for a patch stage (one function per stage op, one straight-line function per patch) and a row-streamed block.

Each stage op gets a ``noinline`` function that calls its kernel with every
constant as a literal and the region sizes and border padding as arguments,
so the kernels' code exists once however many patches there are. A patch is a
short list of calls with literal regions: crops where an op reads part of a
larger region, the op functions, and a final paste of the patch's output
into the full stage output.

A row-streamed residual block (:class:`~leanml.deploy.patch.StreamBlock`) uses the same op functions, called
on one output row at a time with windows of line-buffer rows, from one straight-line function.

Example:
    >>> # exercised by tests/deploy/test_patch.py and tests/deploy/test_fused.py through codegen.generate_c
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leanml.deploy.ir import Add, Clamp, Conv, Conv1x1, Depthwise, Op
from leanml.deploy.kernel_calls import Region, conv1x1_call, conv_call, depthwise_call
from leanml.deploy.patch import PatchStage, Rect, crop_key, needs_crop
from leanml.deploy.stream import StreamBlock

COPY_RECT = """/* Copy h rows of w*c bytes between HWC buffers whose rows hold src_w and dst_w pixels. */
static void dk_copy_rect(const int8_t *src, int src_w, int8_t *dst, int dst_w, int h, int w, int c) {
    for (int y = 0; y < h; ++y) memmove(dst + (long)y * dst_w * c, src + (long)y * src_w * c, (size_t)w * c);
}
"""


STAGE = Region("in0", "in_h", "in_w", "ph", "pw", "out", "out_h", "out_w")  # a stage function's parameters


def _conv(e: Any, op: Conv) -> str:
    return conv_call(e.conv_consts(op), op, STAGE)


def _conv1x1(e: Any, op: Conv1x1) -> str:
    return conv1x1_call(e.conv_consts(op), op, STAGE)


def _depthwise(e: Any, op: Depthwise) -> str:
    return depthwise_call(e.conv_consts(op), op, STAGE)


def _add(e: Any, op: Add) -> str:
    c = op.out_shape[2]
    return (f"dk_add_s8(in0, in1, out_h * out_w * {c}, {op.a_zp}, {op.a_multiplier}, {op.a_shift}, {op.b_zp}, "
            f"{op.b_multiplier}, {op.b_shift}, {op.out_multiplier}, {op.out_shift}, {op.out_zp}, {op.act_min}, "
            f"{op.act_max}, out);")  # fmt: skip


def _clamp(e: Any, op: Clamp) -> str:
    n = f"out_h * out_w * {op.out_shape[2]}"
    return f"memmove(out, in0, (size_t)({n})); dk_clamp_s8(out, {n}, {op.act_min}, {op.act_max});"


# IR op type -> the kernel call of a stage op's function (patch_graph admits only these types)
STAGE_OP_BODIES: dict[type, Callable[[Any, Any], str]] = {
    Conv: _conv, Conv1x1: _conv1x1, Depthwise: _depthwise, Add: _add, Clamp: _clamp,
}  # fmt: skip


def _op_function(e: Any, op: Op) -> str:
    """A stage op as ``so_<name>(in0, in1, in_h, in_w, ph, pw, out, out_h, out_w)``."""
    head = (f"static void __attribute__((noinline)) so_{op.name}(const int8_t *in0, const int8_t *in1, int in_h, "
            f"int in_w, int ph, int pw, int8_t *out, int out_h, int out_w) {{\n"
            f"    (void)in1; (void)in_h; (void)in_w; (void)ph; (void)pw; (void)out_h; (void)out_w;\n    ")  # fmt: skip
    return head + STAGE_OP_BODIES[type(op)](e, op) + "\n}\n"


def emit_patch_stage(e: Any, stage: PatchStage) -> str:
    """Emit the stage's functions into ``e.functions``; returns the body of the stage's layer function."""
    if COPY_RECT not in e.functions:
        e.functions.append(COPY_RECT)
    for op in stage.ops:
        e.functions.append(_op_function(e, op))
    base = e.layout.scratch_offset[stage.name]
    src_full = stage.inputs[0]
    h_in, w_in, _ = stage.in_shapes[0]
    out_w_full, c_out = stage.out_shape[1], stage.out_shape[2]
    calls = []
    for k, plan in enumerate(stage.patches):
        lines = []
        for op in stage.ops:
            ptrs = []
            for idx, src in enumerate(op.inputs):
                read = plan.reads[(op.name, idx)]
                c = op.in_shapes[idx][2]
                if src == src_full:
                    held, held_ptr = Rect(0, h_in, 0, w_in), f"(arena + {e.layout.tensor_offset[src_full]})"
                else:
                    held, held_ptr = plan.regions[src], f"(arena + {base + stage.arena_offsets[src]})"
                if needs_crop(stage, plan, op, idx):
                    dst = f"(arena + {base + stage.arena_offsets[crop_key(op, idx)]})"
                    offset = ((read.y0 - held.y0) * held.w + (read.x0 - held.x0)) * c
                    lines.append(f"dk_copy_rect({held_ptr} + {offset}, {held.w}, {dst}, {read.w}, {read.h}, "
                                 f"{read.w}, {c});")  # fmt: skip
                    ptrs.append(dst)
                else:
                    ptrs.append(held_ptr)
            if len(ptrs) == 1:
                ptrs.append("(const int8_t *)0")
            read0 = plan.reads[(op.name, 0)]
            out = plan.regions[op.output]
            ph, pw = plan.pads[op.name]
            lines.append(f"so_{op.name}({ptrs[0]}, {ptrs[1]}, {read0.h}, {read0.w}, {ph}, {pw}, "
                         f"(arena + {base + stage.arena_offsets[op.output]}), {out.h}, {out.w});")  # fmt: skip
        out = plan.regions[stage.output]
        dst = f"(arena + {e.layout.tensor_offset[stage.output]} + {(out.y0 * out_w_full + out.x0) * c_out})"
        lines.append(f"dk_copy_rect((arena + {base + stage.arena_offsets[stage.output]}), {out.w}, {dst}, "
                     f"{out_w_full}, {out.h}, {out.w}, {c_out});")  # fmt: skip
        fn = f"patch_{stage.name}_{k}"
        e.functions.append(f"static void {fn}(int8_t *arena) {{\n    " + "\n    ".join(lines) + "\n}\n")
        calls.append(f"{fn}(arena);")
    return " ".join(calls)


def emit_stream_block(e: Any, block: StreamBlock) -> str:
    """Emit the block's op functions and its row schedule into ``e.functions``; returns the last op's layer body."""
    last = block.last
    bases = {"x": e.layout.tensor_offset[block.input], "o": e.layout.tensor_offset[last.output],
             "s": e.layout.scratch_offset[last.name]}  # fmt: skip

    def ptr(p: tuple[str, int]) -> str:
        return f"(arena + {bases[p[0]] + p[1]})"

    for op in (*block.ops, last):
        e.functions.append(_op_function(e, op))
    row_bytes = {op.output: op.out_shape[1] * op.out_shape[2] for op in (*block.ops, last)}
    lines = []
    for act in block.actions:
        if act[0] == "shift":  # drop a line buffer's oldest row
            _, t, keep = act
            base, rb = bases["s"] + block.windows[t][0], row_bytes[t]
            lines.append(f"memmove(arena + {base}, arena + {base + rb}, {keep * rb});")
        elif act[0] == "conv":  # one output row from a window of input rows
            _, op, src, rows, top, dst = act
            lines.append(f"so_{op.name}({ptr(src)}, (const int8_t *)0, {rows}, {op.in_shapes[0][1]}, {top}, "
                         f"{op.padding[1]}, {ptr(dst)}, 1, {op.out_shape[1]});")  # fmt: skip
        elif act[0] == "add":
            _, a, b, dst = act
            w = last.out_shape[1]
            lines.append(f"so_{last.name}({ptr(a)}, {ptr(b)}, 1, {w}, 0, 0, {ptr(dst)}, 1, {w});")
        else:  # in place: the finished row goes over x rows read for the last time
            rb = row_bytes[last.output]
            lines.append(f"memmove(arena + {bases['o'] + act[1] * rb}, arena + {bases['s'] + block.tmp_offset}, {rb});")
    fn = f"stream_{last.name}"
    e.functions.append(f"static void {fn}(int8_t *arena) {{\n    " + "\n    ".join(lines) + "\n}\n")
    return f"{fn}(arena);"
