"""NAS fixtures: a tiny search space whose supernet runs in milliseconds."""

from __future__ import annotations

import pytest

from leanml.nas.space import SpaceConfig


def tiny_space() -> SpaceConfig:
    """Two stages of 1..2 blocks, 8/16 channels, resolutions 12 and 16: every test-sized NAS run uses it."""
    return SpaceConfig(stages=[[8, 1, 2], [16, 1, 2]], extra_depth=1, stem=8, head=16, resolutions=[12, 16],
                       widths=[0.5, 1.0])  # fmt: skip


@pytest.fixture
def space() -> SpaceConfig:
    return tiny_space()
