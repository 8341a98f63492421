import pytest
import torch
from torch import nn

from leanml.models import build_model
from leanml.quant.bn_fold import find_bn_pairs, fold_bn
from tests.conftest import randomize_bn


@pytest.mark.parametrize("name", ["vgg", "resnet", "mobilenetv2"])
def test_folding_preserves_outputs_and_removes_every_bn(name):
    model = randomize_bn(build_model(name))
    folded = fold_bn(model)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())  # original untouched


def test_bn_after_a_shared_tensor_is_not_folded():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y  # conv output read twice: folding would change the second read

    model = randomize_bn(Shared())
    assert find_bn_pairs(model) == []
    x = torch.randn(2, 1, 6, 6)
    assert torch.allclose(fold_bn(model)(x), model(x))


def test_linear_bn1d_and_existing_bias():
    model = randomize_bn(nn.Sequential(nn.Linear(5, 4, bias=True), nn.BatchNorm1d(4)))
    x = torch.randn(6, 5)
    assert torch.allclose(fold_bn(model)(x), model(x), atol=1e-5)
