import json

import pytest
import torch

from leanml.artifact import artifact_paths, atomic_write, load_artifact, save_artifact
from leanml.errors import LeanmlError


def test_round_trip(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_artifact(tmp_path / "m", tensors, {"spec": {"x": 1}}, kind="demo")
    loaded, meta = load_artifact(tmp_path / "m.safetensors", kind="demo")
    assert meta["spec"] == {"x": 1} and meta["version"] == 1 and meta["format"] == "leanml.demo"
    for k, v in tensors.items():
        assert torch.equal(loaded[k], v)


def test_corrupt_or_swapped_weights_are_detected(tmp_path):
    save_artifact(tmp_path / "m", {"a": torch.zeros(100)}, {}, kind="demo")
    weights, _ = artifact_paths(tmp_path / "m")
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(LeanmlError, match="do not match their sidecar"):
        load_artifact(tmp_path / "m", kind="demo")


def test_truncated_sidecar_wrong_kind_and_version(tmp_path):
    save_artifact(tmp_path / "m", {"a": torch.zeros(2)}, {}, kind="demo")
    _, sidecar = artifact_paths(tmp_path / "m")
    with pytest.raises(LeanmlError, match="is not a leanml other"):
        load_artifact(tmp_path / "m", kind="other")
    doc = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(LeanmlError, match="format version 99"):
        load_artifact(tmp_path / "m", kind="demo")
    sidecar.write_text(sidecar.read_text()[:10])
    with pytest.raises(LeanmlError, match="corrupt checkpoint sidecar"):
        load_artifact(tmp_path / "m", kind="demo")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(LeanmlError, match=r"not found: .*nothing\.safetensors"):
        load_artifact(tmp_path / "nothing", kind="demo")


def test_atomic_write_keeps_old_file_and_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LeanmlError, match="cannot write"):
        atomic_write(blocker / "sub" / "out.txt", lambda tmp: tmp.write_text("y"))
