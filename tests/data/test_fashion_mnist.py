import gzip

import pytest
import torch

from leanml.data import load_split
from leanml.data.fashion_mnist import DEFAULT_ROOT, VAL_SIZE, data_root
from leanml.errors import LeanmlError
from tests.conftest import make_fake_fashion_mnist


def test_splits_are_fixed_disjoint_and_sized(fake_data):
    train = load_split("train", fake_data)
    val = load_split("val", fake_data)
    test = load_split("test", fake_data)
    assert len(train) == 6200 - VAL_SIZE and len(val) == VAL_SIZE and len(test) == 400
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.uint8
    again = load_split("val", fake_data)
    assert torch.equal(again.images, val.images)
    # no validation image is also a training image (random noise makes collisions impossible)
    train_keys = {bytes(x.flatten().tolist()) for x in train.images}
    assert not any(bytes(x.flatten().tolist()) in train_keys for x in val.images)


def test_subset_is_seeded(fake_data):
    a, b = load_split("test", fake_data, subset=50), load_split("test", fake_data, subset=50)
    assert len(a) == 50 and torch.equal(a.labels, b.labels)


def test_env_var_and_argument_override(fake_data, monkeypatch):
    monkeypatch.setenv("LEANML_DATA", str(fake_data))
    assert data_root() == fake_data
    assert len(load_split("test")) == 400
    monkeypatch.delenv("LEANML_DATA")
    assert data_root() == DEFAULT_ROOT


def test_missing_dataset_names_package_and_override(tmp_path):
    with pytest.raises(LeanmlError) as err:
        load_split("train", tmp_path / "nowhere")
    text = str(err.value)
    assert "dataset-fashion-mnist" in text and "LEANML_DATA" in text and "--data" in text


def test_truncated_idx_is_detected(tmp_path):
    root = make_fake_fashion_mnist(tmp_path / "d", n_train=20, n_test=20)
    with pytest.raises(LeanmlError, match="keeps 5000 of them for validation"):
        load_split("train", root)
    path = root / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(LeanmlError, match="truncated or corrupt"):
        load_split("test", root)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(LeanmlError, match="cannot read dataset file"):
        load_split("test", root)


def test_unknown_split():
    with pytest.raises(LeanmlError, match="choose one of: train, val, test"):
        load_split("dev")


@pytest.mark.slow
def test_real_fashion_mnist_loads():
    train, val, test = (load_split(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (55_000, 5_000, 10_000)
    assert sorted(torch.bincount(test.labels).tolist()) == [1000] * 10
