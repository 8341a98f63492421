"""Write tiny int8 ``.tflite`` models in memory, for the importer's op, error and fuzz tests.

A :class:`Net` holds tensors (shape, type, quantization, constant data) and operators (builtin opcode, inputs,
outputs, options table and fields); :meth:`Net.to_bytes` serializes it with the ``tflite`` package's flatbuffer
builder functions (one subgraph, schema version 3, identifier ``TFL3``). Layer helpers (:meth:`Net.conv`,
:meth:`Net.fc`, ...) draw seeded random weights and pick an output scale that keeps the codes in range.

Example:
    >>> net = Net(seed=0)
    >>> x = net.act((1, 4, 4, 2), 0.05, 3)
    >>> y = net.conv(x, 3, (3, 3), stride=2, padding="SAME")
    >>> net.tensors[y].shape, net.to_bytes([x], [y])[4:8]
    ((1, 2, 2, 3), b'TFL3')
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
import tflite

TYPES = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "int16": 7, "int8": 9}  # tflite.TensorType
PADDING = {"SAME": 0, "VALID": 1}
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


@dataclass
class Tensor:
    """One tensor: ``scale``/``zero_point`` lists (empty = not quantized), ``data`` for constants."""

    shape: tuple[int, ...]
    dtype: str = "int8"
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    qdim: int = 0
    data: np.ndarray | None = None


@dataclass
class Operator:
    """One operator: builtin opcode name, tensor indices, the options table name and its fields."""

    opcode: str
    inputs: list[int]
    outputs: list[int]
    options: str | None = None  # e.g. "Conv2DOptions"
    fields: dict[str, Any] = field(default_factory=dict)


def _module(name: str) -> Any:
    return importlib.import_module(f"tflite.{name}")


def _table(b: flatbuffers.Builder, name: str, fields: dict[str, Any]) -> int:
    """Table ``name`` with ``fields`` (scalars, or offsets of children already built)."""
    mod = _module(name)
    mod.Start(b)
    for key, value in fields.items():
        getattr(mod, f"Add{key}")(b, value)
    return int(mod.End(b))


def _offsets(b: flatbuffers.Builder, items: list[int]) -> int:
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        b.PrependUOffsetTRelative(item)
    return int(b.EndVector())


def _vector(b: flatbuffers.Builder, values: Any, dtype: str) -> int:
    return int(b.CreateNumpyVector(np.asarray(values, dtype=dtype)))


@dataclass
class Net:
    """A one-subgraph model under construction; ``rng`` draws the weights."""

    seed: int = 0
    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Operator] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def add(self, shape: tuple[int, ...], dtype: str = "int8", scale: Any = (), zero_point: Any = (),
            qdim: int = 0, data: np.ndarray | None = None) -> int:  # fmt: skip
        """Append a tensor; scalar ``scale``/``zero_point`` mean per tensor. Returns its index."""
        scales = [float(s) for s in np.atleast_1d(scale)]
        zps = [int(z) for z in np.atleast_1d(zero_point)] if np.size(zero_point) else [0] * len(scales)
        if len(zps) == 1 and len(scales) > 1:
            zps = zps * len(scales)
        self.tensors.append(Tensor(tuple(shape), dtype, scales, zps, qdim, data))
        return len(self.tensors) - 1

    def act(self, shape: tuple[int, ...], scale: float, zero_point: int, dtype: str = "int8") -> int:
        """A computed int8 activation tensor."""
        return self.add(shape, dtype, scale, zero_point)

    def op(self, opcode: str, inputs: list[int], outputs: list[int], options: str | None = None,
           **fields: Any) -> int:  # fmt: skip
        """Append an operator; returns its first output."""
        self.ops.append(Operator(opcode, list(inputs), list(outputs), options, fields))
        return outputs[0]

    def q(self, index: int) -> tuple[float, int]:
        t = self.tensors[index]
        return t.scale[0], t.zero_point[0]

    def weights(self, shape: tuple[int, ...], n_scales: int, qdim: int) -> tuple[int, np.ndarray]:
        """Random symmetric int8 weights with ``n_scales`` random scales along ``qdim``."""
        scales = self.rng.uniform(0.002, 0.02, n_scales).astype(np.float32)
        data = self.rng.integers(-127, 128, shape).astype(np.int8)
        return self.add(shape, "int8", scales, 0, qdim, data), scales

    def bias(self, n: int, in_scale: float, w_scales: np.ndarray) -> int:
        data = self.rng.integers(-3000, 3000, n).astype(np.int32)
        return self.add((n,), "int32", np.broadcast_to(in_scale * w_scales, (n,)), 0, 0, data)

    def _out(self, shape: tuple[int, ...], in_scale: float, w_scale: float, fan_in: int, out_q: Any) -> int:
        if out_q is None:  # codes of spread ~40 for uniform random inputs and weights
            out_q = (in_scale * w_scale * 5400 * math.sqrt(fan_in) / 40, int(self.rng.integers(-20, 20)))
        return self.act(shape, *out_q)

    def conv(self, x: int, oc: int, kernel: tuple[int, int], stride: int = 1, padding: str = "SAME",
             act: str = "NONE", per_channel: bool = True, out_q: Any = None, depth_multiplier: int = 0,
             dilation: int = 1, bias: bool = True) -> int:  # fmt: skip
        """CONV_2D (or DEPTHWISE_CONV_2D when ``depth_multiplier`` > 0, ``oc`` ignored) on NHWC tensor ``x``."""
        _, h, w, ic = self.tensors[x].shape
        kh, kw = kernel
        dw = depth_multiplier > 0
        oc = ic * depth_multiplier if dw else oc
        shape = (1, kh, kw, oc) if dw else (oc, kh, kw, ic)
        wi, ws = self.weights(shape, oc if per_channel else 1, 3 if dw else 0)
        in_scale = self.q(x)[0]
        b = self.bias(oc, in_scale, ws) if bias else -1
        size = [(n + stride - 1) // stride if padding == "SAME" else (n - k) // stride + 1 for n, k in
                ((h, (kh - 1) * dilation + 1), (w, (kw - 1) * dilation + 1))]  # fmt: skip
        y = self._out((1, size[0], size[1], oc), in_scale, float(ws.mean()), kh * kw * (1 if dw else ic), out_q)
        fields = dict(Padding=PADDING[padding], StrideW=stride, StrideH=stride, FusedActivationFunction=ACT[act],
                      DilationWFactor=dilation, DilationHFactor=dilation)  # fmt: skip
        if dw:
            return self.op("DEPTHWISE_CONV_2D", [x, wi, b], [y], "DepthwiseConv2DOptions",
                           DepthMultiplier=depth_multiplier, **fields)  # fmt: skip
        return self.op("CONV_2D", [x, wi, b], [y], "Conv2DOptions", **fields)

    def fc(self, x: int, n_out: int, act: str = "NONE", per_channel: bool = False, out_q: Any = None) -> int:
        """FULLY_CONNECTED from any batch-1 tensor (TFLM flattens it) to [1, n_out]."""
        n_in = math.prod(self.tensors[x].shape)
        wi, ws = self.weights((n_out, n_in), n_out if per_channel else 1, 0)
        in_scale = self.q(x)[0]
        b = self.bias(n_out, in_scale, ws)
        y = self._out((1, n_out), in_scale, float(ws.mean()), n_in, out_q)
        return self.op("FULLY_CONNECTED", [x, wi, b], [y], "FullyConnectedOptions",
                       FusedActivationFunction=ACT[act])  # fmt: skip

    def pool(self, x: int, mode: str, kernel: tuple[int, int], stride: int, padding: str = "VALID",
             act: str = "NONE") -> int:  # fmt: skip
        """AVERAGE_POOL_2D (``mode`` "avg") or MAX_POOL_2D, keeping the input quantization."""
        _, h, w, c = self.tensors[x].shape
        size = [(n + stride - 1) // stride if padding == "SAME" else (n - k) // stride + 1
                for n, k in ((h, kernel[0]), (w, kernel[1]))]  # fmt: skip
        y = self.act((1, size[0], size[1], c), *self.q(x))
        return self.op("AVERAGE_POOL_2D" if mode == "avg" else "MAX_POOL_2D", [x], [y], "Pool2DOptions",
                       Padding=PADDING[padding], StrideW=stride, StrideH=stride, FilterWidth=kernel[1],
                       FilterHeight=kernel[0], FusedActivationFunction=ACT[act])  # fmt: skip

    def add_op(self, a: int, b: int, out_q: tuple[float, int], act: str = "NONE") -> int:
        y = self.act(self.tensors[a].shape, *out_q)
        return self.op("ADD", [a, b], [y], "AddOptions", FusedActivationFunction=ACT[act])

    def reshape(self, x: int, shape: tuple[int, ...]) -> int:
        s = self.add((len(shape),), "int32", data=np.array(shape, np.int32))
        y = self.act(shape, *self.q(x))
        return self.op("RESHAPE", [x, s], [y], "ReshapeOptions")

    def pad(self, x: int, hw: tuple[tuple[int, int], tuple[int, int]], value: int | None = None) -> int:
        """PAD of H and W by ((top, bottom), (left, right)) with the zero point; PADV2 with code ``value``."""
        _, h, w, c = self.tensors[x].shape
        pads = self.add((4, 2), "int32", data=np.array([(0, 0), *hw, (0, 0)], np.int32))
        y = self.act((1, h + sum(hw[0]), w + sum(hw[1]), c), *self.q(x))
        if value is None:
            return self.op("PAD", [x, pads], [y], "PadOptions")
        v = self.add((1,), "int8", *self.q(x), data=np.array([value], np.int8))
        return self.op("PADV2", [x, pads, v], [y], "PadV2Options")

    def softmax(self, x: int, beta: float = 1.0) -> int:
        y = self.act(self.tensors[x].shape, 1 / 256, -128)
        return self.op("SOFTMAX", [x], [y], "SoftmaxOptions", Beta=beta)

    def to_bytes(self, inputs: list[int], outputs: list[int], version: int = 3, subgraphs: int = 1) -> bytes:
        """The model as ``.tflite`` bytes (``subgraphs`` > 1 repeats the subgraph, for the error tests)."""
        b = flatbuffers.Builder(1024)
        buffers = [_table(b, "Buffer", {})]  # buffer 0: the empty buffer of every computed tensor
        tensors = []
        for i, t in enumerate(self.tensors):
            buf = 0
            if t.data is not None:
                data = _vector(b, np.frombuffer(np.ascontiguousarray(t.data).tobytes(), np.uint8), "uint8")
                buffers.append(_table(b, "Buffer", {"Data": data}))
                buf = len(buffers) - 1
            fields: dict[str, Any] = {"Shape": _vector(b, t.shape, "int32"), "Name": b.CreateString(f"t{i}"),
                                      "Type": TYPES[t.dtype], "Buffer": buf}  # fmt: skip
            if t.scale:
                fields["Quantization"] = _table(b, "QuantizationParameters", {
                    "Scale": _vector(b, t.scale, "float32"), "ZeroPoint": _vector(b, t.zero_point, "int64"),
                    "QuantizedDimension": t.qdim})  # fmt: skip
            tensors.append(_table(b, "Tensor", fields))
        codes = sorted({o.opcode for o in self.ops})
        operators = []
        for o in self.ops:
            fields = {"OpcodeIndex": codes.index(o.opcode), "Inputs": _vector(b, o.inputs, "int32"),
                      "Outputs": _vector(b, o.outputs, "int32")}  # fmt: skip
            if o.options:
                fields["BuiltinOptions"] = _table(b, o.options, o.fields)
                fields["BuiltinOptionsType"] = getattr(tflite.BuiltinOptions, o.options)
            operators.append(_table(b, "Operator", fields))
        graph = {"Tensors": _offsets(b, tensors), "Inputs": _vector(b, inputs, "int32"),
                 "Outputs": _vector(b, outputs, "int32"), "Operators": _offsets(b, operators)}  # fmt: skip
        graphs = [_table(b, "SubGraph", graph) for _ in range(subgraphs)]
        opcodes = []
        for name in codes:
            code = getattr(tflite.BuiltinOperator, name)
            opcodes.append(_table(b, "OperatorCode", {"BuiltinCode": code, "DeprecatedBuiltinCode": min(code, 127),
                                                      "Version": 1}))  # fmt: skip
        model = _table(b, "Model", {"Version": version, "OperatorCodes": _offsets(b, opcodes),
                                    "Subgraphs": _offsets(b, graphs), "Buffers": _offsets(b, buffers),
                                    "Description": b.CreateString("leanml test")})  # fmt: skip
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())
