"""Read a ``.tflite`` flatbuffer into plain, validated data: tensors (shape, type, quantization, constant data)
and operators (opcode name, inputs, outputs, options), through the ``tflite`` schema package from PyPI.

Nothing here knows the IR: :mod:`leanml.deploy.tflite` lowers a :class:`TfModel` with TFLite's int8 rules.
Everything the file claims is checked before an array is built from it (identifier, version, one subgraph,
indices in range, shapes and buffer sizes against each other), and a malformed flatbuffer is a
:class:`~leanml.errors.LeanmlError` naming the file, never an ``IndexError`` from deep in the reader.

Example:
    >>> m = read_tflite("../shared/models/tflite/kws_ref_model.tflite")  # doctest: +SKIP
    >>> m.ops[0].opcode, m.tensors[m.inputs[0]].shape  # doctest: +SKIP
    ('CONV_2D', (1, 49, 10, 1))
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leanml.errors import LeanmlError

MAX_FILE_BYTES = 1 << 30  # a microcontroller model is kilobytes to a few megabytes
MAX_TENSOR_ELEMENTS = 1 << 28
MAX_RANK = 6
INSTALL_HINT = "install the reader: `pip install 'leanml[tflite]'` (the `tflite` schema package)"
# TensorType enum values of the schema -> numpy dtype names (only the types leanml can meet)
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}


@dataclass(frozen=True)
class TfTensor:
    """One tensor of the subgraph: shape, dtype name, quantization (``scales`` empty when none), constant data."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: np.ndarray  # float32 (n,), n = 1 per tensor or one per channel along ``quantized_dimension``
    zero_points: np.ndarray  # int64 (n,)
    quantized_dimension: int
    data: np.ndarray | None = None  # constant tensors (weights, biases, shape operands), shaped

    @property
    def quantized(self) -> bool:
        """True when the tensor carries scales and zero points."""
        return len(self.scales) > 0


@dataclass(frozen=True)
class TfOp:
    """One operator: its builtin opcode name, input/output tensor indices (-1 = optional, absent), options."""

    index: int
    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TfModel:
    """A one-subgraph ``.tflite`` model as plain data."""

    path: str
    tensors: list[TfTensor]
    ops: list[TfOp]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""


def _schema() -> Any:
    try:
        import tflite
    except ImportError as exc:
        raise LeanmlError("reading .tflite files needs the `tflite` package", INSTALL_HINT) from exc
    return tflite


def _opcode_names(tflite: Any) -> dict[int, str]:
    ops = tflite.BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def _options(tflite: Any, op: Any, cls_name: str, fields: tuple[str, ...]) -> dict[str, Any]:
    table = op.BuiltinOptions()
    if table is None:
        return {}
    opts = getattr(tflite, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    return {f: getattr(opts, f)() for f in fields}


_CONV = ("Padding", "StrideW", "StrideH", "FusedActivationFunction", "DilationWFactor", "DilationHFactor")
# opcode -> (options table class, the fields read); opcodes not listed carry no options leanml reads
OPTION_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "CONV_2D": ("Conv2DOptions", _CONV),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", (*_CONV, "DepthMultiplier")),
    "FULLY_CONNECTED": ("FullyConnectedOptions", ("FusedActivationFunction", "WeightsFormat", "KeepNumDims")),
    "AVERAGE_POOL_2D": ("Pool2DOptions", ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight",
                                          "FusedActivationFunction")),
    "MAX_POOL_2D": ("Pool2DOptions", ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight",
                                      "FusedActivationFunction")),
    "ADD": ("AddOptions", ("FusedActivationFunction",)),
    "SOFTMAX": ("SoftmaxOptions", ("Beta",)),
    "MEAN": ("ReducerOptions", ("KeepDims",)),
}  # fmt: skip


def _buffer_data(path: Path, raw: bytes, model: Any, index: int, nbytes: int, dtype: str) -> np.ndarray | None:
    """The constant bytes of buffer ``index`` as a flat array of ``dtype``, or None when the buffer is empty."""
    if not 0 <= index < model.BuffersLength():
        raise LeanmlError(f"{path}: tensor names buffer {index}, the file has {model.BuffersLength()}",
                          "the .tflite file is corrupt: re-export it")  # fmt: skip
    buf = model.Buffers(index)
    if buf is None:
        return None
    if buf.DataLength() > 0:
        data = bytes(buf.DataAsNumpy().tobytes())
    elif buf.Offset() > 1:  # large-model layout: the bytes sit after the flatbuffer, at a file offset
        start, size = int(buf.Offset()), int(buf.Size())
        if start + size > len(raw):
            raise LeanmlError(f"{path}: buffer {index} points past the end of the file", "re-export the model")
        data = raw[start : start + size]
    else:
        return None
    if len(data) != nbytes:
        raise LeanmlError(f"{path}: buffer {index} holds {len(data)} bytes, its tensor needs {nbytes}",
                          "the .tflite file is corrupt: re-export it")  # fmt: skip
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def _tensor(path: Path, raw: bytes, model: Any, graph: Any, i: int) -> TfTensor:
    t = graph.Tensors(i)
    name = (t.Name() or b"").decode("utf-8", "replace")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    if len(shape) > MAX_RANK or any(d < 1 for d in shape) or math.prod(shape) > MAX_TENSOR_ELEMENTS:
        raise LeanmlError(f"{path}: tensor {name!r} has shape {list(shape)}",
                          "leanml needs static positive sizes (batch 1): re-export with a fixed shape")  # fmt: skip
    dtype = TENSOR_TYPES.get(int(t.Type()))
    if dtype is None:
        raise LeanmlError(f"{path}: tensor {name!r} has tensor type {t.Type()}, which leanml does not read",
                          "use an int8 model (full-integer post-training quantization)")  # fmt: skip
    scales, zps, qdim = np.zeros(0, np.float32), np.zeros(0, np.int64), 0
    q = t.Quantization()
    if q is not None and q.ScaleLength() > 0:
        scales = np.asarray(q.ScaleAsNumpy(), dtype=np.float32)
        zps = np.zeros(len(scales), np.int64)
        if q.ZeroPointLength():
            zps = np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64)
        qdim = int(q.QuantizedDimension())
        if len(zps) != len(scales) or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise LeanmlError(f"{path}: tensor {name!r} has invalid quantization (scales {scales[:4].tolist()}, "
                              f"zero points {zps[:4].tolist()})",
                              "scales must be finite and > 0, with one zero point each")  # fmt: skip
        if len(shape) == 1 and len(scales) == shape[0]:
            qdim = 0  # per-channel biases: some converters store the weights' dimension (TFLM ignores it)
        if len(scales) > 1 and not (0 <= qdim < len(shape) and shape[qdim] == len(scales)):
            raise LeanmlError(f"{path}: tensor {name!r} has {len(scales)} scales along dimension {qdim} of "
                              f"shape {list(shape)}", "the .tflite file is corrupt: re-export it")  # fmt: skip
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    data = _buffer_data(path, raw, model, int(t.Buffer()), nbytes, dtype)
    return TfTensor(i, name, shape, dtype, scales, zps, qdim, None if data is None else data.reshape(shape))


def _count(path: Path, raw: bytes, what: str, n: int) -> int:
    """A vector length ``n`` the file can hold (4 bytes an entry at least): a damaged length cannot make the
    reader loop over millions of garbage entries."""
    if not 0 <= n <= len(raw) // 4:
        raise LeanmlError(f"{path} claims {n} {what} in {len(raw)} bytes", "the .tflite file is corrupt: re-export it")
    return n


def _indices(path: Path, what: str, values: np.ndarray | Any, n_tensors: int, optional: bool) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    for v in out:
        if not (0 <= v < n_tensors or (optional and v == -1)):
            raise LeanmlError(f"{path}: {what} names tensor {v}, the subgraph has {n_tensors}",
                              "the .tflite file is corrupt: re-export it")  # fmt: skip
    return out


def _parse(path: Path, raw: bytes) -> TfModel:
    tflite = _schema()
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise LeanmlError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)",
                          "pass a .tflite file written by the TFLite converter")  # fmt: skip
    model = tflite.Model.GetRootAsModel(raw, 0)
    if model.Version() != 3:
        raise LeanmlError(f"{path} has schema version {model.Version()}", "leanml reads TFLite schema version 3")
    _count(path, raw, "buffers", model.BuffersLength())
    _count(path, raw, "operator codes", model.OperatorCodesLength())
    if model.SubgraphsLength() != 1:
        raise LeanmlError(f"{path} has {model.SubgraphsLength()} subgraphs",
                          "leanml deploys one-subgraph models (no control flow)")  # fmt: skip
    graph = model.Subgraphs(0)
    n = _count(path, raw, "tensors", graph.TensorsLength())
    tensors = [_tensor(path, raw, model, graph, i) for i in range(n)]
    names = _opcode_names(tflite)
    ops = []
    for i in range(_count(path, raw, "operators", graph.OperatorsLength())):
        op = graph.Operators(i)
        code_index = int(op.OpcodeIndex())
        if not 0 <= code_index < model.OperatorCodesLength():
            raise LeanmlError(f"{path}: operator {i} names opcode {code_index}", "the .tflite file is corrupt")
        oc = model.OperatorCodes(code_index)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))  # schema v3a keeps both fields
        opcode = names.get(code, f"builtin {code}")
        if opcode == "CUSTOM":
            opcode = "CUSTOM " + (oc.CustomCode() or b"?").decode("utf-8", "replace")
        options = {}
        if opcode in OPTION_FIELDS:
            cls_name, fields = OPTION_FIELDS[opcode]
            options = _options(tflite, op, cls_name, fields)
        ins = _indices(path, f"operator {i} ({opcode}) input", op.InputsAsNumpy() if op.InputsLength() else [], n, True)
        outs = _indices(path, f"operator {i} ({opcode}) output", op.OutputsAsNumpy() if op.OutputsLength() else [], n,
                        False)  # fmt: skip
        ops.append(TfOp(i, opcode, ins, outs, options))
    inputs = _indices(path, "subgraph input", graph.InputsAsNumpy() if graph.InputsLength() else [], n, False)
    outputs = _indices(path, "subgraph output", graph.OutputsAsNumpy() if graph.OutputsLength() else [], n, False)
    desc = (model.Description() or b"").decode("utf-8", "replace")
    return TfModel(str(path), tensors, ops, inputs, outputs, desc)


def read_tflite(path: str | Path) -> TfModel:
    """Read and validate ``path`` (a ``.tflite`` file) into a :class:`TfModel`.

    Example:
        >>> read_tflite("missing.tflite")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        LeanmlError: ...
    """
    path = Path(path)
    if not path.is_file():
        raise LeanmlError(f"{path} does not exist", "pass the path of an int8 .tflite model")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LeanmlError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES} leanml reads",
                          "microcontroller models are kilobytes to megabytes: check the file")  # fmt: skip
    raw = path.read_bytes()
    try:
        return _parse(path, raw)
    except LeanmlError:
        raise
    except (IndexError, ValueError, TypeError, OverflowError, struct.error) as exc:  # the flatbuffer reader
        # indexes raw bytes: out of range (IndexError, struct.error, ValueError) or a bad number (TypeError)
        raise LeanmlError(f"{path} is not a readable TFLite flatbuffer ({type(exc).__name__}: {exc})",
                          "the file is truncated or corrupt: re-export it") from exc  # fmt: skip
