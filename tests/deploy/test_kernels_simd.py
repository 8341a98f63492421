"""The SIMD kernels (leanml_kernels_simd.h on the x86 backend) against their ``_ref`` twins, bit for bit.

The driver of test_kernels.py is built twice more: ``-march=native`` (the best path this CPU has: AVX-512 VNNI
or AVX2) and ``-mavx2 -mno-avx512f`` (the AVX2 path forced). Each public kernel (``dk_conv2d_s8``, which
dispatches at compile time) runs beside its ``_ref`` twin on the same random inputs, over awkward shapes:
channel counts that are not multiples of the vector widths, one channel, odd sizes, stride 2, padding wider than
the kernel's half, groups, K longer than one im2col chunk, more output channels than one GEMM chunk, extreme
requantization constants. The vector requantization is also checked alone against ``dk_i32_mul_multiplier`` on extremes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leanml.quant import primitives as prim
from leanml.quant.integer_ops import ADD_LEFT_SHIFT
from tests.deploy.test_kernels import EXTREMES, Lib, cpu_flags, driver_source, gcc, rand_i32

VNNI = {"avx512_vnni", "avx512bw"} <= cpu_flags()
SIMD_BUILDS = {  # build -> (flags, the path leanml_kernels.h must select)
    "native": (("-O3", "-march=native"), "x86-avx512vnni" if VNNI else "x86-avx2"),
    "avx2": (("-O3", "-mavx2", "-mfma", "-mno-avx512f"), "x86-avx2"),
}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    if "avx2" not in cpu_flags():
        pytest.skip("this CPU has no AVX2: no x86 SIMD path to test")
    d = tmp_path_factory.mktemp("kernels_simd")
    (d / "driver.c").write_text(driver_source())
    return d


@pytest.fixture(scope="module", params=sorted(SIMD_BUILDS))
def simd(request: pytest.FixtureRequest, build_dir: Path) -> Lib:
    flags, path = SIMD_BUILDS[request.param]
    out = build_dir / f"libdriver_simd_{request.param}.so"
    gcc(build_dir / "driver.c", out, *flags, "-shared", "-fPIC")
    lib = Lib(out)
    assert lib.path == path
    return lib


def requant_arrays(rng: np.random.Generator, n: int, acc_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mult, shift) spreading outputs over the int8 grid; a few zero multipliers and extreme shifts."""
    reals = np.clip(40.0 / (acc_std + 1.0) * np.exp(rng.uniform(-1.5, 1.5, n)), 2.0**-31, 0.9)
    mult, shift = prim.quantize_multipliers(reals)
    mult[rng.random(n) < 0.05] = 0
    return np.ascontiguousarray(mult, np.int32), np.ascontiguousarray(shift, np.int32)


def out_range(rng: np.random.Generator) -> dict[str, int]:
    """Output zero point and clamp range: none, ReLU, ReLU6-like, now and then a single value."""
    zp = int(rng.integers(-100, 101))
    ranges = [(-128, 127), (zp, 127), (zp, min(127, zp + 60)), (-128, -128)]
    lo, hi = ranges[rng.choice(4, p=[0.4, 0.3, 0.25, 0.05])]
    return dict(out_zp=zp, act_min=lo, act_max=hi)


def s8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return np.ascontiguousarray(rng.integers(-128, 128, shape), np.int8)


def both(lib: Lib, name: str, out_key: str, **args: Any) -> None:
    """Run the public kernel and its _ref twin on copies of the same arguments; their outputs must be equal."""
    outs = []
    for kernel in (name, name + "_ref"):
        mine = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}
        lib.kernel(kernel, **mine)
        outs.append(mine[out_key])
    np.testing.assert_array_equal(outs[0], outs[1], err_msg=f"{name} on {lib.path}")


def conv_case(lib: Lib, rng: np.random.Generator, c_in: int, c_out: int, h: int, w: int, k: tuple[int, int],
              s: tuple[int, int], p: tuple[int, int], g: int, extra: tuple[int, int] = (0, 0)) -> None:  # fmt: skip
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1 + extra[0], (w + 2 * p[1] - k[1]) // s[1] + 1 + extra[1]
    mult, shift = requant_arrays(rng, c_out, np.sqrt(k[0] * k[1] * c_in / g) * 74.0 * 74.0)
    bias = rng.integers(-(1 << 16), 1 << 16, c_out).astype(np.int32)
    args = dict(in_=s8(rng, h, w, c_in), in_h=h, in_w=w, in_c=c_in, in_zp=int(rng.integers(-128, 128)), bias=bias,
                w=s8(rng, c_out, k[0], k[1], c_in // g), out_c=c_out, mult=mult, shift=shift,
                out=np.zeros((oh, ow, c_out), np.int8), **out_range(rng))  # fmt: skip
    if k == (1, 1) and s == (1, 1) and p == (0, 0) and g == 1 and rng.random() < 0.5:
        both(lib, "dk_conv1x1_s8", "out", **{**args, "w": args["w"].reshape(c_out, c_in).copy()})
    else:
        both(lib, "dk_conv2d_s8", "out", kh=k[0], kw=k[1], sh=s[0], sw=s[1], ph=p[0], pw=p[1], groups=g, out_h=oh,
             out_w=ow, **args)  # fmt: skip


@pytest.mark.parametrize(
    ("c_in", "c_out", "hw", "k", "s", "p", "g"),
    [
        (1, 32, (28, 28), 3, 1, 1, 1),  # vgg / resnet stems: K = 9
        (16, 16, (9, 11), 3, 1, 1, 1),
        (32, 64, (7, 7), 3, 1, 1, 1),
        (16, 32, (15, 13), 3, 2, 1, 1),  # strided, odd sizes
        (16, 32, (14, 14), 1, 2, 0, 1),  # resnet's strided 1x1 shortcut
        (3, 5, (5, 6), 3, 1, 2, 1),  # padding wider than the kernel's half: whole padded rows
        (17, 33, (6, 5), 3, 1, 1, 1),
        (65, 130, (4, 3), 3, 1, 1, 1),  # 130 output channels: three GEMM chunks
        (300, 7, (3, 4), 3, 1, 1, 1),  # K = 2700: two im2col chunks
        (8, 12, (7, 7), 3, 1, 1, 4),  # grouped
        (6, 6, (6, 7), 3, 2, 1, 6),  # depthwise shape through the general conv
        (4, 6, (8, 9), (1, 3), (1, 2), (0, 1), 2),
        (5, 3, (9, 9), 5, 2, 2, 1),
        (1, 1, (1, 1), 1, 1, 0, 1),
        (7, 2, (3, 3), 3, 1, 0, 1),  # a single output pixel
        (1, 20, (9, 10), 5, 2, 2, 1),  # single-channel input: the stem path, odd kernel width
        (1, 7, (8, 8), (3, 4), (1, 2), (1, 0), 1),  # even kernel width
        (3, 5, (9, 11), 3, 1, 1, 1),  # K = 27: packed weights with a partial 4-byte group
        (3, 8, (96, 96), 3, 2, 0, 1),  # the .tflite models: vww stem (K = 27, the few-channel stem path) ...
        (3, 16, (32, 32), 3, 1, 1, 1),  # ResNet-8's stem (the GEMM)
        (2, 5, (7, 9), (3, 2), (2, 1), (1, 0), 1),  # 2 channels, a 3x2 kernel (kw * c = 4), 5 outputs
        (4, 8, (6, 6), 3, 1, 1, 1),
        (3, 8, (120, 120), 3, 2, 1, 1),  # a stem plane too large for the stage: the GEMM
        (8, 16, (48, 48), 1, 1, 0, 1),  # ... 1x1 convs with few channels (K = 8: a row shorter than one vector)
        (16, 32, (24, 24), 1, 1, 0, 1),
        (128, 256, (3, 3), 1, 1, 0, 1),  # 9 pixels: two blocks of 4 and one of 1
        (256, 256, (1, 3), 1, 1, 0, 1),  # 3 pixels (an in-place chunk): a 3-row broadcast kernel
        (256, 2, (1, 2), 1, 1, 0, 1),  # 2 pixels, 2 channels: one partial vector
        (16, 32, (32, 32), 3, 1, 1, 1),  # ResNet-8 (K = 144 ...
        (64, 64, (8, 8), 3, 1, 1, 1),  # ... 576)
        (128, 70, (4, 5), 3, 1, 1, 1),  # K = 1152: the longest packed K; 70 channels: a partial chunk
        (130, 9, (3, 3), 3, 1, 1, 1),  # K = 1170: past the packed K, dot products
        (1, 64, (49, 10), (10, 4), 2, (4, 1), 1),  # kws's 10x4 stride-2 stem on one channel
    ],
)
def test_conv_matches_ref(simd: Lib, c_in: int, c_out: int, hw: tuple[int, int], k: Any, s: Any, p: Any, g: int):
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    rng = np.random.default_rng(c_in * 1000 + c_out)
    for _ in range(3):
        conv_case(simd, rng, c_in, c_out, *hw, pair(k), pair(s), pair(p), g)


def test_conv_random_shapes(simd: Lib) -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        g = int(rng.choice([1, 1, 1, 2, 3]))
        c_in, c_out = g * int(rng.integers(1, 40)), g * int(rng.integers(1, 45))
        k = (int(rng.choice([1, 2, 3, 5])), int(rng.choice([1, 3])))
        s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        p = (int(rng.integers(0, k[0])), int(rng.integers(0, k[1])))
        h, w = int(rng.integers(k[0], 12)), int(rng.integers(k[1], 12))
        conv_case(simd, rng, c_in, c_out, h, w, k, s, p, g)
    for _ in range(12):  # 1x1 GEMMs: mobilenet-like channel counts and odd ones
        c_in, c_out = int(rng.choice([1, 16, 24, 31, 64, 96, 130])), int(rng.choice([1, 10, 24, 33, 64, 96, 256]))
        conv_case(simd, rng, c_in, c_out, int(rng.integers(1, 9)), int(rng.integers(1, 9)), (1, 1), (1, 1), (0, 0), 1)


def dw_case(lib: Lib, rng: np.random.Generator, c: int, h: int, w: int, k: int, s: int, p: int,
            extra: tuple[int, int] = (0, 0)) -> None:  # fmt: skip
    oh, ow = (h + 2 * p - k) // s + 1 + extra[0], (w + 2 * p - k) // s + 1 + extra[1]
    mult, shift = requant_arrays(rng, c, k * 74.0 * 74.0)
    x = s8(rng, h, w, c)
    geo = dict(in_h=h, in_w=w, c=c, in_zp=int(rng.integers(-128, 128)), w=s8(rng, k, k, c), kh=k, kw=k, sh=s, sw=s,
               ph=p, pw=p, mult=mult, shift=shift, out_h=oh, out_w=ow, **out_range(rng),
               bias=rng.integers(-(1 << 16), 1 << 16, c).astype(np.int32))  # fmt: skip
    both(lib, "dk_depthwise_conv2d_s8", "out", in_=x, out=np.zeros((oh, ow, c), np.int8), **geo)
    buf = np.full(max(h * w, oh * ow) * c, 77, np.int8)
    buf[: h * w * c] = x.reshape(-1)
    both(lib, "dk_depthwise_conv2d_s8_inplace", "buf", buf=buf, tmp=np.zeros(h * w, np.int8), **geo)


@pytest.mark.parametrize(
    ("c", "hw", "k", "s", "p"),
    [
        (16, (28, 28), 3, 1, 1),
        (64, (28, 28), 3, 2, 1),
        (96, (14, 14), 3, 1, 1),
        (96, (14, 14), 3, 2, 1),
        (256, (7, 7), 3, 1, 1),
        (1, (5, 7), 3, 1, 1),
        (17, (9, 8), 3, 2, 0),
        (35, (6, 6), 5, 1, 2),
        (3, (5, 5), 3, 1, 2),  # output plane larger than the input plane
        (20, (11, 11), 7, 2, 3),
        (9, (12, 12), 9, 1, 4),  # 81 taps: the reference path
        (5, (40, 40), 3, 1, 1),  # padded plane larger than the AVX-512 stage: unstaged / reference path
        (3, (50, 50), 3, 2, 1),  # ... larger than the AVX2 stage too
        (8, (48, 48), 3, 1, 1),  # the .tflite models' shapes: MobileNetV1-0.25 (vww, person_detect) at 96x96 ...
        (16, (48, 48), 3, 2, 0),
        (32, (24, 24), 3, 2, 0),
        (128, (6, 6), 3, 2, 0),
        (64, (25, 5), 3, 1, 1),  # ... DS-CNN (kws)
        (2, (5, 700), 3, 1, 1),  # rows too wide for a ring of 3 staged rows: unstaged / reference path
        (11, (3, 97), 3, 2, 1),  # odd channels and widths: the ring's partial blocks
    ],
)
def test_depthwise_matches_ref(simd: Lib, c: int, hw: tuple[int, int], k: int, s: int, p: int) -> None:
    rng = np.random.default_rng(c * 100 + k * 10 + s)
    for _ in range(2):
        dw_case(simd, rng, c, *hw, k, s, p)


@pytest.mark.parametrize("extra", [(1, 0), (0, 1), (1, 1)])
def test_asymmetric_padding_matches_ref(simd: Lib, extra: tuple[int, int]) -> None:
    """Patches at a bottom/right border: top padding ph, yet the outputs read past the far edge (zero point there)."""
    rng = np.random.default_rng(sum(extra) * 7 + extra[0])
    for c, hw, k, s, p in [(16, (9, 9), 3, 1, 0), (64, (15, 15), 3, 2, 0), (24, (8, 7), 3, 1, 1), (8, (6, 6), 5, 1, 1)]:
        dw_case(simd, rng, c, *hw, k, s, p, extra)
    for c_in, c_out, hw, k, s, p in [(1, 16, (9, 9), 3, 1, 0), (16, 32, (8, 8), 3, 1, 0), (8, 12, (9, 9), 3, 2, 0)]:
        conv_case(simd, rng, c_in, c_out, *hw, (k, k), (s, s), (p, p), 1, extra)


@pytest.mark.parametrize(("n_in", "n_out"), [(1, 1), (10, 7), (64, 10), (128, 10), (256, 10), (257, 33), (3000, 70)])
def test_linear_matches_ref(simd: Lib, n_in: int, n_out: int) -> None:
    rng = np.random.default_rng(n_in + n_out)
    for _ in range(3):
        mult, shift = requant_arrays(rng, n_out, np.sqrt(n_in) * 74.0 * 74.0)
        both(simd, "dk_linear_s8", "out", in_=s8(rng, n_in), in_features=n_in, in_zp=int(rng.integers(-128, 128)),
             w=s8(rng, n_out, n_in), bias=rng.integers(-(1 << 16), 1 << 16, n_out).astype(np.int32),
             out_features=n_out, mult=mult, shift=shift, out=np.zeros(n_out, np.int8), **out_range(rng))  # fmt: skip


@pytest.mark.parametrize("n", [1, 7, 16, 100, 12544])
def test_add_matches_ref(simd: Lib, n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(4):
        s_a, s_b, s_out = np.exp(rng.uniform(np.log(0.01), np.log(0.2), 3))
        twice = 2.0 * max(s_a, s_b)
        consts = [*prim.quantize_multiplier(s_a / twice), *prim.quantize_multiplier(s_b / twice)]
        consts += prim.quantize_multiplier(twice / ((1 << ADD_LEFT_SHIFT) * s_out))
        names = ["a_mult", "a_shift", "b_mult", "b_shift", "out_mult", "out_shift"]
        a, b = s8(rng, n), s8(rng, n)
        common = dict(a=a, b=b, n=n, a_zp=int(rng.integers(-128, 128)), b_zp=int(rng.integers(-128, 128)),
                      **dict(zip(names, map(int, consts), strict=True)), **out_range(rng))  # fmt: skip
        both(simd, "dk_add_s8", "out", out=np.zeros(n, np.int8), **common)
        alias = a.copy()  # out may alias an input
        ref = np.zeros(n, np.int8)
        simd.kernel("dk_add_s8_ref", **{**common, "out": ref})
        simd.kernel("dk_add_s8", **{**common, "a": alias, "out": alias})
        np.testing.assert_array_equal(alias, ref)


@pytest.mark.parametrize("name", ["vgg", "resnet", "mobilenetv2"])
def test_generated_models_are_bit_exact(simd: Lib, tmp_path: Path, name: str) -> None:
    """Whole deployed models, their C built for the SIMD path, against the integer reference (every output code)."""
    import torch

    from leanml.deploy.build import CompiledModel, compile_shared
    from leanml.deploy.codegen import generate_c
    from leanml.deploy.ir import lower
    from leanml.deploy.planner import plan_memory
    from leanml.models import build_model
    from tests.deploy.test_engine import integer_model

    imodel = integer_model(build_model(name))
    graph = lower(imodel, (1, 28, 28))
    flags = next(f for f, path in SIMD_BUILDS.values() if path == simd.path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEANML_CACHE", str(tmp_path))
        library = compile_shared(generate_c(graph, plan_memory(graph), "m"), flags)
    out_numel = next(op.out_numel for op in graph.ops if op.output == graph.output)
    model = CompiledModel(library, "m", (1, 28, 28), out_numel, graph.output_perm, graph.output_q.scale,
                          graph.output_q.zero_point)  # fmt: skip
    q = imodel.quantize_input(torch.randn(6, 1, 28, 28) * 1.5)
    np.testing.assert_array_equal(model.run_int8(q), imodel.run_int8(q).reshape(len(q), -1))


MBQM_PROBE = r"""
#include <stdio.h>
#include <string.h>
#include "leanml_kernels.h"
/* dk_v_mul_multiplier against dk_i32_mul_multiplier on the pairs read from stdin (x, mult, shift); prints the
 * mismatches. */
int main(void) {
    int32_t x[DK_SIMD_LANES], m[DK_SIMD_LANES], s[DK_SIMD_LANES], got[DK_SIMD_LANES];
    long bad = 0, n = 0;
    while (scanf("%d %d %d", &x[n % DK_SIMD_LANES], &m[n % DK_SIMD_LANES], &s[n % DK_SIMD_LANES]) == 3) {
        if (++n % DK_SIMD_LANES) continue;
        const dk_rq_t q = dk_rq_load(m, s, DK_SIMD_LANES);
        const dk_vec_t v = dk_v_mul_multiplier(dk_v_load_i32(x, DK_SIMD_LANES), &q);
        memcpy(got, &v, sizeof got);
        for (int i = 0; i < DK_SIMD_LANES; ++i) bad += got[i] != dk_i32_mul_multiplier(x[i], m[i], s[i]);
    }
    printf("%ld %ld\n", n, bad);
    return 0;
}
"""


@pytest.mark.parametrize("build", sorted(SIMD_BUILDS))
def test_vector_mul_multiplier_matches_scalar(build_dir: Path, build: str) -> None:
    src, exe = build_dir / "mul_multiplier.c", build_dir / f"mul_multiplier_{build}"
    src.write_text(MBQM_PROBE)
    gcc(src, exe, *SIMD_BUILDS[build][0])
    rng = np.random.default_rng(11)
    n = 64000
    mult = np.concatenate([np.repeat(EXTREMES, 62), rand_i32(rng, n - 62 * len(EXTREMES))])
    shift = np.concatenate([np.tile(np.arange(prim.MIN_SHIFT, prim.MAX_SHIFT + 1), len(EXTREMES)),
                            rng.integers(prim.MIN_SHIFT, prim.MAX_SHIFT + 1, n - 62 * len(EXTREMES))])  # fmt: skip
    bound = (1 << 31) >> np.maximum(shift, 0)  # precondition: x * 2^left fits in int32
    x = np.where(rng.random(n) < 0.2, rng.choice(EXTREMES, n), rand_i32(rng, n))
    x = np.clip(x, -bound, bound - 1)
    x[:16] = prim.INT32_MIN  # with INT32_MIN multipliers: the saturating case
    mult[:16], shift[:16] = prim.INT32_MIN, 0
    stdin = "\n".join(f"{a} {b} {c}" for a, b, c in zip(x, mult, shift, strict=True))
    proc = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == [str(n), "0"]
