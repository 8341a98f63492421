"""Report of benchmarks/deploy_models.py: goals, per-model accuracy/latency tables, SRAM and flash."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _peers import CALIB_BATCH

from leanml.deploy.build import CROSS_CC, CROSS_TARGETS, OPT_FLAGS, find_compiler
from leanml.profile import machine_summary

WARMUP, REPEATS, MIN_SECONDS = 10, 100, 1.0  # latency policy for every engine
SRAM_GOAL, FLASH_GOAL = 0.6, 0.10
KINDS = ("fp32", "leanml", "litert", "ort", "fx", "latency")
VARIANT_KEY = {"default": "leanml", "patch3": "leanml-patch3"}  # leanml deploy variant -> latency engine key
VARIANT_LABEL = {"default": "DeployConfig()", "patch3": "DeployConfig(patch=3)"}
# (latency key, label, recipe) in table order; the key is "<engine>/<threads>"
ENGINES = [
    ("leanml/1", "leanml C engine", "leanml PTQ minmax"),
    ("leanml-patch3/1", "leanml C engine, 3x3 patches", "leanml PTQ minmax"),
    ("leanml-core/1", "leanml C engine: `<prefix>_run_q` only (int8 codes in place)", "leanml PTQ minmax"),
    ("ref/1", "leanml integer reference (numpy)", "leanml PTQ minmax"),
    ("litert/1", "LiteRT (XNNPACK, default)", "litert-torch PT2E"),
    ("litert/2", "LiteRT (XNNPACK, default)", "litert-torch PT2E"),
    ("litert-core/1", "LiteRT (XNNPACK): `invoke()` only (int8 input set)", "litert-torch PT2E"),
    ("litert-builtin/1", "LiteRT (built-in kernels, no delegate)", "litert-torch PT2E"),
    ("ort/1", "onnxruntime QDQ", "ORT quantize_static"),
    ("ort/2", "onnxruntime QDQ", "ORT quantize_static"),
    ("fx/1", "torch int8 FX x86", "torch.ao FX PTQ"),
    ("fx/2", "torch int8 FX x86", "torch.ao FX PTQ"),
    ("fp32/1", "torch fp32 eager (reference line)", "none (float)"),
]


def tool_version(cmd: str) -> str:
    try:
        return subprocess.run([cmd, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return f"{cmd}: not found"


def rel(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    root = Path(__file__).resolve().parent.parent
    return str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else str(path)


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def ok(cond: bool) -> str:
    return "met" if cond else "**MISSED**"


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def accuracy_of(rows: dict[str, dict], key: str, m: str) -> float | None:
    engine = {"leanml-core": "leanml", "litert-core": "litert"}.get(key.split("/")[0], key.split("/")[0])
    kind = "leanml" if engine.startswith("leanml") or engine == "ref" else engine.removesuffix("-builtin")
    r = rows.get(f"{kind}-{m}")
    if r is None or r.get("error"):
        return None
    if engine.startswith("leanml"):
        variant = {v: k for k, v in VARIANT_KEY.items()}[engine]
        return r["variants"].get(variant, {}).get("c_float_acc")
    return r.get({"ref": "ref_acc", "litert-builtin": "acc_builtin"}.get(engine, "acc"))


def latency(rows: dict[str, dict], key: str, m: str) -> dict[str, Any] | None:
    return rows.get(f"latency-{m}", {}).get("engines", {}).get(key)


def model_table(rows: dict[str, dict], m: str) -> list[str]:
    lines = [
        f"### {m}",
        "",
        "| engine | int8 recipe | threads | test acc | Δ vs leanml integer ref | latency b=1 median | p10–p90 "
        "| time ÷ leanml C |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ref = accuracy_of(rows, "ref/1", m)
    ours = latency(rows, "leanml/1", m)
    for key, label, recipe in ENGINES:
        acc, lat = accuracy_of(rows, key, m), latency(rows, key, m)
        if acc is None and lat is None:
            continue
        delta = "—" if acc is None or ref is None else f"{100 * (acc - ref):+.2f} pt"
        med = "pending" if lat is None else f"{lat['median_ms']:.3f} ms"
        spread = "" if lat is None else f"{lat['p10_ms']:.3f}–{lat['p90_ms']:.3f}"
        ratio = "" if lat is None or ours is None else f"{lat['median_ms'] / ours['median_ms']:.2f}x"
        name = f"**{label}**" if key == "leanml/1" else label
        lines.append(f"| {name} | {recipe} | {key.split('/')[1]} | {pct(acc)} | {delta} | {med} | {spread} | {ratio} |")
    errors = [f"- {k}-{m}: `{rows[f'{k}-{m}']['error']}`" for k in KINDS if rows.get(f"{k}-{m}", {}).get("error")]
    return [*lines, "", *errors, *([""] if errors else [])]


def flash(v: dict[str, Any]) -> tuple[int, float]:
    """Flash bytes (text + rodata + data) of a deploy variant and their ratio to weight bytes + code (text)."""
    s = v["sections"]
    total = s["text"] + s["rodata"] + s["data"]
    return total, total / (v["summary"]["weight_bytes"] + s["text"])


def goals(rows: dict[str, dict], models: list[str]) -> list[str]:
    lines = ["## Goals", "", "| goal | per model | verdict |", "|---|---|---|"]

    def add(goal: str, cells: list[str], verdicts: list[bool], expected: int) -> None:
        verdict = ok(all(verdicts)) if len(verdicts) == expected else "pending"
        lines.append(f"| {goal} | {'<br>'.join(cells)} | {verdict} |")

    cells, verdicts = [], []
    for m in models:
        ours, lite1 = latency(rows, "leanml/1", m), latency(rows, "litert/1", m)
        if ours is None or lite1 is None:
            cells.append(f"{m}: pending")
            continue
        best = min(lat["median_ms"] for t in (1, 2) if (lat := latency(rows, f"litert/{t}", m)))
        verdicts.append(ours["median_ms"] < lite1["median_ms"])
        t_ours, t_lite = ours["median_ms"], lite1["median_ms"]
        core, lite_core = latency(rows, "leanml-core/1", m), latency(rows, "litert-core/1", m)
        engine_only = ""
        if core and lite_core:
            engine_only = (f"; engine calls only: {core['median_ms']:.3f} vs {lite_core['median_ms']:.3f} ms = "
                           f"{core['median_ms'] / lite_core['median_ms']:.2f}x")  # fmt: skip
        cells.append(
            f"{m}: {t_ours:.3f} vs {t_lite:.3f} ms = {t_ours / t_lite:.2f}x LiteRT's time "
            f"({'faster' if verdicts[-1] else 'slower'}; LiteRT's best of 1/2 threads {best:.3f} ms{engine_only})"
        )
    add("latency below LiteRT's at batch 1 on every model (medians: leanml C `DeployConfig()`, 1 thread, vs "
        "LiteRT's default XNNPACK path, 1 thread)", cells, verdicts, len(models))  # fmt: skip
    r = rows.get("leanml-mobilenetv2")
    if r and "mobilenetv2" in models:
        ratios = {v: x["summary"]["arena_bytes"] / x["summary"]["tflm_bytes"] for v, x in r["variants"].items()}
        cells = [
            f"{VARIANT_LABEL[v]}: {x['summary']['arena_bytes']:,} B vs {x['summary']['tflm_bytes']:,} B = "
            f"{ratios[v]:.2f}x ({x['summary']['macs'] / 1e6:.2f} M MACs)"
            for v, x in r["variants"].items()
        ]
        met = [v for v, q in ratios.items() if q <= SRAM_GOAL]
        verdict = f"met with {', '.join(VARIANT_LABEL[v] for v in met)}" if met else ok(False)
        if met and "default" not in met:
            verdict += " only (**MISSED** by the default config)"
        lines.append(f"| peak SRAM ≤ {SRAM_GOAL}x the TFLite-Micro-style plan on mobilenetv2 | {'<br>'.join(cells)} "
                     f"| {verdict} |")  # fmt: skip
    lean = [(m, v, x) for m in models if f"leanml-{m}" in rows for v, x in rows[f"leanml-{m}"]["variants"].items()]
    fl = [(m, v, *flash(x)) for m, v, x in lean]
    add(f"flash (Cortex-M4 text + rodata + data) within {FLASH_GOAL:.0%} of weight bytes + code (text)",
        [f"{m} {VARIANT_LABEL[v]}: {f:,} B = {q:.3f}x" for m, v, f, q in fl],
        [q <= 1 + FLASH_GOAL for *_, q in fl], len(models) * len(VARIANT_KEY))  # fmt: skip
    same, cells = [], []
    for m, v, x in lean:
        ref = rows[f"leanml-{m}"]["ref_acc"]
        same.append(x["mismatched"] == 0 and x["float_mismatched"] == 0 and x["c_float_acc"] == ref)
        cells.append(
            f"{m} {VARIANT_LABEL[v]}: {x['mismatched']} of {x['elements']:,} output codes differ (int8 entry), "
            f"{x['float_mismatched']} (float entry); {pct(x['c_float_acc'])} vs {pct(ref)}"
        )
    add("accuracy identical to the integer reference (every output code on every test image)", cells, same,
        len(models) * len(VARIANT_KEY))  # fmt: skip
    return [*lines, ""]


def memory_table(rows: dict[str, dict], models: list[str]) -> list[str]:
    lines = [
        "## leanml deploy: SRAM and flash",
        "",
        "SRAM = the activation arena of leanml's memory plan (in-place depthwise, best placement; with "
        "`patch=3` the first stage runs on 3x3 patches, MCUNetV2-style, at the cost of recomputed MACs) beside a "
        "TensorFlow-Lite-Micro-style plan of the layer-by-layer graph (no in-place ops, greedy by size), no "
        "planning at all (every tensor its own buffer) and the peak-live lower bound of the graph that runs. "
        "Flash = text + rodata + data of the generated C cross-compiled for Cortex-M4 (`arm-none-eabi-gcc "
        + " ".join(CROSS_TARGETS["cortex-m4"])
        + "`); weight bytes = int8 weights + int32 bias and requantization "
        "constants; the arena is the bss.",
        "",
        "| model | deploy config | MACs | weight bytes | arena (SRAM) | TFLM-style plan | arena ÷ TFLM | no planning "
        "| lower bound | text | rodata | data | bss | flash | flash ÷ (weights + text) | flash ÷ weights |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        r = rows.get(f"leanml-{m}")
        for v, x in ({} if r is None else r["variants"]).items():
            s, sec = x["summary"], x["sections"]
            total, ratio = flash(x)
            lines.append(
                f"| {m} | `{VARIANT_LABEL[v]}` | {s['macs'] / 1e6:.2f} M | {kib(s['weight_bytes'])} "
                f"| {kib(s['arena_bytes'])} | {kib(s['tflm_bytes'])} | {s['arena_bytes'] / s['tflm_bytes']:.2f}x "
                f"| {kib(s['naive_bytes'])} | {kib(s['lower_bound_bytes'])} | {sec['text']:,} | {sec['rodata']:,} "
                f"| {sec['data']:,} | {sec['bss']:,} | {kib(total)} | {ratio:.3f}x | {total / s['weight_bytes']:.3f}x |"
            )
    return [*lines, ""]


def render(rows: dict[str, dict], planned: list[str], models: list[str], args: argparse.Namespace) -> str:
    missing = [k for k in planned if k not in rows]

    flags = {" ".join(rows[f"leanml-{m}"]["host_flags"]) for m in models if "host_flags" in rows.get(f"leanml-{m}", {})}
    host_flags = "; ".join(sorted(flags)) or " ".join(OPT_FLAGS)

    def sources(kind: str) -> str:
        found = {rows[f"{kind}-{m}"]["source"] for m in models if "source" in rows.get(f"{kind}-{m}", {})}
        return "; ".join(sorted(found)) or "pending"

    lite = next((rows[f"litert-{m}"]["convert"] for m in models if "convert" in rows.get(f"litert-{m}", {})), None)
    details = [
        rows[f"{k}-{m}"]["detail"] for k in ("ort", "fx") for m in models if "detail" in rows.get(f"{k}-{m}", {})
    ]
    ort_fx = "; ".join(dict.fromkeys(details)) or "pending"
    loads = [f"{m} {rows[f'latency-{m}']['loadavg_before'][0]:.1f}" for m in models if f"latency-{m}" in rows]
    runtime = next((rows[f"litert-{m}"]["runtime"] for m in models if "runtime" in rows.get(f"litert-{m}", {})), "?")
    lines = [
        "# Deploy benchmark: leanml's C engine beside LiteRT, onnxruntime and torch int8 (batch 1)",
        "",
        "Produced by `benchmarks/deploy_models.py`; every number is measured; rows are cached as JSON in "
        f"`{rel(args.cache)}` and this file is regenerated after each row.",
        "",
        "> **Timing caveat:** the latencies below were taken on a shared, busy machine (1-minute load average when "
        f"each model's timing began: {', '.join(loads) or 'pending'} on {os.cpu_count()} cores). They are noisy; "
        "take final numbers on an idle machine: `.venv/bin/python benchmarks/deploy_models.py --fresh-latency`. "
        "The 2-thread rows compete with the other jobs for the same 2 cores; torch's 2-thread numbers in particular "
        "are dominated by that contention here.",
        "",
        f"Reproduce: `bash benchmarks/setup_litert.sh && .venv/bin/python benchmarks/deploy_models.py` (`--fresh` "
        f"recomputes every row, `--fresh-latency` re-times only); this file was last written by "
        f"`{' '.join(['.venv/bin/python', *sys.argv])}`",
        "",
        f"- machine: {machine_summary()}",
        f"- batch size 1 for every latency; each timed call = float image (1, 1, 28, 28) in → float logits out "
        f"(input quantization and output dequantization included for every engine); leanml's one latency helper "
        f"`measure_latency`: {WARMUP} warm-up calls, then ≥ {REPEATS} timed calls and ≥ {MIN_SECONDS:g} s, median "
        "and p10/p90",
        "- threads: leanml's C engine is single-threaded (1); its integer reference is numpy (1); LiteRT "
        "`num_threads` 1 and 2; onnxruntime intra-op 1 and 2 (inter-op 1); torch intra-op 1 and 2; "
        f"accuracy runs use {args.threads} thread(s)",
        f"- leanml: `quantize_linear` with `LinearQuantConfig(observer='minmax', batch_size={CALIB_BATCH})` on the "
        "512 seeded calibration images of `calibration_images()` (per-channel int8 weights, BN folded; the integer "
        "model carries its checkpoint's input block), then "
        f"`deploy(imodel, DeployConfig())`, host C compiled with `{find_compiler()} {host_flags}` "
        f"({tool_version(find_compiler())}); cross compiler {tool_version(CROSS_CC)}",
        f"- leanml engine measured (last commit touching leanml/deploy or leanml/quant): accuracy rows "
        f"{sources('leanml')}; latency rows {sources('latency')}",
        f"- LiteRT: {'pending' if lite is None else lite['api']}; litert-torch "
        f"{'?' if lite is None else lite['litert_torch']}, torchao {'?' if lite is None else lite.get('torchao', '?')} "
        f"and torch {'?' if lite is None else lite['torch']} in `{rel(args.litert_venv)}`; "
        "same 512 calibration images; "
        f"runtime {runtime} in the project venv; int8 input/output tensors, quantized/dequantized in numpy inside "
        "the timed call",
        f"- onnxruntime / torch: the peers of `quantize_models.py` on the same calibration images: {ort_fx}",
        f"- accuracy: {len_test(rows)} Fashion-MNIST test images for every engine"
        + (" (the full test set)" if len_test(rows) >= 10000 else " (seeded subset: a smoke run)"),
        f"- rows still missing: {', '.join(missing) if missing else 'none (run complete)'}",
        "",
        *goals(rows, models),
        "## Accuracy and latency per model",
        "",
        "leanml accuracy = the deployed float entry point (quantization in C); Δ is against leanml's integer "
        "reference. time ÷ leanml C > 1 means leanml's C engine is faster.",
        "",
    ]
    for m in models:
        lines += model_table(rows, m)
    lines += memory_table(rows, models)
    if lite is not None:
        lines += ["## LiteRT conversion records", ""]
        for m in models:
            c = rows.get(f"litert-{m}", {}).get("convert")
            if c:
                ops = ", ".join(f"{k} {v}" for k, v in c["ops"].items())
                lines.append(f"- {m}: {kib(c['tflite_bytes'])} .tflite, {c['input_dtype']} in / {c['output_dtype']} "
                             f"out, ops: {ops}; argmax agreement with the PT2E torch model "
                             f"{100 * c['argmax_agree_vs_pt2e']:.1f}% on {c['check_images']} images; "
                             f"converted in {c['convert_s']:.0f} s")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def len_test(rows: dict[str, dict]) -> int:
    return int(next((r["test_images"] for r in rows.values() if "test_images" in r), 10000))
