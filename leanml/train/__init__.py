"""Training, evaluation, distillation and checkpoints."""

from leanml.train.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from leanml.train.config import TrainConfig
from leanml.train.distill import distillation_loss
from leanml.train.loop import TrainResult, evaluate, train

__all__ = [
    "Checkpoint", "TrainConfig", "TrainResult", "distillation_loss", "evaluate",
    "load_checkpoint", "load_model", "save_checkpoint", "train",
]  # fmt: skip
