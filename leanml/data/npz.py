"""``npz:FILE``: images and labels in a NumPy ``.npz`` archive (no pickles).

Layouts: ``images`` (uint8, N x H x W x C or N x H x W) with ``labels`` (ints),
split seeded and stratified; or pre-split ``x_train``/``y_train`` and
``x_test``/``y_test`` (optionally ``x_val``/``y_val``; a missing val split is
carved from train). An optional ``classes`` array names the classes. Shapes and
dtypes are read from the array headers, and labels checked, before any image
array is loaded.

Example:
    >>> np.savez("digits.npz", images=np.zeros((30, 8, 8), np.uint8), labels=np.arange(30) % 3)  # doctest: +SKIP
    >>> load_npz("digits.npz", DataOptions()).input_shape                                         # doctest: +SKIP
    (1, 8, 8)
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib import format as npformat

from leanml.data.assemble import DataOptions, assemble, stratified_split, take
from leanml.data.imageset import ImageData
from leanml.errors import LeanmlError

_HINT = "store uint8 images N x H x W x C (or N x H x W) under 'images' with int 'labels' (or x_train/y_train/...)"


def _header(archive: zipfile.ZipFile, key: str, path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) of array ``key`` from its .npy header, without reading the data."""
    try:
        with archive.open(f"{key}.npy") as f:
            version = npformat.read_magic(f)
            read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise LeanmlError(f"cannot read array {key!r} of {path}: {e}", _HINT) from e
    return tuple(shape), dtype


def _images_header(archive: zipfile.ZipFile, key: str, path: Path) -> tuple[int, ...]:
    shape, dtype = _header(archive, key, path)
    if dtype != np.uint8:
        raise LeanmlError(f"{path}: {key!r} is {dtype}, not uint8", "store pixel values 0..255 as uint8")
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
        raise LeanmlError(f"{path}: {key!r} has shape {shape}", _HINT)
    return shape


def _labels(data: Any, key: str, n: int, path: Path) -> torch.Tensor:
    labels = np.asarray(data[key])
    if labels.ndim != 1 or labels.shape[0] != n or not np.issubdtype(labels.dtype, np.integer):
        raise LeanmlError(f"{path}: {key!r} must hold {n} integer labels, got {labels.dtype} {labels.shape}", _HINT)
    return torch.from_numpy(labels.astype(np.int64))


def _classes(data: Any, keys: set[str], labels: list[torch.Tensor], path: Path) -> tuple[str, ...]:
    top = max(int(t.max()) for t in labels if len(t)) if any(len(t) for t in labels) else 0
    low = min((int(t.min()) for t in labels if len(t)), default=0)
    if "classes" in keys:
        try:
            names = tuple(str(c) for c in np.asarray(data["classes"]).tolist())
        except ValueError as e:
            raise LeanmlError(
                f"{path}: 'classes' cannot load without pickle", "store class names as a str array"
            ) from e
    else:
        names = tuple(str(k) for k in range(top + 1))
    if low < 0 or top >= len(names):
        raise LeanmlError(
            f"{path}: labels span {low}..{top}, outside 0..{len(names) - 1} ({len(names)} classes)",
            "fix the labels or the 'classes' array",
        )
    return names


def _nchw(images: np.ndarray) -> torch.Tensor:
    """N x H x W (x C) uint8 → (N, C, H, W)."""
    x = images[..., None] if images.ndim == 3 else images  # (N, H, W, C)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def load_npz(path: str, opts: DataOptions) -> ImageData:
    """Load ``npz:FILE`` (see the module docstring); every bad input is a :class:`LeanmlError`."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise LeanmlError(f"npz file not found: {file}", "pass --data npz:FILE with an existing .npz")
    try:
        archive = zipfile.ZipFile(file)
    except (OSError, zipfile.BadZipFile) as e:
        raise LeanmlError(f"{file} is not an .npz archive: {e}", _HINT) from e
    with archive, np.load(file, allow_pickle=False) as data:
        keys = {n.removesuffix(".npy") for n in archive.namelist()}
        if {"images", "labels"} <= keys:
            n = _images_header(archive, "images", file)[0]
            labels = _labels(data, "labels", n, file)
            classes = _classes(data, keys, [labels], file)
            parts = stratified_split(labels, {"val": opts.val_fraction, "test": opts.test_fraction}, opts.seed)
            images = data["images"]
            picked = {s: take(idx, opts.limit) for s, idx in parts.items()}
            split = {s: (_nchw(images[idx.numpy()]), labels[idx]) for s, idx in picked.items()}
        elif {"x_train", "y_train", "x_test", "y_test"} <= keys:
            names = ["train", "test"] + (["val"] if {"x_val", "y_val"} <= keys else [])
            lab = {s: _labels(data, f"y_{s}", _images_header(archive, f"x_{s}", file)[0], file) for s in names}
            classes = _classes(data, keys, list(lab.values()), file)
            idx = {"test": torch.arange(len(lab["test"]))}
            if "val" in lab:
                idx.update(train=torch.arange(len(lab["train"])), val=torch.arange(len(lab["val"])))
            else:
                idx.update(stratified_split(lab["train"], {"val": opts.val_fraction}, opts.seed))
            arrays = {s: data[f"x_{s}"] for s in names}
            split = {}
            for s, ix in idx.items():
                ix = take(ix, opts.limit)
                split[s] = (
                    _nchw(arrays["train" if s == "val" and "val" not in lab else s][ix.numpy()]),
                    lab["train" if s == "val" and "val" not in lab else s][ix],
                )
        else:
            raise LeanmlError(
                f"{file} holds {sorted(keys)}, not 'images'/'labels' nor x_train/y_train/x_test/y_test", _HINT
            )
    return assemble({s: split[s] for s in ("train", "val", "test")}, classes, f"npz:{path}", opts)
