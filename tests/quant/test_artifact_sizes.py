"""Compressed artifacts are smaller on disk than the float checkpoint they replace, and load to identical outputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from leanml.artifact import artifact_paths
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant import IntegerModel, KMeansConfig, QuantSim, convert, kmeans_quantize_
from leanml.quant.kmeans import load_kmeans_model, save_kmeans_model
from leanml.quant.mixed import quantizable_layers
from leanml.train import save_checkpoint
from tests.conftest import randomize_bn

SHAPE = [1, 16, 16]


def _bytes(stem: Path) -> int:
    return sum(p.stat().st_size for p in artifact_paths(stem))


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(build_model("resnet", stem=16, widths=[16, 32], blocks=[1, 1], resolution=SHAPE[1]))
    save_checkpoint(tmp_path / "float", model, input={"shape": SHAPE})
    return model, _bytes(tmp_path / "float")


def _integer(model: torch.nn.Module, bits: int | dict[str, int]) -> IntegerModel:
    sim = QuantSim.from_model(model, 8, bits)
    sim.calibrate([torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(1))])
    return convert(sim, {"shape": SHAPE})


def test_integer_and_mixed_artifacts_are_smaller_than_float_and_load_identical(tiny, tmp_path):
    model, float_bytes = tiny
    x = torch.randn(4, *SHAPE)
    layers = list(quantizable_layers(model))
    mixed_bits = {name: (4, 2, 3)[i % 3] if 0 < i < len(layers) - 1 else 8 for i, name in enumerate(layers)}
    sizes = {}
    for label, bits in (("int8", 8), ("mixed", mixed_bits)):
        imodel = _integer(model, bits)
        imodel.save(tmp_path / label)
        loaded = IntegerModel.load(tmp_path / label)
        assert torch.equal(loaded(x), imodel(x))
        sizes[label] = _bytes(tmp_path / label)
    assert sizes["int8"] < float_bytes / 2, (sizes, float_bytes)
    assert sizes["mixed"] < sizes["int8"], sizes  # sub-byte weights are packed
    weights = artifact_paths(tmp_path / "int8")[0]
    assert weights.stat().st_size < artifact_paths(tmp_path / "float")[0].stat().st_size / 3


def test_kmeans_artifact_stores_codes_not_float_weights(tiny, tmp_path):
    model, float_bytes = tiny
    quantized = copy.deepcopy(model)
    q = kmeans_quantize_(quantized, KMeansConfig(bits=3))
    save_kmeans_model(tmp_path / "km", quantized, q, {"kmeans_bits": 3}, input={"shape": SHAPE})
    loaded, codebooks, meta = load_kmeans_model(tmp_path / "km")
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded(x), quantized.eval()(x))
    assert meta["kmeans_bits"] == 3 and codebooks.codebooks.keys() == q.codebooks.keys()
    assert _bytes(tmp_path / "km") < float_bytes / 4, (_bytes(tmp_path / "km"), float_bytes)


def test_an_old_integer_model_is_refused_with_the_command_that_re_creates_it(tiny, tmp_path):
    model, _ = tiny
    _integer(model, 8).save(tmp_path / "m")
    sidecar = artifact_paths(tmp_path / "m")[1]
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "version": 1}))
    with pytest.raises(LeanmlError, match="format version 1") as err:
        IntegerModel.load(tmp_path / "m")
    assert "leanml quantize linear" in (err.value.hint or "")
