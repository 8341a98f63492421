"""The LLM weight-quantization config: one dataclass for RTN and AWQ.

Example:
    >>> cfg = LLMQuantConfig(bits=3, group_size=64, method="rtn")
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

METHODS: tuple[str, ...] = ("rtn", "awq")


@dataclass
class LLMQuantConfig(Config):
    """Weight-only group quantization of the linear layers in the decoder blocks.

    ``bits`` 2..8 (unsigned codes with a zero point), ``group_size`` input channels per scale (a layer whose
    in-features it does not divide gets a short last group),
    ``method`` one of :data:`METHODS`, ``skip`` fnmatch patterns of qualified layer names to leave in
    float (e.g. ``"*.mlp.down_proj"``, ``"model.layers.0.*"``), ``quantize_lm_head`` also quantizes
    the output projection (untied from the embeddings first; off by default, as AWQ does).

    AWQ only (mit-han-lab/llm-awq defaults): ``calib_samples`` blocks of ``calib_seq_len`` tokens of
    calibration text (fewer if the text is short), ``scale_grid`` values of alpha in [0, 1) for s = x^alpha,
    ``duo_scaling`` (AutoAWQ's s = x^alpha / w^(1-alpha)), ``clip`` search on every linear but q and k with
    ``clip_grid`` steps of shrink up to ``clip_max_shrink`` scored on ``clip_tokens`` sampled tokens.

    Example:
        >>> LLMQuantConfig(bits=9)
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: bits must be in 2..8, got 9 (pass --bits 4 (or 3))
    """

    bits: int = 4
    group_size: int = 128
    method: str = "awq"
    skip: list[str] = field(default_factory=list)
    quantize_lm_head: bool = False
    calib_samples: int = 128
    calib_seq_len: int = 512
    scale_grid: int = 20
    duo_scaling: bool = False
    clip: bool = True
    clip_grid: int = 20
    clip_max_shrink: float = 0.5
    clip_tokens: int = 512

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
        for name in ("calib_samples", "calib_seq_len", "scale_grid", "clip_grid", "clip_tokens"):
            value = getattr(self, name)
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            require(ok, f"{name} must be a positive integer, got {value!r}", f"pass --{name.replace('_', '-')} N")
        shrink = self.clip_max_shrink
        require(
            isinstance(shrink, int | float) and not isinstance(shrink, bool) and 0.0 < shrink < 1.0,
            f"clip_max_shrink must be in (0, 1), got {shrink!r}",
            "the reference uses 0.5",
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
