"""The packed quantized LLM file (``.lmq``): one binary file with the model config, the tokenizer, the
float tensors, and the packed group-quantized linears. Layout (little-endian; ``docs/llm_format.md``):

    offset 0   8 bytes  magic  b"LEANMLQ\\0"
    offset 8   u32      format version (2)
    offset 12  u32      CRC32 (zlib's) of the H header bytes
    offset 16  u64      header length H in bytes
    offset 24  H bytes  header: UTF-8 JSON {"config", "quant", "tensors", "linears", "data_bytes", "data_crc32", ...}
    then       zero padding to a multiple of 64, where the data region starts; it is "data_bytes" long (the file
               ends there) and its CRC32 is "data_crc32"; each tensor at data start + its "offset" (a multiple
               of 64, tensors never overlap), "nbytes" long, C order.

``tensors`` lists every tensor (name, dtype "uint8"/"float16"/"float32", shape, offset, nbytes);
``linears`` maps each quantized linear's qualified name to {in, out, bits, group_size, bias} and its
three tensors ``<name>.qweight`` (out, ceil(in*bits/8)) uint8, ``<name>.scales`` (out, G) float16 and
``<name>.zeros`` (out, G) uint8; tokenizer files are uint8 tensors named ``tokenizer/<file>``.

Loading validates everything before any model is built (:func:`read_header`): magic, version (1 is refused
with the command that re-creates the file), header CRC, JSON nesting depth (:data:`~leanml.artifact.MAX_JSON_DEPTH`),
the config's sizes (:func:`~leanml.llm.io.model_info.check_llm_config`), every tensor aligned, inside the data
region, not overlapping the others and sized as its shape says, every weight of the model present with its shape;
:class:`PackedFile` then checks the data CRC (unless ``verify=False`` or ``LEANML_LMQ_VERIFY=0``) and that every
float16 scale is finite. Every failure is a :class:`LeanmlError` naming the file and the field.

This module reads the file, in one place: :class:`PackedFile` owns the header, the memory map, the tensor views,
the embedded tokenizer and the :class:`LLMInfo`. :mod:`leanml.llm.io.packed_model` writes it and builds a PyTorch
model from it; the C runtime reads it through :class:`PackedFile` too (and checks the table and the CRC again in C).

Example:
    >>> with PackedFile("smollm2-awq-w4g128.lmq") as f:  # doctest: +SKIP
    ...     f.array("model.norm.weight").shape, f.info("leanml-packed-c", "w4a8").layers
    ((576,), 30)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from leanml.artifact import MAX_JSON_DEPTH, json_depth, parse_json
from leanml.errors import LeanmlError
from leanml.llm.io.model_info import LLMInfo, check_llm_config, llama_weight_shapes, missing_names, require_llm_extra
from leanml.quant.code_packing import row_bytes

MAGIC = b"LEANMLQ\0"
VERSION = 2
ALIGN = 64
PREFIX = struct.Struct("<8sIIQ")  # magic, version, header CRC32, header length
DTYPES: dict[str, type[np.generic]] = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32}
SUFFIX = ".lmq"
MAX_HEADER = 64 << 20
"""Largest header accepted in bytes (SmolLM2's is about 60 kB)."""
MAX_DIM = 1 << 31
"""Largest tensor dimension accepted."""
VERIFY_ENV = "LEANML_LMQ_VERIFY"
"""Set ``LEANML_LMQ_VERIFY=0`` to skip the data CRC at load (very large files on trusted storage)."""
CHUNK = 16 << 20


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


def crc32_region(path: str | Path, start: int, length: int) -> int:
    """zlib's CRC32 of ``length`` bytes of the file from ``start`` (read in 16 MiB chunks).

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "b"; _ = p.write_bytes(b"xxhello")
        >>> crc32_region(p, 2, 5) == zlib.crc32(b"hello")
        True
    """
    crc = 0
    with Path(path).open("rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            block = f.read(min(CHUNK, left))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            left -= len(block)
    return crc


def verify_default() -> bool:
    """Whether loaders check the data CRC by default: yes unless ``LEANML_LMQ_VERIFY=0``.

    Example:
        >>> isinstance(verify_default(), bool)
        True
    """
    return os.environ.get(VERIFY_ENV, "1").strip() not in ("0", "false", "no", "off")


def recreate_hint(p: Path, header: Any = None) -> str:
    """The command that re-creates packed file ``p`` (from its old header's source and quant config if readable).

    Example:
        >>> old = {"source": "smollm2", "quant": {"method": "awq", "bits": 4, "group_size": 128}}
        >>> recreate_hint(Path("m.lmq"), old)
        're-create it: leanml llm quantize smollm2 --method awq --bits 4 --group-size 128 --out m.lmq --overwrite'
    """
    src, flags = "MODEL", ""
    if isinstance(header, dict):
        q = header.get("quant")
        src = str(header.get("source") or src)
        if isinstance(q, dict) and all(k in q for k in ("method", "bits", "group_size")):
            flags = f" --method {q['method']} --bits {q['bits']} --group-size {q['group_size']}"
    return f"re-create it: leanml llm quantize {src}{flags} --out {p} --overwrite"


def _int(value: Any, lo: int, hi: int, what: str, p: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise LeanmlError(f"{p}: {what} = {value!r} is not an integer in {lo}..{hi}", recreate_hint(p))
    return value


def _parse(p: Path, head: bytes, what: str) -> Any:
    return parse_json(head, f"the {what} of {p}", recreate_hint(p))


def _check_table(p: Path, header: dict[str, Any], data_bytes: int) -> dict[str, dict[str, Any]]:
    """Every tensor entry well formed, aligned, inside the data region, sized as its shape says, not overlapping."""
    tensors = header.get("tensors")
    if not isinstance(tensors, list):
        raise LeanmlError(f"{p}: header field 'tensors' is not a list", recreate_hint(p))
    table: dict[str, dict[str, Any]] = {}
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or t.get("dtype") not in DTYPES:
            raise LeanmlError(f"{p}: tensors[{i}] needs a name and a dtype in {sorted(DTYPES)}", recreate_hint(p))
        name = t["name"]
        if name in table:
            raise LeanmlError(f"{p}: tensor {name} is listed twice", recreate_hint(p))
        shape = t.get("shape")
        if not isinstance(shape, list) or len(shape) > 8:
            raise LeanmlError(f"{p}: tensor {name}: 'shape' is not a list of at most 8 sizes", recreate_hint(p))
        n = np.dtype(DTYPES[t["dtype"]]).itemsize
        for d in shape:
            n *= _int(d, 0, MAX_DIM, f"tensor {name} shape entry", p)
        offset = _int(t.get("offset"), 0, data_bytes, f"tensor {name} 'offset'", p)
        nbytes = _int(t.get("nbytes"), 0, data_bytes, f"tensor {name} 'nbytes'", p)
        if nbytes != n:
            raise LeanmlError(f"{p}: tensor {name} has nbytes {nbytes}, its shape {shape} needs {n}", recreate_hint(p))
        if offset % ALIGN:
            raise LeanmlError(f"{p}: tensor {name} offset {offset} is not a multiple of {ALIGN}", recreate_hint(p))
        if offset + nbytes > data_bytes:
            raise LeanmlError(f"{p}: tensor {name} ends at {offset + nbytes}, past the data region ({data_bytes} "
                              "bytes): truncated or corrupt", recreate_hint(p))  # fmt: skip
        table[name] = t
    spans = sorted((t["offset"], t["offset"] + t["nbytes"], name) for name, t in table.items() if t["nbytes"])
    for (_, end, a), (begin, _, b) in itertools.pairwise(spans):
        if begin < end:
            raise LeanmlError(f"{p}: tensors {a} and {b} overlap", recreate_hint(p))
    return table


def _check_linears(p: Path, header: dict[str, Any], table: dict[str, dict[str, Any]]) -> None:
    """Every quantized linear's fields in range and its qweight / scales / zeros / bias tensors of the right shape."""
    linears = header.get("linears")
    if not isinstance(linears, dict):
        raise LeanmlError(f"{p}: header field 'linears' is not an object", recreate_hint(p))
    for name, lin in linears.items():
        if not isinstance(lin, dict):
            raise LeanmlError(f"{p}: linear {name} is not an object", recreate_hint(p))
        k = _int(lin.get("in"), 1, MAX_DIM, f"linear {name} 'in'", p)
        n = _int(lin.get("out"), 1, MAX_DIM, f"linear {name} 'out'", p)
        bits = _int(lin.get("bits"), 2, 8, f"linear {name} 'bits'", p)
        group = _int(lin.get("group_size"), 1, MAX_DIM, f"linear {name} 'group_size'", p)
        if not isinstance(lin.get("bias"), bool):
            raise LeanmlError(f"{p}: linear {name} 'bias' is not true/false", recreate_hint(p))
        g = -(-k // group)
        want = {"qweight": ("uint8", [n, row_bytes(k, bits)]), "scales": ("float16", [n, g]),
                "zeros": ("uint8", [n, g])}  # fmt: skip
        if lin["bias"]:
            want["bias"] = ("", [n])
        for part, (dtype, shape) in want.items():
            t = table.get(f"{name}.{part}")
            if t is None:
                raise LeanmlError(f"{p}: tensor {name}.{part} of a quantized linear is missing", recreate_hint(p))
            if t["shape"] != shape or (dtype and t["dtype"] != dtype):
                raise LeanmlError(f"{p}: packed {part} of {name} has the wrong shape or dtype ({t['dtype']} "
                                  f"{t['shape']}, expected {dtype or 'float'} {shape})", recreate_hint(p))  # fmt: skip


def _check_model(p: Path, header: dict[str, Any], table: dict[str, dict[str, Any]]) -> None:
    """Every weight the config's model has is in the file with its shape (float or quantized); nothing else is."""
    config = header["config"]
    if config.get("model_type") not in ("llama", "mistral"):
        raise LeanmlError(f"{p}: config 'model_type' = {config.get('model_type')!r} is not a Llama-family model type",
                          recreate_hint(p))  # fmt: skip
    shapes = llama_weight_shapes(config, str(p))
    linears: dict[str, dict[str, Any]] = header["linears"]
    missing, wrong = [], []
    for name, shape in shapes.items():
        module, _, leaf = name.rpartition(".")
        lin = linears.get(module)
        if lin is not None and (leaf == "weight" or lin["bias"]):
            if leaf == "weight" and (lin["out"], lin["in"]) != shape:
                wrong.append(f"{module} is ({lin['out']}, {lin['in']}), expected {shape}")
            continue
        t = table.get(name)
        if t is None:
            missing.append(name)
        elif tuple(t["shape"]) != shape or t["dtype"] == "uint8":
            wrong.append(f"{name} is {t['dtype']} {t['shape']}, expected float {list(shape)}")
    vocab, hidden = check_llm_config(config, str(p))["vocab_size"], config["hidden_size"]
    for module, lin in linears.items():
        if f"{module}.weight" not in shapes and not (
            module == "lm_head" and (lin["out"], lin["in"]) == (vocab, hidden)
        ):
            wrong.append(f"quantized linear {module} is not a weight of this model")
    packed = {f"{m}.{part}" for m in linears for part in ("qweight", "scales", "zeros", "bias")}
    extra = [n for n in table if not n.startswith("tokenizer/") and n not in shapes and n not in packed]
    if missing:
        raise LeanmlError(f"{p}: the file lacks weights of the model: {missing_names(missing)}", recreate_hint(p))
    if wrong or extra:
        what = wrong[:3] + [f"unexpected tensor {n}" for n in extra[:3]]
        raise LeanmlError(f"{p}: tensors do not match the config: {'; '.join(what)}", recreate_hint(p))


def read_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """Read and validate a packed file's header and tensor table; returns (header, data start). No tensor data is
    read (the data CRC and the scales are checked by :class:`PackedFile`).

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
        _, version, head_crc, head_len = PREFIX.unpack(prefix)
        if head_len > min(MAX_HEADER, size - PREFIX.size):
            raise LeanmlError(f"{p} is truncated or corrupt (header length {head_len}, file {size} bytes)",
                              recreate_hint(p))  # fmt: skip
        head = f.read(head_len)
    if version == 1:
        old = None
        with contextlib.suppress(ValueError, RecursionError):  # only for the hint: the message stands without it
            old = json.loads(head) if json_depth(head) <= MAX_JSON_DEPTH else None
        raise LeanmlError(f"{p} has packed format version 1 (no checksums); this leanml reads version {VERSION}",
                          recreate_hint(p, old))  # fmt: skip
    if version != VERSION:
        raise LeanmlError(f"{p} has packed format version {version}; this leanml reads {VERSION}", recreate_hint(p))
    if zlib.crc32(head) != head_crc:
        raise LeanmlError(f"{p}: header checksum mismatch (the header is corrupt)", recreate_hint(p))
    header = _parse(p, head, "header")
    if not isinstance(header, dict) or not isinstance(header.get("config"), dict):
        raise LeanmlError(f"{p}: the header has no 'config' object", recreate_hint(p))
    data_start = align(PREFIX.size + head_len)
    data_bytes = _int(header.get("data_bytes"), 0, 1 << 62, "header field 'data_bytes'", p)
    _int(header.get("data_crc32"), 0, 2**32 - 1, "header field 'data_crc32'", p)
    if data_start + data_bytes != size:
        raise LeanmlError(f"{p} is {size} bytes, its header says {data_start + data_bytes} (truncated or appended to)",
                          recreate_hint(p))  # fmt: skip
    table = _check_table(p, header, data_bytes)
    _check_linears(p, header, table)
    _check_model(p, header, table)
    return header, data_start


class PackedFile:
    """An opened packed file: the validated header, a read-only memory map, tensor views, the tokenizer, the info.

    Everything is checked when the object is made: the header and table (:func:`read_header`), the data CRC when
    ``verify`` (default: :func:`verify_default`; the C runtime passes False and checks it in C), every float16 scale
    finite. The data is mapped on first use and unmapped by :meth:`close` (a context manager closes it too). Arrays
    from :meth:`array` are views into the map: copy what must outlive it.

    Example:
        >>> PackedFile("/nonexistent.lmq")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: packed model file not found: /nonexistent.lmq (...)
    """

    def __init__(self, path: str | Path, verify: bool | None = None) -> None:
        self.path = Path(path)
        self.header, self.data_start = read_header(self.path)
        self.table: dict[str, dict[str, Any]] = {t["name"]: t for t in self.header["tensors"]}
        self._raw: np.memmap[Any, np.dtype[np.uint8]] | None = None
        if verify_default() if verify is None else verify:
            crc = crc32_region(self.path, self.data_start, self.header["data_bytes"])
            if crc != self.header["data_crc32"]:
                raise LeanmlError(f"{self.path}: data checksum mismatch (CRC32 {crc:#010x}, the header says "
                                  f"{self.header['data_crc32']:#010x}): the file is corrupt",
                                  recreate_hint(self.path))  # fmt: skip
        for name in self.header["linears"]:
            if not np.isfinite(self.array(f"{name}.scales")).all():
                raise LeanmlError(f"{self.path}: {name}.scales holds NaN or infinite values", recreate_hint(self.path))

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
            raise LeanmlError(f"{self.path} has no tensor {name}", recreate_hint(self.path))
        if shape is not None and list(t["shape"]) != list(shape):
            raise LeanmlError(f"{self.path}: tensor {name} has shape {t['shape']}, expected {list(shape)}",
                              recreate_hint(self.path))  # fmt: skip
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
        files = {Path(n).name: self.array(n).tobytes() for n in self.table if n.startswith("tokenizer/")}
        for fname, blob in files.items():
            if fname.endswith(".json") and json_depth(blob) > MAX_JSON_DEPTH:
                raise LeanmlError(f"{self.path}: tokenizer/{fname} is nested deeper than {MAX_JSON_DEPTH} levels",
                                  recreate_hint(self.path))  # fmt: skip
        return files

    def tokenizer(self) -> Any:
        """The file's tokenizer (transformers' ``AutoTokenizer`` on the stored files, offline).

        Example:
            >>> PackedFile("smollm2-rtn-w4g128.lmq").tokenizer().encode("Hello")  # doctest: +SKIP
            [19556]
        """
        require_llm_extra()
        from transformers import AutoTokenizer

        files = self.tokenizer_files()
        if not files:
            raise LeanmlError(f"{self.path} holds no tokenizer files (tokenizer/*)", recreate_hint(self.path))
        with tempfile.TemporaryDirectory() as tmp:
            for fname, blob in files.items():
                if fname in ("", ".", ".."):
                    raise LeanmlError(f"{self.path}: bad tokenizer file name {fname!r}", recreate_hint(self.path))
                (Path(tmp) / fname).write_bytes(blob)
            try:
                return AutoTokenizer.from_pretrained(tmp, local_files_only=True)
            except Exception as e:  # tokenizers raises bare Exceptions (from Rust), transformers ValueError/OSError
                raise LeanmlError(f"{self.path}: the embedded tokenizer is damaged: {type(e).__name__}: {e}",
                                  recreate_hint(self.path)) from e  # fmt: skip

    def info(self, format: str, dtype: str) -> LLMInfo:
        """What the file holds as an :class:`LLMInfo` (source: the file's path), loaded as ``format`` in ``dtype``.
        ``params`` counts the float model's weights (:func:`~leanml.llm.io.model_info.llama_params`), like every
        other loader.

        Example:
            >>> PackedFile("model.lmq").info("leanml-packed-c", "w4a8").format  # doctest: +SKIP
            'leanml-packed-c'
        """
        return LLMInfo.from_config(self.header["config"], dtype=dtype, source=str(self.path), format=format)

    def close(self) -> None:
        """Unmap the data (idempotent; a later read maps it again)."""
        self._raw = None

    def __enter__(self) -> PackedFile:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
