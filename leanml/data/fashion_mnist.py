"""Fashion-MNIST from IDX ``.gz`` files, held in memory as uint8 tensors.

Where the files come from, first match wins: the ``root`` argument (the CLI's
``--data``), the ``LEANML_DATA`` environment variable, then Debian's package
``dataset-fashion-mnist`` at ``/usr/share/datasets/fashion-mnist``.

Splits: ``train`` is the 60,000 training images minus a fixed, seeded
validation split of 5,000 (``val``); ``test`` is the 10,000 test images.

Example:
    >>> ds = load_split("val", subset=64)          # doctest: +SKIP
    >>> ds.images.shape, ds.images.dtype           # doctest: +SKIP
    (torch.Size([64, 1, 28, 28]), torch.uint8)
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from leanml.data.imageset import ImageSet, Normalization
from leanml.errors import LeanmlError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "LEANML_DATA"
SPLITS = ("train", "val", "test")
VAL_SIZE = 5000
SPLIT_SEED = 20240501
# Per-pixel statistics of the 60k training images, after scaling to [0, 1].
MEAN = 0.2860
STD = 0.3530
NORM = Normalization((MEAN,), (STD,))
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_DTYPES = {0x08: np.uint8}


def input_block() -> dict[str, object]:
    """The artifact ``input`` block of Fashion-MNIST at 28x28 (what ``ImageData.describe()`` gives for it).

    Example:
        >>> input_block()["shape"], input_block()["dataset"]
        ([1, 28, 28], 'fashion-mnist')
    """
    return {"shape": [1, 28, 28], **NORM.to_dict(), "dataset": "fashion-mnist", "classes": list(CLASSES)}


def data_root(root: str | Path | None = None) -> Path:
    """Resolve the dataset folder from the argument, ``LEANML_DATA`` or the Debian default.

    Example:
        >>> data_root("/tmp/fmnist")
        PosixPath('/tmp/fmnist')
    """
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_ROOT


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array; corrupt files raise.

    Example:
        >>> read_idx(Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")).shape  # doctest: +SKIP
        (10000,)
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise LeanmlError(f"cannot read dataset file {path}: {e}", "reinstall dataset-fashion-mnist") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise LeanmlError(f"{path} is not an IDX file of uint8 data", "reinstall dataset-fashion-mnist")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims))
    if len(raw) != header + count:
        raise LeanmlError(
            f"{path} is truncated or corrupt: {len(raw) - header} data bytes, header says {count}",
            "reinstall dataset-fashion-mnist",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_file_pair(root: Path, which: str) -> ImageSet:
    image_file, label_file = (root / name for name in _FILES[which])
    for p in (image_file, label_file):
        if not p.is_file():
            raise LeanmlError(
                f"Fashion-MNIST file not found: {p}",
                "install it with `apt-get install dataset-fashion-mnist` (or `make data`), "
                f"or point {ENV_VAR} / --data at a folder holding the four IDX .gz files "
                "(your own images: --data imagefolder:DIR or npz:FILE)",
            )
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise LeanmlError(
            f"Fashion-MNIST files in {root} disagree: images {images.shape}, labels {labels.shape}",
            "reinstall dataset-fashion-mnist",
        )
    return ImageSet(
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        norm=NORM,
    )


def load_split(split: str, root: str | Path | None = None, subset: int | None = None) -> ImageSet:
    """Load ``train``, ``val`` or ``test`` (normalized with :data:`NORM`); ``subset`` keeps a fixed, seeded sample.

    Example:
        >>> len(load_split("test", subset=100))  # doctest: +SKIP
        100
    """
    if split not in SPLITS:
        raise LeanmlError(f"unknown split {split!r}", f"choose one of: {', '.join(SPLITS)}")
    if subset is not None and subset < 1:
        raise LeanmlError(f"subset must be a positive count, got {subset}")
    base = data_root(root)
    if split == "test":
        data = _load_file_pair(base, "test")
    else:
        full = _load_file_pair(base, "train")
        if len(full) <= VAL_SIZE:
            raise LeanmlError(
                f"{base} holds {len(full)} training images; leanml keeps {VAL_SIZE} of them for validation",
                "point --data / LEANML_DATA at the full Fashion-MNIST",
            )
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(SPLIT_SEED))
        idx = order[:VAL_SIZE] if split == "val" else order[VAL_SIZE:]
        data = full.subset(idx)
    if subset is not None and subset < len(data):
        pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(SPLIT_SEED + 1))[:subset]
        data = data.subset(pick)
    return data
