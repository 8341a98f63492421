"""The NAS workflow as a user runs it: train, sample, predictor, search, export, then profile the checkpoint."""

import json
import time

from leanml.nas.train import NasTrainConfig
from tests.cli.test_cli import assert_clean_error, leanml
from tests.nas.conftest import tiny_space


def test_tiny_space_trains_searches_and_exports_end_to_end(tmp_path, fake_data):
    started = time.perf_counter()
    cfg = NasTrainConfig(space=tiny_space().to_dict(), phase_epochs=[1, 1, 1, 1], batch_size=32, train_subset=128,
                         val_subset=64, calib_images=32)  # fmt: skip
    (tmp_path / "train.json").write_text(cfg.to_json())
    data = ("--data", str(fake_data))
    sn, samples, pred, found, best = (str(tmp_path / n) for n in ("sn", "samples", "pred", "search", "best"))
    steps = [
        ("train", "--config", str(tmp_path / "train.json"), "--out", sn, "--report", str(tmp_path / "train.html"),
         "--threads", "1", "--no-progress", *data),
        ("sample", sn, "--out", samples, "--count", "12", "--val-images", "64", "--calib-images", "32",
         "--backend", "serial", "--no-progress", *data),
        ("predictor", samples, "--out", pred, "--epochs", "20", "--hidden", "32", "--report",
         str(tmp_path / "pred.html"), "--no-progress"),
        ("search", pred, "--out", found, "--max-sram-kb", "3", "--max-macs", "2e5", "--population", "10",
         "--generations", "3", "--report", str(tmp_path / "search.html"), "--no-progress"),
        ("export", sn, "--search", found, "--out", best, "--calib-images", "32", "--threads", "1", *data),
    ]  # fmt: skip
    outputs = {}
    for step in steps:
        proc = leanml("nas", *step)
        assert proc.returncode == 0, (step[0], proc.stderr)
        outputs[step[0]] = proc.stdout
    elapsed = time.perf_counter() - started
    assert "held-out" in outputs["predictor"] and "best: r" in outputs["search"]
    for page in ("train", "pred", "search"):
        assert "<svg" in (tmp_path / f"{page}.html").read_text()

    meta = json.loads((tmp_path / "best.json").read_text())
    eff, res = meta["nas"]["efficiency"], meta["nas"]["arch"]["resolution"]
    assert eff["peak_sram"] <= 3 * 1024 and eff["macs"] <= 2e5 and meta["input"]["shape"] == [1, res, res]
    prof = leanml("profile", best, "--json", "--no-latency")
    assert prof.returncode == 0, prof.stderr
    doc = json.loads(prof.stdout)
    # one memory model: the searched figure is what `leanml profile` reports for the exported subnet
    assert doc["peak_activation_bytes"]["int8"] == eff["peak_sram"] and doc["macs"] == eff["macs"]
    assert doc["params"] == eff["params"] and doc["input_shape"] == [1, res, res]
    assert elapsed < 120, f"the tiny end-to-end NAS took {elapsed:.0f} s"


def test_nas_cli_errors_are_clean(tmp_path, tiny_supernet):
    pred = tmp_path / "pred"
    from leanml.nas.predictor import PredictorConfig, train_predictor
    from tests.nas.test_sample_predictor import synthetic_pairs

    space = tiny_space()
    train_predictor(synthetic_pairs(space, 20), space, PredictorConfig(epochs=2, hidden=8), progress=False).save(pred)
    assert_clean_error(leanml("nas", "search", str(pred), "--max-sram-kb", "0.1", "--out", str(tmp_path / "s")),
                       "peak_sram <= 0.1 KiB", "the smallest achievable is")  # fmt: skip
    bad = tmp_path / "arch.json"
    bad.write_text(json.dumps({**space.largest().to_dict(), "resolution": 99}))
    assert_clean_error(leanml("nas", "export", str(tiny_supernet), "--arch", str(bad), "--out", str(tmp_path / "b")),
                       "resolution 99 is outside the space")  # fmt: skip
    assert_clean_error(leanml("nas", "export", str(tmp_path / "nothing"), "--arch", str(bad), "--out", "x"),
                       "checkpoint file not found")  # fmt: skip
    assert_clean_error(leanml("nas", "train", "--schedule", "huge", "--out", str(tmp_path / "t")), "unknown schedule")
