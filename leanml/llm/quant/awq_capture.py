"""Calibration activations for block-by-block LLM algorithms (AWQ): block inputs and linear inputs.

The model runs once per batch of calibration blocks up to its first decoder block, where a forward
pre-hook records the hidden states and the keyword arguments the model passes its blocks (rotary
position embeddings, attention mask, ...); :class:`_StopForward` then ends that forward early. From
there each block runs on its own, batch by batch, with the recorded keyword arguments.

Example:
    >>> inputs = capture_block_inputs(model, ids)  # doctest: +SKIP
    >>> feats, next_hidden = record_linear_inputs(decoder_blocks(model)[0], inputs)  # doctest: +SKIP
    >>> feats["self_attn.q_proj"].shape  # (n, T, hidden)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.llm.quant.rtn import decoder_blocks


class _StopForward(Exception):
    """Raised by the capture hook once block 0's inputs are recorded; caught only by :func:`capture_block_inputs`."""


@dataclass(frozen=True)
class BlockInputs:
    """Per-batch inputs of a decoder block: ``hidden[b]`` (B, T, H) and the keyword arguments ``kwargs[b]``."""

    hidden: list[torch.Tensor]
    kwargs: list[dict[str, Any]]

    def with_hidden(self, hidden: list[torch.Tensor]) -> BlockInputs:
        """The same keyword arguments with new hidden states (the previous block's outputs)."""
        return replace(self, hidden=hidden)

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Cut x (N, T, ...) into this object's batches along dim 0."""
        sizes = [int(h.shape[0]) for h in self.hidden]
        if int(x.shape[0]) != sum(sizes):
            raise LeanmlError(f"expected {sum(sizes)} calibration blocks, got {int(x.shape[0])}")
        return list(torch.split(x, sizes, dim=0))


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def capture_block_inputs(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> BlockInputs:
    """Run ``model`` on ids (N, T) in batches up to decoder block 0; return what that block receives.

    Example:
        >>> capture_block_inputs(nn.Linear(2, 2), torch.zeros(1, 4, dtype=torch.long))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: Linear has no decoder blocks ...
    """
    first = decoder_blocks(model)[0]
    if ids.ndim != 2 or ids.dtype != torch.long or ids.numel() == 0:
        raise LeanmlError(f"calibration ids must be a non-empty (n, T) int64 tensor, got {tuple(ids.shape)}")
    seen: list[tuple[torch.Tensor, dict[str, Any]]] = []

    def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        seen.append((hidden.detach(), {k: v for k, v in kwargs.items() if k != "hidden_states"}))
        raise _StopForward

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    device = next(model.parameters()).device
    try:
        for batch in torch.split(ids, batch_size, dim=0):
            try:
                model(input_ids=batch.to(device), use_cache=False)
            except _StopForward:
                continue
            raise LeanmlError("the model never called its first decoder block", "is it a Llama-family causal LM?")
    finally:
        handle.remove()
    return BlockInputs([h for h, _ in seen], [k for _, k in seen])


def block_call(module: nn.Module, inputs: BlockInputs, with_kwargs: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function x (N, T, H) → module output (N, T, out), run batch by batch (with the block keyword
    arguments when ``with_kwargs``: attention needs the position embeddings and mask).

    Example:
        >>> f = block_call(nn.Linear(3, 2), BlockInputs([torch.zeros(2, 4, 3)], [{}]), with_kwargs=False)
        >>> f(torch.zeros(2, 4, 3)).shape
        torch.Size([2, 4, 2])
    """

    def run(x: torch.Tensor) -> torch.Tensor:
        parts = inputs.split(x)
        outs = [
            _first(module(p, **kw) if with_kwargs else module(p)) for p, kw in zip(parts, inputs.kwargs, strict=True)
        ]
        return torch.cat(outs, dim=0)

    return run


@torch.no_grad()
def record_linear_inputs(block: nn.Module, inputs: BlockInputs) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Run ``block`` on every batch; return (input of each linear by relative name (N, T, in), block outputs).

    Linears that read the same tensor (q, k and v) share one concatenated tensor.

    Example:
        >>> blk = nn.Sequential(nn.Linear(3, 3))
        >>> feats, outs = record_linear_inputs(blk, BlockInputs([torch.ones(1, 2, 3)], [{}]))
        >>> sorted(feats), outs[0].shape
        (['0'], torch.Size([1, 2, 3]))
    """
    per_batch: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, mod in block.named_modules():
        if isinstance(mod, nn.Linear):

            def hook(_: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                per_batch.setdefault(name, []).append(args[0].detach())

            handles.append(mod.register_forward_pre_hook(hook))
    try:
        outs = [_first(block(h, **kw)) for h, kw in zip(inputs.hidden, inputs.kwargs, strict=True)]
    finally:
        for h in handles:
            h.remove()
    feats: dict[str, torch.Tensor] = {}
    for name, parts in per_batch.items():
        twin = next((n for n in feats if per_batch[n][0] is parts[0]), None)  # same tensor object: share
        feats[name] = feats[twin] if twin is not None else torch.cat(parts, dim=0)
    return feats, outs
