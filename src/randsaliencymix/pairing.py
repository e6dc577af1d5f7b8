"""How targets are paired with sources, batched on the device with no host synchronisation
(defined under RandSaliencyMix's ``pairing`` and under GuidedMixup in docs/methods.md in the
repository):

* :func:`complementary_pairing`: GuidedMixup's greedy one-cycle cover of a distance matrix (each
  target takes, among the images not yet used, the one whose saliency is farthest from its own),
  on the distances of :func:`saliency_distances` between :func:`guided_maps` (blurred,
  sum-normalised maps);
* :func:`confusion_sources`: each target's source drawn independently, with probability
  proportional to a running class-confusion matrix, and :func:`confusion_update`, the matrix's
  update from one step's model outputs, so that images are paired with the classes the model
  confuses them with.

A random permutation (the default pairing of every operator) is :func:`torch.randperm`.

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

from .geometry import categorical, normalised_maps

__all__ = [
    "CONFUSION_EPS",
    "CONFUSION_UPDATES",
    "complementary_pairing",
    "confusion_sources",
    "confusion_update",
    "gaussian_blur",
    "guided_maps",
    "saliency_distances",
    "uniform_confusion",
]

# Added to every confusion weight, so that any other image of the batch can be drawn.
CONFUSION_EPS = 1e-4
CONFUSION_UPDATES = ("mean", "sequential")
# GuidedMixup's smoothing of the saliency maps: a 7x7 Gaussian, sigma 3, reflect padding.
GUIDED_KSIZE = 7
GUIDED_SIGMA = 3.0


# --------------------------------------------------------------------------------------------
# Smoothed maps and their distances
# --------------------------------------------------------------------------------------------


def _gaussian_weights(ksize: int, sigma: float) -> List[float]:
    """torchvision's ``gaussian_blur`` kernel: ``exp(-x^2 / (2 sigma^2))`` at ``x = -(k-1)/2 ..
    (k-1)/2``, normalised to sum 1 (as Python floats: they scale tensors without a device read)."""
    half = (ksize - 1) * 0.5
    pdf = [math.exp(-0.5 * ((i - half) / sigma) ** 2) for i in range(ksize)]
    total = sum(pdf)
    return [v / total for v in pdf]


_INDEX_CACHE: Dict[Tuple[int, int, str], torch.Tensor] = {}


def _reflect_indices(size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of a row of ``size`` pixels padded by ``pad`` on each side by reflection without
    repeating the edge (``torch.nn.functional.pad(mode="reflect")``), also when ``pad >= size``
    (the reflection bounces)."""
    key = (size, pad, str(device))
    if key not in _INDEX_CACHE:
        i = torch.arange(-pad, size + pad)
        if size == 1:
            idx = torch.zeros_like(i)
        else:
            period = 2 * (size - 1)
            m = i.remainder(period)
            idx = torch.where(m < size, m, period - m)
        _INDEX_CACHE[key] = idx.to(device)
    return _INDEX_CACHE[key]


def gaussian_blur(maps: torch.Tensor, ksize: int = GUIDED_KSIZE, sigma: float = GUIDED_SIGMA) -> torch.Tensor:
    """Blur ``(B, H, W)`` maps with a ``ksize x ksize`` Gaussian of standard deviation ``sigma``
    (separable), reflect padding, float32: torchvision's ``gaussian_blur`` on maps of any size.

    Each pass is a weighted sum of ``ksize`` shifted slices: on a CPU several times faster than a
    one-channel convolution, and as fast on a GPU."""
    m = maps.float()
    pad = (ksize - 1) // 2
    weights = _gaussian_weights(ksize, sigma)
    _, h, w = m.shape
    if pad < h and pad < w:
        padded = F.pad(m.unsqueeze(1), (pad, pad, pad, pad), mode="reflect").squeeze(1)
    else:  # the reflection bounces more than once: pad by index
        padded = m.index_select(1, _reflect_indices(h, pad, m.device)).index_select(
            2, _reflect_indices(w, pad, m.device)
        )
    rows = torch.mul(padded[:, :, 0:w], weights[0])
    for i in range(1, ksize):
        rows.add_(padded[:, :, i : i + w], alpha=weights[i])
    out = torch.mul(rows[:, 0:h], weights[0])
    for i in range(1, ksize):
        out.add_(rows[:, i : i + h], alpha=weights[i])
    return out


def guided_maps(maps: torch.Tensor) -> torch.Tensor:
    """GuidedMixup's maps ``S~``: each ``(B, H, W)`` map blurred by a 7x7 Gaussian (sigma 3, reflect
    padding) and normalised to sum 1, float32. A map with no saliency (all zero) becomes uniform;
    NaN and negative values count as 0 (see :func:`~randsaliencymix.geometry.normalised_maps`)."""
    clean = torch.nan_to_num(maps.float(), nan=0.0, posinf=torch.finfo(torch.float32).max, neginf=0.0).clamp_(min=0)
    # Scale by the maximum first so that huge finite values cannot overflow in the blur's sums.
    clean = clean / clean.amax(dim=(1, 2), keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    return normalised_maps(gaussian_blur(clean))


def saliency_distances(smoothed: torch.Tensor) -> torch.Tensor:
    """``D[i, j] = ||S~_i - S~_j||_2`` ``(B, B)`` between ``(B, H, W)`` maps (float32)."""
    flat = smoothed.float().flatten(1)
    return torch.cdist(flat[None], flat[None])[0]


# --------------------------------------------------------------------------------------------
# GuidedMixup's greedy pairing
# --------------------------------------------------------------------------------------------


def complementary_pairing(distances: torch.Tensor) -> torch.Tensor:
    """GuidedMixup's greedy one-cycle cover of a ``(B, B)`` distance matrix: ``perm`` ``(B,)`` long.

    Start at the off-diagonal pair ``(r, c)`` of largest distance and set ``perm[r] = c``; then
    repeatedly move to ``r = c`` and take as ``c`` the farthest image not visited yet; the last one
    closes the cycle back to the first ``r``. Ties go to the lowest index (row-major for the first
    pair). The result is a permutation with no fixed point (one cycle through the batch) for
    ``B >= 2``; ``[0]`` for ``B = 1``.

    As the official ``onecycle_cover`` (kdst-team/GuidedMixup, ``pairing.pyx``) except that the
    diagonal is excluded before the first pair is chosen (the official code takes the global
    maximum first and, when every distance is 0, starts from a diagonal pair and returns a batch
    that is not a permutation). ``B - 2`` steps of ``O(B)`` tensor operations on the device, no
    host synchronisation.
    """
    n = int(distances.shape[0])
    dev = distances.device
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=dev)
    neg_inf = float("-inf")
    d = distances.detach().to(torch.float64 if distances.dtype == torch.float64 else torch.float32).clone()
    d.fill_diagonal_(neg_inf)
    flat = d.flatten().argmax().reshape(1)
    first, col = flat // n, flat % n
    perm = torch.empty(n, dtype=torch.long, device=dev)
    perm.index_copy_(0, first, col)
    d.index_fill_(1, first, neg_inf)  # the first row is taken only to close the cycle
    row = col
    for _ in range(n - 2):
        col = d.index_select(0, row).argmax(dim=1)
        perm.index_copy_(0, row, col)
        d.index_fill_(1, row, neg_inf)
        row = col
    perm.index_copy_(0, row, first)
    return perm


# --------------------------------------------------------------------------------------------
# Confusion pairing
# --------------------------------------------------------------------------------------------


def confusion_sources(
    confusion: torch.Tensor, classes: torch.Tensor, generator: torch.Generator, eps: float = CONFUSION_EPS
) -> torch.Tensor:
    """Each target's source, drawn independently: target ``i`` of class ``a`` takes ``j != i`` with
    probability proportional to ``confusion[a, class(j)] + eps``. ``(B,)`` long; with a batch of
    one the only image is its own source. One uniform per target from ``generator``.

    The result need not be a permutation (an image may be the source of several targets)."""
    n = int(classes.shape[0])
    dev = classes.device
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=dev)
    e = torch.nan_to_num(confusion.to(device=dev, dtype=torch.float64), nan=0.0, posinf=1.0).clamp_(min=0.0)
    weights = e.index_select(0, classes).index_select(1, classes).add_(eps)
    weights.fill_diagonal_(0.0)
    return categorical(weights, generator)


def _as_targets(targets: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(class of each sample (B,), target rows (B, K) float64)`` from indices or probabilities."""
    if targets.ndim == 1:
        classes = targets.long()
        return classes, F.one_hot(classes, k).double()
    rows = targets.detach().double()
    return rows.argmax(dim=1), rows


def confusion_update(
    confusion: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, weight: float, mode: str
) -> torch.Tensor:
    """The running class-confusion matrix ``E`` ``(K, K)`` after one step, as a new tensor.

    ``logits`` ``(B, K)`` are the model's outputs, ``targets`` ``(B,)`` class indices (``t`` their
    one-hot rows) or ``(B, K)`` probability rows ``t`` (class: their argmax). With ``d_i = |p_i - t_i|``
    and ``w = weight``:

    * ``mode="mean"``: ``p = softmax(logits)``; each class ``a`` present in the batch
      gets ``E[a] <- w * mean_{i of class a} d_i + (1 - w) * E[a]``; other rows are unchanged.
    * ``mode="sequential"`` (a per-sample loop, vectorised): ``p`` = logits shifted to a
      minimum of 0 and divided by their sum (uniform if all equal), and ``E[a_i] <- w * d_i +
      (1 - w) * E[a_i]`` sample after sample in batch order, so later samples of a class weigh more:
      ``E[a] <- (1 - w)^n E[a] + sum_k w (1 - w)^(n - k) d_(k)`` over the class's ``n`` samples.
    """
    k = confusion.shape[0]
    dev = confusion.device
    z = logits.detach().to(device=dev, dtype=torch.float64)
    classes, t = _as_targets(targets.to(dev), k)
    if mode == "mean":
        p = torch.softmax(z, dim=1)
    else:
        shifted = z - z.amin(dim=1, keepdim=True)
        total = shifted.sum(dim=1, keepdim=True)
        p = torch.where(total > 0, shifted / total.clamp(min=torch.finfo(torch.float64).tiny), 1.0 / k)
    diff = (p - t).abs()
    e = confusion.double()
    member = F.one_hot(classes, k).double()  # (B, K): sample i is of class a
    counts = member.sum(dim=0)  # (K,)
    if mode == "mean":
        sums = torch.zeros(k, k, dtype=torch.float64, device=dev).index_add_(0, classes, diff)
        mean = sums / counts.clamp(min=1.0)[:, None]
        new = torch.where(counts[:, None] > 0, weight * mean + (1.0 - weight) * e, e)
    else:
        rank = (member.cumsum(dim=0) * member).sum(dim=1)  # 1-based position within its class
        later = counts.index_select(0, classes) - rank  # samples of its class after it
        coef = weight * torch.pow(torch.tensor(1.0 - weight, dtype=torch.float64, device=dev), later)
        sums = torch.zeros(k, k, dtype=torch.float64, device=dev).index_add_(0, classes, diff * coef[:, None])
        keep = torch.pow(torch.tensor(1.0 - weight, dtype=torch.float64, device=dev), counts)
        new = keep[:, None] * e + sums
    return new.to(confusion.dtype)


def uniform_confusion(num_classes: int) -> torch.Tensor:
    """The initial confusion matrix: every entry ``1 / K`` (float32)."""
    return torch.full((num_classes, num_classes), 1.0 / num_classes, dtype=torch.float32)
