import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from leanml.deploy.ir import lower
from leanml.models import build_model
from leanml.profile import count_macs, profile_model
from leanml.quant import QuantSim, convert


class ConcatGrouped(nn.Module):
    """Two branches concatenated, a grouped conv, a depthwise conv, a matmul and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 5, stride=2, padding=2)
        self.up = nn.Upsample(scale_factor=2)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=4)
        self.dw = nn.Conv2d(12, 12, 3, stride=2, groups=12)
        self.fc = nn.Linear(12 * 5 * 5, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.up(self.b(x))], dim=1)
        y = self.dw(torch.relu(self.grouped(y)))
        z = y.flatten(1)
        z = z @ torch.eye(z.shape[1])
        return self.fc(z)


def flop_counter_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", ["vgg", "resnet", "mobilenetv2"])
def test_macs_match_torch_flop_counter(name):
    model = build_model(name)
    assert profile_model(model, measure=False).macs == flop_counter_macs(model, (1, 28, 28))


def test_macs_on_concat_grouped_depthwise_matmul():
    model = ConcatGrouped()
    prof = profile_model(model, (3, 12, 12), measure=False)
    assert prof.macs == flop_counter_macs(model, (3, 12, 12))
    by_name = {r.name: r.macs for r in prof.layers}
    assert by_name["grouped"] == 12 * 12 * 12 * (12 // 4) * 9  # out elems x (cin/groups) x k*k
    assert by_name["dw"] == 12 * 5 * 5 * 1 * 9


def test_hand_counted_vgg_first_layers():
    prof = profile_model(build_model("vgg"), measure=False)
    rows = {r.name: r for r in prof.layers}
    assert rows["features.0"].macs == 28 * 28 * 32 * 1 * 9
    assert rows["features.3"].macs == 28 * 28 * 32 * 32 * 9
    assert rows["classifier"].macs == 128 * 10
    assert rows["features.0"].params == 32 * 9 and rows["features.1"].params == 64


def test_mac_table_formulas():
    assert count_macs("conv", out_numel=28 * 28 * 32, in_channels=32, kernel=(3, 3)) == 28 * 28 * 32 * 32 * 9
    assert count_macs("conv", out_numel=100, in_channels=12, kernel=(3, 3), groups=4) == 100 * 3 * 9
    assert count_macs("depthwise", out_numel=100, in_channels=12, kernel=(5, 5), groups=12) == 100 * 25
    assert count_macs("linear", out_numel=10, in_channels=128) == count_macs("matmul", 10, 128) == 1280
    assert [count_macs(k, 100, 8, (2, 2)) for k in ("pool", "add", "view", "activation", "norm", "other")] == [0] * 6


@pytest.mark.parametrize("name", ["vgg", "resnet", "mobilenetv2"])
def test_deploy_ir_counts_the_macs_profile_counts(name):
    model = build_model(name).eval()
    sim = QuantSim.from_model(model)
    sim.calibrate([torch.randn(4, 1, 28, 28)])
    assert lower(convert(sim), (1, 28, 28)).macs() == profile_model(model, measure=False).macs
