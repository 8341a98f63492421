"""Next-token selection from one position's logits: repetition penalty, greedy, temperature, top-k, top-p.

The order is the one Hugging Face's ``generate`` uses: repetition penalty on the raw logits, then either
greedy argmax (``temperature == 0``) or temperature scaling, top-k, top-p (nucleus) and a draw from a
seeded ``torch.Generator`` (never the global RNG). Selection runs in float32 on the CPU, so a seed gives
the same tokens whatever device the model runs on.

Example:
    >>> logits = torch.tensor([0.0, 3.0, 1.0, 2.0])
    >>> select_token(logits, temperature=0.0)
    1
    >>> g = torch.Generator().manual_seed(0)
    >>> select_token(logits, temperature=1.0, top_k=1, generator=g)
    1
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from leanml.errors import LeanmlError


def apply_repetition_penalty(logits: torch.Tensor, seen: Sequence[int], penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (as in Hugging Face): the logit of every token in ``seen`` is divided by
    ``penalty`` when positive, multiplied when negative. ``penalty == 1`` returns ``logits`` unchanged.

    Example:
        >>> apply_repetition_penalty(torch.tensor([2.0, -2.0, 1.0]), [0, 1], 2.0).tolist()
        [1.0, -4.0, 1.0]
    """
    if penalty == 1.0 or len(seen) == 0:
        return logits
    out = logits.clone()  # (V,)
    idx = torch.tensor(sorted(set(seen)), dtype=torch.long, device=logits.device)  # (S,)
    picked = out[idx]  # (S,)
    out[idx] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return out


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the ``k``-th largest to -inf (ties with it are kept); ``k == 0`` is off.

    Example:
        >>> top_k_filter(torch.tensor([1.0, 4.0, 3.0, 2.0]), 2).tolist()
        [-inf, 4.0, 3.0, -inf]
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k).values[-1]  # scalar: the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))  # (V,)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probabilities sum to at least ``p``
    (the most likely token always stays); the rest get -inf. ``p == 1`` is off.

    Example:
        >>> probs = torch.tensor([0.1, 0.5, 0.3, 0.1])
        >>> top_p_filter(probs.log(), 0.7).isfinite().tolist()  # 0.5 + 0.3 >= 0.7
        [False, True, True, False]
    """
    if p >= 1.0:
        return logits
    order = torch.argsort(logits, descending=True, stable=True)  # (V,) ties: lower id first, as argmax
    probs = torch.softmax(logits[order], dim=-1)  # (V,) sorted, descending
    before = torch.cumsum(probs, dim=-1) - probs  # (V,) mass of the strictly more likely tokens
    drop_sorted = before >= p  # (V,) the set reached p without this token
    drop_sorted[0] = False
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)  # (V,) back in vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def select_token(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    seen: Sequence[int] = (),
    repetition_penalty: float = 1.0,
) -> int:
    """The next token id from one position's ``logits`` (V,): greedy when ``temperature == 0``, else a draw
    from the temperature-scaled, top-k and top-p filtered distribution with ``generator`` (a CPU generator;
    required when sampling). ``seen`` are the ids the repetition penalty applies to.

    Example:
        >>> select_token(torch.tensor([0.0, 1.0, 5.0]), seen=[2], repetition_penalty=10.0)
        1
    """
    if logits.ndim != 1:
        raise LeanmlError(f"select_token needs one position's logits (V,), got shape {tuple(logits.shape)}")
    x = logits.detach().float().cpu()  # (V,)
    x = apply_repetition_penalty(x, seen, repetition_penalty)
    if temperature == 0.0:
        return int(torch.argmax(x))
    if generator is None:
        raise LeanmlError("sampling (temperature > 0) needs a seeded torch.Generator", "pass generator=...")
    x = top_p_filter(top_k_filter(x / temperature, top_k), top_p)  # (V,)
    probs = torch.softmax(x, dim=-1)  # (V,)
    return int(torch.multinomial(probs, 1, generator=generator))
