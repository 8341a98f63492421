import pytest
import torch

from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.train import load_checkpoint, save_checkpoint


def test_round_trip_preserves_outputs_and_meta(tmp_path):
    model = build_model("resnet").eval()
    for m in model.modules():  # make BN statistics non-trivial
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    save_checkpoint(tmp_path / "r", model, {"metrics": {"test_acc": 0.9}})
    ckpt = load_checkpoint(tmp_path / "r")
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(ckpt.model(x), model(x))
    assert ckpt.meta["metrics"]["test_acc"] == 0.9 and ckpt.meta["input"]["shape"] == [1, 28, 28]
    assert ckpt.optimizer_state is None


def test_optimizer_state_round_trip(tmp_path):
    model = build_model("vgg")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "v", model, {}, opt)
    state = load_checkpoint(tmp_path / "v").optimizer_state
    assert state is not None
    fresh = torch.optim.AdamW(build_model("vgg").parameters(), lr=1e-3)
    fresh.load_state_dict(state)
    saved, restored = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for k in saved:
        assert torch.equal(saved[k]["exp_avg"], restored[k]["exp_avg"]) and torch.equal(
            saved[k]["step"], restored[k]["step"]
        )


def test_model_without_spec_cannot_be_saved(tmp_path):
    with pytest.raises(LeanmlError, match="has no leanml model spec"):
        save_checkpoint(tmp_path / "x", torch.nn.Linear(2, 2))


def test_weights_that_do_not_fit_the_spec(tmp_path):
    save_checkpoint(tmp_path / "v", build_model("vgg"))
    other = build_model("vgg", layers=[8, "M"])
    other.leanml_spec = build_model("vgg").leanml_spec  # spec says default widths
    save_checkpoint(tmp_path / "bad", other)
    with pytest.raises(LeanmlError, match="does not fit its model spec"):
        load_checkpoint(tmp_path / "bad")
