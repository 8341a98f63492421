"""GGUF files: the checks made before loading one, and a loading session that parses each file once.

The checks (:func:`inspect_gguf`): the ``GGUF`` magic, a header gguf can parse, every tensor inside the
file (not truncated), a Llama-family architecture, and tensor types leanml loads (:data:`GGUF_TYPES`).
transformers does the loading itself (``from_pretrained(..., gguf_file=...)``), dequantizing each
weight with gguf's numpy code; :func:`gguf_session` only makes that faster and quieter.

Example:
    >>> import tempfile
    >>> bad = Path(tempfile.mkdtemp()) / "x.gguf"
    >>> _ = bad.write_bytes(b"GGML" + bytes(60))
    >>> inspect_gguf(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    leanml.errors.LeanmlError: ...x.gguf is not a GGUF file (starts with b'GGML', expected b'GGUF') (...)
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanml.errors import LeanmlError
from leanml.llm.io.model_info import LIMITS, check_llm_config, missing_names, require_llm_extra

GGUF_ARCHITECTURES = ("llama",)  # llama.cpp stores Llama and Mistral models as "llama"
GGUF_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
GGUF_MAGIC = b"GGUF"
GGUF_CONFIG = {"block_count": "num_hidden_layers", "embedding_length": "hidden_size",
               "feed_forward_length": "intermediate_size", "attention.head_count": "num_attention_heads",
               "attention.head_count_kv": "num_key_value_heads", "rope.dimension_count": "head_dim",
               "context_length": "max_position_embeddings", "vocab_size": "vocab_size"}  # fmt: skip
"""GGUF keys (after ``<arch>.``) → the HF config fields they become (as transformers maps them)."""
GGUF_LAYER = {"attn_norm": "h", "attn_q": ("q", "h"), "attn_k": ("kv", "h"), "attn_v": ("kv", "h"),
              "attn_output": ("h", "q"), "ffn_norm": "h", "ffn_gate": ("i", "h"), "ffn_up": ("i", "h"),
              "ffn_down": ("h", "i")}  # fmt: skip
"""Each layer's GGUF tensors ``blk.N.<name>.weight`` and their (rows, columns) in config sizes."""


def has_gguf_magic(path: Path) -> bool:
    """Whether the file starts with the 4 bytes ``GGUF``.

    Example:
        >>> has_gguf_magic(Path(__file__))
        False
    """
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


@dataclass(frozen=True)
class GGUFSummary:
    """The header facts :func:`inspect_gguf` checked."""

    path: Path
    architecture: str
    name: str
    tensor_types: dict[str, int]
    n_tensors: int


def supported_gguf_types() -> tuple[str, ...]:
    """The GGUF tensor types leanml loads: :data:`GGUF_TYPES` that the installed ``gguf`` can dequantize.

    Example:
        >>> "Q4_1" in supported_gguf_types()  # doctest: +SKIP
        True
    """
    from gguf import GGMLQuantizationType, quants

    traits = getattr(quants, "_type_traits", None)  # gguf's registry of dequantizers (F32/F16 are built in)
    if not isinstance(traits, dict):
        return GGUF_TYPES
    known = {t.name for t in traits} | {"F32", "F16"}
    return tuple(t for t in GGUF_TYPES if t in known and hasattr(GGMLQuantizationType, t))


def inspect_gguf(path: str | Path) -> GGUFSummary:
    """Check a GGUF file before loading: magic, parsable header, every tensor inside the file (not truncated, nothing
    but padding after the last one), a supported architecture and supported tensor types, the config's sizes in
    range and every weight of the model present with its shape (:func:`check_gguf_model`). Raises
    :class:`LeanmlError` naming the problem.

    Example:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "x.gguf"
        >>> _ = bad.write_bytes(b"GGML" + bytes(60))
        >>> inspect_gguf(bad)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: ...x.gguf is not a GGUF file (starts with b'GGML', expected b'GGUF') (...)
    """
    p = Path(path)
    if not p.is_file():
        raise LeanmlError(f"GGUF file not found: {p}", "check the path")
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise LeanmlError(f"{p} is not a GGUF file (starts with {head!r}, expected {GGUF_MAGIC!r})", "pass a .gguf")
    require_llm_extra()
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(p))
    except Exception as e:  # the reader raises ValueError, IndexError, struct errors... on a damaged file
        what = f"corrupt or truncated GGUF file {p} ({size} bytes)"
        raise LeanmlError(f"{what}: {type(e).__name__}: {e}", "re-download or re-convert it") from e
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size or t.data.nbytes != int(t.n_bytes):
            raise LeanmlError(
                f"truncated GGUF file {p}: tensor {t.name} ends at byte {end}, the file has {size}", "re-download it"
            )
    _check_tail(reader, p, size)
    arch = _gguf_string(reader, "general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        hint = f"supported: {', '.join(GGUF_ARCHITECTURES)} (Llama family)"
        raise LeanmlError(f"unsupported GGUF architecture {arch!r} in {p}", hint)
    types = dict(Counter(t.tensor_type.name for t in reader.tensors))
    allowed = supported_gguf_types()
    bad = sorted(set(types) - set(allowed))
    if bad:
        hint = f"supported: {', '.join(allowed)}"
        raise LeanmlError(f"unsupported GGUF tensor type(s) {', '.join(bad)} in {p}", hint)
    check_gguf_model(reader, p, arch)
    return GGUFSummary(p, arch, _gguf_string(reader, "general.name"), types, len(reader.tensors))


def _check_tail(reader: Any, p: Path, size: int) -> None:
    """After the last tensor only zero padding (less than the alignment) may follow: more means bytes were inserted
    or appended, which would shift every tensor's data silently (GGUF has no checksum)."""
    if not reader.tensors:
        return
    end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    pad = max(int(getattr(reader, "alignment", 32) or 32), 32)
    with p.open("rb") as f:
        f.seek(end)
        tail = f.read(pad + 1)
    if len(tail) > pad or tail.strip(b"\0"):
        raise LeanmlError(f"{p}: {size - end} unexpected bytes after the last tensor (bytes inserted or appended: "
                          "the tensor data would be read shifted)",
                          "the file is corrupt: re-download or re-convert it")  # fmt: skip


def _gguf_int(reader: Any, key: str, p: Path) -> int | None:
    """The integer value of GGUF key ``key`` (None when absent); a string, array or float is refused."""
    field = reader.fields.get(key)
    if field is None:
        return None
    from gguf import GGUFValueType

    ints = {GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16, GGUFValueType.UINT32,
            GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64}  # fmt: skip
    if len(field.types) != 1 or field.types[0] not in ints or len(field.data) != 1:
        raise LeanmlError(f"{p}: GGUF key {key} is not an integer", "the file is corrupt: re-download or re-convert it")
    return int(field.parts[field.data[0]][0])


def gguf_config(reader: Any, p: Path, arch: str = "llama") -> dict[str, Any]:
    """The HF config sizes a GGUF header declares (as transformers reads them), each checked against
    :data:`~leanml.llm.io.model_info.LIMITS` and named by its GGUF key when wrong.

    Example:
        >>> gguf_config(GGUFReader("SmolLM2.gguf"), Path("SmolLM2.gguf"))["num_hidden_layers"]  # doctest: +SKIP
        30
    """
    cfg: dict[str, Any] = {}
    for key, hf in GGUF_CONFIG.items():
        value = _gguf_int(reader, f"{arch}.{key}", p)
        if value is None:
            continue
        if not 1 <= value <= LIMITS[hf]:
            raise LeanmlError(f"{p}: GGUF key {arch}.{key} = {value} is out of range 1..{LIMITS[hf]}",
                              "the file is corrupt: re-download or re-convert it")  # fmt: skip
        cfg[hf] = value
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if "vocab_size" not in cfg and tokens is not None:
        cfg["vocab_size"] = len(tokens.data)
    cfg["tie_word_embeddings"] = all(t.name != "output.weight" for t in reader.tensors)
    for hf in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size"):
        if hf not in cfg:
            key = next(k for k, v in GGUF_CONFIG.items() if v == hf)
            raise LeanmlError(f"{p}: GGUF key {arch}.{key} is missing", "the file is corrupt: re-download it")
    return cfg


def check_gguf_model(reader: Any, p: Path, arch: str = "llama") -> None:
    """Refuse a GGUF whose tensors are not exactly the weights its header's config needs (each present, each shape
    right): transformers would fill a missing one with random values. Layer tensors beyond the header's layers are
    refused too (the header lost layers); other extra tensors (e.g. ``rope_freqs``) pass.

    Example:
        >>> check_gguf_model(GGUFReader("SmolLM2.gguf"), Path("SmolLM2.gguf"))  # doctest: +SKIP
    """
    cfg = check_llm_config(gguf_config(reader, p, arch), str(p))
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    dims = {"h": h, "i": i, "q": cfg["num_attention_heads"] * cfg["head_dim"],
            "kv": cfg["num_key_value_heads"] * cfg["head_dim"]}  # fmt: skip
    want: dict[str, tuple[int, ...]] = {"token_embd.weight": (v, h), "output_norm.weight": (h,)}
    if not cfg.get("tie_word_embeddings", True):
        want["output.weight"] = (v, h)
    for n in range(cfg["num_hidden_layers"]):
        for name, shape in GGUF_LAYER.items():
            want[f"blk.{n}.{name}.weight"] = tuple(dims[d] for d in ((shape,) if isinstance(shape, str) else shape))
    have = {t.name: tuple(int(d) for d in reversed(list(t.shape))) for t in reader.tensors}  # GGUF lists ne: reversed
    missing = [name for name in want if name not in have]
    if missing:
        layers = cfg["num_hidden_layers"]
        raise LeanmlError(f"{p}: the GGUF lacks tensors of its {layers}-layer model: {missing_names(missing)}",
                          "the file is incomplete: re-download or re-convert it")  # fmt: skip
    extra = [name for name in have if name.startswith("blk.") and name not in want]
    if extra:
        raise LeanmlError(f"{p}: the GGUF has layer tensors its {cfg['num_hidden_layers']}-layer header does not "
                          f"declare: {', '.join(extra[:3])} ({len(extra)} in all)", "the file is corrupt")  # fmt: skip
    wrong = [f"{name} is {list(have[name])}, expected {list(s)}" for name, s in want.items() if have[name] != s]
    if wrong:
        raise LeanmlError(f"{p}: GGUF tensors do not match its header: {'; '.join(wrong[:3])}"
                          f"{f' ({len(wrong)} wrong)' if len(wrong) > 3 else ''}", "the file is corrupt")  # fmt: skip


def _gguf_string(reader: Any, key: str) -> str:
    field = reader.fields.get(key)
    if field is None or not field.data:
        return ""
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


@contextmanager
def gguf_session(progress: bool = True) -> Iterator[None]:
    """Within the block, parse each GGUF file once and build gguf's tensor-name map once per architecture.

    transformers re-reads the file for the config, the weights and the tokenizer, and rebuilds the name
    map for every module; on SmolLM2 that is most of the load time. The block shares one read-only
    ``gguf.GGUFReader`` per path and memoizes ``gguf.get_tensor_name_map``; ``progress`` switches the
    dequantization progress bar. Everything is restored on exit.

    Example:
        >>> with gguf_session(progress=False):  # doctest: +SKIP
        ...     inspect_gguf(builtin_gguf())
    """
    gguf: Any = importlib.import_module("gguf")  # patched attributes: typed loosely on purpose
    gguf_utils: Any = importlib.import_module("transformers.modeling_gguf_pytorch_utils")

    real_reader, real_map, real_tqdm = gguf.GGUFReader, gguf.get_tensor_name_map, gguf_utils.tqdm
    real_checkpoint = gguf_utils.load_gguf_checkpoint
    readers: dict[tuple[str, str], Any] = {}
    headers: dict[str, Any] = {}

    def shared_reader(path: Any, mode: str = "r") -> Any:
        key = (os.path.realpath(os.fspath(path)), mode)
        if mode != "r":
            return real_reader(path, mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    def shared_checkpoint(path: Any, return_tensors: bool = False, **kwargs: Any) -> Any:
        if return_tensors or kwargs.get("model_to_load") is not None:
            return real_checkpoint(path, return_tensors=return_tensors, **kwargs)
        key = os.path.realpath(os.fspath(path))  # the metadata-only parse (config, tokenizer): once per file
        if key not in headers:
            headers[key] = real_checkpoint(path, return_tensors=False, **kwargs)
        return copy.deepcopy(headers[key])

    gguf.GGUFReader = shared_reader
    gguf.get_tensor_name_map = functools.cache(real_map)
    gguf_utils.tqdm = lambda it, **kw: real_tqdm(it, **{**kw, "disable": not progress})
    gguf_utils.load_gguf_checkpoint = shared_checkpoint
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map
        gguf_utils.tqdm, gguf_utils.load_gguf_checkpoint = real_tqdm, real_checkpoint
        readers.clear()
        headers.clear()


def dense_gguf_kwargs() -> dict[str, Any]:
    """``from_pretrained`` keywords that make transformers dequantize every GGUF weight into a plain ``nn.Linear``
    (transformers >= 5 can keep some architectures' weights packed; leanml quantizes dense float weights itself).

    Example:
        >>> sorted(dense_gguf_kwargs())  # doctest: +SKIP
        ['quantization_config']
    """
    try:
        from transformers.utils.quantization_config import GgufConfig
    except ImportError:  # older transformers always dequantize
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}
