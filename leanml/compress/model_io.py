"""Saving and restoring the pipeline's float models, whether built by the registry, a user factory, or Python.

Registry and factory models (``build_model("vgg")``, ``build_model("pkg.mod:factory")``) carry a
:class:`~leanml.models.registry.ModelSpec` and rebuild from it. A module handed to :func:`leanml.compress` from Python
gets a ``python:<Class>`` spec: it cannot be rebuilt from a file alone, so restoring it copies the module the caller
passed in and replays the recorded structural transforms (channel pruning) before loading the weights.

Example:
    >>> import tempfile, torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    >>> attach_spec(net).name
    'python:torch.nn.modules.container.Sequential'
    >>> path = tempfile.mkdtemp() + "/m"
    >>> save_model(path, net, {"shape": [1, 8, 8]})
    >>> restored = restore_model(path, net)
    >>> torch.equal(restored[0].weight, net[0].weight)
    True
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from leanml.artifact import load_artifact
from leanml.errors import LeanmlError
from leanml.models.registry import ModelSpec, build_from_spec, replay_transforms
from leanml.train.checkpoint import KIND, load_model_weights_, save_checkpoint

PYTHON_PREFIX = "python:"


def attach_spec(model: nn.Module) -> ModelSpec:
    """The model's spec; a model without one gets a ``python:<module.Class>`` spec (restored from the live module)."""
    spec = getattr(model, "leanml_spec", None)
    if isinstance(spec, ModelSpec):
        return spec
    cls = type(model)
    spec = ModelSpec(f"{PYTHON_PREFIX}{cls.__module__}.{cls.__qualname__}", {})
    model.leanml_spec = spec  # type: ignore[assignment]
    return spec


def save_model(
    path: str | Path, model: nn.Module, input_desc: dict[str, Any], meta: dict[str, Any] | None = None
) -> None:
    """Atomically save ``model`` (any module: see :func:`attach_spec`) as a leanml checkpoint with its input block."""
    attach_spec(model)
    save_checkpoint(path, model, meta, input=input_desc)


def restore_model(path: str | Path, source: nn.Module) -> nn.Module:
    """Load a checkpoint written by :func:`save_model`; ``source`` is the module the run started from."""
    tensors, meta = load_artifact(path, kind=KIND)
    spec = ModelSpec.from_dict(meta.get("model", {}))
    if spec.name.startswith(PYTHON_PREFIX):
        base = attach_spec(source)
        if not base.name == spec.name:
            raise LeanmlError(
                f"{path} holds a {spec.name[len(PYTHON_PREFIX) :]}, not the model given "
                f"({base.name[len(PYTHON_PREFIX) :]})",
                "pass the same model, or a new run directory",
            )
        model = copy.deepcopy(source)
        replay_transforms(model, spec.transforms[len(base.transforms) :])
        model.leanml_spec = spec  # type: ignore[assignment]
    else:
        model = build_from_spec(spec)
    return load_model_weights_(model, tensors, path)
