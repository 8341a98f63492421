"""One row of the stage table: accuracy, params, MACs, flash, peak SRAM, host latency at batch 1, time spent.

Float stages are measured in PyTorch (flash = fp32 weights, SRAM = fp32 peak from the one memory model);
the integer stages are measured on what they produce (the integer reference, the generated C).

Example:
    >>> row = StageRow("prune", "channel 40%", accuracy=0.9, params=1000)
    >>> row.to_dict()["params"]
    1000
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from leanml.data import ImageSet, batches
from leanml.profile.summary import profile_model
from leanml.profile.timing import model_latency
from leanml.quant.integer import IntegerModel
from leanml.train.loop import evaluate

LATENCY_REPEATS = 30
Int8Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class StageRow:
    """A stage's figures (``None`` where the stage does not measure one)."""

    stage: str
    label: str
    accuracy: float | None = None
    params: int | None = None
    macs: int | None = None
    flash_bytes: int | None = None
    sram_bytes: int | None = None
    latency_ms: float | None = None
    seconds: float = 0.0
    note: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the stage record and the report."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageRow:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def float_row(
    stage: str, label: str, model: nn.Module, test: ImageSet, input_shape: tuple[int, ...], threads: int | None
) -> StageRow:
    """Measure a float model: test accuracy, params, MACs, fp32 size and peak activations, latency at batch 1."""
    prof = profile_model(model, input_shape, measure=False)
    accuracy = evaluate(model, test)[1]
    latency = model_latency(model, input_shape, 1, threads, repeats=LATENCY_REPEATS).median_ms
    return StageRow(
        stage, label, accuracy, prof.params, prof.macs, prof.size_bytes(32), prof.peak_activation_bytes(4), latency
    )


def integer_accuracy(model: IntegerModel, test: ImageSet, run_int8: Int8Runner | None = None) -> float:
    """Top-1 accuracy of an integer model on ``test``: through ``run_int8`` (the compiled C engine, which the verify
    stage checks bit for bit against the reference) or the Python integer reference.

    Example:
        >>> integer_accuracy(imodel, test, dep.model.run_int8)  # doctest: +SKIP
        0.9127
    """
    run = run_int8 or model.run_int8
    correct = 0
    for x, y in batches(test, 500):
        codes = np.asarray(run(model.quantize_input(x))).reshape(len(y), -1)  # (B, classes) int8 codes
        correct += int((np.argmax(codes, axis=1) == y.numpy()).sum())
    return correct / max(len(test), 1)
