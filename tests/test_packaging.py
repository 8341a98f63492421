"""The wheel works away from the checkout: every C source is in it, and an LLM quantized and run with the C engine
from a fresh virtual environment uses the installed package (the repo's own dependencies lent through a ``.pth``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import leanml

REPO = Path(__file__).resolve().parents[1]

TINY_LLAMA = """
import sys, torch
from tokenizers import Tokenizer, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

torch.manual_seed(0)
config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=1,
                     eos_token_id=2, pad_token_id=0)
LlamaForCausalLM(config).eval().save_pretrained(sys.argv[1])
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz ,.!?")}
tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>").save_pretrained(
    sys.argv[1])
"""


def run(*argv: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: building writes build/ and egg-info next to the sources
    shutil.copytree(REPO / "leanml", source / "leanml", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-q", "-w", out, cwd=out)
    (built,) = out.glob("leanml-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_every_c_source_and_the_version(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for ext in ("c", "h") for p in (REPO / "leanml").rglob(f"*.{ext}")}
    assert sources and sources <= names, sorted(sources - names)
    assert wheel.name.startswith(f"leanml-{leanml.__version__}-")


@pytest.mark.slow
def test_installed_wheel_quantizes_and_generates_with_the_c_engine(wheel: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    python, leanml_cmd = tmp_path / "venv" / "bin" / "python", tmp_path / "venv" / "bin" / "leanml"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    # torch, transformers, ... from the repo's environment; a plain path line runs none of its .pth hooks (so
    # not the editable install of leanml either)
    (purelib / "repo_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)

    where = run(python, "-c", "import leanml; print(leanml.__file__)", cwd=tmp_path).strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    assert run(leanml_cmd, "--version", cwd=tmp_path).strip() == f"leanml {leanml.__version__}"

    run(python, "-c", TINY_LLAMA, tmp_path / "tiny", cwd=tmp_path)
    packed = tmp_path / "tiny-rtn.lmq"
    run(leanml_cmd, "llm", "quantize", tmp_path / "tiny", "--method", "rtn", "--bits", "4", "--group-size", "32",
        "--out", packed, "--no-progress", cwd=tmp_path)  # fmt: skip
    text = run(leanml_cmd, "llm", "generate", packed, "--prompt", "hello", "--max-new-tokens", "4", "--engine", "c",
               "--no-progress", cwd=tmp_path)  # fmt: skip
    assert text.strip(), text
