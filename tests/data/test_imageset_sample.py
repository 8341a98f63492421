import pytest
import torch

from leanml.data import ImageSet, Normalization
from leanml.errors import LeanmlError


def _set(n: int) -> ImageSet:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageSet(images, torch.arange(n), Normalization((0.5,), (0.25,)))


def test_sample_is_the_seeded_randperm_prefix_and_keeps_the_norm() -> None:
    ds = _set(20)
    got = ds.sample(5, seed=3)
    want = torch.randperm(20, generator=torch.Generator().manual_seed(3))[:5]  # the pick seeded_subset made
    assert got.labels.tolist() == want.tolist()
    assert torch.equal(got.images[:, 0, 0, 0].long(), want)
    assert got.norm == ds.norm
    assert ds.sample(5).labels.tolist() == ds.sample(5, 0).labels.tolist() != got.labels.tolist()


def test_sample_all_when_count_is_none_or_too_large() -> None:
    ds = _set(6)
    assert ds.sample(None) is ds and ds.sample(6) is ds and ds.sample(100) is ds
    assert len(ds.sample(0)) == 0
    with pytest.raises(LeanmlError, match="cannot sample -1"):
        ds.sample(-1)
