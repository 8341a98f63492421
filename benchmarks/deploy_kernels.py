"""Deploy kernels, the optimization ladder: plain C reference → auto-vectorized → AVX2 → AVX-512 VNNI, per layer.

For each reference model (vgg, resnet, mobilenetv2; random weights, calibrated on noise: timing does not depend on
the values) the deploy pipeline generates its C source (one function per layer, every shape a literal, as the
engine runs it; depthwise convs in place). A small timing harness is appended to that source and the result is
compiled once per rung of the ladder:

    ref -O3         -O3 -DLM_NO_SIMD                   the `_ref` kernels, baseline x86-64 (SSE2)
    ref native      -O3 -march=native -DLM_NO_SIMD     the same C, auto-vectorized for this CPU
    AVX2            -O3 -mavx2 -mfma -mno-avx512f      leanml_kernels_x86.h, AVX2 path
    VNNI            -O3 -march=native                  leanml_kernels_x86.h, AVX-512 VNNI path (when the CPU has it)

Each layer function is timed in C (clock_gettime, CLOCK_MONOTONIC): batches of repeats calibrated to ~0.2 ms, the
best of 41 batches, ns per call; one thread. GOP/s counts 2 ops per MAC (VNNI column). The whole batch-1 inference
(`<model>_run_q`) is timed the same way; its int8 output must be identical on every rung (bit-exact twins).

Usage: .venv/bin/python benchmarks/deploy_kernels.py [--models vgg resnet] [--trials 41]   (prints to stdout)
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from leanml.deploy.build import CSRC, find_compiler
from leanml.deploy.codegen import generate_c
from leanml.deploy.ir import lower
from leanml.deploy.planner import plan_memory
from leanml.models import build_model
from leanml.quant import QuantSim, convert

RUNGS = {
    "ref -O3": ("-O3", "-DLM_NO_SIMD"),
    "ref native": ("-O3", "-march=native", "-DLM_NO_SIMD"),
    "AVX2": ("-O3", "-mavx2", "-mfma", "-mno-avx512f"),
    "VNNI": ("-O3", "-march=native"),
}

HARNESS = r"""
#include <stdio.h>
#include <time.h>
typedef void (*lm_layer_fn)(const float *, int8_t *);
static double lm_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}
static float lm_in[PFX_INPUT_H * PFX_INPUT_W * PFX_INPUT_C];
static int8_t lm_q[PFX_INPUT_H * PFX_INPUT_W * PFX_INPUT_C], lm_out[PFX_OUTPUT_SIZE];
static void lm_whole(const float *input, int8_t *a) { (void)input, (void)a; pfx_run_q(lm_q, lm_out); }
/* ns per call of f: the best of `trials` batches of ~0.2 ms (short batches: some run undisturbed on a busy host) */
static double lm_time(lm_layer_fn f, int trials) {
    long reps = 1;
    double dt = 0.0;
    for (;; reps *= 2) {
        const double t0 = lm_now();
        for (long r = 0; r < reps; ++r) f(lm_in, arena);
        if ((dt = lm_now() - t0) > 1e5) break;
    }
    reps = (long)(reps * 2e5 / dt) + 1;
    double best = 1e300;
    for (int t = 0; t < trials; ++t) {
        const double t0 = lm_now();
        for (long r = 0; r < reps; ++r) f(lm_in, arena);
        const double ns = (lm_now() - t0) / (double)reps;
        best = ns < best ? ns : best;
    }
    return best;
}
int main(int argc, char **argv) {
    const int trials = argc > 1 ? atoi(argv[1]) : 41;
    static const lm_layer_fn layers[] = {LAYERS};
    uint32_t h = 2166136261u;
    for (int i = 0; i < (int)(sizeof lm_in / sizeof lm_in[0]); ++i) lm_in[i] = (float)((i * 37) % 23) * 0.2f - 2.0f;
    for (int i = 0; i < (int)sizeof lm_q; ++i) lm_q[i] = (int8_t)((i * 53) % 251 - 125);
    pfx_run_q(lm_q, lm_out);
    for (int i = 0; i < PFX_OUTPUT_SIZE; ++i) h = (h ^ (uint8_t)lm_out[i]) * 16777619u;
    printf("path %s\nchecksum %08x\n", LM_KERNELS_PATH, (unsigned)h);
    for (int i = 0; i < (int)(sizeof layers / sizeof layers[0]); ++i)
        printf("layer %d %.1f\n", i, lm_time(layers[i], trials));
    printf("model %.1f\n", lm_time(lm_whole, trials));
    return 0;
}
"""


def model_source(name: str) -> tuple[str, list]:
    """The generated C of ``name`` (batch 1, 1x28x28) with the harness appended; the timed IR ops."""
    torch.manual_seed(0)
    sim = QuantSim.from_model(build_model(name).eval())
    sim.calibrate([torch.randn(8, 1, 28, 28)])
    graph = lower(convert(sim), (1, 28, 28))
    sources = generate_c(graph, plan_memory(graph), "pfx")
    ops = [op for op in graph.ops if op.kind != "flatten"]
    harness = HARNESS.replace("LAYERS", ", ".join(f"layer_{op.name}" for op in ops))
    body = sources["pfx.c"].replace('#include "pfx.h"', sources["pfx.h"])  # one self-contained file
    return "#define _POSIX_C_SOURCE 199309L\n#include <stdlib.h>\n" + body + harness, ops


def run_rung(src: Path, flags: tuple[str, ...], trials: int) -> dict[str, object]:
    exe = src.with_suffix("." + re.sub(r"\W", "", "".join(flags)))
    cmd = [find_compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", *flags, f"-I{CSRC}", str(src), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe), str(trials)], check=True, capture_output=True, text=True).stdout
    res: dict[str, object] = {"layers": {}}
    for line in out.splitlines():
        key, *vals = line.split()
        if key == "layer":
            res["layers"][int(vals[0])] = float(vals[1])  # type: ignore[index]
        else:
            res[key] = vals[0] if key in ("path", "checksum") else float(vals[0])
    return res


def shape(op) -> str:
    ins = "x".join(map(str, op.in_shapes[0])) if op.in_shapes else "-"
    extra = f" k{op.kernel[0]}s{op.stride[0]}" if getattr(op, "kernel", None) else ""
    return f"{ins}->{'x'.join(map(str, op.out_shape))}{extra}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["vgg", "resnet", "mobilenetv2"])
    ap.add_argument("--trials", type=int, default=41)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    cc = subprocess.run([find_compiler(), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"# deploy kernels ladder -- {cpu}; {cc}; {platform.machine()}, 1 thread, batch 1, ns per call (best of "
          f"{args.trials})\n")  # fmt: skip
    rungs = list(RUNGS)
    with tempfile.TemporaryDirectory(prefix="leanml-bench-") as tmp:
        for name in args.models:
            text, ops = model_source(name)
            src = Path(tmp) / f"{name}.c"
            src.write_text(text)
            res = {rung: run_rung(src, flags, args.trials) for rung, flags in RUNGS.items()}
            sums = {res[r]["checksum"] for r in rungs}
            paths = ", ".join(f"{r}: {res[r]['path']}" for r in rungs)
            print(f"## {name}  ({sum(op.macs() for op in ops) / 1e6:.2f} M MACs; {paths}; outputs "
                  f"{'identical' if len(sums) == 1 else 'DIFFER: ' + str(sums)})\n")  # fmt: skip
            groups: dict[tuple[str, str], list[int]] = defaultdict(list)
            for i, op in enumerate(ops):
                groups[(op.kind, shape(op))].append(i)
            print(f"| layer | shape | n | MMAC | {' | '.join(rungs)} | GOP/s | speedup |")
            print("|---|---|---|---|" + "---|" * len(rungs) + "---|---|")
            for (kind, shp), idx in groups.items():
                ns = {r: min(res[r]["layers"][i] for i in idx) for r in rungs}  # type: ignore[index]
                macs = ops[idx[0]].macs()
                gops = f"{2 * macs / ns[rungs[-1]]:.1f}" if macs else "-"
                cells = " | ".join(f"{ns[r]:,.0f}" for r in rungs)
                print(f"| {kind} | {shp} | {len(idx)} | {macs / 1e6:.3f} | {cells} | {gops} | "
                      f"{ns[rungs[0]] / ns[rungs[-1]]:.1f}x |")  # fmt: skip
            total_macs = sum(op.macs() for op in ops)
            totals = {"sum of layers": {r: sum(res[r]["layers"].values()) for r in rungs}}  # type: ignore[union-attr]
            totals["whole model (run_q)"] = {r: res[r]["model"] for r in rungs}  # type: ignore[misc]
            for label, vals in totals.items():
                cells = " | ".join(f"{vals[r]:,.0f}" for r in rungs)
                gops, speedup = 2 * total_macs / vals[rungs[-1]], vals[rungs[0]] / vals[rungs[-1]]
                print(f"| **{label}** | | | {total_macs / 1e6:.2f} | {cells} | {gops:.1f} | {speedup:.1f}x |")
            print()
    if shutil.which("lscpu"):
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        simd = sorted({f for f in re.findall(r"\b(avx\w*)", flags)})
        print(f"CPU SIMD flags: {' '.join(simd)}")


if __name__ == "__main__":
    main()
