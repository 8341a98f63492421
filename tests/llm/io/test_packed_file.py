from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from leanml.errors import LeanmlError
from leanml.llm import LLMQuantConfig, quantize_llm_
from leanml.llm.io.model_info import LLMInfo, LoadedLLM
from leanml.llm.io.packed_file import MAGIC, PREFIX, VERSION, PackedFile, align, is_packed_file, read_header
from leanml.llm.io.packed_model import load_packed, save_packed
from leanml.llm.quant.bit_packing import PackedLinear
from tests.fuzz_mutations import deep_json
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


def repack(blob: bytes, edit: Any, version: int = VERSION) -> bytes:
    """``blob`` with its header edited by ``edit(header)`` (checksums recomputed, data region kept)."""
    _, _, _, head_len = PREFIX.unpack(blob[: PREFIX.size])
    header = json.loads(blob[PREFIX.size : PREFIX.size + head_len])
    data = blob[align(PREFIX.size + head_len) :]
    edit(header)
    head = json.dumps(header).encode()
    start = align(PREFIX.size + len(head))
    out = PREFIX.pack(MAGIC, version, zlib.crc32(head), len(head)) + head
    return out + bytes(start - len(out)) + data


def test_corrupt_files_are_clear_errors(tmp_path: Path) -> None:
    model = tiny_llama()
    codes = quantize_llm_(model, LLMQuantConfig(bits=4, group_size=32, method="rtn"), progress=False)
    path = tmp_path / "m.lmq"
    save_packed(path, loaded(model), codes)
    blob = path.read_bytes()
    _, _, _, head_len = PREFIX.unpack(blob[: PREFIX.size])
    header = json.loads(blob[PREFIX.size : PREFIX.size + head_len])
    name = next(iter(header["linears"]))
    scales = next(t for t in header["tensors"] if t["name"] == f"{name}.scales")
    flipped = bytearray(blob)
    flipped[-100] ^= 0x10

    def unaligned(h: dict[str, Any]) -> None:
        h["tensors"][1]["offset"] += 8

    def overlapping(h: dict[str, Any]) -> None:
        h["tensors"][1]["offset"] = h["tensors"][0]["offset"]

    def wrong_in(h: dict[str, Any]) -> None:
        h["linears"][name]["in"] = 65

    def zero_group(h: dict[str, Any]) -> None:
        h["linears"][name]["group_size"] = 0

    def zero_heads(h: dict[str, Any]) -> None:
        h["config"]["num_attention_heads"] = 0

    def no_layer(h: dict[str, Any]) -> None:
        h["tensors"] = [t for t in h["tensors"] if not t["name"].startswith("model.layers.1.input_layernorm")]

    def huge(h: dict[str, Any]) -> None:
        h["tensors"][0]["shape"] = [2**62, 2**62]

    cases = {
        "bad magic": b"GGUF" + blob[4:],
        "format version 9": blob[:8] + struct.pack("<I", 9) + blob[12:],
        "truncated or appended": blob[: len(blob) // 2],
        "truncated or corrupt \\(header length": blob[:40],
        "header checksum mismatch": blob[: PREFIX.size] + b"{" * head_len + blob[PREFIX.size + head_len :],
        "data checksum mismatch": bytes(flipped),
        "nested 101 levels deep, more than the 64": repack(blob, lambda h: h.update(extra=json.loads(deep_json(100)))),
        "version 1 .* leanml llm quantize tiny --method rtn --bits 4 --group-size 32": repack(blob, lambda h: None, 1),
        "not a multiple of 64": repack(blob, unaligned),
        "overlap": repack(blob, overlapping),
        f"packed qweight of {name} has the wrong shape": repack(blob, wrong_in),
        f"linear {name} 'group_size' = 0": repack(blob, zero_group),
        "num_attention_heads = 0 is out of range": repack(blob, zero_heads),
        "lacks weights of the model: model.layers.1.input_layernorm.weight \\(1 missing\\)": repack(blob, no_layer),
        "shape entry = 4611686018427387904": repack(blob, huge),
    }
    for message, data in cases.items():
        bad = tmp_path / "bad.lmq"
        bad.write_bytes(data)
        with pytest.raises(LeanmlError, match=message) as error:
            load_packed(bad)
        assert "bad.lmq" in str(error.value)  # every error names the file
    nan_scale = bytearray(repack(blob, lambda h: None))
    begin = len(nan_scale) - int(header["data_bytes"]) + scales["offset"]
    nan_scale[begin : begin + 2] = b"\x00\x7e"  # float16 NaN; the CRC is skipped to reach the scale check
    (tmp_path / "nan.lmq").write_bytes(bytes(nan_scale))
    with pytest.raises(LeanmlError, match=f"{name}.scales holds NaN"):
        PackedFile(tmp_path / "nan.lmq", verify=False)
    with pytest.raises(LeanmlError, match="data checksum mismatch"):
        PackedFile(tmp_path / "nan.lmq")
    with pytest.raises(LeanmlError, match="not found"):
        load_packed(tmp_path / "missing.lmq")


def test_crc32_in_c_matches_zlib() -> None:
    from leanml.llm.runtime.bindings import load_library

    lib = load_library()
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8)
    for n in (0, 1, 7, 8, 9, 4096, len(data)):
        want = zlib.crc32(data[:n].tobytes())
        assert lib.lmq_crc32(0, data.ctypes.data, n) == lib.lmq_crc32_ref(0, data.ctypes.data, n) == want
    assert lib.lmq_crc32(lib.lmq_crc32(0, data.ctypes.data, 5), data.ctypes.data + 5, 100) == zlib.crc32(
        data[:105].tobytes()
    )


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


def test_one_parameter_count_on_every_engine(tmp_path: Path) -> None:
    from leanml.llm.io.model_loader import load_llm
    from leanml.llm.runtime.causal_lm import load_c_engine
    from tests.llm.conftest import save_hf_folder

    model = tiny_llama()
    float_params = sum(p.numel() for p in model.parameters())  # the tied head counted once
    folder = save_hf_folder(model, tmp_path / "hf")
    codes = quantize_llm_(model, LLMQuantConfig(method="rtn", bits=4, group_size=32), progress=False)
    path = tmp_path / "m.lmq"
    save_packed(path, loaded(model), codes)
    counts = {
        "hf": load_llm(folder, progress=False).info.params,
        "packed-torch": load_packed(path).info.params,
        "packed-c": load_c_engine(path, n_ctx=16, threads=1).info.params,
        "file": PackedFile(path).info("leanml-packed-c", "w4a8").params,
    }
    assert set(counts.values()) == {float_params} == {69952}, counts
