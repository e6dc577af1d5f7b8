"""Cached saliency maps of a training split (issue 9): computed once, cached by content, cropped and
flipped with their images by the loader, and read by the run's saliency operators."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import randsaliencymix.saliency as saliency_mod
from randsaliencymix import dataset_maps
from randsaliencymix.saliency._cached import _images_digest as images_digest
from rsmix import cli
from rsmix.data import load_dataset
from rsmix.pipeline import DeviceLoader

pytestmark = pytest.mark.usefixtures("isolated_harness")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_dataset("procedural:48:16", "train", size=40).images


@pytest.mark.parametrize("detector", ["fine_grained", "spectral"])
def test_maps_are_the_detectors_maps_in_255ths(images: torch.Tensor, tmp_path: Path, detector: str) -> None:
    maps = dataset_maps(images, detector, batch_size=7, cache_dir=tmp_path)
    direct = saliency_mod.saliency_map(images, detector)
    assert maps.dtype == torch.uint8 and maps.shape == (images.shape[0], *images.shape[2:])
    assert torch.equal(maps, direct.mul(255).round().to(torch.uint8))
    if detector == "fine_grained":  # its maps are multiples of 1/255: stored exactly
        assert torch.equal(maps.float().mul_(1.0 / 255.0), direct)
    else:  # the spectral residual's are rounded to the nearest 1/255
        assert (maps.float() / 255 - direct).abs().max() <= 0.5 / 255 + 1e-6


def test_second_call_reads_the_cache_and_other_pixels_miss(
    images: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = dataset_maps(images, "fine_grained", cache_dir=tmp_path)
    entries = list(tmp_path.glob("maps-fine_grained-*.npz"))
    assert len(entries) == 1

    def forbidden(*args, **kwargs):
        raise AssertionError("the detector ran although the maps were cached")

    monkeypatch.setattr(saliency_mod, "saliency_map", forbidden)
    assert torch.equal(dataset_maps(images, "fine_grained", cache_dir=tmp_path), first)
    other = images.clone()
    other[0, 0, 0, 0] ^= 1  # one pixel differs: another entry
    assert images_digest(other) != images_digest(images)
    with pytest.raises(AssertionError, match="the detector ran"):
        dataset_maps(other, "fine_grained", cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="the detector ran"):  # another detector: another entry
        dataset_maps(images, "spectral", cache_dir=tmp_path)


def test_a_damaged_entry_is_computed_again(images: torch.Tensor, tmp_path: Path) -> None:
    first = dataset_maps(images, "spectral", cache_dir=tmp_path)
    (entry,) = tmp_path.glob("maps-spectral-*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="unreadable cache file"):
        again = dataset_maps(images, "spectral", cache_dir=tmp_path)
    assert torch.equal(again, first)
    with np.load(entry) as z:  # rewritten whole
        assert np.array_equal(z["maps"], first.numpy())


def test_another_datasets_maps_under_this_key_are_a_miss(images: torch.Tensor, tmp_path: Path) -> None:
    """A file holding maps of other images, of the same shape, put where this dataset's entry
    belongs (copied, renamed, a stale folder): not returned as this dataset's maps."""
    mine = dataset_maps(images, "fine_grained", cache_dir=tmp_path)
    (entry,) = tmp_path.glob("maps-fine_grained-*.npz")
    other = torch.flip(images, dims=[3])  # the same shape, other pixels
    theirs = dataset_maps(other, "fine_grained", cache=False)
    assert not torch.equal(theirs, mine)
    for stored_key in ("another", None):
        arrays = (
            {"maps": theirs.numpy()} if stored_key is None else {"maps": theirs.numpy(), "key": np.array(stored_key)}
        )
        with open(entry, "wb") as fh:
            np.savez(fh, **arrays)
        with pytest.warns() if stored_key is None else _no_warning():
            again = dataset_maps(images, "fine_grained", cache_dir=tmp_path)
        assert torch.equal(again, mine)


def _no_warning():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def manager():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield

    return manager()


def test_cache_false_writes_nothing(images: torch.Tensor, tmp_path: Path) -> None:
    dataset_maps(images[:4], "fine_grained", cache=False, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda im: dataset_maps(im.float(), "fine_grained"), "Expected uint8 images"),
        (lambda im: dataset_maps(im[0], "fine_grained"), "Expected uint8 images"),
        (lambda im: dataset_maps(im, "cam"), "Expected detector to be one of fine_grained, spectral"),
        (lambda im: dataset_maps(im, "spectral", batch_size=0), "Expected batch_size"),
        (lambda im: dataset_maps(im, "spectral", device="tpu9"), "Expected device to be a torch device"),
        (lambda im: dataset_maps(im, "spectral", device=3.5), "Expected device to be a torch device"),
        pytest.param(
            lambda im: dataset_maps(im, "spectral", device="cuda"),
            "Expected an available device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here"),
        ),
    ],
)
def test_dataset_maps_errors(images: torch.Tensor, call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(images)


# ------------------------------------------------------------------------------------------
# The loader crops and flips the maps with their images
# ------------------------------------------------------------------------------------------


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


def test_loader_in_evaluation_mode_yields_the_stored_maps(images: torch.Tensor) -> None:
    labels = torch.zeros(images.shape[0], dtype=torch.long)
    maps = images[:, 1].clone()
    batches = list(DeviceLoader(images, labels, 20, train=False, maps=maps))
    assert torch.equal(torch.cat([b[2] for b in batches]), maps.float().mul(1.0 / 255.0))


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


# ------------------------------------------------------------------------------------------
# The training run
# ------------------------------------------------------------------------------------------

TINY = ["--data", "procedural:300:100", "--batch-size", "32", "--threads", "1", "--no-progress", "--epochs", "2"]


def test_cached_maps_without_augmentation_train_as_the_detector_on_each_batch(tmp_path: Path) -> None:
    """Without crop and flip, the cached fine-grained maps are the maps of each clean batch exactly
    (they are multiples of 1/255), so the run equals --saliency fine_grained bit for bit."""
    config = tmp_path / "plain.yaml"
    config.write_text("crop_padding: 0\nflip: false\n")
    common = [*TINY, "--config", str(config), "--method", "randsaliencymix", "--mix-opt", "tau_src=1"]
    assert cli.main(["train", *common, "--saliency", "fine_grained", "--out", str(tmp_path / "batch")]) == 0
    assert cli.main(["train", *common, "--saliency", "fine_grained_cached", "--out", str(tmp_path / "cached")]) == 0
    a = torch.load(tmp_path / "batch" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cached" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list((tmp_path / "cache").glob("maps-fine_grained-*.npz"))
    assert json.loads((tmp_path / "cached" / "config.json").read_text())["saliency"] == "fine_grained_cached"


def test_cached_maps_with_augmentation_reach_the_operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rsmix.train as train_mod

    received = []
    real = train_mod.build_mixer

    def recording(*args, **kwargs):
        mixer = real(*args, **kwargs)
        forward = mixer.forward

        def spy(x, y, **kw):
            received.append(kw.get("saliency"))
            return forward(x, y, **kw)

        mixer.forward = spy
        return mixer

    monkeypatch.setattr(train_mod, "build_mixer", recording)
    flags = [*TINY, "--method", "saliencymix_per_sample", "--saliency", "spectral_cached"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "run")]) == 0
    assert received and all(s is not None and s.shape == (32, 32, 32) for s in received)


def test_official_saliencymix_refuses_cached_maps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flags = [*TINY, "--method", "saliencymix", "--saliency", "fine_grained_cached"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "run")]) == 2
    assert "saliencymix_per_sample" in capsys.readouterr().err
