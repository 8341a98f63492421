import json

import pytest
import torch

from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.profile import measure_latency, profile_model


def test_stats_are_ordered_and_threads_restored():
    before = torch.get_num_threads()
    stats = measure_latency(lambda: torch.randn(64, 64) @ torch.randn(64, 64), warmup=1, repeats=9, threads=1)
    assert stats.p10_ms <= stats.median_ms <= stats.p90_ms
    assert stats.repeats == 9 and stats.threads == 1
    assert torch.get_num_threads() == before


def test_min_seconds_extends_repeats():
    stats = measure_latency(lambda: None, warmup=0, repeats=1, min_seconds=0.01)
    assert stats.repeats > 1


def test_bad_arguments():
    with pytest.raises(LeanmlError, match="repeats >= 1"):
        measure_latency(lambda: None, repeats=0)
    with pytest.raises(LeanmlError, match="thread count must be >= 1"):
        measure_latency(lambda: None, threads=0)


def test_profile_totals_and_json():
    model = build_model("mobilenetv2")
    prof = profile_model(model, batch_sizes=(1, 4), threads=1, repeats=3)
    assert prof.params == sum(p.numel() for p in model.parameters())
    assert prof.size_bytes(32) == 4 * prof.params and prof.size_bytes(4) == (prof.params * 4 + 7) // 8
    assert set(prof.latency) == {1, 4} and prof.latency[4].batch_size == 4
    doc = json.loads(json.dumps(prof.to_dict()))
    assert doc["peak_activation_bytes"]["int8"] * 4 == doc["peak_activation_bytes"]["fp32"]
    assert sum(r["params"] for r in doc["layers"]) == prof.params
    assert model.training  # profiling leaves the mode as it was
