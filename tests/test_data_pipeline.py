"""Input pipelines over the in-memory datasets: DeviceLoader, make_dataloader, crop_flip, the
random-resized-crop (resized_crop_boxes, resized_crop_flip) and the per-channel statistics used for
normalisation."""

from __future__ import annotations

import math
from typing import List, Tuple

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rsmix.data import ArrayDataset
from rsmix.errors import UsageError
from rsmix.pipeline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    RRC_RATIO,
    RRC_SCALE,
    RRC_TRIES,
    DeviceLoader,
    channel_stats,
    crop_flip,
    make_dataloader,
    normalize,
    random_resized_crop_flip,
    resized_crop_boxes,
    resized_crop_flip,
)


def _distinct_images(n: int, size: int = 8) -> torch.Tensor:
    """Images whose pixels are all nonzero and differ, so a crop identifies its offset and flip."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _match_crop(
    out: torch.Tensor, image: torch.Tensor, padding: int, mode: str = "zeros"
) -> List[Tuple[int, int, bool]]:
    """Every (top, left, flipped) whose crop of the padded image equals ``out``."""
    if mode == "zeros":
        padded = torch.nn.functional.pad(image, (padding,) * 4)
    else:
        padded = torch.nn.functional.pad(image[None].float(), (padding,) * 4, mode=mode)[0].to(image.dtype)
    h, w = image.shape[1:]
    found = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + h, left : left + w]
            for flipped in (False, True):
                if torch.equal(crop.flip(2) if flipped else crop, out):
                    found.append((top, left, flipped))
    return found


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def test_device_loader_epoch_shapes_and_coverage() -> None:
    images = _distinct_images(50)
    ids = torch.arange(50)
    loader = DeviceLoader(images, ids, 16, torch.Generator().manual_seed(0), mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert len(loader) == 4
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (16, 3, 8, 8) and y.dtype == torch.int64
    assert x.is_contiguous()
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(50))
    assert not torch.equal(seen, ids)  # shuffled
    second_epoch = torch.cat([b[1] for b in loader])
    assert sorted(second_epoch.tolist()) == list(range(50)) and not torch.equal(second_epoch, seen)
    dropped = DeviceLoader(images, ids, 16, torch.Generator().manual_seed(0), drop_last=True)
    assert len(dropped) == 3 and sum(b[1].numel() for b in dropped) == 48
    cl = next(iter(DeviceLoader(images, ids, 8, torch.Generator(), channels_last=True, dtype=torch.bfloat16)))[0]
    assert cl.dtype == torch.bfloat16 and cl.is_contiguous(memory_format=torch.channels_last)
    # Normalisation: (x / 255 - mean) / std.
    plain = DeviceLoader(images, ids, 50, train=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    x = next(iter(plain))[0]
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)


def test_device_loader_same_seed_same_batches() -> None:
    images, ids = _distinct_images(40), torch.arange(40)
    runs = []
    for _ in range(2):
        loader = DeviceLoader(images, ids, 8, torch.Generator().manual_seed(123))
        runs.append([(x.clone(), y.clone()) for _ in range(2) for x, y in loader])
    for (xa, ya), (xb, yb) in zip(*runs):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = [(x, y) for x, y in DeviceLoader(images, ids, 8, torch.Generator().manual_seed(124))]
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(runs[0], other))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate"])
def test_device_loader_crops_are_crops_and_flips_are_flips(mode: str) -> None:
    images, ids = _distinct_images(64), torch.arange(64)
    loader = DeviceLoader(images, ids, 32, torch.Generator().manual_seed(1), crop_padding=3, padding_mode=mode)
    flips, corners = 0, set()
    for x, y in loader:
        for out, i in zip(_as_uint8(x), y.tolist()):
            found = _match_crop(out, images[i], 3, mode)
            assert found, f"sample {i} is not a crop of its padded image"
            top, left, flipped = found[0]
            flips += flipped
            corners.add((top, left))
    assert 16 < flips < 48 and len(corners) > 20
    # Only flips, no crops: each output is the image or its mirror.
    flip_only = DeviceLoader(images, ids, 64, torch.Generator().manual_seed(2), crop_padding=0)
    x, y = next(iter(flip_only))
    out = _as_uint8(x)
    mirrored = torch.tensor([torch.equal(o, images[i].flip(2)) for o, i in zip(out, y)])
    same = torch.tensor([torch.equal(o, images[i]) for o, i in zip(out, y)])
    assert bool((mirrored | same).all()) and 0 < int(mirrored.sum()) < 64
    nothing = DeviceLoader(images, ids, 64, torch.Generator(), crop_padding=0, flip=False)
    x, y = next(iter(nothing))
    assert torch.equal(_as_uint8(x), images[y])


def test_crop_flip_matches_explicit_padding() -> None:
    images = _distinct_images(6, size=5)
    corners = torch.tensor([[0, 0], [4, 4], [2, 1], [0, 4], [3, 0], [2, 2]])
    flips = torch.tensor([False, True, True, False, True, False])
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    out = crop_flip(images, corners, flips, 2)
    for k in range(6):
        top, left = corners[k].tolist()
        crop = padded[k, :, top : top + 5, left : left + 5]
        assert torch.equal(out[k], crop.flip(2) if flips[k] else crop)


def test_device_loader_eval_mode_is_ordered_and_plain() -> None:
    images, ids = _distinct_images(30), torch.arange(30)
    loader = DeviceLoader(images, ids, 8, train=False)
    a = [(x.clone(), y.clone()) for x, y in loader]
    b = list(loader)
    assert torch.equal(torch.cat([y for _, y in a]), ids)
    assert torch.equal(_as_uint8(torch.cat([x for x, _ in a])), images)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    with pytest.raises(ValueError, match="crop_padding < 8"):
        DeviceLoader(images, ids, 8, padding_mode="reflect", crop_padding=8)
    with pytest.raises(TypeError, match="uint8"):
        DeviceLoader(images.float(), ids, 8)
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        DeviceLoader(images, ids, 8, generator=0)


def test_make_dataloader_same_semantics_and_worker_independent() -> None:
    images, ids = _distinct_images(40), torch.arange(40)
    loader = make_dataloader(images, ids, 16, torch.Generator().manual_seed(0), crop_padding=2)
    first = [(x.clone(), y.clone()) for x, y in loader]
    assert [x.shape for x, _ in first] == [(16, 3, 8, 8), (16, 3, 8, 8), (8, 3, 8, 8)]
    assert sorted(torch.cat([y for _, y in first]).tolist()) == list(range(40))
    flips = 0
    for x, y in first:
        for out, i in zip(_as_uint8(x), y.tolist()):
            found = _match_crop(out, images[i], 2)
            assert found
            flips += found[0][2]
    assert 5 < flips < 35
    with_workers = make_dataloader(images, ids, 16, torch.Generator().manual_seed(0), crop_padding=2, num_workers=2)
    for (xa, ya), (xb, yb) in zip(first, with_workers):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    evaluation = make_dataloader(images, ids, 16, train=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    xs = torch.cat([x for x, _ in evaluation])
    assert torch.equal(xs, normalize(images, torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)))


def test_channel_stats() -> None:
    images = _distinct_images(20)
    mean, std = channel_stats(images, batch_size=7)
    ref = images.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), ref.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), ref.std(dim=(0, 2, 3), unbiased=False))


def test_dataset_channel_stats_is_the_pipelines() -> None:
    images = _distinct_images(30)
    ds = ArrayDataset(images, torch.zeros(30, dtype=torch.int64), ["only"])
    mean, std = ds.channel_stats()
    assert isinstance(mean, tuple) and isinstance(std, tuple) and len(mean) == len(std) == 3
    assert all(type(v) is float for v in mean + std)
    assert (mean, std) == channel_stats(images) == ds.channel_stats(batch_size=4)
    # Exact float64 sums: a constant image has std 0 and its value as mean, whatever the chunking.
    flat = ArrayDataset(torch.full((9, 3, 5, 5), 51, dtype=torch.uint8), torch.zeros(9, dtype=torch.int64), ["a"])
    assert flat.channel_stats(batch_size=2) == ((0.2, 0.2, 0.2), (0.0, 0.0, 0.0))
    empty = ArrayDataset(images[:0], torch.zeros(0, dtype=torch.int64), ["only"])
    with pytest.raises(UsageError, match="empty"):
        empty.channel_stats()


# ----------------------------------------------------------------------------------------------
# Random-resized-crop (augment="resized_crop")
# ----------------------------------------------------------------------------------------------


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
    images = _distinct_images(12, size=20)
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
    images = _distinct_images(8, size=16)
    boxes = torch.tensor([[2, 3, 10, 12]]).expand(8, 4)
    flips = torch.tensor([True, False] * 4)
    ref = resized_crop_flip(images, boxes, flips)
    noisy = images.clone()
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[2:10, 3:12] = True
    noisy[:, :, ~inside] = 0
    assert torch.equal(resized_crop_flip(noisy, boxes, flips), ref)


def test_resized_crop_flip_batch_of_one_equals_the_batch_element() -> None:
    images = _distinct_images(16, size=24)
    g = torch.Generator().manual_seed(5)
    boxes = resized_crop_boxes(16, 24, 24, g)
    flips = torch.randint(0, 2, (16,), generator=g).bool()
    full = resized_crop_flip(images, boxes, flips)
    for k in range(16):
        assert torch.equal(resized_crop_flip(images[k : k + 1], boxes[k : k + 1], flips[k : k + 1])[0], full[k])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_resized_crop_flip_keeps_dtype_format_and_input(dtype, channels_last) -> None:
    images = _distinct_images(6, size=12).to(dtype)
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


def test_device_loader_resized_crop_draws_in_the_documented_order() -> None:
    # Replay the loader's first batch from its generator by hand: the epoch's permutation, then
    # the batch's boxes, then its flips; the images are normalised from the resized crops.
    images, ids = _distinct_images(40, size=16), torch.arange(40)
    kw = dict(augment="resized_crop", rrc_scale=(0.2, 0.9), rrc_ratio=(0.5, 2.0), mean=CIFAR10_MEAN, std=CIFAR10_STD)
    loader = DeviceLoader(images, ids, 16, torch.Generator().manual_seed(9), **kw)
    x, y = next(iter(loader))
    g = torch.Generator().manual_seed(9)
    order = torch.randperm(40, generator=g)[:16]
    boxes = resized_crop_boxes(16, 16, 16, g, (0.2, 0.9), (0.5, 2.0))
    flips = torch.randint(0, 2, (16,), generator=g).bool()
    expected = normalize(resized_crop_flip(images[order], boxes, flips, dtype=torch.float32), CIFAR10_MEAN, CIFAR10_STD)
    assert torch.equal(y, order) and torch.equal(x, expected)
    # random_resized_crop_flip draws the same way.
    g = torch.Generator().manual_seed(9)
    order = torch.randperm(40, generator=g)[:16]
    same = random_resized_crop_flip(images[order].float(), g, (0.2, 0.9), (0.5, 2.0))
    torch.testing.assert_close(normalize(same, CIFAR10_MEAN, CIFAR10_STD), x)


def test_device_loader_pad_crop_draws_are_unchanged() -> None:
    # The pad_crop draws the committed CIFAR study depends on: permutation, corners, flips.
    images, ids = _distinct_images(40), torch.arange(40)
    loader = DeviceLoader(images, ids, 16, torch.Generator().manual_seed(4), crop_padding=2)
    assert loader.augment == "pad_crop"
    batches = list(loader)
    g = torch.Generator().manual_seed(4)
    order = torch.randperm(40, generator=g)
    for b, (x, y) in enumerate(batches):
        idx = order[b * 16 : (b + 1) * 16]
        corners = torch.randint(0, 5, (idx.numel(), 2), generator=g)
        flips = torch.randint(0, 2, (idx.numel(),), generator=g).bool()
        assert torch.equal(y, idx)
        assert torch.equal(x, normalize(crop_flip(images[idx], corners, flips, 2), (0.0,) * 3, (1.0,) * 3))


def test_device_loader_resized_crop_replayable_and_eval_plain() -> None:
    images, ids = _distinct_images(30, size=12), torch.arange(30)
    runs = []
    for _ in range(2):
        loader = DeviceLoader(images, ids, 8, torch.Generator().manual_seed(1), augment="resized_crop")
        runs.append([(x.clone(), y.clone()) for _ in range(2) for x, y in loader])
    for (xa, ya), (xb, yb) in zip(*runs):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = DeviceLoader(images, ids, 8, torch.Generator().manual_seed(2), augment="resized_crop")
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(runs[0], other))
    # Evaluation: the stored images, in order, whatever the augmentation.
    plain = DeviceLoader(images, ids, 30, train=False, augment="resized_crop")
    x, y = next(iter(plain))
    assert torch.equal(y, ids) and torch.equal(_as_uint8(x), images)
    # No flip: every output is an unflipped resized crop (the whole-image box gives the image).
    no_flip = DeviceLoader(images, ids, 30, torch.Generator().manual_seed(0), augment="resized_crop", flip=False)
    x, y = next(iter(no_flip))
    assert x.shape == (30, 3, 12, 12) and x.dtype == torch.float32


def test_make_dataloader_resized_crop() -> None:
    images, ids = _distinct_images(20, size=10), torch.arange(20)
    loader = make_dataloader(images, ids, 8, torch.Generator().manual_seed(0), augment="resized_crop")
    first = [(x.clone(), y.clone()) for x, y in loader]
    again = list(make_dataloader(images, ids, 8, torch.Generator().manual_seed(0), augment="resized_crop"))
    assert [x.shape for x, _ in first] == [(8, 3, 10, 10), (8, 3, 10, 10), (4, 3, 10, 10)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(_as_uint8(x), images[y]) for x, y in first)


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
    images, ids = _distinct_images(4), torch.arange(4)
    with pytest.raises(ValueError, match=message):
        DeviceLoader(images, ids, 2, torch.Generator(), **kwargs)
    with pytest.raises(ValueError, match=message):
        make_dataloader(images, ids, 2, torch.Generator(), **kwargs)
