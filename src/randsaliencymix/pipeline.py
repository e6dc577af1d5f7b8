"""Input pipelines: uint8 images in, normalised float batches out, with CIFAR-style augmentation.

* :class:`DeviceLoader` keeps the whole uint8 dataset as one tensor on the device and builds each
  batch with a few tensor ops: a random crop from the zero- (or reflect-) padded image and a
  horizontal flip, for every sample at once. No worker processes, no per-sample Python.
* :func:`make_dataloader` is the ``torch.utils.data.DataLoader`` route for data that should stay on
  the host (larger images, more data than device memory): the same crop and flip, per sample, with
  each sample's draw seeded from the caller's generator so results do not depend on
  ``num_workers``.

Both share :func:`crop_flip`, so the two routes have the same augmentation by construction: the
crop's top-left corner in the padded image is uniform in ``[0, 2 * padding]`` per axis and the
flip, applied after the crop, has probability 1/2 (torchvision's ``RandomCrop(size, padding)``
then ``RandomHorizontalFlip()``). Evaluation mode does neither and keeps the dataset order.
"""

from __future__ import annotations

import math
import numbers
from functools import partial
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ._random import pick_generator
from .data.container import channel_stats  # the per-channel statistics live with the dataset

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "PADDING_MODES",
    "channel_stats",
    "crop_flip",
    "random_crop_flip",
    "normalize",
    "DeviceLoader",
    "make_dataloader",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
PADDING_MODES = ("zeros", "reflect", "replicate")

Stats = Sequence[float]


def _check_uint8_images(images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"Expected images as a uint8 torch.Tensor, but got {got} instead.")
    if images.ndim != 4:
        raise ValueError(f"Expected images of shape (N, C, H, W), but got {tuple(images.shape)} instead.")
    return images


def _check_padding(padding: object, padding_mode: str, height: int, width: int) -> int:
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"Expected crop_padding to be an int >= 0, but got {padding!r} instead.")
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"Expected padding_mode to be one of {', '.join(map(repr, PADDING_MODES))}, "
            f"but got {padding_mode!r} instead."
        )
    if padding_mode == "reflect" and padding >= min(height, width):
        raise ValueError(
            f"Expected crop_padding < {min(height, width)} for reflect padding of "
            f"{height}x{width} images, but got {padding} instead."
        )
    return int(padding)


def _stats_tensor(name: str, values: Optional[Stats], default: float, channels: int) -> torch.Tensor:
    if values is None:
        return torch.full((channels,), default, dtype=torch.float32)
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() not in (1, channels):
        raise ValueError(f"Expected {name} with 1 or {channels} values (one per channel), but got {t.numel()} instead.")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"Expected finite {name}, but got {tuple(t.tolist())} instead.")
    return t.expand(channels).clone()


def crop_flip(
    images: torch.Tensor,
    corners: torch.Tensor,
    flips: torch.Tensor,
    padding: int,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Crop each image from its padded copy at ``corners`` and mirror those with ``flips``.

    ``images`` ``(B, C, H, W)`` (any dtype); ``corners`` ``(B, 2)`` integer (row, col) of the crop's
    top-left pixel in the image padded by ``padding`` on every side, each in ``[0, 2 * padding]``;
    ``flips`` ``(B,)`` bool. The output has the input's shape; ``padding_mode`` is ``"zeros"``
    (black, as torchvision's RandomCrop), ``"reflect"`` or ``"replicate"``. The padded image is never
    built: one gather reads every output pixel from its source pixel.
    """
    b, _, h, w = images.shape
    dev = images.device
    corners = corners.to(device=dev, dtype=torch.long)
    # Output pixel (i, j) reads padded pixel (top + i, left + j), i.e. image pixel (top + i - p, ...).
    rows = corners[:, 0:1] - padding + torch.arange(h, device=dev)  # (B, H)
    cols = corners[:, 1:2] - padding + torch.arange(w, device=dev)  # (B, W)
    # The flip comes after the crop: output column j shows crop column W - 1 - j.
    cols = torch.where(flips.to(dev).view(b, 1), cols.flip(1), cols)
    inside = None
    if padding_mode == "zeros":
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    elif padding_mode == "reflect":
        # Mirror without repeating the edge pixel, as numpy/torch "reflect" (padding < size).
        rows = torch.where(rows < 0, -rows, torch.where(rows >= h, 2 * (h - 1) - rows, rows))
        cols = torch.where(cols < 0, -cols, torch.where(cols >= w, 2 * (w - 1) - cols, cols))
    else:
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    batch = torch.arange(b, device=dev)
    # Advanced indices around the channel slice put the broadcast dims first: (B, H, W, C).
    out = images[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    if inside is not None:
        out = out * inside.unsqueeze(-1).to(out.dtype)
    return out.permute(0, 3, 1, 2)


def random_crop_flip(
    images: torch.Tensor,
    generator: torch.Generator,
    padding: int = 4,
    flip: bool = True,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """:func:`crop_flip` with corners and flips drawn from ``generator`` (corners first)."""
    b, dev = images.shape[0], images.device
    corners = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator, device=dev)
    if flip:
        flips = torch.randint(0, 2, (b,), generator=generator, device=dev).bool()
    else:
        flips = torch.zeros(b, dtype=torch.bool, device=dev)
    return crop_flip(images, corners, flips, padding, padding_mode)


def normalize(
    images: torch.Tensor,
    mean: Union[torch.Tensor, Stats],
    std: Union[torch.Tensor, Stats],
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` to ``(x / 255 - mean) / std`` as ``dtype``, in the asked memory format."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device)
    std = torch.as_tensor(std, dtype=torch.float32, device=images.device)
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (-mean / std).view(1, -1, 1, 1)
    # One multiply-add in float32, whatever the output dtype, so half precision rounds only once.
    out = torch.addcmul(shift, images.to(torch.float32), scale).to(dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return out.contiguous(memory_format=fmt)


class DeviceLoader:
    """Batches of a uint8 dataset held on the device as one tensor.

    Each ``iter()`` is one epoch. In training mode the order is a new ``torch.randperm`` drawn from
    ``generator`` (on ``device``; the device's default generator when None) and every batch gets a
    random crop from the image padded by ``crop_padding`` and, with ``flip``, a horizontal flip;
    the draws are, in order, the epoch's permutation, then per batch the crop corners and flips.
    In evaluation mode (``train=False``) the dataset order is kept and nothing is random.

    Yields ``(x, y)``: ``x`` ``(B, C, H, W)`` of ``dtype``, ``(x / 255 - mean) / std`` (mean 0 and
    std 1 when not given), channels_last when asked; ``y`` the int64 labels. With ``drop_last``
    a last incomplete batch is skipped; ``len()`` is the number of batches per epoch.

    Several processes (``world_size > 1``, training only): every rank holds the same generator
    state, draws the same permutation, and takes its own ``batch_size`` slice ``rank`` of each
    global batch of ``batch_size * world_size`` (an incomplete last global batch is dropped); each
    rank then draws the crops and flips of its own slice.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        generator: Optional[torch.Generator] = None,
        *,
        train: bool = True,
        crop_padding: int = 4,
        flip: bool = True,
        padding_mode: str = "zeros",
        mean: Optional[Stats] = None,
        std: Optional[Stats] = None,
        device: Optional[Union[str, torch.device]] = None,
        drop_last: bool = False,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        images = _check_uint8_images(images)
        if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"Expected labels of shape ({images.shape[0]},), but got {got} instead.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"Expected batch_size to be an int >= 1, but got {batch_size!r} instead.")
        if images.shape[0] < 1:
            raise ValueError("Expected at least one image, but got an empty dataset instead.")
        if not dtype.is_floating_point:
            raise TypeError(f"Expected a floating-point dtype, but got {dtype} instead.")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(device=self.device, dtype=torch.long)
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.crop_padding = _check_padding(crop_padding, padding_mode, images.shape[2], images.shape[3])
        self.padding_mode = padding_mode
        self.flip = bool(flip)
        channels = images.shape[1]
        self.mean = _stats_tensor("mean", mean, 0.0, channels).to(self.device)
        self.std = _stats_tensor("std", std, 1.0, channels).to(self.device)
        if not bool((self.std > 0).all()):
            raise ValueError(f"Expected std > 0, but got {tuple(self.std.tolist())} instead.")
        self.drop_last = bool(drop_last)
        self.channels_last = bool(channels_last)
        self.dtype = dtype
        self.generator = pick_generator(generator, self.device) if self.train else generator
        if isinstance(world_size, bool) or not isinstance(world_size, numbers.Integral) or world_size < 1:
            raise ValueError(f"Expected world_size to be an int >= 1, but got {world_size!r} instead.")
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank < world_size:
            raise ValueError(f"Expected rank in [0, {world_size - 1}], but got {rank!r} instead.")
        if world_size > 1 and not self.train:
            raise ValueError("Expected world_size 1 in evaluation mode, but got a sharded evaluation instead.")
        self.rank, self.world_size = int(rank), int(world_size)
        if world_size > 1:
            self.drop_last = True

    @classmethod
    def from_dataset(
        cls, dataset: object, batch_size: int, generator: Optional[torch.Generator] = None, **kwargs: object
    ) -> DeviceLoader:
        """A loader over an :class:`~randsaliencymix.data.ArrayDataset` (its images and labels)."""
        return cls(dataset.images, dataset.labels, batch_size, generator, **kwargs)  # type: ignore[attr-defined]

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // (self.batch_size * self.world_size)
        return math.ceil(self.num_samples / self.batch_size)

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.train or (self.crop_padding == 0 and not self.flip):
            return batch
        return random_crop_flip(batch, self.generator, self.crop_padding, self.flip, self.padding_mode)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_samples
        if self.train:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = None
        global_batch = self.batch_size * self.world_size
        for b in range(len(self)):
            start = b * global_batch + self.rank * self.batch_size
            stop = min(start + self.batch_size, n)
            if order is None:
                x, y = self.images[start:stop], self.labels[start:stop]
            else:
                idx = order[start:stop]
                x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            x = self._augment(x)
            yield normalize(x, self.mean, self.std, self.dtype, self.channels_last), y


# ----------------------------------------------------------------------------------------------
# The DataLoader route
# ----------------------------------------------------------------------------------------------


class _SeededShuffle(Sampler):
    """Each epoch: a permutation and one seed per sample, both drawn from the caller's generator.

    Yields ``(index, seed)``; a sample's crop and flip come from its own seed, so they are the same
    whichever worker loads it.
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n = n
        self.generator = generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        order = torch.randperm(self.n, generator=self.generator)
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator)
        return iter(zip(order.tolist(), seeds.tolist()))


class _AugmentedSamples(Dataset):
    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, train: bool, padding: int, flip: bool, padding_mode: str
    ) -> None:
        self.images, self.labels = images, labels
        self.train, self.padding, self.flip, self.padding_mode = train, padding, flip, padding_mode

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.train:
            return self.images[key], self.labels[key]
        index, seed = key
        image = self.images[index : index + 1]
        if self.padding > 0 or self.flip:
            g = torch.Generator().manual_seed(seed)
            image = random_crop_flip(image, g, self.padding, self.flip, self.padding_mode)
        return image[0].contiguous(), self.labels[index]


def _collate_normalised(
    samples: List[Tuple[torch.Tensor, torch.Tensor]],
    mean: torch.Tensor,
    std: torch.Tensor,
    dtype: torch.dtype,
    channels_last: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([s[0] for s in samples])
    labels = torch.stack([s[1] for s in samples]).long()
    return normalize(images, mean, std, dtype, channels_last), labels


def make_dataloader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: Optional[torch.Generator] = None,
    *,
    train: bool = True,
    crop_padding: int = 4,
    flip: bool = True,
    padding_mode: str = "zeros",
    mean: Optional[Stats] = None,
    std: Optional[Stats] = None,
    drop_last: bool = False,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over host uint8 images with :class:`DeviceLoader`'s augmentation per sample.

    Batches are ``(x, y)`` on the host as from :class:`DeviceLoader`. In training mode the order
    and each sample's crop and flip come from ``generator`` (a CPU generator; torch's default when
    None), the same for any ``num_workers``; in evaluation mode the order is kept.
    """
    images = _check_uint8_images(images)
    if images.device.type != "cpu":
        raise ValueError(f"Expected host (CPU) images for a DataLoader, but got {images.device} instead.")
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"Expected labels of shape ({images.shape[0]},), but got {got} instead.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"Expected batch_size to be an int >= 1, but got {batch_size!r} instead.")
    padding = _check_padding(crop_padding, padding_mode, images.shape[2], images.shape[3])
    channels = images.shape[1]
    mean_t = _stats_tensor("mean", mean, 0.0, channels)
    std_t = _stats_tensor("std", std, 1.0, channels)
    if not bool((std_t > 0).all()):
        raise ValueError(f"Expected std > 0, but got {tuple(std_t.tolist())} instead.")
    samples = _AugmentedSamples(images, labels.long(), bool(train), padding, bool(flip), padding_mode)
    sampler: Optional[Sampler] = None
    if train:
        sampler = _SeededShuffle(images.shape[0], pick_generator(generator, torch.device("cpu")))
    return DataLoader(
        samples,
        batch_size=int(batch_size),
        sampler=sampler,
        shuffle=False,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        collate_fn=partial(_collate_normalised, mean=mean_t, std=std_t, dtype=dtype, channels_last=channels_last),
    )
