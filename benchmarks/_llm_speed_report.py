"""The markdown report of benchmarks/llm_speed.py (benchmarks/results/llm_speed.md), rendered from the cached rows."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

THREADS, PROMPTS = (1, 2), (128, 512)
PEER = "llama.cpp-Q4_1"


def _speed(s: dict[str, Any] | None) -> str:
    if not s:
        return "—"
    return f"{s['median']:.1f} ({s['low']:.1f}–{s['high']:.1f})"


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    return a["median"] / b["median"] if a and b and b["median"] else None


def _main_label(rows: dict[str, Any]) -> str:
    return "awq-w4g128" if any(k.startswith("leanml-c-awq-w4g128") for k in rows) else "rtn-w4g128"


def goals(rows: dict[str, Any]) -> list[str]:
    label = _main_label(rows)
    out = ["| goal (2 threads, leanml C `" + label + "` vs llama.cpp Q4_1) | prompt 128 | prompt 512 | verdict |",
           "|---|---|---|---|"]  # fmt: skip
    for phase, target in (("decode", 1.2), ("prefill", 1.0)):
        cells, ok = [], True
        for p in PROMPTS:
            mine, peer = rows.get(f"leanml-c-{label}-t2-p{p}"), rows.get(f"{PEER}-t2-p{p}")
            r = _ratio(mine and mine[phase], peer and peer[phase])
            cells.append("pending" if r is None else f"{r:.2f}x ({mine[phase]['median']:.0f} vs "  # type: ignore[index]
                         f"{peer[phase]['median']:.0f} tok/s)")  # type: ignore[index]  # fmt: skip
            ok = ok and r is not None and r >= target
        verdict = "met" if ok else ("pending" if "pending" in cells else "**MISSED**")
        out.append(f"| {phase} tokens/s ≥ {target}x llama.cpp | {cells[0]} | {cells[1]} | {verdict} |")
    ppl = rows.get(f"ppl-{label}")
    if ppl and "llama.cpp Q4_1" in ppl:
        c, q = ppl["c"]["llama_cpp"], ppl["llama.cpp Q4_1"]["llama_cpp"]
        out.append(f"| perplexity ≤ llama.cpp Q4_1 (llama.cpp convention) | {c:.2f} vs {q:.2f} | | "
                   f"{'met' if c <= q else '**MISSED**'} |")  # fmt: skip
    else:
        out.append("| perplexity ≤ llama.cpp Q4_1 | pending | | pending |")
    return out


def _torch_note(rows: dict[str, Any]) -> list[str]:
    """A bullet on the PyTorch reference-path rows, from what they measured."""
    torch_rows = {k.removeprefix("leanml-torch-"): r for k, r in rows.items() if k.startswith("leanml-torch-")}
    if not torch_rows:
        return []
    measured = ", ".join(f"{k} ({len(r['decode']['runs'])} repeat(s), {1 / r['decode']['median']:.2f} s per decoded "
                         "token)" for k, r in torch_rows.items())  # fmt: skip
    return ["- `leanml-torch` is the PyTorch reference path on the packed file: it unpacks every int4 linear on every "
            "call, so it is a correctness reference, not a speed path; its rows take minutes each and only these "
            f"were measured: {measured}"]  # fmt: skip


def render_report(rows: dict[str, Any], files: dict[str, Path | None], args: argparse.Namespace, machine: str) -> str:
    """The results markdown: header (``machine`` measured on), goals, one table per thread count and prompt, the
    perplexity table and every row as JSON."""
    loads = [r["load_average"][0] for r in rows.values() if "load_average" in r]
    lines = [
        "# LLM runtime speed: leanml's C runtime vs llama.cpp, transformers and leanml's PyTorch path (SmolLM2-135M)",
        "",
        "Produced by `.venv/bin/python benchmarks/llm_speed.py` (see its docstring for every row's protocol); rows are "
        f"cached as JSON in `{args.cache}` and this file is rewritten after each row.",
        "",
        f"- machine: {machine}; `{os.cpu_count()}` cores",
        f"- 1-minute load average when rows started: min {min(loads, default=0):.2f}, max {max(loads, default=0):.2f}"
        + (" — **the machine was busy during some rows**: see each row's load average in the JSON"
           if max(loads, default=0) > 1.0 else ""),
        "- leanml packed models: " + ", ".join(f"`{k}`: {v if v else 'missing'}" for k, v in files.items()),
        "- tokens/s: median (min–max) over the repeats; decode = 128 tokens generated after the prompt",
        "- speed depends only on a packed file's layout (bits, group size, head), never on its values: an AWQ "
        "file and an RTN file of the same bits and group have the same bytes per tensor and run the same kernels "
        "(AWQ's scales are folded into the float weights before packing), so `rtn-w4gN` rows time `awq-w4gN` too "
        "where no AWQ search was cached; perplexity differs and is taken per file",
        *_torch_note(rows),
        "- the load average is the 1-minute figure when a row started; a benchmark's own threads keep it near its "
        "thread count for the next rows, and the perplexity rows (not timed) ran beside other work",
        "",
        "## Goals",
        "",
        *goals(rows),
        "",
    ]  # fmt: skip
    for t in THREADS:
        for p in PROMPTS:
            key = f"t{t}-p{p}"
            peer = rows.get(f"{PEER}-{key}")
            lines += [f"## {t} thread{'s' if t > 1 else ''}, prompt {p}", "",
                      "| engine / model | file MB | prefill tok/s | decode tok/s | decode ÷ llama.cpp Q4_1 | "
                      "prefill ÷ llama.cpp Q4_1 | load avg |", "|---|---|---|---|---|---|---|"]  # fmt: skip
            for name, row in rows.items():
                if not name.endswith(key) or name.startswith("bound"):
                    continue
                rd = _ratio(row["decode"], peer and peer["decode"])
                rp = _ratio(row["prefill"], peer and peer["prefill"])
                mb = f"{row['file_bytes'] / 1e6:.1f}" if row.get("file_bytes") else "—"
                lines.append(f"| {name.removesuffix('-' + key)} | {mb} | {_speed(row['prefill'])} | "
                             f"{_speed(row['decode'])} | {'—' if rd is None else f'{rd:.2f}x'} | "
                             f"{'—' if rp is None else f'{rp:.2f}x'} | {row['load_average'][0]:.2f} |")  # fmt: skip
            b = rows.get(f"bound-{key}")
            if b:
                lines += ["", f"Physical decode bound: {b['bandwidth'] / 1e9:.1f} GB/s read bandwidth on {t} thread(s) "
                          f"/ {b['bytes_per_token'] / 1e6:.1f} MB per token (weights + KV at the mean position) = "
                          f"**{b['bound_tok_s']:.0f} tok/s**."]  # fmt: skip
            lines.append("")
    ppl_rows = {k: v for k, v in rows.items() if k.startswith("ppl-")}
    if ppl_rows:
        lines += ["## Perplexity (built-in eval text, ctx 512, llama.cpp convention)", "",
                  "| model | C runtime | PyTorch path (same packed model) | llama.cpp Q4_1 |",
                  "|---|---|---|---|"]  # fmt: skip
        for name, r in ppl_rows.items():
            torch_ppl = r.get("torch", {}).get("llama_cpp")
            q = r.get("llama.cpp Q4_1", {}).get("llama_cpp")
            lines.append(f"| {name.removeprefix('ppl-')} | {r['c']['llama_cpp']:.3f} ± {r['c']['stderr']:.3f} "
                         f"({r['c']['chunks']} chunks) | {'—' if torch_ppl is None else f'{torch_ppl:.3f}'} | "
                         f"{'—' if q is None else f'{q:.3f}'} |")  # fmt: skip
        lines.append("")
    lines += ["## Details", "", "```json", json.dumps(rows, indent=1), "```", ""]
    return "\n".join(lines)
