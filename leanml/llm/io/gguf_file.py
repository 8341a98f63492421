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
from leanml.llm.io.model_info import require_llm_extra

GGUF_ARCHITECTURES = ("llama",)  # llama.cpp stores Llama and Mistral models as "llama"
GGUF_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
GGUF_MAGIC = b"GGUF"


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
    """Check a GGUF file before loading: magic, parsable header, every tensor inside the file (not truncated),
    a supported architecture and supported tensor types. Raises :class:`LeanmlError` naming the problem.

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
    return GGUFSummary(p, arch, _gguf_string(reader, "general.name"), types, len(reader.tensors))


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
