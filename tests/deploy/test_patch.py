"""Patch-based inference: bit-identical to layer-by-layer, lower peak SRAM, extra MACs reported."""

import pytest
import torch

from leanml.deploy.engine import DeployConfig, deploy, verify
from leanml.deploy.patch import PatchStage, Rect, plan_patches
from leanml.errors import LeanmlError
from leanml.models import build_model
from tests.deploy.test_engine import _cache, integer_model  # noqa: F401  (fixture: build cache per session)


@pytest.mark.parametrize(("name", "grid"), [("mobilenetv2", 2), ("mobilenetv2", 3), ("resnet", 2), ("vgg", 3)])
def test_patch_stage_is_bit_exact(name, grid):
    imodel = integer_model(build_model(name))
    dep = deploy(imodel, DeployConfig(patch=grid))
    assert any(isinstance(op, PatchStage) for op in dep.graph.ops)
    assert verify(dep, imodel, torch.randn(6, 1, 28, 28) * 1.5).identical


def test_patches_cut_mobilenetv2_peak_below_sixty_percent_of_a_tflm_plan():
    imodel = integer_model(build_model("mobilenetv2"))
    plain, patched = deploy(imodel, DeployConfig()), deploy(imodel, DeployConfig(patch=3))
    s = patched.summary()
    assert s["arena_bytes"] <= 0.6 * plain.summary()["tflm_bytes"]
    assert s["patch_extra_macs"] > 0 and s["macs"] == plain.summary()["macs"] + s["patch_extra_macs"]


def test_regions_cover_the_output_and_respect_receptive_fields():
    imodel = integer_model(build_model("mobilenetv2"))
    dep = deploy(imodel, DeployConfig(patch=3, patch_until="blocks_1_conv_6"))
    stage = next(op for op in dep.graph.ops if isinstance(op, PatchStage))
    assert stage.output == "blocks_1_conv_6"
    plans = plan_patches(stage.ops, stage.output, stage.out_shape, 3)
    h, w, _ = stage.out_shape
    covered = sorted((p.regions[stage.output].y0, p.regions[stage.output].x0) for p in plans)
    assert len(covered) == 9 and sum(p.regions[stage.output].h * p.regions[stage.output].w for p in plans) == h * w
    for plan in plans:  # a 3x3 conv needs one more row/col on each side, unless at the border
        stem = stage.ops[0]
        read = plan.reads[(stem.name, 0)]
        out = plan.regions[stem.output]
        assert read == Rect(max(out.y0 - 1, 0), min(out.y1 + 1, 28), max(out.x0 - 1, 0), min(out.x1 + 1, 28))


def test_bad_patch_requests_are_clear_errors():
    imodel = integer_model(build_model("vgg", layers=[8, "M"]))
    with pytest.raises(LeanmlError, match="cannot end a patch stage"):
        deploy(imodel, DeployConfig(patch=2, patch_until="classifier"))
    with pytest.raises(LeanmlError, match="patch grid"):
        DeployConfig(patch=-1)
