"""Fake quantization: quantize-dequantize in float with a straight-through gradient (PTQ calibration and QAT).

:class:`FakeQuantize` has three modes: ``observe`` (record ranges, pass
values through), ``quantize`` (snap to the integer grid, straight-through
gradient inside the range and zero outside), and ``float`` (identity).
With ``learn_scale=True`` the scale is a parameter trained with LSQ's
gradient (Esser et al., 2020). Weights are fake-quantized per output channel,
symmetrically, from their current values, so QAT sees the grid it will be
converted to. Rounding is half away from zero everywhere, as the integer
spec says.

Example:
    >>> import torch
    >>> fq = FakeQuantize(bits=8, observer="minmax")
    >>> _ = fq(torch.tensor([0.0, 1.0, 2.55]))          # observe
    >>> fq.freeze()
    >>> fq(torch.tensor([0.004, 1.0])).tolist()          # snapped to multiples of 0.01
    [0.0, 1.0]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.quant.observers import make_observer
from leanml.quant.primitives import TINY_SCALE, qparams_from_minmax, round_half_away

MODES = ("observe", "quantize", "float")


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero with an identity gradient."""
    return x + (round_half_away(x) - x).detach()


def fake_quantize_ste(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """``(clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale`` with a straight-through gradient.

    ``scale``/``zero_point`` broadcast against ``x`` (per-tensor scalars or
    per-channel shaped (C, 1, 1, 1)). The gradient w.r.t. ``x`` is 1 inside
    the representable range and 0 outside; w.r.t. ``scale`` it is LSQ's.

    Example:
        >>> fake_quantize_ste(torch.tensor([0.26, 9.0]), torch.tensor(0.5), torch.tensor(0.0), -8, 7).tolist()
        [0.5, 3.5]
    """
    q = _round_ste(x / scale) + zero_point
    q = torch.clamp(q, qmin, qmax)
    return (q - zero_point) * scale


def weight_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel scales of a weight (C_out, ...): max |w| / (2^(bits-1) - 1), shape (C_out,).

    Example:
        >>> weight_scales(torch.tensor([[127.0, -1.0], [0.0, 0.0]]), 8)[0].item()
        1.0
    """
    qmax = (1 << (bits - 1)) - 1
    return weight.detach().abs().flatten(1).amax(1).clamp(min=1e-12) / qmax


def weight_fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel fake quantization of a weight (C_out, ...) to ``bits`` bits.

    Example:
        >>> w = torch.tensor([[1.27, -0.5], [0.2, 0.1]])
        >>> [round(v, 4) for v in weight_fake_quantize(w, 8)[0].tolist()]  # grid step 1.27 / 127 = 0.01
        [1.27, -0.5]
    """
    qmax = (1 << (bits - 1)) - 1
    scale = weight_scales(weight, bits).reshape(-1, *([1] * (weight.dim() - 1)))
    return fake_quantize_ste(weight, scale, torch.zeros_like(scale), -qmax, qmax)


class FakeQuantize(nn.Module):
    """Per-tensor asymmetric fake quantization of activations, calibrated by an observer."""

    def __init__(self, bits: int = 8, observer: str = "minmax", learn_scale: bool = False) -> None:
        super().__init__()
        self.bits = bits
        self.qmin, self.qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        self.observer = make_observer(observer, bits)
        self.learn_scale = learn_scale
        self.mode = "observe"
        self.scale = nn.Parameter(torch.tensor(1.0), requires_grad=learn_scale)
        self.zero_point: torch.Tensor
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.calibrated = False

    def freeze(self) -> None:
        """Turn the observed range into scale and zero point, and switch to ``quantize``."""
        lo, hi = self.observer.range()
        scale, zero_point = qparams_from_minmax(lo, hi, self.bits, symmetric=False)
        with torch.no_grad():
            self.scale.fill_(float(scale))
            self.zero_point.fill_(float(zero_point))
        self.calibrated = True
        self.mode = "quantize"

    def set_mode(self, mode: str) -> None:
        """Switch between ``observe``, ``quantize`` (needs calibration) and ``float``."""
        if mode not in MODES:
            raise LeanmlError(f"unknown fake-quant mode {mode!r}", f"choose one of: {', '.join(MODES)}")
        if mode == "quantize" and not self.calibrated:
            raise LeanmlError("fake quantizer is not calibrated", "calibrate on a few batches first")
        self.mode = mode

    def quantize(self, x: torch.Tensor, right_shift: torch.Tensor | None = None) -> torch.Tensor:
        """Snap ``x`` to this quantizer's grid (no observation), whatever the mode after calibration.

        ``right_shift`` (broadcastable to ``x``) emulates gemmlowp requantization's
        double rounding: the value in output units is first rounded half up on the
        finer grid 2^-right_shift (SRDHM), then half away from zero (RDBPOT).
        """
        scale: torch.Tensor = self.scale
        if self.learn_scale:  # LSQ gradient scaling: g = 1 / sqrt(numel * qmax)
            g = 1.0 / math.sqrt(x.numel() * self.qmax)
            scale = scale * g + (scale - scale * g).detach()
        scale = scale.abs().clamp(min=TINY_SCALE)  # LSQ may drive a learned scale towards 0
        v = x / scale
        if right_shift is not None:
            fine = torch.exp2(right_shift.to(x.dtype))
            snapped = round_half_away(torch.floor(v * fine + 0.5) / fine)  # exact: halves are dyadic
        else:
            snapped = round_half_away(v)
        q = torch.clamp(v + (snapped - v).detach() + self.zero_point, self.qmin, self.qmax)
        return (q - self.zero_point) * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "observe":
            self.observer.observe(x)
            return x
        if self.mode == "float":
            return x
        return self.quantize(x)

    def extra_repr(self) -> str:
        scale, zero_point = float(self.scale.detach()), int(self.zero_point)
        return f"bits={self.bits}, mode={self.mode}, scale={scale:.6g}, zero_point={zero_point}"
