"""Input pipelines: uint8 images in, normalised float batches out, with batched augmentation.

* :class:`DeviceLoader` keeps the whole uint8 dataset as one tensor on the device and builds each
  batch with a few tensor ops for every sample at once. No worker processes, no per-sample Python.
* :func:`make_dataloader` is the ``torch.utils.data.DataLoader`` route for data that should stay on
  the host (larger images, more data than device memory): the same augmentation, per sample, with
  each sample's draw seeded from the caller's generator so results do not depend on
  ``num_workers``.

Two augmentations, chosen explicitly with ``augment=`` (the same default for every dataset):
``"pad_crop"`` (CIFAR) and ``"resized_crop"`` (photographs), defined in :mod:`augment`.

Both routes share those functions, so they augment alike by construction. Evaluation mode does
neither and keeps the dataset order: the model is scored on the stored image.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union, cast

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import (
    AUGMENTS,
    PADDING_MODES,
    RRC_RATIO,
    RRC_SCALE,
    RRC_TRIES,
    Stats,
    _check_augment,
    _check_padding,
    _check_uint8_images,
    _is_int_at_least,
    _stats_tensor,
    check_rrc_range,
    crop_flip,
    normalize,
    random_crop_flip,
    random_resized_crop_flip,
    resized_crop_boxes,
    resized_crop_flip,
)
from .data.container import channel_stats  # the per-channel statistics live with the dataset

__all__ = [
    "AUGMENTS",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "PADDING_MODES",
    "RRC_RATIO",
    "RRC_SCALE",
    "RRC_TRIES",
    "DeviceLoader",
    "channel_stats",
    "check_rrc_range",
    "crop_flip",
    "make_dataloader",
    "normalize",
    "random_crop_flip",
    "random_resized_crop_flip",
    "resized_crop_boxes",
    "resized_crop_flip",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class DeviceLoader:
    """Batches of a uint8 dataset held on the device as one tensor.

    Each ``iter()`` is one epoch. In training mode the order is a new ``torch.randperm`` drawn from
    ``generator`` (on ``device``; the device's default generator when None) and every batch is
    augmented as ``augment`` says, for the whole batch at once:

    * ``"pad_crop"`` (the default, CIFAR's recipe): a random crop from the image padded by
      ``crop_padding`` (``padding_mode``) and, with ``flip``, a horizontal flip; the draws are, in
      order, the epoch's permutation, then per batch the crop corners and flips.
    * ``"resized_crop"`` (photographs): RandomResizedCrop with area fraction ``rrc_scale`` and
      aspect ratio ``rrc_ratio`` (default :data:`RRC_SCALE`, :data:`RRC_RATIO`), resized back to
      the stored size, then with ``flip`` a horizontal flip; the draws are the epoch's
      permutation, then per batch the boxes (:func:`resized_crop_boxes`) and the flips.
      ``crop_padding`` and ``padding_mode`` are not used.

    In evaluation mode (``train=False``) the dataset order is kept and nothing is random: the
    model sees the stored image.

    Yields ``(x, y)``: ``x`` ``(B, C, H, W)`` of ``dtype``, ``(x / 255 - mean) / std`` (mean 0 and
    std 1 when not given), channels_last when asked; ``y`` the int64 labels. With ``drop_last``
    a last incomplete batch is skipped; ``len()`` is the number of batches per epoch.

    Several processes (``world_size > 1``, training only): every rank holds the same generator
    state, draws the same permutation, and takes its own ``batch_size`` slice ``rank`` of each
    global batch of ``batch_size * world_size`` (an incomplete last global batch is dropped); each
    rank then draws the crops and flips of its own slice.

    Saliency maps (``maps``, uint8 ``(N, H, W)``: map x 255, e.g. from
    :func:`~randsaliencymix.dataset_maps`): the loader yields ``(x, y, s)``, ``s`` float32
    ``(B, H, W)`` in [0, 1], each map cropped, resized (bilinear, as its image) and flipped with the
    same draws as its image (zero saliency where ``pad_crop`` pads with zeros). The draws do not
    depend on the maps: the images are the same with or without them.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        generator: Optional[torch.Generator] = None,
        *,
        train: bool = True,
        augment: str = "pad_crop",
        crop_padding: int = 4,
        flip: bool = True,
        padding_mode: str = "zeros",
        rrc_scale: Tuple[float, float] = RRC_SCALE,
        rrc_ratio: Tuple[float, float] = RRC_RATIO,
        mean: Optional[Stats] = None,
        std: Optional[Stats] = None,
        device: Optional[Union[str, torch.device]] = None,
        drop_last: bool = False,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        rank: int = 0,
        world_size: int = 1,
        maps: Optional[torch.Tensor] = None,
    ) -> None:
        images = _check_uint8_images(images)
        if maps is not None and (
            not isinstance(maps, torch.Tensor)
            or maps.dtype != torch.uint8
            or tuple(maps.shape) != (images.shape[0], *images.shape[2:])
        ):
            found = f"{maps.dtype} {tuple(maps.shape)}" if isinstance(maps, torch.Tensor) else type(maps).__name__
            raise ValueError(
                f"Expected maps as uint8 {(images.shape[0], *images.shape[2:])} (map x 255, one per image), "
                f"but got {found} instead."
            )
        if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"Expected labels of shape ({images.shape[0]},), but got {got} instead.")
        if not _is_int_at_least(batch_size, 1):
            raise ValueError(f"Expected batch_size to be an int >= 1, but got {batch_size!r} instead.")
        if images.shape[0] < 1:
            raise ValueError("Expected at least one image, but got an empty dataset instead.")
        if not dtype.is_floating_point:
            raise TypeError(f"Expected a floating-point dtype, but got {dtype} instead.")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(device=self.device, dtype=torch.long)
        self.maps = maps.to(self.device) if maps is not None else None
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.augment = _check_augment(augment)
        self.crop_padding = _check_padding(crop_padding, padding_mode, images.shape[2], images.shape[3])
        self.padding_mode = padding_mode
        self.flip = bool(flip)
        self.rrc_scale = check_rrc_range("rrc_scale", rrc_scale, 1.0)
        self.rrc_ratio = check_rrc_range("rrc_ratio", rrc_ratio)
        channels = images.shape[1]
        self.mean = _stats_tensor("mean", mean, 0.0, channels).to(self.device)
        self.std = _stats_tensor("std", std, 1.0, channels).to(self.device)
        if not bool((self.std > 0).all()):
            raise ValueError(f"Expected std > 0, but got {tuple(self.std.tolist())} instead.")
        self.drop_last = bool(drop_last)
        self.channels_last = bool(channels_last)
        self.dtype = dtype
        self.generator = _pick_generator(generator, self.device) if self.train else generator
        self._workspace: Dict[str, torch.Tensor] = {}  # resized_crop_flip's buffers, reused batch after batch
        if not _is_int_at_least(world_size, 1):
            raise ValueError(f"Expected world_size to be an int >= 1, but got {world_size!r} instead.")
        if not _is_int_at_least(rank, 0) or rank >= world_size:
            raise ValueError(f"Expected rank in [0, {world_size - 1}], but got {rank!r} instead.")
        if world_size > 1 and not self.train:
            raise ValueError("Expected world_size 1 in evaluation mode, but got a sharded evaluation instead.")
        self.rank, self.world_size = int(rank), int(world_size)
        if world_size > 1:
            self.drop_last = True

    @classmethod
    def from_dataset(
        cls, dataset: object, batch_size: int, generator: Optional[torch.Generator] = None, **kwargs: Any
    ) -> DeviceLoader:
        """A loader over an :class:`~rsmix.data.ArrayDataset` (its images and labels)."""
        return cls(dataset.images, dataset.labels, batch_size, generator, **kwargs)  # type: ignore[attr-defined]

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // (self.batch_size * self.world_size)
        return math.ceil(self.num_samples / self.batch_size)

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        """The batch's crop and flip (maps, when given, ride along as one more channel)."""
        if not self.train or self.generator is None:  # training mode always holds a generator
            return batch
        if self.augment == "pad_crop":
            if self.crop_padding == 0 and not self.flip:
                return batch
            return random_crop_flip(batch, self.generator, self.crop_padding, self.flip, self.padding_mode)
        n, _, h, w = batch.shape
        boxes = resized_crop_boxes(n, h, w, self.generator, self.rrc_scale, self.rrc_ratio, device=self.device)
        flips = torch.zeros(n, dtype=torch.bool, device=self.device)
        if self.flip:
            flips = torch.randint(0, 2, (n,), generator=self.generator, device=self.device).bool()
        # Float out: normalize() takes it as is, without rounding to uint8 and converting again.
        return resized_crop_flip(batch, boxes, flips, dtype=torch.float32, workspace=self._workspace)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, ...]]:
        n = self.num_samples
        if self.train:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = None
        global_batch = self.batch_size * self.world_size
        channels = self.images.shape[1]
        for b in range(len(self)):
            start = b * global_batch + self.rank * self.batch_size
            stop = min(start + self.batch_size, n)
            if order is None:
                x, y = self.images[start:stop], self.labels[start:stop]
                m = self.maps[start:stop] if self.maps is not None else None
            else:
                idx = order[start:stop]
                x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
                m = self.maps.index_select(0, idx) if self.maps is not None else None
            if m is None:
                yield normalize(self._augment(x), self.mean, self.std, self.dtype, self.channels_last), y
                continue
            both = self._augment(torch.cat([x, m.unsqueeze(1)], dim=1))
            x = normalize(both[:, :channels], self.mean, self.std, self.dtype, self.channels_last)
            yield x, y, both[:, channels].to(torch.float32).mul_(1.0 / 255.0)


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
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        train: bool,
        padding: int,
        flip: bool,
        padding_mode: str,
        augment: str = "pad_crop",
        rrc_scale: Tuple[float, float] = RRC_SCALE,
        rrc_ratio: Tuple[float, float] = RRC_RATIO,
    ) -> None:
        self.images, self.labels = images, labels
        self.train, self.padding, self.flip, self.padding_mode = train, padding, flip, padding_mode
        self.augment, self.rrc_scale, self.rrc_ratio = augment, rrc_scale, rrc_ratio

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.train:
            return self.images[key], self.labels[key]
        index, seed = cast(Tuple[int, int], key)  # the sampler's (index, seed) in training mode
        image = self.images[index : index + 1]
        if self.augment == "resized_crop":
            g = torch.Generator().manual_seed(seed)
            image = random_resized_crop_flip(image, g, self.rrc_scale, self.rrc_ratio, self.flip)
        elif self.padding > 0 or self.flip:
            g = torch.Generator().manual_seed(seed)
            image = random_crop_flip(image, g, self.padding, self.flip, self.padding_mode)
        return image[0].contiguous(), self.labels[index]


def _pick_generator(generator: Optional[torch.Generator], device: torch.device) -> torch.Generator:
    """``generator``, checked to be a torch.Generator on ``device``'s type; None: the device's global one."""
    if generator is None:
        if device.type == "cuda":
            return torch.cuda.default_generators[device.index or 0]
        return torch.default_generator if device.type == "cpu" else torch.Generator(device=device)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"Expected generator to be a torch.Generator, but got {type(generator).__name__} instead.")
    if generator.device.type != device.type:
        raise ValueError(
            f"Expected a generator on the images' device ({device.type}), "
            f"but got one on {generator.device.type} instead."
        )
    return generator


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
    augment: str = "pad_crop",
    crop_padding: int = 4,
    flip: bool = True,
    padding_mode: str = "zeros",
    rrc_scale: Tuple[float, float] = RRC_SCALE,
    rrc_ratio: Tuple[float, float] = RRC_RATIO,
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

    Batches are ``(x, y)`` on the host as from :class:`DeviceLoader`, with the same ``augment``
    options. In training mode the order and each sample's crop and flip come from ``generator`` (a
    CPU generator; torch's default when None), the same for any ``num_workers``; in evaluation
    mode the order is kept.
    """
    images = _check_uint8_images(images)
    if images.device.type != "cpu":
        raise ValueError(f"Expected host (CPU) images for a DataLoader, but got {images.device} instead.")
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"Expected labels of shape ({images.shape[0]},), but got {got} instead.")
    if not _is_int_at_least(batch_size, 1):
        raise ValueError(f"Expected batch_size to be an int >= 1, but got {batch_size!r} instead.")
    padding = _check_padding(crop_padding, padding_mode, images.shape[2], images.shape[3])
    augment = _check_augment(augment)
    scale = check_rrc_range("rrc_scale", rrc_scale, 1.0)
    ratio = check_rrc_range("rrc_ratio", rrc_ratio)
    channels = images.shape[1]
    mean_t = _stats_tensor("mean", mean, 0.0, channels)
    std_t = _stats_tensor("std", std, 1.0, channels)
    if not bool((std_t > 0).all()):
        raise ValueError(f"Expected std > 0, but got {tuple(std_t.tolist())} instead.")
    samples = _AugmentedSamples(
        images, labels.long(), bool(train), padding, bool(flip), padding_mode, augment, scale, ratio
    )
    sampler: Optional[Sampler] = None
    if train:
        sampler = _SeededShuffle(images.shape[0], _pick_generator(generator, torch.device("cpu")))
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
