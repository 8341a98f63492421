"""`leanml deploy` in-process: the model's own shape and data, k-means refused with the right hint, flash notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from leanml.cli.deploy import KMEANS_HINT, app, check_deployable
from leanml.cli.quantize import history_of
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant import QuantSim, convert
from leanml.train import save_checkpoint


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANML_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_integer_model(path: Path, block: dict | None, history: dict | None = None, shape=(1, 28, 28)) -> Path:
    sim = QuantSim.from_model(build_model("vgg", layers=[4, "M"]).eval())
    sim.calibrate([torch.randn(8, *shape)])
    convert(sim, block, history).save(path)
    return path


def deploy_json(*args: str) -> dict:
    res = CliRunner().invoke(app, [*args, "--json", "--verify-images", "8"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{") :])


def test_deploy_uses_the_stored_shape_and_says_what_it_verified_on(tmp_path: Path) -> None:
    model = tiny_integer_model(tmp_path / "m", {"shape": [1, 20, 20]}, {"sparsity": 0.5}, shape=(1, 20, 20))
    summary = deploy_json(str(model), "--out", str(tmp_path / "c"))
    assert summary["input_shape"] == [1, 20, 20] and summary["bit_exact"]
    assert summary["verify_data"].startswith("8 random inputs (the model names no dataset)")
    assert summary["flash_note"].startswith("50.0% weight sparsity is not exploited")
    res = CliRunner().invoke(app, [str(model), "--out", str(tmp_path / "c2"), "--input-shape", "1,28,28"])
    assert res.exit_code != 0 and "deploy refuses a mismatch" in str(res.exception)


def test_deploy_verifies_on_the_models_own_test_split(tmp_path: Path, fake_data: Path) -> None:
    block = {"shape": [1, 28, 28], "mean": [0.286], "std": [0.353], "dataset": "fashion-mnist"}
    model = tiny_integer_model(tmp_path / "m", block)
    summary = deploy_json(str(model), "--out", str(tmp_path / "c"), "--data", str(fake_data))
    assert summary["verify_data"] == "8 fashion-mnist test images" and 0.0 <= summary["test_accuracy"] <= 1.0


def test_a_model_without_a_shape_asks_for_one(tmp_path: Path) -> None:
    model = tiny_integer_model(tmp_path / "m", None)
    res = CliRunner().invoke(app, [str(model), "--out", str(tmp_path / "c")])
    assert isinstance(res.exception, LeanmlError) and "--input-shape" in str(res.exception)
    assert deploy_json(str(model), "--out", str(tmp_path / "c"), "--input-shape", "1,28,28")["bit_exact"]


def test_kmeans_models_are_refused_with_the_right_hint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "km", build_model("vgg", layers=[4, "M"]), {"kmeans": {"bits": 4}})
    with pytest.raises(LeanmlError, match="k-means model") as err:
        check_deployable(tmp_path / "km")
    assert err.value.hint == KMEANS_HINT and "linear (int8)" in KMEANS_HINT
    save_checkpoint(tmp_path / "float", build_model("vgg", layers=[4, "M"]))
    with pytest.raises(LeanmlError, match="float checkpoint"):
        check_deployable(tmp_path / "float")


def test_history_carries_sparsity_and_widths() -> None:
    assert history_of({"pruning": {"sparsity": 0.628}}) == {"sparsity": 0.628}
    assert history_of({"history": [{"epoch": 1}]}) is None  # training history is not compression history
    assert history_of({}, {"fc": 4}) == {"weight_bits": {"fc": 4}}
