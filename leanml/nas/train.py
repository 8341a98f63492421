"""Progressive shrinking (OFA): train the supernet so that every subnet of the space works.

Phases, in order, each with its own epochs and cosine learning-rate schedule:

1. ``full`` — the largest network, cross-entropy;
2. ``kernel`` — random kernel sizes per block;
3. ``depth`` — random kernels and depths;
4. ``expand`` — random kernels, depths, expand ratios and width multiplier;
   channels are first sorted by importance (:func:`leanml.nas.channel_sort.sort_channels_`).

The input resolution is random in every phase (one per step, images resized).
From phase 2 on, each step sums the losses of ``subnets_per_step`` random
subnets, each distilled from the teacher: the full network frozen at the end
of phase 1. The run checkpoints after every epoch (weights, teacher,
optimizer, progress, history); ``resume=True`` continues it, and because batch
order, augmentation, resolutions and sampled subnets are derived from (seed,
phase, epoch, step), the resumed run reproduces the uninterrupted one.

Example:
    >>> cfg = NasTrainConfig.preset("small")
    >>> cfg.phase_epochs
    [3, 1, 1, 2]
    >>> data = load_data("fashion-mnist")  # doctest: +SKIP
    >>> train_supernet(cfg, "runs/nas/supernet", data.train, data.val)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanml.artifact import artifact_paths
from leanml.config import Config, require
from leanml.data import ImageSet, batches
from leanml.errors import LeanmlError
from leanml.nas.channel_sort import sort_channels_
from leanml.nas.checkpoint import load_supernet, save_supernet
from leanml.nas.data import resize_batch, subnet_accuracy
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.supernet import Supernet
from leanml.progress import make_console, track
from leanml.threads import torch_threads
from leanml.train.epoch import Distillation, cosine_schedule, run_epoch

PHASES = ("full", "kernel", "depth", "expand")
PHASE_ELASTIC: dict[str, tuple[str, ...]] = {
    "full": (),
    "kernel": ("kernel",),
    "depth": ("kernel", "depth"),
    "expand": ("kernel", "depth", "expand", "width"),
}
# Named schedules: overrides of the config defaults (``--schedule small|full`` on the CLI).
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"phase_epochs": [3, 1, 1, 2], "train_subset": 8000, "subnets_per_step": 2},
    "medium": {"phase_epochs": [4, 1, 1, 2], "train_subset": 30000, "subnets_per_step": 2},
    "full": {"phase_epochs": [20, 10, 10, 15], "train_subset": None, "subnets_per_step": 4},
}
EpochHook = Callable[[int, dict[str, Any]], None]


@dataclass
class NasTrainConfig(Config):
    """Everything that determines a supernet training run (and so must match on resume)."""

    space: dict[str, Any] = field(default_factory=lambda: SpaceConfig().to_dict())
    phase_epochs: list[int] = field(default_factory=lambda: [3, 1, 1, 2])  # full, kernel, depth, expand
    phase_lr: list[float] = field(default_factory=lambda: [0.05, 0.02, 0.02, 0.02])
    subnets_per_step: int = 2
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 1e-4
    kd_alpha: float = 0.5  # weight of the teacher's soft targets (phases 2-4)
    kd_temperature: float = 1.0
    augment: bool = True
    seed: int = 0
    train_subset: int | None = 8000
    val_subset: int = 1000  # per-epoch check of the largest and smallest subnets
    calib_images: int = 500  # BN recalibration images for that check

    def validate(self) -> None:
        SpaceConfig.from_dict(self.space)
        n = len(PHASES)
        require(len(self.phase_epochs) == n and all(e >= 1 for e in self.phase_epochs),
                f"phase_epochs needs {n} counts >= 1 ({', '.join(PHASES)}), got {self.phase_epochs}")  # fmt: skip
        require(len(self.phase_lr) == n and all(lr > 0 for lr in self.phase_lr),
                f"phase_lr needs {n} learning rates > 0 ({', '.join(PHASES)}), got {self.phase_lr}")  # fmt: skip
        require(self.subnets_per_step >= 1, f"subnets_per_step must be >= 1, got {self.subnets_per_step}")
        require(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        require(0.0 <= self.kd_alpha <= 1.0 and self.kd_temperature > 0, "need kd_alpha in [0, 1], kd_temperature > 0")
        require(self.train_subset is None or self.train_subset >= 1, "train_subset must be a positive count")
        require(self.val_subset >= 1 and self.calib_images >= 1, "val_subset and calib_images must be >= 1")

    def space_config(self) -> SpaceConfig:
        """The search space as a validated :class:`SpaceConfig`."""
        return SpaceConfig.from_dict(self.space)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> NasTrainConfig:
        """A named schedule (``small``: minutes-to-an-hour on 2 cores; ``full``: the long one), with overrides.

        Example:
            >>> NasTrainConfig.preset("full").train_subset is None
            True
        """
        require(name in PRESETS, f"unknown schedule {name!r}", f"choose one of: {', '.join(PRESETS)}")
        return cls.from_dict({**cls().to_dict(), **PRESETS[name], **overrides})


@dataclass
class SupernetResult:
    """Where the supernet went and its per-epoch history."""

    checkpoint: Path
    history: list[dict[str, Any]]


@dataclass
class _Progress:
    phase: int = 0
    phase_epoch: int = 0  # epochs finished in ``phase``
    sorted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def _optimizer(net: nn.Module, cfg: NasTrainConfig, lr: float) -> torch.optim.Optimizer:
    # no weight decay on BN, biases and the kernel transform matrices (initialised to the identity)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1 and "matrices" not in n]
    rest = [p for n, p in net.named_parameters() if p.ndim <= 1 or "matrices" in n]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)


def _rng(cfg: NasTrainConfig, *where: object) -> random.Random:
    """A generator derived from the seed and a position in the run (str seeds hash stably across processes)."""
    return random.Random("-".join(map(str, (cfg.seed, *where))))


def step_archs(space: SpaceConfig, cfg: NasTrainConfig, phase: int, epoch: int, step: int) -> list[Arch]:
    """The subnets trained at one step: one resolution for the step, then each subnet's random dimensions.

    Example:
        >>> cfg = NasTrainConfig()
        >>> step_archs(cfg.space_config(), cfg, 0, 0, 0) == step_archs(cfg.space_config(), cfg, 0, 0, 0)
        True
    """
    name = PHASES[phase]
    resolution = _rng(cfg, phase, epoch, step, "r").choice(space.resolutions)
    count = 1 if name == "full" else cfg.subnets_per_step
    return [replace(space.sample(_rng(cfg, phase, epoch, step, j), PHASE_ELASTIC[name]), resolution=resolution)
            for j in range(count)]  # fmt: skip


def _resume(out: Path, cfg: NasTrainConfig, net: Supernet) -> tuple[_Progress, Supernet | None, dict[str, Any] | None]:
    ckpt = load_supernet(out, expect_space=cfg.space_config())
    saved = ckpt.meta.get("train_config")
    if saved is None or "progress" not in ckpt.meta:
        raise LeanmlError(f"{out} is not a resumable supernet training checkpoint", "train without --resume")
    mine = cfg.to_dict()
    diffs = sorted(k for k in mine if saved.get(k) != mine[k])
    if diffs:
        raise LeanmlError(f"cannot resume {out}: its config differs in {', '.join(diffs)}",
                          "resume with the same settings, or write to a new --out")  # fmt: skip
    net.load_state_dict(ckpt.supernet.state_dict())
    p = ckpt.meta["progress"]
    progress = _Progress(int(p["phase"]), int(p["phase_epoch"]), bool(p["sorted"]), list(ckpt.meta["history"]))
    return progress, ckpt.teacher, ckpt.optimizer_state


def _train_epoch(
    net: Supernet,
    teacher: Supernet | None,
    opt: torch.optim.Optimizer,
    data: ImageSet,
    cfg: NasTrainConfig,
    phase: int,
    epoch: int,
    progress: bool,
) -> float:
    """One epoch of ``phase``; returns the mean loss per subnet and image."""
    space, epochs = net.space, cfg.phase_epochs[phase]
    steps = math.ceil(len(data) / cfg.batch_size)
    stream = batches(data, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed,
                     epoch=phase * 10_000 + epoch)  # fmt: skip

    def subnets(i: int, x: torch.Tensor) -> tuple[torch.Tensor, Iterator[Supernet]]:
        archs = step_archs(space, cfg, phase, epoch, i)
        xr = resize_batch(x, archs[0].resolution)  # (B, 1, r, r)
        return xr, (net.set_active(arch) for arch in archs)  # each activated just before its forward

    distill = None
    if teacher is not None:

        def full_network(xr: torch.Tensor) -> torch.Tensor:
            return teacher.set_active(replace(space.largest(), resolution=xr.shape[-1])).train()(xr)  # (B, classes)

        distill = Distillation(full_network, cfg.kd_alpha, cfg.kd_temperature)
    stats = run_epoch(net, track(stream, steps, f"{PHASES[phase]} {epoch + 1}/{epochs}", progress), opt,
                      cosine_schedule(cfg.phase_lr[phase], epoch * steps, epochs * steps), distill,
                      step_plan=subnets)  # fmt: skip
    return stats.loss


def _check_output(out: Path, resume: bool, overwrite: bool) -> None:
    weights = artifact_paths(out)[0]
    if resume and overwrite:
        raise LeanmlError("--resume and --overwrite contradict each other", "pass one of them")
    if not resume and not overwrite and weights.exists():
        raise LeanmlError(f"supernet {weights} already exists", "pass --resume to continue it, or choose another --out")
    if resume and not weights.exists():
        raise LeanmlError(f"nothing to resume: {weights} does not exist", "train without --resume first")


def train_supernet(
    cfg: NasTrainConfig,
    out: str | Path,
    train: ImageSet,
    val: ImageSet,
    resume: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool = True,
    on_epoch_end: EpochHook | None = None,
) -> SupernetResult:
    """Train a supernet by progressive shrinking on ``train``, checkpointing to ``out`` after every epoch.

    Seeded samples of ``cfg.train_subset`` training images (all when None), of ``cfg.calib_images`` of them
    for BN recalibration, and of ``cfg.val_subset`` of ``val`` for the per-epoch check are used.
    ``on_epoch_end(epochs_done, meta)`` runs after each checkpoint is written.

    Example:
        >>> train_supernet(NasTrainConfig.preset("small"), "runs/nas/supernet", data.train, data.val,
        ...                threads=2)  # doctest: +SKIP
    """
    out = artifact_paths(out)[0].with_suffix("")
    _check_output(out, resume, overwrite)
    space = cfg.space_config()
    console = make_console()
    with torch_threads(threads) as n_threads:
        torch.manual_seed(cfg.seed)
        net = Supernet(space)
        state, teacher, opt_state = _resume(out, cfg, net) if resume else (_Progress(), None, None)
        if resume and state.phase == len(PHASES) - 1 and state.phase_epoch >= cfg.phase_epochs[-1]:
            raise LeanmlError(f"{out} already finished progressive shrinking", "train a new one with another --out")
        train_set = train.sample(cfg.train_subset)
        val_set = val.sample(cfg.val_subset)
        calib_set = train.sample(cfg.calib_images, 1)
        for phase in range(state.phase, len(PHASES)):
            name, epochs = PHASES[phase], cfg.phase_epochs[phase]
            first_epoch = state.phase_epoch if phase == state.phase else 0
            if first_epoch >= epochs:
                continue
            if name != "full" and teacher is None:
                teacher = copy.deepcopy(net)  # the full network at the end of phase 1
            if name == "expand" and not state.sorted:
                sort_channels_(net)
                state.sorted = True
            opt = _optimizer(net, cfg, cfg.phase_lr[phase])
            if opt_state is not None and first_epoch > 0:
                opt.load_state_dict(opt_state)
            opt_state = None
            for epoch in range(first_epoch, epochs):
                t0 = time.perf_counter()
                loss = _train_epoch(net, teacher, opt, train_set, cfg, phase, epoch, progress)
                state.phase, state.phase_epoch = phase, epoch + 1
                row = {"phase": name, "epoch": epoch + 1, "train_loss": loss,
                       "val_acc_largest": subnet_accuracy(net, space.largest(), calib_set, val_set),
                       "val_acc_smallest": subnet_accuracy(net, space.smallest(), calib_set, val_set),
                       "seconds": time.perf_counter() - t0}  # fmt: skip
                state.history.append(row)
                done = phase == len(PHASES) - 1 and epoch + 1 == epochs
                meta = {"train_config": cfg.to_dict(), "complete": done, "history": state.history,
                        "progress": {"phase": phase, "phase_epoch": epoch + 1, "sorted": state.sorted},
                        "train_seconds": sum(r["seconds"] for r in state.history), "threads": n_threads}  # fmt: skip
                save_supernet(out, net, meta, teacher, opt)
                console.print(f"{name} epoch {epoch + 1}/{epochs}  loss {row['train_loss']:.4f}  val largest "
                              f"{row['val_acc_largest']:.2%}  smallest {row['val_acc_smallest']:.2%}  "
                              f"{row['seconds']:.0f}s")  # fmt: skip
                if on_epoch_end is not None:
                    on_epoch_end(len(state.history), meta)
    return SupernetResult(artifact_paths(out)[0], state.history)
