from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.llm.eval.perplexity import llama_cpp_windows, perplexity, sliding_windows


class Categorical(nn.Module):
    """Predicts the same categorical distribution ``p`` at every position, whatever the input; records inputs."""

    def __init__(self, p: torch.Tensor) -> None:
        super().__init__()
        self.logp = p.log()
        self.seen: list[torch.Tensor] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.seen.append(ids.clone())
        return self.logp.expand(*ids.shape, -1)  # (1, T, V)


def test_uniform_model_has_perplexity_vocab_size() -> None:
    v = 37
    model = Categorical(torch.full((v,), 1.0 / v))
    ids = torch.randint(0, v, (1000,))
    for ctx, stride in [(64, None), (64, 16), (100, 100), (128, 1)]:
        r = perplexity(model, ids, ctx=ctx, stride=stride, progress=False)
        assert r.sliding.ppl == pytest.approx(v, rel=1e-6)
        assert r.llama_cpp.ppl == pytest.approx(v, rel=1e-6)
        assert r.sliding.ppl_stderr == pytest.approx(0.0, abs=1e-3)


def test_fixed_categorical_matches_analytic_value_on_exactly_the_scored_tokens() -> None:
    v, ctx, n = 10, 16, 100  # 6 chunks of 16 tokens (4 tokens left over)
    p = torch.arange(1, v + 1, dtype=torch.float64) / (v * (v + 1) / 2)  # p[k] ∝ k + 1
    ids = torch.tensor([(7 * i + 3) % v for i in range(n)])
    logp = p.log().tolist()
    model = Categorical(p.float())
    r = perplexity(model, ids, ctx=ctx, progress=False)

    # sliding, stride == ctx: windows [0,16), [16,32), ..., [96,100); all tokens but each window's first
    scored = [i for i in range(n) if i % ctx != 0]
    assert r.sliding.tokens == len(scored) == n - 7 and r.sliding.windows == 7
    assert r.sliding.ppl == pytest.approx(math.exp(-sum(logp[ids[i]] for i in scored) / len(scored)), rel=1e-6)

    # llama.cpp: 6 full chunks; in each, positions ctx/2 + 1 .. ctx - 1 (7 tokens) are scored
    scored = [c * ctx + j for c in range(n // ctx) for j in range(ctx // 2 + 1, ctx)]
    assert r.llama_cpp.tokens == len(scored) == 6 * (ctx - 1 - ctx // 2) and r.llama_cpp.windows == 6
    assert r.llama_cpp.ppl == pytest.approx(math.exp(-sum(logp[ids[i]] for i in scored) / len(scored)), rel=1e-6)
    assert r.forward_passes == 7  # the 6 full windows are shared by both conventions


def test_llama_cpp_token_count_at_ctx_512() -> None:
    model = Categorical(torch.full((50,), 0.02))
    r = perplexity(model, torch.randint(0, 50, (512 * 3 + 100,)), ctx=512, progress=False)
    assert (r.llama_cpp.windows, r.llama_cpp.tokens) == (3, 3 * 255)
    assert [first for _, first in llama_cpp_windows(2048, 512, False)] == [256] * 4  # logits 256..510 → tokens 257..511


def test_sliding_stride_scores_every_token_once() -> None:
    n, ctx = 300, 64
    for stride in (1, 7, 32, 63, 64):
        windows = sliding_windows(n, ctx, stride)
        covered: list[int] = []
        for (begin, end, _), first in windows:
            assert end - begin <= ctx
            covered += [begin + 1 + j for j in range(first, end - begin - 1)]  # NLL entry j scores token j + 1
        if stride < ctx:
            assert covered == list(range(1, n))  # each token but the first, in order, once
        else:
            assert covered == [i for i in range(n) if i % ctx]


def test_bos_replaces_the_first_token_of_llama_cpp_chunks_only() -> None:
    model = Categorical(torch.full((20,), 0.05))
    ids = torch.arange(3, 19).repeat(10)  # 160 tokens, never 1
    r = perplexity(model, ids, ctx=32, progress=False, bos_id=1)
    firsts = sorted(int(s[0, 0]) for s in model.seen)
    assert r.llama_cpp.windows == 5 and r.sliding.windows == 5
    assert r.forward_passes == 10  # BOS-patched chunks differ from the sliding windows
    assert firsts.count(1) == 5
    assert all(int(s[0, 1:].eq(1).sum()) == 0 for s in model.seen)


def test_max_chunks_limits_both_conventions() -> None:
    model = Categorical(torch.full((20,), 0.05))
    r = perplexity(model, torch.randint(0, 20, (1000,)), ctx=64, progress=False, max_chunks=3)
    assert r.n_tokens == 192 and r.llama_cpp.windows == 3 and r.sliding.windows == 3


def test_bad_inputs() -> None:
    model = Categorical(torch.full((20,), 0.05))
    with pytest.raises(LeanmlError, match="too few for context 64"):
        perplexity(model, torch.zeros(127, dtype=torch.long), ctx=64, progress=False)
    with pytest.raises(LeanmlError, match="stride"):
        perplexity(model, torch.zeros(200, dtype=torch.long), ctx=64, stride=65, progress=False)
    with pytest.raises(LeanmlError, match="vocabulary"):
        perplexity(model, torch.full((200,), 25), ctx=64, progress=False)
    with pytest.raises(LeanmlError, match="max_chunks"):
        perplexity(model, torch.zeros(200, dtype=torch.long), ctx=64, progress=False, max_chunks=0)


def test_tiny_llama_matches_hf_loss_and_is_deterministic() -> None:
    pytest.importorskip("transformers")
    from tests.llm.conftest import tiny_llama

    model = tiny_llama()
    ids = torch.randint(3, 93, (200,))
    r1 = perplexity(model, ids, ctx=64, progress=False)
    r2 = perplexity(model, ids, ctx=64, progress=False)
    assert r1.sliding == r2.sliding and r1.llama_cpp == r2.llama_cpp
    with torch.no_grad():  # one window: HF's own mean cross-entropy over the window's 63 predictions
        loss = model(input_ids=ids[None, :64], labels=ids[None, :64]).loss
    r = perplexity(model, ids[:128], ctx=64, stride=64, progress=False, max_chunks=1)
    assert r.sliding.nll == pytest.approx(float(loss), rel=1e-5)
