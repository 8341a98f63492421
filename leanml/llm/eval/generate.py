"""Text generation in the reference path: prefill the prompt once, then decode one token per forward.

:func:`generate` runs its own loop on a Hugging Face causal LM (any module whose forward takes
``input_ids``, ``position_ids``, ``past_key_values`` and ``use_cache`` and returns ``.logits`` and
``.past_key_values``): one forward over the whole prompt fills a ``DynamicCache`` (prefill), then each
new token is fed alone with the cache (decode). Tokens are chosen by :mod:`leanml.llm.eval.sampling` with a
``torch.Generator`` seeded from the config (greedy when ``temperature == 0``). Generation stops at an
EOS id (the tokenizer's and the model config's, which may be an int or a list) or after
``max_new_tokens``. Prefill and decode are timed apart (model and sampling only, not the
``on_token`` callback), so the result reports both speeds.

Example:
    >>> cfg = GenerateConfig(max_new_tokens=32, temperature=0.7, top_p=0.9, seed=1)
    >>> r = generate(model, tokenizer, tokenizer.encode("Once upon a time"), cfg)  # doctest: +SKIP
    >>> r.stop_reason, r.new_tokens <= 32  # doctest: +SKIP
    ('eos', True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.llm.eval.sampling import select_token
from leanml.llm.eval.streaming import TextStream

STOP_REASONS = ("eos", "max_new_tokens")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass
class GenerateConfig(Config):
    """How to pick tokens and when to stop.

    ``max_new_tokens`` >= 1; ``temperature`` >= 0 (0 = greedy argmax, then top-k/top-p and the seed do not
    matter); ``top_p`` in (0, 1] (1 = off); ``top_k`` >= 0 (0 = off); ``seed`` for the sampling generator;
    ``stop_at_eos`` stops at the first EOS token; ``repetition_penalty`` > 0 (1 = off; CTRL's rule over the
    prompt and the generated tokens).

    Example:
        >>> GenerateConfig(top_p=0.0)
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: top_p must be in (0, 1], got 0.0 (pass e.g. --top-p 0.9 (1 = off))
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    stop_at_eos: bool = True
    repetition_penalty: float = 1.0

    def validate(self) -> None:
        """Check every field's type and range."""
        require(
            _is_int(self.max_new_tokens) and self.max_new_tokens >= 1,
            f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}",
            "pass e.g. --max-new-tokens 64",
        )
        require(
            _is_number(self.temperature) and 0.0 <= self.temperature < float("inf"),
            f"temperature must be a number >= 0, got {self.temperature!r}",
            "pass --temperature 0 (greedy) or e.g. 0.7",
        )
        require(
            _is_number(self.top_p) and 0.0 < self.top_p <= 1.0,
            f"top_p must be in (0, 1], got {self.top_p!r}",
            "pass e.g. --top-p 0.9 (1 = off)",
        )
        require(
            _is_int(self.top_k) and self.top_k >= 0,
            f"top_k must be an integer >= 0, got {self.top_k!r}",
            "pass e.g. --top-k 40 (0 = off)",
        )
        require(_is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        require(isinstance(self.stop_at_eos, bool), f"stop_at_eos must be true or false, got {self.stop_at_eos!r}")
        require(
            _is_number(self.repetition_penalty) and 0.0 < self.repetition_penalty < float("inf"),
            f"repetition_penalty must be a number > 0, got {self.repetition_penalty!r}",
            "pass e.g. --repetition-penalty 1.1 (1 = off)",
        )

    @property
    def greedy(self) -> bool:
        """Whether tokens are chosen by argmax (``temperature == 0``)."""
        return self.temperature == 0.0


@dataclass(frozen=True)
class GenerationResult:
    """One generation: the new ``token_ids`` (the EOS that stopped it included) and their ``text`` (special
    tokens skipped); token counts; prefill time (the prompt's forward and the first token) and decode time
    (the ``decode_steps = new_tokens - 1`` single-token forwards), their tokens per second (0 when no time
    or step); and ``stop_reason``, one of :data:`STOP_REASONS`."""

    token_ids: list[int]
    text: str
    prompt_tokens: int
    new_tokens: int
    decode_steps: int
    prefill_seconds: float
    decode_seconds: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    stop_reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-safe)."""
        return asdict(self)


def _ids(value: object) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, torch.Tensor):
        return {int(v) for v in value.flatten().tolist()}
    if isinstance(value, int):
        return {int(value)}
    if isinstance(value, list | tuple | set):
        return {int(v) for v in value}
    return set()


def eos_token_ids(model: nn.Module, tokenizer: Any) -> set[int]:
    """The ids that end a generation: the tokenizer's ``eos_token_id`` and the model config's and generation
    config's ``eos_token_id`` (each an int, a list or None).

    Example:
        >>> from types import SimpleNamespace
        >>> m = nn.Linear(1, 1)
        >>> m.config = SimpleNamespace(eos_token_id=[2, 7])
        >>> sorted(eos_token_ids(m, SimpleNamespace(eos_token_id=2)))
        [2, 7]
    """
    ids = _ids(getattr(tokenizer, "eos_token_id", None))
    for name in ("config", "generation_config"):
        ids |= _ids(getattr(getattr(model, name, None), "eos_token_id", None))
    return ids


def max_positions(model: nn.Module) -> int | None:
    """The model's context length (``config.max_position_embeddings``), or None when it does not say.

    Example:
        >>> max_positions(nn.Linear(1, 1)) is None
        True
    """
    return _config_int(model, "max_position_embeddings")


def _config_int(model: nn.Module, name: str) -> int | None:
    """An integer field of the model's config, or None when it is missing or not an integer."""
    value = getattr(getattr(model, "config", None), name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_prompt(prompt_ids: Sequence[int], max_new_tokens: int, context: int | None, vocab: int | None) -> None:
    """Refuse an empty prompt, ids outside the vocabulary, and a prompt plus ``max_new_tokens`` longer than
    the model's ``context``.

    Example:
        >>> check_prompt(list(range(100)), 200, 256, None)
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: prompt (100 tokens) + max_new_tokens (200) = 300 exceeds the model's context ...
    """
    if len(prompt_ids) == 0:
        raise LeanmlError("the prompt is empty (no tokens)", "pass a prompt with some text in it")
    if vocab is not None and not all(0 <= int(i) < vocab for i in prompt_ids):
        raise LeanmlError(f"prompt token ids outside the vocabulary of {vocab}", "encode with the model's tokenizer")
    total = len(prompt_ids) + max_new_tokens
    if context is not None and total > context:
        room = context - len(prompt_ids)
        raise LeanmlError(
            f"prompt ({len(prompt_ids)} tokens) + max_new_tokens ({max_new_tokens}) = {total} exceeds the model's "
            f"context of {context} tokens",
            f"shorten the prompt or pass --max-new-tokens {room} or fewer"
            if room >= 1
            else "shorten the prompt: it fills the context alone",
        )


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _forward(model: nn.Module, ids: torch.Tensor, start: int, cache: Any) -> tuple[torch.Tensor, Any]:
    """Logits of the last position (V,) for ``ids`` (1, T) at positions ``start .. start + T - 1``, and the cache."""
    positions = torch.arange(start, start + ids.shape[1], device=ids.device).unsqueeze(0)  # (1, T)
    out = model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1)
    logits = getattr(out, "logits", None)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or logits.shape[0] != 1:
        raise LeanmlError(f"{type(model).__name__} returned no (1, T, V) logits", "pass a causal LM from load_llm")
    return logits[0, -1], out.past_key_values  # (V,)


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if tokens > 0 and seconds > 0 else 0.0


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer: Any,
    prompt_ids: Sequence[int] | torch.Tensor,
    cfg: GenerateConfig | None = None,
    on_token: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Generate up to ``cfg.max_new_tokens`` tokens after ``prompt_ids`` with a KV cache (see the module).

    ``on_token(piece)`` receives the text as it becomes final (:class:`~leanml.llm.eval.streaming.TextStream`);
    the pieces concatenate to ``result.text``. Deterministic for a given config (greedy, or the seed).

    Example:
        >>> ids = tokenizer.encode("The capital of France is")  # doctest: +SKIP
        >>> generate(model, tokenizer, ids, GenerateConfig(max_new_tokens=8), on_token=print).text  # doctest: +SKIP
        ' Paris.'
    """
    from transformers import DynamicCache

    cfg = cfg or GenerateConfig()
    prompt = [int(i) for i in torch.as_tensor(prompt_ids, dtype=torch.long).flatten().tolist()]
    check_prompt(prompt, cfg.max_new_tokens, max_positions(model), _config_int(model, "vocab_size"))
    eos = eos_token_ids(model, tokenizer) if cfg.stop_at_eos else set()
    generator = None if cfg.greedy else torch.Generator().manual_seed(cfg.seed)
    stream = TextStream(tokenizer)
    device = _device(model)

    def pick(logits: torch.Tensor, seen: list[int]) -> int:
        return select_token(logits, cfg.temperature, cfg.top_k, cfg.top_p, generator, seen, cfg.repetition_penalty)

    start = time.perf_counter()
    cache = DynamicCache(config=getattr(model, "config", None))
    logits, cache = _forward(model, torch.tensor([prompt], device=device), 0, cache)  # prefill: (1, P) → (V,)
    new = [pick(logits, prompt)]
    prefill_seconds = time.perf_counter() - start
    decode_seconds = 0.0
    stop_reason = "max_new_tokens"
    while True:
        token = new[-1]
        if token in eos:
            stop_reason = "eos"
            break
        piece = stream.push(token)
        if piece and on_token is not None:
            on_token(piece)
        if len(new) >= cfg.max_new_tokens:
            break
        start = time.perf_counter()
        ids = torch.tensor([[token]], device=device)  # (1, 1)
        logits, cache = _forward(model, ids, len(prompt) + len(new) - 1, cache)  # decode: one position → (V,)
        new.append(pick(logits, prompt + new))
        decode_seconds += time.perf_counter() - start
    rest = stream.finish()
    if rest and on_token is not None:
        on_token(rest)
    steps = len(new) - 1
    return GenerationResult(
        token_ids=new,
        text=stream.text,
        prompt_tokens=len(prompt),
        new_tokens=len(new),
        decode_steps=steps,
        prefill_seconds=prefill_seconds,
        decode_seconds=decode_seconds,
        prefill_tokens_per_s=_rate(len(prompt), prefill_seconds),
        decode_tokens_per_s=_rate(steps, decode_seconds),
        stop_reason=stop_reason,
    )
