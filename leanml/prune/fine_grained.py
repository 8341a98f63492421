"""Fine-grained (element-wise) magnitude pruning and N:M semi-structured masks (course Lab 1).

Three layers:

* pure tensor functions: :func:`magnitude_mask` (exactly ``round(numel * s)``
  smallest-magnitude weights removed), :func:`global_threshold_masks` (one
  ranking across layers), :func:`nm_mask` (keep the N largest of every M
  consecutive weights along the input dimension);
* small data objects: :class:`FineGrainedConfig`, :class:`PruneMasks`;
* a thin module transform: :func:`prune_fine_grained_` zeroes weights in place
  and returns the masks, which the fine-tuning loop re-applies after every
  optimizer step (``finetune(..., after_step=masks.apply_)``) so sparsity never
  drifts under momentum or weight decay.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> model = build_model("vgg")
    >>> masks = prune_fine_grained_(model, FineGrainedConfig(sparsity=0.75))
    >>> round(masks.report(model).sparsity, 2)
    0.75
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.prune.sparse_size import SparseSize, sparse_size

LAYER_TYPES: dict[str, type[nn.Module]] = {"conv2d": nn.Conv2d, "linear": nn.Linear}
SCOPES = ("layer", "global")


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask keeping the largest-|w| entries; exactly ``round(numel * sparsity)`` are removed.

    Example:
        >>> magnitude_mask(torch.tensor([0.1, -3.0, 0.5, 2.0]), 0.5).tolist()
        [False, True, False, True]
    """
    _check_sparsity(sparsity, "magnitude_mask")
    n_zero = round(weight.numel() * sparsity)
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    if n_zero:
        # stable sort: ties broken by position, so the same weights always go first
        order = torch.sort(weight.detach().abs().flatten(), stable=True).indices
        mask[order[:n_zero]] = False
    return mask.view_as(weight)


def global_threshold_masks(weights: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One magnitude ranking across all ``weights``: the smallest ``round(total * sparsity)`` go.

    Example:
        >>> m = global_threshold_masks({"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.1, 0.2])}, 0.5)
        >>> m["a"].tolist(), m["b"].tolist()
        ([True, True], [False, False])
    """
    _check_sparsity(sparsity, "global pruning")
    names = list(weights)
    flat = torch.cat([weights[n].detach().abs().flatten() for n in names])
    keep = magnitude_mask(flat, sparsity)
    masks, start = {}, 0
    for n in names:
        size = weights[n].numel()
        masks[n] = keep[start : start + size].view_as(weights[n])
        start += size
    return masks


def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M mask: in every group of ``m`` consecutive weights along the input dimension keep the ``n`` largest.

    weight: (C_out, C_in, ...) or (out, in); the groups run along the flattened
    input dimension of each output row, which must be divisible by ``m``.

    Example:
        >>> nm_mask(torch.tensor([[0.1, 0.9, -0.5, 0.2]]), 2, 4).tolist()
        [[False, True, True, False]]
    """
    require(0 < n < m, f"N:M needs 0 < N < M, got {n}:{m}")
    rows = weight.detach().reshape(weight.shape[0], -1)  # (C_out, K)
    if rows.shape[1] % m:
        raise LeanmlError(f"N:M pruning needs the input size {rows.shape[1]} to be a multiple of M={m}",
                          "exclude this layer or choose another M")  # fmt: skip
    groups = rows.abs().reshape(rows.shape[0], -1, m)  # (C_out, K/m, m)
    top = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return mask.reshape(weight.shape)


def _check_sparsity(value: float, where: str) -> None:
    require(
        isinstance(value, int | float) and 0.0 <= value < 1.0,
        f"sparsity {value!r} for {where} is outside [0, 1)",
        "give a fraction of weights to remove, e.g. 0.75",
    )


@dataclass
class FineGrainedConfig(Config):
    """What to prune and how: one sparsity or one per layer, layer-wise or global ranking, or N:M."""

    sparsity: float | dict[str, float] = 0.5
    scope: str = "layer"  # "layer": each layer ranked alone; "global": one ranking over all selected layers
    pattern: str = "unstructured"  # or "n:m"
    n: int = 2
    m: int = 4
    layer_types: list[str] = field(default_factory=lambda: ["conv2d", "linear"])
    exclude: list[str] = field(default_factory=list)

    def validate(self) -> None:
        require(self.scope in SCOPES, f"unknown scope {self.scope!r}", f"choose one of: {', '.join(SCOPES)}")
        require(self.pattern in ("unstructured", "n:m"), f"unknown pattern {self.pattern!r}", "unstructured or n:m")
        for t in self.layer_types:
            require(t in LAYER_TYPES, f"unknown layer type {t!r}", f"choose from: {', '.join(LAYER_TYPES)}")
        values = self.sparsity.values() if isinstance(self.sparsity, dict) else [self.sparsity]
        for v in values:
            _check_sparsity(v, "the config")
        require(not (self.scope == "global" and isinstance(self.sparsity, dict)),
                "global pruning takes one sparsity, not one per layer")  # fmt: skip


@dataclass(frozen=True)
class LayerSparsity:
    """Achieved sparsity and honest sizes of one pruned layer."""

    name: str
    numel: int
    zeros: int
    size: SparseSize

    @property
    def sparsity(self) -> float:
        """Fraction of weights that are zero."""
        return self.zeros / self.numel


@dataclass(frozen=True)
class SparsityReport:
    """Per-layer rows and model totals (dense fp32 bits of everything else included)."""

    layers: list[LayerSparsity]
    other_bits: int

    @property
    def sparsity(self) -> float:
        """Zeros over weights, across the pruned layers."""
        return sum(r.zeros for r in self.layers) / max(sum(r.numel for r in self.layers), 1)

    @property
    def sparse_bytes(self) -> float:
        """Model size with each pruned layer in its best sparse encoding, the rest dense fp32."""
        return (sum(r.size.best_bits for r in self.layers) + self.other_bits) / 8

    @property
    def dense_bytes(self) -> float:
        """The same model stored densely in fp32."""
        return (sum(r.numel * 32 for r in self.layers) + self.other_bits) / 8

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for reports."""
        return {
            "sparsity": self.sparsity,
            "sparse_bytes": self.sparse_bytes,
            "dense_bytes": self.dense_bytes,
            "layers": [{"name": r.name, "sparsity": r.sparsity, "encoding": r.size.best, "bits": r.size.best_bits}
                       for r in self.layers],
        }  # fmt: skip


class PruneMasks:
    """Masks by layer name; re-apply after every optimizer step to keep pruned weights at zero."""

    def __init__(
        self,
        masks: dict[str, torch.Tensor],
        pattern: str = "unstructured",
        m: int = 4,
        skipped: list[str] | None = None,
    ) -> None:
        self.masks = masks
        self.pattern = pattern
        self.m = m
        self.skipped = list(skipped or [])  # N:M: selected layers left dense (input size not a multiple of M)

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> nn.Module:
        """Zero every masked weight of ``model`` in place."""
        modules = dict(model.named_modules())
        for name, mask in self.masks.items():
            if name not in modules:
                raise LeanmlError(
                    f"pruned layer {name!r} is not in this model", "apply masks to the model they came from"
                )
            modules[name].weight.mul_(mask.to(modules[name].weight.dtype))
        return model

    def report(self, model: nn.Module, value_bits: int = 32) -> SparsityReport:
        """Achieved sparsity per layer and sizes under an honest sparse encoding."""
        modules = dict(model.named_modules())
        rows = []
        for name in self.masks:
            w = modules[name].weight.detach()
            size = sparse_size(w, value_bits, nm=self.m if self.pattern == "n:m" else None)
            rows.append(LayerSparsity(name, w.numel(), int((w == 0).sum()), size))
        pruned = {id(modules[n].weight) for n in self.masks}
        other = sum(p.numel() * 32 for p in model.parameters() if id(p) not in pruned)
        return SparsityReport(rows, other)

    def state(self) -> dict[str, torch.Tensor]:
        """Masks as uint8 tensors, ready for safetensors."""
        return {f"{name}.mask": mask.to(torch.uint8) for name, mask in self.masks.items()}


def prunable_layers(model: nn.Module, cfg: FineGrainedConfig) -> dict[str, nn.Conv2d | nn.Linear]:
    """The layers ``cfg`` selects, by name; unknown names in ``sparsity``/``exclude`` raise, listing valid ones."""
    types = tuple(LAYER_TYPES[t] for t in cfg.layer_types)
    candidates = {
        n: m for n, m in model.named_modules() if isinstance(m, types) and isinstance(m, nn.Conv2d | nn.Linear)
    }
    named = set(cfg.exclude) | (set(cfg.sparsity) if isinstance(cfg.sparsity, dict) else set())
    unknown = sorted(named - set(candidates))
    if unknown:
        raise LeanmlError(f"unknown layer name(s): {', '.join(unknown)}", f"prunable layers: {', '.join(candidates)}")
    if isinstance(cfg.sparsity, dict):
        candidates = {n: m for n, m in candidates.items() if n in cfg.sparsity}
    return {n: m for n, m in candidates.items() if n not in cfg.exclude}


def nm_incompatible(layers: dict[str, nn.Conv2d | nn.Linear], m: int) -> list[str]:
    """Names of ``layers`` whose input size (a weight row: C_in/groups * kh * kw) is not a multiple of ``m``.

    Example:
        >>> nm_incompatible({"stem": nn.Conv2d(1, 8, 3), "fc": nn.Linear(16, 4)}, 4)
        ['stem']
    """
    return [n for n, layer in layers.items() if layer.weight[0].numel() % m]


def prune_fine_grained_(model: nn.Module, cfg: FineGrainedConfig) -> PruneMasks:
    """Prune ``model`` in place per ``cfg``; returns the masks (re-apply them after each optimizer step).

    With N:M, layers whose input size is not a multiple of M (e.g. a 3x3 stem on one channel: 9) stay dense;
    they are listed in the result's ``skipped``.
    """
    layers = prunable_layers(model, cfg)
    weights = {n: m.weight for n, m in layers.items()}
    skipped: list[str] = []
    if cfg.pattern == "n:m":
        skipped = nm_incompatible(layers, cfg.m)
        if skipped and len(skipped) == len(weights):
            raise LeanmlError(f"no selected layer has an input size that is a multiple of M={cfg.m}: "
                              f"{', '.join(skipped)}", "choose another M, or another pattern")  # fmt: skip
        masks = {n: nm_mask(w, cfg.n, cfg.m) for n, w in weights.items() if n not in skipped}
    elif cfg.scope == "global":
        assert isinstance(cfg.sparsity, float | int)
        masks = global_threshold_masks(weights, float(cfg.sparsity))
    else:
        per_layer = cfg.sparsity if isinstance(cfg.sparsity, dict) else dict.fromkeys(weights, cfg.sparsity)
        masks = {n: magnitude_mask(w, per_layer[n]) for n, w in weights.items()}
    result = PruneMasks(masks, cfg.pattern, cfg.m, skipped)
    result.apply_(model)
    return result
