"""The CLI as a user meets it: real subprocesses, exit codes, one-line errors, no tracebacks."""

import json
import os
import subprocess
import sys

import pytest


def leanml(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leanml", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


def tiny_checkpoint(tmp_path, fake_data):
    """Train a vgg for one epoch on 256 synthetic images through the CLI; returns the checkpoint path."""
    ckpt = tmp_path / "tiny"
    proc = leanml("train", "--epochs", "1", "--data", str(fake_data), "--train-subset", "256", "--val-subset", "64",
                  "--out", str(ckpt), "--no-progress", "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return ckpt


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_errors_are_one_line_and_non_zero(tmp_path):
    assert_clean_error(leanml("profile", "--model", "alexnet", "--no-latency"), "unknown model 'alexnet'", "vgg")
    assert_clean_error(leanml("profile", str(tmp_path / "missing")), "checkpoint file not found", "missing")
    assert_clean_error(leanml("profile", "--model", "vgg", "--input-shape", "3,32,32", "--no-latency"), "does not fit")
    assert_clean_error(leanml("train", "--epochs", "0"), "epochs must be >= 1")
    assert_clean_error(
        leanml("train", "--epochs", "1", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "r")),
        "dataset-fashion-mnist",
        "LEANML_DATA",
    )
    corrupt = tmp_path / "c"
    (tmp_path / "c.safetensors").write_bytes(b"garbage")
    (tmp_path / "c.json").write_text("{")
    assert_clean_error(leanml("eval", str(corrupt)), "corrupt checkpoint sidecar")


def test_unwritable_output_is_a_clean_error(tmp_path, fake_data):
    (tmp_path / "file").write_text("x")
    proc = leanml("train", "--epochs", "1", "--data", str(fake_data), "--train-subset", "64", "--out",
                  str(tmp_path / "file" / "run"))  # fmt: skip
    assert_clean_error(proc, "cannot write")


def test_train_profile_eval_round_trip(tmp_path, fake_data):
    out = tmp_path / "run"
    proc = leanml("train", "--model", "vgg", "--epochs", "1", "--data", str(fake_data), "--train-subset", "512",
                  "--val-subset", "128", "--out", str(out), "--no-progress", "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    prof = leanml("profile", str(out), "--json", "--batch-sizes", "1", "--repeats", "2", "--threads", "1")
    assert prof.returncode == 0, prof.stderr
    doc = json.loads(prof.stdout)
    assert doc["macs"] == 29_128_448 and "test_acc" in doc["metrics"] and "1" in doc["latency"]
    ev = leanml("eval", str(out), "--data", str(fake_data))
    assert ev.returncode == 0 and "test accuracy" in ev.stdout
    again = leanml("train", "--epochs", "1", "--data", str(fake_data), "--out", str(out))
    assert_clean_error(again, "already exists", "--resume")


def test_help_and_models():
    assert leanml("--help").returncode == 0
    proc = leanml("models")
    assert proc.returncode == 0 and all(n in proc.stdout for n in ("vgg", "resnet", "mobilenetv2"))


@pytest.mark.slow
def test_profile_table_output():
    proc = leanml("profile", "--model", "resnet", "--batch-sizes", "1", "--repeats", "3", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "peak activation int8" in proc.stderr and "blocks.0.conv1" in proc.stderr


def test_quantize_linear_and_kmeans(tmp_path, fake_data):
    ckpt = tiny_checkpoint(tmp_path, fake_data)
    lin = leanml("quantize", "linear", str(ckpt), "--out", str(tmp_path / "int8"), "--data", str(fake_data),
                 "--calibration-images", "64", "--eval-subset", "64", "--threads", "1")  # fmt: skip
    assert lin.returncode == 0, lin.stderr
    assert "integer" in lin.stdout and (tmp_path / "int8.safetensors").exists()
    km = leanml("quantize", "kmeans", str(ckpt), "--out", str(tmp_path / "km"), "--bits", "2", "--data",
                str(fake_data), "--eval-subset", "64", "--threads", "1")  # fmt: skip
    assert km.returncode == 0, km.stderr
    assert "k-means 2-bit" in km.stdout and not (tmp_path / "km.codebooks.safetensors").exists()
    # one artifact, packed codes + codebooks: smaller than the float checkpoint it came from
    km_bytes = sum((tmp_path / f"km.{ext}").stat().st_size for ext in ("safetensors", "json"))
    assert km_bytes < (ckpt.parent / "tiny.safetensors").stat().st_size
    bad = leanml("quantize", "linear", str(ckpt), "--out", str(tmp_path / "x"), "--observer", "magic")
    assert_clean_error(bad, "unknown observer 'magic'")
    cache = {"LEANML_CACHE": str(tmp_path / "cache")}
    dep = leanml("deploy", str(tmp_path / "int8"), "--out", str(tmp_path / "c"), "--data", str(fake_data),
                 "--verify-images", "32", env=cache)  # fmt: skip
    assert dep.returncode == 0, dep.stderr
    assert "bit-exact" in dep.stdout and "peak SRAM" in dep.stdout and (tmp_path / "c" / "Makefile").exists()
    again = leanml("deploy", str(tmp_path / "int8"), "--out", str(tmp_path / "c"), env=cache)
    assert_clean_error(again, "already exists", "--overwrite")
    not_int = leanml("deploy", str(ckpt), "--out", str(tmp_path / "c2"), env=cache)
    assert_clean_error(not_int, "integer-model")


def test_quantize_mixed(tmp_path, fake_data):
    ckpt = tiny_checkpoint(tmp_path, fake_data)
    args = ["--val-images", "64", "--calibration-images", "64", "--eval-subset", "64", "--threads", "1"]
    mixed = leanml("quantize", "mixed", str(ckpt), "--out", str(tmp_path / "mp"), "--data", str(fake_data), *args)
    assert mixed.returncode == 0, mixed.stderr
    assert "uniform 4-bit" in mixed.stdout and (tmp_path / "mp.safetensors").exists()
    assert "sensitivity scan (7 layers x 6 widths, 64 images): 42/42 done" in mixed.stderr  # plain lines: a pipe
    tiny_budget = leanml("quantize", "mixed", str(ckpt), "--out", str(tmp_path / "mp2"), "--budget-kib", "0.01",
                         "--data", str(fake_data), "--val-images", "32")  # fmt: skip
    assert_clean_error(tiny_budget, "smallest achievable")


def test_prune_scan_then_fine(tmp_path, fake_data):
    ckpt = tiny_checkpoint(tmp_path, fake_data)
    scan = leanml("prune", "scan", str(ckpt), "--report", str(tmp_path / "scan.html"), "--val-images", "64",
                  "--sparsities", "0.5,0.9", "--backend", "serial", "--data", str(fake_data))  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    assert (tmp_path / "scan.html").exists() and (tmp_path / "scan.json").exists()
    fine = leanml("prune", "fine", str(ckpt), "--out", str(tmp_path / "sparse"), "--scan", str(tmp_path / "scan.json"),
                  "--max-drop", "5", "--data", str(fake_data), "--finetune-epochs", "1")  # fmt: skip
    assert fine.returncode == 0, fine.stderr
    assert "sparse vs" in fine.stdout and (tmp_path / "sparse.masks.safetensors").exists()
    sized = leanml("prune", "fine", str(ckpt), "--out", str(tmp_path / "small"), "--scan", str(tmp_path / "scan.json"),
                   "--target-size", "0.3", "--data", str(fake_data))  # fmt: skip
    assert sized.returncode == 0, sized.stderr
    size_pct = float(sized.stdout.split("dense (")[1].split("%")[0])
    assert size_pct <= 30.0
    bad = leanml("prune", "fine", str(ckpt), "--out", str(tmp_path / "x"), "--sparsity", "1.5")
    assert_clean_error(bad, "outside [0, 1)")


def test_prune_channel_saves_a_smaller_model_that_reloads(tmp_path, fake_data):
    ckpt = tiny_checkpoint(tmp_path, fake_data)
    out = tmp_path / "half"
    proc = leanml("prune", "channel", str(ckpt), "--out", str(out), "--target-macs", "0.5", "--importance", "taylor",
                  "--taylor-batches", "2", "--round-to", "4", "--finetune-epochs", "1", "--report",
                  str(tmp_path / "r.html"), "--data", str(fake_data), "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "MACs" in proc.stdout and "latency b=32" in proc.stdout and (tmp_path / "r.html").exists()
    from leanml.profile import profile_model
    from leanml.train import load_checkpoint

    dense = profile_model(load_checkpoint(ckpt).model, measure=False).macs
    pruned = load_checkpoint(out).model
    assert profile_model(pruned, measure=False).macs <= 0.5 * dense
    assert all(m.out_channels % 4 == 0 for m in pruned.modules() if type(m).__name__ == "Conv2d")
    bad = leanml("prune", "channel", str(ckpt), "--out", str(tmp_path / "x"), "--layer-ratio", "features.0")
    assert_clean_error(bad, "LAYER=RATIO")
    assert not (tmp_path / "x.json").exists()
