"""Linear quantization as one verb: fold BN, calibrate (PTQ), optionally fine-tune (QAT), convert to integers.

Example:
    >>> from leanml.models import build_model
    >>> cfg = LinearQuantConfig(observer="minmax", calibration_images=64)
    >>> result = quantize_linear(build_model("vgg").eval(), cfg, torch.randn(64, 1, 28, 28), progress=False)
    >>> result.integer_model(torch.randn(8, 1, 28, 28)).shape
    torch.Size([8, 10])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from leanml.config import Config, require
from leanml.data import ImageSet, batches
from leanml.errors import LeanmlError
from leanml.progress import track
from leanml.quant.integer import IntegerModel, convert
from leanml.quant.observers import OBSERVERS
from leanml.quant.primitives import MAX_BITS, MIN_BITS
from leanml.quant.sim import QuantSim
from leanml.train.finetune import FinetuneConfig, finetune


@dataclass
class LinearQuantConfig(Config):
    """Activation/weight bits, calibration, and the optional QAT schedule."""

    bits: int = 8
    weight_bits: int = 8
    observer: str = "minmax"
    calibration_images: int = 512
    batch_size: int = 128
    qat_epochs: int = 0
    qat_lr: float = 1e-3
    qat_images: int | None = None  # QAT on this many training images (default: all)
    learn_scale: bool = False  # LSQ: learn activation scales during QAT
    seed: int = 0

    def validate(self) -> None:
        for name in ("bits", "weight_bits"):
            value = getattr(self, name)
            require(MIN_BITS <= value <= MAX_BITS, f"{name} must be in {MIN_BITS}..{MAX_BITS}, got {value}")
        require(
            self.observer in OBSERVERS, f"unknown observer {self.observer!r}", f"choose one of: {', '.join(OBSERVERS)}"
        )
        require(self.calibration_images >= 1, "calibration_images must be >= 1")
        require(self.batch_size >= 1 and self.qat_epochs >= 0 and self.qat_lr > 0, "bad QAT schedule")


@dataclass
class LinearQuantResult:
    """The calibrated (and fine-tuned) simulator, and its integer model when activations are 8-bit."""

    sim: QuantSim
    integer_model: IntegerModel | None


def check_images(images: torch.Tensor, input_shape: tuple[int, ...] | None = None) -> None:
    """Raise a clear error unless ``images`` is a float batch (N, C, H, W) (of ``input_shape`` when given).

    Example:
        >>> check_images(torch.zeros(2, 1, 28, 28), (1, 28, 28))
    """
    if input_shape is not None and tuple(images.shape[1:]) != tuple(input_shape):
        shape = ", ".join(map(str, input_shape))
        raise LeanmlError(
            f"calibration data has shape {tuple(images.shape)}; the model takes (N, {shape})",
            "pass images of the model's input shape",
        )
    if images.dim() != 4 or images.shape[0] < 1:
        raise LeanmlError(
            f"calibration data has shape {tuple(images.shape)}; expected a non-empty batch (N, C, H, W)",
            "pass normalized images as one float tensor (N, C, H, W)",
        )
    if not images.is_floating_point():
        raise LeanmlError("calibration images must be float (normalized), not integers", "normalize them first")


def calibration_tensor(data: ImageSet, count: int, batch_size: int = 128, seed: int = 0) -> torch.Tensor:
    """A seeded sample of ``count`` images of ``data``, normalized as training normalizes them: (count, C, H, W).

    Example:
        >>> ds = ImageSet(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.zeros(10, dtype=torch.long))
        >>> calibration_tensor(ds, 4).shape
        torch.Size([4, 1, 4, 4])
    """
    sample = data.sample(count, seed)
    return torch.cat([x for x, _ in batches(sample, batch_size)])


def qat(sim: QuantSim, data: ImageSet, cfg: LinearQuantConfig, progress: bool = True) -> None:
    """Quantization-aware fine-tuning of a calibrated simulator (straight-through gradients)."""
    finetune(sim, data, FinetuneConfig(cfg.qat_epochs, cfg.qat_lr, cfg.batch_size, seed=cfg.seed), progress=progress)


def calibration_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive batches (B, ...) of ``images`` (N, ...).

    Example:
        >>> [b.shape[0] for b in calibration_batches(torch.zeros(5, 1), 2)]
        [2, 2, 1]
    """
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size]


def quantize_linear(
    model: nn.Module,
    cfg: LinearQuantConfig,
    calibration: torch.Tensor,
    train: ImageSet | None = None,
    progress: bool = True,
) -> LinearQuantResult:
    """Quantize ``model`` (a copy; the original is untouched).

    ``calibration`` is float, normalized images (N, C, H, W) (the first
    ``cfg.calibration_images`` are used); the input shape is read from it.
    ``train`` is the training split QAT runs on, needed iff ``cfg.qat_epochs``
    (``cfg.qat_images`` of it, a seeded sample, when set).

    Example:
        >>> from leanml.models import build_model
        >>> model = build_model("vgg", layers=[4, "M"]).eval()
        >>> r = quantize_linear(model, LinearQuantConfig(), torch.randn(8, 1, 28, 28))
        >>> r.integer_model is not None
        True
    """
    check_images(calibration)
    if cfg.qat_epochs and train is None:
        raise LeanmlError(
            f"QAT ({cfg.qat_epochs} epoch(s)) needs training data, and none was passed",
            "pass train=<the training ImageSet>, or set qat_epochs=0 for PTQ only",
        )
    sim = QuantSim.from_model(model, cfg.bits, cfg.weight_bits, cfg.observer, cfg.learn_scale)
    images = calibration[: cfg.calibration_images]
    steps = -(-images.shape[0] // cfg.batch_size)
    stream = track(calibration_batches(images, cfg.batch_size), steps, f"calibrating ({cfg.observer})", progress)
    try:
        sim.calibrate(stream)
    except RuntimeError as e:
        raise LeanmlError(
            f"{type(model).__name__} cannot run calibration data of shape {tuple(calibration.shape)}: "
            f"{str(e).splitlines()[0]}",
            "pass images of the model's input shape (N, C, H, W), normalized as in training",
        ) from e
    if cfg.qat_epochs:
        assert train is not None
        qat(sim, train.sample(cfg.qat_images, cfg.seed), cfg, progress)
    return LinearQuantResult(sim, convert(sim) if cfg.bits == 8 else None)
