"""Batched saliency detectors in torch, bit-faithful to OpenCV contrib's static saliency.

Both detectors take ``(B, C, H, W)`` images (C = 3 RGB, or C = 1 grey) and return ``(B, H, W)``
float32 maps in [0, 1] on the input's device. Every step is a tensor op over the whole batch.

* :func:`fine_grained` reproduces ``cv2.saliency.StaticSaliencyFineGrained`` (Montabone & Soto,
  2010) pixel for pixel on uint8 images up to 256x256, including OpenCV's integer grey
  conversion, its fixed-point blur, its float32 arithmetic order and the 8-bit wrap-around of its
  final ``(uchar)`` cast.
* :func:`spectral_residual` reproduces ``cv2.saliency.StaticSaliencySpectralResidual`` (Hou & Zhang,
  2007, OpenCV 4.x) to about 1e-5, with OpenCV's bit-exact fixed-point resize to 64x64.

Float images are first brought to uint8 (see :func:`to_uint8`), because both algorithms are
defined on 8-bit grey values. A constant image has no saliency: its map is all zeros.

The third saliency source, class activation maps of the model being trained
(:func:`class_activation_maps`, :func:`cam_and_logits`), lives in :mod:`randsaliencymix.cam` and is
re-exported here.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_images, check_normalisation
from .cam import cam_and_logits, cam_from_features, class_activation_maps

__all__ = [
    "DETECTORS",
    "Detector",
    "cam_and_logits",
    "cam_from_features",
    "class_activation_maps",
    "fine_grained",
    "resize_linear_exact_u8",
    "rgb_to_gray_u8",
    "saliency_map",
    "spectral_residual",
    "to_uint8",
]

# Montabone & Soto's centre-surround half-widths, as in OpenCV contrib.
_FINE_GRAINED_NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)


def _quantised(
    x: torch.Tensor,
    value_range: Optional[Tuple[float, float]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """The 0-255 integer values of :func:`to_uint8`, held in float32 (or uint8 input as is).

    Keeping float avoids a uint8 round trip when the values feed float arithmetic next. The
    detectors are not differentiable: they read ``x.detach()``.
    """
    check_normalisation(value_range, mean, std, channels=x.shape[1])
    if x.dtype == torch.uint8:
        return x
    xf = x.detach().float()
    if mean is not None and std is not None:
        m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
        # 255 * (x * std + mean) in two passes.
        scaled = torch.mul(xf, s * 255.0).add_(m * 255.0)
    elif value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        scaled = torch.sub(xf, lo).mul_(255.0 / (hi - lo))
    else:
        flat = xf.flatten(1)
        # Halves throughout: hi - lo and x - lo overflow float32 for pixels beyond +-1.7e38, their
        # halves never do. Scaling by 1/2 is exact, so the result is bit for bit (x - lo) * 255 / span.
        half_lo = flat.amin(dim=1).reshape(-1, 1, 1, 1) * 0.5
        half_span = flat.amax(dim=1).reshape(-1, 1, 1, 1) * 0.5 - half_lo
        # A constant image has span 0: scale it by 0 so it maps to zeros, never NaN.
        tiny = torch.finfo(torch.float32).tiny
        gain = torch.where(half_span > 0, 255.0 / half_span.clamp(min=tiny), torch.zeros_like(half_span))
        scaled = torch.add(-half_lo, xf, alpha=0.5).mul_(gain)
    return scaled.round_().clamp_(0, 255)


def to_uint8(
    x: torch.Tensor,
    value_range: Optional[Tuple[float, float]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """Bring images to uint8 on the 0-255 scale without a host synchronisation.

    uint8 input is returned as is. Float input is mapped by, in order of preference: the
    normalisation it was given (``x * std + mean`` is in [0, 1]), its ``value_range`` (lo, hi), or
    else per image min-max. A constant image maps to zeros.
    """
    return _quantised(x, value_range, mean, std).to(torch.uint8)


def rgb_to_gray_u8(x_u8: torch.Tensor) -> torch.Tensor:
    """OpenCV's fixed-point BGR2GRAY of an RGB (or grey) batch of 0-255 integers (uint8, or float
    holding integers): ``(B, C, H, W) -> (B, H, W)``.

    Returned as float32 holding exact integers 0..255 (float keeps the later ops vectorised).
    """
    if x_u8.shape[1] == 1:
        return x_u8[:, 0].to(torch.float32, copy=True)
    if x_u8.shape[1] != 3:
        raise ValueError(f"Expected 1 (grey) or 3 (RGB) channels, but got {x_u8.shape[1]} instead.")
    # cv::cvtColor's 8-bit weights: 0.299, 0.587, 0.114 in 15-bit fixed point, rounding term 2**14.
    # Every partial sum is an integer below 2**24, so float32 computes the integer formula exactly.
    acc = torch.mul(x_u8[:, 0].to(torch.float32), 9798.0).add_(16384.0)
    acc.add_(x_u8[:, 1].to(torch.float32), alpha=19235.0)
    acc.add_(x_u8[:, 2].to(torch.float32), alpha=3735.0)
    return acc.mul_(1.0 / 32768.0).floor_()


def _blur121_u8(g: torch.Tensor) -> torch.Tensor:
    """cv::GaussianBlur(ksize=3, sigma=0) of 8-bit images: kernel [1,2,1]/4 per axis, bit exact.

    OpenCV's 8-bit path is fixed point and rounds half up; the kernel is exact in binary, so the
    result is floor((S + 8) / 16) with S the integer-weighted sum. Border: reflect-101.
    """
    p = F.pad(g.unsqueeze(1), (1, 1, 1, 1), mode="reflect").squeeze(1)
    h = torch.add(p[:, :, :-2], p[:, :, 2:]).add_(p[:, :, 1:-1], alpha=2.0)
    s = torch.add(h[:, :-2], h[:, 2:]).add_(h[:, 1:-1], alpha=2.0)
    return s.add_(8.0).mul_(1.0 / 16.0).floor_()


def fine_grained(
    x: torch.Tensor,
    value_range: Optional[Tuple[float, float]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    validate: Optional[bool] = None,
) -> torch.Tensor:
    """Fine-grained static saliency (Montabone & Soto 2010) of a batch, as OpenCV computes it."""
    check_images(x, validate)
    gray = _blur121_u8(_blur121_u8(rgb_to_gray_u8(_quantised(x, value_range, mean, std))))
    b, h, w = gray.shape
    dev = gray.device

    integral = gray.new_zeros(b, h + 1, w + 1)
    # OpenCV's integral image is float32. Its partial sums are integers below 2**24 up to 256x256
    # images, so a float32 cumsum is exact in any order there (and as approximate as OpenCV's above).
    torch.cumsum(gray, dim=2, out=integral[:, 1:, 1:])
    integral[:, 1:, 1:] = integral[:, 1:, 1:].cumsum(dim=1)

    on_sum = torch.zeros_like(gray)
    off_sum = torch.zeros_like(gray)
    # Two scratch buffers reused by every block: fresh large allocations cost page faults.
    scratch = torch.empty(2, gray.numel(), dtype=gray.dtype, device=dev)
    for half, count in _distinct_neighbourhoods(h, w):
        area = _window_area(h, w, half, dev)
        # Montabone's window around pixel p spans integral-image indices
        # [clamp(p - half + 1), clamp(p + half + 1)]. Along each axis the pixels fall into at most
        # three runs in which each bound is either a fixed index or p plus a fixed offset, so every
        # corner look-up of a run is a slice (or a broadcast line) of the integral image: no gather.
        for rs, re_, r1, r2 in _runs(h, half):
            for cs, ce, c1, c2 in _runs(w, half):
                shape = (b, re_ - rs, ce - cs)
                n = shape[0] * shape[1] * shape[2]
                value = scratch[0, :n].view(shape)
                part = scratch[1, :n].view(shape)
                centre = gray[:, rs:re_, cs:ce]
                # Same float32 operation order as OpenCV's getMean: ((I22 + I11) - I21) - I12.
                torch.add(_corner(integral, r2, c2, shape), _corner(integral, r1, c1, shape), out=value)
                value -= _corner(integral, r2, c1, shape)
                value -= _corner(integral, r1, c2, shape)
                value -= centre
                value /= area[rs:re_, cs:ce]
                centre_minus_mean = torch.sub(centre, value, out=value)
                # (uchar) of a positive float below 256 is its floor: on = floor(max(d, 0)) and
                # off = floor(max(-d, 0)) = -ceil(min(d, 0)).
                torch.clamp(centre_minus_mean, min=0, out=part).floor_()
                on_sum[:, rs:re_, cs:ce].add_(part, alpha=count)
                torch.clamp(centre_minus_mean, max=0, out=part).ceil_()
                off_sum[:, rs:re_, cs:ce].sub_(part, alpha=count)

    on_u8 = _normalise_to_u8(on_sum)
    off_u8 = _normalise_to_u8(off_sum)
    peak = torch.maximum(on_u8.amax(dim=(1, 2), keepdim=True), off_u8.amax(dim=(1, 2), keepdim=True))
    # (uchar)(255. * (on + off) / max): the exact quotient of integers <= 130050 by an integer
    # <= 255 is at least 1/255 from the next integer unless it is one, so float32 floors it
    # exactly. A zero maximum means an all-zero map (OpenCV's NaN casts to 0).
    mixed = (on_u8 + off_u8).mul_(255.0).div_(peak.clamp(min=1.0)).floor_()
    # on + off can exceed the maximum, giving values up to 510; OpenCV's cast keeps the low byte
    # (x86 truncates to int, then to 8 bits), so bright on+off pixels wrap around. Reproduced,
    # since parity is the contract.
    mixed = torch.where(mixed >= 256.0, mixed - 256.0, mixed)
    return mixed.mul_(torch.tensor(1.0 / 255.0, dtype=torch.float32, device=dev))


def _distinct_neighbourhoods(h: int, w: int) -> List[Tuple[int, int]]:
    """Montabone's half-widths with multiplicity; half-widths whose windows cover the whole image
    on both axes give identical on/off maps, so each such group is computed once and counted."""
    out: Dict[int, int] = {}
    for half in _FINE_GRAINED_NEIGHBOURHOODS:
        # A window covers every pixel's whole row once half >= size (clamped on both sides).
        key = half if (half < h or half < w) else -1
        out[key] = out.get(key, 0) + 1
    return [(max(_FINE_GRAINED_NEIGHBOURHOODS) if k == -1 else k, c) for k, c in out.items()]


# A bound along one axis over a run of pixels: ("fixed", index) or ("shift", first index).
_Bound = Tuple[str, int]


def _runs(size: int, half: int) -> List[Tuple[int, int, _Bound, _Bound]]:
    """Split 0..size-1 into runs where the low and high window bounds are fixed or shifted."""
    low_fixed_until = min(max(half - 1, 0), size)  # p < this: low bound clamps to 0
    high_shift_until = min(max(size - half, 0), size)  # p < this: high bound p + half + 1 <= size
    cuts = sorted({0, low_fixed_until, high_shift_until, size})
    runs = []
    for start, end in zip(cuts[:-1], cuts[1:]):
        low: _Bound = ("fixed", 0) if end <= low_fixed_until else ("shift", start - half + 1)
        high: _Bound = ("shift", start + half + 1) if end <= high_shift_until else ("fixed", size)
        runs.append((start, end, low, high))
    return runs


def _corner(integral: torch.Tensor, rows: _Bound, cols: _Bound, shape: Tuple[int, int, int]) -> torch.Tensor:
    """View of integral[:, row bound, col bound] over a block: slices, or broadcasts of one line."""
    r = integral[:, rows[1] : rows[1] + (1 if rows[0] == "fixed" else shape[1])]
    return r[:, :, cols[1] : cols[1] + (1 if cols[0] == "fixed" else shape[2])].expand(shape)


def _window_area(h: int, w: int, half: int, device: torch.device) -> torch.Tensor:
    """OpenCV's divisor: pixels in the clamped window minus the centre, as float32 (H, W)."""
    rows = torch.arange(h)
    cols = torch.arange(w)
    r = (rows + half + 1).clamp(0, h) - (rows - half + 1).clamp(0, h)
    c = (cols + half + 1).clamp(0, w) - (cols - half + 1).clamp(0, w)
    return (r[:, None] * c[None, :] - 1).to(torch.float32).to(device)


def _normalise_to_u8(s: torch.Tensor) -> torch.Tensor:
    """OpenCV's (uchar)(255. * (float)(mixed / (float)max)): float32 quotient, double product.

    The double product matters: 255 * q is exact in float64 but may round up to an integer in
    float32 when q = s / max was rounded down. A zero maximum means all zeros (NaN -> 0 in C).
    """
    peak = s.amax(dim=(1, 2), keepdim=True).clamp(min=1.0)
    return torch.div(s, peak).double().mul_(255.0).floor_().float()


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


_WEIGHT_CACHE: Dict[Tuple[int, int, str], torch.Tensor] = {}


def _cached_linear_exact_weights(dst: int, src: int, device: torch.device) -> torch.Tensor:
    key = (dst, src, str(device))
    if key not in _WEIGHT_CACHE:
        _WEIGHT_CACHE[key] = _linear_exact_weights(dst, src, device)
    return _WEIGHT_CACHE[key]


def resize_linear_exact_u8(gray: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """cv::resize(INTER_LINEAR_EXACT) of 8-bit grey images (B, H, W) held as float, bit exact."""
    _, h, w = gray.shape
    wy = _cached_linear_exact_weights(size[0], h, gray.device)
    wx = _cached_linear_exact_weights(size[1], w, gray.device)
    # Integers below 2**53: float64 matmuls are exact.
    acc = wy @ gray.double() @ wx.T
    return torch.floor((acc + 32768.0) / 65536.0)


def _gaussian_kernel(ksize: int, sigma: float, device: torch.device) -> torch.Tensor:
    t = torch.arange(ksize, dtype=torch.float64, device=device) - (ksize - 1) / 2
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    return k / k.sum()


def _separable_filter_reflect101(img: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Filter (B, H, W) float64 by the separable kernel k along both axes, border reflect-101."""
    r = (k.numel() - 1) // 2
    p = F.pad(img.unsqueeze(1), (r, r, r, r), mode="reflect")
    p = F.conv2d(p, k.reshape(1, 1, 1, -1))
    p = F.conv2d(p, k.reshape(1, 1, -1, 1))
    return p.squeeze(1)


# cv::fastAtan2's polynomial (degrees), which cv::cartToPolar uses for the phase.
_ATAN_P1 = 0.9997878412794807 * 180 / math.pi
_ATAN_P3 = -0.3258083974640975 * 180 / math.pi
_ATAN_P5 = 0.1555786518463281 * 180 / math.pi
_ATAN_P7 = -0.04432655554792128 * 180 / math.pi


def _opencv_phase(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """Phase in radians as cv::cartToPolar computes it (a 7th-order polynomial, ~1e-4 rad)."""
    ax, ay = re.abs(), im.abs()
    eps = torch.finfo(torch.float64).eps
    swap = ax < ay
    c = torch.where(swap, ax / (ay + eps), ay / (ax + eps))
    c2 = c * c
    a = (((_ATAN_P7 * c2 + _ATAN_P5) * c2 + _ATAN_P3) * c2 + _ATAN_P1) * c
    a = torch.where(swap, 90.0 - a, a)
    a = torch.where(re < 0, 180.0 - a, a)
    a = torch.where(im < 0, 360.0 - a, a)
    return a * (math.pi / 180.0)


def spectral_residual(
    x: torch.Tensor,
    value_range: Optional[Tuple[float, float]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    validate: Optional[bool] = None,
) -> torch.Tensor:
    """Spectral-residual static saliency (Hou & Zhang 2007) of a batch, as OpenCV 4.x computes it."""
    check_images(x, validate)
    gray = rgb_to_gray_u8(_quantised(x, value_range, mean, std))
    _, h, w = gray.shape
    dev = gray.device
    small = resize_linear_exact_u8(gray, (64, 64))

    spectrum = torch.fft.fft2(small)
    amplitude = spectrum.abs()
    phase = _opencv_phase(spectrum.real, spectrum.imag)
    log_amplitude = torch.log(amplitude + 1.0)
    box = torch.full((3,), 1.0 / 3.0, dtype=torch.float64, device=dev)
    residual = log_amplitude - _separable_filter_reflect101(log_amplitude, box)
    spectrum = torch.polar(torch.exp(residual), phase)
    # OpenCV's inverse DFT is unscaled; the map is divided by its maximum below, so the scale
    # does not matter.
    magnitude = torch.fft.ifft2(spectrum).abs()
    magnitude = _separable_filter_reflect101(magnitude, _gaussian_kernel(5, 8.0, dev))
    magnitude = magnitude * magnitude
    magnitude = (magnitude / magnitude.amax(dim=(1, 2), keepdim=True)).float()
    out = F.interpolate(magnitude.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)
    out = out.squeeze(1)
    # A constant image has no saliency (OpenCV would return a blob from the DC term).
    flat = gray.flatten(1)
    constant = (flat.amax(dim=1) == flat.amin(dim=1)).reshape(-1, 1, 1)
    return torch.where(constant, torch.zeros_like(out), out)


Detector = Callable[..., torch.Tensor]

DETECTORS: Dict[str, Detector] = {
    "fine_grained": fine_grained,
    "spectral": spectral_residual,
}


def saliency_map(
    x: torch.Tensor,
    method: Union[str, Detector] = "fine_grained",
    value_range: Optional[Tuple[float, float]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    validate: Optional[bool] = None,
) -> torch.Tensor:
    """Saliency maps ``(B, H, W)`` in [0, 1] by a named detector or a callable ``f(x) -> (B, H, W)``.

    A callable's maps are checked like the ``saliency=`` argument of the operators: shape and
    dtype always, finite non-negative values on CPU or with ``validate=True``.
    """
    if callable(method):
        from ._checks import check_saliency_maps

        return check_saliency_maps(method(x), x, validate)
    check_choice("method", method, tuple(DETECTORS))
    return DETECTORS[method](x, value_range=value_range, mean=mean, std=std, validate=validate)
