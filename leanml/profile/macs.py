"""Multiply-accumulate counts per op, dispatched through a registry keyed by module type or function.

Counted: convolutions (any groups), linear layers and matrix products. Not
counted (0 MACs, as in the course and in torch's FlopCounterMode): norms,
activations, pooling, adds. Register more with :func:`register_macs`.

Example:
    >>> from torch import nn
    >>> from leanml.profile.graph import OpNode
    >>> node = OpNode("fc", "fc", "call_module", "fc", nn.Linear(8, 4), ["x"], [(1, 8)], (1, 4))
    >>> op_macs(node)
    32
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from leanml.profile.graph import OpNode

MacCounter = Callable[[OpNode], int]
_MODULE_COUNTERS: dict[type[nn.Module], MacCounter] = {}
_FUNCTION_COUNTERS: dict[Any, MacCounter] = {}


def register_macs(key: type[nn.Module] | Any) -> Callable[[MacCounter], MacCounter]:
    """Register a MAC counter for a module type (matched along its MRO) or a function.

    Example:
        >>> @register_macs(nn.Bilinear)
        ... def _bilinear(node):
        ...     m = node.module
        ...     return math.prod(node.shape[:-1]) * m.in1_features * m.in2_features * m.out_features
    """

    def deco(fn: MacCounter) -> MacCounter:
        if isinstance(key, type) and issubclass(key, nn.Module):
            _MODULE_COUNTERS[key] = fn
        else:
            _FUNCTION_COUNTERS[key] = fn
        return fn

    return deco


def op_macs(node: OpNode) -> int:
    """MACs of one traced op at its traced batch size; unknown ops count 0."""
    if node.shape is None:
        return 0
    if node.module is not None:
        for cls in type(node.module).__mro__:
            if cls in _MODULE_COUNTERS:
                return _MODULE_COUNTERS[cls](node)
        return 0
    if node.op == "call_function" and node.target in _FUNCTION_COUNTERS:
        return _FUNCTION_COUNTERS[node.target](node)
    return 0


@register_macs(nn.Conv1d)
@register_macs(nn.Conv2d)
@register_macs(nn.Conv3d)
def _conv_macs(node: OpNode) -> int:
    conv = node.module
    assert isinstance(conv, nn.modules.conv._ConvNd) and node.shape is not None
    # each output element: (C_in / groups) * prod(kernel) multiply-adds
    return node.numel * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)


@register_macs(nn.Linear)
def _linear_macs(node: OpNode) -> int:
    lin = node.module
    assert isinstance(lin, nn.Linear)
    return node.numel * lin.in_features


@register_macs(torch.matmul)
@register_macs(operator.matmul)
@register_macs(torch.mm)
@register_macs(torch.bmm)
def _matmul_macs(node: OpNode) -> int:
    # (..., n, k) @ (..., k, m) -> (..., n, m): k MACs per output element
    return node.numel * node.input_shapes[0][-1]


@register_macs(nn.functional.linear)
def _functional_linear_macs(node: OpNode) -> int:
    return node.numel * node.input_shapes[0][-1]
