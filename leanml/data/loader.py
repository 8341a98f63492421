"""Batches from an in-memory :class:`ImageSet`: its normalization and augmentation on whole batches.

Order and augmentation come from a generator seeded by (seed, epoch), so a
resumed run sees exactly the batches the uninterrupted run would have seen.

Example:
    >>> from leanml.data.imageset import ImageSet
    >>> ds = ImageSet(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), torch.zeros(10, dtype=torch.long))
    >>> [x.shape[0] for x, _ in batches(ds, batch_size=4)]
    [4, 4, 2]
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from leanml.data.imageset import ImageSet, Normalization


def normalize(images: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """uint8 images (N, C, H, W) → float32 (N, C, H, W) normalized with ``norm`` (a dataset's per-channel mean/std).

    Example:
        >>> normalize(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), Normalization((0.5,), (0.5,))).flatten()[0].item()
        -1.0
    """
    return norm.apply(images)


def random_shift_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` and random horizontal flip, per image.

    images: (N, C, H, W) → (N, C, H, W)

    Example:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> random_shift_flip(x, 0, torch.Generator().manual_seed(0)).shape
        torch.Size([1, 1, 4, 4])
    """
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = dy[:, None] + torch.arange(h)  # (N, H)
    cols = dx[:, None] + torch.arange(w)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n)[:, None, None]
    # (N, H, W, C) after advanced indexing on dims 0, 2, 3; back to (N, C, H, W)
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def batches(
    data: ImageSet,
    batch_size: int,
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
    epoch: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float images (B, C, H, W) normalized with ``data.norm``, labels (B,)) batches.

    ``augment`` shifts each image randomly by up to max(1, H // 14) pixels and flips half of them horizontally.
    """
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    n = len(data)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x = data.images[idx]
        if augment:
            x = random_shift_flip(x, pad=max(1, x.shape[2] // 14), generator=gen)
        yield data.norm.apply(x), data.labels[idx]
