"""Sub-byte weights in the deployed C: layers whose int8 weights all fit in 4 bits are stored two per byte.

Mixed precision (``leanml quantize mixed``) leaves some layers with 2..4-bit weights held in int8 arrays; the C
kernels of ``csrc/leanml_kernels_w4.h`` read them packed, so flash shrinks in the deployed C and not only in
PyTorch. The packing is lossless (only layers whose every weight lies in [-8, 7] are packed) and the kernels are
bit-exact with the int8 ones. Packing: :func:`pack_w4` (codes ``w + 8`` in code_packing's layout).

Example:
    >>> fits_w4(np.array([1, -2, 7], dtype=np.int8))
    True
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch

from leanml.deploy.ir import Conv, Graph, Linear
from leanml.deploy.patch import PatchStage
from leanml.quant.code_packing import pack_codes, unpack_codes

W4_MIN, W4_MAX = -8, 7


def fits_w4(weight: np.ndarray) -> bool:
    """True when every weight lies in the signed 4-bit range [-8, 7].

    Example:
        >>> fits_w4(np.array([-7, 7], np.int8)), fits_w4(np.array([9], np.int8))
        (True, False)
    """
    return bool(weight.size) and int(weight.min()) >= W4_MIN and int(weight.max()) <= W4_MAX


def pack_w4(weight: np.ndarray) -> np.ndarray:
    """Flattened ``weight`` (values in [-8, 7]) as 4-bit codes ``w + 8``, two per byte, low nibble first: the one
    sub-byte layout of :mod:`leanml.quant.code_packing` (the whole array as one row).

    Example:
        >>> pack_w4(np.array([1, -2, 7], dtype=np.int8)).tolist()
        [105, 15]
    """
    flat = np.asarray(weight, dtype=np.int16).reshape(1, -1)
    if flat.size and (int(flat.min()) < W4_MIN or int(flat.max()) > W4_MAX):
        raise ValueError("pack_w4 needs weights in [-8, 7]")
    codes = torch.from_numpy((flat - W4_MIN).astype(np.uint8))
    return pack_codes(codes, 4)[0].numpy()


def unpack_w4(packed: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`pack_w4`: ``n`` int8 weights.

    Example:
        >>> unpack_w4(pack_w4(np.array([1, -2, 7], np.int8)), 3).tolist()
        [1, -2, 7]
    """
    codes = unpack_codes(torch.from_numpy(np.asarray(packed, dtype=np.uint8)[None]), 4, n)[0].numpy()
    return (codes.astype(np.int16) + W4_MIN).astype(np.int8)


def use_sub_byte_weights(graph: Graph, skip: Collection[str] = ()) -> int:
    """Mark every conv / depthwise / linear op whose weights fit in 4 bits as packed (``weight_bits = 4``).

    ``skip`` names ops that stay int8: those the planner runs through a kernel with no 4-bit twin (in-place 1x1
    convs). Row-streamed blocks and patch stages run their ops through the same 4-bit kernels.
    Returns the flash bytes saved. Lossless: the packed kernels compute the same bits as the int8 ones.

    Example:
        >>> from leanml.quant.integer_ops import TensorQ
        >>> fc = Linear("fc", ("x",), "y", ((4,),), (2,), weight=np.full((2, 4), -3, np.int8),
        ...             bias=np.zeros(2, np.int32), multiplier=np.zeros(2, np.int32), shift=np.zeros(2, np.int32))
        >>> use_sub_byte_weights(Graph([fc], "x", "y", (1, 1, 4), TensorQ(1.0, 0), TensorQ(1.0, 0))), fc.weight_bits
        (4, 4)
    """
    saved = 0
    ops = [inner for op in graph.ops for inner in (op.ops if isinstance(op, PatchStage) else [op])]
    for op in ops:
        if isinstance(op, (Conv, Linear)) and op.name not in skip and op.weight_bits == 8 and fits_w4(op.weight):
            before = op.weight_bytes()
            op.weight_bits = 4
            saved += before - op.weight_bytes()
    return saved
