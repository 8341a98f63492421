"""``--config FILE`` on a CNN and an LLM command: the file gives the config, explicit flags override it, an
unknown field is a one-line error with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leanml.cli import app, main
from tests.cli.test_cli import assert_clean_error, leanml


def test_train_config_file_and_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text("model: vgg\nepochs: 0\n")
    assert_clean_error(leanml("train", "--config", str(cfg)), "epochs must be >= 1")  # the file's value is used
    nodata = ("--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "r"))
    assert_clean_error(leanml("train", "--config", str(cfg), "--epochs", "1", *nodata), "dataset-fashion-mnist")
    cfg.write_text("model: alexnet\n")
    assert_clean_error(leanml("train", "--config", str(cfg), "--model", "vgg", "--epochs", "0"), "epochs must be >= 1")
    assert_clean_error(leanml("train", "--config", str(cfg)), "unknown model 'alexnet'")
    cfg.write_text("epoch: 3\n")
    proc = leanml("train", "--config", str(cfg))
    assert_clean_error(proc, "unknown TrainConfig field(s): epoch", "valid fields")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert_clean_error(leanml("train", "--config", str(tmp_path / "none.json")), "config file not found")


def test_deploy_config_file_is_checked_before_work(tmp_path: Path) -> None:
    cfg = tmp_path / "deploy.json"
    cfg.write_text(json.dumps({"target": "host", "arena": 1}))
    proc = leanml("deploy", str(tmp_path / "int8"), "--out", str(tmp_path / "c"), "--config", str(cfg))
    assert_clean_error(proc, "unknown DeployConfig field(s): arena")


pytest.importorskip("transformers")

from tests.llm.conftest import save_hf_folder, tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_hf_folder(tiny_llama(), tmp_path_factory.mktemp("llm") / "tiny")


def test_llm_quantize_config_file_and_flags(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "quant.json"
    cfg.write_text(json.dumps({"method": "rtn", "bits": 3, "group_size": 48}))
    out = tmp_path / "a.lmq"
    r = CliRunner().invoke(
        app, ["llm", "quantize", str(folder), "--out", str(out), "--config", str(cfg), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    assert "rtn-w3g48: 14 linears" in r.stdout  # the file's method, bits and group size
    out = tmp_path / "b.lmq"
    args = ["llm", "quantize", str(folder), "--out", str(out), "--config", str(cfg), "--bits", "4", "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "rtn-w4g48: 14 linears" in r.stdout  # --bits given on the command line overrides the file
    cfg.write_text(json.dumps({"method": "rtn", "group": 48}))
    with pytest.raises(SystemExit) as exit_info:
        main(["llm", "quantize", str(folder), "--out", str(tmp_path / "c.lmq"), "--config", str(cfg), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "unknown LLMQuantConfig field(s): group" in " ".join(err.split()) and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "c.lmq").exists()
