"""The budget search: the least pruning that fits, measured as deployed; an impossible target names the miss."""

from __future__ import annotations

import torch
from torch import nn

from leanml.compress.budget import Budget, choose_ratio, measure_candidate
from leanml.compress.recipe import DeployStage, PruneStage


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4),
    ).eval()  # fmt: skip


def test_smallest_ratio_that_fits_flash_and_sram() -> None:
    calib = torch.randn(8, 3, 16, 16)
    full = measure_candidate(tiny(), 0.0, PruneStage(), DeployStage(patch="auto"), calib, timed=False)
    budget = Budget(flash_bytes=full.flash_bytes * 0.5, sram_bytes=full.sram_bytes, latency_ms=None)
    choice = choose_ratio(tiny(), budget, PruneStage(), DeployStage(patch="auto"), calib, progress=False)
    assert not choice.misses and 0 < choice.ratio < 0.9
    assert choice.chosen.flash_bytes <= budget.flash_bytes
    fitting = [c for c in choice.candidates if not budget.misses(c)]
    assert min(c.ratio for c in fitting) == choice.ratio  # no smaller measured ratio fits


def test_impossible_target_reports_the_nearest_point() -> None:
    calib = torch.randn(8, 3, 16, 16)
    budget = Budget(flash_bytes=10, sram_bytes=None, latency_ms=None)
    choice = choose_ratio(tiny(), budget, PruneStage(max_ratio=0.8), DeployStage(), calib, progress=False)
    assert choice.ratio == 0.8 and choice.misses and choice.misses[0].startswith("flash")
