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
        for name in g.producers + [m[0] for m in g.norms + g.depthwise]:
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


def labelled_batches(n: int = 2, shape: tuple[int, ...] = (1, 28, 28)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(8, *shape, generator=gen), torch.randint(0, 10, (8,), generator=gen)) for _ in range(n)]


@pytest.mark.parametrize("importance", ["l1", "bn", "taylor"])
@pytest.mark.parametrize("name", ["resnet", "mobilenetv2"])
def test_every_importance_gives_an_equivalent_pruned_model(name, importance):
    torch.manual_seed(0)
    original = randomize_bn(build_model(name)).eval()
    cfg = ChannelPruneConfig(ratio=0.4, importance=importance)
    batches = labelled_batches()
    pruned = copy.deepcopy(original)
    kept = prune_channels_(pruned, cfg, batches=batches)
    ref = copy.deepcopy(original)
    masked = masked_reference_from(ref, kept, (1, 28, 28))
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked(x), atol=1e-4)


def masked_reference_from(ref: nn.Module, kept: dict[str, list[int]], shape: tuple[int, ...]) -> nn.Module:
    modules = dict(ref.named_modules())
    for g in trace_channel_groups(ref, shape):
        idx = next((kept[p] for p in g.producers if p in kept), None)
        if idx is None:
            continue
        mask = torch.zeros(g.size)
        mask[idx] = 1.0
        for name in g.producers + [m[0] for m in g.norms + g.depthwise]:
            view = (1, -1) + (1,) * (2 if isinstance(modules[name], nn.Conv2d | nn.BatchNorm2d) else 0)
            modules[name].register_forward_hook(lambda m, i, o, mask=mask, view=view: o * mask.view(view))
    return ref


def test_taylor_keeps_the_channels_that_change_the_loss_most():
    torch.manual_seed(0)
    model = randomize_bn(build_model("vgg", layers=[8, "M"])).eval()
    batches = labelled_batches()
    kept = prune_channels_(copy.deepcopy(model), ChannelPruneConfig(ratio=0.5, importance="taylor"), batches=batches)
    base = sum(nn.functional.cross_entropy(model(x), y).item() for x, y in batches)
    deltas = []
    for c in range(8):  # loss change when channel c is removed (its batch norm output zeroed)
        probe = copy.deepcopy(model)
        with torch.no_grad():
            probe.features[1].weight[c] = 0
            probe.features[1].bias[c] = 0
        deltas.append(abs(sum(nn.functional.cross_entropy(probe(x), y).item() for x, y in batches) - base))
    top = set(torch.tensor(deltas).argsort(descending=True)[:4].tolist())
    assert len(top & set(kept["features.0"])) >= 3  # first order: mostly the same channels


def test_layer_ratios_prune_only_the_named_layers():
    model = build_model("vgg")
    prune_channels_(model, ChannelPruneConfig(ratio=0.0, layer_ratios={"features.3": 0.5}))
    assert model.features[3].out_channels == 16 and model.features[0].out_channels == 32
    with pytest.raises(LeanmlError, match="no prunable output channels"):
        prune_channels_(build_model("vgg"), ChannelPruneConfig(layer_ratios={"classifier": 0.5}))
    with pytest.raises(LeanmlError, match="unknown layer"):
        prune_channels_(build_model("vgg"), ChannelPruneConfig(layer_ratios={"nope": 0.5}))
    with pytest.raises(LeanmlError, match="conflicting ratios"):
        prune_channels_(build_model("resnet"), ChannelPruneConfig(layer_ratios={"stem.0": 0.2, "blocks.0.conv2": 0.5}))


@pytest.mark.parametrize("name", ["vgg", "resnet", "mobilenetv2"])
def test_target_macs_is_met_and_matches_the_profiler(name):
    model = build_model(name)
    dense = profile_model(model, measure=False).macs
    prune_channels_(model, ChannelPruneConfig(target_macs=0.5))
    macs = profile_model(model, measure=False).macs
    assert 0.44 * dense <= macs <= 0.5 * dense


def test_pruned_vgg_macs_match_a_hand_count():
    model = build_model("vgg")
    prune_channels_(model, ChannelPruneConfig(ratio=0.5))
    hand, size = 0, 28
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            size //= 2
        elif isinstance(layer, nn.Conv2d):  # 3x3, padding 1: output size = input size
            hand += layer.out_channels * layer.in_channels * 9 * size * size
    hand += sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    assert profile_model(model, measure=False).macs == hand


def test_pruned_model_saves_and_reloads_from_its_spec(tmp_path):
    from leanml.train import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = randomize_bn(build_model("mobilenetv2")).eval()
    prune_channels_(model, ChannelPruneConfig(ratio=0.3))
    prune_channels_(model, ChannelPruneConfig(target_macs=0.8, importance="bn"))  # pruning twice replays twice
    save_checkpoint(tmp_path / "m", model)
    loaded = load_checkpoint(tmp_path / "m").model
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    meta = (tmp_path / "m.json").read_text()
    assert '"channel_prune"' in meta


def test_corrupt_pruning_history_is_a_clear_error(tmp_path):
    import json

    from leanml.artifact import atomic_write
    from leanml.train import load_checkpoint, save_checkpoint

    model = build_model("vgg")
    prune_channels_(model, ChannelPruneConfig(ratio=0.5))
    save_checkpoint(tmp_path / "m", model)
    meta_path = tmp_path / "m.json"
    doc = json.loads(meta_path.read_text())
    doc["model"]["transforms"][0]["kept"]["features.0"] = [0, 0, 99]
    atomic_write(meta_path, lambda p: p.write_text(json.dumps(doc)))
    with pytest.raises(LeanmlError, match=r"kept channel indices|does not fit"):
        load_checkpoint(tmp_path / "m")


def test_taylor_without_batches_and_impossible_mac_targets_are_errors():
    with pytest.raises(LeanmlError, match="labelled batches"):
        prune_channels_(build_model("vgg"), ChannelPruneConfig(importance="taylor"))
    with pytest.raises(LeanmlError, match="target_macs"):
        ChannelPruneConfig(target_macs=0.0)
    all_excluded = ["features.0", "features.3", "features.7", "features.10", "features.14", "features.17"]
    with pytest.raises(LeanmlError, match="no uniform ratio"):
        prune_channels_(build_model("vgg"), ChannelPruneConfig(target_macs=0.5, exclude=all_excluded))
