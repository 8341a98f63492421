"""AWQ (activation-aware weight quantization) as mit-han-lab/llm-awq runs it, on any registered layout.

1. Calibration: ``calib_samples`` blocks of ``calib_seq_len`` tokens; the inputs of decoder block 0
   are captured, then each block is processed in turn and its float output feeds the next.
2. Per block: the inputs of every linear are recorded; for each :class:`ScaleGroup` the scale is
   searched (:func:`leanml.llm.quant.awq_search.search_scale`) on the unmodified block; then all scales are
   folded in, the recorded inputs divided by them, and clipping ranges searched on every linear but
   q and k (:func:`leanml.llm.quant.awq_search.search_clip`) and applied.
3. The scaled, clipped model is quantized by the same RTN step as ``method="rtn"``
   (:func:`leanml.llm.quant.rtn.quantize_weights_`).

The search result (:class:`AWQResult`: scales and clips) saves to safetensors + JSON and can be
re-applied to a fresh copy of the model without searching again.

Example:
    >>> llm = load_llm("smollm2")  # doctest: +SKIP
    >>> calib = tokenize_text(llm.tokenizer, load_text("builtin", "calib"), 512)  # doctest: +SKIP
    >>> ids = calibration_blocks(calib, 128, 512)  # doctest: +SKIP
    >>> codes = awq_quantize_(llm.model, LLMQuantConfig(method="awq", bits=4, group_size=128), ids)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanml.artifact import load_artifact, save_artifact
from leanml.errors import LeanmlError
from leanml.llm.quant.awq_capture import BlockInputs, block_call, capture_block_inputs, record_linear_inputs
from leanml.llm.quant.awq_layout import NO_CLIP, ScaleGroup, fold_scale_, layout_for
from leanml.llm.quant.awq_search import apply_clip_, sample_tokens, search_clip, search_scale
from leanml.llm.quant.config import LLMQuantConfig
from leanml.llm.quant.rtn import BLOCKS_PATH, QuantizedWeights, decoder_blocks, quantize_weights_, target_linears
from leanml.progress import track

ARTIFACT_KIND = "awq_search"


@dataclass(frozen=True)
class ScaleEntry:
    """One folded scale: in block ``block``, ``prev``'s output divided by ``scale`` (in,) and ``linears`` scaled."""

    block: int
    prev: str
    linears: tuple[str, ...]
    scale: torch.Tensor
    alpha: float


@dataclass
class AWQResult:
    """What the AWQ search found: scales per group, clip ranges (out, G) per qualified linear name."""

    bits: int
    group_size: int
    scales: list[ScaleEntry] = field(default_factory=list)
    clips: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Atomically write ``path`` (.safetensors) and its JSON sidecar.

        Example:
            >>> r = AWQResult(4, 32, [ScaleEntry(0, "ln", ("fc",), torch.ones(4), 0.5)], {"m.fc": torch.ones(2, 1)})
            >>> import tempfile; p = tempfile.mkdtemp() + "/awq.safetensors"
            >>> r.save(p); AWQResult.load(p).scales[0].linears
            ('fc',)
        """
        tensors = {f"scale.{i}": e.scale.float() for i, e in enumerate(self.scales)}
        tensors.update({f"clip.{name}": m.float() for name, m in self.clips.items()})
        entries = [
            {"block": e.block, "prev": e.prev, "linears": list(e.linears), "alpha": e.alpha} for e in self.scales
        ]
        meta = {"bits": self.bits, "group_size": self.group_size, "scales": entries, "info": self.info}
        save_artifact(path, tensors, meta, ARTIFACT_KIND)

    @classmethod
    def load(cls, path: str | Path) -> AWQResult:
        """Load a saved search result; a missing, foreign or corrupt file is a clear error."""
        tensors, meta = load_artifact(path, ARTIFACT_KIND)
        try:
            scales = [
                ScaleEntry(
                    int(e["block"]), str(e["prev"]), tuple(e["linears"]), tensors[f"scale.{i}"], float(e["alpha"])
                )
                for i, e in enumerate(meta["scales"])
            ]
            clips = {k.removeprefix("clip."): v for k, v in tensors.items() if k.startswith("clip.")}
            return cls(int(meta["bits"]), int(meta["group_size"]), scales, clips, dict(meta.get("info", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise LeanmlError(f"AWQ search result {path} is incomplete: {e!r}", "run the search again") from e


def calibration_blocks(ids: Sequence[int], n_samples: int, seq_len: int) -> torch.Tensor:
    """Cut a token list into up to ``n_samples`` consecutive blocks of ``seq_len`` tokens → (n, seq_len) int64.

    Example:
        >>> calibration_blocks(list(range(10)), n_samples=8, seq_len=4).tolist()
        [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    n = min(n_samples, len(ids) // seq_len)
    if n < 1:
        raise LeanmlError(
            f"calibration text has {len(ids)} tokens, fewer than one block of {seq_len}",
            "pass a longer calibration text or a smaller --calib-seq-len",
        )
    return torch.tensor(list(ids[: n * seq_len]), dtype=torch.long).reshape(n, seq_len)


def _linear(module: nn.Module, name: str) -> nn.Linear:
    """``module.get_submodule(name)``, which must be an ``nn.Linear``."""
    try:
        found = module.get_submodule(name)
    except AttributeError as e:
        raise LeanmlError(f"no module {name!r}: {e}", "search again on this model") from e
    if not isinstance(found, nn.Linear):
        raise LeanmlError(f"{name} is a {type(found).__name__}, not a linear", "search again on this model")
    return found


def _search_block(
    block: nn.Module, groups: list[ScaleGroup], inputs: BlockInputs, feats: dict[str, torch.Tensor], cfg: LLMQuantConfig
) -> list[tuple[ScaleGroup, torch.Tensor, float]]:
    found = []
    for group in groups:
        linears = [_linear(block, n) for n in group.linears]
        x = feats[group.linears[0]]  # (N, T, in): the shared input of the group
        inspect: Any = (
            linears[0]
            if group.inspect is None
            else block_call(block.get_submodule(group.inspect), inputs, group.inspect_kwargs)
        )
        s, errors = search_scale(x, linears, inspect, cfg.bits, cfg.group_size, cfg.scale_grid, cfg.duo_scaling)
        found.append((group, s, errors.index(min(errors)) / cfg.scale_grid))
    return found


@torch.no_grad()
def awq_search(model: nn.Module, calib_ids: torch.Tensor, cfg: LLMQuantConfig, progress: bool = True) -> AWQResult:
    """Search AWQ scales and clips for every decoder block; the model ends up scaled and clipped (in float).

    ``calib_ids`` (n, T) int64 calibration blocks (see :func:`calibration_blocks`).

    Example:
        >>> result = awq_search(llm.model, ids, LLMQuantConfig(method="awq"))  # doctest: +SKIP
    """
    if cfg.method != "awq":
        raise LeanmlError(f"awq_search got a {cfg.method!r} config", "pass LLMQuantConfig(method='awq')")
    wanted = target_linears(model, cfg)  # checks blocks and group sizes before anything changes
    layout = layout_for(model)
    blocks = decoder_blocks(model)
    start = time.perf_counter()
    inputs = capture_block_inputs(model, calib_ids)
    result = AWQResult(cfg.bits, cfg.group_size)
    for i in track(range(len(blocks)), total=len(blocks), description="AWQ search", enabled=progress):
        block = blocks[i]
        prefix = f"{BLOCKS_PATH}.{i}."
        feats, next_hidden = record_linear_inputs(block, inputs)
        groups = [g for g in layout(block) if all(prefix + n in wanted for n in g.linears)]
        for group, s, alpha in _search_block(block, groups, inputs, feats, cfg):
            fold_scale_(block.get_submodule(group.prev), [_linear(block, n) for n in group.linears], s)
            scaled = feats[group.linears[0]] / s.to(feats[group.linears[0]])  # the linears now see x / s
            feats.update({n: scaled for n in group.linears})
            result.scales.append(ScaleEntry(i, group.prev, group.linears, s.float().cpu(), alpha))
        if cfg.clip:
            for name, x in feats.items():
                if prefix + name not in wanted or name.rsplit(".", 1)[-1] in NO_CLIP:
                    continue
                lin = _linear(block, name)
                max_val = search_clip(
                    lin.weight, sample_tokens(x, cfg.clip_tokens), cfg.bits, cfg.group_size, cfg.clip_grid,
                    cfg.clip_max_shrink,
                )  # fmt: skip
                apply_clip_(lin, max_val, cfg.group_size)
                result.clips[prefix + name] = max_val.float().cpu()
        inputs = inputs.with_hidden(next_hidden)
    result.info = {
        "calib_samples": int(calib_ids.shape[0]), "calib_seq_len": int(calib_ids.shape[1]),
        "scale_grid": cfg.scale_grid, "duo_scaling": cfg.duo_scaling, "clip": cfg.clip,
        "search_seconds": round(time.perf_counter() - start, 2),
    }  # fmt: skip
    return result


@torch.no_grad()
def apply_awq_(model: nn.Module, result: AWQResult) -> None:
    """Fold a saved search result's scales and clips into a fresh float ``model`` (as :func:`awq_search` left it).

    Every name and shape is checked before the first weight changes.

    Example:
        >>> apply_awq_(fresh_model, AWQResult.load("awq.safetensors"))  # doctest: +SKIP
    """
    blocks = decoder_blocks(model)
    plan: list[tuple[nn.Module, list[nn.Linear], torch.Tensor]] = []
    try:
        for e in result.scales:
            block = blocks[e.block]
            linears = [_linear(block, n) for n in e.linears]
            if any(not isinstance(lin, nn.Linear) or lin.in_features != e.scale.numel() for lin in linears):
                raise LeanmlError(f"AWQ scale for block {e.block} {e.linears} does not fit this model")
            plan.append((block.get_submodule(e.prev), linears, e.scale))
        clips = [(_linear(model, name), m) for name, m in result.clips.items()]
    except (IndexError, AttributeError) as err:
        raise LeanmlError(f"AWQ search result does not fit this model: {err}", "search again on this model") from err
    for prev, linears, s in plan:
        fold_scale_(prev, linears, s)
    for lin, max_val in clips:
        apply_clip_(lin, max_val, result.group_size)


def awq_quantize_(
    model: nn.Module,
    cfg: LLMQuantConfig,
    calib_ids: torch.Tensor | None = None,
    result: AWQResult | None = None,
    progress: bool = True,
) -> tuple[QuantizedWeights, AWQResult]:
    """AWQ-quantize ``model`` in place (pseudo-quantized): search (or apply a saved ``result``), then RTN.

    Example:
        >>> codes, found = awq_quantize_(llm.model, LLMQuantConfig(method="awq"), ids)  # doctest: +SKIP
        >>> found.save("awq-w4g128.safetensors")  # doctest: +SKIP
    """
    if cfg.method != "awq":
        raise LeanmlError(f"awq_quantize_ got a {cfg.method!r} config", "pass LLMQuantConfig(method='awq')")
    targets = target_linears(model, cfg)
    if result is None:
        if calib_ids is None:
            raise LeanmlError("AWQ needs calibration tokens or a saved search result", "pass calib_ids or result")
        result = awq_search(model, calib_ids, cfg, progress)
    else:
        if (result.bits, result.group_size) != (cfg.bits, cfg.group_size):
            raise LeanmlError(
                f"the AWQ search result was made for W{result.bits}g{result.group_size}, "
                f"not W{cfg.bits}g{cfg.group_size}",
                "search again at these settings",
            )
        apply_awq_(model, result)
    return QuantizedWeights(cfg, quantize_weights_(targets, cfg.bits, cfg.group_size, progress)), result
