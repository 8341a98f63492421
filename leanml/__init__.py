"""leanml: make neural networks lean and run them fast.

The public API, re-exported from the sub-packages:

Example:
    >>> import leanml
    >>> model = leanml.build_model("vgg")
    >>> leanml.profile_model(model, measure=False).macs
    29128448
"""

from leanml.errors import LeanmlError
from leanml.models import ModelSpec, available_models, build_model
from leanml.nas import NasTrainConfig, SearchConfig, train_supernet  # also registers the nas_mbv2 model
from leanml.profile import ModelProfile, measure_latency, profile_model
from leanml.prune import ChannelPruneConfig, prune_channels_  # also registers the channel_prune transform
from leanml.train import TrainConfig, evaluate, load_checkpoint, load_model, save_checkpoint, train

__version__ = "0.1.0"

__all__ = [
    "ChannelPruneConfig", "LeanmlError", "ModelProfile", "ModelSpec", "NasTrainConfig", "SearchConfig", "TrainConfig",
    "available_models", "build_model", "evaluate", "load_checkpoint", "load_model", "measure_latency",
    "profile_model", "prune_channels_", "save_checkpoint", "train", "train_supernet",
]  # fmt: skip
