"""The C kernel library (leanml/deploy/csrc/leanml_kernels.h) against the Python integer reference, bit for bit.

The test driver is generated from the headers: one extern wrapper ``t_<kernel>`` per ``static inline void``
kernel of leanml_kernels.h (the public, dispatching kernels) and leanml_kernels_ref.h (their ``_ref`` twins),
same parameters, loops for the scalar primitives, and, under ``DK_TEST_MAIN``, a ``main`` that runs every kernel
on fixed inputs and prints a checksum. It is built with gcc into a shared library loaded with ctypes (arguments
are passed by name, checked against the header's types) and compared with ``leanml.quant.integer_ops.KERNELS``
on random seeded ops: NCHW in Python, HWC (NHWC, batch 1) in C, once per build: ``-O3`` (the portable C path)
and ``-O3 -march=native`` (the SIMD path this CPU supports; test_kernels_simd.py compares it with the
reference on many more shapes). The executable is built once more with ASan + UBSan, for both, and every build
must print the same checksum.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import leanml
from leanml.quant import primitives as prim
from leanml.quant.integer import IntegerModel
from leanml.quant.integer_ops import (
    ADD_LEFT_SHIFT,
    KERNELS,
    QAdd,
    QAvgPool,
    QClamp,
    QConv2d,
    QLinear,
    QMaxPool,
    QuantizeInput,
    TensorQ,
    check_accumulator_bound,
    conv2d_acc,
)

CSRC = Path(leanml.__file__).parent / "deploy" / "csrc"
HEADER = CSRC / "leanml_kernels.h"
REF_HEADER = CSRC / "leanml_kernels_ref.h"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{CSRC}"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
INT32_MIN, INT32_MAX = prim.INT32_MIN, prim.INT32_MAX
PTR_DTYPES = {"int8_t": np.int8, "int32_t": np.int32, "float": np.float32}

SCALAR_WRAPPERS = """
void t_q31_mul_high(const int32_t *a, const int32_t *b, int n, int32_t *out) {
    for (int i = 0; i < n; ++i) out[i] = dk_q31_mul_high(a[i], b[i]);
}
void t_i32_shift_round(const int32_t *x, const int32_t *e, int n, int32_t *out) {
    for (int i = 0; i < n; ++i) out[i] = dk_i32_shift_round(x[i], e[i]);
}
void t_i32_mul_multiplier(const int32_t *x, const int32_t *m, const int32_t *s, int n, int32_t *out) {
    for (int i = 0; i < n; ++i) out[i] = dk_i32_mul_multiplier(x[i], m[i], s[i]);
}
void t_requant(const int32_t *acc, const int32_t *m, const int32_t *s, int n, int32_t zp, int32_t lo, int32_t hi,
               int8_t *out) {
    for (int i = 0; i < n; ++i) out[i] = dk_i32_requant(acc[i], m[i], s[i], zp, lo, hi);
}
"""

MAIN = r"""
const char *t_path(void) { return DK_KERNELS_PATH; }
#ifdef DK_TEST_MAIN
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static uint32_t lcg = 12345u, fnv = 2166136261u;
static int32_t rnd(int32_t lo, int32_t hi) {
    lcg = lcg * 1664525u + 1013904223u;
    return lo + (int32_t)((lcg >> 8) % (uint32_t)(hi - lo + 1));
}
static int8_t *s8(int n, int lo, int hi) {  /* exact-size heap buffers: ASan sees any overrun */
    int8_t *p = malloc((size_t)n);
    for (int i = 0; i < n; ++i) p[i] = (int8_t)rnd(lo, hi);
    return p;
}
static int32_t *i32(int n, int32_t lo, int32_t hi) {
    int32_t *p = malloc((size_t)n * sizeof *p);
    for (int i = 0; i < n; ++i) p[i] = rnd(lo, hi);
    return p;
}
static void mix(const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; ++i) fnv = (fnv ^ b[i]) * 16777619u;
}
static void conv(int h, int w, int ci, int co, int k, int s, int p, int g) {
    const int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1, n = oh * ow * co;
    int8_t *x = s8(h * w * ci, -128, 127), *wt = s8(co * k * k * (ci / g), -127, 127), *y = malloc((size_t)n);
    int32_t *b = i32(co, -3000, 3000), *m = i32(co, 1 << 30, INT32_MAX), *sh = i32(co, -12, -7);
    if (k == 1 && s == 1 && p == 0 && g == 1) {
        dk_conv1x1_s8(x, h, w, ci, rnd(-128, 127), wt, b, co, m, sh, rnd(-50, 50), -128, 127, y);
    } else {
        dk_conv2d_s8(x, h, w, ci, rnd(-128, 127), wt, b, co, k, k, s, s, p, p, g, m, sh, rnd(-50, 50), -128, 127, y,
                     oh, ow);
    }
    mix(y, (size_t)n);
    free(x); free(wt); free(y); free(b); free(m); free(sh);
}
static int dw(int h, int w, int c, int k, int s, int p) {
    const int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1, n = oh * ow * c;
    const int big = (oh * ow > h * w ? oh * ow : h * w) * c, zp = rnd(-128, 127), ozp = rnd(-50, 50);
    int8_t *x = s8(h * w * c, -128, 127), *wt = s8(k * k * c, -127, 127), *y = malloc((size_t)n);
    int8_t *buf = malloc((size_t)big), *tmp = malloc((size_t)(h * w));
    int32_t *b = i32(c, -3000, 3000), *m = i32(c, 1 << 30, INT32_MAX), *sh = i32(c, -10, -6);
    memcpy(buf, x, (size_t)(h * w * c));
    dk_depthwise_conv2d_s8(x, h, w, c, zp, wt, b, k, k, s, s, p, p, m, sh, ozp, -128, 127, y, oh, ow);
    dk_depthwise_conv2d_s8_inplace(buf, h, w, c, zp, wt, b, k, k, s, s, p, p, m, sh, ozp, -128, 127, oh, ow, tmp);
    const int bad = memcmp(y, buf, (size_t)n) != 0;
    mix(y, (size_t)n);
    free(x); free(wt); free(y); free(buf); free(tmp); free(b); free(m); free(sh);
    return bad;
}
int main(void) {
    int bad = 0;
    conv(7, 7, 3, 4, 3, 1, 0, 1);
    conv(9, 9, 6, 8, 3, 2, 1, 2);
    conv(5, 6, 40, 37, 1, 1, 0, 1);
    bad |= dw(9, 9, 35, 5, 2, 2);
    bad |= dw(5, 5, 3, 3, 1, 2); /* output plane larger than the input plane */
    bad |= dw(8, 8, 4, 7, 1, 3);
    int8_t *x = s8(100, -128, 127), *wt = s8(12 * 100, -127, 127), *y = malloc(12);
    int32_t *b = i32(12, -3000, 3000), *m = i32(12, 1 << 30, INT32_MAX), *sh = i32(12, -12, -8);
    dk_linear_s8(x, 100, 3, wt, b, 12, m, sh, -5, -5, 127, y);
    mix(y, 12);
    int8_t *a = s8(200, -128, 127), *c = s8(200, -128, 127), *o = malloc(200);
    dk_add_s8(a, c, 200, 7, 1518500250, -1, -20, 1073741824, 0, 1789569707, -19, 3, -128, 127, o);
    mix(o, 200);
    dk_clamp_s8(o, 200, -20, 90);
    mix(o, 200);
    int8_t *img = s8(9 * 9 * 5, -128, 127), *mp = malloc(5 * 5 * 5), *ap = malloc(4 * 4 * 5), *gp = malloc(5);
    dk_maxpool_s8(img, 9, 9, 5, 3, 3, 2, 2, 1, 1, mp, 5, 5);
    dk_avgpool_s8(img, 9, 9, 5, 2, 2, 2, 2, ap, 4, 4);
    dk_global_avgpool_s8(img, 9, 9, 5, gp);
    mix(mp, 125); mix(ap, 80); mix(gp, 5);
    float f[64], g[64];
    int8_t q[64];
    for (int i = 0; i < 64; ++i) f[i] = (float)rnd(-100000, 100000) / 997.0f;
    f[0] = 3e38f; f[0] *= 10.0f; f[1] = -f[0]; f[2] = 0.49999997f; f[3] = -2.5f;
    dk_quantize_f32(f, 64, 0.05f, -3, q);
    dk_dequantize_s8(q, 64, 0.05f, -3, g);
    mix(q, 64); mix(g, sizeof g);
    const int32_t ext[6] = {INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX};
    for (int i = 0; i < 6; ++i) {
        for (int j = 0; j < 6; ++j) {
            const int32_t r[3] = {dk_q31_mul_high(ext[i], ext[j]), dk_i32_shift_round(ext[i], 5 * j + 1),
                                  dk_i32_mul_multiplier(ext[i], ext[j], -j)};
            mix(r, sizeof r);
        }
    }
    free(x); free(wt); free(y); free(b); free(m); free(sh); free(a); free(c); free(o);
    free(img); free(mp); free(ap); free(gp);
    printf("checksum %08x\n", (unsigned)fnv);
    return bad;
}
#endif
"""


def kernel_signatures() -> dict[str, list[tuple[str, str]]]:
    """Every ``static inline void dk_*`` kernel of the public and reference headers: name → [(C type, name)]."""
    sigs = {}
    text = HEADER.read_text() + REF_HEADER.read_text()
    for name, params in re.findall(r"static inline void (dk_\w+)\(([^)]*)\)", text):
        parsed = [re.fullmatch(r"(.*?)\s*(\w+)", " ".join(p.split())) for p in params.split(",")]
        sigs[name] = [(m.group(1), m.group(2)) for m in parsed if m is not None]
    return sigs


def driver_source() -> str:
    wrappers = [
        f"void t_{name}({', '.join(f'{t} {n}' for t, n in params)}) {{ {name}({', '.join(n for _, n in params)}); }}"
        for name, params in kernel_signatures().items()
    ]
    return '#include "leanml_kernels.h"\n' + "\n".join(wrappers) + SCALAR_WRAPPERS + MAIN


def gcc(src: Path, out: Path, *flags: str) -> None:
    proc = subprocess.run(["gcc", *CFLAGS, *flags, str(src), "-o", str(out)], capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"gcc {' '.join(flags)} failed:\n{proc.stderr}")


class Lib:
    """The compiled driver: ``lib.kernel("dk_conv2d_s8", in_=x, in_h=...)`` passes arguments by header name."""

    def __init__(self, path: Path) -> None:
        self.dll = ctypes.CDLL(str(path))
        self.sigs = kernel_signatures()
        self.dll.t_path.restype = ctypes.c_char_p
        self.path = self.dll.t_path().decode()  # the kernels' path: "ref", "x86-avx2", "x86-avx512vnni"

    def kernel(self, name: str, **kwargs: Any) -> None:
        args = []
        alive = []  # the arrays behind the pointers: a temporary (i8(x)) popped from kwargs would be freed mid-call
        for ctype, pname in self.sigs[name]:
            value = kwargs.pop(pname, kwargs.pop(pname + "_", None))
            assert value is not None, f"{name}: missing argument {pname}"
            if "*" in ctype:
                base = ctype.replace("const", "").replace("*", "").strip()
                assert isinstance(value, np.ndarray) and value.dtype == PTR_DTYPES[base] and value.flags.c_contiguous
                args.append(ctypes.c_void_p(value.ctypes.data))
                alive.append(value)
            else:
                args.append(ctypes.c_float(value) if ctype == "float" else ctypes.c_int(int(value)))
        assert not kwargs, f"{name}: unknown arguments {sorted(kwargs)}"
        getattr(self.dll, f"t_{name}")(*args)

    def scalar(self, name: str, *arrays: np.ndarray, extra: tuple[int, ...] = (), out_dtype: Any = np.int32) -> Any:
        ins = [np.ascontiguousarray(a, dtype=np.int32) for a in arrays]
        out = np.zeros(len(ins[0]), dtype=out_dtype)
        ptrs = [ctypes.c_void_p(a.ctypes.data) for a in ins]
        getattr(self.dll, f"t_{name}")(
            *ptrs, ctypes.c_int(len(out)), *map(ctypes.c_int, extra), ctypes.c_void_p(out.ctypes.data)
        )
        return out.astype(np.int64)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("kernels")
    (d / "driver.c").write_text(driver_source())
    return d


def cpu_flags() -> set[str]:
    """The x86 feature flags of this CPU (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


# The builds the bit-exact tests run on: the plain C path, and whatever SIMD path -march=native selects.
BUILDS = {"O3": ("-O3",), "native": ("-O3", "-march=native")}


@pytest.fixture(scope="module", params=sorted(BUILDS))
def lib(request: pytest.FixtureRequest, build_dir: Path) -> Lib:
    out = build_dir / f"libdriver_{request.param}.so"
    gcc(build_dir / "driver.c", out, *BUILDS[request.param], "-shared", "-fPIC")
    lib = Lib(out)
    assert request.param == "native" or lib.path == "ref"
    return lib


# ---------------------------------------------------------------- random ops and layouts


def hwc(x: np.ndarray) -> np.ndarray:
    """(1, C, H, W) int values → (H, W, C) int8."""
    return np.ascontiguousarray(x[0].transpose(1, 2, 0), dtype=np.int8)


def i8(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int8)


def i32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


def act_range(rng: np.random.Generator, zp: int) -> tuple[int, int]:
    kind = int(rng.integers(3))  # none, relu, relu6-like
    return [(-128, 127), (zp, 127), (zp, min(127, zp + int(rng.integers(20, 120))))][kind]


def requant_consts(rng: np.random.Generator, acc: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel multipliers of random reals in (1e-4, 0.9), scaled so outputs spread over the int8 grid."""
    std = acc.std(axis=tuple(i for i in range(acc.ndim) if i != axis)) + 1.0
    reals = np.clip(40.0 / std * np.exp(rng.uniform(-1.0, 1.0, std.shape)), 1e-4, 0.9)
    return prim.quantize_multipliers(reals)


def in_out_q(rng: np.random.Generator) -> tuple[TensorQ, TensorQ, int, int]:
    out_zp = int(rng.integers(-100, 101))
    return TensorQ(0.05, int(rng.integers(-128, 128))), TensorQ(0.1, out_zp), *act_range(rng, out_zp)


def make_conv(rng: np.random.Generator, c_in: int, c_out: int, hw: tuple[int, int], k: Any, s: Any, p: Any, g: int):
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    (kh, kw), stride, pad = pair(k), pair(s), pair(p)
    weight = rng.integers(-127, 128, (c_out, c_in // g, kh, kw))
    bias = rng.integers(-(1 << 14), 1 << 14, c_out)
    check_accumulator_bound(weight, bias, "conv")
    in_q, out_q, lo, hi = in_out_q(rng)
    zeros, ones = np.zeros(c_out, dtype=np.int64), np.ones(c_out, np.float32)
    op = QConv2d("c", "x", "y", weight, bias, stride, pad, g, in_q, out_q, ones, zeros, zeros, lo, hi)
    x = rng.integers(-128, 128, (1, c_in, *hw))
    op.multiplier, op.shift = requant_consts(rng, conv2d_acc(op, x), axis=1)
    ref = KERNELS[QConv2d](op, {"x": x})
    assert len(np.unique(ref)) > 4, "degenerate test case: outputs barely vary"
    return op, x, ref


def conv_args(op: QConv2d, x: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    return dict(in_=hwc(x), in_h=x.shape[2], in_w=x.shape[3], in_zp=op.in_q.zero_point, bias=i32(op.bias),
                mult=i32(op.multiplier), shift=i32(op.shift), out_zp=op.out_q.zero_point, act_min=op.act_min,
                act_max=op.act_max, out=np.zeros(ref.shape[1:], np.int8).transpose(1, 2, 0).copy())  # fmt: skip


# ---------------------------------------------------------------- scalar primitives

EXTREMES = np.array([INT32_MIN, INT32_MIN + 1, -(1 << 30), -65537, -1, 0, 1, 3, 1 << 30, INT32_MAX - 1, INT32_MAX])


def rand_i32(rng: np.random.Generator, n: int) -> np.ndarray:
    big = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    small = rng.integers(-70000, 70000, n)
    return np.where(rng.random(n) < 0.5, big, small)


def test_q31_mul_high_and_i32_shift_round(lib: Lib) -> None:
    rng = np.random.default_rng(1)
    a = np.concatenate([np.repeat(EXTREMES, len(EXTREMES)), rand_i32(rng, 5000)])
    b = np.concatenate([np.tile(EXTREMES, len(EXTREMES)), rand_i32(rng, 5000)])
    np.testing.assert_array_equal(lib.scalar("q31_mul_high", a, b), prim.saturating_rounding_doubling_high_mul(a, b))
    x = np.concatenate([np.repeat(EXTREMES, 32), rand_i32(rng, 4000)])
    e = np.concatenate([np.tile(np.arange(32), len(EXTREMES)), rng.integers(0, 32, 4000)])
    np.testing.assert_array_equal(lib.scalar("i32_shift_round", x, e), prim.rounding_divide_by_pot(x, e))


def test_i32_mul_multiplier_and_requant(lib: Lib) -> None:
    rng = np.random.default_rng(2)
    n = 6000
    reals = 2.0 ** rng.uniform(-40, 12, n)
    mult, shift = prim.quantize_multipliers(reals)
    # a third: arbitrary int32 multipliers (incl. extremes) with any admissible shift
    arbitrary = rng.random(n) < 0.33
    mult = np.where(arbitrary, np.concatenate([EXTREMES, rand_i32(rng, n - len(EXTREMES))]), mult)
    shift = np.where(arbitrary, rng.integers(prim.MIN_SHIFT, prim.MAX_SHIFT + 1, n), shift)
    bound = (1 << 31) >> np.maximum(shift, 0)  # precondition: x * 2^left fits in int32
    x = np.clip(rand_i32(rng, n), -bound, bound - 1)
    x[: len(EXTREMES)] = np.clip(EXTREMES, -bound[: len(EXTREMES)], bound[: len(EXTREMES)] - 1)
    ref = prim.multiply_by_quantized_multiplier(x, mult, shift)
    np.testing.assert_array_equal(lib.scalar("i32_mul_multiplier", x, mult, shift), ref)
    m, s = prim.quantize_multipliers(rng.uniform(1e-4, 0.9, n))
    acc = rng.integers(-(1 << 20), 1 << 20, n)
    for zp, lo, hi in [(0, -128, 127), (-7, -7, 127), (20, 20, 90), (-128, -128, -128)]:
        got = lib.scalar("requant", acc, m, s, extra=(zp, lo, hi), out_dtype=np.int8)
        np.testing.assert_array_equal(got, prim.requantize(acc, m, s, zp, lo, hi))


def test_quantize_dequantize(lib: Lib) -> None:
    rng = np.random.default_rng(3)
    special = [np.inf, -np.inf, 3.4e38, -3.4e38, 1e30, 0.49999997, -0.49999997, 0.5, -0.5, 1.5, -2.5, 0.0, -0.0, 1e-45]
    for scale in [0.5, 0.0123, 1 / 3, 0.25, 7.0]:
        ties = (rng.integers(-300, 300, 200) + 0.5) * scale
        x = np.concatenate([special, ties, rng.normal(0, 60 * scale, 2000)]).astype(np.float32)
        for zp in [-128, -5, 0, 37, 127]:
            out = np.zeros(len(x), np.int8)
            lib.kernel("dk_quantize_f32", x=x, n=len(x), scale=scale, zp=zp, out=out)
            model = IntegerModel([QuantizeInput("q", "x", TensorQ(scale, zp))], "x", TensorQ(scale, zp))
            np.testing.assert_array_equal(out, model.quantize_input(x))
            with np.errstate(over="ignore"):  # 3.4e38 / 0.0123 overflows to inf, which saturates
                np.testing.assert_array_equal(out, prim.quantize(x, scale, zp, -128, 127))
            back = np.zeros(len(x), np.float32)
            lib.kernel("dk_dequantize_s8", q=out, n=len(x), scale=scale, zp=zp, out=back)
            np.testing.assert_array_equal(back, model.dequantize_output(out.astype(np.int64)).numpy())


# ---------------------------------------------------------------- conv, linear


@pytest.mark.parametrize(
    ("c_in", "c_out", "hw", "k", "s", "p", "g"),
    [
        (3, 8, (9, 9), 3, 1, 0, 1),
        (4, 6, (8, 7), 3, 1, 1, 1),
        (5, 7, (9, 10), 3, 2, 1, 1),
        (6, 4, (8, 8), 3, 2, 0, 1),
        (4, 6, (7, 7), 3, 1, 1, 2),
        (8, 4, (9, 9), 3, 2, 1, 2),
        (3, 5, (8, 9), (1, 3), (1, 2), (0, 1), 1),
        (2, 3, (5, 5), 3, 1, 2, 1),
        (6, 6, (6, 6), 3, 1, 1, 6),
    ],
)
def test_conv2d(lib: Lib, c_in: int, c_out: int, hw: tuple[int, int], k: Any, s: Any, p: Any, g: int) -> None:
    op, x, ref = make_conv(np.random.default_rng(10 + c_in * c_out), c_in, c_out, hw, k, s, p, g)
    args = conv_args(op, x, ref)
    (sh, sw), (ph, pw) = op.stride, op.padding
    lib.kernel("dk_conv2d_s8", in_c=c_in, w=i8(op.weight.transpose(0, 2, 3, 1)), out_c=c_out, kh=op.weight.shape[2],
               kw=op.weight.shape[3], sh=sh, sw=sw, ph=ph, pw=pw, groups=g, out_h=ref.shape[2], out_w=ref.shape[3],
               **args)  # fmt: skip
    np.testing.assert_array_equal(args["out"], hwc(ref))


@pytest.mark.parametrize(("c_in", "c_out", "hw"), [(16, 40, (5, 6)), (3, 8, (4, 4)), (64, 33, (3, 3))])
def test_conv1x1(lib: Lib, c_in: int, c_out: int, hw: tuple[int, int]) -> None:
    op, x, ref = make_conv(np.random.default_rng(c_in + c_out), c_in, c_out, hw, 1, 1, 0, 1)
    args = conv_args(op, x, ref)
    lib.kernel("dk_conv1x1_s8", in_c=c_in, w=i8(op.weight[:, :, 0, 0]), out_c=c_out, **args)
    np.testing.assert_array_equal(args["out"], hwc(ref))


@pytest.mark.parametrize(
    ("c", "hw", "k", "s", "p"),
    [
        (5, 9, 3, 1, 1),
        (40, 8, 3, 2, 1),
        (8, 6, 3, 1, 0),
        (6, 11, 5, 1, 2),
        (7, 12, 5, 2, 2),
        (4, 13, 7, 1, 3),
        (3, 14, 7, 2, 3),
        (3, 5, 3, 1, 2),  # output plane (7x7) larger than the input plane (5x5)
    ],
)
def test_depthwise(lib: Lib, c: int, hw: int, k: int, s: int, p: int) -> None:
    op, x, ref = make_conv(np.random.default_rng(100 + c * k + s), c, c, (hw, hw), k, s, p, c)
    args = conv_args(op, x, ref)
    w = i8(op.weight[:, 0].transpose(1, 2, 0))  # (kh, kw, C)
    out_h, out_w = ref.shape[2:]
    geometry = dict(c=c, w=w, kh=k, kw=k, sh=s, sw=s, ph=p, pw=p, out_h=out_h, out_w=out_w)
    lib.kernel("dk_depthwise_conv2d_s8", **geometry, **args)
    np.testing.assert_array_equal(args["out"], hwc(ref))
    # in place: the output overwrites the input buffer; tmp holds one input plane
    buf = np.full(max(hw * hw, out_h * out_w) * c, 99, np.int8)
    buf[: hw * hw * c] = args.pop("in_").reshape(-1)
    args.pop("out")
    lib.kernel("dk_depthwise_conv2d_s8_inplace", buf=buf, tmp=np.zeros(hw * hw, np.int8), **geometry, **args)
    np.testing.assert_array_equal(buf[: out_h * out_w * c].reshape(out_h, out_w, c), hwc(ref))


@pytest.mark.parametrize(("n_in", "n_out"), [(10, 7), (100, 33), (257, 10)])
def test_linear(lib: Lib, n_in: int, n_out: int) -> None:
    rng = np.random.default_rng(n_in)
    weight, bias = rng.integers(-127, 128, (n_out, n_in)), rng.integers(-(1 << 14), 1 << 14, n_out)
    check_accumulator_bound(weight, bias, "fc")
    in_q, out_q, lo, hi = in_out_q(rng)
    x = rng.integers(-128, 128, (1, n_in))
    mult, shift = requant_consts(rng, (x - in_q.zero_point) @ weight.T + bias, axis=1)
    op = QLinear("fc", "x", "y", weight, bias, in_q, out_q, np.ones(n_out, np.float32), mult, shift, lo, hi)
    ref = KERNELS[QLinear](op, {"x": x})[0]
    out = np.zeros(n_out, np.int8)
    lib.kernel("dk_linear_s8", in_=i8(x[0]), in_features=n_in, in_zp=in_q.zero_point, w=i8(weight), bias=i32(bias),
               out_features=n_out, mult=i32(mult), shift=i32(shift), out_zp=out_q.zero_point, act_min=lo, act_max=hi,
               out=out)  # fmt: skip
    np.testing.assert_array_equal(out, ref)


# ---------------------------------------------------------------- add, pooling, clamp


@pytest.mark.parametrize("seed", range(6))
def test_add(lib: Lib, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s_a, s_b, s_out = np.exp(rng.uniform(np.log(0.01), np.log(0.2), 3))
    if seed == 0:
        s_b = s_a
    a_q, b_q = TensorQ(float(s_a), int(rng.integers(-128, 128))), TensorQ(float(s_b), int(rng.integers(-128, 128)))
    out_q = TensorQ(float(s_out), int(rng.integers(-100, 101)))
    twice = 2.0 * max(s_a, s_b)
    consts = [*prim.quantize_multiplier(s_a / twice), *prim.quantize_multiplier(s_b / twice)]
    consts += prim.quantize_multiplier(twice / ((1 << ADD_LEFT_SHIFT) * s_out))
    lo, hi = act_range(rng, out_q.zero_point)
    op = QAdd("add", ("a", "b"), "y", a_q, b_q, out_q, *consts, lo, hi)  # type: ignore[arg-type]
    a, b = rng.integers(-128, 128, (2, 1, 7, 9, 11))
    ref = KERNELS[QAdd](op, {"a": a, "b": b})
    out = np.zeros(a.size, np.int8)
    names = ["a_mult", "a_shift", "b_mult", "b_shift", "out_mult", "out_shift"]
    requant = dict(zip(names, consts, strict=True))
    lib.kernel("dk_add_s8", a=hwc(a).reshape(-1), b=hwc(b).reshape(-1), n=a.size, a_zp=a_q.zero_point,
               b_zp=b_q.zero_point, out_zp=out_q.zero_point, act_min=lo, act_max=hi, out=out, **requant)  # fmt: skip
    np.testing.assert_array_equal(out.reshape(9, 11, 7), hwc(ref))


@pytest.mark.parametrize(
    ("c", "hw", "k", "s", "p"),
    [(5, (8, 8), 2, 2, 0), (6, (9, 9), 3, 2, 1), (3, (7, 8), 3, 2, 1), (4, (8, 8), (2, 3), (1, 2), (1, 1))],
)
def test_maxpool(lib: Lib, c: int, hw: tuple[int, int], k: Any, s: Any, p: Any) -> None:
    rng = np.random.default_rng(c)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    op = QMaxPool("mp", "x", "y", pair(k), pair(s), pair(p))
    x = rng.integers(-128, 128, (1, c, *hw))
    x[0, 0] = -128  # a channel at the minimum: padding must not win
    ref = KERNELS[QMaxPool](op, {"x": x})
    out = np.zeros(ref.shape[1:], np.int8).transpose(1, 2, 0).copy()
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    lib.kernel("dk_maxpool_s8", in_=hwc(x), in_h=hw[0], in_w=hw[1], c=c, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
               out=out, out_h=ref.shape[2], out_w=ref.shape[3])  # fmt: skip
    np.testing.assert_array_equal(out, hwc(ref))


@pytest.mark.parametrize(
    ("c", "hw", "k", "s"),
    [(5, (8, 8), (2, 2), (2, 2)), (4, (9, 9), (3, 3), (2, 2)), (3, (7, 6), (2, 3), (1, 3)), (6, (7, 7), None, None),
     (40, (5, 4), None, None)],
)  # fmt: skip
def test_avgpool(lib: Lib, c: int, hw: tuple[int, int], k: Any, s: Any) -> None:
    rng = np.random.default_rng(c)
    x = rng.integers(-128, 128, (1, c, *hw))
    x[0, 0] = rng.choice([-128, -127, 126, 127], hw)  # sums near the ends of the range
    ref = KERNELS[QAvgPool](QAvgPool("ap", "x", "y", k, s), {"x": x})
    out = np.zeros(ref.shape[1:], np.int8).transpose(1, 2, 0).copy()
    if k is None:
        lib.kernel("dk_global_avgpool_s8", in_=hwc(x), in_h=hw[0], in_w=hw[1], c=c, out=out)
        again = np.zeros_like(out)
        lib.kernel("dk_avgpool_s8", in_=hwc(x), in_h=hw[0], in_w=hw[1], c=c, kh=hw[0], kw=hw[1], sh=1, sw=1,
                   out=again, out_h=1, out_w=1)  # fmt: skip
        np.testing.assert_array_equal(again, out)
    else:
        lib.kernel("dk_avgpool_s8", in_=hwc(x), in_h=hw[0], in_w=hw[1], c=c, kh=k[0], kw=k[1], sh=s[0], sw=s[1],
                   out=out, out_h=ref.shape[2], out_w=ref.shape[3])  # fmt: skip
    np.testing.assert_array_equal(out, hwc(ref))


def test_clamp(lib: Lib) -> None:
    rng = np.random.default_rng(5)
    for lo, hi in [(-128, 127), (-3, 127), (-3, 57), (10, 10)]:
        x = rng.integers(-128, 128, (1, 300))
        ref = KERNELS[QClamp](QClamp("r", "x", "y", lo, hi), {"x": x})
        buf = i8(x[0])
        lib.kernel("dk_clamp_s8", buf=buf, n=300, lo=lo, hi=hi)
        np.testing.assert_array_equal(buf, ref[0])


# ---------------------------------------------------------------- sanitizers


def run_exe(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    return subprocess.run([str(path)], capture_output=True, text=True, env=env, timeout=60)


def test_sanitizers(build_dir: Path) -> None:
    probe = build_dir / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    compiled = subprocess.run(["gcc", *SANITIZE, str(probe), "-o", str(build_dir / "probe")], capture_output=True)
    if compiled.returncode or run_exe(build_dir / "probe").returncode:
        pytest.skip("gcc here cannot build or run -fsanitize=address,undefined executables")
    outputs = []
    for build, flags in [("plain", ()), ("native", BUILDS["native"])]:  # -O2 (CFLAGS); -O3 -march=native (SIMD)
        gcc(build_dir / "driver.c", build_dir / build, "-DDK_TEST_MAIN", *flags)
        gcc(build_dir / "driver.c", build_dir / f"{build}_sanitized", "-DDK_TEST_MAIN", *flags, *SANITIZE)
        plain, sanitized = run_exe(build_dir / build), run_exe(build_dir / f"{build}_sanitized")
        assert plain.returncode == 0, build + ": " + plain.stdout + plain.stderr
        assert sanitized.returncode == 0, build + ": " + sanitized.stdout + sanitized.stderr
        assert sanitized.stderr == "", build
        assert plain.stdout.startswith("checksum ")
        outputs += [plain.stdout, sanitized.stdout]
    assert len(set(outputs)) == 1, outputs  # the SIMD build computes the same bits as the plain C one
