"""Import an int8 ``.tflite`` model into leanml's deploy IR, with TFLite Micro's integer rules.

:func:`load_tflite` reads the flatbuffer (:mod:`leanml.deploy.tflite_read`) and lowers each operator through
:data:`TFLITE_LOWERINGS` (one function per builtin opcode) into the same IR ops leanml's own integer models
become, so the planner, the code generator and the kernels are shared. The constants follow TFLite Micro's
``Prepare`` code exactly (the oracle is its reference kernels, bit for bit):

- conv / depthwise (per-channel weights): multiplier = QuantizeMultiplier(in_scale * w_scale[c] / out_scale),
  in double precision from the float32 scales; padding SAME puts the odd pixel at the bottom/right;
- fully connected: the same, per tensor or per channel (the pip TFLM takes the per-tensor product in double too);
- add: left shift 20, inputs rescaled by s / (2 max(s_a, s_b)), output by 2 max(s_a, s_b) / (2^20 s_out);
- fused activations: clamp bounds zp + round(limit / scale) in float32, intersected with [-128, 127];
- softmax: PreprocessSoftmaxScaling(beta, in_scale, 5 integer bits) and CalculateInputRadius;
- int8 -> int8 QUANTIZE (Requantize): QuantizeMultiplier(in_scale / out_scale), as a 1x1 unit-weight depthwise.

Supported opcodes: see :data:`TFLITE_LOWERINGS`; anything else is a :class:`~leanml.errors.LeanmlError` naming
the opcode and the supported list. Activations are int8 (weights int8, biases int32). Float inputs/outputs go
through QUANTIZE as the first and DEQUANTIZE as the last operator (the generated float API does them); uint8
ends (QUANTIZE uint8 <-> int8 with the same scale, zero point + 128) are TFLite's exact shift of the codes by
128, so ``run_q`` takes and returns int8 codes = uint8 codes - 128; a rescaling uint8 end is refused. A PAD of
zero points read only by one CONV_2D / DEPTHWISE_CONV_2D folds into that conv's padding; any other PAD is
refused (it would need a pad kernel). The operators must come in execution order, each tensor written once.

Example:
    >>> graph = load_tflite("../shared/models/tflite/kws_ref_model.tflite")  # doctest: +SKIP
    >>> [op.kind for op in graph.ops][:3]  # doctest: +SKIP
    ['quantize', 'conv', 'depthwise']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leanml.deploy.ir import Graph, Quantize, c_identifier
from leanml.deploy.tflite_ops import INPUTS, TFLITE_LOWERINGS, Importer
from leanml.deploy.tflite_read import TfOp, read_tflite
from leanml.errors import LeanmlError
from leanml.quant.integer_ops import TensorQ

__all__ = ["TFLITE_LOWERINGS", "load_tflite"]


def _check_dataflow(imp: Importer, op: TfOp) -> None:
    """One output, written once; the leading activation inputs computed by earlier operators (execution order)."""
    if len(op.outputs) != 1:
        raise imp.error(op, f"has {len(op.outputs)} outputs", "leanml ops have one output")
    out = imp.tensor(op.outputs[0])
    if imp.name(out.index) in imp.shapes or out.data is not None:
        raise imp.error(op, f"writes tensor {out.name!r}, which is already written or constant",
                        "each tensor has one producer: the .tflite file is malformed")  # fmt: skip
    needed, n_act = INPUTS.get(op.opcode, (1, 1))
    if len(op.inputs) < needed or any(i < 0 for i in op.inputs[:needed]):
        raise imp.error(op, f"has inputs {list(op.inputs)}, needs {needed}", "the .tflite file is malformed")
    for i in op.inputs[:n_act]:
        t = imp.tensor(imp.pads[i][0] if i in imp.pads else i)
        if imp.name(t.index) in imp.shapes:
            continue
        if t.data is not None:
            raise imp.error(op, f"reads the constant tensor {t.name!r} as an activation",
                            f"leanml's {op.opcode} takes computed tensors there: fold the constant into the "
                            "model before converting")  # fmt: skip
        raise imp.error(
            op,
            f"reads tensor {t.name!r} before any operator computes it",
            "leanml needs the operators in execution order: re-export the model",
        )


def _fold_pads(imp: Importer, tf_ops: list[TfOp], out_index: int) -> list[TfOp]:
    """``tf_ops`` without the PAD/PADV2 ops that fold exactly into the one CONV_2D / DEPTHWISE_CONV_2D reading
    them (spatial padding with the zero point, same quantization: the conv's own padding already reads zero
    points), recorded in ``imp.pads``; any other PAD is refused (it would need a pad kernel)."""
    kept = []
    for op in tf_ops:
        if op.opcode not in ("PAD", "PADV2"):
            kept.append(op)
            continue
        if len(op.outputs) != 1 or len(op.inputs) < 2 or min(op.inputs) < 0:
            raise imp.error(op, f"has inputs {list(op.inputs)} and outputs {list(op.outputs)}", "re-export it")
        src, dst = op.inputs[0], op.outputs[0]
        readers = [o for o in tf_ops if dst in o.inputs]
        conv = readers[0] if len(readers) == 1 else None
        if conv is None or conv.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D") or conv.inputs[0] != dst \
                or dst in conv.inputs[1:] or dst == out_index:  # fmt: skip
            users = ", ".join(f"{o.opcode} (operator {o.index})" for o in readers) or "the model output"
            raise imp.error(op, f"feeds {users}",
                            "leanml folds a PAD only into the one CONV_2D/DEPTHWISE_CONV_2D that reads it (a "
                            "standalone PAD needs a pad kernel): pad inside the conv, padding='same'")  # fmt: skip
        qi, qo = imp.act_q(op, src), imp.act_q(op, dst)
        pads_t = imp.tensor(op.inputs[1])
        pads = None if pads_t.data is None or pads_t.dtype not in ("int32", "int64") else pads_t.data
        if pads is None or pads.shape != (4, 2) or np.any(pads < 0) or np.any(pads[[0, 3]] != 0):
            raise imp.error(op, f"pads with {None if pads is None else pads.tolist()}",
                            "leanml folds constant, non-negative padding of H and W only")  # fmt: skip
        value: int | None = qo.zero_point  # PAD writes the output zero point; PADV2 its constant operand
        if op.opcode == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            v = imp.tensor(op.inputs[2])
            value = int(v.data.reshape(-1)[0]) if v.data is not None and v.data.size == 1 else None
        if (qi.scale, qi.zero_point) != (qo.scale, qo.zero_point) or value != qo.zero_point:
            raise imp.error(op, f"pads with code {value} (zero point {qi.zero_point} -> {qo.zero_point})",
                            "leanml folds a PAD of zero points (real 0) that keeps the quantization")  # fmt: skip
        (ih, iw, c), (oh, ow, oc) = imp.hwc(op, src), imp.hwc(op, dst)
        if (oh, ow, oc) != (ih + pads[1].sum(), iw + pads[2].sum(), c):
            raise imp.error(op, f"declares output {list(imp.tensor(dst).shape)}", "re-export the model")
        imp.pads[dst] = (src, int(pads[1][0]), int(pads[2][0]))
    return kept


def _end_op(imp: Importer, op: TfOp, outer: int, first: bool) -> int | None:
    """The int8 tensor of ``op`` when it is the model's first QUANTIZE (``first``) or last QUANTIZE/DEQUANTIZE,
    converting between the model's float32/uint8 tensor ``outer`` and int8; else None. A uint8 end must be
    TFLite's exact shift of the codes by 128 (same scale, zero point + 128), else it is refused."""
    ends, inner = (op.inputs, op.outputs) if first else (op.outputs, op.inputs)
    if op.opcode not in (("QUANTIZE",) if first else ("QUANTIZE", "DEQUANTIZE")):
        return None
    if tuple(ends) != (outer,) or len(inner) != 1 or inner[0] in (outer, -1):
        return None
    t_out, q = imp.tensor(outer), imp.tensor(inner[0])
    if t_out.dtype not in ("float32", "uint8") or q.dtype != "int8":
        return None
    if t_out.dtype == "uint8":  # TFLite's Requantize takes the x ^ 0x80 path only for the same scale, zp + 128
        tq = imp.act_q(op, inner[0])
        same = len(t_out.scales) == 1 and np.float32(t_out.scales[0]) == np.float32(tq.scale)
        if not same or int(t_out.zero_points[0]) != tq.zero_point + 128:
            raise imp.error(op, f"converts uint8 {t_out.name!r} (scale {t_out.scales[:1].tolist()}, zero point "
                                f"{t_out.zero_points[:1].tolist()}) with a rescale, not a shift by 128",
                            "export int8 input/output (inference_input_type=tf.int8), or uint8 ends with the "
                            "int8 tensor's scale and zero point + 128")  # fmt: skip
    return inner[0]


def _strip_ends(imp: Importer, tf_ops: list[TfOp]) -> tuple[int, int]:
    """Remove a QUANTIZE first (float32 or uint8 model input) and a DEQUANTIZE/QUANTIZE last (float32 or uint8
    model output) from ``tf_ops``; returns the int8 input and output tensors the IR graph runs between.

    A float end is done by the generated float API (``run``: quantize in, dequantize out). A uint8 end is a shift
    of the codes by 128 (TFLite's exact uint8 <-> int8 requantize): ``run_q`` takes and returns the int8 codes,
    uint8 code - 128.
    """
    model = imp.model
    in_index, out_index = model.inputs[0], model.outputs[0]
    inner = _end_op(imp, tf_ops[0], in_index, first=True) if tf_ops else None
    if inner is not None:
        in_index = inner
        tf_ops.pop(0)
    inner = _end_op(imp, tf_ops[-1], out_index, first=False) if tf_ops else None
    if inner is not None:
        out_index = inner
        tf_ops.pop()
    return in_index, out_index


def _graph_input(imp: Importer, index: int) -> tuple[Quantize, TensorQ]:
    """The float → int8 input op (quantization in C for the float API; ``run_q`` takes the int8 codes)."""
    fake = TfOp(-1, "input", (), (index,))
    q = imp.act_q(fake, index)
    shape = imp.hwc(fake, index)
    return Quantize(c_identifier("op0_input", imp.used), (), imp.name(index), (), shape, q=q), q


def load_tflite(path: str | Path) -> Graph:
    """Read ``path`` and lower it to the deploy IR (batch 1, HWC); unsupported content raises LeanmlError.

    Example:
        >>> load_tflite("nothing.tflite")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        LeanmlError: ...
    """
    model = read_tflite(path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise LeanmlError(f"{model.path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs",
                          "leanml deploys models with one input and one output")  # fmt: skip
    imp = Importer(model)
    tf_ops = list(model.ops)
    in_index, out_index = _strip_ends(imp, tf_ops)
    tf_ops = _fold_pads(imp, tf_ops, out_index)
    quantize, in_q = _graph_input(imp, in_index)
    imp.emit(quantize)
    unsupported = sorted({op.opcode for op in tf_ops if op.opcode not in TFLITE_LOWERINGS})
    if unsupported:
        supported = ", ".join(sorted(TFLITE_LOWERINGS))
        raise LeanmlError(f"{model.path} uses operators leanml cannot deploy: {', '.join(unsupported)}",
                          f"supported: {supported} (and DEQUANTIZE at the end, PAD into a conv)")  # fmt: skip
    if not tf_ops:
        raise LeanmlError(f"{model.path} has no operator to deploy besides QUANTIZE/DEQUANTIZE",
                          "deploy a model with at least one layer")  # fmt: skip
    for op in tf_ops:
        _check_dataflow(imp, op)
        TFLITE_LOWERINGS[op.opcode](imp, op)
    out = imp.name(out_index)
    if out not in imp.shapes:
        raise LeanmlError(f"{model.path}: no operator computes the output tensor", "the .tflite file is malformed")
    out_q = imp.act_q(TfOp(-1, "output", (), (out_index,)), out_index)
    in_shape = quantize.out_shape if len(quantize.out_shape) == 3 else (1, 1, quantize.out_shape[0])
    return Graph(imp.ops, quantize.output, out, in_shape, in_q, out_q, None)
