import pytest
import torch

from leanml.errors import LeanmlError
from leanml.quant.observers import OBSERVERS, make_observer


def feed(name: str, x: torch.Tensor) -> tuple[float, float]:
    obs = make_observer(name)
    for chunk in x.split(4096):
        obs.observe(chunk)
    return obs.range()


def test_minmax_is_exact():
    assert feed("minmax", torch.tensor([-2.0, 0.5, 7.0])) == (-2.0, 7.0)


@pytest.mark.parametrize("name", ["percentile", "mse", "entropy"])
def test_clipping_observers_ignore_rare_outliers(name):
    torch.manual_seed(0)
    x = torch.randn(200_000).abs()
    x[::20_000] = 1000.0  # 10 huge outliers among 200k values
    lo, hi = feed(name, x)
    assert lo == 0.0
    if name == "mse":
        # MSE keeps a range that covers the bulk; it may keep outliers when clipping them costs more
        assert hi >= 3.0
    else:
        assert 2.0 < hi < 20.0


def test_every_range_includes_zero_and_lies_within_minmax():
    torch.manual_seed(1)
    x = torch.randn(50_000) * 3 + 1
    lo_all, hi_all = feed("minmax", x)
    for name in OBSERVERS:
        lo, hi = feed(name, x)
        assert lo <= 0.0 <= hi or name in ("minmax", "moving_average")
        assert lo >= lo_all - 1e-6 and hi <= hi_all + 1e-6


def test_moving_average_weights_recent_batches():
    obs = make_observer("moving_average")
    obs.observe(torch.tensor([0.0, 10.0]))
    obs.observe(torch.tensor([0.0, 20.0]))
    assert obs.range() == pytest.approx((0.0, 11.0))


def test_errors():
    with pytest.raises(LeanmlError, match="choose one of"):
        make_observer("kl-magic")
    with pytest.raises(LeanmlError, match="saw no data"):
        make_observer("minmax").range()
