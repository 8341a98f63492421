"""Zoo models of any channels/resolution/width, the baselines still load, and user factories round-trip."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from leanml.errors import LeanmlError
from leanml.models import build_from_spec, build_model, input_shape_of, model_spec
from leanml.train import load_checkpoint, load_model, save_checkpoint

BASELINES = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"
PARAMS = {"vgg": 288_170, "resnet": 174_970, "mobilenetv2": 96_362}  # benchmarks/baselines.md


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_defaults_unchanged_and_baselines_load(name: str) -> None:
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert input_shape_of(model) == (1, 28, 28)
    loaded = load_model(BASELINES / name)
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_any_channels_resolution_and_width(name: str) -> None:
    model = build_model(name, in_channels=3, num_classes=4, resolution=32, width=0.5).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    assert input_shape_of(model) == (3, 32, 32)
    assert sum(p.numel() for p in model.parameters()) < PARAMS[name] / 2
    assert build_from_spec(model_spec(model)).state_dict().keys() == model.state_dict().keys()


def test_bad_width_and_too_small_resolution() -> None:
    with pytest.raises(LeanmlError, match="width"):
        build_model("resnet", width=0)
    with pytest.raises(LeanmlError, match="max-pools"):
        build_model("vgg", resolution=4)


FACTORY = """
    import torch
    from torch import nn

    def tiny(channels: int = 3, classes: int = 2, hidden: int = 4) -> nn.Module:
        return nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(hidden, classes))

    def not_a_model() -> int:
        return 3

    def unannotated(channels=3):
        return nn.Conv2d(channels, 2, 1)

    def lies() -> nn.Module:
        return 3
"""


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[str]:
    """A module ``leanml_user_nets`` on sys.path holding the factory ``tiny``."""
    name = "leanml_user_nets"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FACTORY))
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_user_factory_round_trip(user_module: str, tmp_path: Path) -> None:
    ref = f"{user_module}:tiny"
    model = build_model(ref, channels=1, hidden=6)
    assert model_spec(model).name == ref and model_spec(model).config == {"channels": 1, "hidden": 6}
    save_checkpoint(tmp_path / "ckpt", model, input={"shape": [1, 8, 8], "mean": [0.5], "std": [0.5]})
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.meta["input"]["shape"] == [1, 8, 8]
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(ckpt.model(x), model.eval()(x))


def test_user_factory_errors(user_module: str) -> None:
    with pytest.raises(LeanmlError, match=r"cannot import module 'no_such_pkg_xyz.nets'.*PYTHONPATH"):
        build_model("no_such_pkg_xyz.nets:tiny")
    with pytest.raises(LeanmlError, match="has no 'missing'"):
        build_model(f"{user_module}:missing")
    for name in ("not_a_model", "unannotated"):
        with pytest.raises(LeanmlError, match=r"not a model factory.*-> nn\.Module"):
            build_model(f"{user_module}:{name}")
    with pytest.raises(LeanmlError, match=r"not a torch nn\.Module"):
        build_model(f"{user_module}:lies")
    with pytest.raises(LeanmlError, match="not JSON data"):
        build_model(f"{user_module}:tiny", channels=torch.tensor(1))
    with pytest.raises(LeanmlError, match="input shape"):
        input_shape_of(build_model(f"{user_module}:tiny"))


def test_a_checkpoint_cannot_choose_a_function_to_call(user_module: str, tmp_path: Path) -> None:
    """A hostile sidecar naming ``subprocess:run`` with arguments is refused before anything is called."""
    save_checkpoint(tmp_path / "ckpt", build_model(f"{user_module}:tiny"), input=None)
    sidecar = tmp_path / "ckpt.json"
    doc = json.loads(sidecar.read_text())
    doc["model"] = {"name": "subprocess:run", "config": {"args": ["touch", str(tmp_path / "pwned")]}, "transforms": []}
    sidecar.write_text(json.dumps(doc))
    with pytest.raises(LeanmlError, match="not a model factory"):
        load_checkpoint(tmp_path / "ckpt")
    assert not (tmp_path / "pwned").exists()
