import pytest

from leanml.data import load_split
from leanml.errors import LeanmlError
from leanml.executor import ExecutorConfig
from leanml.models import build_model
from leanml.prune.sensitivity import (
    SensitivityConfig,
    choose_sparsities,
    choose_sparsities_for_size,
    scan_sensitivity,
    sensitivity_report,
)
from leanml.train import save_checkpoint


def test_scan_covers_every_layer_and_is_backend_independent(tmp_path, fake_data):
    save_checkpoint(tmp_path / "m", build_model("vgg", layers=[8, "M", 16, "M"]))
    results = []
    for backend in ("serial", "local"):
        cfg = SensitivityConfig([0.5, 0.99], val_images=64, executor=ExecutorConfig(backend=backend, workers=2))
        results.append(scan_sensitivity(tmp_path / "m", cfg, load_split("val", fake_data), progress=False))
    (base, table), (base2, table2) = results
    assert set(table) == {"features.0", "features.4", "classifier"}
    assert all(set(curve) == {0.5, 0.99} for curve in table.values())
    assert base == base2 and table == table2  # same numbers whatever runs the tasks


def test_choose_sparsities_respects_the_drop_budget():
    scan = {"a": {0.4: 0.90, 0.6: 0.89, 0.8: 0.70}, "b": {0.4: 0.80, 0.6: 0.70, 0.8: 0.60}}
    chosen = choose_sparsities(scan, base_accuracy=0.90, max_drop=0.01)
    assert chosen == {"a": 0.6, "b": 0.0}  # b cannot be pruned at any scanned sparsity within budget


def test_report_has_a_curve_per_layer(tmp_path):
    report = sensitivity_report(0.9, {"a": {0.5: 0.9, 0.9: 0.5}, "b": {0.5: 0.8}}, "scan")
    report.save(tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert text.count("<polyline") == 2 and "accuracy vs sparsity" in text


def test_choose_sparsities_for_size_reaches_the_target_and_spares_sensitive_layers():
    scan = {
        "robust": {0.4: 0.90, 0.6: 0.90, 0.8: 0.899, 0.9: 0.898},
        "fragile": {0.4: 0.89, 0.6: 0.80, 0.8: 0.50, 0.9: 0.30},
    }
    numels = {"robust": 10_000, "fragile": 2_000}
    chosen = choose_sparsities_for_size(scan, 0.90, numels, other_bits=3_200, target_fraction=0.3)
    size = sum(n + n * (1 - chosen[k]) * 32 if chosen[k] else n * 32 for k, n in numels.items()) + 3_200
    dense = 32 * sum(numels.values()) + 3_200
    assert size <= 0.3 * dense
    assert chosen["robust"] == 0.9 and chosen["fragile"] < 0.9
    with pytest.raises(LeanmlError, match="cannot reach"):
        choose_sparsities_for_size(scan, 0.90, numels, other_bits=3_200, target_fraction=0.01)
