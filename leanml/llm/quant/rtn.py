"""Round-to-nearest (RTN) group quantization of an LLM's decoder linears, pseudo-quantized in place.

The decoder blocks are the ``model.model.layers`` list of a Llama-family causal LM; every
``nn.Linear`` inside them (q, k, v, o, gate, up, down) is quantized, embeddings and ``lm_head``
are not (unless asked). "Pseudo-quantized": each weight is replaced by its dequantized values,
so the float model computes exactly what the integer weights represent; the integer codes are
returned in a :class:`QuantizedWeights` for packing. AWQ reuses :func:`target_linears` and
:func:`quantize_weights_` after it has scaled and clipped the weights.

Example:
    >>> class Block(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.proj = nn.Linear(64, 8, bias=False)
    >>> class Inner(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.layers = nn.ModuleList([Block(), Block()])
    >>> class Toy(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.model, self.lm_head = Inner(), nn.Linear(8, 16, bias=False)
    >>> qw = rtn_quantize_(Toy(), LLMQuantConfig(bits=4, group_size=32, method="rtn"), progress=False)
    >>> sorted(qw.weights), qw.n_quantized
    (['model.layers.0.proj', 'model.layers.1.proj'], 1024)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from leanml.errors import LeanmlError
from leanml.llm.quant.config import LLMQuantConfig
from leanml.llm.quant.groupquant import GroupQuantized, check_group_size, quantize_linear_weight
from leanml.progress import track

BLOCKS_PATH = "model.layers"  # where Llama-family causal LMs keep their decoder blocks


@dataclass
class QuantizedWeights:
    """The integer codes of a pseudo-quantized model: qualified layer name → :class:`GroupQuantized`."""

    config: LLMQuantConfig
    weights: dict[str, GroupQuantized]
    search: object | None = None  # the method's search result, e.g. leanml.llm.quant.awq.AWQResult; None for RTN

    @property
    def n_quantized(self) -> int:
        """Number of weight elements quantized."""
        return sum(g.q.numel() for g in self.weights.values())

    def payload_bytes(self) -> int:
        """Bytes these linears take in the packed file (``leanml.llm.io.packed_file``): each row's codes packed
        to ``ceil(in * bits / 8)`` bytes, plus a float16 scale and a uint8 zero (3 bytes) per group.

        Example:
            >>> gq = GroupQuantized(torch.zeros(2, 64, dtype=torch.uint8), torch.ones(2, 2), torch.zeros(2, 2), 4, 32)
            >>> QuantizedWeights(LLMQuantConfig(group_size=32), {"a": gq}).payload_bytes()  # 2*32 + 4*3
            76
        """
        return sum(
            g.q.shape[0] * ((g.q.shape[1] * g.bits + 7) // 8) + g.scale.numel() * 3 for g in self.weights.values()
        )


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks (``model.model.layers``) of a Llama-family causal LM.

    Example:
        >>> decoder_blocks(nn.Linear(2, 2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: Linear has no decoder blocks at model.layers (...)
    """
    blocks = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise LeanmlError(
            f"{type(model).__name__} has no decoder blocks at {BLOCKS_PATH}",
            "load the model with leanml.llm.load_llm: Llama-family causal LMs only",
        )
    return blocks


def target_linears(model: nn.Module, cfg: LLMQuantConfig) -> dict[str, nn.Linear]:
    """The linears ``cfg`` quantizes, by qualified name, in model order: all inside the decoder blocks,
    ``lm_head`` if ``cfg.quantize_lm_head``, minus ``cfg.skip`` matches. Checks every group size first.

    Example:
        >>> target_linears(nn.Linear(2, 2), LLMQuantConfig())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: Linear has no decoder blocks ...
    """
    decoder_blocks(model)
    prefix = BLOCKS_PATH + "."
    targets: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        wanted = name.startswith(prefix) or (name == "lm_head" and cfg.quantize_lm_head)
        if isinstance(module, nn.Linear) and wanted and not cfg.skips(name):
            targets[name] = module
    if cfg.quantize_lm_head and "lm_head" not in targets and not cfg.skips("lm_head"):
        raise LeanmlError("quantize_lm_head is set but the model has no nn.Linear lm_head", "unset it")
    if not targets:
        raise LeanmlError("no linear layer left to quantize", "check the skip patterns")
    for name, lin in targets.items():
        check_group_size(lin.in_features, cfg.group_size, name)
    return targets


def untie_lm_head_(model: nn.Module) -> bool:
    """Give ``lm_head`` its own copy of the weight when it is tied to the input embeddings; returns whether it was.

    Example:
        >>> untie_lm_head_(nn.Linear(2, 2))
        False
    """
    head = getattr(model, "lm_head", None)
    get_emb = getattr(model, "get_input_embeddings", None)
    emb = get_emb() if callable(get_emb) else None
    if not isinstance(head, nn.Linear) or emb is None or head.weight is not getattr(emb, "weight", None):
        return False
    head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=head.weight.requires_grad)
    config = getattr(model, "config", None)
    if config is not None:
        config.tie_word_embeddings = False
    return True


@torch.no_grad()
def quantize_weights_(
    targets: dict[str, nn.Linear], bits: int, group_size: int, progress: bool = True
) -> dict[str, GroupQuantized]:
    """Group-quantize each linear's current weight and write the dequantized values back (in its dtype).

    The shared last step of RTN and AWQ (which calls it after scaling and clipping).

    Example:
        >>> lin = nn.Linear(4, 1, bias=False)
        >>> _ = lin.weight.data.copy_(torch.tensor([[0.0, 0.3, 1.0, 0.9]]))
        >>> codes = quantize_weights_({"lin": lin}, bits=2, group_size=4, progress=False)
        >>> codes["lin"].q.tolist(), [round(v, 3) for v in lin.weight[0].tolist()]
        ([[0, 1, 3, 3]], [0.0, 0.333, 1.0, 1.0])
    """
    for name, lin in targets.items():
        check_group_size(lin.in_features, group_size, name)
    codes: dict[str, GroupQuantized] = {}
    for name, lin in track(targets.items(), total=len(targets), description="RTN", enabled=progress):
        gq = quantize_linear_weight(lin.weight, bits, group_size, name)
        lin.weight.copy_(gq.dequantize().to(dtype=lin.weight.dtype, device=lin.weight.device))  # (out, in)
        codes[name] = gq
    return codes


def rtn_quantize_(model: nn.Module, cfg: LLMQuantConfig, progress: bool = True) -> QuantizedWeights:
    """RTN-quantize ``model``'s decoder linears in place (pseudo-quantized); returns the integer codes.

    Every layer is checked before any weight changes, so a bad group size leaves the model untouched.

    Example:
        >>> rtn_quantize_(nn.Linear(2, 2), LLMQuantConfig(method="rtn"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: Linear has no decoder blocks ...
    """
    if cfg.method != "rtn":
        raise LeanmlError(f"rtn_quantize_ got a {cfg.method!r} config", "use quantize_llm_ or method='rtn'")
    targets = target_linears(model, cfg)
    if "lm_head" in targets:
        untie_lm_head_(model)  # quantizing a tied head would change the embeddings too
    return QuantizedWeights(cfg, quantize_weights_(targets, cfg.bits, cfg.group_size, progress))
