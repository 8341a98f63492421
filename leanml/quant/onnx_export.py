"""Export an :class:`IntegerModel` to ONNX in QDQ form (QuantizeLinear / DequantizeLinear around float ops).

The export reads the integer model, so the ONNX file carries exactly its int8
weights, int32 biases (per-channel scale s_in * s_w), activation scales and
zero points. Runtimes such as onnxruntime fuse each Q-DQ-op-Q pattern into an
integer kernel (QLinearConv, QLinearMatMul, ...). Outputs: ``logits`` (float)
and ``logits_q`` (the int8 values, for LSB-level comparison with the
reference). Needs the ``onnx`` package (``pip install 'leanml[bench]'``).

Example:
    >>> export_onnx(imodel, "runs/vgg-int8.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from leanml.artifact import atomic_write
from leanml.errors import LeanmlError
from leanml.quant import integer_ops as iq
from leanml.quant.integer import IntegerModel
from leanml.quant.integer_ops import OpRegistry, TensorQ

OPSET = 13


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers; tracks each int8 tensor's (scale, zero point) names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.qparams: dict[str, tuple[str, str]] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def tensor_q(self, tensor: str, q: TensorQ) -> tuple[str, str]:
        names = (
            self.const(f"{tensor}_scale", np.array(q.scale, dtype=np.float32)),
            self.const(f"{tensor}_zp", np.array(q.zero_point, dtype=np.int8)),
        )
        self.qparams[tensor] = names
        return names

    def quantize(self, float_name: str, tensor: str, q: TensorQ) -> None:
        scale, zp = self.tensor_q(tensor, q)
        self.node("QuantizeLinear", [float_name, scale, zp], f"{tensor}_q")

    def dequantize(self, tensor: str) -> str:
        scale, zp = self.qparams[tensor]
        return self.node("DequantizeLinear", [f"{tensor}_q", scale, zp], f"{tensor}_dq_{len(self.nodes)}")

    def share(self, src: str, dst: str) -> None:
        self.qparams[dst] = self.qparams[src]

    def activation(self, x: str, act_min: int, act_max: int, q: TensorQ, name: str) -> str:
        """Clamp in float to the real values of [act_min, act_max] (what the integer op's clamp does)."""
        lo = np.array((act_min - q.zero_point) * q.scale, dtype=np.float32)
        hi = np.array((act_max - q.zero_point) * q.scale, dtype=np.float32)
        return self.node("Clip", [x, self.const(f"{name}_lo", lo), self.const(f"{name}_hi", hi)], f"{name}_act")

    def layer_weights(self, op: iq.QConv2d | iq.QLinear) -> tuple[str, str]:
        w = self.node(
            "DequantizeLinear",
            [self.const(f"{op.output}_w", op.weight.astype(np.int8)),
             self.const(f"{op.output}_w_scale", op.weight_scale.astype(np.float32)),
             self.const(f"{op.output}_w_zp", np.zeros(op.weight.shape[0], dtype=np.int8))],
            f"{op.output}_w_dq", axis=0,
        )  # fmt: skip
        bias_scale = (np.float32(op.in_q.scale) * op.weight_scale.astype(np.float32)).astype(np.float32)
        b = self.node(
            "DequantizeLinear",
            [self.const(f"{op.output}_b", op.bias.astype(np.int32)),
             self.const(f"{op.output}_b_scale", bias_scale),
             self.const(f"{op.output}_b_zp", np.zeros(op.bias.shape[0], dtype=np.int32))],
            f"{op.output}_b_dq", axis=0,
        )  # fmt: skip
        return w, b


# (graph builder, integer op) -> None: appends the op's QDQ nodes
EXPORTERS = OpRegistry[Callable[[_GraphBuilder, Any], None]]("ONNX export")


@EXPORTERS.register(iq.QuantizeInput)
def _quantize(g: _GraphBuilder, op: iq.QuantizeInput) -> None:
    g.quantize("input", op.output, op.q)


def _requantize_output(g: _GraphBuilder, op: iq.QConv2d | iq.QLinear | iq.QAdd, y: str) -> None:
    """Clamp the float result to the op's activation range and quantize it to the output's TensorQ."""
    g.quantize(g.activation(y, op.act_min, op.act_max, op.out_q, op.output), op.output, op.out_q)


@EXPORTERS.register(iq.QConv2d)
def _conv(g: _GraphBuilder, op: iq.QConv2d) -> None:
    w, b = g.layer_weights(op)
    ph, pw = op.padding
    y = g.node("Conv", [g.dequantize(op.input), w, b], f"{op.output}_f", strides=list(op.stride),
               pads=[ph, pw, ph, pw], group=op.groups)  # fmt: skip
    _requantize_output(g, op, y)


@EXPORTERS.register(iq.QLinear)
def _linear(g: _GraphBuilder, op: iq.QLinear) -> None:
    w, b = g.layer_weights(op)
    y = g.node("Gemm", [g.dequantize(op.input), w, b], f"{op.output}_f", transB=1)
    _requantize_output(g, op, y)


@EXPORTERS.register(iq.QAdd)
def _add(g: _GraphBuilder, op: iq.QAdd) -> None:
    y = g.node("Add", [g.dequantize(op.inputs[0]), g.dequantize(op.inputs[1])], f"{op.output}_f")
    _requantize_output(g, op, y)


@EXPORTERS.register(iq.QClamp)
def _clamp(g: _GraphBuilder, op: iq.QClamp) -> None:  # clamp the int8 values directly
    g.share(op.input, op.output)
    lo = g.const(f"{op.output}_min", np.array(op.act_min, np.int8))
    hi = g.const(f"{op.output}_max", np.array(op.act_max, np.int8))
    g.node("Min", [g.node("Max", [f"{op.input}_q", lo], f"{op.output}_m"), hi], f"{op.output}_q")


def _requantize_pooled(g: _GraphBuilder, op: iq.QMaxPool | iq.QAvgPool, y: str) -> None:
    """Pooling keeps the input's quantization."""
    scale, zp = g.qparams[op.input]
    g.share(op.input, op.output)
    g.node("QuantizeLinear", [y, scale, zp], f"{op.output}_q")


@EXPORTERS.register(iq.QMaxPool)
def _maxpool(g: _GraphBuilder, op: iq.QMaxPool) -> None:
    ph, pw = op.padding
    y = g.node("MaxPool", [g.dequantize(op.input)], f"{op.output}_f", kernel_shape=list(op.kernel),
               strides=list(op.stride), pads=[ph, pw, ph, pw])  # fmt: skip
    _requantize_pooled(g, op, y)


@EXPORTERS.register(iq.QAvgPool)
def _avgpool(g: _GraphBuilder, op: iq.QAvgPool) -> None:
    x = g.dequantize(op.input)
    if op.kernel is None:
        y = g.node("GlobalAveragePool", [x], f"{op.output}_f")
    else:
        assert op.stride is not None
        y = g.node("AveragePool", [x], f"{op.output}_f", kernel_shape=list(op.kernel), strides=list(op.stride))
    _requantize_pooled(g, op, y)


@EXPORTERS.register(iq.QFlatten)
def _flatten(g: _GraphBuilder, op: iq.QFlatten) -> None:
    g.share(op.input, op.output)
    g.node("Flatten", [f"{op.input}_q"], f"{op.output}_q", axis=op.start)


def export_onnx(model: IntegerModel, path: str | Path, input_shape: tuple[int, ...] = (1, 28, 28)) -> None:
    """Write ``model`` as an ONNX QDQ graph (opset 13, dynamic batch) to ``path``, atomically."""
    try:
        import onnx
    except ImportError as e:
        raise LeanmlError("ONNX export needs the onnx package", "pip install 'leanml[bench]'") from e
    g = _GraphBuilder(onnx)
    for op in model.ops:
        EXPORTERS.handler(op)(g, op)
    out_scale, out_zp = g.qparams[model.output]
    g.node("DequantizeLinear", [f"{model.output}_q", out_scale, out_zp], "logits")
    g.node("Identity", [f"{model.output}_q"], "logits_q")
    float_t, int8_t = onnx.TensorProto.FLOAT, onnx.TensorProto.INT8
    out_shape = ["N", *model.run_int8(np.zeros((1, *input_shape), dtype=np.int64)).shape[1:]]
    graph = onnx.helper.make_graph(
        g.nodes,
        "leanml_int8",
        [onnx.helper.make_tensor_value_info("input", float_t, ["N", *input_shape])],
        [onnx.helper.make_tensor_value_info("logits", float_t, out_shape),
         onnx.helper.make_tensor_value_info("logits_q", int8_t, out_shape)],
        g.inits,
    )  # fmt: skip
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="leanml")
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
