"""Pruning sensitivity scan (course Lab 1) and automatic per-layer sparsity from it.

For every prunable layer and every sparsity on a grid, the validation accuracy
with only that layer magnitude-pruned. Tasks run through the executor
interface (serial, local process pool, or Ray); each task loads the
checkpoint itself and carries the validation images it is given (the caller
loads them: this module never fetches data).

Example:
    >>> scan = {"a": {0.5: 0.91, 0.9: 0.80}, "b": {0.5: 0.92, 0.9: 0.91}}
    >>> choose_sparsities(scan, base_accuracy=0.92, max_drop=0.015)
    {'a': 0.5, 'b': 0.9}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from leanml.config import Config, require
from leanml.data import ImageSet
from leanml.errors import LeanmlError
from leanml.executor import ExecutorConfig, run_tasks
from leanml.prune.fine_grained import FineGrainedConfig, magnitude_mask, prunable_layers
from leanml.report import Report
from leanml.train.checkpoint import load_model
from leanml.train.loop import evaluate


@dataclass
class SensitivityConfig(Config):
    """Sparsity grid, validation sample size, and where the tasks run."""

    sparsities: list[float] = field(default_factory=lambda: [0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    val_images: int = 2000
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def validate(self) -> None:
        require(bool(self.sparsities), "the sparsity grid is empty")
        for s in self.sparsities:
            require(0.0 <= s < 1.0, f"sparsity {s} is outside [0, 1)")
        require(self.val_images >= 1, "val_images must be >= 1")


@dataclass(frozen=True)
class ScanTask:
    """One (layer, sparsity) evaluation; ``layer`` None measures the dense model."""

    checkpoint: str
    val: ImageSet
    layer: str | None
    sparsity: float


def run_scan_task(task: ScanTask) -> float:
    """Validation accuracy of the checkpoint with only ``task.layer`` pruned to ``task.sparsity``."""
    model = load_model(task.checkpoint)
    if task.layer is not None:
        layer = dict(model.named_modules())[task.layer]
        with torch.no_grad():
            layer.weight.mul_(magnitude_mask(layer.weight, task.sparsity))
    return evaluate(model, task.val)[1]


def scan_sensitivity(
    checkpoint: str | Path, cfg: SensitivityConfig, val: ImageSet, progress: bool = True
) -> tuple[float, dict[str, dict[float, float]]]:
    """(dense validation accuracy, {layer: {sparsity: accuracy}}) for a saved checkpoint on ``val``.

    ``val`` is the validation split; a seeded sample of ``cfg.val_images`` of it is scanned.

    Example:
        >>> val = load_split("val", subset=2000)  # doctest: +SKIP
        >>> base, table = scan_sensitivity("runs/vgg", SensitivityConfig(), val)  # doctest: +SKIP
    """
    if len(val) == 0:
        raise LeanmlError("the sensitivity scan got an empty validation set", "pass the validation split's images")
    layers = list(prunable_layers(load_model(checkpoint), FineGrainedConfig()))
    sample = val.sample(cfg.val_images)
    tasks = [ScanTask(str(checkpoint), sample, None, 0.0)]
    tasks += [ScanTask(str(checkpoint), sample, n, s) for n in layers for s in cfg.sparsities]
    accs = run_tasks(run_scan_task, tasks, cfg.executor, progress, "sensitivity scan")
    table: dict[str, dict[float, float]] = {}
    for task, acc in zip(tasks[1:], accs[1:], strict=True):
        assert task.layer is not None
        table.setdefault(task.layer, {})[task.sparsity] = acc
    return accs[0], table


def choose_sparsities(scan: dict[str, dict[float, float]], base_accuracy: float, max_drop: float) -> dict[str, float]:
    """Per layer, the highest scanned sparsity whose accuracy stays within ``max_drop`` of the dense model."""
    chosen = {}
    for layer, curve in scan.items():
        ok = [s for s, acc in curve.items() if acc >= base_accuracy - max_drop]
        chosen[layer] = max(ok, default=0.0)
    return chosen


def choose_sparsities_for_size(
    scan: dict[str, dict[float, float]],
    base_accuracy: float,
    layer_numels: dict[str, int],
    other_bits: int,
    target_fraction: float,
    value_bits: int = 32,
) -> dict[str, float]:
    """Per-layer sparsities from the scan's grid that bring the model to ``target_fraction`` of its dense size.

    Greedy: repeatedly move the layer whose next grid step costs the least scanned accuracy per
    bit saved, until the size (bitmask encoding: 1 bit per weight + ``value_bits`` per nonzero;
    ``other_bits`` for everything unpruned) fits. Raises when even the densest grid point won't do.

    Example:
        >>> scan = {"a": {0.5: 0.9, 0.9: 0.5}, "b": {0.5: 0.9, 0.9: 0.89}}
        >>> choose_sparsities_for_size(scan, 0.9, {"a": 1000, "b": 1000}, 0, 0.5)
        {'a': 0.5, 'b': 0.9}
    """
    require(0.0 < target_fraction <= 1.0, f"target size fraction {target_fraction} is outside (0, 1]")
    missing = sorted(set(scan) - set(layer_numels))
    require(not missing, f"no weight count for scanned layer(s): {', '.join(missing)}")

    def bits(layer: str, s: float) -> float:
        n = layer_numels[layer]
        return n * value_bits if s == 0 else n + n * (1 - s) * value_bits

    chosen = dict.fromkeys(scan, 0.0)
    dense = sum(n * value_bits for n in layer_numels.values() if n) + other_bits
    budget = target_fraction * dense
    total = (
        sum(bits(layer, 0.0) for layer in scan)
        + other_bits
        + sum(n * value_bits for layer, n in layer_numels.items() if layer not in scan)
    )
    while total > budget:
        best: tuple[float, str, float] | None = None
        for layer, curve in scan.items():
            cur = chosen[layer]
            steps = sorted(s for s in curve if s > cur)
            if not steps:
                continue
            nxt = steps[0]
            acc_now = base_accuracy if cur == 0 else curve[cur]
            saved = bits(layer, cur) - bits(layer, nxt)
            if saved <= 0:
                continue
            cost = max(0.0, acc_now - curve[nxt]) / saved
            if best is None or cost < best[0]:
                best = (cost, layer, nxt)
        if best is None:
            raise LeanmlError(f"the scanned sparsities cannot reach {target_fraction:.0%} of the dense size",
                              "scan higher sparsities or raise the target size")  # fmt: skip
        _, layer, nxt = best
        total -= bits(layer, chosen[layer]) - bits(layer, nxt)
        chosen[layer] = nxt
    return chosen


def sensitivity_report(base_accuracy: float, scan: dict[str, dict[float, float]], title: str) -> Report:
    """The scan as a report: one accuracy-vs-sparsity curve per layer, and the table."""
    report = Report(title)
    report.add_text(f"dense validation accuracy: {base_accuracy:.2%}")
    series = {layer: sorted(curve.items()) for layer, curve in scan.items()}
    report.add_chart("validation accuracy vs sparsity (one layer pruned at a time)", series, "sparsity", "accuracy")
    grid = sorted({s for curve in scan.values() for s in curve})
    rows = [[layer, *(f"{curve.get(s, float('nan')):.2%}" for s in grid)] for layer, curve in scan.items()]
    report.add_table(["layer", *(f"{s:.0%}" for s in grid)], rows)
    return report


def save_scan(path: str | Path, base_accuracy: float, scan: dict[str, dict[float, float]]) -> None:
    """Write a scan as JSON (``{"base": accuracy, "scan": {layer: {sparsity: accuracy}}}``), what ``--scan`` reads.

    Example:
        >>> import tempfile
        >>> path = f"{tempfile.mkdtemp()}/scan.json"
        >>> save_scan(path, 0.9, {"fc": {0.5: 0.88}})
        >>> load_scan(path)
        (0.9, {'fc': {0.5: 0.88}})
    """
    import json

    from leanml.artifact import atomic_write

    text = json.dumps({"base": base_accuracy, "scan": scan}, indent=2)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def load_scan(path: str | Path) -> tuple[float, dict[str, dict[float, float]]]:
    """(base accuracy, {layer: {sparsity: accuracy}}) from a scan's JSON; a missing, non-JSON or non-scan file is a
    :class:`LeanmlError` naming it.

    Example:
        >>> load_scan("/nonexistent.json")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        leanml.errors.LeanmlError: scan file not found: /nonexistent.json
    """
    import json

    hint = "pass the .json that `leanml prune scan --report R.html` wrote next to R.html"
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise LeanmlError(f"scan file not found: {p}", hint) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LeanmlError(f"{p} is not a scan (not readable JSON: {e})", hint) from None
    try:
        base = float(doc["base"])
        curves = {str(layer): {float(s): float(a) for s, a in c.items()} for layer, c in doc["scan"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise LeanmlError(f"{p} is not a scan (needs 'base' and 'scan': {{layer: {{sparsity: accuracy}}}}; "
                          f"{type(e).__name__}: {e})", hint) from None  # fmt: skip
    if not curves:
        raise LeanmlError(f"{p} is not a scan: its 'scan' has no layers", hint)
    return base, curves
