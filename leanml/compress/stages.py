"""What each stage does to the model, as plain functions of (model, data, stage config); no caching here.

:mod:`leanml.compress.pipeline` runs them in order, stores their artifacts and skips the finished ones.

Example:
    >>> from leanml.compress.recipe import PruneStage
    >>> prune_label(PruneStage(ratio=0.25))
    'channel pruning, ratio 0.25'
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from leanml.compress.recipe import FinetuneStage, PruneStage, QuantizeStage, TrainStage
from leanml.data import ImageData, batches
from leanml.errors import LeanmlError
from leanml.prune.channel import ChannelPruneConfig, prune_channels_
from leanml.prune.fine_grained import FineGrainedConfig, prune_fine_grained_
from leanml.quant.integer import IntegerModel
from leanml.quant.linear import LinearQuantConfig, calibration_tensor, quantize_linear
from leanml.train.finetune import FinetuneConfig, finetune


def train_model(model: nn.Module, data: ImageData, cfg: TrainStage, seed: int, progress: bool) -> None:
    """Train ``model`` in place: SGD with momentum, cosine schedule, augmentation (the one epoch loop)."""
    torch.manual_seed(seed)
    train = data.train.sample(cfg.subset, seed)
    finetune(
        model, train, FinetuneConfig(cfg.epochs, cfg.lr, cfg.batch_size, augment=True, seed=seed), progress=progress
    )


def prune_label(cfg: PruneStage, ratio: float | None = None) -> str:
    """A short description of the pruning a stage did."""
    if cfg.method == "fine":
        return f"fine-grained pruning, sparsity {cfg.sparsity:g}"
    if ratio is None:
        ratio = cfg.ratio
    if ratio is None and cfg.target_macs is not None:
        return f"channel pruning to {cfg.target_macs:.0%} of the MACs"
    return f"channel pruning, ratio {ratio:g}"


def prune_model(
    model: nn.Module, cfg: PruneStage, ratio: float | None, input_shape: tuple[int, ...], data: ImageData, seed: int
) -> dict[str, object]:
    """Prune ``model`` in place by ``ratio`` (channel; ``cfg.target_macs`` when ratio is None) or fine-grained.

    Returns what the stage records: the kept channels per layer, or the sparsity reached.
    """
    if cfg.method == "fine":
        masks = prune_fine_grained_(model, FineGrainedConfig(sparsity=cfg.sparsity, exclude=list(cfg.exclude)))
        report = masks.report(model)
        return {
            "sparsity": report.sparsity,
            "note": "fine-grained zeros are stored densely by the int8 C kernels: flash does not shrink",
        }
    if ratio is None and cfg.target_macs is None:
        raise LeanmlError(
            "the prune stage has no amount", "set prune.ratio or prune.target_macs, or give flash/SRAM/latency targets"
        )
    batches_for_taylor = None
    if cfg.importance == "taylor":
        sample = data.train.sample(512, seed)
        batches_for_taylor = list(batches(sample, 128))
    kept = prune_channels_(
        model,
        ChannelPruneConfig(
            ratio=ratio or 0.0,
            target_macs=None if ratio is not None else cfg.target_macs,
            importance=cfg.importance,
            round_to=cfg.round_to,
            exclude=list(cfg.exclude),
            input_shape=list(input_shape),
        ),
        batches_for_taylor,
    )
    return {"kept_channels": {k: len(v) for k, v in kept.items()}}


def zero_mask_keeper(model: nn.Module) -> Callable[[nn.Module], None]:
    """An ``after_step`` hook that keeps every weight that is zero now at zero (fine-grained masks survive training)."""
    masks = {n: (p != 0) for n, p in model.named_parameters() if p.dim() > 1 and bool((p == 0).any())}

    @torch.no_grad()
    def keep(m: nn.Module) -> None:
        params = dict(m.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)

    return keep


def finetune_model(
    model: nn.Module,
    teacher: nn.Module | None,
    data: ImageData,
    cfg: FinetuneStage,
    seed: int,
    progress: bool,
    keep_zeros: bool = False,
) -> None:
    """Fine-tune in place, distilled from ``teacher`` when given; with ``keep_zeros`` (after fine-grained pruning)
    the pruned zeros stay zero."""
    torch.manual_seed(seed)
    train = data.train.sample(cfg.subset, seed)
    finetune(
        model,
        train,
        FinetuneConfig(cfg.epochs, cfg.lr, cfg.batch_size, augment=True, seed=seed),
        after_step=zero_mask_keeper(model) if keep_zeros else None,
        progress=progress,
        teacher=copy.deepcopy(teacher) if cfg.distill and teacher is not None else None,
    )


def quantize_model(model: nn.Module, data: ImageData, cfg: QuantizeStage, seed: int, progress: bool) -> IntegerModel:
    """int8 PTQ (and QAT when ``cfg.qat_epochs``) into the integer model that deploy consumes."""
    lq = LinearQuantConfig(
        bits=8,
        weight_bits=8,
        observer=cfg.observer,
        calibration_images=cfg.calibration_images,
        batch_size=cfg.batch_size,
        qat_epochs=cfg.qat_epochs,
        qat_lr=cfg.qat_lr,
        seed=seed,
    )
    calibration = calibration_tensor(data.train, cfg.calibration_images, seed=seed + 1)
    result = quantize_linear(
        copy.deepcopy(model).eval(),
        lq,
        calibration=calibration,
        train=data.train if cfg.qat_epochs else None,
        progress=progress,
    )
    if result.integer_model is None:  # pragma: no cover - bits is 8
        raise LeanmlError("quantization produced no integer model")
    return result.integer_model
