"""The quantization simulator: a plan run in float with fake quantization at exactly the integer points.

:class:`QuantSim` executes a :class:`~leanml.quant.plan.Plan` step by step.
Every tensor that owns quantization parameters (model input, conv / linear /
add outputs after their fused activation) has a :class:`FakeQuantize`; pooling,
flatten and standalone activations keep their input's parameters. Weights are
fake-quantized per output channel. The same object calibrates (observe mode),
trains with QAT (quantize mode, straight-through gradients) and is what
:func:`leanml.quant.integer.convert` turns into an integer model.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> sim = QuantSim.from_model(build_model("vgg").eval())
    >>> sim.calibrate([torch.randn(4, 1, 28, 28)])
    >>> sim(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.quant.bn_fold import fold_bn
from leanml.quant.fake_quant import FakeQuantize, weight_fake_quantize, weight_scales
from leanml.quant.plan import Plan, Step, build_plan
from leanml.quant.primitives import round_half_away


def apply_activation(x: torch.Tensor, act: str) -> torch.Tensor:
    """The fused output activation in float: none, relu or relu6.

    Example:
        >>> apply_activation(torch.tensor([-1.0, 7.0]), "relu6").tolist()
        [0.0, 6.0]
    """
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    return x


class QuantSim(nn.Module):
    """Float execution of a plan with fake quantization; see the module docstring."""

    def __init__(
        self,
        plan: Plan,
        bits: int = 8,
        weight_bits: int | dict[str, int] = 8,
        observer: str = "minmax",
        learn_scale: bool = False,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.bits = bits
        layer_names = [s.name for s in plan.steps if s.kind in ("conv", "linear")]
        if isinstance(weight_bits, dict):
            unknown = sorted(set(weight_bits) - set(layer_names))
            if unknown:
                raise LeanmlError(f"unknown layer(s) for weight bits: {', '.join(unknown)}",
                                  f"quantizable layers: {', '.join(layer_names)}")  # fmt: skip
            self.layer_bits = {n: weight_bits.get(n, 8) for n in layer_names}
        else:
            self.layer_bits = dict.fromkeys(layer_names, weight_bits)
        self.layers = nn.ModuleDict({s.output: s.module for s in plan.steps if s.module is not None})
        self.fq = nn.ModuleDict(
            {s.output: FakeQuantize(bits, observer, learn_scale) for s in plan.steps if s.owns_qparams}
        )
        self.qsource: dict[str, str] = {}  # tensor -> name of the FakeQuantize that holds its qparams
        for s in plan.steps:
            self.qsource[s.output] = s.output if s.owns_qparams else self.qsource[s.inputs[0]]
        self.weights_quantized = False

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        bits: int = 8,
        weight_bits: int | dict[str, int] = 8,
        observer: str = "minmax",
        learn_scale: bool = False,
    ) -> QuantSim:
        """Fold BN in (a copy of) ``model``, build its plan, and wrap it.

        ``weight_bits`` is one width for every layer, or a width per conv/linear
        layer name (mixed precision; layers not named get 8 bits).
        """
        return cls(build_plan(fold_bn(model)), bits, weight_bits, observer, learn_scale)

    def set_mode(self, mode: str) -> None:
        """``observe`` (calibrate, float weights), ``quantize`` (fake-quant everything) or ``float``."""
        for fq in self.fq.values():
            assert isinstance(fq, FakeQuantize)
            fq.set_mode(mode)
        self.weights_quantized = mode == "quantize"

    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor]) -> None:
        """Observe activation ranges on float ``batches`` (N, C, H, W), then freeze into quantize mode."""
        self.eval()
        self.set_mode("observe")
        seen = 0
        for x in batches:
            self(x)
            seen += 1
        if not seen:
            raise LeanmlError("calibration got no batches", "pass at least one batch of images")
        for fq in self.fq.values():
            assert isinstance(fq, FakeQuantize)
            fq.freeze()
        self.weights_quantized = True

    def fake_quant(self, tensor: str) -> FakeQuantize:
        """The quantizer holding ``tensor``'s scale and zero point."""
        fq = self.fq[self.qsource[tensor]]
        assert isinstance(fq, FakeQuantize)
        return fq

    def layer(self, step: Step) -> nn.Conv2d | nn.Linear:
        """The float conv or linear layer of a ``conv``/``linear`` step."""
        layer = self.layers[step.output]
        assert isinstance(layer, nn.Conv2d | nn.Linear)
        return layer

    def weight_bits(self, step: Step) -> int:
        """Weight bit width of a ``conv``/``linear`` step."""
        return self.layer_bits[step.name]

    def _weight(self, step: Step) -> torch.Tensor:
        w = self.layer(step).weight
        return weight_fake_quantize(w, self.weight_bits(step)) if self.weights_quantized else w

    def _bias(self, step: Step) -> torch.Tensor | None:
        """The bias, snapped (in quantize mode) to the int32 grid of scale s_in * s_w[c] as the integer op stores it."""
        layer = self.layer(step)
        bias = layer.bias
        if bias is None or not self.weights_quantized:
            return bias
        grid = self.fake_quant(step.inputs[0]).scale.detach().abs() * weight_scales(
            layer.weight, self.weight_bits(step)
        )
        return bias + (round_half_away(bias / grid) * grid - bias).detach()

    def _requant_right_shift(self, step: Step, ndim: int) -> torch.Tensor:
        """Per-output-channel right shift of the layer's requantization, shaped to broadcast over (N, C, ...)."""
        w_scale = weight_scales(self.layer(step).weight, self.weight_bits(step))  # (C_out,)
        s_in = self.fake_quant(step.inputs[0]).scale.detach().abs()
        s_out = self.fake_quant(step.output).scale.detach().abs()
        real = (s_in.double() * w_scale.double() / s_out.double()).clamp(min=1e-30)
        right = (-torch.frexp(real).exponent).clamp(min=0)  # real = m * 2^e, m in [0.5, 1): shift e
        return right.reshape(-1, *([1] * (ndim - 2))).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {}
        for step in self.plan.steps:
            ins = [env[t] for t in step.inputs]
            if step.kind == "input":
                y = x
            elif step.kind == "conv":
                conv = self.layer(step)
                assert isinstance(conv, nn.Conv2d)
                w, b = self._weight(step), self._bias(step)
                y = F.conv2d(ins[0], w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
                y = apply_activation(y, step.act)
            elif step.kind == "linear":
                y = apply_activation(F.linear(ins[0], self._weight(step), self._bias(step)), step.act)
            elif step.kind == "add":
                y = apply_activation(ins[0] + ins[1], step.act)
            elif step.kind in ("maxpool", "avgpool"):
                y = self.layers[step.output](ins[0])
            elif step.kind == "flatten":
                y = torch.flatten(ins[0], step.flatten_start)
            elif step.kind in ("relu", "relu6"):
                y = apply_activation(ins[0], step.kind)
            else:  # pragma: no cover - build_plan only emits the kinds above
                raise LeanmlError(f"unknown plan step {step.kind!r}")
            if step.kind in ("conv", "linear") and self.weights_quantized:
                y = self.fake_quant(step.output).quantize(y, self._requant_right_shift(step, y.dim()))
            elif step.owns_qparams:
                y = self.fq[step.output](y)
            elif step.kind in ("avgpool", "relu6") and self.fake_quant(step.output).mode == "quantize":
                y = self.fake_quant(step.output).quantize(y)  # back onto the input's grid, as the integer op rounds
            env[step.output] = y
        return env[self.plan.output]
