"""Report of benchmarks/deploy_mcu.py: goals with verdicts, then SRAM, Cortex-M4, bit-exactness and latency tables
(one row per model each), with the reference figures of ../shared/models/README.md."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from leanml.deploy.build import OPT_FLAGS, find_compiler
from leanml.deploy.mcu import MCU_FLAGS
from leanml.profile import machine_summary

SHARED = ("vww_96_int8", "kws_ref_model", "pretrainedResnet_quant", "ad01_int8", "person_detect")
ZOO = ("vgg", "resnet", "mobilenetv2")
KINDS = ("model", "latency")
VARIANTS = {"default": "DeployConfig()", "patch3": "DeployConfig(patch=3)"}
SRAM_GOAL, INSTR_GOAL, LATENCY_GOAL = 0.5, 0.65, 0.8
BATCH = 8  # the batch > 1 latency
Rows = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Policy:
    """How much a run measures: latency warm-up / repeats / minimum seconds, seeded random inputs beyond zero and
    rand, and test images (PTQ models)."""

    name: str
    warmup: int
    repeats: int
    min_seconds: float
    randoms: int
    test_images: int


FULL = Policy("full", 10, 100, 1.0, 20, 2000)
DRY = Policy("quick", 1, 5, 0.0, 2, 50)

# ../shared/models/README.md: TFLM (pip x86 and TFLM+CMSIS-NN on QEMU mps2-an386), inputs and outputs
REFERENCE: dict[str, dict[str, Any]] = {
    "vww_96_int8": dict(
        macs=7_489_664, x86_arena=103_680, m4_arena=100_708, instr_zero=23_776_200, instr_rand=23_776_240,
        flash=450_000, model_bytes=333_288, out_zero="748c", out_rand="7888",
        sha_zero="0a182a88ffcf20dcc892515a01db9af1a707814b982b9c21e1d9b3b4b203ceef",
        sha_rand="94f8d3dbf7991772d5641eada628154f26793dffdbb3ed7afa7f69b6c9b068eb"),
    "kws_ref_model": dict(
        macs=2_656_768, x86_arena=24_272, m4_arena=22_820, instr_zero=7_578_200, instr_rand=7_577_280,
        flash=170_646, model_bytes=53_936, out_zero="ff80808080ff808080808081", out_rand="8080808080808080807f8080",
        sha_zero="2a673f683c99c311b1f2dd2d94e1545ebbbdab96daa5a16a334194f7aca7a603",
        sha_rand="607433a4933954501c4d3b6e28e6859f0620e3139e19cd74a7027c71f1b03f7a"),
    "pretrainedResnet_quant": dict(
        macs=12_501_632, x86_arena=55_984, m4_arena=54_996, instr_zero=29_776_840, instr_rand=29_782_280,
        flash=209_936, model_bytes=98_496, out_zero="bb800c8385848380aa80", out_rand="80829a4b80809a808080",
        sha_zero="e80232b4d18d0bb7e794be263ba937626f383f9917d4b8a737ba893a8f752293",
        sha_rand="aad5be85ac1c9837da09832095d7df86109a5e90f17dfb0a5d55370bfdb87ee0"),
    "ad01_int8": dict(
        macs=264_192, x86_arena=3_984, m4_arena=2_580, instr_zero=582_920, instr_rand=582_920,
        flash=341_576, model_bytes=276_976,
        out_zero="sha256:5f55280fb4d4995a7087628054c7a4d302ca84f62d7739fff7312bd92f5597b7",
        out_rand="sha256:b5099b2f111a4e9191219a99fb53678cbf6a4c7388713d86467b1b0675f7106d",
        sha_zero="9e132485d5107211de325a45e7917cbe3e4b5b9cde3e4ee91d7d2102317759ee",
        sha_rand="606ad194f2ca6f5b172250147dcf83f1a74d6165ad2ea255d49b4539d3dcadf4"),
    "person_detect": dict(
        macs=7_157_888, x86_arena=85_264, m4_arena=82_308, instr_zero=22_572_960, instr_rand=22_573_000,
        flash=403_504, model_bytes=300_568, out_zero="48b8", out_rand="6b95",
        sha_zero="2d07a41ae992770085117e9815300bfd0730745883e60b24aaad5e69dfc087ae",
        sha_rand="509d80896bbcf85b5896f10ce439bfdc1ca00bbc371b05f6b5f251456b8c9c79"),
}  # fmt: skip


def model_kind(m: str) -> str:
    """``shared`` (a README model), ``ptq`` (a zoo model, leanml PTQ) or ``tflite`` (a zoo model's .tflite import).

    Example:
        >>> model_kind("vgg"), model_kind("vgg.tflite"), model_kind("ad01_int8")
        ('ptq', 'tflite', 'shared')
    """
    return "shared" if m in SHARED else "ptq" if m in ZOO else "tflite"


# ---------------------------------------------------------------- helpers


def first_line(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return f"{cmd[0]}: not found"


def cpu_simd() -> str:
    """The x86 SIMD levels the host kernels can use (from /proc/cpuinfo), e.g. ``avx2`` or ``avx512_vnni``."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    found = [f for f in ("avx2", "avx512bw", "avx512_vnni", "avx_vnni") if f in flags]
    return ", ".join(found) or "none of avx2/avx512"


def pkg(name: str) -> str:
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"{name} not installed"


def num(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


def verdict(values: list[bool], expected: int) -> str:
    if len(values) < expected:
        return "pending"
    return "MET" if all(values) else "**MISSED**"


def variant(rows: Rows, m: str, v: str) -> dict[str, Any] | None:
    r = rows.get(f"model-{m}")
    x = None if r is None or "error" in r else r["variants"].get(v)
    return None if x is None or "error" in x else x


def tflm_ref(rows: Rows, m: str) -> tuple[int | None, str]:
    """TFLM's arena the goal compares with: the README's M4 figure where there is one, else the x86 pip figure."""
    if m in REFERENCE:
        return REFERENCE[m]["m4_arena"], "M4"
    arena = rows.get(f"model-{m}", {}).get("tflm_arena", {})
    return arena.get("total"), "x86"


def sram(x: dict[str, Any]) -> int:
    """leanml's static SRAM: the plan's arena (activations + scratch), or the M4 ELF's .data + .bss of the model
    object when larger (persistent state)."""
    return max(x["summary"]["arena_bytes"], x.get("mcu", {}).get("sram_bytes", 0))


def lat(rows: Rows, m: str, key: str) -> float | None:
    e = rows.get(f"latency-{m}", {}).get("engines", {}).get(key)
    return None if e is None else e["median_ms"]


def in_goals(rows: Rows, m: str) -> bool:
    """A zoo .tflite that does not import is reported, not judged (the brief: check it if it imports)."""
    return not (model_kind(m) == "tflite" and "error" in rows.get(f"model-{m}", {}))


# ---------------------------------------------------------------- sections


def goals(rows: Rows, models: list[str]) -> list[str]:
    lines = ["## Goals", "", "| goal | per model | verdict |", "|---|---|---|"]
    judged = [m for m in models if in_goals(rows, m)]

    # SRAM: best deploy config per model
    cells, ok, ok_default = [], [], []
    for m in judged:
        ref, where = tflm_ref(rows, m)
        got = {v: sram(x) for v in VARIANTS if (x := variant(rows, m, v))}
        if not got or ref is None:
            cells.append(f"{m}: pending")
            continue
        best = min(got, key=lambda v: got[v])
        ok.append(got[best] <= SRAM_GOAL * ref)
        ok_default.append("default" in got and got["default"] <= SRAM_GOAL * ref)
        cells.append(f"{m}: {got[best]:,} B ({VARIANTS[best]}) vs {ref:,} B (TFLM {where}) = {got[best] / ref:.2f}x")
    note = f" (default config alone: {sum(ok_default)} of {len(ok_default)} models)" if ok else ""
    lines.append(f"| peak SRAM (arena: activations + scratch; static state) ≤ {SRAM_GOAL}x TFLM's arena on every "
                 f"model | {'<br>'.join(cells)} | {verdict(ok, len(judged))}{note} |")  # fmt: skip

    # M4 instructions: the models with a TFLM+CMSIS-NN reference figure
    cells, ok = [], []
    ref_models = [m for m in judged if m in REFERENCE]
    for m in ref_models:
        got = {v: x["mcu"]["instructions"]["rand"] for v in VARIANTS if (x := variant(rows, m, v)) and "instructions"
               in x.get("mcu", {})}  # fmt: skip
        if not got:
            cells.append(f"{m}: pending")
            continue
        best = min(got, key=lambda v: got[v])
        ref = REFERENCE[m]["instr_rand"]
        ok.append(got[best] <= INSTR_GOAL * ref)
        cells.append(f"{m}: {got[best] / 1e6:.2f} M ({VARIANTS[best]}) vs {ref / 1e6:.2f} M = {got[best] / ref:.2f}x")
    others = [m for m in judged if m not in REFERENCE]
    if others:
        cells.append(f"no TFLM+CMSIS-NN reference figure for {', '.join(others)} (not judged)")
    lines.append(f"| Cortex-M4 instructions (rand input) ≤ {INSTR_GOAL}x TFLM+CMSIS-NN's | {'<br>'.join(cells)} "
                 f"| {verdict(ok, len(ref_models))} |")  # fmt: skip

    # host latency, 1 and 2 threads
    refused = [m for m in judged if "error" in rows.get(f"latency-{m}", {}).get("litert", {})]
    for threads in (1, 2):
        cells, ok = [], []
        for m in judged:
            if m in refused:
                cells.append(f"{m}: LiteRT cannot load this .tflite (not judged; see the errors)")
                continue
            ours, lite = lat(rows, m, f"leanml-default/{threads}"), lat(rows, m, f"litert/{threads}")
            if ours is None or lite is None:
                cells.append(f"{m}: pending")
                continue
            ok.append(ours <= LATENCY_GOAL * lite)
            cells.append(f"{m}: {ours:.4f} vs {lite:.4f} ms = {ours / lite:.2f}x")
        head = f"host latency ≤ {LATENCY_GOAL}x LiteRT's at batch 1, {threads} thread(s)"
        if threads == 2:
            head += " (leanml `DeployConfig(threads=2)` vs LiteRT `num_threads=2`)"
        lines.append(f"| {head} | {'<br>'.join(cells)} | {verdict(ok, len(judged) - len(refused))} |")

    # bit-exactness
    cells, ok = [], []
    for m in judged:
        xs = [(v, x) for v in VARIANTS if (x := variant(rows, m, v))]
        if not xs:
            cells.append(f"{m}: pending")
            continue
        for v, x in xs:
            h, mc = x["host"], x.get("mcu", {})
            good = (
                h["mismatched"] == 0
                and mc.get("matches_host") is True
                and not any(mc.get("ref_mismatched", {"": 1}).values())
            )
            readme = mc.get("readme_outputs_equal")
            good = good and (readme is None or all(readme.values()))
            ok.append(good)
            m4 = mc.get("matches_host", mc.get("error", "?"))
            cells.append(f"{m} {VARIANTS[v]}: host {h['mismatched']} of {h['elements']:,} codes differ "
                         f"({h['inputs']} inputs); M4 == host {m4}")  # fmt: skip
    lines.append(f"| bit-exact with TFLM (x86 pip; zoo PTQ models: leanml's integer reference) on the host and on "
                 f"the M4 | {'<br>'.join(cells)} | {verdict(ok, len(ok) or 1)} |")  # fmt: skip
    return [*lines, ""]


def sram_table(rows: Rows, models: list[str]) -> list[str]:
    lines = [
        "## Peak SRAM",
        "",
        "TFLM arena: x86 = the pip `tflite_micro` interpreter's `Arena allocation total` (recording allocator, 8 MiB "
        "arena, one invoke on zeros; 64-bit structs); M4 = the README's TFLM+CMSIS-NN `arena_used_bytes`. leanml = "
        "the arena of its memory plan (every activation and scratch byte; the model has no other static RAM: the "
        "M4 ELF's model .data + .bss is shown). Stack is excluded on both sides (TFLM's was not measured); leanml's "
        "measured M4 stack high-water mark is shown. Ratio = leanml ÷ TFLM (M4 figure where there is one). Zoo "
        "rows (vgg, resnet, mobilenetv2): TFLM's arena is that of the litert-torch `.tflite` of the same float "
        "model (its own int8 graph), leanml's that of its own PTQ model.",
        "",
        "| model | TFLM arena x86 | TFLM arena M4 | leanml default | ÷ TFLM | leanml patch=3 | ÷ TFLM "
        "| model .data+.bss (M4) | M4 stack | lower bound | leanml's TFLM-style plan |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in models:
        r = rows.get(f"model-{m}")
        if r is None or "error" in r:
            lines.append(f"| {m} | {'pending' if r is None else 'error (below)'} |" + " |" * 10)
            continue
        x86 = r.get("tflm_arena", {}).get("total")
        ref, _ = tflm_ref(rows, m)
        cells = []
        for v in VARIANTS:
            x = variant(rows, m, v)
            cells += ["—", "—"] if x is None else [num(sram(x)), ratio(sram(x), ref)]
        d = variant(rows, m, "default")
        s, mc = (d["summary"], d.get("mcu", {})) if d else ({}, {})
        lines.append(f"| {m} | {num(x86)} | {num(REFERENCE.get(m, {}).get('m4_arena'))} | {' | '.join(cells)} "
                     f"| {num(mc.get('sram_bytes'))} | {num(mc.get('stack_bytes'))} "
                     f"| {num(s.get('lower_bound_bytes'))} | {num(s.get('tflm_bytes'))} |")  # fmt: skip
    return [*lines, ""]


def mcu_table(rows: Rows, models: list[str]) -> list[str]:
    lines = [
        "## Cortex-M4: instructions per inference and flash",
        "",
        "QEMU `mps2-an386 -cpu cortex-m4 -icount shift=0`, instructions = CMSDK timer ticks x 40 around the "
        "inference call only (TFLM: `Invoke()`; leanml: `<prefix>_run_q`), input copied in outside the timed region. "
        "Flash = ELF text + data minus the test-input blobs; both harnesses link newlib/rdimon with `printf` "
        "(TFLM's: the model flatbuffer as an array + TFLM/CMSIS-NN objects, `-O2` kernels / `-Os` core; leanml's: "
        "the generated C with its weights as const arrays + its kernels, one flag set). 'model object' = leanml's "
        "generated model object (text + rodata + data), vs the README's .tflite bytes.",
        "",
        "| model | TFLM+CMSIS-NN instr (rand) | leanml default | ÷ TFLM | leanml patch=3 | ÷ TFLM | instr zero "
        "TFLM / leanml | instr per MAC TFLM / leanml | flash TFLM | flash leanml | model: .tflite / leanml object |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in models:
        r = rows.get(f"model-{m}")
        if r is None or "error" in r:
            lines.append(f"| {m} | {'pending' if r is None else 'error (below)'} |" + " |" * 9)
            continue
        ref = REFERENCE.get(m, {})
        cells, zero = [], "—"
        for v in VARIANTS:
            x = variant(rows, m, v)
            mc = {} if x is None else x.get("mcu", {})
            got = mc.get("instructions", {}).get("rand")
            cells += [num(got) if got else ("error" if "error" in mc else "—"), ratio(got, ref.get("instr_rand"))]
        d = variant(rows, m, "default")
        mc = {} if d is None else d.get("mcu", {})
        if "instructions" in mc:
            zero = f"{num(ref.get('instr_zero'))} / {num(mc['instructions']['zero'])}"
        tfl = rows.get(f"model-{m}", {}).get("tflite", {}).get("bytes")
        per_mac = "—"
        if "instructions" in mc and d is not None:
            ours = mc["instructions"]["rand"] / d["summary"]["macs"]
            theirs = f"{ref['instr_rand'] / ref['macs']:.2f}" if ref else "—"
            per_mac = f"{theirs} / {ours:.2f}"
        lines.append(f"| {m} | {num(ref.get('instr_rand'))} | {' | '.join(cells)} | {zero} | {per_mac} "
                     f"| {num(ref.get('flash'))} "
                     f"| {num(mc.get('flash_bytes'))} | {num(tfl)} / {num(mc.get('model_flash_bytes'))} |")  # fmt: skip
    return [*lines, ""]


def exact_table(rows: Rows, models: list[str]) -> list[str]:
    lines = [
        "## Bit-exactness",
        "",
        "Inputs: zero, the README's rand input (`default_rng(0).integers(-128, 128, N, int16).astype(int8)`; its "
        "sha256 checked against the README), seeded randoms (seeds 1..k), and for zoo PTQ models test images. "
        "Host = leanml's C on x86 vs the oracle; M4 = leanml's C under QEMU on zero and rand vs its host output, vs "
        "the oracle, and vs the README's TFLM+CMSIS-NN M4 outputs.",
        "",
        "| model | oracle | inputs | input sha256 = README | host mismatches default / patch=3 | M4 == host "
        "| M4 == oracle | M4 == README TFLM+CMSIS-NN |",
        "|---|---|---:|---|---|---|---|---|",
    ]
    for m in models:
        r = rows.get(f"model-{m}")
        if r is None or "error" in r:
            continue
        host, m4, orc, readme = [], [], [], []
        for v in VARIANTS:
            x = variant(rows, m, v)
            host.append("—" if x is None else str(x["host"]["mismatched"]))
            if x is None or "error" in x.get("mcu", {"error": 1}):
                continue
            mc = x["mcu"]
            m4.append(str(mc["matches_host"]))
            orc.append(str(not any(mc["ref_mismatched"].values())))
            if mc.get("readme_outputs_equal") is not None:
                readme.append(str(all(mc["readme_outputs_equal"].values())))
        n = r["variants"].get("default", {}).get("host", {}).get("inputs", "—")
        lines.append(
            f"| {m} | {r['oracle']} | {n} | {r.get('input_sha256_ok', '—')} | {' / '.join(host)} "
            f"| {' / '.join(m4) or '—'} | {' / '.join(orc) or '—'} | {' / '.join(readme) or '—'} |"
        )
    return [*lines, ""]


def latency_table(rows: Rows, models: list[str], policy: Policy) -> list[str]:
    lines = [
        "## Host latency (engine call only, int8 codes in place)",
        "",
        "leanml: `<prefix>_run_q` through ctypes on int8 HWC codes already in place; LiteRT: `invoke()` with the "
        "int8 input tensor already set (`Interpreter(model_path=..., num_threads=n)`, default XNNPACK path, the "
        "`.tflite` loaded directly). Both through `leanml.profile.measure_latency` "
        f"({policy.warmup} warm-up, ≥ {policy.repeats} calls and ≥ {policy.min_seconds:g} s, median). Batch "
        f"{BATCH}: LiteRT resized to batch {BATCH}; leanml `<prefix>_run_q_batch` ({BATCH} inputs one after "
        "another in one C call); shown per image. leanml 2t: `DeployConfig(threads=2)` (layers split in row bands "
        "over a fork-join pool, bit-exact with 1 thread). Zoo PTQ rows: leanml's own PTQ vs LiteRT on the "
        "litert-torch conversion (different int8 models); `<m>.tflite` rows: the same .tflite for both.",
        "",
        "| model | LiteRT 1t | leanml 1t | ÷ LiteRT | LiteRT 2t | leanml 2t | leanml patch=3 1t "
        f"| b={BATCH} per image LiteRT / leanml | LiteRT out == TFLM (rand) | load 1-min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for m in models:
        r = rows.get(f"latency-{m}")
        if r is None or "error" in r:
            lines.append(f"| {m} | {'pending' if r is None else 'error (below)'} |" + " |" * 9)
            continue

        def ms(key: str, m: str = m) -> str:
            v = lat(rows, m, key)
            return "—" if v is None else f"{v:.4f} ms"

        l1, o1 = lat(rows, m, "litert/1"), lat(rows, m, "leanml-default/1")
        lb, ob = lat(rows, m, f"litert/1/b{BATCH}"), lat(rows, m, f"leanml-default/1/b{BATCH}")
        per = (f"{'—' if lb is None else f'{lb / BATCH:.4f}'} / {'—' if ob is None else f'{ob / BATCH:.4f}'} ms"
               + ("" if lb is not None else " (LiteRT resize failed)"))  # fmt: skip
        loads = [e["loadavg_1min"] for e in r["engines"].values()]
        lines.append(
            f"| {m} | {ms('litert/1')} | {ms('leanml-default/1')} | {ratio(o1, l1)} | {ms('litert/2')} "
            f"| {ms('leanml-default/2')} | {ms('leanml-patch3/1')} | {per} "
            f"| {r['litert'].get('rand_output_equals_tflm', '—')} | {min(loads):.2f}–{max(loads):.2f} |"
        )
    return [*lines, ""]


def errors(rows: Rows, models: list[str]) -> list[str]:
    out = []
    for m in models:
        for k in KINDS:
            r = rows.get(f"{k}-{m}", {})
            if "error" in r:
                out.append(f"- {k}-{m}: `{r['error'][:400]}`")
            for v, x in r.get("variants", {}).items():
                if "error" in x:
                    out.append(f"- {m} {VARIANTS[v]}: `{x['error'][:300]}`")
                elif "error" in x.get("mcu", {}):
                    out.append(f"- {m} {VARIANTS[v]} M4 run: `{x['mcu']['error'][:300]}`")
            if "error" in r.get("tflm_arena", {}):
                out.append(f"- {m} TFLM arena: `{r['tflm_arena']['error'][:300]}`")
            if "error" in r.get("litert", {}):
                out.append(f"- {m} LiteRT: `{r['litert']['error'][:300]}`")
            if f"batch{BATCH}_error" in r.get("litert", {}):
                out.append(f"- {m} LiteRT batch {BATCH}: `{r['litert'][f'batch{BATCH}_error'][:200]}`")
    return ["## Errors and notes", "", *out, ""] if out else []


def render(rows: Rows, planned: list[str], models: list[str], args: argparse.Namespace,
           policy: Policy) -> str:  # fmt: skip
    missing = [k for k in planned if k not in rows]
    flags = {" ".join(x["mcu"]["flags"]) for m in models for v in VARIANTS if (x := variant(rows, m, v))
             and "flags" in x.get("mcu", {})} or {" ".join(MCU_FLAGS["cortex-m4"])}  # fmt: skip
    sources = sorted({r["source"] for r in rows.values() if "source" in r})
    loads = [f"{m} {rows[f'latency-{m}']['loadavg_before'][0]:.2f}" for m in models
             if "loadavg_before" in rows.get(f"latency-{m}", {})]  # fmt: skip
    cc = find_compiler()
    lines = [
        "# MCU deploy benchmark: leanml vs TFLite Micro (SRAM, Cortex-M4, bit-exactness) and LiteRT (host latency)",
        "",
    ]
    if policy.name != "full":
        lines += ["> **DRY RUN (`--quick`)**: few repeats and inputs, timed on a busy shared machine. Not results: "
                  "run `.venv/bin/python benchmarks/deploy_mcu.py` on a quiet machine.", ""]  # fmt: skip
    lines += [
        "Produced by `benchmarks/deploy_mcu.py`; rows cached as JSON in "
        f"`{rel(args.cache)}`, this file regenerated after each row. Last written by "
        f"`{' '.join(['.venv/bin/python', *sys.argv])}`.",
        "",
        f"- machine: {machine_summary()}; SIMD: {cpu_simd()}; 1-minute load average when each model's timing began: "
        f"{', '.join(loads) or 'pending'} (on {os.cpu_count()} cores); every timed engine records its own",
        "- threads: leanml 1 (`DeployConfig()`) and 2 (`DeployConfig(threads=2)`: each layer split in row bands "
        "over a fork-join pool); LiteRT `num_threads` 1 and 2. Batch size 1 (and "
        f"{BATCH}, see the latency table)",
        f"- leanml Cortex-M4 flags: `{'; '.join(sorted(flags))}` (+ `-ffunction-sections -fdata-sections`, linked "
        "`--specs=rdimon.specs -Wl,--gc-sections`), "
        f"{first_line(['arm-none-eabi-gcc', '--version'])}; {first_line(['qemu-system-arm', '--version'])}",
        f"- leanml host: `{cc} {' '.join(OPT_FLAGS)}` ({first_line([cc, '--version'])}); engine source "
        f"(last commit touching leanml/deploy or leanml/quant): {'; '.join(sources) or 'pending'}",
        f"- versions: {pkg('tflite-micro')} (x86 oracle and arena), {pkg('ai-edge-litert')}, {pkg('numpy')}; "
        "TFLM+CMSIS-NN M4 figures: ../shared/models/README.md (TFLM 90b983c, CMSIS-NN 4ab83cc, gcc 12.2.1, "
        "QEMU 7.2)",
        f"- deploy configs: {', '.join(f'`{c}`' for c in VARIANTS.values())}; zoo PTQ models as deploy_models.py "
        "(`quantize_linear` minmax, 512 calibration images)",
        f"- rows still missing: {', '.join(missing) if missing else 'none (run complete)'}",
        "",
        *goals(rows, models),
        *sram_table(rows, models),
        *mcu_table(rows, models),
        *exact_table(rows, models),
        *latency_table(rows, models, policy),
        *errors(rows, models),
    ]
    return "\n".join(lines)


def rel(path: Path) -> str:
    root = Path(__file__).resolve().parent.parent
    return str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else str(path)
