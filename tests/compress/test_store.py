"""The run store: finished stages are found by key; a stage killed or failing mid-way leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leanml.compress.store import RunStore, stage_key
from leanml.errors import LeanmlError


def test_run_then_find(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    key = stage_key("train", {"epochs": 1}, ["in"])
    done = store.run("train", key, lambda folder: (folder / "w.bin").write_bytes(b"x") and {"row": {"a": 1}})
    again = store.find("train", key)
    assert again is not None and again.record == done.record and (again.folder / "w.bin").read_bytes() == b"x"
    assert store.find("train", stage_key("train", {"epochs": 2}, ["in"])) is None


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)

    def boom(folder: Path) -> dict:
        (folder / "half.bin").write_bytes(b"half")
        raise LeanmlError("stage failed")

    with pytest.raises(LeanmlError):
        store.run("prune", "k" * 64, boom)
    assert list(store.stages.iterdir()) == []


def test_leftover_temp_folder_from_a_kill_is_removed(tmp_path: Path) -> None:
    (tmp_path / "stages" / ".tmp-train-abc-123").mkdir(parents=True)
    store = RunStore(tmp_path)
    assert list(store.stages.iterdir()) == []


def test_mismatched_record_is_an_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    key = "a" * 64
    store.run("train", key, lambda folder: {"row": {}})
    marker = store.folder("train", key) / "stage.json"
    doc = json.loads(marker.read_text())
    doc["key"] = "b" * 64
    marker.write_text(json.dumps(doc))
    with pytest.raises(LeanmlError, match="another stage or key"):
        store.find("train", key)
