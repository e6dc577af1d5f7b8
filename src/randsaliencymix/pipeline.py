"""Input pipelines: uint8 images in, normalised float batches out, with batched augmentation.

* :class:`DeviceLoader` keeps the whole uint8 dataset as one tensor on the device and builds each
  batch with a few tensor ops for every sample at once. No worker processes, no per-sample Python.
* :func:`make_dataloader` is the ``torch.utils.data.DataLoader`` route for data that should stay on
  the host (larger images, more data than device memory): the same augmentation, per sample, with
  each sample's draw seeded from the caller's generator so results do not depend on
  ``num_workers``.

Two augmentations, chosen explicitly with ``augment=`` (the same default for every dataset):

* ``"pad_crop"`` (CIFAR): :func:`crop_flip`. The crop's top-left corner in the padded image is
  uniform in ``[0, 2 * padding]`` per axis and the flip, applied after the crop, has probability
  1/2 (torchvision's ``RandomCrop(size, padding)`` then ``RandomHorizontalFlip()``).
* ``"resized_crop"`` (photographs): :func:`resized_crop_boxes` then :func:`resized_crop_flip`,
  torchvision's ``RandomResizedCrop(size, scale, ratio)`` then ``RandomHorizontalFlip()`` on a
  whole batch: a box covering a fraction ``scale`` of the image's area with aspect ratio (width /
  height) log-uniform in ``ratio``, resized bilinearly back to the image's size, then mirrored
  with probability 1/2. Defaults :data:`RRC_SCALE` = (0.35, 1) and :data:`RRC_RATIO` = (3/4, 4/3):
  the ImageNet recipe's ratio, and the minimum scale of fast.ai's Imagenette recipe for small
  images (ImageNet's 0.08 leaves too few pixels of a 128-px image).

Both routes share these functions, so they augment alike by construction. Evaluation mode does
neither and keeps the dataset order: the model is scored on the stored image.
"""

from __future__ import annotations

import math
import numbers
from functools import partial
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union, cast

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
    "AUGMENTS",
    "RRC_SCALE",
    "RRC_RATIO",
    "RRC_TRIES",
    "channel_stats",
    "crop_flip",
    "random_crop_flip",
    "resized_crop_boxes",
    "resized_crop_flip",
    "random_resized_crop_flip",
    "check_rrc_range",
    "normalize",
    "DeviceLoader",
    "make_dataloader",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
PADDING_MODES = ("zeros", "reflect", "replicate")
AUGMENTS = ("pad_crop", "resized_crop")
# RandomResizedCrop: area fraction and aspect ratio (width / height) ranges, candidates per sample.
RRC_SCALE = (0.35, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RRC_TRIES = 10

Stats = Sequence[float]


def _check_uint8_images(images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"Expected images as a uint8 torch.Tensor, but got {got} instead.")
    if images.ndim != 4:
        raise ValueError(f"Expected images of shape (N, C, H, W), but got {tuple(images.shape)} instead.")
    return images


def _is_int_at_least(value: object, minimum: int) -> bool:
    # A helper taking object: narrowing an int-annotated argument to numbers.Integral inline
    # leaves mypy unable to type the rest of the method.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    return int(value) >= minimum


def _check_padding(padding: object, padding_mode: str, height: int, width: int) -> int:
    if not _is_int_at_least(padding, 0):
        raise ValueError(f"Expected crop_padding to be an int >= 0, but got {padding!r} instead.")
    pad = int(padding)  # type: ignore[call-overload]  # an Integral, checked above
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"Expected padding_mode to be one of {', '.join(map(repr, PADDING_MODES))}, "
            f"but got {padding_mode!r} instead."
        )
    if padding_mode == "reflect" and pad >= min(height, width):
        raise ValueError(
            f"Expected crop_padding < {min(height, width)} for reflect padding of "
            f"{height}x{width} images, but got {pad} instead."
        )
    return pad


def _check_augment(augment: object) -> str:
    if augment not in AUGMENTS:
        raise ValueError(
            f"Expected augment to be one of {', '.join(map(repr, AUGMENTS))}, but got {augment!r} instead."
        )
    return str(augment)


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


def check_rrc_range(name: str, value: object, upper: Optional[float] = None) -> Tuple[float, float]:
    """``(lo, hi)`` from a pair of finite numbers with ``0 < lo <= hi`` (and ``hi <= upper``)."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    ok = len(pair) == 2 and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair)
    if ok:
        lo, hi = float(pair[0]), float(pair[1])
        ok = math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi and (upper is None or hi <= upper)
    if not ok:
        bound = f" <= {upper:g}" if upper is not None else ""
        raise ValueError(f"Expected {name} as (min, max) with 0 < min <= max{bound}, but got {value!r} instead.")
    return lo, hi


def resized_crop_boxes(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale: Tuple[float, float] = RRC_SCALE,
    ratio: Tuple[float, float] = RRC_RATIO,
    tries: int = RRC_TRIES,
    device: Optional[Union[str, torch.device]] = None,
) -> torch.Tensor:
    """RandomResizedCrop's boxes for ``batch`` images of ``height x width``, as int64 ``(B, 4)``
    ``(row1, col1, row2, col2)`` (half-open, always inside the image).

    torchvision's rejection loop, vectorised: each sample gets ``tries`` candidates at once, an area
    ``height * width * U(scale)`` and an aspect ratio ``w / h = exp(U(log ratio))`` with
    ``w = round(sqrt(area * ratio))``, ``h = round(sqrt(area / ratio))``, and keeps the first one
    that fits in the image. When none fits (rare: 7e-8 per sample for the defaults on square images), it
    takes torchvision's fallback: the central crop of the whole image clamped to the ratio range
    (the whole image when its own ratio is in range). The box's top-left corner is then uniform over
    the positions that keep it inside the image.

    Draws from ``generator`` (on ``device``), in order: ``(B, tries, 2)`` uniforms for the
    candidates' area and ratio, then ``(B, 2)`` uniforms for the corner; always that many, so the
    generator advances by the same amount whatever the outcome.
    """
    lo, hi = check_rrc_range("scale", scale, 1.0)
    r_lo, r_hi = check_rrc_range("ratio", ratio)
    dev = torch.device(device) if device is not None else generator.device
    f64 = torch.float64
    u = torch.rand((batch, tries, 2), generator=generator, device=dev, dtype=f64)
    area = (height * width) * (lo + (hi - lo) * u[..., 0])
    log_lo, log_hi = math.log(r_lo), math.log(r_hi)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.round(torch.sqrt(area * aspect)).long()
    h = torch.round(torch.sqrt(area / aspect)).long()
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first valid candidate (0 if none)
    found = valid.any(dim=1)
    # torchvision's fallback: the whole image, narrowed to the ratio range if its own ratio is outside.
    in_ratio = width / height
    fall_w, fall_h = width, height
    if in_ratio < r_lo:
        fall_h = max(1, round(width / r_lo))
    elif in_ratio > r_hi:
        fall_w = max(1, round(height * r_hi))
    w = torch.where(found, w.gather(1, first).squeeze(1), fall_w)
    h = torch.where(found, h.gather(1, first).squeeze(1), fall_h)
    v = torch.rand((batch, 2), generator=generator, device=dev, dtype=f64)
    top = torch.minimum(torch.floor(v[:, 0] * (height - h + 1)).long(), height - h)
    left = torch.minimum(torch.floor(v[:, 1] * (width - w + 1)).long(), width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return torch.stack([top, left, top + h, left + w], dim=1)


def _bilinear_taps(
    start: torch.Tensor, stop: torch.Tensor, out: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample, the two source indices and the weight of the second for each of ``out`` output
    pixels resampling ``[start, stop)`` as ``interpolate(mode="bilinear", align_corners=False)``."""
    length = (stop - start).to(torch.float32)
    dst = torch.arange(out, device=start.device, dtype=torch.float32) + 0.5
    src = ((length / out)[:, None] * dst - 0.5).clamp(min=0.0)  # (B, out), in crop coordinates
    i0 = src.floor()
    weight = src - i0
    i0 = i0.long()
    i1 = torch.minimum(i0 + 1, (stop - start - 1)[:, None])
    return start[:, None] + i0, start[:, None] + i1, weight


def resized_crop_flip(
    images: torch.Tensor,
    boxes: torch.Tensor,
    flips: torch.Tensor,
    size: Optional[Tuple[int, int]] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Resize each image's box to ``size`` (default: the input's) and mirror those with ``flips``.

    ``images`` ``(B, C, H, W)`` of any dtype (uint8 images, or float saliency maps as
    ``(B, 1, H, W)``); ``boxes`` int ``(B, 4)`` ``(row1, col1, row2, col2)`` inside the image;
    ``flips`` bool ``(B,)``. Each output equals
    ``interpolate(image[:, row1:row2, col1:col2], size, mode="bilinear", align_corners=False)``,
    flipped when asked (within float32 rounding): the crop's edge pixels are repeated, nothing
    outside the box is read. There is no antialiasing, which only matters when a box is shrunk;
    a box of the image is never larger than the image, so at the default size it never is.

    Separable and batched: the two source rows of every output row are copied whole (in the
    input's dtype, so uint8 moves a quarter of the bytes) and blended, then the two source columns
    of every output column are gathered and blended, in float32 (float64 stays float64). The output
    has ``dtype`` (default: the input's; an integer output is rounded), is contiguous in the input's
    memory format (channels_last stays channels_last), and the input is never modified.
    """
    b, c, h, w = images.shape
    out_h, out_w = (h, w) if size is None else (int(size[0]), int(size[1]))
    dtype = images.dtype if dtype is None else dtype
    dev = images.device
    boxes = boxes.to(device=dev, dtype=torch.long)
    r0, r1, wy = _bilinear_taps(boxes[:, 0], boxes[:, 2], out_h)
    c0, c1, wx = _bilinear_taps(boxes[:, 1], boxes[:, 3], out_w)
    # The flip comes after the resize: output column j shows resized column out_w - 1 - j.
    flip = flips.to(dev).view(b, 1)
    c0, c1, wx = (torch.where(flip, t.flip(1), t) for t in (c0, c1, wx))
    work = torch.float64 if torch.float64 in (images.dtype, dtype) else torch.float32
    # Rows: whole rows of the (B * C * H, W) view, selected by flat index (b * C + ch) * H + row.
    planes = (torch.arange(b, device=dev)[:, None] * c + torch.arange(c, device=dev)) * h  # (B, C)
    flat = images.contiguous().view(b * c * h, w)
    top = flat.index_select(0, (planes[:, :, None] + r0[:, None, :]).view(-1)).view(b, c, out_h, w)
    bottom = flat.index_select(0, (planes[:, :, None] + r1[:, None, :]).view(-1)).view(b, c, out_h, w)
    x = torch.lerp(top.to(work), bottom.to(work), wy.to(work).view(b, 1, out_h, 1))
    # Columns: a gather along the last dimension, the same columns for every channel and row.
    cols = (b, c, out_h, out_w)
    left = x.gather(3, c0.view(b, 1, 1, out_w).expand(cols))
    right = x.gather(3, c1.view(b, 1, 1, out_w).expand(cols))
    x = torch.lerp(left, right, wx.to(work).view(b, 1, 1, out_w))
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        x = x.round_().clamp_(info.min, info.max)
    channels_last = not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(dtype).contiguous(memory_format=fmt)


def random_resized_crop_flip(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: Tuple[float, float] = RRC_SCALE,
    ratio: Tuple[float, float] = RRC_RATIO,
    flip: bool = True,
    tries: int = RRC_TRIES,
) -> torch.Tensor:
    """:func:`resized_crop_flip` with boxes from :func:`resized_crop_boxes`, then (with ``flip``)
    ``(B,)`` flips drawn as ``randint(0, 2)`` from ``generator``; output size = input size."""
    b, _, h, w = images.shape
    boxes = resized_crop_boxes(b, h, w, generator, scale, ratio, tries, device=images.device)
    if flip:
        flips = torch.randint(0, 2, (b,), generator=generator, device=images.device).bool()
    else:
        flips = torch.zeros(b, dtype=torch.bool, device=images.device)
    return resized_crop_flip(images, boxes, flips)


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
    ) -> None:
        images = _check_uint8_images(images)
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
        self.generator = pick_generator(generator, self.device) if self.train else generator
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
        # TODO(issue "saliency sources"): cached saliency maps of these samples, (n, 1, H, W), go
        # through resized_crop_flip(maps, boxes, flips) here with the same boxes and flips, so each
        # map stays aligned with its image; the pad_crop branch's crop_flip takes maps the same way.
        # Float out: normalize() takes it as is, without rounding to uint8 and converting again.
        return resized_crop_flip(batch, boxes, flips, dtype=torch.float32)

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
