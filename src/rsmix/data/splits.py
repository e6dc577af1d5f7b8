"""Splits for model selection and low-data regimes: a stratified, seeded train/validation split
(:func:`train_val_indices`, :func:`train_val_split`) and class-balanced subsets
(:func:`class_balanced_subset`). Every draw comes from a ``torch.Generator`` seeded by the caller.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Tuple

import torch

from ..errors import UsageError
from .args import check_int
from .container import ArrayDataset

__all__ = ["train_val_indices", "train_val_split", "class_balanced_subset"]


def _pick_per_class(labels: torch.Tensor, counts: torch.Tensor, seed: int) -> torch.Tensor:
    """Bool mask choosing ``counts[c]`` random images of each class ``c``.

    One shuffle of everything, then a stable sort by class keeps each class in random order; the
    first ``counts[c]`` of class ``c`` are taken. A smaller count picks a subset of a larger one.
    """
    g = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    shuffled = torch.randperm(n, generator=g)
    by_class = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    sorted_labels = labels[by_class]
    per_class = torch.bincount(labels, minlength=counts.shape[0])
    starts = torch.cumsum(per_class, 0) - per_class
    rank = torch.arange(n) - starts[sorted_labels]
    picked = torch.zeros(n, dtype=torch.bool)
    picked[by_class] = rank < counts[sorted_labels]
    return picked


def train_val_indices(labels: torch.Tensor, val_fraction: float, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sorted index tensors ``(train, val)`` of a stratified split: in every class,
    ``round(val_fraction * count)`` images (at most ``count - 1``) go to validation."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise TypeError(f"Expected val_fraction to be a number, but got {type(val_fraction).__name__} instead.")
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"Expected val_fraction in (0, 1), but got {val_fraction} instead.")
    seed = check_int("seed", seed, 0)
    labels = torch.as_tensor(labels).long().cpu()
    per_class = torch.bincount(labels)
    n_val = torch.floor(per_class.double() * float(val_fraction) + 0.5).long()
    n_val = torch.minimum(n_val, (per_class - 1).clamp(min=0))
    val = _pick_per_class(labels, n_val, seed)
    return (~val).nonzero().squeeze(1), val.nonzero().squeeze(1)


def train_val_split(dataset: ArrayDataset, val_fraction: float, seed: int = 0) -> Tuple[ArrayDataset, ArrayDataset]:
    """Carve a stratified validation split out of a training set: ``(train, val)``, disjoint,
    each in the original order, the same for the same seed."""
    train_idx, val_idx = train_val_indices(dataset.labels, val_fraction, seed)
    return dataset.subset(train_idx), dataset.subset(val_idx)


def class_balanced_subset(
    dataset: ArrayDataset,
    fraction: Optional[float] = None,
    seed: int = 0,
    *,
    per_class: Optional[int] = None,
) -> ArrayDataset:
    """The same number of random images from every class, in the original order.

    Give ``per_class``, or ``fraction`` of the dataset: ``round(fraction * len / num_classes)``
    per class. For one seed a smaller subset is contained in a larger one, so low-data regimes
    are nested.
    """
    if (fraction is None) == (per_class is None):
        raise UsageError("Expected exactly one of fraction and per_class, but got both or neither instead.")
    seed = check_int("seed", seed, 0)
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
            raise TypeError(f"Expected fraction to be a number, but got {type(fraction).__name__} instead.")
        if not 0.0 < fraction <= 1.0:
            raise UsageError(f"Expected fraction in (0, 1], but got {fraction} instead.")
        per_class = max(1, math.floor(fraction * len(dataset) / dataset.num_classes + 0.5))
    per_class = check_int("per_class", per_class, 1)
    counts = dataset.class_counts()
    short = (counts < per_class).nonzero().squeeze(1)
    if short.numel() > 0:
        c = int(short[0])
        raise UsageError(
            f"Expected at least {per_class} images of every class, "
            f"but got {int(counts[c])} of class {dataset.classes[c]!r} instead."
        )
    picked = _pick_per_class(dataset.labels, torch.full_like(counts, per_class), seed)
    return dataset.subset(picked)
