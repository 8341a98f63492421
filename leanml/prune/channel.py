"""Channel pruning that physically removes channels, coupled through the dependency graph.

For each prunable channel group the kept channels are the most important
ones (a criterion from :mod:`leanml.prune.importance`: L1, L2, BN scale or
first-order Taylor), ordered by importance (the lab's reordering trick);
every member of the group (producers, batch norms, depthwise convs, and the
matching input slices of consumers) is sliced the same way. The result is a
smaller dense model.

How much to remove: one uniform ``ratio``, ``layer_ratios`` per producing
layer, or ``target_macs`` (a fraction of the model's MACs), for which the
uniform ratio is found by bisection on the profiler's MAC count.

The kept indices are recorded in the model's spec as a ``channel_prune``
transform, so :func:`leanml.train.save_checkpoint` saves a pruned model as
plain data + safetensors and :func:`leanml.train.load_checkpoint` rebuilds it.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> model = build_model("vgg").eval()
    >>> kept = prune_channels_(model, ChannelPruneConfig(ratio=0.5))
    >>> model.features[0].out_channels, model(torch.zeros(1, 1, 28, 28)).shape
    (16, torch.Size([1, 10]))
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.models.registry import ModelSpec, register_transform
from leanml.profile.graph import trace_ops
from leanml.profile.traced_ops import op_macs
from leanml.prune.depgraph import ChannelGroup, member_index, param_owner, trace_channel_groups
from leanml.prune.importance import IMPORTANCE, Grads, accumulate_gradients, channel_scores

TRANSFORM = "channel_prune"


@dataclass
class ChannelPruneConfig(Config):
    """How many channels to remove (``ratio``, ``layer_ratios`` or ``target_macs``) and by which ``importance``."""

    ratio: float = 0.3  # fraction of each prunable group's channels to remove
    layer_ratios: dict[str, float] = field(default_factory=dict)  # producing layer -> ratio (overrides ``ratio``)
    target_macs: float | None = None  # keep this fraction of the MACs; finds the uniform ratio
    importance: str = "l2"
    round_to: int = 1  # kept channels per group rounded to a multiple of this (8 suits SIMD kernels)
    exclude: list[str] = field(default_factory=list)  # layers whose output channels must stay
    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])

    def validate(self) -> None:
        for name, r in {"ratio": self.ratio, **self.layer_ratios}.items():
            require(0.0 <= r < 1.0, f"channel ratio {r} for {name} is outside [0, 1)", "e.g. 0.3")
        if self.target_macs is not None:
            require(0.0 < self.target_macs <= 1.0, f"target_macs {self.target_macs} is outside (0, 1]",
                    "give the fraction of the MACs to keep, e.g. 0.5")  # fmt: skip
        require(self.round_to >= 1, f"round_to must be >= 1, got {self.round_to}")
        require(self.importance in IMPORTANCE, f"unknown importance {self.importance!r}",
                f"choose one of: {', '.join(IMPORTANCE)}")  # fmt: skip


Modules = dict[str, nn.Module]


def _slice_out(module: nn.Module, idx: torch.Tensor) -> None:
    assert isinstance(module, nn.Conv2d | nn.Linear)
    module.weight = nn.Parameter(module.weight.detach()[idx].clone())
    if module.bias is not None:
        module.bias = nn.Parameter(module.bias.detach()[idx].clone())
    if isinstance(module, nn.Conv2d):
        module.out_channels = len(idx)
    else:
        module.out_features = len(idx)


def _slice_norm(modules: Modules, name: str, dim: int, idx: torch.Tensor) -> None:
    bn = modules[name]
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
    for attr in ("weight", "bias"):
        p = getattr(bn, attr)
        if p is not None:
            setattr(bn, attr, nn.Parameter(p.detach()[idx].clone()))
    for attr in ("running_mean", "running_var"):
        buf = getattr(bn, attr)
        if buf is not None:
            setattr(bn, attr, buf[idx].clone())
    bn.num_features = len(idx)


def _slice_depthwise(modules: Modules, name: str, dim: int, idx: torch.Tensor) -> None:
    conv = modules[name]
    assert isinstance(conv, nn.Conv2d)
    _slice_out(conv, idx)
    conv.in_channels = conv.groups = len(idx)


def _slice_in(modules: Modules, name: str, dim: int, idx: torch.Tensor) -> None:
    layer = modules[name]
    assert isinstance(layer, nn.Conv2d | nn.Linear)
    layer.weight = nn.Parameter(layer.weight.detach()[:, idx].clone())
    if isinstance(layer, nn.Conv2d):
        layer.in_channels = len(idx)
    else:
        layer.in_features = len(idx)


def _slice_param(modules: Modules, name: str, dim: int, idx: torch.Tensor) -> None:
    owner, attr = param_owner(modules, name)
    t = getattr(owner, attr)
    assert isinstance(t, torch.Tensor), name
    sliced = t.detach().index_select(dim, idx).clone()
    setattr(owner, attr, nn.Parameter(sliced, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else sliced)


# how each kind of group member is cut to an index along its channel axis: (modules, name, dim, index)
SLICERS: dict[str, Callable[[Modules, str, int, torch.Tensor], None]] = {
    "norms": _slice_norm, "depthwise": _slice_depthwise, "consumers": _slice_in, "params": _slice_param,
}  # fmt: skip


def _group_ratios(groups: list[ChannelGroup], modules: dict[str, nn.Module], cfg: ChannelPruneConfig,
                  ratio: float) -> dict[int, float]:  # fmt: skip
    """Removal ratio per prunable group id (fixed, excluded and producer-less groups are absent)."""
    unknown = sorted((set(cfg.exclude) | set(cfg.layer_ratios)) - set(modules))
    if unknown:
        raise LeanmlError(f"unknown layer name(s): {', '.join(unknown)}", "use names from `leanml profile`")
    out: dict[int, float] = {}
    placed: set[str] = set()
    for g in groups:
        if g.fixed or not g.producers or any(p in cfg.exclude for p in g.producers):
            continue
        given = {cfg.layer_ratios[p] for p in g.producers if p in cfg.layer_ratios}
        placed |= set(g.producers) & set(cfg.layer_ratios)
        if len(given) > 1:
            raise LeanmlError(f"conflicting ratios for coupled layers {', '.join(g.producers)}",
                              "their channels are removed together: give them one ratio")  # fmt: skip
        out[g.id] = given.pop() if given else ratio
    stray = sorted(set(cfg.layer_ratios) - placed)
    if stray:
        raise LeanmlError(f"layer(s) {', '.join(stray)} have no prunable output channels",
                          "the classifier, grouped convs and excluded layers keep their channels")  # fmt: skip
    return out


def plan_channel_keep(model: nn.Module, cfg: ChannelPruneConfig, grads: Grads | None = None,
                      ratio: float | None = None) -> dict[str, list[int]]:  # fmt: skip
    """Choose the kept channels: per producing layer, original indices in importance order.

    Example:
        >>> from leanml.models import build_model
        >>> kept = plan_channel_keep(build_model("vgg"), ChannelPruneConfig(ratio=0.25))
        >>> len(kept["features.0"])
        24
    """
    groups = trace_channel_groups(model, tuple(cfg.input_shape))
    modules = dict(model.named_modules())
    by_id = {g.id: g for g in groups}
    kept: dict[str, list[int]] = {}
    for gid, r in _group_ratios(groups, modules, cfg, cfg.ratio if ratio is None else ratio).items():
        g = by_id[gid]
        n_keep = g.size - round(g.size * r)
        if n_keep >= 1 and cfg.round_to > 1:
            n_keep = min(g.size, max(cfg.round_to, round(n_keep / cfg.round_to) * cfg.round_to))
        if n_keep < 1:
            raise LeanmlError(f"ratio {r} would remove every channel of {g.producers[0]!r}", "use a smaller ratio")
        score = channel_scores(cfg.importance, g, modules, grads)
        order = torch.argsort(score, descending=True, stable=True)[:n_keep]  # most important first
        for name in g.producers:
            kept[name] = order.tolist()
    return kept


@torch.no_grad()
def apply_channel_keep_(model: nn.Module, kept: dict[str, list[int]], input_shape: tuple[int, ...]) -> None:
    """Slice every group that has a producer in ``kept`` to those channels (in that order), in place."""
    groups = trace_channel_groups(model, input_shape)
    modules = dict(model.named_modules())
    keep: dict[int, torch.Tensor] = {}
    for g in groups:
        lists = [kept[p] for p in g.producers if p in kept]
        if not lists:
            continue
        if g.fixed or any(k != lists[0] for k in lists):
            raise LeanmlError(f"stored channel selection does not fit layers {', '.join(g.producers)}",
                              "the model spec and its pruning history disagree; re-create the checkpoint")  # fmt: skip
        idx = torch.tensor(lists[0], dtype=torch.long)
        if len(idx) < 1 or len(set(lists[0])) != len(idx) or int(idx.min()) < 0 or int(idx.max()) >= g.size:
            raise LeanmlError(f"invalid kept channel indices for {g.producers[0]!r}", "re-create the checkpoint")
        keep[g.id] = idx
    slots: dict[tuple[str, str, int], list[tuple[int, int, int, int]]] = {}  # (kind, name, dim) -> parts
    for g in groups:
        for kind, members in (("norms", g.norms), ("depthwise", g.depthwise), ("consumers", g.consumers)):
            for name, offset, repeat in members:
                slots.setdefault((kind, name, 0), []).append((offset, g.id, repeat, g.size))
        for name, dim, offset, repeat in g.params:
            slots.setdefault(("params", name, dim), []).append((offset, g.id, repeat, g.size))
    for g in groups:
        for name in g.producers if g.id in keep else ():
            _slice_out(modules[name], keep[g.id])
    for (kind, name, dim), parts in slots.items():
        if any(gid in keep for _, gid, _, _ in parts):
            index = torch.cat([member_index(offset, repeat, keep.get(gid, torch.arange(size)))
                               for offset, gid, repeat, size in sorted(parts)])  # fmt: skip
            SLICERS[kind](modules, name, dim, index)


@register_transform(TRANSFORM)
def _replay(model: nn.Module, step: dict[str, Any]) -> None:
    apply_channel_keep_(model, {str(k): [int(i) for i in v] for k, v in step["kept"].items()},
                        tuple(step["input_shape"]))  # fmt: skip


def _macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    return sum(op_macs(op) for op in trace_ops(model, input_shape))


def ratio_for_macs(model: nn.Module, cfg: ChannelPruneConfig, grads: Grads | None = None, iters: int = 14) -> float:
    """The uniform ratio whose pruned model keeps at most ``cfg.target_macs`` of the MACs (bisection).

    Example:
        >>> from leanml.models import build_model
        >>> r = ratio_for_macs(build_model("vgg"), ChannelPruneConfig(target_macs=0.5))
        >>> 0.25 < r < 0.35
        True
    """
    assert cfg.target_macs is not None
    shape = tuple(cfg.input_shape)
    budget = cfg.target_macs * _macs(model, shape)
    lo, hi = 0.0, 0.999
    for _ in range(iters):
        mid = (lo + hi) / 2
        trial = copy.deepcopy(model)
        try:
            apply_channel_keep_(trial, plan_channel_keep(trial, cfg, grads, ratio=mid), shape)
            fits = _macs(trial, shape) <= budget
        except LeanmlError:  # the ratio empties a layer: too much
            fits = True
        lo, hi = (lo, mid) if fits else (mid, hi)
    trial = copy.deepcopy(model)
    try:
        apply_channel_keep_(trial, plan_channel_keep(trial, cfg, grads, ratio=hi), shape)
    except LeanmlError as e:
        raise LeanmlError(f"no uniform ratio reaches {cfg.target_macs:.0%} of the MACs: {e.message}",
                          "raise target_macs or exclude fewer layers") from e  # fmt: skip
    if _macs(trial, shape) > budget:
        raise LeanmlError(f"no uniform ratio reaches {cfg.target_macs:.0%} of the MACs",
                          "raise target_macs or exclude fewer layers: the unprunable layers cost more")  # fmt: skip
    return hi


Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def prune_channels_(model: nn.Module, cfg: ChannelPruneConfig, batches: Batches | None = None) -> dict[str, list[int]]:
    """Remove channels in place; returns, per producing layer, the original indices it keeps (in new order).

    ``batches`` of (images, labels) are needed for ``importance="taylor"``. A model built by the
    registry gets the selection appended to its spec, so saving and reloading it rebuilds the
    pruned architecture.
    """
    grads = None
    if cfg.importance == "taylor":
        if batches is None:
            raise LeanmlError("taylor importance needs labelled batches", "pass batches=[(images, labels), ...]")
        grads = accumulate_gradients(model, batches)
    ratio = ratio_for_macs(model, cfg, grads) if cfg.target_macs is not None else cfg.ratio
    shape = tuple(cfg.input_shape)
    kept = plan_channel_keep(model, cfg, grads, ratio)
    apply_channel_keep_(model, kept, shape)
    spec = getattr(model, "leanml_spec", None)
    if isinstance(spec, ModelSpec):
        model.leanml_spec = spec.with_transform(  # type: ignore[assignment]
            {"kind": TRANSFORM, "input_shape": list(shape), "kept": kept}
        )
    return kept
