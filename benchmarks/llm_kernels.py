"""LLM runtime kernels, the optimization ladder (course Lab 5): reference → unrolled → multithreaded → SIMD → all.

The W4A8 GEMV (decode) and GEMM (prefill, 128 tokens) of leanml's C runtime on SmolLM2-135M's shapes, random codes
(timing does not depend on the values), group size 128 (576 = 4 x 128 + 64: the short last group), plus the int8
lm_head GEMV. Rungs, as in TinyChatEngine's lab (each optimization alone on top of the reference, then all):

    reference        lmq_qrows_ref      plain scalar C, one output row at a time, 1 thread
    unrolled         lmq_qrows_unroll   4 rows per pass, 4 codes per step, integer sums per unit, 1 thread
    multithreaded    lmq_qrows_ref      the reference kernel, rows split over the persistent pool's T threads
    SIMD             lmq_qrows_simd     AVX-512 VNNI (or AVX2), 4-row tiles, 1 thread
    all              lmq_qrows_simd     SIMD on T threads

Activations are quantized once outside the timing (the kernel alone). The C harness times batches of kernel calls
(~1 ms each, so ctypes' ~2 us per call does not count) after a warm-up batch and returns the raw samples; leanml's
timing module (`LatencyStats.from_samples`) gives the median per kernel call and the p10-p90 spread. The 1-minute
load average before and after is recorded: on a busy machine the multithreaded rungs compete with other jobs for the
cores.

Usage: .venv/bin/python benchmarks/llm_kernels.py [--threads 2] [--out benchmarks/results/llm_kernels.md]
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np
from _rows import log, write_text

from leanml.llm.runtime import kernels as ck
from leanml.llm.runtime.bindings import BUILD_FLAGS, load_library
from leanml.profile.machine import load_averages, machine_summary
from leanml.profile.timing import LatencyStats

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [  # (label, n, k, m, bits, group)
    ("q_proj / o_proj GEMV", 576, 576, 1, 4, 128),
    ("k_proj / v_proj GEMV", 192, 576, 1, 4, 128),
    ("gate / up GEMV", 1536, 576, 1, 4, 128),
    ("down GEMV", 576, 1536, 1, 4, 128),
    ("lm_head int8 GEMV", 49152, 576, 1, 8, 128),
    ("gate / up GEMM, 128 tokens", 1536, 576, 128, 4, 128),
    ("down GEMM, 128 tokens", 576, 1536, 128, 4, 128),
]
RUNGS = [("reference", "ref", False), ("unrolled", "unroll", False), ("multithreaded", "ref", True),
         ("SIMD", "simd", False), ("all (SIMD + threads)", "simd", True)]  # fmt: skip


def matrix(rng: np.random.Generator, n: int, k: int, bits: int, group: int) -> ck.CMatrix:
    g = -(-k // group)
    codes = rng.integers(0, 2**bits, (n, k)).astype(np.uint8)
    scales = (rng.random((n, g)) * 0.01 + 1e-3).astype(np.float16)
    return ck.CMatrix.from_codes(codes, scales, rng.integers(0, 2**bits, (n, g)).astype(np.uint8), bits, group)


def time_rung(pool: ck.Pool, mat: ck.CMatrix, x: np.ndarray, variant: str, budget_s: float) -> LatencyStats:
    """Per kernel call statistics (ms) of ``variant`` on ``pool``: C times ~1 ms batches and returns raw samples."""
    once = max(float(ck.bench_gemm(pool, mat, x, variant, calls=1, warmup=1, repeats=1)[0]) / 1e9, 1e-6)
    calls = max(1, int(1e-3 / once))  # ~1 ms per timed batch
    repeats = int(min(max(5, budget_s / (once * calls)), 200))
    ns = ck.bench_gemm(pool, mat, x, variant, calls=calls, warmup=1, repeats=repeats)
    return LatencyStats.from_samples((ns / calls / 1e6).tolist(), pool.threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="threads of the multithreaded rungs")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timing per rung and shape (at least 5 runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/llm_kernels.md")
    args = ap.parse_args()
    lib = load_library()
    rng = np.random.default_rng(0)
    load_before = load_averages()
    ps = ["ps", "-eo", "pcpu,args", "--sort=-pcpu", "--no-headers"]
    others = [ln.strip()[:90] for ln in subprocess.run(ps, capture_output=True, text=True).stdout.splitlines()[:3]]
    rows = []
    with ck.Pool(lib, 1) as one, ck.Pool(lib, args.threads) as many:
        for label, n, k, m, bits, group in SHAPES:
            mat = matrix(rng, n, k, bits, group)
            x = rng.standard_normal((m, k)).astype(np.float32)
            base = None
            cells = []
            for rung, variant, threaded in RUNGS:
                st = time_rung(many if threaded else one, mat, x, variant, args.budget)
                base = base or st.median_ms
                cells.append((rung, st, base / st.median_ms))
                log(f"{label:28s} {rung:22s} {st.median_ms * 1e3:10.1f} us  x{base / st.median_ms:6.1f}")
            rows.append((label, n, k, m, bits, group, cells))
    load_after = load_averages()
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    lines = [
        "# LLM kernels: the optimization ladder (W4A8 GEMV / GEMM of SmolLM2-135M's shapes)",
        "",
        "Produced by `.venv/bin/python benchmarks/llm_kernels.py"
        + (f" --threads {args.threads}" if args.threads != 2 else "") + "` (see its docstring for the rungs).",
        "",
        f"- machine: {machine_summary()}; SIMD path "
        f"`{lib.lmq_simd_name().decode()}`; {cc}, `{' '.join(BUILD_FLAGS)}`",
        f"- threads: 1, and {args.threads} for the multithreaded rungs (persistent pool, rows claimed in chunks)",
        "- weights: random int4 codes (int8 for the head), group 128, float16 scales, uint8 zeros; activations "
        "quantized per block of 32 once, outside the timing; time per kernel call, median (p10-p90) of ~1 ms batches",
        f"- 1-minute load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after"
        + (" — **the machine was busy** (other jobs on the cores): multithreaded rungs are pessimistic"
           if max(load_before[0], load_after[0]) > 0.5 else " (quiet)"),
        "- busiest processes at the start (`ps`, %CPU): " + "; ".join(f"`{o}`" for o in others),
        "",
        "| shape (out x in, tokens) | " + " | ".join(r for r, _, _ in RUNGS) + " |",
        "|---|" + "---|" * len(RUNGS),
    ]  # fmt: skip
    for label, n, k, m, bits, group, cells in rows:
        text = [f"{st.median_ms * 1e3:,.1f} us ({st.p10_ms * 1e3:,.1f}-{st.p90_ms * 1e3:,.1f}), **{sp:.1f}x**"
                for _, st, sp in cells]  # fmt: skip
        lines.append(f"| {label}: {n} x {k}, {m} tok, int{bits} g{group} | " + " | ".join(text) + " |")
    lines += ["", "Speedups are against the reference rung of the same row. GMAC/s of the last rung: "
              + ", ".join(f"{label} {n * k * m / (cells[-1][1].median_ms * 1e-3) / 1e9:.1f}"
                          for label, n, k, m, _, _, cells in rows), ""]  # fmt: skip
    write_text(args.out, "\n".join(lines))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
