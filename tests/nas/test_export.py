import json
import random

import pytest
import torch

from leanml.errors import LeanmlError
from leanml.nas.checkpoint import load_supernet
from leanml.nas.data import evaluate_at
from leanml.nas.export import ExportConfig, export_subnet
from leanml.nas.space import SpaceConfig
from leanml.profile import profile_model
from leanml.train import load_checkpoint
from tests.nas.conftest import fmnist

FAST = ExportConfig(calib_images=64, val_images=64, test_images=64)


def test_export_is_a_normal_checkpoint_with_the_searched_figures(tmp_path, tiny_supernet, fake_data, space):
    arch = space.sample(random.Random(2))
    result = export_subnet(tiny_supernet, arch, tmp_path / "best", fmnist(fake_data), FAST, threads=1)
    ckpt = load_checkpoint(result.checkpoint)
    r = arch.resolution
    assert ckpt.meta["input"]["shape"] == [1, r, r] and ckpt.meta["input"]["resize"]["mode"] == "bilinear"
    assert ckpt.meta["nas"]["arch"] == arch.to_dict() and ckpt.meta["metrics"] == result.metrics
    prof = profile_model(ckpt.model, (1, r, r), measure=False)
    assert (prof.macs, prof.params, prof.peak_activation_bytes(1)) == (
        result.efficiency.macs,
        result.efficiency.params,
        result.efficiency.peak_sram,
    )
    assert evaluate_at(ckpt.model, fmnist(fake_data).test.sample(64), r) == result.metrics["test_acc"]
    assert ckpt.meta["input"]["dataset"] == "fashion-mnist" and len(ckpt.meta["input"]["classes"]) == 10
    assert ckpt.model(torch.zeros(1, 1, r, r)).shape == (1, 10)


def test_mismatched_spaces_and_checkpoints_are_clear_errors(tmp_path, tiny_supernet, fake_data, space):
    with pytest.raises(LeanmlError, match="another search space \\(differs in stages\\)"):
        export_subnet(tiny_supernet, space.smallest(), tmp_path / "x", fmnist(fake_data), FAST,
                      expect_space=SpaceConfig(stages=[[8, 1, 2], [24, 1, 2]], extra_depth=1, stem=8, head=16,
                                               resolutions=[12, 16], widths=[0.5, 1.0]))  # fmt: skip
    with pytest.raises(LeanmlError, match="outside the space"):
        export_subnet(tiny_supernet, SpaceConfig().smallest(), tmp_path / "x", fmnist(fake_data), FAST)
    # a sidecar whose space no longer fits the weights
    bad = tmp_path / "bad"
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"bad{suffix}").write_bytes(tiny_supernet.with_suffix(suffix).read_bytes())
    meta = json.loads((tmp_path / "bad.json").read_text())
    meta["space"]["head"] = 24
    (tmp_path / "bad.json").write_text(json.dumps(meta))
    with pytest.raises(LeanmlError, match="do not match the space in its sidecar"):
        load_supernet(bad)


def test_a_subnet_keeps_its_resolution_through_quantize_and_deploy(tmp_path, tiny_supernet, fake_data, space,
                                                                   monkeypatch):  # fmt: skip
    from typer.testing import CliRunner

    from leanml.cli.quantize import app
    from leanml.deploy.engine import DeployConfig, deploy
    from leanml.quant import IntegerModel

    monkeypatch.setenv("LEANML_CACHE", str(tmp_path / "cache"))
    arch = space.smallest()
    r = arch.resolution
    assert r != 28
    export_subnet(tiny_supernet, arch, tmp_path / "best", fmnist(fake_data), FAST, threads=1)
    ckpt = load_checkpoint(tmp_path / "best")
    args = ["linear", str(tmp_path / "best"), "--out", str(tmp_path / "int8"), "--data", str(fake_data),
            "--calibration-images", "32", "--eval-subset", "32", "--threads", "1"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    imodel = IntegerModel.load(tmp_path / "int8")
    assert imodel.input == ckpt.meta["input"] and imodel.input_shape == (1, r, r)
    dep = deploy(imodel, DeployConfig())
    assert dep.input_shape == (1, r, r)
    prof = profile_model(ckpt.model, (1, r, r), measure=False)
    assert dep.graph.macs() <= prof.macs  # built at the searched resolution, not at 28x28
    with pytest.raises(LeanmlError, match="deploy refuses a mismatch"):
        deploy(imodel, DeployConfig(input_shape=[1, 28, 28]))
