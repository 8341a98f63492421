"""The packed quantized LLM file (``.lmq``): one binary file with the model config, the tokenizer, the
float tensors, and the packed group-quantized linears. Layout (little-endian; ``docs/llm_format.md``):

    offset 0   8 bytes  magic  b"LEANMLQ\\0"
    offset 8   u32      format version (1)
    offset 12  u32      reserved (0)
    offset 16  u64      header length H in bytes
    offset 24  H bytes  header: UTF-8 JSON {"config", "quant", "tensors", "linears", "tokenizer_files"}
    then       zero padding to a multiple of 64, where the data region starts;
               each tensor at data start + its "offset" (a multiple of 64), "nbytes" long, C order.

``tensors`` lists every tensor (name, dtype "uint8"/"float16"/"float32", shape, offset, nbytes);
``linears`` maps each quantized linear's qualified name to {in, out, bits, group_size, bias} and its
three tensors ``<name>.qweight`` (out, ceil(in*bits/8)) uint8, ``<name>.scales`` (out, G) float16 and
``<name>.zeros`` (out, G) uint8; tokenizer files are uint8 tensors named ``tokenizer/<file>``.
Loading checks the magic, version, header, and that every tensor lies inside the file with a size that
matches its shape before reading any of it.

Example:
    >>> save_packed("smollm2-awq-w4g128.lmq", llm, codes)  # doctest: +SKIP
    >>> packed = load_packed("smollm2-awq-w4g128.lmq")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leanml.artifact import atomic_write
from leanml.errors import LeanmlError
from leanml.llm.load import LLMInfo, LoadedLLM, require_llm_extra
from leanml.llm.packing import PackedLinear, row_bytes
from leanml.llm.rtn import QuantizedWeights

MAGIC = b"LEANMLQ\0"
VERSION = 1
ALIGN = 64
PREFIX = struct.Struct("<8sIIQ")  # magic, version, reserved, header length
DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32}
SUFFIX = ".lmq"


def is_packed_file(path: str | Path) -> bool:
    """Whether ``path`` is a file starting with the packed-model magic.

    Example:
        >>> is_packed_file("/nonexistent.lmq")
        False
    """
    p = Path(path)
    if not p.is_file():
        return False
    with p.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def save_packed(path: str | Path, llm: LoadedLLM, codes: QuantizedWeights, float_dtype: str = "float16") -> int:
    """Atomically write ``llm`` (pseudo-quantized by ``codes``) as a packed file; returns its size in bytes.

    Quantized linears are stored packed; every other tensor (embeddings, norms, a float lm_head) in
    ``float_dtype`` ("float16" or "float32"). A head tied to the embeddings is stored once.

    Example:
        >>> save_packed("model.lmq", llm, quantize_llm_(llm.model, cfg))  # doctest: +SKIP
    """
    if float_dtype not in ("float16", "float32"):
        raise LeanmlError(f"float dtype must be float16 or float32, got {float_dtype!r}")
    model: Any = llm.model
    tensors: dict[str, torch.Tensor] = {}
    linears: dict[str, dict[str, Any]] = {}
    for name, gq in codes.weights.items():
        lin = model.get_submodule(name)
        bias = getattr(lin, "bias", None)
        packed = PackedLinear.from_codes(gq, bias if isinstance(bias, torch.Tensor) else None)
        tensors.update(
            {f"{name}.qweight": packed.qweight, f"{name}.scales": packed.scales, f"{name}.zeros": packed.zeros}
        )
        if packed.bias is not None:
            tensors[f"{name}.bias"] = packed.bias
        linears[name] = {"in": gq.shape[1], "out": gq.shape[0], "bits": gq.bits, "group_size": gq.group_size,
                         "bias": packed.bias is not None}  # fmt: skip
    skip = {f"{n}.weight" for n in linears} | {f"{n}.bias" for n in linears}
    for name, t in model.state_dict(keep_vars=False).items():
        if name not in skip and name not in tensors:
            tensors[name] = t.detach().to(DTYPES[float_dtype]).contiguous()
    if getattr(model.config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    for fname, blob in _tokenizer_files(llm.tokenizer).items():
        tensors[f"tokenizer/{fname}"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    table: list[dict[str, Any]] = []
    offset = 0
    for name, t in tensors.items():
        dtype = next(k for k, v in DTYPES.items() if v == t.dtype)
        nbytes = t.numel() * t.element_size()
        table.append({"name": name, "dtype": dtype, "shape": list(t.shape), "offset": offset, "nbytes": nbytes})
        offset = _align(offset + nbytes)
    header = {
        "config": model.config.to_dict(),
        "quant": codes.config.to_dict(),
        "float_dtype": float_dtype,
        "source": llm.info.source,
        "tensors": table,
        "linears": linears,
    }
    head = json.dumps(header, sort_keys=True, default=str).encode()
    data_start = _align(PREFIX.size + len(head))

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            f.write(PREFIX.pack(MAGIC, VERSION, 0, len(head)))
            f.write(head)
            f.write(b"\0" * (data_start - PREFIX.size - len(head)))
            for entry, t in zip(table, tensors.values(), strict=True):
                f.seek(data_start + entry["offset"])
                f.write(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            f.truncate(data_start + offset)

    atomic_write(path, write)
    return data_start + offset


def read_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """Read and validate a packed file's header; returns (header, data start). Nothing else is read.

    Example:
        >>> read_header("/nonexistent.lmq")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: packed model file not found: /nonexistent.lmq (...)
    """
    p = Path(path)
    if not p.is_file():
        raise LeanmlError(f"packed model file not found: {p}", "check the path, or run leanml llm quantize")
    size = p.stat().st_size
    with p.open("rb") as f:
        prefix = f.read(PREFIX.size)
        if len(prefix) < PREFIX.size or prefix[: len(MAGIC)] != MAGIC:
            raise LeanmlError(f"{p} is not a leanml packed model (bad magic)", "pass a .lmq file from leanml")
        _, version, _, head_len = PREFIX.unpack(prefix)
        if version != VERSION:
            raise LeanmlError(f"{p} has packed format version {version}; this leanml reads {VERSION}")
        if PREFIX.size + head_len > size:
            raise LeanmlError(f"{p} is truncated (header runs past the end)", "re-create the file")
        try:
            header = json.loads(f.read(head_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LeanmlError(f"{p} has a corrupt header: {e}", "re-create the file") from e
    data_start = _align(PREFIX.size + head_len)
    try:
        for t in header["tensors"]:
            n = int(np.prod(t["shape"], dtype=np.int64)) * torch.empty(0, dtype=DTYPES[t["dtype"]]).element_size()
            if n != t["nbytes"] or t["offset"] < 0 or data_start + t["offset"] + t["nbytes"] > size:
                raise LeanmlError(f"{p}: tensor {t['name']} does not fit the file (truncated or corrupt)")
        for name, lin in header["linears"].items():
            shape = {e["name"]: e["shape"] for e in header["tensors"]}
            if shape.get(f"{name}.qweight") != [lin["out"], row_bytes(lin["in"], lin["bits"])]:
                raise LeanmlError(f"{p}: packed weight of {name} has the wrong shape", "re-create the file")
    except (KeyError, TypeError, ValueError) as e:
        raise LeanmlError(f"{p} has an incomplete header: {e!r}", "re-create the file") from e
    return header, data_start


def load_packed(path: str | Path, dtype: torch.dtype = torch.float32) -> LoadedLLM:
    """Load a packed file: an HF causal LM whose quantized linears are :class:`PackedLinear` (dequantized on
    the fly), other tensors in ``dtype``, and its tokenizer. Everything is checked before use.

    Example:
        >>> llm = load_packed("model.lmq")  # doctest: +SKIP
    """
    require_llm_extra()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    header, data_start = read_header(path)
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    tensors: dict[str, torch.Tensor] = {}
    for t in header["tensors"]:
        begin = data_start + t["offset"]
        buf = np.array(raw[begin : begin + t["nbytes"]])  # a copy: the file may be replaced later
        tensors[t["name"]] = torch.from_numpy(buf).view(DTYPES[t["dtype"]]).reshape(t["shape"])
    del raw
    cfg = dict(header["config"])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    model: Any = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()  # type: ignore[no-untyped-call]
    for name, lin in header["linears"].items():
        packed = PackedLinear(lin["in"], lin["out"], lin["bits"], lin["group_size"], bias=lin["bias"])
        packed.qweight.copy_(tensors.pop(f"{name}.qweight"))
        packed.scales.copy_(tensors.pop(f"{name}.scales"))
        packed.zeros.copy_(tensors.pop(f"{name}.zeros"))
        if packed.bias is not None:
            packed.bias.copy_(tensors.pop(f"{name}.bias"))
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, packed)
    files = {k.removeprefix("tokenizer/"): tensors.pop(k) for k in list(tensors) if k.startswith("tokenizer/")}
    state = {k: v.to(dtype) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    packed_names = tuple(f"{n}." for n in header["linears"])
    missing = [m for m in missing if not m.startswith(packed_names)]
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise LeanmlError(f"{path}: tensors do not match the model (missing {missing[:3]}, extra {unexpected[:3]})")
    if config.tie_word_embeddings:
        model.tie_weights()
    with tempfile.TemporaryDirectory() as tmp:
        for fname, blob in files.items():
            (Path(tmp) / Path(fname).name).write_bytes(blob.numpy().tobytes())
        tokenizer = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
    info = _info(model, header, Path(path))
    return LoadedLLM(model, tokenizer, info, 0.0)


def _info(model: nn.Module, header: dict[str, Any], path: Path) -> LLMInfo:
    c: Any = model.config
    heads = int(c.num_attention_heads)
    return LLMInfo(
        architecture=(c.architectures or [type(model).__name__])[0], layers=int(c.num_hidden_layers),
        hidden_size=int(c.hidden_size), heads=heads, kv_heads=int(getattr(c, "num_key_value_heads", heads)),
        head_dim=int(getattr(c, "head_dim", None) or c.hidden_size // heads),
        intermediate_size=int(c.intermediate_size), vocab_size=int(c.vocab_size),
        tied_embeddings=bool(c.tie_word_embeddings), dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        params=sum(p.numel() for p in model.parameters()), source=str(path), format="leanml-packed",
        gguf_types={},
    )  # fmt: skip
