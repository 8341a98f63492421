"""Deploy kernels, the optimization ladder: plain C reference → auto-vectorized → AVX2 → AVX-512 VNNI, per layer.

For each reference model (vgg, resnet, mobilenetv2; random weights, calibrated on noise: timing does not depend on
the values) or imported int8 ``.tflite`` file (a path, or a name from ``../shared/models/tflite/``: vww_96_int8,
person_detect, kws_ref_model, pretrainedResnet_quant, ad01_int8) the deploy pipeline generates its C source (one
function per layer, every shape a literal, as the engine runs it; depthwise convs in place). A small timing harness
is appended to that source and the result is compiled once per rung of the ladder (the VNNI rung is the AVX2 path
again on a CPU without AVX-512 VNNI: its path column says so):

    ref -O3         -O3 -DDK_NO_SIMD                   the `_ref` kernels, baseline x86-64 (SSE2)
    ref native      -O3 -march=native -DDK_NO_SIMD     the same C, auto-vectorized for this CPU
    AVX2            -O3 -mavx2 -mfma -mno-avx512f      leanml_kernels_x86.h, AVX2 path
    VNNI            -O3 -march=native                  leanml_kernels_x86.h, AVX-512 VNNI path (when the CPU has it)

Each layer function is timed in C (clock_gettime, CLOCK_MONOTONIC): batches of repeats calibrated to ~0.2 ms, 41
batches, one raw sample (ns per call) per batch, one thread; the harness prints the raw samples and Python computes
the statistics (`leanml.profile.timing.LatencyStats`): each cell is the min (the best batch, the figure of a
best-of-N ladder) / the median. GOP/s (VNNI column) and speedups use the min; GOP/s counts 2 ops per MAC. The whole
batch-1 inference (`<model>_run_q`) is timed the same way; its int8 output must be identical on every rung
(bit-exact twins).

Usage: .venv/bin/python benchmarks/deploy_kernels.py [--models vgg resnet vww_96_int8 m.tflite] [--trials 41]
(prints to stdout)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from leanml.deploy.build import CSRC, find_compiler
from leanml.deploy.codegen import generate_c
from leanml.deploy.ir import Graph, lower
from leanml.deploy.planner import plan_memory
from leanml.deploy.tflite import load_tflite
from leanml.models import build_model
from leanml.profile.machine import load_averages, machine_summary
from leanml.profile.timing import LatencyStats
from leanml.quant import QuantSim, convert

RUNGS = {
    "ref -O3": ("-O3", "-DDK_NO_SIMD"),
    "ref native": ("-O3", "-march=native", "-DDK_NO_SIMD"),
    "AVX2": ("-O3", "-mavx2", "-mfma", "-mno-avx512f"),
    "VNNI": ("-O3", "-march=native"),
}

HARNESS = r"""
#include <stdio.h>
#include <time.h>
typedef void (*bench_layer_fn)(const float *, int8_t *);
static double bench_clock_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}
static float bench_in[PFX_INPUT_H * PFX_INPUT_W * PFX_INPUT_C];
static int8_t bench_q[PFX_INPUT_H * PFX_INPUT_W * PFX_INPUT_C], bench_out[PFX_OUTPUT_SIZE];
static void bench_whole_run(const float *input, int8_t *a) { (void)input, (void)a; pfx_run_q(bench_q, bench_out); }
/* Raw samples of f: samples_ns[t] = ns per call in batch t of `trials` batches of ~0.2 ms (short batches: some run
   undisturbed on a busy host); the caller provides the array and computes the statistics. */
static void bench_layer_time(bench_layer_fn f, int trials, double *samples_ns) {
    long reps = 1;
    double dt = 0.0;
    for (;; reps *= 2) {
        const double t0 = bench_clock_ns();
        for (long r = 0; r < reps; ++r) f(bench_in, arena);
        if ((dt = bench_clock_ns() - t0) > 1e5) break;
    }
    reps = (long)(reps * 2e5 / dt) + 1;
    for (int t = 0; t < trials; ++t) {
        const double t0 = bench_clock_ns();
        for (long r = 0; r < reps; ++r) f(bench_in, arena);
        samples_ns[t] = (bench_clock_ns() - t0) / (double)reps;
    }
}
/* One line: the label, then the raw samples of f */
static void bench_samples_print(const char *label, int index, bench_layer_fn f, int trials, double *samples_ns) {
    bench_layer_time(f, trials, samples_ns);
    printf(index < 0 ? "%s" : "%s %d", label, index);
    for (int t = 0; t < trials; ++t) printf(" %.1f", samples_ns[t]);
    printf("\n");
}
int main(int argc, char **argv) {
    const int trials = argc > 1 ? atoi(argv[1]) : 41;
    static const bench_layer_fn layers[] = {LAYERS};
    double *samples_ns = trials > 0 ? malloc(sizeof(double) * (size_t)trials) : NULL;
    if (samples_ns == NULL) return 2;
    uint32_t h = 2166136261u;
    for (int i = 0; i < (int)(sizeof bench_in / sizeof bench_in[0]); ++i)
        bench_in[i] = (float)((i * 37) % 23) * 0.2f - 2.0f;
    for (int i = 0; i < (int)sizeof bench_q; ++i) bench_q[i] = (int8_t)((i * 53) % 251 - 125);
    pfx_run_q(bench_q, bench_out);
    for (int i = 0; i < PFX_OUTPUT_SIZE; ++i) h = (h ^ (uint8_t)bench_out[i]) * 16777619u;
    printf("path %s\nchecksum %08x\n", DK_KERNELS_PATH, (unsigned)h);
    for (int i = 0; i < (int)(sizeof layers / sizeof layers[0]); ++i)
        bench_samples_print("layer", i, layers[i], trials, samples_ns);
    bench_samples_print("model", -1, bench_whole_run, trials, samples_ns);
    free(samples_ns);
    return 0;
}
"""


@dataclass(frozen=True)
class Rung:
    """What one rung's harness printed: the kernel path, the output checksum, and raw samples (ns per call, one
    per timed batch) of every layer and of the whole model."""

    path: str
    checksum: str
    layers: dict[int, list[float]]
    model: list[float]


@dataclass(frozen=True)
class Figure:
    """The min (best batch) and median ns per call of raw samples; the median from ``LatencyStats``."""

    min_ns: float
    median_ns: float

    @classmethod
    def of(cls, samples_ns: list[float]) -> Figure:
        stats = LatencyStats.from_samples([s / 1e6 for s in samples_ns], threads=1, batch_size=1)
        return cls(min(samples_ns), stats.median_ms * 1e6)

    def cell(self) -> str:
        return f"{self.min_ns:,.0f} / {self.median_ns:,.0f}"


TFLITE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "tflite"


def model_graph(name: str) -> Graph:
    """The IR of a zoo model (batch 1, 1x28x28) or of an int8 ``.tflite`` file (a path or a name in TFLITE_DIR)."""
    path = Path(name) if name.endswith(".tflite") else TFLITE_DIR / f"{name}.tflite"
    if path.exists():
        return load_tflite(str(path))
    torch.manual_seed(0)
    sim = QuantSim.from_model(build_model(name).eval())
    sim.calibrate([torch.randn(8, 1, 28, 28)])
    return lower(convert(sim), (1, 28, 28))


def model_source(name: str) -> tuple[str, list]:
    """The generated C of ``name`` (see model_graph) with the harness appended; the timed IR ops."""
    graph = model_graph(name)
    sources = generate_c(graph, plan_memory(graph), "pfx")
    ops = [op for op in graph.ops if op.kind != "flatten"]
    harness = HARNESS.replace("LAYERS", ", ".join(f"layer_{op.name}" for op in ops))
    body = sources["pfx.c"].replace('#include "pfx.h"', sources["pfx.h"])  # one self-contained file
    return "#define _POSIX_C_SOURCE 199309L\n#include <stdlib.h>\n" + body + harness, ops


def run_rung(src: Path, flags: tuple[str, ...], trials: int) -> Rung:
    exe = src.with_suffix("." + re.sub(r"\W", "", "".join(flags)))
    cmd = [find_compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", *flags, f"-I{CSRC}", str(src), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe), str(trials)], check=True, capture_output=True, text=True).stdout
    fields: dict[str, str] = {}
    layers: dict[int, list[float]] = {}
    model: list[float] = []
    for line in out.splitlines():
        key, *vals = line.split()
        if key == "layer":
            layers[int(vals[0])] = [float(v) for v in vals[1:]]
        elif key == "model":
            model = [float(v) for v in vals]
        else:
            fields[key] = vals[0]
    return Rung(fields["path"], fields["checksum"], layers, model)


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
    cc = subprocess.run([find_compiler(), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"# deploy kernels ladder -- {machine_summary()}; {cc}; 1 thread, batch 1, ns per call: min / median of "
          f"{args.trials} batches; 1-minute load average {load_averages()[0]:.2f} at the start\n")  # fmt: skip
    rungs = list(RUNGS)
    with tempfile.TemporaryDirectory(prefix="leanml-bench-") as tmp:
        for name in args.models:
            text, ops = model_source(name)
            src = Path(tmp) / f"{name}.c"
            src.write_text(text)
            res = {rung: run_rung(src, flags, args.trials) for rung, flags in RUNGS.items()}
            sums = {res[r].checksum for r in rungs}
            paths = ", ".join(f"{r}: {res[r].path}" for r in rungs)
            print(f"## {name}  ({sum(op.macs() for op in ops) / 1e6:.2f} M MACs; {paths}; outputs "
                  f"{'identical' if len(sums) == 1 else 'DIFFER: ' + str(sums)})\n")  # fmt: skip
            groups: dict[tuple[str, str], list[int]] = defaultdict(list)
            for i, op in enumerate(ops):
                groups[(op.kind, shape(op))].append(i)
            print(f"| layer | shape | n | MMAC | {' | '.join(f'{r} min / median' for r in rungs)} | GOP/s (min) "
                  "| speedup (min) |")  # fmt: skip
            print("|---|---|---|---|" + "---|" * len(rungs) + "---|---|")
            for (kind, shp), idx in groups.items():  # identical layers: their samples pooled
                ns = {r: Figure.of([s for i in idx for s in res[r].layers[i]]) for r in rungs}
                macs = ops[idx[0]].macs()
                gops = f"{2 * macs / ns[rungs[-1]].min_ns:.1f}" if macs else "-"
                cells = " | ".join(ns[r].cell() for r in rungs)
                print(f"| {kind} | {shp} | {len(idx)} | {macs / 1e6:.3f} | {cells} | {gops} | "
                      f"{ns[rungs[0]].min_ns / ns[rungs[-1]].min_ns:.1f}x |")  # fmt: skip
            total_macs = sum(op.macs() for op in ops)
            layer_figures = {r: [Figure.of(s) for s in res[r].layers.values()] for r in rungs}
            totals = {"sum of layers": {r: Figure(sum(f.min_ns for f in layer_figures[r]),
                                                  sum(f.median_ns for f in layer_figures[r])) for r in rungs},
                      "whole model (run_q)": {r: Figure.of(res[r].model) for r in rungs}}  # fmt: skip
            for label, vals in totals.items():
                cells = " | ".join(vals[r].cell() for r in rungs)
                best, base = vals[rungs[-1]].min_ns, vals[rungs[0]].min_ns
                print(f"| **{label}** | | | {total_macs / 1e6:.2f} | {cells} | {2 * total_macs / best:.1f} "
                      f"| {base / best:.1f}x |")  # fmt: skip
            print()
    if shutil.which("lscpu"):
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        simd = sorted({f for f in re.findall(r"\b(avx\w*)", flags)})
        print(f"CPU SIMD flags: {' '.join(simd)}")


if __name__ == "__main__":
    main()
