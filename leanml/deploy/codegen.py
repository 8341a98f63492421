"""C99 code generation: constant weights in flash, one static arena, one specialized function per layer.

Each IR op becomes a ``static`` function whose body calls a kernel of
``csrc/leanml_kernels.h`` (all ``static inline``) with every shape, stride,
zero point and clamp bound as a literal, so the compiler specializes and
unrolls it per layer. Weights, biases and requantization constants are
``static const`` arrays (flash on a microcontroller); activations live in one
``static`` arena at offsets fixed by the planner. Names are sanitized by the
IR; the prefix is sanitized here.

Generated API (``<prefix>.h``)::

    int <prefix>_run_q(const int8_t *input /* (H, W, C) int8 */, int8_t *output /* (F,) int8 */);
    int <prefix>_run(const float *input /* (H, W, C) float */, float *output /* (F,) dequantized */);

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> from leanml.quant import QuantSim, convert
    >>> from leanml.deploy.ir import lower
    >>> from leanml.deploy.planner import plan_memory
    >>> sim = QuantSim.from_model(build_model("vgg", layers=[4, "M"]).eval())
    >>> sim.calibrate([torch.randn(2, 1, 28, 28)])
    >>> graph = lower(convert(sim), (1, 28, 28))
    >>> sources = generate_c(graph, plan_memory(graph), "net")
    >>> sorted(sources)
    ['net.c', 'net.h']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from leanml.deploy.codegen_patch import emit_patch_stage, emit_stream_block
from leanml.deploy.codegen_threads import POOL_HEADER, split_body
from leanml.deploy.ir import (
    Add,
    Clamp,
    Conv,
    Conv1x1,
    Depthwise,
    Flatten,
    Graph,
    Linear,
    Mean,
    Op,
    Pool,
    Quantize,
    Softmax,
)  # fmt: skip
from leanml.deploy.kernel_calls import (
    conv1x1_call,
    conv_call,
    depthwise_call,
    depthwise_inplace_call,
    pool_call,
    whole,
)
from leanml.deploy.patch import PatchStage
from leanml.deploy.planner import MemoryLayout, pointwise_chunk
from leanml.deploy.weights import pack_w4
from leanml.errors import LeanmlError

HEADER = "leanml_kernels.h"


def c_prefix(prefix: str) -> str:
    """A safe C prefix for the generated API.

    Example:
        >>> c_prefix("my-model v2")
        'my_model_v2'
    """
    ident = re.sub(r"[^A-Za-z0-9_]", "_", prefix)[:32]
    return ident if re.match(r"[A-Za-z_]", ident) else "m_" + ident


def c_array(ctype: str, name: str, values: np.ndarray) -> str:
    """A ``static const`` C array initializer (16 values per line)."""
    flat = np.asarray(values).reshape(-1)
    rows = [", ".join(str(int(v)) for v in flat[i : i + 16]) for i in range(0, len(flat), 16)]
    body = ",\n    ".join(rows) if rows else "0"
    return f"static const {ctype} {name}[{max(len(flat), 1)}] = {{\n    {body}\n}};\n"


def c_float(v: float) -> str:
    """A float32 literal that round-trips exactly.

    Example:
        >>> c_float(1.0), c_float(0.00390625)
        ('1.0f', '0.00390625f')
    """
    text = f"{float(np.float32(v)):.9g}"
    return text + ("" if any(ch in text for ch in ".e") else ".0") + "f"


class _Emitter:
    def __init__(self, graph: Graph, layout: MemoryLayout) -> None:
        self.graph = graph
        self.layout = layout
        self.consts: list[str] = []
        self.functions: list[str] = []  # file-scope helpers some ops need (patch stages)

    def ptr(self, tensor: str) -> str:
        return f"(arena + {self.layout.tensor_offset[tensor]})"

    def const(self, op: Op, suffix: str, ctype: str, values: np.ndarray) -> str:
        name = f"{op.name}_{suffix}"
        self.consts.append(c_array(ctype, name, values))
        return name

    def requant_args(self, op: Conv | Linear) -> tuple[str, str, str]:
        return (self.const(op, "b", "int32_t", op.bias), self.const(op, "m", "int32_t", op.multiplier),
                self.const(op, "s", "int32_t", op.shift))  # fmt: skip

    def guarded_const(self, op: Op, suffix: str, ctype: str, values: np.ndarray, condition: str) -> str:
        """A constant array compiled only where the preprocessor ``condition`` holds (a kernel variant's layout)."""
        name = f"{op.name}_{suffix}"
        self.consts.append(f"#if {condition}\n{c_array(ctype, name, values)}#endif\n")
        return name

    def weights(self, op: Conv | Linear) -> str:
        """The weight array's name: int8, or two 4-bit codes per byte when ``op.weight_bits`` is 4."""
        if op.weight_bits == 4:
            return self.const(op, "w", "uint8_t", pack_w4(op.weight))
        return self.const(op, "w", "int8_t", op.weight)

    def conv_consts(self, op: Conv) -> tuple[str, str, str]:
        """The weight and bias array names, and the requantization arguments every conv kernel takes."""
        w = self.weights(op)
        b, m, s = self.requant_args(op)
        return w, b, f"{m}, {s}, {op.out_zp}, {op.act_min}, {op.act_max}"

    def body(self, op: Op) -> str:
        if op.name in self.layout.streamed:
            return "/* runs row by row inside its residual block */"
        if op.name in self.layout.blocks:
            return emit_stream_block(self, self.layout.blocks[op.name])
        emit = EMITTERS.get(type(op))
        if emit is None:
            raise LeanmlError(f"no C emitter for IR op {type(op).__name__}")
        return emit(self, op)


def _quantize(e: _Emitter, op: Quantize) -> str:
    return f"dk_quantize_f32(input, {op.out_numel}, {c_float(op.q.scale)}, {op.q.zero_point}, {e.ptr(op.output)});"


def _conv(e: _Emitter, op: Conv) -> str:
    return conv_call(e.conv_consts(op), op, whole(op, e.ptr(op.inputs[0]), e.ptr(op.output)))


def _conv1x1(e: _Emitter, op: Conv1x1) -> str:
    region = whole(op, e.ptr(op.inputs[0]), e.ptr(op.output))
    if op.weight_bits == 4 or op.name not in e.layout.in_place:  # packing skips in-place 1x1 convs
        return conv1x1_call(e.conv_consts(op), op, region)
    ih, iw, ic = op.in_shapes[0]
    w, b, tail = e.conv_consts(op)
    scratch = f"(arena + {e.layout.scratch_offset[op.name]})"
    return (f"dk_conv1x1_s8_inplace({region.src}, {ih}, {iw}, {ic}, {op.in_zp}, {w}, {b}, {op.out_shape[2]}, "
            f"{tail}, {scratch}, {pointwise_chunk(op)});")  # fmt: skip


def _depthwise(e: _Emitter, op: Depthwise) -> str:
    region = whole(op, e.ptr(op.inputs[0]), e.ptr(op.output))
    if op.name in e.layout.in_place:
        return depthwise_inplace_call(e.conv_consts(op), op, region, f"(arena + {e.layout.scratch_offset[op.name]})")
    return depthwise_call(e.conv_consts(op), op, region)


def il4_weights(weight: np.ndarray) -> np.ndarray:
    """A linear layer's (out, in) int8 weights in the Cortex-M ``dk_linear_s8_il4`` order: zero-padded to multiples
    of 4 rows and columns, then 16-byte groups of 4 rows x 4 columns (one LDM of four words per group).

    Example:
        >>> il4_weights(np.arange(8, dtype=np.int8).reshape(1, 8)).reshape(-1, 16)[0].tolist()[:8]
        [0, 1, 2, 3, 0, 0, 0, 0]
    """
    out_f, in_f = weight.shape
    o4, k4 = -(-out_f // 4) * 4, -(-in_f // 4) * 4
    padded = np.zeros((o4, k4), np.int8)
    padded[:out_f, :in_f] = weight
    return np.ascontiguousarray(padded.reshape(o4 // 4, 4, k4 // 4, 4).transpose(0, 2, 1, 3).reshape(-1))


def _linear(e: _Emitter, op: Linear) -> str:
    out_f, in_f = op.weight.shape
    src, rest = e.ptr(op.inputs[0]), f"{op.out_zp}, {op.act_min}, {op.act_max}, {e.ptr(op.output)});"
    bias_zp = op.bias.astype(np.int64) - op.in_zp * op.weight.astype(np.int64).sum(axis=1)
    if op.weight_bits == 4 or np.abs(bias_zp).max(initial=0) >= 2**31:
        kernel = "dk_linear_s8w4" if op.weight_bits == 4 else "dk_linear_s8"
        m, s = e.const(op, "m", "int32_t", op.multiplier), e.const(op, "s", "int32_t", op.shift)
        w, b = e.weights(op), e.const(op, "b", "int32_t", op.bias)
        return f"{kernel}({src}, {in_f}, {op.in_zp}, {w}, {b}, {out_f}, {m}, {s}, {rest}"
    # Cortex-M DSP: weights in 4x4 groups and the zero point folded into the bias (one LDM per 16 weights), one
    # multiplier and shift as literals when they are per tensor (as TFLite's fully connected layers); the other
    # targets: the (out, in) layout. Each build compiles only its own arrays.
    arm, host = "defined(DK_ARM_DSP)", "!defined(DK_ARM_DSP)"
    per_tensor = np.unique(op.multiplier).size == 1 and np.unique(op.shift).size == 1
    w_il4 = e.guarded_const(op, "w_il4", "int8_t", il4_weights(op.weight), arm)
    b_zp = e.guarded_const(op, "b_zp", "int32_t", bias_zp, arm)
    w, b = e.guarded_const(op, "w", "int8_t", op.weight, host), e.guarded_const(op, "b", "int32_t", op.bias, host)
    if per_tensor:
        m = e.guarded_const(op, "m", "int32_t", op.multiplier, host)
        s = e.guarded_const(op, "s", "int32_t", op.shift, host)
        arm_call = f"dk_linear_s8_il4_pt({src}, {in_f}, {w_il4}, {b_zp}, {out_f}, {int(op.multiplier[0])}, "
        arm_call += f"{int(op.shift[0])}, {rest}"
    else:
        m, s = e.const(op, "m", "int32_t", op.multiplier), e.const(op, "s", "int32_t", op.shift)
        arm_call = f"dk_linear_s8_il4({src}, {in_f}, {w_il4}, {b_zp}, {out_f}, {m}, {s}, {rest}"
    host_call = f"dk_linear_s8({src}, {in_f}, {op.in_zp}, {w}, {b}, {out_f}, {m}, {s}, {rest}"
    return f"\n#if {arm}\n    {arm_call}\n#else\n    {host_call}\n#endif"


def _add(e: _Emitter, op: Add) -> str:
    a, b = (e.ptr(t) for t in op.inputs)
    return (f"dk_add_s8({a}, {b}, {op.out_numel}, {op.a_zp}, {op.a_multiplier}, {op.a_shift}, {op.b_zp}, "
            f"{op.b_multiplier}, {op.b_shift}, {op.out_multiplier}, {op.out_shift}, {op.out_zp}, {op.act_min}, "
            f"{op.act_max}, {e.ptr(op.output)});")  # fmt: skip


def _pool(e: _Emitter, op: Pool) -> str:
    return pool_call(op, whole(op, e.ptr(op.inputs[0]), e.ptr(op.output)))


def _copy_if_moved(e: _Emitter, op: Op) -> str:
    src, dst = e.ptr(op.inputs[0]), e.ptr(op.output)
    return "" if src == dst else f"memmove({dst}, {src}, {op.out_numel});"


def _flatten(e: _Emitter, op: Flatten) -> str:
    return _copy_if_moved(e, op) or "/* view */"


def _clamp(e: _Emitter, op: Clamp) -> str:
    return f"{_copy_if_moved(e, op)} dk_clamp_s8({e.ptr(op.output)}, {op.out_numel}, {op.act_min}, {op.act_max});"


def _softmax(e: _Emitter, op: Softmax) -> str:
    depth = op.out_shape[-1]
    return (f"dk_softmax_s8({e.ptr(op.inputs[0])}, {op.out_numel // depth}, {depth}, {op.input_multiplier}, "
            f"{op.input_left_shift}, {op.diff_min}, {e.ptr(op.output)});")  # fmt: skip


def _mean(e: _Emitter, op: Mean) -> str:
    h, w, c = op.in_shapes[0]
    return (f"dk_mean_hw_s8({e.ptr(op.inputs[0])}, {h}, {w}, {c}, {op.in_zp}, {op.multiplier}, {op.shift}, "
            f"{op.out_zp}, {e.ptr(op.output)});")  # fmt: skip


EMITTERS: dict[type, Callable[[Any, Any], str]] = {
    Quantize: _quantize, Conv: _conv, Conv1x1: _conv1x1, Depthwise: _depthwise, Linear: _linear, Add: _add, Pool: _pool,
    Flatten: _flatten, Clamp: _clamp, Softmax: _softmax, Mean: _mean, PatchStage: emit_patch_stage,
}  # fmt: skip


def _layer_functions(e: _Emitter, threads: int) -> tuple[list[str], list[str]]:
    """(layer function definitions, their calls in order). With ``threads`` > 1 each layer takes (part, parts) and
    the ones :func:`~leanml.deploy.codegen_threads.split_body` splits run through the pool."""
    funcs, calls = [], []
    for op in e.graph.ops:
        fn = f"layer_{op.name}"
        shapes = ", ".join(str(s) for s in op.in_shapes)
        doc = f"/* {op.kind}: {shapes} -> {op.out_shape}, {op.macs()} MACs */\n"
        if threads == 1:
            funcs.append(f"{doc}static void {fn}(const float *input, int8_t *arena) {{\n"
                         f"    (void)input; (void)arena;\n    {e.body(op)}\n}}\n")  # fmt: skip
            calls.append(f"    {fn}(input, arena);")
            continue
        split = split_body(e, op)
        body = split if split is not None else e.body(op)
        funcs.append(f"{doc}static void {fn}(const float *input, int8_t *arena, int part, int parts) {{\n"
                     f"    (void)input; (void)arena; (void)part; (void)parts;\n    {body}\n}}\n")  # fmt: skip
        calls.append(f"    dk_pool_run(&pool, {fn}, input, arena);" if split is not None
                     else f"    {fn}(input, arena, 0, 1);")  # fmt: skip
    return funcs, calls


def generate_c(graph: Graph, layout: MemoryLayout, prefix: str = "leanml_model", threads: int = 1) -> dict[str, str]:
    """``{<prefix>.h, <prefix>.c}``: the model as C99 source calling the kernel header.

    ``threads`` > 1 adds the host multi-thread mode (``csrc/leanml_pool.h``, POSIX threads; link with -pthread).
    """
    p = c_prefix(prefix)
    e = _Emitter(graph, layout)
    out_numel = next(op.out_numel for op in graph.ops if op.output == graph.output)
    h, w, c = graph.input_shape
    funcs, calls = _layer_functions(e, threads)
    up = p.upper()
    header = (f"/* Generated by leanml: do not edit. */\n#ifndef {up}_H\n#define {up}_H\n#include <stdint.h>\n\n"
              f"#define {up}_INPUT_H {h}\n#define {up}_INPUT_W {w}\n#define {up}_INPUT_C {c}\n"
              f"#define {up}_OUTPUT_SIZE {out_numel}\n#define {up}_ARENA_BYTES {layout.arena_bytes}\n\n"
              f"/* int8 input (H, W, C) -> int8 output codes (OUTPUT_SIZE,); returns 0 */\n"
              f"int {p}_run_q(const int8_t *input, int8_t *output);\n"
              f"/* n int8 inputs (n, H, W, C) -> n output code rows (n, OUTPUT_SIZE), one after another; returns 0 */\n"
              f"int {p}_run_q_batch(const int8_t *input, int n, int8_t *output);\n"
              f"/* float input (H, W, C) -> dequantized float output (OUTPUT_SIZE,); returns 0 */\n"
              f"int {p}_run(const float *input, float *output);\n\n#endif\n")  # fmt: skip
    in_numel = h * w * c
    first = graph.ops[0]
    pool = start = ""
    if threads > 1:
        pool = (f"#include \"{POOL_HEADER}\"\n\n/* {threads} threads: the caller and {threads - 1} pool workers */\n"
                f"static dk_pool_t pool;\nstatic pthread_once_t pool_once = PTHREAD_ONCE_INIT;\n"
                f"static void pool_start(void) {{ dk_pool_start(&pool, {threads}); }}\n")  # fmt: skip
        start = "    pthread_once(&pool_once, pool_start);\n"
    source = (
        f"/* Generated by leanml: do not edit. */\n#include <string.h>\n#include \"{HEADER}\"\n#include \"{p}.h\"\n"
        + pool
        + f"\nstatic int8_t arena[{max(layout.arena_bytes, 1)}] __attribute__((aligned(16)));\n\n"
        + "".join(e.consts) + "\n" + "\n".join(e.functions) + "\n" + "\n".join(funcs) + "\n"
        + f"static void {p}_layers(const float *input) {{\n    (void)input;\n" + "\n".join(calls[1:]) + "\n}\n\n"
        + f"int {p}_run_q(const int8_t *input, int8_t *output) {{\n{start}"
        f"    memcpy(arena + {layout.tensor_offset[first.output]}, input, {in_numel});\n"
        f"    {p}_layers((const float *)0);\n"
        f"    memcpy(output, arena + {layout.tensor_offset[graph.output]}, {out_numel});\n    return 0;\n}}\n\n"
        f"int {p}_run_q_batch(const int8_t *input, int n, int8_t *output) {{\n"
        f"    for (int i = 0; i < n; ++i)\n"
        f"        {p}_run_q(input + (size_t)i * {in_numel}, output + (size_t)i * {out_numel});\n"
        f"    return 0;\n}}\n\n"
        f"int {p}_run(const float *input, float *output) {{\n{start}"
        f"    layer_{first.name}(input, arena{', 0, 1' if threads > 1 else ''});\n    {p}_layers(input);\n"
        f"    dk_dequantize_s8(arena + {layout.tensor_offset[graph.output]}, {out_numel}, "
        f"{c_float(graph.output_q.scale)}, {graph.output_q.zero_point}, output);\n    return 0;\n}}\n"
    )  # fmt: skip
    return {f"{p}.h": header, f"{p}.c": source}
