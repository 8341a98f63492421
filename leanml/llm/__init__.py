"""LLMs: loading (HF folders, GGUF, the built-in SmolLM2), perplexity, weight-only group quantization (RTN, AWQ),
generation with a KV cache (greedy, top-k/top-p sampling, streaming) and chat; packed models in leanml's C runtime
(W4A8 kernels, KV-cache decoder; ``CRuntime``, ``load_c_engine``, ``bench_speed``).

Four sub-packages by concern: ``io`` (model loading, GGUF, the packed ``.lmq`` file: :class:`PackedFile`), ``quant``
(group quantization, RTN, AWQ, bit packing, the quantize verb), ``runtime`` (the C runtime and its bindings) and
``eval`` (perplexity, corpora, generation, sampling, streaming, chat, the speed bench).

Importing this package needs only torch; transformers, gguf and tokenizers (``pip install 'leanml[llm]'``)
are imported when a model is loaded. The quantization convention is written down in ``docs/llm_format.md``.

Example:
    >>> from leanml.llm import LLMQuantConfig
    >>> LLMQuantConfig(bits=4, group_size=128, method="rtn").label
    'rtn-w4g128'
"""

from leanml.llm.eval.chat import ChatSession, chat_prompt_ids
from leanml.llm.eval.corpus import added_bos, load_text, split_text, tokenize_text
from leanml.llm.eval.generate import GenerateConfig, GenerationResult, generate
from leanml.llm.eval.perplexity import PerplexityResult, PPLFigure, perplexity
from leanml.llm.eval.speed_bench import BenchResult, bench_speed
from leanml.llm.eval.streaming import TextStream
from leanml.llm.io.model_info import LLMInfo, LoadedLLM
from leanml.llm.io.model_loader import load_llm
from leanml.llm.io.packed_file import PackedFile
from leanml.llm.io.packed_model import load_packed, save_packed
from leanml.llm.quant.awq import AWQResult, apply_awq_, awq_quantize_, awq_search, calibration_blocks
from leanml.llm.quant.config import LLMQuantConfig
from leanml.llm.quant.groupquant import GroupQuantized, fake_quantize_weight, quantize_linear_weight
from leanml.llm.quant.quantize import LLM_QUANTIZERS, quantize_llm_
from leanml.llm.quant.rtn import QuantizedWeights, rtn_quantize_, target_linears
from leanml.llm.runtime.causal_lm import CRuntimeLM, load_c_engine
from leanml.llm.runtime.decoder import CRuntime

__all__ = [
    "LLM_QUANTIZERS", "AWQResult", "BenchResult", "CRuntime", "CRuntimeLM", "ChatSession", "GenerateConfig",
    "GenerationResult", "GroupQuantized", "LLMInfo", "LLMQuantConfig", "LoadedLLM", "PPLFigure", "PackedFile",
    "PerplexityResult", "QuantizedWeights", "TextStream", "added_bos", "apply_awq_", "awq_quantize_", "awq_search",
    "bench_speed", "calibration_blocks", "chat_prompt_ids", "fake_quantize_weight", "generate", "load_c_engine",
    "load_llm", "load_packed", "load_text", "perplexity", "quantize_linear_weight", "quantize_llm_", "rtn_quantize_",
    "save_packed", "split_text", "target_linears", "tokenize_text",
]  # fmt: skip
