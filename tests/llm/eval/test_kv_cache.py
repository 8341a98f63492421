"""KV-cache decoding (the path `generate` takes) gives the logits of a full forward pass, float and packed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from leanml.llm import LLMQuantConfig, quantize_llm_
from leanml.llm.eval.generate import _forward
from leanml.llm.io.model_info import LLMInfo, LoadedLLM
from leanml.llm.io.packed_model import load_packed, save_packed
from tests.llm.conftest import char_tokenizer, tiny_llama


def decode_logits(model: torch.nn.Module, ids: list[int], prompt: int) -> torch.Tensor:
    """Prefill ``ids[:prompt]``, then feed the rest one token at a time; logits (T - prompt + 1, V)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    logits, cache = _forward(model, torch.tensor([ids[:prompt]]), 0, cache)
    rows = [logits]
    for pos in range(prompt, len(ids)):
        logits, cache = _forward(model, torch.tensor([[ids[pos]]]), pos, cache)
        rows.append(logits)
    return torch.stack(rows)


@pytest.mark.parametrize("packed", [False, True])
def test_kv_cache_logits_equal_full_forward(packed: bool, tmp_path: Path) -> None:
    model = tiny_llama()
    if packed:
        codes = quantize_llm_(model, LLMQuantConfig(bits=4, group_size=48, method="rtn"), progress=False)
        info = LLMInfo("LlamaForCausalLM", 2, 64, 4, 2, 16, 96, 128, True, "float32", 0, "tiny", "hf", {})
        save_packed(tmp_path / "m.lmq", LoadedLLM(model, char_tokenizer(), info, 0.0), codes, float_dtype="float32")
        model = load_packed(tmp_path / "m.lmq").model
    ids = torch.randint(3, 90, (40,), generator=torch.Generator().manual_seed(0)).tolist()
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]  # (T, V)
        cached = decode_logits(model, ids, prompt=12)  # (T - 12 + 1, V)
    assert torch.allclose(cached, full[11:], atol=1e-4, rtol=1e-4)
    assert torch.equal(cached.argmax(-1), full[11:].argmax(-1))
