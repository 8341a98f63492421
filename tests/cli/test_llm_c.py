"""``leanml llm generate|chat|bench`` with ``--engine c`` (the default for packed files) on a tiny packed Llama."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from typer.testing import CliRunner

from leanml.cli import app
from tests.llm.conftest import save_hf_folder, tiny_llama
from tests.llm.runtime.test_decoder import make_packed


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_packed(tmp_path_factory.mktemp("cli-c") / "tiny.lmq")


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, ["llm", *args], input=stdin)


def failure(r: Any) -> str:
    """The error a failed command reported (LeanmlError reaches the runner as its exception)."""
    assert r.exit_code != 0
    return r.output + str(r.exception)


def test_generate_defaults_to_the_c_engine_and_agrees_with_torch(packed: Path) -> None:
    args = ["generate", str(packed), "--prompt", "Hello there, general", "--max-new-tokens", "12", "--ignore-eos",
            "--no-progress", "--threads", "2"]  # fmt: skip
    c = run(*args)
    assert c.exit_code == 0, c.output
    assert "into the C runtime" in c.stderr and "decode" in c.stderr
    torch_run = run(*args, "--engine", "torch")
    assert torch_run.exit_code == 0, torch_run.output
    assert "into the C runtime" not in torch_run.stderr
    assert c.stdout == torch_run.stdout  # greedy tokens agree (test_runtime checks the same prompt)


def test_chat_on_the_c_engine(packed: Path) -> None:
    r = run("chat", str(packed), "--no-template", "--max-new-tokens", "5", "--ctx", "128", stdin="Hi\n/reset\nYo\n")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("decode") == 2


def test_bench_prints_both_phases(packed: Path) -> None:
    r = run("bench", str(packed), "--threads", "2", "--prompt-tokens", "16", "--gen-tokens", "8", "--repeats", "2")
    assert r.exit_code == 0, r.output
    assert "prefill (16 tokens)" in r.stdout and "decode (8 tokens after the prompt)" in r.stdout
    assert "2 threads" in r.stdout
    r = run("bench", str(packed), "--engine", "torch", "--repeats", "1", "--gen-tokens", "4", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["engine"] == "torch" and doc["decode"]["median"] > 0 and len(doc["prefill"]["runs"]) == 1


def test_refusals(packed: Path, tmp_path: Path) -> None:
    folder = save_hf_folder(tiny_llama(), tmp_path / "hf")
    r = run("generate", str(folder), "--prompt", "Hi", "--engine", "c", "--no-progress")
    assert "runs packed .lmq files" in failure(r)
    r = run("generate", str(packed), "--prompt", "Hi", "--engine", "tpu", "--no-progress")
    assert "unknown engine" in failure(r)
    r = run("bench", str(packed), "--threads", "0")
    assert "threads must be an integer >= 1" in failure(r)
    r = run("bench", str(folder))
    assert "not a packed model file" in failure(r)
    r = run("generate", str(packed), "--prompt", "x" * 60, "--ctx", "32", "--no-progress")
    assert "exceeds the model's context of 32" in failure(r)
    r = run("generate", str(tmp_path / "missing.lmq"), "--prompt", "Hi", "--ctx", "0", "--no-progress")
    assert "--ctx must be a positive" in failure(r)  # refused before anything is loaded
