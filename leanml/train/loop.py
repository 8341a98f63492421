"""Training and evaluation loops: seeded, cosine schedule, checkpoint every epoch, resumable.

A run writes its checkpoint atomically at the end of every epoch (weights,
optimizer state, history). ``resume=True`` continues from it; because batch
order and augmentation are derived from (seed, epoch) and the learning rate
from the global step, a resumed run reproduces the uninterrupted one.

Example:
    >>> cfg = TrainConfig(model="vgg", epochs=1, train_subset=256, val_subset=64, test_subset=64)
    >>> result = train(cfg, out="runs/demo", progress=False)   # doctest: +SKIP
    >>> 0.0 <= result.metrics["test_acc"] <= 1.0               # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from leanml.artifact import artifact_paths
from leanml.data import ImageData, ImageSet, batches, load_data
from leanml.errors import LeanmlError
from leanml.models.registry import build_model, get_entry, is_factory_ref
from leanml.progress import make_console, track
from leanml.threads import torch_threads
from leanml.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from leanml.train.config import TrainConfig
from leanml.train.epoch import Distillation, cosine_schedule, run_epoch

EpochHook = Callable[[int, dict[str, Any]], None]
SUBSET_SEED = 20240502
"""Seed of the fixed sample ``*_subset`` keeps (Fashion-MNIST's split seed + 1, so subsets match ``load_split``'s)."""


@dataclass
class TrainResult:
    """Where the checkpoint went, final metrics, and the per-epoch history."""

    checkpoint: Path
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def evaluate(
    model: nn.Module, data: ImageSet, batch_size: int = 500, channels_last: bool = False
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (model is put in eval mode).

    Example:
        >>> from leanml.models import build_model
        >>> from leanml.data import ImageSet
        >>> ds = ImageSet(torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
        >>> loss, acc = evaluate(build_model("vgg"), ds)
        >>> 0.0 <= acc <= 1.0
        True
    """
    model.eval()
    total_loss, correct = 0.0, 0
    for x, y in batches(data, batch_size):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)  # (B, classes)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
    n = max(len(data), 1)
    return total_loss / n, correct / n


def subset_of(data: ImageSet, n: int | None) -> ImageSet:
    """A fixed, seeded sample of ``n`` images of ``data`` (all of it when ``n`` is None or not smaller).

    Example:
        >>> ds = ImageSet(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10))
        >>> len(subset_of(ds, 3)), subset_of(ds, None) is ds
        (3, True)
    """
    if n is None or n >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(SUBSET_SEED))[:n])


def model_for_data(cfg: TrainConfig, data: ImageData) -> nn.Module:
    """Build ``cfg.model`` for ``data``: a zoo model gets the data's in_channels, num_classes and resolution
    (where its config has those fields); a user factory gets ``cfg.model_overrides`` only.

    Example:
        >>> from leanml.data import from_tensors
        >>> data = from_tensors(torch.zeros(30, 3, 16, 16, dtype=torch.uint8), torch.arange(30) % 3)
        >>> model_for_data(TrainConfig(model="resnet"), data).fc.out_features
        3
    """
    if is_factory_ref(cfg.model):
        return build_model(cfg.model, **cfg.model_overrides)
    c, h, w = data.input_shape
    fitted: dict[str, Any] = {"in_channels": c, "num_classes": data.num_classes}
    if h == w:
        fitted["resolution"] = h
    fields = set(get_entry(cfg.model).config_cls.__dataclass_fields__)
    fitted = {k: v for k, v in fitted.items() if k in fields}
    clash = sorted(k for k, v in fitted.items() if k in cfg.model_overrides and cfg.model_overrides[k] != v)
    if clash:
        given = ", ".join(f"{k}={cfg.model_overrides[k]} (data: {fitted[k]})" for k in clash)
        raise LeanmlError(f"model override(s) {given} contradict the data {data.source}",
                          "drop them: the model is built for the data's channels, classes and resolution")  # fmt: skip
    return build_model(cfg.model, **{**cfg.model_overrides, **fitted})


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # BN and biases
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.resolved_lr(), momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.resolved_lr())


def _resume_state(
    out: Path, cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer
) -> tuple[int, list[dict[str, float]]]:
    ckpt = load_checkpoint(out)
    saved = ckpt.meta.get("train_config")
    if saved is None or ckpt.optimizer_state is None:
        raise LeanmlError(f"{out} is not a resumable training checkpoint", "train without --resume")
    mine = cfg.to_dict()
    defaults = TrainConfig().to_dict()  # fields added since the checkpoint was written had their default
    diffs = sorted(k for k in mine if k != "epochs" and saved.get(k, defaults.get(k)) != mine[k])
    if diffs:
        raise LeanmlError(
            f"cannot resume {out}: its config differs in {', '.join(diffs)}",
            "resume with the same settings (only --epochs may grow), or write to a new --out",
        )
    model.load_state_dict(ckpt.model.state_dict())
    opt.load_state_dict(ckpt.optimizer_state)
    return int(ckpt.meta["epoch"]), list(ckpt.meta.get("history", []))


def train(
    cfg: TrainConfig,
    out: str | Path,
    data_root: str | Path | None = None,
    data: ImageData | None = None,
    resume: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool = True,
    on_epoch_end: EpochHook | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``data`` (None: ``load_data(cfg.data, cfg.resolution, root=data_root)``,
    Fashion-MNIST by default), checkpointing to ``out`` every epoch with ``data.describe()`` as its input block.

    A zoo model is built for the data (its channels, classes and resolution); ``cfg.*_subset`` keep fixed,
    seeded samples of the splits.

    An existing checkpoint at ``out`` is an error unless ``resume`` (continue
    it) or ``overwrite`` (replace it) is set. ``on_epoch_end(epoch, meta)`` is
    called after each epoch's checkpoint is written.
    """
    out = artifact_paths(out)[0].with_suffix("")
    weights_file = artifact_paths(out)[0]
    if resume and overwrite:
        raise LeanmlError("--resume and --overwrite contradict each other", "pass one of them")
    if not resume and not overwrite and weights_file.exists():
        raise LeanmlError(
            f"checkpoint {weights_file} already exists", "pass --resume to continue it, or choose another --out"
        )
    if resume and not weights_file.exists():
        raise LeanmlError(f"nothing to resume: {weights_file} does not exist", "train without --resume first")
    console = make_console()
    with torch_threads(threads) as n_threads:
        if data is None:
            data = load_data(cfg.data, cfg.resolution, root=data_root)
        torch.manual_seed(cfg.seed)
        model = model_for_data(cfg, data)
        opt = _make_optimizer(model, cfg)
        start_epoch, history = _resume_state(out, cfg, model, opt) if resume else (0, [])
        if start_epoch >= cfg.epochs:
            raise LeanmlError(
                f"{out} already finished {start_epoch} epochs", f"pass --epochs larger than {start_epoch} to train on"
            )
        teacher = load_model(cfg.teacher) if cfg.teacher else None
        train_set = subset_of(data.train, cfg.train_subset)
        val_set = subset_of(data.val, cfg.val_subset)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
        if teacher is not None:
            teacher = teacher.to(memory_format=memory_format)  # type: ignore[call-overload]
        steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        distill = Distillation(teacher, cfg.kd_alpha, cfg.kd_temperature) if teacher is not None else None

        def in_memory_format(i: int, x: torch.Tensor) -> tuple[torch.Tensor, list[nn.Module]]:
            return x.contiguous(memory_format=memory_format), [model]

        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            stream = batches(train_set, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed, epoch=epoch)
            stats = run_epoch(
                model,
                track(stream, steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", progress),
                opt,
                cosine_schedule(cfg.resolved_lr(), epoch * steps_per_epoch, total_steps),
                distill,
                cfg.label_smoothing,
                step_plan=in_memory_format,
            )
            val_loss, val_acc = evaluate(model, val_set, channels_last=cfg.channels_last)
            row = {
                "epoch": epoch + 1,
                "train_loss": stats.loss,
                "train_acc": stats.accuracy,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            done = epoch + 1 == cfg.epochs
            metrics: dict[str, float] = {"val_acc": val_acc, "train_seconds": sum(r["seconds"] for r in history)}
            if done:
                test_set = subset_of(data.test, cfg.test_subset)
                metrics["test_loss"], metrics["test_acc"] = evaluate(model, test_set, channels_last=cfg.channels_last)
            meta = {"train_config": cfg.to_dict(), "epoch": epoch + 1, "complete": done, "history": history,
                    "metrics": metrics, "threads": n_threads}  # fmt: skip
            save_checkpoint(out, model, meta, opt, input=data.describe())
            console.print(
                f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  train {row['train_acc']:.2%}  "
                f"val {val_acc:.2%}  {row['seconds']:.0f}s"
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, meta)
    return TrainResult(weights_file, metrics, history)
