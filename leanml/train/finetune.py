"""Fine-tuning for quantization-aware training and pruning (masks re-applied per step), on the one epoch loop.

``after_step(model)`` runs after every optimizer step: k-means QAT re-projects
weights onto their codebooks there, so the shared-weight constraint always holds.

Example:
    >>> from leanml.data import ImageSet
    >>> data = ImageSet(torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    >>> finetune(model, data, FinetuneConfig(epochs=1, batch_size=4), progress=False)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from leanml.config import Config, require
from leanml.data import ImageSet, batches
from leanml.progress import track
from leanml.train.epoch import Distillation, cosine_schedule, run_epoch


@dataclass
class FinetuneConfig(Config):
    """SGD with momentum and a cosine schedule over ``epochs`` (default 0: no fine-tuning, as the CLI's default)."""

    epochs: int = 0
    lr: float = 0.01
    batch_size: int = 128
    augment: bool = True
    seed: int = 0
    kd_alpha: float = 0.9  # with a teacher: weight of the soft-target loss
    kd_temperature: float = 4.0

    def validate(self) -> None:
        require(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        require(self.lr > 0 and self.batch_size >= 1, "lr must be > 0 and batch size >= 1")
        require(0.0 <= self.kd_alpha <= 1.0 and self.kd_temperature > 0, "need kd_alpha in [0, 1], kd_temperature > 0")


def finetune(
    model: nn.Module,
    data: ImageSet,
    cfg: FinetuneConfig,
    after_step: Callable[[nn.Module], object] | None = None,
    progress: bool = True,
    teacher: nn.Module | None = None,
) -> None:
    """Fine-tune ``model`` on ``data`` with cross-entropy (distilled from ``teacher`` if given); leaves it in eval."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)
    per_epoch = math.ceil(len(data) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    distill = None
    if teacher is not None:
        teacher.eval()
        distill = Distillation(teacher, cfg.kd_alpha, cfg.kd_temperature)
    model.train()
    for epoch in range(cfg.epochs):
        stream = batches(data, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed, epoch=epoch)
        run_epoch(model, track(stream, per_epoch, f"fine-tune epoch {epoch + 1}/{cfg.epochs}", progress), opt,
                  cosine_schedule(cfg.lr, epoch * per_epoch, total), distill, after_step=after_step)  # fmt: skip
    model.eval()
