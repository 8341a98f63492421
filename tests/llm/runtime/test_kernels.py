"""The LLM runtime's C kernels (leanml/llm/runtime/csrc): every SIMD kernel against its scalar ``_ref`` twin.

Three builds of the same sources: ``native`` (-march=native: AVX-512 VNNI here, or AVX2), ``avx2`` (-march=haswell,
skipped on a CPU without AVX2) and ``scalar`` (no -march: the fallback). In each build:

- activation quantization: SIMD codes, scales and block sums equal the reference exactly;
- quantized GEMV/GEMM in an *exact regime* (power-of-two scales, integer activations with a 127 in every block, so
  every float operation is exact in any order): ref, unroll and SIMD equal bit for bit, with 1 or 3 threads;
- the same on random data: unroll == ref exactly (same float order); SIMD within 1e-6 of sum |w| |x| (bound) of the
  float64 result, as the reference is;
- the float head GEMM and the float16 attention kernels within a stated bound (axpy exactly).

Shapes include odd row counts (tails of the 4-row tiles), k not a multiple of 32 (short last activation block),
k = 576 at g128 (SmolLM2's short last group), g32/g64/g96 and 8-bit codes.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from leanml.errors import LeanmlError
from leanml.llm.runtime import kernels as ck
from leanml.llm.runtime.bindings import BUILD_FLAGS, VARIANTS, load_library
from leanml.profile.timing import LatencyStats

BUILDS = {"native": BUILD_FLAGS, "avx2": ("-O3", "-march=haswell", "-pthread"), "scalar": ("-O3", "-pthread")}
SHAPES = [  # (n, k, bits, group)
    (8, 64, 4, 32), (13, 80, 4, 32), (7, 576, 4, 128), (9, 576, 4, 64), (6, 1536, 4, 128), (5, 200, 4, 96),
    (3, 96, 4, 64), (1, 32, 4, 32), (6, 96, 8, 64), (11, 576, 8, 128), (4, 160, 8, 32), (5, 47, 8, 32),
]  # fmt: skip
BOUND = 1e-6  # |simd - exact| <= BOUND * sum_i |w_i x_i| (measured ~5e-8)


def _has_avx2() -> bool:
    try:
        return "avx2" in open("/proc/cpuinfo").read() and platform.machine() == "x86_64"
    except OSError:
        return False


@pytest.fixture(scope="module", params=list(BUILDS))
def lib(request: Any) -> Any:
    if request.param == "avx2" and not _has_avx2():
        pytest.skip("this CPU has no AVX2")
    return load_library(BUILDS[request.param])


def random_matrix(rng: np.random.Generator, n: int, k: int, bits: int, group: int, exact: bool = False) -> tuple:
    g = -(-k // group)
    codes = rng.integers(0, 2**bits, (n, k)).astype(np.uint8)
    if exact:
        lo = -2 if bits == 4 else -4  # powers of two from 2^lo: sums stay below 2^(24 + lo), exact in float32
        scales = (2.0 ** rng.integers(lo, lo + 3, (n, g))).astype(np.float16)
    else:
        scales = (rng.random((n, g)) * 0.05 + 1e-3).astype(np.float16)
    zeros = rng.integers(0, 2**bits, (n, g)).astype(np.uint8)
    return codes, scales, zeros


def dequantized(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray, group: int) -> np.ndarray:
    k = codes.shape[1]
    s = np.repeat(scales.astype(np.float64), group, 1)[:, :k]
    z = np.repeat(zeros.astype(np.float64), group, 1)[:, :k]
    return (codes - z) * s  # (n, k) float64


def exact_activations(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    x = rng.integers(-20, 21, (m, k)).astype(np.float32)
    x[:, ::32] = rng.choice([-127.0, 127.0], (m, len(range(0, k, 32))))  # every block's max is 127: scale 1
    return x


def test_pack_rows_round_trip_and_units() -> None:
    rng = np.random.default_rng(0)
    for k in (1, 31, 32, 64, 80, 96, 128, 200, 576, 1536):
        codes = rng.integers(0, 16, (3, k)).astype(np.uint8)
        packed = ck.pack_rows(codes, 4)
        assert packed.shape == (3, ck.padded(k) // 2)
        assert np.array_equal(ck.unpack_rows(packed, 4, k), codes)
        assert np.array_equal(ck.unpack_rows(ck.pack_rows(codes, 8), 8, k), codes)
    codes = np.arange(576, dtype=np.uint8).reshape(1, 576) % 16
    p = ck.pack_rows(codes, 4)[0]
    assert p[0] == codes[0, 0] | codes[0, 64] << 4  # a 128-unit: code j and j + 64
    assert p[256] == codes[0, 512] | codes[0, 544] << 4  # the tail 64-unit: code j and j + 32
    assert ck._units(96) == [(0, 64), (64, 32)]
    with pytest.raises(LeanmlError, match="does not fit 4 bits"):
        ck.pack_rows(np.full((1, 4), 16, np.uint8), 4)


def test_file_codes_read_the_packed_file_layout() -> None:
    import torch

    from leanml.quant.code_packing import pack_codes

    rng = np.random.default_rng(1)
    for bits in (2, 3, 4, 5, 8):
        codes = rng.integers(0, 2**bits, (5, 37)).astype(np.uint8)
        stream = pack_codes(torch.from_numpy(codes), bits).numpy()
        assert np.array_equal(ck.file_codes(stream, bits, 37), codes)


def test_activation_quantization_is_identical(lib: Any) -> None:
    rng = np.random.default_rng(2)
    for m, k in [(1, 32), (3, 80), (2, 576), (4, 1536), (2, 7)]:
        x = (rng.standard_normal((m, k)) * rng.choice([1e-3, 1.0, 30.0], (m, 1))).astype(np.float32)
        x[0, : min(k, 32)] = 0.0  # an all-zero block: scale 0, codes 0
        if k >= 64:
            x[-1, 40] = np.nan  # a NaN input: code 0, ignored by the block maximum
            x[-1, 32:40] = np.arange(8) + 0.5  # exact ties after scaling by a scale of 1 (max 127 below)
            x[-1, 41] = 127.0
        ref, simd = ck.quantize(lib, x, "ref"), ck.quantize(lib, x, "simd")
        for a, b in zip(ref, simd, strict=True):
            np.testing.assert_array_equal(a, b)
        q, _, s = ref
        assert np.array_equal(q.sum(1), s.sum(1)) and np.all(np.abs(q) <= 127)
        if k >= 64:
            assert q[-1, 32:40].tolist() == [0, 2, 2, 4, 4, 6, 6, 8]  # round half to even


@pytest.mark.parametrize(("n", "k", "bits", "group"), SHAPES)
def test_gemm_exact_regime_all_variants_identical(lib: Any, n: int, k: int, bits: int, group: int) -> None:
    rng = np.random.default_rng(n * 1000 + k)
    codes, scales, zeros = random_matrix(rng, n, k, bits, group, exact=True)
    mat = ck.CMatrix.from_codes(codes, scales, zeros, bits, group)
    x = exact_activations(rng, 5, k)
    want = x.astype(np.float64) @ dequantized(codes, scales, zeros, group).T  # (5, n)
    biggest = np.repeat(scales.astype(np.float64), group, 1)[:, :k] * 2**bits  # (n, k): bounds codes and zeros
    lo = -2 if bits == 4 else -4
    assert (np.abs(x).astype(np.float64) @ biggest.T).max() < 2 ** (24 + lo)  # every partial sum is exact
    for threads in (1, 3):
        with ck.Pool(lib, threads) as pool:
            for variant in VARIANTS:
                np.testing.assert_array_equal(ck.gemm(pool, mat, x, variant), want.astype(np.float32))
                np.testing.assert_array_equal(ck.gemm(pool, mat, x[2:3], variant), want[2:3].astype(np.float32))


@pytest.mark.parametrize(("n", "k", "bits", "group"), SHAPES)
def test_gemm_random_within_bound(lib: Any, n: int, k: int, bits: int, group: int) -> None:
    rng = np.random.default_rng(n * 7 + k)
    codes, scales, zeros = random_matrix(rng, n, k, bits, group)
    bias = rng.standard_normal(n).astype(np.float32) if n % 2 else None
    mat = ck.CMatrix.from_codes(codes, scales, zeros, bits, group, bias)
    x = (rng.standard_normal((4, k)) * 3).astype(np.float32)
    q, d, _ = ck.quantize(lib, x, "ref")
    xq = q[:, :k] * np.repeat(d.astype(np.float64), 32, 1)[:, :k]  # the quantized activations (4, k)
    w = dequantized(codes, scales, zeros, group)
    want = xq @ w.T + (0.0 if bias is None else bias.astype(np.float64))
    bound = BOUND * (np.abs(xq) @ np.abs(w).T + (0.0 if bias is None else np.abs(bias)))
    with ck.Pool(lib, 2) as pool:
        ref, unroll, simd = (ck.gemm(pool, mat, x, v) for v in ("ref", "unroll", "simd"))
        gemv = np.concatenate([ck.gemm(pool, mat, x[t : t + 1]) for t in range(4)])
    np.testing.assert_array_equal(unroll, ref)  # the unrolled kernel keeps the reference's float order
    assert np.all(np.abs(ref - want) <= bound) and np.all(np.abs(simd - want) <= bound)
    assert np.all(np.abs(gemv - want) <= bound)  # one token at a time (the decode kernel; the GEMM is tiled)


def test_float_head_gemm(lib: Any) -> None:
    rng = np.random.default_rng(3)
    for n, k, m in [(37, 64, 1), (130, 576, 3), (5, 19, 2)]:
        w = rng.standard_normal((n, k)).astype(np.float32)
        x = rng.standard_normal((m, k)).astype(np.float32)
        bound = 1e-6 * (np.abs(x).astype(np.float64) @ np.abs(w).T)
        with ck.Pool(lib, 2) as pool:
            ref, unroll, simd = (ck.fgemm(pool, w, x, v) for v in ("ref", "unroll", "simd"))
        np.testing.assert_array_equal(unroll, ref)
        assert np.all(np.abs(simd - x.astype(np.float64) @ w.T) <= bound)


def test_attention_kernels(lib: Any) -> None:
    rng = np.random.default_rng(4)
    for n, count in [(64, 9), (20, 3), (7, 2), (128, 4)]:
        q = rng.standard_normal(n).astype(np.float32)
        keys = rng.standard_normal((count, n)).astype(np.float16)
        want = keys.astype(np.float64) @ q
        bound = 1e-6 * (np.abs(keys).astype(np.float64) @ np.abs(q))
        assert np.all(np.abs(ck.dot_f16(lib, q, keys, "simd") - want) <= bound)
        assert np.all(np.abs(ck.dot_f16(lib, q, keys, "ref") - want) <= bound)
        p, out = rng.random(count).astype(np.float32), rng.standard_normal((count, n)).astype(np.float32)
        np.testing.assert_array_equal(ck.axpy_f16(lib, p, keys, out, "simd"), ck.axpy_f16(lib, p, keys, out, "ref"))


def test_attention_head(lib: Any) -> None:
    """SIMD attention (vector exp, register accumulators) within 2e-6 of max |v| of the reference (expf)."""
    rng = np.random.default_rng(6)
    for n, hd in [(1, 64), (5, 16), (37, 20), (130, 64), (9, 128), (3, 160)]:
        q = (rng.standard_normal(hd) * 2).astype(np.float32)
        k = rng.standard_normal((n, hd)).astype(np.float16)
        v = rng.standard_normal((n, hd)).astype(np.float16)
        scale = 1.0 / np.sqrt(hd)
        ref, simd = (ck.attend(lib, q, k, v, scale, variant) for variant in ("ref", "simd"))
        s = k.astype(np.float64) @ q * scale
        p = np.exp(s - s.max())
        want = p @ v.astype(np.float64) / p.sum()
        bound = 2e-6 * np.abs(v).max()
        assert np.all(np.abs(ref - want) <= bound) and np.all(np.abs(simd - want) <= bound), (n, hd)


def test_kernel_refusals(lib: Any) -> None:
    codes, scales, zeros = random_matrix(np.random.default_rng(5), 4, 64, 4, 32)
    mat = ck.CMatrix.from_codes(codes, scales, zeros, 4, 32)
    with ck.Pool(lib, 1) as pool:
        bad = ck.CMatrix(mat.codes[:2], mat.scales, mat.zeros, None, 4, 64, 4, 32)  # too few bytes for 4 rows
        with pytest.raises(LeanmlError, match="buffer sizes"):
            ck.gemm(pool, bad, np.ones((1, 64), np.float32))
        odd = ck.CMatrix(mat.codes, mat.scales, mat.zeros, None, 4, 64, 4, 48)
        with pytest.raises(LeanmlError, match="multiple of 32"):
            ck.gemm(pool, odd, np.ones((1, 64), np.float32))
        with pytest.raises(LeanmlError, match="do not match"):
            ck.gemm(pool, mat, np.ones((1, 63), np.float32))
    with pytest.raises(LeanmlError, match="positive integer"):
        ck.Pool(lib, 0)


def test_timing_harnesses_return_raw_samples(lib: Any) -> None:
    codes, scales, zeros = random_matrix(np.random.default_rng(6), 8, 64, 4, 32)
    mat = ck.CMatrix.from_codes(codes, scales, zeros, 4, 32)
    x = np.ones((2, 64), np.float32)
    with ck.Pool(lib, 2) as pool:
        ns = ck.bench_gemm(pool, mat, x, "ref", calls=3, warmup=1, repeats=4)
        assert ns.dtype == np.int64 and ns.shape == (4,) and bool(np.all(ns > 0))
        stats = LatencyStats.from_samples((ns / 3 / 1e6).tolist(), threads=pool.threads)
        assert stats.repeats == 4 and stats.median_ms > 0
        fns = ck.bench_fgemm(pool, np.eye(8, 64, dtype=np.float32), x, "simd", calls=2, warmup=0, repeats=3)
        assert fns.shape == (3,) and bool(np.all(fns > 0))
        assert ck.memory_bandwidth(pool, mbytes=1, repeats=2) > 0
        with pytest.raises(LeanmlError, match="bad timing arguments"):
            ck.bench_gemm(pool, mat, x, calls=0)
        with pytest.raises(LeanmlError, match="refused"):
            ck.bench_fgemm(pool, np.eye(8, 64, dtype=np.float32), x, repeats=0)


_POOL_CHECK = """
import sys
from leanml.llm.runtime import kernels as ck
from leanml.llm.runtime.bindings import load_library
flags = tuple(sys.argv[2:])
with ck.Pool(load_library(flags), int(sys.argv[1])) as pool:
    print(ck.pool_check(pool, runs=20000, max_chunks=6), ck.pool_check(pool, runs=200, max_chunks=5000))
"""


@pytest.mark.parametrize("threads", [2, 3, 8])
@pytest.mark.parametrize("build", ["native", "scalar"])
def test_pool_runs_every_chunk_exactly_once(build: str, threads: int) -> None:
    # back-to-back small regions are where a late worker could claim a chunk of the next region (a doubled chunk
    # there once hung the runtime); more threads than cores makes late workers common. In a child process with a
    # time limit, so that a regression fails here instead of hanging the suite.
    try:
        out = subprocess.run([sys.executable, "-c", _POOL_CHECK, str(threads), *BUILDS[build]], capture_output=True,
                             text=True, timeout=120, check=True).stdout  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"the pool of {threads} threads hung on back-to-back regions")
    assert out.split() == ["0", "0"]
