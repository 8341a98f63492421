from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.llm import LLMQuantConfig, quantize_llm_
from leanml.llm.quant.awq import AWQResult, apply_awq_, awq_search, calibration_blocks
from leanml.llm.quant.awq_layout import fold_scale_, layout_for, llama_layout
from leanml.llm.quant.awq_search import search_clip, search_scale
from leanml.llm.quant.groupquant import fake_quantize_weight
from tests.llm.conftest import tiny_llama


def outlier_llama(**overrides: Any) -> Any:
    """The tiny Llama with a few activation-outlier channels (what makes AWQ matter in real LLMs)."""
    model = tiny_llama(**overrides)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, :4] *= 8
        for layer in model.model.layers:
            layer.input_layernorm.weight[:4] *= 4
            layer.post_attention_layernorm.weight[:4] *= 4
    return model


def ids(n: int, t: int, seed: int) -> torch.Tensor:
    return torch.randint(3, 93, (n, t), generator=torch.Generator().manual_seed(seed))


CALIB, TEST = ids(8, 64, 1), ids(4, 64, 2)


def logits_mse(model: nn.Module, ref: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(TEST).logits - ref).pow(2).mean())


@pytest.mark.parametrize(("bits", "group", "kv_heads"), [(4, 32, 2), (3, 32, 4), (3, 48, 2)])
def test_awq_beats_rtn_on_outlier_channels(bits: int, group: int, kv_heads: int) -> None:
    with torch.no_grad():
        ref = outlier_llama(num_key_value_heads=kv_heads)(TEST).logits
    errors = {}
    for method in ("rtn", "awq"):
        model = outlier_llama(num_key_value_heads=kv_heads)
        cfg = LLMQuantConfig(method=method, bits=bits, group_size=group, scale_grid=10, clip_grid=10)
        codes = quantize_llm_(model, cfg, CALIB, progress=False)
        assert len(codes.weights) == 14
        for name, gq in codes.weights.items():  # pseudo-quantized: the model holds exactly the codes' values
            assert torch.equal(model.get_submodule(name).weight, gq.dequantize())
        errors[method] = logits_mse(model, ref)
    assert errors["awq"] < 0.8 * errors["rtn"], errors


def test_scales_alone_keep_the_float_function() -> None:
    model, ref_model = outlier_llama(num_key_value_heads=4), outlier_llama(num_key_value_heads=4)
    with torch.no_grad():
        ref = ref_model(TEST).logits
    result = awq_search(model, CALIB, LLMQuantConfig(method="awq", bits=3, group_size=32, clip=False), progress=False)
    assert torch.allclose(model(TEST).logits, ref, atol=1e-3)
    assert not result.clips
    prevs = [(e.block, e.prev) for e in result.scales]
    assert (0, "self_attn.v_proj") in prevs and len(prevs) == 8  # no GQA: v → o is scaled too
    assert any(float((e.scale - 1).abs().max()) > 0.1 for e in result.scales)


def test_gqa_skips_v_to_o() -> None:
    block = tiny_llama(num_key_value_heads=2).model.layers[0]
    assert [g.prev for g in llama_layout(block)] == ["input_layernorm", "post_attention_layernorm", "mlp.up_proj"]


def test_search_result_round_trips_and_reapplies(tmp_path: Path) -> None:
    cfg = LLMQuantConfig(method="awq", bits=4, group_size=32)
    searched = outlier_llama()
    codes = quantize_llm_(searched, cfg, CALIB, progress=False)
    assert isinstance(codes.search, AWQResult)
    path = tmp_path / "awq.safetensors"
    codes.search.save(path)
    loaded = AWQResult.load(path)
    assert loaded.clips.keys() == codes.search.clips.keys() and len(loaded.scales) == len(codes.search.scales)
    fresh = outlier_llama()
    again = quantize_llm_(fresh, cfg, awq_result=loaded, progress=False)
    for name, gq in codes.weights.items():
        assert torch.equal(gq.q, again.weights[name].q) and torch.equal(gq.scale, again.weights[name].scale)
    with pytest.raises(LeanmlError, match="made for W4g32, not W3g32"):
        quantize_llm_(outlier_llama(), LLMQuantConfig(method="awq", bits=3, group_size=32), awq_result=loaded)
    wrong = tiny_llama(hidden_size=32, intermediate_size=48)
    with pytest.raises(LeanmlError, match="does not fit"):
        apply_awq_(wrong, loaded)
    (tmp_path / "awq.safetensors").write_bytes(b"junk")
    with pytest.raises(LeanmlError, match="do not match their sidecar"):
        AWQResult.load(path)


def test_scale_search_includes_rtn_and_never_does_worse() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 64) * torch.linspace(0.05, 6.0, 64)  # (tokens, in)
    lin = nn.Linear(64, 32, bias=False)
    before = lin.weight.detach().clone()
    s, errors = search_scale(x, [lin], lin, bits=3, group_size=32, grid=20)
    assert torch.equal(lin.weight, before)  # restored
    with torch.no_grad():
        rtn_err = float((x @ fake_quantize_weight(before, 3, 32).T - x @ before.T).pow(2).mean())
    assert errors[0] == pytest.approx(rtn_err, rel=1e-5) and min(errors) < errors[0]
    assert float((s.max() * s.min()).sqrt()) == pytest.approx(1.0, rel=1e-5)


def test_clip_search_beats_no_clip_and_keeps_ranges() -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    w[:, 3] *= 12  # outliers widen the ranges
    x = torch.randn(512, 64)
    m = search_clip(w, x, bits=3, group_size=32, grid=20, max_shrink=0.5)
    full = w.abs().reshape(16, 2, 32).amax(-1)  # (out, G)
    assert bool((m <= full + 1e-6).all()) and bool((m >= 0.5 * full - 1e-6).all())
    clipped = torch.maximum(torch.minimum(w, m.repeat_interleave(32, 1)), -m.repeat_interleave(32, 1))
    err = (x @ fake_quantize_weight(clipped, 3, 32).T - x @ w.T).pow(2).mean()
    err0 = (x @ fake_quantize_weight(w, 3, 32).T - x @ w.T).pow(2).mean()
    assert float(err) < float(err0)


def test_fold_scale_into_linear_prev() -> None:
    up, down = nn.Linear(6, 8), nn.Linear(8, 5)
    x = torch.randn(3, 6)
    before = down(up(x))
    fold_scale_(up, [down], torch.rand(8) + 0.5)
    assert torch.allclose(down(up(x)), before, atol=1e-5)
    with pytest.raises(LeanmlError, match="does not fit a linear"):
        fold_scale_(up, [down], torch.ones(7))
    with pytest.raises(LeanmlError, match="cannot fold an AWQ scale into ReLU"):
        fold_scale_(nn.ReLU(), [down], torch.ones(8))


def test_bad_inputs() -> None:
    with pytest.raises(LeanmlError, match="fewer than one block of 512"):
        calibration_blocks(list(range(100)), 128, 512)
    assert calibration_blocks(list(range(1100)), 128, 512).shape == (2, 512)
    with pytest.raises(LeanmlError, match="needs calibration tokens or a saved search result"):
        quantize_llm_(tiny_llama(), LLMQuantConfig(method="awq"))
    model = tiny_llama()
    model.config.model_type = "gpt2"
    with pytest.raises(LeanmlError, match="AWQ has no layout for model type 'gpt2'"):
        layout_for(model)
    with pytest.raises(LeanmlError, match="clip_max_shrink must be in"):
        LLMQuantConfig(method="awq", clip_max_shrink=1.5)
    with pytest.raises(LeanmlError, match="calib_samples must be a positive integer"):
        LLMQuantConfig(method="awq", calib_samples=0)
