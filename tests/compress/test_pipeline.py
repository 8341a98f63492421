"""End to end: an RGB ImageFolder of another resolution and class count and a user factory model go through every
stage to bit-exact C; a run killed with SIGKILL and re-run ends with the same weights and figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leanml.compress.pipeline import compress
from leanml.compress.recipe import Recipe
from leanml.errors import LeanmlError

FACTORY = textwrap.dedent(
    """
    from torch import nn

    def small_cnn(width: int = 8, classes: int = 3) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes),
        )

    def not_a_module() -> int:
        return 3
    """
)
RECIPE = {
    "name": "tiny",
    "train": {"epochs": 2, "lr": 0.05, "batch_size": 16},
    "prune": {"method": "channel", "ratio": 0.5},
    "finetune": {"epochs": 1, "batch_size": 16},
    "quantize": {"calibration_images": 16, "batch_size": 16},
    "deploy": {"patch": "auto"},
    "targets": {"max_accuracy_drop": 100.0},
    "threads": 1,
}


def make_imagefolder(root: Path, classes: int = 3, per_class: int = 20, size: int = 12) -> Path:
    """Class k: a bright square in corner k over noise (RGB PNGs), learnable in a few steps."""
    rng = np.random.default_rng(0)
    for k in range(classes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            y, x = divmod(k, 2)
            img[y * size // 2 : (y + 1) * size // 2, x * size // 2 : (x + 1) * size // 2, k % 3] = 250
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


@pytest.fixture
def user_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    (tmp_path / "user_nets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return make_imagefolder(tmp_path / "images"), "user_nets:small_cnn"


def run_tiny(images: Path, factory: str, out: Path):
    return compress(factory, f"imagefolder:{images}", Recipe.from_dict(RECIPE), out, {"width": 8}, 16, progress=False)


def test_user_model_and_imagefolder_through_every_stage(user_setup: tuple[Path, str], tmp_path: Path) -> None:
    images, factory = user_setup
    result = run_tiny(images, factory, tmp_path / "run")
    stages = [r["stage"] for r in result.record["stages"]]
    assert stages == ["train", "prune", "finetune", "quantize", "deploy", "verify"]
    assert result.record["input"]["shape"] == [3, 16, 16] and len(result.record["input"]["classes"]) == 3
    assert result.record["verify"]["mismatched"] == 0 and result.record["verify"]["images"] > 0
    base, pruned = result.record["stages"][0], result.record["stages"][1]
    assert pruned["params"] < base["params"] and pruned["macs"] < base["macs"]
    assert result.model[0].out_channels == 4  # half of width 8
    deploy = result.record["stages"][4]
    assert deploy["flash_bytes"] < result.record["int8_baseline"]["flash_bytes"]
    assert result.report.is_file() and "verify" in result.report.read_text()
    # a re-run finds every stage finished and reports the same figures
    again = run_tiny(images, factory, tmp_path / "run")
    assert all(r["cached"] for r in again.record["stages"])
    strip = [{k: v for k, v in r.items() if k != "cached"} for r in again.record["stages"]]
    assert strip == [{k: v for k, v in r.items() if k != "cached"} for r in result.record["stages"]]


def test_kill_and_resume_gives_identical_results(user_setup: tuple[Path, str], tmp_path: Path) -> None:
    images, factory = user_setup
    reference = run_tiny(images, factory, tmp_path / "straight")
    out = tmp_path / "killed"
    script = (
        f"from tests.compress.test_pipeline import run_tiny\nfrom pathlib import Path\n"
        f"run_tiny(Path({str(images)!r}), {factory!r}, Path({str(out)!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill once two stages have finished
        if len(list((out / "stages").glob("[!.]*"))) >= 3:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = run_tiny(images, factory, out)
    assert any(r["cached"] for r in resumed.record["stages"])
    keys = ("accuracy", "params", "macs", "flash_bytes", "sram_bytes")
    assert [[r[k] for k in keys] for r in resumed.record["stages"]] == [
        [r[k] for k in keys] for r in reference.record["stages"]
    ]
    for name, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    ref_json = json.loads((tmp_path / "straight" / "record.json").read_text())
    assert ref_json["verify"] == resumed.record["verify"]


def test_bad_factory_is_a_clear_error(user_setup: tuple[Path, str], tmp_path: Path) -> None:
    images, _ = user_setup
    with pytest.raises(LeanmlError, match=r"not_a_module|nn\.Module|module"):
        compress(
            "user_nets:not_a_module",
            f"imagefolder:{images}",
            Recipe.from_dict(RECIPE),
            tmp_path / "r",
            resolution=16,
            progress=False,
        )
    with pytest.raises(LeanmlError, match="no_such_pkg"):
        compress(
            "no_such_pkg.nets:cnn",
            f"imagefolder:{images}",
            Recipe.from_dict(RECIPE),
            tmp_path / "r2",
            resolution=16,
            progress=False,
        )


class DataDependent(torch.nn.Module):
    """A forward the tracer cannot follow (branching on a tensor's value)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 0:
            y = -y
        return self.fc(y.mean((2, 3)))


def test_untraceable_model_fails_before_any_stage(user_setup: tuple[Path, str], tmp_path: Path) -> None:
    images, _ = user_setup
    with pytest.raises(LeanmlError, match="DataDependent"):
        compress(DataDependent(), f"imagefolder:{images}", Recipe.from_dict(RECIPE), tmp_path / "r", resolution=16,
                 progress=False)  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_fine_grained_zeros_survive_finetuning_and_the_report_says_flash_is_dense(
    user_setup: tuple[Path, str], tmp_path: Path
) -> None:
    images, factory = user_setup
    recipe = Recipe.from_dict({**RECIPE, "prune": {"method": "fine", "sparsity": 0.5}})
    result = compress(factory, f"imagefolder:{images}", recipe, tmp_path / "fine", {"width": 8}, 16, progress=False)
    weights = [p for p in result.model.parameters() if p.dim() > 1]
    zeros = sum(int((p == 0).sum()) for p in weights) / sum(p.numel() for p in weights)
    assert zeros >= 0.45
    assert any("flash does not shrink" in n for n in result.record["notes"])
    assert result.record["verify"]["mismatched"] == 0


def test_cortex_m_target_runs_under_qemu_and_the_report_shows_it(user_setup: tuple[Path, str], tmp_path: Path) -> None:
    from leanml.deploy.mcu import tools_missing

    if tools_missing():
        pytest.skip(f"needs the Cortex-M toolchain: {' && '.join(tools_missing())}")
    images, factory = user_setup
    recipe = {**RECIPE, "deploy": {"patch": 0, "target": "cortex-m4"}}
    result = compress(factory, f"imagefolder:{images}", Recipe.from_dict(recipe), tmp_path / "m4", {"width": 8}, 16,
                      progress=False)  # fmt: skip
    mcu = result.record["mcu"]
    assert mcu["mcu_bit_exact"] is True and min(mcu["mcu_instructions"]) > 0
    assert mcu["mcu_peak_sram_bytes"] >= mcu["mcu_stack_bytes"] > 0
    layers = [layer for layer in result.record["layers"] if layer["kind"] != "quantize"]  # run_q starts at layer 1
    assert layers and all("instruction_share" in layer for layer in layers)
    html = result.report.read_text()
    assert "On the microcontroller (emulated)" in html and "share of the Cortex-M instructions" in html
