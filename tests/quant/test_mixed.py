import pytest
import torch

from leanml.data import load_split
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant import QuantSim, convert
from leanml.quant.mixed import (
    MixedPrecisionConfig,
    allocate_bits,
    mixed_precision,
    quantizable_layers,
    weight_size_bits,
)


def test_allocation_spends_bits_where_accuracy_is_sensitive():
    sens = {"robust": {2: 0.89, 4: 0.90, 8: 0.90}, "fragile": {2: 0.10, 4: 0.50, 8: 0.90}}
    numel = {"robust": 100, "fragile": 100}
    assert allocate_bits(sens, numel, budget_bits=100 * 2 + 100 * 8) == {"robust": 2, "fragile": 8}
    assert allocate_bits(sens, numel, budget_bits=10_000) == {"robust": 8, "fragile": 8}


def test_allocation_always_meets_the_budget_or_says_why():
    sens = {f"l{i}": {2: 0.5 + i / 100, 4: 0.8, 8: 0.9} for i in range(5)}
    numel = {f"l{i}": 50 * (i + 1) for i in range(5)}
    total = sum(numel.values())
    for budget in range(total * 2, total * 8 + 1, 97):
        bits = allocate_bits(sens, numel, budget)
        assert sum(numel[n] * b for n, b in bits.items()) <= budget
    with pytest.raises(LeanmlError, match=r"smallest achievable is \d+ bytes with 2-bit weights"):
        allocate_bits(sens, numel, total * 2 - 1)


def test_mixed_precision_end_to_end_on_synthetic_data(fake_data):
    model = build_model("vgg", layers=[8, "M", 16, "M"]).eval()
    cfg = MixedPrecisionConfig(candidate_bits=[2, 4, 8], like_uniform_bits=4, val_images=64)
    result = mixed_precision(model, cfg, load_split("val", fake_data), progress=False)
    layers = quantizable_layers(model)
    assert set(result.bits) == set(layers)
    uniform4 = weight_size_bits(model, dict.fromkeys(layers, 4))
    assert result.weight_bits_total <= uniform4
    sim = QuantSim.from_model(model, 8, result.bits)
    sim.calibrate([torch.randn(16, 1, 28, 28)])
    imodel = convert(sim)
    for op in imodel.ops:  # each layer's int weights stay within its width
        if hasattr(op, "weight"):
            b = result.bits[op.name]
            assert abs(op.weight).max() <= (1 << (b - 1)) - 1


def test_bad_configs():
    with pytest.raises(LeanmlError, match=r"outside 2\.\.8"):
        MixedPrecisionConfig(candidate_bits=[1, 4])
    with pytest.raises(LeanmlError, match="exactly one of"):
        MixedPrecisionConfig(budget_bytes=1000, like_uniform_bits=4)
    for like in (1, 9):  # the Python API range-checks the budget width itself, not only the CLI
        with pytest.raises(LeanmlError, match=rf"like_uniform_bits {like} is outside 2\.\.8"):
            MixedPrecisionConfig(like_uniform_bits=like)
    with pytest.raises(LeanmlError, match="like_uniform_bits 12 is outside"):
        MixedPrecisionConfig.from_dict({"like_uniform_bits": 12})
    with pytest.raises(LeanmlError, match="unknown layer"):
        QuantSim.from_model(build_model("vgg"), 8, {"nope": 4})
