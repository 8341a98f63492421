import pytest
import torch

from leanml.data import load_split
from leanml.errors import LeanmlError
from leanml.train import TrainConfig, distillation_loss, evaluate, load_checkpoint, train

TINY_VGG = {"layers": [8, "M", 16, "M"]}


def tiny_cfg(**kw):
    base = dict(model="vgg", model_overrides=TINY_VGG, epochs=2, batch_size=32, val_subset=200, augment=False)
    return TrainConfig(**{**base, **kw})


def test_training_learns_and_checkpoints(tmp_path, fake_data):
    result = train(tiny_cfg(epochs=3), tmp_path / "run", data_root=fake_data, progress=False)
    assert result.metrics["test_acc"] > 0.9  # the synthetic classes are easy
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.meta["epoch"] == 3 and ckpt.meta["complete"] and len(ckpt.meta["history"]) == 3
    _, acc = evaluate(ckpt.model, load_split("test", fake_data))
    assert acc == pytest.approx(result.metrics["test_acc"])


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path, fake_data):
    full = train(tiny_cfg(), tmp_path / "full", data_root=fake_data, progress=False)

    def kill_after_first_epoch(epoch, meta):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(), tmp_path / "cut", data_root=fake_data, progress=False, on_epoch_end=kill_after_first_epoch)
    assert load_checkpoint(tmp_path / "cut").meta["epoch"] == 1
    resumed = train(tiny_cfg(), tmp_path / "cut", data_root=fake_data, resume=True, progress=False)
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.allclose(v.float(), w.float(), atol=1e-5), k
    assert resumed.metrics["test_acc"] == pytest.approx(full.metrics["test_acc"])
    assert len(b.meta["history"]) == 2


def test_existing_checkpoint_needs_resume_or_overwrite(tmp_path, fake_data):
    train(tiny_cfg(epochs=1), tmp_path / "r", data_root=fake_data, progress=False)
    with pytest.raises(LeanmlError, match=r"already exists.*--resume"):
        train(tiny_cfg(epochs=1), tmp_path / "r", data_root=fake_data, progress=False)
    with pytest.raises(LeanmlError, match="differs in seed"):
        train(tiny_cfg(epochs=2, seed=5), tmp_path / "r", data_root=fake_data, resume=True, progress=False)
    with pytest.raises(LeanmlError, match="already finished 1 epochs"):
        train(tiny_cfg(epochs=1), tmp_path / "r", data_root=fake_data, resume=True, progress=False)
    with pytest.raises(LeanmlError, match="nothing to resume"):
        train(tiny_cfg(), tmp_path / "none", data_root=fake_data, resume=True, progress=False)
    train(tiny_cfg(epochs=1), tmp_path / "r", data_root=fake_data, overwrite=True, progress=False)


def test_distillation_from_a_teacher_checkpoint(tmp_path, fake_data):
    teacher = train(tiny_cfg(), tmp_path / "teacher", data_root=fake_data, progress=False)
    # kd_alpha=1: the student sees only the teacher's soft targets, never a label
    student = train(
        tiny_cfg(kd_alpha=1.0, teacher=str(teacher.checkpoint)),
        tmp_path / "student",
        data_root=fake_data,
        progress=False,
    )
    assert teacher.metrics["test_acc"] > 0.95 and student.metrics["test_acc"] > 0.9


def test_distillation_loss_properties():
    s, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    # a student equal to its teacher has zero soft loss
    assert distillation_loss(s, s.clone(), y, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)
    hard = torch.nn.functional.cross_entropy(s, y)
    assert distillation_loss(s, torch.randn(8, 10), y, alpha=0.0).item() == pytest.approx(hard.item())
    assert distillation_loss(s, torch.randn(8, 10), y, alpha=0.5).item() > 0


def test_config_validation():
    with pytest.raises(LeanmlError, match="unknown optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(LeanmlError, match="unknown model"):
        TrainConfig(model="nope")
    with pytest.raises(LeanmlError, match="train_subset must be a positive"):
        TrainConfig(train_subset=0)
