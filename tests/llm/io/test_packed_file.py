from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from leanml.errors import LeanmlError
from leanml.llm import LLMQuantConfig, quantize_llm_
from leanml.llm.io.model_info import LLMInfo, LoadedLLM
from leanml.llm.io.packed_file import MAGIC, PREFIX, PackedFile, is_packed_file, read_header
from leanml.llm.io.packed_model import load_packed, save_packed
from leanml.llm.quant.bit_packing import PackedLinear
from tests.llm.conftest import char_tokenizer, tiny_llama

IDS = torch.randint(3, 90, (2, 24), generator=torch.Generator().manual_seed(0))


def loaded(model: torch.nn.Module) -> LoadedLLM:
    info = LLMInfo("LlamaForCausalLM", 2, 64, 4, 2, 16, 96, 128, True, "float32", 0, "tiny", "hf", {})
    return LoadedLLM(model, char_tokenizer(), info, 0.0)


@pytest.mark.parametrize(("method", "bits", "group"), [("rtn", 4, 32), ("rtn", 3, 48), ("awq", 4, 64)])
def test_round_trip_is_exact_in_float32(tmp_path: Path, method: str, bits: int, group: int) -> None:
    model = tiny_llama()
    codes = quantize_llm_(model, LLMQuantConfig(method=method, bits=bits, group_size=group), IDS, progress=False)
    path = tmp_path / "m.lmq"
    size = save_packed(path, loaded(model), codes, float_dtype="float32")
    assert path.stat().st_size == size and is_packed_file(path)
    back = load_packed(path)
    assert isinstance(back.model.model.layers[1].mlp.down_proj, PackedLinear)
    with torch.no_grad():
        assert torch.equal(back.model(IDS).logits, model(IDS).logits)  # the packed model is the pseudo-quantized one
    assert back.tokenizer.encode("abc") == char_tokenizer().encode("abc")
    assert back.info.format == "leanml-packed" and back.info.layers == 2


def test_float16_file_is_smaller_and_close(tmp_path: Path) -> None:
    model = tiny_llama()
    codes = quantize_llm_(model, LLMQuantConfig(bits=4, group_size=32, method="rtn"), progress=False)
    s32 = save_packed(tmp_path / "a.lmq", loaded(model), codes, float_dtype="float32")
    s16 = save_packed(tmp_path / "b.lmq", loaded(model), codes)
    assert s16 < s32
    with torch.no_grad():
        diff = (load_packed(tmp_path / "b.lmq").model(IDS).logits - model(IDS).logits).abs().max()
    assert float(diff) < 0.05


def test_corrupt_files_are_clear_errors(tmp_path: Path) -> None:
    model = tiny_llama()
    codes = quantize_llm_(model, LLMQuantConfig(bits=4, group_size=32, method="rtn"), progress=False)
    path = tmp_path / "m.lmq"
    save_packed(path, loaded(model), codes)
    blob = path.read_bytes()
    _, _, _, head_len = PREFIX.unpack(blob[: PREFIX.size])
    cases = {
        "bad magic": b"GGUF" + blob[4:],
        "format version 9": blob[:8] + struct.pack("<I", 9) + blob[12:],
        "truncated": blob[: len(blob) // 2],
        "header runs past the end": blob[:40],
        "corrupt header": blob[: PREFIX.size] + b"{" * head_len + blob[PREFIX.size + head_len :],
    }
    for message, data in cases.items():
        bad = tmp_path / "bad.lmq"
        bad.write_bytes(data)
        with pytest.raises(LeanmlError, match=message.split()[0] if message != "truncated" else "does not fit"):
            load_packed(bad)
    header = json.loads(blob[PREFIX.size : PREFIX.size + head_len])
    name = next(iter(header["linears"]))
    header["linears"][name]["in"] = 65
    head = json.dumps(header).encode()
    (tmp_path / "shape.lmq").write_bytes(PREFIX.pack(MAGIC, 1, 0, len(head)) + head + b"\0" * len(blob))
    with pytest.raises(LeanmlError, match=f"packed weight of {name} has the wrong shape"):
        read_header(tmp_path / "shape.lmq")
    with pytest.raises(LeanmlError, match="not found"):
        load_packed(tmp_path / "missing.lmq")


def test_packed_file_owns_header_tensors_tokenizer_and_info(tmp_path: Path) -> None:
    model = tiny_llama()
    codes = quantize_llm_(model, LLMQuantConfig(method="rtn", bits=4, group_size=32), progress=False)
    path = tmp_path / "m.lmq"
    save_packed(path, loaded(model), codes, float_dtype="float32")
    with PackedFile(path) as f:
        assert f.header == read_header(path)[0] and set(f.linears) == set(codes.weights)
        norm = f.float32("model.norm.weight", (64,))
        assert torch.equal(torch.from_numpy(norm), model.model.norm.weight.detach())
        assert f.array("model.layers.0.mlp.down_proj.qweight").shape == (64, 48)  # (out, ceil(96 * 4 / 8))
        with pytest.raises(LeanmlError, match="has shape"):
            f.array("model.norm.weight", (65,))
        with pytest.raises(LeanmlError, match="has no tensor"):
            f.array("no.such.tensor")
        assert set(f.tokenizer_files()) and f.tokenizer().encode("abc") == char_tokenizer().encode("abc")
        info = f.info("leanml-packed-c", "w4a8")
    back = load_packed(path).info
    assert (info.layers, info.hidden_size, info.heads, info.kv_heads, info.head_dim, info.vocab_size) == (
        back.layers, back.hidden_size, back.heads, back.kv_heads, back.head_dim, back.vocab_size)  # fmt: skip
    assert info.architecture == back.architecture == "LlamaForCausalLM" and info.source == back.source == str(path)
    assert info.format == "leanml-packed-c" and info.dtype == "w4a8" and info.params > 0
