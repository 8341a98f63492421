"""The integer-only reference: exact accumulators, agreement with fake quantization, save/load."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from leanml.data import batches, load_split
from leanml.models import build_model
from leanml.quant.integer import IntegerModel, convert
from leanml.quant.integer_ops import QConv2d, TensorQ, conv2d_acc, conv2d_acc_ref
from leanml.quant.sim import QuantSim
from leanml.train import load_model

BASELINES = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "stride", "pad", "groups", "size"),
    [
        (3, 5, 3, 1, 1, 1, 7),
        (4, 4, 3, 2, 1, 4, 9),
        (6, 4, 5, 2, 2, 2, 11),
        (2, 3, 1, 1, 0, 1, 5),
        (8, 8, 7, 1, 3, 8, 6),
    ],
)
def test_fast_conv_accumulators_equal_the_int64_reference(c_in, c_out, k, stride, pad, groups, size):
    rng = np.random.default_rng(c_in * 100 + k)
    weight = rng.integers(-127, 128, (c_out, c_in // groups, k, k))
    op = QConv2d("c", "x", "y", weight, rng.integers(-5000, 5000, c_out), (stride, stride), (pad, pad), groups,
                 TensorQ(0.1, int(rng.integers(-128, 128))), TensorQ(0.1, 0), np.ones(c_out, np.float32),
                 np.ones(c_out, np.int64), np.zeros(c_out, np.int64), -128, 127)  # fmt: skip
    x = rng.integers(-128, 128, (2, c_in, size, size))
    assert np.array_equal(conv2d_acc(op, x), conv2d_acc_ref(op, x))


def calibrated(model: nn.Module, images: torch.Tensor, observer: str = "minmax") -> QuantSim:
    sim = QuantSim.from_model(model.eval(), observer=observer)
    sim.calibrate(images.split(64))
    return sim


def lsb_agreement(sim: QuantSim, imodel: IntegerModel, x: torch.Tensor) -> tuple[float, float]:
    """(fraction of argmax agreement, fraction of output elements within 1 LSB)."""
    with torch.no_grad():
        fake = sim(x)
    q_int = imodel.run_int8(imodel.quantize_input(x))
    q_fake = torch.round(fake / imodel.output_q.scale).numpy().astype(np.int64) + imodel.output_q.zero_point
    argmax = float((q_int.argmax(1) == fake.argmax(1).numpy()).mean())
    return argmax, float((np.abs(q_int - q_fake) <= 1).mean())


@pytest.mark.parametrize("name", ["vgg", "resnet", "mobilenetv2"])
def test_integer_model_tracks_fake_quant_on_random_weights(name):
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.randn(64, 1, 28, 28)
    sim = calibrated(model, x)
    imodel = convert(sim)
    _, within_1 = lsb_agreement(sim, imodel, x)
    assert within_1 >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg", "resnet", "mobilenetv2"])
def test_integer_executor_matches_fake_quant_on_the_test_set(name):
    model = load_model(BASELINES / name)
    calib = torch.cat([x for x, _ in batches(load_split("train", subset=512), 512)])
    sim = calibrated(model, calib)
    imodel = convert(sim)
    test = load_split("test", subset=2000)  # the full 10k run is in benchmarks/ (the executor is numpy, not fast)
    argmax, within_1 = [], []
    for x, _ in batches(test, 500):
        a, w = lsb_agreement(sim, imodel, x)
        argmax.append(a)
        within_1.append(w)
    assert np.mean(argmax) >= 0.999 and np.mean(within_1) >= 0.99


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    sim = calibrated(build_model("mobilenetv2"), torch.randn(32, 1, 28, 28))
    imodel = convert(sim)
    imodel.save(tmp_path / "q")
    loaded = IntegerModel.load(tmp_path / "q")
    x = torch.randn(4, 1, 28, 28)
    q = imodel.quantize_input(x)
    assert np.array_equal(loaded.run_int8(q), imodel.run_int8(q))
    assert [type(op) for op in loaded.ops] == [type(op) for op in imodel.ops]
