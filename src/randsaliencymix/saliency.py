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


class _Quantiser:
    """The map of :func:`to_uint8` from a float batch ``x`` to its 0-255 integer values, held in
    float32 (uint8 input: as is), applicable to ``x`` or to any of its pixels gathered along H and
    W (the scaling depends only on the image and channel, so a gathered subset is quantised exactly
    as the whole batch would be). The min-max scaling reads the whole image once, to its extremes.
    """

    def __init__(
        self,
        x: torch.Tensor,
        value_range: Optional[Tuple[float, float]],
        mean: Optional[Sequence[float]],
        std: Optional[Sequence[float]],
        extremes: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> None:
        check_normalisation(value_range, mean, std, channels=x.shape[1])
        self.identity = x.dtype == torch.uint8
        self.mode = "minmax"
        dev = x.device
        if mean is not None and std is not None:
            self.mode = "normalised"
            m = torch.as_tensor(mean, dtype=torch.float32, device=dev).reshape(1, -1, 1, 1)
            s = torch.as_tensor(std, dtype=torch.float32, device=dev).reshape(1, -1, 1, 1)
            self.gain, self.offset = s * 255.0, m * 255.0
        elif value_range is not None:
            self.mode = "range"
            self.lo, self.scale = float(value_range[0]), 255.0 / (float(value_range[1]) - float(value_range[0]))
        elif not self.identity:
            # Per image: the extremes over every channel (given per channel, or read here).
            if extremes is None:
                flat = x.detach().flatten(1)
                lo, hi = flat.amin(dim=1), flat.amax(dim=1)
            else:
                lo, hi = extremes[0].amin(dim=1), extremes[1].amax(dim=1)
            # Halves throughout: hi - lo and x - lo overflow float32 for pixels beyond +-1.7e38, their
            # halves never do. Scaling by 1/2 is exact, so the result is bit for bit (x - lo) * 255 / span.
            self.half_lo = lo.float().reshape(-1, 1, 1, 1) * 0.5
            half_span = hi.float().reshape(-1, 1, 1, 1) * 0.5 - self.half_lo
            # A constant image has span 0: scale it by 0 so it maps to zeros, never NaN.
            tiny = torch.finfo(torch.float32).tiny
            self.gain = torch.where(half_span > 0, 255.0 / half_span.clamp(min=tiny), torch.zeros_like(half_span))

    def __call__(self, t: torch.Tensor, images: slice = slice(None)) -> torch.Tensor:
        """Quantise ``t``: the pixels of the images ``images`` of the batch (all by default)."""
        if self.identity:
            return t
        tf = t.detach().float()
        if self.mode == "normalised":
            # 255 * (x * std + mean) in two passes.
            scaled = torch.mul(tf, self.gain).add_(self.offset)
        elif self.mode == "range":
            scaled = torch.sub(tf, self.lo).mul_(self.scale)
        else:
            scaled = torch.add(-self.half_lo[images], tf, alpha=0.5).mul_(self.gain[images])
        return scaled.round_().clamp_(0, 255)


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
    return _Quantiser(x, value_range, mean, std)(x)


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


# On CPU the fine-grained detector runs over images a chunk at a time, about this many bytes per
# float32 plane of the chunk, in one workspace reused by every chunk: its working memory stays a
# few MB at any batch size, instead of a dozen fresh full-batch buffers whose page faults cost more
# than the arithmetic (45 MB at 32 x 224 x 224). Larger chunks pay the faults, smaller ones the
# per-op overhead of the ~500 tensor ops per chunk; 2 MB is the fastest at 32 and 224 px here.
FINE_GRAINED_CHUNK_BYTES = 2 << 20


def fine_grained(
    x: torch.Tensor,
    value_range: Optional[Tuple[float, float]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    validate: Optional[bool] = None,
) -> torch.Tensor:
    """Fine-grained static saliency (Montabone & Soto 2010) of a batch, as OpenCV computes it."""
    check_images(x, validate)
    quantise = _Quantiser(x, value_range, mean, std)
    b, _, h, w = x.shape
    dev = x.device
    step = max(1, FINE_GRAINED_CHUNK_BYTES // (4 * h * w)) if dev.type == "cpu" else b
    step = min(step, b)
    out = torch.empty(b, h, w, dtype=torch.float32, device=dev)
    # One workspace for every chunk (fresh large buffers per chunk would cost page faults each):
    # the integral image, the on and off sums and two scratch planes.
    integral = torch.zeros(step, h + 1, w + 1, dtype=torch.float32, device=dev)
    planes = torch.empty(4, step * h * w, dtype=torch.float32, device=dev)
    windows = [(half, count, _window_area(h, w, half, dev)) for half, count in _distinct_neighbourhoods(h, w)]
    for start in range(0, b, step):
        images = slice(start, min(start + step, b))
        gray = _blur121_u8(_blur121_u8(rgb_to_gray_u8(quantise(x[images], images))))
        n = gray.shape[0]
        work = [plane[: n * h * w].view(n, h, w) for plane in planes]
        out[images] = _fine_grained_gray(gray, windows, integral[:n], *work)
    return out


def _fine_grained_gray(
    gray: torch.Tensor,
    windows: List[Tuple[int, int, torch.Tensor]],
    integral: torch.Tensor,
    on_sum: torch.Tensor,
    off_sum: torch.Tensor,
    value_plane: torch.Tensor,
    part_plane: torch.Tensor,
) -> torch.Tensor:
    """The fine-grained maps of blurred 8-bit grey images ``(B, H, W)`` held as float32, given the
    ``(half, count, area)`` of each distinct window and a workspace: ``integral`` ``(B, H + 1,
    W + 1)`` (its first row and column zero) and four ``(B, H, W)`` planes."""
    b, h, w = gray.shape
    dev = gray.device
    # OpenCV's integral image is float32. Its partial sums are integers below 2**24 up to 256x256
    # images, so a float32 cumsum is exact in any order there (and as approximate as OpenCV's above).
    torch.cumsum(gray, dim=2, out=integral[:, 1:, 1:])
    integral[:, 1:, 1:] = integral[:, 1:, 1:].cumsum(dim=1)
    on_sum.zero_()
    off_sum.zero_()
    scratch = (value_plane.view(-1), part_plane.view(-1))
    for half, count, area in windows:
        # Montabone's window around pixel p spans integral-image indices
        # [clamp(p - half + 1), clamp(p + half + 1)]. Along each axis the pixels fall into at most
        # three runs in which each bound is either a fixed index or p plus a fixed offset, so every
        # corner look-up of a run is a slice (or a broadcast line) of the integral image: no gather.
        for rs, re_, r1, r2 in _runs(h, half):
            for cs, ce, c1, c2 in _runs(w, half):
                shape = (b, re_ - rs, ce - cs)
                n = shape[0] * shape[1] * shape[2]
                value = scratch[0][:n].view(shape)
                part = scratch[1][:n].view(shape)
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
    mixed = on_u8.add_(off_u8).mul_(255.0).div_(peak.clamp(min=1.0)).floor_()
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
SPECTRAL_CHUNK = 32
# ... and the rows the resize reads are quantised and turned grey about this many bytes at a time.
SPECTRAL_FRONT_BYTES = 2 << 20


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
    ``SPECTRAL_CHUNK`` images at a time.
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
    step = max(1, min(b, SPECTRAL_FRONT_BYTES // front_bytes)) if dev.type == "cpu" else b
    for i0 in range(0, b, step):
        part = slice(i0, i0 + step)
        maps[part] = _resize_taps(rgb_to_gray_u8(quantise(_needed_rows(xd[part], ty), part)), ty, tx)
    step = SPECTRAL_CHUNK if dev.type == "cpu" else b
    for i0 in range(0, b, step):
        # Each chunk's grey images are replaced by their maps.
        maps[i0 : i0 + step] = _spectral_small(maps[i0 : i0 + step])
    # A constant image has no saliency (OpenCV would return a blob from the DC term): zero its
    # small map, which the bilinear resize keeps at zero.
    maps = maps.masked_fill_(constant, 0.0)
    out = F.interpolate(maps.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)
    return out.squeeze(1)


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
