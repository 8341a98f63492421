from leanml.executor import ExecutorConfig
from leanml.models import build_model
from leanml.prune.sensitivity import SensitivityConfig, choose_sparsities, scan_sensitivity, sensitivity_report
from leanml.train import save_checkpoint


def test_scan_covers_every_layer_and_is_backend_independent(tmp_path, fake_data):
    save_checkpoint(tmp_path / "m", build_model("vgg", layers=[8, "M", 16, "M"]))
    results = []
    for backend in ("serial", "local"):
        cfg = SensitivityConfig([0.5, 0.99], val_images=64, executor=ExecutorConfig(backend=backend, workers=2))
        results.append(scan_sensitivity(tmp_path / "m", cfg, data_root=fake_data, progress=False))
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
