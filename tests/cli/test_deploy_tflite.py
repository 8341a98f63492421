"""`leanml deploy MODEL.tflite`: imports, verifies against the pip TFLite Micro interpreter, refuses what does not
apply, and names the oracle's install when it is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leanml.cli.deploy import app, is_tflite

pytest.importorskip("tflite", reason="the .tflite reader: pip install 'leanml[tflite]'")
KWS = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "tflite" / "kws_ref_model.tflite"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANML_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    if not KWS.is_file():
        pytest.skip(f"{KWS} is missing (the shared reference models)")


def test_deploy_tflite_is_verified_against_tflite_micro(tmp_path: Path) -> None:
    pytest.importorskip("tflite_micro", reason="the oracle: pip install tflite-micro")
    res = CliRunner().invoke(app, [str(KWS), "--out", str(tmp_path / "c"), "--json", "--verify-images", "6"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{") :])
    assert summary["bit_exact"] is True and summary["verify_images"] == 6
    assert summary["verify_oracle"].startswith("TFLite Micro")
    assert summary["macs"] == 2_656_768 and summary["arena_bytes"] < 24_272  # below TFLM's arena
    assert (tmp_path / "c" / "Makefile").is_file()


def test_deploy_tflite_refuses_an_input_shape_and_a_corrupt_file(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, [str(KWS), "--out", str(tmp_path / "c"), "--input-shape", "1,49,10"])
    assert res.exit_code != 0 and "--input-shape does not apply" in str(res.exception)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(KWS.read_bytes()[:300])
    res = CliRunner().invoke(app, [str(bad), "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "bad.tflite" in str(res.exception)


def test_is_tflite_reads_the_identifier(tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(KWS.read_bytes())
    assert is_tflite(renamed) and is_tflite(KWS) and not is_tflite(tmp_path)


def test_deploy_a_uint8_model_compares_the_shifted_codes(tmp_path: Path) -> None:
    pytest.importorskip("tflite_micro", reason="the oracle: pip install tflite-micro")
    from tests.deploy.tflite_models import Net

    net = Net(seed=12)
    xu = net.act((1, 6, 6, 3), 0.04, 133, dtype="uint8")
    x = net.op("QUANTIZE", [xu], [net.act((1, 6, 6, 3), 0.04, 5)], "QuantizeOptions")
    c = net.conv(x, 4, (3, 3), 2, "SAME", "RELU", out_q=(0.09, -100))
    y = net.op("QUANTIZE", [c], [net.act((1, 3, 3, 4), 0.09, 28, dtype="uint8")], "QuantizeOptions")
    (tmp_path / "u.tflite").write_bytes(net.to_bytes([xu], [y]))
    res = CliRunner().invoke(app, [str(tmp_path / "u.tflite"), "--out", str(tmp_path / "c"), "--json",
                                   "--verify-images", "5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{") :])["bit_exact"] is True
