"""LLMs: loading (HF folders, GGUF, the built-in SmolLM2), perplexity, weight-only group quantization (RTN, AWQ),
generation with a KV cache (greedy, top-k/top-p sampling, streaming) and chat; packed models in leanml's C runtime
(W4A8 kernels, KV-cache decoder; ``CRuntime``, ``load_c_engine``, ``bench_speed``).

Importing this package needs only torch; transformers, gguf and tokenizers (``pip install 'leanml[llm]'``)
are imported when a model is loaded. The quantization convention is written down in ``docs/llm_format.md``.

Example:
    >>> from leanml.llm import LLMQuantConfig
    >>> LLMQuantConfig(bits=4, group_size=128).label
    'rtn-w4g128'
"""

from leanml.llm.awq import AWQResult, apply_awq_, awq_quantize_, awq_search, calibration_blocks
from leanml.llm.bench import BenchResult, bench_speed
from leanml.llm.chat import ChatSession, chat_prompt_ids
from leanml.llm.config import LLMQuantConfig
from leanml.llm.corpus import added_bos, load_text, split_text, tokenize_text
from leanml.llm.generate import GenerateConfig, GenerationResult, generate
from leanml.llm.groupquant import GroupQuantized, fake_quantize_weight, quantize_linear_weight
from leanml.llm.load import LLMInfo, LoadedLLM, load_llm
from leanml.llm.perplexity import PerplexityResult, PPLFigure, perplexity
from leanml.llm.quantize import LLM_QUANTIZERS, quantize_llm_
from leanml.llm.rtn import QuantizedWeights, rtn_quantize_, target_linears
from leanml.llm.runtime import CRuntime
from leanml.llm.runtime_lm import CRuntimeLM, load_c_engine
from leanml.llm.streaming import TextStream

__all__ = [
    "LLM_QUANTIZERS", "AWQResult", "BenchResult", "CRuntime", "CRuntimeLM", "ChatSession", "GenerateConfig",
    "GenerationResult", "GroupQuantized", "LLMInfo", "LLMQuantConfig", "LoadedLLM", "PPLFigure", "PerplexityResult",
    "QuantizedWeights", "TextStream", "added_bos", "apply_awq_", "awq_quantize_", "awq_search", "bench_speed",
    "calibration_blocks", "chat_prompt_ids", "fake_quantize_weight", "generate", "load_c_engine", "load_llm",
    "load_text", "perplexity", "quantize_linear_weight", "quantize_llm_", "rtn_quantize_", "split_text",
    "target_linears", "tokenize_text",
]  # fmt: skip
