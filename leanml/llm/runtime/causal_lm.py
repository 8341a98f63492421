"""The C runtime as a model the rest of ``leanml.llm`` takes: generation, chat, perplexity, and the CLI's loader.

:class:`CRuntimeLM` is an ``nn.Module`` whose forward speaks the subset of the Hugging Face causal-LM call that
:func:`leanml.llm.eval.generate.generate` and :func:`leanml.llm.eval.perplexity.perplexity` use:
``use_cache=False`` (or a first position of 0) starts a new sequence; a call at the runtime's current position
appends to its KV cache (the ``past_key_values`` object is passed through untouched: the cache lives in C). Its
``config`` is the file's HF config with ``max_position_embeddings`` set to the runtime's ``n_ctx``, so prompts that
do not fit are refused before any work. :func:`load_c_engine` returns a :class:`~leanml.llm.io.model_info.LoadedLLM`
(this model, the file's tokenizer, its :class:`~leanml.llm.io.model_info.LLMInfo` with format ``leanml-packed-c``).

Example:
    >>> llm = load_c_engine("smollm2-rtn-w4g128.lmq", n_ctx=1024, threads=2)  # doctest: +SKIP
    >>> generate(llm.model, llm.tokenizer, llm.tokenizer.encode("Hello"), GenerateConfig()).text  # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.llm.io.model_info import LoadedLLM, require_llm_extra
from leanml.llm.runtime.decoder import CRuntime


class CRuntimeLM(nn.Module):
    """A :class:`CRuntime` behind the Hugging Face causal-LM call (see the module).

    Example:
        >>> lm = CRuntimeLM(rt)  # doctest: +SKIP
        >>> lm(input_ids=torch.tensor([[1, 2, 3]]), use_cache=False).logits.shape  # doctest: +SKIP
        torch.Size([1, 3, 49152])
    """

    def __init__(self, runtime: CRuntime) -> None:
        super().__init__()
        require_llm_extra()
        from transformers import AutoConfig

        self.runtime = runtime
        cfg = dict(runtime.header["config"])
        cfg["max_position_embeddings"] = runtime.n_ctx
        self.config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
        **unused: Any,
    ) -> SimpleNamespace:
        """input_ids (1, T) → ``.logits`` (1, T, V), or (1, 1, V) with ``logits_to_keep=1``; ``.past_key_values``."""
        if input_ids.ndim != 2 or input_ids.shape[0] != 1:
            raise LeanmlError(f"the C runtime runs one sequence, got input of shape {tuple(input_ids.shape)}")
        start = int(position_ids[0, 0]) if position_ids is not None else 0
        rt = self.runtime
        if not use_cache or start == 0:
            rt.reset()
        elif start != rt.position:
            raise LeanmlError(f"the C runtime continues its own sequence (at {rt.position}), not position {start}",
                              "start a new sequence at position 0")  # fmt: skip
        if unused.get("attention_mask") is not None and not bool(unused["attention_mask"].all()):
            raise LeanmlError("the C runtime does not take padding masks", "pass one unpadded sequence")
        keep_last = logits_to_keep == 1
        logits = rt.forward(input_ids[0], all_logits=not keep_last)  # (T, V) or (V,)
        return SimpleNamespace(logits=logits.reshape(1, -1, rt.vocab), past_key_values=past_key_values)


def load_c_engine(path: str | Path, n_ctx: int | None = None, threads: int | None = None,
                  head: str = "int8") -> LoadedLLM:  # fmt: skip
    """A packed file in the C runtime, as a :class:`LoadedLLM` (model = :class:`CRuntimeLM`, the file's tokenizer).

    ``n_ctx``, ``threads`` and ``head`` as :class:`CRuntime` takes them.

    Example:
        >>> llm = load_c_engine("smollm2-rtn-w4g128.lmq", threads=2)  # doctest: +SKIP
        >>> llm.info.format  # doctest: +SKIP
        'leanml-packed-c'
    """
    start = time.perf_counter()
    rt = CRuntime(path, n_ctx=n_ctx, threads=threads, head=head)
    quant = rt.header.get("quant")
    bits = quant.get("bits", "?") if isinstance(quant, dict) else "?"
    info = rt.file.info("leanml-packed-c", f"w{bits}a8")
    with rt.file:
        tokenizer = rt.file.tokenizer()
    return LoadedLLM(CRuntimeLM(rt), tokenizer, info, time.perf_counter() - start)
