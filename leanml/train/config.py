"""The training config: one validated dataclass behind ``leanml train`` and :func:`leanml.train.train`.

Example:
    >>> TrainConfig(model="vgg", epochs=2).resolved_lr()
    0.05
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leanml.config import Config, require
from leanml.models.registry import check_model_name

OPTIMIZERS = ("sgd", "adamw")
DEFAULT_LR = {"sgd": 0.05, "adamw": 2e-3}


@dataclass
class TrainConfig(Config):
    """Everything that determines a training run (and so must match on ``--resume``).

    ``model`` is a registered name or a user factory ``"pkg.module:factory"`` (``model_overrides`` are its
    keyword arguments); ``data`` is a :func:`leanml.data.load_data` spec, resized to ``resolution`` if given.
    """

    model: str = "vgg"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data: str = "fashion-mnist"
    resolution: int | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    augment: bool = True
    seed: int = 0
    train_subset: int | None = None
    val_subset: int | None = None
    test_subset: int | None = None
    teacher: str | None = None
    kd_alpha: float = 0.9
    kd_temperature: float = 4.0
    channels_last: bool = True

    def validate(self) -> None:
        check_model_name(self.model)  # unknown names list the choices; a "pkg.module:factory" must import
        require(bool(self.data), "data must name a dataset", "e.g. fashion-mnist, imagefolder:DIR or npz:FILE")
        require(self.resolution is None or self.resolution >= 1, f"resolution must be >= 1, got {self.resolution}")
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}", "pass --epochs 1 or more")
        require(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        require(
            self.optimizer in OPTIMIZERS,
            f"unknown optimizer {self.optimizer!r}",
            f"choose one of: {', '.join(OPTIMIZERS)}",
        )
        require(self.lr is None or self.lr > 0, f"learning rate must be > 0, got {self.lr}")
        require(0.0 <= self.label_smoothing < 1.0, "label smoothing must be in [0, 1)")
        require(0.0 <= self.kd_alpha <= 1.0, f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        require(self.kd_temperature > 0, "kd_temperature must be > 0")
        for name in ("train_subset", "val_subset", "test_subset"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"{name} must be a positive count, got {value}")

    def resolved_lr(self) -> float:
        """The learning rate, defaulting per optimizer (SGD 0.05, AdamW 2e-3)."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]
