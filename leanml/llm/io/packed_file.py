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

This module reads the file, in one place: :class:`PackedFile` owns the header (parsed and validated by
:func:`read_header`), the memory map, the tensor views, the embedded tokenizer and the :class:`LLMInfo`.
:mod:`leanml.llm.io.packed_model` writes it and builds a PyTorch model from it; the C runtime reads it through
:class:`PackedFile` too.

Example:
    >>> with PackedFile("smollm2-awq-w4g128.lmq") as f:  # doctest: +SKIP
    ...     f.array("model.norm.weight").shape, f.info("leanml-packed-c", "w4a8").layers
    ((576,), 30)
"""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from leanml.errors import LeanmlError
from leanml.llm.io.model_info import LLMInfo, require_llm_extra
from leanml.llm.quant.bit_packing import row_bytes

MAGIC = b"LEANMLQ\0"
VERSION = 1
ALIGN = 64
PREFIX = struct.Struct("<8sIIQ")  # magic, version, reserved, header length
DTYPES: dict[str, type[np.generic]] = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32}
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


def align(n: int) -> int:
    """``n`` rounded up to the file's alignment (64 bytes).

    Example:
        >>> align(1), align(64)
        (64, 64)
    """
    return (n + ALIGN - 1) // ALIGN * ALIGN


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
    data_start = align(PREFIX.size + head_len)
    try:
        for t in header["tensors"]:
            n = int(np.prod(t["shape"], dtype=np.int64)) * np.dtype(DTYPES[t["dtype"]]).itemsize
            if n != t["nbytes"] or t["offset"] < 0 or data_start + t["offset"] + t["nbytes"] > size:
                raise LeanmlError(f"{p}: tensor {t['name']} does not fit the file (truncated or corrupt)")
        for name, lin in header["linears"].items():
            shape = {e["name"]: e["shape"] for e in header["tensors"]}
            if shape.get(f"{name}.qweight") != [lin["out"], row_bytes(lin["in"], lin["bits"])]:
                raise LeanmlError(f"{p}: packed weight of {name} has the wrong shape", "re-create the file")
    except (KeyError, TypeError, ValueError) as e:
        raise LeanmlError(f"{p} has an incomplete header: {e!r}", "re-create the file") from e
    return header, data_start


class PackedFile:
    """An opened packed file: the validated header, a read-only memory map, tensor views, the tokenizer, the info.

    The header is read and checked when the object is made (:func:`read_header`); the data is mapped on first use
    and unmapped by :meth:`close` (a context manager closes it too). Arrays from :meth:`array` are views into the
    map: copy what must outlive it.

    Example:
        >>> PackedFile("/nonexistent.lmq")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: packed model file not found: /nonexistent.lmq (...)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.header, self.data_start = read_header(self.path)
        self.table: dict[str, dict[str, Any]] = {t["name"]: t for t in self.header["tensors"]}
        self._raw: np.memmap[Any, np.dtype[np.uint8]] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The model's HF config (a dict)."""
        return dict(self.header["config"])

    @property
    def linears(self) -> dict[str, dict[str, Any]]:
        """Quantized linear name → {in, out, bits, group_size, bias}."""
        return dict(self.header["linears"])

    def _map(self) -> np.memmap[Any, np.dtype[np.uint8]]:
        if self._raw is None:
            self._raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._raw

    def array(self, name: str, shape: Sequence[int] | None = None) -> np.ndarray:
        """Tensor ``name`` as a read-only view of its dtype and shape; ``shape`` (when given) must match.

        Example:
            >>> f.array("model.norm.weight", (576,)).dtype  # doctest: +SKIP
            dtype('float16')
        """
        t = self.table.get(name)
        if t is None:
            raise LeanmlError(f"the packed file has no tensor {name}", "re-create it with leanml llm quantize")
        if shape is not None and list(t["shape"]) != list(shape):
            raise LeanmlError(f"tensor {name} has shape {t['shape']}, expected {list(shape)}", "re-create the file")
        begin = self.data_start + t["offset"]
        return np.frombuffer(self._map()[begin : begin + t["nbytes"]], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])

    def float32(self, name: str, shape: Sequence[int]) -> np.ndarray:
        """A float32 copy of tensor ``name`` (shape checked).

        Example:
            >>> f.float32("model.norm.weight", (576,)).dtype  # doctest: +SKIP
            dtype('float32')
        """
        return np.array(self.array(name, shape), dtype=np.float32)  # a copy

    def tokenizer_files(self) -> dict[str, bytes]:
        """The tokenizer files stored as ``tokenizer/<file>`` tensors: file name → bytes.

        Example:
            >>> sorted(f.tokenizer_files())  # doctest: +SKIP
            ['special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']
        """
        return {Path(n).name: self.array(n).tobytes() for n in self.table if n.startswith("tokenizer/")}

    def tokenizer(self) -> Any:
        """The file's tokenizer (transformers' ``AutoTokenizer`` on the stored files, offline).

        Example:
            >>> PackedFile("smollm2-rtn-w4g128.lmq").tokenizer().encode("Hello")  # doctest: +SKIP
            [19556]
        """
        require_llm_extra()
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            for fname, blob in self.tokenizer_files().items():
                (Path(tmp) / fname).write_bytes(blob)
            return AutoTokenizer.from_pretrained(tmp, local_files_only=True)

    def info(self, format: str, dtype: str, params: int | None = None) -> LLMInfo:
        """What the file holds as an :class:`LLMInfo` (source: the file's path), loaded as ``format`` in ``dtype``;
        ``params`` defaults to the elements of every stored tensor but the tokenizer's.

        Example:
            >>> PackedFile("model.lmq").info("leanml-packed-c", "w4a8").format  # doctest: +SKIP
            'leanml-packed-c'
        """
        if params is None:
            params = sum(int(np.prod(t["shape"])) for n, t in self.table.items() if not n.startswith("tokenizer/"))
        return LLMInfo.from_config(self.header["config"], dtype=dtype, params=params, source=str(self.path),
                                   format=format)  # fmt: skip

    def close(self) -> None:
        """Unmap the data (idempotent; a later read maps it again)."""
        self._raw = None

    def __enter__(self) -> PackedFile:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
