"""Channel pruning on hand-written graphs: each prunes exactly (pruned == original with removed channels zeroed) or
refuses with a LeanmlError naming the fx node."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.prune.channel import ChannelPruneConfig, prune_channels_
from leanml.prune.depgraph import member_index, permute_channels_, trace_channel_groups
from tests.conftest import randomize_bn

SHAPE = (3, 16, 16)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    """A 1x1 conv, global mean, linear classifier: the consumer after each pattern."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(cin, 6, 1), nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean([2, 3]))


class CatBN(nn.Module):
    """1. BN and ReLU over the concat of two conv branches."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 6, 3, padding=1)
        self.bn, self.head = nn.BatchNorm2d(14), Head(14)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1))))


class CatDepthwise(nn.Module):
    """2. A depthwise conv (and its BN) on a concat."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv_bn(3, 8), conv_bn(3, 6)
        self.dw, self.bn, self.head = nn.Conv2d(14, 14, 3, padding=1, groups=14), nn.BatchNorm2d(14), Head(14)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu6(self.bn(self.dw(torch.cat([self.a(x), self.b(x)], dim=-3)))))


class Shared(nn.Module):
    """3. One conv (and one BN) called on two tensors: both calls' inputs are coupled."""

    def __init__(self) -> None:
        super().__init__()
        self.s1, self.s2 = conv_bn(3, 8), conv_bn(3, 8, stride=2)
        self.conv, self.bn, self.head = nn.Conv2d(8, 10, 3, padding=1), nn.BatchNorm2d(10), Head(20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.bn(self.conv(self.s1(x)))
        y2 = F.interpolate(self.bn(self.conv(self.s2(x))), scale_factor=2.0)
        return self.head(torch.cat([y1, y2], 1))


class Scalars(nn.Module):
    """4a. Element-wise ops with python scalars."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.head = conv_bn(3, 8), conv_bn(8, 8), Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x) * 0.5
        y = -((y + 1) / 2)
        y = 1.0 - self.c2(y)
        return self.head(y.sub(0.25))


class Gamma(nn.Module):
    """4b. A (1, C, 1, 1) parameter (layer scale) on a residual branch, and a (C,) one on a linear's features."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.c = conv_bn(3, 8), conv_bn(8, 8)
        self.gamma = nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)
        self.fc1, self.scale, self.fc2 = nn.Linear(8, 12), nn.Parameter(torch.rand(12) + 0.5), nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = y + self.c(y) * self.gamma
        return self.fc2(F.silu(self.fc1(torch.mean(y, dim=(2, 3))) * self.scale))


class SELinear(nn.Module):
    """5a. Squeeze-excite gate with Linear layers, broadcast back over H, W by indexing."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.fc1, self.fc2, self.head = conv_bn(3, 8), nn.Linear(8, 6), nn.Linear(6, 8), Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x)
        n = y.size(0)
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(y, 1).flatten(1)))))
        return self.head(y * g.view(n, -1)[:, :, None, None])


class SEConv(nn.Module):
    """5b. Squeeze-excite gate with 1x1 convs (MobileNetV3 style, hardswish)."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.head = conv_bn(3, 8), Head(8)
        self.se1, self.se2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.hardswish(self.c(x))
        g = torch.sigmoid(self.se2(F.relu(self.se1(nn.functional.adaptive_avg_pool2d(y, 1)))))
        return self.head(g * y)


class UpsampleSkip(nn.Module):
    """6. A U-net step: downsample, upsample (function and module), concat with the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.down, self.mid = conv_bn(3, 8), conv_bn(8, 12, stride=2), conv_bn(12, 10, stride=2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = Head(8 + 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        y = F.interpolate(self.up(self.mid(self.down(skip))), size=skip.shape[2:], mode="bilinear")
        return self.head(torch.cat([skip, y], 1))


class ViewRoundTrip(nn.Module):
    """7. Reshapes that keep the channel axis, then a flatten of C x H x W into a linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = conv_bn(3, 8), conv_bn(8, 6, stride=4)
        self.fc = nn.Linear(6 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        n, c, h, w = y.shape
        y = y.view(n, c, h * w)
        y = y.reshape(n, c, h, w).contiguous()
        return self.fc(self.c2(y).view(x.size(0), -1))


def zeroed_reference(original: nn.Module, kept: dict[str, list[int]], shape: tuple[int, ...]) -> nn.Module:
    """The original with the input columns that read removed channels zeroed in every consumer.

    Removed channels then contribute nothing downstream, whatever BN biases or gates sit between
    producer and consumer: the exact equivalent of removing them.
    """
    ref = copy.deepcopy(original)
    modules = dict(ref.named_modules())
    with torch.no_grad():
        for g in trace_channel_groups(ref, shape):
            idx = next((kept[p] for p in g.producers if p in kept), None)
            if idx is None:
                continue
            removed = torch.tensor(sorted(set(range(g.size)) - set(idx)), dtype=torch.long)
            for name, offset, repeat in g.consumers:
                weight = modules[name].weight
                assert isinstance(weight, torch.Tensor)
                weight[:, member_index(offset, repeat, removed)] = 0
    return ref


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "net", [CatBN, CatDepthwise, Shared, Scalars, Gamma, SELinear, SEConv, UpsampleSkip, ViewRoundTrip]
)
def test_pruned_user_graph_equals_original_with_removed_channels_zeroed(net: type[nn.Module]) -> None:
    original = randomize_bn(net())
    cfg = ChannelPruneConfig(ratio=0.5, importance="l1", input_shape=list(SHAPE))
    pruned = copy.deepcopy(original)
    kept = prune_channels_(pruned, cfg)
    assert kept and n_params(pruned) < n_params(original)
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        diff = (pruned(x) - zeroed_reference(original, kept, SHAPE)(x)).abs().max().item()
    assert diff < 1e-4, diff


@pytest.mark.parametrize("net", [CatBN, CatDepthwise, Shared, Gamma, SELinear, SEConv, UpsampleSkip])
def test_permuting_every_group_of_a_user_graph_keeps_the_function(net: type[nn.Module]) -> None:
    model = randomize_bn(net())
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        before = model(x)
    modules = dict(model.named_modules())
    for group in trace_channel_groups(model, SHAPE):
        if not group.fixed:
            permute_channels_(group, modules, torch.randperm(group.size))
    with torch.no_grad():
        assert (model(x) - before).abs().max() < 1e-4


@pytest.mark.parametrize("importance", ["l2", "bn", "taylor", "l1_input"])
def test_every_importance_prunes_a_concat_with_offsets(importance: str) -> None:
    original = randomize_bn(CatDepthwise())
    cfg = ChannelPruneConfig(ratio=0.5, importance=importance, input_shape=list(SHAPE))
    batches = [(torch.randn(4, *SHAPE), torch.randint(0, 4, (4,)))]
    pruned = copy.deepcopy(original)
    kept = prune_channels_(pruned, cfg, batches=batches)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert (pruned(x) - zeroed_reference(original, kept, SHAPE)(x)).abs().max() < 1e-4


def test_shared_module_couples_both_callers_and_gates_couple_their_input() -> None:
    groups = trace_channel_groups(Shared(), SHAPE)
    assert any({"s1.0", "s2.0"} <= set(g.producers) for g in groups)
    (se,) = [g for g in trace_channel_groups(SEConv(), SHAPE) if "se2" in g.producers]
    assert "c.0" in se.producers and not se.fixed
    (gamma,) = [g for g in trace_channel_groups(Gamma(), SHAPE) if ("gamma", 1, 0, 1) in g.params]
    assert {"stem.0", "c.0"} <= set(gamma.producers)


class Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.head = conv_bn(3, 8), Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x)
        n, c, h, w = y.shape
        return self.head(y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w))


class HardCoded(Shuffle):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c(x).view(-1, 8, 256).view(-1, 8, 16, 16))


class ChannelSum(Shuffle):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x)
        y = y * y.sum(1, keepdim=True) / y.mean() + y.softmax(1) + y.softmax(dim=-1)
        return self.head(y).log_softmax(-1)


def test_channel_mixing_reductions_and_softmax_keep_their_inputs() -> None:
    original = randomize_bn(ChannelSum())
    pruned = copy.deepcopy(original)
    kept = prune_channels_(pruned, ChannelPruneConfig(ratio=0.5, importance="l1", input_shape=list(SHAPE)))
    assert "c.0" not in kept and pruned.head.conv.out_channels == 3
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert (pruned(x) - zeroed_reference(original, kept, SHAPE)(x)).abs().max() < 1e-4


class AddMismatch(Shuffle):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv_bn(3, 4), conv_bn(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c(x) + torch.cat([self.a(x), self.b(x)], 1))


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (Shuffle, r"fx node 'view'.*mixing the channel axis"),
        (HardCoded, r"fx node 'view'.*hard-codes 8"),
        (AddMismatch, r"fx node 'add'.*split differently"),
    ],
)
def test_graphs_that_mix_channels_are_refused_naming_the_node(net: type[nn.Module], match: str) -> None:
    with pytest.raises(LeanmlError, match=match):
        prune_channels_(net(), ChannelPruneConfig(ratio=0.5, input_shape=list(SHAPE)))


class FlatBN1d(nn.Module):
    """BN1d over flattened C x H x W features (each channel repeated H*W times), an affine-free BN on a concat,
    keyword arguments, and a tuple output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv_bn(3, 4, stride=4), conv_bn(3, 4, stride=4)
        self.bn, self.bn1d, self.fc = nn.BatchNorm2d(8), nn.BatchNorm1d(8 * 16), nn.Linear(8 * 16, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.relu(input=self.bn(torch.cat(tensors=[self.a(x), self.b(x)], dim=1)))
        out = self.fc(self.bn1d(torch.flatten(y, 1)))
        return out, out.softmax(-1)


@pytest.mark.parametrize("importance", ["l1", "bn"])
def test_repeated_features_affine_free_norms_and_keyword_calls(importance: str) -> None:
    original = randomize_bn(FlatBN1d())
    original.bn = nn.BatchNorm2d(8, affine=False).eval()
    with torch.no_grad():
        original.bn.running_mean.uniform_(-0.5, 0.5)
        original.bn.running_var.uniform_(0.3, 3.0)
    pruned = copy.deepcopy(original)
    kept = prune_channels_(pruned, ChannelPruneConfig(ratio=0.5, importance=importance, input_shape=list(SHAPE)))
    assert pruned.bn1d.num_features == 4 * 16 and pruned.fc.out_features == 4
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert (pruned(x)[0] - zeroed_reference(original, kept, SHAPE)(x)[0]).abs().max() < 1e-4


class Chunk(Shuffle):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.c(x).chunk(2, dim=1)
        return self.head(torch.cat([b, a], 1))


class ChannelSlice(Shuffle):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x)
        return self.head(torch.cat([y[:, :4], y[:, 4:]], 1))


class LeNetView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.fc = conv_bn(3, 8, stride=4), nn.Linear(8 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.c(x).view(-1, 8 * 16))


class LinearOnMaps(Shuffle):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc(self.c(x)))


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (Chunk, r"fx node 'getitem'.*'chunk' is not a single tensor"),
        (ChannelSlice, r"fx node 'getitem'.*batch or channel axis"),
        (LeNetView, r"fx node 'view'.*hard-codes 128"),
        (LinearOnMaps, r"fx node 'fc'.*last axis of a 4-d tensor"),
    ],
)
def test_unsupported_ops_are_refused_naming_the_node(net: type[nn.Module], match: str) -> None:
    with pytest.raises(LeanmlError, match=match):
        prune_channels_(net(), ChannelPruneConfig(ratio=0.5, input_shape=list(SHAPE)))
