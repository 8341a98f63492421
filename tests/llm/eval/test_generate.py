from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from leanml.errors import LeanmlError

pytest.importorskip("transformers")

from leanml.llm.eval.chat import ChatSession, chat_prompt_ids, plain_chat_text
from leanml.llm.eval.generate import GenerateConfig, eos_token_ids, generate
from leanml.llm.eval.sampling import apply_repetition_penalty, select_token, top_k_filter, top_p_filter
from leanml.llm.eval.streaming import TextStream
from tests.llm.chat_fixtures import chat_tokenizer
from tests.llm.conftest import tiny_llama

PROMPT = "Hello,world!"


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_llama()


@pytest.fixture(scope="module")
def tok() -> Any:
    return chat_tokenizer()


def no_cache_greedy(model: Any, ids: list[int], n: int) -> list[int]:
    """Reference: a full forward over the whole sequence for every new token, argmax of the last position."""
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits  # (1, T, V)
            seq.append(int(logits[0, -1].argmax()))
    return seq[len(ids) :]


class EosAfter(nn.Module):
    """Wraps a causal LM; from its ``after``-th forward on, the logit of ``token`` gets +1000 (forces it)."""

    def __init__(self, inner: nn.Module, token: int, after: int) -> None:
        super().__init__()
        self.inner, self.token, self.after, self.calls = inner, token, after, 0
        self.config = inner.config

    def forward(self, **kwargs: Any) -> Any:
        out = self.inner(**kwargs)
        self.calls += 1
        if self.calls > self.after:
            out.logits[..., self.token] += 1000.0
        return out


def test_char_tokenizer_round_trips(tok: Any) -> None:
    ids = tok.encode(PROMPT)
    assert len(ids) == len(PROMPT) and tok.decode(ids) == PROMPT
    assert (tok.bos_token_id, tok.eos_token_id) == (1, 2)


def test_kv_cache_greedy_equals_a_no_cache_loop(model: Any, tok: Any) -> None:
    ids = tok.encode(PROMPT)
    r = generate(model, tok, ids, GenerateConfig(max_new_tokens=24, stop_at_eos=False))
    assert r.token_ids == no_cache_greedy(model, ids, 24)
    assert (r.prompt_tokens, r.new_tokens, r.decode_steps, r.stop_reason) == (len(ids), 24, 23, "max_new_tokens")
    assert r.prefill_seconds > 0 and r.decode_seconds > 0
    assert r.prefill_tokens_per_s > 0 and r.decode_tokens_per_s > 0
    assert r.to_dict()["text"] == r.text


def test_kv_cache_greedy_equals_hf_generate(model: Any, tok: Any) -> None:
    ids = torch.tensor([tok.encode(PROMPT)])  # (1, P)
    hf = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                        eos_token_id=-1, pad_token_id=0)  # fmt: skip
    r = generate(model, tok, ids, GenerateConfig(max_new_tokens=20, stop_at_eos=False))
    assert r.token_ids == hf[0, ids.shape[1] :].tolist()


def test_sampling_is_seeded(model: Any, tok: Any) -> None:
    ids = tok.encode(PROMPT)
    torch.manual_seed(123)
    global_state = torch.get_rng_state()

    def sample(seed: int) -> list[int]:
        cfg = GenerateConfig(max_new_tokens=20, temperature=1.0, top_p=0.95, top_k=50, seed=seed, stop_at_eos=False)
        return generate(model, tok, ids, cfg).token_ids

    a, b, c = sample(3), sample(3), sample(4)
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is never touched


@pytest.mark.parametrize("extra", [{"top_p": 1e-6}, {"top_k": 1}])
def test_tiny_top_p_and_top_1_are_greedy(model: Any, tok: Any, extra: dict[str, Any]) -> None:
    ids = tok.encode(PROMPT)
    greedy = generate(model, tok, ids, GenerateConfig(max_new_tokens=20, stop_at_eos=False)).token_ids
    cfg = GenerateConfig(max_new_tokens=20, temperature=1.3, seed=7, stop_at_eos=False, **extra)
    assert generate(model, tok, ids, cfg).token_ids == greedy


def test_stops_at_eos_without_streaming_it(model: Any, tok: Any) -> None:
    ids = tok.encode(PROMPT)
    free = generate(model, tok, ids, GenerateConfig(max_new_tokens=10, stop_at_eos=False))
    pieces: list[str] = []
    r = generate(EosAfter(model, tok.eos_token_id, after=3), tok, ids, GenerateConfig(max_new_tokens=10),
                 on_token=pieces.append)  # fmt: skip
    assert r.stop_reason == "eos" and r.token_ids == [*free.token_ids[:3], 2] and r.new_tokens == 4
    assert r.text == tok.decode(free.token_ids[:3]) == "".join(pieces)
    ignored = generate(EosAfter(model, 2, after=3), tok, ids, GenerateConfig(max_new_tokens=10, stop_at_eos=False))
    assert ignored.stop_reason == "max_new_tokens" and ignored.new_tokens == 10


def test_eos_ids_from_the_model_config_list(tok: Any) -> None:
    model = tiny_llama(eos_token_id=[2, 50])
    assert eos_token_ids(model, tok) == {2, 50}
    r = generate(EosAfter(model, 50, after=2), tok, tok.encode(PROMPT), GenerateConfig(max_new_tokens=10))
    assert r.stop_reason == "eos" and r.token_ids[-1] == 50 and r.new_tokens == 3


def test_streamed_pieces_concatenate_to_the_text(model: Any, tok: Any) -> None:
    pieces: list[str] = []
    cfg = GenerateConfig(max_new_tokens=30, temperature=1.0, seed=1, stop_at_eos=False)
    r = generate(model, tok, tok.encode(PROMPT), cfg, on_token=pieces.append)
    assert "".join(pieces) == r.text == tok.decode(r.token_ids, skip_special_tokens=True)
    assert all(pieces)


class ByteTokenizer:
    """One token per UTF-8 byte, as at the bottom of a byte-level BPE vocabulary."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_stream_holds_back_incomplete_utf8() -> None:
    text = "naïve ☃ 🙂!"
    stream = TextStream(ByteTokenizer())
    pieces = [stream.push(b) for b in text.encode()]
    assert "".join(pieces) + stream.finish() == text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[-2:] == ["🙂", "!"] and pieces[-5:-2] == ["", "", ""]  # the emoji's 4 bytes: 3 held back


def test_context_overflow_and_empty_prompt_are_clear_errors(model: Any, tok: Any) -> None:
    with pytest.raises(LeanmlError, match=r"= 266 exceeds the model's context of 256 tokens.*--max-new-tokens 6"):
        generate(model, tok, [5] * 250, GenerateConfig(max_new_tokens=16))
    generate(model, tok, [5] * 250, GenerateConfig(max_new_tokens=6))  # exactly fills the context
    with pytest.raises(LeanmlError, match="prompt is empty"):
        generate(model, tok, [], GenerateConfig())
    with pytest.raises(LeanmlError, match="outside the vocabulary"):
        generate(model, tok, [500], GenerateConfig())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_new_tokens", 0, "max_new_tokens must be an integer >= 1"),
        ("max_new_tokens", 2.5, "max_new_tokens must be an integer >= 1"),
        ("temperature", -0.1, "temperature must be a number >= 0"),
        ("top_p", 0.0, r"top_p must be in \(0, 1\]"),
        ("top_p", 1.5, r"top_p must be in \(0, 1\]"),
        ("top_k", -1, "top_k must be an integer >= 0"),
        ("seed", -3, "seed must be an integer >= 0"),
        ("stop_at_eos", "yes", "stop_at_eos must be true or false"),
        ("repetition_penalty", 0.0, "repetition_penalty must be a number > 0"),
    ],
)
def test_config_validation(field: str, value: Any, message: str) -> None:
    with pytest.raises(LeanmlError, match=message):
        GenerateConfig(**{field: value})


def test_config_round_trips() -> None:
    cfg = GenerateConfig(max_new_tokens=7, temperature=0.5, top_p=0.8, top_k=3, seed=9, repetition_penalty=1.2)
    assert GenerateConfig.from_dict(cfg.to_dict()) == cfg and not cfg.greedy and GenerateConfig().greedy


def test_sampling_filters() -> None:
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    kept = top_p_filter(probs.log(), 0.8).isfinite().tolist()
    assert kept == [False, True, True, False]  # 0.5 + 0.3 >= 0.8: the smallest such set
    assert top_p_filter(probs.log(), 0.81).isfinite().tolist() == [False, True, True, True]
    assert top_k_filter(probs.log(), 3).isfinite().tolist() == [False, True, True, True]
    assert apply_repetition_penalty(torch.tensor([1.0, -1.0, 3.0]), [0, 1, 1], 2.0).tolist() == [0.5, -2.0, 3.0]
    g = torch.Generator().manual_seed(0)
    draws = {select_token(probs.log(), 1.0, top_p=0.8, generator=g) for _ in range(200)}
    assert draws == {1, 2}
    with pytest.raises(LeanmlError, match=r"seeded torch\.Generator"):
        select_token(probs.log(), temperature=1.0)


def test_repetition_penalty_changes_greedy_output(model: Any, tok: Any) -> None:
    ids = tok.encode(PROMPT)
    plain = generate(model, tok, ids, GenerateConfig(max_new_tokens=24, stop_at_eos=False)).token_ids
    cfg = GenerateConfig(max_new_tokens=24, stop_at_eos=False, repetition_penalty=100.0)
    penalized = generate(model, tok, ids, cfg).token_ids
    assert penalized != plain
    assert len(set(penalized)) > len(set(plain))


def test_chat_prompt_from_the_template(tok: Any) -> None:
    messages = [{"role": "system", "content": "Bekind"}, {"role": "user", "content": "Hi"}]  # no space: not in vocab
    ids = chat_prompt_ids(tok, messages)
    assert ids[0] == 1 and ids.count(1) == 3 and ids.count(2) == 2  # <s> per turn + the answer's, </s> per message
    assert tok.decode(ids, skip_special_tokens=True) == "system:Bekinduser:Hiassistant:"
    plain = chat_prompt_ids(chat_tokenizer(template=False), messages, template=False)
    assert plain_chat_text(messages) == "system: Bekind\nuser: Hi\nassistant:"
    assert plain == tok.encode(plain_chat_text(messages), add_special_tokens=False)
    with pytest.raises(LeanmlError, match=r"the tokenizer has no chat template.*--no-template"):
        chat_prompt_ids(chat_tokenizer(template=False), messages)
    with pytest.raises(LeanmlError, match="message 0 has role 'bot'"):
        chat_prompt_ids(tok, [{"role": "bot", "content": "x"}])
    strict = chat_tokenizer()
    strict.chat_template = "{{ raise_exception('no system role') if messages[0]['role'] == 'system' }}"
    with pytest.raises(LeanmlError, match="the chat template refused the messages: no system role"):
        chat_prompt_ids(strict, messages)


def test_chat_session_keeps_the_conversation(model: Any, tok: Any) -> None:
    session = ChatSession(model, tok, GenerateConfig(max_new_tokens=8, stop_at_eos=False), system="Be kind")
    first = session.ask("Hi")
    second = session.ask("Again")
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert session.messages[2]["content"] == first.text.strip()
    assert second.prompt_tokens > first.prompt_tokens + first.new_tokens  # the whole conversation re-prefilled
    expected = chat_prompt_ids(tok, session.messages[:4])
    again = generate(model, tok, expected, GenerateConfig(max_new_tokens=8, stop_at_eos=False, seed=1))
    assert again.token_ids == second.token_ids
    before = list(session.messages)
    with pytest.raises(LeanmlError, match="exceeds the model's context"):
        session.ask("x" * 300)
    assert session.messages == before  # a failed turn changes nothing
    session.reset()
    assert session.messages == [{"role": "system", "content": "Be kind"}] and session.turns == 0
    with pytest.raises(LeanmlError, match="no chat template"):
        ChatSession(model, chat_tokenizer(template=False))
    plain = ChatSession(model, chat_tokenizer(template=False), GenerateConfig(max_new_tokens=4), template=False)
    assert plain.ask("Hi").prompt_tokens == len("user: Hi\nassistant:")
