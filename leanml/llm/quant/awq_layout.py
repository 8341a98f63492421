"""Where AWQ's scales go in each architecture: which linears share an input, what produces that input.

A :class:`ScaleGroup` names (relative to one decoder block) the module that produces the input of
some linears (a norm, or a linear whose output rows feed them), the linears, and the module whose
output the scale search scores. Layouts are registered by the Hugging Face ``config.model_type``;
Llama's follows mit-han-lab/llm-awq (``auto_scale_block``):

* ``input_layernorm`` → q, k, v (scored on ``self_attn``);
* ``v_proj`` → ``o_proj`` only when the two weights have the same shape (not with GQA, as in SmolLM2);
* ``post_attention_layernorm`` → gate, up (scored on ``mlp``);
* ``up_proj`` → ``down_proj``.

Clipping is searched on every linear but q and k (:data:`NO_CLIP`).

Example:
    >>> [g.linears for g in AWQ_LAYOUTS["llama"](None)][0]
    ('self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from leanml.errors import LeanmlError


@dataclass(frozen=True)
class ScaleGroup:
    """``prev`` → ``linears`` (names relative to the block); ``inspect`` is scored (None: the one linear),
    called with the block's keyword arguments when ``inspect_kwargs`` (attention needs positions and mask)."""

    prev: str
    linears: tuple[str, ...]
    inspect: str | None
    inspect_kwargs: bool = False


Layout = Callable[[nn.Module | None], list[ScaleGroup]]  # block (None: the static list) → its groups
AWQ_LAYOUTS: dict[str, Layout] = {}
NO_CLIP = ("q_proj", "k_proj")  # query/key rows feed a softmax through RoPE: llm-awq does not clip them


def register_awq_layout(model_type: str) -> Callable[[Layout], Layout]:
    """Decorator: register an AWQ layout for Hugging Face ``config.model_type``.

    Example:
        >>> "mistral" in AWQ_LAYOUTS
        True
    """

    def add(fn: Layout) -> Layout:
        AWQ_LAYOUTS[model_type] = fn
        return fn

    return add


def _same_shape(block: nn.Module, a: str, b: str) -> bool:
    wa, wb = block.get_submodule(a).weight, block.get_submodule(b).weight
    return isinstance(wa, torch.Tensor) and isinstance(wb, torch.Tensor) and wa.shape == wb.shape


@register_awq_layout("llama")
@register_awq_layout("mistral")
def llama_layout(block: nn.Module | None) -> list[ScaleGroup]:
    """Llama's scale groups for ``block`` (v → o only when the shapes allow; with ``None``, without it).

    Example:
        >>> [g.prev for g in llama_layout(None)]
        ['input_layernorm', 'post_attention_layernorm', 'mlp.up_proj']
    """
    qkv = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    groups = [ScaleGroup("input_layernorm", qkv, "self_attn", inspect_kwargs=True)]
    if block is not None and _same_shape(block, "self_attn.v_proj", "self_attn.o_proj"):
        groups.append(ScaleGroup("self_attn.v_proj", ("self_attn.o_proj",), None))
    groups.append(ScaleGroup("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp"))
    groups.append(ScaleGroup("mlp.up_proj", ("mlp.down_proj",), None))
    return groups


def layout_for(model: nn.Module) -> Layout:
    """The registered layout for ``model.config.model_type``, or a clear error listing the supported ones.

    Example:
        >>> layout_for(nn.Linear(2, 2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: AWQ has no layout for model type None (...)
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in AWQ_LAYOUTS:
        raise LeanmlError(
            f"AWQ has no layout for model type {model_type!r}",
            f"supported: {', '.join(sorted(AWQ_LAYOUTS))}; use --method rtn for other models",
        )
    return AWQ_LAYOUTS[model_type]


@torch.no_grad()
def fold_scale_(prev: nn.Module, linears: list[nn.Linear], s: torch.Tensor) -> None:
    """Divide ``prev``'s output by ``s`` (in,) and multiply the linears' input columns by it: the float
    function of the block is unchanged, but the linears' weights now carry the salient channels' scale.

    ``prev`` is a norm with a 1-d ``weight`` (and optional bias) of size ``in``, or an ``nn.Linear`` whose
    last ``in`` output rows feed the linears.

    Example:
        >>> norm, lin = nn.LayerNorm(4), nn.Linear(4, 2)
        >>> x = torch.randn(3, 4); before = lin(norm(x))
        >>> fold_scale_(norm, [lin], torch.tensor([1.0, 2.0, 0.5, 4.0]))
        >>> torch.allclose(lin(norm(x)), before, atol=1e-5)
        True
    """
    n = s.numel()
    for lin in linears:
        if lin.in_features != n:
            raise LeanmlError(f"scale of {n} channels does not fit a linear with {lin.in_features} inputs")
        lin.weight.mul_(s.view(1, -1).to(lin.weight))
    if isinstance(prev, nn.Linear):
        prev.weight[-n:].div_(s.view(-1, 1).to(prev.weight))
        if prev.bias is not None:
            prev.bias[-n:].div_(s.to(prev.bias))
        return
    weight = getattr(prev, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 1 or weight.numel() != n:
        raise LeanmlError(
            f"cannot fold an AWQ scale into {type(prev).__name__}: it needs a 1-d weight of {n} channels",
            "register a layout for this architecture (leanml.llm.quant.awq_layout.register_awq_layout)",
        )
    weight.div_(s.to(weight))
    bias = getattr(prev, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.div_(s.to(bias))
