"""Cached saliency maps of a dataset (``saliency/_cached.py``, :func:`dataset_maps`; issue 9): the
detector's maps in 255ths, computed once and cached by content, a damaged or foreign entry computed
again, and bad arguments refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import randsaliencymix.saliency as saliency_mod
from randsaliencymix import dataset_maps
from randsaliencymix.saliency._cached import _images_digest as images_digest
from rsmix.data import load_dataset

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
