"""The C runtime (leanml.llm.runtime.decoder) against the PyTorch reference path on tiny random Llamas.

Two references, both the packed file loaded by ``load_packed`` (PackedLinear, float32):

- *emulated*: the reference with the C runtime's two approximations written in torch: every linear's input
  quantized to int8 per block of 32 (symmetric, round half to even) and keys (after RoPE) and values rounded to
  float16 (the KV cache); with the int8 head, the head's weights are the int8 matrix the runtime made. The C logits
  must match it within 1e-4 (float rounding; measured ~3e-6) on at least half of 12 short sequences: float rounding
  in a different order can move one activation across a rounding boundary of its int8 grid (one code step), which
  shifts the logits by ~1e-2 from there on (the KV cache carries it to later positions; seen in 1 to 3 of 10
  sequences of 8 tokens, more with wider layers); every position stays within 5% of the largest logit.
- *plain*: the reference as is. The C runtime differs from it by W4A8's activation quantization: stated bound 10%
  of the largest logit on these random models (measured ~3%), and greedy decoding agrees on a short prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.llm import GenerateConfig, LLMQuantConfig, generate, perplexity, quantize_llm_
from leanml.llm.io.model_info import LLMInfo, LoadedLLM
from leanml.llm.io.packed_file import PackedFile
from leanml.llm.io.packed_model import load_packed, save_packed
from leanml.llm.quant.bit_packing import PackedLinear
from leanml.llm.runtime.bindings import ERR_LEN, LayerDesc, load_library
from leanml.llm.runtime.causal_lm import CRuntimeLM, load_c_engine
from leanml.llm.runtime.decoder import CRuntime, check_config, int8_matrix
from tests.llm.conftest import char_tokenizer, tiny_llama

pytest.importorskip("transformers")
EXACT = 1e-4  # |C - emulated reference| (float32 rounding in a different order)
IDS = torch.randint(3, 90, (40,), generator=torch.Generator().manual_seed(0))
SEQS = torch.randint(3, 90, (12, 6), generator=torch.Generator().manual_seed(1))  # short independent sequences


def make_packed(path: Path, bits: int = 4, group: int = 32, **overrides: Any) -> Path:
    model = tiny_llama(**overrides)
    codes = quantize_llm_(model, LLMQuantConfig(bits=bits, group_size=group, method="rtn"), progress=False)
    c = model.config
    info = LLMInfo("LlamaForCausalLM", c.num_hidden_layers, c.hidden_size, 4, 2, c.hidden_size // 4,
                   c.intermediate_size, 128, True, "float32", 0, "tiny", "hf", {})  # fmt: skip
    save_packed(path, LoadedLLM(model, char_tokenizer(), info, 0.0), codes, float_dtype="float32")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_packed(tmp_path_factory.mktemp("rt") / "tiny.lmq")


def qact(x: torch.Tensor) -> torch.Tensor:
    """x (..., k) quantized to int8 per block of 32 (as lmq_quantize_row_ref) and back to float."""
    k = x.shape[-1]
    kp = -(-k // 32) * 32
    xp = F.pad(x, (0, kp - k)).reshape(*x.shape[:-1], kp // 32, 32)
    d = xp.abs().amax(-1, keepdim=True) / 127.0
    q = torch.round(xp * torch.where(d != 0, 1.0 / d, torch.zeros_like(d))).clamp(-127, 127)
    return (q * d).reshape(*x.shape[:-1], kp)[..., :k]


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function path, head -> the reference model with the C runtime's approximations (see the module)."""
    import transformers.models.llama.modeling_llama as ml

    rope = ml.apply_rotary_pos_emb

    def rope16(q: torch.Tensor, k: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        qe, ke = rope(q, k, *args, **kwargs)
        return qe, ke.half().float()

    monkeypatch.setattr(ml, "apply_rotary_pos_emb", rope16)

    def build(path: Path, head: str = "float32") -> Any:
        model = load_packed(path).model
        for mod in model.modules():
            if isinstance(mod, PackedLinear):
                mod.forward = (lambda m: lambda x: PackedLinear.forward(m, qact(x)))(mod)  # type: ignore[method-assign]
        for layer in model.model.layers:
            v = layer.self_attn.v_proj
            v.forward = (lambda f: lambda x: f(x).half().float())(v.forward)
        if head == "int8":
            m = int8_matrix(model.lm_head.weight.detach().numpy())
            from leanml.llm.runtime.kernels import unpack_rows

            codes = unpack_rows(m.codes, 8, m.k).astype(np.float32) - 128.0
            scale = np.repeat(m.scales.view(np.float16).astype(np.float32), m.group, 1)[:, : m.k]
            w = torch.from_numpy(codes * scale)
            model.lm_head = torch.nn.Linear(m.k, m.n, bias=False)
            model.lm_head.weight.data = w
            model.lm_head.forward = (lambda lin: lambda x: F.linear(qact(x), lin.weight))(model.lm_head)
        return model

    yield build


def logits_of(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids.unsqueeze(0)).logits[0]  # (T, V)


def assert_matches(rt: CRuntime, reference: Any) -> None:
    """On each of SEQS: C logits within EXACT of the reference's on half of the sequences or more, 5% everywhere."""
    worst = []
    for seq in SEQS:
        want = logits_of(reference, seq)  # (8, V)
        diff = (rt.prefill(seq, all_logits=True) - want).abs().max()
        assert diff < 0.05 * want.abs().max()
        worst.append(float(diff))
    assert np.mean(np.array(worst) < EXACT) >= 0.5, worst


@pytest.mark.parametrize("head", ["float32", "int8"])
def test_prefill_and_decode_match_the_emulated_reference(tiny: Path, emulated: Any, head: str) -> None:
    rt = CRuntime(tiny, n_ctx=64, threads=2, head=head)
    assert_matches(rt, emulated(tiny, head))
    got = rt.prefill(IDS, all_logits=True)
    torch.testing.assert_close(rt.prefill(IDS[:25]), got[24], atol=EXACT, rtol=0)  # last-token logits
    steps = torch.stack([rt.decode(int(t)) for t in IDS[25:]])
    assert rt.position == len(IDS)
    assert (steps - got[25:]).abs().max() < EXACT  # decode = prefill's rows (same arithmetic per token)


@pytest.mark.parametrize(
    ("bits", "group", "overrides"),
    [
        (4, 64, {}),  # down_proj in 96 = 64 + 32: a short last group
        (4, 32, {"hidden_size": 80, "intermediate_size": 112}),  # 80 = 2 x 32 + 16: a short last activation block
        (3, 32, {}),  # 3-bit codes on the int4 kernel
        (8, 32, {}),  # 8-bit codes on the int8 kernel
        (4, 128, {"hidden_size": 160, "intermediate_size": 288}),  # g128: 160 = 128 + 32, 288 = 2 x 128 + 32
    ],
)
def test_group_sizes_tails_and_bit_widths(tmp_path: Path, emulated: Any, bits: int, group: int,
                                          overrides: dict[str, Any]) -> None:  # fmt: skip
    path = make_packed(tmp_path / "m.lmq", bits, group, **overrides)
    assert_matches(CRuntime(path, n_ctx=48, threads=2, head="float32"), emulated(path))


def test_close_to_the_plain_reference_and_greedy_agrees(tiny: Path) -> None:
    ref = load_packed(tiny)
    want = logits_of(ref.model, IDS)
    rt = CRuntime(tiny, n_ctx=128, threads=2)
    got = rt.prefill(IDS, all_logits=True)
    assert (got - want).abs().max() < 0.1 * want.abs().max()  # W4A8 vs W4A32 on a random model (measured ~3%)
    prompt = [int(i) for i in ref.tokenizer.encode("Hello there, general")]
    cfg = GenerateConfig(max_new_tokens=12, stop_at_eos=False)
    c_out = generate(CRuntimeLM(rt), ref.tokenizer, prompt, cfg)
    torch_out = generate(ref.model, ref.tokenizer, prompt, cfg)
    assert c_out.token_ids == torch_out.token_ids
    assert c_out.decode_tokens_per_s > 0


def test_thread_counts_and_chunked_prefill_agree(tiny: Path) -> None:
    ids = torch.randint(3, 90, (200,), generator=torch.Generator().manual_seed(1))
    one = CRuntime(tiny, n_ctx=256, threads=1).prefill(ids, all_logits=True)  # chunks of 128 + 72
    three = CRuntime(tiny, n_ctx=256, threads=3)
    torch.testing.assert_close(three.prefill(ids, all_logits=True), one, rtol=0, atol=0)  # rows split: same bits
    three.prefill(ids[:150])
    steps = torch.stack([three.decode(int(t)) for t in ids[150:]])
    assert (steps - one[150:]).abs().max() < EXACT


def test_c_engine_model_runs_perplexity_and_generation(tiny: Path) -> None:
    llm = load_c_engine(tiny, n_ctx=64, threads=1)
    assert isinstance(llm.model, CRuntimeLM) and llm.info.format == "leanml-packed-c"
    r = perplexity(llm.model, IDS.tolist() * 2, ctx=32, progress=False)
    ref = perplexity(load_packed(tiny).model, IDS.tolist() * 2, ctx=32, progress=False)
    assert abs(r.sliding.ppl / ref.sliding.ppl - 1) < 0.05
    with pytest.raises(LeanmlError, match="exceeds the model's context of 64"):
        generate(llm.model, llm.tokenizer, list(range(3, 60)), GenerateConfig(max_new_tokens=10))


def test_bad_input_is_a_clear_error(tiny: Path, tmp_path: Path) -> None:
    for threads in (0, -1):
        with pytest.raises(LeanmlError, match="threads must be a positive integer"):
            CRuntime(tiny, n_ctx=16, threads=threads)
    with pytest.raises(LeanmlError, match="n_ctx must be a positive integer"):
        CRuntime(tiny, n_ctx=0)
    with pytest.raises(LeanmlError, match="exceeds the model's context of 256"):
        CRuntime(tiny, n_ctx=257)
    rt = CRuntime(tiny, n_ctx=16, threads=1)
    with pytest.raises(LeanmlError, match="exceed the context of 16"):
        rt.prefill(list(range(3, 20)))  # a prompt longer than the context
    rt.prefill(list(range(3, 19)))
    with pytest.raises(LeanmlError, match="16 cached \\+ 1 new tokens exceed the context of 16"):
        rt.decode(5)
    with pytest.raises(LeanmlError, match="outside the vocabulary"):
        rt.prefill([3, 128])
    with pytest.raises(LeanmlError, match="head kind"):
        CRuntime(tiny, head="int3")
    blob = tiny.read_bytes()
    (tmp_path / "cut.lmq").write_bytes(blob[: len(blob) - 1000])
    with pytest.raises(LeanmlError, match="truncated or appended"):
        CRuntime(tmp_path / "cut.lmq")
    flipped = bytearray(blob)
    flipped[-300] ^= 0x40
    (tmp_path / "flip.lmq").write_bytes(bytes(flipped))
    with pytest.raises(LeanmlError, match=r"the C runtime refused .*flip\.lmq: data checksum mismatch"):
        CRuntime(tmp_path / "flip.lmq")  # Python skips the CRC for the C engine: C checks it
    (tmp_path / "foreign.lmq").write_bytes(b"GGUF" + blob[4:])
    with pytest.raises(LeanmlError, match="bad magic"):
        CRuntime(tmp_path / "foreign.lmq")
    with pytest.raises(LeanmlError, match="group size 48 is not a multiple of 32"):
        CRuntime(make_packed(tmp_path / "g48.lmq", 4, 48))
    with pytest.raises(LeanmlError, match="not a Llama-family model"):
        check_config({"model_type": "qwen3"})
    with pytest.raises(LeanmlError, match="sliding-window"):
        check_config({"model_type": "mistral", "sliding_window": 4096})
    rt.close()
    with pytest.raises(LeanmlError, match="closed"):
        rt.decode(3)


def test_c_rechecks_every_size(tiny: Path) -> None:
    import ctypes

    rt = CRuntime(tiny, n_ctx=16, threads=1)
    packed = PackedFile(tiny)
    err = ctypes.create_string_buffer(ERR_LEN)
    cases = {
        "embedding buffer": lambda d: setattr(d, "embed_bytes", d.embed_bytes - 4),
        "layer table": lambda d: setattr(d, "layers_bytes", 0),
        "heads must be a multiple": lambda d: setattr(d, "n_kv_heads", 3),
        "threads must be in": lambda d: setattr(d, "threads", 0),
        "n_ctx must be in": lambda d: setattr(d, "n_ctx", -5),
        "buffer sizes": lambda d: ctypes.cast(d.layers, ctypes.POINTER(type(d.head_q) * 1)),  # replaced below
    }
    for message, corrupt in cases.items():
        desc = rt._describe(packed, packed.header["config"])
        if message == "buffer sizes":  # layer 1's down_proj claims one byte too few
            layers = ctypes.cast(desc.layers, ctypes.POINTER(LayerDesc))
            layers[1].down.q_bytes -= 1
        else:
            corrupt(desc)
        assert not rt.lib.lmq_create(ctypes.byref(desc), err, ERR_LEN)
        assert message in err.value.decode(), err.value.decode()


def test_c_file_check_refuses_a_bad_table() -> None:
    import ctypes
    import zlib

    lib = load_library()
    data = np.zeros(64 * 5, np.uint8)
    data[64:] = np.arange(256, dtype=np.uint8)
    crc = zlib.crc32(data[64:].tobytes())
    err = ctypes.create_string_buffer(256)

    def check(spans: list[tuple[int, int]], start: int = 64, nbytes: int = 256, want: int = crc) -> str:
        table = np.array(spans, np.int64).reshape(-1, 2)
        rc = lib.lmq_check_file(data.ctypes.data, data.size, start, nbytes, table.ctypes.data, len(table), want, 1,
                                err, 256)  # fmt: skip
        return "" if rc == 0 else err.value.decode()

    assert check([(0, 64), (64, 100), (192, 64)]) == ""
    assert "unaligned or outside" in check([(0, 64), (72, 8)])
    assert "unaligned or outside" in check([(192, 65)])
    assert "unaligned or outside" in check([(-64, 8)])
    assert "overlaps the previous one" in check([(0, 128), (64, 8)])
    assert "does not end the" in check([(0, 64)], nbytes=128)
    assert "does not fit" in check([(0, 64)], start=7)
    assert "data checksum mismatch" in check([(0, 64)], want=crc ^ 1)
