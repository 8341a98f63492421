import pytest
import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant.bn_fold import fold_bn
from leanml.quant.plan import build_plan


def test_vgg_plan_fuses_relu_into_convs():
    plan = build_plan(fold_bn(build_model("vgg")))
    convs = [s for s in plan.steps if s.kind == "conv"]
    assert len(convs) == 6 and all(s.act == "relu" for s in convs)
    assert [s.kind for s in plan.steps][-3:] == ["avgpool", "flatten", "linear"]
    assert plan.output == plan.steps[-1].output


def test_resnet_plan_keeps_residual_inputs_and_fuses_relu_after_add():
    plan = build_plan(fold_bn(build_model("resnet")))
    adds = [s for s in plan.steps if s.kind == "add"]
    assert len(adds) == 6 and all(s.act == "relu" and len(s.inputs) == 2 for s in adds)
    # block 2 projects its shortcut with a strided 1x1 conv
    shortcut = plan.step_producing(adds[2].inputs[1])
    assert shortcut.kind == "conv" and shortcut.module.stride == (2, 2)


def test_mobilenetv2_plan_has_relu6_and_linear_bottlenecks():
    plan = build_plan(fold_bn(build_model("mobilenetv2")))
    acts = {s.act for s in plan.steps if s.kind == "conv"}
    assert acts == {"relu6", "none"}
    assert all(s.act == "none" for s in plan.steps if s.kind == "add")


def test_relu_read_twice_is_not_fused():
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return torch.relu(y) + y

    kinds = [(s.kind, s.act) for s in build_plan(Branch()).steps]
    assert kinds == [("input", "none"), ("conv", "none"), ("relu", "none"), ("add", "none")]


def test_unsupported_layers_are_named_with_the_supported_list():
    with pytest.raises(LeanmlError, match=r"unsupported layer '1' \(Sigmoid\).*supported: .*Conv2d"):
        build_plan(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()))
    with pytest.raises(LeanmlError, match="fold them first"):
        build_plan(build_model("vgg"))
    with pytest.raises(LeanmlError, match="dilation 1"):
        build_plan(nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)))
