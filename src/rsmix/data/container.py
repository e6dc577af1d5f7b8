"""The in-memory dataset: :class:`ArrayDataset`, its per-channel statistics and class lists.

Every loader returns an :class:`ArrayDataset`; the helpers here check a caller's class list and map
the class names a source holds onto it, so that every split of a source labels with one list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import UsageError
from .args import check_int

__all__ = ["ArrayDataset", "channel_stats", "check_classes", "class_index", "first_per_class", "relabel"]


def channel_stats(images: torch.Tensor, batch_size: int = 4096) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images on the 0-1 scale.

    The sums run in float64 over chunks of ``batch_size`` images: exact for any dataset that fits
    in memory (every term is an integer below 2**16), and the float64 copy stays small.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"Expected images as a uint8 torch.Tensor, but got {got} instead.")
    if images.ndim != 4:
        raise ValueError(f"Expected images of shape (N, C, H, W), but got {tuple(images.shape)} instead.")
    if images.shape[0] == 0 or images.shape[2] * images.shape[3] == 0:
        raise UsageError("Expected at least one pixel to compute channel statistics, but got an empty dataset.")
    batch_size = check_int("batch_size", batch_size, 1)
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(images.shape[1], dtype=torch.float64)
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size].to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        total_sq += chunk.square().sum(dim=(0, 2, 3)).cpu()
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp(min=0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


@dataclass
class ArrayDataset:
    """A whole split in memory: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``.

    ``classes[k]`` names label ``k``. ``masks`` (bool ``(N, H, W)``, optional) marks each image's
    object where the source knows it (the procedural dataset with ``return_masks=True``).
    NumPy arrays are accepted and turned into tensors.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: List[str]
    masks: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if isinstance(self.images, np.ndarray):
            self.images = torch.from_numpy(np.ascontiguousarray(self.images))
        if isinstance(self.labels, np.ndarray):
            self.labels = torch.from_numpy(np.ascontiguousarray(self.labels))
        if isinstance(self.masks, np.ndarray):
            self.masks = torch.from_numpy(np.ascontiguousarray(self.masks))
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8:
            got = self.images.dtype if isinstance(self.images, torch.Tensor) else type(self.images).__name__
            raise TypeError(f"Expected images as a uint8 torch.Tensor, but got {got} instead.")
        if self.images.ndim != 4:
            raise ValueError(f"Expected images of shape (N, C, H, W), but got {tuple(self.images.shape)} instead.")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64:
            got = self.labels.dtype if isinstance(self.labels, torch.Tensor) else type(self.labels).__name__
            raise TypeError(f"Expected labels as an int64 torch.Tensor, but got {got} instead.")
        if tuple(self.labels.shape) != (self.images.shape[0],):
            raise ValueError(
                f"Expected labels of shape ({self.images.shape[0]},) to match the images, "
                f"but got {tuple(self.labels.shape)} instead."
            )
        self.classes = [str(c) for c in self.classes]
        if len(self.classes) < 1:
            raise ValueError("Expected at least one class name, but got none instead.")
        if self.labels.numel() > 0:
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < 0 or hi >= len(self.classes):
                raise ValueError(
                    f"Expected labels in [0, {len(self.classes) - 1}] (one per class name), "
                    f"but got {lo if lo < 0 else hi} instead."
                )
        if self.masks is not None:
            expected = (self.images.shape[0], self.images.shape[2], self.images.shape[3])
            if self.masks.dtype != torch.bool or tuple(self.masks.shape) != expected:
                raise ValueError(
                    f"Expected masks as a bool tensor of shape {expected}, "
                    f"but got {self.masks.dtype} {tuple(self.masks.shape)} instead."
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> Tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def class_counts(self) -> torch.Tensor:
        """Number of images of each class, ``(num_classes,)`` int64."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def channel_stats(self, batch_size: int = 4096) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """Per-channel ``(mean, std)`` of the images on the 0-1 scale, as tuples of floats.

        Compute it on the training split and normalise every split with it.
        """
        return channel_stats(self.images, batch_size)

    def subset(self, indices: torch.Tensor) -> ArrayDataset:
        """The images at ``indices`` (int64 or bool mask), in that order, as a new dataset."""
        indices = torch.as_tensor(indices)
        if indices.dtype == torch.bool:
            indices = indices.nonzero().squeeze(1)
        indices = indices.long()
        masks = None if self.masks is None else self.masks.index_select(0, indices)
        return ArrayDataset(
            self.images.index_select(0, indices), self.labels.index_select(0, indices), list(self.classes), masks
        )


def first_per_class(labels: torch.Tensor, num_classes: int, limit: int) -> torch.Tensor:
    """Indices of the first ``limit`` images of each class, in dataset order (a bool mask)."""
    order = torch.sort(labels, stable=True).indices
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(labels.shape[0]) - starts[labels[order]]
    keep = torch.zeros(labels.shape[0], dtype=torch.bool)
    keep[order] = rank < limit
    return keep


def check_classes(classes: object) -> List[str]:
    """A caller's class list: a sequence of distinct, non-empty names (not one string)."""
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise TypeError(f"Expected classes as a list of names, but got {type(classes).__name__} instead.")
    names = list(classes)
    bad = [c for c in names if not isinstance(c, str)]
    if bad:
        raise TypeError(f"Expected every class name to be a str, but got {type(bad[0]).__name__} instead.")
    if not names or any(not c for c in names):
        raise UsageError(f"Expected a non-empty list of non-empty class names, but got {names!r} instead.")
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise UsageError(f"Expected distinct class names, but got {', '.join(duplicates)} more than once.")
    return names


def class_index(
    classes: Sequence[str], found: Iterable[str], where: str, listed: str = "the classes passed"
) -> Dict[str, int]:
    """``name -> label`` for the class list; every name in ``found`` must be one of ``classes``.

    ``listed`` says where the list came from, for the error naming an unknown class.
    """
    index = {c: k for k, c in enumerate(classes)}
    unknown = sorted({c for c in found if c not in index})
    if unknown:
        raise UsageError(
            f"Expected only the classes {', '.join(classes)} ({listed}), "
            f"but got the class {', '.join(unknown)} in {where} instead."
        )
    return index


def relabel(dataset: ArrayDataset, classes: Sequence[str], where: str) -> ArrayDataset:
    """The dataset with its labels as indices into ``classes`` (a superset of its own classes)."""
    if list(classes) == dataset.classes:
        return dataset
    index = class_index(classes, dataset.classes, where, "the classes passed as classes=")
    mapping = torch.tensor([index[c] for c in dataset.classes], dtype=torch.int64)
    return ArrayDataset(dataset.images, mapping[dataset.labels], list(classes), dataset.masks)
