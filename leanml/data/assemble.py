"""What every data source shares: the options, seeded stratified splits, channel and size conversion, assembly.

A source reads its images (or only decides which ones to read), then
:func:`stratified_split` picks the splits and :func:`assemble` resizes, sets
the channel count, computes the normalization once on the train split and
returns an :class:`ImageData`.

Example:
    >>> labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    >>> parts = stratified_split(labels, {"val": 0.2, "test": 0.2}, seed=0)
    >>> {k: len(v) for k, v in parts.items()}
    {'train': 6, 'val': 2, 'test': 2}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from leanml.config import Config, require
from leanml.data.imageset import ImageData, ImageSet, Normalization
from leanml.errors import LeanmlError

SPLITS = ("train", "val", "test")
_RESIZE_CHUNK = 512  # images per interpolation call
_LUMA = (299, 587, 114)  # ITU-R 601 weights /1000, as Pillow's convert("L")


@dataclass
class DataOptions(Config):
    """How :func:`leanml.data.load_data` shapes and splits a source (the same options for every source).

    Example:
        >>> DataOptions(resolution=32, grayscale=True).split_record()
        {'seed': 0, 'val_fraction': 0.1, 'test_fraction': 0.2}
    """

    resolution: int | None = None
    grayscale: bool | None = None
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    root: str | None = None
    limit: int | None = None

    def validate(self) -> None:
        require(
            self.resolution is None or self.resolution >= 1,
            f"resolution must be >= 1, got {self.resolution}",
            "pass --resolution with a positive pixel count",
        )
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            require(0.0 < value < 1.0, f"{name} must be in (0, 1), got {value}", f"pass a {name} such as 0.1")
        require(
            self.val_fraction + self.test_fraction < 1.0,
            f"val_fraction + test_fraction must leave images to train on, got "
            f"{self.val_fraction} + {self.test_fraction}",
            "lower one of them",
        )
        require(self.limit is None or self.limit >= 1, f"limit must be a positive count, got {self.limit}")

    def split_record(self) -> dict[str, float | int]:
        """What reproduces a split: the seed and the two fractions (stored in ``ImageData.split``)."""
        return {"seed": self.seed, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction}


def _share(fraction: float, n: int) -> int:
    return math.floor(fraction * n + 0.5)


def stratified_split(labels: torch.Tensor, fractions: dict[str, float], seed: int) -> dict[str, torch.Tensor]:
    """Seeded, per-class split of indices: ``fractions`` name the carved-off parts, the rest is ``"train"``.

    Each class gives round(fraction x its count) images to each part but keeps at
    least one for train; every part's indices come back in a seeded random order.
    """
    gen = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"train": [], **{name: [] for name in fractions}}
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n, start = len(members), 0
        for name, fraction in fractions.items():
            take = min(_share(fraction, n), max(n - 1 - start, 0))
            parts[name].append(members[start : start + take])
            start += take
        parts["train"].append(members[start:])
    out = {}
    for name, chunks in parts.items():
        idx = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)
        out[name] = idx[torch.randperm(len(idx), generator=gen)]
    return {name: out[name] for name in ("train", *fractions)}


def take(idx: torch.Tensor, limit: int | None) -> torch.Tensor:
    """The first ``limit`` indices (all when ``limit`` is None); indices are already in a seeded order."""
    return idx if limit is None else idx[:limit]


def require_nonempty(parts: dict[str, torch.Tensor | ImageSet], source: str, opts: DataOptions) -> None:
    """LeanmlError naming the first empty split and the fix."""
    for name, part in parts.items():
        if len(part) == 0:
            raise LeanmlError(
                f"the {name} split of {source} is empty after splitting "
                f"(val_fraction {opts.val_fraction}, test_fraction {opts.test_fraction})",
                "add images (a few per class at least) or change --val-fraction / --test-fraction",
            )


def to_channels(images: torch.Tensor, grayscale: bool | None) -> torch.Tensor:
    """uint8 (N, C, H, W) → 1 channel (``grayscale=True``, luma as Pillow), 3 (``False``) or as is (``None``).

    Example:
        >>> to_channels(torch.full((1, 3, 1, 1), 200, dtype=torch.uint8), True).flatten().tolist()
        [200]
    """
    c = images.shape[1]
    if grayscale is None or (grayscale and c == 1) or (not grayscale and c == 3):
        return images
    if grayscale:
        if c != 3:
            raise LeanmlError(f"cannot make {c}-channel images grayscale", "pass 1- or 3-channel images")
        w = torch.tensor(_LUMA, dtype=torch.int32).view(1, 3, 1, 1)
        luma = (images.to(torch.int32) * w).sum(1, keepdim=True)  # (N, 1, H, W)
        return ((luma + 500) // 1000).to(torch.uint8)
    if c != 1:
        raise LeanmlError(f"cannot make {c}-channel images RGB", "pass 1- or 3-channel images")
    return images.expand(-1, 3, -1, -1).contiguous()


def resize_images(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """uint8 (N, C, H, W) → uint8 (N, C, r, r), bilinear with antialiasing; unchanged when already r x r or None.

    Example:
        >>> resize_images(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 14).shape
        torch.Size([2, 1, 14, 14])
    """
    if resolution is None or tuple(images.shape[-2:]) == (resolution, resolution):
        return images
    out = torch.empty(images.shape[0], images.shape[1], resolution, resolution, dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        x = images[start : start + _RESIZE_CHUNK].float()  # (B, C, H, W)
        y = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + _RESIZE_CHUNK] = y.round().clamp(0, 255).to(torch.uint8)
    return out


def assemble(
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    classes: tuple[str, ...],
    source: str,
    opts: DataOptions,
    norm: Normalization | None = None,
) -> ImageData:
    """(images uint8 (N, C, H, W), labels (N,)) per split → :class:`ImageData`.

    Sets channels and resolution per ``opts``, checks labels against ``classes``,
    and normalizes every split with ``norm`` or, when None, the statistics of the
    train split.
    """
    require_nonempty({k: v[1] for k, v in parts.items()}, source, opts)
    if len(classes) < 2:
        raise LeanmlError(
            f"{source} has only {len(classes)} class ({', '.join(classes)})",
            "a classifier needs images of two or more classes",
        )
    shaped = {}
    for name, (images, labels) in parts.items():
        labels = labels.long()
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= len(classes):
            raise LeanmlError(
                f"{source} {name} labels span {low}..{high}, outside 0..{len(classes) - 1} ({len(classes)} classes)",
                "pass labels in 0..classes-1 (or the full class list)",
            )
        shaped[name] = (resize_images(to_channels(images, opts.grayscale), opts.resolution), labels)
    norm = norm if norm is not None else Normalization.of(shaped["train"][0])
    sets = {name: ImageSet(images, labels, norm) for name, (images, labels) in shaped.items()}
    return ImageData(sets["train"], sets["val"], sets["test"], tuple(classes), norm, source, opts.split_record())
