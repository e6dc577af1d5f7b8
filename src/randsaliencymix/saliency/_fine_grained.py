"""The fine-grained detector (Montabone & Soto 2010), pixel for pixel as OpenCV contrib's
``StaticSaliencyFineGrained``: integral images, centre-surround windows, OpenCV's casts.

Internal: import from randsaliencymix.saliency instead; may change without notice.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .._checks import check_images
from ._grey import _Quantiser, rgb_to_gray_u8

# Montabone & Soto's centre-surround half-widths, as in OpenCV contrib.
_FINE_GRAINED_NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)


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
