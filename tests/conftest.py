"""Shared fixtures: a tiny synthetic Fashion-MNIST in IDX format, seeded torch."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the format Fashion-MNIST ships in)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fake_fashion_mnist(root: Path, n_train: int = 6200, n_test: int = 400, seed: int = 0) -> Path:
    """Learnable 28x28 images: class k is a stripe pattern at angle k*18 degrees, plus noise.

    ``n_train`` includes the 5,000 images the loader keeps for validation.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:28, 0:28]
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        angle = labels[:, None, None] * np.pi / 10
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 1.2)  # (n, 28, 28)
        images = np.clip(120 + 80 * stripes + rng.integers(0, 50, (n, 28, 28)), 0, 255)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a small synthetic Fashion-MNIST (1,200 train / 5,000 val / 400 test images)."""
    return make_fake_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


def randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters; returns the model in eval mode."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.3, 3.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
