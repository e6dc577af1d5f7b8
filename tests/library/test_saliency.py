"""Batched saliency detectors (``randsaliencymix.saliency``): parity with OpenCV contrib and output
invariants.

``fine_grained`` must equal ``cv2.saliency.StaticSaliencyFineGrained`` bit for bit on uint8 input up
to 256x256; ``spectral_residual`` must be within 1e-4 of ``StaticSaliencySpectralResidual`` with the
same argmax (SPEC.md, "Saliency detectors"). The two-tap INTER_LINEAR_EXACT resize is OpenCV's bit
for bit, the spectral residual finds constant images from each channel's extremes (issue 11), and
huge but finite pixels give finite maps."""

from __future__ import annotations

import io
import tarfile
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import HUGE, ROOT, gen, huge_images
from randsaliencymix.reference import opencv_saliency
from randsaliencymix.saliency import (
    fine_grained,
    resize_linear_exact_u8,
    rgb_to_gray_u8,
    saliency_map,
    spectral_residual,
    to_uint8,
)

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "saliency"):  # pragma: no cover - depends on the environment
    pytest.skip("cv2 has no saliency module (needs opencv-contrib)", allow_module_level=True)

DETECTORS: Dict[str, Callable[..., torch.Tensor]] = {
    "fine_grained": fine_grained,
    "spectral": spectral_residual,
}
DETECTOR_NAMES = list(DETECTORS)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR_TARBALL = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"

FAST = settings(max_examples=25, deadline=None, derandomize=True)

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


# --------------------------------------------------------------------------------------------
# Image sets
# --------------------------------------------------------------------------------------------


def _rand_u8(shape, seed: int, lo: int = 0, hi: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi, shape, generator=g, dtype=torch.uint8)


def _resize_u8(img_hwc: np.ndarray, h: int, w: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, h, w) uint8 by an antialiased bilinear resize, rounded."""
    t = torch.from_numpy(np.ascontiguousarray(img_hwc)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return t.round().clamp(0, 255).to(torch.uint8)


def _crop_u8(img_hwc: np.ndarray, h: int, w: int, top: int, left: int) -> torch.Tensor:
    crop = img_hwc[top : top + h, left : left + w]
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].contiguous()


# (H, W, batch): tiny, odd, non-square, and the largest sizes the contract covers.
RANDOM_SIZES = [(2, 2, 4), (3, 5, 4), (7, 4, 4), (32, 32, 4), (31, 45, 3), (100, 37, 2), (224, 224, 1), (256, 256, 1)]


def _natural_images() -> Dict[str, torch.Tensor]:
    skdata = pytest.importorskip("skimage.data")
    out: Dict[str, torch.Tensor] = {}
    for name in ("astronaut", "chelsea", "coffee"):
        img = getattr(skdata, name)()
        for h, w in ((64, 64), (128, 96), (256, 256)):
            out[f"{name}-resized-{h}x{w}"] = _resize_u8(img, h, w)
        # Plain crops keep the photo's native pixel statistics (no resampling).
        out[f"{name}-crop-256x256"] = _crop_u8(img, 256, 256, 40, 60)
        out[f"{name}-crop-97x150"] = _crop_u8(img, 97, 150, 100, 120)
    return out


_CIFAR_CACHE: List[torch.Tensor] = []


def _cifar_batch(n_per_class: int = 4) -> torch.Tensor:
    """~40 real CIFAR-10 test JPEGs (n per class), read straight from the tarball."""
    if not CIFAR_TARBALL.exists():
        pytest.skip(f"CIFAR-10 JPEG tarball not found at {CIFAR_TARBALL}")
    if _CIFAR_CACHE:
        return _CIFAR_CACHE[0]
    from PIL import Image

    counts: Dict[str, int] = {}
    images: List[np.ndarray] = []
    with tarfile.open(CIFAR_TARBALL, "r:gz") as tf:
        for member in tf:
            if not member.isfile() or not member.name.lower().endswith(".jpg"):
                continue
            parts = member.name.split("/")
            if len(parts) < 4:
                continue
            cls = parts[-2]
            if counts.get(cls, 0) >= n_per_class:
                if len(counts) >= 10 and all(v >= n_per_class for v in counts.values()):
                    break
                continue
            counts[cls] = counts.get(cls, 0) + 1
            fh = tf.extractfile(member)
            assert fh is not None
            with Image.open(io.BytesIO(fh.read())) as im:
                images.append(np.asarray(im.convert("RGB")))
    assert len(images) >= 32, f"only {len(images)} JPEGs read from {CIFAR_TARBALL}"
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    _CIFAR_CACHE.append(batch)
    return batch


def _bright(hw: int, seed: int) -> torch.Tensor:
    return _rand_u8((2, 3, hw, hw), seed, lo=200, hi=256)


def _assert_spectral_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape
    diff = (ours.double() - ref.double()).abs().max().item()
    assert diff < 1e-4, f"max abs diff to OpenCV {diff:.3g}"
    assert torch.equal(ours.flatten(1).argmax(1), ref.flatten(1).argmax(1))


# --------------------------------------------------------------------------------------------
# fine_grained: bit parity with OpenCV
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w,b", RANDOM_SIZES, ids=[f"{h}x{w}" for h, w, _ in RANDOM_SIZES])
def test_fine_grained_equals_opencv_random(h, w, b):
    x = _rand_u8((b, 3, h, w), seed=h * 1000 + w)
    assert torch.equal(fine_grained(x), opencv_saliency(x, "fine_grained"))


@pytest.mark.parametrize("hw", [224, 256])
def test_fine_grained_equals_opencv_bright(hw):
    # All pixels in 200..255: the integral sums come close to 2**24, where float32 rounding bites.
    x = _bright(hw, seed=hw)
    assert torch.equal(fine_grained(x), opencv_saliency(x, "fine_grained"))


def test_fine_grained_equals_opencv_saturated_256():
    # Mostly 255 with sparse dark specks: the largest integral sums at 256x256.
    x = torch.full((1, 3, 256, 256), 255, dtype=torch.uint8)
    specks = _rand_u8((1, 1, 256, 256), seed=3) < 8
    x[specks.expand_as(x)] = 0
    assert torch.equal(fine_grained(x), opencv_saliency(x, "fine_grained"))


def test_fine_grained_equals_opencv_natural():
    for name, x in _natural_images().items():
        assert torch.equal(fine_grained(x), opencv_saliency(x, "fine_grained")), name


def test_fine_grained_equals_opencv_cifar_jpegs():
    x = _cifar_batch()
    assert x.shape[1:] == (3, 32, 32)
    assert torch.equal(fine_grained(x), opencv_saliency(x, "fine_grained"))


def test_fine_grained_equals_opencv_grey():
    x = _rand_u8((3, 1, 29, 41), seed=7)
    assert torch.equal(fine_grained(x), opencv_saliency(x, "fine_grained"))


@FAST
@given(
    h=st.integers(2, 48),
    w=st.integers(2, 48),
    b=st.integers(1, 3),
    levels=st.sampled_from([2, 3, 16, 256]),
    seed=st.integers(0, 2**31 - 1),
)
def test_fine_grained_equals_opencv_property(h, w, b, levels, seed):
    # Few grey levels give many ties and exact-zero differences (floor/ceil edge cases).
    x = _rand_u8((b, 3, h, w), seed, hi=levels)
    x = (x.to(torch.int32) * (255 // max(levels - 1, 1))).clamp(0, 255).to(torch.uint8)
    assert torch.equal(fine_grained(x), opencv_saliency(x, "fine_grained"))


# --------------------------------------------------------------------------------------------
# spectral_residual: within 1e-4 of OpenCV, same argmax
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w,b", RANDOM_SIZES, ids=[f"{h}x{w}" for h, w, _ in RANDOM_SIZES])
def test_spectral_close_to_opencv_random(h, w, b):
    x = _rand_u8((b, 3, h, w), seed=h * 1000 + w + 1)
    _assert_spectral_close(spectral_residual(x), opencv_saliency(x, "spectral"))


@pytest.mark.parametrize("hw", [224, 256])
def test_spectral_close_to_opencv_bright(hw):
    x = _bright(hw, seed=hw + 1)
    _assert_spectral_close(spectral_residual(x), opencv_saliency(x, "spectral"))


def test_spectral_close_to_opencv_natural():
    for name, x in _natural_images().items():
        try:
            _assert_spectral_close(spectral_residual(x), opencv_saliency(x, "spectral"))
        except AssertionError as exc:  # pragma: no cover - message only
            raise AssertionError(f"{name}: {exc}") from exc


def test_spectral_close_to_opencv_cifar_jpegs():
    x = _cifar_batch()
    _assert_spectral_close(spectral_residual(x), opencv_saliency(x, "spectral"))


def test_spectral_close_to_opencv_grey():
    x = _rand_u8((3, 1, 29, 41), seed=8)
    _assert_spectral_close(spectral_residual(x), opencv_saliency(x, "spectral"))


def test_saliency_map_dispatches_to_detectors():
    x = _rand_u8((2, 3, 20, 24), seed=9)
    assert torch.equal(saliency_map(x, "fine_grained"), fine_grained(x))
    assert torch.equal(saliency_map(x, "spectral"), spectral_residual(x))
    assert torch.equal(saliency_map(x), fine_grained(x))


# --------------------------------------------------------------------------------------------
# Float input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_float_unit_range_matches_uint8(name, dtype):
    det = DETECTORS[name]
    u8 = _rand_u8((3, 3, 33, 27), seed=11)
    xf = (u8.to(torch.float64) / 255.0).to(dtype)  # u8 / 255 rounds back to u8 exactly
    assert torch.equal(to_uint8(xf, value_range=(0, 1)), u8)
    assert torch.equal(det(xf, value_range=(0, 1)), det(u8))
    assert torch.equal(saliency_map(xf, name, value_range=(0, 1)), det(u8))


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_float_custom_value_range_matches_uint8(name):
    det = DETECTORS[name]
    u8 = _rand_u8((2, 3, 25, 30), seed=12)
    xf = u8.to(torch.float64) / 255.0 * 2.0 - 1.0  # [-1, 1]
    assert torch.equal(det(xf, value_range=(-1.0, 1.0)), det(u8))


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_imagenet_normalised_matches_uint8(name, dtype):
    det = DETECTORS[name]
    u8 = _rand_u8((3, 3, 40, 36), seed=13)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).reshape(1, 3, 1, 1)
    xn = ((u8.to(torch.float64) / 255.0 - mean) / std).to(dtype)
    assert torch.equal(to_uint8(xn, mean=IMAGENET_MEAN, std=IMAGENET_STD), u8)
    assert torch.equal(det(xn, mean=IMAGENET_MEAN, std=IMAGENET_STD), det(u8))
    assert torch.equal(saliency_map(xn, name, mean=IMAGENET_MEAN, std=IMAGENET_STD), det(u8))


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_float_minmax_default_matches_uint8_spanning_full_range(name):
    # Without value_range the float image is min-max scaled per image; when it spans exactly
    # [0, 1] that is the identity, so the map equals that of the uint8 image.
    det = DETECTORS[name]
    u8 = _rand_u8((2, 3, 21, 23), seed=14)
    u8[:, 0, 0, 0] = 0
    u8[:, 1, 0, 1] = 255
    assert torch.equal(det(u8.float() / 255.0), det(u8))
    # ... and min-max is invariant to an affine change of the float values.
    assert torch.equal(det(u8.double() * 3.0 - 7.0), det(u8))


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_float_minmax_default_in_unit_interval(name, dtype):
    det = DETECTORS[name]
    g = torch.Generator().manual_seed(15)
    x = (torch.randn(3, 3, 26, 31, generator=g, dtype=torch.float64) * 5 + 2).to(dtype)
    out = det(x)
    assert out.shape == (3, 26, 31) and out.dtype == torch.float32
    assert not torch.isnan(out).any()
    assert out.min() >= 0 and out.max() <= 1
    assert out.amax(dim=(1, 2)).gt(0).all()  # random images have some saliency


# --------------------------------------------------------------------------------------------
# Constant images
# --------------------------------------------------------------------------------------------


def _constant_batches() -> Dict[str, torch.Tensor]:
    colour = torch.tensor([30, 140, 250], dtype=torch.uint8).reshape(1, 3, 1, 1).expand(2, 3, 17, 19)
    return {
        "u8-zeros": torch.zeros(2, 3, 17, 19, dtype=torch.uint8),
        "u8-255": torch.full((2, 3, 17, 19), 255, dtype=torch.uint8),
        "u8-128": torch.full((1, 3, 64, 64), 128, dtype=torch.uint8),
        "u8-colour": colour.contiguous(),
        "u8-grey-1ch": torch.full((2, 1, 9, 6), 77, dtype=torch.uint8),
        "u8-tiny": torch.full((1, 3, 2, 2), 9, dtype=torch.uint8),
        "f32-zeros": torch.zeros(2, 3, 17, 19),
        "f32-ones": torch.ones(2, 3, 17, 19),
        "f32-half": torch.full((2, 3, 17, 19), 0.5),
        "f32-colour": colour.float() / 255.0,
        "f16-negative": torch.full((2, 3, 17, 19), -3.0, dtype=torch.float16),
        "bf16-big": torch.full((2, 3, 17, 19), 1000.0, dtype=torch.bfloat16),
        "f64-zeros": torch.zeros(1, 3, 40, 40, dtype=torch.float64),
    }


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("case", list(_constant_batches()))
def test_constant_image_gives_uniform_finite_map(name, case):
    x = _constant_batches()[case]
    out = DETECTORS[name](x)
    assert out.shape == (x.shape[0], x.shape[2], x.shape[3])
    assert torch.isfinite(out).all()
    flat = out.flatten(1)
    assert torch.equal(flat, flat[:, :1].expand_as(flat)), "map of a constant image is not uniform"
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_constant_float_with_value_range_gives_uniform_map(name):
    for x in (torch.zeros(2, 3, 10, 12), torch.ones(2, 3, 10, 12), torch.full((2, 3, 10, 12), 0.3)):
        out = DETECTORS[name](x, value_range=(0, 1))
        assert torch.isfinite(out).all()
        flat = out.flatten(1)
        assert torch.equal(flat, flat[:, :1].expand_as(flat))


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_constant_image_does_not_affect_its_batch_mates(name):
    det = DETECTORS[name]
    x = _rand_u8((3, 3, 24, 24), seed=16)
    x[1] = 0
    out = det(x)
    assert torch.equal(out[0], det(x[:1])[0]) and torch.equal(out[2], det(x[2:])[0])


# --------------------------------------------------------------------------------------------
# Output contract
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_output_shape_dtype_range_device(name, dtype, device):
    x = _rand_u8((2, 3, 19, 27), seed=17).to(device)
    if dtype != torch.uint8:
        x = (x.double() / 255.0).to(dtype)
    out = DETECTORS[name](x)
    assert out.shape == (2, 19, 27)
    assert out.dtype == torch.float32
    assert out.device == x.device
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_cuda_matches_cpu(name):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = _rand_u8((3, 3, 64, 48), seed=18)
    cpu = DETECTORS[name](x)
    gpu = DETECTORS[name](x.cuda())
    if name == "fine_grained":
        assert torch.equal(gpu.cpu(), cpu)
    else:
        assert (gpu.cpu() - cpu).abs().max() < 1e-4


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_channels_last_same_as_contiguous(name, dtype):
    det = DETECTORS[name]
    x = _rand_u8((3, 3, 30, 22), seed=19)
    if dtype != torch.uint8:
        x = x.to(dtype) / 255.0
    xcl = x.contiguous(memory_format=torch.channels_last)
    assert not xcl.is_contiguous()
    assert torch.equal(det(xcl), det(x))


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_non_contiguous_view_same_as_copy(name):
    det = DETECTORS[name]
    big = _rand_u8((4, 3, 40, 50), seed=20)
    view = big[::2, :, 3:35, ::2]
    assert not view.is_contiguous()
    assert torch.equal(det(view), det(view.contiguous()))


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_grey_input_works_and_equals_replicated_rgb(name):
    det = DETECTORS[name]
    grey = _rand_u8((2, 1, 23, 31), seed=21)
    out = det(grey)
    assert out.shape == (2, 23, 31) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    # OpenCV's BGR->grey of (v, v, v) is exactly v, so the grey image and its RGB copy agree.
    assert torch.equal(out, det(grey.expand(2, 3, 23, 31)))
    assert torch.equal(det(grey.float() / 255.0, value_range=(0, 1)), out)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_input_not_mutated(name, dtype, channels):
    det = DETECTORS[name]
    x = _rand_u8((2, channels, 18, 21), seed=22)
    if dtype != torch.uint8:
        x = x.to(dtype) / 255.0
    before = x.clone()
    det(x)
    if dtype != torch.uint8:
        det(x, value_range=(0, 1))
        if channels == 3:
            det(x, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert torch.equal(x, before)
    assert x.dtype == before.dtype


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_deterministic(name):
    det = DETECTORS[name]
    x = _rand_u8((3, 3, 37, 29), seed=23)
    assert torch.equal(det(x), det(x))
    xf = x.float() / 255.0
    assert torch.equal(det(xf), det(xf))


# --------------------------------------------------------------------------------------------
# Batch independence
# --------------------------------------------------------------------------------------------


@FAST
@given(
    name=st.sampled_from(DETECTOR_NAMES),
    b=st.integers(2, 5),
    h=st.integers(2, 40),
    w=st.integers(2, 40),
    dtype=st.sampled_from([torch.uint8, torch.float32, torch.float64]),
    constant_rows=st.sets(st.integers(0, 4), max_size=2),
    seed=st.integers(0, 2**31 - 1),
)
def test_map_of_an_image_does_not_depend_on_its_batch(name, b, h, w, dtype, constant_rows, seed):
    det = DETECTORS[name]
    x = _rand_u8((b, 3, h, w), seed)
    for r in constant_rows:
        if r < b:
            x[r] = 0
    if dtype != torch.uint8:
        # Different scales per image: the per-image min-max must not mix them up.
        scale = torch.arange(1, b + 1, dtype=torch.float64).reshape(b, 1, 1, 1)
        x = (x.double() * scale).to(dtype)
    batch = det(x)
    alone = torch.cat([det(x[i : i + 1]) for i in range(b)])
    assert torch.equal(batch, alone)
    # Permuting the batch permutes the maps.
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(det(x[perm]), batch[perm])


@pytest.mark.parametrize("kind", ["uint8", "minmax", "normalised"])
def test_fine_grained_in_chunks_equals_the_whole_batch(monkeypatch, kind):
    """The CPU path runs over chunks of images with one reused workspace: any chunking (here 3, 3
    and a last chunk of 2) gives the whole batch's maps bit for bit, whatever the input's scaling."""
    import randsaliencymix.saliency as sal
    from randsaliencymix.saliency import _fine_grained

    g = torch.Generator().manual_seed(0)
    x8 = (torch.rand(8, 3, 20, 24, generator=g) * 255).to(torch.uint8)
    kw = {}
    x = x8
    if kind == "minmax":
        x = x8.float() * torch.linspace(0.5, 3.0, 8).view(8, 1, 1, 1) - 7.0  # every image its own range
    elif kind == "normalised":
        kw = dict(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
        x = (x8.float() / 255 - torch.tensor(kw["mean"]).view(1, 3, 1, 1)) / torch.tensor(kw["std"]).view(1, 3, 1, 1)
    whole = sal.fine_grained(x, **kw)
    monkeypatch.setattr(_fine_grained, "FINE_GRAINED_CHUNK_BYTES", 3 * 4 * 20 * 24)
    assert torch.equal(sal.fine_grained(x, **kw), whole)
    for i in range(8):  # and each image alone
        assert torch.equal(sal.fine_grained(x[i : i + 1], **kw)[0], whole[i])


# --------------------------------------------------------------------------------------------
# The resize and the constant-image test of the spectral residual (issue 11)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(32, 32), (224, 224), (29, 41), (64, 64), (100, 7), (2, 2), (300, 200), (65, 63)])
def test_two_tap_resize_is_opencv_linear_exact(hw):
    cv2 = pytest.importorskip("cv2")
    h, w = hw
    grey = torch.randint(0, 256, (3, h, w), generator=gen(h * 1000 + w), dtype=torch.uint8)
    ours = resize_linear_exact_u8(grey.float(), (64, 64))
    for i in range(3):
        ref = cv2.resize(grey[i].numpy(), (64, 64), interpolation=cv2.INTER_LINEAR_EXACT)
        assert torch.equal(ours[i], torch.from_numpy(ref).float()), i


def test_spectral_residual_constant_means_every_channel_constant():
    """A constant image (every channel constant once quantised) has an all-zero map; an image with
    a constant grey but two colours is not constant, and gets OpenCV's map."""
    cv = pytest.importorskip("randsaliencymix.reference")
    pytest.importorskip("cv2")
    x = torch.zeros(3, 3, 40, 48, dtype=torch.uint8)
    x[0] = torch.tensor([30, 140, 250], dtype=torch.uint8).reshape(3, 1, 1)
    # Image 1: two colours of the same OpenCV grey value.
    a = torch.tensor([200, 0, 0], dtype=torch.uint8)
    b = torch.tensor([0, 102, 0], dtype=torch.uint8)
    assert torch.equal(rgb_to_gray_u8(a.reshape(1, 3, 1, 1)), rgb_to_gray_u8(b.reshape(1, 3, 1, 1)))
    x[1] = a.reshape(3, 1, 1)
    x[1, :, :, 20:] = b.reshape(3, 1, 1)
    x[2] = torch.randint(0, 256, (3, 40, 48), generator=gen(13), dtype=torch.uint8)
    out = spectral_residual(x)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    ref = cv.opencv_saliency(x[1:], "spectral")
    assert float((out[1:].double() - ref.double()).abs().max()) < 1e-4
    # Float images: constant after quantisation, even if not constant as floats.
    xf = torch.full((2, 3, 20, 20), 0.5)
    xf[0, :, 3, 3] = 0.5 + 1e-4  # quantises to the same 0-255 value
    xf[1, 1, 5, 5] = 0.9
    out = spectral_residual(xf, value_range=(0.0, 1.0))
    assert torch.equal(out[0], torch.zeros_like(out[0])) and float(out[1].max()) > 0.1


def test_spectral_residual_reads_only_the_resized_pixels_and_the_extremes():
    """The map does not depend on pixels the 64x64 resize skips, except through the per-image
    min-max scaling (here fixed by a value range) and constancy."""
    x = torch.rand(2, 3, 224, 224, generator=gen(14))
    y = x.clone()
    y[:, :, 3, :] = torch.rand(2, 3, 224, generator=gen(15))  # rows 3 and 6 are not read by the resize
    y[:, :, :, 6] = torch.rand(2, 3, 224, generator=gen(16))
    kw = dict(value_range=(0.0, 1.0))
    assert torch.equal(spectral_residual(x, **kw), spectral_residual(y, **kw))


# --------------------------------------------------------------------------------------------
# Huge but finite pixels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("detector", [fine_grained, spectral_residual], ids=["fine_grained", "spectral"])
@pytest.mark.parametrize("case", list(HUGE))
def test_detectors_on_huge_finite_pixels(case, detector):
    """The per-image min-max scaling cannot overflow: maps are finite and in [0, 1]."""
    dtype, big = HUGE[case]
    maps = detector(huge_images(dtype, big))
    assert bool(torch.isfinite(maps).all()) and bool(((maps >= 0) & (maps <= 1)).all())


def test_min_max_scaling_of_huge_values_is_exact():
    x = torch.tensor([-3e38, -1e38, 1e38, 3e38], dtype=torch.float32).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert to_uint8(x)[0, 0].flatten().tolist() == [0, 85, 170, 255]
    # Ordinary values: bit for bit (x - lo) * 255 / (hi - lo), rounded.
    x = torch.rand(4, 3, 9, 9, generator=gen(5)) * 7 - 3
    flat = x.flatten(1)
    lo = flat.amin(1).reshape(-1, 1, 1, 1)
    span = flat.amax(1).reshape(-1, 1, 1, 1) - lo
    assert torch.equal(to_uint8(x), torch.sub(x, lo).mul_(255.0 / span).round_().clamp_(0, 255).to(torch.uint8))
