"""Linear quantization as one verb: fold BN, calibrate (PTQ), optionally fine-tune (QAT), convert to integers.

Example:
    >>> from leanml.models import build_model
    >>> cfg = LinearQuantConfig(observer="minmax", calibration_images=64)
    >>> result = quantize_linear(build_model("vgg"), cfg, data_root="/nonexistent")  # doctest: +SKIP
    >>> result.integer_model(images).shape                                            # doctest: +SKIP
    torch.Size([8, 10])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from leanml.config import Config, require
from leanml.data import ImageSet, batches, load_split
from leanml.errors import LeanmlError
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


def check_images(images: torch.Tensor, input_shape: tuple[int, ...]) -> None:
    """Raise a clear error unless ``images`` is a float batch (N, *input_shape).

    Example:
        >>> check_images(torch.zeros(2, 1, 28, 28), (1, 28, 28))
    """
    shape = ", ".join(map(str, input_shape))
    if images.dim() != len(input_shape) + 1 or tuple(images.shape[1:]) != tuple(input_shape):
        raise LeanmlError(
            f"calibration data has shape {tuple(images.shape)}; the model takes (N, {shape})",
            "pass images of the model's input shape",
        )
    if not images.is_floating_point():
        raise LeanmlError("calibration images must be float (normalized), not integers", "normalize them first")


def qat(sim: QuantSim, data: ImageSet, cfg: LinearQuantConfig, progress: bool = True) -> None:
    """Quantization-aware fine-tuning of a calibrated simulator (straight-through gradients)."""
    finetune(sim, data, FinetuneConfig(cfg.qat_epochs, cfg.qat_lr, cfg.batch_size, seed=cfg.seed), progress=progress)


def calibration_images(cfg: LinearQuantConfig, data_root: str | Path | None = None) -> torch.Tensor:
    """A fixed, seeded sample of ``cfg.calibration_images`` normalized training images (N, 1, 28, 28)."""
    sample = load_split("train", data_root, cfg.calibration_images)
    return torch.cat([x for x, _ in batches(sample, cfg.batch_size)])


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
    data_root: str | Path | None = None,
    calibration: torch.Tensor | None = None,
    input_shape: tuple[int, ...] = (1, 28, 28),
    progress: bool = True,
) -> LinearQuantResult:
    """Quantize ``model`` (a copy; the original is untouched).

    Calibration images come from ``calibration`` (float, normalized) or a
    seeded sample of the Fashion-MNIST training split; QAT (if
    ``cfg.qat_epochs``) trains on the training split.
    """
    sim = QuantSim.from_model(model, cfg.bits, cfg.weight_bits, cfg.observer, cfg.learn_scale)
    if calibration is None:
        calibration = calibration_images(cfg, data_root)
    check_images(calibration, input_shape)
    sim.calibrate(calibration_batches(calibration[: cfg.calibration_images], cfg.batch_size))
    if cfg.qat_epochs:
        qat(sim, load_split("train", data_root, cfg.qat_images), cfg, progress)
    return LinearQuantResult(sim, convert(sim) if cfg.bits == 8 else None)
