"""The one artifact format: safetensors weights + a versioned JSON sidecar.

An artifact named ``model`` is two files, ``model.safetensors`` (tensors only,
so loading never executes code) and ``model.json`` (format name, format
version, the SHA-256 of the weights file, and free-form metadata such as the
architecture spec, configs and metrics). Both are written to temporary files
in the same folder first and then moved into place (``os.replace``), the
weights before the sidecar that records their hash; a crash while writing
leaves the previous artifact intact, and a swapped or corrupt file is
detected on load.

Loading validates before it allocates: the sidecar's size and JSON nesting
depth are bounded before it is parsed, and the safetensors header (dtypes,
shapes, offsets) is checked against the file's size before any tensor is
read. Loaders check the sidecar's fields through :class:`Fields`, which names
the file and the field of every problem.

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> save_artifact(f"{d}/m", {"w": torch.ones(2)}, {"note": "hi"}, kind="demo")
    >>> tensors, meta = load_artifact(f"{d}/m", kind="demo")
    >>> meta["note"], tensors["w"].tolist()
    ('hi', [1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from leanml.errors import LeanmlError

FORMAT_VERSION = 1
MAX_JSON_DEPTH = 64  # sidecars and safetensors headers nested deeper are refused before parsing
MAX_SIDECAR_BYTES = 64 << 20
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
MAX_DIM = 1 << 40  # any one tensor dimension (a file cannot hold more anyway)
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]")


def _temp_beside(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise LeanmlError(f"cannot write {target}: {e.strerror}", "choose a writable output path") from e
    os.close(fd)
    return Path(tmp)


def _fill(tmp: Path, write: Callable[[Path], object]) -> None:
    write(tmp)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are ordinary files
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Write a file atomically: ``write`` fills a temp path that then replaces ``path``.

    Example:
        >>> import tempfile
        >>> p = tempfile.mkdtemp() + "/x.txt"
        >>> atomic_write(p, lambda tmp: tmp.write_bytes(b"ok"))
        >>> open(p).read()
        'ok'
    """
    target = Path(path)
    tmp = _temp_beside(target)
    try:
        _fill(tmp, write)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def artifact_paths(path: str | Path) -> tuple[Path, Path]:
    """The (weights, sidecar) paths of an artifact given its stem or either file.

    Example:
        >>> [p.name for p in artifact_paths("runs/vgg.safetensors")]
        ['vgg.safetensors', 'vgg.json']
    """
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_artifact(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    kind: str,
    version: int = FORMAT_VERSION,
) -> None:
    """Save ``tensors`` and JSON-safe ``meta`` as artifact ``path`` of ``kind`` (format ``version``).

    Both files are written to temporary files first; only then do they replace the old ones (weights, then the
    sidecar), so a write killed midway leaves the previous artifact loadable.

    Example:
        >>> save_artifact("runs/m", {"w": torch.zeros(2)}, {}, kind="demo")  # doctest: +SKIP
    """
    weights, sidecar = artifact_paths(path)
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    tmp_w = _temp_beside(weights)
    tmp_s: Path | None = None
    try:
        _fill(tmp_w, lambda tmp: save_file(clean, str(tmp)))
        doc = {"format": f"leanml.{kind}", "version": version, "weights_sha256": _sha256(tmp_w)}
        doc.update(meta)
        text = json.dumps(doc, indent=2, sort_keys=True).encode()
        tmp_s = _temp_beside(sidecar)
        _fill(tmp_s, lambda tmp: tmp.write_bytes(text))
        os.replace(tmp_w, weights)
        os.replace(tmp_s, sidecar)
    except BaseException:
        tmp_w.unlink(missing_ok=True)
        if tmp_s is not None:
            tmp_s.unlink(missing_ok=True)
        raise


def json_depth(text: bytes) -> int:
    """Deepest nesting of ``[`` / ``{`` in JSON ``text`` (brackets inside strings do not count); no parsing.

    Example:
        >>> json_depth(b'{"a": [1, [2]], "b": "[[["}')
        3
    """
    depth = deepest = 0
    for c in _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", text)):
        depth += 1 if c in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(text: bytes, where: str | Path, hint: str) -> Any:
    """Parse JSON ``text`` read from ``where``: non-UTF-8, malformed, or nested deeper than :data:`MAX_JSON_DEPTH`
    is a :class:`LeanmlError` naming ``where`` (checked before parsing, so no recursion limit is ever hit).

    Example:
        >>> parse_json(b'{"a": 1}', "sidecar m.json", "re-create it")
        {'a': 1}
    """
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise LeanmlError(f"{where} is nested {depth} levels deep, more than the {MAX_JSON_DEPTH} allowed", hint)
    try:
        return json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise LeanmlError(f"corrupt {where}: not UTF-8 text ({e.reason})", hint) from e
    except ValueError as e:  # JSONDecodeError, or an integer too long to convert
        raise LeanmlError(f"corrupt {where}: {e}", hint) from e


def read_header(weights: str | Path, hint: str = "re-create the checkpoint") -> dict[str, tuple[str, tuple[int, ...]]]:
    """The tensors a safetensors file declares, ``{name: (dtype, shape)}``, after checking its header against the
    file: bounded header size and nesting, known dtypes, non-negative bounded dims, and offsets that cover exactly
    ``numel * itemsize`` bytes inside the file. Reads only the header.

    Example:
        >>> import tempfile
        >>> p = tempfile.mkdtemp() + "/t.safetensors"
        >>> save_file({"w": torch.zeros(2, 3)}, p)
        >>> read_header(p)
        {'w': ('F32', (2, 3))}
    """
    path = Path(weights)
    size = path.stat().st_size

    def bad(why: str) -> LeanmlError:
        return LeanmlError(f"corrupt checkpoint weights {path}: {why}", hint)

    with path.open("rb") as f:
        if size < 8:
            raise bad(f"{size} bytes, too short for a safetensors header")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise bad(f"header length {n} does not fit the file ({size} bytes)")
        raw = f.read(n)
    header = parse_json(raw, f"safetensors header of {path}", hint)
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    data_len = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} has a malformed entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= MAX_DIM for d in shape):
            raise bad(f"tensor {name!r} has invalid shape {str(shape)[:80]}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise bad(f"tensor {name!r} has invalid data offsets")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len or end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise bad(f"tensor {name!r} ({dtype} {shape}) does not match its bytes {offsets} in the file")
        out[name] = (dtype, tuple(shape))
    return out


def load_artifact(
    path: str | Path,
    kind: str,
    version: int = FORMAT_VERSION,
    recreate: str = "re-create the checkpoint",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load and verify an artifact of ``kind`` written in format ``version``; every problem is a
    :class:`LeanmlError` naming the file, with ``recreate`` (how to make the file again) as the hint.

    Example:
        >>> load_artifact("runs/vgg", kind="checkpoint")  # doctest: +SKIP
    """
    weights, sidecar = artifact_paths(path)
    for p in (weights, sidecar):
        if p.is_dir():
            raise LeanmlError(f"checkpoint file {p} is a directory", "pass the artifact's stem or one of its files")
        if not p.is_file():
            raise LeanmlError(f"checkpoint file not found: {p}", "check the path, or train one first")
    if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
        raise LeanmlError(f"checkpoint sidecar {sidecar} is larger than {MAX_SIDECAR_BYTES >> 20} MiB", recreate)
    meta = parse_json(sidecar.read_bytes(), f"checkpoint sidecar {sidecar}", recreate)
    if not isinstance(meta, dict) or meta.get("format") != f"leanml.{kind}":
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise LeanmlError(f"{sidecar} is not a leanml {kind} (format: {str(found)[:80]!r})", "pass a leanml checkpoint")
    if meta.get("version") != version or isinstance(meta.get("version"), bool):
        raise LeanmlError(f"{sidecar} has format version {str(meta.get('version'))[:40]}, this leanml reads {version}",
                          f"{recreate} with this leanml version")  # fmt: skip
    if meta.get("weights_sha256") != _sha256(weights):
        raise LeanmlError(
            f"checkpoint weights {weights} do not match their sidecar (corrupt or replaced file)", recreate
        )
    read_header(weights, recreate)
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as e:
        raise LeanmlError(f"corrupt checkpoint weights {weights}: {e}", recreate) from e
    return tensors, meta


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_MISSING: Any = object()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Fields:
    """Checked access to one JSON mapping of a sidecar: each getter checks the field's type and range, and every
    problem is a :class:`LeanmlError` naming the file and the field path (e.g. ``ops[3].fields.stride[0]``).

    Example:
        >>> f = Fields({"stride": [1, 2], "name": "conv"}, "m.json", "ops[1]", "re-create it")
        >>> f.integers("stride", 2, lo=1), f.string("name")
        ([1, 2], 'conv')
        >>> f.integer("groups", lo=1)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        LeanmlError: m.json: field ops[1].groups is missing (re-create it)
    """

    def __init__(self, data: Any, file: str | Path, path: str = "", hint: str = "re-create the file") -> None:
        self.file, self.path, self.hint = str(file), path, hint
        if not isinstance(data, dict):
            raise self.fail(path or "(top level)", "a JSON object", data)
        self.data: dict[str, Any] = data

    def where(self, key: str | int) -> str:
        """The full path of ``key`` in this mapping."""
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def fail(self, where: str, expected: str, value: Any) -> LeanmlError:
        """The error for field ``where`` holding ``value`` instead of ``expected``."""
        return LeanmlError(f"{self.file}: field {where} must be {expected}, got {_short(value)}", self.hint)

    def only(self, required: set[str] | frozenset[str], optional: set[str] | frozenset[str] = frozenset()) -> None:
        """Raise unless every ``required`` key is present and no key outside ``required | optional`` is."""
        missing = sorted(required - set(self.data))
        if missing:
            raise LeanmlError(f"{self.file}: field {self.where(missing[0])} is missing", self.hint)
        unknown = sorted(set(self.data) - required - optional)
        if unknown:
            raise LeanmlError(f"{self.file}: unknown field {self.where(unknown[0])}", self.hint)

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The raw value of ``key`` (``default`` when absent; absent without a default is an error)."""
        if key not in self.data:
            if default is _MISSING:
                raise LeanmlError(f"{self.file}: field {self.where(key)} is missing", self.hint)
            return default
        return self.data[key]

    def sub(self, key: str) -> Fields:
        """The mapping under ``key`` as :class:`Fields`."""
        return Fields(self.get(key), self.file, self.where(key), self.hint)

    def check_int(self, value: Any, where: str, lo: int | None = None, hi: int | None = None) -> int:
        """``value`` if it is an int (not a bool) in ``lo..hi``."""
        ok = _is_int(value) and (lo is None or value >= lo) and (hi is None or value <= hi)
        if not ok:
            rng = f" in {lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}" if lo or hi else ""
            raise self.fail(where, f"an integer{rng}", value)
        return int(value)

    def check_float(self, value: Any, where: str, positive: bool = False) -> float:
        """``value`` as a float if it is a finite number (and > 0 when ``positive``)."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (positive and value <= 0):
            raise self.fail(where, "a finite number" + (" > 0" if positive else ""), value)
        return float(value)

    def integer(self, key: str, lo: int | None = None, hi: int | None = None, default: Any = _MISSING) -> Any:
        """Integer field ``key`` in ``lo..hi`` (or ``default`` when absent)."""
        value = self.get(key, default)
        return value if key not in self.data else self.check_int(value, self.where(key), lo, hi)

    def number(self, key: str, positive: bool = False) -> float:
        """Finite number field ``key`` (> 0 when ``positive``)."""
        return self.check_float(self.get(key), self.where(key), positive)

    def string(self, key: str, default: Any = _MISSING, max_len: int = 4096) -> Any:
        """String field ``key`` (or ``default`` when absent)."""
        value = self.get(key, default)
        if key in self.data and not (isinstance(value, str) and len(value) <= max_len):
            raise self.fail(self.where(key), "a string", value)
        return value

    def array(self, key: str, max_len: int = 1 << 20, length: int | None = None) -> list[Any]:
        """List field ``key`` of at most ``max_len`` (or exactly ``length``) items."""
        value = self.get(key)
        ok = isinstance(value, list) and len(value) <= max_len and (length is None or len(value) == length)
        if not ok:
            raise self.fail(self.where(key), f"a list of {length if length is not None else 'items'}", value)
        return value

    def integers(self, key: str, length: int | None = None, lo: int | None = None, hi: int | None = None) -> list[int]:
        """List-of-integers field ``key``, each in ``lo..hi``."""
        items = self.array(key, length=length)
        return [self.check_int(v, f"{self.where(key)}[{i}]", lo, hi) for i, v in enumerate(items)]


MAX_INPUT_NUMEL = 1 << 28  # C * H * W of a model input


def check_input_block(
    block: Any, file: str | Path = "the input block", hint: str = "re-create the model"
) -> dict[str, Any]:
    """Validate an ``input`` block ({"shape": [C, H, W], "mean", "std", "dataset", "classes", ...}); returns a copy.

    ``shape`` (when present) must be three positive integers with a bounded product; ``mean``/``std`` (when present)
    numbers or lists of finite numbers (std > 0); the other fields are descriptive.

    Example:
        >>> check_input_block({"shape": [1, 24, 24], "dataset": "fashion-mnist"})["shape"]
        [1, 24, 24]
    """
    if not isinstance(block, dict):
        raise LeanmlError(f"{file}: the input block must be a mapping, got {type(block).__name__}",
                          "store {'shape': [C, H, W], 'mean': [...], 'std': [...], ...}")  # fmt: skip
    fields = Fields(block, file, "input", hint)
    out = dict(block)
    if "shape" in block:
        shape = block["shape"]
        ok = isinstance(shape, list | tuple) and len(shape) == 3
        if not ok or not all(_is_int(d) and 1 <= d <= MAX_DIM for d in shape) or math.prod(shape) > MAX_INPUT_NUMEL:
            raise LeanmlError(f"{file}: the input block's shape must be three positive integers (C, H, W) "
                              f"of at most {MAX_INPUT_NUMEL} values, got {_short(shape)}", hint)  # fmt: skip
        out["shape"] = [int(d) for d in shape]
    for key in ("mean", "std"):
        if key in block:
            values = block[key] if isinstance(block[key], list) else [block[key]]
            if not 1 <= len(values) <= 1 << 16:
                raise fields.fail(fields.where(key), "a number or a list of per-channel numbers", block[key])
            for i, v in enumerate(values):
                fields.check_float(v, f"input.{key}[{i}]", positive=key == "std")
    return out
