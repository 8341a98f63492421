"""Convert a calibrated :class:`QuantSim` into an :class:`IntegerModel`, run it, save it, load it.

The integer model is a list of integer ops (:mod:`leanml.quant.integer_ops`)
with int8 weights, int32 biases and Q31 requantization constants; running it
uses integer arithmetic only (after the input is quantized). It is the model
``deploy`` consumes: the C engine must reproduce its outputs bit for bit.

Saved as the one artifact format: op arrays in safetensors, op fields in
JSON (kind ``integer-model``, versioned). The sidecar also carries the model's
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from leanml.artifact import load_artifact, save_artifact
from leanml.errors import LeanmlError
from leanml.quant.fake_quant import FakeQuantize, weight_scales
from leanml.quant.integer_ops import (
    ADD_LEFT_SHIFT,
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
    quantize_multiplier,
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
        """Atomically save as safetensors (op arrays) + JSON (op fields)."""
        tensors: dict[str, torch.Tensor] = {}
        ops_meta: list[dict[str, Any]] = []
        for i, op in enumerate(self.ops):
            fields: dict[str, Any] = {}
            for f in dataclasses.fields(op):
                value = getattr(op, f.name)
                if isinstance(value, np.ndarray):
                    tensors[f"ops.{i}.{f.name}"] = torch.from_numpy(np.ascontiguousarray(value))
                    fields[f.name] = {"array": f"ops.{i}.{f.name}", "dtype": str(value.dtype)}
                elif isinstance(value, TensorQ):
                    fields[f.name] = {"scale": value.scale, "zero_point": value.zero_point}
                else:
                    fields[f.name] = list(value) if isinstance(value, tuple) else value
            ops_meta.append({"type": type(op).__name__, "fields": fields})
        meta: dict[str, Any] = {"ops": ops_meta, "output": self.output, "output_q": dataclasses.asdict(self.output_q)}
        if self.input is not None:
            meta["input"] = self.input
        if self.history is not None:
            meta["history"] = self.history
        save_artifact(path, tensors, meta, kind=KIND)

    @classmethod
    def load(cls, path: str | Path) -> IntegerModel:
        """Load a saved integer model; malformed files raise :class:`LeanmlError`."""
        tensors, meta = load_artifact(path, kind=KIND)
        try:
            ops = [_op_from_meta(entry, tensors) for entry in meta["ops"]]
            history = meta.get("history")
            if history is not None and not isinstance(history, dict):
                raise ValueError(f"history must be a mapping, got {type(history).__name__}")
            return cls(ops, str(meta["output"]), TensorQ(**meta["output_q"]), meta.get("input"), history)
        except (KeyError, TypeError, ValueError) as e:
            raise LeanmlError(f"malformed integer model {path}: {e!r}", "re-create it with `leanml quantize`") from e


def check_input_block(block: Any) -> dict[str, Any]:
    """Validate an ``input`` block ({"shape": [C, H, W], "mean", "std", "dataset", "classes", ...}); returns a copy.

    Only ``shape`` is checked strictly (three positive integers, when present); the other fields are descriptive.

    Example:
        >>> check_input_block({"shape": [1, 24, 24], "dataset": "fashion-mnist"})["shape"]
        [1, 24, 24]
    """
    if not isinstance(block, dict):
        raise LeanmlError(f"the input block must be a mapping, got {type(block).__name__}",
                          "store {'shape': [C, H, W], 'mean': [...], 'std': [...], ...}")  # fmt: skip
    out = dict(block)
    if "shape" in out:
        shape = out["shape"]
        ok = isinstance(shape, (list, tuple)) and len(shape) == 3
        if not ok or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise LeanmlError(f"the input block's shape must be three positive integers (C, H, W), got {shape!r}",
                              "re-create the model from its checkpoint")  # fmt: skip
        out["shape"] = [int(d) for d in shape]
    return out


def _op_from_meta(entry: dict[str, Any], tensors: dict[str, torch.Tensor]) -> IntegerOp:
    op_type = OP_TYPES.get(entry["type"])
    if op_type is None:
        raise ValueError(f"unknown op type {entry['type']!r}")
    kwargs: dict[str, Any] = {}
    for name, value in entry["fields"].items():
        if isinstance(value, dict) and "array" in value:
            kwargs[name] = tensors[value["array"]].numpy().astype(value["dtype"])
        elif isinstance(value, dict) and "scale" in value:
            kwargs[name] = TensorQ(float(value["scale"]), int(value["zero_point"]))
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    op: IntegerOp = op_type(**kwargs)
    return op


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


def _requant_constants(in_q: TensorQ, w_scale: np.ndarray, out_q: TensorQ) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(in_q.scale * float(s) / out_q.scale) for s in w_scale]
    return np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)


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
    mult, shift = _requant_constants(in_q, w_scale, out_q)
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
    twice_max = 2.0 * max(a_q.scale, b_q.scale)
    a_m, a_s = quantize_multiplier(a_q.scale / twice_max)
    b_m, b_s = quantize_multiplier(b_q.scale / twice_max)
    o_m, o_s = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * out_q.scale))
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
