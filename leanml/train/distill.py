"""Knowledge-distillation loss (Hinton et al.): soft teacher targets plus hard labels.

Example:
    >>> import torch
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> y = torch.tensor([0, 1, 2, 3])
    >>> distillation_loss(s, t, y, alpha=0.0, temperature=4.0).item() == torch.nn.functional.cross_entropy(s, y).item()
    True
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.9,
    temperature: float = 4.0,
) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``.

    logits: (N, classes); labels: (N,). The T^2 factor keeps the soft-target
    gradients on the same scale as the hard-label ones.
    """
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 0.0:
        return hard
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits.detach() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard
