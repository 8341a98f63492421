"""``leanml llm eval|generate|chat`` on a tiny Llama saved as an HF folder (in process, plus one real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from typer.testing import CliRunner

from leanml.cli import app, main
from leanml.llm.eval.generate import GenerateConfig, generate
from tests.llm.chat_fixtures import chat_tokenizer, save_chat_folder
from tests.llm.conftest import save_hf_folder, tiny_llama

TEXT = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! " * 8


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with the chat-template tokenizer (joining decoder)."""
    return save_chat_folder(tiny_llama(), tmp_path_factory.mktemp("llm") / "tiny-chat")


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conftest HF folder: a tiny Llama with the plain character tokenizer (no chat template)."""
    return save_hf_folder(tiny_llama(), tmp_path_factory.mktemp("llm") / "tiny-plain")


def run(*args: str, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(app, ["llm", *args, "--no-progress"], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_eval_on_a_text_file(chat_folder: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text(TEXT)
    r = run("eval", str(chat_folder), "--text", str(text), "--ctx", "64", "--stride", "32", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ctx"] == 64 and doc["stride"] == 32 and doc["n_tokens"] == len(TEXT)  # one token per character
    assert doc["sliding"]["tokens"] == len(TEXT) - 1 and doc["llama_cpp"]["windows"] == len(TEXT) // 64
    assert doc["sliding"]["ppl"] > 1 and doc["model"]["layers"] == 2 and doc["text"]["chars"] == len(TEXT)
    assert "loaded" in r.stderr
    r = run("eval", str(chat_folder), "--text", str(text), "--ctx", "64", "--max-chunks", "2")
    assert r.exit_code == 0, r.output
    assert "sliding window (stride 64)" in r.stdout and "llama.cpp chunks" in r.stdout and "128 tokens" in r.stdout


def test_generate_streams_greedy_tokens(chat_folder: Path) -> None:
    r = run("generate", str(chat_folder), "--prompt", "Hello", "--max-new-tokens", "6", "--no-chat", "--ignore-eos")
    assert r.exit_code == 0, r.output
    tok = chat_tokenizer()
    expected = generate(tiny_llama(), tok, tok.encode("Hello"), GenerateConfig(max_new_tokens=6, stop_at_eos=False))
    assert r.stdout == expected.text + "\n"
    assert "prefill" in r.stderr and "decode" in r.stderr and "tok/s" in r.stderr and "stop: max_new_tokens" in r.stderr


def test_generate_uses_the_chat_template_when_there_is_one(chat_folder: Path, tmp_path: Path) -> None:
    tok = chat_tokenizer()
    ids = tok.encode("<s>system:Bekind</s><s>user:Hi</s><s>assistant:", add_special_tokens=False)
    expected = generate(tiny_llama(), tok, ids, GenerateConfig(max_new_tokens=5, temperature=0.8, seed=2))
    args = ("--prompt", "Hi", "--system", "Bekind", "--max-new-tokens", "5", "--temperature", "0.8", "--seed", "2")
    r = run("generate", str(chat_folder), *args)
    assert r.exit_code == 0, r.output
    assert r.stdout == expected.text + "\n" and f"prompt {len(ids)} tokens" in r.stderr
    config = tmp_path / "gen.json"
    config.write_text(GenerateConfig(max_new_tokens=5, temperature=0.8, seed=2).to_json())
    r = run("generate", str(chat_folder), "--prompt", "Hi", "--system", "Bekind", "--config", str(config))
    assert r.exit_code == 0 and r.stdout == expected.text + "\n"


def test_chat_reads_stdin_until_exit(chat_folder: Path, plain_folder: Path) -> None:
    r = run("chat", str(chat_folder), "--system", "Bekind", "--max-new-tokens", "4", stdin="Hi\nAgain\n/exit\nNever\n")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("prefill") == 2 and len(r.stdout.splitlines()) == 2  # two answers, then /exit
    r = run("chat", str(chat_folder), "--max-new-tokens", "4", stdin="Hi\n/reset\nHi\n")  # ends at EOF
    assert r.exit_code == 0, r.output
    assert r.stderr.count("prefill") == 2 and "conversation cleared" in r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]  # after /reset the same question gets the same answer
    r = run("chat", str(plain_folder), "--no-template", "--max-new-tokens", "3", stdin="Hi\n\nNever\n")
    assert r.exit_code == 0 and r.stderr.count("prefill") == 1  # the empty line ends the chat


def test_errors_exit_non_zero_in_one_line(
    chat_folder: Path, plain_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["generate", str(plain_folder), "--prompt", "Hi", "--chat"], "the tokenizer has no chat template"),
        (["generate", str(chat_folder), "--prompt", "Hi", "--top-p", "2"], "top_p must be in (0, 1]"),
        (["generate", str(chat_folder), "--prompt", "Hi", "--max-new-tokens", "1000"], "exceeds the model's context"),
        (["generate", str(chat_folder), "--prompt", ""], "the prompt is empty"),
        (["generate", str(chat_folder), "--prompt", "Hi", "--dtype", "int8"], "unknown dtype 'int8'"),
        (["eval", str(chat_folder), "--text", "/no/such/file.txt"], "text file not found"),
        (["eval", str(chat_folder), "--ctx", "1"], "context length must be an integer >= 2"),
        (["chat", str(plain_folder)], "no chat template"),
        (["eval", str(chat_folder / "nothing")], "model not found"),
        (["generate", str(chat_folder / "nothing"), "--prompt", "Hi", "--ctx", "0"], "--ctx must be a positive"),
        (["chat", str(chat_folder), "--ctx", "-3"], "--ctx must be a positive number of KV cache positions, got -3"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["llm", *argv, "--no-progress"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, argv
        assert needle in " ".join(err.split()) and "Traceback" not in err, (argv, err)


def test_missing_model_is_a_clean_error_in_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "leanml", "llm", "generate", str(tmp_path / "missing"), "--prompt", "Hi"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "model not found" in proc.stderr and "smollm2" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_help_names_every_command() -> None:
    out = " ".join(CliRunner().invoke(app, ["llm", "--help"]).stdout.split())
    assert "bench (C runtime speed)" in out and "speed (C runtime)" not in out
    for command in ("quantize", "eval", "generate", "chat", "bench"):
        assert command in out
    quantize = CliRunner().invoke(app, ["llm", "quantize", "--help"]).stdout
    assert "--overwrite" in quantize and "--force" not in quantize
