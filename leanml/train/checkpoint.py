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

from leanml.artifact import Fields, artifact_paths, check_input_block, load_artifact, save_artifact
from leanml.errors import LeanmlError
from leanml.models.registry import ModelSpec, build_from_spec, check_json_safe, model_spec

KIND = "checkpoint"
RECREATE = "re-create the checkpoint"
MIN_PARAM_BOUND = 1 << 24  # a spec may always build this many values...
PRUNE_HEADROOM = 64  # ...or this many times what the file holds (its unpruned base model is built first)


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


def optimizer_state(
    tensors: dict[str, torch.Tensor], groups: Any, where: str | Path = "the checkpoint"
) -> dict[str, Any]:
    """Inverse of :func:`optimizer_tensors`; checks the groups (lists of distinct parameter indices, JSON values) and
    that every tensor is ``optim/<index>/<key>`` for a listed index, raising a :class:`LeanmlError` naming ``where``.

    Example:
        >>> optimizer_state({"optim/0/step": torch.tensor(1.0)}, [{"params": [0], "lr": 0.1}])["state"][0]["step"]
        tensor(1.)
    """
    hint = "re-create the checkpoint (or train without --resume)"
    top = Fields({"param_groups": groups}, where, "optimizer", hint)
    items = top.array("param_groups", max_len=1 << 16)
    listed: set[int] = set()
    for i, group in enumerate(items):
        g = Fields(group, where, f"optimizer.param_groups[{i}]", hint)
        for p in g.integers("params", lo=0, hi=1 << 40):
            if p in listed:
                raise g.fail(g.where("params"), "distinct parameter indices", p)
            listed.add(p)
        check_json_safe(group, f"field optimizer.param_groups[{i}] of {where}")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        parts = name.split("/", 2)
        if (
            len(parts) != 3
            or parts[0] != "optim"
            or not parts[1].isdigit()
            or int(parts[1]) not in listed
            or not parts[2]
        ):
            raise LeanmlError(f"{where}: tensor {name[:80]!r} is not optimizer state of a listed parameter", hint)
        state.setdefault(int(parts[1]), {})[parts[2]] = t
    return {"state": dict(sorted(state.items())), "param_groups": items}


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
    """Load a checkpoint's ``model/...`` tensors into ``model`` (strict: the same names, shapes and dtypes) and put it
    in eval mode.

    Example:
        >>> from leanml.models import build_model
        >>> m = build_model("vgg")
        >>> load_model_weights_(m, {f"model/{k}": v for k, v in m.state_dict().items()}, "inline").training
        False
    """
    weights = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    expected = model.state_dict()
    hint = "re-create the checkpoint"
    for key in sorted(set(expected) ^ set(weights)):
        what = "lacks" if key in expected else "has the unexpected tensor"
        raise LeanmlError(f"checkpoint {path} does not fit its model spec: it {what} model/{key[:100]}", hint)
    for key, t in weights.items():
        want = expected[key]
        if t.dtype != want.dtype or t.shape != want.shape:
            raise LeanmlError(f"checkpoint {path} does not fit its model spec: model/{key} is {t.dtype} "
                              f"{tuple(t.shape)}, the model needs {want.dtype} {tuple(want.shape)}", hint)  # fmt: skip
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise LeanmlError(f"checkpoint {path} does not fit its model spec: {first}", hint) from e
    return model.eval()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint and rebuild its model; bad files raise :class:`LeanmlError` naming the file and the field.

    Every sidecar field the loader uses is checked (the model spec, the input block, the optimizer's groups) and the
    model is sized on the meta device before it is built, so a damaged file never allocates more than it holds.

    Example:
        >>> load_checkpoint("runs/vgg").model  # doctest: +SKIP
    """
    tensors, meta = load_artifact(path, kind=KIND)
    _, sidecar = artifact_paths(path)
    spec = ModelSpec.from_dict(meta.get("model"), str(sidecar))
    if "input" in meta:
        check_input_block(meta["input"], sidecar, "re-create the checkpoint")
    unknown = [k for k in tensors if not k.startswith(("model/", "optim/"))]
    if unknown:
        raise LeanmlError(f"checkpoint {path} holds the unknown tensor {unknown[0][:80]!r}", RECREATE)
    if "optimizer" not in meta and any(k.startswith("optim/") for k in tensors):
        raise LeanmlError(
            f"checkpoint {path} holds optimizer tensors but no optimizer field", "re-create the checkpoint"
        )
    held = sum(t.numel() for k, t in tensors.items() if k.startswith("model/"))
    model = build_from_spec(spec, max_params=max(MIN_PARAM_BOUND, PRUNE_HEADROOM * held))
    load_model_weights_(model, tensors, path)
    opt = None
    if "optimizer" in meta:
        block = Fields(meta, sidecar, "", "re-create the checkpoint").sub("optimizer")
        block.string("type")
        opt = optimizer_state({k: v for k, v in tensors.items() if k.startswith("optim/")},
                              block.get("param_groups"), sidecar)  # fmt: skip
    return Checkpoint(model, meta, opt)


def load_model(path: str | Path) -> nn.Module:
    """Just the model of a checkpoint, in eval mode.

    Example:
        >>> load_model("runs/vgg")  # doctest: +SKIP
    """
    return load_checkpoint(path).model
