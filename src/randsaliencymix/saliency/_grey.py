"""The 8-bit grey values both detectors are defined on: float images quantised to 0-255 as
:func:`to_uint8` says, and OpenCV's integer RGB-to-grey conversion.

Internal: import from randsaliencymix.saliency instead; may change without notice.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from .._checks import check_normalisation


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
