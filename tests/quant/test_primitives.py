import ctypes
import ctypes.util
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from leanml.errors import LeanmlError
from leanml.quant.primitives import (
    ACTIVATION_RANGES,
    INT32_MAX,
    INT32_MIN,
    QTensor,
    activation_range,
    dequantize,
    multiply_by_quantized_multiplier,
    qparams_from_minmax,
    qrange,
    quantize,
    quantize_bias,
    quantize_multiplier,
    quantize_multipliers,
    quantize_tensor,
    requantize,
    round_half_away,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None)
INT32 = st.integers(INT32_MIN, INT32_MAX)
MODES = {"symmetric": (True, True), "asymmetric": (False, True), "unsigned": (False, False)}  # (symmetric, signed)

_LIBM_PATH = ctypes.util.find_library("m")
LIBM = ctypes.CDLL(_LIBM_PATH) if _LIBM_PATH else None
if LIBM is not None:
    LIBM.roundf.restype, LIBM.roundf.argtypes = ctypes.c_float, [ctypes.c_float]
    LIBM.round.restype, LIBM.round.argtypes = ctypes.c_double, [ctypes.c_double]
    LIBM.lroundf.restype, LIBM.lroundf.argtypes = ctypes.c_long, [ctypes.c_float]
needs_libm = pytest.mark.skipif(LIBM is None, reason="C math library not found")


def exact_round_half_away(value: Fraction) -> int:
    """Round half away from zero of an exact rational, with Python integers only."""
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def c_div(n: int, d: int) -> int:
    """C integer division: truncates toward zero (Python's // floors)."""
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d > 0) else -q


def srdhm_reference(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul with arbitrary-precision Python integers."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def expanded_params(qt: QTensor) -> tuple[np.ndarray, np.ndarray]:
    """scale and zero point broadcast to the shape of ``qt.q``."""
    if qt.group_size is not None:
        scale, zp = (np.repeat(v, qt.group_size, axis=-1) for v in (qt.scale, qt.zero_point))
    elif qt.axis is not None:
        shape = [1] * qt.q.ndim
        shape[qt.axis] = -1
        scale, zp = qt.scale.reshape(shape), qt.zero_point.reshape(shape)
    else:
        scale, zp = qt.scale, qt.zero_point
    return np.broadcast_to(scale, qt.q.shape), np.broadcast_to(zp, qt.q.shape)


# ----------------------------------------------------------------------------- rounding


def test_round_half_away_ties_go_away_from_zero_for_every_input_kind():
    values = [0.5, -0.5, 1.5, 2.5, -2.5, 0.49, -1.2, 0.0]
    expected = [1.0, -1.0, 2.0, 3.0, -3.0, 0.0, -1.0, 0.0]
    for dtype in (np.float32, np.float64):
        out = round_half_away(np.array(values, dtype=dtype))
        assert out.dtype == dtype and out.tolist() == expected
    for tdtype in (torch.float32, torch.float64):
        out_t = round_half_away(torch.tensor(values, dtype=tdtype))
        assert out_t.dtype == tdtype and out_t.tolist() == expected
    assert [round_half_away(v) for v in values] == expected
    ints = np.array([3, -4])
    assert round_half_away(ints).tolist() == [3, -4] and round_half_away(ints).dtype == ints.dtype


def test_round_half_away_has_no_double_rounding():
    below_half32 = np.float32(0.5) - np.float32(2**-25)  # 0.49999997f: floor(x + 0.5) would give 1
    assert round_half_away(np.array([below_half32, -below_half32])).tolist() == [0.0, 0.0]
    assert round_half_away(torch.tensor([float(below_half32)])).item() == 0.0
    assert round_half_away(0.49999999999999994) == 0.0
    odd32 = np.array([2**23 + 1, -(2**23 + 1)], dtype=np.float32)  # x + 0.5 rounds to even in float32
    assert round_half_away(odd32).tolist() == odd32.tolist()
    assert round_half_away(float(2**52 + 1)) == float(2**52 + 1)


@needs_libm
@SETTINGS
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_round_half_away_matches_c_roundf(v):
    assert LIBM is not None
    c = LIBM.roundf(v)
    assert round_half_away(np.array([v], dtype=np.float32))[0] == c
    assert round_half_away(torch.tensor([v], dtype=torch.float32)).item() == c
    assert round_half_away(v) == LIBM.round(v)


@needs_libm
@SETTINGS
@given(
    st.floats(-1e4, 1e4, width=32),
    st.floats(2**-13, 2**7, width=32),
    st.integers(-128, 127),
)
def test_quantize_matches_c_lroundf_of_float32_division(x, scale, zp):
    assert LIBM is not None
    c = LIBM.lroundf(np.float32(x) / np.float32(scale)) + zp  # C: lroundf(x / scale) with float operands
    assert quantize(np.array([x]), scale, zp, -(2**30), 2**30)[0] == c
    assert quantize(np.array([x]), scale, zp, -128, 127)[0] == min(max(c, -128), 127)


# ----------------------------------------------------------------------------- affine quantization


def test_qrange_per_mode():
    assert qrange(8, symmetric=True) == (-127, 127)
    assert qrange(8, symmetric=False) == (-128, 127)
    assert qrange(8, symmetric=False, signed=False) == (0, 255)
    assert qrange(2, symmetric=True) == (-1, 1)
    assert qrange(3, symmetric=False, signed=False) == (0, 7)


@st.composite
def quant_cases(draw):
    bits = draw(st.integers(2, 8))
    symmetric, signed = MODES[draw(st.sampled_from(sorted(MODES)))]
    shape = draw(st.sampled_from([(8,), (4, 8), (2, 3, 8)]))
    elements = st.floats(-1000, 1000, width=32, allow_subnormal=False)
    x = draw(hnp.arrays(np.float32, shape, elements=elements))
    granularity = draw(st.sampled_from(["tensor", "channel", "group"]))
    axis = draw(st.integers(-len(shape), len(shape) - 1)) if granularity == "channel" else None
    group_size = draw(st.sampled_from([1, 2, 4, 8])) if granularity == "group" else None
    return x, bits, symmetric, signed, axis, group_size


@SETTINGS
@given(quant_cases())
def test_quantize_dequantize_error_is_at_most_half_a_step(case):
    x, bits, symmetric, signed, axis, group_size = case
    qt = quantize_tensor(x, bits, symmetric, signed, axis=axis, group_size=group_size)
    qmin, qmax = qrange(bits, symmetric, signed)
    assert (qt.qmin, qt.qmax) == (qmin, qmax) and qt.q.shape == x.shape and qt.q.dtype == np.int64
    assert qmin <= qt.q.min() and qt.q.max() <= qmax
    assert np.all((qmin <= qt.zero_point) & (qt.zero_point <= qmax))
    if symmetric:
        assert np.all(qt.zero_point == 0)
    scale, zp = expanded_params(qt)
    assert np.all(scale > 0)
    exact = (qt.q - zp) * scale.astype(np.float64)  # float64: exact dequantization of the grid point
    tolerance = scale.astype(np.float64) * (0.5 + 1e-4)  # float32 division/product rounding: < 2^-16 step
    assert np.all(np.abs(exact - x.astype(np.float64)) <= tolerance)
    fq = quantize_tensor(x, bits, symmetric, signed, axis=axis, group_size=group_size).dequantize()
    assert fq.dtype == np.float32 and np.array_equal(fq, qt.dequantize())
    assert np.all(np.abs(fq.astype(np.float64) - x) <= tolerance)


@SETTINGS
@given(
    st.floats(-1e6, 1e6, allow_subnormal=False),
    st.floats(-1e6, 1e6, allow_subnormal=False),
    st.integers(2, 8),
    st.sampled_from(sorted(MODES)),
)
def test_zero_is_exactly_representable(a, b, bits, mode):
    symmetric, signed = MODES[mode]
    scale, zp = qparams_from_minmax(min(a, b), max(a, b), bits, symmetric, signed)
    qmin, qmax = qrange(bits, symmetric, signed)
    q = quantize(np.zeros(3), scale, zp, qmin, qmax)
    assert q.tolist() == [int(zp)] * 3
    assert dequantize(q, scale, zp).tolist() == [0.0] * 3
    x = np.array([[min(a, b), 0.0, max(a, b)], [0.0, a, b]], dtype=np.float32)
    assert np.all(quantize_tensor(x, bits, symmetric, signed, axis=0).dequantize()[x == 0] == 0)


def test_qparams_degenerate_range_and_known_values():
    scale, zp = qparams_from_minmax(0.0, 0.0, 8, symmetric=True)
    assert float(scale) == 1.0 and int(zp) == 0
    scale, zp = qparams_from_minmax(0.0, 0.0, 8, symmetric=False)
    assert float(scale) == 1.0 and int(zp) == -128
    assert quantize_tensor(np.zeros((2, 4)), 4, symmetric=False, group_size=2).dequantize().tolist() == [[0.0] * 4] * 2
    scale, zp = qparams_from_minmax(2.0, 5.1, 8, symmetric=False)  # range widened to [0, 5.1]
    assert float(scale) == pytest.approx(0.02) and int(zp) == -128
    scale, zp = qparams_from_minmax(-2.54, 1.0, 8, symmetric=True)
    assert float(scale) == pytest.approx(0.02) and int(zp) == 0
    scale, zp = qparams_from_minmax(np.array([-1.0, -4.0]), np.array([1.0, 0.0]), 8, symmetric=False)
    assert scale.shape == zp.shape == (2,) and zp.tolist() == [-1, 127]  # -128 + 127.5 rounds away from zero


def test_unsigned_group_quantization_for_llm_weights():
    w = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    qt = quantize_tensor(w, 4, symmetric=False, signed=False, group_size=8)
    assert qt.scale.shape == qt.zero_point.shape == (3, 4) and qt.scale.dtype == np.float32
    assert qt.q.min() >= 0 and qt.q.max() <= 15 and qt.q.max() == 15
    assert np.array_equal(qt.q, quantize_tensor(w.numpy(), 4, False, False, group_size=8).q)
    err = np.abs(qt.dequantize() - w.numpy()).reshape(3, 4, 8)
    assert np.all(err <= qt.scale[..., None] * (0.5 + 1e-4))


def test_quantize_saturates_infinities_and_rejects_nan():
    assert quantize(np.array([np.inf, -np.inf, 1e30]), 0.1, 3, -128, 127).tolist() == [127, -128, 127]
    with pytest.raises(LeanmlError, match="NaN"):
        quantize(np.array([np.nan]), 0.1, 0, -128, 127)


# ----------------------------------------------------------------------------- fixed-point requantization


def test_quantize_multiplier_known_values():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    assert quantize_multiplier(1 - 2**-40) == (1 << 30, 1)  # m * 2^31 rounds to 2^31: halve, shift + 1
    assert quantize_multiplier(2**-33) == (0, 0)  # shift < -31 flushes to zero, as TFLite
    assert quantize_multiplier(2**-32) == (1 << 30, -31)


@SETTINGS
@given(st.floats(2**-32, 2**29))
def test_quantize_multiplier_is_within_relative_2_pow_minus_31(real):
    q, shift = quantize_multiplier(real)
    assert 1 << 30 <= q < 1 << 31 and -31 <= shift <= 30
    approx = Fraction(q) * Fraction(2) ** (shift - 31)
    assert abs(approx - Fraction(real)) <= Fraction(real) * Fraction(1, 1 << 31)
    m, s = quantize_multipliers(np.array([[real, 0.0]]))
    assert m.dtype == s.dtype == np.int64 and m.tolist() == [[q, 0]] and s.tolist() == [[shift, 0]]


@SETTINGS
@given(hnp.arrays(np.int64, 32, elements=INT32), hnp.arrays(np.int64, 32, elements=INT32))
def test_srdhm_equals_the_exact_integer_formula(a, b):
    out = saturating_rounding_doubling_high_mul(a, b)
    assert out.dtype == np.int64
    for ai, bi, oi in zip(a.tolist(), b.tolist(), out.tolist(), strict=True):
        assert oi == srdhm_reference(ai, bi)
        # what the nudge + truncation really is: floor(ab / 2^31 + 1/2), round to nearest, ties toward +inf
        if not ai == bi == INT32_MIN:
            assert oi == (ai * bi + (1 << 30)) >> 31
            assert oi == math.floor(Fraction(ai * bi, 1 << 31) + Fraction(1, 2))


def test_srdhm_ties_and_saturation():
    a = np.array([1 << 30, -(1 << 30), 3 << 29, -(3 << 29), INT32_MIN, INT32_MIN, INT32_MAX, INT32_MIN])
    b = np.array([1, 1, 2, 2, INT32_MIN, INT32_MAX, INT32_MAX, 1])
    # 0.5 → 1, -0.5 → 0, 1.5 → 2, -1.5 → -1 (ties toward +inf); INT32_MIN^2 saturates
    expected = [1, 0, 2, -1, INT32_MAX, -(2**31 - 1), 2**31 - 2, -1]
    assert saturating_rounding_doubling_high_mul(a, b).tolist() == expected
    assert expected == [srdhm_reference(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]


@SETTINGS
@given(INT32, st.integers(0, 31))
def test_rounding_divide_by_pot_rounds_half_away_from_zero(x, exponent):
    assert rounding_divide_by_pot(x, exponent) == exact_round_half_away(Fraction(x, 1 << exponent))


def test_rounding_divide_by_pot_vectorized_exponents():
    x = np.array([5, -5, 6, -6, INT32_MIN, INT32_MAX, -1, 1])
    e = np.array([1, 1, 2, 2, 31, 31, 1, 0])
    expected = [exact_round_half_away(Fraction(xi, 1 << ei)) for xi, ei in zip(x.tolist(), e.tolist(), strict=True)]
    assert rounding_divide_by_pot(x, e).tolist() == expected == [3, -3, 2, -2, -1, 1, -1, 1]


@SETTINGS
@given(
    st.one_of(st.floats(2**-40, 1.0), st.floats(1.0, 2**12), st.sampled_from([0.5, 1.0, 2**-31, 1 - 2**-40])),
    st.data(),
)
def test_multiply_by_quantized_multiplier_error_is_below_one(real, data):
    multiplier, shift = quantize_multiplier(real)
    limit = (1 << 31) >> max(shift, 0)  # precondition: x * 2^left fits in int32
    x = data.draw(st.integers(-limit, limit - 1))
    out = int(multiply_by_quantized_multiplier(x, multiplier, shift))
    # documented bound: |out - x * real| < 1 (out is floor or ceil of x * real)
    assert abs(out - Fraction(x) * Fraction(real)) < 1
    # against the exact quantized product: <= 1/2 (shift >= 0, one rounding) or <= 3/4 (two roundings)
    quantized = Fraction(x * multiplier) * Fraction(2) ** (shift - 31)
    assert abs(out - quantized) <= (Fraction(1, 2) if shift >= 0 else Fraction(3, 4))
    assert abs(out - round_half_away(x * real)) <= 1  # the float reference


def test_multiply_by_quantized_multiplier_checks_its_preconditions():
    m, s = quantize_multiplier(4.0)  # shift 3
    assert s == 3 and int(multiply_by_quantized_multiplier((1 << 28) - 1, m, s)) == ((1 << 28) - 1) * 4
    with pytest.raises(LeanmlError, match="outside int32"):
        multiply_by_quantized_multiplier(1 << 28, m, s)
    with pytest.raises(LeanmlError, match="outside int32"):
        multiply_by_quantized_multiplier(1 << 31, 1 << 30, 0)
    with pytest.raises(LeanmlError, match="shift"):
        multiply_by_quantized_multiplier(1, 1 << 30, -32)
    with pytest.raises(LeanmlError, match="exponent"):
        rounding_divide_by_pot(1, 32)


@SETTINGS
@given(
    hnp.arrays(np.int64, (2, 3, 4), elements=st.integers(-(1 << 24), 1 << 24)),
    st.lists(st.floats(1e-6, 0.9), min_size=3, max_size=3),
    st.sampled_from(sorted(ACTIVATION_RANGES)),
    st.floats(1e-3, 1.0),
    st.integers(-128, 127),
)
def test_requantize_is_per_channel_mbqm_plus_zero_point_clamped(acc, reals, act, out_scale, zp):
    act_min, act_max = activation_range(act, out_scale, zp)
    multipliers, shifts = quantize_multipliers(reals)
    out = requantize(acc, multipliers, shifts, zp, act_min, act_max, axis=1)
    assert out.shape == acc.shape and out.dtype == np.int64
    assert act_min <= out.min() and out.max() <= act_max
    for c in range(3):
        ref = multiply_by_quantized_multiplier(acc[:, c], int(multipliers[c]), int(shifts[c])) + zp
        assert np.array_equal(out[:, c], np.clip(ref, act_min, act_max))
    per_tensor = requantize(acc, multipliers[0], shifts[0], zp, act_min, act_max)
    assert np.array_equal(per_tensor[:, 0], out[:, 0])


def test_activation_ranges():
    assert activation_range("none", 0.05, -10) == (-128, 127)
    assert activation_range("relu", 0.05, -10) == (-10, 127)
    assert activation_range("relu6", 0.05, -10) == (-10, 110)  # 6 / 0.05 = 120 steps above the zero point
    assert activation_range("relu6", 0.01, -128) == (-128, 127)  # 600 steps do not fit: clamp to qmax
    assert activation_range("relu", 0.05, -128) == (-128, 127)
    assert activation_range("relu6", 0.5, -3, bits=4) == (-3, 7)
    with pytest.raises(LeanmlError, match=r"unknown fused activation 'gelu'.*relu6"):
        activation_range("gelu", 0.05, 0)
    with pytest.raises(LeanmlError, match="zero point 300"):
        activation_range("relu", 0.05, 300)


def test_quantize_bias():
    bias = np.array([0.1, -0.1, 0.00025, -0.00025, 1e9, -1e9])
    w_scales = np.array([0.01, 0.04, 0.01, 0.01, 0.01, 0.01])
    out = quantize_bias(bias, 0.05, w_scales)  # bias / 0.0005 (0.002 for the second)
    assert out.dtype == np.int64 and out.tolist() == [200, -50, 1, -1, INT32_MAX, INT32_MIN]
    with pytest.raises(LeanmlError, match="bias scales"):
        quantize_bias(bias, 0.0, w_scales)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bits", [1, 9, 0, 16])
def test_bad_bit_widths_name_the_value_and_the_range(bits):
    with pytest.raises(LeanmlError, match=rf"bit width {bits}: allowed 2\.\.8"):
        quantize_tensor(np.ones(4), bits, symmetric=True)
    with pytest.raises(LeanmlError, match=rf"bit width {bits}"):
        activation_range("relu", 0.1, 0, bits=bits)


def test_bad_granularity_and_ranges_raise_informative_errors():
    x = np.ones((4, 10))
    with pytest.raises(LeanmlError, match=r"group size 3 does not divide the last axis \(10\)"):
        quantize_tensor(x, 4, symmetric=False, group_size=3)
    with pytest.raises(LeanmlError, match="group size 0"):
        quantize_tensor(x, 4, symmetric=False, group_size=0)
    with pytest.raises(LeanmlError, match="channel axis 2 is out of range for a 2-d tensor"):
        quantize_tensor(x, 8, symmetric=True, axis=2)
    with pytest.raises(LeanmlError, match="not both"):
        quantize_tensor(x, 8, symmetric=True, axis=0, group_size=2)
    with pytest.raises(LeanmlError, match="symmetric quantization needs a signed range"):
        quantize_tensor(x, 8, symmetric=True, signed=False)
    with pytest.raises(LeanmlError, match="empty"):
        quantize_tensor(np.ones((0, 3)), 8, symmetric=True)
    with pytest.raises(LeanmlError, match="min > max"):
        qparams_from_minmax(1.0, -1.0, 8, symmetric=False)
    with pytest.raises(LeanmlError, match="finite"):
        qparams_from_minmax(-np.inf, 1.0, 8, symmetric=False)


def test_bad_multipliers_and_requantize_arguments_raise():
    with pytest.raises(LeanmlError, match=r"finite and >= 0, got -0\.5"):
        quantize_multiplier(-0.5)
    with pytest.raises(LeanmlError, match="got nan"):
        quantize_multiplier(float("nan"))
    with pytest.raises(LeanmlError, match="too large"):
        quantize_multiplier(2.0**30)
    with pytest.raises(LeanmlError, match="too large"):
        quantize_multiplier(2.0**30 - 0.25)  # rounds up to 2^30
    with pytest.raises(LeanmlError, match=r"-0\.25"):
        quantize_multipliers([0.5, -0.25])
    acc = np.zeros((2, 3))
    with pytest.raises(LeanmlError, match=r"activation range \[5, -5\] is empty"):
        requantize(acc, 1 << 30, 0, 0, 5, -5)
    with pytest.raises(LeanmlError, match="2 multipliers, 2 shifts for 3 channels"):
        requantize(acc, [1 << 30, 1 << 30], [0, 0], 0, -128, 127, axis=1)


def test_srdhm_matches_its_ref_twin_on_edges_and_random_values() -> None:
    from leanml.quant.primitives import saturating_rounding_doubling_high_mul_ref

    rng = np.random.default_rng(0)
    edges = np.array([0, 1, -1, 1 << 30, -(1 << 30), INT32_MIN, INT32_MAX, -(3 << 29), 3 << 29], dtype=np.int64)
    a = np.concatenate([np.repeat(edges, len(edges)), rng.integers(INT32_MIN, INT32_MAX, 20000, endpoint=True)])
    b = np.concatenate([np.tile(edges, len(edges)), rng.integers(INT32_MIN, INT32_MAX, 20000, endpoint=True)])
    np.testing.assert_array_equal(
        saturating_rounding_doubling_high_mul(a, b), saturating_rounding_doubling_high_mul_ref(a, b)
    )
