"""The C call of each layer kernel, written once: the code generator runs a layer on its whole tensors, the patch
and row-streamed stages on regions, the multi-thread mode on row bands, and all of them call the same kernels.
Each caller describes the region as C expressions (:class:`Region`); the constants come from the emitter.

Example:
    >>> Region("in0", "in_h", "in_w", "ph", "pw", "out", "out_h", "out_w").in_h
    'in_h'
"""

from __future__ import annotations

from dataclasses import dataclass

from leanml.deploy.ir import Conv, Depthwise, Pool

Consts = tuple[str, str, str]  # (weight array, bias array, "mult, shift, out_zp, act_min, act_max")


@dataclass(frozen=True)
class Region:
    """C expressions for where a kernel reads and writes: the input pointer with its rows, columns and the
    padding above and left of it, the output pointer with its rows and columns."""

    src: str
    in_h: str
    in_w: str
    pad_top: str
    pad_left: str
    dst: str
    out_h: str
    out_w: str


def whole(op: Conv | Pool, src: str, dst: str) -> Region:
    """The region of a layer run on its whole input and output tensors (literal sizes).

    Example:
        >>> from leanml.deploy.ir import Pool
        >>> whole(Pool("p", ("x",), "y", ((4, 4, 2),), (2, 2, 2), kernel=(2, 2), stride=(2, 2)), "a", "b").out_w
        '2'
    """
    ih, iw, _ = op.in_shapes[0]
    oh, ow, _ = op.out_shape
    return Region(src, str(ih), str(iw), str(op.padding[0]), str(op.padding[1]), dst, str(oh), str(ow))


def conv_call(consts: Consts, op: Conv, r: Region) -> str:
    """``dk_conv2d_s8`` (``dk_conv2d_s8w4`` with 4-bit weights) on region ``r``; also a 1x1 conv with 4-bit
    weights, as a 1x1 window."""
    w, b, tail = consts
    kernel = "dk_conv2d_s8w4" if op.weight_bits == 4 else "dk_conv2d_s8"
    return (f"{kernel}({r.src}, {r.in_h}, {r.in_w}, {op.in_shapes[0][2]}, {op.in_zp}, {w}, {b}, {op.out_shape[2]}, "
            f"{op.kernel[0]}, {op.kernel[1]}, {op.stride[0]}, {op.stride[1]}, {r.pad_top}, {r.pad_left}, "
            f"{op.groups}, {tail}, {r.dst}, {r.out_h}, {r.out_w});")  # fmt: skip


def conv1x1_call(consts: Consts, op: Conv, r: Region) -> str:
    """``dk_conv1x1_s8`` on the in_h x in_w pixels of ``r`` (4-bit weights: :func:`conv_call`)."""
    if op.weight_bits == 4:
        return conv_call(consts, op, r)
    w, b, tail = consts
    return (f"dk_conv1x1_s8({r.src}, {r.in_h}, {r.in_w}, {op.in_shapes[0][2]}, {op.in_zp}, {w}, {b}, "
            f"{op.out_shape[2]}, {tail}, {r.dst});")  # fmt: skip


def _depthwise_geometry(consts: Consts, op: Depthwise, r: Region) -> str:
    w, b, tail = consts
    return (f"{r.in_h}, {r.in_w}, {op.in_shapes[0][2]}, {op.in_zp}, {w}, {b}, {op.kernel[0]}, {op.kernel[1]}, "
            f"{op.stride[0]}, {op.stride[1]}, {r.pad_top}, {r.pad_left}, {tail}")  # fmt: skip


def depthwise_call(consts: Consts, op: Depthwise, r: Region) -> str:
    """``dk_depthwise_conv2d_s8`` (or its 4-bit twin) on region ``r``."""
    kernel = "dk_depthwise_conv2d_s8w4" if op.weight_bits == 4 else "dk_depthwise_conv2d_s8"
    return f"{kernel}({r.src}, {_depthwise_geometry(consts, op, r)}, {r.dst}, {r.out_h}, {r.out_w});"


def depthwise_inplace_call(consts: Consts, op: Depthwise, r: Region, scratch: str) -> str:
    """The in-place depthwise kernel over ``r.src`` (its output overwrites the input), ``scratch`` one plane."""
    kernel = "dk_depthwise_conv2d_s8w4_inplace" if op.weight_bits == 4 else "dk_depthwise_conv2d_s8_inplace"
    return f"{kernel}({r.src}, {_depthwise_geometry(consts, op, r)}, {r.out_h}, {r.out_w}, {scratch});"


def pool_call(op: Pool, r: Region) -> str:
    """``dk_maxpool_s8`` / ``dk_avgpool_s8`` (windows inside the input: no padding argument) on region ``r``."""
    ic = op.in_shapes[0][2]
    head = f"({r.src}, {r.in_h}, {r.in_w}, {ic}, {op.kernel[0]}, {op.kernel[1]}, {op.stride[0]}, {op.stride[1]}"
    if op.mode == "max":
        return f"dk_maxpool_s8{head}, {r.pad_top}, {r.pad_left}, {r.dst}, {r.out_h}, {r.out_w});"
    return f"dk_avgpool_s8{head}, {r.dst}, {r.out_h}, {r.out_w});"
