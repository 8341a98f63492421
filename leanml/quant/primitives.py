"""The one integer spec: rounding, affine quantization, and TFLite/gemmlowp fixed-point requantization.

Every integer path in leanml (fake quantization, the integer reference
executor, the generated C engine) computes through these functions, so Python
and C agree bit for bit; ``docs/integer_spec.md`` states the spec and this
module is its source of truth. Rounding is half away from zero (C ``roundf``)
everywhere except inside :func:`saturating_rounding_doubling_high_mul`, whose
gemmlowp nudge rounds ties toward +inf. Integer tensors are int64 numpy arrays
holding int32 values; float quantization divides in float32.

Example:
    >>> scale, zp = qparams_from_minmax(-1.0, 3.0, bits=8, symmetric=False)
    >>> float(scale), int(zp)
    (0.01568627543747425, -64)
    >>> quantize_multiplier(0.02)  # 0.02 ≈ 1374389535 * 2^(-5 - 31)
    (1374389535, -5)
    >>> requantize(np.array([300, -7000, 50_000]), *quantize_multiplier(0.02), -3, act_min=-128, act_max=127).tolist()
    [3, -128, 127]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import torch

from leanml.errors import LeanmlError

IntArray = npt.NDArray[np.int64]
F32Array = npt.NDArray[np.float32]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
MIN_BITS, MAX_BITS = 2, 8
MIN_SHIFT, MAX_SHIFT = -31, 30  # quantize_multiplier's shift range: right shifts <= 31, left shifts <= 30
TINY_SCALE = float(np.finfo(np.float32).tiny)  # smallest scale a non-degenerate range gets (float32 normal)
SCALE_DTYPES = ("float32", "float16")  # float16: the scale is rounded to a half (LLM group scales, as stored packed)


def check_bits(bits: int) -> None:
    """Raise :class:`LeanmlError` unless ``bits`` is an integer in 2..8.

    Example:
        >>> check_bits(4)
    """
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not MIN_BITS <= bits <= MAX_BITS:
        raise LeanmlError(f"unsupported bit width {bits!r}: allowed {MIN_BITS}..{MAX_BITS}", "pass bits from 2 to 8")


def qrange(bits: int, symmetric: bool, signed: bool = True) -> tuple[int, int]:
    """(qmin, qmax): symmetric [-(2^(b-1)-1), 2^(b-1)-1], asymmetric [-2^(b-1), 2^(b-1)-1], unsigned [0, 2^b-1].

    Example:
        >>> qrange(8, symmetric=True), qrange(8, symmetric=False), qrange(4, symmetric=False, signed=False)
        ((-127, 127), (-128, 127), (0, 15))
    """
    check_bits(bits)
    if symmetric and not signed:
        raise LeanmlError("symmetric quantization needs a signed range", "pass signed=True or symmetric=False")
    if not signed:
        return 0, (1 << bits) - 1
    half = 1 << (bits - 1)
    return (-(half - 1) if symmetric else -half), half - 1


@overload
def round_half_away(x: torch.Tensor) -> torch.Tensor: ...
@overload
def round_half_away(x: float) -> float: ...
@overload
def round_half_away(x: npt.NDArray[Any]) -> npt.NDArray[Any]: ...
def round_half_away(x: torch.Tensor | float | npt.NDArray[Any]) -> torch.Tensor | float | npt.NDArray[Any]:
    """Round half away from zero (C ``roundf``/``round``), exactly, keeping the dtype (torch, numpy or float).

    ``trunc(x) + sign(x) * (|x - trunc(x)| >= 0.5)``: ``x - trunc(x)`` is exact, so unlike ``floor(|x| + 0.5)``
    there is no double rounding (0.49999997f stays 0, 2^23 + 1 stays odd).

    Example:
        >>> round_half_away(np.array([0.5, -0.5, 1.5, 2.5, -2.5, 0.49])).tolist()
        [1.0, -1.0, 2.0, 3.0, -3.0, 0.0]
        >>> round_half_away(torch.tensor([2.5, -0.5])).tolist(), round_half_away(-1.5)
        ([3.0, -1.0], -2.0)
    """
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            return x.clone()
        t = torch.trunc(x)
        return t + torch.where((x - t).abs() >= 0.5, torch.sign(x), torch.zeros_like(x))
    if isinstance(x, float | int):
        return float(round_half_away(np.asarray(x, dtype=np.float64)))
    a = np.asarray(x)
    if a.dtype.kind in "iub":
        return a.copy()
    ta = np.trunc(a)
    with np.errstate(invalid="ignore"):  # inf - inf = nan: the comparison is False, inf stays inf
        return ta + np.where(np.abs(a - ta) >= 0.5, np.sign(a), np.zeros_like(a))


def _round_int(v: float) -> int:
    """Round a finite float half away from zero to a Python int, exactly."""
    t = math.trunc(v)
    return t + (int(math.copysign(1.0, v)) if abs(v - t) >= 0.5 else 0)


def quantize(x: npt.ArrayLike, scale: npt.ArrayLike, zero_point: npt.ArrayLike, qmin: int, qmax: int) -> IntArray:
    """``clamp(round_half_away(x / scale) + zero_point, qmin, qmax)`` with x and scale in float32.

    Float32 true division, as C ``roundf(x / scale)`` on ``float`` operands; the rounded value is clamped to
    ``[qmin - zp, qmax - zp]`` before the integer conversion, so +-inf saturates and NaN is an error.
    ``scale``/``zero_point`` broadcast against ``x``.

    Example:
        >>> quantize(np.array([0.26, -0.25, 9.0]), 0.5, 0, -8, 7).tolist()
        [1, -1, 7]
    """
    xf = np.asarray(x, dtype=np.float32)
    if np.isnan(xf).any():
        raise LeanmlError("cannot quantize NaN values", "check the tensor for NaNs before quantizing")
    zp = np.asarray(zero_point, dtype=np.int64)
    r = round_half_away(xf / np.asarray(scale, dtype=np.float32))  # float32, broadcast shape
    r = np.clip(r, (qmin - zp).astype(np.float32), (qmax - zp).astype(np.float32))
    return (r.astype(np.int64) + zp).astype(np.int64)


def dequantize(q: npt.ArrayLike, scale: npt.ArrayLike, zero_point: npt.ArrayLike) -> F32Array:
    """``(q - zero_point) * scale`` in float32 (the integer difference is exact, then one float32 multiply).

    Example:
        >>> dequantize(np.array([1, -1, 7]), 0.5, 0).tolist()
        [0.5, -0.5, 3.5]
    """
    diff = np.asarray(q, dtype=np.int64) - np.asarray(zero_point, dtype=np.int64)
    return (diff.astype(np.float32) * np.asarray(scale, dtype=np.float32)).astype(np.float32)


def qparams_from_minmax(
    min_val: npt.ArrayLike,
    max_val: npt.ArrayLike,
    bits: int,
    symmetric: bool,
    signed: bool = True,
    scale_dtype: str = "float32",
) -> tuple[F32Array, IntArray]:
    """Scale (float32) and zero point (int64) for the range [min, max], elementwise (per-channel arrays work).

    The range is widened to include 0: ``lo = min(min, 0)``, ``hi = max(max, 0)``.
    Symmetric: ``scale = max(-lo, hi) / qmax``, zero point 0. Asymmetric:
    ``scale = (hi - lo) / (qmax - qmin)``, ``zp = clamp(round_half_away(qmin - lo / scale), qmin, qmax)``
    with the float32 scale. Computed in float64, then the scale rounds to float32.
    A degenerate range (hi == lo == 0) gets scale 1.0; any other range gets at
    least :data:`TINY_SCALE`. Either way 0 is exactly representable (q = zp).
    ``scale_dtype="float16"`` rounds the scale up to a half (at least 2^-14, the smallest
    normal half) before the zero point is derived from it, so a float16 copy of it is exact.

    Example:
        >>> s, zp = qparams_from_minmax(-0.5, 1.27, bits=8, symmetric=True)
        >>> float(s), int(zp)
        (0.009999999776482582, 0)
        >>> [float(v) for v in qparams_from_minmax(0.0, 0.0, 8, symmetric=False)]
        [1.0, -128.0]
    """
    qmin, qmax = qrange(bits, symmetric, signed)
    mn, mx = np.asarray(min_val, dtype=np.float64), np.asarray(max_val, dtype=np.float64)
    if not (np.isfinite(mn).all() and np.isfinite(mx).all()):
        raise LeanmlError("quantization range must be finite", "check the observed min/max for inf or NaN")
    if np.any(mn > mx):
        raise LeanmlError("quantization range has min > max", "pass min_val <= max_val")
    lo, hi = np.minimum(mn, 0.0), np.maximum(mx, 0.0)
    span = np.maximum(-lo, hi) / qmax if symmetric else (hi - lo) / (qmax - qmin)
    if scale_dtype not in SCALE_DTYPES:
        raise LeanmlError(f"unknown scale dtype {scale_dtype!r}", f"choose one of {SCALE_DTYPES}")
    if scale_dtype == "float16":  # round up, so the range still fits in qmax - qmin steps
        wide = np.where(span > 0, np.maximum(span, 2.0**-14), 1.0)
        half = wide.astype(np.float16)
        half = np.where(half.astype(np.float64) < wide, np.nextafter(half, np.float16(np.inf)), half)
        scale = np.asarray(half).astype(np.float32)
    else:
        scale = np.where(span > 0, np.maximum(span, TINY_SCALE), 1.0).astype(np.float32)
    if not np.isfinite(scale).all():
        raise LeanmlError(f"quantization scale overflows {scale_dtype}", "check the weights for huge values")
    if symmetric:
        return scale, np.zeros(scale.shape, dtype=np.int64)
    zp = np.clip(round_half_away(qmin - lo / scale.astype(np.float64)), qmin, qmax)
    return scale, zp.astype(np.int64)


def _channel_shape(ndim: int, axis: int) -> list[int]:
    """Shape [1, .., -1 at axis, .., 1] that broadcasts a per-channel vector along ``axis``."""
    shape = [1] * ndim
    shape[axis] = -1
    return shape


def _normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise LeanmlError(f"channel axis {axis} is out of range for a {ndim}-d tensor", f"use -{ndim}..{ndim - 1}")
    return axis % ndim


@dataclass(frozen=True, eq=False)
class QTensor:
    """Integer values and their quantization: real ≈ scale * (q - zero_point).

    ``scale``/``zero_point`` have shape () per tensor, (C,) per channel along ``axis``, and
    (..., n // group_size) per group of ``group_size`` consecutive elements of the last axis.
    """

    q: IntArray
    scale: F32Array
    zero_point: IntArray
    qmin: int
    qmax: int
    axis: int | None = None
    group_size: int | None = None

    def dequantize(self) -> F32Array:
        """Float32 values ``(q - zero_point) * scale`` with the parameters broadcast to ``q``."""
        if self.group_size is not None:
            grouped = self.q.reshape(*self.q.shape[:-1], -1, self.group_size)  # (..., G, g)
            return dequantize(grouped, self.scale[..., None], self.zero_point[..., None]).reshape(self.q.shape)
        if self.axis is not None:
            shape = _channel_shape(self.q.ndim, self.axis)
            return dequantize(self.q, self.scale.reshape(shape), self.zero_point.reshape(shape))
        return dequantize(self.q, self.scale, self.zero_point)


def quantize_tensor(
    x: npt.ArrayLike | torch.Tensor,
    bits: int,
    symmetric: bool,
    signed: bool = True,
    axis: int | None = None,
    group_size: int | None = None,
    scale_dtype: str = "float32",
) -> QTensor:
    """Min-max quantize ``x`` per tensor, per channel (``axis``), or per group (``group_size``, last axis);
    ``scale_dtype`` as in :func:`qparams_from_minmax`.

    Example:
        >>> qt = quantize_tensor(np.array([[1.0, -0.5], [0.2, 0.1]]), bits=8, symmetric=True, axis=0)
        >>> qt.q.tolist(), qt.scale.shape
        ([[127, -64], [127, 64]], (2,))
        >>> quantize_tensor(np.arange(8.0), 4, symmetric=False, signed=False, group_size=4).q.tolist()
        [0, 5, 10, 15, 9, 11, 13, 15]
    """
    arr = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float32)
    if arr.size == 0:
        raise LeanmlError("cannot quantize an empty tensor", "pass a tensor with at least one element")
    qmin, qmax = qrange(bits, symmetric, signed)
    if axis is not None and group_size is not None:
        raise LeanmlError("choose per-channel (axis) or per-group (group_size) quantization, not both")
    view = arr
    reduce: tuple[int, ...] | None = None  # the axes min/max run over (None: all)
    if group_size is not None:
        n = arr.shape[-1] if arr.ndim else 1
        if isinstance(group_size, bool) or group_size < 1 or n % group_size:
            raise LeanmlError(f"group size {group_size} does not divide the last axis ({n})", "pick a divisor of it")
        view, reduce = arr.reshape(*arr.shape[:-1], n // group_size, group_size), (-1,)  # (..., G, g)
    elif axis is not None:
        axis = _normalize_axis(axis, arr.ndim)
        reduce = tuple(i for i in range(arr.ndim) if i != axis)
    lo, hi = view.min(reduce, keepdims=True), view.max(reduce, keepdims=True)  # keepdims: broadcast against view
    scale, zp = qparams_from_minmax(lo, hi, bits, symmetric, signed, scale_dtype)
    q = quantize(view, scale, zp, qmin, qmax).reshape(arr.shape)
    if group_size is not None:
        scale, zp = scale[..., 0], zp[..., 0]  # (..., G)
    else:
        flat = (-1,) if axis is not None else ()  # (C,) per channel, () per tensor
        scale, zp = scale.reshape(flat), zp.reshape(flat)
    return QTensor(q, scale, zp, qmin, qmax, axis, group_size)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``real ≈ multiplier * 2^(shift - 31)``, multiplier in [2^30, 2^31).

    ``m, e = frexp(real)``; ``multiplier = round_half_away(m * 2^31)`` (exact:
    m * 2^31 is an exact double); a result of 2^31 halves and increments the
    shift. 0 → (0, 0); shifts below -31 flush to (0, 0) as TFLite does (then
    real < 2^-32). Relative error <= 2^-31. Shift lies in -31..30.

    Example:
        >>> quantize_multiplier(0.5), quantize_multiplier(1.0), quantize_multiplier(0.0)
        ((1073741824, 0), (1073741824, 1), (0, 0))
    """
    real = float(real)
    if not (math.isfinite(real) and real >= 0.0):
        raise LeanmlError(f"requantization multiplier must be finite and >= 0, got {real!r}", "scales must be > 0")
    if real == 0.0:
        return 0, 0
    m, e = math.frexp(real)  # real = m * 2^e, m in [0.5, 1)
    q = _round_int(m * (1 << 31))  # in [2^30, 2^31]
    if q == 1 << 31:
        q //= 2
        e += 1
    if e < MIN_SHIFT:
        return 0, 0
    if e > MAX_SHIFT:
        raise LeanmlError(f"requantization multiplier {real!r} is too large", "it must round below 2^30")
    return q, e


def quantize_multipliers(reals: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Per-channel :func:`quantize_multiplier`: (multipliers, shifts) as int64 arrays shaped like ``reals``.

    Example:
        >>> m, s = quantize_multipliers([0.5, 0.02])
        >>> m.tolist(), s.tolist()
        ([1073741824, 1374389535], [0, -5])
    """
    r = np.asarray(reals, dtype=np.float64)
    pairs = [quantize_multiplier(float(v)) for v in r.reshape(-1)]
    mult, shift = (np.array([p[i] for p in pairs], dtype=np.int64).reshape(r.shape) for i in (0, 1))
    return mult, shift


def _int32_values(v: npt.ArrayLike, name: str) -> IntArray:
    """``v`` as an int64 array, raising unless every value fits in int32 (the C engine's type)."""
    a = np.asarray(v, dtype=np.int64)
    if a.size and (int(a.min()) < INT32_MIN or int(a.max()) > INT32_MAX):
        raise LeanmlError(f"{name} holds values outside int32", "the fixed-point pipeline needs int32 operands")
    return a


def saturating_rounding_doubling_high_mul(a: npt.ArrayLike, b: npt.ArrayLike) -> IntArray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` on int32 values (int64 arrays).

    ``ab = a * b`` (exact in int64: |ab| <= 2^62); ``nudge = 2^30`` if ab >= 0
    else ``1 - 2^30``; result ``(ab + nudge) / 2^31`` truncated toward zero (C
    division). That equals ``floor((ab + 2^30) / 2^31)``: round to nearest with
    ties toward +inf (-0.5 → 0, not -1). a == b == INT32_MIN saturates to INT32_MAX.

    Example:
        >>> a = [1 << 30, -(1 << 30), -(3 << 29), INT32_MIN]  # a * b / 2^31: 0.5, -0.5, -1.5, 2^31
        >>> saturating_rounding_doubling_high_mul(a, [1, 1, 2, INT32_MIN]).tolist()
        [1, 0, -1, 2147483647]
    """
    return _srdhm(_int32_values(a, "a"), _int32_values(b, "b"))


def _srdhm(a64: IntArray, b64: IntArray) -> IntArray:
    high = (a64 * b64 + (1 << 30)) >> 31  # floor((ab + 2^30) / 2^31): the C expression's value (see above)
    if bool((a64 == INT32_MIN).any()) and bool((b64 == INT32_MIN).any()):
        high = np.where((a64 == INT32_MIN) & (b64 == INT32_MIN), INT32_MAX, high)
    return np.asarray(high, dtype=np.int64)


def saturating_rounding_doubling_high_mul_ref(a: npt.ArrayLike, b: npt.ArrayLike) -> IntArray:
    """The C expression spelled out (nudge by sign, then truncating division): the twin of
    :func:`saturating_rounding_doubling_high_mul`.

    Example:
        >>> saturating_rounding_doubling_high_mul_ref([-(3 << 29)], [2]).tolist()
        [-1]
    """
    a64, b64 = _int32_values(a, "a"), _int32_values(b, "b")
    ab = a64 * b64
    s = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.sign(s) * (np.abs(s) >> 31)  # truncation toward zero (numpy's // would floor)
    return np.where((a64 == INT32_MIN) & (b64 == INT32_MIN), INT32_MAX, high).astype(np.int64)


def rounding_divide_by_pot(x: npt.ArrayLike, exponent: npt.ArrayLike) -> IntArray:
    """gemmlowp's ``RoundingDivideByPOT``: x / 2^exponent rounded half away from zero, exponent in 0..31.

    ``mask = 2^e - 1``, ``remainder = x & mask``, ``threshold = (mask >> 1) + (x < 0)``,
    result ``(x >> e) + (remainder > threshold)`` with arithmetic shifts.

    Example:
        >>> rounding_divide_by_pot([5, -5, 6, -6, 7], 1).tolist()
        [3, -3, 3, -3, 4]
    """
    x64 = _int32_values(x, "x")
    e = np.asarray(exponent, dtype=np.int64)
    if np.any((e < 0) | (e > 31)):
        raise LeanmlError(f"rounding_divide_by_pot exponent {e.tolist()} is outside 0..31", "check the shifts")
    return _rdbp(x64, e)


def _rdbp(x64: IntArray, e: IntArray) -> IntArray:
    mask = (np.int64(1) << e) - 1
    threshold = (mask >> 1) + (x64 < 0)
    return ((x64 >> e) + ((x64 & mask) > threshold)).astype(np.int64)


def multiply_by_quantized_multiplier(x: npt.ArrayLike, multiplier: npt.ArrayLike, shift: npt.ArrayLike) -> IntArray:
    """TFLite's ``MultiplyByQuantizedMultiplier`` (double rounding): x * real with (multiplier, shift) from
    :func:`quantize_multiplier`; multiplier and shift broadcast against ``x``.

    ``left = max(shift, 0)``, ``right = max(-shift, 0)``; result
    ``rounding_divide_by_pot(srdhm(x * 2^left, multiplier), right)``. Precondition
    (TFLite does not saturate; checked here): x and x * 2^left fit in int32.

    Error bound, for ``(multiplier, shift) = quantize_multiplier(real)`` and x meeting the precondition:
    |result - x * real| < 1, so the result is floor or ceil of x * real (within 1 of round(x * real)).
    Against the exact quantized product x * multiplier * 2^(shift - 31) the error is <= 1/2 for shift >= 0
    (one rounding) and <= 3/4 for shift < 0 (roundings of <= 1/2 then <= 1/4 output units); the multiplier's
    relative error 2^-31 adds |x| * real * 2^-31 < 2^(shift - 1) if shift < 0, < 1/2 otherwise.

    Example:
        >>> m, s = quantize_multiplier(0.3)
        >>> multiply_by_quantized_multiplier([10, -10, 5, -5, 1_000_000], m, s).tolist()
        [3, -3, 2, -2, 300000]
    """
    s = np.asarray(shift, dtype=np.int64)
    if np.any((s < MIN_SHIFT) | (s > MAX_SHIFT)):
        raise LeanmlError(f"requantization shift {s.tolist()} is outside -31..30", "use quantize_multiplier")
    left, right = np.maximum(s, 0), np.maximum(-s, 0)
    shifted = _int32_values(_int32_values(x, "x") * (np.int64(1) << left), "x * 2^shift")
    return _rdbp(_srdhm(shifted, _int32_values(multiplier, "multiplier")), right)  # srdhm's result is int32


def requantize(
    acc: npt.ArrayLike,
    multiplier: npt.ArrayLike,
    shift: npt.ArrayLike,
    out_zero_point: int,
    act_min: int,
    act_max: int,
    axis: int | None = None,
) -> IntArray:
    """int32 accumulators → output integers: ``clamp(mbqm(acc, multiplier, shift) + out_zero_point, act_min, act_max)``.

    Per-tensor with scalar ``multiplier``/``shift``; per channel with (C,) vectors
    broadcast along ``axis``. Returns an int64 array holding int8 (act range) values.

    Example:
        >>> m, s = quantize_multipliers([0.5, 0.25])
        >>> requantize(np.array([[10, 10], [-3, 1000]]), m, s, 0, -128, 127, axis=1).tolist()  # -1.5 → -1
        [[5, 3], [-1, 127]]
    """
    acc64 = np.asarray(acc, dtype=np.int64)
    mult, sh = np.asarray(multiplier, dtype=np.int64), np.asarray(shift, dtype=np.int64)
    if act_min > act_max:
        raise LeanmlError(f"activation range [{act_min}, {act_max}] is empty", "act_min must be <= act_max")
    if axis is not None and mult.ndim == 1:
        axis = _normalize_axis(axis, acc64.ndim)
        if mult.shape[0] != acc64.shape[axis] or sh.shape != mult.shape:
            raise LeanmlError(f"{mult.size} multipliers, {sh.size} shifts for {acc64.shape[axis]} channels", "one each")
        shape = _channel_shape(acc64.ndim, axis)
        mult, sh = mult.reshape(shape), sh.reshape(shape)
    out = multiply_by_quantized_multiplier(acc64, mult, sh) + int(out_zero_point)
    return np.clip(out, act_min, act_max).astype(np.int64)


ActivationRangeFn = Callable[[int, int, float, int], tuple[int, int]]
ACTIVATION_RANGES: dict[str, ActivationRangeFn] = {  # (qmin, qmax, scale, zero_point) → (act_min, act_max)
    "none": lambda qmin, qmax, scale, zp: (qmin, qmax),
    "relu": lambda qmin, qmax, scale, zp: (max(qmin, zp), qmax),
    "relu6": lambda qmin, qmax, scale, zp: (max(qmin, zp), min(qmax, zp + _round_int(6.0 / scale))),
}


def activation_range(kind: str, scale: float, zero_point: int, bits: int = 8) -> tuple[int, int]:
    """Clamp range (act_min, act_max) of a fused activation on the asymmetric signed output grid.

    "none" → (qmin, qmax); "relu" → (max(qmin, zp), qmax); "relu6" →
    (max(qmin, zp), min(qmax, zp + round_half_away(6 / scale))) (float64).

    Example:
        >>> activation_range("relu6", 0.05, -10), activation_range("relu", 0.05, -10)
        ((-10, 110), (-10, 127))
    """
    fn = ACTIVATION_RANGES.get(kind)
    if fn is None:
        raise LeanmlError(f"unknown fused activation {kind!r}", f"choose one of: {', '.join(ACTIVATION_RANGES)}")
    qmin, qmax = qrange(bits, symmetric=False)
    if not (math.isfinite(scale) and scale > 0):
        raise LeanmlError(f"activation scale must be finite and > 0, got {scale!r}", "check the calibration")
    if not qmin <= zero_point <= qmax:
        raise LeanmlError(f"zero point {zero_point} is outside [{qmin}, {qmax}]", "check the calibration")
    return fn(qmin, qmax, float(scale), int(zero_point))


def quantize_bias(bias: npt.ArrayLike, input_scale: float, weight_scales: npt.ArrayLike) -> IntArray:
    """int32 bias at scale input_scale * weight_scale: ``round_half_away(bias / (s_in * s_w))`` in float64,
    clamped to the int32 range; ``weight_scales`` scalar or per output channel (C,).

    Example:
        >>> quantize_bias(np.array([0.1, -0.1, 1e9]), 0.02, np.array([0.01, 0.04, 0.01])).tolist()
        [500, -125, 2147483647]
    """
    s = np.asarray(input_scale, dtype=np.float64) * np.asarray(weight_scales, dtype=np.float64)
    if not np.all(np.isfinite(s) & (s > 0)):
        raise LeanmlError("bias scales must be finite and > 0", "check the input and weight scales")
    b = np.asarray(bias, dtype=np.float64)
    if np.isnan(b).any():
        raise LeanmlError("cannot quantize a NaN bias", "check the layer's bias")
    return np.clip(round_half_away(b / s), INT32_MIN, INT32_MAX).astype(np.int64)
