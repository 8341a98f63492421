"""Perplexity of a causal LM on a token sequence, two ways, on the same tokens.

**Sliding window** (the Hugging Face "perplexity of fixed-length models" recipe, exact):
windows of ``ctx`` tokens start every ``stride`` tokens (the last may be shorter); each
window scores only the tokens no earlier window scored, so with ``stride < ctx`` every token
but the first is scored once, with up to ``ctx - stride`` tokens of context carried over;
with ``stride == ctx`` the windows are non-overlapping and each window's first token is not
scored. PPL = exp(total NLL / tokens scored), summed in float64 (not a mean of window means).

**llama.cpp** (``llama-perplexity``'s default, ``perplexity()`` in tools/perplexity/perplexity.cpp):
``n_chunk = n_tokens // ctx`` non-overlapping chunks; the first token of each chunk is replaced
by BOS when the vocabulary adds one (pass ``bos_id``); with ``first = ctx // 2``, the logits at
positions ``first .. ctx - 2`` score the tokens at ``first + 1 .. ctx - 1``: ``ctx - 1 - first``
tokens per chunk (255 at ctx 512). It also reports ``PPL ± ppl * stderr(NLL)``.

A window whose tokens and BOS handling coincide in both conventions is evaluated once.

Example:
    >>> uniform = lambda ids: torch.zeros(*ids.shape, 50)  # logits (1, T, V): p = 1/50 everywhere
    >>> r = perplexity(uniform, list(range(40)) * 5, ctx=32, progress=False)
    >>> round(r.sliding.ppl, 4), round(r.llama_cpp.ppl, 4), r.llama_cpp.tokens
    (50.0, 50.0, 90)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.llm.eval.corpus import check_token_count
from leanml.progress import track

LogitsModel = nn.Module | Callable[[torch.Tensor], Any]  # ids (1, T) → logits (1, T, V) or an output with .logits
Window = tuple[int, int, bool]  # (begin, end, first token replaced by BOS)


@dataclass(frozen=True)
class PPLFigure:
    """One perplexity figure: ``ppl = exp(nll)``, ``nll`` the mean negative log-likelihood (nats/token)
    over ``tokens`` scored tokens from ``windows`` forward passes; ``ppl_stderr`` as llama.cpp prints it."""

    ppl: float
    nll: float
    tokens: int
    windows: int
    ppl_stderr: float


@dataclass(frozen=True)
class PerplexityResult:
    """Both conventions on the same ``n_tokens`` tokens at context ``ctx`` (sliding with ``stride``)."""

    ctx: int
    stride: int
    n_tokens: int
    sliding: PPLFigure
    llama_cpp: PPLFigure
    forward_passes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-safe)."""
        return asdict(self)


def _device(model: LogitsModel) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def window_logits(model: LogitsModel, ids: torch.Tensor) -> torch.Tensor:
    """Logits (1, T, V) of ``model`` on ``ids`` (1, T); an HF model runs without a KV cache.

    Example:
        >>> window_logits(lambda ids: torch.zeros(*ids.shape, 3), torch.zeros(1, 4, dtype=torch.long)).shape
        torch.Size([1, 4, 3])
    """
    if isinstance(model, nn.Module) and getattr(model, "config", None) is not None:
        out = model(input_ids=ids, use_cache=False)
    else:
        out = model(ids)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or logits.shape[:2] != ids.shape:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise LeanmlError(f"model returned logits of shape {shape} for input {tuple(ids.shape)}", "expected (1, T, V)")
    return logits


@torch.no_grad()
def token_nll(model: LogitsModel, ids: torch.Tensor) -> torch.Tensor:
    """NLL of each next token in one window: ids (T,) → (T - 1,) float64, entry t = -log p(ids[t+1] | ids[:t+1]).

    Example:
        >>> [round(v, 6) for v in token_nll(lambda ids: torch.zeros(*ids.shape, 4), torch.tensor([0, 1, 2])).tolist()]
        [1.386294, 1.386294]
    """
    dev = _device(model)
    logits = window_logits(model, ids.to(dev).unsqueeze(0))[0, :-1].float()  # (T-1, V)
    if int(ids.max()) >= logits.shape[-1] or int(ids.min()) < 0:
        raise LeanmlError(f"token ids outside the vocabulary of {logits.shape[-1]}", "use the model's tokenizer")
    return F.cross_entropy(logits, ids[1:].to(logits.device), reduction="none").double().cpu()  # (T-1,)


def _figure(nlls: list[torch.Tensor], windows: int) -> PPLFigure:
    """Aggregate scored NLLs exactly (float64 sums), with llama.cpp's standard error of the PPL."""
    v = torch.cat(nlls)  # (N,) float64
    n = int(v.numel())
    mean = float(v.sum()) / n
    var = float(v.pow(2).sum()) / n - mean * mean
    stderr = math.sqrt(var / (n - 1)) if n > 1 and var > 0 else 0.0
    ppl = math.exp(mean)
    return PPLFigure(ppl=ppl, nll=mean, tokens=n, windows=windows, ppl_stderr=stderr * ppl)


def llama_cpp_windows(n_tokens: int, ctx: int, with_bos: bool) -> list[tuple[Window, int]]:
    """llama.cpp's chunks as ((begin, end, bos), first scored index into the chunk's NLL vector).

    Example:
        >>> llama_cpp_windows(1100, 512, with_bos=False)
        [((0, 512, False), 256), ((512, 1024, False), 256)]
    """
    first = ctx // 2
    return [((i * ctx, (i + 1) * ctx, with_bos), first) for i in range(n_tokens // ctx)]


def sliding_windows(n_tokens: int, ctx: int, stride: int) -> list[tuple[Window, int]]:
    """The sliding-window passes as ((begin, end, False), first scored index into the window's NLL vector).

    Example:
        >>> sliding_windows(10, 4, 2)
        [((0, 4, False), 0), ((2, 6, False), 1), ((4, 8, False), 1), ((6, 10, False), 1)]
    """
    out: list[tuple[Window, int]] = []
    prev_end = 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + ctx, n_tokens)
        target = end - prev_end  # tokens this window is the first to see
        out.append(((begin, end, False), max(0, end - begin - target - 1)))
        prev_end = end
        if end == n_tokens:
            break
    return out


def perplexity(
    model: LogitsModel,
    token_ids: Sequence[int] | torch.Tensor,
    ctx: int = 512,
    stride: int | None = None,
    progress: bool = True,
    bos_id: int | None = None,
    max_chunks: int | None = None,
) -> PerplexityResult:
    """Sliding-window and llama.cpp perplexity of ``model`` on ``token_ids`` (see the module docstring).

    ``stride`` defaults to ``ctx`` (non-overlapping windows, then the two conventions share their forward
    passes when ``bos_id`` is None); ``bos_id`` is what llama.cpp writes over each chunk's first token
    (pass the BOS id when the tokenizer adds one); ``max_chunks`` keeps the first ``max_chunks * ctx``
    tokens for both figures. Needs at least ``2 * ctx`` tokens. Deterministic for a deterministic model.

    Example:
        >>> toy = lambda ids: torch.zeros(*ids.shape, 8)  # uniform over 8 tokens
        >>> r = perplexity(toy, [i % 8 for i in range(64)], ctx=16, stride=8, progress=False)
        >>> r.sliding.tokens, r.sliding.windows, r.llama_cpp.tokens, r.llama_cpp.windows
        (63, 7, 28, 4)
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()  # (N,)
    check_token_count(int(ids.numel()), ctx)
    stride = ctx if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= ctx:
        raise LeanmlError(f"stride must be an integer in 1..ctx ({ctx}), got {stride!r}", "pass --stride <= --ctx")
    if max_chunks is not None:
        if isinstance(max_chunks, bool) or not isinstance(max_chunks, int) or max_chunks < 1:
            raise LeanmlError(f"max_chunks must be a positive integer, got {max_chunks!r}", "pass e.g. 16")
        ids = ids[: max_chunks * ctx]
    n = int(ids.numel())
    llama = llama_cpp_windows(n, ctx, with_bos=bos_id is not None)
    sliding = sliding_windows(n, ctx, stride)
    needed = list(dict.fromkeys(w for w, _ in llama + sliding))  # unique windows, first-seen order
    start = time.perf_counter()
    nll: dict[Window, torch.Tensor] = {}
    for w in track(needed, total=len(needed), description=f"perplexity ctx {ctx}", enabled=progress):
        begin, end, bos = w
        window = ids[begin:end].clone()  # (L,)
        if bos and bos_id is not None:
            window[0] = bos_id
        nll[w] = token_nll(model, window)  # (L-1,)
    seconds = time.perf_counter() - start
    return PerplexityResult(
        ctx=ctx,
        stride=stride,
        n_tokens=n,
        sliding=_figure([nll[w][first:] for w, first in sliding], len(sliding)),
        llama_cpp=_figure([nll[w][first:] for w, first in llama], len(llama)),
        forward_passes=len(needed),
        seconds=seconds,
    )
