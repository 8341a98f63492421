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


def test_stats_from_raw_samples_match_measured_form():
    from leanml.profile import LatencyStats, Throughput

    stats = LatencyStats.from_samples([4.0, 1.0, 3.0, 2.0, 5.0], threads=2, batch_size=1)
    assert (stats.median_ms, stats.p10_ms, stats.p90_ms, stats.repeats) == (3.0, 1.4, 4.6, 5)
    assert Throughput.of([10.0, 30.0, 20.0]) == Throughput(20.0, 10.0, 30.0, [10.0, 30.0, 20.0])
    with pytest.raises(LeanmlError, match="no timing samples"):
        LatencyStats.from_samples([], threads=1)


def test_throughput_counts_items_per_second():
    import time as _time

    from leanml.profile import measure_throughput

    tp = measure_throughput(lambda: _time.sleep(0.01), items_per_call=10, warmup=0, repeats=3, threads=1)
    assert len(tp.runs) == 3 and tp.low <= tp.median <= tp.high
    assert 100 < tp.median < 1100  # 10 items per ~10 ms
