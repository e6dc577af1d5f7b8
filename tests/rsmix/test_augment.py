"""Batched augmentation (``augment.py``): crop_flip against explicit padding, the random resized crop
(resized_crop_boxes, resized_crop_flip) against torchvision's definition, and the augmentation
options' checks."""

from __future__ import annotations

import math
from typing import List, Tuple

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import distinct_images
from rsmix.pipeline import (
    RRC_RATIO,
    RRC_SCALE,
    RRC_TRIES,
    DeviceLoader,
    crop_flip,
    make_dataloader,
    resized_crop_boxes,
    resized_crop_flip,
)


def test_crop_flip_matches_explicit_padding() -> None:
    images = distinct_images(6, size=5)
    corners = torch.tensor([[0, 0], [4, 4], [2, 1], [0, 4], [3, 0], [2, 2]])
    flips = torch.tensor([False, True, True, False, True, False])
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    out = crop_flip(images, corners, flips, 2)
    for k in range(6):
        top, left = corners[k].tolist()
        crop = padded[k, :, top : top + 5, left : left + 5]
        assert torch.equal(out[k], crop.flip(2) if flips[k] else crop)


def _reference_resized_crop(image: torch.Tensor, box: List[int], flip: bool, size: Tuple[int, int]) -> torch.Tensor:
    """torchvision's resized_crop on a float tensor: crop, bilinear resize, then flip."""
    r1, c1, r2, c2 = box
    out = F.interpolate(image[None, :, r1:r2, c1:c2].float(), size=size, mode="bilinear", align_corners=False)[0]
    return out.flip(-1) if flip else out


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    batch=st.integers(1, 20),
    scale=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted),
    ratio=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0)).map(sorted),
    seed=st.integers(0, 2**31),
)
def test_resized_crop_boxes_are_inside_and_in_range(h, w, batch, scale, ratio, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    boxes = resized_crop_boxes(batch, h, w, g, tuple(scale), tuple(ratio))
    assert boxes.dtype == torch.int64 and boxes.shape == (batch, 4)
    r1, c1, r2, c2 = boxes.unbind(1)
    assert bool(((r1 >= 0) & (c1 >= 0) & (r2 <= h) & (c2 <= w) & (r2 > r1) & (c2 > c1)).all())
    bh, bw = (r2 - r1).double(), (c2 - c1).double()
    # A drawn box: sides are sqrt(area * ratio) and sqrt(area / ratio) rounded to integers, so
    # the true area and ratio lie within half a pixel of each side.
    area_lo, area_hi = (bh - 0.5) * (bw - 0.5) / (h * w), (bh + 0.5) * (bw + 0.5) / (h * w)
    ratio_lo, ratio_hi = (bw - 0.5) / (bh + 0.5), (bw + 0.5) / (bh - 0.5).clamp(min=1e-9)
    drawn = (area_hi >= scale[0] - 1e-9) & (area_lo <= scale[1] + 1e-9)
    drawn &= (ratio_hi >= ratio[0] - 1e-9) & (ratio_lo <= ratio[1] + 1e-9)
    # Else torchvision's fallback: the centred whole image, narrowed to the ratio range.
    fh, fw = h, w
    if w / h < ratio[0]:
        fh = max(1, round(w / ratio[0]))
    elif w / h > ratio[1]:
        fw = max(1, round(h * ratio[1]))
    fallback = torch.tensor([(h - fh) // 2, (w - fw) // 2, (h - fh) // 2 + fh, (w - fw) // 2 + fw])
    assert bool((drawn | (boxes == fallback).all(dim=1)).all())
    # Always the same number of draws: the generator ends in the same state whatever the boxes.
    g2 = torch.Generator().manual_seed(seed)
    torch.rand((batch, RRC_TRIES, 2), generator=g2, dtype=torch.float64)
    torch.rand((batch, 2), generator=g2, dtype=torch.float64)
    assert torch.equal(g.get_state(), g2.get_state())


def test_resized_crop_boxes_statistics() -> None:
    # 20,000 boxes of a 128x128 image with the defaults: the drawn area fraction spans the scale
    # range, the aspect ratio spans the ratio range log-uniformly, and the position is uniform.
    n, side = 20_000, 128
    boxes = resized_crop_boxes(n, side, side, torch.Generator().manual_seed(0))
    bh, bw = (boxes[:, 2] - boxes[:, 0]).double(), (boxes[:, 3] - boxes[:, 1]).double()
    frac = bh * bw / side**2
    lo, hi = RRC_SCALE
    assert frac.min() > lo - 0.01 and frac.max() <= 1.0
    assert frac.min() < lo + 0.01 and frac.max() > 0.97
    # Uniform area, less the candidates that do not fit (large areas with a non-square ratio):
    # the share below the middle of the range is at least one half.
    assert 0.5 <= float((frac < (lo + hi) / 2).double().mean()) < 0.62
    log_ratio = torch.log(bw / bh)
    r_lo, r_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    assert log_ratio.min() > r_lo - 0.03 and log_ratio.max() < r_hi + 0.03
    assert log_ratio.min() < r_lo + 0.02 and log_ratio.max() > r_hi - 0.02
    assert abs(float(log_ratio.mean())) < 0.01  # symmetric range, symmetric draws
    # Corners: uniform over the n + 1 positions 0..n that keep the box inside, so the relative
    # position corner / n has mean 1/2 and mean square (2n + 1) / (6n).
    free = torch.cat([side - bh, side - bw])
    corner = torch.cat([boxes[:, 0], boxes[:, 1]]).double()
    keep = free > 0
    rel, n_free = corner[keep] / free[keep], free[keep]
    assert bool((corner <= free).all())
    assert abs(float(rel.mean()) - 0.5) < 0.01
    assert abs(float(rel.square().mean() - ((2 * n_free + 1) / (6 * n_free)).mean())) < 0.01


def test_resized_crop_boxes_fallback_is_the_whole_image() -> None:
    # A scale range no box can meet (a ratio range excluding every fitting shape): the fallback.
    g = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(50, 40, 40, g, scale=(1.0, 1.0), ratio=(2.0, 3.0))
    # The image's own ratio (1) is below the range: its full width at ratio 2, centred.
    assert torch.equal(boxes, torch.tensor([[10, 0, 30, 40]]).expand(50, 4))
    square = resized_crop_boxes(10, 30, 30, g, scale=(1.0, 1.0), ratio=(0.5, 1.5))
    assert torch.equal(square, torch.tensor([[0, 0, 30, 30]]).expand(10, 4))


@pytest.mark.parametrize("size", [None, (16, 24), (40, 40)])
def test_resized_crop_flip_is_interpolate_of_the_crop(size) -> None:
    images = distinct_images(12, size=20)
    g = torch.Generator().manual_seed(3)
    boxes = resized_crop_boxes(12, 20, 20, g, scale=(0.05, 1.0), ratio=(0.3, 3.0))
    flips = torch.arange(12) % 3 == 0
    out_size = size or (20, 20)
    out = resized_crop_flip(images.float(), boxes, flips, size=size)
    assert out.shape == (12, 3, *out_size) and out.dtype == torch.float32
    for k in range(12):
        ref = _reference_resized_crop(images[k], boxes[k].tolist(), bool(flips[k]), out_size)
        torch.testing.assert_close(out[k], ref, rtol=1e-5, atol=1e-4)
    # uint8 in, uint8 out: the same values, rounded.
    out_u8 = resized_crop_flip(images, boxes, flips, size=size)
    assert out_u8.dtype == torch.uint8 and torch.equal(out_u8, out.round().to(torch.uint8))
    # The whole image, unflipped, at its own size: the identity.
    whole = torch.tensor([[0, 0, 20, 20]]).expand(12, 4)
    assert torch.equal(resized_crop_flip(images, whole, torch.zeros(12, dtype=torch.bool)), images)
    assert torch.equal(resized_crop_flip(images, whole, torch.ones(12, dtype=torch.bool)), images.flip(3))


def test_resized_crop_flip_reads_only_the_box() -> None:
    # Pixels outside every box changed: no output changes.
    images = distinct_images(8, size=16)
    boxes = torch.tensor([[2, 3, 10, 12]]).expand(8, 4)
    flips = torch.tensor([True, False] * 4)
    ref = resized_crop_flip(images, boxes, flips)
    noisy = images.clone()
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[2:10, 3:12] = True
    noisy[:, :, ~inside] = 0
    assert torch.equal(resized_crop_flip(noisy, boxes, flips), ref)


def test_resized_crop_flip_batch_of_one_equals_the_batch_element() -> None:
    images = distinct_images(16, size=24)
    g = torch.Generator().manual_seed(5)
    boxes = resized_crop_boxes(16, 24, 24, g)
    flips = torch.randint(0, 2, (16,), generator=g).bool()
    full = resized_crop_flip(images, boxes, flips)
    for k in range(16):
        assert torch.equal(resized_crop_flip(images[k : k + 1], boxes[k : k + 1], flips[k : k + 1])[0], full[k])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_resized_crop_flip_keeps_dtype_format_and_input(dtype, channels_last) -> None:
    images = distinct_images(6, size=12).to(dtype)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    before = images.clone()
    g = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(6, 12, 12, g)
    flips = torch.tensor([True, False, True, False, True, False])
    out = resized_crop_flip(images, boxes, flips)
    assert out.dtype == dtype and out.shape == images.shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    assert torch.equal(images, before)
    as_float = resized_crop_flip(images, boxes, flips, dtype=torch.float32)
    assert as_float.dtype == torch.float32
    # A saliency map goes through the same boxes and flips as its image: maps are (B, 1, H, W).
    maps = torch.rand(6, 1, 12, 12, dtype=torch.float64)
    moved = resized_crop_flip(maps, boxes, flips)
    assert moved.shape == maps.shape and moved.dtype == torch.float64
    assert bool((moved >= maps.amin(dim=(1, 2, 3), keepdim=True) - 1e-12).all())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"augment": "rrc"}, r"Expected augment to be one of 'pad_crop', 'resized_crop', but got 'rrc' instead\."),
        ({"augment": "resized_crop", "rrc_scale": (0.0, 1.0)}, r"Expected rrc_scale as \(min, max\) with 0 < min"),
        ({"rrc_scale": (0.5, 1.5)}, r"Expected rrc_scale as \(min, max\) with 0 < min <= max <= 1, but got"),
        ({"rrc_ratio": (2.0, 1.0)}, r"Expected rrc_ratio as \(min, max\) with 0 < min <= max, but got \(2\.0, 1\.0\)"),
        ({"rrc_ratio": (1.0,)}, r"Expected rrc_ratio as \(min, max\)"),
        ({"rrc_ratio": (1.0, float("inf"))}, r"Expected rrc_ratio as \(min, max\)"),
    ],
)
def test_augment_options_are_checked(kwargs, message) -> None:
    images, ids = distinct_images(4), torch.arange(4)
    with pytest.raises(ValueError, match=message):
        DeviceLoader(images, ids, 2, torch.Generator(), **kwargs)
    with pytest.raises(ValueError, match=message):
        make_dataloader(images, ids, 2, torch.Generator(), **kwargs)
