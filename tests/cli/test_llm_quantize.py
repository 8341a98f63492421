"""``leanml llm quantize`` on a tiny Llama folder, then the packed file as MODEL for eval and generate."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

import torch
from typer.testing import CliRunner

from leanml.cli import app, main
from leanml.llm.io.packed_file import is_packed_file
from leanml.llm.io.packed_model import load_packed
from leanml.llm.quant.awq import AWQResult
from tests.llm.conftest import save_hf_folder, tiny_llama

TEXT = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! " * 12


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_hf_folder(tiny_llama(), tmp_path_factory.mktemp("llm") / "tiny")


def run(*args: str) -> object:
    return CliRunner().invoke(app, ["llm", *args, "--no-progress"])


def test_quantize_awq_then_eval_and_generate_the_packed_file(folder: Path, tmp_path: Path) -> None:
    text = tmp_path / "calib.txt"
    text.write_text(TEXT)
    out, search = tmp_path / "tiny.lmq", tmp_path / "awq.safetensors"
    calib = ["--calib-text", str(text), "--calib-samples", "4", "--calib-seq-len", "64"]
    r = run("quantize", str(folder), "--out", str(out), "--method", "awq", "--bits", "3", "--group-size", "48",
            *calib, "--save-search", str(search))  # fmt: skip
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "awq-w3g48: 14 linears" in r.stdout and is_packed_file(out)  # type: ignore[attr-defined]
    assert AWQResult.load(search).bits == 3
    r = run("eval", str(out), "--text", str(text), "--ctx", "64", "--max-chunks", "4")
    assert r.exit_code == 0 and "llama.cpp chunks" in r.stdout, r.output  # type: ignore[attr-defined]
    r = run("generate", str(out), "--prompt", "The quick", "--max-new-tokens", "5", "--no-chat")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    again = tmp_path / "again.lmq"
    r = run("quantize", str(folder), "--out", str(again), "--method", "awq", "--bits", "3", "--group-size", "48",
            "--search", str(search))  # fmt: skip
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    a, b = load_packed(out).model.state_dict(), load_packed(again).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the saved search reproduces the model


def test_quantize_errors(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.lmq"
    out.write_text("taken")
    cases = [
        (["--out", str(out), "--method", "rtn"], "already exists (pass --overwrite"),
        (["--out", str(tmp_path / "y.lmq"), "--bits", "9"], "bits must be in 2..8"),
        (["--out", str(tmp_path / "y.lmq"), "--method", "rtn", "--search", "s"], "AWQ options"),
        (["--out", str(tmp_path / "y.lmq"), "--search", str(tmp_path / "none.safetensors")], "not found"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["llm", "quantize", str(folder), *argv, "--no-progress"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and needle in " ".join(err.split()) and "Traceback" not in err, (argv, err)
    assert out.read_text() == "taken" and not (tmp_path / "y.lmq").exists()
