"""What was loaded: :class:`LLMInfo` (the architecture's shape, dtype, size and origin, built in one place from an HF
config), :class:`LoadedLLM` (model, tokenizer, info, load time), and the check that the ``[llm]`` extra is installed.

Example:
    >>> cfg = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64,
    ...        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 128,
    ...        "tie_word_embeddings": True}
    >>> info = LLMInfo.from_config(cfg, dtype="float32", source="tiny", format="hf")
    >>> info.head_dim, info.kv_heads, info.tied_embeddings, info.params
    (16, 2, True, 69952)
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
LIMITS: dict[str, int] = {
    "num_hidden_layers": 1024,
    "hidden_size": 65536,
    "num_attention_heads": 1024,
    "num_key_value_heads": 1024,
    "head_dim": 4096,
    "intermediate_size": 1 << 20,
    "vocab_size": 1 << 22,
    "max_position_embeddings": 1 << 24,
}
"""Sane upper bounds of a Llama-family config's sizes (far above any released model): a file claiming more is
refused before anything is built."""
FLOATS: dict[str, tuple[float, float]] = {"rms_norm_eps": (0.0, 1.0), "rope_theta": (0.0, 1e12)}
"""Float fields of a config and the open interval each must lie in (when present)."""
REQUIRED = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")


def check_llm_config(config: Any, where: str) -> dict[str, int]:
    """Validate the sizes of a Llama-family HF config (a dict) before any model is built; returns them as ints.

    Every size must be an integer in 1 .. :data:`LIMITS`, the heads a multiple of the kv heads, the head dim even,
    the floats of :data:`FLOATS` in range, the flags true/false, the activation SiLU, the special token ids inside the
    vocabulary; the error names ``where`` (the file) and the field.

    Example:
        >>> check_llm_config({"num_hidden_layers": 2**31, "hidden_size": 64, "num_attention_heads": 4,
        ...                   "intermediate_size": 96, "vocab_size": 128}, "x.gguf")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: x.gguf: num_hidden_layers = 2147483648 is out of range 1..1024 (...)
    """
    if not isinstance(config, Mapping):
        raise LeanmlError(f"{where}: the model config is not a JSON object", "re-create or re-download the model")
    out: dict[str, int] = {}
    for key, limit in LIMITS.items():
        value = config.get(key)
        if value is None and key not in REQUIRED:
            continue
        if value is None:
            raise LeanmlError(f"{where}: the model config has no {key}", "re-create or re-download the model")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise LeanmlError(f"{where}: {key} = {value!r} is out of range 1..{limit}", "the file is corrupt")
        out[key] = value
    heads = out["num_attention_heads"]
    kv = out.setdefault("num_key_value_heads", heads)
    if kv > heads or heads % kv:
        raise LeanmlError(f"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}",
                          "the file is corrupt")  # fmt: skip
    head_dim = out.setdefault("head_dim", out["hidden_size"] // heads)
    if head_dim < 2 or head_dim % 2:
        raise LeanmlError(f"{where}: head_dim {head_dim} must be even and >= 2", "the file is corrupt")
    for key, (lo, hi) in FLOATS.items():
        value = config.get(key)
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and lo < value < hi)
        if not ok:
            raise LeanmlError(f"{where}: {key} = {value!r} is not a number in ({lo:g}, {hi:g})", "the file is corrupt")
    for key in ("rope_parameters", "rope_scaling"):
        if not isinstance(config.get(key) or {}, dict):
            raise LeanmlError(f"{where}: {key} = {config.get(key)!r} is not an object", "the file is corrupt")
    for key in ("tie_word_embeddings", "attention_bias", "mlp_bias"):
        if not isinstance(config.get(key, False), bool):
            raise LeanmlError(f"{where}: {key} = {config.get(key)!r} is not true/false", "the file is corrupt")
    if config.get("hidden_act", "silu") != "silu":
        raise LeanmlError(f"{where}: hidden_act = {config.get('hidden_act')!r}; Llama-family models use silu",
                          "the file is corrupt")  # fmt: skip
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = config.get(key)
        ids = value if isinstance(value, list) else [value]
        if not all(i is None or (type(i) is int and 0 <= i < out["vocab_size"]) for i in ids):
            raise LeanmlError(f"{where}: {key} = {value!r} is not a token id below vocab_size", "the file is corrupt")
    return out


def llama_weight_shapes(config: Mapping[str, Any], where: str = "config") -> dict[str, tuple[int, ...]]:
    """Every weight of the float Llama-family model ``config`` describes (HF names → shapes), the head only when
    not tied, biases when ``attention_bias`` / ``mlp_bias`` say so. The config is checked first
    (:func:`check_llm_config`).

    Example:
        >>> cfg = {"num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 16,
        ...        "vocab_size": 10, "tie_word_embeddings": True}
        >>> shapes = llama_weight_shapes(cfg)
        >>> shapes["model.layers.0.self_attn.k_proj.weight"], "lm_head.weight" in shapes
        ((8, 8), False)
    """
    c = check_llm_config(config, where)
    h, inter, vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    qd, kvd = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    attn_bias, mlp_bias = bool(config.get("attention_bias")), bool(config.get("mlp_bias"))
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, h)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        linears = {"self_attn.q_proj": (qd, h, attn_bias), "self_attn.k_proj": (kvd, h, attn_bias),
                   "self_attn.v_proj": (kvd, h, attn_bias), "self_attn.o_proj": (h, qd, attn_bias),
                   "mlp.gate_proj": (inter, h, mlp_bias), "mlp.up_proj": (inter, h, mlp_bias),
                   "mlp.down_proj": (h, inter, mlp_bias)}  # fmt: skip
        shapes[p + "input_layernorm.weight"] = (h,)
        for name, (n, k, bias) in linears.items():
            shapes[f"{p}{name}.weight"] = (n, k)
            if bias:
                shapes[f"{p}{name}.bias"] = (n,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
    shapes["model.norm.weight"] = (h,)
    if not config.get("tie_word_embeddings"):
        shapes["lm_head.weight"] = (vocab, h)
    return shapes


def llama_params(config: Mapping[str, Any], where: str = "config") -> int:
    """leanml's one parameter count of an LLM: every weight of the float model (embeddings included, a head tied to
    them counted once), from the config, whatever the engine or the storage (GGUF, packed, C runtime).

    Example:
        >>> llama_params({"num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2,
        ...               "intermediate_size": 16, "vocab_size": 10, "tie_word_embeddings": True})
        744
    """
    total = 0
    for shape in llama_weight_shapes(config, where).values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def missing_names(missing: list[str]) -> str:
    """``missing`` as an error fragment: the first few names and the count.

    Example:
        >>> missing_names(["a", "b", "c", "d", "e"])
        'a, b, c ... (5 missing)'
    """
    head = ", ".join(missing[:3])
    return f"{head} ... ({len(missing)} missing)" if len(missing) > 3 else f"{head} ({len(missing)} missing)"


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
    params: int  # llama_params: every weight of the float model, embeddings included, a tied head once
    source: str
    format: str  # "hf", "gguf", "leanml-packed" (PyTorch) or "leanml-packed-c" (the C runtime)
    gguf_types: dict[str, int] = field(default_factory=dict)  # GGUF tensor type → tensor count (else empty)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        dtype: str,
        source: str,
        format: str,
        architecture: str | None = None,
        tied: bool | None = None,
        gguf_types: dict[str, int] | None = None,
    ) -> LLMInfo:
        """From an HF config as a dict (``PretrainedConfig.to_dict()`` or a packed file's ``config``).

        ``architecture`` defaults to the config's first ``architectures`` entry (else the one of its
        ``model_type``); ``tied`` to its ``tie_word_embeddings``. ``params`` is :func:`llama_params` of the config
        (one definition for every engine and file format).

        Example:
            >>> LLMInfo.from_config({"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 8,
            ...     "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 10}, dtype="float32",
            ...     source="x", format="hf").architecture
            'LlamaForCausalLM'
        """
        c = check_llm_config(config, source)
        listed = (config.get("architectures") or [None])[0]
        model_type = str(config.get("model_type"))
        arch = architecture or listed or ARCHITECTURE_OF_MODEL_TYPE.get(model_type, "LlamaForCausalLM")
        return cls(
            architecture=arch,
            layers=c["num_hidden_layers"],
            hidden_size=c["hidden_size"],
            heads=c["num_attention_heads"],
            kv_heads=c["num_key_value_heads"],
            head_dim=c["head_dim"],
            intermediate_size=c["intermediate_size"],
            vocab_size=c["vocab_size"],
            tied_embeddings=bool(config.get("tie_word_embeddings")) if tied is None else tied,
            dtype=dtype,
            params=llama_params(config if tied is None else {**config, "tie_word_embeddings": tied}, source),
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
