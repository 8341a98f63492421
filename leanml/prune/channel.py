"""Channel pruning that physically removes channels, coupled through the dependency graph.

For each prunable channel group the kept channels are the most important
ones (L1 or L2 norm of the producers' output-channel weights, or the batch
norms' |gamma|), ordered by importance (the lab's reordering trick); every
member of the group (producers, batch norms, depthwise convs, and the
matching input slices of consumers) is sliced the same way. The result is a
smaller dense model.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> model = build_model("vgg").eval()
    >>> kept = prune_channels_(model, ChannelPruneConfig(ratio=0.5))
    >>> model.features[0].out_channels, model(torch.zeros(1, 1, 28, 28)).shape
    (16, torch.Size([1, 10]))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.prune.depgraph import ChannelGroup, trace_channel_groups

IMPORTANCE = ("l1", "l2", "bn")


@dataclass
class ChannelPruneConfig(Config):
    """Uniform ``ratio`` of channels to remove from every prunable group, by ``importance``."""

    ratio: float = 0.3
    importance: str = "l2"
    exclude: list[str] = field(default_factory=list)  # layers whose output channels must stay
    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])

    def validate(self) -> None:
        require(0.0 <= self.ratio < 1.0, f"channel ratio {self.ratio} is outside [0, 1)", "e.g. 0.3")
        require(self.importance in IMPORTANCE, f"unknown importance {self.importance!r}",
                f"choose one of: {', '.join(IMPORTANCE)}")  # fmt: skip


def group_importance(group: ChannelGroup, modules: dict[str, nn.Module], kind: str) -> torch.Tensor:
    """Importance of each of the group's channels (size,), summed over its members."""
    score = torch.zeros(group.size)
    if kind == "bn":
        for name in group.norms:
            bn = modules[name]
            assert isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.weight is not None
            score += bn.weight.detach().abs()
        if group.norms:
            return score
    p = 1 if kind == "l1" else 2
    for name in group.producers + group.depthwise:
        layer = modules[name]
        assert isinstance(layer, nn.Conv2d | nn.Linear)
        score += layer.weight.detach().flatten(1).norm(p=p, dim=1)
    return score


def _slice_out(module: nn.Module, idx: torch.Tensor) -> None:
    assert isinstance(module, nn.Conv2d | nn.Linear)
    module.weight = nn.Parameter(module.weight.detach()[idx].clone())
    if module.bias is not None:
        module.bias = nn.Parameter(module.bias.detach()[idx].clone())
    if isinstance(module, nn.Conv2d):
        module.out_channels = len(idx)
    else:
        module.out_features = len(idx)


def _slice_norm(bn: nn.Module, idx: torch.Tensor) -> None:
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


def _slice_depthwise(conv: nn.Module, idx: torch.Tensor) -> None:
    assert isinstance(conv, nn.Conv2d)
    _slice_out(conv, idx)
    conv.in_channels = conv.groups = len(idx)


@torch.no_grad()
def prune_channels_(model: nn.Module, cfg: ChannelPruneConfig) -> dict[str, list[int]]:
    """Remove channels in place; returns, per producing layer, the original indices it keeps (in new order)."""
    groups = trace_channel_groups(model, tuple(cfg.input_shape))
    modules = dict(model.named_modules())
    unknown = sorted(set(cfg.exclude) - set(modules))
    if unknown:
        raise LeanmlError(f"unknown layer name(s) to exclude: {', '.join(unknown)}")
    keep: dict[int, torch.Tensor] = {}
    for g in groups:
        if g.fixed or not g.producers or any(p in cfg.exclude for p in g.producers):
            continue
        n_keep = g.size - round(g.size * cfg.ratio)
        if n_keep < 1:
            raise LeanmlError(f"ratio {cfg.ratio} would remove every channel of {g.producers[0]!r}")
        score = group_importance(g, modules, cfg.importance)
        keep[g.id] = torch.sort(torch.argsort(score, descending=True, stable=True)[:n_keep]).values
        # reorder by importance (the lab's trick): most important channels first
        keep[g.id] = keep[g.id][torch.argsort(score[keep[g.id]], descending=True, stable=True)]
    inputs: dict[str, list[tuple[int, int, int, int]]] = {}  # consumer -> (offset, group, repeat, size)
    for g in groups:
        for name, offset, repeat in g.consumers:
            inputs.setdefault(name, []).append((offset, g.id, repeat, g.size))
    kept_by_layer: dict[str, list[int]] = {}
    for g in groups:
        if g.id not in keep:
            continue
        idx = keep[g.id]
        for name in g.producers:
            _slice_out(modules[name], idx)
            kept_by_layer[name] = idx.tolist()
        for name in g.norms:
            _slice_norm(modules[name], idx)
        for name in g.depthwise:
            _slice_depthwise(modules[name], idx)
    for name, segments in inputs.items():
        if not any(gid in keep for _, gid, _, _ in segments):
            continue
        parts = []
        for offset, gid, repeat, size in sorted(segments):
            chans = keep.get(gid, torch.arange(size))
            parts.append((offset + chans[:, None] * repeat + torch.arange(repeat)[None, :]).flatten())
        in_idx = torch.cat(parts)
        layer = modules[name]
        assert isinstance(layer, nn.Conv2d | nn.Linear)
        layer.weight = nn.Parameter(layer.weight.detach()[:, in_idx].clone())
        if isinstance(layer, nn.Conv2d):
            layer.in_channels = len(in_idx)
        else:
            layer.in_features = len(in_idx)
    return kept_by_layer
