"""The run directory: one folder per finished stage, keyed by a hash of the stage's config and inputs.

A stage's folder is filled under a temporary name and renamed into place after its ``stage.json`` (written last)
is on disk, so a folder that exists is complete; ``kill -9`` at any moment leaves at most a temporary folder,
which the next run removes. Re-running with the same recipe, model and data finds every finished stage by its key
and skips it; changing a stage's settings changes its key and every later stage's.

Example:
    >>> import tempfile
    >>> store = RunStore(tempfile.mkdtemp())
    >>> key = stage_key("prune", {"ratio": 0.5}, ["abc"])
    >>> store.find("prune", key) is None
    True
    >>> done = store.run("prune", key, lambda folder: {"note": "pruned"})
    >>> store.find("prune", key).record["note"]
    'pruned'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanml.artifact import atomic_write
from leanml.errors import LeanmlError

FORMAT = "leanml.compress-stage"
VERSION = 1
TMP_PREFIX = ".tmp-"


STAGE_FORMAT = 2
"""Part of every stage key: bumped when an artifact a stage writes changes format, so a run folder made by an
older leanml recomputes its stages instead of failing to load them (2: integer model format 2, k-means models)."""


def stage_key(stage: str, config: dict[str, Any], inputs: list[str]) -> str:
    """SHA-256 of the stage name, its config (canonical JSON) and the keys of what it consumes.

    Example:
        >>> stage_key("a", {"x": 1}, []) == stage_key("a", {"x": 1}, [])
        True
        >>> stage_key("a", {"x": 1}, []) == stage_key("a", {"x": 2}, [])
        False
    """
    doc = {"stage": stage, "config": config, "inputs": inputs, "format": STAGE_FORMAT}
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StageDone:
    """A finished stage: its folder and the record it wrote."""

    folder: Path
    record: dict[str, Any]


class RunStore:
    """Finished stages under ``root/stages``; see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.stages = self.root / "stages"
        try:
            self.stages.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LeanmlError(
                f"cannot create run directory {self.root}: {e.strerror}", "choose a writable --out"
            ) from e
        for leftover in self.stages.glob(TMP_PREFIX + "*"):  # a stage killed mid-way: start it again
            shutil.rmtree(leftover, ignore_errors=False)

    def folder(self, stage: str, key: str) -> Path:
        """Where stage ``stage`` with ``key`` lives."""
        return self.stages / f"{stage}-{key[:16]}"

    def find(self, stage: str, key: str) -> StageDone | None:
        """The finished stage with this key, or None; a folder whose record disagrees is an error."""
        folder = self.folder(stage, key)
        marker = folder / "stage.json"
        if not marker.is_file():
            return None
        try:
            doc = json.loads(marker.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LeanmlError(f"corrupt stage record {marker}: {e}", f"delete {folder} and re-run") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise LeanmlError(f"{marker} is not a leanml stage record of version {VERSION}", f"delete {folder}")
        if doc.get("key") != key or doc.get("stage") != stage or not isinstance(doc.get("record"), dict):
            raise LeanmlError(f"{marker} belongs to another stage or key", f"delete {folder} and re-run")
        return StageDone(folder, doc["record"])

    def run(self, stage: str, key: str, fill: Callable[[Path], dict[str, Any]]) -> StageDone:
        """Run ``fill(folder)`` in a temporary folder, write its record last, then move the folder into place."""
        final = self.folder(stage, key)
        tmp = self.stages / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            record = fill(tmp)
            doc = {"format": FORMAT, "version": VERSION, "stage": stage, "key": key, "record": record}
            text = json.dumps(doc, indent=2, sort_keys=True, default=_json_default).encode()
            atomic_write(tmp / "stage.json", lambda p: p.write_bytes(text))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return StageDone(final, record)


def _json_default(value: object) -> object:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")
