"""The C runtime as a model the rest of ``leanml.llm`` takes: generation, chat, perplexity, and the CLI's loader.

:class:`CRuntimeLM` is an ``nn.Module`` whose forward speaks the subset of the Hugging Face causal-LM call that
:func:`leanml.llm.generate.generate` and :func:`leanml.llm.perplexity.perplexity` use: ``use_cache=False`` (or a
first position of 0) starts a new sequence; a call at the runtime's current position appends to its KV cache
(the ``past_key_values`` object is passed through untouched: the cache lives in C). Its ``config`` is the file's HF
config with ``max_position_embeddings`` set to the runtime's ``n_ctx``, so prompts that do not fit are refused
before any work. :func:`load_c_engine` returns a :class:`~leanml.llm.load.LoadedLLM` (this model, the file's
tokenizer, an :class:`~leanml.llm.load.LLMInfo`).

Example:
    >>> llm = load_c_engine("smollm2-rtn-w4g128.lmq", n_ctx=1024, threads=2)  # doctest: +SKIP
    >>> generate(llm.model, llm.tokenizer, llm.tokenizer.encode("Hello"), GenerateConfig()).text  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.llm.load import LLMInfo, LoadedLLM, require_llm_extra
from leanml.llm.packed_file import read_header
from leanml.llm.runtime import CRuntime


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


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer stored in a packed file (``tokenizer/<file>`` tensors), without building the torch model.

    Example:
        >>> load_tokenizer("smollm2-rtn-w4g128.lmq").encode("Hello")  # doctest: +SKIP
        [19556]
    """
    require_llm_extra()
    from transformers import AutoTokenizer

    header, data_start = read_header(path)
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    with tempfile.TemporaryDirectory() as tmp:
        for t in header["tensors"]:
            if t["name"].startswith("tokenizer/"):
                begin = data_start + t["offset"]
                (Path(tmp) / Path(t["name"]).name).write_bytes(raw[begin : begin + t["nbytes"]].tobytes())
        del raw
        return AutoTokenizer.from_pretrained(tmp, local_files_only=True)


def runtime_info(rt: CRuntime) -> LLMInfo:
    """What :class:`CRuntime` loaded, as an :class:`LLMInfo` (format ``leanml-packed-c``, dtype ``w4a8``).

    Example:
        >>> runtime_info(rt).format  # doctest: +SKIP
        'leanml-packed-c'
    """
    c = rt.header["config"]
    heads = int(c["num_attention_heads"])
    params = sum(int(np.prod(t["shape"])) for t in rt.header["tensors"] if not t["name"].startswith("tokenizer/"))
    return LLMInfo(
        architecture=(c.get("architectures") or ["LlamaForCausalLM"])[0], layers=int(c["num_hidden_layers"]),
        hidden_size=int(c["hidden_size"]), heads=heads, kv_heads=int(c.get("num_key_value_heads") or heads),
        head_dim=int(c.get("head_dim") or int(c["hidden_size"]) // heads),
        intermediate_size=int(c["intermediate_size"]), vocab_size=int(c["vocab_size"]),
        tied_embeddings=bool(c.get("tie_word_embeddings")), dtype=f"w{rt.header['quant'].get('bits', '?')}a8",
        params=params, source=str(rt.path), format="leanml-packed-c", gguf_types={},
    )  # fmt: skip


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
    tokenizer = load_tokenizer(path)
    return LoadedLLM(CRuntimeLM(rt), tokenizer, runtime_info(rt), time.perf_counter() - start)
