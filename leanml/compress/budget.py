"""Budgets, not knobs: measure candidate pruning ratios and patch grids on the deployed int8 form, pick the least
pruning that meets the flash / SRAM / latency targets, and say which target missed and by how much.

A candidate is measured as it would deploy: channel-pruned (structure only; weights are fine-tuned later),
calibrated on a few images, converted to the integer model, lowered to the deploy IR and planned. Flash is the
constant bytes of the generated C, SRAM the planned arena (the smallest over the patch grids tried), latency the
compiled C engine at batch 1 (only when a latency target asks for it). All three fall as the ratio grows, so the
smallest ratio that fits is found by bisection.

Example:
    >>> goal = Budget(flash_bytes=40_000, sram_bytes=None, latency_ms=None)
    >>> goal.misses(Candidate(0.3, 10, 50_000, 9_000, 0, None))
    ['flash 48.8 KiB > 39.1 KiB']
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from leanml.compress.recipe import DeployStage, PruneStage, Targets
from leanml.deploy.engine import DeployConfig, deploy, measure_c_latency
from leanml.deploy.ir import Graph, lower
from leanml.deploy.patch import patch_graph
from leanml.deploy.planner import plan_memory
from leanml.errors import LeanmlError
from leanml.progress import track
from leanml.prune.channel import ChannelPruneConfig, prune_channels_
from leanml.quant.integer import IntegerModel, convert
from leanml.quant.sim import QuantSim

PATCH_GRIDS = (0, 2, 3, 4)
"""Patch grids tried by ``deploy.patch: auto`` (0 = layer by layer)."""
BISECTION_STEPS = 7


@dataclass(frozen=True)
class Candidate:
    """One measured point: prune ratio, MACs, flash and arena bytes (at its best patch grid), latency if timed."""

    ratio: float
    macs: int
    flash_bytes: int
    sram_bytes: int
    patch: int
    latency_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """The report's ``search`` entry."""
        return {
            "knob": "prune ratio",
            "value": self.ratio,
            "macs": self.macs,
            "flash_bytes": self.flash_bytes,
            "sram_bytes": self.sram_bytes,
            "latency_ms": self.latency_ms,
            "patch": self.patch,
        }


@dataclass(frozen=True)
class Budget:
    """Absolute limits (``None`` = none) resolved from the recipe's targets and the unpruned int8 reference."""

    flash_bytes: float | None
    sram_bytes: float | None
    latency_ms: float | None

    @classmethod
    def resolve(cls, targets: Targets, reference: Candidate) -> Budget:
        """KiB targets and fractions of ``reference`` (the unpruned int8 model); the tighter one wins."""

        def tighter(absolute: float | None, fraction: float | None, base: float | None) -> float | None:
            values = [
                v for v in (absolute, None if fraction is None or base is None else fraction * base) if v is not None
            ]
            return min(values) if values else None

        return cls(
            tighter(
                None if targets.flash_kib is None else targets.flash_kib * 1024,
                targets.flash_fraction,
                reference.flash_bytes,
            ),
            tighter(
                None if targets.sram_kib is None else targets.sram_kib * 1024,
                targets.sram_fraction,
                reference.sram_bytes,
            ),
            tighter(targets.latency_ms, targets.latency_fraction, reference.latency_ms),
        )

    def misses(self, c: Candidate) -> list[str]:
        """Each target ``c`` misses, with the figure reached and the goal."""
        out = []
        if self.flash_bytes is not None and c.flash_bytes > self.flash_bytes:
            out.append(f"flash {c.flash_bytes / 1024:.1f} KiB > {self.flash_bytes / 1024:.1f} KiB")
        if self.sram_bytes is not None and c.sram_bytes > self.sram_bytes:
            out.append(f"SRAM {c.sram_bytes / 1024:.1f} KiB > {self.sram_bytes / 1024:.1f} KiB")
        if self.latency_ms is not None and (c.latency_ms is None or c.latency_ms > self.latency_ms):
            out.append(f"latency {c.latency_ms or float('nan'):.3f} ms > {self.latency_ms:.3f} ms")
        return out

    def to_dict(self) -> dict[str, float | None]:
        """Plain data."""
        return {"flash_bytes": self.flash_bytes, "sram_bytes": self.sram_bytes, "latency_ms": self.latency_ms}


def quick_integer_model(model: nn.Module, calibration: torch.Tensor) -> IntegerModel:
    """PTQ on a few images: enough to measure sizes and speed (the weights' values do not change them)."""
    sim = QuantSim.from_model(copy.deepcopy(model).eval())
    sim.calibrate([calibration])
    return convert(sim)


def arena_by_patch(graph: Graph, grids: Sequence[int], in_place: bool) -> dict[int, int]:
    """Planned arena bytes per patch grid; grids the graph cannot be patched with are left out."""
    out = {}
    for grid in grids:
        try:
            g = patch_graph(graph, grid) if grid else graph
        except LeanmlError:
            continue  # no cut point for this grid (e.g. too few rows): the grid is not an option
        out[grid] = plan_memory(g, in_place).arena_bytes
    return out


def choose_patch(graph: Graph, deploy_cfg: DeployStage) -> tuple[int, dict[int, int]]:
    """The patch grid with the smallest arena (``deploy.patch: auto`` tries :data:`PATCH_GRIDS`, else the one given),
    and the arena of every grid tried.

    Example:
        >>> choose_patch(graph, DeployStage(patch="auto"))  # doctest: +SKIP
        (4, {0: 62720, 2: 14336, 3: 11776, 4: 11184})
    """
    grids = PATCH_GRIDS if deploy_cfg.patch == "auto" else (int(deploy_cfg.patch),)
    arenas = arena_by_patch(graph, grids, deploy_cfg.in_place)
    if not arenas:
        raise LeanmlError(f"patch grid {deploy_cfg.patch} does not apply to this model", "use deploy.patch: 0 or auto")
    return min(arenas, key=lambda g: (arenas[g], g)), arenas


def measure_candidate(
    model: nn.Module,
    ratio: float,
    prune: PruneStage,
    deploy_cfg: DeployStage,
    calibration: torch.Tensor,
    timed: bool,
) -> Candidate:
    """Prune a copy of ``model`` by ``ratio`` and measure it as deployed (see the module docstring)."""
    c, h, w = calibration.shape[1:]
    shape = (int(c), int(h), int(w))
    trial = copy.deepcopy(model).eval()
    if ratio > 0:
        prune_channels_(
            trial,
            ChannelPruneConfig(
                ratio=ratio,
                importance=_static_importance(prune.importance),
                round_to=prune.round_to,
                exclude=list(prune.exclude),
                input_shape=list(shape),
            ),
        )
    imodel = quick_integer_model(trial, calibration)
    graph = lower(imodel, shape)
    patch, arenas = choose_patch(graph, deploy_cfg)
    latency = None
    if timed:
        dep = deploy(imodel, DeployConfig(input_shape=list(shape), patch=patch, in_place=deploy_cfg.in_place))
        latency = measure_c_latency(dep).median_ms
    return Candidate(round(ratio, 4), graph.macs(), graph.weight_bytes(), arenas[patch], patch, latency)


def _static_importance(name: str) -> str:
    return "l2" if name == "taylor" else name  # the search prunes structure only: no gradients needed


@dataclass
class RatioChoice:
    """The chosen ratio, every candidate measured, and the targets the chosen point misses (empty = all met)."""

    ratio: float
    chosen: Candidate
    candidates: list[Candidate]
    misses: list[str]


def choose_ratio(
    model: nn.Module,
    budget: Budget,
    prune: PruneStage,
    deploy_cfg: DeployStage,
    calibration: torch.Tensor,
    progress: bool = True,
) -> RatioChoice:
    """The smallest channel-pruning ratio whose deployed model meets ``budget`` (bisection on measured candidates).

    When even ``prune.max_ratio`` misses, that ratio is chosen and the misses say by how much.
    """
    timed = budget.latency_ms is not None
    seen: list[Candidate] = []

    def measure(r: float) -> Candidate:
        c = measure_candidate(model, r, prune, deploy_cfg, calibration, timed)
        seen.append(c)
        return c

    def fits(c: Candidate) -> bool:
        return not budget.misses(c)

    steps = track(range(BISECTION_STEPS + 2), BISECTION_STEPS + 2, "choosing the pruning ratio", progress)
    it = iter(steps)
    next(it, None)
    none = measure(0.0)
    if fits(none):
        list(it)
        return RatioChoice(0.0, none, seen, [])
    next(it, None)
    most = measure(prune.max_ratio)
    if not fits(most):
        list(it)
        return RatioChoice(prune.max_ratio, most, seen, budget.misses(most))
    lo, hi, best = 0.0, prune.max_ratio, most
    for _ in it:
        mid = (lo + hi) / 2
        try:
            c = measure(mid)
        except LeanmlError:  # the ratio empties a layer: treat as too much
            hi = mid
            continue
        if fits(c):
            hi, best = mid, c
        else:
            lo = mid
    return RatioChoice(best.ratio, best, seen, [])
