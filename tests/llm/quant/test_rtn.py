from __future__ import annotations

import pytest
import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.llm.quant.config import LLMQuantConfig
from leanml.llm.quant.quantize import quantize_llm_
from leanml.llm.quant.rtn import rtn_quantize_, target_linears

pytest.importorskip("transformers")

from tests.llm.conftest import tiny_llama

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")  # fmt: skip


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits  # (1, T, V)


def test_targets_are_the_decoder_linears_only() -> None:
    model = tiny_llama()
    names = list(target_linears(model, LLMQuantConfig(group_size=32)))
    assert names == [f"model.layers.{i}.{n}" for i in range(2) for n in LINEARS]
    skipped = target_linears(model, LLMQuantConfig(group_size=32, skip=["*.mlp.down_proj", "model.layers.1.*"]))
    assert list(skipped) == [f"model.layers.0.{n}" for n in LINEARS[:-1]]
    assert "lm_head" in target_linears(model, LLMQuantConfig(group_size=32, quantize_lm_head=True))


def test_rtn_error_grows_as_bits_shrink_and_8_bits_is_close() -> None:
    model = tiny_llama()
    ids = torch.randint(3, 93, (1, 48))
    ref = logits(model, ids)
    errors = {}
    for bits in (8, 6, 4, 3, 2):
        q = tiny_llama()
        codes = rtn_quantize_(q, LLMQuantConfig(bits=bits, group_size=32, method="rtn"), progress=False)
        assert codes.n_quantized == 2 * (4 * 64 * 64 // 2 + 2 * 64 * 64 // 2 + 3 * 64 * 96)  # q,o 64x64; k,v 32x64
        errors[bits] = float((logits(q, ids) - ref).pow(2).mean() / ref.pow(2).mean())
    assert errors[8] < 1e-3
    assert errors[8] < errors[6] < errors[4] < errors[3] < errors[2], errors


def test_rtn_writes_dequantized_weights_and_leaves_the_rest() -> None:
    ref, model = tiny_llama(), tiny_llama()
    codes = rtn_quantize_(model, LLMQuantConfig(bits=4, group_size=32, method="rtn"), progress=False)
    state, ref_state = model.state_dict(), ref.state_dict()
    for name, gq in codes.weights.items():
        assert torch.equal(state[f"{name}.weight"], gq.dequantize())
        assert not torch.equal(state[f"{name}.weight"], ref_state[f"{name}.weight"])
    untouched = [k for k in state if not any(k == f"{n}.weight" for n in codes.weights)]
    assert "model.embed_tokens.weight" in untouched and "lm_head.weight" in untouched
    assert all(torch.equal(state[k], ref_state[k]) for k in untouched)  # norms, embeddings, (tied) head
    groups = sum(g.scale.numel() for g in codes.weights.values())
    assert codes.payload_bytes() == codes.n_quantized * 4 // 8 + groups * 3  # packed codes + f16 scale + u8 zero


def test_quantize_lm_head_unties_it_from_the_embeddings() -> None:
    model = tiny_llama()
    emb = model.model.embed_tokens.weight.detach().clone()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    codes = quantize_llm_(
        model, LLMQuantConfig(bits=3, group_size=32, quantize_lm_head=True, method="rtn"), progress=False
    )
    assert "lm_head" in codes.weights and model.lm_head.weight is not model.model.embed_tokens.weight
    assert torch.equal(model.model.embed_tokens.weight, emb)
    assert torch.equal(model.lm_head.weight, codes.weights["lm_head"].dequantize())
    assert model.config.tie_word_embeddings is False


def test_group_size_that_does_not_divide_gives_a_short_last_group() -> None:
    model = tiny_llama()
    codes = rtn_quantize_(model, LLMQuantConfig(bits=4, group_size=64, method="rtn"), progress=False)
    down = codes.weights["model.layers.0.mlp.down_proj"]  # in = 96 = 64 + 32
    assert down.scale.shape == (64, 2) and down.shape == (64, 96)
    assert torch.equal(model.model.layers[0].mlp.down_proj.weight, down.dequantize())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 1}, "bits must be in 2..8"),
        ({"bits": 9}, "bits must be in 2..8"),
        ({"bits": 4.0}, "bits must be in 2..8"),
        ({"group_size": 0}, "group size must be a positive integer"),
        ({"method": "gptq"}, "unknown LLM quantization method"),
        ({"skip": ["", "x"]}, "skip must be"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LeanmlError, match=message):
        LLMQuantConfig(**kwargs)  # type: ignore[arg-type]


def test_config_round_trips() -> None:
    cfg = LLMQuantConfig(bits=3, group_size=32, skip=["*.down_proj"], method="rtn")
    assert LLMQuantConfig.from_dict(cfg.to_dict()) == cfg and cfg.label == "rtn-w3g32"


def test_not_an_llm() -> None:
    with pytest.raises(LeanmlError, match="no decoder blocks"):
        rtn_quantize_(nn.Sequential(nn.Linear(4, 4)), LLMQuantConfig(method="rtn"))
    with pytest.raises(LeanmlError, match="no linear layer left"):
        rtn_quantize_(tiny_llama(), LLMQuantConfig(group_size=32, skip=["*"], method="rtn"), progress=False)
