"""The spectral-residual detector (Hou & Zhang 2007) as OpenCV 4.x's
``StaticSaliencySpectralResidual``: its bit-exact fixed-point resize, the log-amplitude residual
on Hermitian half spectra, and OpenCV's phase polynomial.

Internal: import from randsaliencymix.saliency instead; may change without notice.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .._checks import check_images
from ._grey import _Quantiser, rgb_to_gray_u8


def _linear_exact_weights(dst: int, src: int, device: torch.device) -> torch.Tensor:
    """Row-interpolation matrix (dst, src) of cv::resize INTER_LINEAR_EXACT in 1/256 units."""
    weights = torch.zeros(dst, src, dtype=torch.float64)
    scale = src / dst
    for d in range(dst):
        f = (d + 0.5) * scale - 0.5
        s = math.floor(f)
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= src - 1:
            s, f = src - 1, 0.0
        c1 = math.floor(f * 256.0 + 0.5)
        weights[d, s] += 256 - c1
        if c1:
            weights[d, s + 1] += c1
    return weights.to(device)


class _Taps:
    """cv::resize INTER_LINEAR_EXACT along one axis as two taps per output index: output ``d``
    is ``w0[d] * src[s0[d]] + w1[d] * src[s1[d]]`` in 1/256 units. ``needed`` are the sorted source
    indices that any output reads (all of them when upscaling) and ``i0``/``i1`` the taps' positions
    among them."""

    def __init__(self, dst: int, src: int, device: torch.device) -> None:
        weights = _linear_exact_weights(dst, src, torch.device("cpu"))
        nonzero = weights > 0
        first = nonzero.to(torch.int64).argmax(dim=1)
        second = torch.where(nonzero.sum(dim=1) > 1, first + 1, first)
        needed = torch.unique(torch.cat([first, second]))
        position = torch.full((src,), -1, dtype=torch.int64)
        position[needed] = torch.arange(needed.numel())
        rows = torch.arange(dst)
        self.all = needed.numel() == src
        self.needed = needed.to(device)
        self.s0, self.s1 = first.to(device), second.to(device)
        self.i0, self.i1 = position[first].to(device), position[second].to(device)
        w0 = weights[rows, first]
        w1 = torch.where(second != first, weights[rows, second], torch.zeros_like(w0))
        self.w0, self.w1 = w0.float().to(device), w1.float().to(device)


_TAPS_CACHE: Dict[Tuple[int, int, str], _Taps] = {}


def _cached_taps(dst: int, src: int, device: torch.device) -> _Taps:
    key = (dst, src, str(device))
    if key not in _TAPS_CACHE:
        _TAPS_CACHE[key] = _Taps(dst, src, device)
    return _TAPS_CACHE[key]


def _resize_taps(gray: torch.Tensor, ty: _Taps, tx: _Taps) -> torch.Tensor:
    """cv::resize(INTER_LINEAR_EXACT) of 8-bit grey images held as float32 ``(B, h, W)``: given only
    at the ``needed`` rows of ``ty`` (``h`` of them) and at every column. Bit exact: every partial
    sum is an integer below ``255 * 256 * 256 < 2**24``, which float32 holds exactly. Gathers are
    whole lines of a 2-D view (the fast ``index_select`` paths)."""
    b, h, w = gray.shape
    lines = gray.reshape(b * h, w)
    base = (torch.arange(b, device=gray.device) * h)[:, None]
    rows = torch.mul(lines.index_select(0, (base + ty.i0).reshape(-1)), ty.w0.repeat(b)[:, None])
    rows.addcmul_(lines.index_select(0, (base + ty.i1).reshape(-1)), ty.w1.repeat(b)[:, None])
    acc = torch.mul(rows.index_select(1, tx.s0), tx.w0)
    acc.addcmul_(rows.index_select(1, tx.s1), tx.w1)
    # (acc + 2**15) / 2**16 is exact in float32 (the sum is below 2**24, the division a power of 2).
    return acc.add_(32768.0).mul_(1.0 / 65536.0).floor_().view(b, -1, acc.shape[-1])


def _needed_rows(x: torch.Tensor, ty: _Taps) -> torch.Tensor:
    """``x[:, :, ty.needed]``, as whole-line copies where ``x`` is contiguous."""
    if ty.all:
        return x
    b, c, h, w = x.shape
    if not x.is_contiguous():
        return x.index_select(2, ty.needed)
    base = (torch.arange(b * c, device=x.device) * h)[:, None]
    lines = x.reshape(b * c * h, w).index_select(0, (base + ty.needed).reshape(-1))
    return lines.view(b, c, -1, w)


def resize_linear_exact_u8(gray: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """cv::resize(INTER_LINEAR_EXACT) of 8-bit grey images (B, H, W) held as float, bit exact
    (float32 holding the integer results)."""
    _, h, w = gray.shape
    ty = _cached_taps(size[0], h, gray.device)
    tx = _cached_taps(size[1], w, gray.device)
    g = gray.float()
    if not ty.all:
        g = g.index_select(1, ty.needed)
    return _resize_taps(g, ty, tx)


def _gaussian_kernel(ksize: int, sigma: float, device: torch.device) -> torch.Tensor:
    t = torch.arange(ksize, dtype=torch.float64, device=device) - (ksize - 1) / 2
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    return k / k.sum()


# cv::fastAtan2's polynomial (degrees), which cv::cartToPolar uses for the phase.
_ATAN_P1 = 0.9997878412794807 * 180 / math.pi
_ATAN_P3 = -0.3258083974640975 * 180 / math.pi
_ATAN_P5 = 0.1555786518463281 * 180 / math.pi
_ATAN_P7 = -0.04432655554792128 * 180 / math.pi


def _opencv_phase_cos_sin(re: torch.Tensor, im: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (float32) of the phase of ``re + i im`` as cv::cartToPolar computes it: fastAtan2's
    7th-order polynomial in degrees, off the true angle by up to ~1e-5 rad. The polynomial is what
    makes the map agree with OpenCV's; evaluating it and the trigonometry in float32 changes the map
    by less than 1e-6.

    The angle is the polynomial of ``c = min(|re|, |im|) / max(|re|, |im|)`` in [0, 45] degrees,
    then ``90 - a`` where ``|re| < |im|``, ``180 - a`` where ``re < 0`` and ``360 - a`` where
    ``im < 0``; their cos and sin are those of ``a`` swapped where ``|re| < |im|`` and negated where
    ``re < 0`` (cos) or ``im < 0`` (sin). Selections are arithmetic (lerp by a 0/1 weight,
    copysign): elementwise ops on bool masks are several times slower on CPU.
    """
    re32, im32 = re.float(), im.float()
    ax, ay = re32.abs(), im32.abs()
    swap = torch.lt(ax, ay, out=torch.empty_like(ax))  # 1.0 where |re| < |im|
    c = torch.minimum(ax, ay).div_(torch.maximum(ax, ay, out=ax).add_(torch.finfo(torch.float64).eps))
    del ax, ay
    c2 = c * c
    a = c2.mul(_ATAN_P7).add_(_ATAN_P5).mul_(c2).add_(_ATAN_P3).mul_(c2).add_(_ATAN_P1).mul_(c)
    del c, c2
    cos_a = torch.cos(a.mul_(math.pi / 180.0))
    sin_a = a.sin_()
    cos = torch.lerp(cos_a, sin_a, swap)
    sin = sin_a.lerp_(cos_a, swap)
    del cos_a, swap
    # x + 0.0 turns -0.0 into +0.0: OpenCV's "x < 0" is false for -0.0, copysign's sign is not.
    return cos.copysign_(re32.add_(0.0)), sin.copysign_(im32.add_(0.0))


class _Hermitian:
    """Where each bin of a full ``n x n`` spectrum of a real image sits in its half spectrum
    (``rfft2``, ``n x (n // 2 + 1)``): bin ``(k1, k2)`` with ``k2 > n // 2`` is the conjugate of
    ``(-k1 mod n, n - k2)``. ``index`` (n * n,) into the flattened half, ``sign`` ``(n, n)``: -1
    where the imaginary part changes sign."""

    def __init__(self, n: int, device: torch.device) -> None:
        half = n // 2 + 1
        k1 = torch.arange(n)[:, None].expand(n, n)
        k2 = torch.arange(n)[None, :].expand(n, n)
        mirrored = k2 >= half
        rows = torch.where(mirrored, (n - k1) % n, k1)
        cols = torch.where(mirrored, n - k2, k2)
        self.index = (rows * half + cols).reshape(-1).to(device)
        self.sign = torch.where(mirrored, -1.0, 1.0).to(torch.float32).to(device)


_HERMITIAN_CACHE: Dict[Tuple[int, str], _Hermitian] = {}


def _hermitian(n: int, device: torch.device) -> _Hermitian:
    key = (n, str(device))
    if key not in _HERMITIAN_CACHE:
        _HERMITIAN_CACHE[key] = _Hermitian(n, device)
    return _HERMITIAN_CACHE[key]


def _box3_reflect101(img: torch.Tensor) -> torch.Tensor:
    """cv::blur(ksize=3x3) of (B, H, W) maps, border reflect-101: sums of shifted slices."""
    p = F.pad(img.unsqueeze(1), (1, 1, 1, 1), mode="reflect").squeeze(1)
    h, w = img.shape[-2:]
    rows = torch.add(p[:, :, 0:w], p[:, :, 1 : w + 1]).add_(p[:, :, 2 : w + 2])
    return torch.add(rows[:, 0:h], rows[:, 1 : h + 1]).add_(rows[:, 2 : h + 2]).mul_(1.0 / 9.0)


def _gaussian5_reflect101(img: torch.Tensor) -> torch.Tensor:
    """cv::GaussianBlur(ksize=5x5, sigma=8) of (B, H, W) maps, border reflect-101, separable:
    weighted sums of shifted slices (several times faster than a one-channel convolution on CPU)."""
    weights = _GAUSSIAN5
    p = F.pad(img.unsqueeze(1), (2, 2, 2, 2), mode="reflect").squeeze(1)
    h, w = img.shape[-2:]
    rows = torch.mul(p[:, :, 0:w], weights[0])
    for i in range(1, 5):
        rows.add_(p[:, :, i : i + w], alpha=weights[i])
    out = torch.mul(rows[:, 0:h], weights[0])
    for i in range(1, 5):
        out.add_(rows[:, i : i + h], alpha=weights[i])
    return out


_GAUSSIAN5 = _gaussian_kernel(5, 8.0, torch.device("cpu")).tolist()

# On CPU the 64x64 spectra are processed this many images at a time, which bounds the working
# memory (about 100 kB per image: at 32x32 the 64x64 spectra are larger than the images) at a small
# cost in per-chunk overhead.
SR_CHUNK = 32
# ... and the rows the resize reads are quantised and turned grey about this many bytes at a time.
SR_FRONT_BYTES = 2 << 20


def _spectral_small(grey: torch.Tensor) -> torch.Tensor:
    """The 64x64 saliency maps of 64x64 grey images (float32 holding integers), float32 in [0, 1].

    The forward DFT, the amplitude and its log are float64 (OpenCV's precision: the spectrum spans
    six orders of magnitude); the image is real, so its spectrum is Hermitian and they are computed
    on the half spectrum (``rfft2``) and mirrored. From the log amplitude on, float32: the residual,
    its exponential and the inverse DFT move the map by about 1e-7 (2e-6 from OpenCV's in all, the
    same as float64 throughout). The modified spectrum is not Hermitian (the 3x3 blur's reflected
    border breaks the symmetry), so the inverse is a full complex DFT, as OpenCV's."""
    n, size = int(grey.shape[0]), int(grey.shape[-1])
    dev = grey.device
    mirror = _hermitian(size, dev)
    half = torch.view_as_real(torch.fft.rfft2(grey.double()))
    re, im = half[..., 0], half[..., 1]
    # cv::magnitude: sqrt(re^2 + im^2); then log(magnitude + 1).
    log_amplitude = torch.mul(re, re).addcmul_(im, im).sqrt_().add_(1.0).log_().float()
    cos, sin = _opencv_phase_cos_sin(re, im)
    del half, re, im
    index = mirror.index[None, :].expand(n, -1)

    def full(t: torch.Tensor) -> torch.Tensor:
        return torch.gather(t.reshape(n, -1), 1, index).view(n, size, size)

    log_amplitude = full(log_amplitude)
    cos, sin = full(cos), full(sin).mul_(mirror.sign)
    magnitude = log_amplitude.sub_(_box3_reflect101(log_amplitude)).exp_()
    # cv::polarToCart of the residual's amplitude and the original phase, then the inverse DFT
    # (unscaled in OpenCV; the map is divided by its maximum below, so the scale does not matter).
    spectrum = torch.empty(n, size, size, dtype=torch.complex64, device=dev)
    parts = torch.view_as_real(spectrum)
    torch.mul(magnitude, cos, out=parts[..., 0])
    torch.mul(magnitude, sin, out=parts[..., 1])
    del magnitude, cos, sin
    parts = torch.view_as_real(torch.fft.ifft2(spectrum))
    magnitude = torch.mul(parts[..., 0], parts[..., 0]).addcmul_(parts[..., 1], parts[..., 1]).sqrt_()
    del spectrum, parts
    magnitude = _gaussian5_reflect101(magnitude)
    magnitude = magnitude.mul_(magnitude)
    return magnitude.div_(magnitude.amax(dim=(1, 2), keepdim=True))


def _channel_extremes(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each channel's minimum and maximum ``(B, C)`` (one read of the batch)."""
    # Two reductions: aminmax over a flattened dimension is several times slower on CPU.
    return x.amin(dim=(2, 3)), x.amax(dim=(2, 3))


def spectral_residual(
    x: torch.Tensor,
    value_range: Optional[Tuple[float, float]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    validate: Optional[bool] = None,
) -> torch.Tensor:
    """Spectral-residual static saliency (Hou & Zhang 2007) of a batch, as OpenCV 4.x computes it.

    Only the rows the 64x64 resize reads are quantised and turned grey (at 224x224, 128 of them);
    every image is read once more, to its per-channel extremes, to find the constant images (all
    channels constant once quantised), whose map is all zeros. On CPU the spectra are processed
    ``SR_CHUNK`` images at a time.
    """
    check_images(x, validate)
    b, _, h, w = x.shape
    dev = x.device
    xd = x.detach()
    lo, hi = _channel_extremes(xd)
    quantise = _Quantiser(xd, value_range, mean, std, extremes=(lo, hi))
    # Quantisation is monotone, so each channel's quantised extremes are those of its extremes.
    constant = (quantise(lo[:, :, None, None]) == quantise(hi[:, :, None, None])).all(dim=1).reshape(b, 1, 1)
    ty = _cached_taps(64, h, dev)
    tx = _cached_taps(64, w, dev)
    maps = torch.empty(b, 64, 64, dtype=torch.float32, device=dev)
    # Only the rows the resize reads are quantised and turned grey (its columns are picked after),
    # a few images at a time on CPU so that the temporaries stay small and in cache.
    # Per image: the float rows read, or the resize's 64x64 output and its two gathered taps.
    front_bytes = max(x.shape[1] * ty.needed.numel() * w * 4, 3 * 64 * 64 * 4)
    step = max(1, min(b, SR_FRONT_BYTES // front_bytes)) if dev.type == "cpu" else b
    for i0 in range(0, b, step):
        part = slice(i0, i0 + step)
        maps[part] = _resize_taps(rgb_to_gray_u8(quantise(_needed_rows(xd[part], ty), part)), ty, tx)
    step = SR_CHUNK if dev.type == "cpu" else b
    for i0 in range(0, b, step):
        # Each chunk's grey images are replaced by their maps.
        maps[i0 : i0 + step] = _spectral_small(maps[i0 : i0 + step])
    # A constant image has no saliency (OpenCV would return a blob from the DC term): zero its
    # small map, which the bilinear resize keeps at zero.
    maps = maps.masked_fill_(constant, 0.0)
    out = F.interpolate(maps.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)
    return out.squeeze(1)
