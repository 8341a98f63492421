"""Convert a calibrated :class:`QuantSim` into an :class:`IntegerModel`, run it, save it, load it.

The integer model is a list of integer ops (:mod:`leanml.quant.integer_ops`)
with int8 weights, int32 biases and Q31 requantization constants; running it
uses integer arithmetic only (after the input is quantized). It is the model
``deploy`` consumes: the C engine must reproduce its outputs bit for bit.

Saved as the one artifact format: op arrays in safetensors at their integer
widths (int8 or packed sub-byte weights, int32 biases and multipliers, int8
shifts), op fields in JSON (kind ``integer-model``, format version 2). Loading
checks every field, array and the op graph before anything runs. The sidecar also carries the model's
``input`` block (shape (C, H, W), per-channel mean/std, dataset, classes: what
the model eats, copied from the float checkpoint) and its ``history``
(e.g. ``{"sparsity": 0.63, "weight_bits": {...}}``: compression that the int8
deploy does not exploit), so later stages need no side channel.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> from leanml.quant.sim import QuantSim
    >>> sim = QuantSim.from_model(build_model("resnet").eval())
    >>> sim.calibrate([torch.randn(8, 1, 28, 28)])
    >>> imodel = convert(sim)
    >>> imodel(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from leanml.artifact import Fields, artifact_paths, load_artifact, save_artifact
from leanml.artifact import check_input_block as check_input_block
from leanml.errors import LeanmlError
from leanml.quant.code_packing import pack_codes, row_bytes, unpack_codes
from leanml.quant.fake_quant import FakeQuantize, weight_scales
from leanml.quant.integer_checks import (
    ACT_KINDS,
    Shape,
    act_kind,
    add_constants,
    check_ops,
    infer_shape,
    requant_constants,
)
from leanml.quant.integer_ops import (
    OP_TYPES,
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
    run_op,
)
from leanml.quant.plan import Step
from leanml.quant.primitives import (
    TINY_SCALE,
    activation_range,
    quantize_bias,
    round_half_away,
)
from leanml.quant.sim import QuantSim

KIND = "integer-model"


class IntegerModel:
    """Integer-only model: ``run_int8`` on int8 inputs, or call it on float inputs for float outputs."""

    def __init__(
        self,
        ops: list[IntegerOp],
        output: str,
        output_q: TensorQ,
        input: dict[str, Any] | None = None,
        history: dict[str, Any] | None = None,
    ) -> None:
        if not ops or not isinstance(ops[0], QuantizeInput):
            raise LeanmlError("an integer model must start with its input quantization")
        self.ops = ops
        self.output = output
        self.output_q = output_q
        self.input = check_input_block(input) if input is not None else None
        self.history = dict(history) if history is not None else None

    def with_meta(
        self,
        input: dict[str, Any] | None,
        history: dict[str, Any] | None = None,
    ) -> IntegerModel:
        """The same ops with this ``input`` block and ``history`` (e.g. copied from the float checkpoint).

        Example:
            >>> from leanml.quant.integer_ops import QuantizeInput, TensorQ
            >>> m = IntegerModel([QuantizeInput("q", "x", TensorQ(0.1, 0))], "x", TensorQ(0.1, 0))
            >>> m.with_meta({"shape": [1, 4, 4]}).input_shape
            (1, 4, 4)
        """
        return IntegerModel(self.ops, self.output, self.output_q, input, history)

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) from the stored ``input`` block, or None when the model carries none."""
        if self.input is None or "shape" not in self.input:
            return None
        c, h, w = self.input["shape"]
        return (c, h, w)

    @property
    def input_q(self) -> TensorQ:
        """Quantization of the model input."""
        first = self.ops[0]
        assert isinstance(first, QuantizeInput)
        return first.q

    def quantize_input(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """float input → int8 values (int64 array): clamp(round_half_away(x / s) + zp), float32 division."""
        xf = torch.as_tensor(x, dtype=torch.float32)
        q = round_half_away(xf / torch.tensor(self.input_q.scale, dtype=torch.float32)) + self.input_q.zero_point
        return torch.clamp(q, -128, 127).to(torch.int64).numpy()

    def run_int8(self, q: np.ndarray) -> np.ndarray:
        """Run every op on int8 input values (N, C, H, W); returns the int8 output values (int64 array)."""
        env = {self.ops[0].output: np.asarray(q, dtype=np.int64)}
        for op in self.ops[1:]:
            run_op(op, env)
        return env[self.output]

    def dequantize_output(self, q: np.ndarray) -> torch.Tensor:
        """int8 outputs → float: scale * (q - zero_point)."""
        return torch.from_numpy((q - self.output_q.zero_point).astype(np.float32) * np.float32(self.output_q.scale))

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.dequantize_output(self.run_int8(self.quantize_input(x)))

    def save(self, path: str | Path) -> None:
        """Atomically save as safetensors (op arrays at their integer widths) + JSON (op fields, format version 2).

        Weights are int8, or packed ``b``-bit codes when every value fits ``b`` < 8 bits (mixed precision); biases
        and multipliers int32, shifts int8, weight scales float32. Each op also records its fused activation and,
        when the model knows its input shape, its output shape, so loading can check the whole graph.

        Example:
            >>> imodel.save("runs/model-int8")  # doctest: +SKIP
        """
        tensors: dict[str, torch.Tensor] = {}
        ops_meta: list[dict[str, Any]] = []
        acts, shapes = _acts_and_shapes(self.ops, self.input_shape)
        for i, op in enumerate(self.ops):
            fields: dict[str, Any] = {}
            for f in dataclasses.fields(op):
                value = getattr(op, f.name)
                if isinstance(value, np.ndarray):
                    name = f"ops.{i}.{f.name}"
                    fields[f.name] = {"array": name}
                    if f.name == "weight":
                        bits, tensors[name] = _pack_weight(value)
                        fields[f.name].update(shape=list(value.shape), bits=bits)
                    else:
                        tensors[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=ARRAY_DTYPES[f.name]))
                elif isinstance(value, TensorQ):
                    fields[f.name] = {"scale": value.scale, "zero_point": value.zero_point}
                else:
                    fields[f.name] = list(value) if isinstance(value, tuple) else value
            entry: dict[str, Any] = {"type": type(op).__name__, "fields": fields, "act": acts[i]}
            shape = shapes[i]
            if shape is not None:
                entry["shape"] = list(shape)
            ops_meta.append(entry)
        meta: dict[str, Any] = {"ops": ops_meta, "output": self.output, "output_q": dataclasses.asdict(self.output_q)}
        if self.input is not None:
            meta["input"] = self.input
        if self.history is not None:
            meta["history"] = self.history
        save_artifact(path, tensors, meta, kind=KIND, version=VERSION)

    @classmethod
    def load(cls, path: str | Path) -> IntegerModel:
        """Load a saved integer model, checking every field, array and the op graph before anything runs; a
        malformed or old file raises :class:`LeanmlError` naming the file and the field.

        Example:
            >>> IntegerModel.load("runs/model-int8")  # doctest: +SKIP
        """
        tensors, meta = load_artifact(path, kind=KIND, version=VERSION, recreate=RECREATE)
        _, sidecar = artifact_paths(path)
        doc = Fields(meta, sidecar, "", RECREATE)
        history = doc.get("history", None)
        if history is not None and not isinstance(history, dict):
            raise doc.fail("history", "a mapping", history)
        block = check_input_block(meta["input"], sidecar, RECREATE) if "input" in meta else None
        entries = doc.array("ops", max_len=MAX_OPS)
        if not entries:
            raise doc.fail("ops", "a non-empty list of ops", entries)
        used: set[str] = set()
        ops: list[IntegerOp] = []
        acts: list[str | None] = []
        shapes: list[Shape | None] = []
        for i, entry in enumerate(entries):
            op, act, shape = _op_from_meta(Fields(entry, sidecar, f"ops[{i}]", RECREATE), tensors, used)
            ops.append(op)
            acts.append(act)
            shapes.append(shape)
        unused = sorted(set(tensors) - used)
        if unused:
            raise LeanmlError(f"{sidecar}: the weights hold the unknown tensor {unused[0][:80]!r}", RECREATE)
        output, output_q = doc.string("output"), _q_from(doc.sub("output_q"))
        in_shape = tuple(block["shape"]) if block is not None and "shape" in block else None
        check_ops(ops, output, output_q, in_shape, acts, shapes if in_shape is not None else None, str(sidecar))
        return cls(ops, output, output_q, block, history)


VERSION = 2  # integer-model format: 2 stores int8 / packed weights, int32 biases and multipliers, int8 shifts
RECREATE = "re-create it with `leanml quantize linear CHECKPOINT --out PATH` (or `leanml quantize mixed`)"
MAX_OPS = 1 << 14
ARRAY_DTYPES = {"bias": np.int32, "weight_scale": np.float32, "multiplier": np.int32, "shift": np.int8}
STORED_DTYPES = {"bias": torch.int32, "weight_scale": torch.float32, "multiplier": torch.int32, "shift": torch.int8}


def _weight_bits(w: np.ndarray) -> int:
    """Fewest bits (2..8) whose symmetric range [-(2^(b-1) - 1), 2^(b-1) - 1] holds every weight."""
    top = int(np.abs(w).max(initial=0))
    return max(2, min(8, top.bit_length() + 1))


def _pack_weight(w: np.ndarray) -> tuple[int, torch.Tensor]:
    """(bits, stored tensor): int8 at 8 bits, else (C_out, row_bytes) uint8 codes ``w + 2^(b-1)`` packed."""
    if int(np.abs(w).max(initial=0)) > 127:
        raise LeanmlError("integer weights exceed int8", "quantize the weights to at most 8 bits")
    bits = _weight_bits(w)
    if bits == 8:
        return bits, torch.from_numpy(np.ascontiguousarray(w, dtype=np.int8))
    codes = torch.from_numpy((w.reshape(w.shape[0], -1) + (1 << (bits - 1))).astype(np.uint8))
    return bits, pack_codes(codes, bits)


def _unpack_weight(t: torch.Tensor, bits: int, shape: tuple[int, ...], f: Fields) -> np.ndarray:
    """Inverse of :func:`_pack_weight`, checking the stored dtype and shape and the value range."""
    out_c, per_row = shape[0], math.prod(shape[1:])
    if bits == 8:
        if t.dtype != torch.int8 or tuple(t.shape) != shape:
            raise f.fail(f.where("array"), f"int8 weights of shape {list(shape)}", f"{t.dtype} {list(t.shape)}")
        w = t.numpy().astype(np.int64)
    else:
        want = (out_c, row_bytes(per_row, bits))
        if t.dtype != torch.uint8 or tuple(t.shape) != want:
            raise f.fail(f.where("array"), f"uint8 packed codes of shape {list(want)}", f"{t.dtype} {list(t.shape)}")
        w = unpack_codes(t, bits, per_row).numpy().astype(np.int64).reshape(shape) - (1 << (bits - 1))
    if w.size and int(np.abs(w).max()) > (1 << (bits - 1)) - 1:
        raise f.fail(f.where("array"), f"symmetric {bits}-bit weights", f"a value {int(np.abs(w).max())}")
    return w


def _acts_and_shapes(ops: list[IntegerOp], input_shape: Shape | None) -> tuple[list[str | None], list[Shape | None]]:
    """Each op's fused activation kind (for ops with a clamp) and output shape (None without an input shape)."""
    q: dict[str, TensorQ] = {}
    dims: dict[str, Shape] = {}
    acts: list[str | None] = []
    for op in ops:
        if isinstance(op, QuantizeInput):
            q[op.output] = op.q
        elif isinstance(op, QConv2d | QLinear | QAdd):
            q[op.output] = op.out_q
        else:
            q[op.output] = q[op.input]
        if isinstance(op, QConv2d | QLinear | QAdd | QClamp):
            acts.append(act_kind(op.act_min, op.act_max, q[op.output]))
        else:
            acts.append(None)
        if input_shape is not None:
            dims[op.output] = tuple(input_shape) if isinstance(op, QuantizeInput) else infer_shape(op, dims)
    return acts, [dims.get(op.output) for op in ops]


def _q_from(f: Fields) -> TensorQ:
    f.only({"scale", "zero_point"})
    return TensorQ(f.number("scale", positive=True), f.integer("zero_point", -128, 127))


def _array_from(f: Fields, key: str, tensors: dict[str, torch.Tensor], used: set[str]) -> np.ndarray:
    """Array field ``key`` of an op: its tensor (used once), stored dtype and shape checked, as the in-memory type."""
    spec = f.sub(key)
    spec.only({"array", "shape", "bits"} if key == "weight" else {"array"})
    name = spec.string("array")
    if name not in tensors or name in used:
        raise spec.fail(spec.where("array"), "the name of a tensor in the weights file used once", name)
    used.add(name)
    t = tensors[name]
    if key == "weight":
        shape = tuple(spec.integers("shape", lo=1, hi=1 << 24))
        if len(shape) not in (2, 4) or math.prod(shape) > t.numel() * 8:
            raise spec.fail(spec.where("shape"), "2 or 4 positive dims that the stored tensor holds", list(shape))
        return _unpack_weight(t, spec.integer("bits", 2, 8), shape, spec)
    if t.dtype != STORED_DTYPES[key] or t.ndim != 1:
        raise spec.fail(spec.where("array"), f"a 1-d {STORED_DTYPES[key]} tensor", f"{t.dtype} {list(t.shape)}")
    a = t.numpy()
    return a.astype(np.float32) if key == "weight_scale" else a.astype(np.int64)


def _op_from_meta(
    entry: Fields, tensors: dict[str, torch.Tensor], used: set[str]
) -> tuple[IntegerOp, str | None, Shape | None]:
    """One op from its sidecar entry, every field type- and range-checked; with its recorded activation and shape."""
    entry.only({"type", "fields"}, {"act", "shape"})
    op_type = OP_TYPES.get(entry.string("type"))
    if op_type is None:
        raise entry.fail(entry.where("type"), f"one of {', '.join(OP_TYPES)}", entry.get("type"))
    act = entry.get("act", None)
    if act is not None and act not in ACT_KINDS:
        raise entry.fail(entry.where("act"), f"one of {', '.join(ACT_KINDS)} or null", act)
    shape = tuple(entry.integers("shape", lo=1, hi=1 << 40)) if "shape" in entry.data else None
    f = entry.sub("fields")
    fields = dataclasses.fields(op_type)
    f.only({x.name for x in fields if x.default is dataclasses.MISSING}, {x.name for x in fields})
    kwargs: dict[str, Any] = {}
    for x in fields:
        if x.name not in f.data:
            continue
        kind = str(x.type)
        if kind == "np.ndarray":
            kwargs[x.name] = _array_from(f, x.name, tensors, used)
        elif kind == "TensorQ":
            kwargs[x.name] = _q_from(f.sub(x.name))
        elif kind == "str":
            kwargs[x.name] = f.string(x.name)
        elif kind == "int":
            kwargs[x.name] = f.integer(x.name, -(1 << 31), (1 << 31) - 1)
        elif kind == "tuple[str, str]":
            items = f.array(x.name, length=2)
            for j, v in enumerate(items):
                if not isinstance(v, str):
                    raise f.fail(f"{f.where(x.name)}[{j}]", "a tensor name", v)
            kwargs[x.name] = tuple(items)
        elif kind == "tuple[int, int] | None" and f.data[x.name] is None:
            kwargs[x.name] = None
        else:
            assert kind.startswith("tuple[int, int]"), kind
            kwargs[x.name] = tuple(f.integers(x.name, length=2, lo=-(1 << 31), hi=(1 << 31) - 1))
    return op_type(**kwargs), act, shape


def _tensor_q(fq: FakeQuantize) -> TensorQ:
    # the same float32 scale the simulator quantizes with
    return TensorQ(float(fq.scale.detach().abs().clamp(min=TINY_SCALE)), int(fq.zero_point.item()))


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _weight_int8(weight: torch.Tensor, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int weights exactly as :func:`weight_fake_quantize` rounds them."""
    qmax = (1 << (bits - 1)) - 1
    w = weight.detach().float()
    scale = weight_scales(w, bits)  # (C_out,)
    q = torch.clamp(round_half_away(w / scale.reshape(-1, *([1] * (w.dim() - 1)))), -qmax, qmax)
    return q.to(torch.int64).numpy(), scale.numpy().astype(np.float32)


# plan step kind -> (step, simulator) -> the integer op
Converter = Callable[[Step, QuantSim], IntegerOp]
CONVERTERS: dict[str, Converter] = {}


def register_converter(*kinds: str) -> Callable[[Converter], Converter]:
    """Decorator: ``fn`` converts plan steps of ``kinds`` (:mod:`leanml.quant.plan`) into integer ops."""

    def deco(fn: Converter) -> Converter:
        for kind in kinds:
            CONVERTERS[kind] = fn
        return fn

    return deco


@register_converter("input")
def _input_op(step: Step, sim: QuantSim) -> IntegerOp:
    return QuantizeInput(step.name, step.output, _tensor_q(sim.fake_quant(step.output)))


class _LayerConstants(NamedTuple):
    """The integer constants of a conv/linear step, in the field order of :class:`QLinear` after the names."""

    weight: np.ndarray
    bias: np.ndarray
    in_q: TensorQ
    out_q: TensorQ
    weight_scale: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    act_min: int
    act_max: int


def _layer_constants(step: Step, sim: QuantSim) -> _LayerConstants:
    layer = sim.layer(step)
    in_q, out_q = _tensor_q(sim.fake_quant(step.inputs[0])), _tensor_q(sim.fake_quant(step.output))
    w, w_scale = _weight_int8(layer.weight, sim.weight_bits(step))
    b = layer.bias.detach().double().numpy() if layer.bias is not None else np.zeros(w.shape[0])
    bias = np.asarray(quantize_bias(b, in_q.scale, w_scale.astype(np.float64)), dtype=np.int64)
    check_accumulator_bound(w, bias, step.name)
    mult, shift = requant_constants(in_q, w_scale, out_q)
    act_min, act_max = activation_range(step.act, out_q.scale, out_q.zero_point)
    return _LayerConstants(w, bias, in_q, out_q, w_scale, mult, shift, act_min, act_max)


@register_converter("conv")
def _conv_op(step: Step, sim: QuantSim) -> IntegerOp:
    layer = sim.layer(step)
    assert isinstance(layer, nn.Conv2d) and isinstance(layer.padding, tuple)
    k = _layer_constants(step, sim)
    return QConv2d(step.name, step.inputs[0], step.output, k.weight, k.bias, _pair(layer.stride),
                   _pair(layer.padding), layer.groups, k.in_q, k.out_q, k.weight_scale, k.multiplier, k.shift,
                   k.act_min, k.act_max)  # fmt: skip


@register_converter("linear")
def _linear_op(step: Step, sim: QuantSim) -> IntegerOp:
    return QLinear(step.name, step.inputs[0], step.output, *_layer_constants(step, sim))


@register_converter("add")
def _add_op(step: Step, sim: QuantSim) -> IntegerOp:
    a_q, b_q = (_tensor_q(sim.fake_quant(t)) for t in step.inputs)
    out_q = _tensor_q(sim.fake_quant(step.output))
    a_m, a_s, b_m, b_s, o_m, o_s = add_constants(a_q, b_q, out_q)
    act_min, act_max = activation_range(step.act, out_q.scale, out_q.zero_point)
    return QAdd(step.name, (step.inputs[0], step.inputs[1]), step.output, a_q, b_q, out_q,
                a_m, a_s, b_m, b_s, o_m, o_s, act_min, act_max)  # fmt: skip


@register_converter("maxpool")
def _maxpool_op(step: Step, sim: QuantSim) -> IntegerOp:
    m = step.module
    assert isinstance(m, nn.MaxPool2d)
    stride = m.stride if m.stride is not None else m.kernel_size
    return QMaxPool(step.name, step.inputs[0], step.output, _pair(m.kernel_size), _pair(stride), _pair(m.padding))


@register_converter("avgpool")
def _avgpool_op(step: Step, sim: QuantSim) -> IntegerOp:
    m = step.module
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return QAvgPool(step.name, step.inputs[0], step.output, None, None)
    assert isinstance(m, nn.AvgPool2d)
    if _pair(m.padding) != (0, 0):
        raise LeanmlError(f"average pool {step.name!r} has padding", "only unpadded average pooling converts")
    stride = m.stride if m.stride is not None else m.kernel_size
    return QAvgPool(step.name, step.inputs[0], step.output, _pair(m.kernel_size), _pair(stride))


@register_converter("flatten")
def _flatten_op(step: Step, sim: QuantSim) -> IntegerOp:
    return QFlatten(step.name, step.inputs[0], step.output, step.flatten_start)


@register_converter("relu", "relu6")
def _clamp_op(step: Step, sim: QuantSim) -> IntegerOp:
    q = _tensor_q(sim.fake_quant(step.output))
    return QClamp(step.name, step.inputs[0], step.output, *activation_range(step.kind, q.scale, q.zero_point))


def _step_op(step: Step, sim: QuantSim) -> IntegerOp:
    convert_step = CONVERTERS.get(step.kind)
    if convert_step is None:
        raise LeanmlError(f"cannot convert plan step {step.kind!r}", f"convertible: {', '.join(CONVERTERS)}")
    return convert_step(step, sim)


def convert(
    sim: QuantSim,
    input: dict[str, Any] | None = None,
    history: dict[str, Any] | None = None,
) -> IntegerModel:
    """The integer model of a calibrated (or QAT-trained) simulator; ``input``/``history`` go into its artifact."""
    if not all(isinstance(fq, FakeQuantize) and fq.calibrated for fq in sim.fq.values()):
        raise LeanmlError("the model is not calibrated", "run calibration (PTQ) or QAT before converting")
    if sim.bits != 8:
        raise LeanmlError(f"integer conversion needs 8-bit activations, got {sim.bits}", "use bits=8")
    ops = [_step_op(step, sim) for step in sim.plan.steps]
    return IntegerModel(ops, sim.plan.output, _tensor_q(sim.fake_quant(sim.plan.output)), input, history)
