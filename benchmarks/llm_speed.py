"""LLM runtime speed on SmolLM2-135M: leanml's C runtime vs llama.cpp vs transformers vs leanml's PyTorch path,
written to benchmarks/results/llm_speed.md (issue 7, "Measure").

Rows (each at 1 and 2 threads, prompts of 128 and 512 tokens, 128 generated tokens, medians over --repeats):

    leanml-c <label>     leanml's C runtime (W4A8, int8 head) on a packed file: AWQ W4g128 and W4g32 (made from
                         llm_quality.py's cached AWQ search when present, or by --make-awq), and RTN W4g128 and
                         W4g32 (same layout and bytes as the AWQ files of the same group: the same speed)
    llama.cpp Q4_1/Q4_0  `llama-bench` (built by benchmarks/setup_llama_cpp.sh) on the shipped Q4_1 GGUF and its
                         Q4_0 requantization (benchmarks/make_smollm2_ggufs.py): prefill = `-p P`, decode =
                         `-n 128 -d P` (generation after a context of P tokens)
    transformers fp32    HF `generate` (greedy, 128 new tokens) on the float32 model; prefill = one forward over the
                         prompt, decode = 128 / (generate time - prefill time)
    leanml torch         leanml's PyTorch reference path on the packed file (PackedLinear, DynamicCache)

leanml rows use `leanml.llm.bench_speed` (prefill P random ids in one call, then 128 single-token calls with
greedy argmax feedback; one warm-up repeat). Perplexity: the exact C runtime on the built-in eval text (ctx 512,
--chunks chunks, llama.cpp's convention) beside the PyTorch path's figure for the same packed model (from
llm_quality.py's rows when cached, else computed with --ppl-torch) and llama.cpp Q4_1's. The physical bound is the
read bandwidth measured on the same threads over (weight bytes + KV bytes at the mean decode position) per token.

Rows are cached as JSON in --cache (default runs/llm_speed); --fresh recomputes. Do not run it beside another
benchmark: timings need a quiet machine (the load average is recorded with every row).

Run: .venv/bin/python benchmarks/llm_speed.py [--rows c,llamacpp,transformers,torch] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _llama_cpp import LlamaCppError, gguf, tool
from _llm_speed_report import render_report
from _rows import Measured, Row, RowRunner, log

from leanml.errors import LeanmlError
from leanml.llm.eval.speed_bench import bench_speed
from leanml.llm.io.packed_file import read_header
from leanml.llm.runtime import kernels as ck
from leanml.llm.runtime.bindings import load_library
from leanml.profile import machine_summary
from leanml.profile.timing import Throughput, time_calls
from leanml.threads import torch_threads

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results" / "llm_speed.md"
QUALITY = REPO / "runs" / "llm_bench"
THREADS, PROMPTS, GEN, CTX = (1, 2), (128, 512), 128, 512
LEANML_FILES = {"awq-w4g128": (4, 128), "awq-w4g32": (4, 32), "rtn-w4g128": (4, 128), "rtn-w4g32": (4, 32)}
LLAMA_KINDS = ("Q4_1", "Q4_0")
TOOL_ERRORS = (LlamaCppError, subprocess.CalledProcessError, FileNotFoundError)  # a row they stop is left out, logged


def packed_file(label: str, args: argparse.Namespace) -> Path | None:
    """The packed SmolLM2 for ``label`` in the cache, made with ``leanml llm quantize`` when it can be."""
    out = Path(args.cache) / f"smollm2-{label}.lmq"
    if out.is_file():
        try:
            read_header(out)
            return out
        except LeanmlError as e:  # an older format version: re-create it
            log(f"{out}: {e}; re-creating it")
    method, (bits, group) = label.split("-")[0], LEANML_FILES[label]
    cmd = [sys.executable, "-m", "leanml", "llm", "quantize", "smollm2", "--method", method, "--bits", str(bits),
           "--group-size", str(group), "--out", str(out), "--no-progress", "--threads", "2", "--overwrite"]  # fmt: skip
    if method == "awq":
        search = QUALITY / f"{label}.safetensors"
        if search.with_suffix(".json").is_file():
            cmd += ["--search", str(search)]
        elif args.make_awq:
            cmd += ["--calib-samples", "32"]
        else:
            log(f"{label}: no cached AWQ search in {QUALITY} (run llm_quality.py, or pass --make-awq): skipped")
            return None
    log(" ".join(cmd))
    subprocess.run(cmd, check=True)
    return out


def llama_bench_row(kind: str, threads: int, prompt: int, repeats: int) -> dict[str, Any]:
    """llama-bench prefill (-p P) and decode after P tokens (-n 128 -d P), tokens/s per repetition."""
    model = gguf(kind)
    out: dict[str, Any] = {"file_bytes": model.stat().st_size}
    for phase, extra in (("prefill", ["-p", str(prompt), "-n", "0"]),
                         ("decode", ["-p", "0", "-n", str(GEN), "-d", str(prompt)])):  # fmt: skip
        cmd = [str(tool("llama-bench")), "-m", str(model), "-t", str(threads), "-r", str(repeats), "-o", "json", *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows = json.loads(proc.stdout[proc.stdout.find("[") :])
        out[phase] = Throughput.of([float(v) for v in rows[0]["samples_ts"]]).to_dict()
        out[f"{phase}_command"] = " ".join(cmd)
    return out


def transformers_row(threads: int, prompt: int, repeats: int) -> dict[str, Any]:
    from leanml.llm import load_llm

    llm = load_llm("smollm2", progress=False)
    model: Any = llm.model
    ids = torch.randint(0, model.config.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(0))

    def prefill() -> None:
        model(input_ids=ids, use_cache=True, logits_to_keep=1)

    def generate() -> None:
        model.generate(ids, max_new_tokens=GEN, min_new_tokens=GEN, do_sample=False, pad_token_id=0)

    pre_ms: list[float] = []
    gen_ms: list[float] = []
    with torch_threads(threads), torch.no_grad():
        for r in range(repeats + 1):  # repeat 0 warms up; each repeat times one prefill, then one generate
            pre, gen = time_calls(prefill, warmup=0, repeats=1), time_calls(generate, warmup=0, repeats=1)
            if r:
                pre_ms += pre
                gen_ms += gen
    decode = [GEN / max((g - p) / 1e3, 1e-9) for p, g in zip(pre_ms, gen_ms, strict=True)]
    return {"prefill": Throughput.of([prompt / (p / 1e3) for p in pre_ms]).to_dict(),
            "decode": Throughput.of(decode).to_dict(), "file_bytes": None}  # fmt: skip


def leanml_row(path: Path, engine: str, threads: int, prompt: int, repeats: int) -> dict[str, Any]:
    r = bench_speed(path, engine=engine, threads=threads, prompt_tokens=prompt, gen_tokens=GEN, repeats=repeats)
    d = r.to_dict()
    return {"prefill": d["prefill"], "decode": d["decode"], "file_bytes": r.file_bytes,
            "weight_bytes": r.weight_bytes_per_token, "simd": r.simd}  # fmt: skip


def bound_row(path: Path, threads: int, prompt: int) -> dict[str, Any]:
    """Read bandwidth on `threads` threads and the decode bound (weights + KV bytes at the mean position)."""
    from leanml.llm.io.packed_file import read_header
    from leanml.llm.runtime.decoder import CRuntime

    with ck.Pool(load_library(), threads) as pool:
        bw = ck.memory_bandwidth(pool)
    rt = CRuntime(path, n_ctx=prompt + GEN, threads=1)
    c = read_header(path)[0]["config"]
    kv_per_pos = int(c["num_hidden_layers"]) * int(c["num_key_value_heads"]) * int(c["head_dim"]) * 2 * 2
    per_token = rt.weight_bytes() + kv_per_pos * (prompt + GEN // 2)
    rt.close()
    return {"bandwidth": bw, "bytes_per_token": per_token, "bound_tok_s": bw / per_token}


def ppl_row(path: Path, label: str, args: argparse.Namespace) -> dict[str, Any]:
    from leanml.llm import perplexity
    from leanml.llm.eval.corpus import added_bos
    from leanml.llm.runtime.causal_lm import load_c_engine

    text = QUALITY / "eval_builtin.txt"
    llm = load_c_engine(path, n_ctx=CTX, threads=args.threads_ppl)
    ids = llm.tokenizer.encode(text.read_text(encoding="utf-8"))
    r = perplexity(llm.model, ids, ctx=CTX, bos_id=added_bos(llm.tokenizer), max_chunks=args.chunks, progress=False)
    c = r.llama_cpp
    row: dict[str, Any] = {"c": {"llama_cpp": c.ppl, "stderr": c.ppl_stderr, "sliding": r.sliding.ppl,
                                 "chunks": c.windows, "seconds": r.seconds}}  # fmt: skip
    quality = quality_row(label)
    if quality is not None:
        row["torch"] = quality[0]["ppl"]["pydoc-eval"] | {"source": quality[1]}
    elif args.ppl_torch:
        from leanml.llm.io.packed_model import load_packed

        ref = load_packed(path)
        with torch_threads(args.threads_ppl):
            t = perplexity(ref.model, ids, ctx=CTX, bos_id=added_bos(ref.tokenizer), max_chunks=args.chunks,
                           progress=False)  # fmt: skip
        row["torch"] = {"llama_cpp": t.llama_cpp.ppl, "sliding": t.sliding.ppl, "source": "computed"}
    q41 = quality_row("llama.cpp-Q4_1")
    if q41 is not None:
        row["llama.cpp Q4_1"] = q41[0]["ppl"]["pydoc-eval"] | {"source": q41[1]}
    return row


def quality_row(label: str) -> tuple[dict[str, Any], str] | None:
    """llm_quality.py's row for ``label`` and where it came from: its cache, else the committed results file."""
    from llm_quality import RESULTS as QUALITY_RESULTS
    from llm_quality import committed_rows

    path = QUALITY / f"{label}.row.json"
    if path.is_file():
        return json.loads(path.read_text()), str(path)
    row = committed_rows().get(label)
    return (row, f"benchmarks/results/{QUALITY_RESULTS.name}") if row else None


def plan(files: dict[str, Path | None], args: argparse.Namespace) -> list[Row]:
    """Every row in report order; a missing row is measured only if its kind and thread count were asked for."""
    wanted, timed_threads = set(args.rows.split(",")), {int(t) for t in args.threads.split(",")}
    out: list[Row] = []

    def add(name: str, kind: str, threads: int | None, fn: Callable[..., dict[str, Any]], *fn_args: Any) -> None:
        measure = kind in wanted and (threads is None or threads in timed_threads)
        out.append(Row(name, lambda rows: fn(*fn_args), wanted=measure))

    ref = files.get("awq-w4g128") or files.get("rtn-w4g128")
    for t in THREADS:
        for prompt in PROMPTS:
            key = f"t{t}-p{prompt}"
            for label, path in files.items():
                if path is not None:
                    add(f"leanml-c-{label}-{key}", "c", t, leanml_row, path, "c", t, prompt, args.repeats)
                if path is not None and label == "rtn-w4g128":
                    add(f"bound-{key}", "bound", t, bound_row, path, t, prompt)
            for kind in LLAMA_KINDS:
                add(f"llama.cpp-{kind}-{key}", "llamacpp", t, llama_bench_row, kind, t, prompt, args.repeats)
            add(f"transformers-fp32-{key}", "transformers", t, transformers_row, t, prompt, min(args.repeats, 3))
            if ref is not None:
                add(f"leanml-torch-{key}", "torch", t, leanml_row, ref, "torch", t, prompt, min(args.repeats, 3))
    for label, path in files.items():
        if path is not None:
            add(f"ppl-{label}", "ppl", None, ppl_row, path, label, args)
    return out


def measured_at(m: Measured) -> dict[str, Any]:
    """The stamp of a fresh row: the 1-minute load average before and after it, and when it was measured."""
    return {"load_average": list(m.load_average), "measured": m.finished}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="c,llamacpp,transformers,torch,ppl,bound",
                        help="row kinds to measure when not cached (the report shows every cached row)")  # fmt: skip
    parser.add_argument("--labels", default=",".join(LEANML_FILES), help="leanml packed models to time")
    parser.add_argument("--threads", default=",".join(map(str, THREADS)),
                        help="thread counts to measure, e.g. 2 (rows of the others come from the cache)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--threads-ppl", type=int, default=2)
    parser.add_argument("--cache", default=str(REPO / "runs" / "llm_speed"))
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--make-awq", action="store_true", help="run the AWQ search when no cached one exists")
    parser.add_argument("--ppl-torch", action="store_true", help="compute the PyTorch path's perplexity if missing")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    files = {label: packed_file(label, args) for label in args.labels.split(",")}
    todo, machine = plan(files, args), machine_summary()
    planned, remeasured = {r.key for r in todo}, {r.key for r in todo if args.fresh and r.wanted}
    runner = RowRunner(cache, Path(args.out), lambda rows: render_report(rows, files, args, machine), indent=1,
                       stamp=measured_at, skip=TOOL_ERRORS)  # fmt: skip
    runner.run(todo, runner.cached(lambda key, row: key in planned and key not in remeasured))


if __name__ == "__main__":
    main()
