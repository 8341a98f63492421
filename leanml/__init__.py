"""leanml: make neural networks lean and run them fast.

The public API, re-exported from the sub-packages: each name is imported from its module on first use
(:data:`EXPORTS`), so ``import leanml`` (and the ``leanml`` command) starts without torch.

Example:
    >>> import leanml
    >>> model = leanml.build_model("vgg")
    >>> leanml.profile_model(model, measure=False).macs
    29128448
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Final

__version__ = "0.1.0"  # the one place: pyproject reads it (setuptools dynamic, from the text: keep it a literal)

EXPORTS: Final[dict[str, str]] = {
    "ChannelPruneConfig": "leanml.prune",
    "Recipe": "leanml.compress",
    "compress": "leanml.compress",
    "LeanmlError": "leanml.errors",
    "ModelProfile": "leanml.profile",
    "ModelSpec": "leanml.models",
    "NasTrainConfig": "leanml.nas",
    "SearchConfig": "leanml.nas",
    "TrainConfig": "leanml.train",
    "available_models": "leanml.models",
    "build_model": "leanml.models",
    "evaluate": "leanml.train",
    "load_checkpoint": "leanml.train",
    "load_model": "leanml.train",
    "measure_latency": "leanml.profile",
    "profile_model": "leanml.profile",
    "prune_channels_": "leanml.prune",
    "save_checkpoint": "leanml.train",
    "train": "leanml.train",
    "train_supernet": "leanml.nas",
}
"""Public name -> the module it is re-exported from."""

__all__ = sorted(EXPORTS)

SHADOWED: Final = frozenset({"train", "compress"})
"""Public names that are also sub-packages: ``leanml.train`` is the function, as ``leanml.train(cfg, out)``."""


class PublicAPI(types.ModuleType):
    """The type of the ``leanml`` module: importing the sub-package ``leanml.train`` does not rebind the public
    function ``leanml.train`` (the import system sets each sub-package on its parent; see :data:`SHADOWED`)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first access (PEP 562).

    Example:
        >>> import leanml
        >>> leanml.LeanmlError.__name__
        'LeanmlError'
    """
    if name not in EXPORTS:
        raise AttributeError(f"module 'leanml' has no attribute {name!r}")
    return getattr(importlib.import_module(EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})


sys.modules[__name__].__class__ = PublicAPI
