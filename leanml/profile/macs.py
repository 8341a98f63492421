"""The one MAC table: multiply-accumulates of an op, from its kind and plain shapes (pure Python, no torch).

Every counted op does a fixed number of multiply-adds per output element: a
conv (standard, grouped or depthwise) ``(C_in / groups) * prod(kernel)``, a
linear layer ``in_features``, a matrix product ``(.., n, k) @ (.., k, m)``
its inner size ``k``. Everything else (norms, activations, views, pooling,
adds, concat, quantize) counts 0 MACs, as in the course and in torch's
FlopCounterMode. The traced torch ops (:mod:`leanml.profile.traced_ops`), the
deploy IR (:mod:`leanml.deploy.ir`) and the NAS efficiency model all count
through :func:`count_macs`; register another kind with :func:`register_mac_formula`.

Example:
    >>> count_macs("conv", out_numel=28 * 28 * 32, in_channels=1, kernel=(3, 3))  # 3x3 conv, 1 -> 32 channels
    225792
    >>> count_macs("depthwise", out_numel=14 * 14 * 96, in_channels=96, kernel=(3, 3), groups=96)
    169344
    >>> count_macs("linear", out_numel=10, in_channels=128), count_macs("pool", out_numel=128)
    (1280, 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

# (in_channels, kernel, groups) -> multiply-adds per output element
MacFormula = Callable[[int, tuple[int, ...], int], int]
MAC_FORMULAS: dict[str, MacFormula] = {}


def register_mac_formula(*kinds: str) -> Callable[[MacFormula], MacFormula]:
    """Register the per-output-element MAC formula of one or more op kinds.

    Example:
        >>> @register_mac_formula("bilinear")
        ... def _bilinear(in_channels, kernel, groups):
        ...     return in_channels * kernel[0]  # in1 * in2 features per output
        >>> count_macs("bilinear", out_numel=4, in_channels=3, kernel=(5,))
        60
        >>> del MAC_FORMULAS["bilinear"]
    """

    def deco(fn: MacFormula) -> MacFormula:
        for kind in kinds:
            MAC_FORMULAS[kind] = fn
        return fn

    return deco


@register_mac_formula("conv", "depthwise")
def _conv(in_channels: int, kernel: tuple[int, ...], groups: int) -> int:
    # each output element: (C_in / groups) * prod(kernel) multiply-adds (depthwise: groups = C_in)
    return (in_channels // groups) * math.prod(kernel)


@register_mac_formula("linear", "matmul")
def _inner_product(in_channels: int, kernel: tuple[int, ...], groups: int) -> int:
    # linear: in_features per output; matmul (..., n, k) @ (..., k, m): k per output element
    return in_channels


def count_macs(kind: str, out_numel: int, in_channels: int = 0, kernel: tuple[int, ...] = (), groups: int = 1) -> int:
    """MACs of one op of ``kind`` writing ``out_numel`` elements; kinds without a formula count 0.

    in_channels: the reduction size: C_in for convs, in_features for linear, the inner size k for matmul.

    Example:
        >>> count_macs("conv", out_numel=12 * 12 * 12, in_channels=12, kernel=(3, 3), groups=4)  # grouped conv
        46656
    """
    formula = MAC_FORMULAS.get(kind)
    return 0 if formula is None else out_numel * formula(in_channels, tuple(kernel), groups)
