"""A compression recipe: which stages run, each stage's settings, and the device budget they must meet.

A recipe is one validated config (YAML or JSON on disk). ``stages`` lists the stages to run, any subset of
:data:`STAGE_ORDER` in that order; each stage reads its own section. ``targets`` is the budget: the pipeline
chooses the pruning amount (and the patch grid) by measuring candidates, and reports any target it cannot meet.

Example:
    >>> recipe = builtin_recipe("mcu")
    >>> recipe.stages[:3]
    ['train', 'prune', 'finetune']
    >>> Recipe.from_dict({"stages": ["quantize", "deploy"]}).stages
    ['quantize', 'deploy']
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from leanml.config import Config, require
from leanml.errors import LeanmlError

STAGE_ORDER: Final[tuple[str, ...]] = ("train", "prune", "finetune", "quantize", "deploy", "verify")
"""Every stage, in the order they run; a recipe runs any subset, in this order."""

PRUNE_METHODS: Final[tuple[str, ...]] = ("channel", "fine")
DEPLOY_TARGETS: Final[tuple[str, ...]] = ("host", "cortex-m4", "cortex-m7")


@dataclass
class Targets(Config):
    """The device budget. ``None`` = no target. Flash and SRAM are the deployed int8 model's (KiB)."""

    flash_kib: float | None = None  # weights + biases + requantization constants of the generated C
    sram_kib: float | None = None  # the arena: peak activation memory of the static plan
    latency_ms: float | None = None  # host C engine, batch 1, median
    max_accuracy_drop: float | None = None  # points (0-100) below the float baseline
    # The same budgets relative to the unpruned model quantized to int8 (what a built-in recipe can say about any model)
    flash_fraction: float | None = None
    sram_fraction: float | None = None
    latency_fraction: float | None = None

    def validate(self) -> None:
        for name in ("flash_kib", "sram_kib", "latency_ms"):
            value = getattr(self, name)
            require(value is None or value > 0, f"target {name} must be > 0, got {value}", "or leave it out")
        for name in ("flash_fraction", "sram_fraction", "latency_fraction"):
            value = getattr(self, name)
            require(
                value is None or 0 < value <= 1,
                f"target {name} must be in (0, 1], got {value}",
                "e.g. 0.5 = half of the unpruned int8 model's",
            )
        drop = self.max_accuracy_drop
        require(drop is None or 0 <= drop <= 100, f"max_accuracy_drop must be in 0..100 points, got {drop}")

    def structural(self) -> bool:
        """Whether any target constrains the model's structure (flash, SRAM or latency)."""
        values = (
            self.flash_kib,
            self.sram_kib,
            self.latency_ms,
            self.flash_fraction,
            self.sram_fraction,
            self.latency_fraction,
        )
        return any(v is not None for v in values)

    def needs_latency(self) -> bool:
        """Whether meeting the targets needs the C engine timed (a latency target)."""
        return self.latency_ms is not None or self.latency_fraction is not None


@dataclass
class TrainStage(Config):
    """Train the model from its initial weights (SGD, cosine schedule, augmentation)."""

    epochs: int = 2
    lr: float = 0.05
    batch_size: int = 128
    subset: int | None = None  # train on this many images (default: all)

    def validate(self) -> None:
        require(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}", "leave out the train stage instead")
        require(self.lr > 0 and self.batch_size >= 1, "train.lr must be > 0 and train.batch_size >= 1")
        require(self.subset is None or self.subset >= 1, "train.subset must be >= 1")


@dataclass
class PruneStage(Config):
    """Channel pruning (by ``ratio``, ``target_macs`` or chosen from the targets) or fine-grained magnitude pruning.

    With ``method: channel`` and neither ``ratio`` nor ``target_macs``, the ratio is the smallest that meets the
    recipe's flash/SRAM/latency targets, found by bisection on measured candidates.
    """

    method: str = "channel"
    ratio: float | None = None
    target_macs: float | None = None  # keep this fraction of the MACs
    sparsity: float = 0.5  # fine-grained: fraction of weights zeroed
    importance: str = "l2"
    round_to: int = 1
    exclude: list[str] = field(default_factory=list)
    max_ratio: float = 0.9  # the search never prunes more than this

    def validate(self) -> None:
        require(
            self.method in PRUNE_METHODS,
            f"unknown prune.method {self.method!r}",
            f"choose one of: {', '.join(PRUNE_METHODS)}",
        )
        require(self.ratio is None or 0 <= self.ratio < 1, f"prune.ratio must be in [0, 1), got {self.ratio}")
        require(self.target_macs is None or 0 < self.target_macs <= 1, "prune.target_macs must be in (0, 1]")
        require(
            not (self.ratio is not None and self.target_macs is not None),
            "give prune.ratio or prune.target_macs, not both",
        )
        require(0 < self.sparsity < 1, f"prune.sparsity must be in (0, 1), got {self.sparsity}")
        require(0 < self.max_ratio < 1, f"prune.max_ratio must be in (0, 1), got {self.max_ratio}")
        require(self.round_to >= 1, "prune.round_to must be >= 1")


@dataclass
class FinetuneStage(Config):
    """Recover accuracy after pruning; distilled from the stage's input model when ``distill``."""

    epochs: int = 1
    lr: float = 0.01
    batch_size: int = 128
    distill: bool = True
    subset: int | None = None

    def validate(self) -> None:
        require(self.epochs >= 1, f"finetune.epochs must be >= 1, got {self.epochs}", "or leave the stage out")
        require(self.lr > 0 and self.batch_size >= 1, "finetune.lr must be > 0 and finetune.batch_size >= 1")
        require(self.subset is None or self.subset >= 1, "finetune.subset must be >= 1")


@dataclass
class QuantizeStage(Config):
    """int8 post-training quantization (``qat_epochs: 0``) or quantization-aware training."""

    observer: str = "minmax"
    calibration_images: int = 512
    qat_epochs: int = 0
    qat_lr: float = 1e-3
    batch_size: int = 128

    def validate(self) -> None:
        require(self.calibration_images >= 1, "quantize.calibration_images must be >= 1")
        require(self.qat_epochs >= 0 and self.qat_lr > 0 and self.batch_size >= 1, "bad quantize QAT schedule")


@dataclass
class DeployStage(Config):
    """Generate C with a static memory plan; ``patch: auto`` tries patch grids and keeps the smallest arena."""

    target: str = "host"
    patch: int | str = 0  # 0 = off, n = n x n patches, "auto" = measured choice
    in_place: bool = True
    prefix: str = "leanml_model"

    def validate(self) -> None:
        require(
            self.target in DEPLOY_TARGETS,
            f"unknown deploy.target {self.target!r}",
            f"choose one of: {', '.join(DEPLOY_TARGETS)}",
        )
        require(
            self.patch == "auto" or (isinstance(self.patch, int) and self.patch >= 0),
            f"deploy.patch must be 0, a grid size or 'auto', got {self.patch!r}",
        )


@dataclass
class VerifyStage(Config):
    """Compare the C output with the integer reference, bit for bit (``images: null`` = the whole test split)."""

    images: int | None = None

    def validate(self) -> None:
        require(self.images is None or self.images >= 1, "verify.images must be >= 1 (or null for the whole split)")


@dataclass
class Recipe(Config):
    """Stages to run, their settings, the targets, and the data/evaluation settings shared by all stages."""

    name: str = "custom"
    stages: list[str] = field(default_factory=lambda: list(STAGE_ORDER))
    targets: Targets = field(default_factory=Targets)
    train: TrainStage = field(default_factory=TrainStage)
    prune: PruneStage = field(default_factory=PruneStage)
    finetune: FinetuneStage = field(default_factory=FinetuneStage)
    quantize: QuantizeStage = field(default_factory=QuantizeStage)
    deploy: DeployStage = field(default_factory=DeployStage)
    verify: VerifyStage = field(default_factory=VerifyStage)
    eval_images: int | None = None  # evaluate every stage on this many test images (default: all)
    seed: int = 0
    threads: int | None = None

    def validate(self) -> None:
        unknown = [s for s in self.stages if s not in STAGE_ORDER]
        require(
            not unknown,
            f"unknown stage(s) {', '.join(map(repr, unknown))} in the recipe",
            f"stages are, in order: {', '.join(STAGE_ORDER)}",
        )
        require(bool(self.stages), "the recipe has no stages", f"list some of: {', '.join(STAGE_ORDER)}")
        require(len(set(self.stages)) == len(self.stages), "a stage is listed twice in the recipe")
        order = [STAGE_ORDER.index(s) for s in self.stages]
        require(
            order == sorted(order),
            f"stages {self.stages} are out of order",
            f"list them in this order: {', '.join(STAGE_ORDER)}",
        )
        for needs, stage in (("quantize", "deploy"), ("deploy", "verify")):
            require(
                stage not in self.stages or needs in self.stages,
                f"the {stage} stage needs the {needs} stage before it",
                f"add {needs!r} to stages",
            )
        require(self.eval_images is None or self.eval_images >= 1, "eval_images must be >= 1")
        require(self.threads is None or self.threads >= 1, "threads must be >= 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Build from plain data; each stage section is validated by its own config (unknown keys name the stage)."""
        require(isinstance(data, dict), "a recipe must be a mapping of sections")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        require(not unknown, f"unknown recipe key(s): {', '.join(unknown)}", f"valid keys: {', '.join(sorted(names))}")
        built: dict[str, Any] = {}
        for key, value in data.items():
            kind = hints[key]
            if isinstance(kind, type) and issubclass(kind, Config):
                require(isinstance(value, dict), f"recipe section {key!r} must be a mapping")
                try:
                    built[key] = kind.from_dict(value)
                except LeanmlError as e:
                    raise LeanmlError(f"recipe section {key!r}: {e.message}", e.hint) from e
            else:
                built[key] = value
        return cls(**built)

    def with_overrides(self, **sections: Any) -> Recipe:
        """A copy with some sections' fields replaced, e.g. ``with_overrides(train={"epochs": 1})``."""
        data = self.to_dict()
        for key, value in sections.items():
            if isinstance(data.get(key), dict) and isinstance(value, dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return Recipe.from_dict(data)


# Fine-tuning: 6 epochs keep the reference models within 1 point after the mcu budget's pruning, 3 do not
# (benchmarks/results/compress.md).
BUILTIN_RECIPES: Final[dict[str, dict[str, Any]]] = {
    "mcu": {
        "name": "mcu",
        "stages": list(STAGE_ORDER),
        "targets": {"flash_fraction": 0.33, "sram_fraction": 0.5, "max_accuracy_drop": 1.0},
        "prune": {"method": "channel", "round_to": 4},
        "finetune": {"epochs": 6, "distill": True},
        "quantize": {"calibration_images": 512},
        "deploy": {"target": "host", "patch": "auto"},
    },
    "cpu": {
        "name": "cpu",
        "stages": list(STAGE_ORDER),
        "targets": {"latency_fraction": 0.5, "max_accuracy_drop": 1.0},
        "prune": {"method": "channel", "round_to": 8},
        "finetune": {"epochs": 6, "distill": True},
        "quantize": {"calibration_images": 512},
        "deploy": {"target": "host", "patch": 0},
    },
}
"""Built-in recipes: ``mcu`` (int8; flash and SRAM first, patch-based inference when it lowers the peak) and ``cpu``
(latency first: channel counts rounded to SIMD widths, no patches)."""


def builtin_recipe(name: str) -> Recipe:
    """A built-in recipe by name.

    Example:
        >>> builtin_recipe("cpu").deploy.patch
        0
    """
    if name not in BUILTIN_RECIPES:
        raise LeanmlError(f"unknown built-in recipe {name!r}", f"choose one of: {', '.join(BUILTIN_RECIPES)}")
    return Recipe.from_dict(BUILTIN_RECIPES[name])


def load_recipe(source: str | Path) -> Recipe:
    """A recipe from a YAML/JSON file, or a built-in name (``mcu``, ``cpu``).

    A file may start from a built-in with ``base: mcu`` and override sections field by field.

    Example:
        >>> load_recipe("mcu").name
        'mcu'
    """
    if str(source) in BUILTIN_RECIPES and not Path(source).is_file():
        return builtin_recipe(str(source))
    data = Config.read(source)
    base = data.pop("base", None)
    if base is None:
        return Recipe.from_dict(data)
    require(isinstance(base, str), "recipe 'base' must name a built-in recipe", f"one of: {', '.join(BUILTIN_RECIPES)}")
    return builtin_recipe(base).with_overrides(**data)
