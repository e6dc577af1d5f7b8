"""Cross-entropy against soft targets, the loss that mixed labels need.

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SoftTargetCrossEntropy", "soft_target_cross_entropy"]


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-sum_k targets_k * log_softmax(logits)_k`` per sample, reduced by ``reduction``."""
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError(
            f"Expected logits and targets as torch.Tensors, but got {type(logits).__name__} "
            f"and {type(targets).__name__} instead."
        )
    if logits.ndim != 2 or targets.shape != logits.shape:
        raise ValueError(
            f"Expected logits and targets of the same shape (B, K), but got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)} instead."
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"Expected reduction 'mean', 'sum' or 'none', but got {reduction!r} instead.")
    loss = -(targets.to(logits.dtype) * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class SoftTargetCrossEntropy(nn.Module):
    """:func:`soft_target_cross_entropy` as a module: ``criterion(logits (B, K), targets (B, K))``,
    ``reduction`` ``"mean"`` (the default), ``"sum"`` or ``"none"``, as in ``nn.CrossEntropyLoss``."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_target_cross_entropy(logits, targets, self.reduction)
