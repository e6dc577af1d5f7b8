"""Input pipelines (``pipeline.py``) over the in-memory datasets: DeviceLoader and make_dataloader,
their draws, sharding and evaluation mode, cached saliency maps that follow their images through
the crop and flip (issue 9), and the per-channel statistics used for normalisation."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest
import torch

from conftest import distinct_images
from rsmix.data import ArrayDataset, load_dataset
from rsmix.errors import UsageError
from rsmix.pipeline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DeviceLoader,
    channel_stats,
    crop_flip,
    make_dataloader,
    normalize,
    random_resized_crop_flip,
    resized_crop_boxes,
    resized_crop_flip,
)


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
    images = distinct_images(50)
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
    images, ids = distinct_images(40), torch.arange(40)
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
    images, ids = distinct_images(64), torch.arange(64)
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


def test_device_loader_eval_mode_is_ordered_and_plain() -> None:
    images, ids = distinct_images(30), torch.arange(30)
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
    images, ids = distinct_images(40), torch.arange(40)
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
    images = distinct_images(20)
    mean, std = channel_stats(images, batch_size=7)
    ref = images.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), ref.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), ref.std(dim=(0, 2, 3), unbiased=False))


def test_dataset_channel_stats_is_the_pipelines() -> None:
    images = distinct_images(30)
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


def test_device_loader_resized_crop_draws_in_the_documented_order() -> None:
    # Replay the loader's first batch from its generator by hand: the epoch's permutation, then
    # the batch's boxes, then its flips; the images are normalised from the resized crops.
    images, ids = distinct_images(40, size=16), torch.arange(40)
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
    images, ids = distinct_images(40), torch.arange(40)
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
    images, ids = distinct_images(30, size=12), torch.arange(30)
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
    images, ids = distinct_images(20, size=10), torch.arange(20)
    loader = make_dataloader(images, ids, 8, torch.Generator().manual_seed(0), augment="resized_crop")
    first = [(x.clone(), y.clone()) for x, y in loader]
    again = list(make_dataloader(images, ids, 8, torch.Generator().manual_seed(0), augment="resized_crop"))
    assert [x.shape for x, _ in first] == [(8, 3, 10, 10), (8, 3, 10, 10), (4, 3, 10, 10)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(_as_uint8(x), images[y]) for x, y in first)


# ----------------------------------------------------------------------------------------------
# Sharding
# ----------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.slow
def test_same_generator_same_batches_and_shards_partition_the_global_batch() -> None:
    ds = load_dataset("procedural:200:10", "train")
    batches = {}
    for rank in (0, 1):
        loader = DeviceLoader.from_dataset(
            ds, 16, torch.Generator().manual_seed(5), rank=rank, world_size=2, crop_padding=0, flip=False
        )
        batches[rank] = [y for _, y in loader]
        again = [y for _, y in DeviceLoader.from_dataset(
            ds, 16, torch.Generator().manual_seed(5), rank=rank, world_size=2, crop_padding=0, flip=False)]  # fmt: skip
        assert all(torch.equal(a, b) for a, b in zip(batches[rank], again))
    assert len(batches[0]) == len(batches[1]) == 200 // 32
    order = torch.randperm(200, generator=torch.Generator().manual_seed(5))
    for b, (y0, y1) in enumerate(zip(batches[0], batches[1])):
        assert torch.equal(torch.cat([y0, y1]), ds.labels[order[b * 32 : (b + 1) * 32]])


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.slow
@pytest.mark.parametrize("kw", [{"rank": 2, "world_size": 2}, {"world_size": 0}, {"world_size": 2, "train": False}])
def test_loader_rejects_bad_sharding(kw: Dict[str, Any]) -> None:
    ds = load_dataset("procedural:40:10", "train")
    with pytest.raises(ValueError, match="Expected"):
        DeviceLoader.from_dataset(ds, 8, torch.Generator(), **kw)


# ----------------------------------------------------------------------------------------------
# Cached saliency maps through the loader
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_dataset("procedural:48:16", "train", size=40).images


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.slow
@pytest.mark.parametrize("augment", ["pad_crop", "resized_crop"])
def test_loader_with_maps_yields_the_same_images_and_maps_that_follow_them(images: torch.Tensor, augment: str) -> None:
    """Maps made of each image's red channel come out as the red channel of the augmented image:
    the same crop, resize and flip, with draws that do not depend on the maps."""
    labels = torch.zeros(images.shape[0], dtype=torch.long)
    kw = dict(augment=augment, crop_padding=6, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    plain = list(DeviceLoader(images, labels, 16, torch.Generator().manual_seed(5), **kw))
    with_maps = list(DeviceLoader(images, labels, 16, torch.Generator().manual_seed(5), maps=images[:, 0], **kw))
    assert len(plain) == len(with_maps) == 3
    for (x, y), (xm, ym, s) in zip(plain, with_maps):
        assert torch.equal(x, xm) and torch.equal(y, ym)
        assert s.dtype == torch.float32 and s.shape == (16, 40, 40) and 0 <= s.min() and s.max() <= 1
        red = x[:, 0] * 0.2 + 0.5  # the augmented red channel on the 0-1 scale
        assert torch.allclose(s, red, atol=1e-5)


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.slow
def test_loader_in_evaluation_mode_yields_the_stored_maps(images: torch.Tensor) -> None:
    labels = torch.zeros(images.shape[0], dtype=torch.long)
    maps = images[:, 1].clone()
    batches = list(DeviceLoader(images, labels, 20, train=False, maps=maps))
    assert torch.equal(torch.cat([b[2] for b in batches]), maps.float().mul(1.0 / 255.0))


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.slow
@pytest.mark.parametrize(
    "maps",
    [
        lambda im: im[:, 0].float(),  # float maps: uint8 only
        lambda im: im[:-1, 0],  # one map short
        lambda im: im[:, 0, :-1],  # another size
        lambda im: im,  # with channels
        lambda im: "maps",
    ],
)
def test_loader_rejects_maps_that_do_not_fit(images: torch.Tensor, maps) -> None:
    labels = torch.zeros(images.shape[0], dtype=torch.long)
    with pytest.raises(ValueError, match=r"Expected maps as uint8 \(48, 40, 40\)"):
        DeviceLoader(images, labels, 8, maps=maps(images))
