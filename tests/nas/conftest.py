"""NAS fixtures: a tiny search space whose supernet runs in milliseconds."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from leanml.data import ImageData, ImageSet, load_data
from leanml.nas.space import SpaceConfig
from leanml.threads import torch_threads


def tiny_space() -> SpaceConfig:
    """Two stages of 1..2 blocks, 8/16 channels, resolutions 12 and 16: every test-sized NAS run uses it."""
    return SpaceConfig(stages=[[8, 1, 2], [16, 1, 2]], extra_depth=1, stem=8, head=16, resolutions=[12, 16],
                       widths=[0.5, 1.0])  # fmt: skip


@functools.lru_cache(maxsize=2)
def fmnist(root: Path) -> ImageData:
    """The (fake) Fashion-MNIST at ``root``, loaded once per session."""
    return load_data("fashion-mnist", root=root)


def splits(root: Path) -> tuple[ImageSet, ImageSet]:
    """(train, val) of the data at ``root``: what the NAS functions measure and train on."""
    data = fmnist(root)
    return data.train, data.val


@pytest.fixture
def space() -> SpaceConfig:
    return tiny_space()


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory: pytest.TempPathFactory, fake_data: Path) -> Path:
    """A supernet of the tiny space after one short epoch per progressive-shrinking phase."""
    from leanml.nas.train import NasTrainConfig, train_supernet

    cfg = NasTrainConfig(space=tiny_space().to_dict(), phase_epochs=[2, 1, 1, 1], batch_size=32, train_subset=256,
                         val_subset=64, calib_images=32, phase_lr=[0.1, 0.05, 0.05, 0.05])  # fmt: skip
    out = tmp_path_factory.mktemp("nas") / "supernet"
    return train_supernet(cfg, out, *splits(fake_data), progress=False, threads=1).checkpoint


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """NAS tests run single-threaded: tiny tensors, and the CI machine is shared."""
    with torch_threads(1):
        yield
