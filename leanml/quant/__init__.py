"""Quantization: primitives, k-means, linear PTQ/QAT, BN folding, integer-only reference, mixed precision.

The integer spec is written once, in :mod:`leanml.quant.primitives` and ``docs/integer_spec.md``.
"""

from leanml.quant.bn_fold import fold_bn
from leanml.quant.integer import IntegerModel, convert
from leanml.quant.kmeans import KMeansConfig, KMeansQuantizer, kmeans_quantize_
from leanml.quant.linear import LinearQuantConfig, LinearQuantResult, quantize_linear
from leanml.quant.sim import QuantSim

__all__ = [
    "IntegerModel", "KMeansConfig", "KMeansQuantizer", "LinearQuantConfig", "LinearQuantResult", "QuantSim",
    "convert", "fold_bn", "kmeans_quantize_", "quantize_linear",
]  # fmt: skip
