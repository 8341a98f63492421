import numpy as np
import pytest
import torch

from leanml.data import load_split
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant import LinearQuantConfig, quantize_linear
from leanml.quant.fake_quant import FakeQuantize
from leanml.quant.linear import calibration_tensor


def calib(fake_data, n: int) -> torch.Tensor:
    return calibration_tensor(load_split("train", fake_data), n)


def test_ptq_then_qat_on_synthetic_data(fake_data):
    model = build_model("vgg", layers=[8, "M", 16, "M"])
    cfg = LinearQuantConfig(calibration_images=128, qat_epochs=1, qat_images=256, batch_size=64)
    result = quantize_linear(model, cfg, calib(fake_data, 128), load_split("train", fake_data), progress=False)
    assert result.integer_model is not None
    x = torch.randn(4, 1, 28, 28)
    q = result.integer_model.run_int8(result.integer_model.quantize_input(x))
    assert q.shape == (4, 10) and q.min() >= -128 and q.max() <= 127
    assert all(isinstance(fq, FakeQuantize) and fq.calibrated for fq in result.sim.fq.values())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched


def test_lsq_learns_activation_scales(fake_data):
    cfg = LinearQuantConfig(calibration_images=64, qat_epochs=1, qat_images=128, learn_scale=True, qat_lr=0.01)
    images = calib(fake_data, 64)
    train = load_split("train", fake_data)
    result = quantize_linear(build_model("vgg", layers=[8, "M"]), cfg, images, train, progress=False)
    scales = [float(fq.scale.detach()) for fq in result.sim.fq.values()]
    sim_fresh = quantize_linear(build_model("vgg", layers=[8, "M"]), LinearQuantConfig(calibration_images=64), images)
    assert scales != [float(fq.scale.detach()) for fq in sim_fresh.sim.fq.values()]


def test_low_bit_activations_give_no_integer_model(fake_data):
    result = quantize_linear(build_model("vgg"), LinearQuantConfig(bits=4, calibration_images=32), calib(fake_data, 32))
    assert result.integer_model is None
    assert np.isfinite(result.sim(torch.randn(2, 1, 28, 28)).detach().numpy()).all()


def test_bad_inputs():
    with pytest.raises(LeanmlError, match=r"bits must be in 2\.\.8"):
        LinearQuantConfig(bits=9)
    with pytest.raises(LeanmlError, match="unknown observer"):
        LinearQuantConfig(observer="kl")
    with pytest.raises(LeanmlError, match=r"cannot run calibration data of shape \(4, 3, 32, 32\)"):
        quantize_linear(build_model("vgg"), LinearQuantConfig(), calibration=torch.zeros(4, 3, 32, 32))
    with pytest.raises(LeanmlError, match="must be float"):
        quantize_linear(build_model("vgg"), LinearQuantConfig(), torch.zeros(4, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(LeanmlError, match=r"QAT .* needs training data"):
        quantize_linear(build_model("vgg"), LinearQuantConfig(qat_epochs=1), torch.zeros(4, 1, 28, 28))


def test_input_shape_comes_from_the_calibration_tensor():
    model = build_model("vgg", layers=[4, "M"])
    result = quantize_linear(model.eval(), LinearQuantConfig(calibration_images=8), torch.randn(8, 1, 20, 20))
    assert result.integer_model is not None
    assert result.integer_model(torch.randn(2, 1, 20, 20)).shape == (2, 10)
    with pytest.raises(LeanmlError, match="not calibrated"):
        from leanml.quant import QuantSim, convert

        convert(QuantSim.from_model(build_model("vgg")))
