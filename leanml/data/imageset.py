"""Image classification data held in memory: uint8 images, labels, and the per-channel normalization.

Neutral: nothing here knows any dataset. :class:`ImageSet` is one split,
:class:`ImageData` the three splits of one dataset with its class names and
the :class:`Normalization` computed once on its training split (shared by all
three splits). ``ImageData.describe()`` is the ``input`` block stored in every
artifact, which is what lets a checkpoint say what its model eats.

Example:
    >>> images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    >>> ds = ImageSet(images, torch.zeros(4, dtype=torch.long), Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    >>> ds.input_shape, len(ds.subset([0, 1]))
    ((3, 8, 8), 2)
    >>> ds.norm.apply(images)[0, 0, 0, 0].item()
    -2.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from leanml.errors import LeanmlError

STD_FLOOR = 1e-3
"""Smallest per-channel std :meth:`Normalization.of` returns (a constant channel would divide by zero)."""
_CHUNK = 1024  # images per chunk when computing statistics


def _floats(values: Any, what: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise LeanmlError(
            f"normalization {what} must be a non-empty list of numbers, got {values!r}",
            "re-create the artifact or pass one value per channel",
        )
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise LeanmlError(f"normalization {what} holds {v!r}, not a finite number", "pass finite numbers")
        out.append(float(v))
    return tuple(out)


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std of images scaled to [0, 1]; one value applies to every channel.

    Example:
        >>> norm = Normalization.from_dict({"mean": [0.5], "std": [0.5]})
        >>> norm.apply(torch.full((1, 2, 1, 1), 255, dtype=torch.uint8)).flatten().tolist()
        [1.0, 1.0]
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
        if len(mean) != len(std):
            raise LeanmlError(
                f"normalization has {len(mean)} means but {len(std)} stds", "give one of each per channel"
            )
        if any(s <= 0 for s in std):
            raise LeanmlError(f"normalization std must be > 0, got {list(std)}", "recompute it with Normalization.of")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        """How many channels this normalization describes (1 = applies to every channel)."""
        return len(self.mean)

    def fits(self, channels: int) -> bool:
        """Whether it applies to images of ``channels`` channels."""
        return self.channels in (1, channels)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) → float32 (N, C, H, W) = (x / 255 - mean[c]) / std[c].

        Example:
            >>> Normalization((0.0,), (1.0,)).apply(torch.full((1, 1, 1, 1), 255, dtype=torch.uint8)).item()
            1.0
        """
        if images.ndim != 4 or not self.fits(images.shape[1]):
            raise LeanmlError(
                f"normalization for {self.channels} channel(s) cannot apply to images {tuple(images.shape)}",
                "normalize (N, C, H, W) images with the norm of their dataset",
            )
        x = images.float() / 255.0  # (N, C, H, W)
        if self.channels == 1:
            return (x - self.mean[0]) / self.std[0]
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)  # (1, C, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict[str, list[float]]:
        """Plain data: ``{"mean": [...], "std": [...]}``."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Any) -> Normalization:
        """Inverse of :meth:`to_dict`; bare numbers (old artifacts) count as one-value lists.

        Example:
            >>> Normalization.from_dict({"mean": 0.286, "std": 0.353}).mean
            (0.286,)
        """
        if not isinstance(data, dict) or "mean" not in data or "std" not in data:
            raise LeanmlError(f"malformed normalization: {str(data)[:200]}", "it needs 'mean' and 'std' lists")
        mean, std = data["mean"], data["std"]
        mean = [mean] if isinstance(mean, (int, float)) else mean
        std = [std] if isinstance(std, (int, float)) else std
        return cls(_floats(mean, "mean"), _floats(std, "std"))

    @classmethod
    def of(cls, images: torch.Tensor) -> Normalization:
        """Per-channel mean and std of uint8 images (N, C, H, W) scaled to [0, 1], std floored at 1e-3.

        Example:
            >>> Normalization.of(torch.full((2, 1, 4, 4), 255, dtype=torch.uint8))
            Normalization(mean=(1.0,), std=(0.001,))
        """
        if images.ndim != 4 or images.dtype != torch.uint8 or images.shape[0] == 0:
            raise LeanmlError(
                f"cannot compute a normalization from images {tuple(images.shape)} {images.dtype}",
                "pass a non-empty uint8 (N, C, H, W) tensor",
            )
        c = images.shape[1]
        total = torch.zeros(c, dtype=torch.float64)
        squares = torch.zeros(c, dtype=torch.float64)
        for start in range(0, images.shape[0], _CHUNK):
            x = images[start : start + _CHUNK].to(torch.float64) / 255.0  # (B, C, H, W)
            total += x.sum(dim=(0, 2, 3))
            squares += (x * x).sum(dim=(0, 2, 3))
        count = images.shape[0] * images.shape[2] * images.shape[3]
        mean = total / count  # (C,)
        var = (squares / count - mean * mean).clamp_min(0.0)
        std = var.sqrt().clamp_min(STD_FLOOR)
        return cls(tuple(mean.tolist()), tuple(std.tolist()))


IDENTITY = Normalization((0.0,), (1.0,))
"""Scale to [0, 1] only: the default of an :class:`ImageSet` built without a normalization."""


@dataclass(frozen=True)
class ImageSet:
    """One split: images (N, C, H, W) uint8, labels (N,) int64, and the normalization batches apply.

    Example:
        >>> ds = ImageSet(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 0]))
        >>> ds.subset(torch.tensor([1])).labels.tolist(), ds.norm
        ([1], Normalization(mean=(0.0,), std=(1.0,)))
    """

    images: torch.Tensor
    labels: torch.Tensor
    norm: Normalization = IDENTITY

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise LeanmlError(
                f"ImageSet images must be uint8 (N, C, H, W), got {tuple(self.images.shape)} {self.images.dtype}",
                "convert with (x * 255).round().to(torch.uint8)",
            )
        if self.labels.ndim != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise LeanmlError(
                f"ImageSet has {self.images.shape[0]} images but labels {tuple(self.labels.shape)}",
                "pass one integer label per image",
            )
        if self.labels.dtype.is_floating_point or self.labels.dtype == torch.bool:
            raise LeanmlError(f"ImageSet labels must be integers, got {self.labels.dtype}", "pass int64 labels")
        if self.labels.dtype != torch.int64:
            object.__setattr__(self, "labels", self.labels.long())
        if not self.norm.fits(self.images.shape[1]):
            raise LeanmlError(
                f"a normalization for {self.norm.channels} channels cannot apply to "
                f"{self.images.shape[1]}-channel images",
                "give one mean/std per channel, or one",
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    def subset(self, idx: torch.Tensor | Sequence[int] | slice) -> ImageSet:
        """The images at ``idx`` (a tensor of indices, a list or a slice), with the same normalization."""
        index = idx if isinstance(idx, (slice, torch.Tensor)) else torch.as_tensor(list(idx), dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], self.norm)

    def sample(self, count: int | None, seed: int = 0) -> ImageSet:
        """A fixed, seeded sample of ``count`` images (all of them when ``count`` is None or >= len), same norm.

        The pick is ``torch.randperm(len, seed)[:count]``: the same seed and count give the same images.

        Example:
            >>> ds = ImageSet(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
            >>> len(ds.sample(3)), len(ds.sample(None)), torch.equal(ds.sample(4, 1).labels, ds.sample(4, 1).labels)
            (3, 10, True)
        """
        if count is None or count >= len(self):
            return self
        if count < 0:
            raise LeanmlError(f"cannot sample {count} images", "pass a count >= 0, or None for all of them")
        pick = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count]  # (count,)
        return self.subset(pick)


@dataclass(frozen=True)
class ImageData:
    """A dataset's three splits, its class names, its normalization (from the train split) and its spec.

    ``split`` records how a spec's images were split (seed and fractions), so that
    reloading the same spec yields the same test set.

    Example:
        >>> s = ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
        >>> d = ImageData(s, s, s, ("a", "b"), s.norm, "tensors")
        >>> d.describe()["shape"], d.num_classes
        ([1, 4, 4], 2)
    """

    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    norm: Normalization
    source: str
    split: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        shapes = {name: s.input_shape for name, s in self.splits().items()}
        if len(set(shapes.values())) != 1:
            raise LeanmlError(
                f"the splits of {self.source} differ in image shape: {shapes}",
                "load them with the same resolution and channel count",
            )
        if len(self.classes) < 2:
            raise LeanmlError(f"{self.source} has {len(self.classes)} class(es)", "a classifier needs two or more")

    def splits(self) -> dict[str, ImageSet]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return self.train.input_shape

    @property
    def num_classes(self) -> int:
        """How many classes the labels index into."""
        return len(self.classes)

    def with_norm(self, norm: Normalization) -> ImageData:
        """The same data normalized with ``norm`` (e.g. the one a checkpoint was trained with)."""
        train, val, test = (ImageSet(s.images, s.labels, norm) for s in (self.train, self.val, self.test))
        return replace(self, train=train, val=val, test=test, norm=norm)

    def describe(self) -> dict[str, Any]:
        """The ``input`` block stored in artifacts: shape, per-channel mean/std, dataset spec, class names.

        Example:
            >>> sorted(ImageData(*(3 * [ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))]),
            ...                  ("a", "b"), IDENTITY, "x").describe())
            ['classes', 'dataset', 'mean', 'shape', 'std']
        """
        c, h, w = self.input_shape
        norm = self.norm.to_dict()
        out: dict[str, Any] = {
            "shape": [c, h, w],
            "mean": norm["mean"],
            "std": norm["std"],
            "dataset": self.source,
            "classes": list(self.classes),
        }
        if self.split is not None:
            out["split"] = dict(self.split)
        return out
