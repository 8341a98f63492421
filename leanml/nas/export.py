"""Hand-off: the chosen subnet as a normal leanml checkpoint, BN recalibrated, with its accuracy and costs.

The checkpoint's model is ``nas_mbv2`` (rebuilt from its spec on load, like any
reference model), ready for ``leanml eval``, fine-tuning, quantization and
deploy. Its ``input`` entry is the data's own block (dataset, classes,
normalization) with the subnet's resolution and how the dataset's images are
resized to it; ``nas`` holds the architecture, the space, the
supernet path and the efficiency figures (MACs, params, int8 peak SRAM from
the one memory model).

Example:
    >>> arch = load_search("runs/nas/search").best.arch        # doctest: +SKIP
    >>> export_subnet("runs/nas/supernet", arch, "runs/nas/best", load_data("fashion-mnist"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanml.artifact import artifact_paths
from leanml.config import Config, require
from leanml.data import ImageData
from leanml.nas.checkpoint import load_supernet
from leanml.nas.data import evaluate_at, image_batches, input_meta, recalibrate_bn
from leanml.nas.efficiency import Efficiency, EfficiencyModel
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.supernet import get_subnet
from leanml.threads import torch_threads
from leanml.train.checkpoint import save_checkpoint


@dataclass
class ExportConfig(Config):
    """BN recalibration images and the evaluation sample sizes (``None``: the whole split)."""

    calib_images: int = 2000
    val_images: int | None = None
    test_images: int | None = None

    def validate(self) -> None:
        require(self.calib_images >= 1, f"calib_images must be >= 1, got {self.calib_images}")
        for name in ("val_images", "test_images"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"{name} must be a positive count, got {value}")


@dataclass
class ExportResult:
    """Where the checkpoint went, the subnet's measured accuracy and its costs."""

    checkpoint: Path
    arch: Arch
    metrics: dict[str, float]
    efficiency: Efficiency

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"checkpoint": str(self.checkpoint), "arch": self.arch.to_dict(), "metrics": self.metrics,
                "efficiency": self.efficiency.to_dict()}  # fmt: skip


def export_subnet(
    supernet: str | Path,
    arch: Arch,
    out: str | Path,
    data: ImageData,
    cfg: ExportConfig | None = None,
    threads: int | None = None,
    expect_space: SpaceConfig | None = None,
) -> ExportResult:
    """Extract ``arch`` from the supernet, recalibrate BN, measure val and test accuracy, save a checkpoint.

    BN is recalibrated on a seeded sample of ``cfg.calib_images`` of ``data.train``; accuracies are on
    ``data.val`` and ``data.test`` (seeded samples when ``cfg`` limits them). ``expect_space`` (the space
    ``arch`` was searched in) must be the supernet's.

    Example:
        >>> result = export_subnet("runs/nas/supernet", Arch.from_json(open("arch.json").read()),
        ...                        "runs/nas/best", load_data("fashion-mnist"))  # doctest: +SKIP
        >>> result.metrics["test_acc"]  # doctest: +SKIP
        0.9
    """
    cfg = cfg or ExportConfig()
    ckpt = load_supernet(supernet, expect_space)
    ckpt.space.check(arch)
    r = arch.resolution
    with torch_threads(threads):
        sub = get_subnet(ckpt.supernet, arch)
        recalibrate_bn(sub, image_batches(data.train.sample(cfg.calib_images), r, 250))
        metrics = {"val_acc": evaluate_at(sub, data.val.sample(cfg.val_images), r),
                   "test_acc": evaluate_at(sub, data.test.sample(cfg.test_images), r)}  # fmt: skip
    eff = EfficiencyModel(ckpt.space)(arch)
    nas = {"arch": arch.to_dict(), "space": ckpt.space.to_dict(), "supernet": str(supernet),
           "efficiency": eff.to_dict(), "export_config": cfg.to_dict()}  # fmt: skip
    save_checkpoint(out, sub, {"nas": nas, "metrics": metrics}, input=input_meta(r, data.describe()))
    return ExportResult(artifact_paths(out)[0], arch, metrics, eff)
