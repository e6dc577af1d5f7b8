"""Batched augmentation of uint8 image tensors, every draw from the caller's generator: the
padded random crop and flip (CIFAR), the random resized crop and flip (photographs), and the
normalisation to float. :mod:`pipeline`'s loaders apply them; nothing here loops over samples.

* ``"pad_crop"``: :func:`crop_flip`. The crop's top-left corner in the padded image is uniform in
  ``[0, 2 * padding]`` per axis and the flip, applied after the crop, has probability 1/2
  (torchvision's ``RandomCrop(size, padding)`` then ``RandomHorizontalFlip()``).
* ``"resized_crop"``: :func:`resized_crop_boxes` then :func:`resized_crop_flip`, torchvision's
  ``RandomResizedCrop(size, scale, ratio)`` then ``RandomHorizontalFlip()`` on a whole batch: a box
  covering a fraction ``scale`` of the image's area with aspect ratio (width / height) log-uniform
  in ``ratio``, resized bilinearly back to the image's size, then mirrored with probability 1/2.
  Defaults :data:`RRC_SCALE` = (0.35, 1) and :data:`RRC_RATIO` = (3/4, 4/3): the ImageNet recipe's
  ratio, and the minimum scale of fast.ai's Imagenette recipe for small images (ImageNet's 0.08
  leaves too few pixels of a 128-px image).
"""

from __future__ import annotations

import math
import numbers
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "AUGMENTS",
    "PADDING_MODES",
    "RRC_RATIO",
    "RRC_SCALE",
    "RRC_TRIES",
    "check_rrc_range",
    "crop_flip",
    "normalize",
    "random_crop_flip",
    "random_resized_crop_flip",
    "resized_crop_boxes",
    "resized_crop_flip",
]

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
    workspace: Optional[Dict[str, torch.Tensor]] = None,
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

    ``workspace``: a dict the caller keeps across calls (a loader's), in which the intermediate
    float buffers are kept and reused: the same bits, without the page faults of allocating five
    batch-sized buffers per call (about half the time on CPU). The output is always a new tensor.
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
    cols = (b, c, out_h, out_w)

    def buffer(name: str, shape: Tuple[int, ...]) -> Optional[torch.Tensor]:
        if workspace is None:
            return None
        held = workspace.get(name)
        if held is None or tuple(held.shape) != shape or held.dtype != work or held.device != dev:
            held = workspace[name] = torch.empty(shape, dtype=work, device=dev)
        return held

    top_w, bottom_w, rows = buffer("top", top.shape), buffer("bottom", top.shape), buffer("rows", top.shape)
    if top_w is not None and bottom_w is not None:
        top, bottom = top_w.copy_(top), bottom_w.copy_(bottom)  # the same values as .to(work)
    x = torch.lerp(top.to(work), bottom.to(work), wy.to(work).view(b, 1, out_h, 1), out=rows)
    # Columns: a gather along the last dimension, the same columns for every channel and row.
    left = torch.gather(x, 3, c0.view(b, 1, 1, out_w).expand(cols), out=buffer("left", cols))
    right = torch.gather(x, 3, c1.view(b, 1, 1, out_w).expand(cols), out=buffer("right", cols))
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
    # One multiply-add in float32, whatever the output dtype, so half precision rounds only once,
    # written straight into the asked memory format (no second copy to change it).
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if dtype == torch.float32 and images.ndim == 4:
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device, memory_format=fmt)
        return torch.addcmul(shift, images.to(torch.float32), scale, out=out)
    out = torch.addcmul(shift, images.to(torch.float32), scale).to(dtype)
    return out.contiguous(memory_format=fmt)
