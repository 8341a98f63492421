"""load_data over image folders and .npz files, from_tensors / from_dataset, splits, normalization, bad inputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leanml.data import (
    ImageData,
    ImageSet,
    Normalization,
    batches,
    from_dataset,
    from_tensors,
    load_data,
    load_input_data,
)
from leanml.errors import LeanmlError

CLASSES = ("ant", "bee", "cat")


def make_folder(root: Path, n: int = 8, size: int = 20, gray: bool = False, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: 3 classes x ``n`` images, class k brighter in channel k."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            pixels[..., k] += 150
            img = Image.fromarray(pixels).convert("L") if gray else Image.fromarray(pixels)
            img.save(root / name / f"{i}.png")
    return root


def keep_one_class(root: Path) -> None:
    for name in CLASSES[1:]:
        shutil.rmtree(root / name)


def test_imagefolder_shapes_split_and_norm(tmp_path: Path) -> None:
    data = load_data(f"imagefolder:{make_folder(tmp_path / 'd')}")
    assert data.input_shape == (3, 20, 20) and data.classes == CLASSES and data.num_classes == 3
    assert (len(data.train), len(data.val), len(data.test)) == (15, 3, 6)  # per class: 5 / 1 / 2
    for s in (data.train, data.val, data.test):
        assert s.norm == data.norm and s.images.dtype == torch.uint8
        assert torch.bincount(s.labels, minlength=3).tolist() == [len(s) // 3] * 3  # stratified
    assert data.norm == Normalization.of(data.train.images)  # computed on train only
    everything = torch.cat([data.train.images, data.val.images, data.test.images])
    assert data.norm.channels == 3 and data.norm != Normalization.of(everything)
    block = data.describe()
    assert block["shape"] == [3, 20, 20] and block["classes"] == list(CLASSES) and len(block["mean"]) == 3
    x, _ = next(iter(batches(data.train, 64)))
    assert abs(float(x[:, 0].mean())) < 1e-4  # normalized with the train statistics


def test_split_is_seeded_and_deterministic(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    a, b = load_data(f"imagefolder:{root}"), load_data(f"imagefolder:{root}")
    c = load_data(f"imagefolder:{root}", seed=1)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.test.images, c.test.images)


def test_resolution_grayscale_and_limit(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    data = load_data(f"imagefolder:{root}", resolution=12, grayscale=True, limit=4)
    assert data.input_shape == (1, 12, 12) and len(data.train) == 4 and data.norm.channels == 1
    gray = load_data(f"imagefolder:{make_folder(tmp_path / 'g', gray=True)}")
    assert gray.input_shape == (1, 20, 20)  # all-grayscale files: one channel


def test_presplit_folders(tmp_path: Path) -> None:
    make_folder(tmp_path / "d" / "train", n=10)
    make_folder(tmp_path / "d" / "test", n=2, seed=1)
    data = load_data(f"imagefolder:{tmp_path / 'd'}")
    assert len(data.test) == 6 and len(data.val) == 3 and len(data.train) == 27  # val carved from train


def test_mixed_sizes_need_a_resolution(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    Image.fromarray(np.zeros((30, 24, 3), np.uint8)).save(root / "bee" / "big.png")
    with pytest.raises(LeanmlError, match=r"big\.png.*resolution|resolution"):
        load_data(f"imagefolder:{root}")
    assert load_data(f"imagefolder:{root}", resolution=16).input_shape == (3, 16, 16)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda r: None, "not found"),
        (lambda r: r.mkdir(), "no class folders"),
        (
            lambda r: keep_one_class(make_folder(r)),
            "one class",
        ),
        (lambda r: make_folder(r) and (r / "empty").mkdir(), "empty.*no images"),
        (lambda r: make_folder(r) and (r / "cat" / "bad.png").write_bytes(b"not a png"), "bad.png"),
        (lambda r: make_folder(r, n=1), "empty after splitting"),
        (lambda r: make_folder(r / "val"), "no train/"),
    ],
)
def test_bad_folders_are_named(tmp_path: Path, setup, match: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "d"
    setup(root)
    with pytest.raises(LeanmlError, match=match):
        load_data(f"imagefolder:{root}")


def test_unknown_spec_lists_sources() -> None:
    with pytest.raises(LeanmlError, match=r"unknown data source.*imagefolder"):
        load_data("cifar")
    with pytest.raises(LeanmlError, match="needs an argument"):
        load_data("npz")


def test_npz_both_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    labels = np.arange(30) % 3
    np.savez(tmp_path / "flat.npz", images=images, labels=labels, classes=np.array(["a", "b", "c"]))
    flat = load_data(f"npz:{tmp_path / 'flat.npz'}")
    assert flat.input_shape == (1, 8, 8) and flat.classes == ("a", "b", "c") and len(flat.test) == 6
    rgb = rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "split.npz", x_train=rgb, y_train=np.arange(20) % 2, x_test=rgb[:4], y_test=np.arange(4) % 2)
    split = load_data(f"npz:{tmp_path / 'split.npz'}")
    assert split.input_shape == (3, 6, 6) and len(split.test) == 4 and len(split.train) + len(split.val) == 20
    assert torch.equal(split.test.images[0], torch.from_numpy(rgb[0]).permute(2, 0, 1))  # HWC → CHW


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"images": np.zeros((4, 8, 8), np.float32), "labels": np.zeros(4, int)}, "not uint8"),
        ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(3, int)}, "4 integer labels"),
        (
            {
                "images": np.zeros((4, 8, 8), np.uint8),
                "labels": np.array([0, 1, 2, 5]),
                "classes": np.array(["a", "b", "c"]),
            },
            "outside 0..2",
        ),
        ({"pixels": np.zeros((4, 8, 8), np.uint8)}, "not 'images'"),
    ],
)
def test_bad_npz_is_named(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    np.savez(tmp_path / "x.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(LeanmlError, match=match):
        load_data(f"npz:{tmp_path / 'x.npz'}")


def test_from_tensors_and_from_dataset() -> None:
    images = torch.randint(0, 256, (40, 3, 10, 10), dtype=torch.uint8)
    data = from_tensors(images, torch.arange(40) % 4, classes=["a", "b", "c", "d"])
    assert isinstance(data, ImageData) and data.describe()["dataset"] == "tensors" and data.num_classes == 4
    items = [(Image.fromarray(images[i].permute(1, 2, 0).numpy()), i % 4) for i in range(40)]
    from_pil = from_dataset(items)  # type: ignore[arg-type]
    assert torch.equal(from_pil.train.images, data.train.images)  # same pixels, same seeded split
    floats = from_dataset([(images[i].float() / 255, i % 4) for i in range(40)], resolution=5)  # type: ignore[arg-type]
    assert floats.input_shape == (3, 5, 5)
    with pytest.raises(LeanmlError, match="outside"):
        from_tensors(images, torch.arange(40) % 4, classes=["a", "b"])
    with pytest.raises(LeanmlError, match="channels-first"):
        from_tensors(images.permute(0, 2, 3, 1), torch.arange(40) % 4)


def test_normalization_validates_and_round_trips() -> None:
    norm = Normalization((0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    assert Normalization.from_dict(norm.to_dict()) == norm
    for bad in (
        {"mean": [0.1], "std": [0.0]},
        {"mean": [0.1, 0.2], "std": [1.0]},
        {"mean": [float("nan")], "std": [1]},
    ):
        with pytest.raises(LeanmlError):
            Normalization.from_dict(bad)
    x = torch.full((2, 3, 1, 1), 255, dtype=torch.uint8)
    assert norm.apply(x)[0, :, 0, 0].tolist() == pytest.approx([1.8, 1.6, 1.4])
    with pytest.raises(LeanmlError):
        ImageSet(torch.zeros(2, 2, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), norm)
    s = ImageSet(torch.zeros(4, 3, 2, 2, dtype=torch.uint8), torch.arange(4), norm)
    assert s.subset([1, 2]).norm == norm and s.subset(slice(0, 1)).input_shape == (3, 2, 2)


def test_input_block_reloads_the_same_test_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    data = load_data(f"imagefolder:{root}", resolution=16, seed=3, val_fraction=0.2)
    again = load_input_data(data.describe())
    assert torch.equal(again.test.images, data.test.images) and again.norm == data.norm


def test_importing_leanml_data_does_not_load_fashion_mnist() -> None:
    code = "import sys, leanml.data, leanml.train.checkpoint; print('leanml.data.fashion_mnist' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
