import torch

from leanml.data import ImageSet, Normalization, batches, normalize
from leanml.data.loader import random_shift_flip


def test_batches_cover_everything_once():
    ds = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 28, 28).clone(), torch.arange(10))
    seen = torch.cat([y for _, y in batches(ds, 3, shuffle=True, seed=1)])
    assert sorted(seen.tolist()) == list(range(10))


def test_order_and_augmentation_depend_only_on_seed_and_epoch():
    ds = ImageSet(torch.randint(0, 255, (20, 1, 28, 28), dtype=torch.uint8), torch.arange(20))
    run = lambda epoch: [x for x, _ in batches(ds, 8, shuffle=True, augment=True, seed=3, epoch=epoch)]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(run(1), run(1), strict=True))
    assert not torch.equal(run(1)[0], run(2)[0])


def test_shift_flip_keeps_content():
    x = torch.randint(1, 255, (64, 1, 6, 6), dtype=torch.uint8)
    out = random_shift_flip(x, 0, torch.Generator().manual_seed(0))
    # with no padding every output is the image or its mirror
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True))
    shifted = random_shift_flip(x, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape and shifted.dtype == torch.uint8


def test_normalize_matches_dataset_statistics():
    x = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    norm = Normalization((0.2860,), (0.3530,))
    assert torch.allclose(normalize(x, norm), torch.full((1, 1, 2, 2), (1 - 0.2860) / 0.3530))
