import pytest
import torch

from leanml.errors import LeanmlError
from leanml.nas.checkpoint import load_supernet
from leanml.nas.space import SpaceConfig
from leanml.nas.train import NasTrainConfig, step_archs, train_supernet
from tests.nas.conftest import splits, tiny_space


def tiny_train_cfg(**kw):
    base = dict(space=tiny_space().to_dict(), phase_epochs=[1, 1, 1, 1], batch_size=32, train_subset=64,
                val_subset=64, calib_images=32, augment=True)  # fmt: skip
    return NasTrainConfig(**{**base, **kw})


def test_progressive_shrinking_samples_the_right_dimensions():
    cfg = tiny_train_cfg(subnets_per_step=3)
    space = cfg.space_config()
    top = space.largest()
    full = step_archs(space, cfg, 0, 0, 0)
    assert len(full) == 1 and full[0].kernels == top.kernels and full[0].width == top.width
    for phase, elastic in ((1, {"kernel"}), (2, {"kernel", "depth"}), (3, {"kernel", "depth", "expand", "width"})):
        seen: set[str] = set()
        for step in range(30):
            archs = step_archs(space, cfg, phase, 0, step)
            assert len(archs) == 3 and len({a.resolution for a in archs}) == 1
            for a in archs:
                seen |= {"width"} if a.width != top.width else set()
                seen |= {"depth"} if a.depths != top.depths else set()
                seen |= {"kernel"} if any(k != space.kernels[-1] for ks in a.kernels for k in ks) else set()
                seen |= {"expand"} if any(e != space.expands[-1] for es in a.expands for e in es) else set()
        assert seen == elastic, phase


def test_train_writes_a_checkpoint_per_epoch(tmp_path, fake_data):
    epochs = []
    result = train_supernet(tiny_train_cfg(), tmp_path / "sn", *splits(fake_data), progress=False, threads=1,
                            on_epoch_end=lambda n, meta: epochs.append((n, meta["progress"]["phase"])))  # fmt: skip
    assert epochs == [(1, 0), (2, 1), (3, 2), (4, 3)]
    ckpt = load_supernet(result.checkpoint)
    assert ckpt.meta["complete"] and ckpt.teacher is not None and ckpt.meta["progress"]["sorted"]
    assert [r["phase"] for r in result.history] == ["full", "kernel", "depth", "expand"]
    assert all(0.0 <= r["val_acc_smallest"] <= 1.0 for r in result.history)
    with pytest.raises(LeanmlError, match="already exists"):
        train_supernet(tiny_train_cfg(), tmp_path / "sn", *splits(fake_data), progress=False, threads=1)
    with pytest.raises(LeanmlError, match="already finished"):
        train_supernet(tiny_train_cfg(), tmp_path / "sn", *splits(fake_data), progress=False, threads=1, resume=True)
    with pytest.raises(LeanmlError, match="another search space"):
        load_supernet(result.checkpoint, expect_space=SpaceConfig())


@pytest.mark.parametrize("cut_after", [1, 3])
def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path, fake_data, cut_after):
    cfg = tiny_train_cfg(phase_epochs=[1, 1, 1, 2] if cut_after == 1 else [1, 1, 1, 1])
    full = train_supernet(cfg, tmp_path / "full", *splits(fake_data), progress=False, threads=1)

    def interrupt(epochs_done, meta):
        if epochs_done == cut_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_supernet(cfg, tmp_path / "cut", *splits(fake_data), progress=False, threads=1, on_epoch_end=interrupt)
    with pytest.raises(LeanmlError, match="differs in seed"):
        train_supernet(
            NasTrainConfig.from_dict({**cfg.to_dict(), "seed": 1}),
            tmp_path / "cut",
            *splits(fake_data),
            progress=False,
            threads=1,
            resume=True,
        )
    resumed = train_supernet(cfg, tmp_path / "cut", *splits(fake_data), progress=False, threads=1, resume=True)
    a, b = load_supernet(full.checkpoint), load_supernet(resumed.checkpoint)
    for (k, v), w in zip(a.supernet.state_dict().items(), b.supernet.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    assert a.teacher is not None and b.teacher is not None
    for (k, v), w in zip(a.teacher.state_dict().items(), b.teacher.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]


def test_bad_training_configs():
    with pytest.raises(LeanmlError, match="phase_epochs needs 4"):
        tiny_train_cfg(phase_epochs=[1, 1])
    with pytest.raises(LeanmlError, match="unknown schedule"):
        NasTrainConfig.preset("huge")
    with pytest.raises(LeanmlError, match="kernels must be"):
        tiny_train_cfg(space={**tiny_space().to_dict(), "kernels": [4]})
    assert NasTrainConfig.preset("full").subnets_per_step == 4
