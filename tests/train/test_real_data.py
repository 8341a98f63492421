"""Accuracy floors on the real Fashion-MNIST (slow; run in CI by `make test`)."""

from pathlib import Path

import pytest

from leanml.data import load_split
from leanml.train import TrainConfig, evaluate, load_checkpoint, train

BASELINES = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"
TARGETS = {"vgg": 0.92, "resnet": 0.92, "mobilenetv2": 0.90}


@pytest.mark.slow
def test_short_training_run_learns_fashion_mnist(tmp_path):
    cfg = TrainConfig(model="vgg", epochs=2, train_subset=6000, val_subset=1000, test_subset=2000, augment=False)
    result = train(cfg, tmp_path / "vgg", progress=False)
    assert result.metrics["test_acc"] >= 0.80


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_committed_baseline_meets_its_target(name):
    ckpt = load_checkpoint(BASELINES / name)
    _, acc = evaluate(ckpt.model, load_split("test"))
    assert acc >= TARGETS[name]
    assert acc == pytest.approx(ckpt.meta["metrics"]["test_acc"], abs=1e-9)  # the recorded figure is reproducible
