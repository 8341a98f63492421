"""Images at a subnet's resolution, evaluation at that resolution, and BN recalibration.

Every part of NAS resizes the same way (:func:`resize_batch`: bilinear with
antialiasing, after normalization), so training, measuring and export agree.

Example:
    >>> x = torch.randn(2, 1, 28, 28)
    >>> resize_batch(x, 20).shape, resize_batch(x, 28) is x
    (torch.Size([2, 1, 20, 20]), True)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from leanml.data import ImageSet, batches
from leanml.nas.space import Arch
from leanml.nas.supernet import Supernet, get_subnet
from leanml.train.checkpoint import default_input

RESIZE = {"mode": "bilinear", "antialias": True, "align_corners": False}


def resize_batch(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, C, H, W) → (N, C, resolution, resolution); the batch itself when it already has that size."""
    if x.shape[-2:] == (resolution, resolution):
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)


def resize_images(data: ImageSet, resolution: int) -> ImageSet:
    """``data`` with its uint8 images resized to ``resolution`` (rounded), for loops that take an ImageSet.

    Example:
        >>> data = ImageSet(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
        >>> resize_images(data, 20).images.shape
        torch.Size([2, 1, 20, 20])
    """
    if data.images.shape[-2:] == (resolution, resolution):
        return data
    images = resize_batch(data.images.float(), resolution).round().clamp(0, 255).to(torch.uint8)  # (N, C, r, r)
    return ImageSet(images, data.labels, data.norm)


def input_meta(resolution: int, data_block: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint ``input`` entry of a subnet: the data's block (``ImageData.describe()``; Fashion-MNIST's
    when None) at the subnet's resolution, and how the data's images are resized to it.

    Example:
        >>> input_meta(24)["shape"]
        [1, 24, 24]
        >>> input_meta(24, {"shape": [3, 32, 32], "dataset": "npz:x.npz"})["resize"]["from"]
        [3, 32, 32]
    """
    base = dict(data_block) if data_block is not None else default_input()
    source = list(base.get("shape", [1, 28, 28]))
    return {**base, "shape": [source[0], resolution, resolution], "resize": {"from": source, **RESIZE}}


def image_batches(data: ImageSet, resolution: int, batch_size: int = 500) -> Iterable[torch.Tensor]:
    """Normalized images of ``data`` at ``resolution``, in order, without labels.

    Example:
        >>> data = ImageSet(torch.zeros(3, 1, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
        >>> [tuple(x.shape) for x in image_batches(data, 16, batch_size=2)]
        [(2, 1, 16, 16), (1, 1, 16, 16)]
    """
    for x, _ in batches(data, batch_size):
        yield resize_batch(x, resolution)


@torch.no_grad()
def evaluate_at(model: nn.Module, data: ImageSet, resolution: int, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``data`` resized to ``resolution``.

    Example:
        >>> data = ImageSet(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
        >>> evaluate_at(nn.Sequential(nn.Flatten(), nn.LazyLinear(10)), data, 20) in (0.0, 1.0)
        True
    """
    model.eval()
    correct = 0
    for x, y in batches(data, batch_size):
        correct += int((model(resize_batch(x, resolution)).argmax(1) == y).sum())  # logits (B, classes)
    return correct / max(len(data), 1)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: Iterable[torch.Tensor]) -> nn.Module:
    """Reset every batch norm's running statistics and re-estimate them on ``images`` (exact averages over batches).

    Leaves the model in eval mode with each norm's momentum as it was.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
        >>> _ = recalibrate_bn(net, [torch.randn(8, 1, 4, 4) + 3.0])
        >>> bool(net[1].running_mean.abs().sum() > 0)
        True
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    try:
        for x in images:
            model(x)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return model


def subnet_accuracy(net: Supernet, arch: Arch, calib: ImageSet, val: ImageSet) -> float:
    """Accuracy on ``val`` of ``arch`` extracted from ``net``, after BN recalibration on ``calib`` (net untouched).

    Example:
        >>> subnet_accuracy(supernet, arch, load_split("train", subset=2000), load_split("val"))  # doctest: +SKIP
        0.874
    """
    sub = get_subnet(net, arch)
    recalibrate_bn(sub, image_batches(calib, arch.resolution, 250))
    return evaluate_at(sub, val, arch.resolution)
