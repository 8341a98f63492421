"""AWQ's two searches as tensor functions: activation-aware scales and weight clipping ranges.

Follows mit-han-lab/llm-awq (``awq/quantize/auto_scale.py``, ``auto_clip.py``); the quantizer inside
both searches is leanml's own group quantizer (:func:`leanml.llm.quant.groupquant.fake_quantize_weight`), the
one RTN and the packed format use, so the search scores exactly the weights that will be stored.

* **Scales.** For a group of linears that read the same input ``x`` (n, in), with ``x_mean`` the mean
  |x| per input channel: for alpha in ``0, 1/grid, ..., (grid-1)/grid``, ``s = x_mean^alpha`` (or with
  AutoAWQ's duo scaling ``x_mean^alpha / w_mean^(1-alpha)``), normalized by ``sqrt(max(s) * min(s))``;
  each linear's weight becomes ``Q(W * s) / s``; the alpha whose module output has the smallest MSE
  against the float output wins. alpha = 0 is s = 1, plain RTN, so the search never does worse than
  RTN on the calibration data.
* **Clipping.** Per (output row, group): shrink the symmetric range ``max|w|`` by ``1 - i/grid`` for
  ``i < max_shrink * grid``, quantize the clipped weight, and keep the range whose group partial sums
  ``x_g . w_g`` over sampled tokens have the smallest MSE.

Example:
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(64, 32) * torch.linspace(0.1, 4, 32)  # (tokens, in): uneven channels
    >>> lin = torch.nn.Linear(32, 8, bias=False)
    >>> s, errors = search_scale(x, [lin], lin, bits=3, group_size=16, grid=10)
    >>> s.shape, len(errors), min(errors) <= errors[0]  # errors[0] is alpha = 0, plain RTN
    (torch.Size([32]), 10, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.llm.quant.groupquant import fake_quantize_weight, n_groups

ModuleOutput = Callable[[torch.Tensor], torch.Tensor]  # x (..., in) → module output tensor


def act_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean |x| per input channel over every token: x (..., in) → (in,) float32.

    Example:
        >>> act_mean(torch.tensor([[1.0, -2.0], [3.0, 0.0]])).tolist()
        [2.0, 1.0]
    """
    return x.reshape(-1, x.shape[-1]).abs().float().mean(0)


def weight_mean(weights: Sequence[torch.Tensor], group_size: int) -> torch.Tensor:
    """AutoAWQ's w_mean: |W| normalized by each (row, group) max, averaged over all output rows → (in,).

    Example:
        >>> [round(v, 4) for v in weight_mean([torch.tensor([[1.0, 2.0], [4.0, 4.0]])], group_size=2).tolist()]
        [0.75, 1.0]
    """
    w = torch.cat([t.detach().float() for t in weights], dim=0)  # (out_total, in)
    out_f, in_f = w.shape
    g = n_groups(in_f, group_size)
    padded = F.pad(w.abs(), (0, g * group_size - in_f)).reshape(out_f, g, group_size)  # (out, G, g)
    normed = padded / (padded.amax(dim=-1, keepdim=True) + 1e-6)
    return normed.reshape(out_f, -1)[:, :in_f].mean(0)


def scales_for(alpha: float, x_mean: torch.Tensor, w_mean: torch.Tensor | None = None) -> torch.Tensor:
    """The per-input-channel scale s (in,) for one alpha, normalized so ``max(s) * min(s) == 1``.

    Example:
        >>> [round(v, 4) for v in scales_for(0.5, torch.tensor([1.0, 4.0, 16.0])).tolist()]
        [0.5, 1.0, 2.0]
    """
    if w_mean is None:
        s = x_mean.pow(alpha).clamp(min=1e-4)
    else:
        s = (x_mean.pow(alpha) / (w_mean.pow(1 - alpha) + 1e-4)).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def _call(module: nn.Module | ModuleOutput, x: torch.Tensor) -> torch.Tensor:
    out = module(x)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def search_scale(
    x: torch.Tensor,
    linears: Sequence[nn.Linear],
    inspect: nn.Module | ModuleOutput,
    bits: int,
    group_size: int,
    grid: int = 20,
    duo_scaling: bool = False,
) -> tuple[torch.Tensor, list[float]]:
    """Grid-search AWQ's input scale for ``linears`` (which all read ``x`` (..., in)); returns (s (in,), errors).

    ``inspect`` maps ``x`` to the output whose MSE is scored (the attention block, the MLP, or the
    linear itself); the linears' weights are restored before returning. ``errors[i]`` is alpha = i / grid.

    Example:
        >>> lin = torch.nn.Linear(8, 4, bias=False)
        >>> s, _ = search_scale(torch.randn(16, 8), [lin], lin, bits=4, group_size=8, grid=4)
        >>> bool((s > 0).all())
        True
    """
    originals = [lin.weight.detach().clone() for lin in linears]
    reference = _call(inspect, x)
    x_mean = act_mean(x)
    w_mean = weight_mean(originals, group_size) if duo_scaling else None
    errors: list[float] = []
    best, best_err = torch.ones_like(x_mean), float("inf")
    try:
        for i in range(grid):
            s = scales_for(i / grid, x_mean, w_mean)  # (in,)
            for lin, w in zip(linears, originals, strict=True):
                scaled = w.float() * s.view(1, -1)  # (out, in)
                lin.weight.copy_(fake_quantize_weight(scaled, bits, group_size) / s.view(1, -1))
            err = float((_call(inspect, x) - reference).float().pow(2).mean())
            errors.append(err)
            if err < best_err:
                best, best_err = s, err
    finally:
        for lin, w in zip(linears, originals, strict=True):
            lin.weight.copy_(w)
    return best, errors


def sample_tokens(x: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Every k-th token of x (..., in) flattened to (n, in), k = max(1, N // n_tokens), as the reference does.

    Example:
        >>> sample_tokens(torch.arange(20.0).reshape(10, 2), 4).shape
        torch.Size([5, 2])
    """
    flat = x.reshape(-1, x.shape[-1])  # (N, in)
    return flat[:: max(1, flat.shape[0] // n_tokens)]


@torch.no_grad()
def search_clip(
    w: torch.Tensor,
    x: torch.Tensor,
    bits: int,
    group_size: int,
    grid: int = 20,
    max_shrink: float = 0.5,
    rows_per_batch: int = 256,
) -> torch.Tensor:
    """Best symmetric clipping range per (row, group) of weight w (out, in) for inputs x (n, in) → (out, G).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> w = torch.randn(4, 32); w[0, 0] = 20.0  # one outlier
        >>> m = search_clip(w, torch.randn(64, 32), bits=3, group_size=16, grid=10)
        >>> m.shape, bool((m <= w.abs().reshape(4, 2, 16).amax(-1) + 1e-6).all())
        (torch.Size([4, 2]), True)
    """
    out_f, in_f = w.shape
    g = n_groups(in_f, group_size)
    pad = g * group_size - in_f
    xg = F.pad(x.float(), (0, pad)).reshape(-1, g, group_size)  # (n, G, g)
    best_all: list[torch.Tensor] = []
    for r0 in range(0, out_f, rows_per_batch):
        wb = F.pad(w[r0 : r0 + rows_per_batch].float(), (0, pad))  # (c, G*g)
        c = wb.shape[0]
        wg = wb.reshape(c, g, group_size)  # (c, G, g)
        org_max = wg.abs().amax(dim=-1, keepdim=True)  # (c, G, 1)
        best_max = org_max.clone()
        min_err = torch.full_like(org_max, float("inf"))
        reference = torch.einsum("ngk,cgk->cng", xg, wg)  # (c, n, G) partial sums per group
        for i in range(int(max_shrink * grid)):
            max_val = org_max * (1 - i / grid)  # (c, G, 1)
            clipped = torch.maximum(torch.minimum(wg, max_val), -max_val).reshape(c, -1)  # (c, G*g)
            qw = fake_quantize_weight(clipped, bits, group_size).reshape(c, g, group_size)
            err = (torch.einsum("ngk,cgk->cng", xg, qw) - reference).pow(2).mean(dim=1).unsqueeze(-1)  # (c, G, 1)
            better = err < min_err
            min_err[better] = err[better]
            best_max[better] = max_val[better]
        best_all.append(best_max.squeeze(-1))
    return torch.cat(best_all, dim=0)  # (out, G)


@torch.no_grad()
def apply_clip_(lin: nn.Linear, max_val: torch.Tensor, group_size: int) -> None:
    """Clamp ``lin``'s weight (out, in) per (row, group of ``group_size``) to [-max_val, max_val], max_val (out, G).

    Example:
        >>> lin = torch.nn.Linear(3, 1, bias=False)
        >>> _ = lin.weight.data.copy_(torch.tensor([[3.0, -1.0, -4.0]]))
        >>> apply_clip_(lin, torch.tensor([[2.0, 1.0]]), group_size=2)
        >>> lin.weight.tolist()
        [[2.0, -1.0, -1.0]]
    """
    out_f, in_f = lin.weight.shape
    if tuple(max_val.shape) != (out_f, n_groups(in_f, group_size)):
        raise LeanmlError(
            f"clip ranges of shape {tuple(max_val.shape)} do not fit a ({out_f}, {in_f}) weight at group {group_size}",
            "use the search result made for this model and group size",
        )
    limit = max_val.to(lin.weight.dtype).repeat_interleave(group_size, dim=1)[:, :in_f]  # (out, in)
    lin.weight.copy_(torch.maximum(torch.minimum(lin.weight, limit), -limit))
