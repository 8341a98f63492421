"""What each traced torch op is for the shared tables: its op kind and plain shapes, hence its MACs and reuse rule.

A registry keyed by module type (matched along its MRO), function or method name
maps a traced :class:`~leanml.profile.graph.OpNode` to an :class:`OpShape`:
the kind the one MAC table (:mod:`leanml.profile.macs`) and the one reuse-rule
table (:data:`leanml.profile.memory.REUSE_RULES`) are keyed by, with the
reduction size, kernel and groups the MAC formula reads. Unregistered ops are
kind ``other``: 0 MACs, their own output buffer. Register more with
:func:`register_op_kind`.

Example:
    >>> from torch import nn
    >>> from leanml.profile.graph import OpNode
    >>> node = OpNode("fc", "fc", "call_module", "fc", nn.Linear(8, 4), ["x"], [(1, 8)], (1, 4))
    >>> op_shape(node).kind, op_macs(node)
    ('linear', 32)
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from leanml.profile.graph import OpNode
from leanml.profile.macs import count_macs


@dataclass(frozen=True)
class OpShape:
    """An op's kind in the shared tables and the plain shapes its MAC formula reads."""

    kind: str
    in_channels: int = 0  # reduction size: C_in (conv), in_features (linear), k (matmul)
    kernel: tuple[int, ...] = ()
    groups: int = 1


Classifier = Callable[[OpNode], OpShape]
_MODULES: dict[type[nn.Module], Classifier] = {}
_FUNCTIONS: dict[Any, Classifier] = {}
_METHODS: dict[str, Classifier] = {}


def register_op_kind(*keys: type[nn.Module] | Any) -> Callable[[Classifier], Classifier]:
    """Register how to read the :class:`OpShape` of module types, functions or method names (strings).

    Example:
        >>> @register_op_kind(nn.Bilinear)
        ... def _bilinear(node):
        ...     return OpShape("bilinear")  # 0 MACs until "bilinear" has a formula in leanml.profile.macs
    """

    def deco(fn: Classifier) -> Classifier:
        for key in keys:
            if isinstance(key, type) and issubclass(key, nn.Module):
                _MODULES[key] = fn
            elif isinstance(key, str):
                _METHODS[key] = fn
            else:
                _FUNCTIONS[key] = fn
        return fn

    return deco


def _fixed(kind: str, *keys: type[nn.Module] | Any) -> None:
    register_op_kind(*keys)(lambda node: OpShape(kind))


_OTHER = OpShape("other")


def op_shape(node: OpNode) -> OpShape:
    """The kind and plain shapes of one traced op (``input`` for the graph input, ``other`` when unregistered)."""
    if node.op == "placeholder":
        return OpShape("input")
    if node.module is not None:
        for cls in type(node.module).__mro__:
            if cls in _MODULES:
                return _MODULES[cls](node)
        return _OTHER
    if node.op == "call_function" and node.target in _FUNCTIONS:
        return _FUNCTIONS[node.target](node)
    if node.op == "call_method" and node.target in _METHODS:
        return _METHODS[node.target](node)
    return _OTHER


def op_macs(node: OpNode) -> int:
    """MACs of one traced op at its traced batch size, from the one MAC table; unknown ops count 0."""
    if node.shape is None:
        return 0
    s = op_shape(node)
    return count_macs(s.kind, node.numel, s.in_channels, s.kernel, s.groups)


@register_op_kind(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(node: OpNode) -> OpShape:
    conv = node.module
    assert isinstance(conv, nn.modules.conv._ConvNd)
    depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.in_channels > 1
    return OpShape("depthwise" if depthwise else "conv", conv.in_channels, tuple(conv.kernel_size), conv.groups)


@register_op_kind(nn.Linear)
def _linear(node: OpNode) -> OpShape:
    lin = node.module
    assert isinstance(lin, nn.Linear)
    return OpShape("linear", lin.in_features)


@register_op_kind(nn.functional.linear)
def _functional_linear(node: OpNode) -> OpShape:
    return OpShape("linear", node.input_shapes[0][-1])


@register_op_kind(torch.matmul, operator.matmul, torch.mm, torch.bmm)
def _matmul(node: OpNode) -> OpShape:
    # (..., n, k) @ (..., k, m) -> (..., n, m)
    return OpShape("matmul", node.input_shapes[0][-1])


_fixed("norm", nn.BatchNorm1d, nn.BatchNorm2d)
_fixed("activation", nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid)
_fixed("activation", torch.relu, nn.functional.relu, nn.functional.relu6, "relu", "relu_", "clamp")
_fixed("view", nn.Dropout, nn.Identity, nn.Flatten)
_fixed("view", torch.flatten, torch.reshape, nn.functional.dropout, torch.squeeze, torch.unsqueeze)
_fixed("view", "flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous")
_fixed("pool", nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_fixed("add", operator.add, torch.add)
_fixed("mul", operator.mul, torch.mul)
_fixed("concat", torch.cat)
