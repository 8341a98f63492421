"""`leanml deploy --target cortex-m4 --run`: runs under QEMU and reports instructions, flash, SRAM, bit-exactness;
`--run` without a Cortex-M target is a one-line error."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from leanml.deploy.mcu import tools_missing
from leanml.models import build_model
from leanml.quant import QuantSim, convert
from tests.cli.conftest import CliResult, assert_one_line_error


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANML_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_model(path: Path) -> Path:
    torch.manual_seed(0)
    sim = QuantSim.from_model(build_model("vgg", layers=[4, "M"]).eval())
    sim.calibrate([torch.randn(8, 1, 20, 20)])
    convert(sim, {"shape": [1, 20, 20]}).save(path)
    return path


@pytest.mark.skipif(bool(tools_missing()), reason="needs: " + "; ".join(tools_missing()))
def test_run_on_cortex_m4_reports_instructions_flash_sram_and_bit_exactness(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    model = tiny_model(tmp_path / "m")
    res = cli("deploy", model, "--out", tmp_path / "c", "--target", "cortex-m4", "--run", "--verify-images", "8")
    assert res.code == 0, res.stderr
    assert "cortex-m4 under QEMU (mps2-an386, -icount shift=0; -mcpu=cortex-m4 -mthumb -mfloat-abi=soft -O2)" in (
        res.stdout
    )
    assert "instructions per inference (4 inputs" in res.stdout
    assert "instructions by layer kind (first input, instrumented build): conv " in res.stdout
    assert "output on 4 inputs equals the host build bit for bit" in res.stdout
    res = cli("deploy", model, "--out", tmp_path / "c2", "--target", "cortex-m4", "--run", "--verify-images", "0",
              "--json")  # fmt: skip
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert summary["mcu_bit_exact"] and summary["mcu_inputs"] == 4 and min(summary["mcu_instructions"]) > 0
    assert summary["mcu_peak_sram_bytes"] == summary["arena_bytes"] + summary["mcu_stack_bytes"]
    assert 0 < summary["mcu_model_flash_bytes"] < summary["mcu_flash_bytes"]
    assert [row["kind"] for row in summary["mcu_layers"]][:2] == ["conv", "pool"]


def test_run_needs_a_cortex_m_target(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    res = cli("deploy", tmp_path / "missing", "--out", tmp_path / "c", "--run")
    assert_one_line_error(res, "--run runs the C on an emulated Cortex-M", "--target cortex-m4")
