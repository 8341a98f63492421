"""What was loaded: :class:`LLMInfo` (the architecture's shape, dtype, size and origin, built in one place from an HF
config), :class:`LoadedLLM` (model, tokenizer, info, load time), and the check that the ``[llm]`` extra is installed.

Example:
    >>> cfg = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64,
    ...        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 128,
    ...        "tie_word_embeddings": True}
    >>> info = LLMInfo.from_config(cfg, dtype="float32", params=10, source="tiny", format="hf")
    >>> info.head_dim, info.kv_heads, info.tied_embeddings
    (16, 2, True)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from leanml.errors import LeanmlError

EXTRA_HINT = "pip install 'leanml[llm]'"
ARCHITECTURE_OF_MODEL_TYPE = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}


@dataclass(frozen=True)
class LLMInfo:
    """What was loaded: the architecture's shape, the dtype in memory, and where it came from."""

    architecture: str
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    dtype: str
    params: int
    source: str
    format: str  # "hf", "gguf", "leanml-packed" (PyTorch) or "leanml-packed-c" (the C runtime)
    gguf_types: dict[str, int] = field(default_factory=dict)  # GGUF tensor type → tensor count (else empty)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        dtype: str,
        params: int,
        source: str,
        format: str,
        architecture: str | None = None,
        tied: bool | None = None,
        gguf_types: dict[str, int] | None = None,
    ) -> LLMInfo:
        """From an HF config as a dict (``PretrainedConfig.to_dict()`` or a packed file's ``config``).

        ``architecture`` defaults to the config's first ``architectures`` entry (else the one of its
        ``model_type``); ``tied`` to its ``tie_word_embeddings``.

        Example:
            >>> LLMInfo.from_config({"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 8,
            ...     "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 10}, dtype="float32",
            ...     params=0, source="x", format="hf").architecture
            'LlamaForCausalLM'
        """
        c = config
        heads = int(c["num_attention_heads"])
        listed = (c.get("architectures") or [None])[0]
        arch = architecture or listed or ARCHITECTURE_OF_MODEL_TYPE.get(str(c.get("model_type")), "LlamaForCausalLM")
        return cls(
            architecture=arch,
            layers=int(c["num_hidden_layers"]),
            hidden_size=int(c["hidden_size"]),
            heads=heads,
            kv_heads=int(c.get("num_key_value_heads") or heads),
            head_dim=int(c.get("head_dim") or int(c["hidden_size"]) // heads),
            intermediate_size=int(c["intermediate_size"]),
            vocab_size=int(c["vocab_size"]),
            tied_embeddings=bool(c.get("tie_word_embeddings")) if tied is None else tied,
            dtype=dtype,
            params=params,
            source=source,
            format=format,
            gguf_types=dict(gguf_types or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-safe)."""
        return asdict(self)


@dataclass
class LoadedLLM:
    """A model in eval mode, its tokenizer, its :class:`LLMInfo`, and the load time in seconds."""

    model: nn.Module
    tokenizer: Any
    info: LLMInfo
    load_seconds: float


def require_llm_extra() -> None:
    """Raise a :class:`LeanmlError` naming the install command unless transformers, gguf, tokenizers and
    accelerate are importable.

    Example:
        >>> require_llm_extra()  # doctest: +SKIP
    """
    missing = [m for m in ("transformers", "gguf", "tokenizers", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise LeanmlError(f"LLM support needs {', '.join(missing)}, which is not installed", EXTRA_HINT)
