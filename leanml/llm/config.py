"""The LLM weight-quantization config: one dataclass for RTN now, AWQ next.

Example:
    >>> cfg = LLMQuantConfig(bits=3, group_size=64)
    >>> LLMQuantConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.label
    'rtn-w3g64'
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from leanml.config import Config, require
from leanml.quant.primitives import MAX_BITS, MIN_BITS

METHODS: tuple[str, ...] = ("rtn",)  # AWQ adds "awq" when it lands


@dataclass
class LLMQuantConfig(Config):
    """Weight-only group quantization of the linear layers in the decoder blocks.

    ``bits`` 2..8 (unsigned codes with a zero point), ``group_size`` input channels per scale (it must
    divide every quantized layer's in-features; checked against the model before anything changes),
    ``method`` one of :data:`METHODS`, ``skip`` fnmatch patterns of qualified layer names to leave in
    float (e.g. ``"*.mlp.down_proj"``, ``"model.layers.0.*"``), ``quantize_lm_head`` also quantizes
    the output projection (untied from the embeddings first; off by default, as AWQ does).

    Example:
        >>> LLMQuantConfig(bits=9)
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: bits must be in 2..8, got 9 (pass --bits 4 (or 3))
    """

    bits: int = 4
    group_size: int = 128
    method: str = "rtn"
    skip: list[str] = field(default_factory=list)
    quantize_lm_head: bool = False

    def validate(self) -> None:
        """Check bits, group size, method and skip patterns."""
        require(
            isinstance(self.bits, int) and not isinstance(self.bits, bool) and MIN_BITS <= self.bits <= MAX_BITS,
            f"bits must be in {MIN_BITS}..{MAX_BITS}, got {self.bits!r}",
            "pass --bits 4 (or 3)",
        )
        require(
            isinstance(self.group_size, int) and not isinstance(self.group_size, bool) and self.group_size >= 1,
            f"group size must be a positive integer, got {self.group_size!r}",
            "pass --group-size 32, 64 or 128",
        )
        require(self.method in METHODS, f"unknown LLM quantization method {self.method!r}", f"choose: {METHODS}")
        require(
            isinstance(self.skip, list) and all(isinstance(p, str) and p for p in self.skip),
            "skip must be a list of non-empty layer-name patterns",
            'e.g. ["*.mlp.down_proj"]',
        )

    @property
    def label(self) -> str:
        """Short name such as ``rtn-w4g128`` for reports and file names."""
        return f"{self.method}-w{self.bits}g{self.group_size}"

    def skips(self, name: str) -> bool:
        """Whether the layer ``name`` matches one of the ``skip`` patterns.

        Example:
            >>> LLMQuantConfig(skip=["*.down_proj"]).skips("model.layers.3.mlp.down_proj")
            True
        """
        return any(fnmatch.fnmatchcase(name, p) for p in self.skip)
