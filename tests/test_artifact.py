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


def _rewrite_weights(tmp_path, data: bytes) -> None:
    """Replace the weights of artifact ``m`` and re-write the sidecar's hash to match (a deliberate edit)."""
    import hashlib

    weights, sidecar = artifact_paths(tmp_path / "m")
    weights.write_bytes(data)
    doc = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**doc, "weights_sha256": hashlib.sha256(data).hexdigest()}))


def test_header_sizes_are_checked_before_anything_is_allocated(tmp_path):
    import struct

    save_artifact(tmp_path / "m", {"a": torch.zeros(4)}, {}, kind="demo")
    for shape in ([2**62, 4], [2**31, 2**31], [-1]):
        header = json.dumps({"a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 16]}}).encode()
        _rewrite_weights(tmp_path, struct.pack("<Q", len(header)) + header + bytes(16))
        with pytest.raises(LeanmlError, match="corrupt checkpoint weights"):
            load_artifact(tmp_path / "m", kind="demo")
    _rewrite_weights(tmp_path, struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(LeanmlError, match="header length"):
        load_artifact(tmp_path / "m", kind="demo")


def test_deep_json_and_directories_are_named_errors(tmp_path):
    save_artifact(tmp_path / "m", {"a": torch.zeros(2)}, {}, kind="demo")
    _, sidecar = artifact_paths(tmp_path / "m")
    sidecar.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(LeanmlError, match="nested 100000 levels deep"):
        load_artifact(tmp_path / "m", kind="demo")
    sidecar.unlink()
    sidecar.mkdir()
    with pytest.raises(LeanmlError, match="is a directory"):
        load_artifact(tmp_path / "m", kind="demo")


def test_fields_name_the_file_and_the_field():
    from leanml.artifact import Fields

    f = Fields({"ops": [{"stride": [1, 0]}]}, "m.json", "", "re-create it")
    op = Fields(f.array("ops")[0], "m.json", "ops[0]", "re-create it")
    with pytest.raises(LeanmlError, match=r"m.json: field ops\[0\].stride\[1\] must be an integer in 1..") as err:
        op.integers("stride", 2, lo=1, hi=64)
    assert err.value.hint == "re-create it"
    with pytest.raises(LeanmlError, match=r"field ops\[0\].groups is missing"):
        op.integer("groups", lo=1)
