import pytest
import torch
from torch import nn

from leanml.artifact import load_artifact, save_artifact
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant.kmeans import (
    Codebook,
    KMeansConfig,
    KMeansQuantizer,
    kmeans_codebook,
    kmeans_layers,
    kmeans_quantize_,
    kmeans_reconstruct,
    kmeans_storage_bits,
)

VGG_LAYERS = ["features.0", "features.3", "features.7", "features.10", "features.14", "features.17", "classifier"]


def distinct(t: torch.Tensor) -> int:
    return t.detach().unique().numel()


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_codebook_is_deterministic_and_has_at_most_2_to_the_bits_values():
    w = torch.randn(64, 32, 3, 3)
    c1, l1 = kmeans_codebook(w, 3, seed=7)
    c2, l2 = kmeans_codebook(w.clone(), 3, seed=7)
    assert torch.equal(c1, c2) and torch.equal(l1, l2)
    assert c1.shape == (8,) and l1.shape == w.shape and l1.dtype == torch.int64
    assert torch.all(c1[1:] >= c1[:-1])  # sorted
    assert distinct(kmeans_reconstruct(c1, l1)) <= 8


def test_converged_codebook_is_a_lloyd_fixed_point():
    w = torch.randn(5000)
    c, labels = kmeans_codebook(w, 3, iters=200)
    # labels are the nearest centroid, centroids the mean of their cluster
    assert torch.equal(labels, (w[:, None] - c[None, :]).abs().argmin(1))
    for k in range(8):
        assert torch.allclose(c[k], w[labels == k].mean(), atol=1e-6)


def test_reconstruction_error_falls_with_more_bits():
    w = torch.randn(20_000)
    errors = [(kmeans_reconstruct(*kmeans_codebook(w, b)) - w).pow(2).mean().item() for b in (2, 4, 8)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


def test_well_separated_clusters_are_recovered():
    centers = torch.tensor([-3.0, -1.0, 0.5, 4.0])
    w = (centers[torch.randint(4, (4000,))] + 0.01 * torch.randn(4000)).view(40, 100)
    c, labels = kmeans_codebook(w, 2)
    assert torch.allclose(c, centers, atol=0.01)
    assert torch.equal(c[labels].sub(w).abs().lt(0.1), torch.ones_like(w, dtype=torch.bool))


def test_fewer_distinct_values_than_clusters():
    w = torch.tensor([1.0, 1.0, 2.0, 2.0, 2.0])
    c, labels = kmeans_codebook(w, 4)
    assert c.shape == (16,)
    assert torch.equal(kmeans_reconstruct(c, labels), w)


def test_quantize_vgg_keeps_at_most_2_to_the_bits_values_per_layer():
    model = build_model("vgg")
    q = kmeans_quantize_(model, KMeansConfig(bits=3))
    assert list(q.codebooks) == VGG_LAYERS
    for name in VGG_LAYERS:
        w = model.get_submodule(name).weight
        assert distinct(w) <= 8
        assert torch.equal(w, q.codebooks[name].reconstruct())


def test_excluded_layers_are_untouched():
    model = build_model("vgg")
    before = weights(model)
    q = kmeans_quantize_(model, KMeansConfig(bits=2, exclude=["features.0", "classifier"]))
    assert "features.0" not in q.codebooks and "classifier" not in q.codebooks
    after = weights(model)
    for name in ("features.0.weight", "classifier.weight", "classifier.bias", "features.1.weight"):
        assert torch.equal(before[name], after[name])
    assert distinct(model.features[3].weight) <= 4


def test_per_layer_bits_dict_is_respected():
    model = build_model("vgg")
    before = weights(model)
    q = kmeans_quantize_(model, KMeansConfig(bits={"features.0": 1, "features.3": 2, "classifier": 5}))
    assert {n: cb.bits for n, cb in q.codebooks.items()} == {"features.0": 1, "features.3": 2, "classifier": 5}
    assert distinct(model.features[0].weight) <= 2
    assert distinct(model.features[3].weight) <= 4
    assert 4 < distinct(model.classifier.weight) <= 32
    assert torch.equal(before["features.7.weight"], model.features[7].weight)


def test_layer_types_select_linear_only():
    layers = kmeans_layers(build_model("vgg"), KMeansConfig(bits=4, layer_types=["linear"]))
    assert layers == {"classifier": 4}


def test_qat_keeps_shared_weights_and_updates_centroids_to_cluster_means():
    model = build_model("vgg", layers=[16, "M", 32, "M"])  # slim, so the SGD steps stay fast
    q = kmeans_quantize_(model, KMeansConfig(bits=2))
    labels = {n: cb.labels.clone() for n, cb in q.codebooks.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(10, (8,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        moved = {n: model.get_submodule(n).weight.detach().clone() for n in q.codebooks}
        assert any(distinct(w) > 4 for w in moved.values())  # the step broke the sharing
        q.qat_step_(model)
        for name, cb in q.codebooks.items():
            assert torch.equal(cb.labels, labels[name])
            for k in range(4):
                members = moved[name][cb.labels == k]
                if members.numel():
                    assert torch.allclose(cb.centroids[k], members.mean(), atol=1e-6)
            w = model.get_submodule(name).weight
            assert distinct(w) <= 4 and torch.equal(w, cb.reconstruct())


def test_storage_bits_of_a_small_linear_layer():
    assert kmeans_storage_bits(64, 2, 4) == 64 * 2 + 4 * 32
    layer = nn.Linear(16, 4)
    q = kmeans_quantize_(layer, KMeansConfig(bits=2))
    assert q.codebooks[""].storage_bits == 64 * 2 + 4 * 32
    report = q.report(layer)
    (row,) = report.layers
    assert (row.name, row.bits, row.numel, row.fp32_bits) == ("", 2, 64, 64 * 32)
    assert row.distinct <= 4
    assert q.size_bits(layer) == 64 * 2 + 4 * 32 + 4 * 32  # the bias stays fp32
    assert report.total_bytes == q.size_bits(layer) / 8 and report.fp32_bytes == (64 + 4) * 4
    assert report.to_dict()["layers"][0]["storage_bits"] == 256


def test_state_round_trips_through_an_artifact(tmp_path):
    model = build_model("vgg")
    q = kmeans_quantize_(model, KMeansConfig(bits={"features.3": 3, "classifier": 8}))
    tensors, meta = q.state()
    assert tensors["features.3.labels"].dtype == torch.uint8
    save_artifact(tmp_path / "codebooks", tensors, meta, kind="kmeans")
    loaded = KMeansQuantizer.from_state(*load_artifact(tmp_path / "codebooks", kind="kmeans"))
    other = build_model("vgg")  # different random init
    assert not torch.equal(other.classifier.weight, model.classifier.weight)
    loaded.apply_(other)
    for name in ("features.3", "classifier"):
        assert torch.equal(other.get_submodule(name).weight, model.get_submodule(name).weight)
        assert loaded.codebooks[name].bits == q.codebooks[name].bits


def test_from_state_rejects_mismatched_codebooks():
    cb = Codebook(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), bits=1)
    tensors, meta = KMeansQuantizer({"fc": cb}).state()
    meta["kmeans"]["layers"]["fc"] = 2
    with pytest.raises(LeanmlError, match="does not match 2 bits"):
        KMeansQuantizer.from_state(tensors, meta)
    with pytest.raises(LeanmlError, match="no k-means layers"):
        KMeansQuantizer.from_state(tensors, {})


def test_apply_to_a_different_architecture_is_an_error():
    q = kmeans_quantize_(build_model("vgg"), KMeansConfig(bits=2))
    with pytest.raises(LeanmlError, match="classifier"):
        q.apply_(build_model("vgg", num_classes=5))


@pytest.mark.parametrize("bits", [0, 9, -1, True, 2.5])
def test_bad_bits_are_rejected_naming_the_value(bits):
    with pytest.raises(LeanmlError, match=f"bits {bits!r}"):
        KMeansConfig(bits=bits)
    with pytest.raises(LeanmlError, match=f"bits {bits!r}"):
        KMeansConfig(bits={"classifier": bits})


def test_codebook_function_rejects_bad_bits():
    with pytest.raises(LeanmlError, match="bits 9"):
        kmeans_codebook(torch.randn(10), 9)


def test_bad_config_fields_are_rejected():
    with pytest.raises(LeanmlError, match=r"layer type.*'conv3x3'.*conv2d, linear"):
        KMeansConfig(layer_types=["conv3x3"])
    with pytest.raises(LeanmlError, match="iters"):
        KMeansConfig(iters=0)


@pytest.mark.parametrize(
    "config",
    [KMeansConfig(bits={"features.99": 4}), KMeansConfig(exclude=["clasifier"]), KMeansConfig(bits={"features.1": 4})],
)
def test_unknown_layer_names_list_the_valid_ones(config):
    # features.1 exists but is a BatchNorm, not a conv/linear layer
    with pytest.raises(LeanmlError, match=r"unknown layer name.*valid conv2d/linear layers: features\.0, .*classifier"):
        kmeans_quantize_(build_model("vgg"), config)


def test_config_round_trips_through_json():
    config = KMeansConfig(bits={"classifier": 8}, exclude=["features.0"], seed=3)
    assert KMeansConfig.from_dict(config.to_dict()) == config
