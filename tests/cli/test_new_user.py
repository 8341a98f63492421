"""Issue 16, "tried as a new user would": every mistake is a one-line error before any work, outputs are never
replaced without --overwrite, N:M skips layers it cannot prune, integer and k-means models can be evaluated and
profiled, and deploy names what it takes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from leanml.cli.options import check_outputs, check_writable
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant import QuantSim, convert
from leanml.train import load_checkpoint, save_checkpoint
from leanml.train.checkpoint import default_input
from tests.cli.conftest import CliResult, assert_one_line_error
from tests.cli.test_deploy_verb import tiny_integer_model

Cli = Callable[..., CliResult]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained vgg (1-channel 3x3 stem: input size 9, not a multiple of 4) for Fashion-MNIST 28x28."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "vgg"
    save_checkpoint(path, build_model("vgg", layers=[8, "M", 16, "M"]).eval(), {"metrics": {"test_acc": 0.1}})
    return path


@pytest.fixture(scope="module")
def int8(ckpt: Path) -> Path:
    """The checkpoint as an integer model carrying its input block (Fashion-MNIST, 1x28x28)."""
    sim = QuantSim.from_model(load_checkpoint(ckpt).model)
    sim.calibrate([torch.randn(16, 1, 28, 28)])
    path = ckpt.with_name("vgg-int8")
    convert(sim, default_input()).save(path)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANML_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_output_checks(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LeanmlError, match="is a file"):
        check_writable(tmp_path / "file" / "out")
    check_outputs(tmp_path / "new" / "deeper" / "model", None, overwrite=False)  # missing parents are fine
    (tmp_path / "m.safetensors").write_text("x")
    with pytest.raises(LeanmlError, match=r"m\.safetensors already exists.*--overwrite"):
        check_outputs(tmp_path / "m", overwrite=False)
    check_outputs(tmp_path / "m", overwrite=True)
    assert not list(tmp_path.glob(".leanml-probe-*"))


def test_deploy_unwritable_out_and_wrong_channels(cli: Cli, tmp_path: Path, int8: Path) -> None:
    assert_one_line_error(cli("deploy", int8, "--out", "/sys/nope/c"), "cannot write /sys/nope/c")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli("deploy", int8, "--out", tmp_path / "file" / "c"), "is a file")
    no_shape = tiny_integer_model(tmp_path / "noshape", None)
    res = cli("deploy", no_shape, "--out", tmp_path / "c", "--input-shape", "3,28,28", "--verify-images", "0")
    assert_one_line_error(res, "cannot run inputs of shape 3x28x28", "1,28,28")
    assert not (tmp_path / "c").exists()
    (tmp_path / "c").mkdir()
    assert_one_line_error(cli("deploy", int8, "--out", tmp_path / "c"), "already exists", "--overwrite")


def test_prune_scan_grid_and_scan_files(cli: Cli, tmp_path: Path, ckpt: Path) -> None:
    res = cli("prune", "scan", ckpt, "--report", tmp_path / "s.html", "--sparsities", "0.5,abc")
    assert_one_line_error(res, "bad --sparsities entry 'abc'")
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "other.json").write_text('{"a": 1}')
    for scan, words in ((tmp_path / "missing.json", "scan file not found"),
                        (tmp_path / "bad.json", "not readable JSON"),
                        (tmp_path / "other.json", "is not a scan")):  # fmt: skip
        res = cli("prune", "fine", ckpt, "--out", tmp_path / "x", "--scan", scan)
        assert_one_line_error(res, words, str(scan), "prune scan")
    (tmp_path / "s.json").write_text('{"base": 0.9, "scan": {"features.0": {"0.5": 0.9}}}')
    res = cli("prune", "scan", ckpt, "--report", tmp_path / "s.html", "--val-images", "8")
    assert_one_line_error(res, "s.json already exists", "--overwrite")


def test_prune_outputs_are_checked_before_work(cli: Cli, tmp_path: Path, ckpt: Path, fake_data: Path) -> None:
    (tmp_path / "taken.json").write_text("{}")
    res = cli("prune", "fine", ckpt, "--out", tmp_path / "taken", "--sparsity", "0.5", "--finetune-epochs", "3")
    assert_one_line_error(res, "taken.json already exists", "--overwrite")
    (tmp_path / "file").write_text("x")
    res = cli("prune", "channel", ckpt, "--out", tmp_path / "ch", "--report", tmp_path / "file" / "r.html",
              "--finetune-epochs", "3", "--data", fake_data)  # fmt: skip
    assert_one_line_error(res, "cannot write", "r.html")
    assert not (tmp_path / "ch.json").exists()
    res = cli("prune", "fine", ckpt, "--out", tmp_path / "y", "--sparsity", "0.5", "--train-subset", "0")
    assert_one_line_error(res, "--train-subset must be a positive count")
    res = cli("prune", "channel", ckpt, "--out", tmp_path / "z", "--ratio", "0.5", "--eval-subset", "0")
    assert_one_line_error(res, "--eval-subset must be a positive count")


def test_nm_skips_layers_it_cannot_prune_and_exclude(cli: Cli, tmp_path: Path, ckpt: Path, fake_data: Path) -> None:
    res = cli("prune", "fine", ckpt, "--out", tmp_path / "nm", "--nm", "--data", fake_data, "--threads", "1")
    assert res.code == 0, res.stderr
    assert "N:M leaves features.0 dense" in res.stderr and "sparse vs" in res.stdout
    res = cli("prune", "fine", ckpt, "--out", tmp_path / "nm", "--nm", "--exclude", "classifier", "--data", fake_data,
              "--finetune-epochs", "1", "--train-subset", "32", "--overwrite", "--threads", "1")  # fmt: skip
    assert res.code == 0, res.stderr
    layers = load_checkpoint(tmp_path / "nm").meta["pruning"]["layers"]
    assert [r["name"] for r in layers] == ["features.4"]
    assert "after 1 fine-tuning epoch(s)" in res.stdout
    res = cli("prune", "fine", ckpt, "--out", tmp_path / "e", "--nm", "--exclude", "nope", "--data", fake_data)
    assert_one_line_error(res, "unknown layer name(s): nope", "features.0")


def test_quantize_checks_outputs_and_like_first(cli: Cli, tmp_path: Path, ckpt: Path, fake_data: Path) -> None:
    for like in ("0", "9"):
        res = cli("quantize", "mixed", ckpt, "--out", tmp_path / "mp", "--like", like, "--data", fake_data)
        assert_one_line_error(res, f"--like {like} is out of range", "allowed: 2..8")
    (tmp_path / "file").write_text("x")
    res = cli("quantize", "linear", ckpt, "--out", tmp_path / "q", "--onnx", tmp_path / "file" / "q.onnx")
    assert_one_line_error(res, "cannot write", "q.onnx")
    args = ["--data", fake_data, "--calibration-images", "16", "--eval-subset", "16", "--threads", "1"]
    res = cli("quantize", "linear", ckpt, "--out", tmp_path / "q", "--qat-epochs", "1", "--train-subset", "32", *args)
    assert res.code == 0, res.stderr
    assert_one_line_error(cli("quantize", "linear", ckpt, "--out", tmp_path / "q", *args), "already exists")
    assert cli("quantize", "linear", ckpt, "--out", tmp_path / "q", "--overwrite", *args).code == 0
    res = cli("quantize", "kmeans", ckpt, "--out", tmp_path / "km", "--bits", "2", "--qat-epochs", "1",
              "--train-subset", "32", "--eval-subset", "16", "--data", fake_data, "--threads", "1")  # fmt: skip
    assert res.code == 0 and "after 1 QAT epoch(s)" in res.stdout, res.stderr
    res = cli("quantize", "kmeans", ckpt, "--out", tmp_path / "km", "--bits", "2", "--data", fake_data)
    assert_one_line_error(res, "km.safetensors already exists")


def test_eval_and_profile_an_integer_model(cli: Cli, int8: Path, fake_data: Path) -> None:
    res = cli("eval", int8, "--data", fake_data, "--subset", "40", "--threads", "1")
    assert res.code == 0, res.stderr
    assert "test accuracy" in res.stdout and "40 images" in res.stdout and "integer-only executor" in res.stdout
    res = cli("profile", int8, "--json")
    assert res.code == 0, res.stderr
    import json

    doc = json.loads(res.stdout)
    assert doc["kind"] == "integer-model" and doc["input_shape"] == [1, 28, 28]
    assert doc["macs"] > 0 and doc["params"] > 0 and 0 < doc["arena_bytes"] <= doc["tflm_bytes"]
    table = cli("profile", int8)
    assert table.code == 0 and "peak activation int8" in table.stderr and "features" in table.stderr
    assert_one_line_error(cli("profile", int8, "--input-shape", "3,28,28"), "the integer model takes [1, 28, 28]")
    assert_one_line_error(cli("eval", int8, "--resolution", "32"), "--resolution 32 does not apply")


def test_eval_profile_and_deploy_a_kmeans_model(cli: Cli, tmp_path: Path, ckpt: Path, fake_data: Path) -> None:
    km = tmp_path / "km"
    res = cli("quantize", "kmeans", ckpt, "--out", km, "--bits", "3", "--eval-subset", "16", "--data", fake_data,
              "--threads", "1")  # fmt: skip
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["km.json", "km.safetensors"]
    assert (tmp_path / "km.safetensors").stat().st_size < ckpt.with_suffix(".safetensors").stat().st_size
    res = cli("eval", km, "--data", fake_data, "--subset", "40", "--threads", "1")
    assert res.code == 0, res.stderr
    assert "test accuracy" in res.stdout and "40 images" in res.stdout and "k-means model" in res.stdout
    res = cli("profile", km, "--json", "--no-latency")
    assert res.code == 0, res.stderr
    import json

    doc = json.loads(res.stdout)
    assert {layer["bits"] for layer in doc["kmeans"]["layers"]} == {3}
    assert doc["kmeans"]["total_bytes"] < doc["kmeans"]["fp32_bytes"] == doc["size_bytes"]["32"]
    table = cli("profile", km, "--no-latency")
    assert table.code == 0 and "k-means model size" in table.stderr and "at 3 bits" in table.stderr
    res = cli("deploy", km, "--out", tmp_path / "c")
    assert_one_line_error(res, "is a k-means model", "deploy takes an integer model: quantize linear")


def test_eval_and_profile_refuse_a_deeply_nested_sidecar(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "m.safetensors").write_bytes(b"x")
    for verb in ("eval", "profile"):
        assert_one_line_error(cli(verb, tmp_path / "m"), "nested 100000 levels deep")
