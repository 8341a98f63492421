"""Channel importance criteria for channel pruning, in a registry keyed by name.

Every criterion maps a channel group to one score per channel (higher = keep),
summed over the group's members, so coupled channels (a residual stage, a
depthwise conv and its producer) are judged together:

- ``l1`` / ``l2``: norm of each producer's (and depthwise conv's) output-channel weights;
- ``l1_input``: L1 of the weights that read each channel (every consumer's input columns;
  OFA's channel sorting of the NAS supernet, :mod:`leanml.nas.channel_sort`);
- ``bn``: |gamma| of the group's batch norms (network slimming); falls back to ``l2`` without one;
- ``taylor``: first-order Taylor estimate of the loss change when a channel is removed,
  |sum over the channel's parameters of w * dL/dw|, with gradients accumulated over a few
  labelled batches (Molchanov et al. 2019; Torch-Pruning's ``TaylorImportance``).

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> from leanml.prune.depgraph import trace_channel_groups
    >>> model = build_model("vgg")
    >>> group = trace_channel_groups(model, (1, 28, 28))[1]  # [0] is the fixed input
    >>> scores = channel_scores("l1", group, dict(model.named_modules()), None)
    >>> scores.shape
    torch.Size([32])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.prune.depgraph import ChannelGroup

Modules = dict[str, nn.Module]
Grads = dict[str, torch.Tensor]  # parameter name -> accumulated gradient
Criterion = Callable[[ChannelGroup, Modules, Grads | None], torch.Tensor]

IMPORTANCE: dict[str, Criterion] = {}


def register_importance(name: str) -> Callable[[Criterion], Criterion]:
    """Decorator adding ``fn(group, modules, grads) -> (group.size,) scores`` under ``name``."""

    def deco(fn: Criterion) -> Criterion:
        IMPORTANCE[name] = fn
        return fn

    return deco


def _weighted(layer: nn.Module) -> nn.Conv2d | nn.Linear:
    assert isinstance(layer, nn.Conv2d | nn.Linear), type(layer)
    return layer


def _rows(t: torch.Tensor, offset: int, repeat: int, size: int, dim: int = 0) -> torch.Tensor:
    """A member's slice of ``t`` along ``dim``, one row per group channel: (size, -1)."""
    return t.narrow(dim, offset, size * repeat).movedim(dim, 0).reshape(size, -1)


def _norm_score(group: ChannelGroup, modules: Modules, p: int) -> torch.Tensor:
    score = torch.zeros(group.size)
    for name in group.producers:
        score += _weighted(modules[name]).weight.detach().flatten(1).norm(p=p, dim=1)  # (C_out,)
    for name, offset, repeat in group.depthwise:
        score += _rows(_weighted(modules[name]).weight.detach(), offset, repeat, group.size).norm(p=p, dim=1)
    return score


@register_importance("l1")
def l1_importance(group: ChannelGroup, modules: Modules, grads: Grads | None) -> torch.Tensor:
    """Sum of |w| over each output channel of the group's producers and depthwise convs."""
    return _norm_score(group, modules, 1)


@register_importance("l2")
def l2_importance(group: ChannelGroup, modules: Modules, grads: Grads | None) -> torch.Tensor:
    """L2 norm of each output channel's weights (the course lab's criterion), summed over members."""
    return _norm_score(group, modules, 2)


@register_importance("l1_input")
def l1_input_importance(group: ChannelGroup, modules: Modules, grads: Grads | None) -> torch.Tensor:
    """Sum of |w| over the input columns each consumer reads from the group (repeated features summed)."""
    score = torch.zeros(group.size)
    for name, offset, repeat in group.consumers:
        weight = modules[name].weight  # (out, in, ...)
        assert isinstance(weight, torch.Tensor), name
        cols = weight.detach()[:, offset : offset + group.size * repeat].abs()  # (out, size * repeat, ...)
        score += cols.transpose(0, 1).reshape(group.size, -1).sum(1)  # (size,)
    return score


@register_importance("bn")
def bn_importance(group: ChannelGroup, modules: Modules, grads: Grads | None) -> torch.Tensor:
    """|gamma| of the group's batch norms; groups without an affine batch norm use ``l2``."""
    gammas = [(modules[name].weight, offset, repeat) for name, offset, repeat in group.norms]
    gammas = [g for g in gammas if isinstance(g[0], torch.Tensor)]  # affine=False norms have none
    if not gammas:
        return _norm_score(group, modules, 2)
    score = torch.zeros(group.size)
    for weight, offset, repeat in gammas:
        assert isinstance(weight, torch.Tensor)
        score += _rows(weight.detach(), offset, repeat, group.size).abs().mean(1)
    return score


@register_importance("taylor")
def taylor_importance(group: ChannelGroup, modules: Modules, grads: Grads | None) -> torch.Tensor:
    """|sum(w * grad)| per channel, over producers, depthwise convs, batch norms and channel-wise parameters."""
    if grads is None:
        raise LeanmlError("taylor importance needs gradients", "pass labelled batches (prune_channels_(..., batches=))")
    score = torch.zeros(group.size)
    slices = [(name, 0, 1) for name in group.producers] + group.depthwise + group.norms  # (module, offset, repeat)
    for name, offset, repeat in slices:
        for pname, param in modules[name].named_parameters(recurse=False):
            grad = grads[f"{name}.{pname}" if name else pname]
            score += _rows(param.detach() * grad, offset, repeat, group.size).sum(1).abs()
    for name, dim, offset, repeat in group.params:
        value = dict(modules[""].named_parameters()).get(name)  # a buffer has no gradient
        if value is not None and name in grads:
            score += _rows(value.detach() * grads[name], offset, repeat, group.size, dim).sum(1).abs()
    return score


def accumulate_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Grads:
    """Sum of cross-entropy gradients over ``batches`` of (images, labels), without touching ``.grad``.

    Example:
        >>> from leanml.models import build_model
        >>> model = build_model("vgg")
        >>> g = accumulate_gradients(model, [(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))])
        >>> g["features.0.weight"].shape
        torch.Size([32, 1, 3, 3])
    """
    params = dict(model.named_parameters())
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    was_training = model.training
    model.eval()  # running BN statistics stay untouched
    n = 0
    try:
        for images, labels in batches:
            loss = nn.functional.cross_entropy(model(images), labels)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, g in zip(params, grads, strict=True):
                if g is not None:
                    total[name] += g
            n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise LeanmlError("no batches to compute gradients from", "pass at least one (images, labels) batch")
    return total


def channel_scores(kind: str, group: ChannelGroup, modules: Modules, grads: Grads | None) -> torch.Tensor:
    """Scores (group.size,) of ``group``'s channels under criterion ``kind``."""
    if kind not in IMPORTANCE:
        raise LeanmlError(f"unknown importance {kind!r}", f"choose one of: {', '.join(IMPORTANCE)}")
    return IMPORTANCE[kind](group, modules, grads)
