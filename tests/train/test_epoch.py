import pytest
import torch
from torch import nn

from leanml.train.distill import distillation_loss
from leanml.train.epoch import Distillation, cosine_lr, cosine_schedule, run_epoch


def test_cosine_schedule_endpoints():
    assert cosine_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 100, 100) == pytest.approx(0.0)


def test_one_step_sums_every_planned_network_and_distills():
    torch.manual_seed(0)
    model, teacher = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with torch.no_grad():
        expected = distillation_loss(model(x), teacher(x), y, 0.5, 2.0)
    grad = torch.autograd.grad(distillation_loss(model(x), teacher(x), y, 0.5, 2.0), model.weight)[0]
    w0 = model.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    calls: list[int] = []
    stats = run_epoch(model, [(x, y)], opt, cosine_schedule(0.5, 0, 4), Distillation(teacher, 0.5, 2.0),
                      step_plan=lambda i, b: (b, [model, model]), after_step=lambda m: calls.append(1))  # fmt: skip
    assert stats.images == 16 and calls == [1] and opt.param_groups[0]["lr"] == pytest.approx(0.5)
    assert stats.loss == pytest.approx(expected.item(), rel=1e-6)  # both networks saw the same weights
    assert torch.allclose(model.weight.detach(), w0 - 0.5 * 2 * grad, atol=1e-6)  # two gradients, one step
