"""Recipes: built-ins, files with a base, overrides, and every bad recipe refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from leanml.compress.recipe import STAGE_ORDER, Recipe, builtin_recipe, load_recipe
from leanml.errors import LeanmlError


def test_builtins_run_every_stage_in_order() -> None:
    for name in ("mcu", "cpu"):
        recipe = builtin_recipe(name)
        assert recipe.stages == list(STAGE_ORDER)
        assert recipe.targets.structural()
    assert builtin_recipe("mcu").deploy.patch == "auto"
    assert builtin_recipe("cpu").targets.needs_latency()


def test_file_with_base_overrides_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("base: mcu\nfinetune: {epochs: 3}\ntargets: {sram_kib: 20}\n")
    recipe = load_recipe(path)
    assert recipe.finetune.epochs == 3 and recipe.finetune.distill  # the rest of the section is the base's
    assert recipe.targets.sram_kib == 20 and recipe.targets.flash_fraction == 0.33


def test_round_trip() -> None:
    recipe = builtin_recipe("cpu").with_overrides(train={"epochs": 1})
    assert Recipe.from_dict(recipe.to_dict()) == recipe


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"stages": ["train", "sparsify"]}, "unknown stage"),
        ({"stages": ["deploy", "quantize"]}, "out of order"),
        ({"stages": ["train", "deploy"]}, "needs the quantize stage"),
        ({"stages": []}, "no stages"),
        ({"colour": "red"}, "unknown recipe key"),
        ({"prune": {"ratoi": 0.5}}, "recipe section 'prune'"),
        ({"prune": {"ratio": 1.5}}, "prune.ratio"),
        ({"targets": {"flash_kib": -1}}, "flash_kib"),
        ({"targets": {"sram_fraction": 2}}, "sram_fraction"),
        ({"deploy": {"patch": "big"}}, "deploy.patch"),
        ({"train": "fast"}, "must be a mapping"),
    ],
)
def test_bad_recipes_are_clear_errors(data: dict, words: str) -> None:
    with pytest.raises(LeanmlError, match=words):
        Recipe.from_dict(data)


def test_unknown_builtin_and_missing_file() -> None:
    with pytest.raises(LeanmlError, match="config file not found"):
        load_recipe("no-such-recipe.yaml")
