"""Weight-shared elastic layers: the active kernel, channels and width are chosen per forward.

Pure tensor functions first (:func:`center_crop`, :func:`transform_kernel`), then
thin modules that hold the largest weights and slice them:

- :class:`ElasticConv` — dense conv (stem, 1x1 expand / project, head) whose
  input and output widths are the first ``cin`` / ``cout`` channels;
- :class:`ElasticDepthwise` — depthwise conv whose kernel is the center of the
  largest kernel, passed through OFA's kernel transformation matrices
  (7x7 → 5x5 → 3x3, each a learned (k², k²) matrix shared by all channels,
  initialised to the identity);
- :class:`ElasticBatchNorm` — batch norm over the first ``C`` channels (running
  statistics of the slice are read and updated in place);
- :class:`ElasticLinear` — classifier over the first ``cin`` features.

Extraction (:func:`leanml.nas.supernet.get_subnet`) reads the same
``active_weight`` the forward uses, so a subnet computes exactly what the
supernet computes with that architecture active.

Example:
    >>> dw = ElasticDepthwise(8, [3, 5, 7], stride=1)
    >>> dw(torch.randn(2, 6, 10, 10), kernel=5).shape
    torch.Size([2, 6, 10, 10])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from leanml.models.mobilenetv2 import ConvStage


def center_crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The central ``kernel`` x ``kernel`` window of a (C, I, K, K) weight.

    Example:
        >>> center_crop(torch.arange(25.).view(1, 1, 5, 5), 3)[0, 0, 0].tolist()
        [6.0, 7.0, 8.0]
    """
    size = weight.shape[-1]
    start = (size - kernel) // 2
    return weight[..., start : start + kernel, start : start + kernel]


def matrix_name(src: int, dst: int) -> str:
    """Key of the matrix that maps a ``src`` kernel's center to a ``dst`` kernel ("7to5").

    Example:
        >>> matrix_name(7, 5)
        '7to5'
    """
    return f"{src}to{dst}"


def transform_kernel(
    weight: torch.Tensor, kernel: int, kernels: list[int], matrices: dict[str, torch.Tensor]
) -> torch.Tensor:
    """OFA's elastic kernel: step down ``kernels`` from the largest, center-crop then apply each step's matrix.

    weight: (C, I, K, K) with K = max(kernels) → (C, I, kernel, kernel). ``matrices[matrix_name(a, b)]``
    is (b², b²); the crop's flattened values x become ``x @ M.T``.

    Example:
        >>> w = torch.randn(4, 1, 7, 7)
        >>> eye = {matrix_name(7, 5): torch.eye(25), matrix_name(5, 3): torch.eye(9)}
        >>> torch.equal(transform_kernel(w, 3, [3, 5, 7], eye), center_crop(w, 3))
        True
    """
    out = weight
    for src, dst in zip(reversed(kernels[1:]), reversed(kernels[:-1]), strict=True):
        if src <= kernel:
            break
        crop = center_crop(out, dst)  # (C, I, dst, dst)
        c, i = crop.shape[:2]
        flat = crop.reshape(c * i, dst * dst)  # (C*I, dst²)
        out = F.linear(flat, matrices[matrix_name(src, dst)]).reshape(c, i, dst, dst)
    return out


class ElasticConv(nn.Module):
    """Dense conv with the largest (cout, cin, k, k) weight; a forward uses the first ``cout`` x ``cin`` slice."""

    def __init__(self, max_in: int, max_out: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.stride = stride

    def active_weight(self, cin: int, cout: int) -> torch.Tensor:
        """(cout, cin, k, k) view of the shared weight."""
        return self.weight[:cout, :cin]

    def stage_weight(self, stage: ConvStage) -> torch.Tensor:
        """The weight this layer runs with as ``stage`` of an active block: (cout, cin, k, k)."""
        return self.active_weight(stage.cin, stage.cout)

    def forward(self, x: torch.Tensor, cout: int) -> torch.Tensor:
        # x: (N, cin, H, W) → (N, cout, H/s, W/s)
        k = self.weight.shape[-1]
        return F.conv2d(x, self.active_weight(x.shape[1], cout), None, self.stride, k // 2)


class ElasticDepthwise(nn.Module):
    """Depthwise conv holding the largest kernel, with one transform matrix per kernel step (identity at init)."""

    def __init__(self, max_channels: int, kernels: list[int], stride: int = 1) -> None:
        super().__init__()
        self.kernels = list(kernels)
        self.weight = nn.Parameter(torch.empty(max_channels, 1, kernels[-1], kernels[-1]))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.matrices = nn.ParameterDict(
            {matrix_name(s, d): nn.Parameter(torch.eye(d * d)) for s, d in zip(kernels[1:], kernels[:-1], strict=True)}
        )
        self.stride = stride

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        """(channels, 1, kernel, kernel): the transformed center of the first ``channels`` filters."""
        matrices = {k: v for k, v in self.matrices.items()}
        return transform_kernel(self.weight[:channels], kernel, self.kernels, matrices)

    def stage_weight(self, stage: ConvStage) -> torch.Tensor:
        """The weight this layer runs with as ``stage`` of an active block: (hidden, 1, kernel, kernel)."""
        return self.active_weight(stage.cout, stage.kernel)

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        c = x.shape[1]  # x: (N, C, H, W) → (N, C, H/s, W/s)
        return F.conv2d(x, self.active_weight(c, kernel), None, self.stride, kernel // 2, groups=c)


class ElasticBatchNorm(nn.BatchNorm2d):
    """Batch norm over the first C channels of the largest layer (statistics of the slice updated in place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]  # x: (N, C, H, W)
        if c == self.num_features:
            return super().forward(x)
        assert self.running_mean is not None and self.running_var is not None
        if self.training and self.momentum is None:
            raise ValueError("ElasticBatchNorm on a slice needs a momentum; recalibrate the extracted subnet instead")
        return F.batch_norm(
            x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
            self.training, self.momentum if self.momentum is not None else 0.0, self.eps,
        )  # fmt: skip


class ElasticLinear(nn.Module):
    """Classifier over the first ``cin`` features of the largest layer."""

    def __init__(self, max_in: int, out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(max_in, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, cin) → (N, out)
        return F.linear(x, self.linear.weight[:, : x.shape[1]], self.linear.bias)
