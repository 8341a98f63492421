import torch

from leanml.models import build_model
from leanml.models.mobilenetv2 import BlockSpec, MobileNetV2, MobileNetV2Config
from leanml.nas.subnet import NasNetConfig
from tests.conftest import randomize_bn


def test_the_zoo_model_is_the_nas_subnet_at_fixed_choices():
    zoo = randomize_bn(build_model("mobilenetv2"))
    specs = MobileNetV2Config().block_specs()
    assert all(isinstance(s, BlockSpec) and s.kernel == 3 for s in specs)
    cfg = NasNetConfig(stem=16, blocks=[[s.kernel, s.hidden, s.cout, s.stride] for s in specs], head=256)
    assert cfg.plan() == specs  # same blocks, expansion included
    sub = build_model("nas_mbv2", **cfg.to_dict()).eval()
    assert type(sub) is type(zoo) is MobileNetV2
    sub.load_state_dict(zoo.state_dict(), strict=True)  # same state-dict keys: checkpoints of either load
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(sub(x), zoo(x))


def test_pruned_hidden_width_keeps_the_expand_conv():
    # a pruned block may end at its input width: it still has its 1x1 expand conv (expand ratio 4)
    model = build_model("mobilenetv2", hidden_channels=[16, 16, 24, 24, 32, 32, 64])
    assert len(model.blocks[1].conv) == 8 and model.blocks[1].conv[0].out_channels == 16
    assert len(model.blocks[0].conv) == 5  # expand ratio 1: no expand conv
