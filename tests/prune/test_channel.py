"""Channel pruning: the physically pruned model equals the original with those channels zeroed."""

import copy

import pytest
import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.profile import profile_model
from leanml.prune.channel import ChannelPruneConfig, prune_channels_
from leanml.prune.depgraph import trace_channel_groups
from tests.conftest import randomize_bn


def masked_reference(original: nn.Module, cfg: ChannelPruneConfig, shape: tuple[int, ...]) -> nn.Module:
    """The original with every removed channel zeroed at the output of each producer, BN and depthwise conv."""
    ref = copy.deepcopy(original)
    kept = prune_channels_(copy.deepcopy(original), cfg)
    groups = trace_channel_groups(ref, shape)
    modules = dict(ref.named_modules())
    for g in groups:
        kept_idx = next((kept[p] for p in g.producers if p in kept), None)
        if kept_idx is None:
            continue
        mask = torch.zeros(g.size)
        mask[kept_idx] = 1.0
        for name in g.producers + g.norms + g.depthwise:
            view = (1, -1) + (1,) * (2 if isinstance(modules[name], nn.Conv2d | nn.BatchNorm2d) else 0)
            modules[name].register_forward_hook(lambda m, i, o, mask=mask, view=view: o * mask.view(view))
    return ref


class ConcatGrouped(nn.Module):
    """Two branches concatenated, a grouped conv (fixed), a depthwise conv, then a flatten of 4x4 maps."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.mix = nn.Conv2d(14, 12, 1)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=3)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(12 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = self.dw(self.grouped(torch.relu(self.mix(y))))
        return self.fc(torch.flatten(self.pool(y), 1))


class ConcatFlatten(nn.Module):
    """Concatenated branches feed a flatten of 3x3 maps into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 6, 3, stride=3)
        self.b = nn.Conv2d(1, 4, 3, stride=3)
        self.fc = nn.Linear(10 * 9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).flatten(1))


@pytest.mark.parametrize(("name", "ratio"), [("vgg", 0.3), ("vgg", 0.5), ("resnet", 0.3), ("mobilenetv2", 0.4)])
def test_pruned_reference_models_equal_masked_originals(name, ratio):
    torch.manual_seed(0)
    original = randomize_bn(build_model(name))
    cfg = ChannelPruneConfig(ratio=ratio)
    pruned = copy.deepcopy(original)
    prune_channels_(pruned, cfg)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked_reference(original, cfg, (1, 28, 28))(x), atol=1e-4)
    assert profile_model(pruned, measure=False).macs < profile_model(original, measure=False).macs


@pytest.mark.parametrize(("net", "shape"), [(ConcatGrouped, (3, 8, 8)), (ConcatFlatten, (1, 9, 9))])
def test_concat_grouped_and_flatten(net, shape):
    torch.manual_seed(0)
    original = randomize_bn(net())
    cfg = ChannelPruneConfig(ratio=0.5, input_shape=list(shape))
    pruned = copy.deepcopy(original)
    prune_channels_(pruned, cfg)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked_reference(original, cfg, shape)(x), atol=1e-5)


def test_classifier_output_and_input_are_never_pruned():
    model = build_model("mobilenetv2")
    prune_channels_(model, ChannelPruneConfig(ratio=0.5))
    assert model.classifier.out_features == 10 and model.stem[0].in_channels == 1


def test_errors():
    with pytest.raises(LeanmlError, match=r"outside \[0, 1\)"):
        ChannelPruneConfig(ratio=1.0)
    with pytest.raises(LeanmlError, match="would remove every channel"):
        prune_channels_(build_model("vgg", layers=[1, "M"]), ChannelPruneConfig(ratio=0.9))
    with pytest.raises(LeanmlError, match="does not support layer"):
        prune_channels_(nn.Sequential(nn.Conv2d(1, 4, 3), nn.LayerNorm([4, 26, 26])), ChannelPruneConfig())
