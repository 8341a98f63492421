"""Model checkpoints: weights (+ optional optimizer state) in safetensors, spec and metrics in JSON.

Layout inside the safetensors file: ``model/<state-dict key>`` for the model,
``optim/<param index>/<state key>`` for optimizer tensors. The sidecar holds
the model spec, the input description (``ImageData.describe()``: shape,
per-channel mean/std, dataset spec, classes), the optimizer's param groups and
any metadata the caller adds (training config, metrics, history).

Example:
    >>> import tempfile
    >>> from leanml.models import build_model
    >>> path = tempfile.mkdtemp() + "/vgg"
    >>> save_checkpoint(path, build_model("vgg"), {"metrics": {"test_acc": 0.5}})
    >>> ckpt = load_checkpoint(path)
    >>> ckpt.meta["metrics"]["test_acc"], type(ckpt.model).__name__
    (0.5, 'VGG')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanml.artifact import load_artifact, save_artifact
from leanml.errors import LeanmlError
from leanml.models.registry import ModelSpec, build_from_spec, model_spec

KIND = "checkpoint"


def default_input() -> dict[str, Any]:
    """The input block of a model trained on Fashion-MNIST at 28x28 (what checkpoints get without an ``input``).

    Example:
        >>> default_input()["dataset"], default_input()["shape"]
        ('fashion-mnist', [1, 28, 28])
    """
    from leanml.data.fashion_mnist import input_block  # lazily: only this default needs Fashion-MNIST

    return input_block()


def __getattr__(name: str) -> Any:
    """``INPUT`` (deprecated: use :func:`default_input` or ``ImageData.describe()``), built on first use."""
    if name == "INPUT":
        return default_input()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model, its metadata, and optimizer state if saved."""

    model: nn.Module
    meta: dict[str, Any]
    optimizer_state: dict[str, Any] | None


def optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split ``optimizer.state_dict()`` into flat tensors and JSON-safe param groups."""
    tensors: dict[str, torch.Tensor] = {}
    for idx, entries in state["state"].items():
        for key, value in entries.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim/{idx}/{key}"] = t
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = t
    return {"state": dict(sorted(state.items())), "param_groups": groups}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    input: dict[str, Any] | None = None,
) -> None:
    """Atomically save ``model`` (built by the registry) with ``meta``, optional optimizer state, and the
    ``input`` block it eats (default: :func:`default_input`, Fashion-MNIST at 28x28).

    Example:
        >>> save_checkpoint("runs/net", model, {"epoch": 1}, input=data.describe())  # doctest: +SKIP
    """
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    block = input if input is not None else default_input()
    doc: dict[str, Any] = {"model": model_spec(model).to_dict(), "input": block, **(meta or {})}
    if optimizer is not None:
        opt_tensors, groups = optimizer_tensors(optimizer.state_dict())
        tensors.update(opt_tensors)
        doc["optimizer"] = {"type": type(optimizer).__name__, "param_groups": groups}
    save_artifact(path, tensors, doc, kind=KIND)


def load_model_weights_(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> nn.Module:
    """Load a checkpoint's ``model/...`` tensors into ``model`` (strict) and put it in eval mode.

    Example:
        >>> from leanml.models import build_model
        >>> m = build_model("vgg")
        >>> load_model_weights_(m, {f"model/{k}": v for k, v in m.state_dict().items()}, "inline").training
        False
    """
    weights = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise LeanmlError(f"checkpoint {path} does not fit its model spec: {first}", "re-create the checkpoint") from e
    return model.eval()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint and rebuild its model; bad files raise :class:`LeanmlError`."""
    tensors, meta = load_artifact(path, kind=KIND)
    model = build_from_spec(ModelSpec.from_dict(meta.get("model", {})))
    load_model_weights_(model, tensors, path)
    opt = None
    if "optimizer" in meta:
        opt = optimizer_state(
            {k: v for k, v in tensors.items() if k.startswith("optim/")}, meta["optimizer"]["param_groups"]
        )
    return Checkpoint(model, meta, opt)


def load_model(path: str | Path) -> nn.Module:
    """Just the model of a checkpoint, in eval mode.

    Example:
        >>> load_model("runs/vgg")  # doctest: +SKIP
    """
    return load_checkpoint(path).model
