"""The one training epoch: cosine learning rate per step, cross-entropy or distillation, optional extra hooks.

:func:`leanml.train.train`, :func:`leanml.train.finetune.finetune` (QAT, pruning
fine-tunes) and the NAS supernet's progressive shrinking all run their epochs
through :func:`run_epoch`. A step sets the learning rate, plans its input and
the networks trained on it (default: the batch and the model), runs the
teacher once if distilling, sums the networks' gradients, takes one optimizer
step and calls ``after_step``.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> data = [(torch.randn(8, 1, 2, 2), torch.randint(0, 3, (8,))) for _ in range(2)]
    >>> stats = run_epoch(model, data, opt, cosine_schedule(0.1, 0, 2))
    >>> stats.images, opt.param_groups[0]["lr"]
    (16, 0.05)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from leanml.train.distill import distillation_loss

Forward = Callable[[torch.Tensor], torch.Tensor]
# (step, batch) -> the step's input and the networks trained on it, run in order (an iterable may activate each)
StepPlan = Callable[[int, torch.Tensor], tuple[torch.Tensor, Iterable[Forward]]]


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` at step 0 to 0 at ``total``.

    Example:
        >>> cosine_lr(1.0, 0, 10), cosine_lr(1.0, 10, 10)
        (1.0, 0.0)
    """
    return 0.5 * base * (1.0 + math.cos(math.pi * min(step, total) / total))


def cosine_schedule(base: float, first_step: int, total: int) -> Callable[[int], float]:
    """``lr_at`` for :func:`run_epoch`: the cosine rate of an epoch whose step 0 is the run's ``first_step``.

    Example:
        >>> cosine_schedule(1.0, 5, 10)(5)
        0.0
    """
    return lambda i: cosine_lr(base, first_step + i, total)


@dataclass(frozen=True)
class Distillation:
    """Soft targets from ``teacher`` (run without gradients on each step's input), Hinton's loss weights."""

    teacher: Forward
    alpha: float = 0.9
    temperature: float = 4.0


@dataclass(frozen=True)
class EpochStats:
    """Mean training loss and accuracy per (network, image) over an epoch, and how many were seen."""

    loss: float
    accuracy: float
    images: int


def run_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    lr_at: Callable[[int], float],
    distill: Distillation | None = None,
    label_smoothing: float = 0.0,
    step_plan: StepPlan | None = None,
    after_step: Callable[[nn.Module], object] | None = None,
) -> EpochStats:
    """Train ``model`` (put in train mode) for one pass over ``batches``; ``lr_at(i)`` is step i's learning rate.

    Without ``distill`` the loss is cross-entropy (with ``label_smoothing``); with it,
    :func:`~leanml.train.distill.distillation_loss` against the teacher's logits.
    ``step_plan(i, x)`` gives the step's input and the networks trained on it (their
    gradients add up before the one optimizer step); ``after_step(model)`` runs after
    every optimizer step (k-means QAT re-projects weights there).
    """
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for i, (x, y) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(i)
        x, students = step_plan(i, x) if step_plan is not None else (x, (model,))
        soft = None
        if distill is not None:
            with torch.no_grad():
                soft = distill.teacher(x)  # (B, classes)
        optimizer.zero_grad(set_to_none=True)
        for student in students:
            logits = student(x)  # (B, classes)
            if distill is None or soft is None:
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            else:
                loss = distillation_loss(logits, soft, y, distill.alpha, distill.temperature)
            loss.backward()  # type: ignore[no-untyped-call]
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        optimizer.step()
        if after_step is not None:
            after_step(model)
    n = max(seen, 1)
    return EpochStats(loss_sum / n, correct / n, seen)
