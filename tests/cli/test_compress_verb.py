"""`leanml compress`: a recipe file and --set overrides on a user model and image folder; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leanml.cli.compress import app
from tests.compress.test_pipeline import FACTORY, RECIPE, make_imagefolder


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    (tmp_path / "user_nets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({k: v for k, v in RECIPE.items() if k != "threads"}))
    return make_imagefolder(tmp_path / "images"), recipe


def test_recipe_file_with_overrides_runs_and_prints_json(setup: tuple[Path, Path], tmp_path: Path) -> None:
    images, recipe = setup
    args = [str(recipe), "--model", "user_nets:small_cnn", "--model-arg", "width=8", "--data", f"imagefolder:{images}",
            "--resolution", "16", "--out", str(tmp_path / "run"), "--set", "prune.ratio=0.25", "--threads", "1",
            "--no-progress", "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    record = json.loads(res.output[res.output.index("{") :])
    assert record["recipe"]["prune"]["ratio"] == 0.25 and record["verify"]["mismatched"] == 0
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "c" / "Makefile").is_file()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("stages: [train, sparsify]\n", "unknown stage"),
        ("prune: {ratoi: 0.5}\n", "ratoi"),
        ("base: tiny\n", "unknown built-in recipe"),
    ],
)
def test_bad_recipe_is_one_line_and_writes_nothing(tmp_path: Path, content: str, words: str) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(content)
    out = tmp_path / "run"
    env = {**os.environ, "COLUMNS": "300"}
    res = subprocess.run([sys.executable, "-m", "leanml", "compress", str(recipe), "--out", str(out)],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert res.returncode == 2
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not out.exists()


def test_bad_set_and_missing_folder(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "leanml", "compress", "mcu", "--set", "train.epochs", "--out",
                          str(tmp_path / "r")], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2 and "NAME=VALUE" in res.stderr
    res = subprocess.run([sys.executable, "-m", "leanml", "compress", "mcu", "--data", f"imagefolder:{tmp_path}/none",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2 and "none" in res.stderr and not (tmp_path / "r").exists()


def test_start_from_a_checkpoint_uses_its_data_and_skips_training(setup: tuple[Path, Path], tmp_path: Path) -> None:
    from leanml.data import load_data
    from leanml.models import build_model
    from leanml.train import save_checkpoint

    images, recipe = setup
    data = load_data(f"imagefolder:{images}", resolution=16)
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, build_model("user_nets:small_cnn", width=8), input=data.describe())
    args = [str(recipe), "--checkpoint", str(ckpt), "--out", str(tmp_path / "run"), "--threads", "1", "--no-progress",
            "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    record = json.loads(res.output[res.output.index("{") :])
    assert record["stages"][0]["stage"] == "baseline" and "train" not in record["recipe"]["stages"]
    assert record["input"]["shape"] == [3, 16, 16] and record["verify"]["mismatched"] == 0
