"""The one artifact format: safetensors weights + a versioned JSON sidecar.

An artifact named ``model`` is two files, ``model.safetensors`` (tensors only,
so loading never executes code) and ``model.json`` (format name, format
version, the SHA-256 of the weights file, and free-form metadata such as the
architecture spec, configs and metrics). Both are written atomically
(temporary file in the same folder, then ``os.replace``); the sidecar goes
last and records the weights' hash, so a crash between the two writes, a
swapped file, or a corrupt file is detected on load.

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
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from leanml.errors import LeanmlError

FORMAT_VERSION = 1


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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise LeanmlError(f"cannot write {target}: {e.strerror}", "choose a writable output path") from e
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are ordinary files
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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


def save_artifact(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], kind: str) -> None:
    """Atomically save ``tensors`` and JSON-safe ``meta`` as artifact ``path`` of ``kind``."""
    weights, sidecar = artifact_paths(path)
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

    atomic_write(weights, lambda tmp: save_file(clean, str(tmp)))
    doc = {"format": f"leanml.{kind}", "version": FORMAT_VERSION, "weights_sha256": _sha256(weights)}
    doc.update(meta)
    text = json.dumps(doc, indent=2, sort_keys=True).encode()
    atomic_write(sidecar, lambda tmp: tmp.write_bytes(text))


def load_artifact(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load and verify an artifact; every problem is a :class:`LeanmlError` naming the file."""
    weights, sidecar = artifact_paths(path)
    for p in (weights, sidecar):
        if not p.is_file():
            raise LeanmlError(f"checkpoint file not found: {p}", "check the path, or train one first")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LeanmlError(f"corrupt checkpoint sidecar {sidecar}: {e}", "re-create the checkpoint") from e
    if not isinstance(meta, dict) or meta.get("format") != f"leanml.{kind}":
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise LeanmlError(f"{sidecar} is not a leanml {kind} (format: {found!r})", "pass a leanml checkpoint")
    if meta.get("version") != FORMAT_VERSION:
        raise LeanmlError(
            f"{sidecar} has format version {meta.get('version')}, this leanml reads {FORMAT_VERSION}",
            "re-create the checkpoint with this leanml version",
        )
    if meta.get("weights_sha256") != _sha256(weights):
        raise LeanmlError(
            f"checkpoint weights {weights} do not match their sidecar (corrupt or replaced file)",
            "re-create the checkpoint",
        )
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as e:
        raise LeanmlError(f"corrupt checkpoint weights {weights}: {e}", "re-create the checkpoint") from e
    return tensors, meta
