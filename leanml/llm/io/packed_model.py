"""A packed ``.lmq`` file to and from PyTorch: :func:`save_packed` writes a quantized model (the layout is in
:mod:`leanml.llm.io.packed_file` and ``docs/llm_format.md``), :func:`load_packed` builds the reference model
(quantized linears as :class:`~leanml.llm.quant.bit_packing.PackedLinear`, dequantized on the fly) through
:class:`~leanml.llm.io.packed_file.PackedFile`.

Example:
    >>> save_packed("smollm2-awq-w4g128.lmq", llm, codes)  # doctest: +SKIP
    >>> packed = load_packed("smollm2-awq-w4g128.lmq")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanml.artifact import atomic_write
from leanml.errors import LeanmlError
from leanml.llm.io.model_info import LoadedLLM, require_llm_extra
from leanml.llm.io.packed_file import MAGIC, PREFIX, VERSION, PackedFile, align, recreate_hint
from leanml.llm.quant.bit_packing import PackedLinear
from leanml.llm.quant.rtn import QuantizedWeights

TORCH_DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32}


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def _raw_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""


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
            tensors[name] = t.detach().to(TORCH_DTYPES[float_dtype]).contiguous()
    if getattr(model.config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    for fname, blob in _tokenizer_files(llm.tokenizer).items():
        tensors[f"tokenizer/{fname}"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    table: list[dict[str, Any]] = []
    offset, crc = 0, 0
    for name, t in tensors.items():
        dtype = next(k for k, v in TORCH_DTYPES.items() if v == t.dtype)
        nbytes = t.numel() * t.element_size()
        table.append({"name": name, "dtype": dtype, "shape": list(t.shape), "offset": offset, "nbytes": nbytes})
        crc = zlib.crc32(_raw_bytes(t), crc)
        crc = zlib.crc32(bytes(align(offset + nbytes) - offset - nbytes), crc)  # the padding is covered too
        offset = align(offset + nbytes)
    header = {
        "data_bytes": offset,
        "data_crc32": crc,
        "config": model.config.to_dict(),
        "quant": codes.config.to_dict(),
        "float_dtype": float_dtype,
        "source": llm.info.source,
        "tensors": table,
        "linears": linears,
    }
    head = json.dumps(header, sort_keys=True, default=str).encode()
    data_start = align(PREFIX.size + len(head))

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            f.write(PREFIX.pack(MAGIC, VERSION, zlib.crc32(head), len(head)))
            f.write(head)
            f.write(b"\0" * (data_start - PREFIX.size - len(head)))
            for entry, t in zip(table, tensors.values(), strict=True):
                f.seek(data_start + entry["offset"])
                f.write(_raw_bytes(t))
            f.truncate(data_start + offset)

    atomic_write(path, write)
    return data_start + offset


def load_packed(path: str | Path, dtype: torch.dtype = torch.float32) -> LoadedLLM:
    """Load a packed file: an HF causal LM whose quantized linears are :class:`PackedLinear` (dequantized on
    the fly), other tensors in ``dtype``, and its tokenizer. Everything is checked before use.

    Example:
        >>> llm = load_packed("model.lmq")  # doctest: +SKIP
    """
    require_llm_extra()
    from transformers import AutoConfig, AutoModelForCausalLM

    packed = PackedFile(path)
    header = packed.header
    names = [n for n in packed.table if not n.startswith("tokenizer/")]
    tensors = {n: torch.from_numpy(np.array(packed.array(n))) for n in names}  # copies: the file may be replaced
    tokenizer = packed.tokenizer()
    packed.close()
    cfg = dict(header["config"])
    try:
        config = AutoConfig.for_model(str(cfg.pop("model_type", "")), **cfg)
        model: Any = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()  # type: ignore[no-untyped-call]
    except Exception as e:  # transformers' (and huggingface_hub's strict dataclasses') reactions to a bad config
        raise LeanmlError(f"{path}: the model config is not usable: {type(e).__name__}: {e}",
                          recreate_hint(Path(path))) from e  # fmt: skip
    for name, lin in header["linears"].items():
        linear = PackedLinear(lin["in"], lin["out"], lin["bits"], lin["group_size"], bias=lin["bias"])
        linear.qweight.copy_(tensors.pop(f"{name}.qweight"))
        linear.scales.copy_(tensors.pop(f"{name}.scales"))
        linear.zeros.copy_(tensors.pop(f"{name}.zeros"))
        if linear.bias is not None:
            linear.bias.copy_(tensors.pop(f"{name}.bias"))
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, linear)
    state = {k: v.to(dtype) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    packed_names = tuple(f"{n}." for n in header["linears"])
    missing = [m for m in missing if not m.startswith(packed_names)]
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise LeanmlError(f"{path}: tensors do not match the model (missing {missing[:3]}, extra {unexpected[:3]})")
    if config.tie_word_embeddings:
        model.tie_weights()
    dtype_name = str(next(model.parameters()).dtype).removeprefix("torch.")
    info = packed.info("leanml-packed", dtype_name)
    return LoadedLLM(model, tokenizer, info, 0.0)
