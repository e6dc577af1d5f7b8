"""Window geometry on batches: box sides, centred boxes, saliency masses and the corner sampler.

Everything is a batched tensor op on the input's device, with no host synchronisation; every
random draw comes from the caller's ``torch.Generator``. Maps are ``(B, H, W)``; a window of
``h x w`` pixels is named by its top-left corner, valid where it fits in the image
(``r <= H - h`` and ``c <= W - w``).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _random as rnd

__all__ = [
    "box_area_share",
    "box_mass",
    "box_sides",
    "categorical",
    "centred_boxes",
    "draw_corner",
    "integral",
    "normalised_maps",
    "peak_of_quantised",
    "valid_extent",
    "window_mass",
    "window_masses",
]


def box_sides(lam: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``h = int(H * sqrt(1 - lam))``, ``w = int(W * sqrt(1 - lam))`` as in the CutMix code."""
    share = (1.0 - lam).clamp(min=0.0)
    cut = torch.sqrt(share)
    # torch's float64 sqrt is off by one ulp on ~1% of inputs; that changes an integer side only
    # where the root rounds up to exactly 1 for lam in (0, ~1e-15). NumPy's correctly rounded root
    # stays below 1 there, so the authors' code gets H - 1: match it.
    cut = torch.where((cut >= 1.0) & (share < 1.0), torch.nextafter(torch.ones_like(cut), torch.zeros_like(cut)), cut)
    return (height * cut).floor().long(), (width * cut).floor().long()


def centred_boxes(
    centre_r: torch.Tensor, centre_c: torch.Tensor, h: torch.Tensor, w: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Boxes ``(B, 4)`` of half-sides ``h // 2``, ``w // 2`` around a centre, clipped to the image
    (CutMix's and SaliencyMix's rule)."""
    r1 = (centre_r - h // 2).clamp(0, height)
    r2 = (centre_r + h // 2).clamp(0, height)
    c1 = (centre_c - w // 2).clamp(0, width)
    c2 = (centre_c + w // 2).clamp(0, width)
    return torch.stack([r1, c1, r2, c2], dim=1)


def box_area_share(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Share of the image each box covers, float64 ``(B,)``."""
    return ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).double() / (height * width)


def peak_of_quantised(maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row, column of the first maximum of ``(map * 255).astype(uint8)``, as the authors' code.

    Maps are read clipped to ``[0, 1]`` (NaN as 0, +inf as 1): the authors' maps are in that range,
    and out of it NumPy's cast is undefined.
    """
    clean = torch.nan_to_num(maps.float(), nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
    q = clean.mul_(255.0).to(torch.uint8).flatten(1)
    # argmax of uint8 is not implemented everywhere; int16 keeps the order and the first index.
    flat = q.to(torch.int16).argmax(dim=1)
    width = maps.shape[-1]
    return flat // width, flat % width


def normalised_maps(maps: torch.Tensor) -> torch.Tensor:
    """Saliency maps as float32 scaled to sum 1 per image; a map with no saliency becomes uniform.

    Any map is safe: NaN counts as 0, negative values as 0, +inf as the most salient value (the
    pixels at +inf share the mass); a map is first divided by its maximum, so no sum overflows.
    """
    m = torch.nan_to_num(maps.float(), nan=0.0, posinf=torch.finfo(torch.float32).max, neginf=0.0).clamp_(min=0.0)
    tiny = torch.finfo(torch.float32).tiny
    m = m.div_(m.amax(dim=(1, 2), keepdim=True).clamp_(min=tiny))
    total = m.sum(dim=(1, 2), keepdim=True)
    uniform = 1.0 / (m.shape[1] * m.shape[2])
    # Adding the uniform share only where the total is 0 keeps this to two passes.
    return m.div_(total.clamp(min=tiny)).add_((total <= 0).float() * uniform)


def integral(maps: torch.Tensor) -> torch.Tensor:
    """Zero-padded integral image (B, H+1, W+1) in float32 (masses are probabilities, <= 1)."""
    b, height, width = maps.shape
    out = maps.new_zeros(b, height + 1, width + 1)
    torch.cumsum(maps, dim=2, out=out[:, 1:, 1:])
    out[:, 1:, 1:] = out[:, 1:, 1:].cumsum(dim=1)
    return out


def window_masses(
    table: torch.Tensor, h: torch.Tensor, w: torch.Tensor, images: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mass inside the ``h x w`` window at every top-left corner, ``(B, H, W)``, for the maps
    ``images`` (row indices into the integral image ``table``, default all). Corners past
    ``H - h`` / ``W - w`` hold meaningless (finite, non-negative) values: callers mask them."""
    n_maps, h1, w1 = table.shape
    height, width = h1 - 1, w1 - 1
    dev = table.device
    images = torch.arange(n_maps, device=dev) if images is None else images
    b = images.shape[0]
    rows = torch.arange(height, device=dev)
    # Row shift by h per sample as whole-row copies of the flattened integral (fast, contiguous).
    base = images[:, None] * h1
    lines = table.reshape(n_maps * h1, w1)
    low = lines.index_select(0, (base + rows).reshape(-1))
    high = lines.index_select(0, (base + (rows + h[:, None]).clamp(max=height)).reshape(-1))
    row_diff = high.sub_(low).reshape(b, height, w1)
    cols = (torch.arange(width, device=dev) + w[:, None]).clamp(max=width)
    mass = row_diff.gather(2, cols[:, None, :].expand(b, height, width))
    return mass.sub_(row_diff[:, :, :width]).clamp_(min=0.0)


def box_mass(
    table: torch.Tensor, images: torch.Tensor, corner: torch.Tensor, h: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """Mass of map ``images[i]`` in the ``h x w`` box at flat corner ``corner[i]``, float64 (B,)."""
    _, h1, w1 = table.shape
    r, c = corner // (w1 - 1), corner % (w1 - 1)
    flat = table.reshape(-1)

    def at(rr: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
        return flat[images * (h1 * w1) + rr * w1 + cc].double()

    mass = at(r + h, c + w) - at(r, c + w) - at(r + h, c) + at(r, c)
    return mass.clamp(min=0.0)


def valid_extent(size: int, side: torch.Tensor) -> torch.Tensor:
    """(B, size) bool: top-left positions where a window of ``side`` fits."""
    return torch.arange(size, device=side.device)[None, :] <= (size - side)[:, None]


def window_mass(maps: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mass of each map inside the ``h x w`` window at every top-left corner, ``(B, H, W)``.

    Corners whose window leaves the image (r > H - h or c > W - w) get ``nan``.
    """
    mass = window_masses(integral(maps.float()), h, w)
    valid = valid_extent(maps.shape[1], h)[:, :, None] & valid_extent(maps.shape[2], w)[:, None, :]
    return torch.where(valid, mass, torch.full_like(mass, float("nan")))


def categorical(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of non-negative ``weights`` (B, N), with probability proportional to them.

    One uniform draw per row (inverse CDF), no host synchronisation. A row must have some
    positive weight."""
    cdf = weights.double().cumsum(dim=1)
    u = rnd.uniform(weights.shape[0], generator, weights.device)[:, None] * cdf[:, -1:]
    index = torch.searchsorted(cdf, u, right=True)
    # A u that lands on the total would step past the end: keep the last positive entry.
    last = weights.shape[1] - 1 - (weights.flip(1) > 0).double().argmax(dim=1, keepdim=True)
    return torch.minimum(index, last).squeeze(1)


def draw_corner(
    score: torch.Tensor,
    valid_rows: torch.Tensor,
    valid_cols: torch.Tensor,
    mode: str,
    tau: float,
    eps: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Flat index ``r * W + c`` of one window corner per sample.

    ``score`` (B, H, W) is finite and non-negative (it is overwritten); the valid corners of
    sample ``i`` are the rectangle ``valid_rows[i] x valid_cols[i]`` (top-left aligned, never empty).
    ``mode="saliency"`` draws a valid corner with probability proportional to
    ``(score + eps) ** tau`` (``tau = 0`` is uniform), ``"uniform"`` draws uniformly, and ``"peak"``
    takes the first valid corner of maximal score (row-major order). Both drawing modes use two
    uniforms per sample (row, then column), so the generator advances the same in every mode.
    """
    vr, vc = valid_rows.to(score.dtype), valid_cols.to(score.dtype)
    if mode == "peak":
        # Invalid corners scored 0: a maximum of 0 is taken at corner 0, which is always valid.
        return score.mul_(vr[:, :, None]).mul_(vc[:, None, :]).flatten(1).argmax(dim=1)
    if mode == "uniform" or tau == 0:
        row = categorical(vr, generator)
        col = categorical(vc, generator)
        return row * valid_cols.shape[1] + col
    # Invalid corners weigh 0 before the maximum is taken, so they cannot push every valid weight
    # to underflow; scaling by the maximum lets a large tau keep the peak at exactly 1.
    weights = score.add_(eps).mul_(vr[:, :, None]).mul_(vc[:, None, :])
    if tau != 1.0:
        weights = weights.div_(weights.amax(dim=(1, 2), keepdim=True)).pow_(tau)
    # Row then column: the only full pass over the grid is one batched matrix-vector product.
    row_mass = torch.bmm(weights, vc[:, :, None]).squeeze(2)
    row = categorical(row_mass, generator)
    row_weights = weights.gather(1, row[:, None, None].expand(-1, 1, weights.shape[2])).squeeze(1)
    col = categorical(row_weights, generator)
    return row * valid_cols.shape[1] + col
