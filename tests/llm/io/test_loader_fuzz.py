"""Seeded fuzzing of the LLM loaders with the shared mutations of ``tests/fuzz_mutations.py``: packed ``.lmq`` files
through PyTorch and through the C runtime (each C load in its own process, with a time limit), GGUF files and HF
folders.

Every case must end in a :class:`LeanmlError` or in a load whose logits on a fixed prompt equal the unmodified
file's; anything else (another exception, a crash, a signal, a timeout) fails the test with the case's name. GGUF and
HF configs carry no checksum, so a mutation of a value that is a legitimate setting (a float hyperparameter such as
``rope_theta``, a token's text) may load a *different valid* model: such a case passes only when the file's
structure (every integer setting, every tensor's name, shape and type) is unchanged, so a missing or misshapen weight
can never slip through.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gguf")

import torch

from leanml.errors import LeanmlError
from leanml.llm import LLMQuantConfig, quantize_llm_
from leanml.llm.io.model_info import LLMInfo, LoadedLLM
from leanml.llm.io.model_loader import load_llm
from leanml.llm.io.packed_file import MAGIC, PREFIX, VERSION, align
from leanml.llm.io.packed_model import load_packed, save_packed
from tests.fuzz_mutations import Mutation, byte_mutations, deep_json, json_mutations
from tests.llm.conftest import char_tokenizer, save_hf_folder, tiny_llama, write_tiny_gguf

IDS = torch.tensor([[1, 40, 41, 42, 17, 5, 9]])
C_CHILD = """
import os, signal, sys
from leanml.errors import LeanmlError
from leanml.llm.runtime.decoder import CRuntime
for path in sys.argv[1:]:  # each load in a forked child: a crash or hang there is reported, not inherited
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.alarm(20)  # a hang ends as SIGALRM, seen below as a signal
        try:
            rt = CRuntime(path, n_ctx=16, threads=1)
            line = "OK " + " ".join(f"{x:.6e}" for x in rt.prefill([1, 40, 41, 42, 17]).tolist())
            rt.close()
        except LeanmlError as e:
            line = "LEANMLERROR " + " ".join(str(e).split())
        except BaseException as e:
            line = f"RAISED {type(e).__name__}: " + " ".join(str(e).split())
        os.write(w, line.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    print(b"".join(chunks).decode() if ok else f"CRASHED wait status {status}", flush=True)
"""


# ---------------------------------------------------------------------------------------------------- helpers
def logits(llm: LoadedLLM) -> torch.Tensor:
    with torch.no_grad():
        return llm.model(IDS).logits


def outcome(load: Callable[[], LoadedLLM], name: str) -> tuple[str, torch.Tensor | None]:
    """("error", None) for a LeanmlError, ("loaded", logits) for a load; anything else fails, naming the case."""
    try:
        llm = load()
    except LeanmlError as e:
        assert str(e).strip(), name
        return "error", None
    except Exception as e:  # the point of the test: name the case and the raw exception
        pytest.fail(f"case {name}: {type(e).__name__} instead of a LeanmlError: {e}")
    return "loaded", logits(llm)


def split_lmq(blob: bytes) -> tuple[dict[str, Any], bytes]:
    _, _, _, head_len = PREFIX.unpack(blob[: PREFIX.size])
    return json.loads(blob[PREFIX.size : PREFIX.size + head_len]), blob[align(PREFIX.size + head_len) :]


def pack_lmq(head: bytes | dict[str, Any], data: bytes, version: int = VERSION, fix_crc: bool = False) -> bytes:
    """A packed file from a header (bytes as they are, or a dict to encode) and a data region, with a valid header
    CRC; ``fix_crc`` sets the dict's data CRC to the (changed) data's."""
    if isinstance(head, dict):
        if fix_crc:
            head = {**head, "data_crc32": zlib.crc32(data)}
        head = json.dumps(head).encode()
    out = PREFIX.pack(MAGIC, version, zlib.crc32(head), len(head)) + head
    return out + bytes(align(len(out)) - len(out)) + data


def lmq_structural(blob: bytes) -> list[Mutation]:
    """Targeted .lmq damage that a valid header CRC does not hide (each reaching one check)."""
    header, data = split_lmq(blob)
    table = {t["name"]: t for t in header["tensors"]}
    name = next(iter(header["linears"]))
    scales = table[f"{name}.scales"]

    def edit(fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        h = json.loads(json.dumps(header))
        fn(h)
        return h

    def poke(offset: int, raw: bytes) -> bytes:
        d = bytearray(data)
        d[offset : offset + len(raw)] = raw
        return bytes(d)

    tok = next(t for n, t in table.items() if n.startswith("tokenizer/") and n.endswith("tokenizer.json"))
    cases = {
        "unaligned-offset": pack_lmq(
            edit(lambda h: h["tensors"][2].update(offset=h["tensors"][2]["offset"] + 4)), data
        ),
        "overlapping": pack_lmq(edit(lambda h: h["tensors"][3].update(offset=h["tensors"][2]["offset"])), data),
        "offset-past-end": pack_lmq(edit(lambda h: h["tensors"][1].update(offset=len(data) + 64)), data),
        "nbytes-2**62": pack_lmq(edit(lambda h: h["tensors"][1].update(nbytes=2**62)), data),
        "shape-2**62": pack_lmq(edit(lambda h: h["tensors"][1].update(shape=[2**62, 2**62])), data),
        "nan-scale": pack_lmq(header, poke(scales["offset"], b"\x00\x7e"), fix_crc=True),
        "inf-scale": pack_lmq(header, poke(scales["offset"] + 2, b"\x00\x7c"), fix_crc=True),
        "damaged-tokenizer": pack_lmq(header, poke(tok["offset"] + 1, b"\xff\xfe\xfd"), fix_crc=True),
        "tokenizer-not-json": pack_lmq(header, poke(tok["offset"], b"{" * 64), fix_crc=True),
        "version-1": pack_lmq(header, data, version=1),
        "version-0": pack_lmq(header, data, version=0),
        "group-size-0": pack_lmq(edit(lambda h: h["linears"][name].update(group_size=0)), data),
        "bits-0": pack_lmq(edit(lambda h: h["linears"][name].update(bits=0)), data),
        "head-count-0": pack_lmq(edit(lambda h: h["config"].update(num_attention_heads=0)), data),
        "layers-2**31": pack_lmq(edit(lambda h: h["config"].update(num_hidden_layers=2**31)), data),
        "no-config": pack_lmq(edit(lambda h: h.pop("config")), data),
        "no-model-type": pack_lmq(edit(lambda h: h["config"].pop("model_type")), data),
        "no-tensors": pack_lmq(edit(lambda h: h.update(tensors=[])), data),
        "missing-layer": pack_lmq(
            edit(lambda h: h.update(tensors=[t for t in h["tensors"] if ".layers.1." not in t["name"]])), data
        ),
        "deep-header": pack_lmq(deep_json(100_000), data),
        "header-crc-wrong": blob[:12] + struct.pack("<I", zlib.crc32(b"x")) + blob[16:],
        "data-crc-wrong": pack_lmq({**header, "data_crc32": header["data_crc32"] ^ 1}, data),
    }
    return [Mutation(n, d) for n, d in cases.items()]


def lmq_cases(blob: bytes, seed: int, n_bytes: int, n_json: int) -> list[Mutation]:
    header, data = split_lmq(blob)
    data_start = len(blob) - len(data)
    flips = byte_mutations(blob, data_start, n_bytes, seed)
    docs = [Mutation(f"json-{m.name}", pack_lmq(m.data, data)) for m in json_mutations(header, n_json, seed + 1)]
    return flips + docs + lmq_structural(blob)


@pytest.fixture(scope="module")
def lmq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_llama()
    codes = quantize_llm_(model, LLMQuantConfig(method="rtn", bits=4, group_size=32), progress=False)
    info = LLMInfo("LlamaForCausalLM", 2, 64, 4, 2, 16, 96, 128, True, "float32", 0, "tiny", "hf", {})
    path = tmp_path_factory.mktemp("fuzz-lmq") / "tiny.lmq"
    save_packed(path, LoadedLLM(model, char_tokenizer(), info, 0.0), codes)
    return path


# ---------------------------------------------------------------------------------------------------- .lmq, PyTorch
def test_lmq_through_pytorch(lmq: Path, tmp_path: Path) -> None:
    blob = lmq.read_bytes()
    reference = logits(load_packed(lmq))
    cases = lmq_cases(blob, seed=0, n_bytes=36, n_json=30)
    assert len(cases) >= 80
    errors = 0
    for case in cases:
        path = tmp_path / "case.lmq"
        path.write_bytes(case.data)
        kind, out = outcome(lambda: load_packed(path), case.name)  # noqa: B023  # called at once
        errors += kind == "error"
        if kind == "loaded":
            assert out is not None and torch.equal(out, reference), f"case {case.name}: loaded a different model"
    assert errors >= len(cases) - 10  # nearly every mutation is caught; the rest load the same model


# ---------------------------------------------------------------------------------------------------- .lmq, C
def c_load(*paths: Path) -> list[str]:
    """The C runtime's loads of ``paths``, in order, in one child process: "OK <logits>" or "LEANMLERROR <message>"
    each; a crash, a signal or a timeout fails the test."""
    names = ", ".join(p.name for p in paths)
    try:
        proc = subprocess.run([sys.executable, "-c", C_CHILD, *map(str, paths)], capture_output=True, text=True,
                              timeout=30 + 10 * len(paths), cwd=Path(__file__).resolve().parents[3])  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"{names}: the C load hung (timeout)")
    assert proc.returncode == 0, f"{names}: exit status {proc.returncode} (a crash or signal)\n{proc.stderr[-2000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(paths), f"{names}: {proc.stdout}{proc.stderr[-2000:]}"
    assert all(line.startswith(("OK ", "LEANMLERROR ")) for line in lines), f"{names}: {proc.stdout}"
    return lines


def run_c_cases(lmq: Path, tmp_path: Path, cases: list[Mutation]) -> None:
    """Every case through the C runtime, each load in its own forked process (see ``C_CHILD``)."""
    paths = []
    for i, case in enumerate(cases):
        paths.append(tmp_path / f"c{i:03d}.lmq")
        paths[-1].write_bytes(case.data)
    reference, *results = c_load(lmq, *paths)
    assert reference.startswith("OK ")
    for case, result in zip(cases, results, strict=True):
        assert result.startswith("LEANMLERROR ") or result == reference, f"case {case.name}: {result[:200]}"


def test_lmq_through_c(lmq: Path, tmp_path: Path) -> None:
    cases = lmq_cases(lmq.read_bytes(), seed=20, n_bytes=24, n_json=16)
    assert len(cases) >= 60
    run_c_cases(lmq, tmp_path, cases)


# ---------------------------------------------------------------------------------------------------- GGUF
def gguf_structure(path: Path) -> Any:
    """Every integer setting and every tensor's (name, shape, type) of a GGUF, or None when it does not parse."""
    from gguf import GGUFReader, GGUFValueType

    try:
        r = GGUFReader(str(path))
        ints = {
            k: [int(x) for x in f.parts[f.data[0]]]
            for k, f in r.fields.items()
            if f.types and f.types[0] not in (GGUFValueType.STRING, GGUFValueType.ARRAY, GGUFValueType.FLOAT32)
        }
        return ints, [(t.name, [int(d) for d in t.shape], t.tensor_type.name) for t in r.tensors]  # fmt: skip
    except Exception:  # only an oracle: an unparsable file has no structure
        return None


def gguf_cases(tmp_path: Path, base: Path) -> list[tuple[str, Path]]:
    from gguf import GGUFReader

    cases: list[tuple[str, Path]] = []
    kv = {"block_count": (0, 1, 3, 2**31, 2**40), "attention.head_count": (0, 3, 5, 2**31),
          "attention.head_count_kv": (0, 3, 8), "embedding_length": (0, 63, 128, 2**31),
          "feed_forward_length": (0, 97, 2**31), "vocab_size": (0, 64, 2**31), "context_length": (0, 2**40),
          "rope.dimension_count": (0, 15, 2**31)}  # fmt: skip
    for key, values in kv.items():
        for value in values:
            name = f"kv-{key}={value}"
            cases.append((name, write_tiny_gguf(tmp_path / f"{name}.gguf", **{key: value})))
    skips = {"no-token-embd": ("token_embd.weight",), "no-output-norm": ("output_norm.weight",),
             "no-q-of-layer-0": ("blk.0.attn_q.weight",),
             "no-layer-1": tuple(f"blk.1.{n}.weight" for n in ("attn_norm", "attn_q", "attn_k", "attn_v",
                                                                "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                                                                "ffn_down"))}  # fmt: skip
    for name, skip in skips.items():
        cases.append((name, write_tiny_gguf(tmp_path / f"{name}.gguf", skip=skip)))
    every = tuple(t.name for t in GGUFReader(str(base)).tensors)
    cases.append(("tensor-count-0", write_tiny_gguf(tmp_path / "none.gguf", skip=every)))
    blob = base.read_bytes()
    start = min(int(t.data_offset) for t in GGUFReader(str(base)).tensors)
    head, body = blob[:start], blob[start:]
    for m in byte_mutations(head, len(head) // 2, 26, seed=3):  # flips in the header only (no data checksum)
        cases.append((f"head-{m.name}", tmp_path / f"head-{m.name}.gguf"))
        cases[-1][1].write_bytes(m.data + body)
    for frac in (0.25, 0.5, 0.99):
        cases.append((f"cut-{frac}", tmp_path / f"cut-{frac}.gguf"))
        cases[-1][1].write_bytes(blob[: int(len(blob) * frac)])
    return cases


def test_gguf(tmp_path: Path) -> None:
    base = write_tiny_gguf(tmp_path / "tiny.gguf")
    reference, structure = logits(load_llm(base, progress=False)), gguf_structure(base)
    cases = gguf_cases(tmp_path, base)
    assert len(cases) >= 60
    for name, path in cases:
        kind, out = outcome(lambda: load_llm(path, progress=False), name)  # noqa: B023  # called at once
        if kind == "loaded" and not torch.equal(out, reference):  # type: ignore[arg-type]
            assert gguf_structure(path) == structure, f"case {name}: loaded a model of another structure"
    for key in ("block_count", "attention.head_count"):  # the cases, by name
        with pytest.raises(LeanmlError, match=f"{key} = 0 is out of range"):
            load_llm(tmp_path / f"kv-{key}=0.gguf", progress=False)
    with pytest.raises(LeanmlError, match=r"lacks tensors .* \(20 missing\)"):
        load_llm(tmp_path / "none.gguf", progress=False)


# ---------------------------------------------------------------------------------------------------- HF folders
FREE_SETTINGS = ("rope_theta", "rms_norm_eps", "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id",
                 "max_position_embeddings", "transformers_version", "architectures", "use_cache", "dtype",
                 "torch_dtype", "pretraining_tp", "attention_dropout", "rope_parameters", "rope_scaling")  # fmt: skip
"""config.json fields whose change is a legitimate different model (or none): the logits may differ."""


def hf_cases(tmp_path: Path, base: Path) -> list[tuple[str, Path, bool]]:
    """(name, folder, whether a successful load may differ from the reference)."""
    from safetensors.numpy import load_file, save_file

    config = json.loads((base / "config.json").read_text())
    weights = load_file(str(base / "model.safetensors"))
    cases: list[tuple[str, Path, bool]] = []

    def folder(name: str) -> Path:
        out = tmp_path / f"{len(cases):02d}-{name.replace('/', '_')[:60]}"
        shutil.copytree(base, out)
        return out

    for m in json_mutations(config, 16, seed=4):
        f = folder(f"cfg-{m.name}")
        (f / "config.json").write_bytes(m.data)
        free = any(f":{k}" in m.name for k in FREE_SETTINGS)
        cases.append((f"cfg-{m.name}", f, free))
    variants: dict[str, dict[str, np.ndarray] | bytes] = {
        "missing-one": {k: v for k, v in weights.items() if k != "model.layers.1.mlp.up_proj.weight"},
        "missing-layer": {k: v for k, v in weights.items() if ".layers.0." not in k},
        "no-tensors": {"model.unused": np.zeros(1, np.float32)},
        "extra-tensor": {**weights, "model.extra.weight": np.ones((3, 3), np.float32)},
        "wrong-shape": {**weights, "model.norm.weight": np.ones(65, np.float32)},
        "truncated": (base / "model.safetensors").read_bytes()[:5000],
        "flipped-header": b"\xff" * 8 + (base / "model.safetensors").read_bytes()[8:],
    }
    for name, content in variants.items():
        f = folder(f"st-{name}")
        if isinstance(content, bytes):
            (f / "model.safetensors").write_bytes(content)
        else:
            save_file(content, str(f / "model.safetensors"), metadata={"format": "pt"})
        cases.append((f"st-{name}", f, False))
    return cases


def test_hf_folder(tmp_path: Path) -> None:
    base = save_hf_folder(tiny_llama(), tmp_path / "base")
    reference = logits(load_llm(base, progress=False))
    cases = hf_cases(tmp_path, base)
    assert len(cases) >= 20
    for name, folder, free in cases:
        kind, out = outcome(lambda: load_llm(folder, progress=False), name)  # noqa: B023  # called at once
        if kind == "loaded":
            assert free or torch.equal(out, reference), f"case {name}: loaded a different model"  # type: ignore[arg-type]
    with pytest.raises(LeanmlError, match=r"lack weights of the model: model.layers.1.mlp.up_proj.weight \(1 missing"):
        load_llm(next(tmp_path.glob("*-st-missing-one")), progress=False)
