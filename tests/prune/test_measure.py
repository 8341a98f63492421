"""Latency in the pruning comparison: medians with their p10–p90 range, "within noise" when the ranges overlap."""

from leanml.profile.timing import LatencyStats
from leanml.prune.measure import ModelMeasure, comparison_table, speedup


def stats(median: float, p10: float, p90: float) -> LatencyStats:
    return LatencyStats(median, p10, p90, median, 0.0, 30, 1, 1)


def test_a_clear_speedup_has_its_range() -> None:
    assert speedup(stats(2.0, 1.9, 2.1), stats(1.0, 0.95, 1.05)) == "2.00x faster (1.81–2.21x)"
    assert speedup(stats(1.0, 0.95, 1.05), stats(2.0, 1.9, 2.1)) == "0.50x slower (0.45–0.55x)"


def test_overlapping_ranges_are_within_noise() -> None:
    # the busy-machine case of issue 16: a 0.00x "speedup" from one slow outlier median
    assert speedup(stats(3.6, 3.4, 4.0), stats(5.0, 1.8, 6.5)).startswith("within noise: 0.72x")


def test_table_rows_show_the_spread() -> None:
    base = ModelMeasure(100, 1000, None, {1: stats(2.0, 1.9, 2.1)})
    row = comparison_table(base, ModelMeasure(50, 500, None, {1: stats(1.0, 0.95, 1.05)}))[1][-1]
    assert row == ["latency b=1 (1 thr)", "2.000 ms (p10–p90 1.900–2.100)", "1.000 ms (p10–p90 0.950–1.050)",
                   "2.00x faster (1.81–2.21x)"]  # fmt: skip
