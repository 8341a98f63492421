import pytest
import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.profile import activation_buffers, profile_model, reuses_input, trace_ops


def plan(model: nn.Module, shape: tuple[int, ...]):
    return activation_buffers(trace_ops(model, shape))


def test_sequential_net_by_hand():
    # x 1x8x8 (64) -> conv 4ch (256) -> relu (in place) -> conv 8ch (512) -> flatten (view) -> linear (10)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.Flatten(),
                        nn.Linear(512, 10))  # fmt: skip
    p = plan(net, (1, 8, 8))
    assert p.live_numel == [64, 64 + 256, 256, 256 + 512, 512, 512 + 10]
    assert p.peak_numel == 768 and p.peak_step == "2"
    assert p.peak_bytes(4) == 3072 and p.peak_bytes(1) == 768
    assert len(p.buffers) == 4  # relu and flatten reuse their producers' buffers


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(x + self.b(self.relu(self.a(x))))


def test_residual_input_is_held_until_the_add():
    # x (256) lives until the add; at conv b: x + a + b = 768; at the add: x + b + sum = 768
    p = plan(Residual(), (4, 8, 8))
    assert p.live_numel == [256, 512, 512, 768, 768, 256]
    assert p.peak_numel == 768


class BranchAfterRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.relu(y) + y  # y is read again, so relu cannot overwrite it


def test_unary_op_allocates_when_its_input_is_read_later():
    p = plan(BranchAfterRelu(), (4, 8, 8))
    assert p.live_numel == [256, 512, 512, 768]


def test_reference_models_peak_by_hand():
    # vgg: features.3 (32->32 conv at 28x28) reads 32*28*28 while writing 32*28*28
    assert profile_model(build_model("vgg"), measure=False).memory.peak_numel == 2 * 32 * 28 * 28
    # resnet: block 0's input is held for the add while conv1 out feeds conv2
    assert profile_model(build_model("resnet"), measure=False).memory.peak_numel == 3 * 16 * 28 * 28
    # mobilenetv2: block 1 expands 16 -> 64 channels at 28x28
    assert profile_model(build_model("mobilenetv2"), measure=False).memory.peak_numel == (16 + 64) * 28 * 28


def test_untraceable_model_is_named():
    class Dynamic(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(LeanmlError, match="cannot trace Dynamic"):
        trace_ops(Dynamic(), (1, 4, 4))


def test_wrong_input_shape_is_named():
    with pytest.raises(LeanmlError, match=r"input shape \(3, 28, 28\) does not fit VGG"):
        trace_ops(build_model("vgg"), (3, 28, 28))


def test_reuse_rule_table():
    assert [reuses_input(k) for k in ("norm", "activation", "view")] == [True] * 3
    assert not any(reuses_input(k) for k in ("input", "conv", "linear", "matmul", "pool", "add", "concat", "other"))
    assert not reuses_input("depthwise") and reuses_input("depthwise", in_place_kernels=True)
    assert not reuses_input("conv", in_place_kernels=True)
