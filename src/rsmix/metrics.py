"""Classification metrics of a set of logits: top-1/top-5 error, NLL and calibration (ECE)."""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

__all__ = ["classification_metrics", "expected_calibration_error"]


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017), as a fraction in [0, 1]."""
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=probs.dtype)
    index = torch.bucketize(conf, edges[1:-1], right=False)
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    confs = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, conf.double())
    # Sum over bins of |accuracy - confidence| weighted by the bin's share = per-bin sums / N.
    return float((acc - confs).abs().sum() / max(len(labels), 1))


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    """``top1_err``, ``top5_err`` and ``ece`` in percent, ``nll`` in nats, of CPU float logits."""
    labels = labels.cpu()
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    top1 = (top[:, 0] == labels).double().mean()
    topk = (top == labels[:, None]).any(dim=1).double().mean()
    return {
        "top1_err": float(1 - top1) * 100,
        "top5_err": float(1 - topk) * 100,
        "nll": float(F.cross_entropy(logits, labels)),
        "ece": expected_calibration_error(torch.softmax(logits.double(), dim=1), labels) * 100,
    }
