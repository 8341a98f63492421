import random

import pytest

from leanml.errors import LeanmlError
from leanml.nas.predictor import AccuracyModel, PredictorConfig, train_predictor
from leanml.nas.sample import SampleConfig, SampleSet, measure_archs, sample_architectures, sample_list
from leanml.nas.space import SpaceConfig
from tests.nas.conftest import splits

SMALL = dict(val_images=64, calib_images=32, chunk=2, threads=1)


def test_samples_are_measured_through_the_executor_and_resume(tmp_path, tiny_supernet, fake_data):
    cfg = SampleConfig(count=4, backend="serial", **SMALL)
    first = sample_architectures(tiny_supernet, cfg, tmp_path / "s", *splits(fake_data), progress=False)
    assert len(first.records) == 4 and all(0.0 <= r["val_acc"] <= 1.0 and r["macs"] > 0 for r in first.records)
    with pytest.raises(LeanmlError, match="already exists"):
        sample_architectures(tiny_supernet, cfg, tmp_path / "s", *splits(fake_data), progress=False)
    more = SampleConfig(count=6, backend="serial", **SMALL)
    resumed = sample_architectures(tiny_supernet, more, tmp_path / "s", *splits(fake_data), resume=True,
                                   progress=False)  # fmt: skip
    at_once = sample_architectures(tiny_supernet, more, tmp_path / "t", *splits(fake_data), progress=False)
    assert resumed.records == at_once.records and resumed.records[:4] == first.records
    assert SampleSet.load(tmp_path / "s").records == resumed.records
    with pytest.raises(LeanmlError, match="measured differently"):
        sample_architectures(tiny_supernet, SampleConfig(count=6, backend="serial", **{**SMALL, "val_images": 32}),
                             tmp_path / "s", *splits(fake_data), resume=True, progress=False)  # fmt: skip


def test_local_process_pool_gives_the_serial_results(tiny_supernet, fake_data, space):
    archs = sample_list(space, 4, seed=1)
    serial = measure_archs(
        tiny_supernet, archs, SampleConfig(backend="serial", **SMALL), *splits(fake_data), progress=False
    )
    pooled = measure_archs(tiny_supernet, archs, SampleConfig(backend="local", workers=2, **SMALL), *splits(fake_data),
                           progress=False)  # fmt: skip
    assert pooled == serial


def synthetic_pairs(space, n, seed=0):
    """Accuracy that depends on resolution, width, kernels and depth (a function the MLP can learn)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = space.sample(rng)
        ks = [k for s in a.kernels for k in s]
        acc = 0.7 + 0.004 * a.resolution + 0.05 * a.width + 0.002 * sum(ks) / len(ks) + 0.01 * sum(a.depths)
        out.append((a, acc))
    return out


def test_predictor_learns_and_reports_held_out_error(tmp_path):
    space = SpaceConfig()
    pairs = synthetic_pairs(space, 300)
    fit = train_predictor(pairs, space, PredictorConfig(epochs=60, hidden=64), progress=False)
    assert fit.metrics["n_holdout"] == 60 and fit.metrics["n_train"] == 240
    assert fit.metrics["mae_points"] < 1.0 and fit.metrics["kendall_tau"] > 0.8
    fit.save(tmp_path / "p")
    loaded = AccuracyModel.load(tmp_path / "p")
    archs = [a for a, _ in pairs[:5]]
    assert loaded.predict(archs) == pytest.approx(fit.predict(archs), abs=1e-6)
    assert loaded.metrics == fit.metrics
    with pytest.raises(LeanmlError, match="at least 2"):
        train_predictor(pairs[:1], space, PredictorConfig(), progress=False)
    with pytest.raises(LeanmlError, match="outside the space"):
        fit.predict([SpaceConfig(resolutions=[36]).largest()])
