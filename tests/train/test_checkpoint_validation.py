"""Damaged checkpoint sidecars (edited with a consistent hash) are LeanmlErrors naming the field, found before the
model is built: the raw KeyError/RuntimeError cases of issue 16."""

from __future__ import annotations

import json

import pytest
import torch

from leanml.artifact import artifact_paths
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.prune.channel import ChannelPruneConfig, prune_channels_
from leanml.train import load_checkpoint, save_checkpoint


@pytest.fixture
def pruned(tmp_path):
    model = build_model("vgg", layers=[8, "M", 16, "M"])
    prune_channels_(model, ChannelPruneConfig(ratio=0.25))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c", model, {}, opt)
    return tmp_path / "c"


def _edit(stem, edit) -> None:
    sidecar = artifact_paths(stem)[1]
    doc = json.loads(sidecar.read_text())
    edit(doc)
    sidecar.write_text(json.dumps(doc))  # the weights are untouched, so their hash still matches


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["model"]["transforms"][0].pop("kept"), "transforms\\[0\\].*KeyError\\('kept'\\)"),
        (lambda d: d["model"]["transforms"][0].pop("input_shape"), "transforms\\[0\\].*KeyError\\('input_shape'\\)"),
        (lambda d: d["model"]["transforms"][0].update(input_shape=[1, 2**31, 28]), "input_shape must be 1 to 4"),
        (lambda d: d["optimizer"].pop("param_groups"), "field optimizer.param_groups is missing"),
        (lambda d: d["model"].pop("config"), "malformed model spec"),
        (lambda d: d["model"]["config"].update(layers=[2**20, 2**20]), "more than the .* allowed"),
        (lambda d: d["model"]["config"].update(num_classes=2**62), "cannot build|more than the .* allowed"),
        (lambda d: d["model"]["config"].update(width="x"), "model.config.width"),
        (lambda d: d["input"].update(shape=[1, 2**62, 28]), "input block's shape"),
        (lambda d: d["optimizer"]["param_groups"][0].update(params=[0, 0]), "distinct parameter indices"),
    ],
)
def test_damaged_sidecar_fields_are_named(pruned, edit, match):
    _edit(pruned, edit)
    with pytest.raises(LeanmlError, match=match):
        load_checkpoint(pruned)


def test_a_missing_tensor_is_named(tmp_path):
    model = build_model("vgg", layers=[8, "M"])
    model.classifier.bias = None  # the file lacks the bias its spec's model has
    save_checkpoint(tmp_path / "c", model)
    with pytest.raises(LeanmlError, match=r"lacks model/classifier\.bias"):
        load_checkpoint(tmp_path / "c")
