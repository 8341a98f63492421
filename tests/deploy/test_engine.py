"""Generated C equals the Python integer reference bit for bit; the exported project builds; bad input is refused."""

import shutil
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from leanml.deploy.engine import (
    DeployConfig,
    deploy,
    deploy_summary_row,
    export_project,
    layer_table,
    measure_c_latency,
    memory_timeline,
    verify,
)
from leanml.deploy.ir import c_identifier, lower
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant import QuantSim, convert
from tests.conftest import randomize_bn


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LEANML_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def integer_model(model: nn.Module, shape=(1, 28, 28), seed: int = 0):
    torch.manual_seed(seed)
    model = randomize_bn(model).eval()
    sim = QuantSim.from_model(model)
    sim.calibrate([torch.randn(16, *shape)])
    return convert(sim, {"shape": list(shape)})


class Weird(nn.Module):
    """Grouped conv, 5x5 and 7x7 depthwise, a standalone ReLU6, avg/max pooling with padding, spatial flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.dw5 = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.dw7 = nn.Conv2d(8, 8, 7, stride=1, padding=3, groups=8)
        self.act = nn.ReLU6()
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.avg(self.dw5(torch.relu(self.grouped(self.stem(x)))))  # 16 -> 8 -> 4
        return self.fc(torch.flatten(self.pool(self.act(self.dw7(y))), 1))  # 4 -> 2: a 2x2 spatial flatten


@pytest.mark.parametrize("name", ["vgg", "resnet", "mobilenetv2"])
def test_reference_models_compile_to_bit_exact_c(name):
    imodel = integer_model(build_model(name))
    dep = deploy(imodel, DeployConfig())
    x = torch.randn(6, 1, 28, 28) * 1.5
    assert verify(dep, imodel, x).identical
    assert torch.equal(dep.model(x), imodel(x))  # float in, float out: quantize and dequantize in C too
    summary = dep.summary()
    assert summary["arena_bytes"] <= summary["tflm_bytes"] <= summary["naive_bytes"]


def test_every_op_kind_is_bit_exact_on_an_odd_network():
    imodel = integer_model(Weird(), (3, 16, 16))
    dep = deploy(imodel, DeployConfig(input_shape=[3, 16, 16], prefix="odd net!"))
    kinds = {op.kind for op in dep.graph.ops}
    assert {"conv", "depthwise", "pool", "flatten", "linear", "quantize"} <= kinds
    assert verify(dep, imodel, torch.randn(8, 3, 16, 16) * 2).identical


def test_spatial_output_is_returned_in_the_reference_layout():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 1))
    imodel = integer_model(net, (2, 5, 6))
    dep = deploy(imodel, DeployConfig(input_shape=[2, 5, 6]))
    x = torch.randn(3, 2, 5, 6)
    assert np.array_equal(
        dep.model.run_int8(imodel.quantize_input(x)), imodel.run_int8(imodel.quantize_input(x)).reshape(3, -1)
    )


def test_identifiers_are_sanitized():
    used: set[str] = set()
    names = [c_identifier(n, used) for n in ["a.b", "a_b", "1x", "int", 'x;system("rm")']]
    assert len(set(names)) == len(names)
    assert all(n.replace("_", "a").isalnum() and not n[0].isdigit() for n in names)
    assert "int" not in names


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_exported_project_builds_and_runs(tmp_path):
    imodel = integer_model(build_model("vgg", layers=[8, "M", 16, "M"]))
    dep = deploy(imodel, DeployConfig())
    out = export_project(dep, tmp_path / "proj")
    proc = subprocess.run(["make", "-s", "run"], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 10
    # the project's main.c feeds input[i] = (i % 7) * 0.25 in HWC order; compare with the reference
    x = (np.arange(28 * 28, dtype=np.float32) % 7 * 0.25).reshape(1, 1, 28, 28)
    expect = imodel(x).numpy().reshape(-1)
    got = np.array([float(line.split()[1]) for line in lines], dtype=np.float32)
    assert np.allclose(got, expect, atol=1e-5)
    with pytest.raises(LeanmlError, match="already exists"):
        export_project(dep, out)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_generated_model_is_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    imodel = integer_model(build_model("mobilenetv2"))
    dep = deploy(imodel, DeployConfig())
    out = export_project(dep, tmp_path / "asan")
    flags = "-std=c99 -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=all"
    proc = subprocess.run(["make", "-s", "run", f"CFLAGS={flags}", "CC=gcc"], cwd=out, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    if "cannot find" in proc.stderr and "asan" in proc.stderr:
        pytest.skip("gcc has no AddressSanitizer runtime here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 10


def test_bad_input_is_refused():
    with pytest.raises(LeanmlError, match="integer model"):
        lower(build_model("vgg"), (1, 28, 28))  # type: ignore[arg-type]
    with pytest.raises(LeanmlError, match="input_shape"):
        DeployConfig(input_shape=[28, 28])
    with pytest.raises(LeanmlError, match="target"):
        DeployConfig(target="gpu")


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="gcc-arm-none-eabi is not installed")
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_cortex_m_cross_compile_reports_flash_and_sram(target, tmp_path):
    from leanml.deploy.build import target_section_sizes

    imodel = integer_model(build_model("vgg", layers=[8, "M", 16, "M"]))
    dep = deploy(imodel, DeployConfig(target=target))
    sizes = target_section_sizes(dep.sources, target)
    weights = dep.graph.weight_bytes()
    assert weights <= sizes["rodata"] <= weights * 1.1 + 1024  # flash is the weights plus code
    assert sizes["bss"] >= dep.layout.arena_bytes  # the static arena
    out = export_project(dep, tmp_path / "proj")
    proc = subprocess.run(["make", "-s", target], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ".rodata" in proc.stdout


def test_input_shape_comes_from_the_model_and_a_mismatch_is_refused(tmp_path):
    imodel = integer_model(build_model("vgg", layers=[4, "M"]), shape=(1, 20, 20))
    imodel.save(tmp_path / "m")
    from leanml.quant import IntegerModel

    loaded = IntegerModel.load(tmp_path / "m")
    assert loaded.input_shape == (1, 20, 20) and loaded.input == {"shape": [1, 20, 20]}
    dep = deploy(loaded, DeployConfig())
    assert dep.input_shape == (1, 20, 20) and dep.summary()["input_shape"] == [1, 20, 20]
    assert "flash_note" not in dep.summary()
    with pytest.raises(LeanmlError, match="deploy refuses a mismatch"):
        deploy(loaded, DeployConfig(input_shape=[1, 28, 28]))
    bare = loaded.with_meta(None)
    with pytest.raises(LeanmlError, match="no input shape") as err:
        deploy(bare, DeployConfig())
    assert "--input-shape" in (err.value.hint or "")
    assert deploy(bare, DeployConfig(input_shape=[1, 20, 20])).input_shape == (1, 20, 20)


def test_flash_note_states_unexploited_sparsity_and_bit_widths():
    imodel = integer_model(build_model("vgg", layers=[4, "M"])).with_meta(
        {"shape": [1, 28, 28]}, {"sparsity": 0.628, "weight_bits": {"features.0": 6, "classifier": 8}}
    )
    note = deploy(imodel, DeployConfig()).summary()["flash_note"]
    assert note.startswith("62.8% weight sparsity is not exploited by the dense int8 kernels")
    assert "6-bit weights are stored as int8" in note and note.endswith("flash is the dense size")
    dense = deploy(imodel, DeployConfig(sub_byte_weights=False)).summary()["flash_note"]
    assert "6-bit weights are stored as int8;" in dense or "6-bit weights are stored as int8:" in dense


def test_report_helpers_describe_the_deployment():
    imodel = integer_model(build_model("vgg", layers=[4, "M", 8, "M"]))
    dep = deploy(imodel, DeployConfig())
    row = deploy_summary_row(dep)
    assert row["flash_bytes"] == dep.graph.weight_bytes() and row["sram_bytes"] == dep.layout.arena_bytes
    assert row["macs"] == dep.graph.macs() > 0
    table = layer_table(dep)
    assert [r["name"] for r in table] == [op.name for op in dep.graph.ops]
    assert sum(r["macs"] for r in table) == row["macs"]
    assert sum(r["weight_bytes"] for r in table) == row["flash_bytes"]
    timeline = memory_timeline(dep)
    assert timeline["arena_bytes"] == row["sram_bytes"] and timeline["ops"] == [r["name"] for r in table]
    bufs = timeline["buffers"]
    assert all(b["offset"] + b["size"] <= timeline["arena_bytes"] and b["first_op"] <= b["last_op"] for b in bufs)
    for a in bufs:  # two buffers live at a common op never overlap in the arena, unless one reuses the other
        for b in bufs:
            live = a["first_op"] < b["last_op"] and b["first_op"] < a["last_op"]
            apart = a["offset"] + a["size"] <= b["offset"] or b["offset"] + b["size"] <= a["offset"]
            assert a is b or not live or apart or a["offset"] == b["offset"]
    lat = measure_c_latency(dep, repeats=3, warmup=1)
    assert lat.batch_size == 1 and lat.median_ms > 0
