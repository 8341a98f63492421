"""Batch-norm folding: merge each eval-mode BN into the convolution (or linear) that feeds it.

For a conv with weight W (C_out, C_in/g, k, k) and bias b followed by BN with
(gamma, beta, mean, var, eps), the folded conv has, per output channel c:

    s_c  = gamma_c / sqrt(var_c + eps)
    W'_c = W_c * s_c
    b'_c = (b_c - mean_c) * s_c + beta_c

and the BN becomes ``nn.Identity``. Pairs are found on the traced graph (a BN
whose only input is a conv/linear that nothing else reads), so residual and
branching models fold correctly. Folding is what deployment runs, and what
int8 quantization quantizes.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> model = build_model("resnet").eval()
    >>> folded = fold_bn(model)
    >>> x = torch.randn(2, 1, 28, 28)
    >>> torch.allclose(folded(x), model(x), atol=1e-4)
    True
    >>> any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    False
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from leanml.errors import LeanmlError
from leanml.profile.graph import symbolic_trace

FOLDABLE: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: nn.BatchNorm1d,
    nn.Conv2d: nn.BatchNorm2d,
    nn.Conv3d: nn.BatchNorm3d,
    nn.Linear: nn.BatchNorm1d,
}


def fold_bn_weights(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    bn: nn.modules.batchnorm._BatchNorm,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Folded (weight, bias) for a layer with ``weight`` (C_out, ...) and ``bias`` (C_out,) followed by ``bn``.

    Example:
        >>> bn = nn.BatchNorm1d(2).eval()
        >>> w, b = fold_bn_weights(torch.ones(2, 3), None, bn)
        >>> w.shape, b.shape
        (torch.Size([2, 3]), torch.Size([2]))
    """
    if bn.running_mean is None or bn.running_var is None:
        raise LeanmlError(f"{type(bn).__name__} tracks no running statistics", "fold only BNs with track_running_stats")
    scale = torch.rsqrt(bn.running_var + bn.eps)  # (C_out,)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = bn.bias if bn.bias is not None else torch.zeros_like(scale)
    b = bias if bias is not None else torch.zeros_like(scale)
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return w, (b - bn.running_mean) * scale + shift


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def find_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer name, BN name) pairs where the BN reads only that layer's output and nothing else does.

    Example:
        >>> find_bn_pairs(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()))
        [('0', '1')]
    """
    graph = symbolic_trace(model).graph
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        layer = modules[src.target]
        bn_type = FOLDABLE.get(type(layer))
        if bn_type is not None and isinstance(modules[node.target], bn_type):
            pairs.append((str(src.target), str(node.target)))
    return pairs


@torch.no_grad()
def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every foldable BN merged into its producer and replaced by Identity.

    BNs that cannot be folded (no single conv/linear producer) are left in place.
    """
    folded = copy.deepcopy(model).eval()
    for layer_name, bn_name in find_bn_pairs(folded):
        layer = folded.get_submodule(layer_name)
        bn = folded.get_submodule(bn_name)
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        w, b = fold_bn_weights(layer.weight, layer.bias, bn)  # type: ignore[arg-type]
        layer.weight.copy_(w)  # type: ignore[operator]
        layer.bias = nn.Parameter(b)
        _set_submodule(folded, bn_name, nn.Identity())
    return folded
