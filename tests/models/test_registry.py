import pytest
import torch

from leanml.errors import LeanmlError
from leanml.models import ModelSpec, available_models, build_from_spec, build_model, model_spec

NAMES = ["vgg", "resnet", "mobilenetv2"]


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_spec_round_trip(name):
    model = build_model(name).eval()
    x = torch.randn(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    spec = ModelSpec.from_dict(model_spec(model).to_dict())
    clone = build_from_spec(spec).eval()
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone(x), model(x))


def test_registry_lists_reference_models():
    assert set(NAMES) <= set(available_models())


def test_unknown_model_lists_the_choices():
    with pytest.raises(LeanmlError, match=r"choose one of: .*mobilenetv2.*resnet.*vgg"):
        build_model("alexnet")


def test_bad_configs_are_rejected():
    with pytest.raises(LeanmlError, match="vgg layer"):
        build_model("vgg", layers=[32, "P"])
    with pytest.raises(LeanmlError, match="mid_channels needs 6"):
        build_model("resnet", mid_channels=[8])
    with pytest.raises(LeanmlError, match="expand ratio 1"):
        build_model("mobilenetv2", hidden_channels=[8] * 7)
    with pytest.raises(LeanmlError, match="unknown VGGConfig field"):
        build_model("vgg", depth=3)


def test_resnet_has_strided_projection_shortcuts():
    model = build_model("resnet")
    projections = [b for b in model.blocks if len(b.shortcut) > 0]
    assert len(projections) == 2
    assert all(b.shortcut[0].stride == (2, 2) and b.shortcut[0].kernel_size == (1, 1) for b in projections)


def test_mobilenetv2_blocks():
    model = build_model("mobilenetv2")
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert any(b.use_residual for b in model.blocks) and not all(b.use_residual for b in model.blocks)
    assert any(isinstance(m, torch.nn.ReLU6) for m in model.modules())


def test_pruned_widths_are_expressible():
    model = build_model("mobilenetv2", hidden_channels=[16] + [8] * 6)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    resnet = build_model("resnet", mid_channels=[4, 5, 6, 7, 8, 9])
    assert resnet.blocks[5].conv1.out_channels == 9


def test_checkpoints_of_built_in_providers_load_in_a_fresh_process(tmp_path):
    """nas_mbv2 (registered by leanml.nas) and channel_prune (leanml.prune) load where neither was imported."""
    import subprocess
    import sys

    from leanml.prune import ChannelPruneConfig, prune_channels_
    from leanml.train import save_checkpoint

    pruned = build_model("vgg")
    prune_channels_(pruned, ChannelPruneConfig(ratio=0.5))
    save_checkpoint(tmp_path / "pruned", pruned, {})
    save_checkpoint(tmp_path / "nas", build_model("nas_mbv2"), {})
    code = (
        "import sys\nfrom leanml.train import load_model\n"
        "assert 'leanml.nas' not in sys.modules and 'leanml.prune' not in sys.modules\n"
        f"for name in ('pruned', 'nas'):\n    load_model({str(tmp_path)!r} + '/' + name)\nprint('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
