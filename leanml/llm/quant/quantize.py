"""The one verb for LLM weight quantization: ``quantize_llm_(model, LLMQuantConfig(...))``, by method.

Methods are registered in :data:`LLM_QUANTIZERS` (``"rtn"``, ``"awq"``); each quantizes the model in
place (pseudo-quantized: the float weights hold the dequantized values) and returns the integer codes.

Example:
    >>> sorted(LLM_QUANTIZERS)
    ['awq', 'rtn']
    >>> quantize_llm_(nn.Linear(2, 2), LLMQuantConfig(method="rtn"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    leanml.errors.LeanmlError: Linear has no decoder blocks ...
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.llm.quant.awq import AWQResult, awq_quantize_
from leanml.llm.quant.config import LLMQuantConfig
from leanml.llm.quant.rtn import QuantizedWeights, rtn_quantize_

Quantizer = Callable[[nn.Module, LLMQuantConfig, "torch.Tensor | None", "AWQResult | None", bool], QuantizedWeights]


def _rtn(
    model: nn.Module, cfg: LLMQuantConfig, calib_ids: torch.Tensor | None, result: AWQResult | None, progress: bool
) -> QuantizedWeights:
    return rtn_quantize_(model, cfg, progress)


def _awq(
    model: nn.Module, cfg: LLMQuantConfig, calib_ids: torch.Tensor | None, result: AWQResult | None, progress: bool
) -> QuantizedWeights:
    codes, found = awq_quantize_(model, cfg, calib_ids, result, progress)
    codes.search = found
    return codes


LLM_QUANTIZERS: dict[str, Quantizer] = {"rtn": _rtn, "awq": _awq}


def quantize_llm_(
    model: nn.Module,
    cfg: LLMQuantConfig,
    calib_ids: torch.Tensor | None = None,
    awq_result: AWQResult | None = None,
    progress: bool = True,
) -> QuantizedWeights:
    """Quantize ``model``'s decoder linears in place with ``cfg.method``; returns the integer codes.

    AWQ needs ``calib_ids`` (n, T) (see :func:`leanml.llm.quant.awq.calibration_blocks`) or a saved
    ``awq_result`` to re-apply; its search result is returned in ``codes.search``.

    Example:
        >>> codes = quantize_llm_(llm.model, LLMQuantConfig(method="awq"), calib_ids=ids)  # doctest: +SKIP
    """
    if cfg.method not in LLM_QUANTIZERS:
        raise LeanmlError(f"LLM quantization method {cfg.method!r} is not available", f"use {sorted(LLM_QUANTIZERS)}")
    return LLM_QUANTIZERS[cfg.method](model, cfg, calib_ids, awq_result, progress)
