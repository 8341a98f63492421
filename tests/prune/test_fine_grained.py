import pytest
import torch

from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.prune import FineGrainedConfig, magnitude_mask, nm_mask, prune_fine_grained_, sparse_size
from leanml.train.finetune import FinetuneConfig, finetune


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_exact_count_removed_and_they_are_the_smallest(sparsity):
    w = torch.randn(64, 33)
    mask = magnitude_mask(w, sparsity)
    assert int((~mask).sum()) == round(w.numel() * sparsity)
    if sparsity > 0:
        assert w[~mask].abs().max() <= w[mask].abs().min()


def test_per_layer_dict_and_exclusions_are_respected():
    model = build_model("vgg")
    cfg = FineGrainedConfig(sparsity={"features.0": 0.2, "classifier": 0.8}, exclude=["features.0"])
    masks = prune_fine_grained_(model, cfg)
    assert set(masks.masks) == {"classifier"}
    assert abs(masks.report(model).layers[0].sparsity - 0.8) < 1e-3
    assert (model.features[0].weight != 0).all()


def test_global_ranking_prunes_small_layers_more():
    model = build_model("vgg")
    with torch.no_grad():
        model.classifier.weight.mul_(0.01)  # a layer of tiny weights
    report = prune_fine_grained_(model, FineGrainedConfig(sparsity=0.5, scope="global")).report(model)
    by_name = {r.name: r.sparsity for r in report.layers}
    assert by_name["classifier"] > 0.99 and abs(report.sparsity - 0.5) < 1e-3


def test_masks_survive_optimizer_steps_with_momentum_and_weight_decay():
    model = build_model("vgg", layers=[8, "M", 16, "M"])
    masks = prune_fine_grained_(model, FineGrainedConfig(sparsity=0.7))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        masks.apply_(model)
        for name, mask in masks.masks.items():
            assert (dict(model.named_modules())[name].weight[~mask] == 0).all()


def test_finetune_keeps_sparsity(fake_data):
    from leanml.data import load_split

    model = build_model("vgg", layers=[8, "M", 16, "M"])
    masks = prune_fine_grained_(model, FineGrainedConfig(sparsity=0.6))
    finetune(model, load_split("train", fake_data, 128), FinetuneConfig(epochs=1, lr=0.05, batch_size=32),
             after_step=masks.apply_, progress=False)  # fmt: skip
    assert abs(masks.report(model).sparsity - 0.6) < 1e-3


def test_two_four_pattern_and_its_size():
    w = torch.randn(8, 16)
    mask = nm_mask(w, 2, 4)
    assert (mask.reshape(8, 4, 4).sum(-1) == 2).all()
    size = sparse_size(w * mask, value_bits=8, nm=4)
    # 2 bits of position per kept value cost exactly what a 1-bit-per-element mask costs at 50%
    assert size.nm_bits == size.bitmask_bits == 64 * (8 + 2)
    model = build_model("vgg", layers=[8, "M"])
    report = prune_fine_grained_(model, FineGrainedConfig(pattern="n:m", exclude=["features.0"])).report(model)
    assert abs(report.sparsity - 0.5) < 1e-6


def test_sparse_size_counts_index_bits_honestly():
    w = torch.zeros(10, 100)
    w[:, :10] = 1.0  # 90% sparse
    s = sparse_size(w, 32)
    assert s.bitmask_bits == 1000 + 100 * 32
    assert s.csr_bits == 100 * (32 + 7) + 11 * 7
    assert s.best_bits < s.dense_bits and s.best_bits > 100 * 32  # never just "nonzeros x 32"
    model = build_model("vgg")
    report = prune_fine_grained_(model, FineGrainedConfig(sparsity=0.9)).report(model)
    assert report.sparse_bytes < 0.25 * report.dense_bytes


def test_bad_input():
    with pytest.raises(LeanmlError, match=r"sparsity 1\.0 .* outside \[0, 1\)"):
        FineGrainedConfig(sparsity=1.0)
    with pytest.raises(LeanmlError, match=r"unknown layer name.*prunable layers: features\.0"):
        prune_fine_grained_(build_model("vgg"), FineGrainedConfig(sparsity={"features.99": 0.5}))
    with pytest.raises(LeanmlError, match="multiple of M=4"):
        nm_mask(torch.randn(4, 6), 2, 4)
    with pytest.raises(LeanmlError, match="one sparsity, not one per layer"):
        FineGrainedConfig(sparsity={"a": 0.5}, scope="global")


def test_distilled_finetune_keeps_masks_and_learns(fake_data):
    from leanml.data import load_split
    from leanml.train import evaluate

    teacher = build_model("vgg", layers=[8, "M", 16, "M"])
    train_set = load_split("train", fake_data)
    finetune(teacher, train_set, FinetuneConfig(epochs=2, lr=0.05, batch_size=32, augment=False), progress=False)
    student = build_model("vgg", layers=[8, "M", 16, "M"])
    student.load_state_dict(teacher.state_dict())
    masks = prune_fine_grained_(student, FineGrainedConfig(sparsity=0.8))
    pruned_acc = evaluate(student, load_split("test", fake_data))[1]
    cfg = FinetuneConfig(epochs=1, lr=0.02, batch_size=32, augment=False, kd_alpha=1.0)  # soft targets only
    finetune(student, train_set, cfg, after_step=masks.apply_, progress=False, teacher=teacher)
    assert abs(masks.report(student).sparsity - 0.8) < 1e-3
    assert evaluate(student, load_split("test", fake_data))[1] > max(0.8, pruned_acc + 0.3)


def test_nm_leaves_layers_whose_input_is_not_a_multiple_of_m_dense():
    model = build_model("vgg", layers=[8, "M", 16, "M"])
    stem = model.features[0].weight.detach().clone()  # 1 channel, 3x3: input size 9
    masks = prune_fine_grained_(model, FineGrainedConfig(pattern="n:m"))
    assert masks.skipped == ["features.0"] and "features.0" not in masks.masks
    assert torch.equal(model.features[0].weight, stem)
    assert masks.report(model).layers[0].sparsity == 0.5
    with pytest.raises(LeanmlError, match=r"no selected layer.*multiple of M=4: features\.0"):
        cfg = FineGrainedConfig(pattern="n:m", exclude=["classifier"])
        prune_fine_grained_(build_model("vgg", layers=[8, "M"]), cfg)
