"""Training on any image data: the model is built for the data, the checkpoint's input block describes it,
``leanml eval`` reloads that data from the block."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from leanml.cli import app
from leanml.data import from_tensors, load_data
from leanml.errors import LeanmlError
from leanml.models import input_shape_of
from leanml.train import TrainConfig, load_checkpoint, train
from tests.data.test_sources import make_folder

TINY = {"epochs": 1, "batch_size": 16, "channels_last": False}


def test_train_on_an_image_folder_and_eval_from_the_block(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "photos")
    cfg = TrainConfig(model="resnet", model_overrides={"width": 0.25}, data=f"imagefolder:{root}", resolution=12,
                      **TINY)  # type: ignore[arg-type]  # fmt: skip
    result = train(cfg, tmp_path / "run", progress=False, threads=1)
    ckpt = load_checkpoint(result.checkpoint)
    block = ckpt.meta["input"]
    data = load_data(f"imagefolder:{root}", resolution=12)
    assert block == data.describe() and block["shape"] == [3, 12, 12] and block["classes"] == ["ant", "bee", "cat"]
    assert input_shape_of(ckpt.model) == (3, 12, 12) and ckpt.model(torch.zeros(1, 3, 12, 12)).shape == (1, 3)
    out = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--threads", "1"])
    assert out.exit_code == 0, out.output
    assert "(6 images of imagefolder:" in out.output


def test_train_takes_image_data_and_user_factories(tmp_path: Path) -> None:
    (tmp_path / "mynets.py").write_text(textwrap.dedent("""
        from torch import nn

        def net(classes: int) -> nn.Module:
            return nn.Sequential(nn.Flatten(), nn.Linear(16, classes))
    """))  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:
        data = from_tensors(torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8), torch.arange(40) % 2)
        cfg = TrainConfig(model="mynets:net", model_overrides={"classes": 2}, **TINY)  # type: ignore[arg-type]
        result = train(cfg, tmp_path / "run", data=data, progress=False, threads=1)
        ckpt = load_checkpoint(result.checkpoint)
        assert ckpt.meta["input"]["dataset"] == "tensors" and ckpt.meta["model"]["name"] == "mynets:net"
        clash = TrainConfig(model="vgg", model_overrides={"num_classes": 5}, **TINY)  # type: ignore[arg-type]
        with pytest.raises(LeanmlError, match="contradict the data"):
            train(clash, tmp_path / "clash", data=data, progress=False, threads=1)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mynets", None)


def test_cli_train_data_and_resolution(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "photos", gray=True)
    args = ["train", "--model", "vgg", "--data", f"imagefolder:{root}", "--resolution", "16", "--epochs", "1",
            "--batch-size", "16", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    block = load_checkpoint(tmp_path / "run").meta["input"]
    assert block["shape"] == [1, 16, 16] and block["dataset"] == f"imagefolder:{root}"
