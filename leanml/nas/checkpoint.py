"""Supernet checkpoints: the one artifact format (safetensors + JSON), checked against their search space.

Tensors: ``supernet/<key>`` (the shared weights), ``teacher/<key>`` (the frozen
full network that progressive shrinking distills from, once it exists) and
``optim/<index>/<key>`` (optimizer state, for resuming). The sidecar holds the
space, the training config and progress.

Example:
    >>> import tempfile
    >>> from leanml.nas.space import SpaceConfig
    >>> space = SpaceConfig(stages=[[8, 1, 2]], stem=8, head=16, resolutions=[12])
    >>> path = tempfile.mkdtemp() + "/supernet"
    >>> save_supernet(path, Supernet(space), {"note": "demo"})
    >>> load_supernet(path).space == space
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from leanml.artifact import load_artifact, save_artifact
from leanml.errors import LeanmlError
from leanml.nas.space import SpaceConfig
from leanml.nas.supernet import Supernet
from leanml.train.checkpoint import optimizer_state, optimizer_tensors

KIND = "nas_supernet"


@dataclass
class SupernetCheckpoint:
    """A loaded supernet, its space and metadata, the teacher and optimizer state when saved."""

    supernet: Supernet
    meta: dict[str, Any]
    teacher: Supernet | None
    optimizer_state: dict[str, Any] | None

    @property
    def space(self) -> SpaceConfig:
        """The search space the supernet was built for."""
        return self.supernet.space


def save_supernet(
    path: str | Path,
    supernet: Supernet,
    meta: dict[str, Any] | None = None,
    teacher: Supernet | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Atomically save the supernet (+ teacher, optimizer state) with its space and ``meta``.

    Example:
        >>> save_supernet("runs/nas/supernet", Supernet(SpaceConfig()), {"note": "untrained"})  # doctest: +SKIP
    """
    tensors = {f"supernet/{k}": v for k, v in supernet.state_dict().items()}
    doc: dict[str, Any] = {"space": supernet.space.to_dict(), **(meta or {})}
    if teacher is not None:
        tensors.update({f"teacher/{k}": v for k, v in teacher.state_dict().items()})
    if optimizer is not None:
        opt_tensors, groups = optimizer_tensors(optimizer.state_dict())
        tensors.update(opt_tensors)
        doc["optimizer"] = {"type": type(optimizer).__name__, "param_groups": groups}
    save_artifact(path, tensors, doc, kind=KIND)


def _load_weights(net: Supernet, weights: dict[str, torch.Tensor], path: Path, what: str) -> None:
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0][:300]
        raise LeanmlError(f"{what} weights in {path} do not match the space in its sidecar: {first}",
                          "re-create the supernet checkpoint with `leanml nas train`") from e  # fmt: skip


def space_difference(a: SpaceConfig, b: SpaceConfig) -> list[str]:
    """Names of the space fields where ``a`` and ``b`` differ.

    Example:
        >>> space_difference(SpaceConfig(), SpaceConfig(kernels=[3, 5]))
        ['kernels']
    """
    da, db = a.to_dict(), b.to_dict()
    return sorted(k for k in da if da[k] != db.get(k))


def load_supernet(path: str | Path, expect_space: SpaceConfig | None = None) -> SupernetCheckpoint:
    """Load a supernet checkpoint; with ``expect_space``, a checkpoint of another space is an error.

    Example:
        >>> load_supernet("runs/nas/supernet", expect_space=SpaceConfig()).supernet  # doctest: +SKIP
    """
    p = Path(path)
    tensors, meta = load_artifact(p, kind=KIND)
    if not isinstance(meta.get("space"), dict):
        raise LeanmlError(f"{p} has no search space in its sidecar", "re-create it with `leanml nas train`")
    space = SpaceConfig.from_dict(meta["space"])
    if expect_space is not None and (diff := space_difference(space, expect_space)):
        raise LeanmlError(f"supernet {p} was trained on another search space (differs in {', '.join(diff)})",
                          "use the supernet trained for this space, or search in the supernet's space")  # fmt: skip
    net = Supernet(space)
    _load_weights(net, {k.removeprefix("supernet/"): v for k, v in tensors.items() if k.startswith("supernet/")},
                  p, "supernet")  # fmt: skip
    net.eval()
    teacher = None
    if any(k.startswith("teacher/") for k in tensors):
        teacher = Supernet(space)
        _load_weights(teacher, {k.removeprefix("teacher/"): v for k, v in tensors.items() if k.startswith("teacher/")},
                      p, "teacher")  # fmt: skip
    opt = None
    if "optimizer" in meta:
        opt = optimizer_state({k: v for k, v in tensors.items() if k.startswith("optim/")},
                              meta["optimizer"]["param_groups"])  # fmt: skip
    return SupernetCheckpoint(net, meta, teacher, opt)
